//! The VirtualBox provider (Linux, Windows and Intel macOS hosts), driven
//! through `VBoxManage` ([`vboxmanage`]). It compiles on every OS; it runs
//! wherever VBoxManage 7.0 or newer is found.
//!
//! **Network.** Every VM has two NICs. NIC 1 is NAT, for egress only: every
//! VM's NAT address is the same 10.0.2.15, so nothing of the cluster may
//! use it. NIC 2 is host-only, with the node's planned MAC, on the
//! cluster's own /24 with the host at `.1`: a host-only *interface*
//! (`hostonlyif`, `vboxnetN`) on Linux and Windows, a host-only *network*
//! (`hostonlynet`, named `devcluster-CLUSTER`) on macOS, where VirtualBox 7
//! has no host-only interfaces (Vagrant `driver/version_7_0.rb`). A
//! `vboxnetN` cannot be named, so which one is the cluster's is kept in
//! VirtualBox's global extra data (`devcluster/hostonlyif/CLUSTER`): destroy
//! finds it without our state. The guest's seed makes NIC 1 DHCP and NIC 2
//! static, matched by MAC ([`crate::seed::cloud_init::network_config_two_nics`]);
//! kubelet's `node-ip`, the API server's advertise address and flannel's
//! `--iface` all name NIC 2's address or interface. Since 6.1.28 the
//! host-only subnet must be allowed by `/etc/vbox/networks.conf`
//! ([`networks`]), which planning respects.
//!
//! **Disks.** The cached VDI is cloned once per image into a *base VM*
//! (`devcluster-base-IMAGE-SHA12`, group `/devcluster-bases`) that is never
//! started, and a snapshot `base` is taken of it; each node is `clonevm
//! --snapshot base --options link`, a linked clone whose disk is a
//! differencing image of the base (Vagrant's linked clones), grown to the
//! planned size. The seed ISO sits in the VM's folder, on the SATA DVD.
//!
//! **Windows.** `devcluster images build` ([`crate::winbuild`]) makes a
//! *builder* VM (`VmSpec::install_iso`): a new blank VDI on SATA port 0,
//! the installation ISO and the build seed (`DCBUILD`, 0600 in the VM
//! folder) on two SATA DVDs, EFI with Secure Boot and Microsoft's keys
//! (`modifynvram`), one Intel PRO/1000 NIC (Windows' in-box driver) on an
//! *internal* network (VM-only, so no host-only range: the builder's
//! network is isolated and has no hosts, see [`internal_only`]), the serial
//! console to a file (the build log), boot order disk then DVD. The ISO's
//! "Press any key" prompt gets the space bar (`keyboardputscancode`).
//! When sysprep has powered it off, `keep_disk` copies its disk
//! (`clonemedium`) into a new base VM `devcluster-winbase-ID` in
//! `/devcluster-bases` with the snapshot `base`, exactly like an image's
//! base VM; the builder is then deleted with its own disk. A Windows node
//! (`VmSpec::golden` = that base VM's name) is a linked clone of it with
//! the same two NICs as every node (the node seed sets the host-only one
//! statically by MAC), its seed CD, and Secure Boot. Clones carry the
//! guest property `/devcluster/base`, so `remove_golden` refuses while one
//! exists. Guest type `Windows2022_64` for 2022 and 2025 (see
//! [`WINDOWS_OSTYPE`]).
//!
//! **Tags.** Node and builder VMs are in the group `/devcluster/CLUSTER`
//! and carry the guest property `/devcluster/cluster`; `/devcluster/created`
//! is set last, so a VM found without it is a creation cut short and is
//! made again.

pub mod networks;
pub mod vboxmanage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::plan::Os;
use crate::providers::{
    BaseImage, Capabilities, Detection, GoldenVolume, NetworkSpec, Provider, ProviderConfig,
    ProviderError, Result, Shutdown, VmSpec, VmState,
};
use crate::spec::ProviderKind;
use vboxmanage::{ErrorKind, MachineInfo, MachineState, Runner, VBoxError};

/// The group base VMs live in.
pub const BASES_GROUP: &str = "/devcluster-bases";
/// The snapshot every node is a linked clone of.
pub const BASE_SNAPSHOT: &str = "base";
/// The storage controller of every VM (disk on port 0, seed DVD on port 1).
pub const CONTROLLER: &str = "SATA";
const PROP_CLUSTER: &str = "/devcluster/cluster";
const PROP_CREATED: &str = "/devcluster/created";
/// On a linked clone of a kept Windows base: the base VM's name, so
/// `remove_golden` finds the clones that still need it.
const PROP_BASE: &str = "/devcluster/base";
const SEED_FILE: &str = "seed.iso";
const DISK_FILE: &str = "disk.vdi";
/// The guest type of every Windows VM, 2022 and 2025 alike: `Windows2025_64`
/// exists only since VirtualBox 7.1 and the provider supports 7.0, where
/// `createvm`/`modifyvm` would refuse it. The guest type only picks
/// defaults and a label; everything Setup needs (EFI, Secure Boot, SATA,
/// the NIC, memory) is set explicitly.
pub const WINDOWS_OSTYPE: &str = "Windows2022_64";
/// The NIC type of every VM: the Intel PRO/1000 MT Desktop, whose driver
/// Windows Server has in-box (the VirtualBox manual, "Virtual Networking
/// Hardware": it "works with Windows Vista and later versions"), so Setup
/// and a sysprepped image need no driver disk (virtio-net would need
/// virtio-win's).
const NIC_TYPE: &str = "82540EM";
/// Scan code set 1 of the space bar: make 0x39, break 0xb9 (0x39 | 0x80),
/// as `controlvm keyboardputscancode` takes them (the VirtualBox manual,
/// `VBoxManage controlvm`: "keyboardputscancode <hex> [<hex>...]" sends
/// raw PC keyboard scan codes).
const SPACE_SCANCODES: [&str; 2] = ["39", "b9"];

/// A cluster's VM group.
pub fn cluster_group(cluster: &str) -> String {
    format!("/devcluster/{cluster}")
}

/// The extra-data key naming a cluster's host-only interface.
pub fn network_key(cluster: &str) -> String {
    format!("devcluster/hostonlyif/{cluster}")
}

/// A cluster's host-only network (macOS).
pub fn hostonlynet_name(cluster: &str) -> String {
    format!("devcluster-{cluster}")
}

/// The base VM a kept Windows base disk lives in (`keep_disk`'s `id`).
pub fn golden_vm_name(id: &str) -> String {
    format!("devcluster-winbase-{id}")
}

/// The internal network of a builder (see [`internal_only`]).
pub fn internal_network_name(cluster: &str) -> String {
    format!("devcluster-{cluster}")
}

/// Whether `net` is made as a VirtualBox *internal* network, which exists
/// only between VMs (no host side, no `networks.conf` range): an isolated
/// network nothing on the host must reach, i.e. the Windows builder's
/// (`winbuild` asks for an isolated network without host entries; Setup
/// needs no network). A cluster's network always has its nodes as hosts.
pub fn internal_only(net: &NetworkSpec) -> bool {
    net.mode == crate::spec::NetworkMode::Isolated && net.hosts.is_empty()
}

