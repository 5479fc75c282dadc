//! A real OpenSSH server on loopback, started by the test itself.
//!
//! `Sshd::start(host_key, authorized_keys)` writes an `sshd_config` into a
//! temporary directory and runs `/usr/sbin/sshd -D -e -f CONFIG -p PORT`:
//! listening on 127.0.0.1 only, the given host key (devcluster's own, as
//! `pki` generated it), the given authorized keys, key login only, for the
//! current user only. Commands then run as the user running the tests (root
//! in CI: `PermitRootLogin prohibit-password`). The server is killed when
//! the `Sshd` is dropped; its log (`-e`: to stderr) is kept in the temporary
//! directory and shown by [`Sshd::log`] for failure messages.
//!
//! Needs the `openssh-server` package (scripts/setup-test-host.sh installs
//! it); a missing sshd fails the test loudly.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
/// OpenSSH's SFTP server (Debian's path), the program Win32-OpenSSH ports
/// as `sftp-server.exe`.
pub const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Local ports of our own readiness probes (not clients).
    probe_ports: Vec<u16>,
}

impl Sshd {
    /// Starts sshd on a free port.
    pub fn start(host_key: &Path, authorized_keys: &str) -> Sshd {
        Self::start_on(free_port(), host_key, authorized_keys)
    }

    /// Starts sshd on `port` and waits until it accepts connections.
    pub fn start_on(port: u16, host_key: &Path, authorized_keys: &str) -> Sshd {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is required by this test but is not installed (apt-get install openssh-server; see scripts/setup-test-host.sh)"
        );
        let dir = tempfile::tempdir().unwrap();
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, format!("{}\n", authorized_keys.trim())).unwrap();
        let user = current_user();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 AuthorizedKeysFile {authorized}\n\
                 PidFile none\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 AllowUsers {user}\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 MaxStartups 100\n\
                 MaxSessions 100\n\
                 LogLevel VERBOSE\n\
                 Subsystem sftp {SFTP_SERVER}\n",
                host_key = host_key.display(),
                authorized = authorized.display(),
            ),
        )
        .unwrap();
        if is_root() {
            // sshd's privilege separation directory (made by systemd's
            // tmpfiles on a normal host, absent in containers).
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .arg("-p")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut sshd = Sshd {
            child,
            port,
            dir,
            probe_ports: Vec::new(),
        };
        sshd.wait_ready();
        sshd
    }

    fn wait_ready(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("sshd exited ({status}) at start:\n{}", self.log());
            }
            if let Ok(probe) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                self.probe_ports.push(probe.local_addr().unwrap().port());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {addr} within 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many connections sshd accepted from clients (its log's
    /// `Connection from` lines, without our readiness probe).
    pub fn client_connections(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("Connection from "))
            .filter(|l| {
                let port = l.split_whitespace().nth(4).unwrap_or_default();
                !self.probe_ports.iter().any(|p| p.to_string() == port)
            })
            .count()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now (bound and released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
