#!/usr/bin/env bash
# seal: takes a prepared node's identity off its disk for the moment
# devcluster copies the disk into a golden disk, then puts it back.
#
# devcluster runs it as root with `bash -euo pipefail` (src/golden.rs)
# right after prepare-node, before kubeadm init or join:
#   SEAL_ACTION=seal    moves the node's own files into tmpfs
#                       (/run/devcluster-seal) and empties /etc/machine-id;
#                       the host then starts a point-in-time copy of the
#                       disk (libvirt backup), which sees the sealed state
#   SEAL_ACTION=unseal  puts everything back; run by the host right after
#                       the copy started, and by a timer 5 minutes after
#                       the seal in case the host never comes back
# Both are idempotent; unseal with nothing sealed does nothing.
#
# What a golden disk must not carry, and so what is moved aside:
#   - /etc/machine-id (emptied: a clone's systemd makes a new one at its
#     first boot, as on a fresh cloud image) and a /var/lib/dbus/machine-id
#     that is a file of its own
#   - the SSH host keys (a clone gets its own from its seed)
#   - /var/lib/cloud and cloud-init's logs: a clone's cloud-init starts
#     afresh from its own seed; the seed's user-data (with this node's
#     host private key) is under /var/lib/cloud
#   - SEAL_USER's authorized_keys (the cluster's client key)
#   - the done markers of node-specific steps in STEP_DIR, all but those
#     named in KEEP_MARKERS (prepare-node: a clone has its packages)
# It refuses a node that ran kubeadm init or join: that disk has the
# cluster's certificates and kubelet credentials.
#
# Environment:
#   SEAL_ACTION    seal | unseal
#   SEAL_USER      the login user whose authorized_keys are moved aside
#   STEP_DIR       where the step runner keeps its scripts and markers
#   KEEP_MARKERS   space-separated step names whose markers stay
set -euo pipefail

readonly STEP=seal
readonly SEALED=/run/devcluster-seal
readonly KEEP="$SEALED/files"
readonly TIMER=devcluster-unseal

: "${SEAL_ACTION:?SEAL_ACTION must be seal or unseal}"
: "${SEAL_USER:?SEAL_USER must be set}"
: "${STEP_DIR:?STEP_DIR must be set}"
KEEP_MARKERS=${KEEP_MARKERS:-}

say() { printf '%s\n' "$*"; }
fail() {
  printf '%s: %s\n' "$STEP" "$*" >&2
  exit 1
}

unseal() {
  if [[ ! -d "$SEALED" ]]; then
    say "unseal: nothing sealed"
    return 0
  fi
  if [[ -f "$SEALED/machine-id" ]]; then
    cat "$SEALED/machine-id" >/etc/machine-id
    say "unseal: /etc/machine-id restored"
  fi
  if [[ -f "$SEALED/moved" ]]; then
    while IFS= read -r path; do
      if [[ -e "$KEEP$path" || -L "$KEEP$path" ]]; then
        rm -rf "$path"
        mv "$KEEP$path" "$path"
        say "unseal: $path restored"
      fi
    done <"$SEALED/moved"
  fi
  rm -rf "$SEALED"
  if [[ -d /run/systemd/system ]]; then
    systemctl stop "$TIMER.timer" >/dev/null 2>&1 || true
  fi
  sync
  say "unseal: done"
}

# move_aside PATH: PATH into tmpfs, remembered for unseal.
move_aside() {
  local path=$1
  if [[ -e "$path" || -L "$path" ]]; then
    mkdir -p "$KEEP$(dirname "$path")"
    mv "$path" "$KEEP$path"
    printf '%s\n' "$path" >>"$SEALED/moved"
    say "seal: moved $path aside"
  fi
}

seal() {
  if [[ -f /etc/kubernetes/admin.conf || -f /etc/kubernetes/kubelet.conf ||
    -f /etc/kubernetes/bootstrap-kubelet.conf ]]; then
    fail "this node already ran kubeadm init or join; its disk holds the cluster's credentials and cannot become a golden disk"
  fi
  # A seal left by an earlier attempt is undone first.
  unseal >/dev/null
  mkdir -m 0700 "$SEALED" "$KEEP"
  : >"$SEALED/moved"
  # This script, for the timer that unseals if the host never does.
  cp "$0" "$SEALED/seal.sh"

  cp /etc/machine-id "$SEALED/machine-id"
  : >/etc/machine-id
  say "seal: /etc/machine-id emptied"
  if [[ -f /var/lib/dbus/machine-id && ! -L /var/lib/dbus/machine-id ]]; then
    move_aside /var/lib/dbus/machine-id
  fi
  local key
  for key in /etc/ssh/ssh_host_*; do
    move_aside "$key"
  done
  move_aside /var/lib/cloud
  move_aside /var/log/cloud-init.log
  move_aside /var/log/cloud-init-output.log
  local home
  home=$(getent passwd "$SEAL_USER" | cut -d: -f6 || true)
  if [[ -n "$home" ]]; then
    move_aside "$home/.ssh/authorized_keys"
  fi
  local marker name
  for marker in "$STEP_DIR"/*.done; do
    [[ -e "$marker" ]] || continue
    name=$(basename "$marker" .done)
    if [[ " $KEEP_MARKERS " != *" $name "* ]]; then
      move_aside "$marker"
    fi
  done

  if [[ -d /run/systemd/system ]] && command -v systemd-run >/dev/null; then
    systemctl stop "$TIMER.timer" >/dev/null 2>&1 || true
    systemd-run --quiet --collect --unit="$TIMER" --on-active=300 \
      --setenv=SEAL_ACTION=unseal --setenv=SEAL_USER="$SEAL_USER" \
      --setenv=STEP_DIR="$STEP_DIR" /bin/bash "$SEALED/seal.sh"
  else
    # shellcheck disable=SC2016 # $0 is expanded by the inner bash
    setsid nohup env SEAL_ACTION=unseal SEAL_USER="$SEAL_USER" STEP_DIR="$STEP_DIR" \
      bash -c 'sleep 300; exec bash "$0"' "$SEALED/seal.sh" >/dev/null 2>&1 &
  fi
  sync
  say "seal: sealed (unsealed by the host, or by itself in 5 minutes)"
}

case "$SEAL_ACTION" in
seal) seal ;;
unseal) unseal ;;
*) fail "SEAL_ACTION is '$SEAL_ACTION', not seal or unseal" ;;
esac
