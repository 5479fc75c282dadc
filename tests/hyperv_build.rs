//! `devcluster images build` on Hyper-V, through the whole build loop
//! (`winbuild::build`) against the PowerShell stand-in
//! (testdata/hyperv/powershell-standin.sh replaying testdata/hyperv/replies,
//! sources in its README). A stand-in ISO comes through the catalog and
//! cache (a user catalog entry with a file:// URL for the hyperv provider,
//! the licence accepted). Proven here: the order of operations — the old
//! builder removed, no network made, the builder created with the ISO and
//! the build CD, started, a space pressed while no build line has come, the
//! build log read from the guest's KVP items phase by phase, the disk kept
//! once the builder is off, recorded as the base disk, the builder removed
//! — and that a failed build step ends in `BuildError::Failed` naming
//! `vmconnect`, with the builder left for inspection. Not proven: anything
//! Hyper-V or Windows does (nothing here runs either).

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use devcluster::images::{self, Fetch, winbase};
use devcluster::providers::hyperv::runner::Op;
use devcluster::providers::hyperv::{HyperV, PowerShell};
use devcluster::providers::{Provider, ProviderConfig};
use devcluster::spec::{DomainType, ProviderKind, WindowsDevices};
use devcluster::winbuild::{self, Bounds, BuildError, Place, Request};

const VM: &str = "devcluster-build-windows-server-2025";
const ROOT: &str = r"C:\ProgramData\Microsoft\Windows\Hyper-V\devcluster";

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hyperv")
}

