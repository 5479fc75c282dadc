//! Provisioning: named steps run over SSH, with their output in per-node
//! logs.
//!
//! A [`Step`] is a bash script plus environment. [`run_step`] uploads the
//! script to `<step dir>/<name>.sh` in the guest (the step dir is
//! [`ssh::GUEST_STEP_DIR`], `/var/lib/devcluster/steps`), runs it as root
//! with `bash -euo pipefail`, streams its output line by line into the
//! node's log ([`NodeLog`]), and on exit code 0 leaves a marker
//! `<step dir>/<name>.done` in the guest. [`run_steps`] runs a node's steps
//! in order and skips those already done, according to the caller's state
//! *or* a marker in the guest (so a node whose state file was lost does not
//! redo its work). The runner never touches `state.json`: it reports
//! [`StepEvent`]s and the caller persists them.
//!
//! # Files
//!
//! A step may carry files ([`Step::file`]): each is uploaded to its guest
//! path with its mode (through a private temporary file and a rename, see
//! [`Session::upload`]) before the script runs, every time the script runs.
//! Their contents are [`Secret`]s (a kubeadm config holds the bootstrap
//! token, the cluster CA's key is a key): the log names each file, its mode
//! and size, never its contents. Contents are not scrubbed from the output
//! line by line (a config's `---` would be); a step whose files hold a
//! secret the tools it runs may print adds that value with [`Step::redact`].
//!
//! # Uploads
//!
//! Node software (containerd, runc, the CNI plugins, kubelet.exe, ...) is
//! tens of megabytes of binaries from the host's images cache, which
//! `--offline` must not need the internet for. A step lists them with
//! [`Step::upload`]: a host path, a node path and the sha256 the cache
//! verified. Before the files and the script, the runner asks the node for
//! the file's sha256 (`sha256sum` / `Get-FileHash`); a file already there
//! is not sent again, so a re-run costs one command per file. Otherwise it
//! reads the host file, checks it still has its sha256 (a cache entry that
//! changed is refused, never uploaded), and writes it the way files are
//! written ([`Session::upload`]). The script itself verifies what it
//! installs; the log names each upload, its size and its sha256.
//!
//! # Secrets
//!
//! A step's environment has plain values and secret values. Plain values go
//! on the command line (`sudo -n env K=V ... bash -euo pipefail FILE`) and
//! into the log. Secret values never touch a command line — sudo logs its
//! command lines to the guest's journal and `ps` shows them to every user —
//! nor the guest's disk: they are sent on the command's stdin as
//! NUL-separated `K=V` records, exported by a small `bash -c` wrapper that
//! then `exec`s the script (whose stdin is then at end of file). The log
//! shows them as `<redacted>`, and every output line is scrubbed of every
//! secret value of the step (and of [`Step::redact`] values) before it
//! reaches the log, the error's tail or tracing: `kubeadm` for example
//! prints its bootstrap token.
//!
//! # Windows nodes
//!
//! A [`Step`] is the same for both OSes; the runner picks the Windows path
//! by the session's [`SshTarget::os`]. There the script is PowerShell,
//! uploaded over SFTP ([`sftp`]) to `C:\ProgramData\devcluster\steps\
//! <name>.ps1` (a directory only Administrators and SYSTEM can read; files
//! reach other paths through it, see [`Session::upload`]) and run by
//! `provisioners/windows/run-step.ps1` with `powershell.exe -NoProfile
//! -NonInteractive -ExecutionPolicy Bypass -File` under
//! `$ErrorActionPreference = 'Stop'` ([`windows_step_command`]). Plain
//! environment values are set by the command (`$env:K = '...'`); secret
//! ones are read from stdin by the login shell as on Linux (NUL-separated
//! `K=V`) into the process environment the script inherits. The marker is
//! `<name>.done` beside the script; logs and failure reports are the same.
//!
//! **Reboots.** A Windows step that exits [`REBOOT_EXIT_CODE`] (3010,
//! Windows' ERROR_SUCCESS_REBOOT_REQUIRED, what installers return when a
//! reboot must finish their work) asks for a reboot: the runner logs it,
//! reboots the node, waits for SSH with the same pinned host key and a new
//! boot time ([`Session::reboot`]) and runs the step again; the step exits
//! 0 once nothing is left to do. At most [`MAX_REBOOTS`] per step.

pub mod deadlines;
pub mod log;
pub mod remote;
pub mod sftp;
pub mod ssh;
pub mod steps;
pub mod windows_node;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use log::{LogError, NodeLog};
pub use ssh::{Session, SshError, SshTarget, Stream, wait_for_ssh};

use crate::error::Bug;
use crate::pki::Secret;
use crate::plan::Os;
use remote::{pwsh_exec_string, pwsh_quote};
use ssh::shell_quote;

