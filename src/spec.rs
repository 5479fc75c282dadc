//! What the user asked for: layered configuration and its validation.
//!
//! Layers, highest first: command-line flags, `DEVCLUSTER_*` environment
//! variables, the project file (`--config FILE` or `./devcluster.toml`), the
//! user's config file (`<config dir>/config.toml`), built-in defaults. Each
//! value remembers where it came from ([`Origin`]), so an error can say
//! "control-plane memory 1024 MiB (from ./devcluster.toml line 4) is below
//! ...": the user learns which file or flag to fix. Unknown keys in a file
//! are an error naming the key, the file and the line (serde's
//! `deny_unknown_fields`; toml reports the position).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::UserError;
use crate::net::Cidr;
use crate::versions::{self, KubernetesVersion};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: Option<usize> },
    Flag(&'static str),
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "the default"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{} line {line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Val<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Val<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Self { value, origin }
    }

    pub fn default_value(value: T) -> Self {
        Self::new(value, Origin::Default)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Auto,
    Libvirt,
    Hyperv,
    Virtualbox,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Auto => "auto",
            ProviderKind::Libvirt => "libvirt",
            ProviderKind::Hyperv => "hyperv",
            ProviderKind::Virtualbox => "virtualbox",
        })
    }
}

/// libvirt domain type: `kvm` (hardware virtualization), `qemu` (software
/// emulation, slow but works anywhere), `auto` (kvm when it really runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    Auto,
    Kvm,
    Qemu,
}

/// libvirt network: `nat` gives guests the internet; `isolated` keeps all
/// guest traffic on the host (tests use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Nat,
    Isolated,
}

/// The devices a Windows guest gets on libvirt (`[libvirt]
/// windows_devices`): `emulated` (the default), a SATA disk and an e1000e
/// NIC, which Windows drives with its in-box drivers; or `virtio`, a
/// virtio-blk disk and a virtio-net NIC, faster but only with the virtio-win
/// drivers, which the base-image build then loads from the pinned
/// virtio-win ISO ([`crate::images::winbase::virtio_win_entry`]). A base
/// disk is built for one choice (its key includes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WindowsDevices {
    #[default]
    Emulated,
    Virtio,
}

impl WindowsDevices {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowsDevices::Emulated => "emulated",
            WindowsDevices::Virtio => "virtio",
        }
    }
}

impl fmt::Display for WindowsDevices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configuration layer: every setting optional, with its origin.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub provider: Option<Val<ProviderKind>>,
    pub kubernetes_version: Option<Val<String>>,
    pub workers: Option<Val<u32>>,
    pub windows_workers: Option<Val<u32>>,
    pub cp_cpus: Option<Val<u32>>,
    pub cp_memory_mib: Option<Val<u32>>,
    pub cp_disk_gib: Option<Val<u32>>,
    pub linux_cpus: Option<Val<u32>>,
    pub linux_memory_mib: Option<Val<u32>>,
    pub linux_disk_gib: Option<Val<u32>>,
    pub linux_image: Option<Val<String>>,
    pub windows_cpus: Option<Val<u32>>,
    pub windows_memory_mib: Option<Val<u32>>,
    pub windows_disk_gib: Option<Val<u32>>,
    pub windows_image: Option<Val<String>>,
    /// `[windows] taint`: Windows workers join with `os=windows:NoSchedule`.
    pub windows_taint: Option<Val<bool>>,
    pub pod_cidr: Option<Val<String>>,
    pub service_cidr: Option<Val<String>>,
    pub node_cidr: Option<Val<String>>,
    pub libvirt_uri: Option<Val<String>>,
    pub libvirt_domain_type: Option<Val<DomainType>>,
    pub libvirt_network_mode: Option<Val<NetworkMode>>,
    pub libvirt_windows_devices: Option<Val<WindowsDevices>>,
    /// Never download: images must be in the cache.
    pub offline: Option<Val<bool>>,
}

