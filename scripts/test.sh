#!/usr/bin/env bash
# Runs every test of devcluster on this machine, installing what the tests
# need first (Debian/Ubuntu, as root or with sudo): the README's test command.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -- NAME    # only tests matching NAME (passed to cargo test)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-host.sh

if [ "${1:-}" = "--" ]; then shift; fi
cargo test --all-targets --locked -- "$@"