/// The exit code of a Windows step that asks for a reboot (then runs
/// again).
pub const REBOOT_EXIT_CODE: u32 = 3010;
/// Reboots one step may ask for before it counts as failed.
pub const MAX_REBOOTS: u32 = 3;
/// How long a Windows node may take to come back from a reboot.
pub const WINDOWS_REBOOT_TIMEOUT: Duration = Duration::from_secs(1200);
/// `provisioners/windows/run-step.ps1`: runs a Windows step's script.
pub const WINDOWS_RUNNER_SCRIPT: &str = include_str!("../../provisioners/windows/run-step.ps1");
const WINDOWS_RUNNER: &str = "run-step";

/// How many output lines a failed step keeps for the error message.
pub const TAIL_LINES: usize = 20;
const REDACTED: &str = "<redacted>";

/// One named, idempotent provisioning step: a script and its environment,
/// for a Linux or a Windows node alike (see the module documentation).
#[derive(Clone)]
pub struct Step {
    /// `[a-z0-9][a-z0-9-]*`: it names the script and marker files.
    pub name: String,
    /// The script: bash on Linux nodes (run with `bash -euo pipefail`),
    /// PowerShell on Windows nodes (run by `run-step.ps1`).
    pub script: String,
    /// Plain environment: on the command line and in the log.
    pub env: Vec<(String, String)>,
    /// Secret environment: on stdin only, `<redacted>` in the log.
    pub secret_env: Vec<(String, Secret)>,
    /// More values to scrub from the output (the step's secret env values
    /// are scrubbed anyway).
    pub redact: Vec<Secret>,
    /// Files uploaded, in order, before the script runs.
    pub files: Vec<StepFile>,
    /// Host files (node software) copied to the node before the files,
    /// unless the node has them already (see the module documentation).
    pub uploads: Vec<Upload>,
}

/// A host file a step copies to the node: node software from the host's
/// cache, identified by its sha256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upload {
    pub host_path: std::path::PathBuf,
    /// Absolute node path, the node OS's kind.
    pub node_path: String,
    /// Lowercase hex.
    pub sha256: String,
}

/// A file a step uploads before its script runs.
#[derive(Clone)]
pub struct StepFile {
    /// Absolute guest path (`/etc/x` on Linux, `C:\k\x` on Windows);
    /// missing directories are created.
    pub path: String,
    pub content: Secret,
    /// Unix mode, e.g. `0o600`.
    pub mode: u32,
}

impl fmt::Debug for StepFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("bytes", &self.content.expose().len())
            .finish()
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("script_sha256", &script_sha256(&self.script))
            .field("env", &self.env)
            .field(
                "secret_env",
                &self.secret_env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("files", &self.files)
            .field("uploads", &self.uploads)
            .finish_non_exhaustive()
    }
}

impl Step {
    pub fn new(name: impl Into<String>, script: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            script: script.into(),
            env: Vec::new(),
            secret_env: Vec::new(),
            redact: Vec::new(),
            files: Vec::new(),
            uploads: Vec::new(),
        }
    }

    /// Adds a host file to copy to the node (see [`Upload`]).
    pub fn upload(mut self, upload: Upload) -> Self {
        self.uploads.push(upload);
        self
    }

    /// Adds a file to upload before the script runs.
    pub fn file(mut self, path: impl Into<String>, content: Secret, mode: u32) -> Self {
        self.files.push(StepFile {
            path: path.into(),
            content,
            mode,
        });
        self
    }

    /// Adds a plain environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds a secret environment variable.
    pub fn secret_env(mut self, key: impl Into<String>, value: Secret) -> Self {
        self.secret_env.push((key.into(), value));
        self
    }

    /// Scrubs `value` from the step's output too.
    pub fn redact(mut self, value: Secret) -> Self {
        self.redact.push(value);
        self
    }

    /// Passes the test-only failure hook through from the host:
    /// when `DEVCLUSTER_TEST_FAIL_STEP` is set in devcluster's own
    /// environment, the step gets it too, and a step script whose name it
    /// equals exits 3 before changing anything (see
    /// [`steps::TEST_FAIL_STEP_ENV`]). For tests of failure handling only.
    pub fn with_test_hook_from_env(self) -> Self {
        match std::env::var(steps::TEST_FAIL_STEP_ENV) {
            Ok(v) if !v.is_empty() => self.env(steps::TEST_FAIL_STEP_ENV, v),
            _ => self,
        }
    }

    fn check(&self) -> Result<(), Bug> {
        let name_ok = self
            .name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(Bug(format!("step name {:?} is not [a-z0-9-]+", self.name)));
        }
        let keys = self
            .env
            .iter()
            .map(|(k, _)| k)
            .chain(self.secret_env.iter().map(|(k, _)| k));
        for key in keys {
            let ok = key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(Bug(format!(
                    "step {}: {key:?} is not an environment variable name",
                    self.name
                )));
            }
        }
        if self
            .secret_env
            .iter()
            .any(|(_, v)| v.expose().contains('\0'))
        {
            return Err(Bug(format!(
                "step {}: a secret value contains a NUL byte",
                self.name
            )));
        }
        for file in &self.files {
            let path_ok = (is_posix_path(&file.path) || is_windows_path(&file.path))
                && !file.path.chars().any(|c| c.is_control());
            if !path_ok {
                return Err(Bug(format!(
                    "step {}: {:?} is not an absolute file path",
                    self.name, file.path
                )));
            }
            if file.mode > 0o7777 {
                return Err(Bug(format!(
                    "step {}: {:o} is not a file mode ({})",
                    self.name, file.mode, file.path
                )));
            }
        }
        Ok(())
    }

    /// What to scrub from output lines. Output is redacted line by line,
    /// so a multi-line secret (a PEM key) is scrubbed line by line too;
    /// longest first, so that no secret leaves a tail of a longer one.
    fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self
            .secret_env
            .iter()
            .map(|(_, v)| v)
            .chain(&self.redact)
            .flat_map(|s| s.expose().lines())
            .map(|l| l.trim_end_matches('\r'))
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        secrets
    }
}

