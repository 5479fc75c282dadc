//! A Hyper-V cluster's plan, end to end: `up --provider hyperv --dry-run`
//! (the real binary, on any OS: a dry run touches no hypervisor) to the
//! seeds every node would boot with. Hyper-V's internal switch has no DHCP
//! and no DNS, so each seed must carry the static address, the gateway and
//! resolvers, and the subnet must lie inside the one NetNat prefix.

mod common;

use common::{Test, files_under};
use devcluster::net::Cidr;
use devcluster::plan::{Os, Plan};

/// Test fixtures, not real keys.
const AUTHORIZED_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTFIXTUREuserkeyNOTAREALKEY00000000000 devcluster@host";
const HOST_KEY_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST+FIXTURE+NOT+A+REAL+KEY\n-----END OPENSSH PRIVATE KEY-----\n";
const HOST_KEY_PUBLIC: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTFIXTUREhostkeyNOTAREALKEY00000000000 root@node";

fn dry_run(t: &mut Test, extra: &[&str]) -> Plan {
    let mut argv = vec![
        "--cluster",
        "hv1",
        "up",
        "--provider",
        "hyperv",
        "--workers",
        "1",
        "--windows-workers",
        "1",
        "--dry-run",
        "-o",
        "json",
    ];
    argv.extend_from_slice(extra);
    let run = t.args(&argv).run().status(0);
    serde_json::from_str(&run.stdout).expect("the dry run prints the plan as JSON")
}

#[test]
fn hyperv_plan_takes_a_subnet_inside_the_nat_prefix_and_public_resolvers() {
    let mut t = Test::new();
    let plan = dry_run(&mut t, &[]);
    let nat: Cidr = devcluster::providers::hyperv::NAT_PREFIX.parse().unwrap();
    assert!(
        nat.contains(plan.network.subnet.addr()),
        "{}",
        plan.network.subnet
    );
    assert_eq!(plan.network.subnet.prefix(), 24);
    assert_eq!(plan.network.resolvers, devcluster::plan::HYPERV_RESOLVERS);
    for n in &plan.nodes {
        let net = devcluster::seed::static_network(&plan, n);
        assert_eq!(net.dns, devcluster::plan::HYPERV_RESOLVERS, "{}", n.name);
        assert_eq!(net.gateway, plan.network.gateway);
    }
    // A dry run creates nothing.
    assert!(
        files_under(&t.home()).is_empty(),
        "{:?}",
        files_under(&t.home())
    );
}

#[test]
fn hyperv_plan_to_rendered_seeds() {
    let mut t = Test::new();
    t.file(
        "devcluster.toml",
        "[network]\nnode_cidr = \"192.168.250.0/24\"\n",
    );
    let plan = dry_run(&mut t, &[]);
    assert_eq!(plan.network.subnet.to_string(), "192.168.250.0/24");
    let mut out = String::new();
    for n in &plan.nodes {
        let net = devcluster::seed::static_network(&plan, n);
        out.push_str(&format!("### {} ({})\n", n.name, n.os.as_str()));
        match n.os {
            Os::Linux => {
                let seed = devcluster::seed::seed_inputs_for(
                    &plan,
                    n,
                    AUTHORIZED_KEY,
                    HOST_KEY_PRIVATE,
                    HOST_KEY_PUBLIC,
                );
                let files = devcluster::seed::linux_seed_files(&seed).unwrap();
                let (_, network_config) =
                    files.iter().find(|(f, _)| *f == "network-config").unwrap();
                // Matched by the MAC the VM gets, static, with gateway and DNS.
                assert!(
                    network_config.contains(&format!("macaddress: {}", n.mac)),
                    "{network_config}"
                );
                assert!(network_config.contains("dhcp4: false"));
                assert!(network_config.contains(&format!("gateway4: {}", plan.network.gateway)));
                assert!(network_config.contains("1.1.1.1"));
                out.push_str("network-config:\n");
                out.push_str(network_config);
                let (_, meta) = files.iter().find(|(f, _)| *f == "meta-data").unwrap();
                out.push_str("meta-data:\n");
                out.push_str(meta);
            }
            // The Windows seed (specialize unattend) is rendered by the
            // Windows node support from this same static network.
            Os::Windows => out.push_str(&format!("static network: {net:?}\n")),
        }
    }
    insta::assert_snapshot!("hyperv_plan_seeds", out);
    insta::assert_json_snapshot!("hyperv_plan", plan);
}

