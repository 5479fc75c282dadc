//! `devcluster images build` on the real libvirtd, with a stand-in
//! installation ISO built here (no Windows runs on these machines, and no
//! KVM: the builder runs under software emulation). Proven here: the ISO
//! comes through the catalog and cache (a user catalog entry with a
//! file:// URL and its sha256, the licence gate on); the builder domain is
//! created and started; a builder that makes no progress ends in the stall
//! error naming the VM and `virsh vncdisplay`; a retry deletes the old
//! builder first; when the builder is off the disk is kept as the base
//! disk (recorded, listed by `images list`) and the builder, its CDs, pool
//! and network are gone. Standing in for sysprep's power-off: the test
//! powers the builder off with `virsh destroy`. Not proven here: Windows
//! Setup, the build scripts inside Windows, sysprep itself.
//! Needs libvirtd at qemu:///system; run under `flock /tmp/devcluster-vm.lock`.

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]

mod common;

use std::time::Duration;

use common::vms::virsh_status as virsh;
use devcluster::images::{self, Fetch, winbase};
use devcluster::providers::ProviderConfig;
use devcluster::providers::libvirt::Libvirt;
use devcluster::spec::{DomainType, ProviderKind, WindowsDevices};
use devcluster::winbuild::{self, Bounds, BuildError, Place, Request};

const URI: &str = "qemu:///system";
const VM: &str = "ib-build-win";
const CLUSTER: &str = "ib1";

/// One build at a time (each runs a builder under TCG).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cleanup {
    vm: &'static str,
    cluster: &'static str,
    volume: std::sync::Mutex<Option<String>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        virsh(&["destroy", self.vm]);
        virsh(&["undefine", self.vm, "--nvram", "--managed-save"]);
        let pool = format!("devcluster-{}", self.cluster);
        virsh(&["pool-destroy", &pool]);
        virsh(&["pool-undefine", &pool]);
        let _ = std::fs::remove_dir_all(format!("/var/lib/libvirt/images/{pool}"));
        virsh(&["net-destroy", &pool]);
        virsh(&["net-undefine", &pool]);
        if let Some(v) = self.volume.lock().unwrap().take() {
            virsh(&["vol-delete", &v, "--pool", "devcluster-images"]);
        }
    }
}

/// Keeps the notes, for the key-press check.
#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>);
impl winbuild::BuildProgress for Notes {
    fn note(&self, m: &str) {
        self.0.lock().unwrap().push(m.to_string());
    }
    fn phase(&self, _: &str, _: Duration, _: Duration) {}
}

struct Quiet;
impl winbuild::BuildProgress for Quiet {
    fn note(&self, _: &str) {}
    fn phase(&self, _: &str, _: Duration, _: Duration) {}
}

fn request(stall: Duration) -> Request {
    Request {
        image: "windows-server-2025".into(),
        place: Place {
            vm: VM.into(),
            cluster: CLUSTER.into(),
            subnet: "192.168.243.0/24".parse().unwrap(),
        },
        bounds: Bounds {
            stall,
            overall: Duration::from_secs(600),
            boot_keys: Duration::from_secs(8),
        },
        poll: Duration::from_millis(500),
        typical: winbuild::TYPICAL_SOFTWARE,
        devices: Default::default(),
    }
}

/// The real libvirtd, under software emulation (as on this machine).
async fn open(dirs: &devcluster::dirs::Dirs) -> Libvirt {
    Libvirt::open(&ProviderConfig {
        libvirt_uri: URI.into(),
        libvirt_domain_type: DomainType::Qemu,
        cache_dir: dirs.cache.clone(),
    })
    .await
    .expect("libvirtd at qemu:///system")
}

