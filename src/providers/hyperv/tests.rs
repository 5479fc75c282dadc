//! The provider against a stand-in for powershell.exe
//! (testdata/hyperv/powershell-standin.sh) that records every call and
//! replays the fixtures of testdata/hyperv/replies/ (their sources:
//! testdata/hyperv/README.md). Proves the Rust side — what is sent, how
//! each reply is read, which error gets which hint — not Hyper-V itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::providers::{BaseImage, Firmware, HostEntry};
use crate::spec::NetworkMode;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hyperv")
}

struct Replay {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Replay {
    /// `replies`: (operation, fixture name) in the order they are called.
    fn new(replies: &[(Op, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("replies")).unwrap();
        for (i, (op, fixture)) in replies.iter().enumerate() {
            let from = testdata().join("replies").join(format!("{fixture}.txt"));
            let to = dir
                .path()
                .join("replies")
                .join(format!("{:02}-{}.txt", i + 1, op.name()));
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        }
        Self {
            dir,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn ps(&self) -> PowerShell {
        PowerShell {
            program: testdata().join("powershell-standin.sh"),
            env: vec![(
                "HYPERV_REPLAY_DIR".into(),
                self.dir.path().display().to_string(),
            )],
        }
    }

    fn provider(&self) -> HyperV {
        HyperV::new(
            self.ps(),
            &ProviderConfig {
                libvirt_uri: String::new(),
                libvirt_domain_type: crate::spec::DomainType::Qemu,
                cache_dir: self.cache.path().to_path_buf(),
            },
        )
    }

    fn call(&self, n: usize, what: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("calls").join(format!("{n:02}.{what}")))
            .unwrap_or_default()
    }

    fn calls(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("calls"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "ps1"))
                })
                .count()
            })
            .unwrap_or(0)
    }

    fn params(&self, n: usize) -> Value {
        serde_json::from_str(&self.call(n, "params.json")).unwrap()
    }

    /// Asserts call `n` ran `op`'s exact script with Vagrant's flags.
    fn assert_ran(&self, n: usize, op: Op) {
        assert_eq!(
            self.call(n, "ps1"),
            op.script(),
            "call {n} is not {}",
            op.name()
        );
        let argv: Vec<String> = self.call(n, "argv").lines().map(String::from).collect();
        assert_eq!(argv[..6], runner::FLAGS);
        assert_eq!(argv.len(), 7);
    }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Not a real key: a marker the tests look for everywhere it must not be.
const SECRET: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRET-TEST-FIXTURE-hv1-cp\n";

fn vm(name: &str) -> VmSpec {
    let mut seed_iso = b"CD001 fake seed: ".to_vec();
    seed_iso.extend_from_slice(SECRET.as_bytes());
    VmSpec {
        cluster: "hv1".into(),
        name: name.into(),
        role: "control-plane".into(),
        os: Os::Linux,
        cpus: 2,
        memory_mib: 4096,
        disk_gib: 20,
        mac: "02:1a:2b:3c:00:0a".into(),
        base: BaseImage {
            name: "ubuntu-24.04".into(),
            path: PathBuf::from(
                r"C:\Users\dev\AppData\Local\devcluster\cache\images\ab12.converted.vhdx",
            ),
            sha256: "ab12".into(),
            firmware: Firmware::Uefi,
            secure_boot: true,
        },
        golden: None,
        install_iso: None,
        windows_devices: Default::default(),
        drivers_iso: None,
        seed_iso,
        serial_log: PathBuf::from("hv1-cp.serial.log"),
    }
}

fn net() -> NetworkSpec {
    NetworkSpec {
        cluster: "hv1".into(),
        subnet: "192.168.250.0/24".parse().unwrap(),
        gateway: "192.168.250.1".parse().unwrap(),
        mode: NetworkMode::Nat,
        hosts: vec![HostEntry {
            name: "hv1-cp".into(),
            mac: "02:1a:2b:3c:00:0a".into(),
            ip: "192.168.250.10".parse().unwrap(),
        }],
    }
}

fn hint_of(e: &ProviderError) -> String {
    e.hint().unwrap_or_else(|| panic!("no hint for {e}"))
}

/// The whole error chain on one line.
fn chain(e: &ProviderError) -> String {
    crate::error::one_line(e)
}

