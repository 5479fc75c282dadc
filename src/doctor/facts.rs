//! The effects half of doctor: asks this host what the checks in
//! [`crate::doctor`] decide on (files, `id`, libvirt, kubectl, QEMU's
//! firmware descriptors, free space, environment) and assembles the list.
//! The slow questions (the KVM probe, libvirt's first connection, kubectl)
//! run at the same time on their own threads.
//!
//! Provider sections: every provider has one, in [`provider_sections`].
//! On a host where a provider cannot exist its checks say skipped and why.
//! The Hyper-V and VirtualBox sections are their providers' own host
//! checks ([`hyperv_section`], [`virtualbox_section`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Check, Firmware, KubeconfigFacts, StorageFacts};
use crate::dirs::Dirs;
use crate::net::Cidr;
use crate::spec::{DomainType, ProviderKind, Spec};

/// What to check, and for which cluster.
pub struct Request<'a> {
    pub dirs: &'a Dirs,
    /// The cluster as configured (flags, environment, project file, user
    /// file, defaults), or the configuration's error (message, hint).
    pub configured: Result<&'a Spec, (String, Option<String>)>,
    /// Where the configuration came from, for people.
    pub config_source: String,
    /// The default cluster (one control plane, one Linux worker).
    pub default: &'a Spec,
    /// The cluster's /24 (and whether it is an existing cluster's), or why
    /// none is free (message, hint).
    pub subnet: Result<(Cidr, bool), (String, Option<String>)>,
    /// `auto`: every provider's section; otherwise that provider's only.
    pub provider: ProviderKind,
    pub scope: Scope,
}

/// Which checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `devcluster doctor`: everything.
    Doctor,
    /// The subset `up` needs before it creates anything (no tools, no
    /// proxy, no default cluster: only what can stop this cluster).
    Up { kubernetes: bool },
}

/// Runs the checks.
pub fn run(req: &Request<'_>) -> Vec<Check> {
    let spec = req.configured.as_ref().copied().unwrap_or(req.default);
    let doctor = req.scope == Scope::Doctor;
    let mut checks = Vec::new();

    // The slow questions first, in parallel with everything else.
    let cluster_minor = spec.kubernetes.minor.clone();
    let (kvm, libvirt_conn, kubectl, rest) = std::thread::scope(|s| {
        let wants_libvirt = matches!(req.provider, ProviderKind::Auto | ProviderKind::Libvirt);
        // `up` probes KVM itself when it creates VMs (and falls back to
        // software emulation): it needs the verdict here only when the
        // configuration insists on KVM.
        let kvm_needed = doctor || spec.libvirt_domain_type.value == DomainType::Kvm;
        let kvm = s.spawn(move || {
            (cfg!(target_os = "linux") && wants_libvirt && kvm_needed)
                .then(|| kvm_verdict(req.dirs))
        });
        let uri = spec.libvirt_uri.value.clone();
        let conn = s.spawn(move || wants_libvirt.then(|| libvirt_connect(&uri)));
        let kubectl = s.spawn(|| doctor.then(kubectl_facts));
        let rest = (
            memory(),
            free_space_facts(req, spec),
            kubeconfig_facts(),
            state_writable(&req.dirs.state),
        );
        (
            kvm.join().ok().flatten(),
            conn.join().ok().flatten(),
            kubectl.join().ok().flatten(),
            rest,
        )
    });
    let (mem, disks, kubeconfig, state) = rest;

    // host
    checks.push(super::host_os(std::env::consts::OS, std::env::consts::ARCH));
    checks.extend(host_virtualization(kvm, spec));

    // configuration and resources
    if doctor {
        checks.push(match &req.configured {
            Ok(_) => Check::ok("config", req.config_source.clone()),
            Err((e, hint)) => Check::fail(
                "config",
                e.clone(),
                hint.clone()
                    .unwrap_or_else(|| "fix the configuration file named above".into()),
            ),
        });
        checks.push(super::memory(
            "resources.memory.default",
            &describe("the default cluster", req.default),
            req.default.total_memory_mib(),
            mem,
        ));
    }
    checks.push(match &req.configured {
        Ok(s) => super::memory(
            "resources.memory",
            &describe(&format!("cluster {}", s.cluster.value), s),
            s.total_memory_mib(),
            mem,
        ),
        Err(_) => Check::skipped(
            "resources.memory",
            "the configuration is invalid (see config)",
        ),
    });
    checks.extend(disks);

    // providers
    checks.extend(provider_sections(req, spec, libvirt_conn));

    // tools
    if doctor {
        checks.push(super::ssh_client(
            crate::commands::ssh::which("ssh").as_deref(),
        ));
        let (path, out) = match &kubectl {
            Some((p, o)) => (p.as_deref(), o.as_deref().map_err(String::as_str)),
            None => (None, Err("not run")),
        };
        checks.push(super::kubectl(path, out, &cluster_minor));
    }

    // files
    if req.scope != (Scope::Up { kubernetes: false }) {
        checks.push(super::kubeconfig(&kubeconfig));
    }
    checks.push(super::state_dir(
        &req.dirs.state,
        state.as_ref().map(|_| ()).map_err(String::as_str),
    ));

    // network
    let net = req.subnet.as_ref().ok().map(|(n, _)| *n);
    checks.push(super::subnet(
        &spec.cluster.value,
        req.subnet
            .as_ref()
            .map(|x| *x)
            .map_err(|(e, h)| (e.as_str(), h.as_deref())),
    ));
    if doctor {
        let env: Vec<(String, String)> = std::env::vars().collect();
        checks.push(super::proxy(&env, net));
    }
    checks
}

