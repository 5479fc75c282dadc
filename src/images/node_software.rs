//! Node software: the catalog of what a node runs that no package
//! repository gives it, each file pinned by version and verified by
//! sha256, fetched once into the host's cache and uploaded to the nodes
//! over SSH: everything a Windows worker runs, and containerd 2.x, runc
//! and the CNI plugins of a Linux node ([`linux_catalog`]).
//!
//! Windows has no package repository devcluster could point a node at, and
//! Ubuntu 24.04 and Debian 12 package only containerd 1.x, which Kubernetes
//! 1.36 and later do not support (and `--offline` must hold for these
//! files too), so the host downloads every piece through the images
//! machinery ([`super::download`]:
//! resumable, verified, proxies from the environment) and keeps it in
//! `<cache>/node-software/NAME/VERSION/`. A node never downloads.
//!
//! Every entry says where its checksum comes from ([`ChecksumSource`]):
//! the publisher's checksum file beside the release asset (Kubernetes'
//! `dl.k8s.io/…/X.exe.sha256`, containerd's `.sha256sum`, cri-tools' and
//! the CNI projects' `.sha256`), read at download time and remembered in
//! `checksum.json` beside the file, so that the cache works offline; or a
//! sha256 pinned here with the document it was read from. A download whose
//! sha256 differs is deleted and refused.
//!
//! The catalog is a function of the cluster's one Kubernetes patch release
//! (`1.36.2`): kubelet, kubeadm and kube-proxy are exactly that release on
//! every node. The other components are pinned here; bump them together
//! with their Linux counterparts (flanneld is the same release as the
//! flannel DaemonSet in `provisioners/manifests/kube-flannel.yml`).
//!
//! What was proven on this machine: the download, verification, refusal
//! and offline paths, against a loopback HTTP server laid out like the
//! publishers' servers (tests/node_software.rs). What was not: the real
//! URLs (no internet here); a wrong one fails at `up` with the URL in the
//! message, never with an unverified file.
//!
//! A mirror (`DEVCLUSTER_NODE_SOFTWARE_MIRROR`, [`Origins::from_env`]) serves
//! the same paths under `<mirror>/github.com/…` and `<mirror>/dl.k8s.io/…`
//! (the layout `wget --mirror` makes), with the publishers' checksum files
//! beside the files: with a mirror, every entry's sha256 is read from the
//! mirror's checksum file, pinned ones included (the mirror is trusted as
//! the publisher is). The real-VM tests serve stand-in files this way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::download::{self, Request};
use super::{Fetch, ImageError, cache};
use crate::dirs::Dirs;
use crate::fsutil::{Access, atomic_write};

/// containerd 2.x for Windows (`containerd-<v>-windows-amd64.tar.gz`):
/// the same release as the Linux nodes', so a cluster runs one containerd
/// (its sha256 from containerd's `.sha256sum` beside the archive; the
/// Linux one is pinned, see [`LINUX_CONTAINERD_VERSION`]).
pub const CONTAINERD_VERSION: &str = LINUX_CONTAINERD_VERSION;
/// cri-tools' crictl.
pub const CRICTL_VERSION: &str = "1.34.0";
/// containernetworking/plugins: `host-local` (the source VIP of
/// kube-proxy) and `win-overlay`, the VXLAN plugin flannel's CNI delegates
/// to on Windows.
pub const CNI_PLUGINS_VERSION: &str = "1.8.0";
/// flannel-io/cni-plugin: `flannel.exe`, the CNI entry point that reads
/// flanneld's subnet lease (same release as the Linux DaemonSet's).
pub const FLANNEL_CNI_VERSION: &str = "1.9.1-flannel3";
/// flanneld.exe, the same release as the Linux DaemonSet
/// ([`crate::kube::flannel::RELEASE`]).
pub const FLANNEL_VERSION: &str = "0.28.9";

/// Where each publisher serves its releases; tests point these at a
/// loopback server laid out the same way.
#[derive(Debug, Clone)]
pub struct Origins {
    /// `https://dl.k8s.io/release` (then `/vX.Y.Z/bin/windows/amd64/…`).
    pub kubernetes: String,
    /// `https://github.com` (then `/OWNER/REPO/releases/download/…`).
    pub github: String,
}

