//! Hypervisor providers behind one trait.
//!
//! A provider turns planned nodes into VMs. Every method is idempotent —
//! creating what exists, starting what runs, deleting what is gone all
//! succeed — so `up` and `destroy` can be re-run from any partial state.
//! Addresses come from the plan, never from asking the hypervisor.
//!
//! One folder per provider, each holding its own templates and scripts:
//! `libvirt/` (Linux, `virt` crate; its XML rendering compiles on every
//! host so it is tested everywhere), `hyperv/` (PowerShell scripts, run
//! wherever `powershell.exe` is; its logic compiles and is tested on every
//! host against a stand-in), `virtualbox/` (VBoxManage, on every host with
//! VirtualBox 7; tested against a stand-in VBoxManage).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::net::Cidr;
use crate::plan::{Os, Plan};
use crate::spec::{NetworkMode, ProviderKind};

pub mod hyperv;
pub mod libvirt;
pub mod virtualbox;

/// What the provider says about itself on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub kind: ProviderKind,
    pub usable: bool,
    /// Version or host facts when usable; why not when unusable.
    pub detail: String,
    /// How to make it usable.
    pub fix: Option<String>,
}

/// Optional abilities (Vagrant's capabilities, minikube's driver flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Disks are copy-on-write overlays of a shared base.
    pub linked_clones: bool,
    /// Suspend writes memory to disk and frees it.
    pub suspend_to_disk: bool,
    pub snapshots: bool,
    /// A running node's disk can be copied into a golden disk
    /// ([`Provider::begin_golden`]) that later VMs are linked clones of.
    pub golden_disks: bool,
    /// `devcluster images build` can make a Windows base disk here: a
    /// builder VM with the install ISO ([`VmSpec::install_iso`]), key
    /// presses ([`Provider::press_key`]), the build's log
    /// ([`Provider::build_log`]) and [`Provider::keep_disk`].
    pub windows_builds: bool,
}

/// A golden disk kept in the provider's own storage (QEMU, running as
/// another user, must read it, as it reads base images).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenVolume {
    /// The provider's name for it; [`VmSpec::golden`] takes it.
    pub name: String,
    /// Where it is, for people (may be on the provider's host).
    pub path: PathBuf,
    /// Bytes it takes.
    pub bytes: u64,
    /// Its virtual size: a clone's disk cannot be smaller.
    pub capacity_bytes: u64,
}

/// A VM's state as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// No such VM.
    Absent,
    Running,
    /// Paused in memory.
    Paused,
    /// Memory saved to disk (suspended); `resume` restores it.
    Saved,
    Off,
    /// Anything else (crashed, in transition), with the provider's word.
    Other,
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmState::Absent => "absent",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Saved => "suspended",
            VmState::Off => "off",
            VmState::Other => "unknown",
        })
    }
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Was already off or absent.
    AlreadyOff,
    /// The guest powered off after the ACPI request.
    Graceful,
    /// The guest did not stop in time and was powered off.
    Forced,
}

/// A host entry of the cluster network: the planned MAC gets the planned IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub name: String,
    pub mac: String,
    pub ip: Ipv4Addr,
}

/// The cluster's own network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub cluster: String,
    pub subnet: Cidr,
    pub gateway: Ipv4Addr,
    pub mode: NetworkMode,
    pub hosts: Vec<HostEntry>,
}

impl NetworkSpec {
    pub fn from_plan(plan: &Plan) -> Self {
        Self {
            cluster: plan.cluster.clone(),
            subnet: plan.network.subnet,
            gateway: plan.network.gateway,
            mode: plan.libvirt.network_mode,
            hosts: plan
                .nodes
                .iter()
                .map(|n| HostEntry {
                    name: n.name.clone(),
                    mac: n.mac.clone(),
                    ip: n.ip,
                })
                .collect(),
        }
    }
}

/// Boot firmware of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Uefi,
    Bios,
}