/// `the default cluster (1 control plane, 1 Linux worker)`.
fn describe(what: &str, s: &Spec) -> String {
    let mut parts = vec!["1 control plane".to_string()];
    let n = |k: u32, one: &str| format!("{k} {one}{}", if k == 1 { "" } else { "s" });
    if s.workers.value > 0 {
        parts.push(n(s.workers.value, "Linux worker"));
    }
    if s.windows_workers.value > 0 {
        parts.push(n(s.windows_workers.value, "Windows worker"));
    }
    format!("{what} ({})", parts.join(", "))
}

// ---- host ----------------------------------------------------------------

#[cfg(target_os = "linux")]
fn kvm_verdict(dirs: &Dirs) -> (super::KvmVerdict, bool) {
    crate::providers::libvirt::kvm_probe_cached(&dirs.cache)
}

#[cfg(not(target_os = "linux"))]
fn kvm_verdict(_dirs: &Dirs) -> (super::KvmVerdict, bool) {
    (super::KvmVerdict::NoDevice, false)
}

fn host_virtualization(kvm: Option<(super::KvmVerdict, bool)>, spec: &Spec) -> Vec<Check> {
    if cfg!(target_os = "linux") {
        return match kvm {
            Some((v, cached)) => vec![super::kvm(
                &v,
                cached,
                spec.libvirt_domain_type.value == DomainType::Kvm,
            )],
            None => vec![Check::skipped(
                "host.virtualization",
                "KVM matters to the libvirt provider only (and to up only with domain_type = \"kvm\")",
            )],
        };
    }
    if cfg!(windows) {
        let out = run_capture(
            "powershell.exe",
            &[
                "-NoProfile",
                "-NonInteractive",
                "-Command",
                super::HYPERVISOR_PRESENT_PS1,
            ],
        );
        return vec![super::hypervisor_present(
            out.as_deref().map_err(String::as_str),
        )];
    }
    if cfg!(target_os = "macos") {
        let out = run_capture("sysctl", &["-n", "kern.hv_support"]);
        return vec![super::hv_support(out.as_deref().map_err(String::as_str))];
    }
    vec![Check::skipped(
        "host.virtualization",
        format!("no virtualization check for {}", std::env::consts::OS),
    )]
}

/// Runs a program and returns its stdout, or why it did not succeed.
fn run_capture(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{program} failed ({}): {}",
            out.status,
            err.lines().last().unwrap_or("").trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---- resources -----------------------------------------------------------

fn memory() -> Option<super::Memory> {
    if cfg!(target_os = "linux")
        && let Some(m) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| super::parse_meminfo(&t))
    {
        return Some(m);
    }
    crate::host::memory_mib().map(|(total_mib, available_mib)| super::Memory {
        total_mib,
        available_mib,
    })
}

const GIB: u64 = 1 << 30;
/// A Linux cloud image when the catalog gives no size.
const LINUX_IMAGE_BYTES: u64 = GIB;
/// A Windows Server evaluation ISO when the catalog gives no size.
const WINDOWS_ISO_BYTES: u64 = 6 * GIB;
/// A Windows Server base disk made from the ISO (installed, sysprepped).
const WINDOWS_BASE_BYTES: u64 = 20 * GIB;
/// What a Linux node's overlay grows to once prepared (packages, images).
const LINUX_NODE_BYTES: u64 = 4 * GIB;
/// What a Windows node's differencing disk grows to once joined.
const WINDOWS_NODE_BYTES: u64 = 12 * GIB;

