//! A cluster's state on disk, and the lock that serializes commands on it.
//!
//! `<state dir>/clusters/NAME/state.json` holds the plan and each node's
//! progress. It is the source of truth for what a cluster should be; the
//! provider is asked what it is. Every write replaces the file atomically,
//! so a crash or Ctrl-C leaves the previous state, never a torn one.
//!
//! Every mutating command holds `<state dir>/locks/NAME.lock`: an OS file
//! lock (released by the kernel when the process dies, so a killed `up`
//! never leaves a stale lock), with the holder's pid and command in
//! `NAME.lock.info` beside it so a second command can say who is busy.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dirs::Dirs;
use crate::fsutil::{Access, atomic_write};
use crate::plan::Plan;

/// Bumped when the format changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cluster {0} does not exist")]
    NotFound(String),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid devcluster state file", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has schema version {found}; this devcluster reads version {SCHEMA_VERSION}", path.display())]
    Schema { path: PathBuf, found: u32 },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster {cluster} is busy: pid {pid} is running `{command}`")]
    Busy {
        cluster: String,
        pid: String,
        command: String,
    },
    #[error("cannot lock cluster {cluster} ({})", path.display())]
    Lock {
        cluster: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StateError {
    pub fn hint(&self) -> Option<String> {
        match self {
            StateError::NotFound(name) => Some(format!(
                "create it with `devcluster --cluster {name} up`, or see `devcluster list`"
            )),
            StateError::Schema { .. } => {
                Some("use the devcluster version that created this cluster".into())
            }
            StateError::Busy { .. } => Some(
                "wait for that command to finish, or stop it (Ctrl-C) and run yours again".into(),
            ),
            _ => None,
        }
    }
}

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NodePhase {
    /// Planned; no VM yet.
    #[default]
    Planned,
    /// The VM exists.
    Created,
    /// All of the node's steps are done.
    Ready,
    /// A step failed; `failed_step` says which.
    Failed,
}

impl NodePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            NodePhase::Planned => "planned",
            NodePhase::Created => "created",
            NodePhase::Ready => "ready",
            NodePhase::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeState {
    pub phase: NodePhase,
    /// Steps done, in order; `up` skips them.
    #[serde(default)]
    pub completed_steps: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// When each step last started and how long it took (absent while it
    /// runs, or when it was cut short): what the summary's timeline shows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub step_times: BTreeMap<String, StepTime>,
    /// The golden disk this node's VM was cloned from (its prepare-node
    /// came with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_golden: Option<String>,
    /// The control plane was re-created after this worker joined the old
    /// one: its `join` is forgotten, here and in the guest (its marker is
    /// removed before its steps run), and set back when `join` succeeds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rejoin: bool,
}

/// One run of a step, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTime {
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NodeState {
    /// The step a person wants to see: the failed one, else the last done.
    pub fn last_step(&self) -> Option<&str> {
        self.failed_step
            .as_deref()
            .or_else(|| self.completed_steps.last().map(String::as_str))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub schema_version: u32,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub plan: Plan,
    /// Per node name.
    pub nodes: BTreeMap<String, NodeState>,
}

impl ClusterState {
    /// A new state for a plan: every node planned.
    pub fn new(plan: Plan) -> Self {
        let nodes = plan
            .nodes
            .iter()
            .map(|n| (n.name.clone(), NodeState::default()))
            .collect();
        Self {
            schema_version: SCHEMA_VERSION,
            name: plan.cluster.clone(),
            created_at: now_rfc3339(),
            plan,
            nodes,
        }
    }

    pub fn node(&self, name: &str) -> NodeState {
        self.nodes.get(name).cloned().unwrap_or_default()
    }

    /// The control plane's VM was re-created: `kubeadm init` runs again on
    /// an empty etcd, where no worker is registered, and a kubelet
    /// registers only once. So every worker forgets its `join` (and is
    /// marked to rejoin, so that the guest's marker goes too) and is no
    /// longer Ready. Returns the workers that had joined.
    pub fn control_plane_recreated(&mut self) -> Vec<String> {
        use crate::plan::Role;
        let mut joined = Vec::new();
        for n in self.plan.nodes.iter().filter(|n| n.role == Role::Worker) {
            let ns = self.nodes.entry(n.name.clone()).or_default();
            let steps = join_steps(n);
            let had = ns.completed_steps.iter().any(|s| s == steps[0]);
            ns.completed_steps.retain(|s| !steps.contains(&s.as_str()));
            if ns
                .failed_step
                .as_deref()
                .is_some_and(|f| steps.contains(&f))
            {
                ns.failed_step = None;
            }
            ns.rejoin = true;
            if ns.phase == NodePhase::Ready {
                ns.phase = NodePhase::Created;
            }
            if had {
                joined.push(n.name.clone());
            }
        }
        joined
    }

    /// Whether `up` is about to run a `join` against an API server that
    /// `kubeadm init` set up in an earlier run: then the bootstrap token
    /// from that run may have expired ([`crate::kube::token`]).
    pub fn joins_pending_after_init(&self) -> bool {
        use crate::plan::Role;
        self.initialised()
            && self
                .plan
                .nodes
                .iter()
                .filter(|n| n.role == Role::Worker)
                .any(|n| {
                    let join = join_steps(n)[0];
                    !self.node(&n.name).completed_steps.iter().any(|s| s == join)
                })
    }

    /// Whether the cluster runs Kubernetes and `kubeadm init` completed on
    /// its control plane: from then on there is an API server to ask.
    pub fn initialised(&self) -> bool {
        self.plan.kubernetes
            && self
                .nodes
                .get(&self.plan.control_plane().name)
                .is_some_and(|n| {
                    n.completed_steps
                        .iter()
                        .any(|s| s == crate::provision::steps::INIT_CONTROL_PLANE)
                })
    }
}

/// A worker's join step, then what must run again with it on a new
/// cluster: `join` on Linux; `join-windows`, `network-windows` on Windows.
fn join_steps(node: &crate::plan::NodePlan) -> &'static [&'static str] {
    match node.os {
        crate::plan::Os::Linux => &[crate::provision::steps::JOIN],
        crate::plan::Os::Windows => &crate::windows_join::JOIN_STEPS,
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn state_file(dirs: &Dirs, name: &str) -> PathBuf {
    dirs.cluster(name).join("state.json")
}

/// Loads a cluster's state; `Ok(None)` when the cluster does not exist.
pub fn load(dirs: &Dirs, name: &str) -> Result<Option<ClusterState>, StateError> {
    read_file(&state_file(dirs, name))
}

/// Loads a cluster's state; an error when it does not exist.
pub fn load_existing(dirs: &Dirs, name: &str) -> Result<ClusterState, StateError> {
    load(dirs, name)?.ok_or_else(|| StateError::NotFound(name.to_string()))
}

fn read_file(path: &Path) -> Result<Option<ClusterState>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    #[derive(Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let parse_err = |source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let v: Version = serde_json::from_slice(&bytes).map_err(parse_err)?;
    if v.schema_version != SCHEMA_VERSION {
        return Err(StateError::Schema {
            path: path.to_path_buf(),
            found: v.schema_version,
        });
    }
    serde_json::from_slice(&bytes).map(Some).map_err(parse_err)
}

/// Writes a cluster's state atomically (private: it names every address).
pub fn save(dirs: &Dirs, state: &ClusterState) -> Result<(), StateError> {
    let path = state_file(dirs, &state.name);
    let mut text = serde_json::to_vec_pretty(state).map_err(|e| StateError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    atomic_write(&path, &text, Access::Private).map_err(|source| StateError::Write { path, source })
}

/// One entry of [`list`]: a cluster's state, or why it could not be read.
#[derive(Debug)]
pub enum Listed {
    Ok(Box<ClusterState>),
    Broken { name: String, error: StateError },
}

/// Every cluster under the state dir, sorted by name. A cluster whose state
/// cannot be read is listed as broken rather than failing the whole list.
pub fn list(dirs: &Dirs) -> Result<Vec<Listed>, StateError> {
    let root = dirs.clusters();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StateError::Read { path: root, source }),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        match read_file(&entry.path().join("state.json")) {
            Ok(Some(s)) => out.push(Listed::Ok(Box::new(s))),
            Ok(None) => {}
            Err(error) => out.push(Listed::Broken { name, error }),
        }
    }
    out.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(out)
}

impl Listed {
    pub fn name(&self) -> &str {
        match self {
            Listed::Ok(s) => &s.name,
            Listed::Broken { name, .. } => name,
        }
    }
}

/// Removes a cluster's directory (state, keys, logs, seeds); gone is fine.
pub fn remove(dirs: &Dirs, name: &str) -> std::io::Result<()> {
    match fs_err::remove_dir_all(dirs.cluster(name)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Held while a mutating command runs on a cluster; released on drop (and
/// by the OS if the process dies).
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
    info: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct LockInfo {
    pid: u32,
    command: String,
}

impl ClusterLock {
    /// Takes the lock or says who holds it. `command` is what the holder
    /// runs, for the other side's message (e.g. `devcluster up`).
    pub fn acquire(dirs: &Dirs, cluster: &str, command: &str) -> Result<Self, StateError> {
        let dir = dirs.locks();
        let path = dir.join(format!("{cluster}.lock"));
        let info = dir.join(format!("{cluster}.lock.info"));
        let lock_err = |source| StateError::Lock {
            cluster: cluster.to_string(),
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(lock_err)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The holder writes its info right after locking; give it a
                // moment if we raced it.
                let mut holder = None;
                for _ in 0..20 {
                    holder = std::fs::read(&info)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok());
                    if holder.is_some() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                let (pid, command) = holder
                    .map(|h| (h.pid.to_string(), h.command))
                    .unwrap_or_else(|| ("?".into(), "devcluster".into()));
                return Err(StateError::Busy {
                    cluster: cluster.to_string(),
                    pid,
                    command,
                });
            }
            Err(TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        let text = serde_json::to_vec(&LockInfo {
            pid: std::process::id(),
            command: command.to_string(),
        })
        .unwrap_or_default();
        atomic_write(&info, &text, Access::Normal).map_err(lock_err)?;
        Ok(Self { _file: file, info })
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined_cluster() -> ClusterState {
        let layer = crate::spec::Layer {
            workers: Some(crate::spec::Val::new(
                2,
                crate::spec::Origin::Flag("--workers"),
            )),
            ..crate::spec::Layer::default()
        };
        let spec = crate::spec::resolve(
            crate::spec::Val::new("rc".into(), crate::spec::Origin::Flag("--cluster")),
            layer,
        )
        .unwrap();
        let plan = crate::plan::plan(&spec, &crate::plan::Surroundings::default()).unwrap();
        let mut st = ClusterState::new(plan);
        let steps = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (name, ns) in st.nodes.iter_mut() {
            ns.phase = NodePhase::Ready;
            ns.completed_steps = if name == "rc-cp" {
                steps(&[
                    "prepare-os",
                    "prepare-node",
                    "init-control-plane",
                    "network-addon",
                ])
            } else {
                steps(&["prepare-os", "prepare-node", "join"])
            };
        }
        st
    }

    #[test]
    fn a_recreated_control_plane_makes_every_worker_join_again() {
        let mut st = joined_cluster();
        assert!(st.initialised());
        assert!(!st.joins_pending_after_init());
        // What choose_disks does for the control plane whose VM is gone.
        st.nodes.get_mut("rc-cp").unwrap().completed_steps.clear();
        // w2 had failed its join before.
        let w2 = st.nodes.get_mut("rc-w2").unwrap();
        w2.completed_steps.retain(|s| s != "join");
        w2.failed_step = Some("join".into());
        w2.phase = NodePhase::Failed;
        let joined = st.control_plane_recreated();
        assert_eq!(joined, ["rc-w1"]);
        for w in ["rc-w1", "rc-w2"] {
            let ns = st.node(w);
            assert_eq!(ns.completed_steps, ["prepare-os", "prepare-node"], "{w}");
            assert!(ns.rejoin, "{w}");
            assert_eq!(ns.failed_step, None, "{w}");
        }
        assert_eq!(st.node("rc-w1").phase, NodePhase::Created);
        assert_eq!(st.node("rc-w2").phase, NodePhase::Failed);
        // The control plane is untouched (it is not a worker), and the
        // cluster is not initialised until init runs again: no token check.
        assert!(!st.node("rc-cp").rejoin);
        assert!(!st.initialised());
        assert!(!st.joins_pending_after_init());
        // The flag survives a save and load.
        let json = serde_json::to_string(&st).unwrap();
        let back: ClusterState = serde_json::from_str(&json).unwrap();
        assert!(back.node("rc-w1").rejoin);
        // And is not written for a node that has nothing to redo.
        assert!(
            !serde_json::to_string(&joined_cluster())
                .unwrap()
                .contains("rejoin")
        );
    }

    #[test]
    fn joins_after_init_are_pending_when_a_worker_has_not_joined() {
        let mut st = joined_cluster();
        st.nodes.get_mut("rc-w2").unwrap().completed_steps.pop();
        assert!(st.joins_pending_after_init());
        st.plan.kubernetes = false;
        assert!(!st.joins_pending_after_init());
    }

    /// A Windows worker's join is `join-windows` (then `network-windows`):
    /// done, it is not pending; a re-created control plane clears both.
    #[test]
    fn windows_workers_join_with_their_own_steps() {
        let layer = crate::spec::Layer {
            workers: Some(crate::spec::Val::new(0, crate::spec::Origin::Default)),
            windows_workers: Some(crate::spec::Val::new(1, crate::spec::Origin::Default)),
            ..crate::spec::Layer::default()
        };
        let spec = crate::spec::resolve(
            crate::spec::Val::new("mx".into(), crate::spec::Origin::Default),
            layer,
        )
        .unwrap();
        let plan = crate::plan::plan(&spec, &crate::plan::Surroundings::default()).unwrap();
        let mut st = ClusterState::new(plan);
        let steps = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        st.nodes.get_mut("mx-cp").unwrap().completed_steps = steps(&[
            "prepare-os",
            "prepare-node",
            "init-control-plane",
            "network-addon",
        ]);
        let win = st.nodes.get_mut("mx-win1").unwrap();
        win.completed_steps = steps(&["prepare-os", "prepare-windows-node"]);
        assert!(st.joins_pending_after_init());
        st.nodes.get_mut("mx-win1").unwrap().completed_steps = steps(&[
            "prepare-os",
            "prepare-windows-node",
            "join-windows",
            "network-windows",
        ]);
        assert!(!st.joins_pending_after_init());
        st.nodes.get_mut("mx-cp").unwrap().completed_steps.clear();
        assert_eq!(st.control_plane_recreated(), ["mx-win1"]);
        let ns = st.node("mx-win1");
        assert_eq!(ns.completed_steps, ["prepare-os", "prepare-windows-node"]);
        assert!(ns.rejoin);
    }

    #[test]
    fn lock_names_holder_and_is_released() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let held = ClusterLock::acquire(&dirs, "dev", "devcluster up").unwrap();
        let err = ClusterLock::acquire(&dirs, "dev", "devcluster destroy").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cluster dev is busy: pid {} is running `devcluster up`",
                std::process::id()
            )
        );
        // Other clusters are independent.
        let _other = ClusterLock::acquire(&dirs, "other", "devcluster up").unwrap();
        drop(held);
        ClusterLock::acquire(&dirs, "dev", "devcluster destroy").unwrap();
    }

    #[test]
    fn missing_and_bad_schema() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        assert!(load(&dirs, "dev").unwrap().is_none());
        assert!(list(&dirs).unwrap().is_empty());
        std::fs::create_dir_all(dirs.cluster("dev")).unwrap();
        std::fs::write(
            dirs.cluster("dev").join("state.json"),
            r#"{"schema_version": 99}"#,
        )
        .unwrap();
        assert!(matches!(
            load(&dirs, "dev"),
            Err(StateError::Schema { found: 99, .. })
        ));
        assert!(matches!(&list(&dirs).unwrap()[0], Listed::Broken { .. }));
    }
}
