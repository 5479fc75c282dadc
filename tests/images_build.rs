//! `devcluster images build` and `up`'s own build of a missing Windows
//! base disk: the refusals that come before anything is created. Real
//! libvirt (its built-in `test:///default` driver, which runs no guests,
//! so devcluster sees software emulation, as under nested virtualisation
//! here); the build itself on real libvirtd is in
//! tests/windows_build_libvirt.rs.

#![cfg(target_os = "linux")]

mod common;

use common::{Test, files_under};

const TEST_URI: &str = "test:///default";

fn nothing_created(t: &Test) {
    let home = t.home();
    for dir in ["cache/builds", "cache/golden", "cache/images"] {
        let d = home.join(dir);
        assert!(
            !d.exists() || files_under(&d).is_empty(),
            "{} holds {:?}",
            d.display(),
            files_under(&d)
        );
    }
}

#[test]
fn software_emulation_needs_the_opt_in_and_creates_nothing() {
    let mut t = Test::new();
    let run = t
        .env("DEVCLUSTER_LIBVIRT_URI", TEST_URI)
        .args(&["images", "build", "windows-server-2025", "--accept-license"])
        .run()
        .status(1)
        .stderr_has("--allow-software-emulation")
        .stderr_has("takes hours");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    nothing_created(&t);
}

#[test]
fn up_builds_a_missing_base_disk_with_the_same_opt_in() {
    let mut t = Test::new();
    let run = t
        .env("DEVCLUSTER_LIBVIRT_URI", TEST_URI)
        .file(
            "devcluster.toml",
            "provider = \"libvirt\"\n[network]\nnode_cidr = \"192.168.243.0/24\"\n",
        )
        .args(&[
            "--cluster",
            "ib-up",
            "up",
            "--workers",
            "0",
            "--windows-workers",
            "1",
            "--no-kubernetes",
            "--accept-license",
        ])
        .run();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("--allow-software-emulation"),
        "{}",
        run.stderr
    );
    // The old stop is gone: up goes on to build it.
    assert!(
        !run.stderr.contains("not in this devcluster build"),
        "{}",
        run.stderr
    );
    nothing_created(&t);
}

#[test]
fn a_linux_or_unknown_image_is_refused() {
    let mut t = Test::new();
    t.env("DEVCLUSTER_LIBVIRT_URI", TEST_URI)
        .args(&["images", "build", "ubuntu-24.04"])
        .run()
        .status(1)
        .stderr_has("not a Windows image")
        .stderr_has("windows-server-2025");
    t.env("DEVCLUSTER_LIBVIRT_URI", TEST_URI)
        .args(&["images", "build", "no-such-image"])
        .run()
        .status(1)
        .stderr_has("no-such-image");
    nothing_created(&t);
}

/// A provider this host cannot run is refused with its detection's words
/// before the ISO is fetched or anything is made.
#[test]
fn a_provider_this_host_cannot_run_is_refused() {
    let mut t = Test::new();
    t.env("DEVCLUSTER_LIBVIRT_URI", TEST_URI)
        .args(&[
            "images",
            "build",
            "windows-server-2025",
            "--provider",
            "hyperv",
        ])
        .run()
        .status(1)
        .stderr_has("Hyper-V runs only on Windows hosts")
        .stderr_has("--provider libvirt");
    nothing_created(&t);
}

/// The virtio opt-in comes through the host cache like the ISO: offline
/// and without the pinned virtio-win ISO in the cache, the build stops
/// naming it, before a builder, key or disk is made. With another
/// provider the opt-in is refused (it is libvirt's setting).
#[test]
fn virtio_needs_the_pinned_driver_iso_and_libvirt() {
    let mut t = Test::new();
    let iso = t.home().join("standin.iso");
    std::fs::create_dir_all(t.home()).unwrap();
    common::stand_in_windows_iso(&t.dirs(), &iso);
    let run = t
        .env("DEVCLUSTER_LIBVIRT_URI", TEST_URI)
        .args(&[
            "images",
            "build",
            "windows-server-2025",
            "--windows-devices",
            "virtio",
            "--allow-software-emulation",
            "--accept-license",
            "--offline",
        ])
        .run()
        .status(1)
        .stderr_has("image virtio-win is not in the cache")
        .stderr_has("devcluster images pull virtio-win");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    // The Windows ISO came through the cache (it is a local file); no
    // builder key, build log or base disk was made.
    for dir in ["cache/builds", "cache/golden"] {
        let d = t.home().join(dir);
        assert!(
            !d.exists() || files_under(&d).is_empty(),
            "{dir}: {:?}",
            files_under(&d)
        );
    }
    t.env("DEVCLUSTER_LIBVIRT_URI", TEST_URI)
        .args(&[
            "images",
            "build",
            "windows-server-2025",
            "--windows-devices",
            "bogus",
        ])
        .run()
        .status(1)
        .stderr_has("invalid value 'bogus'")
        .stderr_has("virtio");
}
