//! The user's kubeconfig, edited by the real binary and read back by the
//! real kubectl. HOME and KUBECONFIG point into a temp dir in every test.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{World, run_ok};
use devcluster::kubeconfig::{self, Entries, Kubeconfig, KubeconfigError};
use predicates::prelude::*;
use proptest::prelude::*;
use serde_norway::{Mapping, Value};

const FOREIGN: &str = r#"apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://kind.example:6443
    certificate-authority-data: Zm9v
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: foo}
  name: kind-kind
contexts:
- context:
    cluster: kind-kind
    user: kind-kind
    namespace: web
  name: kind-kind
current-context: kind-kind
preferences: {}
users:
- name: kind-kind
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: aws
      args: ["eks", "get-token"]
      interactiveMode: Never
- name: token-user
  user:
    token: abc
some-future-field:
  enabled: true
"#;

fn parse_file(path: &Path) -> Mapping {
    kubeconfig::parse(path, &std::fs::read(path).unwrap()).unwrap()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn join_paths(paths: &[&Path]) -> String {
    std::env::join_paths(paths).unwrap().into_string().unwrap()
}

fn context_names(w: &World, kubeconfig: &str) -> Vec<String> {
    run_ok(
        w.kubectl(kubeconfig)
            .args(["config", "get-contexts", "-o", "name"]),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn current(w: &World, kubeconfig: &str) -> String {
    let out = w
        .kubectl(kubeconfig)
        .args(["config", "current-context"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn entry_yaml(doc: &Mapping, list: &str, name: &str) -> Option<String> {
    doc.get(list)?
        .as_sequence()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .map(|e| serde_norway::to_string(e).unwrap())
}

// ---------------------------------------------------------------------------
// Merge, read back by kubectl

#[test]
fn merge_into_home_kubeconfig_is_what_kubectl_sees() {
    let w = World::new();
    let plan = w.cluster("dev", 1, 0);
    w.devcluster()
        .args(["--cluster", "dev", "kubeconfig", "--merge"])
        .assert()
        .success()
        .stderr(predicate::str::contains("devcluster-dev"));
    let config = w.home_kubeconfig();
    #[cfg(unix)]
    assert_eq!(common::mode(&config), 0o600);
    let kc = s(&config);
    assert!(context_names(&w, &kc).contains(&"devcluster-dev".to_string()));
    assert_eq!(current(&w, &kc), "devcluster-dev");

    // kubectl's view of our context is the admin kubeconfig's.
    let view = |file: &str, jsonpath: &str| {
        run_ok(w.kubectl(file).args([
            "config",
            "view",
            "--raw",
            "--minify",
            "--context",
            "devcluster-dev",
            "-o",
            &format!("jsonpath={jsonpath}"),
        ]))
    };
    let admin = s(&devcluster::pki::admin_kubeconfig_path(&w.dirs, "dev"));
    for jp in [
        "{.clusters[0].cluster.server}",
        "{.clusters[0].cluster.certificate-authority-data}",
        "{.users[0].user.client-certificate-data}",
        "{.users[0].user.client-key-data}",
        "{.contexts[0].context.cluster}",
        "{.contexts[0].context.user}",
    ] {
        let ours = view(&kc, jp);
        assert!(!ours.is_empty(), "{jp}");
        assert_eq!(ours, view(&admin, jp), "{jp}");
    }
    assert_eq!(
        view(&kc, "{.clusters[0].cluster.server}"),
        format!("https://{}", plan.network.api_endpoint)
    );

    // kubectl can edit the file we wrote, and we can edit it after kubectl.
    run_ok(w.kubectl(&kc).args([
        "config",
        "set-context",
        "other",
        "--cluster=devcluster-dev",
        "--user=devcluster-dev",
    ]));
    run_ok(w.kubectl(&kc).args(["config", "use-context", "other"]));
    assert_eq!(current(&w, &kc), "other");
    run_ok(
        w.kubectl(&kc)
            .args(["config", "use-context", "devcluster-dev"]),
    );
    assert_eq!(current(&w, &kc), "devcluster-dev");
    run_ok(w.kubectl(&kc).args(["config", "use-context", "other"]));
    w.devcluster().args(["use", "dev"]).assert().success();
    assert_eq!(current(&w, &kc), "devcluster-dev");
    assert!(context_names(&w, &kc).contains(&"other".to_string()));
}

#[test]
fn merge_keeps_foreign_entries_and_backs_up() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    let config = w.home_kubeconfig();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, FOREIGN).unwrap();
    let before = parse_file(&config);
    w.devcluster()
        .args([
            "--cluster",
            "dev",
            "kubeconfig",
            "--merge",
            "--no-switch-context",
        ])
        .assert()
        .success();
    let after = parse_file(&config);
    for (list, name) in [
        ("clusters", "kind-kind"),
        ("contexts", "kind-kind"),
        ("users", "kind-kind"),
        ("users", "token-user"),
    ] {
        assert_eq!(
            entry_yaml(&after, list, name),
            entry_yaml(&before, list, name),
            "{list}/{name}"
        );
    }
    assert_eq!(
        after.get("some-future-field"),
        before.get("some-future-field")
    );
    assert_eq!(kubeconfig::current_context(&after), Some("kind-kind"));
    assert!(kubeconfig::defines(&after, "users", "devcluster-dev"));
    // The previous content is kept byte for byte.
    assert_eq!(
        std::fs::read_to_string(kubeconfig::backup_path(&config)).unwrap(),
        FOREIGN
    );
    assert!(!kubeconfig::lock_path(&config).exists());

    // Remove brings back exactly the entries there were.
    w.devcluster()
        .args(["--cluster", "dev", "kubeconfig", "--remove"])
        .assert()
        .success();
    assert_eq!(parse_file(&config), before);
}

#[test]
fn kubeconfig_list_rules_follow_kubectl() {
    let w = World::new();
    w.cluster("one", 0, 0);
    w.cluster("two", 0, 0);
    w.cluster("three", 0, 0);
    let a = w.path("kube/a");
    let b = w.path("kube/b");
    std::fs::create_dir_all(w.path("kube")).unwrap();
    std::fs::write(&b, FOREIGN).unwrap();
    let list = join_paths(&[&a, &b]);
    let merge = |cluster: &str| {
        w.devcluster()
            .env("KUBECONFIG", &list)
            .args(["--cluster", cluster, "kubeconfig", "--merge"])
            .assert()
            .success();
    };

    // a does not exist: new entries go to the first file that does (b).
    merge("one");
    assert!(!a.exists());
    assert!(kubeconfig::defines(
        &parse_file(&b),
        "contexts",
        "devcluster-one"
    ));
    assert_eq!(current(&w, &list), "devcluster-one");

    // Once a exists, it is the first existing file: new entries go there...
    std::fs::write(&a, "apiVersion: v1\nkind: Config\n").unwrap();
    merge("two");
    let doc_a = parse_file(&a);
    assert!(kubeconfig::defines(&doc_a, "clusters", "devcluster-two"));
    assert!(!kubeconfig::defines(
        &parse_file(&b),
        "clusters",
        "devcluster-two"
    ));
    assert_eq!(kubeconfig::current_context(&doc_a), Some("devcluster-two"));
    assert_eq!(current(&w, &list), "devcluster-two");

    // ...but an entry that exists is modified where it is defined.
    merge("one");
    assert!(!kubeconfig::defines(
        &parse_file(&a),
        "clusters",
        "devcluster-one"
    ));
    assert!(kubeconfig::defines(
        &parse_file(&b),
        "clusters",
        "devcluster-one"
    ));
    assert_eq!(current(&w, &list), "devcluster-one");
    let names = context_names(&w, &list);
    for c in ["devcluster-one", "devcluster-two", "kind-kind"] {
        assert!(names.contains(&c.to_string()), "{c} in {names:?}");
    }

    // No file exists: kubectl's default is the last one of the list.
    let x = w.path("none/x");
    let y = w.path("none/y");
    let list2 = join_paths(&[&x, &y]);
    w.devcluster()
        .env("KUBECONFIG", &list2)
        .args(["--cluster", "three", "kubeconfig", "--merge"])
        .assert()
        .success();
    assert!(!x.exists());
    assert!(kubeconfig::defines(
        &parse_file(&y),
        "contexts",
        "devcluster-three"
    ));
    assert_eq!(current(&w, &list2), "devcluster-three");

    // Remove takes the entries out of every file of the list.
    w.devcluster()
        .env("KUBECONFIG", &list)
        .args(["--cluster", "one", "kubeconfig", "--remove"])
        .assert()
        .success();
    let names = context_names(&w, &list);
    assert!(!names.contains(&"devcluster-one".to_string()), "{names:?}");
    assert!(names.contains(&"devcluster-two".to_string()));
    // The current context was one's: cleared in the file that set it, so
    // the next file's current-context (none left) applies.
    assert_eq!(kubeconfig::current_context(&parse_file(&a)), None);
}

#[test]
fn no_switch_context_keeps_the_current_context() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    let kc = w.path("config");
    std::fs::write(&kc, FOREIGN).unwrap();
    w.devcluster()
        .env("KUBECONFIG", &kc)
        .args(["kubeconfig", "--merge", "--no-switch-context"])
        .assert()
        .success();
    assert_eq!(current(&w, &s(&kc)), "kind-kind");
    w.devcluster()
        .env("KUBECONFIG", &kc)
        .args(["kubeconfig", "--merge"])
        .assert()
        .success();
    assert_eq!(current(&w, &s(&kc)), "devcluster-dev");
    // --no-switch-context only makes sense with --merge.
    w.devcluster()
        .args(["kubeconfig", "--no-switch-context"])
        .assert()
        .code(1);
}

#[test]
fn destroy_removes_our_entries_and_current_context() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    let config = w.home_kubeconfig();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, FOREIGN).unwrap();
    w.devcluster()
        .args(["kubeconfig", "--merge"])
        .assert()
        .success();
    assert_eq!(current(&w, &s(&config)), "devcluster-dev");
    w.devcluster()
        .args(["destroy", "--yes"])
        .assert()
        .success()
        .stderr(predicate::str::contains("removed devcluster-dev"));
    let doc = parse_file(&config);
    for list in ["clusters", "users", "contexts"] {
        assert!(!kubeconfig::defines(&doc, list, "devcluster-dev"), "{list}");
    }
    assert_eq!(kubeconfig::current_context(&doc), None);
    assert_eq!(
        entry_yaml(&doc, "users", "token-user"),
        entry_yaml(
            &kubeconfig::parse(&config, FOREIGN.as_bytes()).unwrap(),
            "users",
            "token-user"
        )
    );
    assert!(!w.dirs.cluster("dev").exists());
    // Destroying with no kubeconfig at all is fine.
    let w2 = World::new();
    w2.cluster("dev", 0, 0);
    w2.devcluster()
        .args(["destroy", "--yes"])
        .assert()
        .success();
    assert!(!w2.home().join(".kube").exists());
}

#[test]
fn list_and_use_show_the_current_cluster() {
    let w = World::new();
    w.cluster("aa", 0, 0);
    w.cluster("bb", 0, 0);
    for c in ["aa", "bb"] {
        w.devcluster()
            .args(["--cluster", c, "kubeconfig", "--merge"])
            .assert()
            .success();
    }
    let out = w
        .devcluster()
        .args(["list", "-o", "json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let marked: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["current"] == true)
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(marked, ["bb"]);

    w.devcluster().args(["use", "aa"]).assert().success();
    let table = w.devcluster().arg("list").output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    let aa = table.lines().find(|l| l.contains(" aa ")).unwrap();
    assert!(aa.starts_with('*'), "{table}");

    let out = w.devcluster().arg("use").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("CURRENT"), "{text}");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with('*') && r.contains("devcluster-aa"))
    );
    assert!(
        rows.iter()
            .any(|r| !r.starts_with('*') && r.contains("devcluster-bb"))
    );

    // Unknown cluster: exit 1 with a hint.
    w.devcluster()
        .args(["use", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("devcluster-nope"))
        .stderr(predicate::str::contains("hint:"));
    // `use` of a cluster whose entries were removed merges them again.
    w.devcluster()
        .args(["--cluster", "bb", "kubeconfig", "--remove"])
        .assert()
        .success();
    w.devcluster().args(["use", "bb"]).assert().success();
    assert_eq!(current(&w, &s(&w.home_kubeconfig())), "devcluster-bb");
}

#[test]
fn list_survives_a_broken_kubeconfig() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    let config = w.home_kubeconfig();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "clusters: [\n").unwrap();
    let out = w
        .devcluster()
        .args(["list", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["current"], false);
}

