#!/usr/bin/env bash
# init-control-plane: `kubeadm init` of the cluster's control plane.
#
# devcluster runs it as root with `bash -euo pipefail` (src/provision/),
# after prepare-node, having uploaded first (mode 0600 for keys and the
# config, which holds the bootstrap token):
#   /etc/kubernetes/pki/{ca,front-proxy-ca}.{crt,key}, etcd/ca.{crt,key},
#   sa.{key,pub}     the cluster CAs and service-account key made on the
#                    host; kubeadm reuses them and makes the rest
#   KUBEADM_CONFIG   InitConfiguration, ClusterConfiguration and
#                    KubeletConfiguration (src/kube/kubeadm.rs)
#
# The config's `kubernetesVersion` is VERSION_PLACEHOLDER: the host knows
# only the minor, the node knows which patch release apt installed. This
# script puts in `kubeadm version -o short` (kubeadm refuses to mix --config
# with --kubernetes-version) and keeps the result next to the config.
#
# Idempotent: once init has succeeded (marker /etc/devcluster/kubeadm-init.done)
# and the API server answers, it does nothing. A previous attempt that
# failed half-way is undone with `kubeadm reset` (the uploaded CA files are
# kept) and init runs again. A cluster that was initialized but whose API
# server does not answer is never reset: the script fails and says so.
#
# Environment:
#   KUBERNETES_MINOR     "X.Y" the node installed (prepare-node)
#   KUBEADM_CONFIG       the uploaded config (/etc/devcluster/kubeadm-init.yaml)
#   VERSION_PLACEHOLDER  the kubernetesVersion value to replace
#   API_ENDPOINT         "IP:6443", for messages and the health check
#   API_WAIT             seconds to wait for an initialized API server
#                        before failing (default 180)
#   DEVCLUSTER_TEST_FAIL_STEP
#                        TEST ONLY: when it equals this step's name
#                        (init-control-plane) the script exits 3 before
#                        changing anything (see prepare-os.sh).
set -euo pipefail

readonly STEP=init-control-plane

if [[ "${DEVCLUSTER_TEST_FAIL_STEP:-}" == "$STEP" ]]; then
  echo "$STEP: failing on purpose: DEVCLUSTER_TEST_FAIL_STEP=$STEP (test hook)" >&2
  exit 3
fi

: "${KUBERNETES_MINOR:?KUBERNETES_MINOR must be set}"
: "${KUBEADM_CONFIG:?KUBEADM_CONFIG must be set}"
: "${VERSION_PLACEHOLDER:?VERSION_PLACEHOLDER must be set}"
: "${API_ENDPOINT:?API_ENDPOINT must be set}"
API_WAIT=${API_WAIT:-180}

readonly CRI_SOCKET=unix:///run/containerd/containerd.sock
readonly PKI=/etc/kubernetes/pki
readonly ADMIN_CONF=/etc/kubernetes/admin.conf
readonly DONE_MARKER=/etc/devcluster/kubeadm-init.done
readonly RESOLVED="${KUBEADM_CONFIG%.yaml}.resolved.yaml"
readonly CA_FILES=(ca.crt ca.key front-proxy-ca.crt front-proxy-ca.key etcd/ca.crt etcd/ca.key sa.key sa.pub)

say() { printf '%s\n' "$*"; }
fail() {
  printf '%s: %s\n' "$STEP" "$*" >&2
  exit 1
}

if [[ ! "$API_WAIT" =~ ^[0-9]+$ ]]; then
  fail "API_WAIT is '$API_WAIT', not a number of seconds"
fi
command -v kubeadm >/dev/null || fail "kubeadm is not installed (the prepare-node step installs it)"

api_answers() {
  [[ -f "$ADMIN_CONF" ]] &&
    kubectl --kubeconfig="$ADMIN_CONF" --request-timeout=5s get --raw=/readyz >/dev/null 2>&1
}

