//! `devcluster up` with Kubernetes for a mixed plan (1 Linux control plane
//! + 1 Windows worker) on real libvirt, driven through the binary.
//!
//! No Windows runs on these machines and the Kubernetes package
//! repositories cannot be reached, so the honest outcome is the failure
//! path, proven here for real:
//! - the Linux control plane is created and provisioned as far as this
//!   machine allows: prepare-os, then prepare-node fails with the package
//!   error (as in tests/kubernetes_e2e.rs);
//! - the Windows worker's VM is created from a stand-in base disk (a blank
//!   qcow2 recorded as the base disk `images build` would keep, in the
//!   images pool) with its seed CD, and runs; nothing in it boots Windows,
//!   so its SSH wait fails, with one clear message naming the node and
//!   where to look (console, serial log), bounded for the test by
//!   `DEVCLUSTER_TEST_WINDOWS_SSH_TIMEOUT` instead of 30 minutes;
//! - `status` and `logs` show both; `destroy` leaves nothing.
//!
//! The Windows node software is never fetched here: it is fetched for the
//! cluster's patch release, which the control plane's prepare-node
//! chooses, and that fails first; no internet is needed. Run under
//! `flock /tmp/devcluster-vm.lock` (scripts/test.sh); needs
//! DEVCLUSTER_TEST_IMAGE (`bash testdata/guest/build.sh | tail -n1`).

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]
#![allow(clippy::print_stderr)] // progress of a long test, shown with --nocapture

mod common;

use std::time::Instant;

use common::Test;
use common::vms::{ClusterCleanup, NodeSoftwareMirror, step_lines, virsh, virsh_status};
use devcluster::images::golden::{self, Made, ProviderVolume};
use devcluster::images::{Format, winbase};
use devcluster::spec::ProviderKind;

const CP: &str = "wu-cp";
const WIN: &str = "wu-win1";
const NODES: [&str; 2] = [CP, WIN];
const IMAGES_POOL: &str = "devcluster-images";
const BASE_VOLUME: &str = "wu-standin-winbase.qcow2";

const CONFIG: &str = r#"
workers = 0
windows_workers = 1
[network]
node_cidr = "192.168.225.0/24"
[libvirt]
network_mode = "isolated"
domain_type = "qemu"
[control_plane]
cpus = 2
memory_mib = 2048
disk_gib = 10
[linux]
image = "guest"
[windows]
cpus = 2
memory_mib = 4096
disk_gib = 32
taint = true
"#;

struct BaseCleanup;
impl Drop for BaseCleanup {
    fn drop(&mut self) {
        virsh_status(&["vol-delete", BASE_VOLUME, "--pool", IMAGES_POOL]);
    }
}

/// The stand-in Windows image: a catalog entry of the user's (a stand-in
/// ISO by file:// and sha256, never downloaded: the base disk exists) and
/// a blank qcow2 base disk in the images pool, recorded under the key
/// `images build` would use.
fn stand_in_windows(t: &Test) {
    let dirs = t.dirs();
    let iso = t.home().join("standin-win.iso");
    let sha = common::stand_in_windows_iso(&dirs, &iso);
    if !virsh_status(&["pool-info", IMAGES_POOL]).0 {
        let target = format!("/var/lib/libvirt/images/{IMAGES_POOL}");
        assert!(virsh_status(&["pool-define-as", IMAGES_POOL, "dir", "--target", &target]).0);
        assert!(virsh_status(&["pool-build", IMAGES_POOL]).0);
        assert!(virsh_status(&["pool-start", IMAGES_POOL]).0);
    }
    virsh_status(&["vol-delete", BASE_VOLUME, "--pool", IMAGES_POOL]);
    let (ok, out) = virsh_status(&[
        "vol-create-as",
        IMAGES_POOL,
        BASE_VOLUME,
        "32G",
        "--format",
        "qcow2",
    ]);
    assert!(ok, "{out}");
    let (_, image) = devcluster::winbuild::windows_image(&dirs, "windows-server-2025").unwrap();
    let key = winbase::key(&image, &sha, ProviderKind::Libvirt, Default::default());
    golden::store_volume(
        &dirs,
        &key,
        Made {
            image: "windows-server-2025".into(),
            format: Format::Qcow2,
            capacity_bytes: 32 << 30,
            source: "stand-in (tests/windows_up_e2e.rs)".into(),
            prepared_ms: 0,
        },
        ProviderVolume {
            name: BASE_VOLUME.into(),
            path: format!("/var/lib/libvirt/images/{IMAGES_POOL}/{BASE_VOLUME}").into(),
            bytes: 200 << 10,
            uri: "qemu:///system".into(),
        },
    )
    .unwrap();
    assert!(
        winbase::lookup(
            &dirs,
            &image,
            &sha,
            ProviderKind::Libvirt,
            Default::default()
        )
        .is_some()
    );
}

