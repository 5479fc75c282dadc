//! Running `VBoxManage` and reading what it prints.
//!
//! Every call runs with `LANG=C`/`LC_ALL=C` (its messages are translated
//! otherwise, and we match on them). A call fails when it exits non-zero
//! **or** when its stderr carries `VBoxManage: error:` (on Windows
//! `VBoxManage.exe: error:`): VBoxManage sometimes exits 0 after a fatal
//! error (minikube `pkg/drivers/virtualbox/vbm.go`, Vagrant's driver
//! `base.rb`). Two transient errors are retried with exponential backoff:
//! "The object is not ready" (minikube retries it 5 times) and "is already
//! locked by a session" / "for a session" (a VM's session is held by
//! another call for a moment; vagrant #5323, #8468). Calls that name a VM
//! are serialised per VM, so our own parallel node creation never locks
//! itself out.
//!
//! `--machinereadable` output is `key="value"` (or `"key"="value"`, or
//! `key=number`) lines; [`MachineInfo`] turns it into typed values.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that names the VBoxManage to run (tests point
/// it at a stand-in).
pub const PROGRAM_ENV: &str = "DEVCLUSTER_VBOXMANAGE";

/// How many times a transient error is tried in all.
pub const ATTEMPTS: u32 = 5;

/// What kind of failure a VBoxManage error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such VM, medium or network (`VBOX_E_OBJECT_NOT_FOUND`, "Could
    /// not find a registered machine").
    NotFound,
    /// The VM's session is held by another process (transient).
    Locked,
    /// "The object is not ready" (transient).
    NotReady,
    /// The VM is not in a state that allows the operation, e.g. "is not
    /// currently running".
    InvalidState,
    Other,
}

impl ErrorKind {
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Locked | ErrorKind::NotReady)
    }
}

/// Classifies a failed call by its stderr.
pub fn classify(stderr: &str) -> ErrorKind {
    if stderr.contains("is already locked by a session")
        || stderr.contains("is already locked for a session")
    {
        ErrorKind::Locked
    } else if stderr.contains("The object is not ready") {
        ErrorKind::NotReady
    } else if stderr.contains("VBOX_E_OBJECT_NOT_FOUND")
        || stderr.contains("Could not find a registered machine")
        || stderr.contains("Could not find a host interface")
        || stderr.contains("Could not find file for the medium")
    {
        ErrorKind::NotFound
    } else if stderr.contains("is not currently running")
        || stderr.contains("VBOX_E_INVALID_VM_STATE")
        || stderr.contains("Invalid machine state")
    {
        ErrorKind::InvalidState
    } else {
        ErrorKind::Other
    }
}

/// Whether stderr reports an error, whatever the exit code.
pub fn reports_error(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        let l = l.trim_start();
        (l.starts_with("VBoxManage") || l.starts_with("VBoxManage.exe")) && l.contains(": error:")
    })
}

#[derive(Debug, thiserror::Error)]
pub enum VBoxError {
    #[error("cannot run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`VBoxManage {args}` failed{}: {}", exit_text(*.code), first_error(.stderr))]
    Failed {
        args: String,
        code: Option<i32>,
        stderr: String,
        kind: ErrorKind,
        attempts: u32,
    },
    #[error("`VBoxManage {args}` printed something unexpected: {what}")]
    Unexpected { args: String, what: String },
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(0) => " (exit 0, error on stderr)".into(),
        Some(c) => format!(" (exit {c})"),
        None => " (killed)".into(),
    }
}

/// The first `error:` line without its `VBoxManage: error:` prefix.
fn first_error(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.split_once("error: ").map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| stderr.trim().to_string())
}

impl VBoxError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            VBoxError::Failed { kind, .. } => *kind,
            _ => ErrorKind::Other,
        }
    }
}