/// Free space where the cache and the disks live, against what the
/// configured cluster would write there: the images not cached yet, the
/// base disks uploaded to the provider's storage, and what each node's
/// disk grows to (estimates above). When both places are on one
/// filesystem, one check adds them up.
fn free_space_facts(req: &Request<'_>, spec: &Spec) -> Vec<Check> {
    let provider = match req.provider {
        ProviderKind::Auto => crate::providers::auto_order()
            .first()
            .copied()
            .unwrap_or(ProviderKind::Libvirt),
        p => p,
    };
    let mut cache_need = 0u64;
    let mut cache_what = Vec::new();
    let mut storage_need = 0u64;
    let mut images = vec![(spec.linux_image.value.clone(), crate::plan::Os::Linux)];
    if spec.windows_workers.value > 0 {
        images.push((spec.windows_image.value.clone(), crate::plan::Os::Windows));
    }
    for (name, os) in &images {
        let windows = *os == crate::plan::Os::Windows;
        let entry = crate::images::catalog::find(req.dirs, name).ok();
        let artifact = entry
            .as_ref()
            .and_then(|e| e.artifact_for(provider).ok().cloned());
        let size = artifact
            .as_ref()
            .and_then(|a| a.size)
            .unwrap_or(if windows {
                WINDOWS_ISO_BYTES
            } else {
                LINUX_IMAGE_BYTES
            });
        let cached = artifact
            .as_ref()
            .is_some_and(|a| crate::images::cache::cached_file(req.dirs, name, a).is_some());
        if !cached {
            cache_need += size;
            cache_what.push(format!("image {name}"));
        }
        storage_need += if windows { WINDOWS_BASE_BYTES } else { size };
    }
    let grows = u64::from(1 + spec.workers.value) * LINUX_NODE_BYTES
        + u64::from(spec.windows_workers.value) * WINDOWS_NODE_BYTES;
    let nodes = 1 + spec.workers.value + spec.windows_workers.value;
    let storage_what = format!("base disks and {nodes} node disks");
    let storage = storage_place(req.dirs, spec, provider);
    let disks = disk_list();
    let cache_mount = mount_of(&disks, &req.dirs.cache);
    let storage_mount = mount_of(&disks, &storage);
    let cache_what = if cache_what.is_empty() {
        "cached images".to_string()
    } else {
        cache_what.join(" and ")
    };
    if cache_mount.is_some() && cache_mount == storage_mount {
        let needs = format!("{cache_what}, {storage_what}");
        return vec![super::disk(
            "resources.disk",
            &storage,
            cache_mount.map(|m| m.1),
            cache_need + storage_need,
            grows,
            &needs,
        )];
    }
    vec![
        super::disk(
            "resources.disk.cache",
            &req.dirs.cache,
            cache_mount.map(|m| m.1),
            cache_need,
            0,
            &cache_what,
        ),
        super::disk(
            "resources.disk.storage",
            &storage,
            storage_mount.map(|m| m.1),
            storage_need,
            grows,
            &storage_what,
        ),
    ]
}

/// Where the provider keeps disks.
fn storage_place(dirs: &Dirs, spec: &Spec, provider: ProviderKind) -> PathBuf {
    #[cfg(target_os = "linux")]
    if provider == ProviderKind::Libvirt {
        return crate::providers::libvirt::storage_root(&spec.libvirt_uri.value, &dirs.cache);
    }
    let _ = (spec, provider);
    dirs.state.clone()
}

/// Mount points and their free bytes.
fn disk_list() -> Vec<(PathBuf, u64)> {
    let Ok(disks) = sysinfo::Disks::new_with_refreshed_list() else {
        return Vec::new();
    };
    disks
        .iter()
        .map(|d| (d.mount_point().to_path_buf(), d.available_space()))
        .collect()
}

/// The filesystem holding `path` (its nearest existing ancestor): the
/// longest mount point that is a prefix of it.
fn mount_of(disks: &[(PathBuf, u64)], path: &Path) -> Option<(PathBuf, u64)> {
    let real = nearest_existing(path).and_then(|p| p.canonicalize().ok())?;
    disks
        .iter()
        .filter(|(m, _)| real.starts_with(m))
        .max_by_key(|(m, _)| m.as_os_str().len())
        .cloned()
}