fn is_posix_path(p: &str) -> bool {
    p.starts_with('/') && p.len() > 1 && !p.ends_with('/') && !p.split('/').any(|c| c == "..")
}

/// `X:\dir\file` (or with `/`): a drive letter, no `..`, not a directory.
fn is_windows_path(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() > 3
        && b[0].is_ascii_alphabetic()
        && b[1] == b':'
        && (b[2] == b'\\' || b[2] == b'/')
        && !p.ends_with(['\\', '/'])
        && !p.split(['\\', '/']).any(|c| c == ".." || c.is_empty())
        && !p[2..].contains([':', '*', '?', '"', '<', '>', '|'])
}

/// What happened to a step, for progress display and for the caller to
/// persist (after every event, so a killed `up` resumes where it stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEvent {
    Started(String),
    /// Done before: in the caller's list, or a marker in the guest says so.
    /// Record it as completed.
    Skipped(String),
    Finished(String, Duration),
    Failed(String, Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("node {node}: step {step} failed (exit {code})")]
    Failed {
        node: String,
        step: String,
        code: u32,
        /// The step's last output lines (at most [`TAIL_LINES`]), redacted.
        tail: Vec<String>,
    },
    #[error("node {node}: step {step} did not complete")]
    Ssh {
        node: String,
        step: String,
        #[source]
        source: SshError,
    },
    #[error("node {node}: cannot log step {step}")]
    Log {
        node: String,
        step: String,
        #[source]
        source: LogError,
    },
    #[error("node {node}: step {step}: cannot upload {path} from the host")]
    HostFile {
        node: String,
        step: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "node {node}: step {step}: {path} in the host's cache has sha256 {actual}, not the {expected} it was verified with"
    )]
    HostFileChanged {
        node: String,
        step: String,
        path: std::path::PathBuf,
        expected: String,
        actual: String,
    },
    #[error("node {node}: step {step} cannot run")]
    Invalid {
        node: String,
        step: String,
        #[source]
        source: Bug,
    },
}

impl StepError {
    pub fn node(&self) -> &str {
        match self {
            StepError::Failed { node, .. }
            | StepError::Ssh { node, .. }
            | StepError::Log { node, .. }
            | StepError::HostFile { node, .. }
            | StepError::HostFileChanged { node, .. }
            | StepError::Invalid { node, .. } => node,
        }
    }

    pub fn step(&self) -> &str {
        match self {
            StepError::Failed { step, .. }
            | StepError::Ssh { step, .. }
            | StepError::Log { step, .. }
            | StepError::HostFile { step, .. }
            | StepError::HostFileChanged { step, .. }
            | StepError::Invalid { step, .. } => step,
        }
    }

    /// The failed step's last output lines (empty for other errors), for
    /// the command layer to print under the error.
    pub fn tail(&self) -> &[String] {
        match self {
            StepError::Failed { tail, .. } => tail,
            _ => &[],
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            StepError::Failed { node, .. } => {
                Some(format!("see the whole log with `devcluster logs {node}`"))
            }
            // A connection problem's own hint says more than the log.
            StepError::Ssh { node, source, .. } => source
                .hint()
                .or_else(|| Some(format!("see the whole log with `devcluster logs {node}`"))),
            StepError::HostFileChanged { path, .. } => Some(format!(
                "delete {} and run the command again: devcluster downloads and verifies it again",
                path.display()
            )),
            _ => None,
        }
    }
}

/// The guest path of a step's script.
pub fn script_path(session: &Session, step: &str) -> String {
    let t = session.target();
    match t.os {
        Os::Linux => format!("{}/{step}.sh", t.step_dir),
        Os::Windows => format!("{}\\{step}.ps1", t.step_dir),
    }
}