#[test]
fn create_start_save_resume_stop_delete() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::CreateVm, "create-new"),
        (Op::StartVm, "start-started"),
        (Op::VmState, "state-running"),
        (Op::SaveVm, "save-saved"),
        (Op::VmState, "state-saved"),
        (Op::StartVm, "start-started"),
        (Op::StopVm, "stop-graceful"),
        (Op::StopVm, "stop-forced"),
        (Op::DeleteVm, "delete-removed"),
    ]);
    let p = r.provider();
    let spec = vm("hv1-cp");
    run(async {
        p.create_node(&spec).await.unwrap();
        p.start("hv1-cp").await.unwrap();
        assert_eq!(p.state("hv1-cp").await.unwrap(), VmState::Running);
        p.suspend("hv1-cp").await.unwrap();
        assert_eq!(p.state("hv1-cp").await.unwrap(), VmState::Saved);
        p.resume("hv1-cp").await.unwrap();
        assert_eq!(
            p.shutdown("hv1-cp", Duration::from_secs(90)).await.unwrap(),
            Shutdown::Graceful
        );
        assert_eq!(
            p.shutdown("hv1-cp", Duration::from_millis(10))
                .await
                .unwrap(),
            Shutdown::Forced
        );
        p.delete_node("hv1-cp").await.unwrap();
    });
    assert_eq!(r.calls(), 10);
    let ops = [
        Op::StorageRoot,
        Op::CreateVm,
        Op::StartVm,
        Op::VmState,
        Op::SaveVm,
        Op::VmState,
        Op::StartVm,
        Op::StopVm,
        Op::StopVm,
        Op::DeleteVm,
    ];
    for (i, op) in ops.into_iter().enumerate() {
        r.assert_ran(i + 1, op);
    }
    let create = r.params(2);
    let mut shown = create.clone();
    shown["seedSource"] = json!("<the seed's private temporary file>");
    insta::assert_json_snapshot!("create_vm_params", shown);
    assert_eq!(
        create["secureBootTemplate"],
        "MicrosoftUEFICertificateAuthority"
    );
    assert_eq!(create["mac"], "021A2B3C000A");
    assert_eq!(
        create["nodeDir"],
        r"C:\ProgramData\Microsoft\Windows\Hyper-V\devcluster\hv1-cp"
    );
    // The seed went through a private file the script copies, removed after.
    let seed_source = PathBuf::from(create["seedSource"].as_str().unwrap());
    assert!(seed_source.starts_with(r.cache.path()));
    assert!(!seed_source.exists(), "the seed's temporary copy is left");
    assert_eq!(r.params(8)["timeoutSeconds"], 90);
    assert_eq!(r.params(9)["timeoutSeconds"], 1);
    assert_eq!(
        r.params(10),
        json!({
            "name": "hv1-cp",
            "nodeDir": r"C:\ProgramData\Microsoft\Windows\Hyper-V\devcluster\hv1-cp",
            "tag": "devcluster-node=hv1-cp",
        })
    );
}

#[test]
fn windows_vms_get_the_microsoft_windows_template() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::CreateVm, "create-new"),
    ]);
    let mut spec = vm("hv1-win1");
    spec.os = Os::Windows;
    spec.role = "worker".into();
    run(r.provider().create_node(&spec)).unwrap();
    assert_eq!(r.params(2)["secureBootTemplate"], "MicrosoftWindows");
    assert!(
        r.params(2)["notes"]
            .as_str()
            .unwrap()
            .contains("devcluster-cluster=hv1\ndevcluster-node=hv1-win1\ndevcluster-role=worker")
    );
}

#[test]
fn what_exists_or_is_gone_is_success() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::EnsureNetwork, "ensure-exists"),
        (Op::CreateVm, "create-exists"),
        (Op::StartVm, "start-running"),
        (Op::SaveVm, "save-already"),
        (Op::StopVm, "stop-already-off"),
        (Op::DeleteVm, "delete-partial"),
        (Op::DeleteVm, "delete-absent"),
        (Op::VmState, "state-absent"),
        (Op::VmState, "state-off"),
        (Op::VmState, "state-paused"),
        (Op::VmState, "state-starting"),
        (Op::ClusterVms, "cluster-vms-none"),
        (Op::RemoveNetwork, "remove-network-kept"),
        (Op::RemoveStorage, "remove-storage"),
    ]);
    let p = r.provider();
    run(async {
        p.ensure_network(&net()).await.unwrap();
        p.create_node(&vm("hv1-cp")).await.unwrap();
        p.start("hv1-cp").await.unwrap();
        p.suspend("hv1-cp").await.unwrap();
        assert_eq!(
            p.shutdown("hv1-cp", Duration::from_secs(5)).await.unwrap(),
            Shutdown::AlreadyOff
        );
        p.delete_node("hv1-cp").await.unwrap();
        p.delete_node("hv1-cp").await.unwrap();
        assert_eq!(p.state("hv1-cp").await.unwrap(), VmState::Absent);
        assert_eq!(p.state("hv1-cp").await.unwrap(), VmState::Off);
        assert_eq!(p.state("hv1-cp").await.unwrap(), VmState::Paused);
        assert_eq!(p.state("hv1-cp").await.unwrap(), VmState::Other);
        assert!(p.cluster_vms("hv1").await.unwrap().is_empty());
        p.remove_network("hv1").await.unwrap();
        p.remove_storage("hv1").await.unwrap();
    });
    assert_eq!(r.calls(), 15);
    insta::assert_json_snapshot!("ensure_network_params", r.params(2));
    assert_eq!(
        r.params(14),
        json!({
            "cluster": "hv1",
            "switch": "devcluster",
            "marker": r"C:\ProgramData\Microsoft\Windows\Hyper-V\devcluster\networks\hv1.txt",
        })
    );
    assert_eq!(
        r.params(15)["root"],
        r"C:\ProgramData\Microsoft\Windows\Hyper-V\devcluster"
    );
}

