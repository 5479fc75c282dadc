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

/// The builder's network: isolated, no host entries (what `winbuild` asks).
fn build_net() -> NetworkSpec {
    NetworkSpec {
        cluster: "buildvb".into(),
        subnet: "192.168.250.0/24".parse().unwrap(),
        gateway: "192.168.250.1".parse().unwrap(),
        mode: NetworkMode::Isolated,
        hosts: Vec::new(),
    }
}

/// A stand-in for a secret the seed ISO carries (the Administrator
/// password's encoding): it must reach the VM folder's seed file and no
/// command line.
const SEED_SECRET: &str = "Adm1n-Passw0rd-FIXTURE";

impl Host {
    fn builder(&self) -> VmSpec {
        let iso = self.dir.path().join("SERVER_EVAL_x64FRE_en-us.iso");
        std::fs::write(&iso, b"stand-in installation ISO").unwrap();
        VmSpec {
            cluster: "buildvb".into(),
            name: "devcluster-build-windows-server-2025".into(),
            role: "builder".into(),
            os: Os::Windows,
            cpus: 2,
            memory_mib: 4096,
            disk_gib: 64,
            mac: "52:54:00:dc:b0:01".into(),
            base: BaseImage {
                name: "windows-server-2025".into(),
                path: iso.clone(),
                sha256: "ef".repeat(32),
                firmware: Firmware::Uefi,
                secure_boot: true,
            },
            golden: None,
            install_iso: Some(iso),
            windows_devices: Default::default(),
            drivers_iso: None,
            seed_iso: format!("DCBUILD autounattend.xml {SEED_SECRET}").into_bytes(),
            serial_log: self.dir.path().join("builder.serial.log"),
        }
    }

    /// Calls with this host's temporary folder written as `$T`, and the
    /// ones that only read (showvminfo, guestproperty get, list) left out.
    fn changes(&self, from: usize) -> Vec<String> {
        let t = self.dir.path().display().to_string();
        self.calls()[from..]
            .iter()
            .filter(|c| {
                !c.starts_with("showvminfo")
                    && !c.starts_with("guestproperty get")
                    && !c.starts_with("list ")
                    && !c.starts_with("getextradata")
            })
            .map(|c| c.replace(&t, "$T"))
            .collect()
    }

    fn nvram(&self, vm: &str) -> String {
        std::fs::read_to_string(self.state().join("vms").join(vm).join("nvram")).unwrap_or_default()
    }
}

const BUILDER: &str = "devcluster-build-windows-server-2025";
const WINBASE: &str = "devcluster-winbase-0123abcd";