/// Runs VBoxManage.
#[derive(Debug)]
pub struct Runner {
    program: PathBuf,
    /// First retry delay; doubled for each further one.
    backoff: Duration,
    vm_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Runner {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            backoff: Duration::from_millis(250),
            vm_locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Sets the first retry delay (tests use a short one).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    fn vm_lock(&self, vm: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.vm_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(vm.to_string()).or_default().clone()
    }

    /// Runs `VBoxManage args...` and returns its stdout. `vm`: the VM the
    /// call acts on, whose calls are serialised.
    pub async fn run(&self, vm: Option<&str>, args: &[&str]) -> Result<String, VBoxError> {
        let lock = vm.map(|v| self.vm_lock(v));
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            match self.run_once(args).await {
                Err(VBoxError::Failed {
                    args: a,
                    code,
                    stderr,
                    kind,
                    ..
                }) if kind.is_transient() && attempt < ATTEMPTS => {
                    tracing::debug!(
                        "VBoxManage {a} (attempt {attempt}, exit {code:?}): {kind:?}, retrying in {delay:?}"
                    );
                    let _ = stderr;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(VBoxError::Failed {
                    args,
                    code,
                    stderr,
                    kind,
                    ..
                }) => {
                    return Err(VBoxError::Failed {
                        args,
                        code,
                        stderr,
                        kind,
                        attempts: attempt,
                    });
                }
                other => return other,
            }
        }
    }

    async fn run_once(&self, args: &[&str]) -> Result<String, VBoxError> {
        let out = tokio::process::Command::new(&self.program)
            .args(args)
            .env("LANG", "C")
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| VBoxError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        tracing::trace!("VBoxManage {}: {stdout}{stderr}", args.join(" "));
        if !out.status.success() || reports_error(&stderr) {
            return Err(VBoxError::Failed {
                args: args.join(" "),
                code: out.status.code(),
                kind: classify(&stderr),
                stderr,
                attempts: 1,
            });
        }
        Ok(stdout)
    }
}

/// `--machinereadable` output as key/value pairs, quotes removed.
pub fn parse_machinereadable(text: &str) -> BTreeMap<String, String> {
    let unquote = |s: &str| {
        let s = s.trim();
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
            .to_string()
    };
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            // `"SATA-0-0"="path"`: the key is quoted and may hold `=`-free text.
            let (k, v) = if let Some(rest) = line.strip_prefix('"') {
                let (k, v) = rest.split_once("\"=")?;
                (k.to_string(), v)
            } else {
                let (k, v) = line.split_once('=')?;
                (k.trim().to_string(), v)
            };
            Some((k, unquote(v)))
        })
        .collect()
}

/// A VM's state as `VMState` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    PowerOff,
    Running,
    Paused,
    Saved,
    Aborted,
    /// starting, stopping, saving, restoring, ...
    Transient,
    Unknown,
}

impl MachineState {
    pub fn parse(s: &str) -> Self {
        match s {
            "poweroff" => MachineState::PowerOff,
            "running" => MachineState::Running,
            "paused" => MachineState::Paused,
            "saved" => MachineState::Saved,
            "aborted" | "aborted-saved" => MachineState::Aborted,
            "starting"
            | "stopping"
            | "saving"
            | "restoring"
            | "settingup"
            | "livesnapshotting"
            | "deletingsnapshot"
            | "deletingsnapshotlive"
            | "teleporting" => MachineState::Transient,
            _ => MachineState::Unknown,
        }
    }
}

/// One NIC of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Nic {
    /// `nat`, `hostonly`, `hostonlynetwork`, `none`, ...
    pub kind: String,
    /// `xx:xx:xx:xx:xx:xx`, lowercase.
    pub mac: Option<String>,
    /// The host-only interface (`hostonlyadapterN`) or network
    /// (`hostonly-networkN`) it is attached to.
    pub host_only: Option<String>,
}

/// The typed part of `showvminfo --machinereadable` we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub name: String,
    pub uuid: String,
    pub state: MachineState,
    /// `groups`, comma-separated in the output.
    pub groups: Vec<String>,
    pub cfg_file: Option<PathBuf>,
    pub memory_mib: Option<u32>,
    pub cpus: Option<u32>,
    pub firmware: Option<String>,
    /// NICs by slot (1-based).
    pub nics: BTreeMap<u8, Nic>,
    pub snapshots: Vec<String>,
    /// `"SATA-ImageUUID-0-0"`: the disk's medium.
    pub disk_uuid: Option<String>,
    pub raw: BTreeMap<String, String>,
}

