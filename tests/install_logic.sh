#!/usr/bin/env bash
# Tests the logic of scripts/install-test-deps.sh without network and without the long Garage
# build: the script runs with a scrubbed PATH (basic system utilities only), an empty
# S3TEST_ROOT and stand-in apt-get/python3/pip/cargo that record their arguments and create
# fake binaries. Checks that each missing tool is installed exactly once, present tools are
# skipped, a tool hidden behind a shell function of the same name is still installed, and an
# installer that installs nothing makes the script fail with a message naming the tool.
# Run by scripts/test.sh; prints "ok"/"FAIL" per case and exits non-zero on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
script=$here/scripts/install-test-deps.sh
BASH_BIN=$(type -P bash)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# A directory holding only the system utilities the script and the stand-ins use.
sys=$work/sys
mkdir -p "$sys"
for tool in bash mkdir ln id cat rm chmod dirname grep; do
  ln -s "$(type -P "$tool")" "$sys/$tool"
done

# fake DIR NAME: an executable NAME in DIR that answers --version and --help.
fake() {
  mkdir -p "$1"
  printf '#!%s\ncase "${1:-}" in --version|--help) echo "%s (stand-in)";; esac\n' "$BASH_BIN" "$2" > "$1/$2"
  chmod +x "$1/$2"
}

# standin DIR NAME BODY: a stand-in installer that logs its arguments, then runs BODY.
standin() {
  mkdir -p "$1"
  {
    printf '#!%s\nset -eu\necho "%s $*" >> "$STANDIN_LOG"\n' "$BASH_BIN" "$2"
    declare -f fake
    printf 'BASH_BIN=%q\n%s\n' "$BASH_BIN" "$3"
  } > "$1/$2"
  chmod +x "$1/$2"
}

# What apt installs (python3 aside, which the stand-in python provides).
APT_TOOLS="fusermount3 rsync curl systemd-analyze gcc make autoreconf automake zip unzip vim"

# new_world: a scrubbed PATH with the stand-in installers and an empty S3TEST_ROOT.
new_world() {
  world=$work/world$((++worlds))
  tools=$world/tools # where the stand-in apt-get "installs" packages
  mkdir -p "$tools" "$world/root"
  export STANDIN_LOG=$world/log STANDIN_TOOLS=$tools STANDIN_DIR=$world/standins
  export STANDIN_PYTHON=$world/python3
  : > "$STANDIN_LOG"
  # apt-get: each package becomes the tool the script looks for.
  standin "$STANDIN_DIR" apt-get '
    [ "$1" = install ] || exit 0
    for pkg in "$@"; do
      case $pkg in
        fuse3) fake "$STANDIN_TOOLS" fusermount3;;
        rsync|curl|gcc|make|automake|zip|unzip|vim) fake "$STANDIN_TOOLS" "$pkg";;
        autoconf) fake "$STANDIN_TOOLS" autoreconf;;
        systemd) fake "$STANDIN_TOOLS" systemd-analyze;;
        python3) ln -sf "$STANDIN_PYTHON" "$STANDIN_TOOLS/python3";;
      esac
    done'
  # python3, outside PATH until apt "installs" it: -c succeeds, -m venv DIR makes DIR/bin/pip.
  standin "$world" python3 '
    if [ "$1" = -m ] && [ "$2" = venv ]; then
      mkdir -p "$3/bin"; ln -sf "$STANDIN_DIR/pip" "$3/bin/pip"
    fi'
  # pip install moto[server]: puts moto_server beside the venv pip that was run.
  standin "$STANDIN_DIR" pip '
    [ "${STANDIN_BROKEN:-}" = pip ] && exit 0
    fake "$(dirname "$0")" moto_server'
  # cargo install CRATE ... --root R: puts R/bin/CRATE (garage, cargo-deb).
  standin "$STANDIN_DIR" cargo '
    [ "${STANDIN_BROKEN:-}" = cargo ] && exit 0
    root=; prev=
    for a in "$@"; do [ "$prev" = --root ] && root=$a; prev=$a; done
    fake "$root/bin" "$2"'
  world_path="$sys:$STANDIN_DIR:$tools"
  export S3TEST_ROOT=$world/root
}

# Runs the install script in the scrubbed world; its output goes to $world/out.
run_script() {
  (export PATH=$world_path; unset INSTALL_REPORT; exec "$BASH_BIN" "$script") > "$world/out" 2>&1
}

count() { grep -c -- "$1" "$STANDIN_LOG" || true; }
# No installer ran (the python3 stand-in also logs the script's sqlite3 check, which is fine).
nothing_installed() { [ "$(count '^apt-get \|^pip \|^cargo \|^python3 -m venv')" = 0 ]; }

