//! Windows domains on the real libvirtd, with stand-in media built here (no
//! Windows runs on these machines): the builder VM (blank disk, build seed
//! CD, installation CD) and a node (linked clone of a stand-in base disk
//! plus its seed CD) are defined and started; the live domains are read
//! back for what Windows needs; then deleting them leaves no domain,
//! volume, NVRAM or seed. Needs libvirtd at qemu:///system; run under
//! `flock /tmp/devcluster-vm.lock` (scripts/test.sh).

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]
#![allow(clippy::print_stderr)] // the disk figure, shown with --nocapture

mod common;

use std::path::Path;
use std::process::Command;

use common::vms::virsh_status as virsh;
use devcluster::plan::{self, Os, Plan, Surroundings};
use devcluster::providers::libvirt::Libvirt;
use devcluster::providers::{
    BaseImage, Firmware, NetworkSpec, Provider, ProviderConfig, VmSpec, VmState,
};
use devcluster::seed::windows;
use devcluster::spec::{DomainType, Layer, NetworkMode, Origin, Val, WindowsDevices};

/// One test at a time: each runs two domains (the most this machine runs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const URI: &str = "qemu:///system";
const POOL_ROOT: &str = "/var/lib/libvirt/images";

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn plan_for(cluster: &str, cidr: &str, devices: WindowsDevices) -> Plan {
    let layer = Layer {
        libvirt_windows_devices: Some(Val::new(devices, Origin::Default)),
        workers: Some(Val::new(0, Origin::Default)),
        windows_workers: Some(Val::new(1, Origin::Default)),
        node_cidr: Some(Val::new(cidr.into(), Origin::Default)),
        libvirt_network_mode: Some(Val::new(NetworkMode::Isolated, Origin::Default)),
        ..Layer::default()
    };
    let spec = devcluster::spec::resolve(Val::new(cluster.into(), Origin::Default), layer).unwrap();
    plan::plan(&spec, &Surroundings::default()).unwrap()
}

/// Removes what the test made even when it fails halfway.
struct Cleanup {
    cluster: &'static str,
    vms: Vec<String>,
    images_volume: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for vm in &self.vms {
            virsh(&["destroy", vm]);
            virsh(&["undefine", vm, "--nvram", "--managed-save"]);
        }
        let pool = format!("devcluster-{}", self.cluster);
        virsh(&["pool-destroy", &pool]);
        virsh(&["pool-undefine", &pool]);
        let _ = std::fs::remove_dir_all(format!("{POOL_ROOT}/{pool}"));
        virsh(&["net-destroy", &pool]);
        virsh(&["net-undefine", &pool]);
        if let Some(v) = &self.images_volume {
            virsh(&["vol-delete", v, "--pool", "devcluster-images"]);
        }
    }
}

async fn provider() -> Libvirt {
    let world_cache = std::env::temp_dir().join(format!("wi-cache-{}", std::process::id()));
    std::fs::create_dir_all(&world_cache).unwrap();
    Libvirt::open(&ProviderConfig {
        libvirt_uri: URI.into(),
        libvirt_domain_type: DomainType::Qemu,
        cache_dir: world_cache,
    })
    .await
    .expect("libvirtd at qemu:///system (scripts/setup-test-host.sh starts it)")
}

fn live_xml(name: &str) -> roxmltree::Document<'static> {
    let (ok, xml) = virsh(&["dumpxml", name]);
    assert!(ok, "{xml}");
    roxmltree::Document::parse(Box::leak(xml.into_boxed_str())).unwrap()
}

fn elements<'a>(doc: &'a roxmltree::Document<'a>, name: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == name)
        .collect()
}