/// The whole Windows path of the provider, command by command: the builder
/// (blank disk, ISO and seed DVDs, one NIC on an internal network, EFI and
/// Secure Boot, the serial file), key presses, keeping its disk as a base
/// VM, removing the builder without the base, a Windows node as a linked
/// clone of that base, and `remove_golden` refusing while the clone lives.
#[test]
fn windows_builder_keep_disk_and_a_node_from_the_kept_base() {
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    let b = h.builder();
    rt().block_on(async {
        assert!(p.capabilities().windows_builds);
        assert_eq!(p.disk_format(), devcluster::images::Format::Vdi);
        // The builder's network is internal: nothing on the host, so no
        // host-only interface and no networks.conf range.
        p.ensure_network(&build_net()).await.unwrap();
        assert!(h.calls().is_empty(), "{:?}", h.calls());

        p.create_node(&b).await.unwrap();
        let m = "$T/vbox/machines/devcluster-build-windows-server-2025";
        let expected: Vec<String> = [
            format!("createvm --name {BUILDER} --groups /devcluster/buildvb --ostype Windows2022_64 --register"),
            format!("guestproperty set {BUILDER} /devcluster/cluster buildvb"),
            format!("createmedium disk --filename {m}/disk.vdi --size 65536 --format VDI"),
            format!("storagectl {BUILDER} --name SATA --add sata --controller IntelAhci --portcount 3"),
            format!("storageattach {BUILDER} --storagectl SATA --port 0 --device 0 --type hdd --medium {m}/disk.vdi"),
            format!("storageattach {BUILDER} --storagectl SATA --port 1 --device 0 --type dvddrive --medium $T/SERVER_EVAL_x64FRE_en-us.iso"),
            format!("storageattach {BUILDER} --storagectl SATA --port 2 --device 0 --type dvddrive --medium {m}/seed.iso"),
            format!("modifyvm {BUILDER} --ostype Windows2022_64 --memory 4096 --cpus 2 --firmware efi --ioapic on --rtcuseutc off --nic1 intnet --intnet1 devcluster-buildvb --nictype1 82540EM --macaddress1 525400DCB001 --cableconnected1 on --nic2 none --uart1 0x3F8 4 --uartmode1 file $T/builder.serial.log --boot1 disk --boot2 dvd --boot3 none --boot4 none"),
            format!("modifynvram {BUILDER} inituefivarstore"),
            format!("modifynvram {BUILDER} enrollmssignatures"),
            format!("modifynvram {BUILDER} enrollorclpk"),
            format!("modifynvram {BUILDER} secureboot --enable"),
            format!("guestproperty set {BUILDER} /devcluster/created 1"),
        ]
        .into();
        assert_eq!(h.changes(0), expected);
        let info = h.info(BUILDER);
        for line in [
            "firmware=\"EFI\"",
            "nic1=\"intnet\"",
            "nictype1=\"82540EM\"",
            "nic2=\"none\"",
            "boot1=\"disk\"",
            "boot2=\"dvd\"",
        ] {
            assert!(info.lines().any(|l| l == line), "{line} missing:\n{info}");
        }
        assert_eq!(
            h.nvram(BUILDER),
            "store\nenrollmssignatures\nenrollorclpk\nsecureboot --enable\n"
        );
        let seed = h.state().join("machines").join(BUILDER).join("seed.iso");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(String::from_utf8_lossy(&std::fs::read(&seed).unwrap()).contains(SEED_SECRET));

        // Idempotent: an existing, completely created builder is kept.
        let n = h.calls().len();
        p.create_node(&b).await.unwrap();
        assert!(h.changes(n).is_empty(), "{:?}", h.changes(n));

        // The space bar, make and break, only on a running VM.
        let off = p.press_key(BUILDER).await.unwrap_err();
        assert!(
            devcluster::error::one_line(&off).contains("is not currently running"),
            "{off}"
        );
        p.start(BUILDER).await.unwrap();
        p.press_key(BUILDER).await.unwrap();
        p.press_key(BUILDER).await.unwrap();
        assert_eq!(
            h.count(&format!("controlvm {BUILDER} keyboardputscancode 39 b9")),
            3
        );
        let keys = std::fs::read_to_string(h.state().join("vms").join(BUILDER).join("keys")).unwrap();
        assert_eq!(keys, "39 b9\n39 b9\n");

        // Its disk is kept only once it is off (sysprep powers it off).
        let running = p.keep_disk(BUILDER, "0123abcd").await.unwrap_err();
        assert!(running.to_string().contains("is not off"), "{running}");
        assert!(!h.state().join("vms").join(WINBASE).exists());
        let n = h.calls().len();
        p.shutdown(BUILDER, Duration::from_secs(5)).await.unwrap();
        let n2 = h.calls().len();
        let kept = p.keep_disk(BUILDER, "0123abcd").await.unwrap();
        let w = "$T/vbox/machines/devcluster-winbase-0123abcd";
        let expected: Vec<String> = [
            format!("createvm --name {WINBASE} --groups /devcluster-bases --ostype Windows2022_64 --register"),
            format!("clonemedium disk {m}/disk.vdi {w}/disk.vdi --format VDI"),
            format!("storagectl {WINBASE} --name SATA --add sata --controller IntelAhci --portcount 2"),
            format!("storageattach {WINBASE} --storagectl SATA --port 0 --device 0 --type hdd --medium {w}/disk.vdi"),
            format!("modifyvm {WINBASE} --firmware efi"),
            format!("snapshot {WINBASE} take base"),
            format!("showmediuminfo disk {w}/disk.vdi"),
        ]
        .into();
        assert_eq!(h.changes(n2), expected, "after {:?}", h.changes(n));
        assert_eq!(kept.name, WINBASE);
        assert_eq!(
            kept.path,
            h.state().join("machines").join(WINBASE).join("disk.vdi")
        );
        assert!(kept.path.is_file());
        assert_eq!(kept.bytes, std::fs::metadata(&kept.path).unwrap().len());
        assert_eq!(kept.capacity_bytes, 64 << 30);

        // remove_builder: the builder, its storage and network go; the
        // kept base VM and its disk stay.
        p.delete_node(BUILDER).await.unwrap();
        p.remove_storage("buildvb").await.unwrap();
        p.remove_network("buildvb").await.unwrap();
        assert_eq!(p.state(BUILDER).await.unwrap(), VmState::Absent);
        assert!(!h.state().join("machines").join(BUILDER).exists());
        assert!(kept.path.is_file(), "the kept disk went with the builder");
        assert_eq!(h.count("hostonlyif"), 0);
        assert!(h.info(WINBASE).contains("SnapshotName=\"base\""));

        // A Windows node from the kept base: a linked clone of its snapshot,
        // NAT + host-only with the planned MAC, the node seed, Secure Boot.
        p.ensure_network(&net()).await.unwrap();
        let node = VmSpec {
            golden: Some(WINBASE.into()),
            disk_gib: 64,
            memory_mib: 4096,
            base: BaseImage {
                name: "windows-server-2025".into(),
                path: kept.path.clone(),
                sha256: "ef".repeat(32),
                firmware: Firmware::Uefi,
                secure_boot: true,
            },
            seed_iso: format!("DCSEED autounattend.xml {SEED_SECRET}").into_bytes(),
            ..h.vm("vbdev-win1", 0x1f, Os::Windows)
        };
        let n = h.calls().len();
        p.create_node(&node).await.unwrap();
        let c = "$T/vbox/machines/vbdev-win1";
        let expected: Vec<String> = [
            format!("clonevm {WINBASE} --snapshot base --options link --name vbdev-win1 --groups /devcluster/vbdev --register"),
            "guestproperty set vbdev-win1 /devcluster/cluster vbdev".into(),
            format!("guestproperty set vbdev-win1 /devcluster/base {WINBASE}"),
            "modifyvm vbdev-win1 --ostype Windows2022_64 --memory 4096 --cpus 2 --firmware efi --ioapic on --rtcuseutc off --nic1 nat --nictype1 82540EM --macaddress1 02112233011F --cableconnected1 on --nic2 hostonly --hostonlyadapter2 vboxnet0 --nictype2 82540EM --macaddress2 02112233001F --cableconnected2 on --uart1 0x3F8 4 --uartmode1 file $T/vbdev-win1.serial.log --boot1 disk --boot2 dvd --boot3 none --boot4 none".into(),
            format!("storageattach vbdev-win1 --storagectl SATA --port 1 --device 0 --type dvddrive --medium {c}/seed.iso"),
            "modifynvram vbdev-win1 inituefivarstore".into(),
            "modifynvram vbdev-win1 enrollmssignatures".into(),
            "modifynvram vbdev-win1 enrollorclpk".into(),
            "modifynvram vbdev-win1 secureboot --enable".into(),
        ]
        .into();
        let changes = h.changes(n);
        assert_eq!(changes[..expected.len()], expected[..], "{changes:#?}");
        // Then the differencing disk grows to the planned size, and the
        // node is marked created, last.
        assert!(changes[expected.len()].starts_with("showmediuminfo disk "));
        assert!(changes[expected.len() + 1].ends_with("--resize 65536"));
        assert_eq!(
            changes[expected.len() + 2..],
            ["guestproperty set vbdev-win1 /devcluster/created 1"]
        );
        // No base VM was made from the (Linux) image path: the kept one is
        // the only base.
        assert_eq!(h.count("createvm --name devcluster-base-"), 0);

        // The base is refused while its clone lives; absent is fine.
        let n = h.calls().len();
        let busy = p.remove_golden(WINBASE).await.unwrap_err();
        assert!(busy.to_string().contains("vbdev-win1"), "{busy}");
        assert_eq!(h.count(&format!("unregistervm {WINBASE}")), 0);
        assert!(h.changes(n).is_empty());
        p.delete_node("vbdev-win1").await.unwrap();
        p.remove_golden(WINBASE).await.unwrap();
        assert_eq!(h.count(&format!("unregistervm {WINBASE} --delete")), 1);
        assert!(!kept.path.exists());
        assert_eq!(p.state(WINBASE).await.unwrap(), VmState::Absent);
        p.remove_golden(WINBASE).await.unwrap();
        assert_eq!(h.count(&format!("unregistervm {WINBASE}")), 1);
        // Only base VMs are deleted this way.
        let not_base = p.remove_golden("vbdev-cp-nope").await;
        assert!(not_base.is_ok());
    });
    // No secret in any command line.
    for c in h.calls() {
        assert!(!c.contains(SEED_SECRET), "{c}");
    }
}