impl Default for Origins {
    fn default() -> Self {
        Self {
            kubernetes: "https://dl.k8s.io/release".into(),
            github: "https://github.com".into(),
        }
    }
}

/// The environment variable naming a node software mirror (see the module
/// essay): an `http(s)://` or `file://` base.
pub const MIRROR_ENV: &str = "DEVCLUSTER_NODE_SOFTWARE_MIRROR";

impl Origins {
    /// A mirror laid out as `<base>/github.com/…` and
    /// `<base>/dl.k8s.io/release/…`.
    pub fn mirror(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            kubernetes: format!("{base}/dl.k8s.io/release"),
            github: format!("{base}/github.com"),
        }
    }

    /// The publishers' servers, or the mirror [`MIRROR_ENV`] names.
    pub fn from_env() -> Self {
        match std::env::var(MIRROR_ENV) {
            Ok(base) if !base.trim().is_empty() => Self::mirror(base.trim()),
            _ => Self::default(),
        }
    }

    /// The publishers' own servers: pinned checksums apply.
    pub fn is_upstream(&self) -> bool {
        let d = Self::default();
        self.kubernetes == d.kubernetes && self.github == d.github
    }
}

/// Where an artifact's expected sha256 comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChecksumSource {
    /// Pinned in devcluster, read from `source` (a URL or document).
    Pinned { sha256: String, source: String },
    /// The publisher's checksum file: either a bare hex digest
    /// (dl.k8s.io's `.sha256`) or sha256sum lines naming `name`.
    File { url: String, name: String },
}

impl ChecksumSource {
    /// What the report and `images list` say of it.
    pub fn describe(&self) -> String {
        match self {
            ChecksumSource::Pinned { source, .. } => format!("pinned (from {source})"),
            ChecksumSource::File { url, .. } => format!("publisher's checksum file {url}"),
        }
    }
}

/// What an artifact is on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A single `.exe`, placed as is.
    Exe,
    /// A `.tar.gz`/`.tgz`, unpacked on the node (Windows' own `tar.exe`,
    /// GNU tar on Linux).
    TarGz,
    /// A single Linux executable (`runc.amd64`), installed under its
    /// own name.
    Binary,
}

/// One file of node software.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeArtifact {
    /// `kubelet`, `containerd`, … (`[a-z0-9-]+`): the cache folder and the
    /// key the node script looks the file up by.
    pub name: &'static str,
    pub version: String,
    pub url: String,
    /// The file name as published, kept in the cache and on the node.
    pub file_name: String,
    pub kind: Kind,
    pub checksum: ChecksumSource,
    /// What it is for (shown by the catalog listing and the README).
    pub purpose: &'static str,
}

/// The Windows node software for Kubernetes `patch` (`X.Y.Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    pub kubernetes: String,
    pub artifacts: Vec<NodeArtifact>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeSoftwareError {
    #[error(
        "the cluster's Kubernetes {minor} patch release is not chosen yet (the control plane's prepare-node chooses it)"
    )]
    NoRelease { minor: String },
    #[error("Kubernetes release {0:?} is not X.Y.Z")]
    Release(String),
    #[error("Kubernetes {release} is not of a supported minor ({supported})")]
    Unsupported { release: String, supported: String },
    #[error("node software {name} {version} is not in the cache, and devcluster is offline")]
    Offline { name: String, version: String },
    #[error(
        "node software {name} {version} is not in the cache (`devcluster up` downloads it before provisioning)"
    )]
    NotCached { name: String, version: String },
    #[error("{checksum_url} does not give the sha256 of {name}")]
    NotListed { checksum_url: String, name: String },
    #[error("node software {name} {version}")]
    Fetch {
        name: String,
        version: String,
        #[source]
        source: Box<ImageError>,
    },
}

