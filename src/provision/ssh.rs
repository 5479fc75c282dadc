//! An SSH client for provisioning, on russh.
//!
//! - **Pinned host keys, no trust on first use.** devcluster generates every
//!   guest's ed25519 host key itself ([`crate::pki`]) and injects it through
//!   the seed, so the key a guest must present is known before it boots.
//!   [`Session::connect`] accepts exactly that key and nothing else;
//!   anything else is [`SshError::HostKeyMismatch`].
//! - **Waiting for boot.** A guest that is still booting refuses the
//!   connection, is not routable yet, times out, resets the connection or
//!   drops it during key exchange. All of that is retried with backoff until
//!   the overall timeout. A host key mismatch and a rejected client key are
//!   answers, not boot noise: they fail at once.
//! - **Commands.** [`Session::exec`] runs one command on a new channel,
//!   feeds it optional stdin, streams stdout and stderr to a callback as the
//!   data arrives and returns the exit code. It keeps reading after the
//!   exit status until the channel closes: output still in flight when the
//!   process exits arrives after the status.
//! - **Uploads** to Linux nodes are `cat > file` with the bytes on stdin
//!   (no SFTP server needed; minimal Linux images may have none). Windows
//!   nodes get files over SFTP ([`super::sftp`]) into devcluster's private
//!   directory, then moved into place by PowerShell ([`Session::upload`]).
//! - **Reboots** ([`Session::reboot`]): the node restarts, and the session
//!   reconnects (same pinned host key) once the node reports a new boot
//!   time, so a step can ask for a reboot and go on.
//!
//! Nothing here logs command output or key material: commands are traced at
//! debug level (callers never put secrets on a command line, see
//! [`crate::provision`]), output only reaches the caller's callback.

use std::fmt;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Sig};

use crate::pki::{ClusterSecrets, Secret};
use crate::plan::{NodePlan, Os};
use crate::seed::cloud_init::USER;

pub use super::remote::posix_quote as shell_quote;

/// Where step scripts and their done markers live in a guest.
pub const GUEST_STEP_DIR: &str = "/var/lib/devcluster/steps";
/// devcluster's directory on a Windows node: Administrators and SYSTEM
/// only (set by [`Session::upload`] before the first file).
pub const WINDOWS_DIR: &str = r"C:\ProgramData\devcluster";
/// Where step scripts and their done markers live on a Windows node.
pub const WINDOWS_STEP_DIR: &str = r"C:\ProgramData\devcluster\steps";
/// Where uploads to a Windows node are written before they are moved.
pub const WINDOWS_UPLOAD_DIR: &str = r"C:\ProgramData\devcluster\upload";
/// The user devcluster logs in as on Windows nodes (its key is in
/// `administrators_authorized_keys`).
pub const WINDOWS_USER: &str = "Administrator";

/// Longest single connection attempt (TCP connect, key exchange and
/// authentication); the overall timeout bounds the sum.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// First pause between attempts; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("the {what} is not a valid OpenSSH key")]
    InvalidKey {
        what: &'static str,
        #[source]
        source: russh::keys::ssh_key::Error,
    },
    #[error("devcluster has no SSH host key for node {0}")]
    NoHostKey(String),
    #[error("host key of {node} ({host}) does not match the one devcluster generated for it")]
    HostKeyMismatch {
        node: String,
        host: String,
        /// SHA256 fingerprint of the key the server presented.
        presented: String,
        /// SHA256 fingerprint of the pinned key.
        expected: String,
    },
    #[error("{node} ({host}) rejected devcluster's SSH key for user {user}")]
    AuthRejected {
        node: String,
        host: String,
        user: String,
    },
    #[error("{node} ({addr}) did not answer SSH within {}s ({attempts} attempts)", waited.as_secs())]
    Unreachable {
        node: String,
        addr: String,
        waited: Duration,
        attempts: u32,
        #[source]
        source: ConnectError,
    },
    #[error("cannot set up an SSH connection to {node} ({addr})")]
    Handshake {
        node: String,
        addr: String,
        #[source]
        source: Box<russh::Error>,
    },
    #[error("the SSH connection to {node} failed")]
    Channel {
        node: String,
        #[source]
        source: Box<russh::Error>,
    },
    #[error("a command on {node} was killed by signal {signal}{}", if *core_dumped { " (core dumped)" } else { "" })]
    Signal {
        node: String,
        signal: String,
        core_dumped: bool,
    },
    #[error("the SSH connection to {node} closed before the command reported its exit status")]
    NoExitStatus { node: String },
    #[error("cannot write {path} on {node} over SFTP")]
    Sftp {
        node: String,
        path: String,
        #[source]
        source: super::sftp::SftpError,
    },
    #[error("{node} did not come back from its reboot within {}s", waited.as_secs())]
    Reboot { node: String, waited: Duration },
    #[error("cannot write {path} on {node} (exit {code}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Upload {
        node: String,
        path: String,
        code: u32,
        stderr: String,
    },
}