/// The guest path of a step's done marker.
pub fn marker_path(session: &Session, step: &str) -> String {
    let t = session.target();
    match t.os {
        Os::Linux => format!("{}/{step}.done", t.step_dir),
        Os::Windows => format!("{}\\{step}.done", t.step_dir),
    }
}

/// Whether the guest has the done marker of step `name`.
pub async fn step_done_in_guest(session: &Session, name: &str) -> Result<bool, StepError> {
    let ssh_err = |source| StepError::Ssh {
        node: session.node().to_string(),
        step: name.to_string(),
        source,
    };
    let marker = marker_path(session, name);
    let command = match session.target().os {
        Os::Linux => session
            .target()
            .privileged(&format!("test -e {}", shell_quote(&marker))),
        Os::Windows => pwsh_exec_string(&format!(
            "if (Test-Path -LiteralPath {}) {{ exit 0 }} else {{ exit 1 }}",
            pwsh_quote(&marker)
        )),
    };
    let out = session
        .exec_collect(&command, None)
        .await
        .map_err(ssh_err)?;
    Ok(out.code == 0)
}

/// Removes the done marker of step `name` from the guest, so that
/// [`run_steps`] runs it again (a worker rejoining a re-created control
/// plane).
pub async fn forget_step(session: &Session, name: &str) -> Result<(), StepError> {
    let command = session.target().privileged(&format!(
        "rm -f {}",
        shell_quote(&marker_path(session, name))
    ));
    let out = session
        .exec_collect(&command, None)
        .await
        .map_err(|source| StepError::Ssh {
            node: session.node().to_string(),
            step: name.to_string(),
            source,
        })?;
    if out.code != 0 {
        return Err(StepError::Invalid {
            node: session.node().to_string(),
            step: name.to_string(),
            source: Bug(format!(
                "cannot remove {} (exit {})",
                marker_path(session, name),
                out.code
            )),
        });
    }
    Ok(())
}

/// Runs one step (see the module documentation) and returns how long it
/// took. A non-zero exit is [`StepError::Failed`] with the output's tail.
/// On a Windows node, a step that asks for a reboot is run again after it.
pub async fn run_step(
    session: &Session,
    step: &Step,
    log: &mut NodeLog,
) -> Result<Duration, StepError> {
    let started = Instant::now();
    let mut reboots = 0;
    loop {
        match run_step_once(session, step, log, reboots < MAX_REBOOTS).await? {
            Ran::Done => return Ok(started.elapsed()),
            Ran::Reboot => {
                reboots += 1;
                let name = step.name.as_str();
                let log_err = |source| StepError::Log {
                    node: session.node().to_string(),
                    step: name.to_string(),
                    source,
                };
                log.line(
                    name,
                    &format!("asked for a reboot (exit {REBOOT_EXIT_CODE}): rebooting ({reboots} of at most {MAX_REBOOTS})"),
                )
                .map_err(log_err)?;
                session
                    .reboot(WINDOWS_REBOOT_TIMEOUT)
                    .await
                    .map_err(|source| StepError::Ssh {
                        node: session.node().to_string(),
                        step: name.to_string(),
                        source,
                    })?;
                log.line(name, "back after the reboot: running the step again")
                    .map_err(log_err)?;
            }
        }
    }
}

/// How one run of a step ended when it did not fail.
enum Ran {
    Done,
    Reboot,
}