impl NodeSoftwareError {
    pub fn hint(&self) -> Option<String> {
        match self {
            NodeSoftwareError::Offline { .. } => Some(
                "run the same command once while online: the node software is downloaded into the cache once and reused offline".into(),
            ),
            NodeSoftwareError::NotCached { .. } => Some(
                "run `devcluster up` (online once): it downloads the node software into the cache".into(),
            ),
            NodeSoftwareError::Fetch { source, .. } => source.hint(),
            _ => None,
        }
    }
}

/// Checks `X.Y.Z` and that `X.Y` is a supported minor.
pub fn check_release(release: &str) -> Result<(), NodeSoftwareError> {
    let parts: Vec<&str> = release.split('.').collect();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 3 || !parts.iter().all(|p| numeric(p)) {
        return Err(NodeSoftwareError::Release(release.to_string()));
    }
    let minor = format!("{}.{}", parts[0], parts[1]);
    if crate::versions::find(&minor).is_none() {
        return Err(NodeSoftwareError::Unsupported {
            release: release.to_string(),
            supported: crate::versions::supported_list(),
        });
    }
    Ok(())
}

/// The catalog for `plan`'s one patch release.
pub fn catalog_for_plan(plan: &crate::plan::Plan) -> Result<Catalog, NodeSoftwareError> {
    let release =
        plan.kubernetes_release
            .as_deref()
            .ok_or_else(|| NodeSoftwareError::NoRelease {
                minor: plan.kubernetes_version.clone(),
            })?;
    catalog(release)
}

/// The Windows catalog for Kubernetes `release` from the publishers'
/// servers (or the mirror of [`Origins::from_env`]).
pub fn catalog(release: &str) -> Result<Catalog, NodeSoftwareError> {
    catalog_from(&Origins::from_env(), release)
}

/// [`catalog`] with the publishers' servers given (tests).
pub fn catalog_from(origins: &Origins, release: &str) -> Result<Catalog, NodeSoftwareError> {
    check_release(release)?;
    let k8s = |name: &'static str, purpose: &'static str| {
        let file_name = format!("{name}.exe");
        let url = format!(
            "{}/v{release}/bin/windows/amd64/{file_name}",
            origins.kubernetes
        );
        NodeArtifact {
            name,
            version: release.to_string(),
            checksum: ChecksumSource::File {
                url: format!("{url}.sha256"),
                name: file_name.clone(),
            },
            url,
            file_name,
            kind: Kind::Exe,
            purpose,
        }
    };
    let gh = |name: &'static str,
              repo: &str,
              tag: String,
              version: &str,
              file_name: String,
              sums_suffix: &str,
              kind: Kind,
              purpose: &'static str| {
        let url = format!(
            "{}/{repo}/releases/download/{tag}/{file_name}",
            origins.github
        );
        NodeArtifact {
            name,
            version: version.to_string(),
            checksum: ChecksumSource::File {
                url: format!("{url}{sums_suffix}"),
                name: file_name.clone(),
            },
            url,
            file_name,
            kind,
            purpose,
        }
    };
    let artifacts = vec![
        gh(
            "containerd",
            "containerd/containerd",
            format!("v{CONTAINERD_VERSION}"),
            CONTAINERD_VERSION,
            format!("containerd-{CONTAINERD_VERSION}-windows-amd64.tar.gz"),
            ".sha256sum",
            Kind::TarGz,
            "the container runtime (CRI on npipe:////./pipe/containerd-containerd)",
        ),
        gh(
            "crictl",
            "kubernetes-sigs/cri-tools",
            format!("v{CRICTL_VERSION}"),
            CRICTL_VERSION,
            format!("crictl-v{CRICTL_VERSION}-windows-amd64.tar.gz"),
            ".sha256",
            Kind::TarGz,
            "the CRI command-line client, for debugging on the node",
        ),
        k8s("kubelet", "the node agent, a Windows service"),
        k8s("kubeadm", "joins the node"),
        k8s(
            "kube-proxy",
            "Services on Windows (HNS load balancers), a Windows service",
        ),
        gh(
            "cni-plugins",
            "containernetworking/plugins",
            format!("v{CNI_PLUGINS_VERSION}"),
            CNI_PLUGINS_VERSION,
            format!("cni-plugins-windows-amd64-v{CNI_PLUGINS_VERSION}.tgz"),
            ".sha256",
            Kind::TarGz,
            "win-overlay (VXLAN endpoints) and host-local (IPAM)",
        ),
        gh(
            "flannel-cni",
            "flannel-io/cni-plugin",
            format!("v{FLANNEL_CNI_VERSION}"),
            FLANNEL_CNI_VERSION,
            format!("cni-plugin-flannel-windows-amd64-v{FLANNEL_CNI_VERSION}.tgz"),
            ".sha256",
            Kind::TarGz,
            "flannel's CNI plugin (delegates to win-overlay)",
        ),
        gh(
            "flanneld",
            "flannel-io/flannel",
            format!("v{FLANNEL_VERSION}"),
            FLANNEL_VERSION,
            "flanneld.exe".into(),
            ".sha256",
            Kind::Exe,
            "the network agent: VXLAN VNI 4096, UDP 4789, a scheduled task",
        ),
    ];
    Ok(Catalog {
        kubernetes: release.to_string(),
        artifacts,
    })
}