/// Formats VirtualBox's `080027BB1475` as `08:00:27:bb:14:75`.
pub fn mac_from_vbox(s: &str) -> Option<String> {
    (s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
        s.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// `02:aa:bb:cc:00:0a` as VirtualBox takes it: `02AABBCC000A`.
pub fn mac_to_vbox(mac: &str) -> String {
    mac.replace(':', "").to_ascii_uppercase()
}

impl MachineInfo {
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw = parse_machinereadable(text);
        let get = |k: &str| raw.get(k).cloned();
        let name = get("name").ok_or("no name= line")?;
        let mut nics = BTreeMap::new();
        for slot in 1u8..=8 {
            let Some(kind) = get(&format!("nic{slot}")) else {
                continue;
            };
            nics.insert(
                slot,
                Nic {
                    kind,
                    mac: get(&format!("macaddress{slot}")).and_then(|m| mac_from_vbox(&m)),
                    host_only: get(&format!("hostonlyadapter{slot}"))
                        .or_else(|| get(&format!("hostonly-network{slot}"))),
                },
            );
        }
        let mut snapshots: Vec<(String, String)> = raw
            .iter()
            .filter(|(k, _)| k.starts_with("SnapshotName"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        snapshots.sort();
        Ok(Self {
            uuid: get("UUID").unwrap_or_default(),
            state: MachineState::parse(get("VMState").as_deref().unwrap_or("")),
            groups: get("groups")
                .map(|g| g.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            cfg_file: get("CfgFile").map(PathBuf::from),
            memory_mib: get("memory").and_then(|m| m.parse().ok()),
            cpus: get("cpus").and_then(|m| m.parse().ok()),
            firmware: get("firmware"),
            nics,
            snapshots: snapshots.into_iter().map(|(_, v)| v).collect(),
            disk_uuid: get("SATA-ImageUUID-0-0"),
            name,
            raw,
        })
    }

    /// Every host-only interface or network any NIC uses.
    pub fn host_only_networks(&self) -> impl Iterator<Item = &str> {
        self.nics.values().filter_map(|n| n.host_only.as_deref())
    }
}

/// `list vms`: `"name" {uuid}` lines.
pub fn parse_list_vms(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix('"')?;
            let (name, rest) = rest.rsplit_once("\" {")?;
            let uuid = rest.strip_suffix('}')?;
            Some((name.to_string(), uuid.to_string()))
        })
        .collect()
}

/// One record of `list hostonlyifs` / `list hostonlynets`: `Key: value`
/// lines, records starting at `Name:` (minikube: do not rely on blank
/// lines between records).
pub fn parse_records(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out: Vec<BTreeMap<String, String>> = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k == "Name" {
            out.push(BTreeMap::new());
        }
        if let Some(cur) = out.last_mut() {
            cur.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// A host-only interface (Linux and Windows hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOnlyIf {
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub dhcp: bool,
}

pub fn parse_hostonlyifs(text: &str) -> Vec<HostOnlyIf> {
    parse_records(text)
        .into_iter()
        .map(|r| HostOnlyIf {
            name: r.get("Name").cloned().unwrap_or_default(),
            ip: r.get("IPAddress").and_then(|s| s.parse().ok()),
            netmask: r.get("NetworkMask").and_then(|s| s.parse().ok()),
            dhcp: r.get("DHCP").is_some_and(|d| d == "Enabled"),
        })
        .collect()
}

/// A host-only network (VirtualBox 7 on macOS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOnlyNet {
    pub name: String,
    pub netmask: Option<Ipv4Addr>,
    pub lower_ip: Option<Ipv4Addr>,
    pub upper_ip: Option<Ipv4Addr>,
    pub enabled: bool,
}

pub fn parse_hostonlynets(text: &str) -> Vec<HostOnlyNet> {
    parse_records(text)
        .into_iter()
        .map(|r| HostOnlyNet {
            name: r.get("Name").cloned().unwrap_or_default(),
            netmask: r.get("NetworkMask").and_then(|s| s.parse().ok()),
            lower_ip: r.get("LowerIP").and_then(|s| s.parse().ok()),
            upper_ip: r.get("UpperIP").and_then(|s| s.parse().ok()),
            enabled: r.get("State").is_some_and(|s| s == "Enabled"),
        })
        .collect()
}

/// `hostonlyif create` prints `Interface 'vboxnet1' was successfully created`.
pub fn parse_created_interface(text: &str) -> Option<String> {
    let rest = text.split("Interface '").nth(1)?;
    let (name, _) = rest.split_once('\'')?;
    Some(name.to_string())
}

/// `getextradata` / `guestproperty get`: `Value: x`, or `No value set!`.
pub fn parse_value(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Value:")
                .map(|v| v.trim().to_string())
        })
        .filter(|v| !v.is_empty())
}

/// `showmediuminfo`: `Capacity: 3584 MBytes`.
pub fn parse_capacity_mib(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("Capacity:")?;
        let mut it = v.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next()? {
            "MBytes" => Some(n),
            "GBytes" => Some(n * 1024),
            _ => None,
        }
    })
}