async fn run_step_once(
    session: &Session,
    step: &Step,
    log: &mut NodeLog,
    may_reboot: bool,
) -> Result<Ran, StepError> {
    let node = session.node().to_string();
    let name = step.name.as_str();
    let started = Instant::now();
    let os = session.target().os;
    step.check()
        .and_then(|()| check_paths_for(step, os))
        .map_err(|source| StepError::Invalid {
            node: node.clone(),
            step: name.to_string(),
            source,
        })?;
    let log_err = |source| StepError::Log {
        node: node.clone(),
        step: name.to_string(),
        source,
    };
    let ssh_err = |source| StepError::Ssh {
        node: node.clone(),
        step: name.to_string(),
        source,
    };

    log.line(name, "started").map_err(log_err)?;
    if !step.env.is_empty() || !step.secret_env.is_empty() {
        let shown: Vec<String> = step
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .chain(
                step.secret_env
                    .iter()
                    .map(|(k, _)| format!("{k}={REDACTED}")),
            )
            .collect();
        log.line(name, &format!("env: {}", shown.join(" ")))
            .map_err(log_err)?;
    }
    tracing::debug!(node = %node, step = name, "step started");

    for u in &step.uploads {
        upload_host_file(session, step, u, log).await?;
    }
    for file in &step.files {
        session
            .upload(&file.path, file.content.expose().as_bytes(), file.mode)
            .await
            .map_err(ssh_err)?;
        log.line(
            name,
            &format!(
                "file: {} ({:04o}, {} bytes)",
                file.path,
                file.mode,
                file.content.expose().len()
            ),
        )
        .map_err(log_err)?;
    }

    let script = script_path(session, name);
    session
        .upload(&script, step.script.as_bytes(), 0o700)
        .await
        .map_err(ssh_err)?;
    let (command, stdin) = match os {
        Os::Linux => step_command(session, step, &script),
        Os::Windows => {
            let runner = script_path(session, WINDOWS_RUNNER);
            session
                .upload(&runner, WINDOWS_RUNNER_SCRIPT.as_bytes(), 0o700)
                .await
                .map_err(ssh_err)?;
            windows_step_command(step, &runner, &script)
        }
    };
    let secrets = step.secrets();
    let mut out = StepOutput {
        log,
        step: name,
        node: &node,
        secrets: &secrets,
        splitters: Default::default(),
        tail: VecDeque::with_capacity(TAIL_LINES),
        error: None,
    };
    let result = session
        .exec(&command, stdin.as_deref(), |stream, data| {
            out.chunk(stream, data)
        })
        .await;
    out.finish();
    let StepOutput { error, tail, .. } = out;
    if let Some(e) = error {
        return Err(log_err(e));
    }
    let elapsed = started.elapsed();
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            log.line(
                name,
                &format!("did not complete after {:.1}s: {e}", elapsed.as_secs_f32()),
            )
            .map_err(log_err)?;
            return Err(ssh_err(e));
        }
    };
    if os == Os::Windows && code == REBOOT_EXIT_CODE && may_reboot {
        return Ok(Ran::Reboot);
    }
    if code != 0 {
        log.line(
            name,
            &format!("failed (exit {code}) after {:.1}s", elapsed.as_secs_f32()),
        )
        .map_err(log_err)?;
        tracing::debug!(node = %node, step = name, code, "step failed");
        return Err(StepError::Failed {
            node,
            step: name.to_string(),
            code,
            tail: tail.into(),
        });
    }
    let marker = format!(
        "sha256:{}\n{}\n",
        script_sha256(&step.script),
        log::timestamp()
    );
    session
        .upload(&marker_path(session, name), marker.as_bytes(), 0o644)
        .await
        .map_err(ssh_err)?;
    let elapsed = started.elapsed();
    log.line(name, &format!("finished in {:.1}s", elapsed.as_secs_f32()))
        .map_err(log_err)?;
    tracing::debug!(node = %node, step = name, elapsed_ms = elapsed.as_millis() as u64, "step finished");
    Ok(Ran::Done)
}

/// Copies one [`Upload`] to the node unless it has that file already.
async fn upload_host_file(
    session: &Session,
    step: &Step,
    u: &Upload,
    log: &mut NodeLog,
) -> Result<(), StepError> {
    let node = session.node().to_string();
    let name = step.name.as_str();
    let ssh_err = |source| StepError::Ssh {
        node: node.clone(),
        step: name.to_string(),
        source,
    };
    let log_err = |source| StepError::Log {
        node: node.clone(),
        step: name.to_string(),
        source,
    };
    let command = node_sha256_command(session.target(), &u.node_path);
    let out = session
        .exec_collect(&command, None)
        .await
        .map_err(ssh_err)?;
    let there = String::from_utf8_lossy(&out.stdout);
    if out.code == 0 && there.trim().eq_ignore_ascii_case(&u.sha256) {
        return log
            .line(
                name,
                &format!(
                    "upload: {} already there (sha256 {})",
                    u.node_path, u.sha256
                ),
            )
            .map_err(log_err);
    }
    let bytes = tokio::fs::read(&u.host_path)
        .await
        .map_err(|source| StepError::HostFile {
            node: node.clone(),
            step: name.to_string(),
            path: u.host_path.clone(),
            source,
        })?;
    let actual = bytes_sha256(&bytes);
    if !actual.eq_ignore_ascii_case(&u.sha256) {
        return Err(StepError::HostFileChanged {
            node: node.clone(),
            step: name.to_string(),
            path: u.host_path.clone(),
            expected: u.sha256.clone(),
            actual,
        });
    }
    session
        .upload(&u.node_path, &bytes, 0o644)
        .await
        .map_err(ssh_err)?;
    log.line(
        name,
        &format!(
            "upload: {} ({} bytes, sha256 {})",
            u.node_path,
            bytes.len(),
            u.sha256
        ),
    )
    .map_err(log_err)
}

/// Prints the sha256 (hex) of the node file `path`, or nothing when there
/// is none; run by [`upload_host_file`].
pub fn node_sha256_command(target: &SshTarget, path: &str) -> String {
    match target.os {
        Os::Linux => target.privileged(&format!(
            "sh -c {}",
            shell_quote(&format!(
                "if [ -f {p} ]; then sha256sum -- {p} | cut -d' ' -f1; fi",
                p = shell_quote(path)
            ))
        )),
        Os::Windows => pwsh_exec_string(&format!(
            "$p = {}; if (Test-Path -LiteralPath $p -PathType Leaf) {{ (Get-FileHash -Algorithm SHA256 -LiteralPath $p).Hash }}",
            pwsh_quote(path)
        )),
    }
}

