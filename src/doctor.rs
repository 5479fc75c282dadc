//! Host checks (`devcluster doctor`, and the subset `up` runs before it
//! creates anything). A check is a small value: what was looked at, the
//! verdict, what was found and, for anything not ok, the exact fix on this
//! OS. Each provider contributes its own checks; the decision logic of each
//! is a pure function of recorded inputs so it is tested without the host.
//!
//! This file is the pure core: the check types, one decision function per
//! check (its inputs are what the host said: `/proc/meminfo`, `id -Gn`,
//! libvirt's error text, `kubectl version -o json`, QEMU's firmware
//! descriptors, ...) and the table. [`facts`] gathers those inputs on the
//! real host (the effects) and assembles the list.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::net::Cidr;

pub mod facts;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but something deserves attention (slow, nearly full, ...).
    Warn,
    /// Stops `up`.
    Fail,
    /// Does not apply here (another OS, another provider).
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skipped => "skipped",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable name, e.g. `libvirt.reachable`, `hyperv.netnat`.
    pub name: String,
    pub status: Status,
    /// What was found, for people.
    pub found: String,
    /// The exact fix for this OS; set for anything not ok or skipped.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: impl Into<String>, found: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, found, None)
    }

    pub fn warn(name: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, found, Some(fix.into()))
    }

    pub fn fail(name: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, found, Some(fix.into()))
    }

    pub fn skipped(name: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(name, Status::Skipped, why, None)
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        found: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            found: found.into(),
            fix,
        }
    }

    /// The same check with its status raised to at least `fail` (a warning
    /// that matters for what was asked, e.g. no Secure Boot firmware when
    /// the cluster has Windows workers).
    pub fn failing(mut self) -> Self {
        if self.status == Status::Warn {
            self.status = Status::Fail;
        }
        self
    }
}

/// Everything `devcluster doctor -o json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// No check failed.
    pub passed: bool,
    pub counts: Counts,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skipped: usize,
}

impl Outcome {
    pub fn new(checks: Vec<Check>) -> Self {
        let mut counts = Counts::default();
        for c in &checks {
            match c.status {
                Status::Ok => counts.ok += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
                Status::Skipped => counts.skipped += 1,
            }
        }
        Self {
            passed: counts.fail == 0,
            counts,
            checks,
        }
    }
}

/// The table a person reads: one row per check, the fix on the line below
/// anything not ok, then the counts.
pub fn render(outcome: &Outcome) -> String {
    let checks = &outcome.checks;
    let w_name = checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("CHECK".len());
    let w_status = "skipped".len();
    let mut out = format!("{:<w_name$}  {:<w_status$}  FOUND\n", "CHECK", "STATUS");
    let indent = " ".repeat(w_name + 2 + w_status + 2);
    for c in checks {
        out.push_str(&format!(
            "{:<w_name$}  {:<w_status$}  {}\n",
            c.name,
            c.status.as_str(),
            c.found
        ));
        if c.status != Status::Ok
            && let Some(fix) = &c.fix
        {
            out.push_str(&format!("{indent}fix: {fix}\n"));
        }
    }
    let n = &outcome.counts;
    out.push_str(&format!(
        "\n{} ok, {} warnings, {} failed, {} skipped",
        n.ok, n.warn, n.fail, n.skipped
    ));
    out
}

// ---- host ----------------------------------------------------------------

/// The host OS and CPU architecture (`std::env::consts`).
pub fn host_os(os: &str, arch: &str) -> Check {
    let found = format!("{os} {arch}");
    match (os, arch) {
        ("linux" | "windows" | "macos", "x86_64") => Check::ok("host.os", found),
        ("linux" | "windows" | "macos", "aarch64") => Check::warn(
            "host.os",
            found,
            "the built-in images are x86-64: on an ARM host they run under software emulation only; import an arm64 image with `devcluster images import` for Linux nodes (Windows Server nodes need an x86-64 host)",
        ),
        _ => Check::fail(
            "host.os",
            found,
            "devcluster runs on Linux, Windows and macOS hosts (x86-64)",
        ),
    }
}

/// What the KVM probe found (see the libvirt driver's `kvm_probe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "kebab-case")]
pub enum KvmVerdict {
    /// A test guest ran under KVM.
    Works,
    /// No /dev/kvm.
    NoDevice,
    /// /dev/kvm exists but cannot be opened (the OS error).
    NoAccess(String),
    /// No qemu-system-x86_64 to run the probe with.
    NoQemu,
    /// /dev/kvm opened, but a test guest printed nothing in the probe's
    /// time: nested KVM that hangs.
    Hangs,
    /// QEMU exited before the guest printed anything.
    QemuFailed,
}

