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
#   BENCH_PEERS      side-by-side peers (rclone crypt mount, s3fs) in the same run:
#                      unset: measured if installed, skipped with a message if not
#                      1:     installed with apt-get if missing, then measured
#                      0:     skipped
#   BENCH_PEER_LIST  which peers (default "rclone-writes rclone-off s3fs")
#   BENCH_RCLONE_WRITE_BACK  rclone --vfs-write-back for rclone-writes (default 0s: the upload
#                    starts at close; rclone's own default, 5s, would add a fixed idle wait)
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
#   Each: cp (and, for rclone-writes, until the object is in the bucket), cold cat on a fresh
#   mount with the page cache dropped, cmp on another fresh mount, daemon VmHWM and CPU time.
#   The peers write a second fresh random file per run, not the baseline's: s3fs stores it in
#   plain text and Garage would otherwise deduplicate its blocks against the baseline's object.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
FS=$TARGET/release/s3cryptfs
BASE=$TARGET/release/examples/s3_baseline
RESULTS=$REPO/bench/results.md
SIZE=$((SIZE_MIB * 1024 * 1024))
CLK_TCK=$(getconf CLK_TCK)
# generous per-command limit, so a hang is reported instead of waited on forever
STEP_TIMEOUT=$((300 + SIZE_MIB / 2))

log() { echo "[bench] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (FUSE mount, umount and drop_caches need it)"
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MIB must be a positive integer"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"

GARAGE=${BENCH_GARAGE:-$(command -v garage || true)}
[ -n "$GARAGE" ] || GARAGE=/opt/s3test/bin/garage
[ -x "$GARAGE" ] || die "garage not found (set BENCH_GARAGE)"

# which peers can run (installed now if BENCH_PEERS=1)
PEER_LIST=${BENCH_PEER_LIST:-rclone-writes rclone-off s3fs}
PEERS=""
peer_tool() { case $1 in rclone-writes|rclone-off) echo rclone;; s3fs) echo s3fs;; *) return 1;; esac; }
for p in $PEER_LIST; do peer_tool "$p" > /dev/null || die "unknown peer in BENCH_PEER_LIST: $p"; done
case ${BENCH_PEERS:-auto} in
  0) log "peers: skipped (BENCH_PEERS=0)";;
  1|auto)
    missing=""
    for t in $(for p in $PEER_LIST; do peer_tool "$p"; done | sort -u); do
      command -v "$t" > /dev/null || missing="$missing $t"
    done
    if [ -n "$missing" ] && [ "${BENCH_PEERS:-auto}" = 1 ]; then
      log "peers: installing$missing (apt-get)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2 \
        || die "apt-get install$missing failed"
      missing=""
    fi
    for p in $PEER_LIST; do
      if command -v "$(peer_tool "$p")" > /dev/null; then PEERS="$PEERS $p"
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
garage_start "$WORK/garage" "$BUCKET" || die "garage did not start (logs in $WORK/garage)"
EP=$S3_ENDPOINT
log "garage (pid $GARAGE_PID) on $EP"
export S3_ENDPOINT=$EP S3_BUCKET=$BUCKET
unset AWS_ENDPOINT_URL AWS_PROFILE AWS_CA_BUNDLE

KEYF=$WORK/volume.key
(umask 077 && head -c 32 /dev/urandom | xxd -p -c64 > "$KEYF")
VOL=$BUCKET/vol
"$FS" init "$VOL" --key-file "$KEYF" --endpoint-url "$EP" --force-path-style \
  > "$LOGS/init.log" 2>&1 || { cat "$LOGS/init.log" >&2; die "s3cryptfs init"; }

