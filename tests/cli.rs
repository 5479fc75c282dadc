//! The command surface: help, dry-run plans, validation, list/status, the
//! cluster lock. Every test runs the real binary (see common::Test).

mod common;

use common::{Test, files_under, make_cluster};
use std::collections::HashSet;

/// A pinned node network makes plans independent of this host's routes.
const PINNED: &str = "[network]\nnode_cidr = \"192.168.150.0/24\"\n";

#[test]
fn help_lists_implemented_verbs_only() {
    let run = Test::new().arg("--help").run().status(0);
    for verb in [
        "up",
        "status",
        "list",
        "destroy",
        "kubeconfig",
        "use",
        "images",
        "suspend",
        "resume",
        "halt",
        "start",
        "ssh",
        "logs",
        "node",
        "doctor",
        "dashboard",
        "completions",
    ] {
        assert!(
            run.stdout.lines().any(|l| l.trim_start().starts_with(verb)),
            "help lacks {verb}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn dry_run_with_a_windows_worker() {
    let mut t = Test::new();
    let run = t
        .args(&["up", "--dry-run", "--windows-workers", "1", "-o", "json"])
        .run()
        .status(0);
    let plan = run.json();
    let nodes = plan["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dev-cp", "dev-w1", "dev-win1"]);
    let oses: Vec<&str> = nodes.iter().map(|n| n["os"].as_str().unwrap()).collect();
    assert_eq!(oses, ["linux", "linux", "windows"]);
    let ips: HashSet<&str> = nodes.iter().map(|n| n["ip"].as_str().unwrap()).collect();
    assert_eq!(ips.len(), 3, "three distinct IPs");
    let subnet: devcluster::net::Cidr =
        plan["network"]["subnet"].as_str().unwrap().parse().unwrap();
    assert_eq!(subnet.prefix(), 24);
    for ip in &ips {
        assert!(
            subnet.contains(ip.parse().unwrap()),
            "{ip} outside {subnet}"
        );
    }
    // The table form names the same nodes.
    let table = t
        .args(&["up", "--dry-run", "--windows-workers", "1"])
        .run()
        .status(0);
    for name in names {
        table.stdout.contains(name).then_some(()).unwrap();
    }
    // A dry run writes nothing anywhere.
    assert!(
        files_under(&t.home()).is_empty(),
        "dry run created {:?}",
        files_under(&t.home())
    );
}

#[test]
fn dry_run_windows_only_workers() {
    let run = Test::new()
        .args(&[
            "up",
            "--dry-run",
            "--workers",
            "0",
            "--windows-workers",
            "2",
            "-o",
            "json",
        ])
        .run()
        .status(0);
    let names: Vec<String> = run.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["dev-cp", "dev-win1", "dev-win2"]);
}

/// Each invalid input: exit 1, a message naming the problem and its
/// source, and nothing written.
#[test]
fn invalid_inputs_exit_1_with_a_clear_message() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["--cluster", "Dev"],
            "",
            "invalid cluster name \"Dev\" (from --cluster): uppercase",
        ),
        (&["--cluster", "abcdefghijk"], "", "it has 11 characters"),
        (&["--cluster", "1dev"], "", "must start with a letter"),
        (&["--cluster", "a_b"], "", "'_' is not allowed"),
        (
            &[],
            "workerz = 2\n",
            "devcluster.toml line 1: unknown field `workerz`",
        ),
        (
            &[],
            "[network]\npod_cidr = \"10.96.0.0/16\"\n",
            "the pod network 10.96.0.0/16 (from ./devcluster.toml line 2) overlaps the service network 10.96.0.0/12 (from the default)",
        ),
        (
            &["--control-plane-memory", "1024"],
            "",
            "control-plane memory 1024 MiB (from --control-plane-memory) is below 2048 MiB",
        ),
        (
            &["--kubernetes-version", "1.20"],
            "",
            "Kubernetes version \"1.20\" (from --kubernetes-version) is not supported",
        ),
        (
            &["--workers", "10"],
            "",
            "10 Linux workers (from --workers) is too many: at most 9",
        ),
        (
            &["--windows-workers", "1", "--windows-memory", "2G"],
            "",
            "Windows worker memory 2048 MiB (from --windows-memory) is below 4096 MiB",
        ),
        (&["--worker-memory", "1000000"], "", "this host has"),
        (
            &["--config", "nope.toml"],
            "",
            "config file nope.toml (from --config) does not exist",
        ),
        (
            &["--workers", "two"],
            "",
            "invalid value 'two' for '--workers <N>'",
        ),
        (
            &[],
            "[network]\nnode_cidr = \"10.244.5.0/24\"\n",
            "the pod network 10.244.0.0/16 (from the default) overlaps the node network 10.244.5.0/24",
        ),
    ];
    for (args, config, message) in cases {
        for dry_run in [true, false] {
            let mut t = Test::new();
            if !config.is_empty() {
                t.file("devcluster.toml", config);
            }
            let mut argv: Vec<&str> = vec!["up"];
            argv.extend_from_slice(args);
            if dry_run {
                argv.push("--dry-run");
            }
            // Flags after `up` are its own; the global --cluster works on either side.
            let run = t.args(&argv).run();
            assert_eq!(run.code, 1, "{argv:?}: exit code\n{}", run.stderr);
            assert!(
                run.stderr.contains(message),
                "{argv:?} {config:?}: stderr lacks {message:?}:\n{}",
                run.stderr
            );
            assert!(
                files_under(&t.home()).is_empty(),
                "{argv:?} wrote {:?}",
                files_under(&t.home())
            );
        }
    }
}

