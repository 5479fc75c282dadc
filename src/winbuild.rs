//! `devcluster images build`: a Windows base disk from the evaluation ISO.
//!
//! A builder VM boots the ISO with a second CD (`DCBUILD`, see
//! [`crate::seed::windows`]): Windows Setup reads `autounattend.xml`,
//! installs Server Core, logs on once and runs `build.ps1`, which writes
//! `devcluster-build: phase|reboot|failed ...` lines to COM1 (the serial
//! log) and ends in `sysprep /generalize /oobe /shutdown`. So the host
//! only watches: the VM's state (off = sysprep finished) and the serial
//! log (which phase; a `failed` line), which is the provider's
//! [`Provider::build_log`] (Hyper-V, with no serial file, reads the same
//! lines from guest key-value pairs). Setup itself writes nothing to the
//! serial port, so "no new phase" can last as long as Setup does: the
//! stall bound is generous, and there is an overall bound besides.
//!
//! When the builder is off, its disk is copied into the shared images
//! pool and recorded as the base disk ([`crate::images::winbase`]: same
//! records, `images list`, `images prune` and lock as golden disks); the
//! builder and its CDs are deleted. A builder that failed or stalled is
//! left running for inspection (VNC, serial log); the next build deletes
//! it first, so a retry starts clean.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::dirs::Dirs;
use crate::images::golden::{self as record, GoldenDisk, Made, ProviderVolume};
use crate::images::{self, ImageError, winbase};
use crate::net::Cidr;
use crate::plan::Os;
use crate::providers::{
    BaseImage, Firmware, NetworkSpec, Provider, ProviderError, VmSpec, VmState,
};
use crate::seed::windows::{self, BuildSeed};
use crate::spec::{NetworkMode, ProviderKind, WindowsDevices};

/// How long a build usually takes with KVM / Hyper-V (the design target).
pub const TYPICAL_HW: Duration = Duration::from_secs(25 * 60);
/// ... and under software emulation (TCG): an estimate, hours.
pub const TYPICAL_SOFTWARE: Duration = Duration::from_secs(6 * 3600);

/// The flag that accepts a build under software emulation.
pub const SOFTWARE_FLAG: &str = "--allow-software-emulation";

/// What the serial log says so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The last phase begun (`10-sshd`, ...), `None` while Setup runs.
    pub phase: Option<String>,
    /// A step that failed, with its message.
    pub failed: Option<(String, String)>,
    /// How many `devcluster-build:` lines there were: any new one is
    /// progress (a phase, a reboot).
    pub markers: usize,
}

const MARK: &str = "devcluster-build: ";

/// Reads build.ps1's lines out of the serial log's text (which also holds
/// firmware and boot noise, and may end in half a line).
pub fn scan(serial: &str) -> Scan {
    let mut s = Scan::default();
    for line in serial.lines() {
        let Some(at) = line.find(MARK) else { continue };
        let rest = line[at + MARK.len()..].trim_end_matches(['\r', ' ']);
        if let Some(p) = rest.strip_prefix("phase ") {
            s.phase = Some(p.trim().to_string());
        } else if let Some(f) = rest.strip_prefix("failed ") {
            let (step, msg) = f.split_once(": ").unwrap_or((f, ""));
            s.failed = Some((step.trim().to_string(), msg.trim().to_string()));
        } else if rest.strip_prefix("reboot ").is_none() {
            continue;
        }
        s.markers += 1;
    }
    s
}

/// The key presses of [`BOOT_KEY_EVERY`], and what is told about them.
#[derive(Default)]
struct BootKeys {
    pressed: u32,
    /// A press failed (said once): no more tries.
    failed: bool,
    told: bool,
}

