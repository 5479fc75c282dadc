#!/usr/bin/env bash
# Build the devcluster guest test image: Debian 12 (bookworm) from
# debootstrap, cloud-init (NoCloud only), OpenSSH, qemu-guest-agent, booted
# by UEFI firmware from its own disk through Debian's signed shim + GRUB.
#
# No loop devices and no mounts: sfdisk writes the GPT into a plain file,
# mkfs.fat + mtools fill the ESP and mke2fs -d fills the root file system,
# each at its byte offset. Needs root (debootstrap) and the packages that
# .ci/setup-libvirt.sh installs.
#
# Output: cache/<recipe hash>/debian-12-devcluster.qcow2; the path is the last
# line of stdout. Same recipe (this file + files/*) => no-op.
#
# Environment:
#   DEVCLUSTER_GUEST_CACHE  cache directory (default: <this dir>/cache)
#   DEBIAN_MIRROR           debootstrap mirror (default: the first Debian
#                           archive this machine's apt sources name; the
#                           recipe names no mirror host of its own)
set -euo pipefail

t0=$(date +%s)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${DEVCLUSTER_GUEST_CACHE:-$here/cache}

# apt_mirror: the first Debian archive (not a -security or -updates suite)
# in this machine's apt sources: one-line `deb URI SUITE ...` lists and
# deb822 `.sources` files.
apt_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
             if ($(i + 1) !~ /-(security|updates|backports)$/) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        # One stanza per blank-line-separated paragraph.
        awk 'BEGIN { RS = ""; FS = "\n" }
             { uri = ""; suites = ""; deb = 0
               for (i = 1; i <= NF; i++) {
                 if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1
                 if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                 if ($i ~ /^Suites:/) suites = $i
               }
               if (deb && uri != "" && suites !~ /-security/) { print uri; exit } }' "$f"
    done
}
if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
    mirror=$DEBIAN_MIRROR
else
    mirror=$(apt_mirror | head -n 1)
    if [[ -z "$mirror" ]]; then
        echo "build.sh: this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/) name no Debian archive; set DEBIAN_MIRROR to one" >&2
        exit 1
    fi
fi
image_name=debian-12-devcluster.qcow2

suite=bookworm
variant=minbase
include=(
    systemd systemd-sysv udev dbus
    openssh-server sudo qemu-guest-agent
    cloud-init python3-cffi-backend  # without cffi cloud-init stays unconfigured
    cloud-guest-utils                # growpart: cloud-init grows the root partition
    linux-image-cloud-amd64
    ifupdown isc-dhcp-client iproute2 netbase  # cloud-init's eni renderer
    resolvconf                       # applies dns-nameservers from eni stanzas
    net-tools                        # eni renders v2 routes as "post-up route add ..."
    e2fsprogs less procps
)
disk_mib=2048 # virtual size; cloud-init grows root onto a larger overlay
esp_mib=64

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap)"
for tool in debootstrap sfdisk mkfs.fat mcopy mmd mke2fs qemu-img apt-get dpkg-deb flock sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found: run .ci/setup-libvirt.sh"
done

