//! `list` and `status` on a home holding 20 clusters: whole-process wall
//! time of the real binary (start, read state, print), the figure a person
//! or a shell prompt waits for. Target: at most 20 ms each.
//!
//! `cargo bench --bench list_status` measures the release binary and prints
//! median, p95 and max over 100 runs. Under `cargo test` it runs 3
//! iterations as a smoke test.

#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 100 } else { 3 };
    let home = tempfile::tempdir().unwrap();
    let dirs = devcluster::dirs::Dirs::under(home.path());
    for i in 0..20 {
        let name = format!("c{i:02}");
        let spec = devcluster::spec::resolve(
            devcluster::spec::Val::default_value(name.clone()),
            devcluster::spec::Layer::default(),
        )
        .unwrap();
        let env = devcluster::plan::Surroundings {
            existing_subnet: Some(format!("192.168.{}.0/24", 100 + i).parse().unwrap()),
            ..Default::default()
        };
        let plan = devcluster::plan::plan(&spec, &env).unwrap();
        devcluster::state::save(&dirs, &devcluster::state::ClusterState::new(plan)).unwrap();
    }
    let user = tempfile::tempdir().unwrap();
    for (label, args) in [
        ("list", &["list"][..]),
        ("list -o json", &["list", "-o", "json"][..]),
        ("status", &["--cluster", "c10", "status"][..]),
    ] {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let out = Command::new(env!("CARGO_BIN_EXE_devcluster"))
                    .args(args)
                    .env("DEVCLUSTER_HOME", home.path())
                    .env("HOME", user.path())
                    .env_remove("KUBECONFIG")
                    .output()
                    .unwrap();
                let t = start.elapsed();
                assert!(out.status.success(), "{label} failed");
                t
            })
            .collect();
        times.sort();
        let pct = |p: usize| times[(times.len() - 1) * p / 100];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{label:<14} 20 clusters, {runs} runs: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            ms(pct(50)),
            ms(pct(95)),
            ms(pct(100)),
        );
    }
}
