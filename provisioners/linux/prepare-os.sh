#!/usr/bin/env bash
# prepare-os: makes a Linux node ready for kubeadm.
#
# devcluster runs it as root with `bash -euo pipefail` (src/provision/).
# Idempotent: a second run changes nothing and says so. Needs no network.
#
# Environment:
#   NODE_NAME      this node's name; becomes its hostname
#   CLUSTER_HOSTS  every node of the cluster, "name ip;name ip;..."
#   DEVCLUSTER_TEST_FAIL_STEP
#                  TEST ONLY. When it equals this step's name (prepare-os)
#                  the script prints a message and exits 3 before changing
#                  anything. devcluster passes it through from its own
#                  environment so that tests can exercise step failures.
#
# What it does:
#   - hostname NODE_NAME (/etc/hostname and the running kernel)
#   - a managed block in /etc/hosts naming every node
#   - swap off now, swap lines in /etc/fstab commented out, swap units masked
#   - kernel modules overlay and br_netfilter loaded now (or built in) and at
#     boot (/etc/modules-load.d/devcluster.conf)
#   - net.bridge.bridge-nf-call-iptables, net.bridge.bridge-nf-call-ip6tables
#     and net.ipv4.ip_forward = 1 (/etc/sysctl.d/90-devcluster.conf)
#   - time sync enabled: systemd-timesyncd, else chrony, else a note
set -euo pipefail

readonly STEP=prepare-os

if [[ "${DEVCLUSTER_TEST_FAIL_STEP:-}" == "$STEP" ]]; then
  echo "$STEP: failing on purpose: DEVCLUSTER_TEST_FAIL_STEP=$STEP (test hook)" >&2
  exit 3
fi

: "${NODE_NAME:?NODE_NAME must be set}"
: "${CLUSTER_HOSTS:?CLUSTER_HOSTS must be set}"

say() { printf '%s\n' "$*"; }
fail() {
  printf '%s: %s\n' "$STEP" "$*" >&2
  exit 1
}

systemd_running() { [[ -d /run/systemd/system ]]; }

# cloud-init may still be applying the seed (users, files, growing the
# disk) when SSH first answers: let it finish so nothing here races it.
if command -v cloud-init >/dev/null; then
  if timeout 600 cloud-init status --wait >/dev/null 2>&1; then
    say "cloud-init: done"
  else
    say "cloud-init: not done or reported errors ($(cloud-init status 2>/dev/null | tr '\n' ' '))"
  fi
fi

# unit_exists UNIT: the unit file is installed (and not masked).
unit_exists() {
  [[ "$(systemctl show -p LoadState --value "$1" 2>/dev/null || true)" == loaded ]]
}