/// `--version`: `7.0.14r161095` -> (7, 0, 14).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let core = line.split(['r', '_', '-']).next()?;
    let mut it = core.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOWVMINFO: &str = include_str!("../../../testdata/virtualbox/showvminfo-running.txt");
    const HOSTONLYIFS: &str = include_str!("../../../testdata/virtualbox/list-hostonlyifs.txt");
    const HOSTONLYNETS: &str = include_str!("../../../testdata/virtualbox/list-hostonlynets.txt");
    const LIST_VMS: &str = include_str!("../../../testdata/virtualbox/list-vms.txt");
    const LOCKED: &str = include_str!("../../../testdata/virtualbox/error-locked.txt");
    const NOT_READY: &str = include_str!("../../../testdata/virtualbox/error-not-ready.txt");
    const NOT_FOUND: &str = include_str!("../../../testdata/virtualbox/error-not-found.txt");
    const NOT_RUNNING: &str = include_str!("../../../testdata/virtualbox/error-not-running.txt");

    #[test]
    fn showvminfo_is_typed() {
        let info = MachineInfo::parse(SHOWVMINFO).unwrap();
        assert_eq!(info.name, "dev-cp");
        assert_eq!(info.state, MachineState::Running);
        assert_eq!(info.groups, ["/devcluster/dev"]);
        assert_eq!(info.memory_mib, Some(2048));
        assert_eq!(info.cpus, Some(2));
        assert_eq!(info.firmware.as_deref(), Some("EFI"));
        assert_eq!(info.nics[&1].kind, "nat");
        assert_eq!(info.nics[&2].kind, "hostonly");
        assert_eq!(info.nics[&2].host_only.as_deref(), Some("vboxnet1"));
        assert_eq!(info.nics[&2].mac.as_deref(), Some("02:5a:4b:3c:00:0a"));
        assert_eq!(
            info.disk_uuid.as_deref(),
            Some("5c0ab1f2-6f1e-4c8e-9a43-2d3b0f6b7e10")
        );
        assert!(info.cfg_file.as_ref().unwrap().ends_with("dev-cp.vbox"));
        assert_eq!(info.host_only_networks().collect::<Vec<_>>(), ["vboxnet1"]);
    }

    #[test]
    fn list_outputs_parse() {
        let vms = parse_list_vms(LIST_VMS);
        assert_eq!(vms.len(), 3);
        assert_eq!(vms[0].0, "devcluster-base-ubuntu-24.04");
        assert_eq!(vms[2].0, "my \"own\" vm");
        let ifs = parse_hostonlyifs(HOSTONLYIFS);
        assert_eq!(ifs.len(), 2);
        assert_eq!(ifs[0].name, "vboxnet0");
        assert_eq!(ifs[0].ip, Some(Ipv4Addr::new(192, 168, 99, 1)));
        assert_eq!(ifs[0].netmask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert!(!ifs[0].dhcp);
        assert_eq!(ifs[1].name, "vboxnet1");
        let nets = parse_hostonlynets(HOSTONLYNETS);
        assert_eq!(nets.len(), 2);
        assert!(nets[0].enabled && !nets[1].enabled);
        assert_eq!(nets[0].lower_ip, Some(Ipv4Addr::new(192, 168, 59, 100)));
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(classify(LOCKED), ErrorKind::Locked);
        assert_eq!(classify(NOT_READY), ErrorKind::NotReady);
        assert_eq!(classify(NOT_FOUND), ErrorKind::NotFound);
        assert_eq!(classify(NOT_RUNNING), ErrorKind::InvalidState);
        for e in [LOCKED, NOT_READY, NOT_FOUND, NOT_RUNNING] {
            assert!(reports_error(e), "{e}");
        }
        assert!(reports_error(
            "VBoxManage.exe: error: VT-x is not available (VERR_VMX_NO_VMX)\n"
        ));
        assert!(!reports_error("Waiting for VM \"x\" to power on...\n"));
        assert!(ErrorKind::Locked.is_transient() && ErrorKind::NotReady.is_transient());
        assert!(!ErrorKind::NotFound.is_transient());
    }

    #[test]
    fn small_outputs() {
        assert_eq!(
            parse_created_interface("0%...100%\nInterface 'vboxnet3' was successfully created\n"),
            Some("vboxnet3".into())
        );
        assert_eq!(parse_value("Value: vboxnet3\n"), Some("vboxnet3".into()));
        assert_eq!(parse_value("No value set!\n"), None);
        assert_eq!(parse_version("7.0.14r161095\n"), Some((7, 0, 14)));
        assert_eq!(parse_version("6.1.50_Ubuntur161033\n"), Some((6, 1, 50)));
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(
            parse_capacity_mib("Capacity:       3584 MBytes\n"),
            Some(3584)
        );
        assert_eq!(mac_to_vbox("02:aa:bb:cc:00:0a"), "02AABBCC000A");
        assert_eq!(
            mac_from_vbox("080027BB1475").as_deref(),
            Some("08:00:27:bb:14:75")
        );
    }
}
