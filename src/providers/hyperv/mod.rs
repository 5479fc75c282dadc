//! The Hyper-V provider: Generation 2 VMs driven through Windows
//! PowerShell, one embedded script per operation ([`runner`]).
//!
//! Network. Hyper-V's Default Switch changes its subnet on reboots, which
//! would break every pinned address, so devcluster owns one internal
//! switch ([`SWITCH_NAME`]). Each cluster's gateway (`.1` of its /24) is an
//! address on the switch's `vEthernet (devcluster)` adapter, and one
//! `NetNat` ([`NAT_NAME`]) gives them all egress: Windows allows a single
//! NAT network per host, so every devcluster Hyper-V cluster takes its /24
//! from one prefix, [`NAT_PREFIX`] (the plan picks subnets inside it). A
//! NetNat somebody else made is reported with what to do, never changed.
//! The switch has no DHCP and no DNS: each guest's seed carries its static
//! address, gateway and resolvers (see `seed::static_network`). Creating
//! the switch, an address or the NAT needs an elevated session; the
//! scripts check what exists first, so once they exist nobody is asked
//! again, and when something is missing the error gives the exact
//! commands ([`setup_commands`]).
//!
//! VMs. Gen 2, Secure Boot with the `MicrosoftUEFICertificateAuthority`
//! template for Linux (Ubuntu's shim is signed by that CA) and
//! `MicrosoftWindows` for Windows, static memory, the planned static MAC
//! with MAC address spoofing (pod networking), automatic checkpoints off,
//! automatic stop action Save (a host reboot saves and the next start
//! restores), time sync on, a differencing VHDX whose parent is the base
//! disk (copied once from the cache to `<VirtualMachinePath>\devcluster\
//! bases\<sha256>.vhdx`: a parent must never move, and the cache may be
//! pruned), the seed ISO on a SCSI DVD. Everything of a node lives in
//! `<VirtualMachinePath>\devcluster\<node>`, and the VM's Notes carry
//! `devcluster-cluster=<name>`, which is how `destroy` finds VMs without a
//! state file.
//!
//! Linux base image: Canonical's qcow2 cloud image converted once to VHDX
//! (images/ubuntu-24.04.toml). Canonical's Hyper-V-ready artefact is the
//! Azure VHD, whose cloud-init reads only the Azure datasource and would
//! ignore the NoCloud seed every other provider uses.
//!
//! Calls on one VM are serialised (a lock per VM name); "exists" and
//! "already gone" are answers, not errors, inside each script.
//!
//! Windows base disks (`devcluster images build`, [`crate::winbuild`]).
//! The builder (`create_builder.ps1`) is a Gen 2 VM on a blank dynamic
//! VHDX with the installation ISO and the build CD on two SCSI DVDs, the
//! disk first in the boot order (a blank disk falls through to the DVD;
//! after Setup's first reboot the installed disk boots), its adapter on no
//! switch (Setup needs no network, so the builder's "isolated" network is
//! no network at all: [`Provider::ensure_network`] makes nothing for it and
//! so never takes a gateway address another cluster's /24 may use). The
//! ISO's "Press any key" prompt gets a space through WMI,
//! `Msvm_Keyboard.TypeKey`. Hyper-V keeps no serial log (COM1 is a named
//! pipe nobody reads), so build.ps1 also writes each `devcluster-build:`
//! line as its own guest key-value pair (Data Exchange) and
//! [`Provider::build_log`] reads them back from
//! `Msvm_KvpExchangeComponent.GuestExchangeItems` (testdata/hyperv/README.md
//! cites the facts), also writing them to the builder's log file on the
//! host, which the build's hints name. When the builder is off its VHDX is copied to
//! `bases\<id>.vhdx`, beside the Linux base disks, and Windows nodes are
//! differencing disks of it ([`VmSpec::golden`] is that file's name).
//!
//! Not here yet: golden disks of prepared Linux nodes
//! ([`Capabilities::golden_disks`] is false), a serial console log of
//! nodes (Hyper-V offers a named pipe, nothing writes it to a file).

pub mod detect;
pub mod runner;
#[cfg(all(test, unix))]
mod tests;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use self::runner::{Cause, Op, PsError, Reply};
use super::{
    Capabilities, Detection, GoldenVolume, NetworkSpec, Provider, ProviderConfig, ProviderError,
    Result, Shutdown, VmSpec, VmState,
};
use crate::net::Cidr;
use crate::plan::Os;
use crate::spec::{NetworkMode, ProviderKind};