/// A step's file paths must be the node OS's kind of absolute path.
fn check_paths_for(step: &Step, os: Os) -> Result<(), Bug> {
    let paths = step
        .files
        .iter()
        .map(|f| f.path.as_str())
        .chain(step.uploads.iter().map(|u| u.node_path.as_str()));
    for path in paths {
        let ok = match os {
            Os::Linux => is_posix_path(path),
            Os::Windows => is_windows_path(path),
        };
        if !ok {
            return Err(Bug(format!(
                "step {}: {:?} is not a {} path",
                step.name,
                path,
                os.as_str()
            )));
        }
    }
    for u in &step.uploads {
        if u.sha256.len() != 64 || !u.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Bug(format!(
                "step {}: upload {:?} has no sha256",
                step.name, u.node_path
            )));
        }
    }
    Ok(())
}

/// The exec string and stdin that run a Windows step's uploaded `script`
/// through the uploaded `runner` (see the module documentation).
pub fn windows_step_command(step: &Step, runner: &str, script: &str) -> (String, Option<Vec<u8>>) {
    let mut lines: Vec<String> = step
        .env
        .iter()
        .map(|(k, v)| format!("$env:{k} = {}", pwsh_quote(v)))
        .collect();
    let stdin = if step.secret_env.is_empty() {
        None
    } else {
        // Raw bytes (the console's encoding is not UTF-8, and setting it
        // fails without a console): NUL-separated K=V, UTF-8.
        lines.push(
            "$stdin = [Console]::OpenStandardInput(); $buf = New-Object System.IO.MemoryStream; $stdin.CopyTo($buf)".into(),
        );
        lines.push(
            "foreach ($kv in [System.Text.Encoding]::UTF8.GetString($buf.ToArray()).Split([char]0)) { if ($kv) { $i = $kv.IndexOf('='); [Environment]::SetEnvironmentVariable($kv.Substring(0, $i), $kv.Substring($i + 1), 'Process') } }".into(),
        );
        Some(secret_records(step))
    };
    lines.push(format!(
        "& powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File {} {}",
        pwsh_quote(runner),
        pwsh_quote(script)
    ));
    (pwsh_exec_string(&lines.join("\n")), stdin)
}

