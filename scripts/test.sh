#!/usr/bin/env bash
# Runs every test of devcluster on this machine, installing what the tests
# run against first (Debian/Ubuntu, as root): the README's test command.
#
#   scripts/test.sh            # everything
#   scripts/test.sh NAME...    # only tests matching NAME (passed to cargo test)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-host.sh

# The guest test image (Debian 12, cached by recipe hash: built once).
image=$(bash testdata/guest/build.sh | tail -n 1)
export DEVCLUSTER_TEST_IMAGE=$image
echo "test.sh: guest image $image"

cargo test --all-targets --locked --features test-libvirt -- "$@"