/// devcluster's internal switch.
pub const SWITCH_NAME: &str = "devcluster";
/// devcluster's NetNat.
pub const NAT_NAME: &str = "devcluster";
/// The prefix the NetNat covers; every Hyper-V cluster's /24 lies inside.
pub const NAT_PREFIX: &str = "192.168.240.0/20";

/// [`NAT_PREFIX`] as a network.
pub fn nat_prefix() -> Cidr {
    NAT_PREFIX.parse().expect("NAT_PREFIX is a CIDR")
}

/// The name prefix of build.ps1's guest KVP items (`DevclusterBuild001`, ...).
pub const BUILD_KVP_PREFIX: &str = "DevclusterBuild";

/// The Windows virtual-key code `Msvm_Keyboard.TypeKey` takes for the space
/// bar (`VK_SPACE`).
pub const VK_SPACE: u32 = 0x20;

/// The first line of every devcluster VM's Notes.
const NOTES_HEAD: &str = "Managed by devcluster; `devcluster destroy` removes it.";

/// The Notes tag that names a VM's cluster.
pub fn cluster_tag(cluster: &str) -> String {
    format!("devcluster-cluster={cluster}")
}

/// The VM's Notes: who made it, its cluster, node and role.
pub fn notes(vm: &VmSpec) -> String {
    format!(
        "{NOTES_HEAD}\n{}\ndevcluster-node={}\ndevcluster-role={}",
        cluster_tag(&vm.cluster),
        vm.name,
        vm.role
    )
}

/// The exact commands (for an elevated PowerShell) that create what the
/// network needs: the switch, the NAT and, for `gateway`, its address.
pub fn setup_commands(gateway: Option<(Ipv4Addr, u8)>) -> String {
    let mut cmds = vec![
        format!("Hyper-V\\New-VMSwitch -Name '{SWITCH_NAME}' -SwitchType Internal"),
        format!("New-NetNat -Name '{NAT_NAME}' -InternalIPInterfaceAddressPrefix '{NAT_PREFIX}'"),
    ];
    if let Some((ip, len)) = gateway {
        cmds.insert(
            1,
            format!(
                "New-NetIPAddress -InterfaceAlias 'vEthernet ({SWITCH_NAME})' -IPAddress '{ip}' -PrefixLength {len}"
            ),
        );
    }
    cmds.join("; ")
}

/// `02:ab:cd:ef:00:0a` as Hyper-V writes MACs: `02ABCDEF000A`.
pub fn hyperv_mac(mac: &str) -> String {
    mac.replace([':', '-'], "").to_ascii_uppercase()
}

/// The Secure Boot template of a guest OS.
pub fn secure_boot_template(os: Os) -> &'static str {
    match os {
        Os::Linux => "MicrosoftUEFICertificateAuthority",
        Os::Windows => "MicrosoftWindows",
    }
}

/// The file that remembers a cluster's gateway address.
fn network_marker(root: &str, cluster: &str) -> String {
    win_join(&win_join(root, "networks"), &format!("{cluster}.txt"))
}

/// Where base disks live, Linux (`<sha256>.vhdx`) and Windows
/// (`<id>.vhdx`): differencing disks name them as parents, so they never move.
fn bases_dir(root: &str) -> String {
    win_join(root, "bases")
}

/// A base disk's full path from its name ([`VmSpec::golden`],
/// [`crate::providers::GoldenVolume::name`]): a plain file name under
/// [`bases_dir`], nothing else.
pub fn golden_path(root: &str, name: &str) -> Result<String, ProviderError> {
    if name.is_empty()
        || name.contains(['\\', '/', ':'])
        || name == "."
        || name == ".."
        || !name.to_ascii_lowercase().ends_with(".vhdx")
    {
        return Err(ProviderError::Invalid(format!(
            "`{name}` is not the name of a Hyper-V base disk (a file name ending in .vhdx under {})",
            bases_dir(root)
        )));
    }
    Ok(win_join(&bases_dir(root), name))
}