impl KvmVerdict {
    pub fn works(&self) -> bool {
        *self == KvmVerdict::Works
    }
}

/// Hardware virtualization on Linux, from the KVM probe's verdict.
/// Software emulation always works, so a KVM that does not is a warning,
/// unless the configuration insists on KVM (`domain_type = "kvm"`).
pub fn kvm(verdict: &KvmVerdict, cached: bool, kvm_required: bool) -> Check {
    const NAME: &str = "host.virtualization";
    let from = if cached {
        " (verdict cached for this boot)"
    } else {
        ""
    };
    let emulation = "VMs run under software emulation (slow: minutes per boot); set [libvirt] domain_type = \"qemu\" in devcluster.toml to say so explicitly";
    let c = match verdict {
        KvmVerdict::Works => return Check::ok(NAME, format!("KVM runs guests{from}")),
        KvmVerdict::NoDevice => Check::warn(
            NAME,
            format!("no /dev/kvm{from}"),
            format!(
                "enable VT-x/AMD-V in the firmware settings and load the module (`sudo modprobe kvm_intel` or `kvm_amd`); inside a VM, turn on nested virtualization. Until then {emulation}"
            ),
        ),
        KvmVerdict::NoAccess(e) => Check::warn(
            NAME,
            format!("/dev/kvm exists but cannot be opened: {e}{from}"),
            format!(
                "add yourself to the kvm group (`sudo usermod -aG kvm $USER`, then log in again); until then {emulation}"
            ),
        ),
        KvmVerdict::NoQemu => Check::warn(
            NAME,
            format!(
                "/dev/kvm exists but qemu-system-x86_64 is missing, so KVM cannot be probed{from}"
            ),
            "install QEMU (Debian/Ubuntu: `sudo apt install qemu-system-x86`)",
        ),
        KvmVerdict::Hangs => Check::warn(
            NAME,
            format!(
                "/dev/kvm exists but hangs: a test guest under KVM did not reach its boot manager in 5 s (nested KVM inside a VM often does this){from}"
            ),
            format!(
                "turn on nested virtualization for this VM in the outer hypervisor, or run on bare metal; until then {emulation}"
            ),
        ),
        KvmVerdict::QemuFailed => Check::warn(
            NAME,
            format!("/dev/kvm exists but QEMU with -accel kvm exited at once{from}"),
            format!(
                "run `qemu-system-x86_64 -accel kvm -display none -nodefaults` to see QEMU's error; until then {emulation}"
            ),
        ),
    };
    if kvm_required { c.failing() } else { c }
}

/// Windows: `Win32_ComputerSystem.HypervisorPresent`, from the JSON of
/// [`HYPERVISOR_PRESENT_PS1`] (or the error running it).
pub fn hypervisor_present(output: Result<&str, &str>) -> Check {
    const NAME: &str = "host.virtualization";
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Cs {
        hypervisor_present: bool,
    }
    match output.map(|o| serde_json::from_str::<Cs>(o.trim())) {
        Ok(Ok(Cs {
            hypervisor_present: true,
        })) => Check::ok(NAME, "a hypervisor is running (HypervisorPresent)"),
        Ok(Ok(Cs {
            hypervisor_present: false,
        })) => Check::fail(
            NAME,
            "no hypervisor is running (HypervisorPresent is false)",
            "enable virtualization (VT-x/AMD-V) in the firmware settings, then Hyper-V: `Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V -All` in an elevated PowerShell, and reboot",
        ),
        Ok(Err(e)) => Check::warn(
            NAME,
            format!("cannot read HypervisorPresent: unexpected output ({e})"),
            "run `Get-CimInstance Win32_ComputerSystem | Select HypervisorPresent` in PowerShell to see it",
        ),
        Err(e) => Check::warn(
            NAME,
            format!("cannot read HypervisorPresent: {e}"),
            "run `Get-CimInstance Win32_ComputerSystem | Select HypervisorPresent` in PowerShell to see it",
        ),
    }
}

/// The PowerShell that reads HypervisorPresent as JSON.
pub const HYPERVISOR_PRESENT_PS1: &str = "Get-CimInstance -ClassName Win32_ComputerSystem | Select-Object HypervisorPresent | ConvertTo-Json -Compress";