impl SshError {
    pub fn hint(&self) -> Option<String> {
        match self {
            SshError::HostKeyMismatch {
                node,
                host,
                presented,
                expected,
            } => Some(format!(
                "the machine at {host} is not the VM devcluster created for {node} \
                 (it presented {presented}, expected {expected}); check that no other VM \
                 uses {host}, or re-create the cluster with `devcluster destroy` and `devcluster up`"
            )),
            SshError::AuthRejected { node, .. } => Some(format!(
                "the VM of {node} did not accept the cluster's SSH key (was it set up by \
                 devcluster's seed?); re-create it with `devcluster destroy` and `devcluster up`"
            )),
            SshError::Unreachable { node, .. } => Some(format!(
                "check that the VM of {node} is running (`devcluster status`) and look at \
                 its boot console in the hypervisor"
            )),
            _ => None,
        }
    }
}

/// Why one connection attempt failed while the guest may still be booting.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Ssh(Box<russh::Error>),
    #[error("no answer within {}s", .0.as_secs_f32())]
    TimedOut(Duration),
    #[error("the server closed the connection during authentication")]
    ClosedDuringAuth,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Where and how to reach one node.
#[derive(Clone)]
pub struct SshTarget {
    /// The node's name (for messages).
    pub node: String,
    /// An IP address or a host name.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub client_key: PrivateKey,
    /// The only host key the node may present.
    pub host_key: PublicKey,
    /// Run privileged commands through `sudo -n` (the guests' user has
    /// passwordless sudo). False when the user is root already.
    pub sudo: bool,
    /// Where step scripts and done markers go: [`GUEST_STEP_DIR`] (or
    /// [`WINDOWS_STEP_DIR`]); tests point it at a temporary directory.
    pub step_dir: String,
    /// The node's OS: it decides the shell's quoting, how files are
    /// uploaded and how steps run.
    pub os: Os,
}

impl fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTarget")
            .field("node", &self.node)
            .field("addr", &self.addr())
            .field("user", &self.user)
            .field("client_key", &"<redacted>")
            .field("host_key", &fingerprint(&self.host_key))
            .field("sudo", &self.sudo)
            .field("step_dir", &self.step_dir)
            .field("os", &self.os)
            .finish()
    }
}

impl SshTarget {
    /// A target from the OpenSSH texts of the client key and the pinned
    /// host key (`ssh-ed25519 AAAA... comment`). Privileged commands use
    /// sudo; steps go to [`GUEST_STEP_DIR`].
    pub fn new(
        node: &str,
        host: &str,
        port: u16,
        user: &str,
        client_key_openssh: &Secret,
        host_key_line: &str,
    ) -> Result<Self, SshError> {
        let client_key = PrivateKey::from_openssh(client_key_openssh.expose()).map_err(|e| {
            SshError::InvalidKey {
                what: "SSH client key",
                source: e,
            }
        })?;
        let host_key =
            PublicKey::from_openssh(host_key_line.trim()).map_err(|e| SshError::InvalidKey {
                what: "pinned SSH host key",
                source: e,
            })?;
        Ok(Self {
            node: node.to_string(),
            host: host.to_string(),
            port,
            user: user.to_string(),
            client_key,
            host_key,
            sudo: true,
            step_dir: GUEST_STEP_DIR.to_string(),
            os: Os::Linux,
        })
    }