/// containerd 2.x for Linux nodes
/// (`containerd-<v>-linux-amd64.tar.gz`: `bin/containerd`, its shims and
/// `ctr`).
pub const LINUX_CONTAINERD_VERSION: &str = "2.3.4";
/// opencontainers/runc (`runc.amd64`), the OCI runtime containerd runs.
pub const RUNC_VERSION: &str = "1.4.3";
/// containernetworking/plugins for Linux (`bridge`, `host-local`,
/// `loopback`, `portmap`, …: flannel's CNI config delegates to them).
pub const LINUX_CNI_PLUGINS_VERSION: &str = "1.9.1";

/// Where the Linux entries' sha256 values were read: kubespray's
/// checksums at that commit (its defaults are these three versions, the
/// newest it pins; the keys `containerd_archive_checksums`,
/// `runc_checksums` and `cni_binary_checksums`, amd64).
pub const LINUX_CHECKSUMS_SOURCE: &str = "https://github.com/kubernetes-sigs/kubespray/blob/46dbdd3994b32640bcd806b0097f50e8fdf1d514/roles/kubespray_defaults/vars/main/checksums.yml";
const CONTAINERD_LINUX_SHA256: &str =
    "9d68969855fbf676cdb8ed758e420fb048d61f984f61de3e53eddfebe484d168";
const RUNC_SHA256: &str = "f6ae8efc0fa40079e1475e97cbe9d1bd3f106a28d6af78a11d9f1bd565515e60";
const CNI_PLUGINS_LINUX_SHA256: &str =
    "b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303";

/// The Linux node software names, the keys prepare-node's environment is
/// made from ([`crate::provision::steps::prepare_node`]).
pub const LINUX_CONTAINERD: &str = "linux-containerd";
pub const LINUX_RUNC: &str = "linux-runc";
pub const LINUX_CNI_PLUGINS: &str = "linux-cni-plugins";

/// What every Linux node of a Kubernetes cluster installs from upstream
/// (every supported minor, 1.35 included: one runtime and one install path
/// for all, where the distributions' containerd 1.6/1.7 would serve only
/// 1.35), from the publishers' servers (or the mirror of
/// [`Origins::from_env`]).
pub fn linux_catalog() -> Vec<NodeArtifact> {
    linux_catalog_from(&Origins::from_env())
}

