//! The VirtualBox provider against a stand-in VBoxManage
//! (`testdata/virtualbox/vboxmanage-standin.sh`) that keeps VMs and
//! host-only networks as files and answers in the shapes of real recorded
//! outputs (sources in `testdata/virtualbox/README.md`), with injected
//! lock, not-ready and exit-0 errors. No VirtualBox runs here: what this
//! proves is the Rust side — which commands, in which order, how their
//! output and errors are read — not VirtualBox's behaviour.

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use devcluster::plan::Os;
use devcluster::providers::virtualbox::vboxmanage::Runner;
use devcluster::providers::virtualbox::{NetKind, VirtualBox};
use devcluster::providers::{
    BaseImage, Firmware, HostEntry, NetworkSpec, Provider, Shutdown, VmSpec, VmState,
};
use devcluster::spec::NetworkMode;

fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/virtualbox/vboxmanage-standin.sh")
}

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("vbox")
    }

    /// A provider whose VBoxManage is the stand-in keeping its world here.
    fn provider(&self, kind: NetKind) -> VirtualBox {
        // The stand-in finds its state through the environment: a wrapper
        // script sets it, so parallel tests keep their own worlds.
        let wrapper = self.dir.path().join("VBoxManage");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nVBOX_STANDIN_DIR='{}' exec '{}' \"$@\"\n",
                self.state().display(),
                standin().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(self.state()).unwrap();
        VirtualBox::with_runner(
            Runner::new(wrapper).with_backoff(Duration::from_millis(5)),
            kind,
        )
        .with_poll(Duration::from_millis(20))
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn count(&self, prefix: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    /// Injects `fixture` as stderr (and `code` as exit code) for the next
    /// `times` calls starting with `prefix`.
    fn fault(&self, prefix: &str, fixture: &str, times: u32, code: i32) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state().join("faults"))
            .unwrap();
        writeln!(f, "{prefix}\t{fixture}\t{times}\t{code}").unwrap();
    }

    fn base(&self) -> BaseImage {
        let path = self.dir.path().join("ubuntu.vdi");
        std::fs::write(&path, b"<<< Oracle VM VirtualBox Disk Image >>>\n").unwrap();
        BaseImage {
            name: "ubuntu-24.04".into(),
            path,
            sha256: "ab".repeat(32),
            firmware: Firmware::Uefi,
            secure_boot: false,
        }
    }

    fn vm(&self, name: &str, host: u8, os: Os) -> VmSpec {
        VmSpec {
            cluster: "vbdev".into(),
            name: name.into(),
            role: "worker".into(),
            os,
            cpus: 2,
            memory_mib: 2048,
            disk_gib: 20,
            mac: format!("02:11:22:33:00:{host:02x}"),
            base: self.base(),
            golden: None,
            install_iso: None,
            windows_devices: Default::default(),
            drivers_iso: None,
            seed_iso: format!("seed of {name}").into_bytes(),
            serial_log: self.dir.path().join(format!("{name}.serial.log")),
        }
    }

    fn info(&self, vm: &str) -> String {
        std::fs::read_to_string(self.state().join("vms").join(vm).join("info")).unwrap()
    }
}

fn net() -> NetworkSpec {
    NetworkSpec {
        cluster: "vbdev".into(),
        subnet: "192.168.57.0/24".parse().unwrap(),
        gateway: "192.168.57.1".parse().unwrap(),
        mode: NetworkMode::Nat,
        hosts: vec![HostEntry {
            name: "vbdev-cp".into(),
            mac: "02:11:22:33:00:0a".into(),
            ip: "192.168.57.10".parse().unwrap(),
        }],
    }
}

