#!/usr/bin/env bash
# Installs what the tests and the demo need, skipping whatever is already there:
#   fuse3 (fusermount3, /etc/fuse.conf), rsync, curl and python3 (with sqlite3) from apt;
#   moto server (PyPI) in a venv under $S3TEST_ROOT/venv;
#   Garage (crates.io) under $S3TEST_ROOT/bin (about 10 minutes to build on 2 cores).
# S3TEST_ROOT defaults to /opt/s3test. Prints the time each step took.
set -euo pipefail
ROOT=${S3TEST_ROOT:-/opt/s3test}
GARAGE_VERSION=2.5.0
step() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "[install] $name: $((SECONDS - t0)) s" >&2; }

apt_packages() {
  local missing=()
  command -v fusermount3 >/dev/null || missing+=(fuse3)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v curl >/dev/null || missing+=(curl)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  # The SQLite test drives the database through Python's sqlite3 module.
  python3 -c 'import sqlite3' 2>/dev/null || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

moto() {
  if command -v moto_server >/dev/null || [ -x "$ROOT/venv/bin/moto_server" ]; then return; fi
  mkdir -p "$ROOT/bin"
  python3 -m venv "$ROOT/venv"
  "$ROOT/venv/bin/pip" install -q 'moto[server]'
  ln -sf "$ROOT/venv/bin/moto_server" "$ROOT/bin/moto_server"
}

garage() {
  if command -v garage >/dev/null || [ -x "$ROOT/bin/garage" ]; then return; fi
  cargo install garage --version "$GARAGE_VERSION" --locked --root "$ROOT" --quiet
}

step "apt packages" apt_packages
step "moto server" moto
step "garage" garage