/// The secret environment as NUL-separated `K=V` records.
fn secret_records(step: &Step) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (k, v) in &step.secret_env {
        bytes.extend_from_slice(k.as_bytes());
        bytes.push(b'=');
        bytes.extend_from_slice(v.expose().as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Runs `steps` in order, skipping those in `done` and those whose marker
/// is in the guest, and reports every step's fate to `on_event`. Stops at
/// the first failure.
pub async fn run_steps(
    session: &Session,
    steps: &[Step],
    done: &[String],
    log: &mut NodeLog,
    mut on_event: impl FnMut(StepEvent),
) -> Result<(), StepError> {
    for step in steps {
        let name = step.name.as_str();
        let log_err = |source| StepError::Log {
            node: session.node().to_string(),
            step: name.to_string(),
            source,
        };
        if done.iter().any(|d| d == name) {
            log.line(name, "skipped: already done").map_err(log_err)?;
            on_event(StepEvent::Skipped(name.to_string()));
            continue;
        }
        if step_done_in_guest(session, name).await? {
            log.line(name, "skipped: already done (marker in the guest)")
                .map_err(log_err)?;
            on_event(StepEvent::Skipped(name.to_string()));
            continue;
        }
        on_event(StepEvent::Started(name.to_string()));
        let started = Instant::now();
        match run_step(session, step, log).await {
            Ok(elapsed) => on_event(StepEvent::Finished(name.to_string(), elapsed)),
            Err(e) => {
                on_event(StepEvent::Failed(name.to_string(), started.elapsed()));
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The command line and stdin that run a step's uploaded script.
fn step_command(session: &Session, step: &Step, script: &str) -> (String, Option<Vec<u8>>) {
    let mut words: Vec<String> = Vec::new();
    if !step.env.is_empty() {
        words.push("env".into());
        for (k, v) in &step.env {
            words.push(format!("{k}={}", shell_quote(v)));
        }
    }
    let stdin = if step.secret_env.is_empty() {
        words.push(format!("bash -euo pipefail {}", shell_quote(script)));
        None
    } else {
        // Export NUL-separated K=V records from stdin, then become the
        // script (with stdin at end of file).
        let wrapper =
            r#"while IFS= read -r -d "" kv; do export "$kv"; done; exec bash -euo pipefail "$0""#;
        words.push(format!(
            "bash -c {} {}",
            shell_quote(wrapper),
            shell_quote(script)
        ));
        Some(secret_records(step))
    };
    (session.target().privileged(&words.join(" ")), stdin)
}

pub(crate) fn script_sha256(script: &str) -> String {
    bytes_sha256(script.as_bytes())
}

fn bytes_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Scrubs every secret from a line of output.
fn redact(line: String, secrets: &[&str]) -> String {
    let mut line = line;
    for s in secrets {
        if line.contains(s) {
            line = line.replace(s, REDACTED);
        }
    }
    line
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Where a running step's output goes: the log, the tail, tracing.
struct StepOutput<'a> {
    log: &'a mut NodeLog,
    step: &'a str,
    node: &'a str,
    secrets: &'a [&'a str],
    splitters: [log::LineSplitter; 2],
    tail: VecDeque<String>,
    /// The first log write error; later output is dropped.
    error: Option<LogError>,
}

impl StepOutput<'_> {
    fn chunk(&mut self, stream: Stream, data: &[u8]) {
        let mut lines = Vec::new();
        self.splitters[stream_index(stream)].push(data, |l| lines.push(l));
        for line in lines {
            self.line(stream, line);
        }
    }

    fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(line) = self.splitters[stream_index(stream)].finish() {
                self.line(stream, line);
            }
        }
    }

    fn line(&mut self, stream: Stream, line: String) {
        let line = redact(line, self.secrets);
        tracing::trace!(
            node = self.node,
            step = self.step,
            stream = stream.as_str(),
            "{line}"
        );
        if self.error.is_none()
            && let Err(e) = self
                .log
                .line(self.step, &format!("{}: {line}", stream.as_str()))
        {
            self.error = Some(e);
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_message_is_exact() {
        let e = StepError::Failed {
            node: "dev-w1".into(),
            step: "prepare-os".into(),
            code: 1,
            tail: vec!["boom".into()],
        };
        assert_eq!(
            e.to_string(),
            "node dev-w1: step prepare-os failed (exit 1)"
        );
        assert_eq!(
            e.hint().as_deref(),
            Some("see the whole log with `devcluster logs dev-w1`")
        );
        assert_eq!(e.tail(), ["boom".to_string()]);
        let r = crate::hints::report(&anyhow::Error::new(e));
        assert_eq!(
            r.hint.as_deref(),
            Some("see the whole log with `devcluster logs dev-w1`")
        );
    }

    #[test]
    fn names_and_keys_are_checked() {
        assert!(Step::new("prepare-os", "").env("A_1", "x").check().is_ok());
        assert!(Step::new("Prepare", "").check().is_err());
        assert!(Step::new("a/b", "").check().is_err());
        assert!(Step::new("-x", "").check().is_err());
        assert!(Step::new("", "").check().is_err());
        assert!(Step::new("a", "").env("1A", "x").check().is_err());
        assert!(Step::new("a", "").env("A B", "x").check().is_err());
        assert!(
            Step::new("a", "")
                .secret_env("A=", Secret::new("x"))
                .check()
                .is_err()
        );
    }

    #[test]
    fn redaction_scrubs_all_occurrences() {
        let line = "join --token abc.def and again abc.def".to_string();
        assert_eq!(
            redact(line, &["abc.def"]),
            "join --token <redacted> and again <redacted>"
        );
    }

    #[test]
    fn multi_line_and_overlapping_secrets_are_scrubbed() {
        let step = Step::new("a", "")
            .secret_env("SHORT", Secret::new("abc"))
            .redact(Secret::new("xabcdefx\r\nsecond line\n"));
        let secrets = step.secrets();
        assert_eq!(secrets, ["second line", "xabcdefx", "abc"]);
        assert_eq!(
            redact("k xabcdefx abc".into(), &secrets),
            "k <redacted> <redacted>"
        );
        assert_eq!(redact("second line".into(), &secrets), "<redacted>");
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = Step::new("a", "echo")
            .secret_env("TOKEN", Secret::new("s3cr3t"))
            .file("/etc/x.yaml", Secret::new("token: f1l3s3cr3t"), 0o600);
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains(r#"path: "/etc/x.yaml", mode: 0600, bytes: 17"#),
            "{debug}"
        );
    }

    /// Every exec string of the Windows path: PowerShell that parses, and
    /// that Win32-OpenSSH hands to powershell.exe unchanged.
    fn assert_windows_exec_string(name: &str, line: &str) {
        crate::test_support::assert_pwsh_parses(name, line);
        assert_eq!(
            remote::win32_openssh::script_seen(line).as_deref(),
            Some(line),
            "{name}"
        );
    }

    #[test]
    fn windows_step_command_runs_the_runner_with_env_and_secrets_on_stdin() {
        let step = Step::new("prepare-os", "Write-Output hi")
            .env("NODE_NAME", "dev-win1")
            .env("ODD", "it's $HOME `n \"q\" *")
            .secret_env("TOKEN", Secret::new("abcdef.0123456789abcdef"));
        let runner = r"C:\ProgramData\devcluster\steps\run-step.ps1";
        let script = r"C:\ProgramData\devcluster\steps\prepare-os.ps1";
        let (line, stdin) = windows_step_command(&step, runner, script);
        assert_windows_exec_string("step command", &line);
        assert!(!line.contains("abcdef.0123456789abcdef"), "{line}");
        assert_eq!(
            stdin.as_deref(),
            Some(&b"TOKEN=abcdef.0123456789abcdef\0"[..])
        );
        assert!(line.contains("$env:NODE_NAME = 'dev-win1'\n"), "{line}");
        assert!(
            line.contains(r#"$env:ODD = 'it''s $HOME `n "q" *'"#),
            "{line}"
        );
        assert!(line.contains(
            r"& powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File 'C:\ProgramData\devcluster\steps\run-step.ps1' 'C:\ProgramData\devcluster\steps\prepare-os.ps1'"
        ), "{line}");
        insta::assert_snapshot!("windows_step_command", line);
        // Without secrets nothing reads stdin.
        let (line, stdin) = windows_step_command(&Step::new("a", ""), runner, script);
        assert!(stdin.is_none() && !line.contains("OpenStandardInput"));
        assert_windows_exec_string("plain step command", &line);
    }

    #[test]
    fn the_windows_runner_parses_and_keeps_the_handshake() {
        crate::test_support::assert_pwsh_parses("run-step.ps1", WINDOWS_RUNNER_SCRIPT);
        assert!(WINDOWS_RUNNER_SCRIPT.contains("$ErrorActionPreference = 'Stop'"));
        assert!(WINDOWS_RUNNER_SCRIPT.contains(&REBOOT_EXIT_CODE.to_string()));
        assert!(WINDOWS_RUNNER_SCRIPT.contains("DEVCLUSTER_TEST_FAIL_STEP"));
    }

    fn windows_target() -> SshTarget {
        use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
        let pair = Ed25519Keypair::from_seed(&[9; 32]);
        let key = russh::keys::PrivateKey::new(KeypairData::from(pair), "t").unwrap();
        SshTarget {
            node: "dev-win1".into(),
            host: "192.0.2.31".into(),
            port: 22,
            user: ssh::WINDOWS_USER.into(),
            host_key: key.public_key().clone(),
            client_key: key,
            sudo: false,
            step_dir: ssh::WINDOWS_STEP_DIR.into(),
            os: Os::Windows,
        }
    }

    #[test]
    fn windows_helper_commands_parse() {
        use ssh::*;
        assert_windows_exec_string("private dirs", &windows_private_dirs_command());
        assert_windows_exec_string(
            "move secret",
            &windows_move_command(
                r"C:\ProgramData\devcluster\upload\x.part",
                r"C:\k\join.yaml",
                0o600,
            ),
        );
        let public = windows_move_command(
            r"C:\ProgramData\devcluster\upload\x.part",
            r"C:\k\ca.crt",
            0o644,
        );
        assert_windows_exec_string("move public", &public);
        assert!(public.contains("/reset"));
        assert!(!windows_move_command("a", r"C:\k\x", 0o600).contains("/reset"));
        assert_windows_exec_string("boot id", &boot_id_command(Os::Windows));
        assert_eq!(
            reboot_command(&windows_target()),
            remote::pwsh_exec_string("Restart-Computer -Force")
        );
        assert_windows_exec_string("reboot", &reboot_command(&windows_target()));
    }

    #[test]
    fn windows_file_paths() {
        let with = |path: &str| Step::new("a", "").file(path, Secret::new("x"), 0o600);
        for good in [r"C:\k\kubeadm-join.yaml", "C:/etc/x", r"D:\a b\c.txt"] {
            assert!(with(good).check().is_ok(), "{good}");
            assert!(check_paths_for(&with(good), Os::Windows).is_ok(), "{good}");
            assert!(check_paths_for(&with(good), Os::Linux).is_err(), "{good}");
        }
        for bad in [
            r"C:\",
            r"C:\k\",
            r"C:\..\x",
            r"C:\a\\b",
            r"C:\a:b",
            "C:x",
            r"\\srv\share\x",
        ] {
            assert!(with(bad).check().is_err(), "{bad}");
        }
        assert!(check_paths_for(&with("/etc/x"), Os::Windows).is_err());
    }

    #[test]
    fn file_paths_and_modes_are_checked() {
        let with = |path: &str, mode| {
            Step::new("a", "")
                .file(path, Secret::new("x"), mode)
                .check()
        };
        assert!(with("/etc/devcluster/kubeadm-init.yaml", 0o600).is_ok());
        assert!(with("/etc/kubernetes/pki/etcd/ca.key", 0o600).is_ok());
        for bad in ["etc/x", "/", "/etc/", "/etc/../x", "/etc/x\n", ""] {
            assert!(with(bad, 0o600).is_err(), "{bad:?}");
        }
        assert!(with("/etc/x", 0o10000).is_err());
    }
}