# wait_api SECONDS: the API server answers within SECONDS.
wait_api() {
  local deadline=$((SECONDS + $1))
  until api_answers; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 3
  done
}

# --- already done? ------------------------------------------------------------------

if [[ -f "$DONE_MARKER" ]]; then
  if wait_api "$API_WAIT"; then
    say "kubeadm init: already done; the API server at https://$API_ENDPOINT answers"
    say "done"
    exit 0
  fi
  fail "the control plane was initialized before ($DONE_MARKER) but its API server at https://$API_ENDPOINT has not answered for ${API_WAIT}s; look at 'journalctl -u kubelet' and 'crictl ps -a' on this node. Not resetting a cluster that was up."
fi

# --- the CA files the host made ---------------------------------------------------

missing=()
for f in "${CA_FILES[@]}"; do
  if [[ ! -s "$PKI/$f" ]]; then
    missing+=("$PKI/$f")
  fi
done
if [[ "${#missing[@]}" -gt 0 ]]; then
  fail "missing cluster CA files: ${missing[*]} (devcluster uploads them before this step; without them kubeadm would make a new CA that no host credential trusts)"
fi
for f in ca.key front-proxy-ca.key etcd/ca.key sa.key; do
  chmod 0600 "$PKI/$f"
done
say "pki: the cluster CAs and service-account key are in $PKI"

# --- leftovers of a failed attempt --------------------------------------------------

if [[ -f "$ADMIN_CONF" || -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null || true)" ||
  -n "$(ls -A /var/lib/etcd 2>/dev/null || true)" ]]; then
  say "kubeadm init: a previous attempt did not finish; resetting it (the cluster CA files are kept)"
  backup=$(mktemp -d /etc/devcluster/pki-keep.XXXXXX)
  chmod 0700 "$backup"
  for f in "${CA_FILES[@]}"; do
    mkdir -p "$(dirname "$backup/$f")"
    cp -p "$PKI/$f" "$backup/$f"
  done
  kubeadm reset --force --cri-socket="$CRI_SOCKET"
  for f in "${CA_FILES[@]}"; do
    mkdir -p "$(dirname "$PKI/$f")"
    cp -p "$backup/$f" "$PKI/$f"
  done
  rm -rf "$backup"
fi

# --- the config with the installed version -------------------------------------------

[[ -f "$KUBEADM_CONFIG" ]] || fail "missing $KUBEADM_CONFIG (devcluster uploads it before this step)"
version=$(kubeadm version -o short)
if [[ "$version" != "v$KUBERNETES_MINOR."* ]]; then
  fail "kubeadm is $version, not $KUBERNETES_MINOR: run the prepare-node step again"
fi
placeholder_line="kubernetesVersion: $VERSION_PLACEHOLDER"
count=$(grep -cxF "$placeholder_line" "$KUBEADM_CONFIG" || true)
if [[ "$count" != 1 ]]; then
  fail "$KUBEADM_CONFIG has $count lines '$placeholder_line', expected 1"
fi
(
  umask 077
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" == "$placeholder_line" ]]; then
      printf 'kubernetesVersion: %s\n' "$version"
    else
      printf '%s\n' "$line"
    fi
  done <"$KUBEADM_CONFIG" >"$RESOLVED"
)
say "config: $RESOLVED with kubernetesVersion $version"

# --- init -----------------------------------------------------------------------------

say "kubeadm init: Kubernetes $version, API server https://$API_ENDPOINT"
kubeadm init --config "$RESOLVED" --upload-certs=false --skip-token-print
mkdir -p "$(dirname "$DONE_MARKER")"
printf '%s\n' "$version" >"$DONE_MARKER"

if ! wait_api 120; then
  fail "kubeadm init succeeded but the API server at https://$API_ENDPOINT does not answer"
fi
say "kubeadm init: done; the API server at https://$API_ENDPOINT answers"
say "done"