#[test]
fn user_errors_carry_a_hint() {
    Test::new()
        .args(&["--cluster", "Dev", "status"])
        .run()
        .status(1)
        .stderr_has("error: invalid cluster name")
        .stderr_has("hint: use lowercase letters, digits and '-'")
        .stderr_has("e.g. --cluster dev");
}

#[test]
fn layers_flags_over_env_over_files() {
    let mut t = Test::new();
    t.file(
        "devcluster.toml",
        "workers = 2\n[control_plane]\ncpus = 4\n",
    )
    .file(
        "../home/config/config.toml",
        "workers = 5\nwindows_workers = 1\n",
    );
    let json = |run: common::Run| run.status(0).json();
    let plan = json(t.args(&["up", "--dry-run", "-o", "json"]).run());
    // Project file over user file; user file over defaults.
    assert_eq!(plan["nodes"].as_array().unwrap().len(), 1 + 2 + 1);
    assert_eq!(plan["nodes"][0]["cpus"], 4);
    let plan = json(
        t.env("DEVCLUSTER_WORKERS", "3")
            .args(&["up", "--dry-run", "-o", "json"])
            .run(),
    );
    assert_eq!(plan["nodes"].as_array().unwrap().len(), 1 + 3 + 1);
    let plan = json(
        t.env("DEVCLUSTER_WORKERS", "3")
            .args(&["up", "--dry-run", "-o", "json", "--workers", "0"])
            .run(),
    );
    assert_eq!(plan["nodes"].as_array().unwrap().len(), 1 + 1);
    // An environment value is named as such in errors.
    t.env("DEVCLUSTER_WORKERS", "12")
        .args(&["up", "--dry-run"])
        .run()
        .status(1)
        .stderr_has("(from environment variable DEVCLUSTER_WORKERS)");
    t.env("DEVCLUSTER_CLUSTER", "X")
        .args(&["up", "--dry-run"])
        .run()
        .status(1)
        .stderr_has("(from environment variable DEVCLUSTER_CLUSTER)");
}

#[test]
fn memory_warning_and_quiet() {
    let Some(host) = devcluster::host::physical_memory_mib() else {
        panic!("this platform must report physical memory");
    };
    // 90 % of the host for the control plane alone, no workers.
    let mem = (host * 9 / 10).to_string();
    let mut t = Test::new();
    t.args(&[
        "up",
        "--dry-run",
        "--workers",
        "0",
        "--control-plane-memory",
        &mem,
    ])
    .run()
    .status(0)
    .stderr_has("warning: the cluster needs");
    let quiet = t
        .args(&[
            "-q",
            "up",
            "--dry-run",
            "--workers",
            "0",
            "--control-plane-memory",
            &mem,
        ])
        .run()
        .status(0);
    assert_eq!(quiet.stderr, "", "-q prints errors only");
}

#[test]
fn list_on_an_empty_home() {
    let mut t = Test::new();
    let run = t.args(&["list", "-o", "json"]).run().status(0);
    assert_eq!(run.stdout.trim(), "[]");
    t.args(&["list"]).run().status(0).stderr_has("no clusters");
    assert!(files_under(&t.home()).is_empty());
}