/// A builder cut short is made again from scratch; a kept base VM left by
/// a keep cut short (never recorded) is replaced; a node whose base VM is
/// gone is an error that says what to do; `remove_golden` deletes only
/// base VMs.
#[test]
fn windows_paths_cut_short_are_redone_and_a_missing_base_is_explained() {
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    let b = h.builder();
    rt().block_on(async {
        p.ensure_network(&build_net()).await.unwrap();
        h.fault(
            &format!("modifynvram {BUILDER} enrollorclpk"),
            "error-not-found.txt",
            1,
            1,
        );
        assert!(p.create_node(&b).await.is_err());
        p.create_node(&b).await.unwrap();
        assert_eq!(h.count(&format!("unregistervm {BUILDER} --delete")), 1);
        assert_eq!(h.count(&format!("createvm --name {BUILDER}")), 2);
        assert_eq!(h.count("createmedium disk"), 2);
        assert!(h.nvram(BUILDER).ends_with("secureboot --enable\n"));

        // A keep cut short before its snapshot: the next keep replaces it.
        h.fault(&format!("snapshot {WINBASE}"), "error-not-found.txt", 1, 1);
        assert!(p.keep_disk(BUILDER, "0123abcd").await.is_err());
        let kept = p.keep_disk(BUILDER, "0123abcd").await.unwrap();
        assert_eq!(h.count(&format!("unregistervm {WINBASE} --delete")), 1);
        assert_eq!(h.count(&format!("createvm --name {WINBASE}")), 2);
        assert!(kept.path.is_file());

        // Not a base VM: refused, kept.
        let e = p.remove_golden(BUILDER).await.unwrap_err();
        assert!(e.to_string().contains("not a devcluster base VM"), "{e}");
        assert_eq!(h.count(&format!("unregistervm {BUILDER}")), 1);

        // A node of a base VM that is gone.
        p.ensure_network(&net()).await.unwrap();
        let node = VmSpec {
            golden: Some("devcluster-winbase-gone".into()),
            ..h.vm("vbdev-win1", 0x1f, Os::Windows)
        };
        let e = p.create_node(&node).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("devcluster-winbase-gone"), "{text}");
        assert!(
            text.contains("images prune") && text.contains("images build"),
            "{text}"
        );
        assert_eq!(h.count("clonevm devcluster-winbase-gone"), 0);
    });
}

