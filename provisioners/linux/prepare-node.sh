#!/usr/bin/env bash
# prepare-node: installs the container runtime and the Kubernetes packages
# on a Linux node (Ubuntu 24.04, Debian 12; any apt-based system derived
# from them is tried, with a note).
#
# devcluster runs it as root with `bash -euo pipefail` (src/provision/),
# after prepare-os. Idempotent: a second run changes nothing and says so.
# Needs the internet: the distribution's mirror (curl, gpg, conntrack, …),
# https://pkgs.k8s.io (kubelet, kubeadm, kubectl) and registry.k8s.io (the
# control-plane images). When the Kubernetes package repository cannot be
# reached it fails with a message saying so. containerd, runc and the CNI
# plugins do not come from the internet: the host uploads them from its
# cache (src/images/node_software.rs) into NODE_SOFTWARE_DIR before this
# script runs, and this script checks their sha256 again.
#
# Environment:
#   KUBERNETES_MINOR  the Kubernetes minor to install, "X.Y" (e.g. 1.37)
#   KUBERNETES_RELEASE
#                     optional: the cluster's patch release "X.Y.Z", chosen
#                     once (by the control plane's first prepare-node) and
#                     installed exactly on every node after; without it the
#                     newest patch of KUBERNETES_MINOR is installed. Either
#                     way the packages are held
#   PAUSE_IMAGE       the sandbox image of that version
#                     (provisioners/kubernetes-versions.toml)
#   NODE_ROLE         control-plane: pull every image kubeadm init needs;
#                     worker: pull only what a worker runs (pause, kube-proxy)
#   NODE_SOFTWARE_DIR where the host uploaded the files below
#   CONTAINERD_VERSION, CONTAINERD_ARCHIVE, CONTAINERD_SHA256
#                     containerd 2.x: containerd-X-linux-amd64.tar.gz, sha256
#   RUNC_BINARY, RUNC_SHA256
#                     runc.amd64 and its sha256
#   CNI_PLUGINS_ARCHIVE, CNI_PLUGINS_SHA256
#                     cni-plugins-linux-amd64-vX.tgz and its sha256
#   DEVCLUSTER_TEST_FAIL_STEP
#                     TEST ONLY: when it equals this step's name
#                     (prepare-node) the script exits 3 before changing
#                     anything (see prepare-os.sh).
#
# What it does:
#   - re-asserts prepare-os' kernel settings: swap off, overlay and
#     br_netfilter loaded, forwarding and bridge sysctls = 1
#   - checks the uploaded files' sha256, then installs containerd 2.x into
#     /usr/local (with upstream's containerd.service unit in
#     /etc/systemd/system), runc as /usr/local/sbin/runc and the CNI
#     plugins into /opt/cni/bin (each once: a stamp in
#     /var/lib/devcluster/node-software/installed/ records the sha256);
#     fails when containerd is not CONTAINERD_VERSION (Kubernetes 1.36 and
#     later need containerd 2.x, which Ubuntu 24.04 and Debian 12 do not
#     package)
#   - installs the distribution packages it needs (not containerd), then
#     writes /etc/containerd/config.toml from `containerd config default`
#     with the systemd cgroup driver, PAUSE_IMAGE as the sandbox image and
#     /opt/cni/bin for CNI plugins (containerd 1.x and 2.x layouts)
#   - after kubeadm is installed, takes the sandbox image kubeadm names
#     (`kubeadm config images list`) when the table's differs
#   - adds the pkgs.k8s.io repository of KUBERNETES_MINOR (key dearmored to
#     /etc/apt/keyrings/kubernetes-apt-keyring.gpg), installs kubelet,
#     kubeadm, kubectl, cri-tools and kubernetes-cni, holds the first three
#   - points crictl at containerd (/etc/crictl.yaml)
#   - pulls the images kubeadm will need, so init and join do not wait
set -euo pipefail

readonly STEP=prepare-node

if [[ "${DEVCLUSTER_TEST_FAIL_STEP:-}" == "$STEP" ]]; then
  echo "$STEP: failing on purpose: DEVCLUSTER_TEST_FAIL_STEP=$STEP (test hook)" >&2
  exit 3
fi