#[test]
fn list_and_status_read_state() {
    let mut t = Test::new();
    make_cluster(&t.dirs(), "dev", 1, 1);
    make_cluster(&t.dirs(), "second", 0, 0);
    let list = t.args(&["list", "-o", "json"]).run().status(0).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev", "second"]);
    assert_eq!(list[0]["nodes"], 3);
    assert_eq!(list[0]["state"], "planned");
    assert_ne!(
        list[0]["api_endpoint"], list[1]["api_endpoint"],
        "distinct subnets"
    );

    let status = t.args(&["status", "-o", "json"]).run().status(0).json();
    assert_eq!(status["name"], "dev");
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[2]["name"], "dev-win1");
    assert_eq!(nodes[2]["vm"], "not created");
    assert_eq!(nodes[2]["phase"], "planned");
    t.args(&["--cluster", "second", "status"])
        .run()
        .status(0)
        .stdout_has("second-cp");
    t.args(&["--cluster", "nope", "status"])
        .run()
        .status(1)
        .stderr_has("cluster nope does not exist");

    // A cluster's plan keeps its subnet when planned again.
    let dev_subnet = status["subnet"].as_str().unwrap().to_string();
    let again = t
        .args(&["up", "--dry-run", "-o", "json"])
        .run()
        .status(0)
        .json();
    assert_eq!(again["network"]["subnet"], dev_subnet.as_str());
}

#[test]
fn a_held_lock_makes_mutating_commands_exit_1_naming_the_holder() {
    let mut t = Test::new();
    make_cluster(&t.dirs(), "dev", 1, 0);
    let _held = devcluster::state::ClusterLock::acquire(&t.dirs(), "dev", "devcluster up").unwrap();
    let expected = format!(
        "cluster dev is busy: pid {} is running `devcluster up`",
        std::process::id()
    );
    for argv in [
        &["destroy", "--yes"][..],
        &["up"][..],
        &["node", "add", "--linux"][..],
        &["node", "remove", "dev-w1"][..],
    ] {
        t.args(argv).run().status(1).stderr_has(&expected);
    }
    // Read-only commands still work while it is held.
    t.args(&["status"]).run().status(0);
    assert!(t.dirs().cluster("dev").join("state.json").exists());
}

#[test]
fn destroy_removes_state() {
    let mut t = Test::new();
    make_cluster(&t.dirs(), "dev", 1, 0);
    t.args(&["destroy", "--yes"])
        .run()
        .status(0)
        .stderr_has("destroyed cluster dev");
    assert!(!t.dirs().cluster("dev").exists());
    t.args(&["destroy", "--yes"])
        .run()
        .status(0)
        .stderr_has("does not exist");
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = Test::new().args(&["completions", shell]).run().status(0);
        assert!(run.stdout.contains("devcluster"), "{shell}");
        assert!(run.stdout.contains("windows-workers"), "{shell}");
    }
    Test::new()
        .args(&["completions", "tcsh"])
        .run()
        .status(1)
        .stderr_has("invalid value 'tcsh'");
}

#[test]
fn plan_snapshots() {
    let shapes: &[(&str, &[&str], &str)] = &[
        ("default", &[], PINNED),
        (
            "windows_only",
            &["--workers", "0", "--windows-workers", "2"],
            PINNED,
        ),
        (
            "sized",
            &[
                "--cluster",
                "team-a",
                "--workers",
                "3",
                "--windows-workers",
                "1",
                "--kubernetes-version",
                "1.35",
                "--worker-memory",
                "3G",
                "--windows-disk",
                "80",
            ],
            "[network]\nnode_cidr = \"192.168.150.0/24\"\npod_cidr = \"10.200.0.0/16\"\n[control_plane]\ncpus = 4\nmemory_mib = 4096\n",
        ),
    ];
    for (name, args, config) in shapes {
        let mut argv = vec!["up", "--dry-run"];
        argv.extend_from_slice(args);
        let run = Test::new()
            .file("devcluster.toml", config)
            .args(&argv)
            .run()
            .status(0);
        insta::assert_snapshot!(format!("plan_{name}"), run.stdout);
    }
    let json = Test::new()
        .file("devcluster.toml", PINNED)
        .args(&["up", "--dry-run", "--windows-workers", "1", "-o", "json"])
        .run()
        .status(0);
    insta::assert_json_snapshot!("plan_json", json.json());
}

