//! A control plane whose VM was deleted behind devcluster's back, on real
//! VMs (libvirt + QEMU, software emulation, isolated network, the guest
//! test image; 2 VMs), driven through the binary.
//!
//! The Kubernetes packages cannot be had here, so no worker can really
//! join. The test gives the cluster the state a joined worker has (its
//! steps through `join` recorded as done, their markers in its guest),
//! deletes the control plane's VM and disk with virsh, and runs `up`
//! again: the control plane is made anew (its prepare-os runs again and
//! its prepare-node stops at the package error, as everywhere on this
//! path here), and the worker's join is forgotten — in the state and in
//! the guest — and really runs again (join.sh then stops because kubeadm
//! is not installed, which is as far as this machine goes).

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]
#![allow(clippy::print_stderr)] // progress of a long test, shown with --nocapture

mod common;

use std::time::Instant;

use common::Test;
use common::vms::{ClusterCleanup, NodeSoftwareMirror, step_lines, virsh};

const NODES: [&str; 2] = ["ln-cp", "ln-w1"];

const CONFIG: &str = r#"
workers = 1
[network]
node_cidr = "192.168.240.0/24"
[libvirt]
network_mode = "isolated"
domain_type = "qemu"
[control_plane]
cpus = 2
memory_mib = 2048
disk_gib = 10
[linux]
cpus = 1
memory_mib = 1024
disk_gib = 10
image = "guest"
"#;

fn on(t: &mut Test, node: &str, command: &str) -> String {
    common::vms::ssh_out(t, "ln", node, command)
}

#[test]
fn up_rebuilds_a_deleted_control_plane_and_the_workers_join_again() {
    let image = common::vms::test_image();
    let _cleanup = ClusterCleanup::fresh("ln", &NODES);
    let mut t = Test::new();
    t.file("devcluster.toml", CONFIG);
    t.args(&["images", "import", "guest", &image, "--os", "linux"])
        .run()
        .status(0);
    // containerd & co. (stand-ins) for prepare-node to upload.
    let mirror = NodeSoftwareMirror::create(&t.root.path().join("mirror"));
    let started = Instant::now();

    // The machines, then prepare-node stops at the package error.
    t.args(&["--cluster", "ln", "up"])
        .env(NodeSoftwareMirror::ENV, &mirror.url)
        .run()
        .status(1)
        .stderr_has("node ln-cp: step prepare-node failed (exit 1)");
    eprintln!("first up failed after {:?}", started.elapsed());

    // What a joined cluster's state and worker look like.
    let steps = "/var/lib/devcluster/steps";
    on(
        &mut t,
        "ln-w1",
        &format!("sudo touch {steps}/prepare-node.done {steps}/join.done"),
    );
    let state_path = t.dirs().cluster("ln").join("state.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    st["nodes"]["ln-cp"]["completed_steps"] = serde_json::json!([
        "prepare-os",
        "prepare-node",
        "init-control-plane",
        "network-addon"
    ]);
    st["nodes"]["ln-w1"]["completed_steps"] =
        serde_json::json!(["prepare-os", "prepare-node", "join"]);
    for n in NODES {
        st["nodes"][n]["phase"] = "ready".into();
        st["nodes"][n]
            .as_object_mut()
            .unwrap()
            .remove("failed_step");
    }
    std::fs::write(&state_path, serde_json::to_string_pretty(&st).unwrap()).unwrap();

    // Somebody deletes the control plane's VM and its storage.
    virsh(&["destroy", "ln-cp"]);
    virsh(&["undefine", "ln-cp", "--nvram", "--remove-all-storage"]);
    assert!(!virsh(&["list", "--all", "--name"]).contains("ln-cp"));

    let second = t
        .args(&["--cluster", "ln", "up"])
        .env(NodeSoftwareMirror::ENV, &mirror.url)
        .run()
        .status(1);
    eprintln!("second up failed after {:?}", started.elapsed());
    assert!(
        second.stderr.contains(
            "the control plane's VM is gone: it is made again with a new, empty cluster, so ln-w1 join it again"
        ),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains("node ln-cp: step prepare-node failed (exit 1)"),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains("node ln-w1: step join failed (exit 1)"),
        "{}",
        second.stderr
    );
    assert!(virsh(&["list", "--name"]).contains("ln-cp"));

    // The control plane is a new machine: prepare-os ran on it again.
    let cp_log = t
        .args(&["--cluster", "ln", "logs", "ln-cp"])
        .run()
        .status(0);
    let prepare_os = step_lines(&cp_log.stdout, "prepare-os");
    assert_eq!(
        prepare_os.iter().filter(|l| *l == "started").count(),
        2,
        "{prepare_os:?}"
    );
    // The worker kept its machine and its prepare-node, forgot its join
    // and ran join.sh again (which stops here: no kubeadm to join with).
    let w_log = t
        .args(&["--cluster", "ln", "logs", "ln-w1"])
        .run()
        .status(0);
    let join = step_lines(&w_log.stdout, "join");
    assert!(
        join.iter()
            .any(|l| l == "forgotten: the control plane was re-created"),
        "{join:?}"
    );
    assert!(join.iter().any(|l| l == "started"), "{join:?}");
    assert!(
        join.iter()
            .any(|l| l.contains("join: kubeadm is not installed")),
        "{join:?}"
    );
    let prepare_node = step_lines(&w_log.stdout, "prepare-node");
    assert_eq!(
        prepare_node.last().map(String::as_str),
        Some("skipped: already done"),
        "{prepare_node:?}"
    );
    let markers = on(&mut t, "ln-w1", &format!("ls {steps}"));
    assert!(!markers.contains("join.done"), "{markers}");
    assert!(markers.contains("prepare-node.done"), "{markers}");

    // And the state says so: the worker still has to join, and rejoins
    // (its guest marker is removed again) until its join succeeds.
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let w1 = &st["nodes"]["ln-w1"];
    assert_eq!(w1["rejoin"], true, "{w1}");
    assert_eq!(w1["failed_step"], "join", "{w1}");
    assert!(
        !w1["completed_steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "join"),
        "{w1}"
    );
    let cp = &st["nodes"]["ln-cp"]["completed_steps"];
    assert_eq!(cp, &serde_json::json!(["prepare-os"]), "{cp}");

    t.args(&["--cluster", "ln", "destroy", "--yes"])
        .run()
        .status(0);
    eprintln!("done after {:?}", started.elapsed());
}
