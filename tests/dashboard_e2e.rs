//! `devcluster dashboard` against a real 2-VM machines-only cluster on
//! libvirt (software emulation, isolated network, the guest test image),
//! in a real headless Chromium: both nodes with IPs and VM states (a
//! screenshot is kept), new log lines as a step writes them, Suspend and
//! Resume really saving and restoring both domains (virsh confirms, the
//! page shows each change), a concurrent `up` holding the lock making the
//! button refuse with the lock's message, and the guard's refusals.

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]
#![allow(clippy::print_stderr)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Test;
use common::cdp::Browser;
use common::dashboard::Dashboard;
use common::vms::{ClusterCleanup, virsh};

const CONFIG: &str = r#"
workers = 1
[network]
node_cidr = "192.168.246.0/24"
[libvirt]
network_mode = "isolated"
domain_type = "qemu"
[linux]
cpus = 1
memory_mib = 1024
disk_gib = 10
image = "guest"
"#;

fn domstate(vm: &str) -> String {
    virsh(&["domstate", vm, "--reason"]).trim().to_string()
}

/// Where the screenshots go: `DEVCLUSTER_ARTIFACTS`, else target/.
fn artifact(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("DEVCLUSTER_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
        });
    dir.join(name)
}

fn click(page: &mut common::cdp::Page, op: &str) {
    page.eval(&format!(
        "document.querySelector('button[data-op={op}]').click()"
    ));
}

#[test]
fn the_dashboard_of_a_real_cluster() {
    let image = common::vms::test_image();
    let nodes = ["dbe-cp", "dbe-w1"];
    let _cleanup = ClusterCleanup::fresh("dbe", &["dbe-cp", "dbe-w1"]);
    let mut t = Test::new();
    t.file("devcluster.toml", CONFIG);
    t.args(&["images", "import", "guest", &image, "--os", "linux"])
        .run()
        .status(0);
    let started = Instant::now();
    t.args(&["--cluster", "dbe", "up", "--no-kubernetes"])
        .run()
        .status(0);
    eprintln!("up done after {:?}", started.elapsed());

    let d = Dashboard::start(&t, "dbe");
    d.assert_refusals();
    let browser = Browser::launch();
    let mut page = browser.page();
    page.navigate(&d.url);
    let st = devcluster::state::load_existing(&t.dirs(), "dbe").unwrap();
    for n in &st.plan.nodes {
        page.wait_for(
            &format!("[...document.querySelectorAll('#nodes tr')].some(r => r.dataset.node === '{}' && r.querySelector('.ip').textContent === '{}' && r.querySelector('.vm').textContent === 'running')", n.name, n.ip),
            Duration::from_secs(20),
        );
    }
    let shot = artifact("dashboard-running.png");
    page.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());

    // A second `up` holds the lock (stopped while it holds it): the
    // button refuses with the lock's own message, and nothing changes.
    let lock_info = t.dirs().locks().join("dbe.lock.info");
    let mut up = t
        .command()
        .args(["--cluster", "dbe", "up", "--no-kubernetes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lock_info.exists() {
        assert!(Instant::now() < deadline, "up never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = up.id().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    click(&mut page, "suspend");
    let msg = page.wait_for(
        "document.getElementById('action-result').className === 'err' && document.getElementById('action-result').textContent",
        Duration::from_secs(20),
    );
    assert!(
        msg.as_str().unwrap().contains(&format!(
            "cluster dbe is busy: pid {pid} is running `devcluster up`"
        )),
        "{msg}"
    );
    for vm in nodes {
        assert_eq!(
            domstate(vm),
            "running (booted)",
            "{vm} changed under a refused action"
        );
    }
    // Let it go on: its step lines appear in the panel as it writes them.
    let before = page
        .eval("document.getElementById('log').textContent.split('skipped: already done').length");
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert!(up.wait().unwrap().success(), "the second up failed");
    page.wait_for(
        &format!("document.getElementById('log').textContent.split('skipped: already done').length > {before}"),
        Duration::from_secs(10),
    );

    // Suspend: both domains saved (virsh), the page shows it.
    click(&mut page, "suspend");
    page.wait_for(
        "document.getElementById('action-result').textContent === 'suspend: done'",
        Duration::from_secs(300),
    );
    for vm in nodes {
        assert_eq!(domstate(vm), "shut off (saved)", "{vm}");
    }
    page.wait_for(
        "[...document.querySelectorAll('#nodes .vm')].every(c => c.textContent === 'suspended')",
        Duration::from_secs(10),
    );
    page.screenshot(&artifact("dashboard-suspended.png"));

    // Resume: back to running, the page again.
    click(&mut page, "resume");
    page.wait_for(
        "document.getElementById('action-result').textContent === 'resume: done'",
        Duration::from_secs(300),
    );
    for vm in nodes {
        assert!(
            domstate(vm).starts_with("running"),
            "{vm}: {}",
            domstate(vm)
        );
    }
    page.wait_for(
        "[...document.querySelectorAll('#nodes .vm')].every(c => c.textContent === 'running')",
        Duration::from_secs(10),
    );
    eprintln!("dashboard test done after {:?}", started.elapsed());
    drop(d);
    t.args(&["--cluster", "dbe", "destroy", "--yes"]).run();
}
