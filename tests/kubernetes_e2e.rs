//! `devcluster up` with Kubernetes on real VMs (libvirt + QEMU, software
//! emulation, isolated network, the guest test image), driven through the
//! binary.
//!
//! The Kubernetes package repositories cannot be reached from these
//! machines (and the isolated network reaches nothing at all), so the
//! honest outcome here is the failure path: `up` fetches the node software
//! (stand-ins from a local mirror, `common::vms::NodeSoftwareMirror`)
//! through the cache, prepares the machines, then the control plane's
//! prepare-node uploads containerd, runc and the CNI plugins, checks and
//! installs them and stops at the package error; the worker, whose
//! prepare-node waits for the control plane's (it chooses the cluster's
//! release), does not run it and says why. Only that step runs the next
//! time; `node add` (no control plane in the run) prepares a worker up to
//! the same package error; `destroy` removes everything. The success path
//! (init, join, flannel, readiness) is exercised on hosts with internet
//! access; see the README.

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]
#![allow(clippy::print_stderr)] // progress of a long test, shown with --nocapture

mod common;

use std::time::Instant;

use common::Test;
use common::vms::{ClusterCleanup, NodeSoftwareMirror, STAND_IN_MARK, step_lines, virsh};

const NODES: [&str; 2] = ["k8-cp", "k8-w1"];

const CONFIG: &str = r#"
workers = 1
[network]
node_cidr = "192.168.235.0/24"
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

/// Somebody's kubeconfig, which a failed `up` must leave as it is.
const THEIR_KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://10.0.0.1:6443
  name: theirs
contexts:
- context:
    cluster: theirs
    user: them
  name: theirs
current-context: theirs
users:
- name: them
  user:
    token: abc
";

/// k8-cp's log has a prepare-node line containing each of `wanted`.
fn assert_prepare_node_says(t: &mut Test, wanted: &[&str]) {
    let log = t
        .args(&["--cluster", "k8", "logs", "k8-cp"])
        .run()
        .status(0);
    let lines = step_lines(&log.stdout, "prepare-node");
    for w in wanted {
        assert!(lines.iter().any(|l| l.contains(w)), "k8-cp: {w}: {lines:?}");
    }
}

