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