fn nearest_existing(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

// ---- providers -------------------------------------------------------------

/// Each provider's section: `auto` shows all of them, `--provider P` only
/// P's; then which provider `up` would pick.
fn provider_sections(
    req: &Request<'_>,
    spec: &Spec,
    libvirt_conn: Option<Result<String, String>>,
) -> Vec<Check> {
    let auto = req.provider == ProviderKind::Auto;
    let mut checks = Vec::new();
    let mut usable: Vec<ProviderKind> = Vec::new();
    let mut section = |kind: ProviderKind, list: Vec<Check>| {
        let failed = list.iter().any(|c| c.status == super::Status::Fail);
        let skipped = list.iter().all(|c| c.status == super::Status::Skipped);
        if !failed && !skipped {
            usable.push(kind);
        }
        // A provider that was not asked for and cannot be used here does
        // not fail the host: it is skipped, saying why.
        let list = if auto && failed {
            list.into_iter()
                .map(|c| match c.status {
                    super::Status::Fail => Check::skipped(
                        c.name,
                        format!("{} (not needed: another provider may be used)", c.found),
                    ),
                    _ => c,
                })
                .collect()
        } else {
            list
        };
        checks.extend(list);
    };
    if auto || req.provider == ProviderKind::Libvirt {
        section(
            ProviderKind::Libvirt,
            libvirt_section(req, spec, libvirt_conn),
        );
    }
    if auto || req.provider == ProviderKind::Hyperv {
        section(ProviderKind::Hyperv, hyperv_section(req.provider));
    }
    if auto || req.provider == ProviderKind::Virtualbox {
        section(
            ProviderKind::Virtualbox,
            virtualbox_section(req.subnet.as_ref().ok().map(|(n, _)| *n)),
        );
    }
    if auto {
        let pick = crate::providers::auto_order()
            .iter()
            .find(|k| usable.contains(k));
        checks.push(match pick {
            Some(k) => Check::ok("provider", format!("auto picks {k}")),
            None => Check::fail(
                "provider",
                "no usable provider on this host (see the sections above)",
                "fix one provider's failed checks (run `devcluster doctor --provider P` for its fixes)",
            ),
        });
    }
    checks
}

#[cfg(target_os = "linux")]
fn libvirt_connect(uri: &str) -> Result<String, String> {
    crate::providers::libvirt::connect_version(uri)
}

#[cfg(not(target_os = "linux"))]
fn libvirt_connect(_uri: &str) -> Result<String, String> {
    Err("the libvirt provider is built for Linux hosts only".into())
}

fn libvirt_section(
    req: &Request<'_>,
    spec: &Spec,
    conn: Option<Result<String, String>>,
) -> Vec<Check> {
    if !cfg!(target_os = "linux") {
        return vec![Check::skipped(
            "libvirt",
            format!(
                "the libvirt provider is built for Linux hosts only (this is {})",
                std::env::consts::OS
            ),
        )];
    }
    let uri = &spec.libvirt_uri.value;
    let mut checks = Vec::new();
    let conn = conn.unwrap_or_else(|| Err("not probed".into()));
    checks.push(super::libvirt_reachable(
        uri,
        conn.as_deref().map_err(String::as_str),
    ));
    let uid = run_capture("id", &["-u"])
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let session = run_capture("id", &["-Gn"]).unwrap_or_default();
    let account = std::env::var("USER")
        .ok()
        .and_then(|u| run_capture("id", &["-Gn", &u]).ok());
    checks.push(match uid {
        Some(uid) => super::libvirt_permissions(uri, uid, &session, account.as_deref()),
        None => Check::warn(
            "libvirt.permissions",
            "cannot run `id -u`",
            "make sure you are root or in the libvirt group",
        ),
    });
    checks.push(super::qemu_img(
        crate::images::convert::find_qemu_img(None).as_deref(),
    ));
    checks.extend(super::ovmf(
        &firmware_descriptors(),
        spec.windows_workers.value > 0,
    ));
    let storage = storage_place(req.dirs, spec, ProviderKind::Libvirt);
    checks.push(super::libvirt_storage(&storage, &storage_facts(&storage)));
    checks
}

/// QEMU's firmware descriptors, in the directories libvirt reads (the
/// system's, the admin's and the user's), each with whether its files
/// exist.
fn firmware_descriptors() -> Vec<Firmware> {
    let mut dirs = vec![
        PathBuf::from("/usr/share/qemu/firmware"),
        PathBuf::from("/etc/qemu/firmware"),
    ];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".config/qemu/firmware"));
    }
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            if let Some(mut f) = std::fs::read_to_string(&p)
                .ok()
                .and_then(|t| super::parse_firmware_descriptor(&p, &t))
            {
                f.files_exist =
                    f.executable.is_file() && f.nvram_template.as_ref().is_none_or(|v| v.is_file());
                out.push(f);
            }
        }
    }
    out
}