/// The cluster network and the node `vbdev-cp`, created.
async fn with_control_plane(h: &Host, p: &VirtualBox) {
    p.ensure_network(&net()).await.unwrap();
    p.create_node(&h.vm("vbdev-cp", 0x0a, Os::Linux))
        .await
        .unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn whole_lifecycle_on_a_host_only_interface() {
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    rt().block_on(async {
        p.ensure_network(&net()).await.unwrap();
        p.ensure_network(&net()).await.unwrap();
        assert_eq!(h.count("hostonlyif create"), 1, "{:?}", h.calls());
        assert_eq!(
            h.count("hostonlyif ipconfig vboxnet0 --ip 192.168.57.1 --netmask 255.255.255.0"),
            1
        );
        // A new provider (another devcluster process) finds the interface
        // through the extra data, not through memory.
        let p2 = h.provider(NetKind::Interface);
        p2.ensure_network(&net()).await.unwrap();
        assert_eq!(h.count("hostonlyif create"), 1);

        let cp = h.vm("vbdev-cp", 0x0a, Os::Linux);
        let w1 = h.vm("vbdev-w1", 0x15, Os::Linux);
        let (a, b) = tokio::join!(p.create_node(&cp), p.create_node(&w1));
        a.unwrap();
        b.unwrap();
        // One base VM with one snapshot; each node a linked clone of it.
        assert_eq!(h.count("createvm --name devcluster-base-ubuntu-24.04-abababababab"), 1);
        assert_eq!(h.count("clonemedium disk"), 1);
        assert_eq!(h.count("snapshot devcluster-base-ubuntu-24.04-abababababab take base"), 1);
        assert_eq!(
            h.count("clonevm devcluster-base-ubuntu-24.04-abababababab --snapshot base --options link --name vbdev-"),
            2
        );
        let info = h.info("vbdev-cp");
        for line in [
            "groups=\"/devcluster/vbdev\"",
            "nic1=\"nat\"",
            "macaddress1=\"02112233010A\"",
            "nic2=\"hostonly\"",
            "hostonlyadapter2=\"vboxnet0\"",
            "macaddress2=\"02112233000A\"",
            "firmware=\"EFI\"",
            "memory=2048",
            "ostype=\"Ubuntu_64\"",
        ] {
            assert!(info.lines().any(|l| l == line), "{line} missing:\n{info}");
        }
        let dir = h.state().join("machines/vbdev-cp");
        let seed = dir.join("seed.iso");
        assert_eq!(std::fs::read(&seed).unwrap(), b"seed of vbdev-cp");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(info.contains(&format!("\"SATA-1-0\"=\"{}\"", seed.display())));
        // The 3.5 GiB base grows to the planned 20 GiB.
        assert_eq!(h.count("modifymedium disk"), 2);
        assert!(h.calls().iter().any(|c| c.ends_with("--resize 20480")));

        // Idempotent: creating again changes nothing.
        let before = h.count("clonevm");
        p.create_node(&cp).await.unwrap();
        assert_eq!(h.count("clonevm"), before);

        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Off);
        p.start("vbdev-cp").await.unwrap();
        p.start("vbdev-cp").await.unwrap();
        assert_eq!(h.count("startvm vbdev-cp --type headless"), 1);
        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Running);

        p.suspend("vbdev-cp").await.unwrap();
        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Saved);
        p.suspend("vbdev-cp").await.unwrap();
        assert_eq!(h.count("controlvm vbdev-cp savestate"), 1);
        p.resume("vbdev-cp").await.unwrap();
        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Running);
        assert_eq!(h.count("startvm vbdev-cp --type headless"), 2);

        assert_eq!(
            p.shutdown("vbdev-cp", Duration::from_secs(5)).await.unwrap(),
            Shutdown::Graceful
        );
        assert_eq!(
            p.shutdown("vbdev-cp", Duration::from_secs(5)).await.unwrap(),
            Shutdown::AlreadyOff
        );
        assert_eq!(h.count("controlvm vbdev-cp acpipowerbutton"), 1);
        assert_eq!(h.count("controlvm vbdev-cp poweroff"), 0);

        p.start("vbdev-w1").await.unwrap();
        let mut vms = p.cluster_vms("vbdev").await.unwrap();
        vms.sort();
        assert_eq!(vms, ["vbdev-cp", "vbdev-w1"]);
        assert!(p.cluster_vms("other").await.unwrap().is_empty());

        // The network stays while a VM uses it.
        p.remove_network("vbdev").await.unwrap();
        assert_eq!(h.count("hostonlyif remove"), 0);

        // Destroy, a running node included.
        p.delete_node("vbdev-w1").await.unwrap();
        p.delete_node("vbdev-cp").await.unwrap();
        p.delete_node("vbdev-cp").await.unwrap();
        assert_eq!(h.count("controlvm vbdev-w1 poweroff"), 1);
        assert_eq!(h.count("unregistervm vbdev-cp --delete"), 1);
        assert!(!dir.exists(), "the VM folder and its seed are gone");
        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Absent);
        let fresh = h.provider(NetKind::Interface);
        fresh.remove_network("vbdev").await.unwrap();
        fresh.remove_network("vbdev").await.unwrap();
        assert_eq!(h.count("hostonlyif remove vboxnet0"), 1);
        assert!(!h.state().join("ifs/vboxnet0").exists());
        assert!(!h.state().join("props/global_devcluster_hostonlyif_vbdev").exists());
        fresh.remove_storage("vbdev").await.unwrap();
    });
    // Only the shared base VM is left, as the image cache is.
    let vms: Vec<_> = std::fs::read_dir(h.state().join("vms"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(vms, ["devcluster-base-ubuntu-24.04-abababababab"]);
}

#[test]
fn locked_and_not_ready_are_retried_then_reported() {
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    rt().block_on(async {
        with_control_plane(&h, &p).await;
        h.fault("startvm vbdev-cp", "error-locked.txt", 2, 1);
        h.fault("showvminfo vbdev-cp", "error-not-ready.txt", 1, 1);
        p.start("vbdev-cp").await.unwrap();
        assert_eq!(h.count("startvm vbdev-cp"), 3, "{:?}", h.calls());
        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Running);

        // Still locked after every attempt: the error names the command,
        // the attempts and VirtualBox's own message.
        h.fault("controlvm vbdev-cp savestate", "error-locked.txt", 9, 1);
        let err = p.suspend("vbdev-cp").await.unwrap_err();
        let chain = devcluster::error::one_line(&err);
        assert_eq!(h.count("controlvm vbdev-cp savestate"), 5);
        assert!(chain.contains("controlvm vbdev-cp savestate"), "{chain}");
        assert!(chain.contains("is already locked by a session"), "{chain}");
    });
}