impl BootKeys {
    async fn press(&mut self, provider: &dyn Provider, vm: &str, progress: &dyn BuildProgress) {
        if self.failed {
            return;
        }
        match provider.press_key(vm).await {
            Ok(()) => self.pressed += 1,
            // Not fatal: the prompt may be gone, or a user at the console
            // pressed the key. Said once, with the cause.
            Err(e) => {
                progress.note(&format!(
                    "cannot press a key in {vm} for the ISO's \"Press any key to boot from CD\" prompt ({e}); if Setup does not start, press one in its console"
                ));
                self.failed = true;
            }
        }
    }

    fn done(&mut self, progress: &dyn BuildProgress) {
        if self.told || self.pressed == 0 {
            return;
        }
        self.told = true;
        progress.note(&format!(
            "pressed a key {} times for the ISO's \"Press any key to boot from CD\" prompt",
            self.pressed
        ));
    }
}

/// The name shown for where the build is.
pub fn phase_label(scan: &Scan) -> &str {
    scan.phase.as_deref().unwrap_or("windows-setup")
}

/// When a build is given up, and how long it presses a key at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// No new serial-log line for this long.
    pub stall: Duration,
    /// In all.
    pub overall: Duration,
    /// How long after the start a key is pressed every second (see
    /// [`BOOT_KEY_EVERY`]), unless build.ps1 has written a line by then.
    pub boot_keys: Duration,
}

/// How often a key is pressed while the ISO may be showing "Press any key
/// to boot from CD or DVD...".
///
/// Why: the evaluation ISO boots through `efisys.bin`, whose loader waits
/// about five seconds for a key and otherwise returns to the firmware, so
/// an unattended VM never starts Setup (Packer's Windows templates press
/// `<spacebar>` for the same reason). Only Microsoft's
/// `efisys_noprompt.bin` skips it, and that means remastering a 5 GB ISO.
/// The builder boots its blank disk first, so after Setup's first reboot
/// the installed disk boots and the prompt is never shown again; keys end
/// once build.ps1 writes its first line or [`Bounds::boot_keys`] passes,
/// long before that reboot.
pub const BOOT_KEY_EVERY: Duration = Duration::from_secs(1);

impl Bounds {
    /// Generous: Setup alone writes nothing for most of the typical time.
    pub fn for_emulation(software: bool) -> Bounds {
        let typical = if software {
            TYPICAL_SOFTWARE
        } else {
            TYPICAL_HW
        };
        Bounds {
            stall: typical * 2,
            overall: typical * 4,
            // The firmware reaches the CD in seconds with KVM, in a
            // minute or two under TCG.
            boot_keys: if software {
                Duration::from_secs(600)
            } else {
                Duration::from_secs(120)
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    Stalled,
    TooLong,
}

/// Whether to keep waiting, `elapsed` into the build and `quiet` since
/// the last progress.
pub fn verdict(elapsed: Duration, quiet: Duration, bounds: Bounds) -> Verdict {
    if elapsed >= bounds.overall {
        Verdict::TooLong
    } else if quiet >= bounds.stall {
        Verdict::Stalled
    } else {
        Verdict::Wait
    }
}

/// Where the builder lives: its VM, its cluster (storage pool and an
/// isolated network; Setup needs no network) and that network's subnet.
#[derive(Debug, Clone)]
pub struct Place {
    pub vm: String,
    pub cluster: String,
    pub subnet: Cidr,
}

impl Place {
    pub fn default_for(image: &str) -> Place {
        // The cluster name makes a bridge name `dc-<cluster>` (<= 15).
        let short: String = image
            .strip_prefix("windows-server-")
            .unwrap_or(image)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect();
        Place {
            vm: format!("devcluster-build-{image}"),
            cluster: format!("build{short}"),
            subnet: "192.168.250.0/24".parse().expect("a valid subnet"),
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Request {
    pub image: String,
    pub place: Place,
    pub bounds: Bounds,
    /// How often the VM and the serial log are looked at.
    pub poll: Duration,
    pub typical: Duration,
    /// The builder's (and so the base disk's) disk and NIC; virtio only
    /// on libvirt.
    pub devices: WindowsDevices,
}

/// Progress of a build, for the Printer.
pub trait BuildProgress: Send + Sync {
    fn note(&self, message: &str);
    /// Called on every poll.
    fn phase(&self, phase: &str, elapsed: Duration, typical: Duration);
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("image {0} is not a Windows image: only Windows images are built")]
    NotWindows(String),
    #[error(
        "image {0} has no Windows answer-file settings (known: windows-server-2022, windows-server-2025)"
    )]
    NoSettings(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("the build CD could not be made")]
    Seed(#[source] crate::seed::SeedError),
    #[error("the builder's key or password could not be made")]
    Pki(#[source] crate::pki::PkiError),
    #[error("builder VM {vm}")]
    Provider {
        vm: String,
        #[source]
        source: ProviderError,
    },
    #[error(
        "builder VM {vm} made no progress for {quiet} (at phase {phase}); it is left running for inspection"
    )]
    Stalled {
        vm: String,
        phase: String,
        quiet: String,
        watch: Box<Watch>,
    },
    #[error(
        "builder VM {vm} did not finish within {bound} (at phase {phase}); it is left running for inspection"
    )]
    TooLong {
        vm: String,
        phase: String,
        bound: String,
        watch: Box<Watch>,
    },
    #[error("builder VM {vm}: build step {step} failed: {message}")]
    Failed {
        vm: String,
        step: String,
        message: String,
        watch: Box<Watch>,
    },
    #[error("the {kind} provider cannot build Windows base disks")]
    Unsupported { kind: ProviderKind },
    #[error(
        "windows_devices = \"virtio\" is a libvirt setting; the {kind} provider gives Windows its own devices"
    )]
    VirtioNotHere { kind: ProviderKind },
    #[error("builder VM {vm} vanished during the build")]
    Vanished { vm: String },
}

