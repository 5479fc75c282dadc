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
# server may not answer yet: the script waits up to API_WAIT_TIMEOUT seconds
# for its /readyz. JOIN_TIMEOUT starts only then (a slow control plane is
# not the worker's failure): kubeadm join, again (after `kubeadm reset`)
# until it works or JOIN_TIMEOUT seconds have passed since the API server
# first answered. Then it fails naming the endpoint. The budgets come from
# src/provision/deadlines.rs (scaled under software emulation).
#
# Idempotent: a node counts as joined only when its own kubelet.conf can
# read its own Node object from this API server. A kubelet.conf that
# cannot (a control plane re-created on an empty etcd, another CA) is
# stale: the script resets the node and joins it again.
#
# Environment:
#   KUBEADM_CONFIG    the uploaded config (/etc/devcluster/kubeadm-join.yaml)
#   API_ENDPOINT      "IP:6443" of the control plane
#   NODE_NAME         this node's name (its Node object)
#   API_WAIT_TIMEOUT  seconds for the API server to answer at all (default 1800)
#   JOIN_TIMEOUT      seconds to join once it answered (default 600)
#   DEVCLUSTER_TEST_FAIL_STEP
#                     TEST ONLY: when it equals this step's name (join) the
#                     script exits 3 before changing anything (see
#                     prepare-os.sh).
set -euo pipefail

readonly STEP=join

if [[ "${DEVCLUSTER_TEST_FAIL_STEP:-}" == "$STEP" ]]; then
  echo "$STEP: failing on purpose: DEVCLUSTER_TEST_FAIL_STEP=$STEP (test hook)" >&2
  exit 3
fi

: "${KUBEADM_CONFIG:?KUBEADM_CONFIG must be set}"
: "${API_ENDPOINT:?API_ENDPOINT must be set}"
: "${NODE_NAME:?NODE_NAME must be set}"
API_WAIT_TIMEOUT=${API_WAIT_TIMEOUT:-1800}
JOIN_TIMEOUT=${JOIN_TIMEOUT:-600}

readonly CRI_SOCKET=unix:///run/containerd/containerd.sock
readonly KUBELET_CONF=/etc/kubernetes/kubelet.conf
readonly RETRY_PAUSE=10

say() { printf '%s\n' "$*"; }
fail() {
  printf '%s: %s\n' "$STEP" "$*" >&2
  exit 1
}

for budget in API_WAIT_TIMEOUT JOIN_TIMEOUT; do
  if [[ ! "${!budget}" =~ ^[0-9]+$ || "${!budget}" -eq 0 ]]; then
    fail "$budget is '${!budget}', not a positive number of seconds"
  fi
done

command -v kubeadm >/dev/null || fail "kubeadm is not installed (the prepare-node step installs it)"
[[ -f "$KUBEADM_CONFIG" ]] || fail "missing $KUBEADM_CONFIG (devcluster uploads it before this step)"

# --- wait for the API server -------------------------------------------------------

# /readyz is readable without credentials (system:public-info-viewer).
say "waiting up to ${API_WAIT_TIMEOUT}s for the API server at https://$API_ENDPOINT"
readonly API_DEADLINE=$((SECONDS + API_WAIT_TIMEOUT))
next_note=$((SECONDS + 60))
until curl -ksf --connect-timeout 5 --max-time 10 "https://$API_ENDPOINT/readyz" >/dev/null 2>&1; do
  if ((SECONDS >= API_DEADLINE)); then
    fail "the API server at https://$API_ENDPOINT did not answer in ${API_WAIT_TIMEOUT}s (see 'devcluster logs' of the control plane)"
  fi
  if ((SECONDS >= next_note)); then
    say "still waiting for https://$API_ENDPOINT/readyz (${SECONDS}s)"
    next_note=$((SECONDS + 60))
  fi
  sleep 5
done
# The join budget starts now, when the API server first answered.
readonly DEADLINE=$((SECONDS + JOIN_TIMEOUT))
say "the API server at https://$API_ENDPOINT answers; ${JOIN_TIMEOUT}s to join from now"
timed_out() {
  fail "timed out ${JOIN_TIMEOUT}s after the API server first answered: $1 (API server https://$API_ENDPOINT; see 'devcluster logs' of the control plane)"
}

# --- joined already? ----------------------------------------------------------------

# own_node_readable: this node's kubelet credential reads this node's Node
# object from this API server (a Node authorizer grant every joined
# kubelet has).
own_node_readable() {
  timeout 30 kubectl --kubeconfig "$KUBELET_CONF" --request-timeout=20s \
    get node "$NODE_NAME" -o name >/dev/null 2>&1
}
if [[ -f "$KUBELET_CONF" ]]; then
  if own_node_readable; then
    say "kubeadm join: already joined (its kubelet.conf reads Node $NODE_NAME)"
    say "done"
    exit 0
  fi
  say "kubeadm join: $KUBELET_CONF cannot read Node $NODE_NAME from https://$API_ENDPOINT (a re-created control plane?): resetting and joining again"
  kubeadm reset --force --cri-socket="$CRI_SOCKET"
fi

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
own_node_readable || fail "kubeadm join succeeded but $KUBELET_CONF cannot read Node $NODE_NAME"
say "kubeadm join: joined the cluster at https://$API_ENDPOINT"
say "done"