/// macOS: `sysctl -n kern.hv_support` (1: Hypervisor.framework usable).
pub fn hv_support(output: Result<&str, &str>) -> Check {
    const NAME: &str = "host.virtualization";
    match output.map(str::trim) {
        Ok("1") => Check::ok(
            NAME,
            "Hypervisor.framework is supported (kern.hv_support = 1)",
        ),
        Ok(other) => Check::fail(
            NAME,
            format!("kern.hv_support = {other}: this Mac cannot run hardware-accelerated VMs"),
            "use a Mac with hardware virtualization (every Apple silicon and most Intel Macs since 2010)",
        ),
        Err(e) => Check::warn(
            NAME,
            format!("cannot read kern.hv_support: {e}"),
            "run `sysctl kern.hv_support` to see it",
        ),
    }
}

// ---- resources -----------------------------------------------------------

/// Physical and available memory, MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub total_mib: u64,
    pub available_mib: u64,
}

/// Parses `/proc/meminfo` (`MemTotal`, `MemAvailable`, in kB).
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(Memory {
        total_mib: field("MemTotal")? / 1024,
        available_mib: field("MemAvailable")? / 1024,
    })
}

/// A cluster's memory against the host's. `what` names the cluster
/// (`the default cluster (...)`).
pub fn memory(name: &str, what: &str, need_mib: u64, mem: Option<Memory>) -> Check {
    let Some(m) = mem else {
        return Check::warn(
            name,
            format!("{what} needs {need_mib} MiB; this host's memory is unknown"),
            "make sure the host has that much memory free",
        );
    };
    let found = format!(
        "{what} needs {need_mib} MiB; the host has {} MiB, {} MiB available",
        m.total_mib, m.available_mib
    );
    let smaller = "use fewer workers (--workers, --windows-workers) or less memory per node (--worker-memory, --windows-memory, --control-plane-memory, or the [linux]/[windows]/[control_plane] memory_mib keys)";
    if need_mib > m.total_mib {
        Check::fail(name, found, smaller)
    } else if need_mib > m.available_mib {
        Check::warn(
            name,
            found,
            "close programs or suspend other clusters (`devcluster --cluster NAME suspend`) before `up`, or the host will swap",
        )
    } else if need_mib * 10 > m.total_mib * 8 {
        Check::warn(
            name,
            format!("{found}: more than 80% of the host's memory"),
            smaller,
        )
    } else {
        Check::ok(name, found)
    }
}

/// Free space where devcluster writes (`place`) against what a new
/// cluster writes there: `need` up front (downloads, base disks; `needs`
/// says what), then `grows` as the thin node disks fill up. Less than
/// `need` fails; less than both together is a warning.
pub fn disk(
    name: &str,
    place: &Path,
    free: Option<u64>,
    need: u64,
    grows: u64,
    needs: &str,
) -> Check {
    let h = crate::images::download::human_bytes;
    let Some(free) = free else {
        return Check::warn(
            name,
            format!(
                "cannot tell the free space at {} (needs {} for {needs})",
                place.display(),
                h(need + grows)
            ),
            "make sure that much space is free there",
        );
    };
    let found = format!(
        "{} free at {}; {needs} take about {} up front, {} once the nodes are provisioned",
        h(free),
        place.display(),
        h(need),
        h(need + grows)
    );
    let fix = format!(
        "free space at {} (`devcluster images prune` deletes unused images and golden disks), or point DEVCLUSTER_HOME at a larger disk",
        place.display()
    );
    if free < need {
        Check::fail(name, found, fix)
    } else if free < need + grows {
        Check::warn(name, format!("{found}: the node disks may fill it"), fix)
    } else {
        Check::ok(name, found)
    }
}

// ---- libvirt -------------------------------------------------------------

/// libvirtd at the configured URI: its version, or the connection error.
pub fn libvirt_reachable(uri: &str, connected: Result<&str, &str>) -> Check {
    const NAME: &str = "libvirt.reachable";
    match connected {
        Ok(version) => Check::ok(NAME, format!("{version} at {uri}")),
        Err(e) => Check::fail(
            NAME,
            format!("cannot connect to libvirt at {uri}: {e}"),
            libvirt_error_fix(uri, e),
        ),
    }
}