/// Where a person watches the builder: its console (the provider's
/// [`crate::providers::console_hint`]) and its build log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub console: String,
    pub serial: PathBuf,
}

impl Watch {
    // Boxed in the errors: `BuildError` stays small (clippy's
    // result_large_err, which the Windows target's PathBuf tips over).
    fn new(provider: &dyn Provider, vm: &str, serial: &std::path::Path) -> Box<Watch> {
        Box::new(Watch {
            console: crate::providers::console_hint(provider.kind(), &provider.location(), vm),
            serial: serial.to_path_buf(),
        })
    }
}

impl BuildError {
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Stalled { watch, .. }
            | BuildError::TooLong { watch, .. }
            | BuildError::Failed { watch, .. } => Some(format!(
                "watch {} and its build log {}; `devcluster images build` again deletes it and starts clean",
                watch.console,
                watch.serial.display()
            )),
            BuildError::VirtioNotHere { .. } => Some(
                "leave [libvirt] windows_devices at \"emulated\" (or drop --windows-devices), or build with --provider libvirt".into(),
            ),
            BuildError::Unsupported { .. } => Some(
                "build it with a provider that can (`devcluster doctor` lists them), or pass --provider libvirt on a Linux host".into(),
            ),
            BuildError::Image(e) => e.hint(),
            BuildError::Provider { source, .. } => source.hint(),
            BuildError::NotWindows(_) | BuildError::NoSettings(_) => Some(
                "name a Windows Server image: windows-server-2025 or windows-server-2022 (see `devcluster images list`)".into(),
            ),
            _ => None,
        }
    }
}

/// The catalog entry and answer-file settings of `name`, or why not.
pub fn windows_image(
    dirs: &Dirs,
    name: &str,
) -> Result<(images::ImageEntry, windows::WindowsImage), BuildError> {
    let entry = images::catalog::find(dirs, name)?;
    if entry.os != Os::Windows {
        return Err(BuildError::NotWindows(name.into()));
    }
    let image =
        windows::image_for(&entry.name).ok_or_else(|| BuildError::NoSettings(name.into()))?;
    Ok((entry, image))
}