#[test]
fn up_stops_at_prepare_node_without_package_repositories() {
    let image = common::vms::test_image();
    let _cleanup = ClusterCleanup::fresh("k8", &NODES);
    let mut t = Test::new();
    t.file("devcluster.toml", CONFIG);
    let kubeconfig = t.user_home().join(".kube/config");
    std::fs::create_dir_all(kubeconfig.parent().unwrap()).unwrap();
    std::fs::write(&kubeconfig, THEIR_KUBECONFIG).unwrap();
    t.args(&["images", "import", "guest", &image, "--os", "linux"])
        .run()
        .status(0);
    let mirror = NodeSoftwareMirror::create(&t.root.path().join("mirror"));
    let started = Instant::now();

    // The first `up`: node software, machines, prepare-os, then the
    // control plane's prepare-node fails because no package mirror
    // answers, and the worker's, waiting for it, is not run.
    let first = t
        .args(&["--cluster", "k8", "up"])
        .env(NodeSoftwareMirror::ENV, &mirror.url)
        .run()
        .status(1)
        .stderr_has("2 nodes failed: node k8-cp: step prepare-node failed (exit 1); node k8-w1: did not run prepare-node: the control plane k8-cp failed")
        .stderr_has("last lines of k8-cp's log:")
        .stderr_has("hint: see the whole logs with `devcluster logs k8-cp`, `devcluster logs k8-w1`;");
    eprintln!("first up failed after {:?}", started.elapsed());
    // The worker ran no step that failed: no tail of its log.
    assert!(
        !first.stderr.contains("last lines of k8-w1's log:"),
        "{}",
        first.stderr
    );
    // The package error itself, from the script, in the output and the log.
    let package_error = "prepare-node: cannot install ca-certificates curl gpg conntrack socat ethtool iptables iproute2: the node cannot reach its package mirrors";
    assert!(first.stderr.contains(package_error), "{}", first.stderr);
    for node in NODES {
        let logs = t.args(&["--cluster", "k8", "logs", node]).run().status(0);
        let prepare_os = step_lines(&logs.stdout, "prepare-os");
        assert!(
            prepare_os.iter().any(|l| l.starts_with("finished in")),
            "{node}: {prepare_os:?}"
        );
        // Neither init nor join ran: the control plane never got that far,
        // and the worker stops before its prepare-node.
        assert!(step_lines(&logs.stdout, "init-control-plane").is_empty());
        assert!(step_lines(&logs.stdout, "join").is_empty());
    }
    // The control plane: the node software uploaded, checked and
    // installed before the package step.
    assert_prepare_node_says(
        &mut t,
        &[
            "upload: /var/lib/devcluster/node-software/containerd-2.3.4-linux-amd64.tar.gz (",
            "upload: /var/lib/devcluster/node-software/runc.amd64 (",
            "upload: /var/lib/devcluster/node-software/cni-plugins-linux-amd64-v1.9.1.tgz (",
            "node software: containerd-2.3.4-linux-amd64.tar.gz, runc.amd64 and cni-plugins-linux-amd64-v1.9.1.tgz have their sha256",
            "containerd: unpacked containerd-2.3.4-linux-amd64.tar.gz into /usr/local",
            "containerd: wrote /etc/systemd/system/containerd.service",
            "runc: installed runc.amd64 as /usr/local/sbin/runc",
            "cni plugins: unpacked cni-plugins-linux-amd64-v1.9.1.tgz into /opt/cni/bin",
            package_error,
        ],
    );
    let on_cp = |t: &mut Test, command: &str| common::vms::ssh_out(t, "k8", "k8-cp", command);
    assert!(on_cp(&mut t, "/usr/local/bin/containerd --version").contains(STAND_IN_MARK));
    assert!(on_cp(&mut t, "cat /usr/local/sbin/runc").contains(STAND_IN_MARK));
    assert!(on_cp(&mut t, "cat /opt/cni/bin/bridge").contains(STAND_IN_MARK));
    assert!(
        on_cp(&mut t, "cat /etc/systemd/system/containerd.service")
            .contains("ExecStart=/usr/local/bin/containerd")
    );
    // No distribution containerd was installed.
    assert!(
        !on_cp(&mut t, "ls /usr/bin")
            .lines()
            .any(|l| l == "containerd")
    );
    // The worker waited for it and did not run its own.
    let w_log = t
        .args(&["--cluster", "k8", "logs", "k8-w1"])
        .run()
        .status(0);
    let prepare_node = step_lines(&w_log.stdout, "prepare-node");
    assert_eq!(
        prepare_node,
        [
            "waiting for k8-cp's prepare-node: it chooses the cluster's Kubernetes release",
            "not run: the control plane k8-cp failed"
        ],
        "{prepare_node:?}"
    );
    let status = t
        .args(&["--cluster", "k8", "status", "-o", "json"])
        .run()
        .status(0)
        .json();
    for n in status["nodes"].as_array().unwrap() {
        // The worker's last done step is prepare-os: it failed without
        // running prepare-node.
        let last = if n["name"] == "k8-cp" {
            "prepare-node"
        } else {
            "prepare-os"
        };
        assert_eq!(n["last_step"], last, "{n}");
        assert_eq!(n["phase"], "failed", "{n}");
        assert_eq!(n["vm"], "running", "{n}");
        // Not initialised: status does not ask an API server.
        assert!(n["kubernetes"].is_null(), "{n}");
    }
    let table = t.args(&["--cluster", "k8", "status"]).run().status(0);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("k8-w1") && l.contains("failed") && l.ends_with("prepare-os")),
        "{}",
        table.stdout
    );

    // Again: the machines exist and prepare-os is done, so only
    // prepare-node runs on the control plane (and fails the same way; the
    // node software is there already), and the worker waits again.
    t.args(&["--cluster", "k8", "up"])
        .env(NodeSoftwareMirror::ENV, &mirror.url)
        .run()
        .status(1)
        .stderr_has("node k8-cp: step prepare-node failed (exit 1)")
        .stderr_has("node k8-w1: did not run prepare-node: the control plane k8-cp failed");
    eprintln!("second up failed after {:?}", started.elapsed());
    for node in NODES {
        let logs = t.args(&["--cluster", "k8", "logs", node]).run().status(0);
        let prepare_os = step_lines(&logs.stdout, "prepare-os");
        assert_eq!(
            prepare_os.last().map(String::as_str),
            Some("skipped: already done"),
            "{node}: {prepare_os:?}"
        );
        assert_eq!(
            prepare_os.iter().filter(|l| *l == "started").count(),
            1,
            "{node}: prepare-os ran once: {prepare_os:?}"
        );
        let prepare_node = step_lines(&logs.stdout, "prepare-node");
        let runs = if node == "k8-cp" { 2 } else { 0 };
        assert_eq!(
            prepare_node.iter().filter(|l| *l == "started").count(),
            runs,
            "{node}: prepare-node ran {runs} times: {prepare_node:?}"
        );
    }
    assert_prepare_node_says(
        &mut t,
        &[
            "upload: /var/lib/devcluster/node-software/containerd-2.3.4-linux-amd64.tar.gz already there (sha256 ",
            "containerd: 2.3.4 already installed in /usr/local",
            "runc: already installed",
            "cni plugins: already installed in /opt/cni/bin",
        ],
    );

    // A failed up merged nothing into the user's kubeconfig.
    assert_eq!(
        std::fs::read_to_string(&kubeconfig).unwrap(),
        THEIR_KUBECONFIG
    );

    // node remove, then node add: the worker's VM goes and comes back
    // (the control plane is not initialised, so there is nothing to drain
    // and the new worker is prepared, not joined; the control plane is not
    // in this run, so the worker does not wait for it: here it installs
    // the node software and stops at the same package error).
    t.args(&["--cluster", "k8", "node", "remove", "k8-w1"])
        .run()
        .status(0)
        .stdout_has("removed k8-w1 from cluster k8");
    assert!(!virsh(&["list", "--all", "--name"]).contains("k8-w1"));
    let status = t
        .args(&["--cluster", "k8", "status", "-o", "json"])
        .run()
        .status(0)
        .json();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 1, "{status}");
    let log_before =
        std::fs::read_to_string(t.dirs().cluster("k8").join("logs/k8-w1.log")).unwrap();
    t.args(&["--cluster", "k8", "node", "add", "--linux"])
        .env(NodeSoftwareMirror::ENV, &mirror.url)
        .run()
        .status(1)
        .stderr_has("creating k8-w1 (192.168.235.21)")
        .stderr_has("node k8-w1: step prepare-node failed (exit 1)")
        .stderr_has(package_error);
    eprintln!("node remove + add after {:?}", started.elapsed());
    let log = std::fs::read_to_string(t.dirs().cluster("k8").join("logs/k8-w1.log")).unwrap();
    let added = &log[log_before.len()..];
    // A new VM: prepare-os ran again (nothing of the old one was reused).
    assert!(
        step_lines(added, "prepare-os")
            .iter()
            .any(|l| l.starts_with("finished in")),
        "{added}"
    );
    assert!(step_lines(added, "join").is_empty(), "{added}");
    assert!(
        step_lines(added, "prepare-node")
            .iter()
            .any(|l| l.ends_with("runc: installed runc.amd64 as /usr/local/sbin/runc")),
        "{added}"
    );
    let status = t
        .args(&["--cluster", "k8", "status", "-o", "json"])
        .run()
        .status(0)
        .json();
    let w1 = &status["nodes"][1];
    assert_eq!(w1["name"], "k8-w1");
    assert_eq!(w1["ip"], "192.168.235.21");
    assert_eq!(w1["vm"], "running");
    assert_eq!(w1["last_step"], "prepare-node");

    // destroy: nothing of the cluster is left.
    t.args(&["--cluster", "k8", "destroy", "--yes"])
        .run()
        .status(0);
    assert!(!virsh(&["list", "--all", "--name"]).contains("k8-"));
    assert!(!virsh(&["net-list", "--all", "--name"]).contains("devcluster-k8"));
    assert!(!virsh(&["pool-list", "--all", "--name"]).contains("devcluster-k8"));
    assert!(!std::path::Path::new("/var/lib/libvirt/images/devcluster-k8").exists());
    assert!(!t.dirs().cluster("k8").exists());
    assert_eq!(
        std::fs::read_to_string(&kubeconfig).unwrap(),
        THEIR_KUBECONFIG
    );
    eprintln!("whole test in {:?}", started.elapsed());
}