/// The fix for a libvirt connection error, from its text (as `virsh` and
/// the API print it).
pub fn libvirt_error_fix(uri: &str, error: &str) -> String {
    let e = error.to_ascii_lowercase();
    let uri_hint =
        "or set [libvirt] uri in devcluster.toml / DEVCLUSTER_LIBVIRT_URI to a libvirt that runs";
    if e.contains("permission denied")
        || e.contains("authentication unavailable")
        || e.contains("authentication failed")
        || e.contains("polkit")
    {
        "add yourself to the libvirt group (`sudo usermod -aG libvirt $USER`, then log out and in again), or run as root".into()
    } else if e.contains("system bus") {
        "libvirtd asks polkit (over D-Bus) whether you may connect, and there is no system bus: add yourself to the libvirt group (`sudo usermod -aG libvirt $USER`, log in again) or run as root; or start D-Bus".into()
    } else if (e.contains("no such file") || e.contains("connection refused"))
        && uri.starts_with("qemu:///")
    {
        format!(
            "start libvirtd (`sudo systemctl enable --now libvirtd`; without systemd: `sudo libvirtd -d`); if it is not installed: `sudo apt install libvirt-daemon-system qemu-system-x86 qemu-utils ovmf` (Debian/Ubuntu); {uri_hint}"
        )
    } else if e.contains("connection refused") || e.contains("no route") || e.contains("timed out")
    {
        format!("nothing answers at {uri}: start libvirtd there, {uri_hint}")
    } else if e.contains("no connection driver") || e.contains("unsupported") {
        format!(
            "{uri} names a driver this libvirt lacks: install it (Debian/Ubuntu: libvirt-daemon-system), {uri_hint}"
        )
    } else {
        format!("run `virsh -c {uri} version` to see libvirt's own message; {uri_hint}")
    }
}

/// Whether this user may manage VMs at a `qemu:///system` URI: root, or a
/// member of the `libvirt` group. `session` is the current process's
/// groups (`id -Gn`), `account` the account's (`id -Gn USER`): a user just
/// added to the group has it in the account but not yet in the session.
pub fn libvirt_permissions(uri: &str, uid: u32, session: &str, account: Option<&str>) -> Check {
    const NAME: &str = "libvirt.permissions";
    if !uri.contains("/system") {
        return Check::ok(NAME, format!("{uri} runs VMs as you: no group needed"));
    }
    if uid == 0 {
        return Check::ok(NAME, "running as root");
    }
    let has = |groups: &str| {
        groups
            .split_whitespace()
            .any(|g| g == "libvirt" || g == "libvirtd")
    };
    if has(session) {
        return Check::ok(NAME, "you are in the libvirt group");
    }
    if account.is_some_and(has) {
        return Check::fail(
            NAME,
            "you were added to the libvirt group, but this login session predates it",
            "log out and in again (or run `newgrp libvirt` in this shell)",
        );
    }
    Check::fail(
        NAME,
        format!(
            "not root and not in the libvirt group (your groups: {})",
            session.split_whitespace().collect::<Vec<_>>().join(", ")
        ),
        "`sudo usermod -aG libvirt $USER`, then log out and in again",
    )
}

/// qemu-img (image conversion for other providers; libvirt uses it for
/// disks too).
pub fn qemu_img(found: Option<&Path>) -> Check {
    match found {
        Some(p) => Check::ok("libvirt.qemu-img", p.display().to_string()),
        None => Check::fail(
            "libvirt.qemu-img",
            "qemu-img is not on PATH",
            crate::images::convert::install_hint(),
        ),
    }
}

/// One QEMU firmware descriptor (`/usr/share/qemu/firmware/*.json`, the
/// files libvirt's `<os firmware='efi'>` picks firmware from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    /// The descriptor's path.
    pub descriptor: PathBuf,
    pub uefi_x86_64: bool,
    pub secure_boot: bool,
    pub enrolled_keys: bool,
    pub executable: PathBuf,
    pub nvram_template: Option<PathBuf>,
    /// Whether the files it names exist.
    pub files_exist: bool,
}

