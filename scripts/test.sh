#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs the test servers if missing, then runs
# every test (the install script's own logic, unit, crypto, store against moto and Garage,
# mounts through FUSE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install_logic.sh
bash scripts/install-test-deps.sh
export PATH="${S3TEST_ROOT:-/opt/s3test}/bin:$PATH"
t0=$SECONDS
cargo test --all-targets "$@"
echo "[test] cargo test: $((SECONDS - t0)) s" >&2
