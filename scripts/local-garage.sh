# Sourced by scripts/demo.sh and bench/run.sh: runs a throwaway single-node Garage S3 server on
# free 127.0.0.1 ports.
#
#   garage_start DIR BUCKET   starts it with its data and logs in DIR, creates BUCKET and a key;
#                             sets GARAGE_PID, S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#   garage_stop               stops it (safe to call twice, and from a trap)
#
# GARAGE_BIN picks the binary (default: garage on PATH, else /opt/s3test/bin/garage).

garage_start() {
  local dir=$1 bucket=$2 bin=${GARAGE_BIN:-$(type -P garage || echo /opt/s3test/bin/garage)}
  [ -x "$bin" ] || { echo "garage not found (run scripts/install-test-deps.sh)" >&2; return 1; }
  mkdir -p "$dir"
  local ports s3_port rpc_port admin_port
  ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
  read -r s3_port rpc_port admin_port <<< "$ports"
  cat > "$dir/garage.toml" <<CFG
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
metadata_fsync = false
data_fsync = false
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
CFG
  RUST_LOG=warn "$bin" -c "$dir/garage.toml" server > "$dir/garage.log" 2>&1 < /dev/null &
  GARAGE_PID=$!
  GARAGE_CMD=("$bin" -c "$dir/garage.toml")
  local node="" i
  for i in $(seq 300); do
    kill -0 "$GARAGE_PID" 2>/dev/null || { tail -20 "$dir/garage.log" >&2; return 1; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null; then
      node=$("${GARAGE_CMD[@]}" node id -q 2>/dev/null) && break
    fi
    sleep 0.2
  done
  [ -n "$node" ] || { echo "garage did not come up within 60 s" >&2; return 1; }
  AWS_ACCESS_KEY_ID=GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  AWS_SECRET_ACCESS_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  {
    "${GARAGE_CMD[@]}" layout assign -z dc1 -c 100G "${node%%@*}"
    "${GARAGE_CMD[@]}" layout apply --version 1
    "${GARAGE_CMD[@]}" key import --yes -n local "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
    "${GARAGE_CMD[@]}" bucket create "$bucket"
    "${GARAGE_CMD[@]}" bucket allow --read --write --owner "$bucket" --key "$AWS_ACCESS_KEY_ID"
  } > "$dir/setup.log" 2>&1 || { cat "$dir/setup.log" >&2; return 1; }
  S3_ENDPOINT=http://127.0.0.1:$s3_port
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY S3_ENDPOINT
  export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
}

garage_stop() {
  [ -n "${GARAGE_PID:-}" ] || return 0
  kill "$GARAGE_PID" 2>/dev/null || true
  wait "$GARAGE_PID" 2>/dev/null || true
  GARAGE_PID=
}