/// Parses a firmware descriptor (QEMU's `docs/interop/firmware.json`).
pub fn parse_firmware_descriptor(path: &Path, text: &str) -> Option<Firmware> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let strs = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let features = strs("features");
    let x86 = v["targets"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["architecture"] == "x86_64"));
    let mapping = &v["mapping"];
    let executable = mapping["executable"]["filename"]
        .as_str()
        .or_else(|| mapping["filename"].as_str())?;
    Some(Firmware {
        descriptor: path.to_path_buf(),
        uefi_x86_64: x86 && strs("interface-types").iter().any(|t| t == "uefi"),
        secure_boot: features.iter().any(|f| f == "secure-boot"),
        enrolled_keys: features.iter().any(|f| f == "enrolled-keys"),
        executable: PathBuf::from(executable),
        nvram_template: mapping["nvram-template"]["filename"]
            .as_str()
            .map(PathBuf::from),
        files_exist: false,
    })
}

/// OVMF: UEFI firmware for x86-64 guests (every node), and the Secure Boot
/// pair with Microsoft's keys enrolled (`OVMF_CODE_4M.ms.fd` +
/// `OVMF_VARS_4M.ms.fd` on Debian) that Windows nodes boot with. Without
/// Windows workers in the cluster the latter is only a warning.
pub fn ovmf(firmware: &[Firmware], windows_workers: bool) -> Vec<Check> {
    let usable: Vec<&Firmware> = firmware
        .iter()
        .filter(|f| f.uefi_x86_64 && f.files_exist)
        .collect();
    let install = "install OVMF (Debian/Ubuntu: `sudo apt install ovmf`; Fedora: `sudo dnf install edk2-ovmf`)";
    let plain = usable.iter().find(|f| !f.secure_boot);
    let any = plain.or(usable.first());
    let base = match any {
        Some(f) => Check::ok(
            "libvirt.ovmf",
            format!("UEFI firmware {}", f.executable.display()),
        ),
        None => Check::fail(
            "libvirt.ovmf",
            if firmware.is_empty() {
                "no UEFI firmware descriptors (/usr/share/qemu/firmware) found".to_string()
            } else {
                "no x86-64 UEFI firmware whose files exist".to_string()
            },
            install,
        ),
    };
    let sb = usable.iter().find(|f| f.secure_boot && f.enrolled_keys);
    let secure = match sb {
        Some(f) => Check::ok(
            "libvirt.ovmf-secure-boot",
            format!(
                "Secure Boot firmware with Microsoft keys: {}{}",
                f.executable.display(),
                f.nvram_template
                    .as_ref()
                    .map(|v| format!(" + {}", v.display()))
                    .unwrap_or_default()
            ),
        ),
        None => {
            let c = Check::warn(
                "libvirt.ovmf-secure-boot",
                "no Secure Boot firmware with Microsoft's keys enrolled (OVMF_CODE_4M.ms.fd + OVMF_VARS_4M.ms.fd): Windows workers cannot boot",
                install,
            );
            if windows_workers { c.failing() } else { c }
        }
    };
    vec![base, secure]
}

/// What is known of the directory libvirtd keeps pools in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageFacts {
    /// A directory; `writable` when this process could tell (as root, or
    /// for a session URI where libvirt runs as us).
    Dir {
        writable: Option<bool>,
    },
    /// Missing, but its parent exists: libvirtd creates it.
    Creatable,
    Missing,
    NotADir,
}

/// The default storage location of libvirt (where libvirtd creates the
/// pools holding base images and node disks, which QEMU must read).
pub fn libvirt_storage(path: &Path, facts: &StorageFacts) -> Check {
    const NAME: &str = "libvirt.storage";
    let p = path.display();
    match facts {
        StorageFacts::Dir {
            writable: Some(true),
        } => Check::ok(NAME, format!("{p} is writable")),
        StorageFacts::Dir { writable: None } => Check::ok(
            NAME,
            format!("{p} exists (libvirtd, as root, creates the pools in it)"),
        ),
        StorageFacts::Dir {
            writable: Some(false),
        } => Check::fail(
            NAME,
            format!("{p} is not writable"),
            format!(
                "make {p} writable by the user libvirtd runs as (`sudo chown root:root {p}; sudo chmod 0711 {p}` for qemu:///system)"
            ),
        ),
        StorageFacts::Creatable => {
            Check::ok(NAME, format!("{p} does not exist yet; libvirtd creates it"))
        }
        StorageFacts::Missing => Check::fail(
            NAME,
            format!("neither {p} nor its parent exists"),
            format!(
                "`sudo mkdir -p {p}` (libvirt's packages create it: is libvirt-daemon-system installed?)"
            ),
        ),
        StorageFacts::NotADir => Check::fail(
            NAME,
            format!("{p} is not a directory"),
            format!("move the file {p} away; libvirt keeps its storage pools there"),
        ),
    }
}