/// [`linux_catalog`] with the servers given. From the publishers' servers
/// the sha256 values are the pinned ones; from a mirror they are read
/// from the mirror's checksum files (the publishers' names and formats).
pub fn linux_catalog_from(origins: &Origins) -> Vec<NodeArtifact> {
    let entry = |name: &'static str,
                 repo: &str,
                 version: &str,
                 file_name: String,
                 sums_file: String,
                 sha256: &str,
                 kind: Kind,
                 purpose: &'static str| {
        let dir = format!("{}/{repo}/releases/download/v{version}", origins.github);
        let checksum = if origins.is_upstream() {
            ChecksumSource::Pinned {
                sha256: sha256.to_string(),
                source: LINUX_CHECKSUMS_SOURCE.to_string(),
            }
        } else {
            ChecksumSource::File {
                url: format!("{dir}/{sums_file}"),
                name: file_name.clone(),
            }
        };
        NodeArtifact {
            name,
            version: version.to_string(),
            url: format!("{dir}/{file_name}"),
            file_name,
            kind,
            checksum,
            purpose,
        }
    };
    let containerd = format!("containerd-{LINUX_CONTAINERD_VERSION}-linux-amd64.tar.gz");
    let cni = format!("cni-plugins-linux-amd64-v{LINUX_CNI_PLUGINS_VERSION}.tgz");
    vec![
        entry(
            LINUX_CONTAINERD,
            "containerd/containerd",
            LINUX_CONTAINERD_VERSION,
            containerd.clone(),
            format!("{containerd}.sha256sum"),
            CONTAINERD_LINUX_SHA256,
            Kind::TarGz,
            "the container runtime, unpacked into /usr/local (CRI on /run/containerd/containerd.sock)",
        ),
        entry(
            LINUX_RUNC,
            "opencontainers/runc",
            RUNC_VERSION,
            "runc.amd64".into(),
            "runc.sha256sum".into(),
            RUNC_SHA256,
            Kind::Binary,
            "the OCI runtime containerd starts containers with, /usr/local/sbin/runc",
        ),
        entry(
            LINUX_CNI_PLUGINS,
            "containernetworking/plugins",
            LINUX_CNI_PLUGINS_VERSION,
            cni.clone(),
            format!("{cni}.sha256"),
            CNI_PLUGINS_LINUX_SHA256,
            Kind::TarGz,
            "bridge, host-local, loopback, portmap, … in /opt/cni/bin (flannel delegates to them)",
        ),
    ]
}

/// An artifact in the cache, verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedArtifact {
    pub name: &'static str,
    pub version: String,
    pub file_name: String,
    pub kind: Kind,
    pub path: PathBuf,
    pub sha256: String,
    /// Whether this call downloaded it.
    pub downloaded: bool,
}

/// `<cache>/node-software/NAME/VERSION`.
pub fn artifact_dir(dirs: &Dirs, a: &NodeArtifact) -> PathBuf {
    dirs.cache
        .join("node-software")
        .join(a.name)
        .join(&a.version)
}

/// What was verified, beside the file: offline runs trust the file only
/// with this record (and only for the same URL).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    url: String,
    sha256: String,
    checksum_source: String,
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join("checksum.json")
}

fn read_record(dir: &Path, a: &NodeArtifact) -> Option<Record> {
    let r: Record = serde_json::from_slice(&std::fs::read(record_path(dir)).ok()?).ok()?;
    let pinned_ok = match &a.checksum {
        ChecksumSource::Pinned { sha256, .. } => sha256.eq_ignore_ascii_case(&r.sha256),
        ChecksumSource::File { .. } => true,
    };
    (r.url == a.url && pinned_ok && dir.join(&a.file_name).is_file()).then_some(r)
}

/// The sha256 in a publisher's checksum file: sha256sum lines naming
/// `name`, or (dl.k8s.io) the bare digest alone.
pub fn parse_checksum(text: &str, name: &str) -> Option<String> {
    if let Some(s) = download::parse_sums(text, name) {
        return Some(s);
    }
    let t = text.trim();
    (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_ascii_lowercase())
}

/// The cached, verified file of `a`, if it is there (no network).
pub fn cached(dirs: &Dirs, a: &NodeArtifact) -> Option<CachedArtifact> {
    let dir = artifact_dir(dirs, a);
    let r = read_record(&dir, a)?;
    Some(CachedArtifact {
        name: a.name,
        version: a.version.clone(),
        file_name: a.file_name.clone(),
        kind: a.kind,
        path: dir.join(&a.file_name),
        sha256: r.sha256,
        downloaded: false,
    })
}