/// A base disk image on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// Catalog name, e.g. `ubuntu-24.04`.
    pub name: String,
    pub path: PathBuf,
    /// sha256 of the file (identifies the upload in shared storage).
    pub sha256: String,
    pub firmware: Firmware,
    /// Whether the bootloader is signed (Secure Boot may stay on).
    pub secure_boot: bool,
}

/// One VM to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub cluster: String,
    pub name: String,
    pub role: String,
    pub os: Os,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub mac: String,
    pub base: BaseImage,
    /// A golden disk ([`GoldenVolume::name`]) to clone instead of `base`;
    /// `base` still says how the disk boots (firmware, Secure Boot).
    pub golden: Option<String>,
    /// The seed ISO's bytes (cloud-init NoCloud, or the Windows answer ISO).
    pub seed_iso: Vec<u8>,
    /// Installation media (a Windows Server ISO on the host) for a builder
    /// VM: attached as a second CD-ROM, and the disk starts blank instead
    /// of from `base`/`golden`. None for nodes.
    pub install_iso: Option<PathBuf>,
    /// A Windows guest's disk and NIC on libvirt (`[libvirt]
    /// windows_devices`); other providers have their own synthetic devices
    /// and take only the default.
    pub windows_devices: crate::spec::WindowsDevices,
    /// The virtio-win driver ISO on the host, for a builder with virtio
    /// devices: a third CD-ROM, from which Windows Setup loads the disk and
    /// NIC drivers. None otherwise.
    pub drivers_iso: Option<PathBuf>,
    /// Where the serial console is logged (appended across boots).
    pub serial_log: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{kind} provider: {message}")]
    Unusable {
        kind: ProviderKind,
        message: String,
        fix: Option<String>,
    },
    #[error("no usable provider on this host ({tried})")]
    NoneUsable { tried: String, fix: Option<String> },
    #[error("{op} {what} failed")]
    Op {
        op: &'static str,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("VM {0} does not exist")]
    NoSuchVm(String),
    #[error("{0}")]
    Invalid(String),
}