fn storage_facts(path: &Path) -> StorageFacts {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => StorageFacts::Dir {
            writable: can_write_in(path).map(|r| r.is_ok()),
        },
        Ok(_) => StorageFacts::NotADir,
        Err(_) if path.parent().is_some_and(Path::is_dir) => StorageFacts::Creatable,
        Err(_) => StorageFacts::Missing,
    }
}

/// Whether this process can create a file in `dir`, for directories it
/// owns or as root; `None` when its answer would not be libvirtd's.
fn can_write_in(dir: &Path) -> Option<Result<(), String>> {
    let root = run_capture("id", &["-u"]).is_ok_and(|u| u.trim() == "0");
    if !root && dir.starts_with("/var/lib/libvirt") {
        return None;
    }
    Some(
        tempfile::tempfile_in(dir)
            .map(drop)
            .map_err(|e| e.to_string()),
    )
}

/// The Hyper-V provider's host checks ([`crate::providers::hyperv::host_checks`]:
/// the module, the hypervisor running, Administrators or Hyper-V
/// Administrators, the devcluster switch and NetNat, a foreign NetNat in
/// the way), asked through PowerShell on Windows or wherever
/// `DEVCLUSTER_POWERSHELL` names one (the tests' stand-in).
fn hyperv_section(_requested: ProviderKind) -> Vec<Check> {
    use crate::providers::hyperv;
    let configured = std::env::var_os(hyperv::runner::PROGRAM_ENV).is_some_and(|p| !p.is_empty());
    if !cfg!(windows) && !configured {
        return vec![Check::skipped(
            "hyperv",
            format!(
                "Hyper-V runs only on Windows hosts (this is {})",
                std::env::consts::OS
            ),
        )];
    }
    block_on(hyperv::host_checks(&hyperv::PowerShell::from_env()))
}

/// The VirtualBox provider's host checks
/// ([`crate::providers::virtualbox::checks`]: VBoxManage ≥ 7.0, host-only
/// ranges allowed by networks.conf for the cluster's subnet, Hyper-V on the
/// same Windows host).
fn virtualbox_section(subnet: Option<Cidr>) -> Vec<Check> {
    let subnets: Vec<Cidr> = subnet.into_iter().collect();
    block_on(crate::providers::virtualbox::checks(&subnets))
}

/// Runs a detection future that does not block (Hyper-V and VirtualBox
/// detection answer at once) on a small current-thread runtime.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

// ---- tools -----------------------------------------------------------------

type KubectlFacts = (Option<PathBuf>, Result<String, String>);

fn kubectl_facts() -> KubectlFacts {
    let Some(path) = crate::commands::ssh::which("kubectl") else {
        return (None, Err("not on PATH".into()));
    };
    let path_s = path.to_string_lossy().into_owned();
    let out = run_capture(&path_s, &["version", "--client", "-o", "json"]);
    (Some(path), out)
}

// ---- files -----------------------------------------------------------------

fn kubeconfig_facts() -> Vec<(PathBuf, KubeconfigFacts)> {
    let Ok(target) = crate::kubeconfig::Kubeconfig::from_env() else {
        return Vec::new();
    };
    target
        .files()
        .iter()
        .map(|p| (p.clone(), kubeconfig_file(p)))
        .collect()
}

fn kubeconfig_file(path: &Path) -> KubeconfigFacts {
    match std::fs::read(path) {
        Ok(bytes) => KubeconfigFacts::Present {
            parse_error: crate::kubeconfig::parse(path, &bytes)
                .err()
                .map(|e| crate::error::one_line(&e)),
            writable: std::fs::OpenOptions::new().append(true).open(path).is_ok(),
        },
        Err(_) => KubeconfigFacts::Missing {
            creatable: nearest_existing(path.parent().unwrap_or(path))
                .is_some_and(|d| tempfile::tempfile_in(d).is_ok()),
        },
    }
}

/// Whether the state dir (or, before it exists, its nearest existing
/// ancestor) takes a new file; nothing is left behind.
fn state_writable(state: &Path) -> Result<(), String> {
    let dir = nearest_existing(state).ok_or_else(|| "no part of the path exists".to_string())?;
    tempfile::tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("{}: {e}", dir.display()))
}
