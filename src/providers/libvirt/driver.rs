//! The libvirt driver (Linux hosts), on the `virt` crate.
//!
//! Storage: libvirt storage pools, not files in our state dir. With
//! `qemu:///system` QEMU runs as `libvirt-qemu`, which usually cannot even
//! traverse a user's home (0750 on current Ubuntu), so disks under
//! `~/.local/share` fail with "Permission denied" for everyone who is not
//! root. Instead the base image is uploaded once (by content hash) into a
//! shared pool `devcluster-images`, and each cluster gets a pool
//! `devcluster-NAME` holding its qcow2 overlays (backed by the base) and
//! seed ISOs, all created by libvirtd itself through the API — so it also
//! works for members of the `libvirt` group and for remote URIs. Deleting a
//! cluster deletes its pool; the shared base stays (image cache).
//!
//! Every libvirt call blocks, so each runs on tokio's blocking pool. One
//! connection is kept for the provider's life (the `test:///` driver keeps
//! its state per connection).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::network::Network;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

use super::xml::{self, DomainHost};
use crate::doctor::KvmVerdict;
use crate::providers::{
    Capabilities, Detection, GoldenVolume, NetworkSpec, Provider, ProviderConfig, ProviderError,
    Result, Shutdown, VmSpec, VmState,
};
use crate::spec::{DomainType, ProviderKind};

/// The shared pool of uploaded base images.
pub const IMAGES_POOL: &str = "devcluster-images";

fn is_missing(e: &virt::error::Error) -> bool {
    matches!(
        e.code(),
        virt::enumutil::Enum::Known(
            ErrorNumber::NoDomain
                | ErrorNumber::NoNetwork
                | ErrorNumber::NoStoragePool
                | ErrorNumber::NoStorageVolume
        )
    )
}

fn is_invalid_op(e: &virt::error::Error) -> bool {
    matches!(
        e.code(),
        virt::enumutil::Enum::Known(ErrorNumber::OperationInvalid)
    )
}

fn is_unsupported(e: &virt::error::Error) -> bool {
    matches!(
        e.code(),
        virt::enumutil::Enum::Known(ErrorNumber::InvalidArg | ErrorNumber::NoSupport)
    )
}

fn err(
    op: &'static str,
    what: impl Into<String>,
) -> impl FnOnce(virt::error::Error) -> ProviderError {
    let what = what.into();
    move |e| ProviderError::op(op, what, e)
}

/// Is libvirt reachable at `uri`?
pub async fn detect(uri: &str) -> Detection {
    let u = uri.to_string();
    let r = tokio::task::spawn_blocking(move || connect_version(&u)).await;
    match r {
        Ok(Ok(version)) => Detection {
            kind: ProviderKind::Libvirt,
            usable: true,
            detail: format!("{version} at {uri}"),
            fix: None,
        },
        Ok(Err(e)) => Detection {
            kind: ProviderKind::Libvirt,
            usable: false,
            detail: format!("cannot connect to libvirt: {e}"),
            fix: Some(
                "install libvirt and QEMU (Debian/Ubuntu: apt install libvirt-daemon-system qemu-system-x86 qemu-utils ovmf), start libvirtd, and add yourself to the libvirt group; or set [libvirt] uri / DEVCLUSTER_LIBVIRT_URI"
                    .into(),
            ),
        },
        Err(e) => Detection {
            kind: ProviderKind::Libvirt,
            usable: false,
            detail: format!("libvirt probe failed: {e}"),
            fix: None,
        },
    }
}

/// Connects to `uri` (blocking) and returns `libvirt X.Y.Z`, or
/// libvirt's error message.
pub fn connect_version(uri: &str) -> std::result::Result<String, String> {
    virt::error::clear_error_callback();
    let conn = Connect::open(Some(uri)).map_err(|e| e.message().to_string())?;
    let v = conn.lib_version().map_err(|e| e.message().to_string())?;
    Ok(format!(
        "libvirt {}.{}.{}",
        v / 1_000_000,
        v / 1000 % 1000,
        v % 1000
    ))
}

/// Where libvirtd creates the pools of base images and node disks: the
/// system daemon's images directory, or (a session URI, where QEMU runs as
/// the user) under devcluster's state dir.
pub fn storage_root(uri: &str, cache_dir: &std::path::Path) -> PathBuf {
    if uri.contains("session") {
        cache_dir
            .parent()
            .unwrap_or(cache_dir)
            .join("state")
            .join("libvirt")
    } else {
        PathBuf::from("/var/lib/libvirt/images")
    }
}

pub struct Libvirt {
    conn: Arc<Connect>,
    uri: String,
    wanted_domain_type: DomainType,
    /// Chosen by [`Provider::prepare_create`] (probing KVM takes seconds:
    /// commands that only manage existing VMs never pay for it).
    domain_type: std::sync::OnceLock<&'static str>,
    cache_dir: PathBuf,
    /// Directory under which libvirtd creates the pools (on its host).
    storage_root: String,
    /// Marks complete base-image uploads (an upload cut short leaves a
    /// volume that must not be used).
    upload_marks: PathBuf,
    /// Nodes are created in parallel; the first uploads the shared base
    /// image, the others wait for it.
    base_upload: Arc<std::sync::Mutex<()>>,
}