#[test]
fn print_and_path() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    let admin = devcluster::pki::admin_kubeconfig_path(&w.dirs, "dev");
    let text = std::fs::read_to_string(&admin).unwrap();
    // Default: the path (no key material on the terminal unless asked).
    for args in [&["kubeconfig"][..], &["kubeconfig", "--path"]] {
        w.devcluster()
            .args(args)
            .assert()
            .success()
            .stdout(format!("{}\n", admin.display()));
    }
    w.devcluster()
        .args(["kubeconfig", "--print"])
        .assert()
        .success()
        .stdout(text);
    w.devcluster()
        .args(["kubeconfig", "--print", "--path"])
        .assert()
        .code(1);
    w.devcluster()
        .args(["--cluster", "nope", "kubeconfig", "--print"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cluster nope does not exist"));
    // Nothing else prints key material, even verbosely.
    let out = w
        .devcluster()
        .args(["-vv", "kubeconfig", "--merge"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("client-key-data"), "{all}");
    assert!(!all.contains("LS0t"), "{all}"); // base64 of "---"
}

// ---------------------------------------------------------------------------
// Bad input changes nothing

#[test]
fn malformed_kubeconfigs_are_errors_that_change_nothing() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "bad-yaml",
            "clusters: [\n  - name: a\n",
            "is not valid YAML",
        ),
        ("top-level-list", "- a\n- b\n", "the top level is a list"),
        (
            "clusters-string",
            "clusters: oops\n",
            "`clusters` is a string",
        ),
        (
            "entry-without-name",
            "users:\n- user: {}\n",
            "users[0] has no name",
        ),
        ("two-documents", "a: 1\n---\nb: 2\n", "is not valid YAML"),
    ];
    for (label, text, want) in cases {
        let w = World::new();
        w.cluster("dev", 0, 0);
        let kc = w.path("config");
        std::fs::write(&kc, text).unwrap();
        for verb in ["--merge", "--remove"] {
            w.devcluster()
                .env("KUBECONFIG", &kc)
                .args(["kubeconfig", verb])
                .assert()
                .code(1)
                .stderr(predicate::str::contains(kc.to_str().unwrap()))
                .stderr(predicate::str::contains(want))
                .stderr(predicate::str::contains("hint:"));
            assert_eq!(
                std::fs::read_to_string(&kc).unwrap(),
                text,
                "{label} {verb}"
            );
            assert!(!kubeconfig::backup_path(&kc).exists(), "{label}");
            assert!(!kubeconfig::lock_path(&kc).exists(), "{label}");
        }
        // destroy stops before deleting the cluster, so it can be re-run.
        w.devcluster()
            .env("KUBECONFIG", &kc)
            .args(["destroy", "--yes"])
            .assert()
            .code(1);
        assert!(w.dirs.cluster("dev").exists());
    }
}

