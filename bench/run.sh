#!/usr/bin/env bash
# s3cryptfs benchmark: large sequential write and cold sequential read through the FUSE mount,
# against a plain S3 client (examples/s3_baseline.rs, same store API, no FUSE, no encryption)
# on the same machine and the same local Garage server.
#
#   bench/run.sh                      # 1 GiB, 3 runs, medians
#   BENCH_SIZE_MIB=2048 BENCH_RUNS=5 bench/run.sh
#
# Env:
#   BENCH_SIZE_MIB   file size in MiB (default 1024)
#   BENCH_RUNS       runs per workload; the table quotes medians (default 3)
#   BENCH_GARAGE     garage binary (default: garage on PATH, else /opt/s3test/bin/garage)
#   BENCH_TMP        parent of the work directory (default /tmp)
#   BENCH_KEEP=1     keep the work directory (data file, Garage data, logs) on exit
#   BENCH_PEERS      side-by-side peers (rclone crypt mount, s3fs, mountpoint-s3) in the same run:
#                      unset: measured if installed, skipped with a message if not
#                      1:     rclone and s3fs installed with apt-get if missing, then measured
#                             (mountpoint-s3 is not packaged by Debian: see BENCH_MOUNT_S3)
#                      0:     skipped
#   BENCH_PEER_LIST  which peers (default "rclone-writes rclone-off s3fs mountpoint-s3")
#   BENCH_MOUNT_S3   the mount-s3 binary of mountpoint-s3 (default: mount-s3 on PATH). Build it
#                    from github.com/awslabs/mountpoint-s3 on the bench machine (its README;
#                    `cargo build --release -p mountpoint-s3 --bin mount-s3`), or install
#                    AWS's release package; it is never part of this repository
#   BENCH_RCLONE_WRITE_BACK  rclone --vfs-write-back for rclone-writes (default 0s: the upload
#                    starts at close; rclone's own default, 5s, would add a fixed idle wait)
#   BENCH_WORKLOADS  comma-separated workloads to run (default "1,2,3,4,5"; "1" = the large-file
#                    workload only, as before):
#                      1  large file: sequential write and cold read (below)
#                      2  small files: BENCH_SMALL_FILES (default 5000) files of 1-64 KiB of fresh
#                         random data in 20 directories: `cp -r` in, cold `ls -lR`, read all
#                         back (cat), `rm -rf`, each on a fresh mount, seconds per step
#                      3  cold `ls -l` of one directory of BENCH_LS_FILES (default 10000) files
#                         of 64 bytes (created untimed), and the S3 requests it made (s3cryptfs:
#                         "s3 request" lines at --log-level debug; rclone: --dump headers)
#                      4  `rsync -a` of a mixed tree (300 files, 1 KiB-2 MiB, nested directories,
#                         an empty one, some old mtimes), then again with --itemize-changes on a
#                         fresh mount: time and files transferred again
#                      5  reads by name, nothing listed first: `sha256sum -c` of
#                         BENCH_BYNAME_FILES (default 2000) files of 1-64 KiB in 20 directories,
#                         and 8 concurrent `cat`s of 64 MiB files, each on a fresh mount with
#                         the page cache dropped (the files are created untimed)
#                    Plain client for 2 and 3: rclone on the plain s3 remote (copy / lsl / copy
#                    back / purge); examples/s3_baseline has no small-file mode. Workloads 2-4
#                    run BENCH_RUNS times per system; the tables quote medians, each as a
#                    ratio to the plain client and (for s3cryptfs) to the best peer of that
#                    step; a failing step is recorded as failed and does not abort the run. Their directories in workloads 3 and 4
#                    are left in the bucket (Garage's data is removed on exit anyway).
#   BENCH_NODELAY    1 (default): Garage runs with bench/nodelay.c preloaded (TCP_NODELAY on
#                    its sockets; without it every small request waits ~40 ms for a delayed
#                    ACK, which measures the server, not the clients); 0: Garage as it is
#   BENCH_FS_BINARY  the s3cryptfs binary measured (default: the release build of this tree;
#                    the results name the tree's commit either way, so say which in notes)
#   BENCH_MOUNT_ARGS extra `s3cryptfs mount` options for every s3cryptfs mount of the run
#                    (word-split), e.g. "--keep-sent-parts 0" to compare a setting's cost
#   BENCH_INIT_ARGS  extra `s3cryptfs init` options (word-split), e.g. "--object-format 2" to
#                    measure an older object format against the default
#   CARGO_TARGET_DIR honoured for the binaries
#
# Needs root (FUSE mount, umount, /proc/sys/vm/drop_caches). Starts its own Garage (single
# node, replication 1, no fsync, no compression) on free 127.0.0.1 ports with a temporary data
# directory, and stops it on exit, whatever happens. Writes the table to bench/results.md.
#
# What is measured, per run (fresh random data each run, since Garage dedups blocks):
#   write:  `s3_baseline upload FILE KEY` vs `cp FILE MNT/`, both timed until the command
#           returns (cp's close commits the multipart upload, so the object is complete then).
#   read:   `s3_baseline download KEY /dev/null` vs `cat MNT/FILE > /dev/null` on a fresh
#           mount, the page cache dropped before each, so nothing is cached anywhere.
#   daemon: peak RSS (VmHWM) of the mount daemon, and its CPU time (utime+stime) spent during
#           the cp / cat, per GiB. Garage's CPU time per GiB is recorded too.
#   settle: before each timed step, dirty pages are flushed and Garage is left to go idle.
#           The page cache is dropped before uploads too (then the source file is read back
#           into it): without that, whichever upload came second in a run was ~30 % slower
#           and cost Garage ~45 % more CPU, for the baseline and s3cryptfs alike.
#   check:  the file read back through a fresh mount is compared byte for byte (cmp).
# The order of baseline and s3cryptfs alternates between runs so neither always goes first.
#
# Peers (section (c2), same Garage and bucket, own key prefix each, fresh mount per step):
#   rclone-writes  rclone mount of a crypt remote over an s3 remote, --vfs-cache-mode writes:
#                  cp returns once the file is in rclone's local cache, before the upload, so the
#                  time until the upload has completed (rclone logs "Copied") is recorded as well,
#                  and the object is then checked to be listed with its full size
#   rclone-off     the same with --vfs-cache-mode off (cp's close waits for the upload)
#   s3fs           s3fs-fuse on the bucket, no encryption (close uploads the file)
#   mountpoint-s3  mount-s3 on the prefix mountpoint-s3/, no encryption, --allow-delete
#                  --allow-overwrite (close completes the upload); no rename by design, so
#                  workload 4 fails for it
#   Each: cp (and, for rclone-writes, until the object is in the bucket), cold cat on a fresh
#   mount with the page cache dropped, cmp on another fresh mount, daemon VmHWM and CPU time.
#   The peers write a second fresh random file per run, not the baseline's: s3fs stores it in
#   plain text and Garage would otherwise deduplicate its blocks against the baseline's object.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
# BENCH_FS_BINARY: another s3cryptfs binary to measure (an A/B run against an older build)
FS=${BENCH_FS_BINARY:-$TARGET/release/s3cryptfs}
BASE=$TARGET/release/examples/s3_baseline
RESULTS=$REPO/bench/results.md
SIZE=$((SIZE_MIB * 1024 * 1024))
CLK_TCK=$(getconf CLK_TCK)
# generous per-command limit, so a hang is reported instead of waited on forever
STEP_TIMEOUT=$((300 + SIZE_MIB / 2))
WORKLOADS=${BENCH_WORKLOADS:-1,2,3,4,5}
has_w() { [[ ",$WORKLOADS," == *",$1,"* ]]; }
SMALL_N=${BENCH_SMALL_FILES:-5000}
LS_N=${BENCH_LS_FILES:-10000}
BYNAME_N=${BENCH_BYNAME_FILES:-2000}