/// The text of build.ps1's lines from `build_log.ps1`'s items: the ones
/// named [`BUILD_KVP_PREFIX`] and a number, in the order of their numbers
/// (the host lists KVP items in no promised order), one line each.
pub fn build_log_text(v: &Value) -> Result<String, HypervError> {
    let items = v["items"]
        .as_array()
        .ok_or_else(|| HypervError::Unexpected(v.to_string()))?;
    let mut lines: Vec<(u64, &str)> = items
        .iter()
        .filter_map(|item| {
            let n = item["name"]
                .as_str()?
                .strip_prefix(BUILD_KVP_PREFIX)?
                .parse()
                .ok()?;
            Some((n, item["data"].as_str().unwrap_or("")))
        })
        .collect();
    lines.sort_by_key(|(n, _)| *n);
    Ok(lines.iter().map(|(_, l)| format!("{l}\n")).collect())
}

/// What `Msvm_Keyboard.TypeKey`'s return value means (Microsoft Learn,
/// TypeKey method of the Msvm_Keyboard class).
fn type_key_meaning(code: i64) -> &'static str {
    match code {
        4096 => "job started",
        32768 => "failed",
        32769 => "access denied",
        32770 => "not supported",
        32771 => "status unknown",
        32772 => "timeout",
        32773 => "invalid parameter",
        32774 => "system in use",
        32775 => "invalid state for this operation",
        32776 => "incorrect data type",
        32777 => "system not available",
        32778 => "out of memory",
        _ => "unknown",
    }
}

/// Windows paths are joined with `\` whatever the OS devcluster was built for.
fn win_join(dir: &str, name: &str) -> String {
    format!("{}\\{name}", dir.trim_end_matches(['\\', '/']))
}

/// What failed in a Hyper-V operation.
#[derive(Debug, thiserror::Error)]
pub enum HypervError {
    #[error("cannot run {program}")]
    Launch {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("PowerShell: {}", .error.message)]
    PowerShell { error: PsError, cause: Cause },
    #[error("PowerShell printed no result (exit status {status}): {why}; stderr: {stderr}")]
    Garbled {
        status: String,
        why: String,
        stderr: String,
    },
    #[error("the network needs {} created, which takes an elevated PowerShell", .missing.join(", "))]
    NeedsElevation {
        missing: Vec<String>,
        commands: String,
    },
    #[error(
        "Windows allows one NAT network per host, and NetNat `{name}` ({prefix}) is not devcluster's"
    )]
    ForeignNat { name: String, prefix: String },
    #[error("a switch named `{name}` exists but is {kind}, not an internal switch devcluster made")]
    ForeignSwitch { name: String, kind: String },
    #[error("a VM named {name} exists but is not devcluster's (its Notes lack {tag})")]
    ForeignVm { name: String, tag: String },
    #[error("Msvm_Keyboard.TypeKey returned {code} ({meaning})")]
    KeyNotTyped { code: i64, meaning: &'static str },
    #[error("WMI has no keyboard of VM {name} ({systems} Msvm_ComputerSystem of that name)")]
    NoKeyboard { name: String, systems: i64 },
    #[error("base disk {path} is the parent of a disk of VM {}", .vms.join(", "))]
    DiskInUse { path: String, vms: Vec<String> },
    #[error("unexpected result {0}")]
    Unexpected(String),
}

impl HypervError {
    pub fn hint(&self) -> Option<String> {
        match self {
            HypervError::PowerShell { cause, .. } => runner::hint(*cause),
            HypervError::Launch { .. } => Some(
                "devcluster drives Hyper-V through Windows PowerShell (powershell.exe); set DEVCLUSTER_POWERSHELL to its path if it is not on PATH".into(),
            ),
            HypervError::NeedsElevation { commands, .. } => Some(format!(
                "run the same devcluster command once in an elevated PowerShell (Run as administrator), or run there: `{commands}`; later runs need no elevation"
            )),
            HypervError::ForeignNat { name, prefix } => Some(detect::foreign_nat_fix(&detect::NatFact {
                name: name.clone(),
                prefix: prefix.clone(),
            })),
            HypervError::ForeignSwitch { name, .. } => Some(format!(
                "rename or remove that switch (`Hyper-V\\Remove-VMSwitch -Name '{name}'`); devcluster makes its own"
            )),
            HypervError::ForeignVm { name, .. } => Some(format!(
                "rename or remove the VM {name}, or choose another cluster name"
            )),
            HypervError::DiskInUse { vms, .. } => Some(format!(
                "delete what uses it first (`devcluster destroy` of the cluster of {}), then prune again",
                vms.join(", ")
            )),
            HypervError::Garbled { .. }
            | HypervError::Unexpected(_)
            | HypervError::KeyNotTyped { .. }
            | HypervError::NoKeyboard { .. } => None,
        }
    }
}