/// The stand-in's reply queue: (operation, fixture) in call order.
fn queue(dir: &Path, replies: &[(Op, &str)]) {
    std::fs::create_dir_all(dir.join("replies")).unwrap();
    for (i, (op, fixture)) in replies.iter().enumerate() {
        let from = testdata().join("replies").join(format!("{fixture}.txt"));
        let to = dir
            .join("replies")
            .join(format!("{:02}-{}.txt", i + 1, op.name()));
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// Which operations the stand-in ran, in order.
fn ran(dir: &Path) -> Vec<String> {
    let mut calls: Vec<PathBuf> = std::fs::read_dir(dir.join("calls"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "ps1"))
                .collect()
        })
        .unwrap_or_default();
    calls.sort();
    calls
        .iter()
        .map(|p| {
            let script = std::fs::read_to_string(p).unwrap();
            script
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# devcluster op: "))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

fn params(dir: &Path, n: usize) -> serde_json::Value {
    let text =
        std::fs::read_to_string(dir.join("calls").join(format!("{n:02}.params.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A stand-in installation ISO as the user's own copy of the evaluation
/// ISO, for the hyperv provider.
fn stand_in_iso(world: &common::World) -> (PathBuf, String) {
    let iso = world.path("standin.iso");
    let sha = common::stand_in_windows_iso_for(&world.dirs, &iso, "hyperv");
    (iso, sha)
}

fn provider(world: &common::World, replay: &Path) -> HyperV {
    HyperV::new(
        PowerShell {
            program: testdata().join("powershell-standin.sh"),
            env: vec![("HYPERV_REPLAY_DIR".into(), replay.display().to_string())],
        },
        &ProviderConfig {
            libvirt_uri: String::new(),
            libvirt_domain_type: DomainType::Qemu,
            cache_dir: world.dirs.cache.clone(),
        },
    )
}

fn request() -> Request {
    Request {
        image: "windows-server-2025".into(),
        place: Place::default_for("windows-server-2025"),
        bounds: Bounds {
            stall: Duration::from_secs(600),
            overall: Duration::from_secs(1200),
            // Long enough that only the build log decides when keys stop.
            boot_keys: Duration::from_secs(600),
        },
        poll: Duration::from_millis(10),
        typical: winbuild::TYPICAL_HW,
        devices: WindowsDevices::Emulated,
    }
}

#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>, std::sync::Mutex<Vec<String>>);
impl winbuild::BuildProgress for Notes {
    fn note(&self, m: &str) {
        self.0.lock().unwrap().push(m.to_string());
    }
    fn phase(&self, phase: &str, _: Duration, _: Duration) {
        let mut phases = self.1.lock().unwrap();
        if phases.last().map(String::as_str) != Some(phase) {
            phases.push(phase.to_string());
        }
    }
}

/// The first calls of every build: the old builder goes first.
const REMOVE_OLD: [(Op, &str); 4] = [
    (Op::StorageRoot, "storage-root"),
    (Op::DeleteVm, "delete-absent"),
    (Op::RemoveStorage, "remove-storage"),
    (Op::RemoveNetwork, "remove-network-none"),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_build_keeps_the_disk_and_removes_the_builder() {
    let world = common::World::new();
    let dirs = &world.dirs;
    let (iso, sha) = stand_in_iso(&world);
    let replay = tempfile::tempdir().unwrap();
    let mut replies = REMOVE_OLD.to_vec();
    replies.extend([
        (Op::CreateBuilder, "create-builder-new"),
        (Op::StartVm, "start-started"),
        // Windows Setup: no build line yet, so a key each poll.
        (Op::VmState, "state-running"),
        (Op::BuildLog, "build-log-setup"),
        (Op::PressKey, "press-key-typed"),
        (Op::VmState, "state-running"),
        (Op::BuildLog, "build-log-setup"),
        (Op::PressKey, "press-key-typed"),
        // build.ps1's first line: no more keys.
        (Op::VmState, "state-running"),
        (Op::BuildLog, "build-log-first"),
        (Op::VmState, "state-running"),
        (Op::BuildLog, "build-log-phases"),
        (Op::VmState, "state-running"),
        (Op::BuildLog, "build-log-rebooted"),
        // sysprep powered it off.
        (Op::VmState, "state-off"),
        (Op::KeepDisk, "keep-disk-kept"),
        (Op::DeleteVm, "delete-removed"),
        (Op::RemoveStorage, "remove-storage"),
        (Op::RemoveNetwork, "remove-network-none"),
    ]);
    queue(replay.path(), &replies);
    let p = provider(&world, replay.path());
    let dl = images::download::NoProgress;
    let fetch = Fetch::new(&dl).accept_license(true);
    let notes = Notes::default();
    let disk = winbuild::build(dirs, &p, &request(), &fetch, &notes)
        .await
        .expect("the build keeps the disk of a builder that is off");

    let expected: Vec<&str> = replies.iter().map(|(op, _)| op.name()).collect();
    assert_eq!(ran(replay.path()), expected);
    // The builder: the cached ISO, a blank disk, no switch.
    let create = params(replay.path(), 5);
    let cached_iso = create["installIso"].as_str().unwrap();
    assert!(
        Path::new(cached_iso).starts_with(&dirs.cache),
        "{cached_iso} is not in the cache"
    );
    assert_eq!(
        std::fs::read(cached_iso).unwrap(),
        std::fs::read(&iso).unwrap()
    );
    assert_eq!(create["diskBytes"], 64u64 << 30);
    assert!(create.get("parentPath").is_none() && create.get("switch").is_none());
    assert!(
        create["notes"]
            .as_str()
            .unwrap()
            .contains("devcluster-role=builder")
    );
    // The build CD went through a private file, gone afterwards.
    assert!(!Path::new(create["seedSource"].as_str().unwrap()).exists());
    // Two presses, both a space, and the note says so.
    assert_eq!(params(replay.path(), 9)["keyCode"], 32);
    let notes_said = notes.0.lock().unwrap().clone();
    assert!(
        notes_said
            .iter()
            .any(|n| n.starts_with("pressed a key 2 times")),
        "{notes_said:?}"
    );
    assert!(
        notes_said
            .iter()
            .any(|n| n.contains(&format!("vmconnect localhost {VM}"))),
        "{notes_said:?}"
    );
    // The phases came from the KVP items, in order.
    assert_eq!(
        *notes.1.lock().unwrap(),
        ["windows-setup", "10-sshd", "30-containers"]
    );

    // Kept under bases, named by the base disk's id, recorded for `up`.
    let id = disk.key.id();
    assert_eq!(
        params(replay.path(), 20)["target"],
        format!(r"{ROOT}\bases\{id}.vhdx")
    );
    let volume = disk
        .volume
        .clone()
        .expect("a Hyper-V base disk is a volume");
    assert_eq!(volume.name, format!("{id}.vhdx"));
    assert_eq!(disk.format, images::Format::Vhdx);
    assert_eq!(disk.capacity_bytes, 64 << 30);
    let (_, image) = winbuild::windows_image(dirs, "windows-server-2025").unwrap();
    let found = winbase::lookup(
        dirs,
        &image,
        &sha,
        ProviderKind::Hyperv,
        WindowsDevices::Emulated,
    )
    .expect("recorded");
    assert_eq!(found.key, disk.key);
    assert!(
        winbase::lookup(
            dirs,
            &image,
            &sha,
            ProviderKind::Libvirt,
            WindowsDevices::Emulated
        )
        .is_none()
    );
    // The builder and its folder went after the record was written.
    assert_eq!(params(replay.path(), 21)["name"], VM);

    // A second build finds the record and runs nothing.
    let again = tempfile::tempdir().unwrap();
    let p = provider(&world, again.path());
    let d = winbuild::build(dirs, &p, &request(), &fetch, &notes)
        .await
        .unwrap();
    assert_eq!(d.key, disk.key);
    assert!(ran(again.path()).is_empty());
    assert!(p.capabilities().windows_builds);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_ends_the_build_with_the_vmconnect_hint() {
    let world = common::World::new();
    let dirs = &world.dirs;
    stand_in_iso(&world);
    let replay = tempfile::tempdir().unwrap();
    let mut replies = REMOVE_OLD.to_vec();
    replies.extend([
        (Op::CreateBuilder, "create-builder-new"),
        (Op::StartVm, "start-started"),
        (Op::VmState, "state-running"),
        (Op::BuildLog, "build-log-failed"),
    ]);
    queue(replay.path(), &replies);
    let p = provider(&world, replay.path());
    let dl = images::download::NoProgress;
    let fetch = Fetch::new(&dl).accept_license(true);
    let e = winbuild::build(dirs, &p, &request(), &fetch, &Notes::default())
        .await
        .expect_err("a failed step fails the build");
    match &e {
        BuildError::Failed {
            vm, step, message, ..
        } => {
            assert_eq!(vm, VM);
            assert_eq!(step, "30-containers");
            assert_eq!(message, "exit code 1");
        }
        other => panic!("{other:?}"),
    }
    let hint = e.hint().unwrap();
    assert!(
        hint.contains(&format!("vmconnect localhost {VM}")),
        "{hint}"
    );
    // The build log the hint names holds what the KVP items said.
    let log = dirs.cache.join("builds").join(format!("{VM}.serial.log"));
    assert!(hint.contains(&log.display().to_string()), "{hint}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.ends_with("devcluster-build: failed 30-containers: exit code 1\n"),
        "{text}"
    );
    // Left for inspection: nothing after the log was read, nothing kept.
    let expected: Vec<&str> = replies.iter().map(|(op, _)| op.name()).collect();
    assert_eq!(ran(replay.path()), expected);
    let (_, image) = winbuild::windows_image(dirs, "windows-server-2025").unwrap();
    let sha = images::sha256_file(&world.path("standin.iso")).unwrap();
    assert!(
        winbase::lookup(
            dirs,
            &image,
            &sha,
            ProviderKind::Hyperv,
            WindowsDevices::Emulated
        )
        .is_none()
    );
}