#[test]
fn a_directory_where_the_kubeconfig_should_be() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    let config = w.home_kubeconfig();
    std::fs::create_dir_all(&config).unwrap();
    w.devcluster()
        .args(["kubeconfig", "--merge"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{} is a directory",
            config.display()
        )));
    assert!(config.is_dir());
    assert_eq!(std::fs::read_dir(&config).unwrap().count(), 0);
    assert!(!kubeconfig::lock_path(&config).exists());
}

#[test]
fn an_empty_file_is_an_empty_config() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    for text in ["", "# nothing yet\n"] {
        let kc = w.path("config");
        std::fs::write(&kc, text).unwrap();
        w.devcluster()
            .env("KUBECONFIG", &kc)
            .args(["kubeconfig", "--merge"])
            .assert()
            .success();
        assert_eq!(current(&w, &s(&kc)), "devcluster-dev");
        let doc = parse_file(&kc);
        assert_eq!(doc.get("kind").and_then(Value::as_str), Some("Config"));
        assert_eq!(
            std::fs::read_to_string(kubeconfig::backup_path(&kc)).unwrap(),
            text
        );
        std::fs::remove_file(kubeconfig::backup_path(&kc)).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_symlinked_kubeconfig_is_written_through() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    let real = w.path("dotfiles/kubeconfig");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, FOREIGN).unwrap();
    let link = w.home_kubeconfig();
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    w.devcluster()
        .args(["kubeconfig", "--merge"])
        .assert()
        .success();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(kubeconfig::defines(
        &parse_file(&real),
        "contexts",
        "devcluster-dev"
    ));
}