#[test]
fn start_of_a_missing_vm_says_so() {
    let r = Replay::new(&[(Op::StartVm, "start-absent")]);
    let e = run(r.provider().start("hv1-w9")).unwrap_err();
    assert!(
        matches!(e, ProviderError::NoSuchVm(ref n) if n == "hv1-w9"),
        "{e}"
    );
}

#[test]
fn cluster_vms_come_from_the_notes_tag() {
    let r = Replay::new(&[(Op::ClusterVms, "cluster-vms")]);
    assert_eq!(
        run(r.provider().cluster_vms("hv1")).unwrap(),
        ["hv1-cp", "hv1-w1"]
    );
    assert_eq!(r.params(1), json!({"cluster": "hv1"}));
    assert!(
        Op::ClusterVms
            .script()
            .contains("devcluster-cluster=$($P.cluster)")
    );
}

#[test]
fn not_admin_names_hyperv_administrators_and_the_command() {
    let r = Replay::new(&[(Op::VmState, "err-permission")]);
    let e = run(r.provider().state("hv1-cp")).unwrap_err();
    assert!(
        chain(&e).contains("You do not have the required permission to complete this task"),
        "{}",
        chain(&e)
    );
    let h = hint_of(&e);
    assert!(h.contains("S-1-5-32-578"), "{h}");
    assert!(h.contains(runner::ADD_TO_HYPERV_ADMINS), "{h}");
}

#[test]
fn hyperv_missing_gives_the_enable_line() {
    let r = Replay::new(&[(Op::StorageRoot, "err-not-installed")]);
    let e = run(r.provider().create_node(&vm("hv1-cp"))).unwrap_err();
    assert!(
        chain(&e).contains("'Hyper-V\\Get-VM' is not recognized"),
        "{}",
        chain(&e)
    );
    assert!(
        hint_of(&e)
            .contains("Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V -All")
    );
}

#[test]
fn constrained_language_is_named() {
    for fixture in ["err-language-mode", "err-method-clm"] {
        let r = Replay::new(&[(Op::VmState, fixture)]);
        let e = run(r.provider().state("hv1-cp")).unwrap_err();
        assert!(hint_of(&e).contains("ConstrainedLanguage"), "{fixture}");
    }
}

#[test]
fn other_failures_keep_the_message_and_guess_no_hint() {
    let r = Replay::new(&[(Op::StartVm, "err-start-failed")]);
    let e = run(r.provider().start("hv1-cp")).unwrap_err();
    assert!(
        chain(&e).contains("'minikube' failed to start"),
        "{}",
        chain(&e)
    );
    assert_eq!(e.hint(), None);

    let r = Replay::new(&[(Op::StartVm, "garbled")]);
    let e = run(r.provider().start("hv1-cp")).unwrap_err();
    assert!(
        chain(&e).contains("no ===Begin-Output=== marker"),
        "{}",
        chain(&e)
    );
}

#[test]
fn a_missing_powershell_is_reported() {
    let mut p = Replay::new(&[]).provider();
    p.ps.program = PathBuf::from("/nonexistent/powershell.exe");
    let e = run(p.state("hv1-cp")).unwrap_err();
    assert!(
        chain(&e).contains("cannot run /nonexistent/powershell.exe"),
        "{}",
        chain(&e)
    );
    assert!(hint_of(&e).contains("DEVCLUSTER_POWERSHELL"));
}

