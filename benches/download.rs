//! Download throughput and resume cost, against a loopback HTTP server
//! (the tests' server, tests/common/http.rs) serving a 1 GiB file.
//!
//! - Throughput: `devcluster images pull` (download + sha256 + fsync +
//!   rename into the cache) against `curl -o FILE` followed by `sha256sum
//!   FILE`, alternating, best of 3 each; the figure is the ratio of
//!   throughputs (goal: at least 0.9).
//! - Resume: a pull cut by the server at 50 % (retried within the run) and
//!   a pull killed (SIGKILL) at about 50 % and run again; the figure is the
//!   bytes fetched again that were already on disk (goal: 0).
//!
//! `cargo bench --bench download` runs it on the release binary; without
//! `--bench` (as `cargo test --benches` does) it runs once on 32 MiB as a
//! smoke test.

#![allow(clippy::print_stdout)] // a benchmark prints its figures

#[path = "../tests/common/http.rs"]
mod http;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Resource, Server, data, sha256_hex};

const BIN: &str = env!("CARGO_BIN_EXE_devcluster");

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size: usize = if full { 1 << 30 } else { 32 << 20 };
    let rounds = if full { 3 } else { 1 };
    println!("preparing {} MiB of data ...", size >> 20);
    let body = data(size, 42);
    let sha = sha256_hex(&body);
    let server = Server::start();
    server.put("/big.img", Resource::new(body));
    let url = server.url("/big.img");
    let work = tempfile::tempdir().unwrap();

    // ---- throughput ------------------------------------------------------
    let have_curl = Command::new("curl").arg("--version").output().is_ok();
    let mut best_dc = Duration::MAX;
    let mut best_curl = Duration::MAX;
    let mut best_curl_only = Duration::MAX;
    let mut best_sum_only = Duration::MAX;
    for round in 0..rounds {
        let home = work.path().join(format!("home-{round}"));
        entry(&home, "bench", &url, &sha);
        let took = pull(&home);
        best_dc = best_dc.min(took);
        std::fs::remove_dir_all(&home).unwrap();

        if have_curl {
            let file = work.path().join("curl.img");
            let t = Instant::now();
            let ok = Command::new("curl")
                .args(["-s", "-f", "--noproxy", "*", "-o"])
                .arg(&file)
                .arg(&url)
                .status()
                .unwrap()
                .success();
            let downloaded = t.elapsed();
            let out = Command::new("sha256sum").arg(&file).output().unwrap();
            let took = t.elapsed();
            best_curl_only = best_curl_only.min(downloaded);
            best_sum_only = best_sum_only.min(took - downloaded);
            assert!(ok && out.status.success());
            assert!(String::from_utf8_lossy(&out.stdout).starts_with(&sha));
            best_curl = best_curl.min(took);
            std::fs::remove_file(&file).unwrap();
        }
        println!(
            "round {}: devcluster {:.2?}, curl+sha256sum {:.2?}",
            round + 1,
            best_dc,
            best_curl
        );
    }
    let mib_s = |d: Duration| (size as f64 / (1 << 20) as f64) / d.as_secs_f64();
    println!(
        "throughput (best of {rounds}): devcluster {:.0} MiB/s, curl -o + sha256sum {:.0} MiB/s",
        mib_s(best_dc),
        mib_s(best_curl)
    );
    if have_curl {
        println!(
            "  of which curl -o {:.2?} ({:.0} MiB/s), sha256sum {:.2?} ({:.0} MiB/s)",
            best_curl_only,
            mib_s(best_curl_only),
            best_sum_only,
            mib_s(best_sum_only)
        );
        println!(
            "ratio devcluster / (curl + sha256sum): {:.2} (goal >= 0.9)",
            best_curl.as_secs_f64() / best_dc.as_secs_f64()
        );
    }

    // ---- resume: cut by the server at 50 % -----------------------------
    let home = work.path().join("home-cut");
    entry(&home, "bench", &url, &sha);
    server.clear_log();
    server.update("/big.img", |r| r.cut_after = Some(size as u64 / 2));
    pull(&home);
    let served = server.served_for("/big.img");
    println!(
        "resume after a cut at 50 %: {} requests, {} bytes served for a {} byte file: re-fetched {} bytes (goal 0)",
        server.log_for("/big.img").len(),
        served,
        size,
        served - size as u64
    );
    std::fs::remove_dir_all(&home).unwrap();

    // ---- resume: the process killed at about 50 % ---------------------
    let home = work.path().join("home-kill");
    entry(&home, "bench", &url, &sha);
    server.clear_log();
    let part = home
        .join("cache/images/bench")
        .join(format!("{sha}.qcow2.part"));
    let mut child = devcluster(&home)
        .args(["images", "pull", "bench"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if len >= size as u64 / 2 || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the pull never got to 50 %");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    // The server logs the killed connection once its next write fails.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.log_for("/big.img").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let on_disk = std::fs::metadata(&part)
        .map(|m| m.len())
        .unwrap_or(size as u64);
    let first = server.served_for("/big.img");
    server.clear_log();
    pull(&home);
    let second = server.served_for("/big.img");
    println!(
        "resume after SIGKILL: {on_disk} bytes on disk, the rerun fetched {second} = {} missing + {} re-fetched (goal 0); {} bytes were in flight at the kill (sent, never written)",
        size as u64 - on_disk,
        second as i64 - (size as u64 - on_disk) as i64,
        first.saturating_sub(on_disk)
    );
}

/// `devcluster images pull bench` to completion: how long it took.
fn pull(home: &Path) -> Duration {
    let t = Instant::now();
    let out = devcluster(home)
        .args(["images", "pull", "bench"])
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn devcluster(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("DEVCLUSTER_HOME", home)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("DEVCLUSTER_LOG")
        .arg("--no-progress");
    c
}

fn entry(home: &Path, name: &str, url: &str, sha: &str) {
    let dir = home.join("config/images");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "name = \"{name}\"\nos = \"linux\"\nfirmware = \"uefi\"\ndefault_user = \"u\"\n\
             [[artifacts]]\nproviders = [\"libvirt\"]\nurl = \"{url}\"\nsha256 = \"{sha}\"\nformat = \"qcow2\"\n"
        ),
    )
    .unwrap();
}