: "${KUBERNETES_MINOR:?KUBERNETES_MINOR must be set}"
: "${PAUSE_IMAGE:?PAUSE_IMAGE must be set}"
: "${NODE_ROLE:?NODE_ROLE must be set}"
: "${NODE_SOFTWARE_DIR:?NODE_SOFTWARE_DIR must be set}"
: "${CONTAINERD_VERSION:?CONTAINERD_VERSION must be set}"
: "${CONTAINERD_ARCHIVE:?CONTAINERD_ARCHIVE must be set}"
: "${CONTAINERD_SHA256:?CONTAINERD_SHA256 must be set}"
: "${RUNC_BINARY:?RUNC_BINARY must be set}"
: "${RUNC_SHA256:?RUNC_SHA256 must be set}"
: "${CNI_PLUGINS_ARCHIVE:?CNI_PLUGINS_ARCHIVE must be set}"
: "${CNI_PLUGINS_SHA256:?CNI_PLUGINS_SHA256 must be set}"

readonly CRI_SOCKET=unix:///run/containerd/containerd.sock
readonly KEYRING=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
readonly SOURCES=/etc/apt/sources.list.d/kubernetes.list
readonly REPO="https://pkgs.k8s.io/core:/stable:/v${KUBERNETES_MINOR}/deb/"
readonly CONTAINERD_CONFIG=/etc/containerd/config.toml
readonly CNI_BIN_DIR=/opt/cni/bin
readonly CONTAINERD=/usr/local/bin/containerd
readonly CONTAINERD_UNIT=/etc/systemd/system/containerd.service
readonly INSTALLED=/var/lib/devcluster/node-software/installed

say() { printf '%s\n' "$*"; }
fail() {
  printf '%s: %s\n' "$STEP" "$*" >&2
  exit 1
}

if [[ ! "$KUBERNETES_MINOR" =~ ^[0-9]+\.[0-9]+$ ]]; then
  fail "KUBERNETES_MINOR is '$KUBERNETES_MINOR', not X.Y"
fi
readonly KUBERNETES_RELEASE=${KUBERNETES_RELEASE:-}
if [[ -n "$KUBERNETES_RELEASE" && ! "$KUBERNETES_RELEASE" =~ ^${KUBERNETES_MINOR//./\\.}\.[0-9]+$ ]]; then
  fail "KUBERNETES_RELEASE is '$KUBERNETES_RELEASE', not a $KUBERNETES_MINOR.Z release"
fi
case "$NODE_ROLE" in
  control-plane | worker) ;;
  *) fail "NODE_ROLE is '$NODE_ROLE', not control-plane or worker" ;;
esac

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
}

export DEBIAN_FRONTEND=noninteractive
# cloud-init or unattended-upgrades may hold the dpkg lock on a fresh node.
readonly APT=(apt-get -q -o DPkg::Lock::Timeout=600)

# --- the operating system ---------------------------------------------------------

if [[ ! -r /etc/os-release ]]; then
  fail "no /etc/os-release: cannot tell which Linux this is"
fi
# shellcheck disable=SC1091
os_id=$(. /etc/os-release && printf '%s' "${ID:-}")
# shellcheck disable=SC1091
os_like=$(. /etc/os-release && printf '%s' "${ID_LIKE:-}")
# shellcheck disable=SC1091
os_version=$(. /etc/os-release && printf '%s' "${VERSION_ID:-}")
case "$os_id:$os_version" in
  ubuntu:24.04 | debian:12) say "os: $os_id $os_version" ;;
  *)
    if [[ "$os_id" == debian || "$os_id" == ubuntu || " $os_like " == *" debian "* ]] &&
      command -v apt-get >/dev/null; then
      say "os: note: $os_id $os_version is not one devcluster is tested on (Ubuntu 24.04, Debian 12); trying anyway"
    else
      fail "$os_id $os_version is not supported: devcluster installs Kubernetes on Ubuntu 24.04 and Debian 12 (apt)"
    fi
    ;;
esac

# --- kernel settings (prepare-os made them permanent; re-assert cheaply) ----------

if [[ "$(wc -l </proc/swaps)" -gt 1 ]]; then
  swapoff -a
  say "swap: turned off"
fi
for module in overlay br_netfilter; do
  if [[ ! -d "/sys/module/$module" ]] && ! modprobe "$module"; then
    fail "cannot load the kernel module $module"
  fi
done
for key in net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward; do
  if [[ "$(sysctl -n "$key")" != 1 ]]; then
    sysctl -qw "$key=1"
    say "sysctl: set $key = 1"
  fi
done
say "kernel: swap off, overlay and br_netfilter loaded, forwarding on"

# --- containerd 2.x, runc, the CNI plugins (uploaded by the host) --------------------