#[test]
fn creating_the_network_asks_for_elevation_once_with_the_exact_commands() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::EnsureNetwork, "ensure-needs-elevation"),
        (Op::EnsureNetwork, "ensure-created"),
        (Op::EnsureNetwork, "ensure-exists"),
    ]);
    let p = r.provider();
    let e = run(p.ensure_network(&net())).unwrap_err();
    assert!(
        chain(&e).contains("needs switch, nat, address created"),
        "{}",
        chain(&e)
    );
    let h = hint_of(&e);
    assert!(
        h.contains(
            "Hyper-V\\New-VMSwitch -Name 'devcluster' -SwitchType Internal; \
             New-NetIPAddress -InterfaceAlias 'vEthernet (devcluster)' -IPAddress '192.168.250.1' -PrefixLength 24; \
             New-NetNat -Name 'devcluster' -InternalIPInterfaceAddressPrefix '192.168.240.0/20'"
        ),
        "{h}"
    );
    // Elevated, it is created; afterwards nothing is missing and nothing asked.
    run(p.ensure_network(&net())).unwrap();
    run(p.ensure_network(&net())).unwrap();
    assert_eq!(r.calls(), 4);
}

#[test]
fn a_foreign_netnat_is_reported_not_touched() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::EnsureNetwork, "ensure-foreign-nat"),
        (Op::EnsureNetwork, "ensure-foreign-switch"),
    ]);
    let p = r.provider();
    let e = run(p.ensure_network(&net())).unwrap_err();
    assert!(
        chain(&e).contains("NetNat `MyNATnetwork` (192.168.0.0/24) is not devcluster's"),
        "{}",
        chain(&e)
    );
    assert!(hint_of(&e).contains("Remove-NetNat -Name 'MyNATnetwork'"));
    let e = run(p.ensure_network(&net())).unwrap_err();
    assert!(
        chain(&e).contains("is External, not an internal switch"),
        "{}",
        chain(&e)
    );
    // The script that met the foreign NAT creates nothing after it.
    let script = Op::EnsureNetwork.script();
    let check = script.find("foreignNat").unwrap();
    assert!(check < script.find("New-NetNat").unwrap());
    assert!(check < script.find("New-VMSwitch").unwrap());
}

#[test]
fn a_subnet_outside_the_nat_prefix_is_refused_before_any_call() {
    let r = Replay::new(&[]);
    let mut n = net();
    n.subnet = "192.168.150.0/24".parse().unwrap();
    let e = run(r.provider().ensure_network(&n)).unwrap_err();
    assert!(e.to_string().contains("outside 192.168.240.0/20"), "{e}");
    assert_eq!(r.calls(), 0);
}

#[test]
fn a_vm_of_that_name_that_is_not_ours_is_refused() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::CreateVm, "create-foreign"),
    ]);
    let e = run(r.provider().create_node(&vm("hv1-cp"))).unwrap_err();
    assert!(chain(&e).contains("is not devcluster's"), "{}", chain(&e));
}

/// A log writer into a shared buffer.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_secret_in_a_script_its_arguments_parameters_or_the_log() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::CreateVm, "create-new"),
        (Op::StartVm, "err-permission"),
    ]);
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let p = r.provider();
        run(async {
            p.create_node(&vm("hv1-cp")).await.unwrap();
            let _ = p.start("hv1-cp").await;
        });
    });
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("create_vm"), "the log was not captured: {log}");
    let marker = "SECRET-TEST-FIXTURE";
    assert!(!log.contains(marker), "{log}");
    for n in 1..=3 {
        for what in ["ps1", "argv", "params.json"] {
            let text = r.call(n, what);
            assert!(
                !text.is_empty() || what == "params.json",
                "call {n} {what} missing"
            );
            assert!(!text.contains(marker), "call {n} {what} holds the secret");
        }
    }
}