/// Makes sure `a` is in the cache, verified: there already (no network),
/// else its checksum read and the file downloaded — unless offline.
pub async fn ensure(
    dirs: &Dirs,
    a: &NodeArtifact,
    fetch: &Fetch<'_>,
) -> Result<CachedArtifact, NodeSoftwareError> {
    if let Some(hit) = cached(dirs, a) {
        return Ok(hit);
    }
    let wrap = |source: ImageError| NodeSoftwareError::Fetch {
        name: a.name.to_string(),
        version: a.version.clone(),
        source: Box::new(source),
    };
    let remote = |u: &str| !u.starts_with("file://");
    let needs_network =
        remote(&a.url) || matches!(&a.checksum, ChecksumSource::File { url, .. } if remote(url));
    if fetch.offline && needs_network {
        return Err(NodeSoftwareError::Offline {
            name: a.name.to_string(),
            version: a.version.clone(),
        });
    }
    let label = format!("{} {}", a.name, a.version);
    let sha = match &a.checksum {
        ChecksumSource::Pinned { sha256, .. } => sha256.to_ascii_lowercase(),
        ChecksumSource::File { url, name } => {
            fetch
                .progress
                .note(&label, &format!("reading the checksum from {url}"));
            let text = match url.strip_prefix("file://") {
                Some(p) => download::read_local_text(Path::new(p)).map_err(wrap)?,
                None => download::fetch_text(
                    fetch.client().map_err(wrap)?,
                    url,
                    &fetch.download,
                    fetch.progress,
                    &label,
                )
                .await
                .map_err(wrap)?,
            };
            parse_checksum(&text, name).ok_or_else(|| NodeSoftwareError::NotListed {
                checksum_url: url.clone(),
                name: name.clone(),
            })?
        }
    };
    let dir = artifact_dir(dirs, a);
    let _lock = cache::lock(
        dirs,
        &format!("node-{}-{}", a.name, a.version),
        fetch.progress,
        &label,
    )
    .await
    .map_err(wrap)?;
    // Another process may have finished it while we waited.
    if let Some(hit) = cached(dirs, a) {
        return Ok(hit);
    }
    let dest = dir.join(&a.file_name);
    // A file of the same name from an older record (another URL or
    // checksum) is not trusted: download it again.
    if dest.is_file() {
        let _ = std::fs::remove_file(&dest);
    }
    let req = Request {
        url: &a.url,
        sha256: &sha,
        dest: &dest,
        size: None,
        label: &label,
    };
    match a.url.strip_prefix("file://") {
        Some(p) => {
            download::copy_local(Path::new(p), &req, fetch.progress).map_err(wrap)?;
        }
        None => {
            download::fetch(
                fetch.client().map_err(wrap)?,
                &req,
                &fetch.download,
                fetch.progress,
            )
            .await
            .map_err(wrap)?;
        }
    }
    let record = Record {
        url: a.url.clone(),
        sha256: sha.clone(),
        checksum_source: a.checksum.describe(),
    };
    let path = record_path(&dir);
    let text = serde_json::to_vec_pretty(&record).unwrap_or_default();
    atomic_write(&path, &text, Access::Normal).map_err(|source| {
        wrap(ImageError::Io {
            what: "cannot write",
            path,
            source,
        })
    })?;
    Ok(CachedArtifact {
        name: a.name,
        version: a.version.clone(),
        file_name: a.file_name.clone(),
        kind: a.kind,
        path: dest,
        sha256: sha,
        downloaded: true,
    })
}

/// Every artifact of `catalog`, in catalog order.
pub async fn ensure_all(
    dirs: &Dirs,
    catalog: &Catalog,
    fetch: &Fetch<'_>,
) -> Result<Vec<CachedArtifact>, NodeSoftwareError> {
    let mut out = Vec::with_capacity(catalog.artifacts.len());
    for a in &catalog.artifacts {
        out.push(ensure(dirs, a, fetch).await?);
    }
    Ok(out)
}

/// The node software of a plan's nodes, in the cache and verified: what
/// provisioning uploads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanSoftware {
    /// [`linux_catalog`], when the plan has Linux nodes with Kubernetes.
    pub linux: Vec<CachedArtifact>,
    /// The Windows catalog of the plan's one release, when it has Windows
    /// workers with Kubernetes and the release is chosen (before that it is
    /// empty: the control plane's first prepare-node chooses it).
    pub windows: Vec<CachedArtifact>,
}