/// The base VM of an image.
pub fn base_vm_name(base: &BaseImage) -> String {
    let sha: String = base.sha256.chars().take(12).collect();
    format!("devcluster-base-{}-{sha}", base.name)
}

/// NIC 1's MAC: the planned (NIC 2) MAC with its fifth octet set to 01,
/// so it is unique per node and never equal to a planned MAC (whose fifth
/// octet is 00), and the guest can match NIC 1 by MAC too.
pub fn nat_mac(planned: &str) -> String {
    let mut parts: Vec<&str> = planned.split(':').collect();
    if parts.len() == 6 {
        parts[4] = "01";
    }
    parts.join(":")
}

/// How the cluster's host-only side is made on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// `hostonlyif` (`vboxnetN`): Linux and Windows hosts.
    Interface,
    /// `hostonlynet`: VirtualBox 7 on macOS.
    Network,
}

impl NetKind {
    pub fn for_this_host() -> Self {
        if cfg!(target_os = "macos") {
            NetKind::Network
        } else {
            NetKind::Interface
        }
    }
}

/// VBoxManage: `DEVCLUSTER_VBOXMANAGE`, else on PATH, else VirtualBox's
/// default install folder (Windows, macOS).
pub fn find_program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(vboxmanage::PROGRAM_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = if cfg!(windows) {
        "VBoxManage.exe"
    } else {
        "VBoxManage"
    };
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(exe)).collect())
        .unwrap_or_default();
    if cfg!(windows) {
        if let Some(pf) = std::env::var_os("ProgramFiles") {
            candidates.push(PathBuf::from(pf).join(r"Oracle\VirtualBox\VBoxManage.exe"));
        }
        candidates.push(PathBuf::from(
            r"C:\Program Files\Oracle\VirtualBox\VBoxManage.exe",
        ));
    }
    if cfg!(target_os = "macos") {
        candidates.push(PathBuf::from(
            "/Applications/VirtualBox.app/Contents/MacOS/VBoxManage",
        ));
        candidates.push(PathBuf::from("/usr/local/bin/VBoxManage"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

async fn version_output(runner: &Runner) -> std::result::Result<String, String> {
    runner
        .run(None, &["--version"])
        .await
        .map_err(|e| crate::error::one_line(&e))
}

/// Is VirtualBox 7 usable here?
pub async fn detect() -> Detection {
    let unusable = |detail: String| Detection {
        kind: ProviderKind::Virtualbox,
        usable: false,
        detail,
        fix: Some(networks::install_hint()),
    };
    let Some(program) = find_program() else {
        return unusable("VBoxManage not found (PATH, VirtualBox's install folder)".into());
    };
    let runner = Runner::new(&program);
    let check = networks::version_check(
        version_output(&runner)
            .await
            .as_deref()
            .map_err(|e| e.clone()),
    );
    match check.status {
        crate::doctor::Status::Ok => Detection {
            kind: ProviderKind::Virtualbox,
            usable: true,
            detail: format!("{} ({})", check.found, program.display()),
            fix: None,
        },
        _ => Detection {
            kind: ProviderKind::Virtualbox,
            usable: false,
            detail: check.found,
            fix: check.fix,
        },
    }
}

/// `(Get-CimInstance Win32_ComputerSystem).HypervisorPresent` on Windows.
async fn hypervisor_present() -> Option<String> {
    if !cfg!(windows) {
        return None;
    }
    let out = tokio::process::Command::new("powershell.exe")
        .args([
            "-NoLogo",
            "-NoProfile",
            "-NonInteractive",
            "-Command",
            "(Get-CimInstance Win32_ComputerSystem).HypervisorPresent",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The VirtualBox checks of `devcluster doctor`: the version, the
/// host-only ranges for `subnets` (the VirtualBox clusters' and the one a
/// new cluster would get), Hyper-V on a Windows host.
pub async fn checks(subnets: &[crate::net::Cidr]) -> Vec<crate::doctor::Check> {
    let version = match find_program() {
        None => Err("VBoxManage not found (PATH, VirtualBox's install folder)".to_string()),
        Some(p) => version_output(&Runner::new(p)).await,
    };
    vec![
        networks::version_check(version.as_deref().map_err(|e| e.clone())),
        networks::networks_conf_check(&networks::host_allowed_ranges(), subnets),
        networks::hyperv_check(hypervisor_present().await.as_deref()),
    ]
}

/// Where planning may put a cluster's subnet for `provider`: for
/// VirtualBox (and `auto` on macOS, where it is the only provider) the
/// host-only ranges this host's VirtualBox allows ([`networks`]); `None`
/// for anything else, or on Windows. Reads `/etc/vbox/networks.conf` and
/// nothing else: it works, and changes nothing, without VirtualBox.
pub fn plan_restriction(
    provider: ProviderKind,
) -> std::result::Result<Option<crate::plan::AllowedSubnets>, crate::error::UserError> {
    let applies = provider == ProviderKind::Virtualbox
        || (provider == ProviderKind::Auto && cfg!(target_os = "macos"));
    if !applies {
        return Ok(None);
    }
    let ranges = networks::host_allowed_ranges().map_err(|e| {
        crate::error::UserError::new(e.to_string()).hint(format!(
            "each line of {} is `*` and ranges, e.g. `* 192.168.56.0/21`",
            networks::NETWORKS_CONF
        ))
    })?;
    Ok(ranges.map(|ranges| crate::plan::AllowedSubnets {
        ranges,
        by: "VirtualBox".into(),
        file: networks::NETWORKS_CONF.into(),
    }))
}

pub struct VirtualBox {
    vbm: Arc<Runner>,
    net_kind: NetKind,
    /// Cluster -> its host-only interface or network, as ensured.
    networks: std::sync::Mutex<HashMap<String, String>>,
    /// Nodes are created in parallel; the first makes the base VM.
    base_lock: tokio::sync::Mutex<()>,
    /// How often a shutting-down VM's state is polled.
    poll: Duration,
}

fn op(op: &'static str, what: impl Into<String>) -> impl FnOnce(VBoxError) -> ProviderError {
    let what = what.into();
    move |e| ProviderError::op(op, what, e)
}

impl VirtualBox {
    /// Tags VM `name` with its cluster (what `cluster_vms` finds).
    async fn tag_cluster(&self, name: &str, cluster: &str) -> Result<()> {
        self.vbm(name, &["guestproperty", "set", name, PROP_CLUSTER, cluster])
            .await
            .map_err(op("tagging", format!("VM {name}")))?;
        Ok(())
    }

    /// Registers an empty base VM `name` in [`BASES_GROUP`] (Linux bases
    /// from the cached VDI, Windows bases from a builder's disk).
    async fn create_base_vm(&self, name: &str, ostype: &str) -> Result<()> {
        self.vbm(
            name,
            &[
                "createvm",
                "--name",
                name,
                "--groups",
                BASES_GROUP,
                "--ostype",
                ostype,
                "--register",
            ],
        )
        .await
        .map_err(op("creating", format!("base VM {name}")))?;
        Ok(())
    }

    pub async fn open(_config: &ProviderConfig) -> Result<Self> {
        let d = detect().await;
        if !d.usable {
            return Err(ProviderError::Unusable {
                kind: ProviderKind::Virtualbox,
                message: d.detail,
                fix: d.fix,
            });
        }
        let program = find_program().ok_or_else(|| ProviderError::Unusable {
            kind: ProviderKind::Virtualbox,
            message: "VBoxManage not found".into(),
            fix: Some(networks::install_hint()),
        })?;
        Ok(Self::with_runner(
            Runner::new(program),
            NetKind::for_this_host(),
        ))
    }

    /// A provider on `runner` (tests: a stand-in VBoxManage).
    pub fn with_runner(runner: Runner, net_kind: NetKind) -> Self {
        Self {
            vbm: Arc::new(runner),
            net_kind,
            networks: std::sync::Mutex::new(HashMap::new()),
            base_lock: tokio::sync::Mutex::new(()),
            poll: Duration::from_millis(500),
        }
    }

    /// Sets how often a shutdown polls the VM's state.
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    async fn vbm(&self, vm: &str, args: &[&str]) -> std::result::Result<String, VBoxError> {
        self.vbm.run(Some(vm), args).await
    }

    /// `showvminfo`, or `None` for no such VM.
    pub async fn info(&self, name: &str) -> Result<Option<MachineInfo>> {
        match self
            .vbm(name, &["showvminfo", name, "--machinereadable"])
            .await
        {
            Ok(text) => MachineInfo::parse(&text).map(Some).map_err(|what| {
                ProviderError::op(
                    "reading",
                    format!("VM {name}"),
                    VBoxError::Unexpected {
                        args: format!("showvminfo {name} --machinereadable"),
                        what,
                    },
                )
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ProviderError::op("reading", format!("VM {name}"), e)),
        }
    }

    async fn existing(&self, name: &str) -> Result<MachineInfo> {
        self.info(name)
            .await?
            .ok_or_else(|| ProviderError::NoSuchVm(name.to_string()))
    }

    async fn guest_property(&self, vm: &str, key: &str) -> Result<Option<String>> {
        self.vbm(vm, &["guestproperty", "get", vm, key])
            .await
            .map(|t| vboxmanage::parse_value(&t))
            .map_err(op("reading", format!("guest property {key} of {vm}")))
    }

    async fn extradata(&self, key: &str) -> Result<Option<String>> {
        self.vbm
            .run(None, &["getextradata", "global", key])
            .await
            .map(|t| vboxmanage::parse_value(&t))
            .map_err(op("reading", format!("extra data {key}")))
    }

    /// The cluster's host-only interface or network, if it has one.
    async fn network_of(&self, cluster: &str) -> Result<Option<String>> {
        if let Some(n) = self
            .networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster)
        {
            return Ok(Some(n.clone()));
        }
        match self.net_kind {
            NetKind::Interface => self.extradata(&network_key(cluster)).await,
            NetKind::Network => {
                let name = hostonlynet_name(cluster);
                let nets = self
                    .vbm
                    .run(None, &["list", "hostonlynets"])
                    .await
                    .map_err(op("listing", "host-only networks"))?;
                Ok(vboxmanage::parse_hostonlynets(&nets)
                    .into_iter()
                    .any(|n| n.name == name)
                    .then_some(name))
            }
        }
    }

    /// Every host-only interface or network a VM uses (any VM, ours or
    /// not: one still in use is kept).
    async fn networks_in_use(&self) -> Result<Vec<String>> {
        let list = self
            .vbm
            .run(None, &["list", "vms"])
            .await
            .map_err(op("listing", "VMs"))?;
        let mut used = Vec::new();
        for (name, uuid) in vboxmanage::parse_list_vms(&list) {
            if let Some(info) = self.info(&uuid).await.map_err(|e| {
                tracing::debug!("VM {name}: {e}");
                e
            })? {
                used.extend(info.host_only_networks().map(str::to_string));
            }
        }
        Ok(used)
    }

    /// The base VM of `base`, made (once) if missing; a base VM without its
    /// snapshot is a creation cut short and is made again.
    async fn ensure_base(&self, base: &BaseImage, os: Os) -> Result<String> {
        let _one = self.base_lock.lock().await;
        let name = base_vm_name(base);
        match self.info(&name).await? {
            Some(info) if info.snapshots.iter().any(|s| s == BASE_SNAPSHOT) => return Ok(name),
            Some(_) => self.unregister(&name).await?,
            None => {}
        }
        let ostype = ostype(os);
        self.create_base_vm(&name, ostype).await?;
        let info = self.existing(&name).await?;
        let dir = vm_dir(&info)?;
        let disk = dir.join(DISK_FILE);
        let disk_s = disk.to_string_lossy().into_owned();
        self.clear_disk(&disk).await;
        let src = base.path.to_string_lossy().into_owned();
        self.vbm
            .run(
                None,
                &["clonemedium", "disk", &src, &disk_s, "--format", "VDI"],
            )
            .await
            .map_err(op("copying", format!("disk image {}", base.path.display())))?;
        self.finish_base(&name, &disk_s).await?;
        Ok(name)
    }

    /// A disk file left by a creation cut short (a clone or a new medium
    /// not yet attached, so `unregistervm --delete` did not take it):
    /// unregistered and deleted, so the new one can be made in its place.
    async fn clear_disk(&self, disk: &Path) {
        if disk.exists() {
            let disk_s = disk.to_string_lossy().into_owned();
            let _ = self
                .vbm
                .run(None, &["closemedium", "disk", &disk_s, "--delete"])
                .await;
            let _ = std::fs::remove_file(disk);
        }
    }

    /// Attaches base VM `name`'s disk, sets EFI and takes the snapshot its
    /// linked clones are made from. The snapshot is last: a base VM without
    /// it is a creation cut short.
    async fn finish_base(&self, name: &str, disk_s: &str) -> Result<()> {
        let steps: [Vec<&str>; 3] = [
            vec![
                "storagectl",
                name,
                "--name",
                CONTROLLER,
                "--add",
                "sata",
                "--controller",
                "IntelAhci",
                "--portcount",
                "2",
            ],
            vec![
                "storageattach",
                name,
                "--storagectl",
                CONTROLLER,
                "--port",
                "0",
                "--device",
                "0",
                "--type",
                "hdd",
                "--medium",
                disk_s,
            ],
            vec!["modifyvm", name, "--firmware", "efi"],
        ];
        for args in &steps {
            self.vbm(name, args)
                .await
                .map_err(op("setting up", format!("base VM {name}")))?;
        }
        self.vbm(name, &["snapshot", name, "take", BASE_SNAPSHOT])
            .await
            .map_err(op("taking the base snapshot of", format!("base VM {name}")))?;
        Ok(())
    }

    /// Powers a VM off (whatever its state) and unregisters it with its
    /// files; then removes the seed and the VM's folder if empty.
    async fn unregister(&self, name: &str) -> Result<()> {
        let Some(info) = self.info(name).await? else {
            return Ok(());
        };
        match info.state {
            MachineState::Running | MachineState::Paused | MachineState::Transient => {
                match self.vbm(name, &["controlvm", name, "poweroff"]).await {
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::InvalidState) => {}
                    Err(e) => {
                        return Err(ProviderError::op("powering off", format!("VM {name}"), e));
                    }
                }
            }
            MachineState::Saved => {
                self.vbm(name, &["discardstate", name])
                    .await
                    .map_err(op("discarding the saved state of", format!("VM {name}")))?;
            }
            _ => {}
        }
        match self.vbm(name, &["unregistervm", name, "--delete"]).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(ProviderError::op("deleting", format!("VM {name}"), e)),
        }
        if let Ok(dir) = vm_dir(&info) {
            let _ = std::fs::remove_file(dir.join(SEED_FILE));
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(())
    }

    /// Writes VM `name`'s seed ISO into its folder (0600: a Windows seed
    /// holds the Administrator password's encoding and the host key).
    fn write_seed(&self, vm: &VmSpec, dir: &Path) -> Result<PathBuf> {
        let seed = dir.join(SEED_FILE);
        crate::fsutil::atomic_write(&seed, &vm.seed_iso, crate::fsutil::Access::Private).map_err(
            |e| {
                ProviderError::op(
                    "writing",
                    format!("the seed of {} ({})", vm.name, seed.display()),
                    e,
                )
            },
        )?;
        Ok(seed)
    }

    /// Attaches `medium` to `vm`'s SATA `port` as `kind` (`hdd`, `dvddrive`).
    async fn attach(
        &self,
        vm: &str,
        port: &str,
        kind: &str,
        medium: &Path,
        what: &str,
    ) -> Result<()> {
        let medium = medium.to_string_lossy().into_owned();
        self.vbm(
            vm,
            &[
                "storageattach",
                vm,
                "--storagectl",
                CONTROLLER,
                "--port",
                port,
                "--device",
                "0",
                "--type",
                kind,
                "--medium",
                &medium,
            ],
        )
        .await
        .map(drop)
        .map_err(op("attaching", format!("{what} of {vm}")))
    }

    /// UEFI Secure Boot with Microsoft's keys, as the VirtualBox manual's
    /// `VBoxManage modifynvram` describes it: a fresh UEFI variable store,
    /// Microsoft's KEK and db signatures (Windows' boot manager is signed
    /// by Microsoft), Oracle's platform key (which ends setup mode), then
    /// Secure Boot on. After `modifyvm --firmware efi`, on a VM that is off.
    async fn secure_boot(&self, name: &str) -> Result<()> {
        let steps: [&[&str]; 4] = [
            &["modifynvram", name, "inituefivarstore"],
            &["modifynvram", name, "enrollmssignatures"],
            &["modifynvram", name, "enrollorclpk"],
            &["modifynvram", name, "secureboot", "--enable"],
        ];
        for args in steps {
            self.vbm(name, args)
                .await
                .map_err(op("setting up Secure Boot of", format!("VM {name}")))?;
        }
        Ok(())
    }

    /// A Windows builder VM ([`VmSpec::install_iso`]): a new VM with a new
    /// blank disk of `disk_gib` on SATA port 0, the installation ISO on
    /// port 1 and the build seed on port 2 (both DVDs), one NIC on the
    /// builder's internal network, EFI with Secure Boot, the serial console
    /// to `serial_log`. Tagged as nodes are (group, cluster property,
    /// `/devcluster/created` last).
    async fn create_builder(&self, vm: &VmSpec, iso: &Path) -> Result<()> {
        let name = vm.name.as_str();
        let group = cluster_group(&vm.cluster);
        self.vbm(
            name,
            &[
                "createvm",
                "--name",
                name,
                "--groups",
                &group,
                "--ostype",
                ostype(vm.os),
                "--register",
            ],
        )
        .await
        .map_err(op("creating", format!("builder VM {name}")))?;
        self.tag_cluster(name, &vm.cluster).await?;
        let info = self.existing(name).await?;
        let dir = vm_dir(&info)?;
        let seed = self.write_seed(vm, &dir)?;
        let disk = dir.join(DISK_FILE);
        self.clear_disk(&disk).await;
        let disk_s = disk.to_string_lossy().into_owned();
        let mib = (u64::from(vm.disk_gib) * 1024).to_string();
        self.vbm
            .run(
                None,
                &[
                    "createmedium",
                    "disk",
                    "--filename",
                    &disk_s,
                    "--size",
                    &mib,
                    "--format",
                    "VDI",
                ],
            )
            .await
            .map_err(op("creating", format!("the disk of {name}")))?;
        self.vbm(
            name,
            &[
                "storagectl",
                name,
                "--name",
                CONTROLLER,
                "--add",
                "sata",
                "--controller",
                "IntelAhci",
                "--portcount",
                "3",
            ],
        )
        .await
        .map_err(op("setting up", format!("builder VM {name}")))?;
        self.attach(name, "0", "hdd", &disk, "the disk").await?;
        self.attach(name, "1", "dvddrive", iso, "the installation ISO")
            .await?;
        self.attach(name, "2", "dvddrive", &seed, "the build seed")
            .await?;
        let args = builder_modifyvm_args(vm);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vbm(name, &args)
            .await
            .map_err(op("configuring", format!("VM {name}")))?;
        if vm.base.secure_boot {
            self.secure_boot(name).await?;
        }
        self.vbm(name, &["guestproperty", "set", name, PROP_CREATED, "1"])
            .await
            .map_err(op("tagging", format!("VM {name}")))?;
        Ok(())
    }

    /// The base VM of a kept Windows base disk, which must exist with its
    /// snapshot: nodes are linked clones of it.
    async fn golden_base(&self, name: &str) -> Result<String> {
        let gone = |why: &str| {
            ProviderError::Invalid(format!(
                "base VM {name} of the Windows base disk {why}: run `devcluster images prune` to forget it, then `devcluster images build IMAGE --provider virtualbox`"
            ))
        };
        match self.info(name).await? {
            None => Err(gone("is gone (deleted outside devcluster?)")),
            Some(info) if !info.snapshots.iter().any(|s| s == BASE_SNAPSHOT) => {
                Err(gone(&format!("has no snapshot `{BASE_SNAPSHOT}`")))
            }
            Some(_) => Ok(name.to_string()),
        }
    }

    /// The VMs that are linked clones of base VM `base` (by their
    /// `/devcluster/base` property).
    async fn clones_of(&self, base: &str) -> Result<Vec<String>> {
        let list = self
            .vbm
            .run(None, &["list", "vms"])
            .await
            .map_err(op("listing", "VMs"))?;
        let mut out = Vec::new();
        for (name, uuid) in vboxmanage::parse_list_vms(&list) {
            if name != base && self.guest_property(&uuid, PROP_BASE).await?.as_deref() == Some(base)
            {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Deletes a kept base VM and its disks; absent is fine; refused while
    /// a linked clone needs it, or for a VM that is not a base VM.
    async fn remove_base_vm(&self, name: &str) -> Result<()> {
        let Some(info) = self.info(name).await? else {
            return Ok(());
        };
        if !info.groups.iter().any(|g| g == BASES_GROUP) {
            return Err(ProviderError::Invalid(format!(
                "VM {name} is not a devcluster base VM (not in group {BASES_GROUP}): not deleted"
            )));
        }
        let clones = self.clones_of(name).await?;
        if !clones.is_empty() {
            return Err(ProviderError::Invalid(format!(
                "base VM {name} is still needed by its linked clones {}: destroy their clusters (or remove those nodes) first",
                clones.join(", ")
            )));
        }
        self.unregister(name).await
    }

    async fn wait_off(&self, name: &str, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.info(name).await? {
                None => return Ok(true),
                Some(i) if matches!(i.state, MachineState::PowerOff | MachineState::Aborted) => {
                    return Ok(true);
                }
                Some(_) if Instant::now() >= deadline => return Ok(false),
                Some(_) => tokio::time::sleep(self.poll).await,
            }
        }
    }

    async fn startvm(&self, name: &str) -> Result<()> {
        self.vbm(name, &["startvm", name, "--type", "headless"])
            .await
            .map(drop)
            .map_err(op("starting", format!("VM {name}")))
    }
}

fn ostype(os: Os) -> &'static str {
    match os {
        Os::Linux => "Ubuntu_64",
        Os::Windows => WINDOWS_OSTYPE,
    }
}

fn vm_dir(info: &MachineInfo) -> Result<PathBuf> {
    info.cfg_file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            ProviderError::Invalid(format!(
                "VirtualBox did not say where VM {} lives",
                info.name
            ))
        })
}

fn vm_state(s: MachineState) -> VmState {
    match s {
        MachineState::PowerOff | MachineState::Aborted => VmState::Off,
        MachineState::Running => VmState::Running,
        MachineState::Paused => VmState::Paused,
        MachineState::Saved => VmState::Saved,
        MachineState::Transient | MachineState::Unknown => VmState::Other,
    }
}

/// The `modifyvm` arguments every VM starts with: guest type, sizes, EFI.
fn machine_args(vm: &VmSpec) -> Vec<String> {
    vec![
        "modifyvm".into(),
        vm.name.clone(),
        "--ostype".into(),
        ostype(vm.os).into(),
        "--memory".into(),
        vm.memory_mib.to_string(),
        "--cpus".into(),
        vm.cpus.to_string(),
        "--firmware".into(),
        "efi".into(),
        "--ioapic".into(),
        "on".into(),
        // Linux keeps the hardware clock in UTC, Windows in local time.
        "--rtcuseutc".into(),
        if vm.os == Os::Linux { "on" } else { "off" }.into(),
    ]
}

/// The `modifyvm` arguments every VM ends with: the serial console to
/// `serial_log` (VirtualBox writes the file; the trait's `build_log`
/// reads it) and the boot order. Disk first: a blank disk falls through
/// to the DVD, and once Setup's first reboot made it bootable the disk
/// boots, so the ISO's "Press any key" prompt is not met again.
fn console_and_boot_args(vm: &VmSpec) -> Vec<String> {
    vec![
        "--uart1".into(),
        "0x3F8".into(),
        "4".into(),
        "--uartmode1".into(),
        "file".into(),
        vm.serial_log.to_string_lossy().into_owned(),
        "--boot1".into(),
        "disk".into(),
        "--boot2".into(),
        "dvd".into(),
        "--boot3".into(),
        "none".into(),
        "--boot4".into(),
        "none".into(),
    ]
}

/// The `modifyvm` arguments of a node.
pub fn modifyvm_args(vm: &VmSpec, network: &str, net_kind: NetKind) -> Vec<String> {
    let mut a = machine_args(vm);
    a.extend([
        "--nic1".into(),
        "nat".into(),
        "--nictype1".into(),
        NIC_TYPE.into(),
        "--macaddress1".into(),
        vboxmanage::mac_to_vbox(&nat_mac(&vm.mac)),
        "--cableconnected1".into(),
        "on".into(),
    ]);
    match net_kind {
        NetKind::Interface => {
            a.extend(["--nic2", "hostonly", "--hostonlyadapter2", network].map(String::from))
        }
        NetKind::Network => {
            a.extend(["--nic2", "hostonlynet", "--host-only-net2", network].map(String::from))
        }
    }
    a.extend([
        "--nictype2".into(),
        NIC_TYPE.into(),
        "--macaddress2".into(),
        vboxmanage::mac_to_vbox(&vm.mac),
        "--cableconnected2".into(),
        "on".into(),
    ]);
    a.extend(console_and_boot_args(vm));
    a
}

/// The `modifyvm` arguments of a Windows builder: one NIC, with the
/// planned MAC, on the builder's internal network (isolated, as libvirt's
/// builder network is: Setup and the build steps need no network, and an
/// internal network needs no host-only range).
pub fn builder_modifyvm_args(vm: &VmSpec) -> Vec<String> {
    let mut a = machine_args(vm);
    a.extend([
        "--nic1".into(),
        "intnet".into(),
        "--intnet1".into(),
        internal_network_name(&vm.cluster),
        "--nictype1".into(),
        NIC_TYPE.into(),
        "--macaddress1".into(),
        vboxmanage::mac_to_vbox(&vm.mac),
        "--cableconnected1".into(),
        "on".into(),
        "--nic2".into(),
        "none".into(),
    ]);
    a.extend(console_and_boot_args(vm));
    a
}

#[async_trait]
impl Provider for VirtualBox {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Virtualbox
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            linked_clones: true,
            suspend_to_disk: true,
            snapshots: true,
            golden_disks: false,
            windows_builds: true,
        }
    }

    fn disk_format(&self) -> crate::images::Format {
        crate::images::Format::Vdi
    }

    async fn prepare_create(&self) -> Result<Vec<String>> {
        let check = networks::hyperv_check(hypervisor_present().await.as_deref());
        Ok(match check.status {
            crate::doctor::Status::Warn => vec![format!(
                "{} ({})",
                check.found,
                check.fix.unwrap_or_default()
            )],
            _ => Vec::new(),
        })
    }

    async fn ensure_network(&self, net: &NetworkSpec) -> Result<()> {
        if internal_only(net) {
            // An internal network has nothing on the host: it exists while
            // a VM is attached to it, so there is nothing to make (or, in
            // `remove_network`, to find and remove).
            return Ok(());
        }
        let mask = net.subnet.netmask().to_string();
        let gateway = net.gateway.to_string();
        let name = match self.net_kind {
            NetKind::Interface => {
                let list = self
                    .vbm
                    .run(None, &["list", "hostonlyifs"])
                    .await
                    .map_err(op("listing", "host-only interfaces"))?;
                let ifs = vboxmanage::parse_hostonlyifs(&list);
                let recorded = self.extradata(&network_key(&net.cluster)).await?;
                let existing = recorded
                    .filter(|r| ifs.iter().any(|i| &i.name == r))
                    .or_else(|| {
                        ifs.iter()
                            .find(|i| i.ip == Some(net.gateway))
                            .map(|i| i.name.clone())
                    });
                let name = match existing {
                    Some(n) => n,
                    None => {
                        let out = self
                            .vbm
                            .run(None, &["hostonlyif", "create"])
                            .await
                            .map_err(op("creating", "a host-only interface"))?;
                        vboxmanage::parse_created_interface(&out).ok_or_else(|| {
                            ProviderError::op(
                                "creating",
                                "a host-only interface",
                                VBoxError::Unexpected {
                                    args: "hostonlyif create".into(),
                                    what: out.trim().to_string(),
                                },
                            )
                        })?
                    }
                };
                let current = ifs.iter().find(|i| i.name == name);
                if current.is_none_or(|i| {
                    i.ip != Some(net.gateway) || i.netmask != Some(net.subnet.netmask())
                }) {
                    self.vbm
                        .run(
                            None,
                            &[
                                "hostonlyif",
                                "ipconfig",
                                &name,
                                "--ip",
                                &gateway,
                                "--netmask",
                                &mask,
                            ],
                        )
                        .await
                        .map_err(op(
                            "configuring",
                            format!("host-only interface {name} ({})", net.subnet),
                        ))?;
                }
                self.vbm
                    .run(
                        None,
                        &["setextradata", "global", &network_key(&net.cluster), &name],
                    )
                    .await
                    .map_err(op("recording", format!("host-only interface {name}")))?;
                name
            }
            NetKind::Network => {
                let name = hostonlynet_name(&net.cluster);
                let list = self
                    .vbm
                    .run(None, &["list", "hostonlynets"])
                    .await
                    .map_err(op("listing", "host-only networks"))?;
                if !vboxmanage::parse_hostonlynets(&list)
                    .iter()
                    .any(|n| n.name == name)
                {
                    // As Vagrant does for static addresses: the range is
                    // the network address alone, and the host is `.1`.
                    let network = net.subnet.addr().to_string();
                    self.vbm
                        .run(
                            None,
                            &[
                                "hostonlynet",
                                "add",
                                "--name",
                                &name,
                                "--netmask",
                                &mask,
                                "--lower-ip",
                                &network,
                                "--upper-ip",
                                &network,
                                "--enable",
                            ],
                        )
                        .await
                        .map_err(op(
                            "creating",
                            format!("host-only network {name} ({})", net.subnet),
                        ))?;
                }
                name
            }
        };
        self.networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(net.cluster.clone(), name);
        Ok(())
    }

    async fn remove_network(&self, cluster: &str) -> Result<()> {
        let Some(name) = self.network_of(cluster).await? else {
            return Ok(());
        };
        if self.networks_in_use().await?.contains(&name) {
            tracing::info!("host-only {name} of cluster {cluster} is still used by a VM: kept");
            return Ok(());
        }
        let r = match self.net_kind {
            NetKind::Interface => self.vbm.run(None, &["hostonlyif", "remove", &name]).await,
            NetKind::Network => {
                self.vbm
                    .run(None, &["hostonlynet", "remove", "--name", &name])
                    .await
            }
        };
        match r {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ProviderError::op(
                    "removing",
                    format!("host-only {name}"),
                    e,
                ));
            }
        }
        if self.net_kind == NetKind::Interface {
            // Without a value, setextradata deletes the key.
            self.vbm
                .run(None, &["setextradata", "global", &network_key(cluster)])
                .await
                .map_err(op("forgetting", format!("host-only interface {name}")))?;
        }
        self.networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cluster);
        Ok(())
    }

    async fn create_node(&self, vm: &VmSpec) -> Result<()> {
        let name = vm.name.as_str();
        if self.info(name).await?.is_some() {
            if self.guest_property(name, PROP_CREATED).await?.as_deref() == Some("1") {
                return Ok(());
            }
            tracing::info!("VM {name} was not completely created: making it again");
            self.unregister(name).await?;
        }
        if let Some(iso) = &vm.install_iso {
            return self.create_builder(vm, iso).await;
        }
        let network = self.network_of(&vm.cluster).await?.ok_or_else(|| {
            ProviderError::Invalid(format!(
                "cluster {} has no host-only network yet (ensure_network first)",
                vm.cluster
            ))
        })?;
        // A Windows node is a linked clone of the base VM `keep_disk` made;
        // a Linux node of its image's base VM.
        let base = match &vm.golden {
            Some(golden) => self.golden_base(golden).await?,
            None => self.ensure_base(&vm.base, vm.os).await?,
        };
        let group = cluster_group(&vm.cluster);
        self.vbm(
            &base,
            &[
                "clonevm",
                &base,
                "--snapshot",
                BASE_SNAPSHOT,
                "--options",
                "link",
                "--name",
                name,
                "--groups",
                &group,
                "--register",
            ],
        )
        .await
        .map_err(op("cloning", format!("VM {name} from {base}")))?;
        self.tag_cluster(name, &vm.cluster).await?;
        if vm.golden.is_some() {
            self.vbm(name, &["guestproperty", "set", name, PROP_BASE, &base])
                .await
                .map_err(op("tagging", format!("VM {name}")))?;
        }
        let info = self.existing(name).await?;
        let dir = vm_dir(&info)?;
        let seed = self.write_seed(vm, &dir)?;
        let args = modifyvm_args(vm, &network, self.net_kind);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vbm(name, &args)
            .await
            .map_err(op("configuring", format!("VM {name}")))?;
        self.attach(name, "1", "dvddrive", &seed, "the seed")
            .await?;
        // Windows boots its Microsoft-signed boot manager with Secure Boot
        // on, as its builder did; the clone gets its own variable store.
        if vm.os == Os::Windows && vm.base.secure_boot {
            self.secure_boot(name).await?;
        }
        if let Some(disk) = &info.disk_uuid {
            let want_mib = u64::from(vm.disk_gib) * 1024;
            let medium = self
                .vbm(name, &["showmediuminfo", "disk", disk])
                .await
                .map_err(op("reading", format!("the disk of {name}")))?;
            if vboxmanage::parse_capacity_mib(&medium).is_some_and(|have| have < want_mib) {
                let want = want_mib.to_string();
                self.vbm(name, &["modifymedium", "disk", disk, "--resize", &want])
                    .await
                    .map_err(op("growing", format!("the disk of {name}")))?;
            }
        }
        self.vbm(name, &["guestproperty", "set", name, PROP_CREATED, "1"])
            .await
            .map_err(op("tagging", format!("VM {name}")))?;
        Ok(())
    }

    async fn press_key(&self, name: &str) -> Result<()> {
        let mut args = vec!["controlvm", name, "keyboardputscancode"];
        args.extend(SPACE_SCANCODES);
        self.vbm(name, &args)
            .await
            .map(drop)
            .map_err(op("pressing a key in", format!("VM {name}")))
    }

    /// A full copy of the builder's disk (`clonemedium`) in a new base VM
    /// (group `/devcluster-bases`, never started) with a snapshot `base`:
    /// Windows nodes are linked clones of it as Linux nodes are of their
    /// image's base VM. A copy, not the builder's own disk: the builder is
    /// deleted with its disk (`unregistervm --delete`) right after.
    async fn keep_disk(&self, node: &str, id: &str) -> Result<GoldenVolume> {
        let info = self.existing(node).await?;
        if vm_state(info.state) != VmState::Off {
            return Err(ProviderError::Invalid(format!(
                "VM {node} is not off: its disk is still being written"
            )));
        }
        let src = info
            .raw
            .get(&format!("{CONTROLLER}-0-0"))
            .filter(|p| !p.is_empty() && *p != "none")
            .cloned()
            .ok_or_else(|| {
                ProviderError::Invalid(format!("VM {node} has no disk on {CONTROLLER} port 0"))
            })?;
        let _one = self.base_lock.lock().await;
        let name = golden_vm_name(id);
        // One left by a keep cut short before it was recorded (a recorded
        // one would have ended the build before it began) goes first.
        self.remove_base_vm(&name).await?;
        self.create_base_vm(&name, WINDOWS_OSTYPE).await?;
        let dir = vm_dir(&self.existing(&name).await?)?;
        let disk = dir.join(DISK_FILE);
        let disk_s = disk.to_string_lossy().into_owned();
        self.clear_disk(&disk).await;
        self.vbm
            .run(
                None,
                &["clonemedium", "disk", &src, &disk_s, "--format", "VDI"],
            )
            .await
            .map_err(op("copying", format!("the disk of VM {node}")))?;
        self.finish_base(&name, &disk_s).await?;
        let medium = self
            .vbm
            .run(None, &["showmediuminfo", "disk", &disk_s])
            .await
            .map_err(op("reading", format!("the disk of base VM {name}")))?;
        let capacity_mib = vboxmanage::parse_capacity_mib(&medium).ok_or_else(|| {
            ProviderError::op(
                "reading",
                format!("the disk of base VM {name}"),
                VBoxError::Unexpected {
                    args: format!("showmediuminfo disk {disk_s}"),
                    what: "no Capacity: line".into(),
                },
            )
        })?;
        Ok(GoldenVolume {
            name,
            bytes: std::fs::metadata(&disk).map(|m| m.len()).unwrap_or(0),
            path: disk,
            capacity_bytes: capacity_mib * 1024 * 1024,
        })
    }

    async fn remove_golden(&self, volume: &str) -> Result<()> {
        let _one = self.base_lock.lock().await;
        self.remove_base_vm(volume).await
    }

    async fn start(&self, name: &str) -> Result<()> {
        match self.existing(name).await?.state {
            MachineState::Running => Ok(()),
            MachineState::Paused => self
                .vbm(name, &["controlvm", name, "resume"])
                .await
                .map(drop)
                .map_err(op("resuming", format!("VM {name}"))),
            _ => self.startvm(name).await,
        }
    }

    async fn shutdown(&self, name: &str, timeout: Duration) -> Result<Shutdown> {
        let Some(info) = self.info(name).await? else {
            return Ok(Shutdown::AlreadyOff);
        };
        match info.state {
            MachineState::PowerOff | MachineState::Aborted => return Ok(Shutdown::AlreadyOff),
            MachineState::Saved => {
                self.vbm(name, &["discardstate", name])
                    .await
                    .map_err(op("discarding the saved state of", format!("VM {name}")))?;
                return Ok(Shutdown::Forced);
            }
            MachineState::Running => {
                match self
                    .vbm(name, &["controlvm", name, "acpipowerbutton"])
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::InvalidState => {}
                    Err(e) => {
                        return Err(ProviderError::op("shutting down", format!("VM {name}"), e));
                    }
                }
                if self.wait_off(name, timeout).await? {
                    return Ok(Shutdown::Graceful);
                }
            }
            _ => {}
        }
        match self.vbm(name, &["controlvm", name, "poweroff"]).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::InvalidState => {}
            Err(e) => return Err(ProviderError::op("powering off", format!("VM {name}"), e)),
        }
        Ok(Shutdown::Forced)
    }

    async fn suspend(&self, name: &str) -> Result<()> {
        match self.existing(name).await?.state {
            MachineState::Running | MachineState::Paused => self
                .vbm(name, &["controlvm", name, "savestate"])
                .await
                .map(drop)
                .map_err(op("saving", format!("VM {name}"))),
            _ => Ok(()),
        }
    }

    async fn resume(&self, name: &str) -> Result<()> {
        // A saved VM resumes by starting; a paused one by resume.
        self.start(name).await
    }

    async fn state(&self, name: &str) -> Result<VmState> {
        Ok(self
            .info(name)
            .await?
            .map_or(VmState::Absent, |i| vm_state(i.state)))
    }

    async fn delete_node(&self, name: &str) -> Result<()> {
        self.unregister(name).await
    }

    async fn cluster_vms(&self, cluster: &str) -> Result<Vec<String>> {
        let list = self
            .vbm
            .run(None, &["list", "vms"])
            .await
            .map_err(op("listing", "VMs"))?;
        let group = cluster_group(cluster);
        let mut out = Vec::new();
        for (name, uuid) in vboxmanage::parse_list_vms(&list) {
            if let Some(info) = self.info(&uuid).await?
                && info.groups.contains(&group)
            {
                out.push(name);
            }
        }
        Ok(out)
    }

    async fn remove_storage(&self, _cluster: &str) -> Result<()> {
        // A node's disk, saved state and seed live in its VM folder and go
        // with the VM; the base VMs are shared by clusters (like the image
        // cache) and stay.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, Surroundings};
    use crate::spec::{Layer, Origin, Val, resolve};

    /// A VirtualBox plan as `up --provider virtualbox` makes it on a host
    /// without networks.conf.
    fn vbox_plan() -> Plan {
        let layer = Layer {
            provider: Some(Val::new(
                ProviderKind::Virtualbox,
                Origin::Flag("--provider"),
            )),
            workers: Some(Val::new(2, Origin::Flag("--workers"))),
            windows_workers: Some(Val::new(1, Origin::Flag("--windows-workers"))),
            ..Layer::default()
        };
        let spec = resolve(Val::new("dev".into(), Origin::Flag("--cluster")), layer).unwrap();
        let env = Surroundings {
            allowed: Some(crate::plan::AllowedSubnets {
                ranges: networks::allowed_ranges(false, None).unwrap().unwrap(),
                by: "VirtualBox".into(),
                file: networks::NETWORKS_CONF.into(),
            }),
            ..Default::default()
        };
        crate::plan::plan(&spec, &env).unwrap()
    }

    /// Every address a node is known by is NIC 2's planned one: the seed
    /// makes NIC 1 (NAT) DHCP and NIC 2 static by MAC without a gateway,
    /// and kubeadm's node-ip and advertise address are the planned IP.
    #[test]
    fn every_seed_and_kubeadm_config_uses_nic_2() {
        let plan = vbox_plan();
        assert_eq!(plan.network.subnet.to_string(), "192.168.56.0/24");
        let version = crate::versions::find(&plan.kubernetes_version).unwrap();
        let token = crate::pki::Secret::new("abcdef.0123456789abcdef");
        let hash = format!("sha256:{}", "0".repeat(64));
        for node in plan.nodes.iter().filter(|n| n.os == Os::Linux) {
            let seed = crate::seed::seed_inputs_for(
                &plan,
                node,
                "ssh-ed25519 AAAATEST user@host",
                "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST\n-----END OPENSSH PRIVATE KEY-----\n",
                "ssh-ed25519 AAAATESTHOST root@node",
            );
            let files = crate::seed::linux_seed_files_two_nics(&seed, &nat_mac(&node.mac)).unwrap();
            let net = &files
                .iter()
                .find(|(n, _)| *n == "network-config")
                .unwrap()
                .1;
            let doc: serde_norway::Value = serde_norway::from_str(net).unwrap();
            let nat = &doc["ethernets"]["nat0"];
            assert_eq!(
                nat["match"]["macaddress"].as_str(),
                Some(nat_mac(&node.mac).as_str())
            );
            assert_eq!(nat["dhcp4"].as_bool(), Some(true));
            let c = &doc["ethernets"]["cluster0"];
            assert_eq!(c["match"]["macaddress"].as_str(), Some(node.mac.as_str()));
            assert_eq!(c["set-name"].as_str(), Some("cluster0"));
            assert_eq!(c["dhcp4"].as_bool(), Some(false));
            assert_eq!(
                c["addresses"][0].as_str(),
                Some(format!("{}/24", node.ip).as_str())
            );
            // The host-only network has no route out: no gateway there.
            assert!(
                c.get("gateway4").is_none() && c.get("routes").is_none(),
                "{net}"
            );
            assert_ne!(nat_mac(&node.mac), node.mac);
            let kubeadm = if node.role == crate::plan::Role::ControlPlane {
                crate::kube::kubeadm::init_config_with(&plan, node, &token, version).unwrap()
            } else {
                crate::kube::kubeadm::join_config_with(&plan, node, &token, &hash, version).unwrap()
            };
            let text = kubeadm.expose();
            assert!(text.contains(&node.ip.to_string()), "{text}");
            assert!(!text.contains("10.0.2.15"));
            for (_, f) in &files {
                assert!(!f.contains("10.0.2.15"));
            }
            let iso = crate::seed::linux_seed_iso_two_nics(&seed, &nat_mac(&node.mac)).unwrap();
            assert!(iso.windows(net.len()).any(|w| w == net.as_bytes()));
        }
        let cp = plan.control_plane();
        let seed = crate::seed::seed_inputs_for(
            &plan,
            cp,
            "ssh-ed25519 AAAATEST user@host",
            "k\n",
            "ssh-ed25519 AAAATESTHOST root@node",
        );
        insta::assert_snapshot!(
            "two_nic_network_config",
            crate::seed::cloud_init::network_config_two_nics(&seed, &nat_mac(&cp.mac)).unwrap()
        );
        // flannel names NIC 2's interface.
        let flannel = crate::kube::flannel::manifest(&plan).unwrap();
        assert!(flannel.contains("--iface=cluster0"));
    }

    #[test]
    fn modifyvm_args_per_host_and_os() {
        let plan = vbox_plan();
        let node = plan.node("dev-w1").unwrap();
        let vm = VmSpec {
            cluster: "dev".into(),
            name: node.name.clone(),
            role: "worker".into(),
            os: Os::Linux,
            cpus: 2,
            memory_mib: 2048,
            disk_gib: 20,
            mac: node.mac.clone(),
            base: BaseImage {
                name: "ubuntu-24.04".into(),
                path: "/c/x.vdi".into(),
                sha256: "ab".repeat(32),
                firmware: crate::providers::Firmware::Uefi,
                secure_boot: false,
            },
            golden: None,
            install_iso: None,
            windows_devices: Default::default(),
            drivers_iso: None,
            seed_iso: vec![],
            serial_log: "/logs/dev-w1.serial.log".into(),
        };
        let a = modifyvm_args(&vm, "vboxnet2", NetKind::Interface).join(" ");
        assert!(a.contains("--nic1 nat"), "{a}");
        assert!(
            a.contains("--nic2 hostonly --hostonlyadapter2 vboxnet2"),
            "{a}"
        );
        assert!(a.contains(&format!(
            "--macaddress2 {}",
            vboxmanage::mac_to_vbox(&node.mac)
        )));
        assert!(a.contains("--firmware efi") && a.contains("--rtcuseutc on"));
        let a = modifyvm_args(&vm, "devcluster-dev", NetKind::Network).join(" ");
        assert!(
            a.contains("--nic2 hostonlynet --host-only-net2 devcluster-dev"),
            "{a}"
        );
        let win = VmSpec {
            os: Os::Windows,
            ..vm
        };
        let a = modifyvm_args(&win, "vboxnet2", NetKind::Interface).join(" ");
        assert!(
            a.contains("--ostype Windows2022_64") && a.contains("--rtcuseutc off"),
            "{a}"
        );
    }

    #[test]
    fn builder_args_and_its_internal_network() {
        let vm = VmSpec {
            cluster: "buildws2025".into(),
            name: "devcluster-build-windows-server-2025".into(),
            role: "builder".into(),
            os: Os::Windows,
            cpus: 2,
            memory_mib: 4096,
            disk_gib: 64,
            mac: "52:54:00:dc:b0:01".into(),
            base: BaseImage {
                name: "windows-server-2025".into(),
                path: "/c/ws.iso".into(),
                sha256: "ab".repeat(32),
                firmware: crate::providers::Firmware::Uefi,
                secure_boot: true,
            },
            golden: None,
            install_iso: Some("/c/ws.iso".into()),
            windows_devices: Default::default(),
            drivers_iso: None,
            seed_iso: vec![],
            serial_log: "/c/builds/b.serial.log".into(),
        };
        let a = builder_modifyvm_args(&vm).join(" ");
        assert!(
            a.contains("--nic1 intnet --intnet1 devcluster-buildws2025 --nictype1 82540EM --macaddress1 525400DCB001"),
            "{a}"
        );
        assert!(a.contains("--nic2 none") && !a.contains("hostonly"), "{a}");
        assert!(a.contains("--uartmode1 file /c/builds/b.serial.log"), "{a}");
        assert!(a.contains("--boot1 disk --boot2 dvd"), "{a}");
        assert!(a.contains("--ostype Windows2022_64 "), "{a}");
        let net = |mode, hosts: Vec<crate::providers::HostEntry>| NetworkSpec {
            cluster: "c".into(),
            subnet: "192.168.250.0/24".parse().unwrap(),
            gateway: "192.168.250.1".parse().unwrap(),
            mode,
            hosts,
        };
        use crate::spec::NetworkMode;
        assert!(internal_only(&net(NetworkMode::Isolated, vec![])));
        assert!(!internal_only(&net(NetworkMode::Nat, vec![])));
        // A cluster (it has nodes) is never internal, even isolated.
        let node = crate::providers::HostEntry {
            name: "c-cp".into(),
            mac: "02:00:00:00:00:0a".into(),
            ip: "192.168.250.10".parse().unwrap(),
        };
        assert!(!internal_only(&net(NetworkMode::Isolated, vec![node])));
        assert_eq!(golden_vm_name("0a1b"), "devcluster-winbase-0a1b");
    }

    #[test]
    fn names_and_macs() {
        assert_eq!(nat_mac("02:aa:bb:cc:00:0a"), "02:aa:bb:cc:01:0a");
        assert_eq!(cluster_group("dev"), "/devcluster/dev");
        assert_eq!(hostonlynet_name("dev"), "devcluster-dev");
        let base = BaseImage {
            name: "ubuntu-24.04".into(),
            path: "/c/x.vdi".into(),
            sha256: "0123456789abcdef".into(),
            firmware: crate::providers::Firmware::Uefi,
            secure_boot: false,
        };
        assert_eq!(
            base_vm_name(&base),
            "devcluster-base-ubuntu-24.04-0123456789ab"
        );
    }
}