impl Layer {
    /// `self` over `lower`: each setting from the first layer that has it.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            provider: self.provider.or(lower.provider),
            kubernetes_version: self.kubernetes_version.or(lower.kubernetes_version),
            workers: self.workers.or(lower.workers),
            windows_workers: self.windows_workers.or(lower.windows_workers),
            cp_cpus: self.cp_cpus.or(lower.cp_cpus),
            cp_memory_mib: self.cp_memory_mib.or(lower.cp_memory_mib),
            cp_disk_gib: self.cp_disk_gib.or(lower.cp_disk_gib),
            linux_cpus: self.linux_cpus.or(lower.linux_cpus),
            linux_memory_mib: self.linux_memory_mib.or(lower.linux_memory_mib),
            linux_disk_gib: self.linux_disk_gib.or(lower.linux_disk_gib),
            linux_image: self.linux_image.or(lower.linux_image),
            windows_cpus: self.windows_cpus.or(lower.windows_cpus),
            windows_memory_mib: self.windows_memory_mib.or(lower.windows_memory_mib),
            windows_disk_gib: self.windows_disk_gib.or(lower.windows_disk_gib),
            windows_image: self.windows_image.or(lower.windows_image),
            windows_taint: self.windows_taint.or(lower.windows_taint),
            pod_cidr: self.pod_cidr.or(lower.pod_cidr),
            service_cidr: self.service_cidr.or(lower.service_cidr),
            node_cidr: self.node_cidr.or(lower.node_cidr),
            libvirt_uri: self.libvirt_uri.or(lower.libvirt_uri),
            libvirt_domain_type: self.libvirt_domain_type.or(lower.libvirt_domain_type),
            libvirt_network_mode: self.libvirt_network_mode.or(lower.libvirt_network_mode),
            libvirt_windows_devices: self
                .libvirt_windows_devices
                .or(lower.libvirt_windows_devices),
            offline: self.offline.or(lower.offline),
        }
    }

    /// Built-in defaults.
    pub fn defaults() -> Layer {
        let d = |v: u32| Some(Val::default_value(v));
        let s = |v: &str| Some(Val::default_value(v.to_string()));
        Layer {
            provider: Some(Val::default_value(ProviderKind::Auto)),
            kubernetes_version: s(versions::default_minor()),
            workers: d(1),
            windows_workers: d(0),
            cp_cpus: d(2),
            cp_memory_mib: d(2048),
            cp_disk_gib: d(20),
            linux_cpus: d(2),
            linux_memory_mib: d(2048),
            linux_disk_gib: d(20),
            linux_image: s("ubuntu-24.04"),
            windows_cpus: d(2),
            windows_memory_mib: d(4096),
            windows_disk_gib: d(64),
            windows_image: s("windows-server-2025"),
            windows_taint: Some(Val::default_value(
                crate::provision::windows_node::DEFAULT_TAINT,
            )),
            pod_cidr: s("10.244.0.0/16"),
            service_cidr: s("10.96.0.0/12"),
            node_cidr: None,
            libvirt_uri: s("qemu:///system"),
            libvirt_domain_type: Some(Val::default_value(DomainType::Auto)),
            libvirt_network_mode: Some(Val::default_value(NetworkMode::Nat)),
            libvirt_windows_devices: Some(Val::default_value(WindowsDevices::Emulated)),
            offline: Some(Val::default_value(false)),
        }
    }

    /// `DEVCLUSTER_*` variables that have no flag (the others are read by
    /// clap together with their flags).
    pub fn from_env() -> Layer {
        let var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| Val::new(v, Origin::Env(name)))
        };
        Layer {
            libvirt_uri: var("DEVCLUSTER_LIBVIRT_URI"),
            ..Layer::default()
        }
    }
}

// ---- config files -------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLayer {
    provider: Option<Spanned<ProviderKind>>,
    kubernetes_version: Option<Spanned<String>>,
    workers: Option<Spanned<u32>>,
    windows_workers: Option<Spanned<u32>>,
    control_plane: Option<FileMachine>,
    linux: Option<FilePool>,
    windows: Option<FileWindows>,
    network: Option<FileNetwork>,
    libvirt: Option<FileLibvirt>,
    offline: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileMachine {
    cpus: Option<Spanned<u32>>,
    memory_mib: Option<Spanned<u32>>,
    disk_gib: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FilePool {
    cpus: Option<Spanned<u32>>,
    memory_mib: Option<Spanned<u32>>,
    disk_gib: Option<Spanned<u32>>,
    image: Option<Spanned<String>>,
}

/// `[windows]`: a pool, plus whether its nodes carry the Windows taint.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileWindows {
    cpus: Option<Spanned<u32>>,
    memory_mib: Option<Spanned<u32>>,
    disk_gib: Option<Spanned<u32>>,
    image: Option<Spanned<String>>,
    taint: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    pod_cidr: Option<Spanned<String>>,
    service_cidr: Option<Spanned<String>>,
    node_cidr: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLibvirt {
    uri: Option<Spanned<String>>,
    domain_type: Option<Spanned<DomainType>>,
    network_mode: Option<Spanned<NetworkMode>>,
    windows_devices: Option<Spanned<WindowsDevices>>,
}

/// Reads a config file into a layer. Unknown keys, wrong types and bad
/// syntax are errors naming the file and the line.
pub fn load_file(path: &Path) -> Result<Layer, UserError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UserError::new(format!("cannot read config file {}: {e}", path.display())))?;
    parse_file(path, &text)
}