#[tokio::test(flavor = "multi_thread")]
async fn build_stalls_retries_clean_and_keeps_the_disk() {
    let _one = SERIAL.lock().await;
    let world = common::World::new();
    let dirs = &world.dirs;
    let cleanup = Cleanup {
        vm: VM,
        cluster: CLUSTER,
        volume: std::sync::Mutex::new(None),
    };
    // A stand-in ISO, served as the user's own copy of the evaluation ISO
    // (a user entry replaces the built-in one: the air-gapped case).
    let iso = world.path("standin.iso");
    let sha = common::stand_in_windows_iso(dirs, &iso);
    let p = open(dirs).await;
    let dl = images::download::NoProgress;

    // The licence gate is the cache's, as for `images pull`.
    let r = winbuild::build(
        dirs,
        &p,
        &request(Duration::from_secs(5)),
        &Fetch::new(&dl),
        &Quiet,
    )
    .await;
    assert!(matches!(r, Err(BuildError::Image(_))), "{r:?}");
    assert!(
        !virsh(&["dominfo", VM]).0,
        "nothing made before the licence"
    );

    // 1. The stand-in boots nothing, so no phase ever comes: a stall.
    let fetch = Fetch::new(&dl).accept_license(true);
    let notes = Notes::default();
    let r = winbuild::build(dirs, &p, &request(Duration::from_secs(20)), &fetch, &notes).await;
    let e = r.expect_err("a builder that makes no progress stalls");
    // Real libvirt pressed the key of the ISO's "Press any key to boot
    // from CD" prompt in the running builder, once per poll during
    // the 8 s window, and then stopped.
    let notes = notes.0.into_inner().unwrap();
    let pressed = notes
        .iter()
        .find_map(|n| {
            n.strip_prefix("pressed a key ")?
                .split_once(" times for the ISO's \"Press any key to boot from CD\" prompt")
                .map(|(n, _)| n.parse::<u32>().unwrap())
        })
        .unwrap_or_else(|| panic!("no key-press note: {notes:?}"));
    // (The test polls every 0.5 s, so up to 16; 20 s of pressing would
    // be about 40.)
    assert!((3..=17).contains(&pressed), "{pressed} presses: {notes:?}");
    assert!(
        !notes.iter().any(|n| n.starts_with("cannot press")),
        "{notes:?}"
    );
    assert!(matches!(e, BuildError::Stalled { .. }), "{e:?}");
    assert!(e.to_string().contains(VM), "{e}");
    let hint = e.hint().unwrap();
    assert!(
        hint.contains(&format!("virsh -c {URI} vncdisplay {VM}")),
        "{hint}"
    );
    assert!(hint.contains(".serial.log"), "{hint}");
    // Left running for inspection, with its console where the hint says.
    assert_eq!(virsh(&["domstate", VM]).1.lines().next(), Some("running"));
    let (ok, display) = virsh(&["vncdisplay", VM]);
    assert!(ok && display.starts_with("127.0.0.1:"), "{display}");
    let old_id = virsh(&["domid", VM]).1;

    // 2. A retry starts clean: the old builder is deleted first (a new
    // domain, a new id), then, standing in for sysprep's power-off, the
    // test powers the new builder off; the build keeps its disk.
    let req = request(Duration::from_secs(300));
    let build = winbuild::build(dirs, &p, &req, &fetch, &Quiet);
    let power_off = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (running, id) = virsh(&["domid", VM]);
            if running && id != old_id && id != "-" {
                // Once the build is past starting it (sysprep powers off
                // minutes into Windows, never during the start call).
                tokio::time::sleep(Duration::from_secs(3)).await;
                assert_eq!(virsh(&["domid", VM]).1, id, "the same builder runs");
                assert!(virsh(&["destroy", VM]).0);
                return id;
            }
        }
    };
    let (disk, new_id) = tokio::join!(build, power_off);
    let disk = disk.expect("the build keeps the disk of a builder that is off");
    assert_ne!(new_id, old_id);
    let volume = disk.volume.clone().expect("kept in the images pool");
    *cleanup.volume.lock().unwrap() = Some(volume.name.clone());
    assert!(
        std::path::Path::new(&volume.path).exists()
            || virsh(&["vol-info", &volume.name, "--pool", "devcluster-images"]).0
    );

    // Recorded as the base disk `up` uses, listed by `images list`.
    let (_, image) = winbuild::windows_image(dirs, "windows-server-2025").unwrap();
    let found = winbase::lookup(
        dirs,
        &image,
        &sha,
        ProviderKind::Libvirt,
        Default::default(),
    )
    .expect("recorded");
    assert_eq!(found.key, disk.key);
    let out = world
        .devcluster()
        .args(["images", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains(&disk.key.id()), "{list}");
    assert!(list.contains(winbase::KIND), "{list}");

    // The builder, its CDs, pool and network are gone.
    assert!(!virsh(&["dominfo", VM]).0, "builder VM left");
    let (pool_there, _) = virsh(&["pool-info", &format!("devcluster-{CLUSTER}")]);
    assert!(!pool_there, "builder pool left");
    let (net_there, _) = virsh(&["net-info", &format!("devcluster-{CLUSTER}")]);
    assert!(!net_there, "builder network left");
    let images_vols = virsh(&["vol-list", "devcluster-images"]).1;
    assert!(!images_vols.contains(&format!("{VM}-")), "{images_vols}");

    // A second build finds it and builds nothing.
    let again = winbuild::build(dirs, &p, &req, &fetch, &Quiet)
        .await
        .unwrap();
    assert_eq!(again.key, disk.key);
    assert!(!virsh(&["dominfo", VM]).0);
}