#[test]
fn calls_on_one_vm_wait_for_each_other() {
    let r = Replay::new(&[(Op::VmState, "state-running"), (Op::VmState, "state-off")]);
    let p = Arc::new(r.provider());
    run(async {
        let held = p.lock_of("hv1-cp");
        let guard = held.lock().await;
        // Another VM's lock is another lock.
        assert!(!Arc::ptr_eq(&held, &p.lock_of("hv1-w1")));
        let q = p.clone();
        let waiting = tokio::spawn(async move { q.state("hv1-cp").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "ran while another call held the VM");
        assert_eq!(r.calls(), 0);
        drop(guard);
        assert_eq!(waiting.await.unwrap().unwrap(), VmState::Running);
    });
}

fn facts_of(fixture: &str) -> detect::Facts {
    let text =
        std::fs::read_to_string(testdata().join("replies").join(format!("{fixture}.txt"))).unwrap();
    match runner::parse_reply(&text) {
        Reply::Ok(v) => serde_json::from_value(v).unwrap(),
        other => panic!("{fixture}: {other:?}"),
    }
}

#[test]
fn detection_decides_on_recorded_facts() {
    let d = detect::detection(&facts_of("detect-ready"));
    assert!(d.usable, "{d:?}");
    assert!(d.detail.contains("Hyper-V Administrators"), "{d:?}");
    assert!(detect::detection(&facts_of("detect-fresh")).usable);
    let cases = [
        (
            "detect-no-module",
            "module is not installed",
            "Enable-WindowsOptionalFeature",
        ),
        (
            "detect-hypervisor-off",
            "VirtualBox is installed",
            "hypervisorlaunchtype auto",
        ),
        (
            "detect-not-admin",
            "neither an administrator",
            "S-1-5-32-578",
        ),
        (
            "detect-foreign-nat",
            "MyNATnetwork (192.168.0.0/24)",
            "Remove-NetNat -Name 'MyNATnetwork'",
        ),
    ];
    for (fixture, detail, fix) in cases {
        let d = detect::detection(&facts_of(fixture));
        assert!(!d.usable, "{fixture}");
        assert!(d.detail.contains(detail), "{fixture}: {}", d.detail);
        assert!(
            d.fix.as_deref().unwrap().contains(fix),
            "{fixture}: {:?}",
            d.fix
        );
    }
}

#[test]
fn doctor_checks_from_recorded_facts() {
    use crate::doctor::Status;
    let statuses = |fixture: &str| -> Vec<(String, Status)> {
        detect::checks(&facts_of(fixture))
            .into_iter()
            .map(|c| (c.name, c.status))
            .collect()
    };
    let names = [
        "hyperv.module",
        "hyperv.hypervisor",
        "hyperv.permissions",
        "hyperv.switch",
        "hyperv.netnat",
    ];
    let expect = |s: [Status; 5]| -> Vec<(String, Status)> {
        names.iter().map(|n| n.to_string()).zip(s).collect()
    };
    use Status::*;
    assert_eq!(statuses("detect-ready"), expect([Ok, Ok, Ok, Ok, Ok]));
    assert_eq!(statuses("detect-fresh"), expect([Ok, Ok, Ok, Warn, Warn]));
    assert_eq!(
        statuses("detect-foreign-nat"),
        expect([Ok, Ok, Ok, Ok, Fail])
    );
    assert_eq!(statuses("detect-not-admin"), expect([Ok, Ok, Fail, Ok, Ok]));
    assert_eq!(
        statuses("detect-no-module"),
        expect([Fail, Fail, Ok, Warn, Warn])
    );
    for c in detect::checks(&facts_of("detect-fresh")) {
        if c.status != Ok {
            assert!(
                c.fix
                    .as_deref()
                    .unwrap()
                    .contains("New-NetNat -Name 'devcluster'"),
                "{c:?}"
            );
        }
    }
    insta::assert_json_snapshot!(
        "checks_foreign_nat",
        detect::checks(&facts_of("detect-foreign-nat"))
    );
}

#[test]
fn detect_through_the_stand_in() {
    let r = Replay::new(&[(Op::Detect, "detect-foreign-nat")]);
    let d = run(super::detect(&r.ps()));
    assert!(!d.usable);
    assert_eq!(r.params(1), json!({"switch": "devcluster"}));
    let r = Replay::new(&[(Op::Detect, "err-language-mode")]);
    let d = run(super::detect(&r.ps()));
    assert!(!d.usable);
    assert!(d.fix.unwrap().contains("ConstrainedLanguage"));

    let r = Replay::new(&[(Op::Detect, "detect-ready"), (Op::Detect, "err-permission")]);
    let checks = run(super::host_checks(&r.ps()));
    assert_eq!(checks.len(), 5);
    assert!(
        checks.iter().all(|c| c.status == crate::doctor::Status::Ok),
        "{checks:?}"
    );
    let checks = run(super::host_checks(&r.ps()));
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].name, "hyperv.powershell");
    assert!(checks[0].fix.as_deref().unwrap().contains("S-1-5-32-578"));
}

const ROOT: &str = r"C:\ProgramData\Microsoft\Windows\Hyper-V\devcluster";
const BUILDER: &str = "devcluster-build-windows-server-2025";
const ISO: &str = r"C:\Users\dev\AppData\Local\devcluster\cache\images\ws2025.iso";

/// The VmSpec winbuild makes for a builder (see `winbuild::build`).
fn builder() -> VmSpec {
    let mut b = vm(BUILDER);
    b.cluster = "build2025".into();
    b.role = "builder".into();
    b.os = Os::Windows;
    b.disk_gib = 64;
    b.mac = "52:54:00:dc:b0:01".into();
    b.install_iso = Some(PathBuf::from(ISO));
    b
}

