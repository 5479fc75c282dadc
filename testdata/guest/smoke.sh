#!/usr/bin/env bash
# Boot the guest test image under libvirt (TCG, UEFI) on an isolated network
# and check what devcluster relies on: DHCP lease pinned by MAC, guest agent,
# SSH with a cloud-init user, NoCloud datasource, static network-config v2,
# graceful shutdown, managed save/restore. Prints timings. Cleans up after
# itself (SMOKE_KEEP=1 keeps the work directory).
#
# Usage: smoke.sh [PHASE...]   (default: dhcp static-gateway4)
#   dhcp             DHCP boot, Secure Boot off; shutdown, start, managedsave, restore
#   static-gateway4  network-config v2 with gateway4, Secure Boot on
#   static-routes    network-config v2 with routes: [{to: 0.0.0.0/0}], Secure Boot off
#
# Needs root, .ci/setup-libvirt.sh, and testdata/guest/build.sh (run first).
# One VM at a time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
phases=("$@")
((${#phases[@]})) || phases=(dhcp static-gateway4)

export LIBVIRT_DEFAULT_URI=qemu:///system
name=dc-smoke
net=dc-smoke
bridge=virbr-dcsmoke
mac=52:54:00:dc:00:10
dhcp_ip=192.168.231.10
static_ip=192.168.231.20
gateway=192.168.231.1
work=/var/tmp/dc-smoke
boot_timeout=${SMOKE_BOOT_TIMEOUT:-600}

log() { printf '%s smoke: %s\n' "$(date +%T)" "$*"; }
die() {
    log "FAIL: $*"
    if [[ -f ${serial:-} ]]; then
        log "serial log tail ($serial):"
        tail -n 40 "$serial" | sed 's/^/    /'
    fi
    exit 1
}
now() { date +%s%N; }
since() { # start (ns) -> seconds with one decimal
    local ds=$((($(now) - $1) / 100000000))
    printf '%d.%d' $((ds / 10)) $((ds % 10))
}

image=$("$here/build.sh" | tail -n 1)
[[ -f $image ]] || die "no image from build.sh"
log "image $image"

remove_domain() {
    if virsh dominfo "$name" >/dev/null 2>&1; then
        virsh destroy "$name" >/dev/null 2>&1 || true
        virsh undefine "$name" --nvram --managed-save >/dev/null
    fi
}
remove_network() {
    if virsh net-info "$net" >/dev/null 2>&1; then
        virsh net-destroy "$net" >/dev/null 2>&1 || true
        virsh net-undefine "$net" >/dev/null
    fi
}
cleanup() {
    local rc=$?
    remove_domain || true
    remove_network || true
    if [[ ${SMOKE_KEEP:-0} != 1 ]]; then
        rm -rf "$work"
    fi
    if ((rc == 0)); then log "PASS"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Leftovers of an earlier run that could not clean up.
remove_domain
remove_network
rm -rf "$work"
mkdir -p "$work"
chmod 0755 "$work"

# Isolated network: no <forward>, so nothing leaves this machine.
cat >"$work/net.xml" <<EOF
<network>
  <name>$net</name>
  <bridge name='$bridge' stp='on' delay='0'/>
  <ip address='$gateway' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.231.100' end='192.168.231.199'/>
      <host mac='$mac' name='smoke-node' ip='$dhcp_ip'/>
    </dhcp>
  </ip>
</network>
EOF
virsh net-define "$work/net.xml" >/dev/null
virsh net-start "$net" >/dev/null
log "network $net up (isolated, $gateway/24, $mac -> $dhcp_ip)"

ssh-keygen -q -t ed25519 -N '' -C devcluster-smoke -f "$work/id_ed25519"
ssh_opts=(-i "$work/id_ed25519" -o BatchMode=yes -o ConnectTimeout=3
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
# shellcheck disable=SC2029 # commands are built on this side on purpose
gssh() { ssh "${ssh_opts[@]}" "devcluster@$ip" "$@"; }

write_seed() { # phase
    local d=$work/seed-$1
    mkdir -p "$d"
    cat >"$d/meta-data" <<EOF
instance-id: smoke-$1-$(date +%s)
local-hostname: smoke-node
EOF
    cat >"$d/user-data" <<EOF
#cloud-config
hostname: smoke-node
users:
  - name: devcluster
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys:
      - $(cat "$work/id_ed25519.pub")
EOF
    local args=()
    case $1 in
    static-gateway4 | static-routes)
        {
            cat <<EOF
version: 2
ethernets:
  nic0:
    match:
      macaddress: "$mac"
    addresses: [$static_ip/24]
EOF
            if [[ $1 == static-gateway4 ]]; then
                echo "    gateway4: $gateway"
            else
                printf '    routes:\n      - to: 0.0.0.0/0\n        via: %s\n' "$gateway"
            fi
            cat <<EOF
    nameservers:
      addresses: [$gateway]
      search: [smoke.test]
EOF
        } >"$d/network-config"
        args=(--network-config="$d/network-config")
        ;;
    esac
    cloud-localds "${args[@]}" "$work/seed-$1.iso" "$d/user-data" "$d/meta-data"
}

define_domain() { # phase secure(yes|no)
    local code vars smm=''
    if [[ $2 == yes ]]; then
        code=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
        vars=/usr/share/OVMF/OVMF_VARS_4M.ms.fd
        smm="<smm state='on'/>"
    else
        code=/usr/share/OVMF/OVMF_CODE_4M.fd
        vars=/usr/share/OVMF/OVMF_VARS_4M.fd
    fi
    serial=$work/serial-$1.log
    cat >"$work/domain-$1.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>1536</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' secure='$2' type='pflash'>$code</loader>
    <nvram template='$vars'>$work/VARS-$1.fd</nvram>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    $smm
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$work/disk-$1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='scsi' model='virtio-scsi'/>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='$work/seed-$1.iso'/>
      <target dev='sda' bus='scsi'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <source network='$net'/>
      <mac address='$mac'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='$serial' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='$serial' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
EOF
    virsh define "$work/domain-$1.xml" >/dev/null
}

wait_for() { # description timeout command...
    local what=$1 timeout=$2 start
    shift 2
    start=$(date +%s)
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) - start < timeout)) || die "timeout waiting for $what"
        sleep 1
    done
}
lease_has() { virsh net-dhcp-leases "$net" | grep -q "$1"; }
agent_ping() { virsh qemu-agent-command "$name" '{"execute":"guest-ping"}' | grep -q '"return"'; }
ssh_ok() { gssh true; }
ci_done() { gssh test -f /var/lib/cloud/instance/boot-finished; }
shut_off() { [[ $(virsh domstate "$name") == "shut off" ]]; }

declare -A timing
record() { timing[$1]=$2; log "$1: ${2}s"; }

boot_and_check() { # phase expected-ip
    local phase=$1 t
    ip=$2
    t=$(now)
    virsh start "$name" >/dev/null
    if [[ $phase == dhcp ]]; then
        wait_for "DHCP lease $ip" "$boot_timeout" lease_has "$ip"
        record "$phase boot -> DHCP lease" "$(since "$t")"
    fi
    wait_for "guest agent" "$boot_timeout" agent_ping
    record "$phase boot -> guest agent" "$(since "$t")"
    wait_for "ssh $ip" "$boot_timeout" ssh_ok
    record "$phase boot -> ssh" "$(since "$t")"
    wait_for "cloud-init done" "$boot_timeout" ci_done
    record "$phase boot -> cloud-init done" "$(since "$t")"

    local host ds status
    host=$(gssh hostname)
    [[ $host == smoke-node ]] || die "hostname is '$host', not smoke-node"
    ds=$(gssh "sudo cat /run/cloud-init/result.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["v1"]["datasource"])')
    [[ $ds == DataSourceNoCloud* ]] || die "datasource is '$ds'"
    status=$(gssh "cloud-init status --long" | tr '\n' ' ')
    [[ $status == *"status: done"* ]] || die "cloud-init: $status"
    log "hostname=$host datasource='$ds'"
    log "cloud-init: $status"
    log "guest: $(gssh 'uname -r; cat /proc/cmdline; df -h / | tail -1; ls /etc/network/interfaces.d/' | tr '\n' '|')"
    log "secure boot: $(gssh 'sudo dmesg | grep -i "secure boot" | head -2' | tr '\n' '|')"
}

shutdown_and_wait() { # phase
    local t
    t=$(now)
    virsh shutdown "$name" >/dev/null
    wait_for "shutdown" 120 shut_off
    record "$1 virsh shutdown -> shut off" "$(since "$t")"
}

for phase in "${phases[@]}"; do
    log "=== phase $phase"
    remove_domain
    cp "$image" "$work/base-$phase.qcow2"
    qemu-img create -q -f qcow2 -F qcow2 -b "$work/base-$phase.qcow2" "$work/disk-$phase.qcow2" 8G
    write_seed "$phase"
    case $phase in
    dhcp)
        define_domain "$phase" no
        boot_and_check "$phase" "$dhcp_ip"
        log "leases: $(virsh net-dhcp-leases "$net" | grep "$mac" | tr -s ' ')"
        log "domifaddr (agent): $(virsh domifaddr "$name" --source agent | grep -E 'ipv4' | grep -v 127.0.0.1 | tr -s ' ')"
        log "resolv.conf: $(gssh cat /etc/resolv.conf | grep -v '^#' | tr '\n' '|')"
        gssh 'findmnt -no SIZE /' | grep -q G || die "root not grown"

        shutdown_and_wait "$phase"
        t=$(now)
        virsh start "$name" >/dev/null
        wait_for "ssh after restart" "$boot_timeout" ssh_ok
        record "$phase second boot -> ssh" "$(since "$t")"
        [[ $(gssh hostname) == smoke-node ]] || die "hostname lost on second boot"
        n=$(grep -c 'Linux version' "$serial" || true)
        ((n >= 2)) || die "serial log holds $n boots, expected 2 (append='on')"
        log "serial log holds $n boots"

        uptime1=$(gssh cat /proc/uptime | cut -d' ' -f1)
        t=$(now)
        virsh managedsave "$name" >/dev/null
        record "$phase managedsave" "$(since "$t")"
        log "managed save file: $(du -h /var/lib/libvirt/qemu/save/"$name".save | cut -f1)"
        t=$(now)
        virsh start "$name" >/dev/null
        record "$phase start (restore)" "$(since "$t")"
        wait_for "ssh after restore" 120 ssh_ok
        record "$phase restore -> ssh" "$(since "$t")"
        uptime2=$(gssh cat /proc/uptime | cut -d' ' -f1)
        log "uptime before save ${uptime1}s, after restore ${uptime2}s"
        agent_ping || die "guest agent silent after restore"
        shutdown_and_wait "$phase-after-restore"
        ;;
    static-gateway4 | static-routes)
        if [[ $phase == static-gateway4 ]]; then secure=yes; else secure=no; fi
        define_domain "$phase" "$secure"
        boot_and_check "$phase" "$static_ip"
        addrs=$(gssh ip -4 -o addr show scope global | awk '{print $2, $4}' | tr '\n' ' ')
        log "addresses: $addrs"
        [[ $addrs == *"$static_ip/24"* ]] || die "static address missing"
        route=$(gssh ip -4 route show default)
        log "default route: $route"
        [[ $route == *"via $gateway"* ]] || die "default route missing"
        log "resolv.conf: $(gssh cat /etc/resolv.conf | grep -v '^#' | tr '\n' '|')"
        log "eni: $(gssh cat /etc/network/interfaces.d/50-cloud-init | grep -v '^#' | tr '\n' '|')"
        if lease_has "$dhcp_ip"; then log "note: an old DHCP lease for $dhcp_ip is still listed"; fi
        shutdown_and_wait "$phase"
        ;;
    *) die "unknown phase $phase" ;;
    esac
    remove_domain
done

log "timings:"
for k in "${!timing[@]}"; do printf '  %-40s %ss\n' "$k" "${timing[$k]}"; done | sort