/// Parses config text that came from `path` (for messages and origins).
pub fn parse_file(path: &Path, text: &str) -> Result<Layer, UserError> {
    let file: FileLayer = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let at = line.map(|l| format!(" line {l}")).unwrap_or_default();
        UserError::new(format!(
            "invalid config file {}{at}: {}",
            path.display(),
            e.message()
        ))
        .hint("config keys are described in the README (section \"Configuration\")")
    })?;
    let v = |s: Option<Spanned<u32>>| spanned(s, path, text);
    let st = |s: Option<Spanned<String>>| spanned(s, path, text);
    let cp = file.control_plane.unwrap_or_default();
    let linux = file.linux.unwrap_or_default();
    let windows = file.windows.unwrap_or_default();
    let network = file.network.unwrap_or_default();
    let libvirt = file.libvirt.unwrap_or_default();
    Ok(Layer {
        provider: spanned(file.provider, path, text),
        kubernetes_version: st(file.kubernetes_version),
        workers: v(file.workers),
        windows_workers: v(file.windows_workers),
        cp_cpus: v(cp.cpus),
        cp_memory_mib: v(cp.memory_mib),
        cp_disk_gib: v(cp.disk_gib),
        linux_cpus: v(linux.cpus),
        linux_memory_mib: v(linux.memory_mib),
        linux_disk_gib: v(linux.disk_gib),
        linux_image: st(linux.image),
        windows_cpus: v(windows.cpus),
        windows_memory_mib: v(windows.memory_mib),
        windows_disk_gib: v(windows.disk_gib),
        windows_image: st(windows.image),
        windows_taint: spanned(windows.taint, path, text),
        pod_cidr: st(network.pod_cidr),
        service_cidr: st(network.service_cidr),
        node_cidr: st(network.node_cidr),
        libvirt_uri: st(libvirt.uri),
        libvirt_domain_type: spanned(libvirt.domain_type, path, text),
        libvirt_network_mode: spanned(libvirt.network_mode, path, text),
        libvirt_windows_devices: spanned(libvirt.windows_devices, path, text),
        offline: spanned(file.offline, path, text),
    })
}

fn spanned<T>(s: Option<Spanned<T>>, path: &Path, text: &str) -> Option<Val<T>> {
    s.map(|s| {
        let line = line_of(text, s.span().start);
        Val::new(
            s.into_inner(),
            Origin::File {
                path: path.to_path_buf(),
                line: Some(line),
            },
        )
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

// ---- the resolved spec -------------------------------------------------

/// CPU, memory and disk of one kind of node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpus: Val<u32>,
    pub memory_mib: Val<u32>,
    pub disk_gib: Val<u32>,
}

/// The validated request.
#[derive(Debug, Clone)]
pub struct Spec {
    pub cluster: Val<String>,
    pub provider: Val<ProviderKind>,
    pub kubernetes: &'static KubernetesVersion,
    pub workers: Val<u32>,
    pub windows_workers: Val<u32>,
    pub control_plane: Machine,
    pub linux: Machine,
    pub linux_image: Val<String>,
    pub windows: Machine,
    pub windows_image: Val<String>,
    /// `[windows] taint` ([`crate::provision::windows_node::DEFAULT_TAINT`]).
    pub windows_taint: Val<bool>,
    pub pod_cidr: Val<Cidr>,
    pub service_cidr: Val<Cidr>,
    pub node_cidr: Option<Val<Cidr>>,
    pub libvirt_uri: Val<String>,
    pub libvirt_domain_type: Val<DomainType>,
    pub libvirt_network_mode: Val<NetworkMode>,
    pub libvirt_windows_devices: Val<WindowsDevices>,
    /// Never download images (`--offline`, `offline = true`).
    pub offline: Val<bool>,
}

/// Most workers of each OS: node names such as `NAME-win9` then fit
/// Windows' 15-character limit with a 10-character cluster name.
pub const MAX_WORKERS: u32 = 9;
/// Longest cluster name (CLI.md).
pub const MAX_CLUSTER_NAME: usize = 10;

const CP_MIN_CPUS: u32 = 2;
const CP_MIN_MEMORY_MIB: u32 = 2048;
const LINUX_MIN_CPUS: u32 = 1;
const LINUX_MIN_MEMORY_MIB: u32 = 1024;
const WINDOWS_MIN_CPUS: u32 = 2;
const WINDOWS_MIN_MEMORY_MIB: u32 = 4096;
const LINUX_MIN_DISK_GIB: u32 = 10;
const WINDOWS_MIN_DISK_GIB: u32 = 32;
const MAX_CPUS: u32 = 64;

fn req<T>(v: Option<Val<T>>, key: &str) -> Result<Val<T>, UserError> {
    v.ok_or_else(|| UserError::new(format!("internal error: no default for {key}")))
}

/// Checks a cluster name against CLI.md's rule.
pub fn validate_cluster_name(name: &Val<String>) -> Result<(), UserError> {
    let n = &name.value;
    let ok = !n.is_empty()
        && n.len() <= MAX_CLUSTER_NAME
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        return Ok(());
    }
    let why = if n.is_empty() {
        "it is empty".to_string()
    } else if n.len() > MAX_CLUSTER_NAME {
        format!(
            "it has {} characters, at most {MAX_CLUSTER_NAME} fit (node names such as {n}-win1 must fit Windows' 15-character limit)",
            n.chars().count()
        )
    } else if n.chars().any(|c| c.is_ascii_uppercase()) {
        "uppercase letters are not allowed".to_string()
    } else if let Some(c) = n
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        format!("'{c}' is not allowed (only lowercase letters, digits and '-')")
    } else {
        "it must start with a letter".to_string()
    };
    let suggestion: String = n
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .skip_while(|c| !c.is_ascii_lowercase())
        .take(MAX_CLUSTER_NAME)
        .collect();
    let suggestion = if suggestion.is_empty() {
        "dev".to_string()
    } else {
        suggestion
    };
    Err(UserError::new(format!(
        "invalid cluster name \"{n}\" (from {}): {why}",
        name.origin
    ))
    .hint(format!(
        "use lowercase letters, digits and '-', starting with a letter, at most {MAX_CLUSTER_NAME} characters, e.g. --cluster {suggestion}"
    )))
}