# verified FILE SHA256: NODE_SOFTWARE_DIR/FILE is there with that sha256.
verified() {
  local path=$NODE_SOFTWARE_DIR/$1 want=$2 got
  if [[ ! -f "$path" ]]; then
    fail "$path is missing: the host uploads it from its cache before this step (run devcluster up again)"
  fi
  got=$(sha256sum "$path" | awk '{print $1}')
  if [[ "$got" != "$want" ]]; then
    fail "$path has sha256 $got, not $want: the upload is damaged (run devcluster up again)"
  fi
}

# installed_from NAME SHA256: NAME was installed from the file of that sha256.
installed_from() {
  [[ -f "$INSTALLED/$1" && "$(cat "$INSTALLED/$1")" == "$2" ]]
}

# record NAME SHA256: remembers that NAME was installed from that file.
record() {
  mkdir -p "$INSTALLED"
  printf '%s\n' "$2" >"$INSTALLED/$1"
}

verified "$CONTAINERD_ARCHIVE" "$CONTAINERD_SHA256"
verified "$RUNC_BINARY" "$RUNC_SHA256"
verified "$CNI_PLUGINS_ARCHIVE" "$CNI_PLUGINS_SHA256"
say "node software: $CONTAINERD_ARCHIVE, $RUNC_BINARY and $CNI_PLUGINS_ARCHIVE have their sha256"

if installed_from containerd "$CONTAINERD_SHA256" && [[ -x "$CONTAINERD" ]]; then
  say "containerd: $CONTAINERD_VERSION already installed in /usr/local"
else
  # grep reads it all (-q would stop tar with SIGPIPE under pipefail).
  if ! tar -tzf "$NODE_SOFTWARE_DIR/$CONTAINERD_ARCHIVE" | grep -Ex '(\./)?bin/containerd' >/dev/null; then
    fail "$CONTAINERD_ARCHIVE holds no bin/containerd: not a containerd release archive"
  fi
  tar -C /usr/local -xzf "$NODE_SOFTWARE_DIR/$CONTAINERD_ARCHIVE"
  record containerd "$CONTAINERD_SHA256"
  say "containerd: unpacked $CONTAINERD_ARCHIVE into /usr/local"
fi
containerd_printed=$("$CONTAINERD" --version 2>/dev/null || true)
if [[ "$(awk '{print $3}' <<<"$containerd_printed")" != "v$CONTAINERD_VERSION" ]]; then
  fail "$CONTAINERD reports '${containerd_printed:-nothing}', not containerd v$CONTAINERD_VERSION (Kubernetes 1.36 and later need containerd 2.x)"
fi
# upstream's containerd.service (containerd/containerd, containerd.service)
if write_if_changed "$CONTAINERD_UNIT" "[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$CONTAINERD

Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5

# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNPROC=infinity
LimitCORE=infinity

# Comment TasksMax if your systemd version does not supports it.
# Only systemd 226 and above support this version.
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target"; then
  systemctl daemon-reload
  say "containerd: wrote $CONTAINERD_UNIT"
fi

if installed_from runc "$RUNC_SHA256" && [[ -x /usr/local/sbin/runc ]]; then
  say "runc: already installed"
else
  install -D -m 0755 "$NODE_SOFTWARE_DIR/$RUNC_BINARY" /usr/local/sbin/runc
  record runc "$RUNC_SHA256"
  say "runc: installed $RUNC_BINARY as /usr/local/sbin/runc"
fi

if installed_from cni-plugins "$CNI_PLUGINS_SHA256" && [[ -d "$CNI_BIN_DIR" ]]; then
  say "cni plugins: already installed in $CNI_BIN_DIR"
else
  mkdir -p "$CNI_BIN_DIR"
  tar -C "$CNI_BIN_DIR" -xzf "$NODE_SOFTWARE_DIR/$CNI_PLUGINS_ARCHIVE"
  record cni-plugins "$CNI_PLUGINS_SHA256"
  say "cni plugins: unpacked $CNI_PLUGINS_ARCHIVE into $CNI_BIN_DIR"
fi

# --- distribution packages ----------------------------------------------------------

# installed PACKAGE...: every package is installed.
installed() {
  local p
  for p in "$@"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]]; then
      return 1
    fi
  done
}

