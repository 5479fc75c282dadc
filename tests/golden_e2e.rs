//! Golden disks on real VMs (libvirt, QEMU software emulation, isolated
//! network, the guest test image; 2 VMs).
//!
//! prepare-node cannot succeed here (no Kubernetes package repositories),
//! so `up` never keeps a golden disk by itself on this machine — the first
//! part checks exactly that. The capture is then driven through the
//! library on the control plane left by that `up`, which stands in for a
//! prepared node: a file plays the installed packages and the step
//! runner's done marker of prepare-node is written as the step would. From
//! there everything is the real path: seal, libvirt backup of the running
//! disk, unseal, record; `devcluster node add` clones the golden disk,
//! cloud-init starts afresh from the clone's own seed, the step runner
//! skips prepare-node; `images prune` deletes the volume.

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]
#![allow(clippy::print_stderr)] // progress of a long test, shown with --nocapture

mod common;

use std::time::{Duration, Instant};

use common::Test;
use common::vms::{ClusterCleanup, NodeSoftwareMirror, step_lines, virsh};
use devcluster::images::download::NoProgress;
use devcluster::provision::{NodeLog, SshTarget, wait_for_ssh};

const NODES: [&str; 2] = ["gd-cp", "gd-w1"];

const CONFIG: &str = r#"
workers = 0
[network]
node_cidr = "192.168.237.0/24"
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

/// Stands in for what prepare-node installs.
const SENTINEL: &str = "/var/lib/devcluster-golden-test";

/// Deletes a golden disk's volume the test made, whatever happens.
struct VolumeCleanup(Option<String>);

impl Drop for VolumeCleanup {
    fn drop(&mut self) {
        if let Some(v) = &self.0 {
            virsh(&["pool-refresh", "devcluster-images"]);
            virsh(&["vol-delete", "--pool", "devcluster-images", v]);
        }
    }
}

/// How many golden disks `images list -o json` shows.
fn golden_disks(t: &mut Test) -> usize {
    let listed = t
        .args(&["images", "list", "-o", "json"])
        .run()
        .status(0)
        .json();
    listed["golden"]
        .as_array()
        .unwrap_or_else(|| panic!("no golden list: {listed}"))
        .len()
}

/// Runs `command` on `node` with `devcluster ssh`; its stdout, trimmed.
fn on(t: &mut Test, node: &str, command: &str) -> String {
    t.args(&["--cluster", "gd", "ssh", node, "--", command])
        .run()
        .status(0)
        .stdout
        .trim()
        .to_string()
}

