//! The host-side PKI, checked with the real tools: openssl verifies the
//! chain and recomputes kubeadm's discovery hash, ssh-keygen reads the SSH
//! keys, kubectl reads the admin kubeconfig.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{World, plan_for, require_tool, run_ok};
use devcluster::pki::{self, PkiError, PkiPaths};
use devcluster::state::{self, NodePhase};

fn openssl() -> Command {
    Command::new(require_tool("openssl"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Every file under a directory with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn set_phase(w: &World, cluster: &str, node: &str, phase: NodePhase) {
    let mut s = state::load_existing(&w.dirs, cluster).unwrap();
    s.nodes.get_mut(node).unwrap().phase = phase;
    state::save(&w.dirs, &s).unwrap();
}

#[test]
fn openssl_verifies_admin_cert_against_cluster_ca() {
    let w = World::new();
    w.cluster("dev", 1, 0);
    let p = PkiPaths::new(&w.dirs, "dev");
    let out = run_ok(
        openssl()
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(p.pki_file("ca.crt"))
            .arg(p.pki_file("admin.crt")),
    );
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    // And not against another CA of the cluster.
    let out = openssl()
        .args(["verify", "-CAfile"])
        .arg(p.pki_file("front-proxy-ca.crt"))
        .arg(p.pki_file("admin.crt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn discovery_hash_equals_openssl_recomputation() {
    let w = World::new();
    let plan = plan_for("dev", 1, 0);
    let secrets = pki::ensure(&w.dirs, &plan).unwrap();
    let ca = PkiPaths::new(&w.dirs, "dev").pki_file("ca.crt");
    require_tool("sha256sum");
    let openssl = require_tool("openssl");
    let script = format!(
        "'{o}' x509 -pubkey -noout -in '{ca}' | '{o}' pkey -pubin -outform der | sha256sum",
        o = openssl.display(),
        ca = ca.display()
    );
    let out = run_ok(Command::new("sh").args(["-c", &script]));
    let hex = out.split_whitespace().next().unwrap();
    assert_eq!(hex.len(), 64);
    assert_eq!(secrets.ca_cert_hash, format!("sha256:{hex}"));
    assert_eq!(pki::ca_cert_hash(&read(&ca)).unwrap(), secrets.ca_cert_hash);
}

#[test]
fn cas_are_what_kubeadm_reuses() {
    let w = World::new();
    w.cluster("dev", 1, 0);
    let p = PkiPaths::new(&w.dirs, "dev");
    for (base, cn) in [
        ("ca", "kubernetes-ca"),
        ("front-proxy-ca", "kubernetes-front-proxy-ca"),
        ("etcd/ca", "etcd-ca"),
    ] {
        let crt = p.pki_file(&format!("{base}.crt"));
        let key = p.pki_file(&format!("{base}.key"));
        let text = run_ok(openssl().args(["x509", "-noout", "-text", "-in"]).arg(&crt));
        for want in [
            "X509v3 Basic Constraints: critical",
            "CA:TRUE",
            "Certificate Sign",
            "Digital Signature",
            "Key Encipherment",
            "rsaEncryption",
            "Public-Key: (2048 bit)",
            "sha256WithRSAEncryption",
            "X509v3 Subject Key Identifier",
            &format!("Subject: CN = {cn}"),
        ] {
            assert!(text.contains(want), "{base}.crt lacks {want:?}:\n{text}");
        }
        // Valid now and for ten years, not eleven.
        let checkend = |secs: u64| {
            openssl()
                .args(["x509", "-noout", "-checkend", &secs.to_string(), "-in"])
                .arg(&crt)
                .status()
                .unwrap()
                .success()
        };
        assert!(checkend(0));
        assert!(checkend(3649 * 86400));
        assert!(!checkend(3651 * 86400));
        // The key belongs to the certificate.
        let from_crt = run_ok(
            openssl()
                .args(["x509", "-pubkey", "-noout", "-in"])
                .arg(&crt),
        );
        let from_key = run_ok(openssl().args(["pkey", "-pubout", "-in"]).arg(&key));
        assert_eq!(from_crt, from_key, "{base}");
        // kubeadm reads PKCS#8 or PKCS#1 RSA keys; ours are PKCS#8.
        assert!(read(&key).starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}

#[test]
fn admin_cert_is_a_one_year_cluster_admins_client_cert() {
    let w = World::new();
    w.cluster("dev", 1, 0);
    let crt = PkiPaths::new(&w.dirs, "dev").pki_file("admin.crt");
    let text = run_ok(openssl().args(["x509", "-noout", "-text", "-in"]).arg(&crt));
    for want in [
        "Subject: O = kubeadm:cluster-admins, CN = kubernetes-admin",
        "Issuer: CN = kubernetes-ca",
        "TLS Web Client Authentication",
        "CA:FALSE",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(want), "admin.crt lacks {want:?}:\n{text}");
    }
    let checkend = |days: u64| {
        openssl()
            .args([
                "x509",
                "-noout",
                "-checkend",
                &(days * 86400).to_string(),
                "-in",
            ])
            .arg(&crt)
            .status()
            .unwrap()
            .success()
    };
    assert!(checkend(364));
    assert!(!checkend(366));
}

#[test]
fn service_account_keys_are_a_pair() {
    let w = World::new();
    let secrets = pki::ensure(&w.dirs, &plan_for("dev", 0, 0)).unwrap();
    let p = PkiPaths::new(&w.dirs, "dev");
    let derived = run_ok(
        openssl()
            .args(["pkey", "-pubout", "-in"])
            .arg(p.pki_file("sa.key")),
    );
    assert_eq!(derived, read(&p.pki_file("sa.pub")));
    assert_eq!(derived, secrets.sa_pub_pem);
    assert!(derived.starts_with("-----BEGIN PUBLIC KEY-----"));
}

#[test]
fn ssh_keys_parse_with_ssh_keygen() {
    let keygen = require_tool("ssh-keygen");
    let w = World::new();
    let plan = plan_for("dev", 1, 1);
    let secrets = pki::ensure(&w.dirs, &plan).unwrap();
    let p = PkiPaths::new(&w.dirs, "dev");
    let mut keys = vec![(p.ssh_client_key(), secrets.ssh_client.clone())];
    for n in &plan.nodes {
        keys.push((
            p.host_key(&n.name),
            secrets.host_key(&n.name).unwrap().clone(),
        ));
    }
    assert_eq!(keys.len(), 4);
    let mut seen = std::collections::HashSet::new();
    for (path, pair) in keys {
        let fp = run_ok(Command::new(&keygen).arg("-l").arg("-f").arg(&path));
        assert!(fp.contains("(ED25519)"), "{fp}");
        assert!(seen.insert(fp.clone()), "keys must differ: {fp}");
        // ssh-keygen derives the same public key from the private file
        // (it also refuses private keys readable by others).
        let public = run_ok(Command::new(&keygen).arg("-y").arg("-f").arg(&path));
        let ours: Vec<&str> = pair.public_line.split_whitespace().take(2).collect();
        let theirs: Vec<&str> = public.split_whitespace().take(2).collect();
        assert_eq!(ours, theirs);
        assert!(
            pair.private_openssh
                .expose()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        let pub_file = PathBuf::from(format!("{}.pub", path.display()));
        assert_eq!(read(&pub_file), format!("{}\n", pair.public_line));
    }
    // known_hosts pins each node's host key under its IP and name.
    let cp = &plan.nodes[0];
    let found = run_ok(
        Command::new(&keygen)
            .args(["-F", &cp.ip.to_string(), "-f"])
            .arg(&secrets.known_hosts_path),
    );
    let host_pub = secrets.host_key(&cp.name).unwrap().public_line.clone();
    let key_b64 = host_pub.split_whitespace().nth(1).unwrap();
    assert!(found.contains(key_b64), "{found}");
    assert!(secrets.host_key("nope").is_none());
}

#[cfg(unix)]
#[test]
fn private_material_is_owner_only() {
    let w = World::new();
    let plan = w.cluster("dev", 1, 0);
    let p = PkiPaths::new(&w.dirs, "dev");
    for f in [
        "ca.key",
        "front-proxy-ca.key",
        "etcd/ca.key",
        "sa.key",
        "admin.key",
        "bootstrap-token",
    ] {
        assert_eq!(common::mode(&p.pki_file(f)), 0o600, "{f}");
    }
    assert_eq!(common::mode(&p.ssh_client_key()), 0o600);
    for n in &plan.nodes {
        assert_eq!(common::mode(&p.host_key(&n.name)), 0o600, "{}", n.name);
    }
    assert_eq!(common::mode(&p.admin_kubeconfig), 0o600);
    for d in [p.pki.clone(), p.pki.join("etcd"), p.ssh.clone()] {
        assert_eq!(common::mode(&d), 0o700, "{}", d.display());
    }
}

#[test]
fn ensure_never_regenerates() {
    let w = World::new();
    let plan = plan_for("dev", 1, 1);
    let a = pki::ensure(&w.dirs, &plan).unwrap();
    let before = snapshot(&w.dirs.cluster("dev"));
    let b = pki::ensure(&w.dirs, &plan).unwrap();
    assert_eq!(snapshot(&w.dirs.cluster("dev")), before);
    assert_eq!(a.ca_cert_hash, b.ca_cert_hash);
    assert_eq!(a.bootstrap_token, b.bootstrap_token);
    assert_eq!(a.ca.cert_pem, b.ca.cert_pem);
    assert_eq!(a.admin.cert_pem, b.admin.cert_pem);
    assert_eq!(a.ssh_client.public_line, b.ssh_client.public_line);
    assert!(pki::is_bootstrap_token(a.bootstrap_token.expose()));
    assert!(a.ca_cert_hash.starts_with("sha256:") && a.ca_cert_hash.len() == 7 + 64);
}

#[test]
fn a_new_node_gets_only_its_host_key() {
    let w = World::new();
    w.cluster("dev", 1, 0);
    let before = snapshot(&w.dirs.cluster("dev"));
    // The cluster is running: its nodes are past `planned`.
    set_phase(&w, "dev", "dev-cp", NodePhase::Ready);
    set_phase(&w, "dev", "dev-w1", NodePhase::Ready);
    let bigger = plan_for("dev", 2, 0);
    let secrets = pki::ensure(&w.dirs, &bigger).unwrap();
    let after = snapshot(&w.dirs.cluster("dev"));
    let p = PkiPaths::new(&w.dirs, "dev");
    let mut new: Vec<_> = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    new.sort();
    let mut want = vec![
        p.host_key("dev-w2"),
        PathBuf::from(format!("{}.pub", p.host_key("dev-w2").display())),
    ];
    want.sort();
    assert_eq!(new, want);
    for (path, bytes) in &before {
        if path.ends_with("known_hosts") || path.ends_with("state.json") {
            continue; // known_hosts gains a line; state.json we edited
        }
        assert_eq!(after.get(path), Some(bytes), "{} changed", path.display());
    }
    assert!(read(&secrets.known_hosts_path).contains("dev-w2"));
}

#[test]
fn incomplete_pairs_are_regenerated_before_any_vm_exists() {
    let w = World::new();
    let plan = plan_for("dev", 1, 0);
    let first = pki::ensure(&w.dirs, &plan).unwrap();
    let p = PkiPaths::new(&w.dirs, "dev");

    // A crash between writing the front-proxy key and its certificate.
    std::fs::remove_file(p.pki_file("front-proxy-ca.crt")).unwrap();
    let second = pki::ensure(&w.dirs, &plan).unwrap();
    assert_ne!(
        first.front_proxy_ca.key_pem.expose(),
        second.front_proxy_ca.key_pem.expose()
    );
    assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
    assert_eq!(first.admin.cert_pem, second.admin.cert_pem);

    // The cluster CA lost its key: a new CA, and the admin cert with it.
    std::fs::remove_file(p.pki_file("ca.key")).unwrap();
    let third = pki::ensure(&w.dirs, &plan).unwrap();
    assert_ne!(third.ca.cert_pem, second.ca.cert_pem);
    assert_ne!(third.admin.cert_pem, second.admin.cert_pem);
    assert_ne!(third.ca_cert_hash, second.ca_cert_hash);
    let out = run_ok(
        openssl()
            .args(["verify", "-CAfile"])
            .arg(p.pki_file("ca.crt"))
            .arg(p.pki_file("admin.crt")),
    );
    assert!(out.contains(": OK"));
    assert!(read(&third.admin_kubeconfig_path).contains(&base64_of(&third.ca.cert_pem)));
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn once_a_vm_exists_missing_secrets_are_errors() {
    let w = World::new();
    let plan = w.cluster("dev", 1, 0);
    set_phase(&w, "dev", "dev-cp", NodePhase::Created);
    let p = PkiPaths::new(&w.dirs, "dev");

    for victim in ["etcd/ca.key", "sa.key", "bootstrap-token", "ca.crt"] {
        let path = p.pki_file(victim);
        let saved = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let before = snapshot(&w.dirs.cluster("dev"));
        let err = pki::ensure(&w.dirs, &plan).unwrap_err();
        assert!(
            matches!(&err, PkiError::Missing { path: p } if p == &path),
            "{victim}: {err:?}"
        );
        assert!(err.to_string().contains(victim), "{err}");
        assert!(err.hint().unwrap().contains("devcluster destroy"));
        assert_eq!(snapshot(&w.dirs.cluster("dev")), before, "{victim}");
        std::fs::write(&path, saved).unwrap();
    }

    // The SSH host key of a node whose VM exists cannot be replaced either.
    let host = p.host_key("dev-cp");
    let saved = std::fs::read(&host).unwrap();
    std::fs::remove_file(&host).unwrap();
    assert!(matches!(
        pki::ensure(&w.dirs, &plan),
        Err(PkiError::Missing { path }) if path == host
    ));
    std::fs::write(&host, saved).unwrap();
    // dev-w1 is still planned (no VM has its key): it is made again.
    let w1 = p.host_key("dev-w1");
    let old_w1 = read(&w1);
    std::fs::remove_file(&w1).unwrap();
    pki::ensure(&w.dirs, &plan).unwrap();
    assert_ne!(read(&w1), old_w1);

    // The admin certificate is host-only: re-issued from the same CA.
    let old = read(&p.pki_file("admin.crt"));
    std::fs::remove_file(p.pki_file("admin.key")).unwrap();
    let s = pki::ensure(&w.dirs, &plan).unwrap();
    assert_ne!(s.admin.cert_pem, old);
    let out = run_ok(
        openssl()
            .args(["verify", "-CAfile"])
            .arg(p.pki_file("ca.crt"))
            .arg(p.pki_file("admin.crt")),
    );
    assert!(out.contains(": OK"));
}

#[test]
fn unreadable_files_are_errors_and_left_alone() {
    let w = World::new();
    let plan = w.cluster("dev", 0, 0);
    let p = PkiPaths::new(&w.dirs, "dev");
    for (victim, what) in [
        ("ca.crt", "certificate"),
        ("sa.key", "private key"),
        ("bootstrap-token", "bootstrap token"),
    ] {
        let path = p.pki_file(victim);
        let saved = std::fs::read(&path).unwrap();
        std::fs::write(&path, "garbage\n").unwrap();
        let err = pki::ensure(&w.dirs, &plan).unwrap_err();
        assert!(
            matches!(&err, PkiError::Invalid { path: p, .. } if p == &path),
            "{victim}: {err:?}"
        );
        assert!(err.to_string().contains(what), "{err}");
        assert_eq!(read(&path), "garbage\n");
        std::fs::write(&path, saved).unwrap();
    }
    // A certificate that is not a CA is not accepted as one.
    std::fs::copy(p.pki_file("admin.crt"), p.pki_file("ca.crt")).unwrap();
    let err = pki::ensure(&w.dirs, &plan).unwrap_err();
    assert!(err.to_string().contains("CA certificate"), "{err}");
}

#[test]
fn debug_output_holds_no_secret() {
    let w = World::new();
    let s = pki::ensure(&w.dirs, &plan_for("dev", 1, 1)).unwrap();
    let dbg = format!("{s:?} {:?} {:?}", s.ca, s.ssh_client);
    let token_secret = s.bootstrap_token.expose().split('.').nth(1).unwrap();
    assert!(!dbg.contains(token_secret), "{dbg}");
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
    assert!(dbg.contains(&s.ca_cert_hash));
    assert!(dbg.contains(s.bootstrap_token_id()));
}

#[test]
fn kubeadm_files_have_kubeadm_names() {
    let w = World::new();
    let s = pki::ensure(&w.dirs, &plan_for("dev", 0, 0)).unwrap();
    let files = s.kubeadm_pki_files();
    let names: Vec<_> = files.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        names,
        [
            "ca.crt",
            "ca.key",
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
            "etcd/ca.crt",
            "etcd/ca.key",
            "sa.key",
            "sa.pub"
        ]
    );
    let p = PkiPaths::new(&w.dirs, "dev");
    for (name, contents, mode) in files {
        assert_eq!(read(&p.pki_file(name)), contents, "{name}");
        assert_eq!(mode, if name.ends_with(".key") { 0o600 } else { 0o644 });
    }
}

#[test]
fn kubectl_reads_the_admin_kubeconfig() {
    let w = World::new();
    let plan = w.cluster("dev", 1, 0);
    let s = pki::ensure(&w.dirs, &plan).unwrap();
    let path = s.admin_kubeconfig_path.to_str().unwrap().to_string();
    let get = |jsonpath: &str| {
        run_ok(w.kubectl(&path).args([
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            &format!("jsonpath={jsonpath}"),
        ]))
    };
    assert_eq!(get("{.current-context}"), "devcluster-dev");
    assert_eq!(get("{.clusters[0].name}"), "devcluster-dev");
    assert_eq!(get("{.users[0].name}"), "devcluster-dev");
    assert_eq!(
        get("{.clusters[0].cluster.server}"),
        format!("https://{}", plan.network.api_endpoint)
    );
    assert_eq!(
        get("{.clusters[0].cluster.certificate-authority-data}"),
        base64_of(&s.ca.cert_pem)
    );
    assert_eq!(
        get("{.users[0].user.client-key-data}"),
        base64_of(s.admin.key_pem.expose())
    );
}

/// How long `ensure` takes for a new 3-node cluster (prints the figure;
/// run with `--nocapture` to see it).
#[test]
#[allow(clippy::print_stderr)]
fn ensure_timing_three_nodes() {
    let plan = plan_for("dev", 1, 1);
    assert_eq!(plan.nodes.len(), 3);
    let mut times = Vec::new();
    for _ in 0..3 {
        let w = World::new();
        let t = std::time::Instant::now();
        pki::ensure(&w.dirs, &plan).unwrap();
        times.push(t.elapsed());
        let t = std::time::Instant::now();
        pki::ensure(&w.dirs, &plan).unwrap();
        let reload = t.elapsed();
        eprintln!(
            "pki::ensure, 3 nodes: generate {:?}, load again {:?}",
            times.last().unwrap(),
            reload
        );
    }
}

#[test]
fn an_admin_cert_in_system_masters_is_replaced_by_a_revocable_one() {
    // An admin certificate an older devcluster issued (O system:masters),
    // made here with openssl from the cluster's own CA and a valid key.
    let w = World::new();
    w.cluster("dev", 1, 0);
    let p = PkiPaths::new(&w.dirs, "dev");
    let crt = p.pki_file("admin.crt");
    let csr = w.dirs.cache.join("admin.csr");
    std::fs::create_dir_all(&w.dirs.cache).unwrap();
    run_ok(
        openssl()
            .args([
                "req",
                "-new",
                "-subj",
                "/O=system:masters/CN=kubernetes-admin",
            ])
            .arg("-key")
            .arg(p.pki_file("admin.key"))
            .arg("-out")
            .arg(&csr),
    );
    run_ok(
        openssl()
            .args(["x509", "-req", "-days", "365", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(p.pki_file("ca.crt"))
            .arg("-CAkey")
            .arg(p.pki_file("ca.key"))
            .arg("-set_serial")
            .arg("7")
            .arg("-out")
            .arg(&crt),
    );
    let subject = || {
        run_ok(
            openssl()
                .args(["x509", "-noout", "-subject", "-in"])
                .arg(&crt),
        )
    };
    assert_eq!(
        subject().trim(),
        "subject=O = system:masters, CN = kubernetes-admin"
    );
    pki::ensure(&w.dirs, &plan_for("dev", 1, 0)).unwrap();
    assert_eq!(
        subject().trim(),
        "subject=O = kubeadm:cluster-admins, CN = kubernetes-admin"
    );
}