log() { echo "[bench] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (FUSE mount, umount and drop_caches need it)"
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MIB must be a positive integer"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $WORKLOADS =~ ^[1-5](,[1-5])*$ ]] || die "BENCH_WORKLOADS must be a comma-separated list of 1, 2, 3, 4, 5"
[[ $SMALL_N =~ ^[1-9][0-9]*$ ]] || die "BENCH_SMALL_FILES must be a positive integer"
[[ $LS_N =~ ^[1-9][0-9]*$ ]] || die "BENCH_LS_FILES must be a positive integer"
[[ $BYNAME_N =~ ^[1-9][0-9]*$ ]] || die "BENCH_BYNAME_FILES must be a positive integer"
if has_w 2 || has_w 3 || has_w 4; then
  for t in python3 rsync; do command -v $t > /dev/null || die "workloads 2-4 need $t"; done
fi

GARAGE=${BENCH_GARAGE:-$(command -v garage || true)}
[ -n "$GARAGE" ] || GARAGE=/opt/s3test/bin/garage
[ -x "$GARAGE" ] || die "garage not found (set BENCH_GARAGE)"

# which peers can run (installed now if BENCH_PEERS=1)
PEER_LIST=${BENCH_PEER_LIST:-rclone-writes rclone-off s3fs mountpoint-s3}
PEERS=""
peer_tool() { case $1 in rclone-writes|rclone-off) echo rclone;; s3fs) echo s3fs;; mountpoint-s3) echo mount-s3;; *) return 1;; esac; }
peer_versions() {
  local v=() b
  b=$(peer_bin rclone-off) && v+=("$("$b" version 2>/dev/null | head -1)")
  b=$(peer_bin s3fs) && v+=("s3fs $("$b" --version 2>/dev/null | head -1 | awk '{ print $7 }')")
  b=$(peer_bin mountpoint-s3) && v+=("$("$b" --version 2>/dev/null | head -1)")
  [ ${#v[@]} = 0 ] || printf '%s; ' "${v[@]}" | sed 's/; $//'
}
# the program a peer runs, if it is there
peer_bin() {
  if [ "$1" = mountpoint-s3 ] && [ -n "${BENCH_MOUNT_S3:-}" ]; then
    [ -x "$BENCH_MOUNT_S3" ] && echo "$BENCH_MOUNT_S3"
  else
    command -v "$(peer_tool "$1")"
  fi
}
for p in $PEER_LIST; do peer_tool "$p" > /dev/null || die "unknown peer in BENCH_PEER_LIST: $p"; done
case ${BENCH_PEERS:-auto} in
  0) log "peers: skipped (BENCH_PEERS=0)";;
  1|auto)
    missing=""
    for t in $(for p in $PEER_LIST; do peer_tool "$p"; done | sort -u); do
      [ "$t" != mount-s3 ] || continue   # not packaged by Debian: BENCH_MOUNT_S3
      command -v "$t" > /dev/null || missing="$missing $t"
    done
    if [ -n "$missing" ] && [ "${BENCH_PEERS:-auto}" = 1 ]; then
      log "peers: installing$missing (apt-get)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2 \
        || die "apt-get install$missing failed"
      missing=""
    fi
    for p in $PEER_LIST; do
      if peer_bin "$p" > /dev/null; then PEERS="$PEERS $p"
      elif [ "$p" = mountpoint-s3 ]; then
        log "peers: skipping mountpoint-s3: no mount-s3 on PATH and BENCH_MOUNT_S3 unset (build it from github.com/awslabs/mountpoint-s3)"
      else log "peers: skipping $p: $(peer_tool "$p") is not installed (BENCH_PEERS=1 installs it with apt-get)"
      fi
    done
    PEERS=${PEERS# };;
  *) die "BENCH_PEERS must be 0 or 1";;
esac

# ---------------------------------------------------------------------------------------------
# (a) build
log "building release binaries"
(cd "$REPO" && cargo build --release --bin s3cryptfs --example s3_baseline) >&2 \
  || die "cargo build failed"
[ -x "$FS" ] && [ -x "$BASE" ] || die "binaries not found under $TARGET/release"
# the tree the binaries were built from (recorded now: the checkout may change during the run)
commit=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(cd "$REPO" && { git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ", src modified"; })
[ -n "${BENCH_FS_BINARY:-}" ] && dirty="$dirty, s3cryptfs binary $FS"
[ -x "$FS" ] || die "no s3cryptfs binary at $FS"

# ---------------------------------------------------------------------------------------------
# work directory and cleanup
WORK=$(mktemp -d --tmpdir="${BENCH_TMP:-/tmp}" --suffix=-s3cryptfs-bench)
MNT=$WORK/mnt
LOGS=$WORK/logs
DATA=$WORK/data.bin
PMNT=$WORK/peer-mnt
PCONF=$WORK/peer-conf
mkdir -p "$MNT" "$LOGS" "$WORK/garage" "$PMNT" "$PCONF"
GARAGE_PID=""
DPID=""
PEER_PID=""