impl Libvirt {
    pub async fn open(config: &ProviderConfig) -> Result<Self> {
        let uri = config.libvirt_uri.clone();
        let u = uri.clone();
        let conn = tokio::task::spawn_blocking(move || {
            virt::error::clear_error_callback();
            Connect::open(Some(&u))
        })
        .await
        .map_err(|e| ProviderError::Invalid(format!("libvirt connection task failed: {e}")))?
        .map_err(err("connecting", format!("libvirt at {uri}")))?;
        let conn = Arc::new(conn);
        let storage_root = storage_root(&uri, &config.cache_dir)
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            conn,
            uri,
            wanted_domain_type: config.libvirt_domain_type,
            domain_type: std::sync::OnceLock::new(),
            cache_dir: config.cache_dir.clone(),
            storage_root,
            upload_marks: config.cache_dir.join("libvirt-uploads"),
            base_upload: Arc::new(std::sync::Mutex::new(())),
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// `kvm` or `qemu`, once [`Provider::prepare_create`] has chosen.
    pub fn domain_type(&self) -> Option<&'static str> {
        self.domain_type.get().copied()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connect) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn))
            .await
            .map_err(|e| ProviderError::Invalid(format!("libvirt task failed: {e}")))?
    }
}

fn lookup_domain(conn: &Connect, name: &str) -> Result<Option<Domain>> {
    match conn.lookup_domain_by_name(name) {
        Ok(d) => Ok(Some(d)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(ProviderError::op("looking up", format!("VM {name}"), e)),
    }
}

/// The domain, or [`ProviderError::NoSuchVm`].
fn existing_domain(conn: &Connect, name: &str) -> Result<Domain> {
    lookup_domain(conn, name)?.ok_or_else(|| ProviderError::NoSuchVm(name.to_string()))
}

fn domain_state(d: &Domain, name: &str) -> Result<VmState> {
    use virt::domain::DomainState as S;
    let (state, _) = d
        .state()
        .map_err(err("reading the state of", format!("VM {name}")))?;
    Ok(match state {
        virt::enumutil::Enum::Known(S::Running | S::Blocked) => VmState::Running,
        virt::enumutil::Enum::Known(S::Paused | S::PMSuspended) => VmState::Paused,
        virt::enumutil::Enum::Known(S::Shutoff) => {
            if d.has_managed_save(0).unwrap_or(false) {
                VmState::Saved
            } else {
                VmState::Off
            }
        }
        _ => VmState::Other,
    })
}

/// Resumes a paused VM. A domain libvirt is still starting also reads as
/// paused, and then finishes by itself: "already running" is success.
fn unpause(d: &Domain, name: &str) -> Result<()> {
    match d.resume() {
        Ok(_) => Ok(()),
        Err(e) if is_invalid_op(&e) && domain_state(d, name)? == VmState::Running => Ok(()),
        Err(e) => Err(ProviderError::op("resuming", format!("VM {name}"), e)),
    }
}

/// Finds or creates (defines, builds, starts, autostarts) a dir pool.
/// Nodes are created in parallel (and other clusters' `up` may run), so
/// each step accepts that someone else just did it.
fn ensure_pool(conn: &Connect, name: &str, path: &str) -> Result<StoragePool> {
    let lookup = || conn.lookup_storage_pool_by_name(name);
    let pool = match lookup() {
        Ok(p) => p,
        Err(e) if is_missing(&e) => match conn
            .define_storage_pool_xml(&xml::pool_xml(name, path), 0)
        {
            Ok(p) => {
                // Creates the directory; fails harmlessly when it exists.
                let _ = p.build(0);
                p
            }
            Err(e) => lookup()
                .map_err(|_| ProviderError::op("defining", format!("storage pool {name}"), e))?,
        },
        Err(e) => {
            return Err(ProviderError::op(
                "looking up",
                format!("storage pool {name}"),
                e,
            ));
        }
    };
    if !pool.is_active().unwrap_or(false)
        && let Err(e) = pool.create(0)
        && !pool.is_active().unwrap_or(false)
    {
        return Err(ProviderError::op(
            "starting",
            format!("storage pool {name}"),
            e,
        ));
    }
    let _ = pool.set_autostart(true);
    let _ = pool.refresh(0);
    Ok(pool)
}

fn lookup_vol(pool: &StoragePool, name: &str) -> Result<Option<StorageVol>> {
    match pool.lookup_storage_vol_by_name(name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(ProviderError::op("looking up", format!("volume {name}"), e)),
    }
}

/// Streams bytes from a reader into a volume.
///
/// libvirt's `test:///` driver keeps volumes as metadata only and cannot
/// take uploads; there the content is skipped (its VMs never read disks).
fn upload(conn: &Connect, vol: &StorageVol, len: u64, mut read: impl std::io::Read) -> Result<()> {
    let name = vol.name().unwrap_or_default();
    if conn.uri().map(|u| u.starts_with("test:")).unwrap_or(false) {
        return Ok(());
    }
    let stream = Stream::new(conn, 0).map_err(err("opening an upload stream for", name.clone()))?;
    vol.upload(&stream, 0, len, 0)
        .map_err(err("uploading", name.clone()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = read
            .read(&mut buf)
            .map_err(|e| ProviderError::op("reading upload data for", name.clone(), e))?;
        if n == 0 {
            break;
        }
        let mut sent = 0;
        while sent < n {
            let k = stream
                .send(&buf[sent..n])
                .map_err(err("uploading", name.clone()))?;
            if k <= 0 {
                return Err(ProviderError::Invalid(format!("upload of {name} stalled")));
            }
            sent += k as usize;
        }
    }
    stream
        .finish()
        .map_err(err("finishing the upload of", name))
}

/// The base image's volume in the shared pool, uploading it if absent or
/// if an earlier upload never finished. Another process uploading the same
/// image at the same time is waited for (its completion mark appears).
fn ensure_base(
    conn: &Connect,
    vm: &VmSpec,
    images_path: &str,
    marks: &std::path::Path,
) -> Result<StorageVol> {
    let images = ensure_pool(conn, IMAGES_POOL, images_path)?;
    let base_name = format!(
        "{}-{}.qcow2",
        vm.base.name,
        &vm.base.sha256[..16.min(vm.base.sha256.len())]
    );
    let mark = marks.join(format!(
        "{}.done",
        xml::uuid_for(
            "volume",
            &format!("{}/{base_name}", conn.uri().unwrap_or_default())
        )
    ));
    if let Some(v) = lookup_vol(&images, &base_name)? {
        if mark.exists() {
            return Ok(v);
        }
        // An upload that never finished.
        let _ = v.delete(0);
    }
    let len = std::fs::metadata(&vm.base.path)
        .map_err(|e| ProviderError::op("reading", vm.base.path.display().to_string(), e))?
        .len();
    let v = match StorageVol::create_xml(
        &images,
        &xml::plain_volume_xml(&base_name, len, "qcow2"),
        0,
    ) {
        Ok(v) => v,
        Err(e)
            if matches!(
                e.code(),
                virt::enumutil::Enum::Known(ErrorNumber::StorageVolExist)
            ) =>
        {
            // Another process is uploading it: wait for its mark.
            let deadline = Instant::now() + Duration::from_secs(1800);
            while !mark.exists() {
                if Instant::now() > deadline {
                    return Err(ProviderError::op("waiting for the upload of", base_name, e));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            return lookup_vol(&images, &base_name)?
                .ok_or_else(|| ProviderError::Invalid(format!("volume {base_name} vanished")));
        }
        Err(e) => {
            return Err(ProviderError::op(
                "creating",
                format!("volume {base_name}"),
                e,
            ));
        }
    };
    let file = std::fs::File::open(&vm.base.path)
        .map_err(|e| ProviderError::op("reading", vm.base.path.display().to_string(), e))?;
    upload(conn, &v, len, std::io::BufReader::new(file))?;
    crate::fsutil::atomic_write(&mark, b"", crate::fsutil::Access::Normal)
        .map_err(|e| ProviderError::op("recording the upload of", base_name, e))?;
    Ok(v)
}

/// What a volume `volume` of the images pool is, as a golden disk.
fn golden_volume(v: &StorageVol, volume: String, images_path: &str) -> Result<GoldenVolume> {
    let info = v
        .info()
        .map_err(err("inspecting", format!("volume {volume}")))?;
    Ok(GoldenVolume {
        path: v
            .path()
            .map(PathBuf::from)
            .unwrap_or_else(|_| format!("{images_path}/{volume}").into()),
        name: volume,
        bytes: info.allocation,
        capacity_bytes: info.capacity,
    })
}

/// Copies the ISO file `iso` into volume `name` of `pool` (QEMU, another
/// user, must read it), unless a volume of the same size is there already
/// (a retried create).
fn upload_iso(conn: &Connect, pool: &StoragePool, name: &str, iso: &std::path::Path) -> Result<()> {
    let io = |e: std::io::Error| ProviderError::op("reading", iso.display().to_string(), e);
    let file = std::fs::File::open(iso).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let fresh = match lookup_vol(pool, name)? {
        Some(v) => v.info().map(|i| i.capacity != len).unwrap_or(true),
        None => true,
    };
    if fresh {
        delete_vol(pool, name)?;
        let v = StorageVol::create_xml(pool, &xml::plain_volume_xml(name, len, "raw"), 0)
            .map_err(err("creating", format!("volume {name}")))?;
        upload(conn, &v, len, std::io::BufReader::new(file))?;
    }
    Ok(())
}

fn delete_vol(pool: &StoragePool, name: &str) -> Result<()> {
    if let Some(v) = lookup_vol(pool, name)? {
        match v.delete(0) {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(ProviderError::op("deleting", format!("volume {name}"), e)),
        }
    }
    Ok(())
}

impl Libvirt {
    fn cluster_pool_path(&self, cluster: &str) -> String {
        format!("{}/{}", self.storage_root, xml::network_name(cluster))
    }

    fn images_pool_path(&self) -> String {
        format!("{}/{IMAGES_POOL}", self.storage_root)
    }
}

/// Picks kvm or qemu. `auto` uses KVM only when it really runs a guest on
/// this host (see [`kvm_works`]); the verdict is cached per boot.
async fn choose_domain_type(
    wanted: DomainType,
    uri: &str,
    cache_dir: &std::path::Path,
) -> (&'static str, Option<String>) {
    match wanted {
        DomainType::Kvm => ("kvm", None),
        DomainType::Qemu => (
            "qemu",
            Some("VMs run under software emulation ([libvirt] domain_type = \"qemu\"): expect minutes per boot".into()),
        ),
        DomainType::Auto => {
            if uri.starts_with("test:") {
                return ("qemu", None);
            }
            let cache = cache_dir.to_path_buf();
            let works = tokio::task::spawn_blocking(move || kvm_works_cached(&cache))
                .await
                .unwrap_or(false);
            if works {
                ("kvm", None)
            } else {
                (
                    "qemu",
                    Some("KVM does not run guests on this host (no /dev/kvm, or nested KVM that hangs): using software emulation, which is much slower; set [libvirt] domain_type to silence this".into()),
                )
            }
        }
    }
}

fn kvm_works_cached(cache_dir: &std::path::Path) -> bool {
    kvm_probe_cached(cache_dir).0.works()
}

/// The KVM probe's verdict, cached per boot in `cache_dir` (probing takes
/// up to 5 s where KVM hangs); the flag says whether it came from the
/// cache. `doctor` and `up` share the cache.
pub fn kvm_probe_cached(cache_dir: &std::path::Path) -> (KvmVerdict, bool) {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let path = cache_dir.join("kvm-probe.json");
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Verdict {
        boot_id: String,
        /// Verdicts of an older probe (the SeaBIOS banner, which said yes
        /// where kernels hang) are probed again.
        #[serde(default)]
        probe_version: u32,
        kvm_works: bool,
        /// Why not (absent in caches written before doctor existed: those
        /// are probed again).
        #[serde(default)]
        probe: Option<KvmVerdict>,
    }
    if let Ok(text) = std::fs::read(&path)
        && let Ok(v) = serde_json::from_slice::<Verdict>(&text)
        && v.boot_id == boot_id
        && v.probe_version == KVM_PROBE_VERSION
        && let Some(probe) = v.probe
    {
        return (probe, true);
    }
    let probe = kvm_probe();
    let v = Verdict {
        boot_id,
        probe_version: KVM_PROBE_VERSION,
        kvm_works: probe.works(),
        probe: Some(probe.clone()),
    };
    if let Ok(text) = serde_json::to_vec(&v) {
        let _ = crate::fsutil::atomic_write(&path, &text, crate::fsutil::Access::Normal);
    }
    (probe, false)
}

/// Which probe wrote a cached verdict (see [`kvm_probe`]).
const KVM_PROBE_VERSION: u32 = 2;

/// Unified UEFI firmware images (code and variables in one file, usable
/// with `-bios`), where distributions put them: Debian/Ubuntu's `ovmf`,
/// Arch's and openSUSE's.
const PROBE_FIRMWARE: &[&str] = &[
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/OVMF/OVMF.fd",
    "/usr/share/qemu/ovmf-x86_64.bin",
    "/usr/share/edk2/x64/OVMF.fd",
];

/// Whether KVM really runs a guest: boots QEMU with `-accel kvm`, no disk
/// and UEFI firmware, and waits (5 s at most) for the firmware's boot
/// manager to write `BdsDxe` to the serial port. That is after the
/// firmware ran in long mode with paging and the FPU, as a kernel does.
///
/// Why not a BIOS banner: on a host whose nested KVM hangs guests (one of
/// the machines devcluster is developed on), SeaBIOS still prints its
/// banner under KVM, from real mode, while OVMF stops at its first x87
/// instruction with "KVM internal error ... emulation failure", which is
/// where Linux and Windows guests hang too. Under software emulation
/// OVMF reaches `BdsDxe` in about 3 s; under KVM in well under one. With
/// no unified OVMF image on the host, the SeaBIOS banner is all there is
/// to wait for (5 s).
pub fn kvm_works() -> bool {
    kvm_probe().works()
}

/// [`kvm_works`], saying why not.
pub fn kvm_probe() -> KvmVerdict {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return KvmVerdict::NoDevice,
        Err(e) => return KvmVerdict::NoAccess(e.to_string()),
    }
    let Ok(dir) = tempfile::tempdir() else {
        return KvmVerdict::QemuFailed;
    };
    let log = dir.path().join("probe.log");
    let firmware = PROBE_FIRMWARE
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.is_file());
    let mut cmd = std::process::Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "kvm", "-machine", "q35", "-nodefaults"])
        .args(["-display", "none", "-no-reboot"]);
    let (wanted, wait) = match firmware {
        Some(fw) => {
            cmd.args(["-m", "256", "-bios"])
                .arg(fw)
                .arg("-serial")
                .arg(format!("file:{}", log.display()));
            ("BdsDxe", Duration::from_secs(5))
        }
        None => {
            cmd.args(["-m", "64", "-chardev"])
                .arg(format!("file,id=dbg,path={}", log.display()))
                .args(["-device", "isa-debugcon,iobase=0x402,chardev=dbg"]);
            ("SeaBIOS", Duration::from_secs(5))
        }
    };
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return KvmVerdict::NoQemu,
        Err(_) => return KvmVerdict::QemuFailed,
    };
    let deadline = Instant::now() + wait;
    let mut verdict = KvmVerdict::Hangs;
    while Instant::now() < deadline {
        if std::fs::read(&log)
            .map(|s| String::from_utf8_lossy(&s).contains(wanted))
            .unwrap_or(false)
        {
            verdict = KvmVerdict::Works;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            verdict = KvmVerdict::QemuFailed;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    verdict
}

#[async_trait]
impl Provider for Libvirt {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Libvirt
    }

    async fn prepare_create(&self) -> Result<Vec<String>> {
        if self.domain_type.get().is_some() {
            return Ok(Vec::new());
        }
        let (t, notice) =
            choose_domain_type(self.wanted_domain_type, &self.uri, &self.cache_dir).await;
        let _ = self.domain_type.set(t);
        Ok(notice.into_iter().collect())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            linked_clones: true,
            suspend_to_disk: true,
            snapshots: true,
            golden_disks: true,
            windows_builds: true,
        }
    }

    fn software_emulation(&self) -> bool {
        self.domain_type() != Some("kvm")
    }

    fn location(&self) -> String {
        self.uri.clone()
    }

    async fn ensure_network(&self, net: &NetworkSpec) -> Result<()> {
        let net = net.clone();
        self.blocking(move |conn| {
            let name = xml::network_name(&net.cluster);
            let network = match conn.lookup_network_by_name(&name) {
                Ok(n) => {
                    add_missing_hosts(&n, &net)?;
                    n
                }
                Err(e) if is_missing(&e) => conn
                    .define_network_xml(&xml::network_xml(&net))
                    .map_err(err("defining", format!("network {name}")))?,
                Err(e) => {
                    return Err(ProviderError::op(
                        "looking up",
                        format!("network {name}"),
                        e,
                    ));
                }
            };
            if !network.is_active().unwrap_or(false) {
                network
                    .create()
                    .map_err(err("starting", format!("network {name}")))?;
            }
            let _ = network.set_autostart(true);
            Ok(())
        })
        .await
    }

    async fn remove_network(&self, cluster: &str) -> Result<()> {
        let name = xml::network_name(cluster);
        self.blocking(move |conn| {
            let n = match conn.lookup_network_by_name(&name) {
                Ok(n) => n,
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => {
                    return Err(ProviderError::op(
                        "looking up",
                        format!("network {name}"),
                        e,
                    ));
                }
            };
            if n.is_active().unwrap_or(false) {
                n.destroy()
                    .map_err(err("stopping", format!("network {name}")))?;
            }
            match n.undefine() {
                Ok(()) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(ProviderError::op("deleting", format!("network {name}"), e)),
            }
        })
        .await
    }

    async fn create_node(&self, vm: &VmSpec) -> Result<()> {
        let vm = vm.clone();
        let images_path = self.images_pool_path();
        let pool_path = self.cluster_pool_path(&vm.cluster);
        let marks = self.upload_marks.clone();
        let base_upload = self.base_upload.clone();
        let domain_type = match self.domain_type.get() {
            Some(t) => *t,
            None => {
                self.prepare_create().await?;
                self.domain_type.get().copied().unwrap_or("qemu")
            }
        };
        self.blocking(move |conn| {
            if lookup_domain(conn, &vm.name)?.is_some() {
                return Ok(());
            }
            let pool_name = xml::network_name(&vm.cluster);
            let disk = xml::disk_volume(&vm.name);
            if let Some(iso) = &vm.install_iso {
                // A builder: a blank disk and a copy of the installation
                // media in the cluster's pool (QEMU, another user, must
                // read it; deleted with the VM).
                let pool = ensure_pool(conn, &pool_name, &pool_path)?;
                if lookup_vol(&pool, &disk)?.is_none() {
                    StorageVol::create_xml(&pool, &xml::blank_volume_xml(&disk, vm.disk_gib), 0)
                        .map_err(err("creating", format!("disk {disk}")))?;
                }
                upload_iso(conn, &pool, &xml::install_volume(&vm.name), iso)?;
                if let Some(drivers) = &vm.drivers_iso {
                    upload_iso(conn, &pool, &xml::drivers_volume(&vm.name), drivers)?;
                }
            } else {
                // The base image, uploaded once per content hash, or the golden
                // disk kept in the same pool.
                let base = match &vm.golden {
                    Some(golden) => {
                        let images = ensure_pool(conn, IMAGES_POOL, &images_path)?;
                        lookup_vol(&images, golden)?.ok_or_else(|| {
                            ProviderError::Invalid(format!(
                                "golden disk {golden} is not in the storage pool {IMAGES_POOL}"
                            ))
                        })?
                    }
                    None => {
                        let _one_at_a_time = base_upload.lock().unwrap_or_else(|e| e.into_inner());
                        ensure_base(conn, &vm, &images_path, &marks)?
                    }
                };
                let base_name = base.name().unwrap_or_default();
                let base_path = base
                    .path()
                    .map_err(err("locating", format!("volume {base_name}")))?;
                let base_capacity = base.info().map(|i| i.capacity).unwrap_or(0);
                if base_capacity > u64::from(vm.disk_gib) << 30 {
                    return Err(ProviderError::Invalid(format!(
                        "VM {}: disk of {} GiB is smaller than its image {} ({} GiB)",
                        vm.name,
                        vm.disk_gib,
                        vm.base.name,
                        base_capacity.div_ceil(1 << 30)
                    )));
                }

                let pool = ensure_pool(conn, &pool_name, &pool_path)?;
                if lookup_vol(&pool, &disk)?.is_none() {
                    StorageVol::create_xml(
                        &pool,
                        &xml::overlay_volume_xml(&disk, vm.disk_gib, &base_path),
                        0,
                    )
                    .map_err(err("creating", format!("disk {disk}")))?;
                }
            }
            let pool = ensure_pool(conn, &pool_name, &pool_path)?;
            let seed = xml::seed_volume(&vm.name);
            delete_vol(&pool, &seed)?;
            let len = vm.seed_iso.len() as u64;
            let v = StorageVol::create_xml(&pool, &xml::plain_volume_xml(&seed, len, "raw"), 0)
                .map_err(err("creating", format!("seed {seed}")))?;
            upload(conn, &v, len, vm.seed_iso.as_slice())?;

            if let Some(dir) = vm.serial_log.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let host = DomainHost {
                domain_type,
                pool: pool_name,
            };
            conn.define_domain_xml(&xml::domain_xml(&vm, &host))
                .map_err(err("defining", format!("VM {}", vm.name)))?;
            Ok(())
        })
        .await
    }

    async fn start(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |conn| {
            let d = existing_domain(conn, &name)?;
            match domain_state(&d, &name)? {
                VmState::Running => Ok(()),
                VmState::Paused => unpause(&d, &name),
                _ => d
                    .create()
                    .map(|_| ())
                    .map_err(err("starting", format!("VM {name}"))),
            }
        })
        .await
    }

    async fn press_key(&self, name: &str) -> Result<()> {
        // Linux input keycodes (libvirt's VIR_KEYCODE_SET_LINUX = 0);
        // KEY_SPACE is 57. A hold time of 0 is libvirt's default.
        const KEYCODE_SET_LINUX: u32 = 0;
        const KEY_SPACE: u32 = 57;
        let name = name.to_string();
        self.blocking(move |conn| {
            let d = existing_domain(conn, &name)?;
            let mut keys = [KEY_SPACE];
            d.send_key(KEYCODE_SET_LINUX, 0, keys.as_mut_ptr(), 1, 0)
                .map_err(err("pressing a key in", format!("VM {name}")))
        })
        .await
    }

    async fn shutdown(&self, name: &str, timeout: Duration) -> Result<Shutdown> {
        let name = name.to_string();
        self.blocking(move |conn| {
            let Some(d) = lookup_domain(conn, &name)? else {
                return Ok(Shutdown::AlreadyOff);
            };
            match domain_state(&d, &name)? {
                VmState::Off | VmState::Saved | VmState::Absent => return Ok(Shutdown::AlreadyOff),
                VmState::Paused => {
                    let _ = d.resume();
                }
                _ => {}
            }
            match d.shutdown() {
                Ok(()) => {}
                Err(e) if is_invalid_op(&e) => return Ok(Shutdown::AlreadyOff),
                Err(e) => return Err(ProviderError::op("shutting down", format!("VM {name}"), e)),
            }
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if !d.is_active().unwrap_or(false) {
                    return Ok(Shutdown::Graceful);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            match d.destroy() {
                Ok(()) => Ok(Shutdown::Forced),
                Err(e) if is_invalid_op(&e) => Ok(Shutdown::Graceful),
                Err(e) => Err(ProviderError::op("powering off", format!("VM {name}"), e)),
            }
        })
        .await
    }

    async fn suspend(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |conn| {
            let d = existing_domain(conn, &name)?;
            match domain_state(&d, &name)? {
                VmState::Running | VmState::Paused => d
                    .managed_save(0)
                    .map_err(err("suspending", format!("VM {name}"))),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn resume(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |conn| {
            let d = existing_domain(conn, &name)?;
            match domain_state(&d, &name)? {
                VmState::Running => Ok(()),
                VmState::Paused => unpause(&d, &name),
                VmState::Saved => d
                    .create()
                    .map(|_| ())
                    .map_err(err("restoring", format!("VM {name}"))),
                state => Err(ProviderError::Invalid(format!(
                    "VM {name} is {state}, not suspended"
                ))),
            }
        })
        .await
    }

    async fn state(&self, name: &str) -> Result<VmState> {
        let name = name.to_string();
        self.blocking(move |conn| match lookup_domain(conn, &name)? {
            None => Ok(VmState::Absent),
            Some(d) => domain_state(&d, &name),
        })
        .await
    }

    async fn delete_node(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |conn| {
            let mut cluster_pool = None;
            if let Some(d) = lookup_domain(conn, &name)? {
                cluster_pool = domain_cluster(&d).map(|c| xml::network_name(&c));
                if d.is_active().unwrap_or(false) {
                    match d.destroy() {
                        Ok(()) => {}
                        Err(e) if is_invalid_op(&e) || is_missing(&e) => {}
                        Err(e) => {
                            return Err(ProviderError::op("powering off", format!("VM {name}"), e));
                        }
                    }
                }
                // With its firmware variables, saved memory and snapshot
                // metadata; drivers that refuse a flag (the test driver has
                // no NVRAM) are asked again with fewer.
                let all = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | sys::VIR_DOMAIN_UNDEFINE_NVRAM;
                let mut result = d.undefine_flags(all);
                for flags in [
                    sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                        | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
                    0,
                ] {
                    match &result {
                        Err(e) if is_unsupported(e) => result = d.undefine_flags(flags),
                        _ => break,
                    }
                }
                match result {
                    Ok(()) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(ProviderError::op("deleting", format!("VM {name}"), e)),
                }
            }
            let pool_name = match cluster_pool {
                Some(p) => p,
                // Node names are CLUSTER-ROLE: the cluster is before the last '-'.
                None => match name.rsplit_once('-') {
                    Some((cluster, _)) => xml::network_name(cluster),
                    None => return Ok(()),
                },
            };
            if let Ok(pool) = conn.lookup_storage_pool_by_name(&pool_name) {
                delete_vol(&pool, &xml::disk_volume(&name))?;
                delete_vol(&pool, &xml::seed_volume(&name))?;
                delete_vol(&pool, &xml::install_volume(&name))?;
                delete_vol(&pool, &xml::drivers_volume(&name))?;
            }
            Ok(())
        })
        .await
    }

    async fn begin_golden(&self, node: &str, id: &str) -> Result<String> {
        let node = node.to_string();
        let images_path = self.images_pool_path();
        let volume = format!("golden-{id}-{}.qcow2", crate::state::now_ms());
        self.blocking(move |conn| {
            let d = existing_domain(conn, &node)?;
            if domain_cluster(&d).is_none() {
                return Err(ProviderError::Invalid(format!(
                    "VM {node} is not a devcluster node"
                )));
            }
            let disk = xml::disk_volume(&node);
            let live = d
                .xml_desc(0)
                .map_err(err("reading the definition of", format!("VM {node}")))?;
            let dev = xml::disk_target(&live, &disk)
                .ok_or_else(|| ProviderError::Invalid(format!("VM {node} has no disk {disk}")))?;
            ensure_pool(conn, IMAGES_POOL, &images_path)?;
            let file = format!("{images_path}/{volume}");
            backup_begin(&d, &xml::backup_xml(&dev, &file))
                .map_err(err("copying", format!("the disk of VM {node}")))?;
            Ok(volume)
        })
        .await
    }

    async fn finish_golden(&self, node: &str, volume: &str) -> Result<GoldenVolume> {
        let node = node.to_string();
        let volume = volume.to_string();
        let images_path = self.images_pool_path();
        self.blocking(move |conn| {
            let d = existing_domain(conn, &node)?;
            let outcome = wait_for_job(&d);
            let images = ensure_pool(conn, IMAGES_POOL, &images_path)?;
            let _ = images.refresh(0);
            let v = match (outcome, lookup_vol(&images, &volume)?) {
                (Ok(JobEnd::Completed), Some(v)) => v,
                (outcome, v) => {
                    if let Some(v) = v {
                        let _ = v.delete(0);
                    }
                    let why = match outcome {
                        Ok(JobEnd::Completed) => "left no volume".to_string(),
                        Ok(JobEnd::Other(t)) => format!("ended as libvirt job type {t}"),
                        Err(e) => format!("could not be followed: {e}"),
                    };
                    return Err(ProviderError::Invalid(format!(
                        "the copy of VM {node}'s disk {why}"
                    )));
                }
            };
            golden_volume(&v, volume, &images_path)
        })
        .await
    }

    async fn keep_disk(&self, node: &str, id: &str) -> Result<GoldenVolume> {
        let node = node.to_string();
        let images_path = self.images_pool_path();
        let volume = format!("winbase-{id}-{}.qcow2", crate::state::now_ms());
        self.blocking(move |conn| {
            let d = existing_domain(conn, &node)?;
            if domain_state(&d, &node)? != VmState::Off {
                return Err(ProviderError::Invalid(format!(
                    "VM {node} is not off: its disk is still being written"
                )));
            }
            let cluster = domain_cluster(&d).ok_or_else(|| {
                ProviderError::Invalid(format!("VM {node} is not a devcluster node"))
            })?;
            let pool = conn
                .lookup_storage_pool_by_name(&xml::network_name(&cluster))
                .map_err(err("looking up", format!("the storage of VM {node}")))?;
            let disk = xml::disk_volume(&node);
            let src = lookup_vol(&pool, &disk)?
                .ok_or_else(|| ProviderError::Invalid(format!("VM {node} has no disk {disk}")))?;
            let capacity = src
                .info()
                .map_err(err("inspecting", format!("disk {disk}")))?
                .capacity;
            let images = ensure_pool(conn, IMAGES_POOL, &images_path)?;
            // A full copy (not a rename): the builder and its pool are
            // deleted afterwards, the copy stays in the shared pool.
            let v = StorageVol::create_xml_from(
                &images,
                &xml::plain_volume_xml(&volume, capacity, "qcow2"),
                &src,
                0,
            )
            .map_err(err("copying", format!("the disk of VM {node}")))?;
            golden_volume(&v, volume, &images_path)
        })
        .await
    }

    async fn remove_golden(&self, volume: &str) -> Result<()> {
        let volume = volume.to_string();
        self.blocking(
            move |conn| match conn.lookup_storage_pool_by_name(IMAGES_POOL) {
                Ok(pool) => {
                    let _ = pool.refresh(0);
                    delete_vol(&pool, &volume)
                }
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(ProviderError::op(
                    "looking up",
                    format!("storage pool {IMAGES_POOL}"),
                    e,
                )),
            },
        )
        .await
    }

    async fn cluster_vms(&self, cluster: &str) -> Result<Vec<String>> {
        let cluster = cluster.to_string();
        self.blocking(move |conn| {
            let domains = conn.list_all_domains(0).map_err(err("listing", "VMs"))?;
            let mut names: Vec<String> = domains
                .iter()
                .filter(|d| domain_cluster(d).as_deref() == Some(cluster.as_str()))
                .filter_map(|d| d.name().ok())
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn remove_storage(&self, cluster: &str) -> Result<()> {
        let name = xml::network_name(cluster);
        let path = self.cluster_pool_path(cluster);
        self.blocking(move |conn| {
            let pool = match conn.lookup_storage_pool_by_name(&name) {
                Ok(p) => p,
                // No pool, but maybe its directory with disks of a cluster
                // whose pool was removed by hand: take it up again to empty
                // it, or a new cluster of that name would find old disks.
                Err(e) if is_missing(&e) => {
                    if !std::path::Path::new(&path).exists() || !path.starts_with('/') {
                        return Ok(());
                    }
                    ensure_pool(conn, &name, &path)?
                }
                Err(e) => {
                    return Err(ProviderError::op(
                        "looking up",
                        format!("storage pool {name}"),
                        e,
                    ));
                }
            };
            if !pool.is_active().unwrap_or(false) {
                let _ = pool.create(0);
            }
            let _ = pool.refresh(0);
            for vol in pool.list_volumes().unwrap_or_default() {
                delete_vol(&pool, &vol)?;
            }
            if pool.is_active().unwrap_or(false) {
                pool.destroy()
                    .map_err(err("stopping", format!("storage pool {name}")))?;
            }
            // Removes the (now empty) directory.
            let _ = pool.delete(0);
            match pool.undefine() {
                Ok(()) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(ProviderError::op(
                    "deleting",
                    format!("storage pool {name}"),
                    e,
                )),
            }
        })
        .await
    }
}

// The `virt` crate has no binding for backups or job statistics: these
// call libvirt's C API through `virt::sys`, on a domain the crate owns.

/// Starts a push-mode backup (`virDomainBackupBegin`, libvirt >= 6.0):
/// QEMU fixes the point in time when it returns and copies in the
/// background.
#[allow(unsafe_code)]
fn backup_begin(d: &Domain, backup_xml: &str) -> Result<(), virt::error::Error> {
    let Ok(xml) = std::ffi::CString::new(backup_xml) else {
        return Err(virt::error::Error::last_error());
    };
    // SAFETY: the domain pointer is valid for the life of `d`; the XML is a
    // NUL-terminated string that outlives the call; no checkpoint (null).
    let rc = unsafe { sys::virDomainBackupBegin(d.as_ptr(), xml.as_ptr(), std::ptr::null(), 0) };
    if rc < 0 {
        return Err(virt::error::Error::last_error());
    }
    Ok(())
}

enum JobEnd {
    Completed,
    /// Failed, cancelled, or no record of it: the libvirt job type.
    Other(i32),
}

/// Polls the domain's job until none runs, then reads how the last one
/// ended (`virDomainGetJobStats` with `VIR_DOMAIN_JOB_STATS_COMPLETED`).
#[allow(unsafe_code)]
fn wait_for_job(d: &Domain) -> Result<JobEnd, virt::error::Error> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        // SAFETY: `info` is a plain C struct libvirt fills; the domain
        // pointer is valid for the life of `d`.
        let mut info: sys::virDomainJobInfo = unsafe { std::mem::zeroed() };
        let rc = unsafe { sys::virDomainGetJobInfo(d.as_ptr(), &mut info) };
        if rc < 0 {
            return Err(virt::error::Error::last_error());
        }
        if info.type_ == sys::VIR_DOMAIN_JOB_NONE as i32 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut kind: std::os::raw::c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut nparams: std::os::raw::c_int = 0;
    // SAFETY: out-pointers to locals; libvirt allocates `params`, freed
    // below with its own function.
    let rc = unsafe {
        sys::virDomainGetJobStats(
            d.as_ptr(),
            &mut kind,
            &mut params,
            &mut nparams,
            sys::VIR_DOMAIN_JOB_STATS_COMPLETED,
        )
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error());
    }
    if !params.is_null() {
        // SAFETY: allocated by libvirt above, freed once.
        unsafe { sys::virTypedParamsFree(params, nparams) };
    }
    Ok(if kind == sys::VIR_DOMAIN_JOB_COMPLETED as i32 {
        JobEnd::Completed
    } else {
        JobEnd::Other(kind)
    })
}

/// The cluster a domain belongs to, from our metadata.
fn domain_cluster(d: &Domain) -> Option<String> {
    let meta = d
        .metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            Some(xml::METADATA_NS),
            0,
        )
        .ok()?;
    attr(&meta, "cluster")
}

/// The value of attribute `name` in a small XML element (either quote).
fn attr(xml: &str, name: &str) -> Option<String> {
    for q in ['"', '\''] {
        let key = format!(" {name}={q}");
        if let Some(start) = xml.find(&key) {
            let rest = &xml[start + key.len()..];
            let end = rest.find(q)?;
            return Some(rest[..end].to_string());
        }
    }
    None
}

/// Adds DHCP and DNS host entries the running network lacks (a node added
/// to the cluster later), live and persistently.
fn add_missing_hosts(n: &Network, net: &NetworkSpec) -> Result<()> {
    let current = n
        .xml_desc(sys::VIR_NETWORK_XML_INACTIVE)
        .or_else(|_| n.xml_desc(0))
        .map_err(err(
            "reading",
            format!("network {}", xml::network_name(&net.cluster)),
        ))?
        .to_ascii_lowercase();
    let flags = sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG
        | if n.is_active().unwrap_or(false) {
            sys::VIR_NETWORK_UPDATE_AFFECT_LIVE
        } else {
            0
        };
    for h in &net.hosts {
        if current.contains(&h.mac.to_ascii_lowercase()) {
            continue;
        }
        let dhcp = format!(
            "<host mac='{}' name='{}' ip='{}'/>",
            xml::esc(&h.mac),
            xml::esc(&h.name),
            h.ip
        );
        n.update(
            sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
            sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
            -1,
            &dhcp,
            flags,
        )
        .map_err(err(
            "adding a DHCP host to",
            format!("network for {}", h.name),
        ))?;
        let dns = format!(
            "<host ip='{}'><hostname>{}</hostname></host>",
            h.ip,
            xml::esc(&h.name)
        );
        let _ = n.update(
            sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
            sys::VIR_NETWORK_SECTION_DNS_HOST,
            -1,
            &dns,
            flags,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::attr;

    #[test]
    fn metadata_attr() {
        assert_eq!(
            attr(
                "<devcluster:node xmlns:devcluster=\"x\" cluster=\"dev\" role=\"worker\"/>",
                "cluster"
            )
            .as_deref(),
            Some("dev")
        );
        assert_eq!(
            attr("<n cluster='a-b'/>", "cluster").as_deref(),
            Some("a-b")
        );
        assert_eq!(attr("<n/>", "cluster"), None);
    }
}
