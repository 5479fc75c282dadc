#!/usr/bin/env bash
# Install and start libvirt + QEMU on a Debian 12 CI machine without systemd
# as PID 1, plus the tools that build and boot the guest test image
# (testdata/guest/build.sh, testdata/guest/smoke.sh).
#
# Idempotent: on a machine where it already ran it installs nothing, starts
# nothing and only checks that libvirtd answers.
set -euo pipefail

t0=$(date +%s)
log() { printf 'setup-libvirt: %s\n' "$*"; }
elapsed() { echo "$(($(date +%s) - t0))s"; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root" >&2
    exit 1
fi

# Everything apt must install, with --no-install-recommends.
packages=(
    # libvirt + QEMU (TCG); the virt crate links against libvirt-dev.
    libvirt-daemon-system libvirt-clients libvirt-dev
    qemu-system-x86 qemu-utils
    ovmf          # UEFI firmware; only a Recommends of qemu-system-x86
    dnsmasq-base  # DHCP/DNS of libvirt networks; only a Recommends of libvirt
    iproute2      # libvirt sets up bridges with it; a Recommends as well
    # guest image build (testdata/guest/build.sh)
    debootstrap   # the root filesystem
    fdisk         # sfdisk writes the GPT
    dosfstools    # mkfs.fat formats the ESP inside the disk file
    mtools        # mcopy/mmd fill the ESP without mounting it
    e2fsprogs     # mke2fs -d fills the root file system without mounting it
    # smoke test and Rust integration tests
    cloud-image-utils  # cloud-localds (reference NoCloud seed)
    genisoimage        # isoinfo reads seed ISOs back
    openssh-client     # ssh, ssh-keygen
    python3            # JSON from virsh qemu-agent-command in smoke.sh
)
# `--runtime-only` (scripts/install.sh): what devcluster itself needs to
# build and run, without the test-image and test tools.
if [[ ${1:-} == --runtime-only ]]; then
    packages=(
        libvirt-daemon-system libvirt-clients libvirt-dev
        qemu-system-x86 qemu-utils ovmf dnsmasq-base iproute2
        openssh-client
    )
fi

# QEMU packages must all come from one source build: some machines carry a
# backported qemu-utils (10.x) whose Breaks: qemu-system-common (<< 8.0)
# makes bookworm's qemu-system-x86 (7.2) uninstallable next to it.
qemu_family=(qemu-system-x86 qemu-utils)

installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$1" 2>/dev/null |
        sed -n 's/^ii *//p'
}

snapshot_versions() {
    local p
    for p in "${packages[@]}"; do
        printf '%s=%s\n' "$p" "$(installed_version "$p")"
    done
}

all_installed() {
    local p qv
    for p in "${packages[@]}"; do
        [[ -n $(installed_version "$p") ]] || return 1
    done
    qv=$(installed_version qemu-system-x86)
    [[ $(installed_version qemu-utils) == "$qv" ]]
}

before=$(snapshot_versions)
if all_installed; then
    log "packages already installed, apt skipped ($(elapsed))"
else
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get update"
    apt-get update -q >/dev/null
    qv=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    if [[ -z $qv || $qv == "(none)" ]]; then
        log "no installable qemu-system-x86 in the apt sources" >&2
        exit 1
    fi
    pinned=()
    for p in "${packages[@]}"; do
        if [[ " ${qemu_family[*]} " == *" $p "* ]]; then
            pinned+=("$p=$qv")
        else
            pinned+=("$p")
        fi
    done
    log "apt-get install (qemu $qv): ${packages[*]}"
    apt-get install -y -q --no-install-recommends --allow-downgrades \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${pinned[@]}" >/dev/null
    log "packages installed ($(elapsed))"
fi
after=$(snapshot_versions)

pid_alive() { # pidfile name
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ -d /proc/$pid ]] && grep -qx "$2" "/proc/$pid/comm" 2>/dev/null
}

stop_daemon() { # pidfile name
    local pid i
    pid=$(<"$1")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.1
    done
    log "$2 ($pid) did not stop" >&2
    exit 1
}

# libvirtd looks for qemu-img and probes QEMU only at start-up: restart it
# when this run changed any package under it.
if [[ $before != "$after" ]] && pid_alive /run/libvirtd.pid libvirtd; then
    log "packages changed: restarting libvirtd"
    stop_daemon /run/libvirtd.pid libvirtd
fi

# Without udev (containers, CI machines) /dev/kvm stays root:root 0600. The
# QEMU capability probe runs as root and sees KVM, libvirt's cache check
# runs as libvirt-qemu and does not, so every domain definition re-probes
# QEMU (seconds each, and it can wedge libvirtd). Give it the mode udev's
# rule gives it everywhere else; VMs still run under TCG where KVM hangs.
if [[ -c /dev/kvm ]] && getent group kvm >/dev/null; then
    chgrp kvm /dev/kvm
    chmod 0660 /dev/kvm
fi

if pid_alive /run/virtlogd.pid virtlogd; then
    log "virtlogd already running (pid $(</run/virtlogd.pid))"
else
    /usr/sbin/virtlogd -d
    log "virtlogd started"
fi

if pid_alive /run/libvirtd.pid libvirtd; then
    log "libvirtd already running (pid $(</run/libvirtd.pid))"
else
    /usr/sbin/libvirtd -d --pid-file /run/libvirtd.pid
    log "libvirtd started"
fi

# The first connection probes QEMU's capabilities (~8 s under TCG).
deadline=$(($(date +%s) + 90))
until version=$(virsh -c qemu:///system version 2>/dev/null); do
    if (($(date +%s) >= deadline)); then
        log "libvirtd did not answer within 90 s" >&2
        exit 1
    fi
    sleep 1
done
log "$(printf '%s' "$version" | grep -i 'running hypervisor' | tr -s ' ')"
log "libvirt ready ($(elapsed))"