#[test]
fn a_builder_gets_a_blank_disk_both_cds_and_no_switch() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::CreateBuilder, "create-builder-new"),
        (Op::CreateBuilder, "create-builder-running"),
    ]);
    let p = r.provider();
    run(async {
        p.create_node(&builder()).await.unwrap();
        // Again while it runs: kept as it is.
        p.create_node(&builder()).await.unwrap();
    });
    assert_eq!(r.calls(), 3);
    r.assert_ran(2, Op::CreateBuilder);
    r.assert_ran(3, Op::CreateBuilder);
    let params = r.params(2);
    let seed_source = PathBuf::from(params["seedSource"].as_str().unwrap());
    assert!(seed_source.starts_with(r.cache.path()));
    assert!(!seed_source.exists(), "the seed's temporary copy is left");
    let mut shown = params.clone();
    shown["seedSource"] = json!("<the seed's private temporary file>");
    insta::assert_json_snapshot!("create_builder_params", shown);
    assert_eq!(params["installIso"], ISO);
    assert_eq!(params["diskBytes"], 64u64 << 30);
    assert_eq!(params["secureBootTemplate"], "MicrosoftWindows");
    assert_eq!(
        params["vhdPath"],
        format!(r"{ROOT}\{BUILDER}\{BUILDER}.vhdx")
    );
    // No parent, no switch: a blank disk on no network.
    for key in ["parentPath", "parentSource", "switch"] {
        assert!(params.get(key).is_none(), "{key}: {params}");
    }
    // destroy and remove_builder find it by the same Notes tag as nodes.
    let notes = params["notes"].as_str().unwrap();
    assert!(notes.contains("devcluster-cluster=build2025\n"), "{notes}");
    assert!(
        notes.contains(&format!("devcluster-node={BUILDER}")),
        "{notes}"
    );
    for what in ["ps1", "argv", "params.json"] {
        assert!(!r.call(2, what).contains("SECRET-TEST-FIXTURE"), "{what}");
    }

    let script = Op::CreateBuilder.script();
    let code: String = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(code.contains("Hyper-V\\New-VHD -Path $P.vhdPath -SizeBytes $P.diskBytes -Dynamic"));
    assert!(!code.contains("-Differencing") && !code.contains("-SwitchName"));
    // Both CDs on SCSI DVDs; the disk boots first, the installation DVD second.
    assert!(code.contains("foreach ($iso in @($P.installIso, $P.seedPath))"));
    assert!(code.contains("-BootOrder $disk, $install"));
    // Key-value pair exchange (Vagrant's id of "Key-Value Pair Exchange")
    // is what build_log reads.
    assert!(code.contains("2A34B1C2-FD73-4043-8A5B-DD2159BC743F"));
    assert!(code.contains("-StaticMemory"));
}

#[test]
fn a_builders_isolated_network_is_no_network() {
    let mut n = net();
    n.mode = NetworkMode::Isolated;
    n.hosts.clear();
    let r = Replay::new(&[]);
    run(r.provider().ensure_network(&n)).unwrap();
    assert_eq!(r.calls(), 0, "the builder's network made something");
    // A cluster's network with hosts is made whatever its mode.
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::EnsureNetwork, "ensure-exists"),
    ]);
    let mut n = net();
    n.mode = NetworkMode::Isolated;
    run(r.provider().ensure_network(&n)).unwrap();
    assert_eq!(r.calls(), 2);
}

#[test]
fn press_key_types_a_space_through_msvm_keyboard() {
    let r = Replay::new(&[
        (Op::PressKey, "press-key-typed"),
        (Op::PressKey, "press-key-invalid-state"),
        (Op::PressKey, "press-key-absent"),
        (Op::PressKey, "press-key-no-system"),
    ]);
    let p = r.provider();
    run(async {
        p.press_key(BUILDER).await.unwrap();
        let e = p.press_key(BUILDER).await.unwrap_err();
        assert!(
            chain(&e).contains(
                "Msvm_Keyboard.TypeKey returned 32775 (invalid state for this operation)"
            ),
            "{}",
            chain(&e)
        );
        let e = p.press_key(BUILDER).await.unwrap_err();
        assert!(
            matches!(e, ProviderError::NoSuchVm(ref n) if n == BUILDER),
            "{e}"
        );
        let e = p.press_key(BUILDER).await.unwrap_err();
        assert!(chain(&e).contains("WMI has no keyboard"), "{}", chain(&e));
    });
    assert_eq!(r.calls(), 4);
    for n in 1..=4 {
        r.assert_ran(n, Op::PressKey);
    }
    // VK_SPACE, the code Windows' virtual-key table gives the space bar.
    assert_eq!(r.params(1), json!({"name": BUILDER, "keyCode": 32}));
    let script = Op::PressKey.script();
    for needle in [
        "-Namespace 'root\\virtualization\\v2' -ClassName Msvm_ComputerSystem",
        "$_.ElementName -eq $P.name",
        "-ResultClassName Msvm_Keyboard",
        "-MethodName TypeKey -Arguments @{ keyCode = [uint32]$P.keyCode }",
    ] {
        assert!(script.contains(needle), "{needle}");
    }
}