# write_if_changed PATH CONTENT: atomically replaces PATH with CONTENT and a
# final newline, mode 0644, unless it already holds that. Succeeds when it
# wrote, fails when there was nothing to do.
write_if_changed() {
  local path=$1 content=$2 tmp
  if [[ -f "$path" && "$(cat "$path")" == "$content" ]]; then
    return 1
  fi
  mkdir -p "$(dirname "$path")"
  tmp=$(mktemp "$path.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$path"
  # A file created by mktemp has another SELinux label than, say, /etc/hosts.
  if command -v restorecon >/dev/null; then
    restorecon "$path" || true
  fi
}

# --- hostname ---------------------------------------------------------------

if write_if_changed /etc/hostname "$NODE_NAME"; then
  say "hostname: wrote /etc/hostname"
fi
if [[ "$(cat /proc/sys/kernel/hostname)" != "$NODE_NAME" ]]; then
  if ! { systemd_running && command -v hostnamectl >/dev/null &&
    hostnamectl set-hostname "$NODE_NAME" 2>/dev/null; }; then
    printf '%s\n' "$NODE_NAME" >/proc/sys/kernel/hostname
  fi
  say "hostname: set to $NODE_NAME"
else
  say "hostname: already $NODE_NAME"
fi

# --- /etc/hosts ---------------------------------------------------------------

readonly HOSTS_BEGIN="# BEGIN devcluster"
readonly HOSTS_END="# END devcluster"
block="$HOSTS_BEGIN"$'\n'"# the cluster's nodes; rewritten by devcluster's prepare-os step"
IFS=';' read -r -a entries <<<"$CLUSTER_HOSTS"
for entry in "${entries[@]}"; do
  read -r name ip extra <<<"$entry" || true
  if [[ -z "${name:-}" ]]; then
    continue
  fi
  if [[ -z "${ip:-}" || -n "${extra:-}" ]]; then
    fail "CLUSTER_HOSTS entry '$entry' is not 'name ip'"
  fi
  block+=$'\n'"$ip $name"
done
block+=$'\n'"$HOSTS_END"
others=""
if [[ -f /etc/hosts ]]; then
  others=$(awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" \
    '$0 == b { skip = 1; next } $0 == e { skip = 0; next } !skip' /etc/hosts)
fi
if [[ -n "$others" ]]; then
  hosts="$others"$'\n'"$block"
else
  hosts="$block"
fi
if write_if_changed /etc/hosts "$hosts"; then
  say "hosts: wrote the cluster's nodes into /etc/hosts"
else
  say "hosts: /etc/hosts already names the cluster's nodes"
fi

# --- swap -----------------------------------------------------------------------

if [[ "$(wc -l </proc/swaps)" -gt 1 ]]; then
  swapoff -a
  say "swap: turned off"
else
  say "swap: already off"
fi
if [[ -f /etc/fstab ]]; then
  fstab=$(awk '!/^[[:space:]]*#/ && $3 == "swap" { print "#devcluster# " $0; next } { print }' /etc/fstab)
  if write_if_changed /etc/fstab "$fstab"; then
    say "swap: commented out the swap entries of /etc/fstab"
  fi
fi
if systemd_running; then
  mapfile -t swap_units < <(
    {
      systemctl list-units --type=swap --all --plain --no-legend 2>/dev/null || true
      systemctl list-unit-files --type=swap --plain --no-legend 2>/dev/null || true
    } | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /\.swap$/) { print $i; break } }' | sort -u
  )
  for unit in "${swap_units[@]}"; do
    if [[ "$(systemctl is-enabled "$unit" 2>/dev/null || true)" != masked ]]; then
      systemctl mask --now "$unit" >/dev/null
      say "swap: masked $unit"
    fi
  done
fi

# --- kernel modules -------------------------------------------------------------

for module in overlay br_netfilter; do
  if [[ -d "/sys/module/$module" ]]; then
    say "module $module: loaded"
  elif command -v modprobe >/dev/null && modprobe "$module"; then
    say "module $module: loaded now"
  elif grep -qs "/$module.ko" "/lib/modules/$(uname -r)/modules.builtin"; then
    say "module $module: built into the kernel"
  else
    fail "cannot load the kernel module $module"
  fi
done
if write_if_changed /etc/modules-load.d/devcluster.conf \
  $'# kernel modules Kubernetes needs (devcluster prepare-os)\noverlay\nbr_netfilter'; then
  say "modules: wrote /etc/modules-load.d/devcluster.conf"
fi

# --- sysctls ----------------------------------------------------------------------

readonly SYSCTLS=(net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward)
conf="# Kubernetes networking (devcluster prepare-os)"
for key in "${SYSCTLS[@]}"; do
  conf+=$'\n'"$key = 1"
done
if write_if_changed /etc/sysctl.d/90-devcluster.conf "$conf"; then
  say "sysctl: wrote /etc/sysctl.d/90-devcluster.conf"
fi
if ! sysctl --system >/dev/null; then
  say "sysctl: sysctl --system reported errors (above); applying devcluster's settings alone"
  sysctl -p /etc/sysctl.d/90-devcluster.conf >/dev/null
fi
for key in "${SYSCTLS[@]}"; do
  value=$(sysctl -n "$key")
  if [[ "$value" != 1 ]]; then
    fail "$key is $value after applying /etc/sysctl.d/90-devcluster.conf"
  fi
done
say "sysctl: ${SYSCTLS[*]} = 1"

# --- time sync ----------------------------------------------------------------------

if ! systemd_running; then
  say "time sync: systemd is not running; no time sync service enabled"
else
  enabled=""
  for unit in systemd-timesyncd.service chrony.service chronyd.service; do
    if unit_exists "$unit"; then
      systemctl enable --now "$unit" >/dev/null 2>&1 || systemctl enable --now "$unit"
      enabled=$unit
      break
    fi
  done
  if [[ -n "$enabled" ]]; then
    say "time sync: $enabled enabled"
  else
    say "time sync: note: neither systemd-timesyncd nor chrony is installed; the clock is not synchronized"
  fi
fi

say "done"
