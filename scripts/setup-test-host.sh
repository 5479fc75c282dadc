#!/usr/bin/env bash
# Installs and starts what the test suite runs against (real tools, not
# mocks) on a Debian/Ubuntu host, as root: libvirt + QEMU + OVMF (daemons
# started directly when there is no systemd), the guest-image tools,
# shellcheck, openssl, OpenSSH. Idempotent and quick when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-test-host: run as root (it installs packages and starts libvirtd)" >&2
  exit 1
fi

packages=(
  shellcheck       # provisioner scripts are checked with it
  genisoimage      # isoinfo reads back our seed ISOs
  openssh-client   # ssh-keygen checks our keys; ssh is `devcluster ssh`
  openssh-server   # tests/ssh.rs runs the step runner against a real sshd
  sudo             # tests/ssh.rs runs steps through `sudo -n` as the guests do
  openssl          # verifies our PKI
  util-linux       # blkid reads our seed ISOs
  p7zip-full       # 7z reads our seed ISOs
  libarchive-tools # bsdtar reads our seed ISOs
  python3-yaml     # YAML 1.1 reading of our cloud-init files, as cloud-init does
  curl             # benches/download.rs compares our downloads with curl + sha256sum
  chromium         # tests/dashboard*.rs and benches/dashboard.rs drive headless Chromium (DevTools protocol)
  fonts-dejavu-core # text in the dashboard screenshots
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-test-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirt, QEMU, OVMF, image-build tools; virtlogd and libvirtd started.
bash .ci/setup-libvirt.sh

if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup-test-host: kubectl is required (the kubeconfig tests run it) but is not installed" >&2
  echo "setup-test-host: install kubectl from your distribution or https://kubernetes.io/docs/tasks/tools/" >&2
  exit 1
fi