/// Resolves merged layers into a spec and validates everything that does
/// not depend on the host. Host checks are in [`check_host_memory`].
pub fn resolve(cluster: Val<String>, layer: Layer) -> Result<Spec, UserError> {
    validate_cluster_name(&cluster)?;
    let layer = layer.over(Layer::defaults());

    let version = req(layer.kubernetes_version, "kubernetes_version")?;
    let kubernetes = versions::find(&version.value).ok_or_else(|| {
        UserError::new(format!(
            "Kubernetes version \"{}\" (from {}) is not supported",
            version.value, version.origin
        ))
        .hint(format!(
            "choose one of {} (the default is {})",
            versions::supported_list(),
            versions::default_minor()
        ))
    })?;

    let workers = count(req(layer.workers, "workers")?, "Linux workers", "--workers")?;
    let windows_workers = count(
        req(layer.windows_workers, "windows_workers")?,
        "Windows workers",
        "--windows-workers",
    )?;

    let control_plane = Machine {
        cpus: req(layer.cp_cpus, "control_plane.cpus")?,
        memory_mib: req(layer.cp_memory_mib, "control_plane.memory_mib")?,
        disk_gib: req(layer.cp_disk_gib, "control_plane.disk_gib")?,
    };
    check_machine(
        &control_plane,
        "control-plane",
        CP_MIN_CPUS,
        CP_MIN_MEMORY_MIB,
        LINUX_MIN_DISK_GIB,
        "kubeadm's preflight minimum",
    )?;
    let linux = Machine {
        cpus: req(layer.linux_cpus, "linux.cpus")?,
        memory_mib: req(layer.linux_memory_mib, "linux.memory_mib")?,
        disk_gib: req(layer.linux_disk_gib, "linux.disk_gib")?,
    };
    if workers.value > 0 {
        check_machine(
            &linux,
            "Linux worker",
            LINUX_MIN_CPUS,
            LINUX_MIN_MEMORY_MIB,
            LINUX_MIN_DISK_GIB,
            "the least a kubelet with a few pods runs in",
        )?;
    }
    let windows = Machine {
        cpus: req(layer.windows_cpus, "windows.cpus")?,
        memory_mib: req(layer.windows_memory_mib, "windows.memory_mib")?,
        disk_gib: req(layer.windows_disk_gib, "windows.disk_gib")?,
    };
    if windows_workers.value > 0 {
        check_machine(
            &windows,
            "Windows worker",
            WINDOWS_MIN_CPUS,
            WINDOWS_MIN_MEMORY_MIB,
            WINDOWS_MIN_DISK_GIB,
            "what Windows Server with containerd needs",
        )?;
    }

    let pod_cidr = cidr(req(layer.pod_cidr, "network.pod_cidr")?, "pod")?;
    let service_cidr = cidr(req(layer.service_cidr, "network.service_cidr")?, "service")?;
    let node_cidr = layer.node_cidr.map(|c| cidr(c, "node")).transpose()?;
    if let Some(node) = &node_cidr
        && node.value.prefix() != 24
    {
        return Err(UserError::new(format!(
            "node network {} (from {}) must be a /24",
            node.value, node.origin
        ))
        .hint("give a /24 such as 192.168.150.0/24, or leave node_cidr out to let devcluster pick one"));
    }
    check_pod_cidr(&pod_cidr, windows_workers.value)?;
    check_service_cidr(&service_cidr)?;
    no_overlap(&pod_cidr, "pod", &service_cidr, "service")?;
    if let Some(node) = &node_cidr {
        no_overlap(&pod_cidr, "pod", node, "node")?;
        no_overlap(&service_cidr, "service", node, "node")?;
    }

    for image in [&layer.linux_image, &layer.windows_image]
        .into_iter()
        .flatten()
    {
        if image.value.trim().is_empty() {
            return Err(
                UserError::new(format!("empty image name (from {})", image.origin))
                    .hint("name an image from `devcluster images list`"),
            );
        }
    }

    Ok(Spec {
        cluster,
        provider: req(layer.provider, "provider")?,
        kubernetes,
        workers,
        windows_workers,
        control_plane,
        linux,
        linux_image: req(layer.linux_image, "linux.image")?,
        windows,
        windows_image: req(layer.windows_image, "windows.image")?,
        windows_taint: layer
            .windows_taint
            .unwrap_or_else(|| Val::default_value(crate::provision::windows_node::DEFAULT_TAINT)),
        pod_cidr,
        service_cidr,
        node_cidr,
        libvirt_uri: req(layer.libvirt_uri, "libvirt.uri")?,
        libvirt_domain_type: req(layer.libvirt_domain_type, "libvirt.domain_type")?,
        libvirt_network_mode: req(layer.libvirt_network_mode, "libvirt.network_mode")?,
        libvirt_windows_devices: layer
            .libvirt_windows_devices
            .unwrap_or_else(|| Val::default_value(WindowsDevices::Emulated)),
        offline: req(layer.offline, "offline")?,
    })
}