#[test]
fn an_error_on_stderr_fails_even_with_exit_0() {
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    rt().block_on(async {
        with_control_plane(&h, &p).await;
        h.fault("startvm vbdev-cp", "error-vtx-exit0.txt", 1, 0);
        let err = p.start("vbdev-cp").await.unwrap_err();
        let chain = devcluster::error::one_line(&err);
        assert!(chain.contains("exit 0, error on stderr"), "{chain}");
        assert!(chain.contains("VT-x is not available"), "{chain}");
        // Not a transient error: tried once.
        assert_eq!(h.count("startvm vbdev-cp"), 1);
    });
}

#[test]
fn a_guest_ignoring_acpi_is_powered_off_after_the_timeout() {
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    rt().block_on(async {
        with_control_plane(&h, &p).await;
        p.start("vbdev-cp").await.unwrap();
        std::fs::write(h.state().join("ignore-acpi"), "").unwrap();
        let r = p
            .shutdown("vbdev-cp", Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(r, Shutdown::Forced);
        assert_eq!(h.count("controlvm vbdev-cp acpipowerbutton"), 1);
        assert_eq!(h.count("controlvm vbdev-cp poweroff"), 1);
        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Off);
        // A suspended VM halts by dropping its saved state.
        p.start("vbdev-cp").await.unwrap();
        p.suspend("vbdev-cp").await.unwrap();
        assert_eq!(
            p.shutdown("vbdev-cp", Duration::from_millis(200))
                .await
                .unwrap(),
            Shutdown::Forced
        );
        assert_eq!(h.count("discardstate vbdev-cp"), 1);
    });
}

#[test]
fn a_creation_cut_short_is_made_again_and_any_state_is_deleted() {
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    rt().block_on(async {
        p.ensure_network(&net()).await.unwrap();
        let cp = h.vm("vbdev-cp", 0x0a, Os::Linux);
        h.fault("storageattach vbdev-cp", "error-not-found.txt", 1, 1);
        assert!(p.create_node(&cp).await.is_err());
        // The clone exists but was never marked created.
        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Off);
        p.create_node(&cp).await.unwrap();
        assert_eq!(h.count("unregistervm vbdev-cp --delete"), 1);
        assert_eq!(h.count("clonevm"), 2);
        assert!(h.info("vbdev-cp").contains("\"SATA-1-0\""));

        // A base VM cut short before its snapshot is made again too.
        let other = BaseImage {
            sha256: "cd".repeat(32),
            ..h.base()
        };
        let w1 = VmSpec {
            base: other,
            ..h.vm("vbdev-w1", 0x15, Os::Linux)
        };
        h.fault(
            "snapshot devcluster-base-ubuntu-24.04-cdcd",
            "error-not-ready.txt",
            9,
            1,
        );
        assert!(p.create_node(&w1).await.is_err());
        p.create_node(&w1).await.unwrap();
        assert_eq!(h.count("unregistervm devcluster-base-ubuntu-24.04-cdcd"), 1);

        // Saved and running VMs are deleted too.
        p.start("vbdev-cp").await.unwrap();
        p.suspend("vbdev-cp").await.unwrap();
        p.delete_node("vbdev-cp").await.unwrap();
        assert_eq!(h.count("discardstate vbdev-cp"), 1);
        assert_eq!(p.state("vbdev-cp").await.unwrap(), VmState::Absent);
        // Deleting what is gone, or was never there, is fine.
        p.delete_node("vbdev-w9").await.unwrap();
        assert!(matches!(
            p.start("vbdev-w9").await,
            Err(devcluster::providers::ProviderError::NoSuchVm(_))
        ));
    });
}

