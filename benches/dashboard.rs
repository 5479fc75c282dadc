//! The dashboard's figures: time to serve the cluster page, first paint in
//! headless Chromium, and the server's CPU while idle, for a 3-node
//! cluster (a planned one: the page is served from the last status
//! snapshot, so VMs would not change the serving time). Prints figures; a
//! benchmark, not a test. Run: `cargo bench --bench dashboard`.
//! Targets: page ≤ 50 ms, first paint ≤ 300 ms, idle CPU not measurable.

#![allow(clippy::print_stdout)]

#[path = "../tests/common/cdp.rs"]
mod cdp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devcluster::spec::{Layer, Origin, Val};

fn ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted after the command name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn get(port: u16, cookie: &str) -> (Duration, usize) {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    (t.elapsed(), out.len())
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.1} ms, max {:.1} ms (n={})",
        v[v.len() / 2],
        v[v.len() - 1],
        v.len()
    )
}

fn main() {
    let home = tempfile::tempdir().unwrap();
    let dirs = devcluster::dirs::Dirs::under(&home.path().join("home"));
    let layer = Layer {
        workers: Some(Val::new(2, Origin::Flag("--workers"))),
        ..Layer::default()
    };
    let spec =
        devcluster::spec::resolve(Val::new("dbbench".into(), Origin::Flag("--cluster")), layer)
            .unwrap();
    let plan = devcluster::plan::plan(&spec, &Default::default()).unwrap();
    devcluster::state::save(&dirs, &devcluster::state::ClusterState::new(plan)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_devcluster"))
        .args([
            "--cluster",
            "dbbench",
            "dashboard",
            "--no-browser",
            "-o",
            "json",
        ])
        .env("DEVCLUSTER_HOME", home.path().join("home"))
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let port = v["port"].as_u64().unwrap() as u16;
    let cookie = format!(
        "devcluster-dashboard-{port}={}",
        v["token"].as_str().unwrap()
    );
    let url = v["url"].as_str().unwrap().to_string();

    let _ = get(port, &cookie);
    let mut served = Vec::new();
    let mut size = 0;
    for _ in 0..50 {
        let (d, n) = get(port, &cookie);
        served.push(d.as_secs_f64() * 1e3);
        size = n;
    }
    println!("page served (GET /, {size} bytes): {}", stats(served));

    let browser = cdp::Browser::launch();
    let mut page = browser.page();
    page.navigate(&url);
    let mut paint = Vec::new();
    let mut nav = Vec::new();
    for _ in 0..10 {
        page.navigate(&format!("http://127.0.0.1:{port}/"));
        let fcp = page.wait_for(
            "performance.getEntriesByName('first-contentful-paint')[0].startTime",
            Duration::from_secs(10),
        );
        paint.push(fcp.as_f64().unwrap());
        let rs = page.eval("performance.getEntriesByType('navigation')[0].responseEnd - performance.getEntriesByType('navigation')[0].requestStart");
        nav.push(rs.as_f64().unwrap());
    }
    println!(
        "first contentful paint (Chromium, from navigation start): {}",
        stats(paint)
    );
    println!(
        "request to response end (Chromium's navigation timing): {}",
        stats(nav)
    );

    let hz = 100.0; // USER_HZ on Linux
    let t0 = ticks(child.id());
    std::thread::sleep(Duration::from_secs(10));
    let open = ticks(child.id()) - t0;
    println!(
        "CPU with the page open (events every 0.5 s), 10 s: {:.2} s ({:.1} %)",
        open as f64 / hz,
        open as f64 / hz * 10.0
    );
    page.navigate("about:blank");
    std::thread::sleep(Duration::from_secs(1));
    let t0 = ticks(child.id());
    std::thread::sleep(Duration::from_secs(20));
    let idle = ticks(child.id()) - t0;
    println!(
        "CPU idle (no page open), 20 s: {} ticks of 10 ms ({:.2} s)",
        idle,
        idle as f64 / hz
    );
    let _ = child.kill();
    let _ = child.wait();
}