#[test]
fn hyperv_refuses_a_node_cidr_outside_the_nat_prefix() {
    let mut t = Test::new();
    t.file(
        "devcluster.toml",
        "[network]\nnode_cidr = \"192.168.150.0/24\"\n",
    );
    let run = t
        .args(&[
            "--cluster",
            "hv2",
            "up",
            "--provider",
            "hyperv",
            "--dry-run",
        ])
        .run()
        .status(1);
    assert!(
        run.stderr.contains("outside 192.168.240.0/20"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}

// ---- destroy through the binary, against the replaying stand-in ----------

fn hyperv_cluster(t: &Test, name: &str) {
    use devcluster::spec::{Layer, Origin, ProviderKind, Val};
    let layer = Layer {
        workers: Some(Val::new(1, Origin::Flag("--workers"))),
        provider: Some(Val::new(ProviderKind::Hyperv, Origin::Flag("--provider"))),
        ..Layer::default()
    };
    let spec =
        devcluster::spec::resolve(Val::new(name.into(), Origin::Flag("--cluster")), layer).unwrap();
    let plan = devcluster::plan::plan(&spec, &Default::default()).unwrap();
    let mut st = devcluster::state::ClusterState::new(plan);
    for n in st.nodes.values_mut() {
        n.phase = devcluster::state::NodePhase::Created;
    }
    devcluster::state::save(&t.dirs(), &st).unwrap();
}

/// A replay directory with `replies` (operation, fixture) queued in order.
fn replay(replies: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hyperv");
    std::fs::create_dir(dir.path().join("replies")).unwrap();
    for (i, (op, fixture)) in replies.iter().enumerate() {
        std::fs::copy(
            fixtures.join("replies").join(format!("{fixture}.txt")),
            dir.path()
                .join("replies")
                .join(format!("{:02}-{op}.txt", i + 1)),
        )
        .unwrap();
    }
    dir
}

fn standin() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hyperv/powershell-standin.sh")
        .display()
        .to_string()
}

#[cfg(unix)]
#[test]
fn destroy_removes_a_hyperv_cluster_through_powershell() {
    let mut t = Test::new();
    hyperv_cluster(&t, "hv1");
    let r = replay(&[
        ("detect", "detect-ready"),
        ("cluster_vms", "cluster-vms"),
        ("storage_root", "storage-root"),
        ("delete_vm", "delete-removed"),
        ("delete_vm", "delete-partial"),
        ("remove_storage", "remove-storage"),
        ("remove_network", "remove-network-removed"),
    ]);
    let run = t
        .env("DEVCLUSTER_POWERSHELL", &standin())
        .env("HYPERV_REPLAY_DIR", &r.path().display().to_string())
        .args(&["--cluster", "hv1", "destroy", "--yes"])
        .run()
        .status(0);
    assert!(
        run.stderr.contains("deleted VMs hv1-cp, hv1-w1"),
        "{}",
        run.stderr
    );
    assert!(devcluster::state::load(&t.dirs(), "hv1").unwrap().is_none());
    let calls = std::fs::read_dir(r.path().join("calls"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "ps1")
        })
        .count();
    assert_eq!(calls, 7);
    let params = |n: u32| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(r.path().join(format!("calls/{n:02}.params.json"))).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(params(4)["name"], "hv1-cp");
    assert_eq!(params(5)["name"], "hv1-w1");
    assert_eq!(params(7)["cluster"], "hv1");
}

#[cfg(unix)]
#[test]
fn destroy_without_hyperv_permissions_keeps_the_state_and_says_how() {
    let mut t = Test::new();
    hyperv_cluster(&t, "hv2");
    let r = replay(&[("detect", "detect-not-admin")]);
    let run = t
        .env("DEVCLUSTER_POWERSHELL", &standin())
        .env("HYPERV_REPLAY_DIR", &r.path().display().to_string())
        .args(&["--cluster", "hv2", "destroy", "--yes"])
        .run()
        .status(1);
    assert!(
        run.stderr
            .contains("neither an administrator nor in Hyper-V Administrators"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("S-1-5-32-578"), "{}", run.stderr);
    assert!(devcluster::state::load(&t.dirs(), "hv2").unwrap().is_some());
}