cleanup() {
  local rc=$?
  set +e
  if mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null; fi
  if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
    kill "$DPID" 2>/dev/null; sleep 1; kill -9 "$DPID" 2>/dev/null
  fi
  if mountpoint -q "$PMNT"; then umount "$PMNT" 2>/dev/null || umount -l "$PMNT" 2>/dev/null; fi
  if [ -n "$PEER_PID" ] && kill -0 "$PEER_PID" 2>/dev/null; then
    kill "$PEER_PID" 2>/dev/null; sleep 1; kill -9 "$PEER_PID" 2>/dev/null
  fi
  if [ -n "$GARAGE_PID" ] && kill -0 "$GARAGE_PID" 2>/dev/null; then
    kill "$GARAGE_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GARAGE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$GARAGE_PID" 2>/dev/null
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "work directory kept: $WORK"
  elif [ $rc -ne 0 ]; then
    rm -rf "$WORK/garage" "$DATA" "$PCONF"
    log "logs kept in $LOGS"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
# utime+stime (all threads) of a process, in clock ticks
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# peak resident set size of a process, in KiB
vm_hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# before each timed step: flush dirty pages, and wait (up to 30 s) until Garage has finished
# the background work of the previous step (its CPU use falls under 5 % over half a second),
# so one measurement does not pay for the one before it
settle() {
  sync
  local a b
  for _ in $(seq 60); do
    a=$(cpu_ticks "$GARAGE_PID"); sleep 0.5; b=$(cpu_ticks "$GARAGE_PID")
    [ $(((b - a) * 100)) -le $((CLK_TCK * 5 / 2)) ] && return 0
  done
  log "garage still busy after 30 s; measuring anyway"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }

# ---------------------------------------------------------------------------------------------
# (b) Garage
# shellcheck source=../scripts/local-garage.sh
. "$REPO/scripts/local-garage.sh"
GARAGE_BIN=$GARAGE
BUCKET=bench
NODELAY_SO=""
if [ "${BENCH_NODELAY:-1}" = 1 ]; then
  NODELAY_SO=$WORK/nodelay.so
  cc -shared -fPIC -O2 -o "$NODELAY_SO" "$REPO/bench/nodelay.c" -ldl || die "cannot build bench/nodelay.c"
fi
LD_PRELOAD=$NODELAY_SO garage_start "$WORK/garage" "$BUCKET" || die "garage did not start (logs in $WORK/garage)"
EP=$S3_ENDPOINT
log "garage (pid $GARAGE_PID) on $EP"
export S3_ENDPOINT=$EP S3_BUCKET=$BUCKET
unset AWS_ENDPOINT_URL AWS_PROFILE AWS_CA_BUNDLE

KEYF=$WORK/volume.key
(umask 077 && head -c 32 /dev/urandom | xxd -p -c64 > "$KEYF")
VOL=$BUCKET/vol
# shellcheck disable=SC2086  # BENCH_INIT_ARGS is a list of options
"$FS" init "$VOL" --key-file "$KEYF" --endpoint-url "$EP" --force-path-style ${BENCH_INIT_ARGS:-} \
  > "$LOGS/init.log" 2>&1 || { cat "$LOGS/init.log" >&2; die "s3cryptfs init"; }

# ---------------------------------------------------------------------------------------------
# helpers for the mount daemon (run in the foreground, in our background, so $! is its pid)
DAEMON_LOG=""
mount_fs() { # logname [extra mount options]
  DAEMON_LOG=$LOGS/$1
  "$FS" mount "$VOL" "$MNT" --key-file "$KEYF" --endpoint-url "$EP" --force-path-style \
    --foreground ${BENCH_MOUNT_ARGS:-} "${@:2}" > "$DAEMON_LOG" 2>&1 < /dev/null &
  DPID=$!
  for i in $(seq 300); do
    mountpoint -q "$MNT" && return 0
    kill -0 "$DPID" 2>/dev/null || { tail -20 "$DAEMON_LOG" >&2; die "mount daemon exited before mounting"; }
    sleep 0.1
  done
  tail -20 "$DAEMON_LOG" >&2
  die "mount did not appear within 30 s"
}
unmount_fs() {
  umount "$MNT" || { tail -20 "$DAEMON_LOG" >&2; die "umount $MNT failed"; }
  for i in $(seq 1200); do
    kill -0 "$DPID" 2>/dev/null || break
    [ "$i" = 1200 ] && { tail -20 "$DAEMON_LOG" >&2; die "daemon $DPID still running 120 s after umount"; }
    sleep 0.1
  done
  local rc=0
  wait "$DPID" || rc=$?
  DPID=""
  [ $rc = 0 ] || { tail -20 "$DAEMON_LOG" >&2; die "daemon exited with status $rc"; }
}
# run a step with a time limit; on failure show the daemon's log
step() { # what, command...
  local what=$1; shift
  local rc=0
  timeout "$STEP_TIMEOUT" "$@" || rc=$?
  if [ $rc != 0 ]; then
    [ $rc = 124 ] && log "$what: no result after $STEP_TIMEOUT s (hang?)"
    [ -n "$DAEMON_LOG" ] && { log "last lines of $DAEMON_LOG:"; tail -30 "$DAEMON_LOG" >&2; }
    die "$what (exit status $rc)"
  fi
}
mibps() { calc "$SIZE / 1048576 / $1" 1; }
per_gib() { calc "$1 / $CLK_TCK / ($SIZE / 1073741824)" 2; } # ticks -> s/GiB

# per-run results
declare -a BU FW FW_RSS FW_CPU FW_G BU_G BD FR FR_RSS FR_CPU FR_G BD_G

baseline_upload() { # run
  drop_caches; cat "$DATA" > /dev/null; settle
  local g0 t0 t1 g1
  g0=$(cpu_ticks "$GARAGE_PID"); t0=$(now)
  step "baseline upload" "$BASE" upload "$DATA" "baseline/run$1.bin" > "$LOGS/baseline-upload-$1.out"
  t1=$(now); g1=$(cpu_ticks "$GARAGE_PID")
  BU[$1]=$(mibps "$(calc "$t1 - $t0" 3)"); BU_G[$1]=$(per_gib $((g1 - g0)))
  log "run $1: baseline upload   ${BU[$1]} MiB/s"
}
fs_write() { # run
  drop_caches; cat "$DATA" > /dev/null; settle
  mount_fs "daemon-write-$1.log"
  local c0 g0 t0 t1 c1 g1
  c0=$(cpu_ticks "$DPID"); g0=$(cpu_ticks "$GARAGE_PID"); t0=$(now)
  step "cp to the mount" cp "$DATA" "$MNT/run$1.bin"
  t1=$(now); c1=$(cpu_ticks "$DPID"); g1=$(cpu_ticks "$GARAGE_PID")
  FW_RSS[$1]=$(calc "$(vm_hwm "$DPID") / 1024" 0)
  FW[$1]=$(mibps "$(calc "$t1 - $t0" 3)"); FW_CPU[$1]=$(per_gib $((c1 - c0))); FW_G[$1]=$(per_gib $((g1 - g0)))
  unmount_fs
  log "run $1: s3cryptfs cp      ${FW[$1]} MiB/s, daemon ${FW_RSS[$1]} MiB peak, ${FW_CPU[$1]} CPU s/GiB"
}
baseline_download() { # run
  drop_caches; settle
  local g0 t0 t1 g1 out
  g0=$(cpu_ticks "$GARAGE_PID"); t0=$(now)
  step "baseline download" "$BASE" download "baseline/run$1.bin" /dev/null > "$LOGS/baseline-download-$1.out"
  t1=$(now); g1=$(cpu_ticks "$GARAGE_PID")
  out=$(cat "$LOGS/baseline-download-$1.out")
  [[ $out == *" bytes=$SIZE "* ]] || die "baseline download returned the wrong size: $out"
  BD[$1]=$(mibps "$(calc "$t1 - $t0" 3)"); BD_G[$1]=$(per_gib $((g1 - g0)))
  log "run $1: baseline download ${BD[$1]} MiB/s"
}
fs_read() { # run
  mount_fs "daemon-read-$1.log"
  drop_caches; settle
  local c0 g0 t0 t1 c1 g1
  c0=$(cpu_ticks "$DPID"); g0=$(cpu_ticks "$GARAGE_PID"); t0=$(now)
  step "cold read through the mount" sh -c 'cat "$1" > /dev/null' sh "$MNT/run$1.bin"
  t1=$(now); c1=$(cpu_ticks "$DPID"); g1=$(cpu_ticks "$GARAGE_PID")
  FR_RSS[$1]=$(calc "$(vm_hwm "$DPID") / 1024" 0)
  FR[$1]=$(mibps "$(calc "$t1 - $t0" 3)"); FR_CPU[$1]=$(per_gib $((c1 - c0))); FR_G[$1]=$(per_gib $((g1 - g0)))
  unmount_fs
  log "run $1: s3cryptfs cat     ${FR[$1]} MiB/s, daemon ${FR_RSS[$1]} MiB peak, ${FR_CPU[$1]} CPU s/GiB"
  # integrity: read it back once more, cold again, on a fresh mount, and compare
  mount_fs "daemon-verify-$1.log"
  drop_caches
  local size
  size=$(stat -c %s "$MNT/run$1.bin")
  [ "$size" = "$SIZE" ] || die "run$1.bin has size $size through the mount, expected $SIZE"
  step "cmp of the data read back" cmp "$DATA" "$MNT/run$1.bin"
  log "run $1: data read back is identical (cmp)"
  rm "$MNT/run$1.bin"   # free space in the bucket for the next run
  unmount_fs
}

# ---------------------------------------------------------------------------------------------
# peers: configuration and helpers. A peer that fails is reported and left out of the table;
# it does not abort the benchmark. These functions run with errexit off (callers use ||), so
# every command that matters is checked.
RCONF=$PCONF/rclone.conf
declare -A PW PWC PW_RSS PW_CPU PW_G PR PR_RSS PR_CPU PR_G PFAIL
PEER_LOG=""
PEER_CACHE=""
# rclone's S3 backend fails even on http endpoints when AWS_CA_BUNDLE is set (unset above too)
rcl() { env -u AWS_CA_BUNDLE rclone --config "$RCONF" "$@"; }
peers_setup() {
  if [[ " $PEERS " == *" rclone-"* ]]; then
    local pw salt
    pw=$(rcl obscure "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')") || return 1
    salt=$(rcl obscure "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')") || return 1
    (umask 077 && cat > "$RCONF" <<EOF
[s3local]
type = s3
provider = Other
endpoint = $EP
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
region = us-east-1
force_path_style = true

[crypt-writes]
type = crypt
remote = s3local:$BUCKET/rclone-writes
password = $pw
password2 = $salt
filename_encryption = standard
directory_name_encryption = true

[crypt-off]
type = crypt
remote = s3local:$BUCKET/rclone-off
password = $pw
password2 = $salt
filename_encryption = standard
directory_name_encryption = true
EOF
    ) || return 1
  fi
  if [[ " $PEERS " == *" s3fs "* ]]; then
    (umask 077 && echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" > "$PCONF/s3fs.passwd") || return 1
    chmod 600 "$PCONF/s3fs.passwd"
  fi
}
# the file a peer's mount shows for run $2 (rclone: the crypt remote's root is its own prefix;
# s3fs mounts the bucket root and uses the s3fs/ prefix)
peer_file() { case $1 in s3fs) echo "$PMNT/s3fs/run$2.bin";; *) echo "$PMNT/run$2.bin";; esac; }
peer_mount() { # peer logname [debug: rclone logs every HTTP request]
  PEER_LOG=$LOGS/$2
  case $1 in
    rclone-writes|rclone-off)
      local mode=${1#rclone-} verb=(-v)
      [ "${3:-}" != debug ] || verb=(-vv --dump headers)
      PEER_CACHE=$PCONF/cache-${2%.log}   # a fresh, empty VFS cache for every mount
      env -u AWS_CA_BUNDLE rclone --config "$RCONF" mount "crypt-$mode:" "$PMNT" \
        --vfs-cache-mode "$mode" --vfs-write-back "${BENCH_RCLONE_WRITE_BACK:-0s}" \
        --cache-dir "$PEER_CACHE" --log-file "$PEER_LOG" "${verb[@]}" < /dev/null > /dev/null 2>&1 &
      PEER_PID=$!;;
    s3fs)
      s3fs "$BUCKET" "$PMNT" -f -o "url=$EP,use_path_request_style,endpoint=us-east-1,passwd_file=$PCONF/s3fs.passwd,logfile=$PEER_LOG,dbglevel=warn" \
        < /dev/null > /dev/null 2>&1 &
      PEER_PID=$!;;
    mountpoint-s3)
      env -u AWS_CA_BUNDLE "$(peer_bin mountpoint-s3)" "$BUCKET" "$PMNT" --prefix mountpoint-s3/ \
        --endpoint-url "$EP" --force-path-style --region us-east-1 --allow-delete --allow-overwrite \
        --foreground < /dev/null > "$PEER_LOG" 2>&1 &
      PEER_PID=$!;;
  esac
  local i
  for i in $(seq 300); do
    if mountpoint -q "$PMNT"; then
      [ "$1" != s3fs ] || mkdir -p "$PMNT/s3fs" || { log "$1: mkdir of the s3fs/ prefix failed"; return 1; }
      return 0
    fi
    kill -0 "$PEER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$1: mount did not appear (log $PEER_LOG):"; tail -20 "$PEER_LOG" >&2
  return 1
}
peer_unmount() { # peer
  local i rc=0
  umount "$PMNT" || { log "$1: umount failed"; umount -l "$PMNT"; rc=1; }
  for i in $(seq 1200); do kill -0 "$PEER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$PEER_PID" 2>/dev/null; then
    log "$1: daemon $PEER_PID still running 120 s after umount; killing it"; kill -9 "$PEER_PID"; rc=1
  fi
  wait "$PEER_PID" 2>/dev/null
  PEER_PID=""
  [ -z "$PEER_CACHE" ] || rm -rf "$PEER_CACHE"
  PEER_CACHE=""
  return $rc
}
# like step, but reports failure instead of exiting
pstep() { # peer what command...
  local peer=$1 what=$2; shift 2
  local rc=0
  timeout "$STEP_TIMEOUT" "$@" || rc=$?
  [ $rc = 0 ] && return 0
  [ $rc = 124 ] && log "$peer: $what: no result after $STEP_TIMEOUT s (hang?)"
  log "$peer: $what failed (exit status $rc); last lines of $PEER_LOG:"; tail -20 "$PEER_LOG" >&2
  return 1
}
# rclone-writes: wait for the end of the background upload of run$2.bin. rclone logs
# "run$2.bin: Copied" (at -v) once the upload has completed; watching its log every 0.1 s costs
# next to nothing, whereas polling `rclone lsl` (a new process and a LIST each time) took CPU
# from the upload being timed. rclone_listed then confirms the object, untimed.
rclone_uploaded() { # mode run
  local deadline=$(( $(date +%s) + STEP_TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    grep -q "run$2\.bin: Copied" "$PEER_LOG" && return 0
    kill -0 "$PEER_PID" 2>/dev/null || { log "rclone-$1: daemon exited before the upload completed"; return 1; }
    sleep 0.1
  done
  log "rclone-$1: upload of run$2.bin not finished after $STEP_TIMEOUT s"; tail -20 "$PEER_LOG" >&2
  return 1
}
# the crypt remote lists run$2.bin with the full size
rclone_listed() { # mode run
  rcl lsl --max-depth 1 "crypt-$1:" 2>/dev/null \
    | awk -v n="run$2.bin" -v s="$SIZE" '$1 == s && $NF == n { f = 1 } END { exit !f }' \
    || { log "rclone-$1: run$2.bin is not listed in the bucket with $SIZE bytes"; return 1; }
}
peer_write() { # peer run
  local p=$1 r=$2 f c0 g0 t0 t1 c1 g1 t2 c2 g2
  f=$(peer_file "$p" "$r")
  drop_caches; cat "$DATA" > /dev/null; settle
  peer_mount "$p" "$p-write-$r.log" || return 1
  c0=$(cpu_ticks "$PEER_PID"); g0=$(cpu_ticks "$GARAGE_PID"); t0=$(now)
  pstep "$p" "cp to the mount" cp "$DATA" "$f" || return 1
  t1=$(now); c1=$(cpu_ticks "$PEER_PID"); g1=$(cpu_ticks "$GARAGE_PID")
  t2=$t1; c2=$c1; g2=$g1
  if [ "$p" = rclone-writes ]; then
    rclone_uploaded writes "$r" || return 1
    t2=$(now); c2=$(cpu_ticks "$PEER_PID"); g2=$(cpu_ticks "$GARAGE_PID")
  fi
  PW_RSS[$p,$r]=$(calc "$(vm_hwm "$PEER_PID") / 1024" 0)
  [ "$p" != rclone-writes ] || rclone_listed writes "$r" || return 1
  PW[$p,$r]=$(mibps "$(calc "$t1 - $t0" 3)")
  PWC[$p,$r]=$(mibps "$(calc "$t2 - $t0" 3)")
  PW_CPU[$p,$r]=$(per_gib $((c2 - c0))); PW_G[$p,$r]=$(per_gib $((g2 - g0)))
  peer_unmount "$p" || return 1
  if [ "$p" = rclone-writes ]; then
    log "run $r: $p cp ${PW[$p,$r]} MiB/s to cp's return, ${PWC[$p,$r]} MiB/s until in the bucket, daemon ${PW_RSS[$p,$r]} MiB peak, ${PW_CPU[$p,$r]} CPU s/GiB"
  else
    log "run $r: $p cp ${PW[$p,$r]} MiB/s, daemon ${PW_RSS[$p,$r]} MiB peak, ${PW_CPU[$p,$r]} CPU s/GiB"
  fi
}
peer_read() { # peer run
  local p=$1 r=$2 f c0 g0 t0 t1 c1 g1 size
  f=$(peer_file "$p" "$r")
  peer_mount "$p" "$p-read-$r.log" || return 1
  drop_caches; settle
  c0=$(cpu_ticks "$PEER_PID"); g0=$(cpu_ticks "$GARAGE_PID"); t0=$(now)
  pstep "$p" "cold read through the mount" sh -c 'cat "$1" > /dev/null' sh "$f" || return 1
  t1=$(now); c1=$(cpu_ticks "$PEER_PID"); g1=$(cpu_ticks "$GARAGE_PID")
  PR_RSS[$p,$r]=$(calc "$(vm_hwm "$PEER_PID") / 1024" 0)
  PR[$p,$r]=$(mibps "$(calc "$t1 - $t0" 3)"); PR_CPU[$p,$r]=$(per_gib $((c1 - c0))); PR_G[$p,$r]=$(per_gib $((g1 - g0)))
  peer_unmount "$p" || return 1
  log "run $r: $p cat ${PR[$p,$r]} MiB/s, daemon ${PR_RSS[$p,$r]} MiB peak, ${PR_CPU[$p,$r]} CPU s/GiB"
  # integrity, on another fresh mount, cold
  peer_mount "$p" "$p-verify-$r.log" || return 1
  drop_caches
  size=$(stat -c %s "$f") || return 1
  [ "$size" = "$SIZE" ] || { log "$p: run$r.bin has size $size through the mount, expected $SIZE"; return 1; }
  pstep "$p" "cmp of the data read back" cmp "$DATA" "$f" || return 1
  log "run $r: $p: data read back is identical (cmp)"
  rm "$f" || return 1
  peer_unmount "$p"
}
peer_bench() { # peer run
  local rc=0
  { peer_write "$1" "$2" && peer_read "$1" "$2"; } || rc=1
  if [ $rc != 0 ]; then
    PFAIL[$1]="${PFAIL[$1]:-}${PFAIL[$1]:+, }run $2"
    log "run $2: $1 FAILED; it is left out of this run's figures (logs in $LOGS)"
    if mountpoint -q "$PMNT"; then umount "$PMNT" 2>/dev/null || umount -l "$PMNT"; fi
    if [ -n "$PEER_PID" ]; then
      kill "$PEER_PID" 2>/dev/null; sleep 1; kill -9 "$PEER_PID" 2>/dev/null; wait "$PEER_PID" 2>/dev/null
      PEER_PID=""
    fi
    [ -z "$PEER_CACHE" ] || rm -rf "$PEER_CACHE"; PEER_CACHE=""
  fi
  return 0
}
if [ -n "$PEERS" ]; then
  peers_setup || die "peer configuration"
  log "peers: $PEERS ($(peer_versions))"
fi

# ---------------------------------------------------------------------------------------------
# (c) runs
log "size ${SIZE_MIB} MiB, $RUNS run(s), work dir $WORK"
for r in $(has_w 1 && seq "$RUNS"); do
  log "run $r: generating ${SIZE_MIB} MiB of fresh random data"
  head -c "$SIZE" /dev/urandom > "$DATA"
  if [ $((r % 2)) = 1 ]; then
    baseline_upload "$r"; fs_write "$r"; baseline_download "$r"; fs_read "$r"
  else
    fs_write "$r"; baseline_upload "$r"; fs_read "$r"; baseline_download "$r"
  fi
  "$BASE" delete "baseline/run$r.bin" > /dev/null
  # (c2) peers: a second fresh file (see the header), the peer order rotating between runs
  if [ -n "$PEERS" ]; then
    log "run $r: peers: generating another ${SIZE_MIB} MiB of fresh random data"
    head -c "$SIZE" /dev/urandom > "$DATA"
    read -r -a order <<< "$PEERS"
    n=${#order[@]}
    for i in $(seq 0 $((n - 1))); do peer_bench "${order[$(((i + r - 1) % n))]}" "$r"; done
  fi
done
rm -f "$DATA"

# ---------------------------------------------------------------------------------------------
# (e) workloads 2-4 (BENCH_WORKLOADS): small files, cold `ls -l` of a big directory, rsync.
# Every system (s3cryptfs and each peer) gets its own directory w2/w3/w4 under its mount root
# and a fresh mount per step; a failing step is recorded as failed and the next system goes on.
# The plain client for workloads 2 and 3 is rclone on the plain s3 remote (no FUSE, no
# encryption): examples/s3_baseline has no small-file or listing mode.
T=""; T0=""; ERR=""
# run a timed command: sets T0, T (seconds) and, on failure, ERR (exit status, first stderr line)
tstep() { # errfile command...
  local ef=$1 rc=0; shift
  T0=$(now)
  timeout "$STEP_TIMEOUT" "$@" 2> "$ef" || rc=$?
  T=$(calc "$(now) - $T0" 2)
  ERR=""
  [ $rc = 0 ] || ERR="exit status $rc$([ $rc = 124 ] && echo ' (timeout)'): $(grep -m1 . "$ef" | cut -c1-200 | tr '|' '/')"
  return $rc
}
# fresh random trees (the data is fresh per system: Garage deduplicates blocks, and s3fs and
# rclone plain store plain text)
gen_tree() { # small|tiny|mixed dir n
  rm -rf "$2"
  python3 - "$@" <<'PY'
import os, random, sys
mode, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.SystemRandom()
os.makedirs(root)
def put(path, size):
    with open(path, "wb") as f:
        f.write(os.urandom(size))
if mode == "small":      # n files of 1-64 KiB in 20 directories
    for d in range(20):
        os.mkdir(f"{root}/d{d:02d}")
    for i in range(n):
        put(f"{root}/d{i % 20:02d}/f{i:05d}.bin", rnd.randint(1024, 65536))
elif mode == "tiny":     # n files of 64 bytes in one directory
    for i in range(n):
        put(f"{root}/f{i:05d}", 64)
else:                    # n files, 1 KiB-2 MiB (log-uniform), in nested directories, + an empty one
    dirs = ["", "docs", "docs/old", "src", "src/lib", "src/lib/deep", "media"]
    for d in dirs[1:] + ["empty"]:
        os.makedirs(f"{root}/{d}")
    for i in range(n):
        d = dirs[i % len(dirs)]
        put(f"{root}/{d + '/' if d else ''}file{i:03d}.dat", int(1024 * 2 ** rnd.uniform(0, 11)))
PY
}
tree_md5() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 cat | md5sum | cut -c1-32); }
SYS_DIR=""; XLOG=""
xmount() { # system logname [debug]
  if [ "$1" = s3cryptfs ]; then
    if [ "${3:-}" = debug ]; then mount_fs "$2" --log-level debug; else mount_fs "$2"; fi
    XLOG=$DAEMON_LOG; SYS_DIR=$MNT
  else
    peer_mount "$1" "$2" "${3:-}" || return 1
    XLOG=$PEER_LOG; SYS_DIR=$PMNT; [ "$1" != s3fs ] || SYS_DIR=$PMNT/s3fs
  fi
}
xumount() { if [ "$1" = s3cryptfs ]; then unmount_fs; else peer_unmount "$1"; fi; }
# after a failure: take the mount down whatever state it is in
xabort() {
  if [ "$1" = s3cryptfs ]; then
    if mountpoint -q "$MNT"; then unmount_fs; fi
    return 0
  fi
  if mountpoint -q "$PMNT"; then umount "$PMNT" 2>/dev/null || umount -l "$PMNT"; fi
  if [ -n "$PEER_PID" ]; then
    kill "$PEER_PID" 2>/dev/null; sleep 1; kill -9 "$PEER_PID" 2>/dev/null; wait "$PEER_PID" 2>/dev/null
    PEER_PID=""
  fi
  [ -z "$PEER_CACHE" ] || rm -rf "$PEER_CACHE"; PEER_CACHE=""
  return 0
}
# rclone-writes: wait until rclone has logged at least $1 completed uploads ("...: Copied")
rclone_copied() { # count [timeout s]
  local deadline=$(( $(date +%s) + ${2:-$STEP_TIMEOUT} ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    [ "$(grep -c ': Copied' "$PEER_LOG")" -ge "$1" ] && return 0
    kill -0 "$PEER_PID" 2>/dev/null || { ERR="rclone exited before the uploads completed"; return 1; }
    sleep 0.1
  done
  ERR="only $(grep -c ': Copied' "$PEER_LOG") of $1 uploads completed after ${2:-$STEP_TIMEOUT} s"
  return 1
}
sname() {
  case $1 in
    s3cryptfs) echo "s3cryptfs";;
    plain) echo "plain client: rclone copy / lsl / purge on the s3 remote (no FUSE, no encryption)";;
    rclone-writes) echo "rclone crypt mount, \`--vfs-cache-mode writes\`";;
    rclone-off) echo "rclone crypt mount, \`--vfs-cache-mode off\`";;
    s3fs) echo "s3fs (no encryption)";;
    mountpoint-s3) echo "mountpoint-s3 (no encryption)";;
    *) echo "$1";;
  esac
}
# Results of workloads 2-4, per (table|system|step number), over the runs: the step's name,
# its times (";"-separated, "failed ..." for a failed run), the last note and the requests.
declare -A RNAME RVAL RNOTE RREQ
RORDER=()
STEPN=0
row() { # table system step seconds [notes] [requests]
  STEPN=$((STEPN + 1))
  local k="${1%ROWS}|$2|$STEPN"
  [ -n "${RNAME[$k]+x}" ] || RORDER+=("$k")
  RNAME[$k]=$3
  RVAL[$k]="${RVAL[$k]:-}$4;"
  RNOTE[$k]=${5:-}
  RREQ[$k]="${RREQ[$k]:-}${6:-};"
}
# a plain rclone s3 remote even when no rclone peer is configured
plain_setup() {
  [ -f "$RCONF" ] && return 0
  (umask 077 && cat > "$RCONF" <<EOF
[s3local]
type = s3
provider = Other
endpoint = $EP
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
region = us-east-1
force_path_style = true
EOF
  )
}
PLAIN=$BUCKET/rclone-plain