impl ProviderError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ProviderError::Unusable { fix, .. } | ProviderError::NoneUsable { fix, .. } => {
                Some(match fix {
                    Some(f) => format!("{f}; `devcluster doctor` checks the whole host"),
                    None => {
                        "run `devcluster doctor`: it checks the host and says what to fix".into()
                    }
                })
            }
            ProviderError::Op { source, .. } => source
                .downcast_ref::<hyperv::HypervError>()
                .and_then(hyperv::HypervError::hint),
            _ => None,
        }
    }

    pub fn op(
        op: &'static str,
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ProviderError::Op {
            op,
            what: what.into(),
            source: Box::new(source),
        }
    }
}

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// One hypervisor backend.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;
    fn capabilities(&self) -> Capabilities;
    /// Whether VMs created here run under software emulation (hours for
    /// a Windows install), known once [`Provider::prepare_create`] ran.
    fn software_emulation(&self) -> bool {
        false
    }
    /// Where this provider keeps golden disks, recorded with each one so
    /// `images prune` deletes it at the same place (the libvirt URI).
    fn location(&self) -> String {
        String::new()
    }
    /// The format of the disks [`Provider::keep_disk`] makes.
    fn disk_format(&self) -> crate::images::Format {
        crate::images::Format::Qcow2
    }
    /// Gets ready to create VMs (probes the host where that is needed) and
    /// returns what the user should know about how VMs will run here,
    /// e.g. software emulation. Only commands that create VMs call it.
    async fn prepare_create(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Creates (or updates) and starts the cluster network.
    async fn ensure_network(&self, net: &NetworkSpec) -> Result<()>;
    /// Stops and deletes the cluster network; absent is fine.
    async fn remove_network(&self, cluster: &str) -> Result<()>;

    /// Creates the VM with its disk and seed; an existing VM is kept.
    async fn create_node(&self, vm: &VmSpec) -> Result<()>;
    /// Boots, or restores from a suspend; running is fine.
    async fn start(&self, name: &str) -> Result<()>;
    /// Presses a key (space) on the running VM's keyboard: the Windows
    /// ISO's "Press any key to boot from CD" prompt (see
    /// [`crate::winbuild::BOOT_KEY_EVERY`]).
    async fn press_key(&self, name: &str) -> Result<()> {
        let _ = name;
        Err(ProviderError::Invalid(format!(
            "the {} provider cannot press keys",
            self.kind()
        )))
    }
    /// What a Windows builder VM has written of its `devcluster-build:`
    /// lines so far ([`crate::winbuild::scan`] reads them): by default its
    /// serial log, `serial_log` of its [`VmSpec`], which the hypervisor
    /// writes (missing: nothing yet).
    async fn build_log(&self, vm: &str, serial_log: &std::path::Path) -> Result<String> {
        let _ = vm;
        Ok(std::fs::read(serial_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    }
    /// ACPI power-off, forced after `timeout`.
    async fn shutdown(&self, name: &str, timeout: Duration) -> Result<Shutdown>;
    /// Saves memory to disk and frees it.
    async fn suspend(&self, name: &str) -> Result<()>;
    /// Restores a suspended VM.
    async fn resume(&self, name: &str) -> Result<()>;
    async fn state(&self, name: &str) -> Result<VmState>;
    /// Deletes the VM and everything of it (disk, seed, saved memory,
    /// firmware variables); absent is fine.
    async fn delete_node(&self, name: &str) -> Result<()>;
    /// The VMs of a cluster the provider knows, found by their metadata
    /// (so `destroy` works without a state file).
    async fn cluster_vms(&self, cluster: &str) -> Result<Vec<String>>;
    /// Removes the cluster's storage once its VMs are gone.
    async fn remove_storage(&self, cluster: &str) -> Result<()>;

    /// Starts a point-in-time copy of running VM `node`'s system disk into
    /// a new golden disk named after `id`, and returns its name once the
    /// point in time is fixed: from then on the guest may change its disk,
    /// the copy does not see it. See [`Capabilities::golden_disks`].
    async fn begin_golden(&self, node: &str, id: &str) -> Result<String> {
        let _ = (node, id);
        Err(self.no_golden_disks())
    }
    /// Waits until the copy begun by [`Provider::begin_golden`] is complete;
    /// a copy that failed is deleted.
    async fn finish_golden(&self, node: &str, volume: &str) -> Result<GoldenVolume> {
        let _ = (node, volume);
        Err(self.no_golden_disks())
    }
    /// Copies the system disk of VM `node`, which is off, into a new
    /// golden disk named after `id` (a Windows base disk: the builder's
    /// disk after sysprep powered it off). Deleted by `remove_golden`.
    async fn keep_disk(&self, node: &str, id: &str) -> Result<GoldenVolume> {
        let _ = (node, id);
        Err(self.no_golden_disks())
    }
    /// Deletes a golden disk; absent is fine.
    async fn remove_golden(&self, volume: &str) -> Result<()> {
        let _ = volume;
        Err(self.no_golden_disks())
    }
    fn no_golden_disks(&self) -> ProviderError {
        ProviderError::Invalid(format!(
            "the {} provider does not keep golden disks",
            self.kind()
        ))
    }
}

/// How a person watches VM `vm`'s screen on provider `kind` (`uri`: the
/// libvirt URI): for errors about a Windows guest that gives no SSH or no
/// progress.
pub fn console_hint(kind: ProviderKind, uri: &str, vm: &str) -> String {
    match kind {
        ProviderKind::Libvirt => format!(
            "its console with `virsh -c {uri} vncdisplay {vm}` (a VNC viewer on that display)"
        ),
        ProviderKind::Hyperv => format!("its console with `vmconnect localhost {vm}`"),
        ProviderKind::Virtualbox => {
            format!("its window in VirtualBox Manager (VM {vm}, Show)")
        }
        ProviderKind::Auto => "its console in the hypervisor".to_string(),
    }
}

/// Settings a provider is opened with.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub libvirt_uri: String,
    pub libvirt_domain_type: crate::spec::DomainType,
    /// Where verdicts such as the KVM probe are cached.
    pub cache_dir: PathBuf,
}

/// The order `auto` tries providers in on this host.
pub fn auto_order() -> &'static [ProviderKind] {
    if cfg!(windows) {
        &[ProviderKind::Hyperv, ProviderKind::Virtualbox]
    } else if cfg!(target_os = "linux") {
        &[ProviderKind::Libvirt, ProviderKind::Virtualbox]
    } else {
        &[ProviderKind::Virtualbox]
    }
}