#[test]
fn mixed_up_provisions_linux_and_stops_at_windows_ssh() {
    let image = common::vms::test_image();
    let _cleanup = ClusterCleanup::fresh("wu", &NODES);
    let _base = BaseCleanup;
    let mut t = Test::new();
    t.file("devcluster.toml", CONFIG);
    t.args(&["images", "import", "guest", &image, "--os", "linux"])
        .run()
        .status(0);
    stand_in_windows(&t);
    // The Linux node software (containerd 2, runc, CNI plugins) from a
    // local mirror of stand-ins, as in tests/kubernetes_e2e.rs.
    let mirror = NodeSoftwareMirror::create(&t.root.path().join("mirror"));
    let started = Instant::now();

    let up = t
        .env("DEVCLUSTER_TEST_WINDOWS_SSH_TIMEOUT", "90")
        .env(NodeSoftwareMirror::ENV, &mirror.url)
        .args(&["--cluster", "wu", "up"])
        .run()
        .status(1)
        .stderr_has("wu-win1: VM started")
        .stderr_has("wu-cp: VM started")
        .stderr_has("2 nodes failed: node wu-cp: step prepare-node failed (exit 1); Windows node wu-win1 did not answer SSH")
        // Where to look, for the Windows node.
        .stderr_has("wu-win1: a Windows node's first boot runs Windows' specialize pass")
        .stderr_has("virsh -c qemu:///system vncdisplay wu-win1")
        .stderr_has("wu-win1.serial.log (`devcluster logs wu-win1 --serial`)");
    eprintln!("up failed after {:?}:\n{}", started.elapsed(), up.stderr);
    let package_error = "prepare-node: cannot install ca-certificates curl gpg conntrack socat ethtool iptables iproute2: the node cannot reach its package mirrors";
    assert!(up.stderr.contains(package_error), "{}", up.stderr);

    // The Linux control plane: prepare-os done, prepare-node failed, no
    // init (it never got that far).
    let logs = t.args(&["--cluster", "wu", "logs", CP]).run().status(0);
    assert!(
        step_lines(&logs.stdout, "prepare-os")
            .iter()
            .any(|l| l.starts_with("finished in")),
        "{}",
        logs.stdout
    );
    assert!(
        step_lines(&logs.stdout, "prepare-node")
            .iter()
            .any(|l| l.contains(package_error))
    );
    assert!(step_lines(&logs.stdout, "init-control-plane").is_empty());
    assert!(step_lines(&logs.stdout, "network-addon").is_empty());

    // The Windows node: its log says why and where to look; no step ran.
    let logs = t.args(&["--cluster", "wu", "logs", WIN]).run().status(0);
    let ssh = step_lines(&logs.stdout, "ssh");
    assert_eq!(ssh.len(), 1, "{}", logs.stdout);
    assert!(
        ssh[0].contains("wu-win1 (192.168.225.31:22) did not answer SSH within 90s"),
        "{ssh:?}"
    );
    assert!(ssh[0].contains("vncdisplay wu-win1"), "{ssh:?}");
    for step in [
        "prepare-os",
        "prepare-windows-node",
        "join-windows",
        "network-windows",
    ] {
        assert!(step_lines(&logs.stdout, step).is_empty(), "{step}");
    }
    // Its VM runs: a linked clone of the stand-in base disk, with its seed.
    let info = std::process::Command::new("qemu-img")
        .args([
            "info",
            "-U",
            &format!("/var/lib/libvirt/images/devcluster-wu/{WIN}.qcow2"),
        ])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains(BASE_VOLUME), "linked clone: {info}");
    let (_, vols) = virsh_status(&["vol-list", "devcluster-wu"]);
    assert!(vols.contains("wu-win1-seed.iso"), "{vols}");

    let status = t
        .args(&["--cluster", "wu", "status", "-o", "json"])
        .run()
        .status(0)
        .json();
    let nodes = status["nodes"].as_array().unwrap();
    let node = |name: &str| nodes.iter().find(|n| n["name"] == name).unwrap().clone();
    assert_eq!(node(CP)["phase"], "failed");
    assert_eq!(node(CP)["last_step"], "prepare-node");
    assert_eq!(node(WIN)["phase"], "failed");
    assert_eq!(node(WIN)["vm"], "running");
    assert_eq!(node(WIN)["os"], "windows");
    let table = t.args(&["--cluster", "wu", "status"]).run().status(0);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with(WIN) && l.contains("failed")),
        "{}",
        table.stdout
    );

    // destroy: nothing of the cluster is left (the base disk is not the
    // cluster's: it stays for the next cluster).
    t.args(&["--cluster", "wu", "destroy", "--yes"])
        .run()
        .status(0);
    assert!(!virsh(&["list", "--all", "--name"]).contains("wu-"));
    assert!(!virsh(&["net-list", "--all", "--name"]).contains("devcluster-wu"));
    assert!(!virsh(&["pool-list", "--all", "--name"]).contains("devcluster-wu"));
    assert!(!std::path::Path::new("/var/lib/libvirt/images/devcluster-wu").exists());
    assert!(!t.dirs().cluster("wu").exists());
    assert!(virsh_status(&["vol-info", BASE_VOLUME, "--pool", IMAGES_POOL]).0);
    eprintln!("whole test in {:?}", started.elapsed());
}