# The recipe hash covers this script and every file it reads.
recipe_hash=$(
    cd "$here"
    sha256sum build.sh files/* | sha256sum | cut -c1-16
)
out_dir=$cache/$recipe_hash
image=$out_dir/$image_name

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one build at a time; a waiting build then finds the image

if [[ -f $image ]]; then
    log "up to date (recipe $recipe_hash)"
    echo "$image"
    exit 0
fi

tmp=$(mktemp -d -p "$cache" ".build-$recipe_hash.XXXXXX")
cleanup() {
    local rc=$? m
    if [[ -n ${tmp:-} && -d $tmp ]]; then
        # debootstrap mounts proc/sys in the target; never rm -rf through them.
        while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done < <(awk -v t="$tmp/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r)
        rm -rf --one-file-system "$tmp"
    fi
    ((rc == 0)) || log "failed (exit $rc) after $(($(date +%s) - t0))s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rootfs=$tmp/rootfs

# 1. Root file system: the raw debootstrap result is cached separately,
#    keyed by what debootstrap was asked for.
rootfs_key=$(printf '%s\n' "$suite" "$variant" "${include[@]}" | sha256sum | cut -c1-16)
rootfs_tar=$cache/rootfs/$suite-$rootfs_key.tar
if [[ -f $rootfs_tar ]]; then
    log "rootfs: cached $rootfs_tar"
    mkdir "$rootfs"
    tar -C "$rootfs" --numeric-owner -xpf "$rootfs_tar"
else
    log "rootfs: debootstrap $suite ($variant) from $mirror"
    t=$(date +%s)
    include_csv=$(IFS=,; echo "${include[*]}")
    debootstrap --variant="$variant" --include="$include_csv" \
        "$suite" "$rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
        { tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
    log "rootfs: debootstrap took $(($(date +%s) - t))s"
    mkdir -p "$cache/rootfs"
    tar -C "$rootfs" --numeric-owner -cf "$tmp/rootfs.tar" .
    mv "$tmp/rootfs.tar" "$rootfs_tar"
fi
[[ -e $rootfs/vmlinuz && -e $rootfs/initrd.img ]] || die "no /vmlinuz or /initrd.img in rootfs"

# 2. Make it a cloud image: no identity, no host leftovers, NoCloud only.
log "rootfs: configure"
install -m 0644 "$here/files/99-devcluster.cfg" "$rootfs/etc/cloud/cloud.cfg.d/99-devcluster.cfg"
: >"$rootfs/etc/machine-id" # empty: systemd generates one at first boot
rm -f "$rootfs/var/lib/dbus/machine-id"
rm -f "$rootfs"/etc/ssh/ssh_host_*_key* # cloud-init generates per-guest host keys
echo localhost >"$rootfs/etc/hostname"
cat >"$rootfs/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
EOF
# debootstrap copies the build host's resolv.conf; resolvconf owns it in the guest.
ln -sfn ../run/resolvconf/resolv.conf "$rootfs/etc/resolv.conf"
rm -f "$rootfs/etc/resolvconf/resolv.conf.d/original"
cat >"$rootfs/etc/network/interfaces" <<'EOF'
# cloud-init writes the guest's interfaces to interfaces.d/50-cloud-init.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
EOF
mkdir -p "$rootfs/etc/network/interfaces.d"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*

# 3. Bootloader: Debian's signed shim and GRUB (boot with Secure Boot on or off).
log "boot: fetch shim-signed grub-efi-amd64-signed"
mkdir "$tmp/debs" "$tmp/boot"
(cd "$tmp/debs" && apt-get -q -o APT::Sandbox::User=root download \
    shim-signed grub-efi-amd64-signed >/dev/null)
for deb in "$tmp"/debs/*.deb; do
    dpkg-deb -x "$deb" "$tmp/boot"
done
shim=$tmp/boot/usr/lib/shim/shimx64.efi.signed
grub=$tmp/boot/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
[[ -f $shim && -f $grub ]] || die "shimx64.efi.signed or grubx64.efi.signed missing"

# 4. Disk: GPT with an ESP and a root partition (last, so it can grow).
root_uuid=$(</proc/sys/kernel/random/uuid)
esp_partuuid=$(</proc/sys/kernel/random/uuid)
root_partuuid=$(</proc/sys/kernel/random/uuid)
raw=$tmp/disk.raw
truncate -s "${disk_mib}M" "$raw"
sfdisk -q "$raw" <<EOF
label: gpt
first-lba: 2048
start=2048, size=$((esp_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_partuuid, name="EFI System"
start=$(((esp_mib + 1) * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_partuuid, name="root"
EOF
part() { # N -> "start size" in sectors
    sfdisk -d "$raw" | awk -v dev="$raw$1" '$1 == dev {
        for (i = 2; i <= NF; i++) {
            if ($i == "start=") s = $(i + 1); if ($i == "size=") z = $(i + 1)
        }
        gsub(",", "", s); gsub(",", "", z); print s, z }'
}
read -r esp_start esp_size < <(part 1)
read -r root_start root_size < <(part 2)
[[ -n $esp_size && -n $root_size ]] || die "cannot read the partition table back"

cat >"$rootfs/etc/fstab" <<EOF
# <file system>	<mount point>	<type>	<options>	<dump>	<pass>
UUID=$root_uuid	/	ext4	errors=remount-ro	0	1
EOF

log "disk: ESP at sector $esp_start ($esp_mib MiB), root at sector $root_start"
# FAT32 needs >= 65525 clusters: 512-byte clusters on a 64 MiB ESP.
mkfs.fat -F 32 -S 512 -s 1 -n ESP --offset "$esp_start" "$raw" $((esp_size / 2)) >/dev/null 2>&1
esp="$raw@@$((esp_start * 512))"
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/debian
mcopy -i "$esp" "$shim" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$grub" ::/EFI/BOOT/grubx64.efi
sed "s/@ROOT_UUID@/$root_uuid/g" "$here/files/grub.cfg" >"$tmp/grub.cfg"
mcopy -i "$esp" "$tmp/grub.cfg" ::/EFI/debian/grub.cfg

mke2fs -q -F -t ext4 -b 4096 -L root -U "$root_uuid" \
    -E "offset=$((root_start * 512)),nodiscard" -d "$rootfs" \
    "$raw" "$((root_size / 2))k"

# 5. qcow2, then publish atomically.
log "disk: convert to qcow2"
mkdir "$tmp/out"
qemu-img convert -c -f raw -O qcow2 "$raw" "$tmp/out/$image_name"
cat >"$tmp/out/image.txt" <<EOF
recipe=$recipe_hash
rootfs=$rootfs_tar
root_uuid=$root_uuid
root_partuuid=$root_partuuid
esp_partuuid=$esp_partuuid
kernel=$(readlink "$rootfs/vmlinuz")
shim=$(basename "$tmp"/debs/shim-signed_*.deb)
grub=$(basename "$tmp"/debs/grub-efi-amd64-signed_*.deb)
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_seconds=$(($(date +%s) - t0))
EOF
rm -rf "$out_dir"
mv "$tmp/out" "$out_dir"
# Drop images and rootfs tarballs of other recipes (tests use copies).
for old in "$cache"/*/ "$cache"/rootfs/*.tar; do
    case ${old%/} in
    "$out_dir" | "$rootfs_tar" | "$cache/rootfs") ;;
    *) log "prune ${old%/}"; rm -rf "${old%/}" ;;
    esac
done
log "built $image ($(du -h "$image" | cut -f1)) in $(($(date +%s) - t0))s"
echo "$image"