fn count(v: Val<u32>, what: &str, flag: &str) -> Result<Val<u32>, UserError> {
    if v.value > MAX_WORKERS {
        return Err(UserError::new(format!(
            "{} {what} (from {}) is too many: at most {MAX_WORKERS}",
            v.value, v.origin
        ))
        .hint(format!("use {flag} 0 to {MAX_WORKERS}")));
    }
    Ok(v)
}

fn check_machine(
    m: &Machine,
    role: &str,
    min_cpus: u32,
    min_mem: u32,
    min_disk: u32,
    why: &str,
) -> Result<(), UserError> {
    if m.cpus.value < min_cpus || m.cpus.value > MAX_CPUS {
        return Err(UserError::new(format!(
            "{role} CPUs {} (from {}) must be {min_cpus} to {MAX_CPUS} ({why})",
            m.cpus.value, m.cpus.origin
        ))
        .hint(format!("give the {role} nodes at least {min_cpus} CPUs")));
    }
    if m.memory_mib.value < min_mem {
        return Err(UserError::new(format!(
            "{role} memory {} MiB (from {}) is below {min_mem} MiB ({why})",
            m.memory_mib.value, m.memory_mib.origin
        ))
        .hint(format!("give the {role} nodes at least {min_mem} MiB")));
    }
    if m.disk_gib.value < min_disk {
        return Err(UserError::new(format!(
            "{role} disk {} GiB (from {}) is below {min_disk} GiB",
            m.disk_gib.value, m.disk_gib.origin
        ))
        .hint(format!(
            "give the {role} nodes at least {min_disk} GiB of disk"
        )));
    }
    Ok(())
}

fn cidr(v: Val<String>, what: &str) -> Result<Val<Cidr>, UserError> {
    match v.value.parse::<Cidr>() {
        Ok(c) => Ok(Val::new(c, v.origin)),
        Err(e) => Err(
            UserError::new(format!("invalid {what} CIDR (from {}): {e}", v.origin))
                .hint("write an IPv4 network as A.B.C.D/N, e.g. 10.244.0.0/16"),
        ),
    }
}

/// The pod network's share per node: kube-controller-manager's
/// `--node-cidr-mask-size` for IPv4, which kubeadm leaves at /24.
pub const NODE_POD_PREFIX: u8 = 24;
/// kubeadm's `ValidatePodSubnetNodeMask`: the node mask may be at most 16
/// bits longer than the pod network's (a /8 at the most for /24s).
pub const MIN_POD_PREFIX: u8 = NODE_POD_PREFIX - 16;
/// kubeadm's `ValidateServiceSubnetSize`: at most 20 bits of service
/// addresses (a /12 for IPv4).
pub const MIN_SERVICE_PREFIX: u8 = 12;
/// The cluster DNS service is the 10th address of the service network, so
/// it needs at least 16 addresses.
pub const MAX_SERVICE_PREFIX: u8 = 28;

/// The most nodes a cluster planned with `windows_workers` can come to
/// hold: the control plane, every Linux worker `node add` can reach, and
/// the planned Windows workers. Each needs its own /24 of the pod network.
pub fn max_nodes(windows_workers: u32) -> u32 {
    1 + crate::plan::MAX_LINUX_WORKERS + windows_workers
}

/// kubeadm's rules for the pod network, at validation time: /8 to /24
/// (kubeadm's node-mask rule), and large enough for a /24 per node the
/// cluster can grow to ([`max_nodes`]).
pub fn check_pod_cidr(pod: &Val<Cidr>, windows_workers: u32) -> Result<(), UserError> {
    let prefix = pod.value.prefix();
    let example = "pod_cidr = \"10.244.0.0/16\" under [network] (the default)";
    if prefix < MIN_POD_PREFIX {
        return Err(UserError::new(format!(
            "pod network {} (from {}) is larger than a /{MIN_POD_PREFIX}: kubeadm gives each node a /{NODE_POD_PREFIX} of it and allows at most 16 bits between the two",
            pod.value, pod.origin
        ))
        .hint(format!("use a /{MIN_POD_PREFIX} to /{NODE_POD_PREFIX} network, e.g. {example}")));
    }
    let nodes = max_nodes(windows_workers);
    let room = 1u64 << (NODE_POD_PREFIX.saturating_sub(prefix).min(32));
    if prefix > NODE_POD_PREFIX || room < u64::from(nodes) {
        // The longest prefix that still holds `nodes` /24s.
        let bits = (32 - (nodes - 1).leading_zeros()) as u8;
        return Err(UserError::new(format!(
            "pod network {} (from {}) is too small: each node gets a /{NODE_POD_PREFIX} of it, and this cluster can have {nodes} nodes (the control plane, {} Linux workers with `node add`, {windows_workers} Windows workers)",
            pod.value,
            pod.origin,
            crate::plan::MAX_LINUX_WORKERS
        ))
        .hint(format!(
            "use a /{} or larger network, e.g. {example}",
            NODE_POD_PREFIX - bits
        )));
    }
    Ok(())
}