fn child<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> Option<roxmltree::Node<'a, 'a>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// What Windows needs from its domain, read back from the running domain:
/// UEFI with Secure Boot and Microsoft's keys (Debian's *.ms.fd pair, a
/// per-VM NVRAM copied from the template), SMM, a SATA disk and
/// `cdroms` SATA CD-ROMs, an e1000e NIC with the planned MAC (with virtio
/// devices: a virtio-blk disk and a virtio-net NIC), the Hyper-V
/// enlightenments, an RTC in local time, a VNC console on loopback.
/// Returns the NVRAM path.
fn check_windows_domain(name: &str, mac: &str, cdroms: &[&str], devices: WindowsDevices) -> String {
    let doc = live_xml(name);
    let loader = elements(&doc, "loader")[0];
    assert_eq!(
        loader.attribute("secure"),
        Some("yes"),
        "{name}: Secure Boot"
    );
    assert!(
        loader.text().unwrap_or_default().ends_with(".ms.fd"),
        "{name}: firmware with Microsoft's keys, got {:?}",
        loader.text()
    );
    let nvram = elements(&doc, "nvram")[0];
    assert!(
        nvram
            .attribute("template")
            .unwrap_or_default()
            .ends_with("OVMF_VARS_4M.ms.fd"),
        "{name}: NVRAM template {:?}",
        nvram.attribute("template")
    );
    let nvram_path = nvram.text().unwrap().to_string();
    assert!(
        nvram_path.contains(name),
        "{name}: per-VM NVRAM {nvram_path}"
    );
    assert!(Path::new(&nvram_path).is_file(), "{nvram_path} exists");
    assert!(
        !elements(&doc, "smm").is_empty(),
        "{name}: SMM for Secure Boot"
    );
    assert_eq!(
        elements(&doc, "type")[0]
            .attribute("machine")
            .map(|m| m.contains("q35")),
        Some(true)
    );

    let disks = elements(&doc, "disk");
    let on_bus = |device: &str, bus: &str| -> Vec<String> {
        disks
            .iter()
            .filter(|d| d.attribute("device") == Some(device))
            .filter_map(|d| child(*d, "target"))
            .filter(|t| t.attribute("bus") == Some(bus))
            .map(|t| t.attribute("dev").unwrap().to_string())
            .collect()
    };
    let (disk_bus, disk_dev, nic) = match devices {
        WindowsDevices::Emulated => ("sata", "sda", "e1000e"),
        WindowsDevices::Virtio => ("virtio", "vda", "virtio"),
    };
    assert_eq!(
        on_bus("disk", disk_bus),
        [disk_dev],
        "{name}: one {disk_bus} disk"
    );
    assert_eq!(
        disks
            .iter()
            .filter(|d| d.attribute("device") == Some("disk"))
            .count(),
        1
    );
    assert_eq!(on_bus("cdrom", "sata"), cdroms, "{name}: SATA CD-ROMs");

    let ifaces = elements(&doc, "interface");
    assert_eq!(ifaces.len(), 1);
    assert_eq!(
        child(ifaces[0], "model").and_then(|m| m.attribute("type")),
        Some(nic)
    );
    assert_eq!(
        child(ifaces[0], "mac").and_then(|m| m.attribute("address")),
        Some(mac)
    );

    let hyperv = elements(&doc, "hyperv")[0];
    let on: Vec<&str> = hyperv
        .children()
        .filter(|c| c.is_element() && c.attribute("state") == Some("on"))
        .map(|c| c.tag_name().name())
        .collect();
    // Software emulation here: the set QEMU emulates (KVM adds vpindex,
    // runtime, synic, stimer, frequencies; see the XML snapshots).
    for want in ["relaxed", "vapic", "spinlocks"] {
        assert!(on.contains(&want), "{name}: hyperv {want} in {on:?}");
    }
    assert_eq!(
        elements(&doc, "clock")[0].attribute("offset"),
        Some("localtime")
    );
    let vnc = elements(&doc, "graphics")[0];
    assert_eq!(vnc.attribute("type"), Some("vnc"));
    assert_eq!(vnc.attribute("listen"), Some("127.0.0.1"));
    nvram_path
}

/// A cluster `plan` with its state, keys and network, and none of the VMs
/// `vms` or storage an earlier run left.
async fn fresh_cluster(
    world: &common::World,
    plan: &Plan,
    vms: &[&str],
) -> (devcluster::pki::ClusterSecrets, Libvirt) {
    devcluster::state::save(
        &world.dirs,
        &devcluster::state::ClusterState::new(plan.clone()),
    )
    .unwrap();
    let secrets = devcluster::pki::ensure(&world.dirs, plan).unwrap();
    let p = provider().await;
    for n in vms {
        p.delete_node(n).await.unwrap();
    }
    p.remove_storage(&plan.cluster).await.unwrap();
    p.remove_network(&plan.cluster).await.unwrap();
    p.ensure_network(&NetworkSpec::from_plan(plan))
        .await
        .unwrap();
    (secrets, p)
}