/// Deletes the builder at `place` and its cluster's storage and network.
pub async fn remove_builder(provider: &dyn Provider, place: &Place) -> Result<(), BuildError> {
    let e = |source| BuildError::Provider {
        vm: place.vm.clone(),
        source,
    };
    provider.delete_node(&place.vm).await.map_err(e)?;
    provider.remove_storage(&place.cluster).await.map_err(e)?;
    provider.remove_network(&place.cluster).await.map_err(e)?;
    Ok(())
}

/// Builds (or finds) the base disk of `req.image` for `provider`.
pub async fn build(
    dirs: &Dirs,
    provider: &dyn Provider,
    req: &Request,
    fetch: &images::Fetch<'_>,
    progress: &dyn BuildProgress,
) -> Result<GoldenDisk, BuildError> {
    let kind = provider.kind();
    let (entry, image) = windows_image(dirs, &req.image)?;
    if !provider.capabilities().windows_builds {
        return Err(BuildError::Unsupported { kind });
    }
    if req.devices == WindowsDevices::Virtio && kind != ProviderKind::Libvirt {
        return Err(BuildError::VirtioNotHere { kind });
    }
    let artifact = entry.artifact_for(kind)?;
    let iso = images::cache::ensure(dirs, &entry, artifact, Some(kind), fetch).await?;
    let key = winbase::key(&image, &iso.sha256, kind, req.devices);
    let id = key.id();
    if let Some(d) = record::lookup(dirs, &key) {
        return Ok(d);
    }
    // Through the host cache like the ISO: fetched once, verified,
    // `--offline` after that; before anything is made.
    let drivers_iso = match req.devices {
        WindowsDevices::Virtio => Some(winbase::ensure_virtio_win(dirs, fetch).await?.path),
        WindowsDevices::Emulated => None,
    };
    // One build per base disk: a second process waits for the first.
    let mut told = false;
    let _held = loop {
        if let Some(l) = images::cache::try_lock(dirs, &format!("golden-{id}"))? {
            break l;
        }
        if !told {
            progress.note(&format!(
                "another devcluster process is building the base disk of {}; waiting for it",
                entry.name
            ));
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if let Some(d) = record::lookup(dirs, &key) {
        return Ok(d);
    }
    let place = &req.place;
    let perr = |source| BuildError::Provider {
        vm: place.vm.clone(),
        source,
    };
    // A retry starts clean: whatever an earlier build left goes first.
    remove_builder(provider, place).await?;

    let work = dirs.cache.join("builds");
    let key_pair = crate::pki::builder_ssh_key(&work).map_err(BuildError::Pki)?;
    let openssh_zip = if image.builtin_openssh {
        None
    } else {
        let z = winbase::ensure_openssh(dirs, fetch).await?;
        Some(std::fs::read(&z.path).map_err(|source| ImageError::Io {
            what: "cannot read",
            path: z.path.clone(),
            source,
        })?)
    };
    let seed = BuildSeed {
        image,
        authorized_key: key_pair.public_line.clone(),
        admin_password: crate::pki::generate_windows_password().map_err(BuildError::Pki)?,
        openssh_zip,
        devices: req.devices,
    };
    let seed_iso = windows::build_seed_iso(&seed).map_err(BuildError::Seed)?;
    let serial = work.join(format!("{}.serial.log", place.vm));
    let _ = std::fs::remove_file(&serial);
    let watch = Watch::new(provider, &place.vm, &serial);
    let gateway = place.subnet.nth(1).ok_or_else(|| BuildError::Provider {
        vm: place.vm.clone(),
        source: ProviderError::Invalid(format!("subnet {} has no gateway address", place.subnet)),
    })?;
    provider
        .ensure_network(&NetworkSpec {
            cluster: place.cluster.clone(),
            subnet: place.subnet,
            gateway,
            mode: NetworkMode::Isolated,
            hosts: Vec::new(),
        })
        .await
        .map_err(perr)?;
    let vm = VmSpec {
        cluster: place.cluster.clone(),
        name: place.vm.clone(),
        role: "builder".into(),
        os: Os::Windows,
        cpus: 2,
        memory_mib: 4096,
        disk_gib: 64,
        mac: "52:54:00:dc:b0:01".into(),
        base: BaseImage {
            name: entry.name.clone(),
            path: iso.path.clone(),
            sha256: iso.sha256.clone(),
            firmware: Firmware::Uefi,
            secure_boot: true,
        },
        golden: None,
        seed_iso,
        install_iso: Some(iso.path.clone()),
        windows_devices: req.devices,
        drivers_iso,
        serial_log: serial.clone(),
    };
    provider.create_node(&vm).await.map_err(perr)?;
    provider.start(&place.vm).await.map_err(perr)?;
    progress.note(&format!(
        "builder VM {} started: watch {}, build log {}",
        place.vm,
        watch.console,
        serial.display()
    ));

    let started = Instant::now();
    let mut last = Scan::default();
    let mut changed = Instant::now();
    let mut keys = BootKeys::default();
    loop {
        match provider.state(&place.vm).await.map_err(perr)? {
            VmState::Off => break,
            VmState::Absent => {
                return Err(BuildError::Vanished {
                    vm: place.vm.clone(),
                });
            }
            _ => {}
        }
        let text = provider.build_log(&place.vm, &serial).await.map_err(perr)?;
        let now = scan(&text);
        if now.markers != last.markers {
            changed = Instant::now();
        }
        if let Some((step, message)) = &now.failed {
            return Err(BuildError::Failed {
                vm: place.vm.clone(),
                step: step.clone(),
                message: message.clone(),
                watch,
            });
        }
        last = now;
        let elapsed = started.elapsed();
        progress.phase(phase_label(&last), elapsed, req.typical);
        match verdict(elapsed, changed.elapsed(), req.bounds) {
            Verdict::Wait => {}
            Verdict::Stalled => {
                return Err(BuildError::Stalled {
                    vm: place.vm.clone(),
                    phase: phase_label(&last).into(),
                    quiet: crate::ui::duration(changed.elapsed()),
                    watch,
                });
            }
            Verdict::TooLong => {
                return Err(BuildError::TooLong {
                    vm: place.vm.clone(),
                    phase: phase_label(&last).into(),
                    bound: crate::ui::duration(req.bounds.overall),
                    watch,
                });
            }
        }
        let pressing = last.markers == 0 && elapsed < req.bounds.boot_keys;
        if pressing {
            keys.press(provider, &place.vm, progress).await;
            tokio::time::sleep(req.poll.min(BOOT_KEY_EVERY)).await;
        } else {
            keys.done(progress);
            tokio::time::sleep(req.poll).await;
        }
    }
    keys.done(progress);
    let took = started.elapsed();
    let kept = provider.keep_disk(&place.vm, &id).await.map_err(perr)?;
    let made = Made {
        image: entry.name.clone(),
        format: provider.disk_format(),
        capacity_bytes: kept.capacity_bytes,
        source: format!("built by {}", place.vm),
        prepared_ms: took.as_millis() as u64,
    };
    let volume = ProviderVolume {
        name: kept.name.clone(),
        path: kept.path.clone(),
        bytes: kept.bytes,
        uri: provider.location(),
    };
    let disk = match record::store_volume(dirs, &key, made, volume) {
        Ok(d) => d,
        Err(e) => {
            let _ = provider.remove_golden(&kept.name).await;
            return Err(e.into());
        }
    };
    remove_builder(provider, place).await?;
    Ok(disk)
}

/// The one line shown while a build runs.
pub fn progress_line(phase: &str, elapsed: Duration, typical: Duration) -> String {
    format!(
        "building: phase {phase}, {} elapsed (typically about {})",
        crate::ui::duration(elapsed),
        crate::ui::duration(typical)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "BdsDxe: loading Boot0001 \"UEFI QEMU DVD-ROM\"\r\n\
        garbage \x1b[0m\r\n\
        devcluster-build: phase 10-sshd\r\n\
        devcluster-build: phase 20-shutdown-without-logon\r\n\
        devcluster-build: phase 30-containers\r\n\
        devcluster-build: reboot 30-containers\r\n\
        devcluster-build: phase 30-con";

    #[test]
    fn scan_reads_phases_reboots_and_half_lines() {
        assert_eq!(scan(""), Scan::default());
        assert_eq!(phase_label(&scan("firmware noise only\n")), "windows-setup");
        let s = scan(LOG);
        // The half-written last line still counts: it is the newest.
        assert_eq!(s.phase.as_deref(), Some("30-con"));
        assert_eq!(s.markers, 5);
        assert_eq!(s.failed, None);
        let full = format!("{LOG}tainers\r\ndevcluster-build: phase 40-time-sync\r\n");
        let s = scan(&full);
        assert_eq!(s.phase.as_deref(), Some("40-time-sync"));
        assert_eq!(s.markers, 6);
    }

    #[test]
    fn scan_reports_a_failed_step() {
        let s = scan(
            "devcluster-build: phase 30-containers\r\ndevcluster-build: failed 30-containers: exit code 1\r\n",
        );
        assert_eq!(
            s.failed,
            Some(("30-containers".into(), "exit code 1".into()))
        );
        // Only build.ps1's own words count.
        let s = scan("echo devcluster-build:phase x\nsomething else: phase 1\n");
        assert_eq!(s.markers, 0);
    }

    #[test]
    fn verdicts_follow_the_bounds() {
        let b = Bounds {
            stall: Duration::from_secs(60),
            overall: Duration::from_secs(600),
            boot_keys: Duration::from_secs(30),
        };
        let s = Duration::from_secs;
        assert_eq!(verdict(s(10), s(10), b), Verdict::Wait);
        assert_eq!(verdict(s(100), s(59), b), Verdict::Wait);
        assert_eq!(verdict(s(100), s(60), b), Verdict::Stalled);
        assert_eq!(verdict(s(600), s(1), b), Verdict::TooLong);
        // Too long wins over a stall.
        assert_eq!(verdict(s(700), s(700), b), Verdict::TooLong);
        let hw = Bounds::for_emulation(false);
        let sw = Bounds::for_emulation(true);
        assert!(hw.stall > TYPICAL_HW && hw.overall > hw.stall);
        assert!(sw.stall > hw.stall && sw.overall > sw.stall);
        // Keys stop long before Setup's first reboot could come.
        assert!(hw.boot_keys < TYPICAL_HW / 4 && sw.boot_keys < TYPICAL_SOFTWARE / 4);
        assert!(sw.boot_keys > hw.boot_keys);
    }

    #[test]
    fn the_default_place_fits_bridge_names() {
        for image in [
            "windows-server-2025",
            "windows-server-2022",
            "my-own-windows",
        ] {
            let p = Place::default_for(image);
            assert!(
                crate::providers::libvirt::xml::bridge_name(&p.cluster).len() <= 15,
                "{p:?}"
            );
            assert_eq!(p.vm, format!("devcluster-build-{image}"));
        }
    }

    #[test]
    fn the_stall_hint_names_the_vm_and_how_to_watch_it() {
        let e = BuildError::Stalled {
            vm: "devcluster-build-windows-server-2025".into(),
            phase: "windows-setup".into(),
            quiet: "2h".into(),
            watch: Box::new(Watch {
                console: crate::providers::console_hint(
                    ProviderKind::Libvirt,
                    "qemu:///system",
                    "devcluster-build-windows-server-2025",
                ),
                serial: "/c/b.serial.log".into(),
            }),
        };
        assert!(
            e.to_string()
                .contains("devcluster-build-windows-server-2025")
        );
        let h = e.hint().unwrap();
        assert!(
            h.contains("virsh -c qemu:///system vncdisplay devcluster-build-windows-server-2025")
        );
        assert!(h.contains("/c/b.serial.log"));
        assert!(progress_line("10-sshd", Duration::from_secs(90), TYPICAL_HW).contains("10-sshd"));
    }
}