/// Runs operation scripts: the real `powershell.exe`, or whatever
/// [`runner::program`] names.
#[derive(Debug, Clone)]
pub struct PowerShell {
    pub program: PathBuf,
    /// More environment for the child (the tests' replay directory).
    pub env: Vec<(String, String)>,
}

impl PowerShell {
    pub fn from_env() -> Self {
        Self {
            program: runner::program(),
            env: Vec::new(),
        }
    }

    /// Runs `op` with `params`; the result JSON, or the failure.
    pub async fn run(&self, op: Op, params: &Value) -> Result<Value, HypervError> {
        let script = op.script();
        tracing::debug!(op = op.name(), %params, "powershell");
        let out = tokio::process::Command::new(&self.program)
            .args(runner::arguments(&script))
            .env(runner::PARAMS_ENV, params.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| HypervError::Launch {
                program: self.program.display().to_string(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match runner::parse_reply(&stdout) {
            Reply::Ok(v) => Ok(v),
            Reply::Failed(error) => {
                let cause = runner::classify(&error);
                tracing::debug!(op = op.name(), message = %error.message, id = %error.id, "powershell failed");
                Err(HypervError::PowerShell { error, cause })
            }
            Reply::Garbled(why) => Err(HypervError::Garbled {
                status: out.status.to_string(),
                why,
                stderr: String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .chars()
                    .take(2000)
                    .collect(),
            }),
        }
    }
}

/// Asks the host whether Hyper-V can be used.
pub async fn detect(ps: &PowerShell) -> Detection {
    match facts(ps).await {
        Ok(f) => detect::detection(&f),
        Err(e) => Detection {
            kind: ProviderKind::Hyperv,
            usable: false,
            detail: crate::error::one_line(&e),
            fix: e.hint(),
        },
    }
}

/// Doctor's Hyper-V checks on this host: [`detect::checks`] of the facts,
/// or one failed check saying why the facts could not be read.
pub async fn host_checks(ps: &PowerShell) -> Vec<crate::doctor::Check> {
    match facts(ps).await {
        Ok(f) => detect::checks(&f),
        Err(e) => vec![crate::doctor::Check::fail(
            "hyperv.powershell",
            crate::error::one_line(&e),
            e.hint()
                .unwrap_or_else(|| "run `powershell.exe -NoProfile -Command Get-Module -ListAvailable Hyper-V` to see what fails".into()),
        )],
    }
}

/// The recorded host facts `detect.ps1` gathers.
pub async fn facts(ps: &PowerShell) -> Result<detect::Facts, HypervError> {
    let v = ps
        .run(Op::Detect, &json!({ "switch": SWITCH_NAME }))
        .await?;
    serde_json::from_value(v.clone()).map_err(|_| HypervError::Unexpected(v.to_string()))
}

/// The Hyper-V provider.
pub struct HyperV {
    ps: PowerShell,
    /// Where seed ISOs wait (0600) until the create script copies them.
    seeds_dir: PathBuf,
    root: tokio::sync::OnceCell<String>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn op_err(op: &'static str, what: &str, e: HypervError) -> ProviderError {
    ProviderError::op(op, what.to_string(), e)
}

impl HyperV {
    pub fn new(ps: PowerShell, config: &ProviderConfig) -> Self {
        Self {
            ps,
            seeds_dir: config.cache_dir.join("hyperv-seeds"),
            root: tokio::sync::OnceCell::new(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub async fn open(config: &ProviderConfig) -> Result<Self> {
        Ok(Self::new(PowerShell::from_env(), config))
    }

    fn lock_of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    /// `<VirtualMachinePath>\devcluster`.
    async fn root(&self) -> Result<&str, HypervError> {
        self.root
            .get_or_try_init(|| async {
                let v = self.ps.run(Op::StorageRoot, &json!({})).await?;
                let root = v["root"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| HypervError::Unexpected(v.to_string()))?;
                Ok::<_, HypervError>(win_join(root, "devcluster"))
            })
            .await
            .map(String::as_str)
    }

    async fn node_dir(&self, name: &str) -> Result<String, HypervError> {
        Ok(win_join(self.root().await?, name))
    }

    /// Runs a per-VM operation under that VM's lock.
    async fn vm_op(&self, op: Op, name: &str, params: Value) -> Result<Value, HypervError> {
        let lock = self.lock_of(name);
        let _held = lock.lock().await;
        self.ps.run(op, &params).await
    }

    /// Start-VM or Save-VM: done (or nothing to do), or no such VM.
    async fn change_state(&self, op: Op, verb: &'static str, name: &str) -> Result<()> {
        let e = |err| op_err(verb, name, err);
        let v = self
            .vm_op(op, name, json!({ "name": name }))
            .await
            .map_err(e)?;
        match str_field(&v, "state").map_err(e)? {
            "Absent" => Err(ProviderError::NoSuchVm(name.into())),
            _ => Ok(()),
        }
    }

    /// The parameters of `create_vm.ps1` (everything but the seed's bytes,
    /// which go in a file).
    pub fn create_params(vm: &VmSpec, root: &str, seed_source: &str) -> Value {
        let node_dir = win_join(root, &vm.name);
        let node_dir = node_dir.as_str();
        // A golden disk (a Windows base disk) is already in Hyper-V's
        // storage, named by `keep_disk`; a base disk is copied there once,
        // named by its sha256. (`golden` is checked by `create_node`.)
        let (parent, parent_source) = match &vm.golden {
            Some(g) => (win_join(&bases_dir(root), g), None),
            None => (
                win_join(&bases_dir(root), &format!("{}.vhdx", vm.base.sha256)),
                Some(vm.base.path.display().to_string()),
            ),
        };
        json!({
            "name": vm.name,
            "tag": cluster_tag(&vm.cluster),
            "notes": notes(vm),
            "nodeDir": node_dir,
            "vhdPath": win_join(node_dir, &format!("{}.vhdx", vm.name)),
            "parentPath": parent,
            "parentSource": parent_source,
            "seedSource": seed_source,
            "seedPath": win_join(node_dir, "seed.iso"),
            "switch": SWITCH_NAME,
            "cpus": vm.cpus,
            "memoryBytes": u64::from(vm.memory_mib) * 1024 * 1024,
            "diskBytes": u64::from(vm.disk_gib) * 1024 * 1024 * 1024,
            "mac": hyperv_mac(&vm.mac),
            "secureBoot": vm.base.secure_boot,
            "secureBootTemplate": secure_boot_template(vm.os),
        })
    }

    /// The parameters of `create_builder.ps1` (a VM with
    /// [`VmSpec::install_iso`]): like a node's, but a blank disk of
    /// `disk_gib`, the installation ISO as it lies on the host, no switch.
    pub fn builder_params(
        vm: &VmSpec,
        iso: &std::path::Path,
        root: &str,
        seed_source: &str,
    ) -> Value {
        let node_dir = win_join(root, &vm.name);
        let node_dir = node_dir.as_str();
        json!({
            "name": vm.name,
            "tag": cluster_tag(&vm.cluster),
            "notes": notes(vm),
            "nodeDir": node_dir,
            "vhdPath": win_join(node_dir, &format!("{}.vhdx", vm.name)),
            "installIso": iso.display().to_string(),
            "seedSource": seed_source,
            "seedPath": win_join(node_dir, "seed.iso"),
            "cpus": vm.cpus,
            "memoryBytes": u64::from(vm.memory_mib) * 1024 * 1024,
            "diskBytes": u64::from(vm.disk_gib) * 1024 * 1024 * 1024,
            "mac": hyperv_mac(&vm.mac),
            "secureBoot": vm.base.secure_boot,
            "secureBootTemplate": secure_boot_template(vm.os),
        })
    }

    /// The parameters of `ensure_network.ps1`; `root` is devcluster's
    /// storage root.
    pub fn network_params(net: &NetworkSpec, root: &str) -> Value {
        json!({
            "marker": network_marker(root, &net.cluster),
            "switch": SWITCH_NAME,
            "nat": NAT_NAME,
            "natPrefix": NAT_PREFIX,
            "gateway": net.gateway.to_string(),
            "prefixLength": net.subnet.prefix(),
            "notes": NOTES_HEAD,
        })
    }

    fn write_seed(&self, vm: &VmSpec) -> Result<PathBuf, ProviderError> {
        let io = |e: std::io::Error| ProviderError::op("write seed of", vm.name.clone(), e);
        std::fs::create_dir_all(&self.seeds_dir).map_err(io)?;
        let path = self.seeds_dir.join(format!("{}.iso", vm.name));
        crate::fsutil::atomic_write(&path, &vm.seed_iso, crate::fsutil::Access::Private)
            .map_err(io)?;
        Ok(path)
    }
}

fn vm_state(s: &str) -> VmState {
    match s {
        "Absent" => VmState::Absent,
        "Running" => VmState::Running,
        "Off" => VmState::Off,
        "Saved" => VmState::Saved,
        "Paused" => VmState::Paused,
        _ => VmState::Other,
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, HypervError> {
    v[key]
        .as_str()
        .ok_or_else(|| HypervError::Unexpected(v.to_string()))
}

#[async_trait]
impl Provider for HyperV {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Hyperv
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
        crate::images::Format::Vhdx
    }

    // `location` stays empty: a base disk's path (recorded with it) says
    // where it is, and `remove_golden` finds it under this host's storage
    // root; there is no remote Hyper-V to address.

    async fn ensure_network(&self, net: &NetworkSpec) -> Result<()> {
        let what = SWITCH_NAME;
        let e = |err| op_err("ensure network", what, err);
        if net.mode == NetworkMode::Isolated && net.hosts.is_empty() {
            // A builder's network (winbuild): its VM is on no switch, so
            // nothing is needed — no gateway address on the shared switch,
            // which could be the address of a cluster on the same /24 and
            // would then be removed with the builder, and no elevation.
            return Ok(());
        }
        if !nat_prefix().contains(net.subnet.addr()) || net.subnet.prefix() < 20 {
            return Err(ProviderError::Invalid(format!(
                "cluster network {} is outside {NAT_PREFIX}, the one NAT prefix devcluster's Hyper-V clusters share",
                net.subnet
            )));
        }
        let root = self.root().await.map_err(e)?.to_string();
        let v = self
            .ps
            .run(Op::EnsureNetwork, &Self::network_params(net, &root))
            .await
            .map_err(e)?;
        if let Some(missing) = v["needsElevation"].as_array() {
            return Err(e(HypervError::NeedsElevation {
                missing: missing
                    .iter()
                    .filter_map(|m| m.as_str().map(String::from))
                    .collect(),
                commands: setup_commands(Some((net.gateway, net.subnet.prefix()))),
            }));
        }
        if let Some(nat) = v.get("foreignNat").filter(|n| !n.is_null()) {
            return Err(e(HypervError::ForeignNat {
                name: str_field(nat, "name").map_err(e)?.into(),
                prefix: str_field(nat, "prefix").map_err(e)?.into(),
            }));
        }
        if let Some(sw) = v.get("foreignSwitch").filter(|n| !n.is_null()) {
            return Err(e(HypervError::ForeignSwitch {
                name: str_field(sw, "name").map_err(e)?.into(),
                kind: str_field(sw, "type").map_err(e)?.into(),
            }));
        }
        if v["created"].is_array() {
            Ok(())
        } else {
            Err(e(HypervError::Unexpected(v.to_string())))
        }
    }

    async fn remove_network(&self, cluster: &str) -> Result<()> {
        let e = |err| op_err("remove network of", cluster, err);
        let root = self.root().await.map_err(e)?.to_string();
        let v = self
            .ps
            .run(
                Op::RemoveNetwork,
                &json!({
                    "cluster": cluster,
                    "switch": SWITCH_NAME,
                    "marker": network_marker(&root, cluster),
                }),
            )
            .await
            .map_err(e)?;
        if v["reason"].as_str() == Some("elevation") {
            // Not an error: the address is harmless and reused by the next
            // cluster on that /24; removing it would take elevation.
            tracing::warn!(
                cluster,
                "kept the cluster's gateway address on vEthernet ({SWITCH_NAME}): removing it needs an elevated PowerShell"
            );
        }
        Ok(())
    }

    async fn create_node(&self, vm: &VmSpec) -> Result<()> {
        let e = |err| op_err("create VM", &vm.name, err);
        let root = self.root().await.map_err(e)?.to_string();
        if let Some(g) = &vm.golden {
            golden_path(&root, g)?;
        }
        let seed = self.write_seed(vm)?;
        let seed_source = seed.display().to_string();
        let (op, params) = match &vm.install_iso {
            Some(iso) => (
                Op::CreateBuilder,
                Self::builder_params(vm, iso, &root, &seed_source),
            ),
            None => (Op::CreateVm, Self::create_params(vm, &root, &seed_source)),
        };
        let r = self.vm_op(op, &vm.name, params).await;
        let _ = std::fs::remove_file(&seed);
        let v = r.map_err(e)?;
        if v["foreign"].as_bool() == Some(true) {
            return Err(e(HypervError::ForeignVm {
                name: vm.name.clone(),
                tag: cluster_tag(&vm.cluster),
            }));
        }
        str_field(&v, "state").map_err(e)?;
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<()> {
        self.change_state(Op::StartVm, "start", name).await
    }

    async fn press_key(&self, name: &str) -> Result<()> {
        let e = |err| op_err("press a key in", name, err);
        let v = self
            .vm_op(
                Op::PressKey,
                name,
                json!({ "name": name, "keyCode": VK_SPACE }),
            )
            .await
            .map_err(e)?;
        if str_field(&v, "state").map_err(e)? == "Absent" {
            return Err(ProviderError::NoSuchVm(name.into()));
        }
        if let Some(systems) = v["systems"].as_i64() {
            return Err(e(HypervError::NoKeyboard {
                name: name.into(),
                systems,
            }));
        }
        if v["keyboard"].as_bool() == Some(false) {
            return Err(e(HypervError::NoKeyboard {
                name: name.into(),
                systems: 1,
            }));
        }
        match v["returnValue"].as_i64() {
            Some(0) => Ok(()),
            Some(code) => Err(e(HypervError::KeyNotTyped {
                code,
                meaning: type_key_meaning(code),
            })),
            None => Err(e(HypervError::Unexpected(v.to_string()))),
        }
    }

    /// Hyper-V has no serial file: build.ps1's lines come as guest KVP
    /// items ([`build_log_text`]). They are also written to `serial_log`,
    /// the build log a failed build's hint names, so it exists here too.
    async fn build_log(&self, vm: &str, serial_log: &std::path::Path) -> Result<String> {
        let e = |err| op_err("read the build log of", vm, err);
        let v = self
            .vm_op(
                Op::BuildLog,
                vm,
                json!({ "name": vm, "prefix": BUILD_KVP_PREFIX }),
            )
            .await
            .map_err(e)?;
        let text = build_log_text(&v).map_err(e)?;
        if !text.is_empty() {
            let io = |err: std::io::Error| {
                ProviderError::op(
                    "write the build log of",
                    serial_log.display().to_string(),
                    err,
                )
            };
            if let Some(dir) = serial_log.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            crate::fsutil::atomic_write(serial_log, text.as_bytes(), crate::fsutil::Access::Normal)
                .map_err(io)?;
        }
        Ok(text)
    }

    async fn shutdown(&self, name: &str, timeout: Duration) -> Result<Shutdown> {
        let e = |err| op_err("shut down", name, err);
        let v = self
            .vm_op(
                Op::StopVm,
                name,
                json!({ "name": name, "timeoutSeconds": timeout.as_secs().max(1) }),
            )
            .await
            .map_err(e)?;
        match str_field(&v, "result").map_err(e)? {
            "already-off" => Ok(Shutdown::AlreadyOff),
            "graceful" => Ok(Shutdown::Graceful),
            "forced" => Ok(Shutdown::Forced),
            _ => Err(e(HypervError::Unexpected(v.to_string()))),
        }
    }

    async fn suspend(&self, name: &str) -> Result<()> {
        self.change_state(Op::SaveVm, "save", name).await
    }

    async fn resume(&self, name: &str) -> Result<()> {
        // Start-VM restores a saved VM.
        self.start(name).await
    }

    async fn state(&self, name: &str) -> Result<VmState> {
        let v = self
            .vm_op(Op::VmState, name, json!({ "name": name }))
            .await
            .map_err(|err| op_err("read state of", name, err))?;
        Ok(vm_state(
            str_field(&v, "state").map_err(|err| op_err("read state of", name, err))?,
        ))
    }

    async fn delete_node(&self, name: &str) -> Result<()> {
        let e = |err| op_err("delete VM", name, err);
        let dir = self.node_dir(name).await.map_err(e)?;
        // The cluster is the node name's prefix up to its role suffix; the
        // script only needs the tag to refuse a VM that is not ours, and
        // reads it from the VM's Notes itself.
        let v = self
            .vm_op(
                Op::DeleteVm,
                name,
                json!({ "name": name, "nodeDir": dir, "tag": "devcluster-node=".to_string() + name }),
            )
            .await
            .map_err(e)?;
        if v["foreign"].as_bool() == Some(true) {
            return Err(e(HypervError::ForeignVm {
                name: name.into(),
                tag: format!("devcluster-node={name}"),
            }));
        }
        Ok(())
    }

    async fn cluster_vms(&self, cluster: &str) -> Result<Vec<String>> {
        let e = |err| op_err("list VMs of", cluster, err);
        let v = self
            .ps
            .run(Op::ClusterVms, &json!({ "cluster": cluster }))
            .await
            .map_err(e)?;
        let names = v["names"]
            .as_array()
            .ok_or_else(|| e(HypervError::Unexpected(v.to_string())))?;
        Ok(names
            .iter()
            .filter_map(|n| n.as_str().map(String::from))
            .collect())
    }

    async fn keep_disk(&self, node: &str, id: &str) -> Result<GoldenVolume> {
        let e = |err| op_err("keep the disk of", node, err);
        let root = self.root().await.map_err(e)?.to_string();
        let name = format!("{id}.vhdx");
        let target = golden_path(&root, &name)?;
        let node_dir = win_join(&root, node);
        let v = self
            .vm_op(
                Op::KeepDisk,
                node,
                json!({
                    "name": node,
                    "tag": format!("devcluster-node={node}"),
                    "vhdPath": win_join(&node_dir, &format!("{node}.vhdx")),
                    "target": target,
                }),
            )
            .await
            .map_err(e)?;
        if v["foreign"].as_bool() == Some(true) {
            return Err(e(HypervError::ForeignVm {
                name: node.into(),
                tag: format!("devcluster-node={node}"),
            }));
        }
        if let Some(vms) = v["inUse"].as_array() {
            return Err(e(HypervError::DiskInUse {
                path: target,
                vms: vms
                    .iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect(),
            }));
        }
        match str_field(&v, "state").map_err(e)? {
            "Absent" => return Err(ProviderError::NoSuchVm(node.into())),
            "Off" => {}
            other => {
                return Err(ProviderError::Invalid(format!(
                    "VM {node} is {other}, not off: its disk is still being written"
                )));
            }
        }
        if v["noDisk"].as_bool() == Some(true) {
            return Err(ProviderError::Invalid(format!(
                "VM {node} has no disk {node}.vhdx in {node_dir}"
            )));
        }
        let path = str_field(&v, "path").map_err(e)?;
        let (Some(bytes), Some(capacity_bytes)) =
            (v["bytes"].as_u64(), v["capacityBytes"].as_u64())
        else {
            return Err(e(HypervError::Unexpected(v.to_string())));
        };
        Ok(GoldenVolume {
            name,
            path: PathBuf::from(path),
            bytes,
            capacity_bytes,
        })
    }

    async fn remove_golden(&self, volume: &str) -> Result<()> {
        let e = |err| op_err("remove base disk", volume, err);
        let root = self.root().await.map_err(e)?.to_string();
        let path = golden_path(&root, volume)?;
        let v = self
            .ps
            .run(Op::RemoveGolden, &json!({ "path": path }))
            .await
            .map_err(e)?;
        let users = v["users"]
            .as_array()
            .ok_or_else(|| e(HypervError::Unexpected(v.to_string())))?;
        if users.is_empty() {
            return Ok(());
        }
        Err(e(HypervError::DiskInUse {
            path,
            vms: users
                .iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect(),
        }))
    }

    async fn remove_storage(&self, cluster: &str) -> Result<()> {
        let e = |err| op_err("remove storage of", cluster, err);
        let root = self.root().await.map_err(e)?.to_string();
        self.ps
            .run(
                Op::RemoveStorage,
                &json!({ "cluster": cluster, "root": root, "tag": cluster_tag(cluster) }),
            )
            .await
            .map_err(e)?;
        Ok(())
    }
}