/// Detects one provider without opening it for use.
pub async fn detect(kind: ProviderKind, config: &ProviderConfig) -> Detection {
    match kind {
        ProviderKind::Libvirt => detect_libvirt(config).await,
        ProviderKind::Hyperv => detect_hyperv().await,
        ProviderKind::Virtualbox => virtualbox::detect().await,
        ProviderKind::Auto => Detection {
            kind,
            usable: false,
            detail: "auto is not a provider".into(),
            fix: None,
        },
    }
}

/// Hyper-V is asked through PowerShell on Windows, or wherever
/// `DEVCLUSTER_POWERSHELL` names a PowerShell (the tests' stand-in).
async fn detect_hyperv() -> Detection {
    let configured = std::env::var_os(hyperv::runner::PROGRAM_ENV).is_some_and(|p| !p.is_empty());
    if !cfg!(windows) && !configured {
        return Detection {
            kind: ProviderKind::Hyperv,
            usable: false,
            detail: "Hyper-V runs only on Windows hosts".into(),
            fix: Some(if cfg!(target_os = "linux") {
                "use --provider libvirt".into()
            } else {
                "use another provider".into()
            }),
        };
    }
    hyperv::detect(&hyperv::PowerShell::from_env()).await
}

#[cfg(target_os = "linux")]
async fn detect_libvirt(config: &ProviderConfig) -> Detection {
    libvirt::detect(&config.libvirt_uri).await
}

#[cfg(not(target_os = "linux"))]
async fn detect_libvirt(_config: &ProviderConfig) -> Detection {
    Detection {
        kind: ProviderKind::Libvirt,
        usable: false,
        detail: "the libvirt provider is built for Linux hosts only".into(),
        fix: None,
    }
}

/// Chooses and opens a provider: the requested one, or with `auto` the
/// first usable one in [`auto_order`]. Returns it with the detections of
/// the ones skipped (for "skipped hyperv: ..." lines).
pub async fn select(
    requested: ProviderKind,
    config: &ProviderConfig,
) -> Result<(Box<dyn Provider>, Vec<Detection>)> {
    let candidates: Vec<ProviderKind> = if requested == ProviderKind::Auto {
        auto_order().to_vec()
    } else {
        vec![requested]
    };
    let mut skipped = Vec::new();
    for kind in candidates {
        let d = detect(kind, config).await;
        if d.usable {
            return Ok((open(kind, config).await?, skipped));
        }
        skipped.push(d);
    }
    if requested != ProviderKind::Auto {
        let d = skipped.pop().expect("one candidate");
        return Err(ProviderError::Unusable {
            kind: d.kind,
            message: d.detail,
            fix: d.fix,
        });
    }
    Err(ProviderError::NoneUsable {
        tried: skipped
            .iter()
            .map(|d| format!("{}: {}", d.kind, d.detail))
            .collect::<Vec<_>>()
            .join("; "),
        fix: skipped.iter().find_map(|d| d.fix.clone()),
    })
}

/// Opens a provider for use.
pub async fn open(kind: ProviderKind, config: &ProviderConfig) -> Result<Box<dyn Provider>> {
    match kind {
        #[cfg(target_os = "linux")]
        ProviderKind::Libvirt => Ok(Box::new(libvirt::Libvirt::open(config).await?)),
        ProviderKind::Hyperv => Ok(Box::new(hyperv::HyperV::open(config).await?)),
        ProviderKind::Virtualbox => Ok(Box::new(virtualbox::VirtualBox::open(config).await?)),
        other => {
            let d = detect(other, config).await;
            Err(ProviderError::Unusable {
                kind: other,
                message: d.detail,
                fix: d.fix,
            })
        }
    }
}