#[test]
fn build_log_is_the_builders_kvp_items_in_their_order() {
    let r = Replay::new(&[
        (Op::BuildLog, "build-log-setup"),
        (Op::BuildLog, "build-log-phases"),
        (Op::BuildLog, "build-log-rebooted"),
        (Op::BuildLog, "build-log-failed"),
        (Op::BuildLog, "build-log-absent"),
    ]);
    let p = r.provider();
    let serial = r.cache.path().join("builds").join("b.serial.log");
    let (logs, written): (Vec<String>, Vec<Option<String>>) = run(async {
        let mut out = (Vec::new(), Vec::new());
        for _ in 0..5 {
            out.0.push(p.build_log(BUILDER, &serial).await.unwrap());
            out.1.push(std::fs::read_to_string(&serial).ok());
        }
        out
    });
    // Setup still running: no data yet, no error, no file.
    assert_eq!(logs[0], "");
    assert_eq!(written[0], None);
    // What was read is the build log the hints name.
    assert_eq!(written[1].as_deref(), Some(logs[1].as_str()));
    assert_eq!(
        written[4].as_deref(),
        Some(logs[3].as_str()),
        "an empty read keeps the last log"
    );
    assert_eq!(crate::winbuild::scan(&logs[0]).markers, 0);
    // Ordered by number whatever order the host lists them in; items of
    // other names are not build.ps1's.
    assert_eq!(
        logs[1],
        "devcluster-build: phase 10-sshd\n\
         devcluster-build: phase 20-shutdown-without-logon\n\
         devcluster-build: phase 30-containers\n"
    );
    let s = crate::winbuild::scan(&logs[1]);
    assert_eq!(s.phase.as_deref(), Some("30-containers"));
    assert_eq!(s.markers, 3);
    // A reboot and the same phase again are new items, so new markers.
    let s = crate::winbuild::scan(&logs[2]);
    assert_eq!(s.markers, 5);
    assert_eq!(s.phase.as_deref(), Some("30-containers"));
    let s = crate::winbuild::scan(&logs[3]);
    assert_eq!(
        s.failed,
        Some(("30-containers".into(), "exit code 1".into()))
    );
    assert_eq!(logs[4], "");
    assert_eq!(
        r.params(1),
        json!({"name": BUILDER, "prefix": "DevclusterBuild"})
    );
    let script = Op::BuildLog.script();
    assert!(script.contains("-ResultClassName Msvm_KvpExchangeComponent"));
    // Items the guest writes are GuestExchangeItems (the Guest key);
    // intrinsic ones are the integration services' own.
    assert!(script.contains("@($kvp.GuestExchangeItems)"));
    assert!(!script.contains("GuestIntrinsicExchangeItems"));
    assert!(script.contains("/INSTANCE/PROPERTY[@NAME='Name']/VALUE"));
    assert!(script.contains("/INSTANCE/PROPERTY[@NAME='Data']/VALUE"));
}

#[test]
fn build_ps1_writes_the_items_build_log_reads() {
    let build = include_str!("../../../provisioners/windows/build/build.ps1");
    let write = build
        .split("function Write-Serial")
        .nth(1)
        .and_then(|f| f.split("\n}\n").next())
        .expect("build.ps1 has Write-Serial");
    // The key Microsoft documents for data a Windows guest creates
    // ("Virtual Machine\Guest": non-intrinsic data, GuestExchangeItems).
    assert!(write.contains(r"$kvp = 'HKLM:\SOFTWARE\Microsoft\Virtual Machine\Guest'"));
    assert!(write.contains(&format!("-Name ('{BUILD_KVP_PREFIX}{{0:D3}}' -f $n)")));
    assert!(write.contains("-PropertyType String"));
    // Numbered by the line's place in the log file, which survives reboots.
    assert!(write.contains("$n = @(Get-Content -Path $log).Count"));
    // The serial port and the log file are still written.
    assert!(write.contains("Add-Content -Path $log -Value $Line"));
    assert!(write.contains("SerialPort 'COM1'"));
    // The item goes after the log line: its number counts that line.
    assert!(write.find("Add-Content").unwrap() < write.find("New-ItemProperty").unwrap());
}

