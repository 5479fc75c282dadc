//! A fluent builder for CLI tests (in the style of just's `Test`): each test
//! runs the real binary with its own DEVCLUSTER_HOME, HOME, KUBECONFIG and
//! working directory, all temporary, and none of the caller's DEVCLUSTER_*
//! variables.

#![allow(dead_code)]

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
