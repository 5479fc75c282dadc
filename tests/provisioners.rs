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
