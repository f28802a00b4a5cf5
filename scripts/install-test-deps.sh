#!/usr/bin/env bash
# Installs what the tests and the demo need, skipping whatever is already there:
#   fuse3 (fusermount3, /etc/fuse.conf), rsync, curl, systemd-analyze, python3 (with
#   sqlite3), and the programs the mount tests run (gcc, make, autoconf, automake, zip,
#   unzip, vim) from apt;
#   moto server (PyPI) in a venv under $S3TEST_ROOT/venv, linked into $S3TEST_ROOT/bin;
#   Garage (crates.io) under $S3TEST_ROOT/bin (about 10 minutes to build on 2 cores);
#   cargo-deb (crates.io) under $S3TEST_ROOT/bin, for the test that builds the .deb.
# S3TEST_ROOT defaults to /opt/s3test. Prints the time each step took and, at the end, which
# tools were found already installed and which were installed now (also written to
# $INSTALL_REPORT when that is set, for .ci/run).
#
# Every step checks its own result: a tool counts as present only when it resolves to an
# executable file (`type -P`, which, unlike `command -v`, never finds a shell function or
# alias) and answers a version or help query. A step that leaves a tool missing fails with a
# message naming the tool and what to run. tests/install_logic.sh tests this logic with
# stand-in installers.
set -euo pipefail
ROOT=${S3TEST_ROOT:-/opt/s3test}
GARAGE_VERSION=2.5.0
CARGO_DEB_VERSION=3.8.0
# Tools installed under $ROOT are found there first, as scripts/test.sh and demo.sh do.
export PATH="$ROOT/bin:$PATH"

report=()
step() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "[install] $name: $((SECONDS - t0)) s" >&2; }
fail() { echo "[install] ERROR: $*" >&2; exit 1; }

# usable TOOL ARG...: TOOL resolves to an executable file and `TOOL ARG...` succeeds.
usable() {
  local tool=$1 path; shift
  path=$(type -P "$tool") || return 1
  "$path" "$@" >/dev/null 2>&1
}

# ensure TOOL HOW INSTALLER [QUERY...]: runs INSTALLER unless TOOL is already usable, then
# checks that it is; HOW is the command a person can run to install it by hand.
ensure() {
  local tool=$1 how=$2 installer=$3; shift 3
  local query=("$@")
  if usable "$tool" "${query[@]}"; then
    report+=("found     $tool $(type -P "$tool")")
    return
  fi
  echo "[install] $tool is missing: installing it ($how)" >&2
  "$installer" || fail "installing $tool failed; run: $how"
  usable "$tool" "${query[@]}" \
    || fail "$tool is still missing (or does not answer '${query[*]}') after installing it; run: $how"
  report+=("installed $tool $(type -P "$tool")")
}

apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

apt_packages() {
  # tool → Debian package; one apt-get run installs all that are missing.
  local -A package=([fusermount3]=fuse3 [rsync]=rsync [curl]=curl [systemd-analyze]=systemd
    [python3]=python3 [gcc]=gcc [make]=make [autoreconf]=autoconf [automake]=automake
    [zip]=zip [unzip]=unzip [vim]=vim)
  local tools=(fusermount3 rsync curl systemd-analyze python3 gcc make autoreconf automake zip unzip vim)
  local missing=() tool
  for tool in "${tools[@]}"; do
    type -P "$tool" >/dev/null || missing+=("${package[$tool]}")
  done
  # The SQLite test drives the database through Python's sqlite3 module.
  if type -P python3 >/dev/null && ! python3 -c 'import sqlite3' 2>/dev/null; then
    missing+=(python3)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[install] missing apt packages: ${missing[*]}" >&2
    apt_install "${missing[@]}" || fail "apt-get install ${missing[*]} failed"
  fi
  for tool in "${tools[@]}"; do
    type -P "$tool" >/dev/null || fail "$tool is still missing after apt-get; run: apt-get install ${package[$tool]}"
  done
  python3 -c 'import sqlite3' 2>/dev/null || fail "python3 has no sqlite3 module; run: apt-get install python3"
  if [ ${#missing[@]} -gt 0 ]; then
    report+=("installed apt packages: ${missing[*]}")
  else
    report+=("found     apt packages: all present")
  fi
}

install_moto() {
  mkdir -p "$ROOT/bin"
  python3 -m venv "$ROOT/venv"
  "$ROOT/venv/bin/pip" install -q 'moto[server]'
  ln -sf "$ROOT/venv/bin/moto_server" "$ROOT/bin/moto_server"
}

install_garage() {
  cargo install garage --version "$GARAGE_VERSION" --locked --root "$ROOT" --quiet
}

install_cargo_deb() {
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --root "$ROOT" --quiet
}

step "apt packages" apt_packages
# moto_server has no --version; its --help only works when the server's modules import.
step "moto server" ensure moto_server "python3 -m venv $ROOT/venv && $ROOT/venv/bin/pip install 'moto[server]'" install_moto --help
step "garage" ensure garage "cargo install garage --version $GARAGE_VERSION --locked --root $ROOT" install_garage --version
# The package test builds the .deb with `cargo deb` (about 3 minutes to build on 2 cores).
step "cargo-deb" ensure cargo-deb "cargo install cargo-deb --version $CARGO_DEB_VERSION --locked --root $ROOT" install_cargo_deb --version

echo "[install] summary:" >&2
for line in "${report[@]}"; do echo "[install]   $line" >&2; done
if [ -n "${INSTALL_REPORT:-}" ]; then printf '%s\n' "${report[@]}" > "$INSTALL_REPORT"; fi