// ---------------------------------------------------------------------------
// Locking

#[test]
fn a_held_lock_is_waited_for_then_reported() {
    let w = World::new();
    w.cluster("dev", 0, 0);
    let kc = w.path("config");
    std::fs::write(&kc, FOREIGN).unwrap();
    let lock = kubeconfig::lock_path(&kc);
    std::fs::write(&lock, "").unwrap();

    // Library: a short timeout, the error names the lock file.
    let entries = Entries::from_admin_kubeconfig(
        &devcluster::pki::admin_kubeconfig_path(&w.dirs, "dev"),
        "dev",
    )
    .unwrap();
    let k = Kubeconfig::with_files(vec![kc.clone()]).lock_timeout(Duration::from_millis(300));
    let t = std::time::Instant::now();
    let err = k.merge(&entries, true).unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(matches!(&err, KubeconfigError::Locked { lock: l, .. } if l == &lock));
    assert!(
        err.hint()
            .unwrap()
            .contains(&format!("delete {}", lock.display()))
    );

    // A lock released while we wait is taken.
    let release = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::remove_file(lock).unwrap();
        })
    };
    let k = k.lock_timeout(Duration::from_secs(5));
    k.merge(&entries, true).unwrap();
    release.join().unwrap();
    assert!(!lock.exists());

    // The binary, with the default timeout.
    std::fs::write(&lock, "").unwrap();
    let before = std::fs::read(&kc).unwrap();
    w.devcluster()
        .env("KUBECONFIG", &kc)
        .args(["kubeconfig", "--remove"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(lock.to_str().unwrap()))
        .stderr(predicate::str::contains(
            "if no kubectl or devcluster is running, delete",
        ));
    assert_eq!(std::fs::read(&kc).unwrap(), before);
    assert!(lock.exists(), "someone else's lock is not ours to delete");
}

