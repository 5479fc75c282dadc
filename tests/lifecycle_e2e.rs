//! `devcluster up --no-kubernetes` and the lifecycle verbs on real VMs
//! (libvirt + QEMU, software emulation, isolated network, the guest test
//! image), driven through the binary as a user would.

#![cfg(all(target_os = "linux", feature = "test-libvirt"))]
#![allow(clippy::print_stderr)] // progress of a long test, shown with --nocapture

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Test;
use common::vms::{ClusterCleanup, virsh};

const CONFIG: &str = r#"
workers = 1
[network]
node_cidr = "192.168.234.0/24"
[libvirt]
network_mode = "isolated"
domain_type = "qemu"
[linux]
cpus = 1
memory_mib = 1024
disk_gib = 10
image = "guest"
"#;

fn ssh_out(t: &mut Test, node: &str, cmd: &str) -> String {
    common::vms::ssh_out(t, "lc", node, cmd)
}

#[test]
fn up_no_kubernetes_and_the_lifecycle() {
    let image = common::vms::test_image();
    let _cleanup = ClusterCleanup::fresh("lc", &["lc-cp", "lc-w1"]);
    let mut t = Test::new();
    t.file("devcluster.toml", CONFIG);
    t.args(&["images", "import", "guest", &image, "--os", "linux"])
        .run()
        .status(0);
    let started = Instant::now();

    // A first `up`, killed while the nodes boot; a second one meanwhile is
    // refused, naming the first.
    let first_log = t.root.path().join("first-up.log");
    let mut first = t
        .command()
        .args(["--cluster", "lc", "up", "--no-kubernetes"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&first_log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let running = virsh(&["list", "--name"]);
        if running.contains("lc-cp") && running.contains("lc-w1") {
            break;
        }
        assert!(Instant::now() < deadline, "the VMs never started");
        assert!(
            first.try_wait().unwrap().is_none(),
            "up ended before the VMs ran"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    t.args(&["--cluster", "lc", "up", "--no-kubernetes"])
        .run()
        .status(1)
        .stderr_has(&format!(
            "cluster lc is busy: pid {} is running `devcluster up`",
            first.id()
        ));
    first.kill().unwrap();
    first.wait().unwrap();
    eprintln!("killed the first up after {:?}", started.elapsed());

    // Again, with the preparation step forced to fail: exit 1 naming node
    // and step, the output in the log, the failed step in status.
    let failed = t
        .env("DEVCLUSTER_TEST_FAIL_STEP", "prepare-os")
        .args(&["--cluster", "lc", "up", "--no-kubernetes"])
        .run()
        .status(1)
        .stderr_has("2 nodes failed: node lc-cp: step prepare-os failed (exit 3); node lc-w1: step prepare-os failed (exit 3)")
        .stderr_has("hint: see the whole logs with `devcluster logs lc-cp`, `devcluster logs lc-w1`;");
    eprintln!("failing up done after {:?}", started.elapsed());
    assert!(
        failed.stderr.contains("DEVCLUSTER_TEST_FAIL_STEP"),
        "{}",
        failed.stderr
    );
    let logs = t
        .args(&["--cluster", "lc", "logs", "lc-w1"])
        .run()
        .status(0);
    assert!(logs.stdout.contains("[prepare-os]"), "{}", logs.stdout);
    assert!(
        logs.stdout.contains("DEVCLUSTER_TEST_FAIL_STEP"),
        "{}",
        logs.stdout
    );
    let status = t
        .args(&["--cluster", "lc", "status", "-o", "json"])
        .run()
        .status(0)
        .json();
    for n in status["nodes"].as_array().unwrap() {
        assert_eq!(n["last_step"], "prepare-os", "{n}");
        assert_eq!(n["phase"], "failed", "{n}");
    }

    // And again: converges, rerunning only the failed step.
    let ok = t
        .args(&["--cluster", "lc", "up", "--no-kubernetes"])
        .run()
        .status(0)
        .stderr_has("lc-cp: prepare-os done")
        .stderr_has("lc-w1: prepare-os done");
    eprintln!("up converged after {:?}", started.elapsed());
    assert!(
        ok.stdout.contains("lc-w1") && ok.stdout.contains("ready"),
        "{}",
        ok.stdout
    );

    // Inside the guests: names, swap, modules, sysctls.
    for node in ["lc-cp", "lc-w1"] {
        assert_eq!(ssh_out(&mut t, node, "hostname"), node);
        assert_eq!(ssh_out(&mut t, node, "swapon --noheadings | wc -l"), "0");
        assert_eq!(
            ssh_out(
                &mut t,
                node,
                "grep -cE '^(overlay|br_netfilter) ' /proc/modules"
            ),
            "2"
        );
        for key in ["net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"] {
            assert_eq!(
                ssh_out(&mut t, node, &format!("cat /proc/sys/{key}")),
                "1",
                "{node} {key}"
            );
        }
        assert_eq!(
            ssh_out(&mut t, node, "getent hosts lc-w1 | cut -d' ' -f1"),
            "192.168.234.21"
        );
    }
    t.args(&["--cluster", "lc", "ssh", "lc-w1", "--", "exit 7"])
        .run()
        .status(7);
    // Without an ssh program, commands go over devcluster's own client.
    let empty = t.root.path().join("no-ssh-here");
    std::fs::create_dir_all(&empty).unwrap();
    let own = t
        .env("PATH", empty.to_str().unwrap())
        .args(&[
            "--cluster",
            "lc",
            "ssh",
            "lc-w1",
            "--",
            "hostname; echo to-stderr >&2; exit 5",
        ])
        .run()
        .status(5);
    assert_eq!(own.stdout.trim(), "lc-w1");
    assert!(own.stderr.contains("to-stderr"), "{}", own.stderr);

    // halt, start: same addresses, steps not rerun.
    t.args(&["--cluster", "lc", "halt"])
        .run()
        .status(0)
        .stderr_has("lc-w1: shut down");
    assert!(!virsh(&["list", "--name"]).contains("lc-"));
    t.args(&["--cluster", "lc", "start"])
        .run()
        .status(0)
        .stderr_has("lc-w1: prepare-os skipped (already done)");
    eprintln!("restarted after {:?}", started.elapsed());
    let log = t
        .args(&["--cluster", "lc", "logs", "lc-w1"])
        .run()
        .status(0)
        .stdout;
    assert!(log.contains("[prepare-os] skipped: already done"), "{log}");
    assert_eq!(ssh_out(&mut t, "lc-w1", "hostname"), "lc-w1");

    // suspend, resume: the guest keeps running (uptime grows) and its clock
    // is stepped to the host's.
    let uptime = |t: &mut Test| -> f64 {
        ssh_out(t, "lc-w1", "cut -d' ' -f1 /proc/uptime")
            .parse()
            .unwrap()
    };
    let before = uptime(&mut t);
    t.args(&["--cluster", "lc", "suspend"]).run().status(0);
    assert!(
        !virsh(&["list", "--name"]).contains("lc-"),
        "suspended VMs hold no RAM"
    );
    std::thread::sleep(Duration::from_secs(5));
    t.args(&["--cluster", "lc", "resume"])
        .run()
        .status(0)
        .stderr_has("lc-w1: clock was");
    let after = uptime(&mut t);
    assert!(
        after >= before,
        "resumed, not rebooted: uptime {before} -> {after}"
    );
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let guest: f64 = ssh_out(&mut t, "lc-w1", "date -u +%s.%N").parse().unwrap();
    let host_after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        guest >= host - 2.0 && guest <= host_after + 2.0,
        "guest clock {guest} vs host {host}..{host_after}"
    );

    // destroy: nothing of the cluster is left.
    t.args(&["--cluster", "lc", "destroy", "--yes"])
        .run()
        .status(0);
    assert!(!virsh(&["list", "--all", "--name"]).contains("lc-"));
    assert!(!virsh(&["net-list", "--all", "--name"]).contains("devcluster-lc"));
    assert!(!virsh(&["pool-list", "--all", "--name"]).contains("devcluster-lc"));
    assert!(!t.dirs().cluster("lc").exists());
    eprintln!("whole lifecycle in {:?}", started.elapsed());
}