# apt_update: refreshes every package list (once per run). apt-get update
# exits 0 when a mirror cannot be reached (it only warns "Failed to
# fetch"), so the warnings are remembered: a later install failure then
# says the mirrors were unreachable instead of "Unable to locate package".
apt_updated=0
apt_unreachable=0
apt_update() {
  if [[ "$apt_updated" == 1 ]]; then
    return 0
  fi
  local out
  out=$(mktemp)
  if ! "${APT[@]}" update 2>&1 | tee "$out"; then
    rm -f "$out"
    fail "apt-get update failed (output above): the node cannot reach its package mirrors; it needs internet access (libvirt network_mode = \"nat\")"
  fi
  if grep -qE '^(W: Failed to fetch|Err:)' "$out"; then
    apt_unreachable=1
  fi
  rm -f "$out"
  apt_updated=1
}

# apt_install PACKAGE...: installs the packages, failing with the reason.
apt_install() {
  if "${APT[@]}" install -y --no-install-recommends "$@"; then
    return 0
  fi
  if [[ "$apt_unreachable" == 1 ]]; then
    fail "cannot install $*: the node cannot reach its package mirrors (\"Failed to fetch\" above); it needs internet access (libvirt network_mode = \"nat\")"
  fi
  fail "cannot install $* (apt-get output above)"
}

# Not containerd: the upstream 2.x above is the node's.
readonly BASE_PACKAGES=(ca-certificates curl gpg conntrack socat ethtool iptables iproute2)
if installed "${BASE_PACKAGES[@]}"; then
  say "packages: ${BASE_PACKAGES[*]} already installed"
else
  apt_update
  apt_install "${BASE_PACKAGES[@]}"
  say "packages: installed ${BASE_PACKAGES[*]}"
fi

# --- containerd ---------------------------------------------------------------------

# >>> containerd config editing: plain functions, no side effects but on the
# file they are given (tests/provisioners.rs runs them on sample configs).

