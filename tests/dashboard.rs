//! `devcluster dashboard` in a real headless Chromium, on a planned
//! 3-node cluster (no VMs: the real-VM test is tests/dashboard_e2e.rs):
//! the page lists the nodes, shows each node's step timeline, streams new
//! log lines as they are written, and refuses every request without the
//! run's secret, with a foreign Host, or a GET to an action.

#![allow(clippy::print_stderr)]

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::Test;
use common::cdp::Browser;
use common::dashboard::Dashboard;

#[test]
fn the_page_in_chromium_and_the_guard() {
    let t = Test::new();
    let dirs = t.dirs();
    common::make_cluster(&dirs, "dbpage", 2, 0);
    // Step times as `up` records them: a done step and a failed one.
    let mut st = devcluster::state::load_existing(&dirs, "dbpage").unwrap();
    let cp = st.plan.control_plane().name.clone();
    let ns = st.nodes.entry(cp.clone()).or_default();
    ns.step_times.insert(
        "prepare-os".into(),
        devcluster::state::StepTime {
            started_ms: 1_000,
            took_ms: Some(42_000),
        },
    );
    ns.step_times.insert(
        "kubeadm-init".into(),
        devcluster::state::StepTime {
            started_ms: 50_000,
            took_ms: Some(3_000),
        },
    );
    ns.failed_step = Some("kubeadm-init".into());
    devcluster::state::save(&dirs, &st).unwrap();
    let logs = dirs.cluster("dbpage").join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join(format!("{cp}.log")), "[prepare-os] first line\n").unwrap();

    let d = Dashboard::start(&t, "dbpage");
    assert!(
        d.url
            .starts_with(&format!("http://127.0.0.1:{}/?k=", d.port)),
        "{}",
        d.url
    );
    d.assert_refusals();

    let browser = Browser::launch();
    let mut page = browser.page();
    page.navigate(&d.url);
    // The redirect dropped the secret from the address bar.
    let href = page.eval("location.href");
    assert_eq!(href, format!("http://127.0.0.1:{}/", d.port));
    let rows = page.wait_for(
        "document.querySelectorAll('#nodes tbody tr').length === 3 && [...document.querySelectorAll('#nodes tbody tr')].map(r => r.dataset.node + ' ' + r.querySelector('.ip').textContent).join(',')",
        Duration::from_secs(10),
    );
    for n in &st.plan.nodes {
        assert!(
            rows.as_str()
                .unwrap()
                .contains(&format!("{} {}", n.name, n.ip)),
            "{rows}"
        );
    }
    let steps = page.eval("document.querySelector('.timeline').textContent");
    assert!(steps.as_str().unwrap().contains("prepare-os42s"), "{steps}");
    assert!(
        page.eval("document.querySelector('li.failed').textContent")
            .as_str()
            .unwrap()
            .contains("kubeadm-initfailed after 3s")
    );
    page.wait_for(
        "document.getElementById('log').textContent.includes('first line')",
        Duration::from_secs(10),
    );

    // A step writes: the panel shows the new lines without a reload.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join(format!("{cp}.log")))
        .unwrap();
    writeln!(f, "[prepare-os] a new line, written now").unwrap();
    page.wait_for(
        "document.getElementById('log').textContent.includes('a new line, written now')",
        Duration::from_secs(5),
    );
    let log = page.eval("document.getElementById('log').textContent");
    assert_eq!(
        log.as_str().unwrap().matches("first line").count(),
        1,
        "{log}"
    );

    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts/dashboard-planned.png");
    page.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());

    // A machines-only cluster has no Kubernetes view yet: the page says so.
    let note = page.eval("document.querySelector('header .note').textContent");
    assert!(
        note.as_str()
            .unwrap()
            .contains("control plane is initialised"),
        "{note}"
    );
    // An action on a cluster without VMs fails with the lifecycle's own
    // message, shown on the page.
    page.eval("document.querySelector('button[data-op=resume]').click()");
    let shown = page.wait_for("document.getElementById('action-result').className === 'err' && document.getElementById('action-result').textContent", Duration::from_secs(20));
    eprintln!("resume on a planned cluster: {shown}");
}
