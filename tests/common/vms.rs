//! Helpers of the tests that run real VMs on `qemu:///system`.

use std::process::Command;

/// `virsh -c qemu:///system ARGS`: its stdout (errors are the tests' to
/// notice in what they look for).
pub fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("virsh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `virsh -c qemu:///system ARGS`: whether it succeeded, and its stdout
/// (trimmed) followed by its stderr.
pub fn virsh_status(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("virsh must be installed (scripts/setup-test-host.sh)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string()
            + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `devcluster --cluster CLUSTER ssh NODE -- CMD`, which must exit 0: its
/// stdout, trimmed.
pub fn ssh_out(t: &mut super::Test, cluster: &str, node: &str, cmd: &str) -> String {
    let run = t
        .args(&["--cluster", cluster, "ssh", node, "--", cmd])
        .run();
    assert_eq!(run.code, 0, "ssh {node} {cmd}: {}", run.stderr);
    run.stdout.trim().to_string()
}

/// The lines a node's log (`devcluster logs NODE`) has for `step`,
/// without their `[step] ` tag.
pub fn step_lines(log: &str, step: &str) -> Vec<String> {
    let tag = format!("[{step}] ");
    log.lines()
        .filter_map(|l| l.split_once(&tag).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// On drop (a test passing or panicking), removes whatever a cluster's
/// test left in libvirt: its VMs, storage pool and directory, network.
/// Disks left behind would be picked up again by the next run.
pub struct ClusterCleanup {
    pub cluster: &'static str,
    pub nodes: &'static [&'static str],
}

impl Drop for ClusterCleanup {
    fn drop(&mut self) {
        self.clean();
    }
}

/// The guest test image `scripts/test.sh` builds (DEVCLUSTER_TEST_IMAGE).
pub fn test_image() -> String {
    std::env::var("DEVCLUSTER_TEST_IMAGE")
        .expect("DEVCLUSTER_TEST_IMAGE: run scripts/test.sh, which builds the guest test image")
}

impl ClusterCleanup {
    /// Removes what an earlier run of the test left now, and what this
    /// one leaves when it is dropped.
    pub fn fresh(cluster: &'static str, nodes: &'static [&'static str]) -> Self {
        let c = Self { cluster, nodes };
        c.clean();
        c
    }

    /// Removes the leftovers now (also of an earlier, killed run).
    pub fn clean(&self) {
        for vm in self.nodes {
            virsh(&["destroy", vm]);
            virsh(&["undefine", vm, "--nvram", "--managed-save"]);
        }
        let name = format!("devcluster-{}", self.cluster);
        for cmd in ["pool-destroy", "pool-undefine"] {
            virsh(&[cmd, &name]);
        }
        let _ = std::fs::remove_dir_all(format!("/var/lib/libvirt/images/{name}"));
        virsh(&["net-destroy", &name]);
        virsh(&["net-undefine", &name]);
    }
}

/// A node software mirror (`DEVCLUSTER_NODE_SOFTWARE_MIRROR`) in a local
/// directory, laid out like the publishers' servers, holding stand-ins for
/// containerd, runc and the CNI plugins (shell scripts in real tar.gz
/// archives, not the real binaries: there is no internet here) and their
/// checksum files in each publisher's format. `up` downloads them through
/// the cache, prepare-node uploads them, checks their sha256 on the node
/// and installs them.
pub struct NodeSoftwareMirror {
    /// `file://<dir>`: the value for the environment variable.
    pub url: String,
}

/// What the stand-in containerd prints for `--version`, as the real one
/// does (`containerd <module> v<version> <commit>`).
pub const STAND_IN_MARK: &str = "devcluster-test-stand-in";

impl NodeSoftwareMirror {
    pub const ENV: &'static str = devcluster::images::node_software::MIRROR_ENV;

    pub fn create(dir: &std::path::Path) -> Self {
        use devcluster::images::node_software::{
            self as ns, ChecksumSource, LINUX_CONTAINERD_VERSION, Origins,
        };
        let url = format!("file://{}", dir.display());
        let staging = dir.join("staging");
        let script = |path: &std::path::Path, body: &str| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(
                path,
                format!("#!/bin/sh\n# {STAND_IN_MARK}: not the real binary\n{body}\n"),
            )
            .unwrap();
            let st = Command::new("chmod")
                .arg("0755")
                .arg(path)
                .status()
                .unwrap();
            assert!(st.success());
        };
        let tar = |archive: &std::path::Path, from: &std::path::Path, what: &[&str]| {
            std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
            let st = Command::new("tar")
                .arg("-czf")
                .arg(archive)
                .arg("-C")
                .arg(from)
                .args(what)
                .status()
                .expect("tar");
            assert!(st.success());
        };
        for a in ns::linux_catalog_from(&Origins::mirror(&url)) {
            let file = std::path::PathBuf::from(a.url.strip_prefix("file://").unwrap());
            match a.name {
                ns::LINUX_CONTAINERD => {
                    let root = staging.join("containerd");
                    script(
                        &root.join("bin/containerd"),
                        &format!(
                            "if [ \"$1\" = --version ]; then echo 'containerd github.com/containerd/containerd/v2 v{LINUX_CONTAINERD_VERSION} {STAND_IN_MARK}'; exit 0; fi\necho \"stand-in containerd: $*\" >&2; exit 1"
                        ),
                    );
                    script(&root.join("bin/ctr"), "exit 1");
                    script(&root.join("bin/containerd-shim-runc-v2"), "exit 1");
                    tar(&file, &root, &["bin"]);
                }
                ns::LINUX_RUNC => script(&file, "echo 'runc stand-in'; exit 1"),
                ns::LINUX_CNI_PLUGINS => {
                    let root = staging.join("cni");
                    for p in ["bridge", "host-local", "loopback", "portmap"] {
                        script(&root.join(p), "exit 1");
                    }
                    tar(
                        &file,
                        &root,
                        &["./bridge", "./host-local", "./loopback", "./portmap"],
                    );
                }
                other => panic!("no stand-in for {other}"),
            }
            let ChecksumSource::File { url: sums, name } = &a.checksum else {
                panic!("a mirror's checksums are read from it: {a:?}");
            };
            let sha = sha256_file(&file);
            let sums = std::path::PathBuf::from(sums.strip_prefix("file://").unwrap());
            // containerd's .sha256sum and runc's runc.sha256sum are
            // sha256sum lines; cni-plugins' .sha256 too.
            std::fs::write(&sums, format!("{sha}  {name}\n")).unwrap();
        }
        Self { url }
    }
}

fn sha256_file(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
