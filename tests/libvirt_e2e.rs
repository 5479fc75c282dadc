//! Real VMs on libvirt + QEMU (software emulation), from the guest test
//! image (testdata/guest), on an isolated network: the libvirt provider and
//! our seed ISO, end to end. Needs libvirtd at qemu:///system and
//! DEVCLUSTER_TEST_IMAGE; `scripts/test.sh` provides both and turns on the
//! `test-libvirt` feature.

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]
#![allow(clippy::print_stderr)] // timings of the real VMs, shown with --nocapture

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use devcluster::plan::{self, Plan, Surroundings};
use devcluster::providers::libvirt::Libvirt;
use devcluster::providers::{
    BaseImage, Firmware, NetworkSpec, Provider, ProviderConfig, Shutdown, VmSpec, VmState,
};
use devcluster::spec::{DomainType, Layer, NetworkMode, Origin, Val};

const URI: &str = "qemu:///system";

fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .expect("virsh must be installed (scripts/setup-test-host.sh)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn test_image() -> PathBuf {
    let p = std::env::var_os("DEVCLUSTER_TEST_IMAGE")
        .map(PathBuf::from)
        .expect("DEVCLUSTER_TEST_IMAGE: run scripts/test.sh, which builds the guest test image");
    assert!(p.is_file(), "{} does not exist", p.display());
    p
}

fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    format!("{:x}", h.finalize())
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

struct Guest<'a> {
    name: String,
    ip: Ipv4Addr,
    key: &'a Path,
    known_hosts: &'a Path,
}

impl Guest<'_> {
    /// Runs a command over the system ssh with our key and the pinned host
    /// keys (StrictHostKeyChecking=yes: no trust on first use).
    fn ssh(&self, cmd: &str) -> Option<String> {
        let out = Command::new("ssh")
            .args(["-i"])
            .arg(self.key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("devcluster@{}", self.ip))
            .arg(cmd)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn agent(&self, command: &str) -> Option<String> {
        let (ok, out) = virsh(&[
            "qemu-agent-command",
            &self.name,
            &format!("{{\"execute\":\"{command}\"}}"),
        ]);
        ok.then_some(out)
    }

    /// IPv4 addresses the guest agent reports (what the guest configured).
    fn agent_ipv4(&self) -> Vec<String> {
        let (ok, out) = virsh(&["domifaddr", &self.name, "--source", "agent"]);
        if !ok {
            return Vec::new();
        }
        out.lines()
            .filter(|l| l.contains("ipv4"))
            .filter_map(|l| l.split_whitespace().last())
            .filter_map(|a| a.split('/').next())
            .filter(|a| !a.starts_with("127."))
            .map(str::to_string)
            .collect()
    }

    fn uptime(&self) -> f64 {
        self.ssh("cut -d' ' -f1 /proc/uptime")
            .and_then(|s| s.parse().ok())
            .expect("uptime over ssh")
    }
}

fn plan_for(cluster: &str) -> Plan {
    let layer = Layer {
        workers: Some(Val::new(1, Origin::Default)),
        node_cidr: Some(Val::new("192.168.233.0/24".into(), Origin::Default)),
        libvirt_network_mode: Some(Val::new(NetworkMode::Isolated, Origin::Default)),
        ..Layer::default()
    };
    let spec = devcluster::spec::resolve(Val::new(cluster.into(), Origin::Default), layer).unwrap();
    plan::plan(&spec, &Surroundings::default()).unwrap()
}