check() {
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; sed 's/^/     | /' "$world/out"; failures=$((failures + 1)); fi
}

# --- A fresh machine: everything missing, each installed exactly once. ---
fresh_installs_each_once() {
  new_world
  run_script || return 1
  [ "$(count '^apt-get install')" = 1 ] || return 1
  grep -q '^apt-get install -y -qq fuse3 rsync curl systemd python3 gcc make autoconf automake zip unzip vim$' "$STANDIN_LOG" || return 1
  [ "$(count '^pip install -q moto\[server\]$')" = 1 ] || return 1
  [ "$(count '^cargo install garage ')" = 1 ] || return 1
  [ "$(count '^cargo install cargo-deb ')" = 1 ] || return 1
  [ -x "$S3TEST_ROOT/bin/garage" ] && [ -x "$S3TEST_ROOT/bin/moto_server" ] || return 1
  [ -x "$S3TEST_ROOT/bin/cargo-deb" ] || return 1
  grep -q 'installed moto_server' "$world/out" && grep -q 'installed garage' "$world/out" \
    && grep -q 'installed cargo-deb' "$world/out"
}

# --- A second run on the same machine: nothing installed again. ---
second_run_installs_nothing() {
  new_world
  run_script || return 1
  : > "$STANDIN_LOG"
  run_script || return 1
  nothing_installed || return 1
  grep -q 'found     moto_server' "$world/out" && grep -q 'found     garage' "$world/out" \
    && grep -q 'found     cargo-deb' "$world/out"
}

# --- Tools already on PATH (outside S3TEST_ROOT) are used, not reinstalled. ---
present_tools_are_skipped() {
  new_world
  for t in $APT_TOOLS moto_server garage cargo-deb; do fake "$tools" "$t"; done
  ln -s "$STANDIN_PYTHON" "$tools/python3"
  run_script || return 1
  nothing_installed
}

# --- A shell function named like the tool must not count as the tool (the old bug). ---
function_does_not_shadow_tool() {
  new_world
  for t in $APT_TOOLS moto_server cargo-deb; do fake "$tools" "$t"; done
  ln -s "$STANDIN_PYTHON" "$tools/python3"
  garage() { :; }
  export -f garage
  run_script; local rc=$?
  export -n -f garage; unset -f garage
  [ "$rc" = 0 ] && [ "$(count '^cargo install garage ')" = 1 ] && [ -x "$S3TEST_ROOT/bin/garage" ]
}

# --- A tool that is there but does not answer is installed anew. ---
broken_tool_is_reinstalled() {
  new_world
  for t in $APT_TOOLS moto_server cargo-deb; do fake "$tools" "$t"; done
  ln -s "$STANDIN_PYTHON" "$tools/python3"
  printf '#!%s\nexit 1\n' "$BASH_BIN" > "$tools/garage"; chmod +x "$tools/garage"
  run_script && [ "$(count '^cargo install garage ')" = 1 ]
}

# --- An installer that installs nothing makes the script fail, naming the tool. ---
cargo_that_installs_nothing_fails() {
  new_world
  export STANDIN_BROKEN=cargo
  run_script; local rc=$?
  unset STANDIN_BROKEN
  [ "$rc" != 0 ] && grep -q 'garage is still missing' "$world/out" && grep -q 'cargo install garage' "$world/out"
}

pip_that_installs_nothing_fails() {
  new_world
  export STANDIN_BROKEN=pip
  run_script; local rc=$?
  unset STANDIN_BROKEN
  [ "$rc" != 0 ] && grep -q 'moto_server is still missing' "$world/out" && [ "$(count '^cargo install')" = 0 ]
}

apt_that_installs_nothing_fails() {
  new_world
  rm "$STANDIN_DIR/apt-get"
  standin "$STANDIN_DIR" apt-get 'exit 0'
  run_script; local rc=$?
  [ "$rc" != 0 ] && grep -q 'fusermount3 is still missing after apt-get; run: apt-get install fuse3' "$world/out"
}

worlds=0
for case in fresh_installs_each_once second_run_installs_nothing present_tools_are_skipped \
  function_does_not_shadow_tool broken_tool_is_reinstalled cargo_that_installs_nothing_fails \
  pip_that_installs_nothing_fails apt_that_installs_nothing_fails; do
  check "$case" "$case"
done
[ "$failures" = 0 ] || { echo "install logic: $failures case(s) failed" >&2; exit 1; }
echo "install logic: all cases passed"