/// Makes clusters `prefix1..prefixN` cheaply: state plus an admin
/// kubeconfig reusing one cluster's certificates (generating 100 PKIs
/// would take minutes in a debug build).
fn cheap_clusters(w: &World, prefix: &str, n: usize) -> Vec<String> {
    let template = devcluster::pki::ensure(&w.dirs, &common::plan_for("tmpl", 0, 0)).unwrap();
    (1..=n)
        .map(|i| {
            let name = format!("{prefix}{i}");
            let plan = common::plan_for(&name, 0, 0);
            devcluster::state::save(&w.dirs, &devcluster::state::ClusterState::new(plan.clone()))
                .unwrap();
            let text = kubeconfig::admin_kubeconfig(
                &name,
                &format!("https://{}", plan.network.api_endpoint),
                &template.ca.cert_pem,
                &template.admin.cert_pem,
                template.admin.key_pem.expose(),
            );
            std::fs::write(devcluster::pki::admin_kubeconfig_path(&w.dirs, &name), text).unwrap();
            name
        })
        .collect()
}

#[test]
fn concurrent_merges_lose_nothing() {
    let w = World::new();
    let kc = w.path("config");
    std::fs::write(&kc, FOREIGN).unwrap();
    let runs = 50;
    // Two processes at a time, each upserting 50 different clusters: every
    // write that ignored the other's lock would drop the other's latest.
    let handles: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|prefix| {
            let cmds: Vec<_> = cheap_clusters(&w, prefix, runs)
                .into_iter()
                .enumerate()
                .map(|(i, cluster)| {
                    let mut cmd = w.devcluster_std();
                    cmd.env("KUBECONFIG", &kc).args([
                        "--cluster",
                        &cluster,
                        "kubeconfig",
                        "--merge",
                    ]);
                    if i % 2 == 1 {
                        cmd.arg("--no-switch-context");
                    }
                    cmd
                })
                .collect();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for mut cmd in cmds {
                    let out = cmd.output().unwrap();
                    if !out.status.success() {
                        failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
                failures
            })
        })
        .collect();
    for h in handles {
        let failures = h.join().unwrap();
        assert!(failures.is_empty(), "{failures:#?}");
    }
    let doc = parse_file(&kc);
    for list in ["clusters", "users", "contexts"] {
        let mut names = kubeconfig::names(&doc, list);
        names.sort();
        let mut want: Vec<String> = (1..=runs)
            .flat_map(|i| [format!("devcluster-a{i}"), format!("devcluster-b{i}")])
            .chain(["kind-kind".to_string()])
            .collect();
        if list == "users" {
            want.push("token-user".into());
        }
        want.sort();
        assert_eq!(names, want, "{list}");
    }
    // kubectl reads the result, and no lock is left behind.
    let names = context_names(&w, &s(&kc));
    assert_eq!(names.len(), 2 * runs + 1, "{names:?}");
    assert!(!kubeconfig::lock_path(&kc).exists());
}