#[test]
fn keep_disk_copies_the_builders_disk_to_bases() {
    let id = "0123456789abcdef01234567";
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::KeepDisk, "keep-disk-kept"),
        (Op::KeepDisk, "keep-disk-running"),
        (Op::KeepDisk, "keep-disk-in-use"),
    ]);
    let p = r.provider();
    let (kept, running, in_use) = run(async {
        (
            p.keep_disk(BUILDER, id).await,
            p.keep_disk(BUILDER, id).await,
            p.keep_disk(BUILDER, id).await,
        )
    });
    let kept = kept.unwrap();
    let target = format!(r"{ROOT}\bases\{id}.vhdx");
    assert_eq!(
        kept,
        GoldenVolume {
            name: format!("{id}.vhdx"),
            path: PathBuf::from(&target),
            bytes: 9126805504,
            capacity_bytes: 64 << 30,
        }
    );
    assert_eq!(p.disk_format(), crate::images::Format::Vhdx);
    r.assert_ran(2, Op::KeepDisk);
    assert_eq!(
        r.params(2),
        json!({
            "name": BUILDER,
            "tag": format!("devcluster-node={BUILDER}"),
            "vhdPath": format!(r"{ROOT}\{BUILDER}\{BUILDER}.vhdx"),
            "target": target,
        })
    );
    let e = running.unwrap_err();
    assert!(e.to_string().contains("is Running, not off"), "{e}");
    let e = in_use.unwrap_err();
    assert!(
        chain(&e).contains("is the parent of a disk of VM hv1-win1"),
        "{}",
        chain(&e)
    );
    let script = Op::KeepDisk.script();
    assert!(script.contains("Copy-Item -LiteralPath $P.vhdPath -Destination $partial"));
    assert!(script.contains("Move-Item -LiteralPath $partial -Destination $P.target"));
    assert!(script.contains("if (\"$($vm.State)\" -ne 'Off')"));
}

#[test]
fn remove_golden_deletes_it_absent_is_fine_in_use_is_refused() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::RemoveGolden, "remove-golden-removed"),
        (Op::RemoveGolden, "remove-golden-absent"),
        (Op::RemoveGolden, "remove-golden-in-use"),
    ]);
    let p = r.provider();
    let name = "0123456789abcdef01234567.vhdx";
    let e = run(async {
        p.remove_golden(name).await.unwrap();
        p.remove_golden(name).await.unwrap();
        p.remove_golden(name).await.unwrap_err()
    });
    assert_eq!(
        r.params(2),
        json!({"path": format!(r"{ROOT}\bases\{name}")})
    );
    assert!(
        chain(&e).contains(&format!(
            r"base disk {ROOT}\bases\{name} is the parent of a disk of VM hv1-win1, hv1-win2"
        )),
        "{}",
        chain(&e)
    );
    let h = hint_of(&e);
    assert!(
        h.contains("devcluster destroy") && h.contains("hv1-win1"),
        "{h}"
    );
    // Only names under bases: nothing else is ever deleted.
    let r = Replay::new(&[(Op::StorageRoot, "storage-root")]);
    let p = r.provider();
    for bad in [
        r"..\x.vhdx",
        r"C:\Windows\x.vhdx",
        "a/b.vhdx",
        "disk.qcow2",
        "",
    ] {
        let e = run(p.remove_golden(bad)).unwrap_err();
        assert!(matches!(e, ProviderError::Invalid(_)), "{bad}: {e}");
    }
    assert_eq!(r.calls(), 1);
}

#[test]
fn a_windows_node_is_a_differencing_disk_of_its_kept_base() {
    let r = Replay::new(&[
        (Op::StorageRoot, "storage-root"),
        (Op::CreateVm, "create-new"),
    ]);
    let mut spec = vm("hv1-win1");
    spec.os = Os::Windows;
    spec.role = "worker".into();
    spec.golden = Some("0123456789abcdef01234567.vhdx".into());
    run(r.provider().create_node(&spec)).unwrap();
    r.assert_ran(2, Op::CreateVm);
    let params = r.params(2);
    assert_eq!(
        params["parentPath"],
        format!(r"{ROOT}\bases\0123456789abcdef01234567.vhdx")
    );
    assert_eq!(params["parentSource"], Value::Null);
    assert_eq!(params["secureBootTemplate"], "MicrosoftWindows");
    assert_eq!(params["seedPath"], format!(r"{ROOT}\hv1-win1\seed.iso"));
    assert!(
        Op::CreateVm
            .script()
            .contains("-ParentPath $P.parentPath -Differencing")
    );

    // A golden that is a path, not a name, is refused before the VM is made.
    let r = Replay::new(&[(Op::StorageRoot, "storage-root")]);
    spec.golden = Some(format!(r"{ROOT}\bases\x.vhdx"));
    let e = run(r.provider().create_node(&spec)).unwrap_err();
    assert!(
        e.to_string()
            .contains("is not the name of a Hyper-V base disk"),
        "{e}"
    );
    assert_eq!(r.calls(), 1);
}

#[test]
fn hyperv_builds_windows_base_disks() {
    let caps = Replay::new(&[]).provider().capabilities();
    assert!(caps.windows_builds);
    // Prepared Linux nodes are not kept as golden disks here (yet).
    assert!(!caps.golden_disks);
}