# workload 2: small files
w2_sys() { # system
  local s=$1 src=$WORK/w2-src sum got note n
  gen_tree small "$src" "$SMALL_N" || { row W2ROWS "$s" "generate" failed "generator failed"; return 1; }
  sum=$(tree_md5 "$src")   # also brings the source into the page cache
  settle
  if [ "$s" = plain ]; then
    tstep "$LOGS/plain-w2-cp.err" rclone --config "$RCONF" copy "$src" "s3local:$PLAIN/w2$RSUF" \
      || { row W2ROWS "$s" "\`rclone copy\` (create)" failed "$ERR"; return 1; }
    row W2ROWS "$s" "\`rclone copy\` (create, until in the bucket)" "$T"
    drop_caches; settle
    tstep "$LOGS/plain-w2-ls.err" sh -c 'rclone --config "$1" lsl "$2" > "$3"' sh "$RCONF" "s3local:$PLAIN/w2$RSUF" "$WORK/w2-ls.out" \
      || { row W2ROWS "$s" "\`rclone lsl\`" failed "$ERR"; return 1; }
    n=$(wc -l < "$WORK/w2-ls.out")
    row W2ROWS "$s" "\`rclone lsl\` (cold listing)" "$T" "$n files listed"
    rm -rf "$WORK/w2-dl"; settle
    tstep "$LOGS/plain-w2-read.err" rclone --config "$RCONF" copy "s3local:$PLAIN/w2$RSUF" "$WORK/w2-dl" \
      || { row W2ROWS "$s" "\`rclone copy\` back (read)" failed "$ERR"; return 1; }
    got=$(tree_md5 "$WORK/w2-dl"); note="content identical (md5 of all files)"
    [ "$got" = "$sum" ] || note="**content differs**"
    row W2ROWS "$s" "\`rclone copy\` back to local disk (read)" "$T" "$note"
    rm -rf "$WORK/w2-dl"; settle
    tstep "$LOGS/plain-w2-rm.err" rclone --config "$RCONF" purge "s3local:$PLAIN/w2$RSUF" \
      || { row W2ROWS "$s" "\`rclone purge\`" failed "$ERR"; return 1; }
    row W2ROWS "$s" "\`rclone purge\` (delete)" "$T"
    rm -rf "$src"; return 0
  fi
  xmount "$s" "$s-w2-cp.log" || { row W2ROWS "$s" "mount" failed "see $s-w2-cp.log"; return 1; }
  tstep "$LOGS/$s-w2-cp.err" cp -r "$src" "$SYS_DIR/w2$RSUF" \
    || { row W2ROWS "$s" "\`cp -r\`" failed "$ERR"; return 1; }
  if [ "$s" = rclone-writes ]; then
    local tcp=$T
    rclone_copied "$SMALL_N" || { row W2ROWS "$s" "\`cp -r\` until uploaded" failed "$ERR"; return 1; }
    T=$(calc "$(now) - $T0" 2)
    row W2ROWS "$s" "\`cp -r\` (until all uploads completed)" "$T" "cp itself returned after $tcp s"
  else
    row W2ROWS "$s" "\`cp -r\` (until cp returns)" "$T"
  fi
  xumount "$s" || { row W2ROWS "$s" "umount" failed ""; return 1; }
  xmount "$s" "$s-w2-ls.log" || return 1
  drop_caches; settle
  tstep "$LOGS/$s-w2-ls.err" sh -c 'ls -lR "$1" > "$2"' sh "$SYS_DIR/w2$RSUF" "$WORK/w2-ls.out" \
    || { row W2ROWS "$s" "\`ls -lR\` cold" failed "$ERR"; return 1; }
  n=$(grep -c '^-' "$WORK/w2-ls.out")
  row W2ROWS "$s" "\`ls -lR\` (cold, fresh mount)" "$T" "$n files listed"
  xumount "$s" || return 1
  xmount "$s" "$s-w2-read.log" || return 1
  drop_caches; settle
  tstep "$LOGS/$s-w2-read.err" sh -c 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 cat | md5sum | cut -c1-32 > "$2"' \
    sh "$SYS_DIR/w2$RSUF" "$WORK/w2-md5.out" || { row W2ROWS "$s" "read all" failed "$ERR"; return 1; }
  note="content identical (md5 of all files)"
  [ "$(cat "$WORK/w2-md5.out")" = "$sum" ] || note="**content differs from the source**"
  row W2ROWS "$s" "read all (\`cat\` every file, cold, fresh mount)" "$T" "$note"
  xumount "$s" || return 1
  xmount "$s" "$s-w2-rm.log" || return 1
  settle
  tstep "$LOGS/$s-w2-rm.err" rm -rf "$SYS_DIR/w2$RSUF" || { row W2ROWS "$s" "\`rm -rf\`" failed "$ERR"; return 1; }
  row W2ROWS "$s" "\`rm -rf\` (fresh mount)" "$T"
  xumount "$s" || return 1
  rm -rf "$src"
}