/// Whether `plan`'s Linux nodes need [`linux_catalog`]: every Kubernetes
/// cluster's do (not `--no-kubernetes`).
pub fn linux_needed(plan: &crate::plan::Plan) -> bool {
    plan.kubernetes && plan.nodes.iter().any(|n| n.os == crate::plan::Os::Linux)
}

/// Whether `plan` needs the Windows catalog now (see [`PlanSoftware::windows`]).
pub fn windows_needed(plan: &crate::plan::Plan) -> bool {
    plan.kubernetes
        && plan.kubernetes_release.is_some()
        && plan.nodes.iter().any(|n| n.os == crate::plan::Os::Windows)
}

/// Fetches the node software `plan` needs through the cache (once; then
/// from the cache, also offline), before provisioning. The one call `up`
/// and `node add` make.
pub async fn ensure_for_plan(
    dirs: &Dirs,
    plan: &crate::plan::Plan,
    fetch: &Fetch<'_>,
) -> Result<PlanSoftware, NodeSoftwareError> {
    let mut out = PlanSoftware::default();
    if linux_needed(plan) {
        for a in &linux_catalog() {
            out.linux.push(ensure(dirs, a, fetch).await?);
        }
    }
    if windows_needed(plan) {
        out.windows = ensure_all(dirs, &catalog_for_plan(plan)?, fetch).await?;
    }
    Ok(out)
}