/// A stand-in installation ISO in `dir` (it boots nothing).
fn stand_in_install(dir: &Path) -> std::path::PathBuf {
    let install = dir.join("standin-install.iso");
    devcluster::seed::iso::write(
        &install,
        "SSS_X64FREE_DV9",
        &[("setup.exe", b"stand-in for Windows Setup".as_slice())],
    )
    .unwrap();
    install
}

/// An empty 64 GiB qcow2 volume `name` in the images pool, standing in
/// for a base disk `images build` kept; its path.
fn stand_in_base_volume(name: &str) -> String {
    let images_pool = "devcluster-images";
    if !virsh(&["pool-info", images_pool]).0 {
        let target = format!("{POOL_ROOT}/{images_pool}");
        assert!(virsh(&["pool-define-as", images_pool, "dir", "--target", &target]).0);
        assert!(virsh(&["pool-build", images_pool]).0);
        assert!(virsh(&["pool-start", images_pool]).0);
    }
    let (ok, out) = virsh(&[
        "vol-create-as",
        images_pool,
        name,
        "64G",
        "--format",
        "qcow2",
    ]);
    assert!(ok, "{out}");
    format!("{POOL_ROOT}/{images_pool}/{name}")
}

fn volumes(pool: &str) -> String {
    virsh(&["vol-list", pool]).1
}

