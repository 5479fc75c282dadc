#!/usr/bin/env bash
# join: `kubeadm join` of a Linux worker.
#
# devcluster runs it as root with `bash -euo pipefail` (src/provision/),
# after prepare-node, having uploaded KUBEADM_CONFIG (mode 0600: it holds the
# bootstrap token) with a JoinConfiguration (src/kube/kubeadm.rs): discovery
# by the bootstrap token and the cluster CA's public-key hash, the node's
# name, containerd and the node's IP for the kubelet.
#
# Workers are provisioned in parallel with the control plane, so the API
# server may not answer yet: the script waits for it, then runs kubeadm
# join, and tries again (after `kubeadm reset`, which on a worker that has
# not joined removes nothing of value) until JOIN_TIMEOUT seconds have
# passed since it started. Then it fails naming the endpoint.
#
# Idempotent: a node with /etc/kubernetes/kubelet.conf has joined; the
# script then does nothing.
#
# Environment:
#   KUBEADM_CONFIG  the uploaded config (/etc/devcluster/kubeadm-join.yaml)
#   API_ENDPOINT    "IP:6443" of the control plane
#   JOIN_TIMEOUT    seconds in all (default 900)
#   DEVCLUSTER_TEST_FAIL_STEP
#                   TEST ONLY: when it equals this step's name (join) the
#                   script exits 3 before changing anything (see
#                   prepare-os.sh).
set -euo pipefail

readonly STEP=join

if [[ "${DEVCLUSTER_TEST_FAIL_STEP:-}" == "$STEP" ]]; then
  echo "$STEP: failing on purpose: DEVCLUSTER_TEST_FAIL_STEP=$STEP (test hook)" >&2
  exit 3
fi

: "${KUBEADM_CONFIG:?KUBEADM_CONFIG must be set}"
: "${API_ENDPOINT:?API_ENDPOINT must be set}"
JOIN_TIMEOUT=${JOIN_TIMEOUT:-900}

readonly CRI_SOCKET=unix:///run/containerd/containerd.sock
readonly KUBELET_CONF=/etc/kubernetes/kubelet.conf
readonly RETRY_PAUSE=10

say() { printf '%s\n' "$*"; }
fail() {
  printf '%s: %s\n' "$STEP" "$*" >&2
  exit 1
}

if [[ ! "$JOIN_TIMEOUT" =~ ^[0-9]+$ || "$JOIN_TIMEOUT" -eq 0 ]]; then
  fail "JOIN_TIMEOUT is '$JOIN_TIMEOUT', not a positive number of seconds"
fi

if [[ -f "$KUBELET_CONF" ]]; then
  say "kubeadm join: already joined ($KUBELET_CONF exists)"
  say "done"
  exit 0
fi

command -v kubeadm >/dev/null || fail "kubeadm is not installed (the prepare-node step installs it)"
[[ -f "$KUBEADM_CONFIG" ]] || fail "missing $KUBEADM_CONFIG (devcluster uploads it before this step)"

readonly DEADLINE=$((SECONDS + JOIN_TIMEOUT))
timed_out() {
  fail "timed out after ${JOIN_TIMEOUT}s: $1 (API server https://$API_ENDPOINT; see 'devcluster logs' of the control plane)"
}

# --- wait for the API server -------------------------------------------------------

# /readyz is readable without credentials (system:public-info-viewer).
say "waiting up to ${JOIN_TIMEOUT}s for the API server at https://$API_ENDPOINT"
next_note=$((SECONDS + 60))
until curl -ksf --connect-timeout 5 --max-time 10 "https://$API_ENDPOINT/readyz" >/dev/null 2>&1; do
  if ((SECONDS >= DEADLINE)); then
    timed_out "the API server never answered"
  fi
  if ((SECONDS >= next_note)); then
    say "still waiting for https://$API_ENDPOINT/readyz (${SECONDS}s)"
    next_note=$((SECONDS + 60))
  fi
  sleep 5
done
say "the API server at https://$API_ENDPOINT answers"

# --- join, again until it works or time is up ---------------------------------------

attempt=0
while :; do
  attempt=$((attempt + 1))
  # A failed attempt leaves files (pki/ca.crt, bootstrap-kubelet.conf) that
  # fail the next one's preflight checks.
  if [[ -e /etc/kubernetes/bootstrap-kubelet.conf || -e /etc/kubernetes/pki/ca.crt ||
    -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null || true)" ]]; then
    say "kubeadm join: cleaning up after the previous attempt (kubeadm reset)"
    kubeadm reset --force --cri-socket="$CRI_SOCKET"
  fi
  remaining=$((DEADLINE - SECONDS))
  if ((remaining <= 0)); then
    timed_out "kubeadm join did not succeed in $((attempt - 1)) attempts (output above)"
  fi
  say "kubeadm join: attempt $attempt (${remaining}s left)"
  if timeout --kill-after=10 "$remaining" kubeadm join --config "$KUBEADM_CONFIG"; then
    break
  fi
  if ((SECONDS + RETRY_PAUSE >= DEADLINE)); then
    timed_out "kubeadm join did not succeed in $attempt attempts (output above)"
  fi
  say "kubeadm join: attempt $attempt failed; trying again in ${RETRY_PAUSE}s"
  sleep "$RETRY_PAUSE"
done

[[ -f "$KUBELET_CONF" ]] || fail "kubeadm join succeeded but $KUBELET_CONF is missing"
say "kubeadm join: joined the cluster at https://$API_ENDPOINT"
say "done"
