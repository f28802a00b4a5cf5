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

# ---------------------------------------------------------------------------------------------
# (a) build
log "building release binaries"
(cd "$REPO" && cargo build --release --bin s3cryptfs --example s3_baseline) >&2 \
  || die "cargo build failed"
[ -x "$FS" ] && [ -x "$BASE" ] || die "binaries not found under $TARGET/release"

# ---------------------------------------------------------------------------------------------
# work directory and cleanup
WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/s3cryptfs-bench.XXXXXX")
MNT=$WORK/mnt
LOGS=$WORK/logs
DATA=$WORK/data.bin
mkdir -p "$MNT" "$LOGS" "$WORK/garage"
GARAGE_PID=""
DPID=""

cleanup() {
  local rc=$?
  set +e
  if mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null; fi
  if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
    kill "$DPID" 2>/dev/null; sleep 1; kill -9 "$DPID" 2>/dev/null
  fi
  if [ -n "$GARAGE_PID" ] && kill -0 "$GARAGE_PID" 2>/dev/null; then
    kill "$GARAGE_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GARAGE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$GARAGE_PID" 2>/dev/null
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "work directory kept: $WORK"
  elif [ $rc -ne 0 ]; then
    rm -rf "$WORK/garage" "$DATA"
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
done
rm -f "$DATA"

# ---------------------------------------------------------------------------------------------
# (d) report
mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(cd "$REPO" && { git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ", src modified"; })
m() { median "$@"; }
fw=$(m "${FW[@]}"); bu=$(m "${BU[@]}"); fr=$(m "${FR[@]}"); bd=$(m "${BD[@]}")
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

Command: \`BENCH_SIZE_MIB=${SIZE_MIB} BENCH_RUNS=${RUNS} bench/run.sh\`
EOF
)
echo "$report"
echo "$report" > "$RESULTS"
log "table written to $RESULTS"