/// [`linux_catalog`] from the cache only (no network): what a Linux node's
/// prepare-node uploads.
pub fn cached_linux(dirs: &Dirs) -> Result<Vec<CachedArtifact>, NodeSoftwareError> {
    linux_catalog()
        .iter()
        .map(|a| {
            cached(dirs, a).ok_or_else(|| NodeSoftwareError::NotCached {
                name: a.name.to_string(),
                version: a.version.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_a_checksum_and_names_its_source() {
        let c = catalog("1.36.2").unwrap();
        let names: Vec<&str> = c.artifacts.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "containerd",
                "crictl",
                "kubelet",
                "kubeadm",
                "kube-proxy",
                "cni-plugins",
                "flannel-cni",
                "flanneld"
            ]
        );
        for a in &c.artifacts {
            assert!(a.url.starts_with("https://"), "{a:?}");
            match &a.checksum {
                ChecksumSource::Pinned { sha256, source } => {
                    assert_eq!(sha256.len(), 64, "{a:?}");
                    assert!(!source.is_empty(), "{a:?}");
                }
                ChecksumSource::File { url, name } => {
                    assert!(url.starts_with(&a.url), "checksum beside the file: {a:?}");
                    assert_eq!(name, &a.file_name);
                }
            }
            assert!(a.checksum.describe().contains("https://"), "{a:?}");
        }
    }

    #[test]
    fn kubernetes_binaries_are_the_clusters_release() {
        let c = catalog("1.35.4").unwrap();
        for name in ["kubelet", "kubeadm", "kube-proxy"] {
            let a = c.artifacts.iter().find(|a| a.name == name).unwrap();
            assert_eq!(a.version, "1.35.4");
            assert_eq!(
                a.url,
                format!("https://dl.k8s.io/release/v1.35.4/bin/windows/amd64/{name}.exe")
            );
        }
        let containerd = &c.artifacts[0];
        assert!(containerd.version.starts_with("2."), "containerd 2.x");
        assert_eq!(
            FLANNEL_VERSION,
            crate::kube::flannel::RELEASE.trim_start_matches('v')
        );
    }

    #[test]
    fn the_plans_release_picks_the_catalog() {
        let mut plan = crate::kube::kubeadm::tests::plan("1.36");
        plan.kubernetes_release = None;
        assert!(matches!(
            catalog_for_plan(&plan),
            Err(NodeSoftwareError::NoRelease { .. })
        ));
        plan.kubernetes_release = Some("1.36.4".into());
        let c = catalog_for_plan(&plan).unwrap();
        assert_eq!(c.kubernetes, "1.36.4");
    }

    #[test]
    fn releases_are_checked() {
        for bad in ["1.36", "v1.36.1", "1.36.x", "1.36.1.2", ""] {
            assert!(
                matches!(catalog(bad), Err(NodeSoftwareError::Release(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            catalog("1.20.1"),
            Err(NodeSoftwareError::Unsupported { .. })
        ));
    }

    #[test]
    fn checksum_files_bare_or_sha256sum() {
        let hex = "AB".repeat(32);
        assert_eq!(
            parse_checksum(&format!("{hex}\n"), "kubelet.exe"),
            Some(hex.to_lowercase())
        );
        assert_eq!(
            parse_checksum(&format!("{hex}  containerd.tar.gz\n"), "containerd.tar.gz"),
            Some(hex.to_lowercase())
        );
        assert_eq!(
            parse_checksum(&format!("{hex}  other.tgz\n"), "mine.tgz"),
            None
        );
        assert_eq!(parse_checksum("not a hash", "x"), None);
    }

    #[test]
    fn linux_entries_are_pinned_from_kubespray_or_read_from_a_mirror() {
        let c = linux_catalog_from(&Origins::default());
        let names: Vec<&str> = c.iter().map(|a| a.name).collect();
        assert_eq!(names, [LINUX_CONTAINERD, LINUX_RUNC, LINUX_CNI_PLUGINS]);
        assert_eq!(
            c[0].url,
            "https://github.com/containerd/containerd/releases/download/v2.3.4/containerd-2.3.4-linux-amd64.tar.gz"
        );
        assert_eq!(
            c[1].url,
            "https://github.com/opencontainers/runc/releases/download/v1.4.3/runc.amd64"
        );
        assert_eq!(
            c[2].url,
            "https://github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz"
        );
        assert!(c[0].version.starts_with("2."), "containerd 2.x");
        assert_eq!(
            c.iter().map(|a| a.kind).collect::<Vec<_>>(),
            [Kind::TarGz, Kind::Binary, Kind::TarGz]
        );
        for a in &c {
            assert!(a.url.ends_with(&a.file_name), "{a:?}");
            let ChecksumSource::Pinned { sha256, source } = &a.checksum else {
                panic!("upstream Linux entries are pinned: {a:?}");
            };
            assert_eq!(sha256.len(), 64, "{a:?}");
            assert!(
                sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert_eq!(source, LINUX_CHECKSUMS_SOURCE);
        }
        // A mirror: the same paths under github.com/, the publishers'
        // checksum files beside them.
        let m = linux_catalog_from(&Origins::mirror("file:///srv/m/"));
        assert_eq!(
            m[0].url,
            "file:///srv/m/github.com/containerd/containerd/releases/download/v2.3.4/containerd-2.3.4-linux-amd64.tar.gz"
        );
        let sums: Vec<(String, String)> = m
            .iter()
            .map(|a| match &a.checksum {
                ChecksumSource::File { url, name } => (url.clone(), name.clone()),
                other => panic!("a mirror's checksums are read from it: {other:?}"),
            })
            .collect();
        assert_eq!(sums[0].0, format!("{}.sha256sum", m[0].url));
        assert_eq!(
            sums[1].0,
            "file:///srv/m/github.com/opencontainers/runc/releases/download/v1.4.3/runc.sha256sum"
        );
        assert_eq!(sums[1].1, "runc.amd64");
        assert_eq!(sums[2].0, format!("{}.sha256", m[2].url));
        assert!(!Origins::mirror("http://127.0.0.1:1").is_upstream());
        assert!(Origins::default().is_upstream());
    }

    #[test]
    fn kubernetes_clusters_need_the_linux_software_and_windows_waits_for_the_release() {
        let mut plan = crate::kube::kubeadm::tests::plan("1.35");
        assert!(linux_needed(&plan), "1.35 too: one runtime for every minor");
        plan.kubernetes_release = None;
        assert!(!windows_needed(&plan), "no release chosen yet");
        plan.kubernetes_release = Some("1.35.2".into());
        assert!(windows_needed(&plan));
        plan.kubernetes = false;
        assert!(!linux_needed(&plan));
        assert!(!windows_needed(&plan));
    }
}
