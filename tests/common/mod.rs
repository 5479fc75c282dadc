//! A fluent builder for CLI tests (in the style of just's `Test`): each test
//! runs the real binary with its own DEVCLUSTER_HOME, HOME, KUBECONFIG and
//! working directory, all temporary, and none of the caller's DEVCLUSTER_*
//! variables.
//!
//! [`World`] is the library-level counterpart: a temporary world with
//! clusters built through the library and the real tools (openssl,
//! kubectl, ssh-keygen) the tests run.

#![allow(dead_code)]

pub mod cdp;
pub mod dashboard;
pub mod http;
pub mod sshd;
pub mod vms;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_devcluster");

/// Variables that would leak the developer's setup into a test.
const SCRUB: &[&str] = &[
    "DEVCLUSTER_CLUSTER",
    "DEVCLUSTER_WORKERS",
    "DEVCLUSTER_WINDOWS_WORKERS",
    "DEVCLUSTER_PROVIDER",
    "DEVCLUSTER_KUBERNETES_VERSION",
    "DEVCLUSTER_LIBVIRT_URI",
    "DEVCLUSTER_LOG",
    "KUBECONFIG",
];

pub struct Test {
    pub root: TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        for d in ["home", "work", "user"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        Self {
            root,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// DEVCLUSTER_HOME: config, state and cache of devcluster.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// The working directory of the command (where ./devcluster.toml is read).
    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// The user's HOME (for ~/.kube/config).
    pub fn user_home(&self) -> PathBuf {
        self.root.path().join("user")
    }

    pub fn dirs(&self) -> devcluster::dirs::Dirs {
        devcluster::dirs::Dirs::under(&self.home())
    }

    pub fn arg(&mut self, arg: &str) -> &mut Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Writes a file relative to the working directory.
    pub fn file(&mut self, rel: &str, contents: &str) -> &mut Self {
        let p = self.work().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
        self
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.args(&self.args)
            .current_dir(self.work())
            .env("DEVCLUSTER_HOME", self.home())
            .env("HOME", self.user_home())
            .env("USERPROFILE", self.user_home())
            .env("NO_COLOR", "1")
            .env_remove("CI");
        for v in SCRUB {
            c.env_remove(v);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs the command; the builder can be reused for another run.
    pub fn run(&mut self) -> Run {
        let out = self.command().output().expect("run devcluster");
        self.args.clear();
        self.env.clear();
        Run::from(out)
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn status(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Every file below `dir` (empty when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push(p.clone());
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Saves a planned cluster through the library, as `up` would before
/// creating VMs.
pub fn make_cluster(dirs: &devcluster::dirs::Dirs, name: &str, workers: u32, windows: u32) {
    use devcluster::spec::{Layer, Origin, Val};
    let layer = Layer {
        workers: Some(Val::new(workers, Origin::Flag("--workers"))),
        windows_workers: Some(Val::new(windows, Origin::Flag("--windows-workers"))),
        ..Layer::default()
    };
    let spec =
        devcluster::spec::resolve(Val::new(name.into(), Origin::Flag("--cluster")), layer).unwrap();
    let others: Vec<(String, devcluster::net::Cidr)> = devcluster::state::list(dirs)
        .unwrap()
        .into_iter()
        .filter_map(|l| match l {
            devcluster::state::Listed::Ok(s) => Some((s.name.clone(), s.plan.network.subnet)),
            _ => None,
        })
        .collect();
    let env = devcluster::plan::Surroundings {
        other_clusters: others,
        ..Default::default()
    };
    let plan = devcluster::plan::plan(&spec, &env).unwrap();
    devcluster::state::save(dirs, &devcluster::state::ClusterState::new(plan)).unwrap();
}

// ---- library-level world -------------------------------------------------

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

/// A stand-in Windows Server 2025 ISO written at `iso` (it boots nothing)
/// and the user's catalog entry serving it by file:// and sha256, with
/// the licence gate on (a user entry replaces the built-in one: the
/// air-gapped case). Returns the ISO's sha256.
#[allow(dead_code)] // not every test binary uses it
pub fn stand_in_windows_iso(dirs: &devcluster::dirs::Dirs, iso: &Path) -> String {
    stand_in_windows_iso_for(dirs, iso, "libvirt")
}

/// [`stand_in_windows_iso`] for provider `provider` (`hyperv`, ...).
#[allow(dead_code)] // not every test binary uses it
pub fn stand_in_windows_iso_for(
    dirs: &devcluster::dirs::Dirs,
    iso: &Path,
    provider: &str,
) -> String {
    devcluster::seed::iso::write(
        iso,
        "SSS_X64FREE_DV9",
        &[("setup.exe", b"stand-in for Windows Setup".as_slice())],
    )
    .unwrap();
    let sha = devcluster::images::sha256_file(iso).unwrap();
    let catalog = dirs.config.join("images");
    std::fs::create_dir_all(&catalog).unwrap();
    std::fs::write(
        catalog.join("windows-server-2025.toml"),
        format!(
            "name = \"windows-server-2025\"\nos = \"windows\"\nversion = \"2025\"\nfirmware = \"uefi\"\ndefault_user = \"Administrator\"\nlicense = \"stand-in\"\nlicense_requires_acceptance = true\n\n[[artifacts]]\nproviders = [\"{provider}\"]\nurl = \"file://{}\"\nsha256 = \"{sha}\"\nformat = \"iso\"\n",
            iso.display()
        ),
    )
    .unwrap();
    sha
}