/// Removes the test cluster from libvirt even when the test fails halfway,
/// so a failed run leaves no VMs burning CPU.
struct Cleanup(&'static str, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for vm in &self.1 {
            virsh(&["destroy", vm]);
            virsh(&["undefine", vm, "--nvram", "--managed-save"]);
        }
        let pool = format!("devcluster-{}", self.0);
        virsh(&["pool-destroy", &pool]);
        virsh(&["pool-undefine", &pool]);
        // Disks left behind would be picked up again by the next run.
        let _ = std::fs::remove_dir_all(format!("/var/lib/libvirt/images/{pool}"));
        virsh(&["net-destroy", &pool]);
        virsh(&["net-undefine", &pool]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_boot_from_our_disks_and_seeds() {
    let image = test_image();
    let world = common::World::new();
    let cluster = "e2e4";
    let _cleanup = Cleanup(cluster, vec!["e2e4-cp".into(), "e2e4-w1".into()]);
    let plan = plan_for(cluster);
    devcluster::state::save(
        &world.dirs,
        &devcluster::state::ClusterState::new(plan.clone()),
    )
    .unwrap();
    let secrets = devcluster::pki::ensure(&world.dirs, &plan).unwrap();

    let provider = Libvirt::open(&ProviderConfig {
        libvirt_uri: URI.into(),
        libvirt_domain_type: DomainType::Qemu,
        cache_dir: world.dirs.cache.clone(),
    })
    .await
    .expect("libvirtd at qemu:///system (scripts/setup-test-host.sh starts it)");
    // Start clean if an earlier run was killed.
    for n in &plan.nodes {
        provider.delete_node(&n.name).await.unwrap();
    }
    provider.remove_storage(cluster).await.unwrap();
    provider.remove_network(cluster).await.unwrap();

    let base = BaseImage {
        name: "debian-12-devcluster".into(),
        sha256: sha256_file(&image),
        path: image,
        firmware: Firmware::Uefi,
        secure_boot: false,
    };
    let start = Instant::now();
    provider
        .ensure_network(&NetworkSpec::from_plan(&plan))
        .await
        .unwrap();
    let logs = world.dirs.cluster(cluster).join("logs");
    for n in &plan.nodes {
        let host = secrets.host_key(&n.name).unwrap();
        let seed = devcluster::seed::seed_inputs_for(
            &plan,
            n,
            &secrets.ssh_client.public_line,
            host.private_openssh.expose(),
            &host.public_line,
        );
        let vm = VmSpec {
            cluster: cluster.into(),
            name: n.name.clone(),
            role: n.role.as_str().into(),
            os: n.os,
            cpus: 1,
            // The guest image needs far less than a kubeadm node.
            memory_mib: 768,
            disk_gib: 4,
            mac: n.mac.clone(),
            base: base.clone(),
            golden: None,
            seed_iso: devcluster::seed::linux_seed_iso(&seed).unwrap(),
            install_iso: None,
            windows_devices: Default::default(),
            drivers_iso: None,
            serial_log: logs.join(format!("{}.serial.log", n.name)),
        };
        provider.create_node(&vm).await.unwrap();
        provider.create_node(&vm).await.unwrap(); // idempotent
        provider.start(&n.name).await.unwrap();
    }
    let created = start.elapsed();

    let guests: Vec<Guest> = plan
        .nodes
        .iter()
        .map(|n| Guest {
            name: n.name.clone(),
            ip: n.ip,
            key: &secrets.ssh_client_key_path,
            known_hosts: &secrets.known_hosts_path,
        })
        .collect();
    for g in &guests {
        // Booted from its own disk: the guest agent of the image answers.
        let (_, t_agent) = wait_for(
            &format!("{} guest agent", g.name),
            Duration::from_secs(420),
            || g.agent("guest-ping"),
        );
        // Our seed applied: the planned address, our user and key, the
        // pinned host key (ssh refuses any other), the planned hostname.
        let (ips, _) = wait_for(
            &format!("{} planned IP", g.name),
            Duration::from_secs(300),
            || {
                let ips = g.agent_ipv4();
                ips.contains(&g.ip.to_string()).then_some(ips)
            },
        );
        let (hostname, t_ssh) =
            wait_for(&format!("{} ssh", g.name), Duration::from_secs(300), || {
                g.ssh("hostname")
            });
        assert_eq!(hostname, g.name);
        let ds = g.ssh("cat /run/cloud-init/status.json").unwrap_or_default();
        assert!(
            ds.contains("NoCloud"),
            "{}: datasource is not NoCloud: {ds}",
            g.name
        );
        eprintln!(
            "{}: agent after {t_agent:?}, ssh after {t_ssh:?} (created in {created:?}), addresses {ips:?}",
            g.name
        );
        assert!(
            std::fs::metadata(logs.join(format!("{}.serial.log", g.name)))
                .map(|m| m.len() > 0)
                .unwrap_or(false),
            "serial console is logged"
        );
    }
    // The nodes know each other by name (our /etc/hosts) and reach each
    // other on the cluster network (TCP to the other's sshd; the minimal
    // image has no ping).
    let other = &guests[1];
    let resolved = guests[0]
        .ssh(&format!("getent hosts {}", other.name))
        .unwrap_or_default();
    let tokens: Vec<&str> = resolved.split_whitespace().collect();
    assert_eq!(
        tokens.first().copied(),
        Some(other.ip.to_string().as_str()),
        "{resolved}"
    );
    assert!(tokens.contains(&other.name.as_str()), "{resolved}");
    assert!(
        guests[0]
            .ssh(&format!(
                "timeout 5 bash -c 'echo > /dev/tcp/{}/22'",
                other.name
            ))
            .is_some(),
        "{} cannot reach {} by name",
        guests[0].name,
        other.name
    );

    // Graceful shutdown, then the same address after a new boot.
    let g = &guests[1];
    let t = Instant::now();
    let how = provider
        .shutdown(&g.name, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(how, Shutdown::Graceful, "ACPI shutdown completes");
    eprintln!("{}: graceful shutdown in {:?}", g.name, t.elapsed());
    assert_eq!(provider.state(&g.name).await.unwrap(), VmState::Off);
    provider.start(&g.name).await.unwrap();
    wait_for("ssh after restart", Duration::from_secs(300), || {
        g.ssh("true")
    });
    assert!(g.agent_ipv4().contains(&g.ip.to_string()));

    // Suspend (memory to disk, RAM freed) and resume: the guest keeps running.
    let before = g.uptime();
    let t = Instant::now();
    provider.suspend(&g.name).await.unwrap();
    eprintln!("{}: suspended in {:?}", g.name, t.elapsed());
    assert_eq!(provider.state(&g.name).await.unwrap(), VmState::Saved);
    let (_, list) = virsh(&["list", "--name"]);
    assert!(
        !list.lines().any(|l| l.trim() == g.name),
        "a saved VM holds no RAM"
    );
    let t = Instant::now();
    provider.resume(&g.name).await.unwrap();
    eprintln!("{}: resumed in {:?}", g.name, t.elapsed());
    assert_eq!(provider.state(&g.name).await.unwrap(), VmState::Running);
    let (after, _) = wait_for("ssh after resume", Duration::from_secs(120), || {
        g.ssh("cut -d' ' -f1 /proc/uptime")
            .and_then(|s| s.parse::<f64>().ok())
    });
    assert!(
        after >= before,
        "resumed, not rebooted: uptime {before} -> {after}"
    );

    // Delete everything; nothing of the cluster is left in libvirt.
    for n in &plan.nodes {
        provider.delete_node(&n.name).await.unwrap();
        provider.delete_node(&n.name).await.unwrap();
    }
    provider.remove_storage(cluster).await.unwrap();
    provider.remove_network(cluster).await.unwrap();
    let (_, domains) = virsh(&["list", "--all", "--name"]);
    assert!(!domains.contains("e2e4-"), "domains left: {domains}");
    let (_, nets) = virsh(&["net-list", "--all", "--name"]);
    assert!(!nets.contains("devcluster-e2e4"), "network left: {nets}");
    let (_, pools) = virsh(&["pool-list", "--all", "--name"]);
    assert!(!pools.contains("devcluster-e2e4"), "pool left: {pools}");
    assert!(!Path::new("/var/lib/libvirt/images/devcluster-e2e4").exists());
    let (_, vols) = virsh(&["vol-list", devcluster::providers::libvirt::IMAGES_POOL]);
    assert!(!vols.contains("e2e4"), "cluster volumes left: {vols}");
}
