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

pub mod log;
pub mod ssh;
pub mod steps;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use log::{LogError, NodeLog};
pub use ssh::{Session, SshError, SshTarget, Stream, wait_for_ssh};

use crate::error::Bug;
use crate::pki::Secret;
use ssh::shell_quote;

/// How many output lines a failed step keeps for the error message.
pub const TAIL_LINES: usize = 20;
const REDACTED: &str = "<redacted>";

/// One named, idempotent provisioning step: a bash script and its
/// environment.
#[derive(Clone)]
pub struct Step {
    /// `[a-z0-9][a-z0-9-]*`: it names the script and marker files.
    pub name: String,
    /// The bash script (run with `bash -euo pipefail`).
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
}

/// A file a step uploads before its script runs.
#[derive(Clone)]
pub struct StepFile {
    /// Absolute guest path; missing directories are created.
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
        }
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
            let path_ok = file.path.starts_with('/')
                && file.path.len() > 1
                && !file.path.ends_with('/')
                && !file.path.split('/').any(|c| c == "..")
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
            | StepError::Invalid { node, .. } => node,
        }
    }

    pub fn step(&self) -> &str {
        match self {
            StepError::Failed { step, .. }
            | StepError::Ssh { step, .. }
            | StepError::Log { step, .. }
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
            _ => None,
        }
    }
}

/// The guest path of a step's script.
pub fn script_path(session: &Session, step: &str) -> String {
    format!("{}/{step}.sh", session.target().step_dir)
}

/// The guest path of a step's done marker.
pub fn marker_path(session: &Session, step: &str) -> String {
    format!("{}/{step}.done", session.target().step_dir)
}

/// Whether the guest has the done marker of step `name`.
pub async fn step_done_in_guest(session: &Session, name: &str) -> Result<bool, StepError> {
    let ssh_err = |source| StepError::Ssh {
        node: session.node().to_string(),
        step: name.to_string(),
        source,
    };
    let command = session.target().privileged(&format!(
        "test -e {}",
        shell_quote(&marker_path(session, name))
    ));
    let out = session
        .exec_collect(&command, None)
        .await
        .map_err(ssh_err)?;
    Ok(out.code == 0)
}

/// Runs one step (see the module documentation) and returns how long it
/// took. A non-zero exit is [`StepError::Failed`] with the output's tail.
pub async fn run_step(
    session: &Session,
    step: &Step,
    log: &mut NodeLog,
) -> Result<Duration, StepError> {
    let node = session.node().to_string();
    let name = step.name.as_str();
    let started = Instant::now();
    step.check().map_err(|source| StepError::Invalid {
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

    let (command, stdin) = step_command(session, step, &script);
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
    Ok(elapsed)
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
        let mut bytes = Vec::new();
        for (k, v) in &step.secret_env {
            bytes.extend_from_slice(k.as_bytes());
            bytes.push(b'=');
            bytes.extend_from_slice(v.expose().as_bytes());
            bytes.push(0);
        }
        Some(bytes)
    };
    (session.target().privileged(&words.join(" ")), stdin)
}

fn script_sha256(script: &str) -> String {
    Sha256::digest(script.as_bytes())
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
