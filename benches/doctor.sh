#!/usr/bin/env bash
# How long does `devcluster doctor` take on this host? Target: at most 3 s
# when everything is fine (the KVM probe included, or its cached answer).
# Prints the first run in a fresh DEVCLUSTER_HOME (the KVM probe runs: up
# to 5 s where /dev/kvm hangs: UEFI firmware under KVM must reach its
# boot manager), then RUNS runs with the verdict cached
# (min / median / max), and whether the median meets the target.
#
#   benches/doctor.sh [RUNS]        (default 10)
# DEVCLUSTER_BIN=target/debug/devcluster skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
if [[ -n ${DEVCLUSTER_BIN:-} ]]; then
  bin=$(realpath "$DEVCLUSTER_BIN")
else
  cargo build --release --quiet
  bin=$PWD/target/release/devcluster
fi
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export DEVCLUSTER_HOME=$home
now() { date +%s.%N; }
run() {
  local t0 t1 rc=0
  t0=$(now)
  "$bin" doctor -o json >/dev/null || rc=$?
  t1=$(now)
  [[ $rc -le 1 ]] || { echo "doctor exited $rc" >&2; exit 1; }
  echo "$t1 - $t0" | bc -l
}
first=$(run)
printf 'first run (KVM probe):   %.3f s\n' "$first"
times=()
for _ in $(seq "$runs"); do times+=("$(run)"); done
sorted=$(printf '%s\n' "${times[@]}" | sort -g)
min=$(head -1 <<<"$sorted")
max=$(tail -1 <<<"$sorted")
median=$(sed -n "$(( (runs + 1) / 2 ))p" <<<"$sorted")
printf 'cached runs (%d):        min %.3f s, median %.3f s, max %.3f s\n' "$runs" "$min" "$median" "$max"
if (( $(echo "$median <= 3" | bc -l) )); then
  echo "target (median <= 3 s): met"
else
  echo "target (median <= 3 s): MISSED"
fi