#[test]
fn a_prepared_disk_becomes_a_golden_disk_that_new_nodes_clone() {
    let image = common::vms::test_image();
    let _cleanup = ClusterCleanup::fresh("gd", &NODES);
    let mut volume_cleanup = VolumeCleanup(None);
    let mut t = Test::new();
    t.file("devcluster.toml", CONFIG);
    t.args(&["images", "import", "guest", &image, "--os", "linux"])
        .run()
        .status(0);
    // containerd & co. (stand-ins) that `up` and `node add` fetch.
    let mirror = NodeSoftwareMirror::create(&t.root.path().join("mirror"));
    let started = Instant::now();

    // `up` stops at prepare-node: nothing is kept from a disk that was not
    // prepared.
    let up = t
        .args(&["--cluster", "gd", "up"])
        .env(NodeSoftwareMirror::ENV, &mirror.url)
        .run()
        .status(1);
    assert!(!up.stdout.contains("golden disk") && !up.stderr.contains("golden disk"));
    assert_eq!(golden_disks(&mut t), 0);
    eprintln!("up failed as expected after {:?}", started.elapsed());

    // Stand in for prepare-node on the control plane, then keep its disk.
    let dirs = t.dirs();
    let st = devcluster::state::load(&dirs, "gd").unwrap().unwrap();
    let plan = st.plan.clone();
    let secrets = devcluster::pki::ensure(&dirs, &plan).unwrap();
    let cp = plan.control_plane().clone();
    let cp_machine_id = on(&mut t, "gd-cp", "cat /etc/machine-id");
    let cp_host_key = on(
        &mut t,
        "gd-cp",
        "sudo cat /etc/ssh/ssh_host_ed25519_key.pub",
    );
    on(
        &mut t,
        "gd-cp",
        &format!(
            "echo prepared | sudo tee {SENTINEL} >/dev/null && sudo touch /var/lib/devcluster/steps/prepare-node.done"
        ),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kept = rt.block_on(async {
        let config = devcluster::providers::ProviderConfig {
            libvirt_uri: plan.libvirt.uri.clone(),
            libvirt_domain_type: plan.libvirt.domain_type,
            cache_dir: dirs.cache.clone(),
        };
        let provider: std::sync::Arc<dyn devcluster::providers::Provider> = std::sync::Arc::from(
            devcluster::providers::open(devcluster::spec::ProviderKind::Libvirt, &config)
                .await
                .unwrap(),
        );
        let fetch = devcluster::images::Fetch::new(&NoProgress).offline(true);
        let bases = devcluster::machines::resolve_bases(&dirs, &plan, provider.kind(), &fetch)
            .await
            .unwrap();
        let capture = devcluster::golden::Capture::for_control_plane(
            &dirs,
            &plan,
            &bases[&cp.image],
            provider.clone(),
            &plan.libvirt.uri,
            &[],
        )
        .expect("no golden disk yet, so one is to be kept");
        let target = SshTarget::for_node(&cp, &secrets).unwrap();
        let (session, _) = wait_for_ssh(&target, Duration::from_secs(120))
            .await
            .unwrap();
        let mut log = NodeLog::open(&dirs, "gd", "gd-cp").unwrap();
        // Another process keeping the same disk: this one leaves it, and
        // touches nothing on the node.
        let id = capture.key.id();
        let held = devcluster::images::cache::try_lock(&dirs, &format!("golden-{id}"))
            .unwrap()
            .unwrap();
        let busy = devcluster::golden::capture(
            &dirs,
            &session,
            &mut log,
            &capture,
            "gd",
            "gd-cp",
            Duration::from_secs(200),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(busy, devcluster::golden::CaptureError::Busy(ref b) if *b == id),
            "{busy}"
        );
        drop(held);
        let kept = devcluster::golden::capture(
            &dirs,
            &session,
            &mut log,
            &capture,
            "gd",
            "gd-cp",
            Duration::from_secs(200),
        )
        .await
        .unwrap();
        let _ = session.close().await;
        // Kept once: a second capture is not offered.
        assert!(
            devcluster::golden::Capture::for_control_plane(
                &dirs,
                &plan,
                &bases[&cp.image],
                provider,
                &plan.libvirt.uri,
                &[],
            )
            .is_none()
        );
        kept
    });
    let id = kept.disk.key.id();
    let volume = kept.disk.volume.clone().expect("kept in libvirt's storage");
    volume_cleanup.0 = Some(volume.name.clone());
    eprintln!(
        "kept golden disk {id}: {} bytes in {:?}",
        kept.disk.size_bytes, kept.took
    );
    assert_eq!(kept.disk.capacity_bytes, 10 << 30);
    assert_eq!(kept.disk.source, "gd/gd-cp");
    assert!(virsh(&["vol-list", "devcluster-images"]).contains(&volume.name));

    // The control plane got everything back: a new SSH connection (pinned
    // host key, the cluster's client key) works; same machine-id; nothing
    // left sealed; the unseal timer stopped.
    assert_eq!(on(&mut t, "gd-cp", "cat /etc/machine-id"), cp_machine_id);
    assert_eq!(
        on(
            &mut t,
            "gd-cp",
            "sudo cat /etc/ssh/ssh_host_ed25519_key.pub"
        ),
        cp_host_key
    );
    assert_eq!(
        on(
            &mut t,
            "gd-cp",
            "test -e /run/devcluster-seal && echo sealed; systemctl is-active devcluster-unseal.timer || true; ls /var/lib/devcluster/steps/ | grep done"
        ),
        "inactive\nprepare-node.done\nprepare-os.done"
    );
    let cp_log = t
        .args(&["--cluster", "gd", "logs", "gd-cp"])
        .run()
        .status(0);
    let lines = step_lines(&cp_log.stdout, "golden-disk");
    // Sealed once: the capture that found the lock held did not seal.
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "seal: /etc/machine-id emptied")
            .count(),
        1,
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("kept as golden disk {id}")))
    );

    // A new node is a linked clone of the golden disk.
    let adding = Instant::now();
    let added = t
        .args(&["--cluster", "gd", "node", "add", "--linux"])
        .env(NodeSoftwareMirror::ENV, &mirror.url)
        .run()
        .status(0)
        .stdout_has("gd-w1 (192.168.237.21) is prepared");
    assert!(
        added.stderr.contains(&format!(
            "golden disk {id} (guest, Kubernetes {}): gd-w1 started prepared; prepare-node took 3m20s on gd/gd-cp",
            plan.kubernetes_version
        )),
        "{}",
        added.stderr
    );
    eprintln!("node add from the golden disk took {:?}", adding.elapsed());
    let disk = virsh(&["vol-dumpxml", "--pool", "devcluster-gd", "gd-w1.qcow2"]);
    assert!(disk.contains(&volume.name), "backing store: {disk}");
    let st = devcluster::state::load(&dirs, "gd").unwrap().unwrap();
    assert_eq!(st.node("gd-w1").from_golden.as_deref(), Some(id.as_str()));
    let status = t
        .args(&["--cluster", "gd", "status", "-o", "json"])
        .run()
        .status(0)
        .json();
    assert_eq!(status["nodes"][0]["golden_disk"], serde_json::Value::Null);
    assert_eq!(status["nodes"][1]["name"], "gd-w1");
    assert_eq!(status["nodes"][1]["golden_disk"], id.as_str());
    let w1_log = t
        .args(&["--cluster", "gd", "logs", "gd-w1"])
        .run()
        .status(0);
    assert!(
        step_lines(&w1_log.stdout, "prepare-os")
            .iter()
            .any(|l| l.starts_with("finished in"))
    );
    assert_eq!(
        step_lines(&w1_log.stdout, "prepare-node"),
        ["skipped: already done (marker in the guest)"]
    );

    // The clone has the prepared content and an identity of its own.
    assert_eq!(on(&mut t, "gd-w1", &format!("cat {SENTINEL}")), "prepared");
    assert_eq!(on(&mut t, "gd-w1", "hostname"), "gd-w1");
    let w1_machine_id = on(&mut t, "gd-w1", "cat /etc/machine-id");
    assert_eq!(w1_machine_id.len(), 32, "{w1_machine_id}");
    assert_ne!(w1_machine_id, cp_machine_id);
    assert_ne!(
        on(
            &mut t,
            "gd-w1",
            "sudo cat /etc/ssh/ssh_host_ed25519_key.pub"
        ),
        cp_host_key
    );
    // cloud-init knows only the clone's own instance: the control plane's
    // state (and its user-data with the host private key) was not copied.
    let instances = on(&mut t, "gd-w1", "sudo ls /var/lib/cloud/instances");
    assert_eq!(instances.lines().count(), 1, "{instances}");
    assert!(instances.starts_with("gd-w1"), "{instances}");
    // Nor is the control plane's host key anywhere on the clone.
    let cp_key_body = cp_host_key.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(
        on(
            &mut t,
            "gd-w1",
            &format!(
                "sudo grep -rlF {cp_key_body} /var/lib/cloud /etc/ssh /home/devcluster/.ssh /var/log/cloud-init.log /var/log/cloud-init-output.log || true"
            )
        ),
        ""
    );

    let listed = t
        .args(&["images", "list", "-o", "json"])
        .run()
        .status(0)
        .json();
    let golden = &listed["golden"][0];
    assert_eq!(golden["id"], id.as_str(), "{listed}");
    assert_eq!(golden["used_by"][0], "gd", "{listed}");

    // The golden disk outlives the cluster (it is shared); prune deletes it
    // once no cluster uses it.
    t.args(&["--cluster", "gd", "destroy", "--yes"])
        .run()
        .status(0);
    assert!(virsh(&["vol-list", "devcluster-images"]).contains(&volume.name));
    t.args(&["images", "prune"])
        .run()
        .status(0)
        .stderr_has(&format!("removed golden disk {id} of guest"));
    virsh(&["pool-refresh", "devcluster-images"]);
    assert!(!virsh(&["vol-list", "devcluster-images"]).contains(&volume.name));
    assert_eq!(golden_disks(&mut t), 0);
    eprintln!("golden disk test took {:?}", started.elapsed());
}