# workload 3: cold `ls -l` of one directory of LS_N files, with the S3 requests it makes
w3_sys() { # system
  local s=$1 src=$WORK/w3-src n l0 req ops note
  gen_tree tiny "$src" "$LS_N" || { row W3ROWS "$s" "generate" failed "generator failed"; return 1; }
  if [ "$s" = plain ]; then
    tstep "$LOGS/plain-w3-cp.err" rclone --config "$RCONF" copy "$src" "s3local:$PLAIN/w3$RSUF" \
      || { row W3ROWS "$s" "create (untimed)" failed "$ERR"; return 1; }
    local tc=$T
    drop_caches; settle
    tstep "$LOGS/plain-w3-ls.err" sh -c 'rclone --config "$1" lsl --max-depth 1 "$2" -vv --dump headers --log-file "$4" > "$3"' \
      sh "$RCONF" "s3local:$PLAIN/w3$RSUF" "$WORK/w3-ls.out" "$LOGS/plain-w3-ls.log" \
      || { row W3ROWS "$s" "\`rclone lsl\`" failed "$ERR"; return 1; }
    n=$(wc -l < "$WORK/w3-ls.out")
    req=$(grep -c 'HTTP REQUEST' "$LOGS/plain-w3-ls.log")
    row W3ROWS "$s" "\`rclone lsl --max-depth 1\` (cold)" "$T" "$n entries; create took $tc s (untimed step); requests from \`--dump headers\`" "$req"
    rm -rf "$src"; return 0
  fi
  # create, untimed (its time goes into the notes for information only)
  xmount "$s" "$s-w3-create.log" || { row W3ROWS "$s" "mount" failed ""; return 1; }
  tstep "$LOGS/$s-w3-cp.err" cp -r "$src" "$SYS_DIR/w3$RSUF" \
    || { row W3ROWS "$s" "create (\`cp -r\`, untimed)" failed "$ERR"; return 1; }
  if [ "$s" = rclone-writes ]; then
    rclone_copied "$LS_N" || { row W3ROWS "$s" "create (uploads)" failed "$ERR"; return 1; }
    T=$(calc "$(now) - $T0" 2)
  fi
  local tc=$T tls
  xumount "$s" || return 1
  # Timed on a fresh mount at the default log level; the requests are counted on another
  # fresh mount with request logging on, untimed (logging every request costs time).
  xmount "$s" "$s-w3-ls.log" || return 1
  drop_caches; settle
  tstep "$LOGS/$s-w3-ls.err" sh -c 'ls -l "$1" > "$2"' sh "$SYS_DIR/w3$RSUF" "$WORK/w3-ls.out" \
    || { row W3ROWS "$s" "\`ls -l\` cold" failed "$ERR"; return 1; }
  tls=$T
  n=$(grep -c '^-' "$WORK/w3-ls.out")
  note="$n files listed; create took $tc s (untimed)"
  req="n/a"
  case $s in
    s3cryptfs|rclone-*)
      xumount "$s" || return 1
      xmount "$s" "$s-w3-count.log" debug || return 1
      drop_caches; settle
      l0=$(wc -l < "$XLOG")
      ls -l "$SYS_DIR/w3$RSUF" > /dev/null 2> "$LOGS/$s-w3-count.err" \
        || { row W3ROWS "$s" "\`ls -l\` (counting requests)" failed "see $LOGS/$s-w3-count.err"; return 1; }
      sleep 0.2   # let the log catch up
      ;;
  esac
  case $s in
    s3cryptfs)
      req=$(tail -n +"$((l0 + 1))" "$XLOG" | grep -c 's3 request')
      ops=$(tail -n +"$((l0 + 1))" "$XLOG" | grep 's3 request' | grep -o 'op=[A-Za-z0-9]*' | sort | uniq -c \
        | awk '{ sub(/^op=/, "", $2); printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')
      note="$note; requests (counted on a second cold mount at --log-level debug, untimed): ${ops:-none}";;
    rclone-*)
      req=$(tail -n +"$((l0 + 1))" "$XLOG" | grep -c 'HTTP REQUEST')
      note="$note; requests counted on a second cold mount with \`-vv --dump headers\`, untimed";;
  esac
  T=$tls
  row W3ROWS "$s" "\`ls -l\` (cold, fresh mount)" "$T" "$note" "$req"
  xumount "$s" || return 1
  rm -rf "$src"
}

