#!/usr/bin/env bash
# The demo: a local S3 server, an encrypted volume on it, mounted. (Being built.)
echo "s3cryptfs demo: the mount is not built yet; run 'bash scripts/test.sh' for the test suite." >&2
exit 1