#[tokio::test(flavor = "multi_thread")]
async fn builder_and_node_domains_run_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let world = common::World::new();
    let cluster = "wi1";
    let builder = "wi1-build";
    let _one = SERIAL.lock().await;
    let plan = plan_for(cluster, "192.168.242.0/24", WindowsDevices::Emulated);
    let node = plan
        .nodes
        .iter()
        .find(|n| n.os == Os::Windows)
        .unwrap()
        .clone();
    let base_volume = format!("wi1-standin-base-{}.qcow2", std::process::id());
    let _cleanup = Cleanup {
        cluster,
        vms: vec![builder.into(), node.name.clone()],
        images_volume: Some(base_volume.clone()),
    };
    let (secrets, p) = fresh_cluster(&world, &plan, &[builder, node.name.as_str()]).await;

    // --- The builder: a stand-in installation ISO, the real build seed.
    let install = stand_in_install(tmp.path());
    let image = windows::image_for("windows-server-2022").unwrap();
    let build_seed = windows::BuildSeed {
        image,
        authorized_key: secrets.ssh_client.public_line.clone(),
        admin_password: devcluster::pki::generate_windows_password().unwrap(),
        openssh_zip: Some(b"PK\x05\x06 stand-in".to_vec()),
        devices: Default::default(),
    };
    let stand_in_base = BaseImage {
        name: "windows-server-2022".into(),
        path: tmp.path().join("unused"),
        sha256: "0".repeat(64),
        firmware: Firmware::Uefi,
        secure_boot: true,
    };
    let logs = world.dirs.cluster(cluster).join("logs");
    let builder_vm = VmSpec {
        cluster: cluster.into(),
        name: builder.into(),
        role: "builder".into(),
        os: Os::Windows,
        cpus: 1,
        memory_mib: 512,
        disk_gib: 64,
        mac: "52:54:00:f2:42:01".into(),
        base: stand_in_base,
        golden: None,
        seed_iso: windows::build_seed_iso(&build_seed).unwrap(),
        install_iso: Some(install.clone()),
        windows_devices: Default::default(),
        drivers_iso: None,
        serial_log: logs.join(format!("{builder}.serial.log")),
    };
    p.create_node(&builder_vm).await.unwrap();
    p.create_node(&builder_vm).await.unwrap(); // idempotent
    p.start(builder).await.unwrap();
    assert_eq!(p.state(builder).await.unwrap(), VmState::Running);
    let builder_nvram = check_windows_domain(
        builder,
        "52:54:00:f2:42:01",
        &["sdb", "sdc"],
        WindowsDevices::Emulated,
    );
    // The builder's disk is blank (no backing file): Setup installs onto it.
    let vols = volumes(&format!("devcluster-{cluster}"));
    for v in [
        "wi1-build.qcow2",
        "wi1-build-seed.iso",
        "wi1-build-install.iso",
    ] {
        assert!(vols.contains(v), "{v} in {vols}");
    }
    let info = run(
        "qemu-img",
        &[
            "info",
            "-U",
            &format!("{POOL_ROOT}/devcluster-{cluster}/wi1-build.qcow2"),
        ],
    );
    assert!(!info.contains("backing file"), "{info}");

    // --- A node: a linked clone of a stand-in base disk holding 256 MiB
    // of data, the way `devcluster images build` leaves one in the images
    // pool.
    let base_path = stand_in_base_volume(&base_volume);
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0xab 0 256M", &base_path],
    );
    let base = BaseImage {
        name: "windows-server-2022".into(),
        path: base_path.clone().into(),
        sha256: "0".repeat(64),
        firmware: Firmware::Uefi,
        secure_boot: true,
    };
    // The same VM definition `up` makes.
    let mut vm = devcluster::machines::vm_spec(&world.dirs, &plan, &node, &base, &secrets).unwrap();
    assert_eq!(vm.golden.as_deref(), Some(base_volume.as_str()));
    vm.cpus = 1;
    vm.memory_mib = 512;
    p.create_node(&vm).await.unwrap();
    p.start(&node.name).await.unwrap();
    let node_nvram =
        check_windows_domain(&node.name, &node.mac, &["sdb"], WindowsDevices::Emulated);
    assert_ne!(node_nvram, builder_nvram);

    let disk = format!("{POOL_ROOT}/devcluster-{cluster}/{}.qcow2", node.name);
    let info = run("qemu-img", &["info", "-U", "--output=json", &disk]);
    assert!(
        info.contains(&base_path),
        "linked clone of the base: {info}"
    );
    let allocated = std::fs::metadata(&disk).unwrap();
    let bytes = {
        use std::os::unix::fs::MetadataExt;
        allocated.blocks() * 512
    };
    let base_bytes = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&base_path).unwrap().blocks() * 512
    };
    eprintln!(
        "Windows node disk at creation: {} KiB allocated ({} bytes apparent), over a stand-in base of {} MiB",
        bytes / 1024,
        allocated.len(),
        base_bytes >> 20
    );
    assert!(bytes <= 200 << 20, "disk per Windows node {bytes} > 200 MB");

    // The node's seed, read back with 7z (an independent reader): the
    // answer file at the root under the name Setup looks for.
    let seed_path = format!("{POOL_ROOT}/devcluster-{cluster}/{}-seed.iso", node.name);
    let listing = run("7z", &["l", "-ba", &seed_path]);
    for f in [
        "autounattend.xml",
        "devcluster-node.ps1",
        "ssh_host_ed25519_key",
        "authorized_keys",
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.split_whitespace().last() == Some(f)),
            "{f} at the root of the seed: {listing}"
        );
    }
    let answer = run("7z", &["e", "-so", &seed_path, "autounattend.xml"]);
    assert!(answer.contains(&format!("<ComputerName>{}</ComputerName>", node.name)));
    assert!(answer.contains(&windows::windows_mac(&node.mac).unwrap()));

    // --- Destroy: no domain, volume, NVRAM or seed of either is left.
    for (name, nvram) in [(builder, &builder_nvram), (node.name.as_str(), &node_nvram)] {
        p.delete_node(name).await.unwrap();
        p.delete_node(name).await.unwrap(); // idempotent
        assert_eq!(p.state(name).await.unwrap(), VmState::Absent);
        assert!(!Path::new(nvram).exists(), "{nvram} removed");
    }
    let vols = volumes(&format!("devcluster-{cluster}"));
    for v in ["wi1-build", "wi1-win1"] {
        assert!(!vols.contains(v), "{v} left in {vols}");
    }
    // The base disk is not the node's to delete.
    assert!(Path::new(&base_path).exists());
    p.remove_storage(cluster).await.unwrap();
    p.remove_network(cluster).await.unwrap();
    assert!(!Path::new(&format!("{POOL_ROOT}/devcluster-{cluster}")).exists());
}