    /// A planned node as the provisioner reaches it: its static IP, port
    /// 22, the cluster's client key and the node's pinned host key; on
    /// Linux user [`USER`] with sudo, on Windows [`WINDOWS_USER`] (an
    /// administrator, PowerShell as its shell).
    pub fn for_node(node: &NodePlan, secrets: &ClusterSecrets) -> Result<Self, SshError> {
        let host_key = secrets
            .host_key(&node.name)
            .ok_or_else(|| SshError::NoHostKey(node.name.clone()))?;
        let mut t = Self::new(
            &node.name,
            &node.ip.to_string(),
            22,
            login_user(node.os),
            &secrets.ssh_client.private_openssh,
            &host_key.public_line,
        )?;
        if node.os == Os::Windows {
            t.sudo = false;
            t.step_dir = WINDOWS_STEP_DIR.to_string();
            t.os = Os::Windows;
        }
        Ok(t)
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn addr(&self) -> String {
        if self.host.parse::<Ipv6Addr>().is_ok() {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `command` as it runs with root rights: behind `sudo -n` when
    /// [`SshTarget::sudo`] is set.
    pub fn privileged(&self, command: &str) -> String {
        if self.sudo {
            format!("sudo -n {command}")
        } else {
            command.to_string()
        }
    }
}

/// The user devcluster logs in as on a node of `os`.
pub fn login_user(os: Os) -> &'static str {
    match os {
        Os::Linux => USER,
        Os::Windows => WINDOWS_USER,
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The russh handler: accepts the pinned host key only.
struct Pinned {
    expected: PublicKey,
}

#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    Mismatch { presented: String },
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for Pinned {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                if key.key_data() == self.expected.key_data() {
                    Ok(true)
                } else {
                    Err(HandlerError::Mismatch {
                        presented: fingerprint(key),
                    })
                }
            }
            PublicKeyOrCertificate::Certificate(cert) => Err(HandlerError::Mismatch {
                presented: format!(
                    "a certificate for {}",
                    cert.public_key().fingerprint(HashAlg::Sha256)
                ),
            }),
        }
    }
}

/// How one attempt ended when it did not connect.
enum Attempt {
    Retry(ConnectError),
    Fatal(SshError),
}

/// Errors that a booting guest does not cause and waiting does not fix.
fn is_fatal(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::NoCommonAlgo { .. }
            | russh::Error::UnknownAlgo
            | russh::Error::CouldNotReadKey
            | russh::Error::WrongServerSig
            | russh::Error::Keys(_)
            | russh::Error::SshKey(_)
            | russh::Error::Signature(_)
            | russh::Error::UnsupportedAuthMethod
    )
}

fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        // Steps like `kubeadm init` are silent for minutes: no inactivity
        // timeout, but keepalives notice a VM that went away.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        nodelay: true,
        ..client::Config::default()
    })
}

/// An authenticated SSH connection to one node.
pub struct Session {
    /// Replaced by [`Session::reboot`].
    handle: tokio::sync::RwLock<Handle<Pinned>>,
    target: SshTarget,
    connected_after: Duration,
    attempts: u32,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("connected_after", &self.connected_after)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects and authenticates, retrying while the guest boots (see the
    /// module documentation) until `timeout` has passed.
    pub async fn connect(target: &SshTarget, timeout: Duration) -> Result<Session, SshError> {
        let config = client_config();
        let start = Instant::now();
        let deadline = start + timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .min(ATTEMPT_TIMEOUT)
                .max(Duration::from_millis(100));
            let outcome = match tokio::time::timeout(budget, attempt(target, config.clone())).await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(Attempt::Retry(ConnectError::TimedOut(budget))),
            };
            let last = match outcome {
                Ok(handle) => {
                    let connected_after = start.elapsed();
                    tracing::debug!(
                        node = %target.node,
                        addr = %target.addr(),
                        attempts,
                        elapsed_ms = connected_after.as_millis() as u64,
                        "SSH connected"
                    );
                    return Ok(Session {
                        handle: tokio::sync::RwLock::new(handle),
                        target: target.clone(),
                        connected_after,
                        attempts,
                    });
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) => e,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(SshError::Unreachable {
                    node: target.node.clone(),
                    addr: target.addr(),
                    waited: now - start,
                    attempts,
                    source: last,
                });
            }
            tracing::trace!(node = %target.node, error = %last, "SSH not ready, retrying");
            tokio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The node this session is connected to.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    pub fn node(&self) -> &str {
        &self.target.node
    }

    /// How long [`Session::connect`] took, retries included.
    pub fn connected_after(&self) -> Duration {
        self.connected_after
    }

    /// How many connection attempts it took.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Runs `command` (a shell command line, run by the user's login shell)
    /// with `stdin` (then end of file; no stdin is an immediate end of
    /// file), calling `on_output` with each chunk of stdout and stderr as
    /// it arrives. Returns the exit code. A command killed by a signal is
    /// [`SshError::Signal`].
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<u32, SshError> {
        tracing::debug!(node = %self.target.node, command, "exec");
        let node = &self.target.node;
        let channel_err = |source| self.channel_err(source);
        let channel = self.open_channel().await?;
        channel.exec(true, command).await.map_err(channel_err)?;
        let (mut reader, writer) = channel.split();

        let write = async {
            if let Some(bytes) = stdin
                && !bytes.is_empty()
            {
                writer.data(bytes).await?;
            }
            writer.eof().await
        };
        let read = async {
            let mut code = None;
            let mut signal = None;
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => on_output(Stream::Stdout, &data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => on_output(Stream::Stderr, &data),
                    ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                    ChannelMsg::ExitSignal {
                        signal_name,
                        core_dumped,
                        ..
                    } => signal = Some((signal_name, core_dumped)),
                    // Output can follow the exit status: read until the
                    // channel closes.
                    _ => {}
                }
            }
            (code, signal)
        };
        let (written, (code, signal)) = tokio::join!(write, read);
        if let Some((sig, core_dumped)) = signal {
            return Err(SshError::Signal {
                node: node.clone(),
                signal: signal_name(&sig),
                core_dumped,
            });
        }
        match code {
            Some(code) => Ok(code),
            // A failed stdin write explains a missing status better.
            None => match written {
                Err(e) => Err(channel_err(e)),
                Ok(()) => Err(SshError::NoExitStatus { node: node.clone() }),
            },
        }
    }

