#!/usr/bin/env bash
# Workload 5 (issue #7): what appending to a large file costs.
#
# On a throwaway single-node Garage server, a file of BENCH_APPEND_SIZE (default 1 GiB) is
# written, then BENCH_APPEND_BYTES (default 1 MiB) are appended with `>>`, BENCH_RUNS times
# (default 3), on two volumes in the same run:
#   - object format 1: the baseline, where an append re-encrypts and re-uploads the file;
#   - object format 2 (the default): the append keeps the file's ciphertext (server-side
#     copies) and sends the new bytes.
# For each: median time of the append (open, write, close: close returns once it is saved),
# bytes sent and fetched by the daemon (its Prometheus counters), daemon peak RSS, and the
# ratio format 2 / format 1. Results go to stdout as a Markdown table.
#
#   sudo bash bench/append.sh            (root: FUSE mounts; builds the release binary)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${BENCH_APPEND_SIZE:-$((1 << 30))}
BYTES=${BENCH_APPEND_BYTES:-$((1 << 20))}
RUNS=${BENCH_RUNS:-3}
WORK=$(mktemp -d)
log() { echo "[append-bench] $*" >&2; }

# shellcheck source=../scripts/local-garage.sh
. "$REPO/scripts/local-garage.sh"

MOUNTS=()
cleanup() {
  for m in "${MOUNTS[@]}"; do umount "$m" 2> /dev/null || true; done
  garage_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

log "building the release binary"
(cd "$REPO" && cargo build --release --quiet)
BIN="$REPO/target/release/s3cryptfs"
[ -n "${CARGO_TARGET_DIR:-}" ] && BIN="$CARGO_TARGET_DIR/release/s3cryptfs"

garage_start "$WORK/garage" bench
export AWS_REGION=us-east-1
head -c 32 /dev/urandom > "$WORK/key"
chmod 600 "$WORK/key"
head -c "$SIZE" /dev/urandom > "$WORK/big"
head -c "$BYTES" /dev/urandom > "$WORK/tail"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
metric() { # addr name
  curl -fsS "http://$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# run FORMAT: mounts a fresh volume in that format, writes the file, appends RUNS times.
# Prints: median seconds, median MiB sent, median MiB fetched, peak RSS MiB.
run() {
  local format=$1 mnt="$WORK/mnt$1" addr
  addr=127.0.0.1:$(free_port)
  mkdir -p "$mnt"
  "$BIN" init "bench/f$format" --object-format "$format" --key-file "$WORK/key" \
    --endpoint-url "$S3_ENDPOINT" --force-path-style > /dev/null
  "$BIN" mount "bench/f$format" "$mnt" --key-file "$WORK/key" --endpoint-url "$S3_ENDPOINT" \
    --force-path-style --metrics-addr "$addr" --cache-dir "$WORK/cache" --log-file "$WORK/f$format.log"
  MOUNTS+=("$mnt")
  local pid
  pid=$(pgrep -n -f "s3cryptfs mount bench/f$format ")
  cp "$WORK/big" "$mnt/big"
  local times=() ups=() downs=()
  for _ in $(seq "$RUNS"); do
    local up0 down0 t0 t1
    up0=$(metric "$addr" s3cryptfs_bytes_uploaded_total)
    down0=$(metric "$addr" s3cryptfs_bytes_downloaded_total)
    t0=$(date +%s.%N)
    cat "$WORK/tail" >> "$mnt/big"
    t1=$(date +%s.%N)
    times+=("$(awk "BEGIN { print $t1 - $t0 }")")
    ups+=("$(awk "BEGIN { print ($(metric "$addr" s3cryptfs_bytes_uploaded_total) - $up0) / 1048576 }")")
    downs+=("$(awk "BEGIN { print ($(metric "$addr" s3cryptfs_bytes_downloaded_total) - ${down0:-0}) / 1048576 }")")
  done
  local want=$((SIZE + RUNS * BYTES)) got
  got=$(stat -c %s "$mnt/big")
  [ "$got" = "$want" ] || { log "format $format: size $got, expected $want"; exit 1; }
  local rss
  rss=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
  umount "$mnt"
  echo "$(median "${times[@]}") $(median "${ups[@]}") $(median "${downs[@]}") $rss"
}

log "format 1 (baseline: the append rewrites the file)"
read -r t1 up1 down1 rss1 <<< "$(run 1)"
log "format 2 (the append keeps the file's ciphertext)"
read -r t2 up2 down2 rss2 <<< "$(run 2)"

ratio() { awk "BEGIN { printf \"%.3f\", $1 / $2 }"; }
cat <<EOF
Appending $((BYTES >> 10)) KiB to a $((SIZE >> 20)) MiB file, median of $RUNS, Garage single node on 127.0.0.1:

| volume | time (s) | sent (MiB) | fetched (MiB) | daemon peak RSS (MiB) |
| --- | --- | --- | --- | --- |
| object format 1 (baseline: rewrite) | $(printf %.2f "$t1") | $(printf %.1f "$up1") | $(printf %.1f "$down1") | $rss1 |
| object format 2 (keep + copy) | $(printf %.2f "$t2") | $(printf %.1f "$up2") | $(printf %.1f "$down2") | $rss2 |
| ratio 2 / 1 | $(ratio "$t2" "$t1") | $(ratio "$up2" "$up1") | $(ratio "$down2" "$down1") | |
EOF