/// The virtio opt-in on the real libvirtd: the builder gets virtio-blk and
/// virtio-net plus the drivers CD as a third SATA CD-ROM (a stand-in
/// virtio-win ISO), a node of a `windows_devices = "virtio"` plan the
/// same devices (from `machines::vm_spec`, as `up` makes it); deleting
/// them leaves no domain, volume (the drivers copy included) or NVRAM.
#[tokio::test(flavor = "multi_thread")]
async fn virtio_builder_and_node_domains_run_and_leave_nothing_behind() {
    let _one = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let world = common::World::new();
    let cluster = "wi2";
    let builder = "wi2-build";
    let plan = plan_for(cluster, "192.168.244.0/24", WindowsDevices::Virtio);
    let node = plan
        .nodes
        .iter()
        .find(|n| n.os == Os::Windows)
        .unwrap()
        .clone();
    let base_volume = format!("wi2-standin-base-{}.qcow2", std::process::id());
    let _cleanup = Cleanup {
        cluster,
        vms: vec![builder.into(), node.name.clone()],
        images_volume: Some(base_volume.clone()),
    };
    let (secrets, p) = fresh_cluster(&world, &plan, &[builder, node.name.as_str()]).await;

    let install = stand_in_install(tmp.path());
    let drivers = tmp.path().join("standin-virtio-win.iso");
    devcluster::seed::iso::write(
        &drivers,
        "VIRTIO_WIN",
        &[("virtio-win-guest-tools.exe", b"stand-in".as_slice())],
    )
    .unwrap();
    let image = windows::image_for("windows-server-2025").unwrap();
    let build_seed = windows::BuildSeed {
        image,
        authorized_key: secrets.ssh_client.public_line.clone(),
        admin_password: devcluster::pki::generate_windows_password().unwrap(),
        openssh_zip: None,
        devices: WindowsDevices::Virtio,
    };
    let base = |path: std::path::PathBuf| BaseImage {
        name: "windows-server-2025".into(),
        path,
        sha256: "0".repeat(64),
        firmware: Firmware::Uefi,
        secure_boot: true,
    };
    let builder_vm = VmSpec {
        cluster: cluster.into(),
        name: builder.into(),
        role: "builder".into(),
        os: Os::Windows,
        cpus: 1,
        memory_mib: 512,
        disk_gib: 64,
        mac: "52:54:00:f2:44:01".into(),
        base: base(tmp.path().join("unused")),
        golden: None,
        seed_iso: windows::build_seed_iso(&build_seed).unwrap(),
        install_iso: Some(install.clone()),
        windows_devices: WindowsDevices::Virtio,
        drivers_iso: Some(drivers.clone()),
        serial_log: world
            .dirs
            .cluster(cluster)
            .join("logs")
            .join(format!("{builder}.serial.log")),
    };
    p.create_node(&builder_vm).await.unwrap();
    p.create_node(&builder_vm).await.unwrap(); // idempotent
    p.start(builder).await.unwrap();
    assert_eq!(p.state(builder).await.unwrap(), VmState::Running);
    let builder_nvram = check_windows_domain(
        builder,
        "52:54:00:f2:44:01",
        &["sdb", "sdc", "sdd"],
        WindowsDevices::Virtio,
    );
    // The third CD is the drivers ISO, byte for byte.
    let copy = format!("{POOL_ROOT}/devcluster-{cluster}/wi2-build-drivers.iso");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&drivers).unwrap()
    );
    let listing = run("7z", &["l", "-ba", &copy]);
    assert!(listing.contains("virtio-win-guest-tools.exe"), "{listing}");
    p.delete_node(builder).await.unwrap();
    assert!(!Path::new(&builder_nvram).exists());
    let vols = volumes(&format!("devcluster-{cluster}"));
    assert!(!vols.contains("wi2-build"), "builder volumes left: {vols}");

    // A node of the virtio plan, on a stand-in base disk.
    let base_path = stand_in_base_volume(&base_volume);
    let mut vm = devcluster::machines::vm_spec(
        &world.dirs,
        &plan,
        &node,
        &base(base_path.clone().into()),
        &secrets,
    )
    .unwrap();
    assert_eq!(vm.windows_devices, WindowsDevices::Virtio);
    vm.cpus = 1;
    vm.memory_mib = 512;
    p.create_node(&vm).await.unwrap();
    p.start(&node.name).await.unwrap();
    let node_nvram = check_windows_domain(&node.name, &node.mac, &["sdb"], WindowsDevices::Virtio);
    p.delete_node(&node.name).await.unwrap();
    assert_eq!(p.state(&node.name).await.unwrap(), VmState::Absent);
    assert!(!Path::new(&node_nvram).exists());
    assert!(Path::new(&base_path).exists(), "the base is not the node's");
    p.remove_storage(cluster).await.unwrap();
    p.remove_network(cluster).await.unwrap();
    assert!(!Path::new(&format!("{POOL_ROOT}/devcluster-{cluster}")).exists());
}
