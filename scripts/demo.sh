#!/usr/bin/env bash
# The s3cryptfs demo, on a fresh machine (as root): installs what is missing (fuse3, Garage),
# builds s3cryptfs, starts a throwaway local S3 server (Garage) with a bucket, creates an
# encrypted volume with a new key, mounts it, copies a file in, and shows that the mount
# holds plaintext while the bucket holds only ciphertext. The mount stays up until you
# press Enter (or, with DEMO_NONINTERACTIVE=1, is unmounted at once); then everything is
# stopped and removed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing what is missing (fuse3, moto, Garage: the first time takes ~10 min)"
bash scripts/install-test-deps.sh
export PATH="${S3TEST_ROOT:-/opt/s3test}/bin:$PATH"

say "building s3cryptfs (release)"
cargo build --release --quiet --bin s3cryptfs --example s3_baseline
BIN=$REPO/target/release/s3cryptfs
BASELINE=$REPO/target/release/examples/s3_baseline

WORK=$(mktemp -d --suffix=-s3cryptfs-demo)
MNT=$WORK/mnt
mkdir -p "$MNT"
# shellcheck source=local-garage.sh
. scripts/local-garage.sh
cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" || umount -l "$MNT"; fi
  garage_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

say "starting a local S3 server (Garage) with bucket 'demo'"
garage_start "$WORK/garage" demo
echo "endpoint $S3_ENDPOINT"

say "creating an encrypted volume at demo/photos, with a newly generated key"
"$BIN" init demo/photos --generate-key --key-file "$WORK/volume.key" \
  --endpoint-url "$S3_ENDPOINT" --force-path-style

say "mounting it on $MNT"
"$BIN" mount demo/photos "$MNT" --key-file "$WORK/volume.key" \
  --endpoint-url "$S3_ENDPOINT" --force-path-style --log-file "$WORK/mount.log"
mount | grep -F "$MNT"

say "copying a file into the mount"
{
  echo "Dear diary: the storage provider must never read this sentence."
  seq 1 20000
} > "$WORK/diary.txt"
mkdir -p "$MNT/2026"
cp "$WORK/diary.txt" "$MNT/2026/diary.txt"
ls -lR "$MNT"

say "through the mount: plaintext"
head -c 120 "$MNT/2026/diary.txt"; echo

say "in the bucket: only ciphertext (first 120 bytes of the object, as hex)"
S3_BUCKET=demo "$BASELINE" download photos/2026/diary.txt "$WORK/raw.bin" > /dev/null
od -An -tx1 -N 120 "$WORK/raw.bin"
if grep -q "Dear diary" "$WORK/raw.bin"; then echo "plaintext found in the bucket!" >&2; exit 1; fi
echo "(\"Dear diary\" does not occur in the object: $(stat -c %s "$WORK/raw.bin") bytes of ciphertext for $(stat -c %s "$WORK/diary.txt") bytes of text)"

say "the mount is live at $MNT"
echo "To unmount by hand: umount $MNT   (this script unmounts and cleans up when it ends)"
if [ "${DEMO_NONINTERACTIVE:-0}" != 1 ] && [ -t 0 ]; then
  read -r -p "Press Enter to unmount and stop the demo... " _
fi
umount "$MNT"
say "unmounted; stopping the server and removing $WORK"