/// kubeadm's rule for the service network (at most a /12), and room for
/// the cluster DNS address (at least a /28).
pub fn check_service_cidr(service: &Val<Cidr>) -> Result<(), UserError> {
    let prefix = service.value.prefix();
    let example = "service_cidr = \"10.96.0.0/12\" under [network] (the default)";
    if prefix < MIN_SERVICE_PREFIX {
        return Err(UserError::new(format!(
            "service network {} (from {}) is larger than a /{MIN_SERVICE_PREFIX}, the largest kubeadm accepts (at most 20 bits of service addresses)",
            service.value, service.origin
        ))
        .hint(format!("use a /{MIN_SERVICE_PREFIX} to /{MAX_SERVICE_PREFIX} network, e.g. {example}")));
    }
    if prefix > MAX_SERVICE_PREFIX {
        return Err(UserError::new(format!(
            "service network {} (from {}) is smaller than a /{MAX_SERVICE_PREFIX}: the cluster DNS service takes its 10th address",
            service.value, service.origin
        ))
        .hint(format!("use a /{MIN_SERVICE_PREFIX} to /{MAX_SERVICE_PREFIX} network, e.g. {example}")));
    }
    Ok(())
}

fn no_overlap(a: &Val<Cidr>, an: &str, b: &Val<Cidr>, bn: &str) -> Result<(), UserError> {
    if a.value.overlaps(&b.value) {
        return Err(UserError::new(format!(
            "the {an} network {} (from {}) overlaps the {bn} network {} (from {})",
            a.value, a.origin, b.value, b.origin
        ))
        .hint(format!("choose {an} and {bn} networks that do not overlap")));
    }
    Ok(())
}

impl Spec {
    /// Memory of all nodes together, in MiB.
    pub fn total_memory_mib(&self) -> u64 {
        u64::from(self.control_plane.memory_mib.value)
            + u64::from(self.workers.value) * u64::from(self.linux.memory_mib.value)
            + u64::from(self.windows_workers.value) * u64::from(self.windows.memory_mib.value)
    }
}

/// Compares the requested memory with the host's: an error above it, a
/// warning (returned) above 80 %.
pub fn check_host_memory(spec: &Spec, host_mib: Option<u64>) -> Result<Option<String>, UserError> {
    let Some(host) = host_mib else {
        return Ok(None);
    };
    let want = spec.total_memory_mib();
    if want > host {
        return Err(UserError::new(format!(
            "the cluster needs {want} MiB of memory but this host has {host} MiB"
        ))
        .hint("use fewer workers (--workers, --windows-workers) or less memory per node (--worker-memory, --windows-memory, --control-plane-memory)"));
    }
    if want * 10 > host * 8 {
        return Ok(Some(format!(
            "the cluster needs {want} MiB, more than 80% of this host's {host} MiB: the host may start swapping"
        )));
    }
    Ok(None)
}