/// Keeps `winbuild`'s notes.
#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>);
impl devcluster::winbuild::BuildProgress for Notes {
    fn note(&self, m: &str) {
        self.0.lock().unwrap().push(m.to_string());
    }
    fn phase(&self, _: &str, _: Duration, _: Duration) {}
}

const BUILD_VM: &str = "vb-build-win";

fn build_request() -> devcluster::winbuild::Request {
    use devcluster::winbuild::{Bounds, Place, Request};
    Request {
        image: "windows-server-2025".into(),
        place: Place {
            vm: BUILD_VM.into(),
            cluster: "vbb1".into(),
            subnet: "192.168.250.0/24".parse().unwrap(),
        },
        bounds: Bounds {
            stall: Duration::from_secs(60),
            overall: Duration::from_secs(120),
            boot_keys: Duration::from_secs(30),
        },
        poll: Duration::from_millis(50),
        typical: devcluster::winbuild::TYPICAL_HW,
        devices: Default::default(),
    }
}

/// The guest's side of a build, played on the stand-in from a thread: once
/// builder VM `BUILD_VM` (a new one: not `old_uuid`) runs, it waits a
/// moment (the key presses of the "Press any key" prompt), writes
/// build.ps1's lines to the serial file the VM was given, and then either
/// powers the VM off (sysprep's `/shutdown`) or, with `fail`, stops after
/// a failed line. Returns the new builder's UUID and the `<Value>`s (the
/// encoded passwords) of the seed ISO it was given.
fn play_guest(
    h: &Host,
    old_uuid: Option<String>,
    lines: &'static [&'static str],
    power_off: bool,
) -> std::thread::JoinHandle<(String, Vec<String>)> {
    let vm_dir = h.state().join("vms").join(BUILD_VM);
    let machine = h.state().join("machines").join(BUILD_VM);
    let vbm = h.dir.path().join("VBoxManage");
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let uuid = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the builder never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
            let Ok(info) = std::fs::read_to_string(vm_dir.join("info")) else {
                continue;
            };
            let uuid = std::fs::read_to_string(vm_dir.join("uuid")).unwrap_or_default();
            if info.lines().any(|l| l == "VMState=\"running\"") && Some(&uuid) != old_uuid.as_ref()
            {
                break uuid;
            }
        };
        let info = std::fs::read_to_string(vm_dir.join("info")).unwrap();
        let serial = info
            .lines()
            .find_map(|l| l.strip_prefix("uartmode1=\"file,"))
            .and_then(|l| l.strip_suffix('"'))
            .expect("the serial console is a file")
            .to_string();
        let seed =
            String::from_utf8_lossy(&std::fs::read(machine.join("seed.iso")).unwrap()).into_owned();
        let values: Vec<String> = seed
            .split("<Value>")
            .skip(1)
            .filter_map(|v| v.split_once("</Value>").map(|(v, _)| v.to_string()))
            .collect();
        // The prompt: let the build press the key a few times.
        std::thread::sleep(Duration::from_millis(400));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&serial)
            .unwrap();
        f.write_all(b"BdsDxe: loading Boot0002 \"UEFI VBOX CD-ROM VB1-1a2b3c4d\"\r\n")
            .unwrap();
        for l in lines {
            f.write_all(format!("{l}\r\n").as_bytes()).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(60));
        }
        if power_off {
            let out = std::process::Command::new(&vbm)
                .args(["controlvm", BUILD_VM, "poweroff"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        (uuid, values)
    })
}

