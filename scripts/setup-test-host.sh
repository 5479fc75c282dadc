#!/usr/bin/env bash
# Installs what the test suite runs against (real tools, not mocks) on a
# Debian/Ubuntu host. Idempotent and quick when everything is present.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(
  shellcheck     # provisioner scripts are checked with it
  genisoimage    # isoinfo reads back our seed ISOs
  openssh-client # ssh-keygen checks our keys; ssh is `devcluster ssh`
  openssh-server # tests/ssh.rs runs the step runner against a real sshd
  sudo           # tests/ssh.rs runs steps through `sudo -n` as the guests do
  openssl        # verifies our PKI
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-test-host: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup-test-host: kubectl is required (the kubeconfig tests run it) but is not installed" >&2
  echo "setup-test-host: install kubectl from your distribution or https://kubernetes.io/docs/tasks/tools/" >&2
  exit 1
fi