/// Parses a memory size for flags: `4096` (MiB), `4096M`, `4096MiB`, `4G`,
/// `4GiB` (case-insensitive). Returns MiB.
pub fn parse_memory_mib(s: &str) -> Result<u32, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t
        .strip_suffix("gib")
        .or_else(|| t.strip_suffix("gb"))
        .or_else(|| t.strip_suffix('g'))
    {
        (n, 1024)
    } else if let Some(n) = t
        .strip_suffix("mib")
        .or_else(|| t.strip_suffix("mb"))
        .or_else(|| t.strip_suffix('m'))
    {
        (n, 1)
    } else {
        (t.as_str(), 1)
    };
    let n: u32 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size: write MiB (4096) or with a unit (4G, 4096M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses a disk size for flags: `20` (GiB), `20G`, `20GiB`.
pub fn parse_disk_gib(s: &str) -> Result<u32, String> {
    let t = s.trim().to_ascii_lowercase();
    let num = t
        .strip_suffix("gib")
        .or_else(|| t.strip_suffix("gb"))
        .or_else(|| t.strip_suffix('g'))
        .unwrap_or(&t);
    num.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size: write GiB (20) or 20G"))
}

#[cfg(test)]
mod tests {

    fn with_networks(pod: &str, service: &str, windows: u32) -> Result<Spec, UserError> {
        let layer = Layer {
            pod_cidr: Some(Val::new(pod.into(), Origin::Flag("--pod"))),
            service_cidr: Some(Val::new(service.into(), Origin::Env("SVC"))),
            windows_workers: Some(Val::new(windows, Origin::Flag("--windows-workers"))),
            ..Layer::default()
        };
        resolve(Val::new("dev".into(), Origin::Flag("--cluster")), layer)
    }

    #[test]
    fn kubeadm_cidr_rules_at_their_edges() {
        let ok = |pod: &str, svc: &str, win: u32| {
            if let Err(e) = with_networks(pod, svc, win) {
                panic!("{pod} {svc} {win}: {e}");
            }
        };
        let err = |pod: &str, svc: &str, win: u32| {
            let e = with_networks(pod, svc, win).expect_err(&format!("{pod} {svc} {win}"));
            format!("{e}\nhint: {}", e.hint.clone().unwrap_or_default())
        };
        // Pod network: /8 is the largest (16 bits below the /24 per node).
        ok("10.0.0.0/8", "172.16.0.0/12", 0);
        let e = err("10.0.0.0/7", "172.16.0.0/12", 0);
        assert!(
            e.contains("pod network 10.0.0.0/7 (from --pod) is larger than a /8"),
            "{e}"
        );
        assert!(
            e.contains("at most 16 bits") && e.contains("e.g. pod_cidr = \"10.244.0.0/16\""),
            "{e}"
        );
        // Room for a /24 per node the cluster can reach: 1 + 9 Linux + the
        // Windows workers. A /20 holds 16.
        ok("10.244.0.0/20", "10.96.0.0/12", 0);
        ok("10.244.0.0/20", "10.96.0.0/12", 6);
        let e = err("10.244.0.0/20", "10.96.0.0/12", 7);
        assert!(
            e.contains("pod network 10.244.0.0/20 (from --pod) is too small"),
            "{e}"
        );
        assert!(e.contains("this cluster can have 17 nodes"), "{e}");
        assert!(
            e.contains("use a /19 or larger network, e.g. pod_cidr"),
            "{e}"
        );
        let e = err("10.244.0.0/21", "10.96.0.0/12", 0);
        assert!(
            e.contains("can have 10 nodes") && e.contains("use a /20 or larger"),
            "{e}"
        );
        let e = err("10.244.0.0/25", "10.96.0.0/12", 0);
        assert!(e.contains("is too small"), "{e}");
        // Service network: /12 the largest, /28 the smallest.
        ok("10.244.0.0/16", "10.96.0.0/12", 0);
        ok("10.244.0.0/16", "10.96.0.0/28", 0);
        let e = err("10.244.0.0/16", "10.96.0.0/11", 0);
        assert!(
            e.contains(
                "service network 10.96.0.0/11 (from environment variable SVC) is larger than a /12"
            ),
            "{e}"
        );
        assert!(e.contains("e.g. service_cidr = \"10.96.0.0/12\""), "{e}");
        let e = err("10.244.0.0/16", "10.96.0.0/29", 0);
        assert!(
            e.contains("is smaller than a /28") && e.contains("10th address"),
            "{e}"
        );
    }

    use super::*;

    fn name(n: &str) -> Val<String> {
        Val::new(n.to_string(), Origin::Flag("--cluster"))
    }

    #[test]
    fn cluster_names() {
        for ok in ["dev", "a", "a1-b2", "abcdefghij"] {
            assert!(validate_cluster_name(&name(ok)).is_ok(), "{ok}");
        }
        for bad in ["", "Dev", "1dev", "a_b", "abcdefghijk", "-a", "dév"] {
            assert!(validate_cluster_name(&name(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_layer_keeps_lines() {
        let text = "workers = 2\n\n[control_plane]\nmemory_mib = 1024\n";
        let layer = parse_file(Path::new("dc.toml"), text).unwrap();
        let mem = layer.cp_memory_mib.unwrap();
        assert_eq!(mem.value, 1024);
        assert_eq!(mem.origin.to_string(), "dc.toml line 4");
    }

    #[test]
    fn offline_from_a_file() {
        let layer = parse_file(Path::new("dc.toml"), "workers = 0\noffline = true\n").unwrap();
        let spec = resolve(name("dev"), layer).unwrap();
        assert!(spec.offline.value);
        assert_eq!(spec.offline.origin.to_string(), "dc.toml line 2");
        let spec = resolve(name("dev"), Layer::default()).unwrap();
        assert!(!spec.offline.value);
    }

    /// `[windows] taint`: on by default (see `DEFAULT_TAINT`), off from
    /// a file into the plan; a value that is not a boolean, or the key in
    /// another section, is one error naming the file and line.
    #[test]
    fn windows_taint_key() {
        let spec = resolve(name("dev"), Layer::default()).unwrap();
        assert!(spec.windows_taint.value);
        assert_eq!(spec.windows_taint.origin, Origin::Default);
        let text = "windows_workers = 1\n[windows]\nmemory_mib = 4096\ntaint = false\n";
        let layer = parse_file(Path::new("dc.toml"), text).unwrap();
        let spec = resolve(name("dev"), layer).unwrap();
        assert!(!spec.windows_taint.value);
        assert_eq!(spec.windows_taint.origin.to_string(), "dc.toml line 4");
        let plan = crate::plan::plan(&spec, &crate::plan::Surroundings::default()).unwrap();
        assert!(!plan.windows_taint);
        // Kept in the state only when it differs from the default.
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["windows_taint"], serde_json::Value::Bool(false));
        let back: crate::plan::Plan = serde_json::from_value(json).unwrap();
        assert!(!back.windows_taint);
        let mut json = serde_json::to_value(&plan).unwrap();
        json.as_object_mut().unwrap().remove("windows_taint");
        let old: crate::plan::Plan = serde_json::from_value(json).unwrap();
        assert!(
            old.windows_taint,
            "a state from before the key has the default"
        );
        for bad in ["taint = \"yes\"", "taint = 1"] {
            let text = format!("[windows]\n{bad}\n");
            let err = parse_file(Path::new("dc.toml"), &text).unwrap_err();
            assert!(err.message.contains("dc.toml line 2"), "{}", err.message);
            assert!(err.message.contains("bool"), "{}", err.message);
        }
        let err = parse_file(Path::new("dc.toml"), "[linux]\ntaint = true\n").unwrap_err();
        assert!(err.message.contains("taint"), "{}", err.message);
    }

    /// `[libvirt] windows_devices`: emulated by default, virtio from a
    /// file into the plan (and back from a state; a state from before the
    /// key is emulated); anything else is one error naming file and line.
    #[test]
    fn libvirt_windows_devices_key() {
        let spec = resolve(name("dev"), Layer::default()).unwrap();
        assert_eq!(spec.libvirt_windows_devices.value, WindowsDevices::Emulated);
        let text = "windows_workers = 1\n[libvirt]\nwindows_devices = \"virtio\"\n";
        let layer = parse_file(Path::new("dc.toml"), text).unwrap();
        let spec = resolve(name("dev"), layer).unwrap();
        assert_eq!(spec.libvirt_windows_devices.value, WindowsDevices::Virtio);
        assert_eq!(
            spec.libvirt_windows_devices.origin.to_string(),
            "dc.toml line 3"
        );
        let plan = crate::plan::plan(&spec, &crate::plan::Surroundings::default()).unwrap();
        assert_eq!(plan.libvirt.windows_devices, WindowsDevices::Virtio);
        let mut json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["libvirt"]["windows_devices"], "virtio");
        json["libvirt"]
            .as_object_mut()
            .unwrap()
            .remove("windows_devices");
        let old: crate::plan::Plan = serde_json::from_value(json).unwrap();
        assert_eq!(old.libvirt.windows_devices, WindowsDevices::Emulated);
        for bad in ["windows_devices = \"vfio\"", "windows_devices = true"] {
            let text = format!("[libvirt]\n{bad}\n");
            let err = parse_file(Path::new("dc.toml"), &text).unwrap_err();
            assert!(err.message.contains("dc.toml line 2"), "{}", err.message);
        }
    }

    #[test]
    fn unknown_key_names_key_file_line() {
        let text = "workers = 2\n[network]\npod_cidr = \"10.244.0.0/16\"\nfoo = 1\n";
        let err = parse_file(Path::new("dc.toml"), text).unwrap_err();
        assert!(err.message.contains("dc.toml line 4"), "{}", err.message);
        assert!(err.message.contains("foo"), "{}", err.message);
    }

    #[test]
    fn layers_override_in_order() {
        let file = parse_file(Path::new("f.toml"), "workers = 3\nwindows_workers = 1\n").unwrap();
        let flags = Layer {
            workers: Some(Val::new(5, Origin::Flag("--workers"))),
            ..Layer::default()
        };
        let spec = resolve(name("dev"), flags.over(file)).unwrap();
        assert_eq!(spec.workers.value, 5);
        assert_eq!(spec.windows_workers.value, 1);
        assert_eq!(spec.linux.memory_mib.origin, Origin::Default);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_memory_mib("4096"), Ok(4096));
        assert_eq!(parse_memory_mib("4G"), Ok(4096));
        assert_eq!(parse_memory_mib("2GiB"), Ok(2048));
        assert_eq!(parse_memory_mib("512m"), Ok(512));
        assert!(parse_memory_mib("lots").is_err());
        assert_eq!(parse_disk_gib("40G"), Ok(40));
    }

    #[test]
    fn memory_against_host() {
        let spec = resolve(name("dev"), Layer::default()).unwrap();
        let total = spec.total_memory_mib();
        assert_eq!(total, 4096);
        assert!(check_host_memory(&spec, Some(total - 1)).is_err());
        assert!(check_host_memory(&spec, Some(total)).unwrap().is_some());
        assert!(check_host_memory(&spec, Some(total * 2)).unwrap().is_none());
    }
}
