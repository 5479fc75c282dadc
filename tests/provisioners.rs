//! Every shell provisioner passes shellcheck (all checks, style level).
//! shellcheck is required: a missing one fails this test.

mod common;

use std::path::{Path, PathBuf};

fn shell_scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            shell_scripts(&path, out);
        } else if path.extension().is_some_and(|e| e == "sh") {
            out.push(path);
        }
    }
}

#[test]
fn shell_provisioners_pass_shellcheck() {
    let shellcheck = common::require_tool("shellcheck");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("provisioners");
    let mut scripts = Vec::new();
    shell_scripts(&root, &mut scripts);
    scripts.sort();
    assert!(
        scripts.iter().any(|p| p.ends_with("linux/prepare-os.sh")),
        "{scripts:?}"
    );
    let out = std::process::Command::new(shellcheck)
        .args(["--shell=bash", "--severity=style", "--external-sources"])
        .args(&scripts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shell_provisioners_are_bash_with_strict_mode() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("provisioners");
    let mut scripts = Vec::new();
    shell_scripts(&root, &mut scripts);
    for script in scripts {
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(
            text.starts_with("#!/usr/bin/env bash\n"),
            "{}",
            script.display()
        );
        assert!(
            text.contains("\nset -euo pipefail\n"),
            "{}",
            script.display()
        );
    }
}

/// The seed and prepare-os.sh manage the same block of /etc/hosts.
#[test]
fn hosts_markers_agree() {
    let script = devcluster::provision::steps::PREPARE_OS_SCRIPT;
    for marker in [
        devcluster::seed::cloud_init::HOSTS_BEGIN,
        devcluster::seed::cloud_init::HOSTS_END,
    ] {
        assert!(
            script.contains(&format!("\"{marker}\"")),
            "prepare-os.sh lacks {marker:?}"
        );
    }
}
// ---- prepare-node.sh: containerd's configuration ------------------------------

/// The config-editing functions of prepare-node.sh (between its `# >>>` and
/// `# <<<` markers), run by themselves on a copy of `sample`.
fn edit_containerd_config(sample: &str, times: usize) -> (String, String) {
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("provisioners/linux/prepare-node.sh"),
    )
    .unwrap();
    let start = script
        .find("\n# >>> containerd config editing")
        .expect("start marker");
    let end = script
        .find("\n# <<< containerd config editing")
        .expect("end marker");
    let functions = &script[start..end];
    let dir = tempfile::tempdir().unwrap();
    let fns = dir.path().join("functions.sh");
    std::fs::write(&fns, functions).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/containerd")
            .join(sample),
        &config,
    )
    .unwrap();
    let mut layout = String::new();
    for _ in 0..times {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(r#"set -euo pipefail; . "$1"; edit_containerd_config "$2" registry.k8s.io/pause:3.10.1 /opt/cni/bin"#)
            .arg("bash")
            .arg(&fns)
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        layout = String::from_utf8(out.stdout).unwrap().trim().to_string();
    }
    (layout, std::fs::read_to_string(&config).unwrap())
}

fn table<'a>(doc: &'a toml::Table, path: &[&str]) -> &'a toml::Table {
    let mut t = doc;
    for key in path {
        t = t
            .get(*key)
            .and_then(|v| v.as_table())
            .unwrap_or_else(|| panic!("no table {key} in {path:?}"));
    }
    t
}

#[test]
fn containerd_1_6_config_gets_systemd_cgroups_the_pause_image_and_opt_cni() {
    let (layout, text) = edit_containerd_config("default-1.6.toml", 1);
    assert_eq!(layout, "1.x");
    let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let cri = table(&doc, &["plugins", "io.containerd.grpc.v1.cri"]);
    assert_eq!(
        cri["sandbox_image"].as_str(),
        Some("registry.k8s.io/pause:3.10.1")
    );
    assert_eq!(
        table(cri, &["cni"])["bin_dir"].as_str(),
        Some("/opt/cni/bin")
    );
    let runc = table(cri, &["containerd", "runtimes", "runc", "options"]);
    assert_eq!(runc["SystemdCgroup"].as_bool(), Some(true));
    // Nothing else changed: three lines differ from the sample.
    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/containerd/default-1.6.toml"),
    )
    .unwrap();
    let changed = sample
        .lines()
        .zip(text.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 3, "{text}");
    assert_eq!(sample.lines().count(), text.lines().count());
}

