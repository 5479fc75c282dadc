//! Shared helpers for the integration tests: a temporary world (devcluster
//! home, HOME, kubeconfig files), clusters built through the library, and
//! the real tools (openssl, kubectl, ssh-keygen) the tests run.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use devcluster::dirs::Dirs;
use devcluster::plan::{self, Plan, Surroundings};
use devcluster::spec::{self, Layer, Origin, Val};
use devcluster::state::{self, ClusterState};

/// A temporary world: `root/devcluster` is DEVCLUSTER_HOME, `root/home` is
/// HOME. Nothing outside `root` is touched.
pub struct World {
    pub root: tempfile::TempDir,
    pub dirs: Dirs,
}

impl World {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        let dirs = Dirs::under(&root.path().join("devcluster"));
        Self { root, dirs }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// `~/.kube/config` of this world.
    pub fn home_kubeconfig(&self) -> PathBuf {
        self.home().join(".kube").join("config")
    }

    /// The devcluster binary with this world's environment and no
    /// KUBECONFIG (so ~/.kube/config of `home()`).
    pub fn devcluster(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_devcluster"));
        self.env(&mut cmd);
        cmd
    }

    /// The same as a std Command (for spawning in threads).
    pub fn devcluster_std(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_devcluster"));
        cmd.env("DEVCLUSTER_HOME", self.path("devcluster"))
            .env("HOME", self.home())
            .env_remove("KUBECONFIG")
            .env_remove("DEVCLUSTER_CLUSTER")
            .env("NO_COLOR", "1");
        cmd
    }

    fn env(&self, cmd: &mut assert_cmd::Command) {
        cmd.env("DEVCLUSTER_HOME", self.path("devcluster"))
            .env("HOME", self.home())
            .env_remove("KUBECONFIG")
            .env_remove("DEVCLUSTER_CLUSTER")
            .env("NO_COLOR", "1");
    }

    /// kubectl on an explicit kubeconfig (KUBECONFIG), with this HOME.
    pub fn kubectl(&self, kubeconfig: &str) -> Command {
        let mut cmd = Command::new(require_tool("kubectl"));
        cmd.env("HOME", self.home()).env("KUBECONFIG", kubeconfig);
        cmd
    }

    /// Creates cluster `name` the way `up` does before any VM: spec, plan,
    /// state, secrets.
    pub fn cluster(&self, name: &str, workers: u32, windows: u32) -> Plan {
        let plan = plan_for(name, workers, windows);
        state::save(&self.dirs, &ClusterState::new(plan.clone())).unwrap();
        devcluster::pki::ensure(&self.dirs, &plan).unwrap();
        plan
    }
}

pub fn plan_for(name: &str, workers: u32, windows: u32) -> Plan {
    let layer = Layer {
        workers: Some(Val::new(workers, Origin::Flag("--workers"))),
        windows_workers: Some(Val::new(windows, Origin::Flag("--windows-workers"))),
        ..Layer::default()
    };
    let spec = spec::resolve(Val::new(name.into(), Origin::Flag("--cluster")), layer).unwrap();
    plan::plan(&spec, &Surroundings::default()).unwrap()
}

/// The path of a tool the test needs; panics (fails the test) if missing.
pub fn require_tool(name: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&paths) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is required by this test but is not on PATH (install it: see .ci/run)");
}

/// Runs a command, asserts success, returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert_success(&out, cmd);
    String::from_utf8(out.stdout).unwrap()
}

pub fn assert_success(out: &Output, cmd: &Command) {
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unix permission bits of a path.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
