#!/usr/bin/env bash
# How much does devcluster add to booting a VM? Times `devcluster up
# --no-kubernetes` of one node until SSH answers, against the same domain
# (devcluster's own XML), network, qcow2 overlay of the same base and the
# same seed ISO, made and started by hand with virsh and qemu-img, until the
# same ssh answers. Software emulation here, so boot times vary by +-10 s:
# run it a few times. Prints both times and their ratio (goal <= 1.05).
#
#   DEVCLUSTER_TEST_IMAGE=... benches/up_vs_virsh.sh [RUNS]
# needs root, libvirtd (scripts/setup-test-host.sh) and the guest test image.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${DEVCLUSTER_TEST_IMAGE:?set DEVCLUSTER_TEST_IMAGE (testdata/guest/build.sh prints it)}
runs=${1:-1}
# DEVCLUSTER_BIN=target/debug/devcluster skips the release build (the VM's
# boot dominates either way).
if [[ -n ${DEVCLUSTER_BIN:-} ]]; then
  bin=$(realpath "$DEVCLUSTER_BIN")
else
  cargo build --release --quiet
  bin=$PWD/target/release/devcluster
fi
virsh="virsh -q -c qemu:///system"
ip=192.168.235.10
now() { date +%s.%N; }

work=$(mktemp -d)
hand=/var/lib/libvirt/images/dc-bench-by-hand
cleanup() {
  $virsh destroy bench-cp >/dev/null 2>&1 || true
  $virsh undefine bench-cp --nvram --managed-save >/dev/null 2>&1 || true
  $virsh net-destroy devcluster-bench >/dev/null 2>&1 || true
  $virsh net-undefine devcluster-bench >/dev/null 2>&1 || true
  rm -rf "$hand"
  DEVCLUSTER_HOME=$work/home "$bin" --cluster bench destroy --yes >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export DEVCLUSTER_HOME=$work/home
cd "$work"
cat > devcluster.toml <<'TOML'
workers = 0
[network]
node_cidr = "192.168.235.0/24"
[libvirt]
network_mode = "isolated"
domain_type = "qemu"
[linux]
image = "guest"
TOML
"$bin" -q images import guest "$image" --os linux

for run in $(seq 1 "$runs"); do
  # devcluster: from nothing to SSH-ready (its OS-preparation step, which a
  # hand-made VM does not run, is subtracted).
  t0=$(now)
  "$bin" --no-progress --cluster bench up --no-kubernetes 2> up.log >/dev/null
  t1=$(now)
  step=$(sed -n 's/.*prepare-os done in \([0-9.]*\)\(m\?s\).*/\1 \2/p' up.log | head -1)
  step_s=$(awk -v v="${step% *}" -v u="${step#* }" 'BEGIN { print (u == "ms") ? v / 1000 : v }')
  dc=$(awk -v a="$t0" -v b="$t1" -v s="$step_s" 'BEGIN { printf "%.1f", b - a - s }')

  # What devcluster made, for the same boot by hand.
  $virsh dumpxml --inactive bench-cp > domain.xml
  $virsh net-dumpxml devcluster-bench > network.xml
  $virsh vol-download --pool devcluster-bench bench-cp-seed.iso seed.iso
  base=$($virsh vol-list devcluster-images | awk '/guest-/ { print $2 }' | head -1)
  cp "$DEVCLUSTER_HOME/state/clusters/bench/ssh/id_ed25519" key
  cp "$DEVCLUSTER_HOME/state/clusters/bench/ssh/known_hosts" known_hosts
  chmod 600 key
  "$bin" -q --cluster bench destroy --yes
  sed -e "s|<disk type='volume' device='disk'>|<disk type='file' device='disk'>|" \
      -e "s|<disk type='volume' device='cdrom'>|<disk type='file' device='cdrom'>|" \
      -e "s|<source pool='devcluster-bench' volume='bench-cp.qcow2'[^/>]*/>|<source file='$hand/disk.qcow2'/>|" \
      -e "s|<source pool='devcluster-bench' volume='bench-cp-seed.iso'[^/>]*/>|<source file='$hand/seed.iso'/>|" \
      -e "s|<source path='[^']*serial.log'|<source path='$hand/serial.log'|" \
      domain.xml > domain-by-hand.xml

  t0=$(now)
  $virsh net-define network.xml >/dev/null
  $virsh net-start devcluster-bench >/dev/null
  mkdir -p "$hand"
  qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$hand/disk.qcow2" 20G
  cp seed.iso "$hand/seed.iso"
  $virsh define domain-by-hand.xml >/dev/null
  $virsh start bench-cp >/dev/null
  until ssh -i key -o UserKnownHostsFile=known_hosts -o StrictHostKeyChecking=yes \
      -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=2 -o LogLevel=QUIET \
      "devcluster@$ip" true; do
    sleep 0.5
  done
  t1=$(now)
  byhand=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  $virsh destroy bench-cp >/dev/null
  $virsh undefine bench-cp --nvram >/dev/null
  $virsh net-destroy devcluster-bench >/dev/null
  $virsh net-undefine devcluster-bench >/dev/null
  rm -rf "$hand"

  awk -v d="$dc" -v h="$byhand" -v r="$run" \
    'BEGIN { printf "run %d: devcluster up to SSH-ready %.1f s, by hand with virsh %.1f s, ratio %.3f\n", r, d, h, d / h }'
done