// ---------------------------------------------------------------------------
// Properties of the edit itself

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        "[ -~]{0,12}".prop_map(Value::String),
        "\\PC{0,6}".prop_map(Value::String),
        prop_oneof![
            Just("yes"),
            Just("no"),
            Just("on"),
            Just("~"),
            Just("null"),
            Just("1.0"),
            Just("0x1F"),
            Just("- a"),
            Just("a: b"),
            Just("#x"),
            Just("*ref"),
            Just("&anchor"),
            Just("!tag"),
            Just("<<"),
            Just(""),
            Just("multi\nline"),
            Just(" padded "),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn key_string() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z][a-zA-Z0-9_./-]{0,10}", "[ -~]{1,8}"]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((key_string(), inner), 0..4).prop_map(|kvs| {
                Value::Mapping(
                    kvs.into_iter()
                        .map(|(k, v)| (Value::String(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn body() -> impl Strategy<Value = Mapping> {
    prop::collection::vec((key_string(), value()), 0..4).prop_map(|kvs| {
        kvs.into_iter()
            .map(|(k, v)| (Value::String(k), v))
            .collect()
    })
}

/// Entry names: anything but ours (other devcluster clusters included).
fn foreign_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,12}",
        "devcluster-[a-z]{1,4}".prop_filter("not ours", |n| n != "devcluster-dev"),
        "[ -~]{1,10}".prop_filter("not ours", |n| n != "devcluster-dev"),
    ]
}

fn entries(body_key: &'static str) -> impl Strategy<Value = Value> {
    prop::collection::vec((foreign_name(), body(), any::<bool>(), body()), 0..4).prop_map(
        move |items| {
            Value::Sequence(
                items
                    .into_iter()
                    .map(|(name, b, name_first, extra)| {
                        let mut m = Mapping::new();
                        if name_first {
                            m.insert("name".into(), Value::String(name));
                            m.insert(body_key.into(), Value::Mapping(b));
                        } else {
                            m.insert(body_key.into(), Value::Mapping(b));
                            m.insert("name".into(), Value::String(name));
                        }
                        for (k, v) in extra {
                            if k.as_str() != Some("name") && k.as_str() != Some(body_key) {
                                m.insert(k, v);
                            }
                        }
                        Value::Mapping(m)
                    })
                    .collect(),
            )
        },
    )
}

/// A kubeconfig with foreign entries only, as text.
fn foreign_kubeconfig() -> impl Strategy<Value = String> {
    (
        prop::option::of(entries("cluster")),
        prop::option::of(entries("user")),
        prop::option::of(entries("context")),
        prop::option::of(prop_oneof![foreign_name(), Just(String::new())]),
        body(),
        any::<u8>(),
    )
        .prop_map(|(clusters, users, contexts, current, unknown, order)| {
            let mut doc = Mapping::new();
            let mut parts: Vec<(&str, Value)> = Vec::new();
            if let Some(c) = clusters {
                parts.push(("clusters", c));
            }
            if let Some(u) = users {
                parts.push(("users", u));
            }
            if let Some(c) = contexts {
                parts.push(("contexts", c));
            }
            if let Some(c) = current {
                parts.push(("current-context", Value::String(c)));
            }
            let n = parts.len().max(1);
            parts.rotate_left(usize::from(order) % n);
            doc.insert("apiVersion".into(), "v1".into());
            for (k, v) in parts {
                doc.insert(k.into(), v);
            }
            for (k, v) in unknown {
                if !doc.contains_key(&k) {
                    doc.insert(k, v);
                }
            }
            serde_norway::to_string(&doc).unwrap()
        })
}

fn our_entries() -> Entries {
    let m = |pairs: &[(&str, &str)]| -> Mapping {
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), Value::from(*v)))
            .collect()
    };
    Entries::new(
        "devcluster-dev",
        m(&[
            ("certificate-authority-data", "Q0E="),
            ("server", "https://192.168.100.10:6443"),
        ]),
        m(&[
            ("client-certificate-data", "Qw=="),
            ("client-key-data", "Sw=="),
        ]),
        m(&[("cluster", "devcluster-dev"), ("user", "devcluster-dev")]),
    )
}