# workload 5: reads by name with nothing listed first, as a script that knows its paths does:
# `sha256sum -c` of small files, then 8 concurrent readers of 64 MiB files
w5_sys() { # system
  local s=$1 src=$WORK/w5-src dst
  gen_tree small "$src/small" "$BYNAME_N" || { row W5ROWS "$s" "generate" failed "generator failed"; return 1; }
  (cd "$src/small" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$WORK/w5-small.sha256"
  mkdir "$src/big"
  local i
  for i in 1 2 3 4 5 6 7 8; do head -c $((64 << 20)) /dev/urandom > "$src/big/b$i"; done
  (cd "$src/big" && sha256sum b?) > "$WORK/w5-big.sha256"
  # create, untimed
  xmount "$s" "$s-w5-create.log" || { row W5ROWS "$s" "mount" failed ""; return 1; }
  dst=$SYS_DIR/w5$RSUF
  tstep "$LOGS/$s-w5-cp.err" cp -r "$src" "$dst" || { row W5ROWS "$s" "create (\`cp -r\`, untimed)" failed "$ERR"; return 1; }
  if [ "$s" = rclone-writes ]; then
    rclone_copied $((BYNAME_N + 8)) || { row W5ROWS "$s" "create (uploads)" failed "$ERR"; return 1; }
  fi
  xumount "$s" || return 1
  xmount "$s" "$s-w5-small.log" || return 1
  drop_caches; settle
  tstep "$LOGS/$s-w5-small.err" sh -c 'cd "$1" && sha256sum --quiet --strict -c "$2"' sh "$dst/small" "$WORK/w5-small.sha256" \
    || { row W5ROWS "$s" "\`sha256sum -c\` of ${BYNAME_N} small files" failed "$ERR"; return 1; }
  row W5ROWS "$s" "\`sha256sum -c\` of ${BYNAME_N} small files by name (cold, fresh mount)" "$T" \
    "$(calc "$BYNAME_N / $T" 0) files/s; every checksum matched"
  xumount "$s" || return 1
  xmount "$s" "$s-w5-big.log" || return 1
  drop_caches; settle
  # shellcheck disable=SC2016  # expanded by that shell
  tstep "$LOGS/$s-w5-big.err" sh -c 'cd "$1" || exit 1; pids=""
    for f in b1 b2 b3 b4 b5 b6 b7 b8; do cat "$f" > /dev/null & pids="$pids $!"; done
    rc=0; for p in $pids; do wait "$p" || rc=1; done; exit $rc' sh "$dst/big" \
    || { row W5ROWS "$s" "8 concurrent readers" failed "$ERR"; return 1; }
  row W5ROWS "$s" "8 concurrent \`cat\`s of 64 MiB files (cold, fresh mount)" "$T" "$(calc "512 / $T" 0) MiB/s in all"
  xumount "$s" || return 1
  # integrity of what the concurrent readers were served, untimed, on a fresh mount
  xmount "$s" "$s-w5-check.log" || return 1
  drop_caches
  (cd "$dst/big" && sha256sum --quiet --strict -c "$WORK/w5-big.sha256") > "$LOGS/$s-w5-check.out" 2>&1 \
    || { row W5ROWS "$s" "64 MiB files read back" failed "checksums differ: $LOGS/$s-w5-check.out"; return 1; }
  xumount "$s" || return 1
  rm -rf "$src"
}

# workload 4: rsync -a of a mixed tree, then again (what does it re-send?)
w4_sys() { # system
  local s=$1 src=$WORK/w4-src nf rc x
  gen_tree mixed "$src" 300 || { row W4ROWS "$s" "generate" failed "generator failed"; return 1; }
  touch -d '2019-06-01 12:00:00' "$src"/file000.dat "$src"/docs/file001.dat "$src"/src/lib/file004.dat
  touch -d '2015-01-15 08:30:00' "$src"/media/file006.dat "$src"/docs/old/file002.dat
  nf=$(find "$src" -type f | wc -l)
  cat "$src"/*/* "$src"/*.dat > /dev/null 2>&1; settle
  xmount "$s" "$s-w4-rsync1.log" || { row W4ROWS "$s" "mount" failed ""; return 1; }
  rc=0
  tstep "$LOGS/$s-w4-rsync1.err" rsync -a "$src/" "$SYS_DIR/w4$RSUF/" || rc=$?
  if [ $rc != 0 ] && [ $rc != 23 ] && [ $rc != 24 ]; then
    row W4ROWS "$s" "\`rsync -a\` (first run)" "failed ($T s)" "$ERR"; return 1
  fi
  x=$([ $rc = 0 ] || echo "**failed**: $ERR; ")
  if [ "$s" = rclone-writes ]; then
    local tr=$T
    if rclone_copied "$nf" 60; then T=$(calc "$(now) - $T0" 2); x="${x}rsync returned after $tr s, uploads completed after $T s"
    else x="${x}rsync returned after $tr s; $ERR"; fi
  fi
  # a partial transfer (23/24) is not a time to compare: recorded as failed, with its time
  row W4ROWS "$s" "\`rsync -a\` (first run, $nf files, $(du -sm "$src" | cut -f1) MiB)" "$([ $rc = 0 ] && echo "$T" || echo "failed ($T s)")" "$x"
  xumount "$s" || return 1
  xmount "$s" "$s-w4-rsync2.log" || return 1
  settle
  rc=0
  tstep "$LOGS/$s-w4-rsync2.err" sh -c 'rsync -a --itemize-changes "$1/" "$2/" > "$3"' sh "$src" "$SYS_DIR/w4$RSUF" "$WORK/w4-items.out" || rc=$?
  if [ $rc != 0 ] && [ $rc != 23 ] && [ $rc != 24 ]; then
    row W4ROWS "$s" "\`rsync -a --itemize-changes\` (second run, fresh mount)" "failed ($T s)" "$ERR"; return 1
  fi
  x=$([ $rc = 0 ] || echo "**failed**: $ERR; ")
  local again other
  again=$(grep -c '^>f' "$WORK/w4-items.out")
  other=$(grep -vc '^>f' "$WORK/w4-items.out")
  x="${x}$again of $nf files transferred again; $other other itemized lines"
  [ "$again" = 0 ] || x="$x (e.g. \`$(grep -m1 '^>f' "$WORK/w4-items.out")\`)"
  row W4ROWS "$s" "\`rsync -a --itemize-changes\` (second run, fresh mount)" "$([ $rc = 0 ] && echo "$T" || echo "failed ($T s)")" "$x"
  xumount "$s" || return 1
  rm -rf "$src"
}

XSYS="s3cryptfs $PEERS"
XPLAIN=""
if has_w 2 || has_w 3 || has_w 4; then
  if command -v rclone > /dev/null && { has_w 2 || has_w 3; }; then
    plain_setup && XPLAIN=plain || log "rclone plain remote: configuration failed; no plain client"
  fi
fi
for r in $(seq "$RUNS"); do
RSUF=-r$r   # each run writes its own directories
for w in 2 3 4 5; do
  has_w "$w" || continue
  sys=$XSYS; [ "$w" = 4 ] || [ "$w" = 5 ] || sys="$XPLAIN $XSYS"
  for s in $sys; do
    log "workload $w: $s (run $r)"
    STEPN=0
    "w${w}_sys" "$s" || { log "workload $w: $s FAILED (see the table and $LOGS)"; xabort "$s"; }
  done
done
done

# ---------------------------------------------------------------------------------------------
# (d) report
mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
m() { median "$@"; }
fw=$(m "${FW[@]}"); bu=$(m "${BU[@]}"); fr=$(m "${FR[@]}"); bd=$(m "${BD[@]}")
# Baseline and s3cryptfs run back to back within a run, so the ratio of a run's pair is
# untouched by how the machine drifts between runs (Garage's CPU per GiB alone varies by a
# third): the median of those per-run ratios is reported beside the ratio of the medians.
# run_ratio 'FW[r]' 'BU[r]': n/a (never a number) when a figure is missing
run_ratio() {
  if [ -n "${!1:-}" ] && [ -n "${!2:-}" ]; then calc "${!1} / ${!2}" 3; else printf 'n/a'; fi
}
paired() { # numerator and denominator arrays: the median of the per-run ratios there are
  local r
  for r in $(seq "$RUNS"); do run_ratio "$1[$r]" "$2[$r]"; echo; done | sort -g |
    awk '$1 != "n/a" { a[++n] = $1 } END { if (n == 0) printf "n/a"; else if (n % 2) printf "%.2f", a[(n + 1) / 2]; else printf "%.2f", (a[n / 2] + a[n / 2 + 1]) / 2 }'
}

# peers: medians over the runs in which the peer completed
pvals() { # array peer -> its values, one per completed run
  local -n arr=$1
  local r
  for r in $(seq "$RUNS"); do [ -z "${arr[$2,$r]:-}" ] || echo "${arr[$2,$r]}"; done
}
pmed() { local v; v=$(pvals "$1" "$2"); [ -n "$v" ] && median $v; }
peer_section() {
  local p w rd n best_w="" best_wp="" best_r="" best_rp=""
  echo
  echo "## Peers, same Garage and bucket, same run"
  echo
  echo "Versions: $(peer_versions). Each peer on its own fresh mount per step, its own key prefix; ${SIZE_MIB} MiB of fresh random data per run; medians over the runs it completed."
  echo
  echo "| system | workload | MiB/s | ratio to baseline | peak RSS MiB | CPU s/GiB |"
  echo "|---|---|---|---|---|---|"
  echo "| plain SDK client (baseline) | write (upload until complete) | ${bu} | 1.00 | | |"
  echo "| s3cryptfs | write (\`cp\` until it returns; object complete) | ${fw} | $(calc "$fw / $bu" 2) | $(m "${FW_RSS[@]}") | $(m "${FW_CPU[@]}") |"
  for p in $PEERS; do
    n=$(pvals PW "$p" | wc -l)
    if [ "$n" = 0 ]; then echo "| $(sname "$p") | write | failed | | | |"; continue; fi
    w=$(pmed PW "$p")
    if [ "$p" = rclone-writes ]; then
      echo "| $(sname "$p") | write, \`cp\` until it returns (**upload not finished**: file only in rclone's local cache) | ${w} | $(calc "$w / $bu" 2) | | |"
      w=$(pmed PWC "$p")
      echo "| $(sname "$p") | write, \`cp\` until the upload has completed (rclone's log; then listed with \`rclone lsl\`) | ${w} | $(calc "$w / $bu" 2) | $(pmed PW_RSS "$p") | $(pmed PW_CPU "$p") |"
    else
      echo "| $(sname "$p") | write (\`cp\` until it returns; object complete) | ${w} | $(calc "$w / $bu" 2) | $(pmed PW_RSS "$p") | $(pmed PW_CPU "$p") |"
    fi
    # the fastest peer by the time until the object is complete
    w=$(pmed PWC "$p")
    if [ -z "$best_w" ] || awk "BEGIN { exit !($w > $best_w) }"; then best_w=$w; best_wp=$p; fi
  done
  echo "| plain SDK client (baseline) | cold read (download) | ${bd} | 1.00 | | |"
  echo "| s3cryptfs | cold read (\`cat > /dev/null\`, fresh mount) | ${fr} | $(calc "$fr / $bd" 2) | $(m "${FR_RSS[@]}") | $(m "${FR_CPU[@]}") |"
  for p in $PEERS; do
    n=$(pvals PR "$p" | wc -l)
    if [ "$n" = 0 ]; then echo "| $(sname "$p") | cold read | failed | | | |"; continue; fi
    rd=$(pmed PR "$p")
    echo "| $(sname "$p") | cold read (\`cat > /dev/null\`, fresh mount) | ${rd} | $(calc "$rd / $bd" 2) | $(pmed PR_RSS "$p") | $(pmed PR_CPU "$p") |"
    if [ -z "$best_r" ] || awk "BEGIN { exit !($rd > $best_r) }"; then best_r=$rd; best_rp=$p; fi
  done
  echo
  if [ -n "$best_w" ]; then
    echo "Best peer, write (until the object is complete): $(sname "$best_wp") at ${best_w} MiB/s; s3cryptfs / best peer = **$(calc "$fw / $best_w" 2)**."
  fi
  if [ -n "$best_r" ]; then
    echo "Best peer, cold read: $(sname "$best_rp") at ${best_r} MiB/s; s3cryptfs / best peer = **$(calc "$fr / $best_r" 2)**."
  fi
  echo
  echo "rclone: crypt remote (standard filename encryption) over an s3 remote (provider Other, path style), default chunk size and concurrency, \`--vfs-write-back ${BENCH_RCLONE_WRITE_BACK:-0s}\`, a fresh empty VFS cache per mount. With \`--vfs-cache-mode writes\`, \`cp\` returns once the file is in rclone's local disk cache and the upload runs afterwards; its CPU and RSS are taken at the end of the upload. s3fs: default options (\`use_path_request_style\`), no encryption. For every peer the file read back through a fresh mount was compared with the source (cmp) in each run it completed."
  for p in $PEERS; do
    [ -z "${PFAIL[$p]:-}" ] || echo "**$(sname "$p") failed in ${PFAIL[$p]}** (left out of the medians; see the logs)."
  done
  echo
  echo "Per run, peers (MiB/s; Garage CPU s/GiB in parentheses):"
  echo
  echo "| run | system | write (cp returns) | write (object complete) | cold read | daemon RSS write / read MiB | daemon CPU s/GiB write / read |"
  echo "|---|---|---|---|---|---|---|"
  local r
  for r in $(seq "$RUNS"); do for p in $PEERS; do
    if [ -z "${PR[$p,$r]:-}" ]; then echo "| $r | $p | failed | | | | |"; continue; fi
    echo "| $r | $p | ${PW[$p,$r]} | ${PWC[$p,$r]} (${PW_G[$p,$r]}) | ${PR[$p,$r]} (${PR_G[$p,$r]}) | ${PW_RSS[$p,$r]} / ${PR_RSS[$p,$r]} | ${PW_CPU[$p,$r]} / ${PR_CPU[$p,$r]} |"
  done; done
}
PEER_REPORT=""
if [ -n "$PEERS" ] && has_w 1; then PEER_REPORT=$(peer_section); fi
W1_REPORT=""
if has_w 1; then W1_REPORT=$(cat <<EOF
${SIZE_MIB} MiB of fresh random data per run, ${RUNS} run(s), medians. Client, daemon and Garage share the machine.

| workload | s3cryptfs MiB/s | baseline MiB/s | ratio (of the medians) | median of the per-run ratios | peak RSS MiB | CPU s/GiB |
|---|---|---|---|---|---|---|
| sequential write (\`cp\` until the object is complete) | ${fw} | ${bu} | $(calc "$fw / $bu" 2) | $(paired FW BU) | $(m "${FW_RSS[@]}") | $(m "${FW_CPU[@]}") |
| cold sequential read (\`cat > /dev/null\`, fresh mount) | ${fr} | ${bd} | $(calc "$fr / $bd" 2) | $(paired FR BD) | $(m "${FR_RSS[@]}") | $(m "${FR_CPU[@]}") |

Baseline: \`examples/s3_baseline.rs\`, the same store API with no FUSE and no encryption
(multipart upload of 8,392,704-byte parts, 4 in flight; ranged GETs of 8 MiB, 4 in flight).
Peak RSS and CPU are the mount daemon's (VmHWM; utime+stime during the cp or cat).
Data read back through a fresh mount was identical to what was written (cmp), every run.
Each run measures the baseline and s3cryptfs back to back (the order alternating between
runs); the median of the per-run ratios is the steadier figure when the machine drifts
between runs, the ratio of the medians the stricter one when it does not.

Per run (MiB/s; Garage CPU s/GiB in parentheses):

| run | baseline upload | s3cryptfs write | baseline download | s3cryptfs read | ratio write / read | daemon RSS write / read MiB | daemon CPU s/GiB write / read |
|---|---|---|---|---|---|---|---|
$(for r in $(seq "$RUNS"); do
  echo "| $r | ${BU[$r]} (${BU_G[$r]}) | ${FW[$r]} (${FW_G[$r]}) | ${BD[$r]} (${BD_G[$r]}) | ${FR[$r]} (${FR_G[$r]}) | $(run_ratio "FW[$r]" "BU[$r]") / $(run_ratio "FR[$r]" "BD[$r]") | ${FW_RSS[$r]} / ${FR_RSS[$r]} | ${FW_CPU[$r]} / ${FR_CPU[$r]} |"
done)
| range | $(range "${BU[@]}") | $(range "${FW[@]}") | $(range "${BD[@]}") | $(range "${FR[@]}") | | | |
EOF
)
fi
# workloads 2-4: one table each, built from the records
nums() { tr ';' '\n' <<< "$1" | grep -E '^[0-9]+(\.[0-9]+)?$' || true; }
med_of() { local v; v=$(nums "$1"); if [ -n "$v" ]; then median $v; fi; }
ratio() { if [ -n "$1" ] && [ -n "$2" ]; then awk "BEGIN { if ($2 > 0) printf \"×%.2f\", $1 / $2 }"; fi; }
W2ROWS=() W3ROWS=() W4ROWS=() W5ROWS=()
build_rows() { # table
  local t=$1 k sys n med total ok shown plain best p pm x req
  local -n rows=${t}ROWS
  for k in "${RORDER[@]}"; do
    [[ $k == "$t|"* ]] || continue
    IFS='|' read -r _ sys n <<< "$k"
    med=$(med_of "${RVAL[$k]}")
    total=$(tr -cd ';' <<< "${RVAL[$k]}" | wc -c)
    ok=$(nums "${RVAL[$k]}" | grep -c . || true)
    if [ -z "$med" ]; then shown="failed"
    elif [ "$ok" -lt "$total" ]; then shown="$med ($((total - ok)) of $total runs failed)"
    else shown=$med; fi
    plain=""; [ "$sys" = plain ] || plain=$(ratio "$med" "$(med_of "${RVAL[$t|plain|$n]:-}")")
    best=""
    if [ "$sys" = s3cryptfs ]; then
      x=""
      for p in $PEERS; do
        pm=$(med_of "${RVAL[$t|$p|$n]:-}")
        if [ -n "$pm" ] && { [ -z "$x" ] || awk "BEGIN { exit !($pm < $x) }"; }; then x=$pm; fi
      done
      best=$(ratio "$med" "$x")
    fi
    req=$(med_of "${RREQ[$k]}")
    if [ "$t" = W3 ]; then rows+=("| $(sname "$sys") | ${RNAME[$k]} | $shown | ${plain:-–} | ${best:-–} | ${req:-n/a} | ${RNOTE[$k]} |")
    else rows+=("| $(sname "$sys") | ${RNAME[$k]} | $shown | ${plain:-–} | ${best:-–} | ${RNOTE[$k]} |"); fi
  done
}
build_rows W2; build_rows W3; build_rows W4; build_rows W5
extra_table() { # title header-row separator-row rows-array-name notes
  local -n rows=$4
  [ ${#rows[@]} -gt 0 ] || return 0
  echo
  echo "## $1"
  echo
  echo "$2"
  echo "$3"
  printf '%s\n' "${rows[@]}"
  echo
  echo "$5"
}
EXTRA_REPORT=$(
  extra_table "Workload 2: ${SMALL_N} small files (1–64 KiB, 20 directories)" \
    "| system | step | seconds (median of ${RUNS}) | time × plain client | time × best peer | notes (last run) |" "|---|---|---|---|---|---|" W2ROWS \
    "Fresh random data per system; each step on a fresh mount (cold steps with the page cache dropped). Read = \`cat\` of every file in sorted order piped to md5sum, compared with the source. Plain client: \`rclone copy\` up, \`rclone lsl\`, \`rclone copy\` back to local disk, \`rclone purge\` (default --transfers 4, --checkers 8)."
  extra_table "Workload 3: cold \`ls -l\` of a directory of ${LS_N} files" \
    "| system | step | seconds (median of ${RUNS}) | time × plain client | time × best peer | requests (median) | notes (last run) |" "|---|---|---|---|---|---|---|" W3ROWS \
    "Files of 64 bytes created untimed by \`cp -r\` into the mount (rclone-writes: until uploaded), then \`ls -l\` on a fresh mount with the page cache dropped. The timed \`ls -l\` runs at each system's default log level. Requests are counted untimed, by the same \`ls -l\` on another fresh mount with request logging on: s3cryptfs counts its \"s3 request\" lines at --log-level debug, rclone the \"HTTP REQUEST\" lines of \`--dump headers\`; s3fs and mountpoint-s3: not counted (n/a)."
  extra_table "Workload 4: \`rsync -a\` of a mixed tree" \
    "| system | step | seconds (median of ${RUNS}) | time × plain client | time × best peer | notes (last run) |" "|---|---|---|---|---|---|" W4ROWS \
    "Source: 300 files of 1 KiB–2 MiB (log-uniform sizes) of fresh random data in nested directories, an empty directory, five files with old mtimes (\`touch -d\`). Second run on a fresh mount; \"transferred again\" counts itemized lines starting with \`>f\`. rsync exit status 23/24 (partial transfer) is reported as failed with rsync's first error line, with the time it took."
  extra_table "Workload 5: reads by name, nothing listed first" \
    "| system | step | seconds (median of ${RUNS}) | time × plain client | time × best peer | notes (last run) |" "|---|---|---|---|---|---|" W5ROWS \
    "${BYNAME_N} files of 1–64 KiB in 20 directories and eight of 64 MiB, fresh random data, created untimed with \`cp -r\`. Each step on a fresh mount with the page cache dropped: \`sha256sum --strict -c\` over the small files' checksums (taken from the source), so each file is opened by its path without a listing; then eight \`cat\`s of the 64 MiB files at once. The big files' checksums are checked on another fresh mount, untimed."
)
report=$(cat <<EOF
# s3cryptfs benchmark

$(date -u '+%Y-%m-%d %H:%M UTC') · $(nproc) CPUs, ${cpu_model}, ${mem_gib} GiB RAM · $(uname -r)
Commit ${commit}${dirty} · Garage $("$GARAGE" --version 2>/dev/null | head -1 | awk '{ sub(/^cargo:/, "", $2); print $2 }') (local, single node, no fsync, no compression)
${W1_REPORT}
${PEER_REPORT}
${EXTRA_REPORT}

Command: \`${BENCH_INIT_ARGS:+BENCH_INIT_ARGS='$BENCH_INIT_ARGS' }${BENCH_MOUNT_ARGS:+BENCH_MOUNT_ARGS='$BENCH_MOUNT_ARGS' }${BENCH_MOUNT_S3:+BENCH_MOUNT_S3=$BENCH_MOUNT_S3 }${BENCH_PEERS:+BENCH_PEERS=$BENCH_PEERS }BENCH_WORKLOADS=${WORKLOADS} BENCH_SMALL_FILES=${SMALL_N} BENCH_LS_FILES=${LS_N} BENCH_BYNAME_FILES=${BYNAME_N} BENCH_SIZE_MIB=${SIZE_MIB} BENCH_RUNS=${RUNS} bench/run.sh\`
EOF
)
echo "$report"
echo "$report" > "$RESULTS"
log "table written to $RESULTS"