/// `winbuild::build` with the VirtualBox provider, start to end, against
/// the stand-in: a build step that fails ends in `BuildError::Failed` with
/// the VirtualBox console hint and leaves the builder running; the retry
/// deletes it first, creates and starts a new builder, presses the key,
/// follows the phases in the serial file, and when the guest powers off,
/// keeps the disk as a base VM, records it, and removes the builder. No
/// secret of the build seed is in any command line.
#[test]
fn images_build_on_virtualbox_end_to_end_with_the_stand_in() {
    use devcluster::images::{self, Fetch, winbase};
    use devcluster::spec::ProviderKind;
    use devcluster::winbuild::{self, BuildError};
    let world = common::World::new();
    let dirs = &world.dirs;
    let iso = world.path("standin.iso");
    let sha = common::stand_in_windows_iso_for(dirs, &iso, "virtualbox");
    let h = Host::new();
    let p = h.provider(NetKind::Interface);
    let dl = images::download::NoProgress;
    let fetch = Fetch::new(&dl).accept_license(true);
    let req = build_request();
    let rt = rt();

    // 1. A build step fails.
    let guest = play_guest(
        &h,
        None,
        &[
            "devcluster-build: phase 10-sshd",
            "devcluster-build: phase 20-shutdown-without-logon",
            "devcluster-build: phase 30-containers",
            "devcluster-build: failed 30-containers: exit code 1",
        ],
        false,
    );
    let notes = Notes::default();
    let e = rt
        .block_on(winbuild::build(dirs, &p, &req, &fetch, &notes))
        .expect_err("a failed line ends the build");
    let (first_uuid, values) = guest.join().unwrap();
    match &e {
        BuildError::Failed {
            vm, step, message, ..
        } => {
            assert_eq!(vm, BUILD_VM);
            assert_eq!(step, "30-containers");
            assert_eq!(message, "exit code 1");
        }
        other => panic!("{other:?}"),
    }
    let hint = e.hint().unwrap();
    assert!(
        hint.contains(&format!(
            "its window in VirtualBox Manager (VM {BUILD_VM}, Show)"
        )),
        "{hint}"
    );
    assert!(hint.contains(&format!("{BUILD_VM}.serial.log")), "{hint}");
    // Left running for inspection; the key was pressed, then no more.
    assert!(h.info(BUILD_VM).lines().any(|l| l == "VMState=\"running\""));
    let pressed = h.count(&format!("controlvm {BUILD_VM} keyboardputscancode 39 b9"));
    assert!(pressed >= 2, "{pressed} presses: {:?}", h.calls());
    // The builder is what the provider makes of `winbuild`'s VmSpec: the
    // cached ISO and the build seed on the DVDs, Secure Boot.
    let info = h.info(BUILD_VM);
    assert!(info.contains("\"SATA-1-0\"=\""), "{info}");
    assert!(
        info.lines()
            .any(|l| l.starts_with("\"SATA-1-0\"=") && l.ends_with(".iso\"")),
        "{info}"
    );
    assert!(h.nvram(BUILD_VM).ends_with("secureboot --enable\n"));
    // The seed carries the encoded Administrator password; no command does.
    assert!(!values.is_empty(), "no password in the build seed?");

    // 2. The retry deletes the failed builder first, then builds to the end.
    let guest = play_guest(
        &h,
        Some(first_uuid),
        &[
            "devcluster-build: phase 10-sshd",
            "devcluster-build: phase 20-shutdown-without-logon",
            "devcluster-build: phase 30-containers",
            "devcluster-build: reboot 30-containers",
            "devcluster-build: phase 40-time-sync",
            "devcluster-build: phase 90-sysprep",
        ],
        true,
    );
    let before = h.calls().len();
    let notes = Notes::default();
    let disk = rt
        .block_on(winbuild::build(dirs, &p, &req, &fetch, &notes))
        .expect("the build keeps the disk of a builder that powered off");
    let (_, values2) = guest.join().unwrap();
    let calls = h.calls()[before..].to_vec();
    let at = |prefix: &str| {
        calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}: {calls:#?}"))
    };
    // The old builder goes (powered off, deleted) before the new is made,
    // and the disk is kept before the builder is deleted again.
    assert!(
        at(&format!("controlvm {BUILD_VM} poweroff"))
            < at(&format!("unregistervm {BUILD_VM} --delete"))
    );
    assert!(
        at(&format!("unregistervm {BUILD_VM} --delete"))
            < at(&format!("createvm --name {BUILD_VM}"))
    );
    assert!(
        at(&format!("createvm --name {BUILD_VM}"))
            < at(&format!("startvm {BUILD_VM} --type headless"))
    );
    assert!(
        at(&format!("startvm {BUILD_VM}"))
            < at(&format!("controlvm {BUILD_VM} keyboardputscancode"))
    );
    let keep = at("createvm --name devcluster-winbase-");
    assert!(keep > at(&format!("controlvm {BUILD_VM} poweroff")));
    let removed = calls
        .iter()
        .rposition(|c| c.starts_with(&format!("unregistervm {BUILD_VM} --delete")))
        .unwrap();
    assert!(removed > at("snapshot devcluster-winbase-"), "{calls:#?}");
    assert!(
        notes
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.starts_with("pressed a key ")),
        "{:?}",
        notes.0.lock().unwrap()
    );

    // Recorded: the base VM's name, its disk, VDI.
    let volume = disk.volume.clone().expect("kept in VirtualBox");
    assert_eq!(volume.name, format!("devcluster-winbase-{}", disk.key.id()));
    assert!(volume.path.is_file());
    assert_eq!(disk.format, devcluster::images::Format::Vdi);
    assert_eq!(disk.capacity_bytes, 64 << 30);
    let (_, image) = winbuild::windows_image(dirs, "windows-server-2025").unwrap();
    let found = winbase::lookup(
        dirs,
        &image,
        &sha,
        ProviderKind::Virtualbox,
        Default::default(),
    )
    .expect("recorded");
    assert_eq!(found.key, disk.key);
    assert!(h.info(&volume.name).contains("SnapshotName=\"base\""));
    // The builder is gone; nothing of the host's network was touched.
    assert!(!h.state().join("vms").join(BUILD_VM).exists());
    assert_eq!(h.count("hostonlyif"), 0);

    // A second build finds it and builds nothing.
    let n = h.calls().len();
    let again = rt
        .block_on(winbuild::build(dirs, &p, &req, &fetch, &Notes::default()))
        .unwrap();
    assert_eq!(again.key, disk.key);
    assert_eq!(h.calls().len(), n);

    // The passwords themselves: Windows' encoding is base64 of UTF-16LE
    // of the password followed by the element's name.
    // Other `<Value>`s (the image index) are not passwords: skipped.
    let mut secrets: Vec<String> = Vec::new();
    for v in values.iter().chain(&values2) {
        use base64::Engine as _;
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(v) else {
            continue;
        };
        let units: Vec<u16> = bytes
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let Ok(text) = String::from_utf16(&units) else {
            continue;
        };
        if let Some(password) = text
            .strip_suffix("AdministratorPassword")
            .or_else(|| text.strip_suffix("Password"))
        {
            assert!(password.len() >= 12, "{password}");
            secrets.push(v.clone());
            secrets.push(password.to_string());
        }
    }
    assert!(
        secrets.len() >= 4,
        "no passwords found in the seeds: {values:?}"
    );
    for c in h.calls() {
        for s in &secrets {
            assert!(!c.contains(s.as_str()), "a seed secret in `{c}`");
        }
    }
}