/// Every foreign entry and top-level key, serialized, in order.
fn foreign_parts(doc: &Mapping) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in doc {
        let key = k.as_str().unwrap_or_default();
        if ["clusters", "users", "contexts"].contains(&key) {
            for e in v.as_sequence().into_iter().flatten() {
                if e.get("name").and_then(Value::as_str) != Some("devcluster-dev") {
                    out.push(format!("{key}: {}", serde_norway::to_string(e).unwrap()));
                }
            }
        } else if key != "current-context" {
            out.push(
                serde_norway::to_string(&Mapping::from_iter([(k.clone(), v.clone())])).unwrap(),
            );
        }
    }
    out
}

fn entry_set(doc: &Mapping) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for list in ["clusters", "users", "contexts"] {
        for n in kubeconfig::names(doc, list) {
            out.push((list.to_string(), n));
        }
    }
    out.sort();
    out
}

fn through_text(doc: &Mapping) -> Mapping {
    kubeconfig::parse(Path::new("mem"), kubeconfig::to_yaml(doc).as_bytes()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn foreign_entries_survive_upsert_and_remove(text in foreign_kubeconfig()) {
        let path = PathBuf::from("mem");
        let original = kubeconfig::parse(&path, text.as_bytes()).unwrap();
        // Our serialization of what we read is stable.
        prop_assert_eq!(&through_text(&original), &original);

        let mut merged = original.clone();
        kubeconfig::upsert(&mut merged, &our_entries());
        let merged = through_text(&merged);
        prop_assert_eq!(foreign_parts(&merged), foreign_parts(&original));
        prop_assert!(kubeconfig::defines(&merged, "contexts", "devcluster-dev"));

        let mut removed = merged.clone();
        kubeconfig::remove(&mut removed, "devcluster-dev");
        let removed = through_text(&removed);
        prop_assert_eq!(foreign_parts(&removed), foreign_parts(&original));
        prop_assert_eq!(entry_set(&removed), entry_set(&original));
        prop_assert_eq!(
            kubeconfig::current_context(&removed),
            kubeconfig::current_context(&original)
        );
    }

    #[test]
    fn upsert_is_idempotent(text in foreign_kubeconfig(), switch in any::<bool>()) {
        let original = kubeconfig::parse(Path::new("mem"), text.as_bytes()).unwrap();
        let mut once = original.clone();
        kubeconfig::upsert(&mut once, &our_entries());
        if switch {
            kubeconfig::set_current_context(&mut once, "devcluster-dev");
        }
        let mut twice = through_text(&once);
        kubeconfig::upsert(&mut twice, &our_entries());
        if switch {
            kubeconfig::set_current_context(&mut twice, "devcluster-dev");
        }
        prop_assert_eq!(kubeconfig::to_yaml(&twice), kubeconfig::to_yaml(&once));
    }
}