// ---- tools ---------------------------------------------------------------

/// An `ssh` client for `devcluster ssh`; without one, commands still run
/// over devcluster's own SSH client, but an interactive shell needs it.
pub fn ssh_client(found: Option<&Path>) -> Check {
    match found {
        Some(p) => Check::ok("tools.ssh", p.display().to_string()),
        None => Check::warn(
            "tools.ssh",
            "no ssh on PATH: `devcluster ssh NODE -- CMD` uses devcluster's built-in client, an interactive shell is not possible",
            if cfg!(windows) {
                "add the OpenSSH Client: `Add-WindowsCapability -Online -Name OpenSSH.Client~~~~0.0.1.0`"
            } else {
                "install the OpenSSH client (Debian/Ubuntu: `sudo apt install openssh-client`)"
            },
        ),
    }
}

/// kubectl's client version from `kubectl version --client -o json`:
/// (major, minor, gitVersion). Minors such as `32+` (vendor builds) count
/// as their number.
pub fn parse_kubectl_version(json: &str) -> Option<(u32, u32, String)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let cv = &v["clientVersion"];
    let num = |s: &serde_json::Value| -> Option<u32> {
        s.as_str()?
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()
    };
    Some((
        num(&cv["major"])?,
        num(&cv["minor"])?,
        cv["gitVersion"].as_str().unwrap_or("").to_string(),
    ))
}

/// kubectl on PATH, and within one minor of the cluster's Kubernetes
/// (kubectl's supported skew). devcluster itself needs no kubectl, so
/// every problem here is a warning.
pub fn kubectl(found: Option<&Path>, output: Result<&str, &str>, cluster_minor: &str) -> Check {
    const NAME: &str = "tools.kubectl";
    let install = format!(
        "install kubectl {cluster_minor} (https://kubernetes.io/docs/tasks/tools/){}",
        if cfg!(windows) {
            ": `winget install Kubernetes.kubectl`"
        } else if cfg!(target_os = "macos") {
            ": `brew install kubectl`"
        } else {
            ""
        }
    );
    let Some(path) = found else {
        return Check::warn(
            NAME,
            "kubectl is not on PATH (devcluster does not need it; you will)",
            install,
        );
    };
    let out = match output {
        Ok(o) => o,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("{} did not tell its version: {e}", path.display()),
                install,
            );
        }
    };
    let Some((major, minor, git)) = parse_kubectl_version(out) else {
        return Check::warn(
            NAME,
            format!(
                "{}: cannot read `kubectl version --client -o json`",
                path.display()
            ),
            install,
        );
    };
    let want = cluster_minor
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let found = format!(
        "{} {git} (the cluster runs {cluster_minor})",
        path.display()
    );
    match want {
        Some((wmaj, wmin)) if wmaj == major && wmin.abs_diff(minor) <= 1 => Check::ok(NAME, found),
        _ => Check::warn(
            NAME,
            format!("{found}: more than one minor apart, which kubectl does not support"),
            install,
        ),
    }
}

// ---- files ---------------------------------------------------------------

/// What was found of one kubeconfig file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigFacts {
    /// Missing; `creatable` when its directory exists and is writable (or
    /// can be created).
    Missing { creatable: bool },
    Present {
        /// The parser's error, if it does not parse.
        parse_error: Option<String>,
        writable: bool,
    },
}

