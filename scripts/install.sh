#!/usr/bin/env bash
# Installs devcluster from this checkout: on Debian/Ubuntu hosts (as root,
# or with sudo) first libvirt + QEMU + OVMF and libvirt's headers (the
# libvirt provider links against libvirt), starting libvirtd directly when
# there is no systemd; then `cargo install`. The README's install command.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(uname -s) == Linux ]] && command -v apt-get >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        bash .ci/setup-libvirt.sh --runtime-only
    else
        sudo bash .ci/setup-libvirt.sh --runtime-only
        if ! id -nG | grep -qw libvirt; then
            sudo usermod -aG libvirt "$(id -un)"
            echo "install.sh: added $(id -un) to the libvirt group; log in again for it to apply" >&2
        fi
    fi
fi
cargo install --locked --path .