# ---------------------------------------------------------------------------------------------
# helpers for the mount daemon (run in the foreground, in our background, so $! is its pid)
DAEMON_LOG=""
mount_fs() { # logname
  DAEMON_LOG=$LOGS/$1
  "$FS" mount "$VOL" "$MNT" --key-file "$KEYF" --endpoint-url "$EP" --force-path-style \
    --foreground > "$DAEMON_LOG" 2>&1 < /dev/null &
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
peer_mount() { # peer logname
  PEER_LOG=$LOGS/$2
  case $1 in
    rclone-writes|rclone-off)
      local mode=${1#rclone-}
      PEER_CACHE=$PCONF/cache-${2%.log}   # a fresh, empty VFS cache for every mount
      env -u AWS_CA_BUNDLE rclone --config "$RCONF" mount "crypt-$mode:" "$PMNT" \
        --vfs-cache-mode "$mode" --vfs-write-back "${BENCH_RCLONE_WRITE_BACK:-0s}" \
        --cache-dir "$PEER_CACHE" --log-file "$PEER_LOG" -v < /dev/null > /dev/null 2>&1 &
      PEER_PID=$!;;
    s3fs)
      s3fs "$BUCKET" "$PMNT" -f -o "url=$EP,use_path_request_style,endpoint=us-east-1,passwd_file=$PCONF/s3fs.passwd,logfile=$PEER_LOG,dbglevel=warn" \
        < /dev/null > /dev/null 2>&1 &
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
  log "peers: $PEERS ($(rclone version 2>/dev/null | head -1 || true); $(s3fs --version 2>/dev/null | head -1 | awk '{ print $7 }' || true))"
fi

# ---------------------------------------------------------------------------------------------
# (c) runs
log "size ${SIZE_MIB} MiB, $RUNS run(s), work dir $WORK"
for r in $(seq "$RUNS"); do
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
# (d) report
mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
m() { median "$@"; }
fw=$(m "${FW[@]}"); bu=$(m "${BU[@]}"); fr=$(m "${FR[@]}"); bd=$(m "${BD[@]}")

# peers: medians over the runs in which the peer completed
pvals() { # array peer -> its values, one per completed run
  local -n arr=$1
  local r
  for r in $(seq "$RUNS"); do [ -z "${arr[$2,$r]:-}" ] || echo "${arr[$2,$r]}"; done
}
pmed() { local v; v=$(pvals "$1" "$2"); [ -n "$v" ] && median $v; }
pname() {
  case $1 in
    rclone-writes) echo "rclone crypt mount, \`--vfs-cache-mode writes\`";;
    rclone-off) echo "rclone crypt mount, \`--vfs-cache-mode off\`";;
    s3fs) echo "s3fs (no encryption)";;
  esac
}
peer_section() {
  local p w rd n best_w="" best_wp="" best_r="" best_rp=""
  echo
  echo "## Peers, same Garage and bucket, same run"
  echo
  echo "Versions: $(rclone version 2>/dev/null | head -1), s3fs $(s3fs --version 2>/dev/null | head -1 | awk '{ print $7 }'). Each peer on its own fresh mount per step, its own key prefix; ${SIZE_MIB} MiB of fresh random data per run; medians over the runs it completed."
  echo
  echo "| system | workload | MiB/s | ratio to baseline | peak RSS MiB | CPU s/GiB |"
  echo "|---|---|---|---|---|---|"
  echo "| plain SDK client (baseline) | write (upload until complete) | ${bu} | 1.00 | | |"
  echo "| s3cryptfs | write (\`cp\` until it returns; object complete) | ${fw} | $(calc "$fw / $bu" 2) | $(m "${FW_RSS[@]}") | $(m "${FW_CPU[@]}") |"
  for p in $PEERS; do
    n=$(pvals PW "$p" | wc -l)
    if [ "$n" = 0 ]; then echo "| $(pname "$p") | write | failed | | | |"; continue; fi
    w=$(pmed PW "$p")
    if [ "$p" = rclone-writes ]; then
      echo "| $(pname "$p") | write, \`cp\` until it returns (**upload not finished**: file only in rclone's local cache) | ${w} | $(calc "$w / $bu" 2) | | |"
      w=$(pmed PWC "$p")
      echo "| $(pname "$p") | write, \`cp\` until the upload has completed (rclone's log; then listed with \`rclone lsl\`) | ${w} | $(calc "$w / $bu" 2) | $(pmed PW_RSS "$p") | $(pmed PW_CPU "$p") |"
    else
      echo "| $(pname "$p") | write (\`cp\` until it returns; object complete) | ${w} | $(calc "$w / $bu" 2) | $(pmed PW_RSS "$p") | $(pmed PW_CPU "$p") |"
    fi
    # the fastest peer by the time until the object is complete
    w=$(pmed PWC "$p")
    if [ -z "$best_w" ] || awk "BEGIN { exit !($w > $best_w) }"; then best_w=$w; best_wp=$p; fi
  done
  echo "| plain SDK client (baseline) | cold read (download) | ${bd} | 1.00 | | |"
  echo "| s3cryptfs | cold read (\`cat > /dev/null\`, fresh mount) | ${fr} | $(calc "$fr / $bd" 2) | $(m "${FR_RSS[@]}") | $(m "${FR_CPU[@]}") |"
  for p in $PEERS; do
    n=$(pvals PR "$p" | wc -l)
    if [ "$n" = 0 ]; then echo "| $(pname "$p") | cold read | failed | | | |"; continue; fi
    rd=$(pmed PR "$p")
    echo "| $(pname "$p") | cold read (\`cat > /dev/null\`, fresh mount) | ${rd} | $(calc "$rd / $bd" 2) | $(pmed PR_RSS "$p") | $(pmed PR_CPU "$p") |"
    if [ -z "$best_r" ] || awk "BEGIN { exit !($rd > $best_r) }"; then best_r=$rd; best_rp=$p; fi
  done
  echo
  if [ -n "$best_w" ]; then
    echo "Best peer, write (until the object is complete): $(pname "$best_wp") at ${best_w} MiB/s; s3cryptfs / best peer = **$(calc "$fw / $best_w" 2)**."
  fi
  if [ -n "$best_r" ]; then
    echo "Best peer, cold read: $(pname "$best_rp") at ${best_r} MiB/s; s3cryptfs / best peer = **$(calc "$fr / $best_r" 2)**."
  fi
  echo
  echo "rclone: crypt remote (standard filename encryption) over an s3 remote (provider Other, path style), default chunk size and concurrency, \`--vfs-write-back ${BENCH_RCLONE_WRITE_BACK:-0s}\`, a fresh empty VFS cache per mount. With \`--vfs-cache-mode writes\`, \`cp\` returns once the file is in rclone's local disk cache and the upload runs afterwards; its CPU and RSS are taken at the end of the upload. s3fs: default options (\`use_path_request_style\`), no encryption. For every peer the file read back through a fresh mount was compared with the source (cmp) in each run it completed."
  for p in $PEERS; do
    [ -z "${PFAIL[$p]:-}" ] || echo "**$(pname "$p") failed in ${PFAIL[$p]}** (left out of the medians; see the logs)."
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
if [ -n "$PEERS" ]; then PEER_REPORT=$(peer_section); fi
report=$(cat <<EOF
# s3cryptfs benchmark

$(date -u '+%Y-%m-%d %H:%M UTC') · $(nproc) CPUs, ${cpu_model}, ${mem_gib} GiB RAM · $(uname -r)
Commit ${commit}${dirty} · Garage $("$GARAGE" --version 2>/dev/null | head -1 | awk '{ sub(/^cargo:/, "", $2); print $2 }') (local, single node, no fsync, no compression)
${SIZE_MIB} MiB of fresh random data per run, ${RUNS} run(s), medians. Client, daemon and Garage share the machine.

| workload | s3cryptfs MiB/s | baseline MiB/s | ratio | peak RSS MiB | CPU s/GiB |
|---|---|---|---|---|---|
| sequential write (\`cp\` until the object is complete) | ${fw} | ${bu} | $(calc "$fw / $bu" 2) | $(m "${FW_RSS[@]}") | $(m "${FW_CPU[@]}") |
| cold sequential read (\`cat > /dev/null\`, fresh mount) | ${fr} | ${bd} | $(calc "$fr / $bd" 2) | $(m "${FR_RSS[@]}") | $(m "${FR_CPU[@]}") |

Baseline: \`examples/s3_baseline.rs\`, the same store API with no FUSE and no encryption
(multipart upload of 8,392,704-byte parts, 4 in flight; ranged GETs of 8 MiB, 4 in flight).
Peak RSS and CPU are the mount daemon's (VmHWM; utime+stime during the cp or cat).
Data read back through a fresh mount was identical to what was written (cmp), every run.

Per run (MiB/s; Garage CPU s/GiB in parentheses):

| run | baseline upload | s3cryptfs write | baseline download | s3cryptfs read | daemon RSS write / read MiB | daemon CPU s/GiB write / read |
|---|---|---|---|---|---|---|
$(for r in $(seq "$RUNS"); do
  echo "| $r | ${BU[$r]} (${BU_G[$r]}) | ${FW[$r]} (${FW_G[$r]}) | ${BD[$r]} (${BD_G[$r]}) | ${FR[$r]} (${FR_G[$r]}) | ${FW_RSS[$r]} / ${FR_RSS[$r]} | ${FW_CPU[$r]} / ${FR_CPU[$r]} |"
done)
| range | $(range "${BU[@]}") | $(range "${FW[@]}") | $(range "${BD[@]}") | $(range "${FR[@]}") | | |
${PEER_REPORT}

Command: \`${BENCH_PEERS:+BENCH_PEERS=$BENCH_PEERS }BENCH_SIZE_MIB=${SIZE_MIB} BENCH_RUNS=${RUNS} bench/run.sh\`
EOF
)
echo "$report"
echo "$report" > "$RESULTS"
log "table written to $RESULTS"