#[test]
fn images_import_and_list() {
    let mut t = Test::new();
    let mut disk = b"QFI\xfb\0\0\0\x03".to_vec();
    disk.resize(64 * 1024, 0);
    std::fs::write(t.work().join("disk.qcow2"), &disk).unwrap();
    // The built-in catalog, nothing cached.
    let list = t
        .args(&["images", "list", "-o", "json"])
        .run()
        .status(0)
        .json();
    let names: Vec<&str> = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ubuntu-24.04", "windows-server-2022", "windows-server-2025"]
    );
    assert!(
        list["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["cached"] == false)
    );
    t.args(&[
        "images",
        "import",
        "my-debian",
        "disk.qcow2",
        "--os",
        "linux",
        "--user",
        "debian",
    ])
    .run()
    .status(0)
    .stderr_has("imported my-debian (linux, qcow2, sha256 ");
    // The entry survives the original file.
    std::fs::remove_file(t.work().join("disk.qcow2")).unwrap();
    let list = t
        .args(&["images", "list", "-o", "json"])
        .run()
        .status(0)
        .json();
    let mine = &list["images"][0];
    assert_eq!(mine["name"], "my-debian");
    assert_eq!(mine["cached"], true);
    assert_eq!(mine["size_bytes"], 64 * 1024);
    assert!(
        mine["source"]
            .as_str()
            .unwrap()
            .ends_with("config/images/my-debian.toml"),
        "{mine}"
    );
    t.args(&["images", "import", "Bad", "nope.img", "--os", "linux"])
        .run()
        .status(1)
        .stderr_has("image file nope.img does not exist");
    std::fs::write(t.work().join("x.img"), b"raw").unwrap();
    t.args(&["images", "import", "Bad Name", "x.img", "--os", "linux"])
        .run()
        .status(1)
        .stderr_has("invalid image name");
}

/// `up` refuses a cluster it cannot create (no usable provider on this
/// host, or no such image) before writing anything.
#[test]
fn up_that_cannot_create_writes_nothing() {
    let mut t = Test::new();
    t.file(
        "devcluster.toml",
        "[network]\nnode_cidr = \"192.168.151.0/24\"\n[linux]\nimage = \"no-such-image\"\n",
    );
    let run = t.args(&["up", "--workers", "0"]).run().status(1);
    assert!(
        run.stderr.contains("image no-such-image is not known")
            || run.stderr.contains("no usable provider"),
        "{}",
        run.stderr
    );
    assert!(
        !t.dirs().clusters().exists(),
        "wrote {:?}",
        files_under(&t.home())
    );
}

#[test]
fn node_add_and_remove_refuse_bad_input_and_change_nothing() {
    let mut t = Test::new();
    make_cluster(&t.dirs(), "dev", 1, 0);
    let state = t.dirs().cluster("dev").join("state.json");
    let before = std::fs::read(&state).unwrap();
    t.args(&["node", "add"])
        .run()
        .status(1)
        .stderr_has("--linux");
    t.args(&["node", "add", "--linux", "--windows"])
        .run()
        .status(1)
        .stderr_has("cannot be used with");
    // Windows workers are added like Linux ones (from the built base
    // disk): a cluster that is only planned has no machines to add to.
    t.args(&["node", "add", "--windows"])
        .run()
        .status(1)
        .stderr_has("cluster dev has no machines yet");
    t.args(&["--cluster", "nope", "node", "add", "--linux"])
        .run()
        .status(1)
        .stderr_has("cluster nope does not exist");
    // A cluster that is only planned has no machines to add to.
    t.args(&["node", "add", "--linux"])
        .run()
        .status(1)
        .stderr_has("cluster dev has no machines yet");
    t.args(&["node", "remove", "dev-w7"])
        .run()
        .status(1)
        .stderr_has("cluster dev has no node dev-w7")
        .stderr_has("hint: its nodes are dev-cp, dev-w1");
    t.args(&["node", "remove", "dev-cp"])
        .run()
        .status(1)
        .stderr_has("dev-cp is the control plane and cannot be removed")
        .stderr_has("destroy");
    assert_eq!(std::fs::read(&state).unwrap(), before);
}
