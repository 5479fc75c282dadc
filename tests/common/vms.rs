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

impl ClusterCleanup {
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