# toml_set FILE SECTION KEY VALUE: in the TOML table [SECTION] of FILE
# (its header written exactly as SECTION), sets KEY = VALUE: replaces the
# table's KEY line, or adds one at the end of the table's own keys (before
# its first sub-table). Appends the table when FILE has none. VALUE is TOML
# (quoted when it is a string).
toml_set() {
  local file=$1 section=$2 key=$3 value=$4 tmp
  tmp=$(mktemp "$file.XXXXXX")
  awk -v header="[$section]" -v key="$key" -v line="$key = $value" '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    # Blank lines at the end of the table wait, so that an added key goes
    # right after the last one.
    function flush() { printf "%s", pending; pending = "" }
    function finish() { if (in_table && !done) { print indent line; done = 1 } }
    /^[ \t]*\[/ {
      finish(); flush()
      in_table = (trim($0) == header)
      if (in_table) { found = 1; match($0, /^[ \t]*/); indent = substr($0, 1, RLENGTH) "  " }
      print; next
    }
    in_table && !done && /^[ \t]*$/ { pending = pending $0 "\n"; next }
    in_table && !done && index($0, "=") > 0 {
      k = $0; sub(/=.*/, "", k)
      if (trim(k) == key) { flush(); match($0, /^[ \t]*/); print substr($0, 1, RLENGTH) line; done = 1; next }
    }
    { flush(); print }
    END {
      finish(); flush()
      if (!found) { print ""; print header; print "  " line }
    }
  ' "$file" >"$tmp"
  cat "$tmp" >"$file"
  rm -f "$tmp"
}

# toml_has FILE SECTION KEY: the table [SECTION] of FILE has a KEY line.
toml_has() {
  awk -v header="[$2]" -v key="$3" '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    /^[ \t]*\[/ { in_table = (trim($0) == header); next }
    in_table && index($0, "=") > 0 { k = $0; sub(/=.*/, "", k); if (trim(k) == key) found = 1 }
    END { exit !found }
  ' "$1"
}

# edit_containerd_config FILE PAUSE_IMAGE CNI_BIN_DIR: turns the output of
# `containerd config default` in FILE into devcluster's configuration: the
# systemd cgroup driver for runc, PAUSE_IMAGE as the sandbox image, CNI
# plugins from CNI_BIN_DIR. Prints the layout it found (1.x or 2.x); fails
# on a layout it does not know.
edit_containerd_config() {
  local file=$1 pause=$2 cni_bin=$3 cni
  if grep -qF "[plugins.'io.containerd.cri.v1.runtime']" "$file"; then
    # containerd 2.x (config version 3)
    toml_set "$file" "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options" SystemdCgroup true
    toml_set "$file" "plugins.'io.containerd.cri.v1.images'.pinned_images" sandbox "'$pause'"
    cni="plugins.'io.containerd.cri.v1.runtime'.cni"
    if toml_has "$file" "$cni" bin_dirs; then
      # 2.1 and later; the deprecated bin_dir stays as generated ('').
      toml_set "$file" "$cni" bin_dirs "['$cni_bin']"
    else
      toml_set "$file" "$cni" bin_dir "'$cni_bin'"
    fi
    echo 2.x
  elif grep -qF '[plugins."io.containerd.grpc.v1.cri"]' "$file"; then
    # containerd 1.x (config version 2)
    toml_set "$file" 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options' SystemdCgroup true
    toml_set "$file" 'plugins."io.containerd.grpc.v1.cri"' sandbox_image "\"$pause\""
    # Debian's containerd looks for CNI plugins in /usr/lib/cni; flannel
    # and kubernetes-cni install theirs in /opt/cni/bin.
    toml_set "$file" 'plugins."io.containerd.grpc.v1.cri".cni' bin_dir "\"$cni_bin\""
    echo 1.x
  else
    return 1
  fi
}
# <<< containerd config editing

generated=$(mktemp /tmp/devcluster-containerd.XXXXXX)
trap 'rm -f "$generated"' EXIT

# configure_containerd PAUSE: writes devcluster's containerd configuration
# with PAUSE as the sandbox image (when it changed), restarts containerd,
# and checks what containerd really runs with.
configure_containerd() {
  local pause=$1 layout dump
  "$CONTAINERD" config default >"$generated"
  if ! layout=$(edit_containerd_config "$generated" "$pause" "$CNI_BIN_DIR"); then
    fail "containerd $("$CONTAINERD" --version 2>/dev/null || true): 'containerd config default' has neither the 1.x nor the 2.x CRI plugin table; cannot configure it"
  fi
  if [[ -f "$CONTAINERD_CONFIG" ]] && cmp -s "$generated" "$CONTAINERD_CONFIG"; then
    say "containerd ($layout layout): $CONTAINERD_CONFIG already configured"
  else
    mkdir -p "$(dirname "$CONTAINERD_CONFIG")"
    install -m 0644 "$generated" "$CONTAINERD_CONFIG"
    if ! systemctl restart containerd; then
      fail "containerd does not start with the new $CONTAINERD_CONFIG (see journalctl -u containerd)"
    fi
    say "containerd ($layout layout): wrote $CONTAINERD_CONFIG (systemd cgroups, sandbox $pause, CNI in $CNI_BIN_DIR) and restarted it"
  fi
  systemctl enable --now containerd >/dev/null 2>&1 || systemctl enable --now containerd
  # What containerd really runs with, not what we think we wrote.
  dump=$("$CONTAINERD" config dump)
  if ! grep -Eq '^[[:space:]]*SystemdCgroup = true' <<<"$dump"; then
    fail "containerd does not use the systemd cgroup driver after writing $CONTAINERD_CONFIG"
  fi
  if ! grep -qF "$pause" <<<"$dump"; then
    fail "containerd's sandbox image is not $pause after writing $CONTAINERD_CONFIG"
  fi
}
configure_containerd "$PAUSE_IMAGE"

# --- the Kubernetes package repository ------------------------------------------------

# have_wanted: the installed kubeadm is the cluster's release, or (none
# chosen yet) a release of its minor.
have_wanted() {
  local v
  v=$(kubeadm version -o short 2>/dev/null || true)
  if [[ -n "$KUBERNETES_RELEASE" ]]; then
    [[ "$v" == "v$KUBERNETES_RELEASE" ]]
  else
    [[ "$v" == "v$KUBERNETES_MINOR."* ]]
  fi
}
wanted_label=${KUBERNETES_RELEASE:-$KUBERNETES_MINOR}

readonly K8S_PACKAGES=(kubelet kubeadm kubectl cri-tools kubernetes-cni)
if installed "${K8S_PACKAGES[@]}" && have_wanted; then
  say "kubernetes: kubelet, kubeadm, kubectl $(kubeadm version -o short) already installed"
else
  install -d -m 0755 /etc/apt/keyrings
  key=$(mktemp /tmp/devcluster-k8s-key.XXXXXX)
  trap 'rm -f "$generated" "$key"' EXIT
  if ! curl_err=$(curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 15 --max-time 60 \
    -o "$key" "${REPO}Release.key" 2>&1); then
    fail "cannot reach the Kubernetes package repository ${REPO} (${curl_err:-curl failed}): the node needs internet access to https://pkgs.k8s.io (and registry.k8s.io for the images)"
  fi
  keyring_tmp=$(mktemp "$KEYRING.XXXXXX")
  if ! gpg --batch --yes --dearmor -o "$keyring_tmp" "$key"; then
    rm -f "$keyring_tmp"
    fail "${REPO}Release.key is not a PGP key (a proxy or captive portal answering instead of pkgs.k8s.io?)"
  fi
  chmod 0644 "$keyring_tmp"
  mv -f "$keyring_tmp" "$KEYRING"
  if write_if_changed "$SOURCES" "deb [signed-by=$KEYRING] $REPO /"; then
    say "kubernetes: added the repository $REPO"
  fi
  # This repository alone first, so that its failure is named as such.
  if ! "${APT[@]}" update -o Dir::Etc::sourcelist="$SOURCES" \
    -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0; then
    fail "apt-get update of the Kubernetes package repository ${REPO} failed (output above)"
  fi
  if [[ -z "$(apt-cache madison kubeadm 2>/dev/null | grep -F "pkgs.k8s.io" || true)" ]]; then
    fail "the Kubernetes package repository ${REPO} lists no kubeadm: was Kubernetes $KUBERNETES_MINOR released?"
  fi
  # The packages' dependencies come from the distribution: its lists must
  # be fresh too (a cloud image may ship none).
  apt_update
  install_list=("${K8S_PACKAGES[@]}")
  if [[ -n "$KUBERNETES_RELEASE" ]]; then
    # pkgs.k8s.io versions are X.Y.Z-<build>: any build of the release.
    install_list=(kubelet="$KUBERNETES_RELEASE-*" kubeadm="$KUBERNETES_RELEASE-*"
      kubectl="$KUBERNETES_RELEASE-*" cri-tools kubernetes-cni)
    if [[ -z "$(apt-cache madison kubeadm 2>/dev/null | awk -v r="$KUBERNETES_RELEASE-" 'index($3, r) == 1' || true)" ]]; then
      fail "the Kubernetes package repository ${REPO} has no kubeadm $KUBERNETES_RELEASE, this cluster's release"
    fi
  fi
  "${APT[@]}" install -y --allow-change-held-packages --allow-downgrades "${install_list[@]}"
  have_wanted || fail "kubeadm is $(kubeadm version -o short 2>/dev/null || echo missing) after installing from ${REPO}, not $wanted_label"
  say "kubernetes: installed kubelet, kubeadm, kubectl $(kubeadm version -o short)"
fi
apt-mark hold kubelet kubeadm kubectl >/dev/null
say "kubernetes: kubelet, kubeadm and kubectl held (apt-mark hold)"
systemctl enable kubelet >/dev/null 2>&1 || systemctl enable kubelet

# --- crictl -----------------------------------------------------------------------------

if write_if_changed /etc/crictl.yaml "$(printf 'runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 30' "$CRI_SOCKET" "$CRI_SOCKET")"; then
  say "crictl: wrote /etc/crictl.yaml (containerd)"
fi

# --- images -------------------------------------------------------------------------------

version=$(kubeadm version -o short)
mapfile -t images < <(kubeadm config images list --kubernetes-version "$version")
if [[ "${#images[@]}" -eq 0 ]]; then
  fail "kubeadm config images list printed no images for $version"
fi
# The sandbox image is the one this kubeadm names: a stale table must not
# leave containerd asking a registry for a pause image nobody pulled.
pause=$PAUSE_IMAGE
expected_pause=$(printf '%s\n' "${images[@]}" | grep -F '/pause:' || true)
if [[ -n "$expected_pause" && "$expected_pause" != "$PAUSE_IMAGE" ]]; then
  say "images: note: kubeadm $version names the sandbox image $expected_pause, not $PAUSE_IMAGE (provisioners/kubernetes-versions.toml is stale): using kubeadm's"
  pause=$expected_pause
  configure_containerd "$pause"
fi
wanted=()
for image in "${images[@]}"; do
  if [[ "$NODE_ROLE" == control-plane || "$image" == */pause:* || "$image" == */kube-proxy:* ]]; then
    wanted+=("$image")
  fi
done
wanted+=("$pause")
pulled=0
for image in "${wanted[@]}"; do
  if crictl inspecti "$image" >/dev/null 2>&1; then
    continue
  fi
  if ! crictl pull "$image" >/dev/null; then
    fail "cannot pull $image (output above): the node needs internet access to registry.k8s.io"
  fi
  say "images: pulled $image"
  pulled=$((pulled + 1))
done
if [[ "$pulled" -eq 0 ]]; then
  say "images: the ${#wanted[@]} images this $NODE_ROLE needs are already present"
fi

say "done"