#[test]
fn windows_nodes_and_macos_host_only_networks() {
    let h = Host::new();
    let p = h.provider(NetKind::Network);
    rt().block_on(async {
        p.ensure_network(&net()).await.unwrap();
        p.ensure_network(&net()).await.unwrap();
        assert_eq!(
            h.count(
                "hostonlynet add --name devcluster-vbdev --netmask 255.255.255.0 --lower-ip 192.168.57.0 --upper-ip 192.168.57.0 --enable"
            ),
            1,
            "{:?}",
            h.calls()
        );
        let win = h.vm("vbdev-win1", 0x1f, Os::Windows);
        p.create_node(&win).await.unwrap();
        let info = h.info("vbdev-win1");
        for line in [
            "nic2=\"hostonlynetwork\"",
            "hostonly-network2=\"devcluster-vbdev\"",
            "ostype=\"Windows2022_64\"",
            "rtcuseutc=\"off\"",
            "macaddress2=\"02112233001F\"",
        ] {
            assert!(info.lines().any(|l| l == line), "{line} missing:\n{info}");
        }
        p.start("vbdev-win1").await.unwrap();
        p.delete_node("vbdev-win1").await.unwrap();
        p.remove_network("vbdev").await.unwrap();
        assert_eq!(h.count("hostonlynet remove --name devcluster-vbdev"), 1);
        assert!(!h.state().join("nets/devcluster-vbdev").exists());
    });
}

#[test]
fn a_refused_host_only_range_is_an_error_naming_it() {
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    // The stand-in refuses, as VirtualBox >= 6.1.28 does, what
    // networks.conf does not allow.
    std::fs::write(h.state().join("allowed-prefix"), "192.168.5").unwrap();
    let mut outside = net();
    outside.subnet = "192.168.100.0/24".parse().unwrap();
    outside.gateway = "192.168.100.1".parse().unwrap();
    rt().block_on(async {
        let err = p.ensure_network(&outside).await.unwrap_err();
        let chain = devcluster::error::one_line(&err);
        assert!(chain.contains("192.168.100.0/24"), "{chain}");
        assert!(chain.contains("E_ACCESSDENIED"), "{chain}");
        p.ensure_network(&net()).await.unwrap();
    });
}

/// `up --provider virtualbox --dry-run` plans a subnet VirtualBox allows
/// without networks.conf (this host has none), and runs no VBoxManage.
#[test]
fn dry_run_plans_an_allowed_subnet_and_touches_nothing() {
    use common::{Test, files_under};
    assert!(
        !Path::new("/etc/vbox/networks.conf").exists(),
        "this test assumes a host without /etc/vbox/networks.conf"
    );
    let h = Host::new();
    let mut t = Test::new();
    let run = t
        .env("DEVCLUSTER_VBOXMANAGE", standin().to_str().unwrap())
        .env("VBOX_STANDIN_DIR", h.state().to_str().unwrap())
        .args(&[
            "up",
            "--provider",
            "virtualbox",
            "--dry-run",
            "--windows-workers",
            "1",
            "-o",
            "json",
        ])
        .run()
        .status(0);
    let plan = run.json();
    let subnet: devcluster::net::Cidr =
        plan["network"]["subnet"].as_str().unwrap().parse().unwrap();
    let allowed: devcluster::net::Cidr = "192.168.56.0/21".parse().unwrap();
    assert!(
        allowed.contains(subnet.addr()) && subnet.prefix() == 24,
        "{subnet}"
    );
    assert_eq!(plan["provider"].as_str(), Some("virtualbox"));
    for n in plan["nodes"].as_array().unwrap() {
        let ip: std::net::Ipv4Addr = n["ip"].as_str().unwrap().parse().unwrap();
        assert!(subnet.contains(ip));
    }
    assert!(
        files_under(&t.home()).is_empty(),
        "{:?}",
        files_under(&t.home())
    );
    assert!(!h.state().join("calls.log").exists(), "VBoxManage ran");
    // A pinned node_cidr outside the allowed range: the exact line to add.
    let mut t = Test::new();
    t.file(
        "devcluster.toml",
        "[network]\nnode_cidr = \"192.168.150.0/24\"\n",
    )
    .args(&["up", "--provider", "virtualbox", "--dry-run"])
    .run()
    .status(1)
    .stderr_has("outside the ranges VirtualBox allows")
    .stderr_has("`* 192.168.150.0/24` to /etc/vbox/networks.conf");
}

#[test]
fn the_stand_in_passes_shellcheck() {
    let shellcheck = common::require_tool("shellcheck");
    let out = std::process::Command::new(shellcheck)
        .arg(standin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