/// The virtio opt-in through a whole build on the real libvirtd: the
/// virtio-win ISO comes through the catalog and cache (a user `virtio-win`
/// entry with a file:// stand-in, as an air-gapped user would give it);
/// the running builder has a virtio disk and NIC and the drivers as its
/// third CD-ROM; the kept disk is recorded under the virtio key, which the
/// emulated key does not find; the builder's volumes, the drivers copy
/// among them, are gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_virtio_build_takes_the_drivers_cd_and_keeps_a_virtio_base() {
    const VM2: &str = "ib-build-wv";
    const CLUSTER2: &str = "ib2";
    let _one = SERIAL.lock().await;
    let world = common::World::new();
    let dirs = &world.dirs;
    let cleanup = Cleanup {
        vm: VM2,
        cluster: CLUSTER2,
        volume: std::sync::Mutex::new(None),
    };
    let iso = world.path("standin.iso");
    let sha = common::stand_in_windows_iso(dirs, &iso);
    let drivers = world.path("standin-virtio-win.iso");
    devcluster::seed::iso::write(
        &drivers,
        "VIRTIO_WIN",
        &[("virtio-win-guest-tools.exe", b"stand-in".as_slice())],
    )
    .unwrap();
    let drivers_sha = images::sha256_file(&drivers).unwrap();
    std::fs::write(
        dirs.config.join("images").join("virtio-win.toml"),
        format!(
            "name = \"virtio-win\"\nos = \"windows\"\nfirmware = \"uefi\"\ndefault_user = \"Administrator\"\n\n[[artifacts]]\nproviders = [\"libvirt\"]\nurl = \"file://{}\"\nsha256 = \"{drivers_sha}\"\nformat = \"raw\"\n",
            drivers.display()
        ),
    )
    .unwrap();
    let p = open(dirs).await;
    let dl = images::download::NoProgress;
    let fetch = Fetch::new(&dl).accept_license(true);
    let mut req = request(Duration::from_secs(300));
    req.place = Place {
        vm: VM2.into(),
        cluster: CLUSTER2.into(),
        subnet: "192.168.245.0/24".parse().unwrap(),
    };
    req.devices = WindowsDevices::Virtio;
    let build = winbuild::build(dirs, &p, &req, &fetch, &Quiet);
    let power_off = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (running, id) = virsh(&["domid", VM2]);
            if running && id != "-" {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let (ok, xml) = virsh(&["dumpxml", VM2]);
                assert!(ok, "{xml}");
                assert!(virsh(&["destroy", VM2]).0);
                return xml;
            }
        }
    };
    let (disk, xml) = tokio::join!(build, power_off);
    let disk = disk.expect("the virtio build keeps the disk");
    *cleanup.volume.lock().unwrap() = disk.volume.as_ref().map(|v| v.name.clone());
    assert!(xml.contains("<target dev='vda' bus='virtio'/>"), "{xml}");
    assert!(xml.contains("<model type='virtio'/>"), "{xml}");
    assert!(xml.contains(&format!("{VM2}-drivers.iso")), "{xml}");
    assert!(xml.contains("<target dev='sdd' bus='sata'/>"), "{xml}");
    let (_, image) = winbuild::windows_image(dirs, "windows-server-2025").unwrap();
    assert_eq!(
        disk.key,
        winbase::key(&image, &sha, ProviderKind::Libvirt, WindowsDevices::Virtio)
    );
    assert!(
        winbase::lookup(
            dirs,
            &image,
            &sha,
            ProviderKind::Libvirt,
            WindowsDevices::Emulated
        )
        .is_none(),
        "a virtio base is not an emulated one"
    );
    assert!(!virsh(&["dominfo", VM2]).0, "builder VM left");
    let (pool_there, _) = virsh(&["pool-info", &format!("devcluster-{CLUSTER2}")]);
    assert!(!pool_there, "builder pool (and its drivers copy) left");
}