    /// Runs `command` and collects its output (for short outputs).
    pub async fn exec_collect(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Output, SshError> {
        let mut out = Output::default();
        out.code = self
            .exec(command, stdin, |stream, data| match stream {
                Stream::Stdout => out.stdout.extend_from_slice(data),
                Stream::Stderr => out.stderr.extend_from_slice(data),
            })
            .await?;
        Ok(out)
    }

    /// Writes `bytes` to `path` in the guest with `mode`, as root (through
    /// sudo when the target says so), creating missing parent directories.
    /// The file is written next to its final name and renamed over it, so
    /// the path holds the old file or the new one, never a torn one; it is
    /// never readable by others while being written.
    pub async fn upload(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), SshError> {
        if self.target.os == Os::Windows {
            return self.upload_windows(path, bytes, mode).await;
        }
        let tmp = format!("{path}.devcluster-upload");
        let dir = match path.rsplit_once('/') {
            Some(("", _)) => "/",
            Some((dir, _)) => dir,
            None => ".",
        };
        let script = format!(
            "set -e; mkdir -p {dir}; (umask 077; cat > {tmp}); chmod {mode:o} {tmp}; mv -f {tmp} {path}",
            dir = shell_quote(dir),
            tmp = shell_quote(&tmp),
            path = shell_quote(path),
        );
        let command = self
            .target
            .privileged(&format!("sh -c {}", shell_quote(&script)));
        let out = self.exec_collect(&command, Some(bytes)).await?;
        if out.code != 0 {
            return Err(SshError::Upload {
                node: self.target.node.clone(),
                path: path.to_string(),
                code: out.code,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    fn channel_err(&self, source: russh::Error) -> SshError {
        SshError::Channel {
            node: self.target.node.clone(),
            source: Box::new(source),
        }
    }

    /// A new session channel on the current connection.
    async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, SshError> {
        self.handle
            .read()
            .await
            .channel_open_session()
            .await
            .map_err(|source| self.channel_err(source))
    }

    /// Opens an SFTP session on a new channel.
    async fn sftp(
        &self,
        path: &str,
    ) -> Result<super::sftp::Sftp<russh::ChannelStream<client::Msg>>, SshError> {
        let node = &self.target.node;
        let channel = self.open_channel().await?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|source| self.channel_err(source))?;
        super::sftp::Sftp::init(channel.into_stream())
            .await
            .map_err(|source| SshError::Sftp {
                node: node.clone(),
                path: path.to_string(),
                source,
            })
    }

    /// Writes `bytes` over SFTP to the SFTP path `path` (its parents made),
    /// as the login user. Windows uploads go through this; tests use it
    /// against OpenSSH's own sftp-server.
    pub async fn sftp_write(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), SshError> {
        let err = |source| SshError::Sftp {
            node: self.target.node.clone(),
            path: path.to_string(),
            source,
        };
        let mut sftp = self.sftp(path).await?;
        sftp.mkdir_parents(path).await.map_err(err)?;
        sftp.write_file(path, bytes, mode).await.map_err(err)?;
        sftp.finish().await.map_err(err)
    }

    /// A Windows upload: the private directory made (Administrators and
    /// SYSTEM only), the bytes written there over SFTP, then moved to
    /// `path` by PowerShell. A file whose mode lets others read it takes
    /// its new directory's permissions; any other keeps the private ones.
    async fn upload_windows(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), SshError> {
        let part = format!(
            "{WINDOWS_UPLOAD_DIR}\\{}.part",
            super::script_sha256(&format!("{path}\0{}", super::log::timestamp()))
        );
        let out = self
            .exec_collect(&windows_private_dirs_command(), None)
            .await?;
        self.check_upload(path, out)?;
        self.sftp_write(&super::sftp::windows_sftp_path(&part), bytes, mode)
            .await?;
        let out = self
            .exec_collect(&windows_move_command(&part, path, mode), None)
            .await?;
        self.check_upload(path, out)
    }

    fn check_upload(&self, path: &str, out: Output) -> Result<(), SshError> {
        if out.code == 0 {
            return Ok(());
        }
        Err(SshError::Upload {
            node: self.target.node.clone(),
            path: path.to_string(),
            code: out.code,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    /// Reboots the node and reconnects once it reports a new boot (within
    /// `timeout`), with the same pinned host key. The old connection's
    /// drop during the restart is expected and ignored.
    pub async fn reboot(&self, timeout: Duration) -> Result<(), SshError> {
        let start = Instant::now();
        let before = self
            .exec_collect(&boot_id_command(self.target.os), None)
            .await?;
        let before = String::from_utf8_lossy(&before.stdout).trim().to_string();
        let restart = reboot_command(&self.target);
        // The connection may die with the node instead of answering.
        let _ =
            tokio::time::timeout(Duration::from_secs(30), self.exec_collect(&restart, None)).await;
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(SshError::Reboot {
                    node: self.target.node.clone(),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_secs(5).min(left)).await;
            let Ok(fresh) = Session::connect(&self.target, left).await else {
                continue;
            };
            let now = fresh
                .exec_collect(&boot_id_command(self.target.os), None)
                .await;
            match now {
                Ok(o) if o.code == 0 && String::from_utf8_lossy(&o.stdout).trim() != before => {
                    let Session { handle, .. } = fresh;
                    *self.handle.write().await = handle.into_inner();
                    tracing::info!(node = %self.target.node, "back after reboot in {:.1?}", start.elapsed());
                    return Ok(());
                }
                _ => {
                    let _ = fresh.close().await;
                }
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) -> Result<(), SshError> {
        self.handle
            .into_inner()
            .disconnect(Disconnect::ByApplication, "", "en")
            .await
            .map_err(|source| SshError::Channel {
                node: self.target.node.clone(),
                source: Box::new(source),
            })
    }
}

/// A finished command's exit code and output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub code: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The PowerShell (as an exec string) that makes devcluster's directories
/// on a Windows node and keeps them to Administrators and SYSTEM.
pub fn windows_private_dirs_command() -> String {
    use super::remote::{pwsh_exec_string, pwsh_quote};
    pwsh_exec_string(&format!(
        "foreach ($d in @({dir}, {steps}, {upload})) {{ New-Item -ItemType Directory -Force -Path $d | Out-Null }}\n\
         & icacls.exe {dir} /inheritance:r /grant:r '*S-1-5-32-544:(OI)(CI)F' /grant:r '*S-1-5-18:(OI)(CI)F' | Out-Null\n\
         if ($LASTEXITCODE -ne 0) {{ exit $LASTEXITCODE }}",
        dir = pwsh_quote(WINDOWS_DIR),
        steps = pwsh_quote(WINDOWS_STEP_DIR),
        upload = pwsh_quote(WINDOWS_UPLOAD_DIR),
    ))
}

/// The PowerShell (as an exec string) that moves an uploaded part to its
/// place; a mode readable by others resets its permissions to those
/// inherited there.
pub fn windows_move_command(part: &str, path: &str, mode: u32) -> String {
    use super::remote::{pwsh_exec_string, pwsh_quote};
    let (dir, _) = path.rsplit_once(['\\', '/']).unwrap_or((path, ""));
    let mut script = format!(
        "New-Item -ItemType Directory -Force -Path {dir} | Out-Null\n\
         Move-Item -LiteralPath {part} -Destination {path} -Force",
        dir = pwsh_quote(dir),
        part = pwsh_quote(part),
        path = pwsh_quote(path),
    );
    if mode & 0o044 != 0 {
        script.push_str(&format!(
            "\n& icacls.exe {} /reset | Out-Null\nif ($LASTEXITCODE -ne 0) {{ exit $LASTEXITCODE }}",
            pwsh_quote(path)
        ));
    }
    pwsh_exec_string(&script)
}

/// A command that prints something that changes at every boot.
pub fn boot_id_command(os: Os) -> String {
    match os {
        Os::Linux => "cat /proc/sys/kernel/random/boot_id".into(),
        Os::Windows => super::remote::pwsh_exec_string(
            "(Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime.ToUniversalTime().ToString('o')",
        ),
    }
}

/// A command that reboots the node at once.
pub fn reboot_command(target: &SshTarget) -> String {
    match target.os {
        Os::Linux => target.privileged("systemctl reboot"),
        Os::Windows => super::remote::pwsh_exec_string("Restart-Computer -Force"),
    }
}

/// Waits until the node answers SSH with its pinned host key and accepts
/// the client key; returns the session and how long that took.
pub async fn wait_for_ssh(
    target: &SshTarget,
    timeout: Duration,
) -> Result<(Session, Duration), SshError> {
    let session = Session::connect(target, timeout).await?;
    let elapsed = session.connected_after();
    tracing::info!(
        node = %target.node,
        attempts = session.attempts(),
        "SSH answered after {:.1}s",
        elapsed.as_secs_f32()
    );
    Ok((session, elapsed))
}

/// One connection attempt: TCP, key exchange (host key check),
/// authentication.
async fn attempt(
    target: &SshTarget,
    config: Arc<client::Config>,
) -> Result<Handle<Pinned>, Attempt> {
    let handler = Pinned {
        expected: target.host_key.clone(),
    };
    let mut handle = client::connect(config, target.addr(), handler)
        .await
        .map_err(|e| match e {
            HandlerError::Mismatch { presented } => Attempt::Fatal(SshError::HostKeyMismatch {
                node: target.node.clone(),
                host: target.host.clone(),
                presented,
                expected: fingerprint(&target.host_key),
            }),
            HandlerError::Ssh(e) if is_fatal(&e) => Attempt::Fatal(SshError::Handshake {
                node: target.node.clone(),
                addr: target.addr(),
                source: Box::new(e),
            }),
            HandlerError::Ssh(e) => Attempt::Retry(ConnectError::Ssh(Box::new(e))),
        })?;
    let retry = |e: russh::Error| {
        if is_fatal(&e) {
            Attempt::Fatal(SshError::Handshake {
                node: target.node.clone(),
                addr: target.addr(),
                source: Box::new(e),
            })
        } else {
            Attempt::Retry(ConnectError::Ssh(Box::new(e)))
        }
    };
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(retry)?
        .flatten();
    let key = PrivateKeyWithHashAlg::new(Arc::new(target.client_key.clone()), hash);
    let result = handle
        .authenticate_publickey(target.user.clone(), key)
        .await
        .map_err(retry)?;
    match result {
        client::AuthResult::Success => Ok(handle),
        // russh reports a connection that died mid-authentication as a
        // failure with no methods left; a real rejection names the methods
        // the server would still accept.
        client::AuthResult::Failure {
            remaining_methods, ..
        } if remaining_methods.is_empty() || handle.is_closed() => {
            Err(Attempt::Retry(ConnectError::ClosedDuringAuth))
        }
        client::AuthResult::Failure { .. } => Err(Attempt::Fatal(SshError::AuthRejected {
            node: target.node.clone(),
            host: target.host.clone(),
            user: target.user.clone(),
        })),
    }
}

fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_get_brackets() {
        use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
        let pair = Ed25519Keypair::from_seed(&[7; 32]);
        let key = PrivateKey::new(KeypairData::from(pair), "test").unwrap();
        let mut t = SshTarget {
            node: "n".into(),
            host: "::1".into(),
            port: 2222,
            user: "u".into(),
            host_key: key.public_key().clone(),
            client_key: key,
            sudo: false,
            step_dir: "/tmp".into(),
            os: Os::Linux,
        };
        assert_eq!(t.addr(), "[::1]:2222");
        t.host = "10.0.0.1".into();
        assert_eq!(t.addr(), "10.0.0.1:2222");
        assert!(!format!("{t:?}").contains("PRIVATE"));
    }
}