#[test]
fn containerd_2_config_gets_the_same_in_its_own_layout() {
    for (sample, cni_key) in [
        ("default-2.0.toml", "bin_dir"),
        ("default-2.1.toml", "bin_dirs"),
    ] {
        let (layout, text) = edit_containerd_config(sample, 1);
        assert_eq!(layout, "2.x", "{sample}");
        let doc: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{sample}: {e}\n{text}"));
        let images = table(
            &doc,
            &["plugins", "io.containerd.cri.v1.images", "pinned_images"],
        );
        assert_eq!(
            images["sandbox"].as_str(),
            Some("registry.k8s.io/pause:3.10.1")
        );
        let runtime = table(&doc, &["plugins", "io.containerd.cri.v1.runtime"]);
        let runc = table(runtime, &["containerd", "runtimes", "runc", "options"]);
        // Not in the sample: added.
        assert_eq!(runc["SystemdCgroup"].as_bool(), Some(true), "{sample}");
        assert_eq!(runc["BinaryName"].as_str(), Some(""), "{sample}");
        let cni = table(runtime, &["cni"]);
        match cni_key {
            "bin_dirs" => {
                let dirs: Vec<&str> = cni["bin_dirs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert_eq!(dirs, ["/opt/cni/bin"]);
                assert_eq!(cni["bin_dir"].as_str(), Some(""));
            }
            _ => assert_eq!(cni["bin_dir"].as_str(), Some("/opt/cni/bin")),
        }
        assert!(
            text.contains("            ShimCgroup = ''\n            SystemdCgroup = true\n\n"),
            "{sample}: the key goes right after the table's last one:\n{text}"
        );
    }
}

#[test]
fn editing_containerd_config_twice_changes_nothing_more() {
    for sample in ["default-1.6.toml", "default-2.0.toml", "default-2.1.toml"] {
        assert_eq!(
            edit_containerd_config(sample, 1),
            edit_containerd_config(sample, 2),
            "{sample}"
        );
    }
}

// ---- join.sh: the bounded wait ------------------------------------------------

/// What join.sh runs against here: a stand-in `kubeadm` on PATH that
/// records its arguments in `called` and fails, a join config, and a
/// loopback port nothing listens on yet.
struct JoinWorld {
    dir: tempfile::TempDir,
    called: std::path::PathBuf,
    port: u16,
}

impl JoinWorld {
    fn new() -> Self {
        if Path::new("/etc/kubernetes").exists() {
            panic!("this machine has /etc/kubernetes: not running join.sh on a Kubernetes node");
        }
        common::require_tool("curl");
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let called = dir.path().join("kubeadm-called");
        let stub = bin.join("kubeadm");
        std::fs::write(
            &stub,
            format!("#!/bin/sh\necho \"$*\" >>'{}'\nexit 99\n", called.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("kubeadm-join.yaml"),
            "kind: JoinConfiguration\n",
        )
        .unwrap();
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self { dir, called, port }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `bash join.sh` with the stand-in first on PATH and the budgets.
    fn join_sh(&self, api_wait: &str, join: &str) -> std::process::Command {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = std::process::Command::new("bash");
        c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("provisioners/linux/join.sh"))
            .env("PATH", path)
            .env("KUBEADM_CONFIG", self.dir.path().join("kubeadm-join.yaml"))
            .env("API_ENDPOINT", self.endpoint())
            .env("NODE_NAME", "w1")
            .env("API_WAIT_TIMEOUT", api_wait)
            .env("JOIN_TIMEOUT", join)
            .env_remove("DEVCLUSTER_TEST_FAIL_STEP");
        c
    }
}

/// join.sh against an API endpoint where nothing listens: it must give up
/// after API_WAIT_TIMEOUT (not JOIN_TIMEOUT, which starts only once the
/// API server answers) with a message naming the endpoint. It changes
/// nothing before the API server answers, so it can run here (a stand-in
/// `kubeadm` on PATH only satisfies its "is kubeadm installed" check and
/// must never be called).
#[test]
fn join_gives_up_after_its_timeout_naming_the_endpoint() {
    let w = JoinWorld::new();
    let endpoint = w.endpoint();
    let called = &w.called;
    let started = std::time::Instant::now();
    let out = w.join_sh("3", "600").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "join: the API server at https://{endpoint} did not answer in 3s"
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        !called.exists(),
        "kubeadm must not run before the API server answers"
    );
}

/// The join deadline starts when the API server first answers: an API
/// server (openssl s_server answering every GET) that comes up 6 s after
/// the worker starts waiting, a JOIN_TIMEOUT of 3 s and a kubeadm that
/// always fails. join.sh must wait past its 3 s join budget for the API
/// server, then try kubeadm join, and time out naming the rule.
#[test]
fn the_join_deadline_starts_when_the_api_server_answers() {
    common::require_tool("openssl");
    let w = JoinWorld::new();
    let dir = &w.dir;
    let called = &w.called;
    let (crt, key) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=api"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let (port, endpoint) = (w.port, w.endpoint());
    let started = std::time::Instant::now();
    let worker = w
        .join_sh("60", "3")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(6));
    let mut api = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(port.to_string())
        .arg("-cert")
        .arg(&crt)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = worker.wait_with_output().unwrap();
    let _ = api.kill();
    let _ = api.wait();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "the API server at https://{endpoint} answers; 3s to join from now"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("join: timed out 3s after the API server first answered: kubeadm join did not succeed in 1 attempts"),
        "{stderr}"
    );
    // It waited longer than its join budget before the API server came up,
    // and still tried to join.
    assert!(took > std::time::Duration::from_secs(6), "{took:?}");
    assert!(took < std::time::Duration::from_secs(40), "{took:?}");
    let calls = std::fs::read_to_string(called).unwrap_or_default();
    assert!(calls.starts_with("join --config "), "{calls}");
}