/// The kubeconfig files `up` merges into ($KUBECONFIG, else ~/.kube/config).
pub fn kubeconfig(files: &[(PathBuf, KubeconfigFacts)]) -> Check {
    const NAME: &str = "files.kubeconfig";
    if files.is_empty() {
        return Check::fail(
            NAME,
            "no kubeconfig path: KUBECONFIG is empty and there is no home directory",
            "set KUBECONFIG to a file path",
        );
    }
    // kubectl creates only its default file when none exists: a missing
    // file beside an existing one needs nothing.
    let any_present = files
        .iter()
        .any(|(_, f)| matches!(f, KubeconfigFacts::Present { .. }));
    let mut found = Vec::new();
    for (path, f) in files {
        let p = path.display();
        match f {
            KubeconfigFacts::Present {
                parse_error: Some(e),
                ..
            } => {
                return Check::fail(
                    NAME,
                    format!("{p} does not parse: {e}"),
                    format!(
                        "fix or move {p} (devcluster never rewrites a file it cannot read); kubectl's own message: `kubectl config view --kubeconfig {p}`"
                    ),
                );
            }
            KubeconfigFacts::Present {
                writable: false, ..
            } => {
                return Check::fail(
                    NAME,
                    format!("{p} is not writable"),
                    if cfg!(windows) {
                        format!("make {p} writable for your user (file Properties > Security)")
                    } else {
                        format!("`sudo chown $USER {p}` (or set KUBECONFIG to a file you own)")
                    },
                );
            }
            KubeconfigFacts::Missing { creatable: false } if !any_present => {
                return Check::fail(
                    NAME,
                    format!("{p} does not exist and cannot be created"),
                    "create its directory and make it yours, or set KUBECONFIG to a file you can write",
                );
            }
            KubeconfigFacts::Present { .. } => found.push(format!("{p} (parses, writable)")),
            KubeconfigFacts::Missing { creatable: true } => {
                found.push(format!("{p} (not there yet; will be created)"))
            }
            KubeconfigFacts::Missing { creatable: false } => found.push(format!("{p} (absent)")),
        }
    }
    Check::ok(NAME, found.join(", "))
}

/// The state dir (cluster state, keys, logs): writable, or creatable.
pub fn state_dir(path: &Path, writable: Result<(), &str>) -> Check {
    match writable {
        Ok(()) => Check::ok("files.state", format!("{} is writable", path.display())),
        Err(e) => Check::fail(
            "files.state",
            format!("cannot write in {}: {e}", path.display()),
            format!(
                "make {} writable for your user, or set DEVCLUSTER_HOME to a directory you own",
                path.display()
            ),
        ),
    }
}

// ---- network -------------------------------------------------------------

/// The cluster's /24: the one an existing cluster keeps, or the free one a
/// new cluster would get (the plan's choice), or why none is free.
pub fn subnet(cluster: &str, chosen: Result<(Cidr, bool), (&str, Option<&str>)>) -> Check {
    const NAME: &str = "network.subnet";
    match chosen {
        Ok((net, true)) => Check::ok(NAME, format!("cluster {cluster} keeps {net}")),
        Ok((net, false)) => Check::ok(NAME, format!("{net} is free for a new cluster {cluster}")),
        Err((e, hint)) => Check::fail(
            NAME,
            e.to_string(),
            hint.unwrap_or("set [network] node_cidr in devcluster.toml to a free /24"),
        ),
    }
}

/// The proxy settings in use (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
/// `NO_PROXY`, either case). Images are downloaded through the proxy; kubectl
/// would also send the API server's traffic through it unless `NO_PROXY`
/// covers the cluster's network.
pub fn proxy(env: &[(String, String)], cluster_net: Option<Cidr>) -> Check {
    const NAME: &str = "network.proxy";
    let get = |k: &str| {
        env.iter()
            .find(|(n, v)| n.eq_ignore_ascii_case(k) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let proxies: Vec<String> = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"]
        .iter()
        .filter_map(|k| get(k).map(|v| format!("{k}={}", redact_url(v))))
        .collect();
    if proxies.is_empty() {
        return Check::ok(NAME, "no proxy set: direct connections");
    }
    let no_proxy = get("NO_PROXY").unwrap_or("");
    let found = format!(
        "{}{}",
        proxies.join(", "),
        if no_proxy.is_empty() {
            String::new()
        } else {
            format!(", NO_PROXY={no_proxy}")
        }
    );
    let Some(net) = cluster_net else {
        return Check::ok(NAME, found);
    };
    let api = net.nth(crate::plan::CONTROL_PLANE_HOST);
    let covered = no_proxy.split(',').map(str::trim).any(|e| {
        e == "*"
            || e.parse::<Cidr>()
                .is_ok_and(|c| c.overlaps(&net) && c.prefix() <= net.prefix())
            || e.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| Some(ip) == api)
    });
    if covered {
        Check::ok(NAME, found)
    } else {
        Check::warn(
            NAME,
            format!(
                "{found}: the cluster network {net} is not in NO_PROXY, so kubectl sends the API server's traffic to the proxy"
            ),
            format!("add {net} to NO_PROXY (e.g. `export NO_PROXY=$NO_PROXY,{net}`)"),
        )
    }
}

/// A URL with any `user:password@` hidden.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
