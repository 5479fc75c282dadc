//! The SSH client and step runner against a real OpenSSH server on loopback
//! (tests/common/sshd.rs), with the keys devcluster's own `pki` generated:
//! the server presents the node's pinned host key and authorizes the
//! cluster's client key. The "guest" is this machine: commands run as the
//! user running the tests, step files go to a temporary directory.
//!
//! prepare-os.sh itself never runs here (it changes the host's system
//! settings); tests/provisioners.rs shellchecks it.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::World;
use common::sshd::{Sshd, current_user, free_port, is_root};
use devcluster::pki::{self, ClusterSecrets, PkiPaths, Secret};
use devcluster::provision::ssh::ConnectError;
use devcluster::provision::steps::TEST_FAIL_STEP_ENV;
use devcluster::provision::{
    NodeLog, Session, SshError, SshTarget, Step, StepError, StepEvent, Stream, Upload, run_step,
    run_steps, step_done_in_guest, wait_for_ssh,
};
use sha2::{Digest, Sha256};

const CLUSTER: &str = "ssh";

struct Fx {
    world: World,
    secrets: ClusterSecrets,
    node: String,
    other_node: String,
    host_key_path: PathBuf,
    guest: tempfile::TempDir,
}

fn fx() -> Fx {
    let world = World::new();
    let plan = world.cluster(CLUSTER, 1, 0);
    let secrets = pki::ensure(&world.dirs, &plan).unwrap();
    let node = plan.nodes[0].name.clone();
    let other_node = plan.nodes[1].name.clone();
    let host_key_path = PkiPaths::new(&world.dirs, CLUSTER).host_key(&node);
    Fx {
        world,
        secrets,
        node,
        other_node,
        host_key_path,
        guest: tempfile::tempdir().unwrap(),
    }
}

impl Fx {
    fn sshd(&self) -> Sshd {
        Sshd::start(&self.host_key_path, &self.secrets.ssh_client.public_line)
    }

    fn target(&self, port: u16) -> SshTarget {
        let mut t = SshTarget::new(
            &self.node,
            "127.0.0.1",
            port,
            &current_user(),
            &self.secrets.ssh_client.private_openssh,
            &self.secrets.host_key(&self.node).unwrap().public_line,
        )
        .unwrap();
        t.sudo = false;
        t.step_dir = self.step_dir().to_str().unwrap().to_string();
        t
    }

    async fn session(&self, sshd: &Sshd) -> Session {
        match Session::connect(&self.target(sshd.port), Duration::from_secs(20)).await {
            Ok(s) => s,
            Err(e) => panic!("connect: {e:?}\nsshd log:\n{}", sshd.log()),
        }
    }

    fn step_dir(&self) -> PathBuf {
        self.guest.path().join("steps")
    }

    fn log(&self) -> NodeLog {
        NodeLog::open(&self.world.dirs, CLUSTER, &self.node).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(devcluster::provision::log::log_path(
            &self.world.dirs,
            CLUSTER,
            &self.node,
        ))
        .unwrap()
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ [step] rest`: returns (step, rest).
fn parse_log_line(line: &str) -> (&str, &str) {
    let (ts, rest) = line.split_once(' ').unwrap();
    let b = ts.as_bytes();
    assert_eq!(ts.len(), 24, "timestamp {ts:?} in {line:?}");
    for (i, c) in b.iter().enumerate() {
        let ok = match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        };
        assert!(ok, "timestamp {ts:?} in {line:?}");
    }
    let rest = rest.strip_prefix('[').unwrap();
    rest.split_once("] ").unwrap()
}

// ---- connecting ----------------------------------------------------------------

#[tokio::test]
async fn connects_with_the_pinned_host_key_and_runs_commands() {
    let fx = fx();
    let sshd = fx.sshd();
    let (session, elapsed) = wait_for_ssh(&fx.target(sshd.port), Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", sshd.log()));
    assert_eq!(session.attempts(), 1);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let out = session.exec_collect("id -un", None).await.unwrap();
    assert_eq!(out.code, 0);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        current_user()
    );
    // The server really saw our key (VERBOSE logs the accepted key).
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_wrong_host_key_is_a_mismatch_and_not_retried() {
    let fx = fx();
    let sshd = fx.sshd();
    let mut target = fx.target(sshd.port);
    // Pin the other node's key: the server presents this node's.
    target.host_key = russh::keys::PublicKey::from_openssh(
        &fx.secrets.host_key(&fx.other_node).unwrap().public_line,
    )
    .unwrap();
    let started = Instant::now();
    let err = Session::connect(&target, Duration::from_secs(30))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "host key of {} (127.0.0.1) does not match the one devcluster generated for it",
            fx.node
        )
    );
    // One attempt, no backoff loop towards the 30 s timeout.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(sshd.client_connections(), 1, "{}", sshd.log());
    let hint = devcluster::hints::report(&anyhow::Error::new(err))
        .hint
        .unwrap();
    assert!(hint.contains("SHA256:"), "{hint}");
}

#[tokio::test]
async fn a_rejected_client_key_is_not_retried() {
    let fx = fx();
    // Authorize some other cluster's client key only.
    let other = World::new();
    let other_secrets = pki::ensure(&other.dirs, &other.cluster("other", 0, 0)).unwrap();
    let sshd = Sshd::start(&fx.host_key_path, &other_secrets.ssh_client.public_line);
    let started = Instant::now();
    let err = Session::connect(&fx.target(sshd.port), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(sshd.client_connections(), 1, "{}", sshd.log());
    assert_eq!(
        err.to_string(),
        format!(
            "{} (127.0.0.1) rejected devcluster's SSH key for user {}",
            fx.node,
            current_user()
        )
    );
}

#[tokio::test]
async fn connecting_before_sshd_starts_succeeds_by_retrying() {
    let fx = fx();
    let port = free_port();
    let host_key = fx.host_key_path.clone();
    let authorized = fx.secrets.ssh_client.public_line.clone();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        Sshd::start_on(port, &host_key, &authorized)
    });
    let started = Instant::now();
    let result = Session::connect(&fx.target(port), Duration::from_secs(30)).await;
    let sshd = starter.join().unwrap();
    let session = result.unwrap_or_else(|e| panic!("{e:?}\n{}", sshd.log()));
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert!(session.attempts() > 1, "{}", session.attempts());
    assert_eq!(session.exec("true", None, |_, _| {}).await.unwrap(), 0);
}

#[tokio::test]
async fn nobody_listening_times_out_with_the_last_error() {
    let fx = fx();
    let port = free_port();
    let started = Instant::now();
    let err = Session::connect(&fx.target(port), Duration::from_millis(1500))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let SshError::Unreachable {
        attempts, source, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(*attempts > 2, "{attempts}");
    assert!(matches!(source, ConnectError::Ssh(_)), "{source:?}");
    assert!(
        source.to_string().to_lowercase().contains("refused"),
        "{source}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "{} (127.0.0.1:{port}) did not answer SSH within 1s",
            fx.node
        )),
        "{err}"
    );
}

// ---- exec ------------------------------------------------------------------

#[tokio::test]
async fn exec_returns_exit_codes_and_separates_streams() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    let out = session
        .exec_collect("echo out; echo err >&2; exit 3", None)
        .await
        .unwrap();
    assert_eq!(out.code, 3);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let out = session.exec_collect("true", None).await.unwrap();
    assert_eq!((out.code, out.stdout.len(), out.stderr.len()), (0, 0, 0));
    // stdin reaches the command, then end of file.
    let out = session
        .exec_collect("tr a-z A-Z", Some(b"hello"))
        .await
        .unwrap();
    assert_eq!((out.code, out.stdout.as_slice()), (0, b"HELLO".as_slice()));
    // No stdin is end of file at once, not a hang.
    let out = session.exec_collect("cat; echo done", None).await.unwrap();
    assert_eq!(out.stdout, b"done\n");
}

#[tokio::test]
async fn exec_streams_output_as_it_arrives() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    let started = Instant::now();
    let mut seen: Vec<(Stream, String, Duration)> = Vec::new();
    let code = session
        .exec("echo first; sleep 1; echo second >&2", None, |s, d| {
            seen.push((
                s,
                String::from_utf8_lossy(d).into_owned(),
                started.elapsed(),
            ))
        })
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[0].0, seen[0].1.as_str()), (Stream::Stdout, "first\n"));
    assert_eq!(
        (seen[1].0, seen[1].1.as_str()),
        (Stream::Stderr, "second\n")
    );
    // The first line was delivered while the command still ran.
    assert!(
        seen[1].2 - seen[0].2 >= Duration::from_millis(800),
        "{seen:?}"
    );
}

#[tokio::test]
async fn output_after_the_exit_status_is_not_lost() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    // 3 MiB on stdout and 1 MiB on stderr, more than the SSH window: much
    // of it is still in flight when the process exits and the server sends
    // the exit status.
    let command = "head -c 3145728 /dev/zero | tr '\\0' a; \
                   head -c 1048576 /dev/zero | tr '\\0' b >&2; echo end; exit 0";
    let (mut out, mut err) = (0usize, 0usize);
    let mut last = Vec::new();
    let code = session
        .exec(command, None, |s, d| match s {
            Stream::Stdout => {
                out += d.len();
                last = d.to_vec();
            }
            Stream::Stderr => err += d.len(),
        })
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(out, 3 * 1024 * 1024 + 4);
    assert_eq!(err, 1024 * 1024);
    assert!(last.ends_with(b"end\n"));
}

#[tokio::test]
async fn a_command_killed_by_a_signal_is_an_error_naming_it() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    let err = session
        .exec("kill -KILL $$", None, |_, _| {})
        .await
        .unwrap_err();
    let SshError::Signal { signal, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(signal, "KILL");
    assert_eq!(
        err.to_string(),
        format!("a command on {} was killed by signal KILL", fx.node)
    );
    // The session is still usable.
    assert_eq!(session.exec("true", None, |_, _| {}).await.unwrap(), 0);
}

#[tokio::test]
async fn upload_of_a_binary_file_is_byte_identical() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    let mut bytes = vec![0u8; 3 * 1024 * 1024];
    getrandom::fill(&mut bytes).unwrap();
    // Make sure every byte value, NUL and newlines included, is in there.
    for (i, b) in bytes.iter_mut().take(256).enumerate() {
        *b = i as u8;
    }
    let path = fx.guest.path().join("new dir/sub/file's.bin");
    let remote = path.to_str().unwrap();
    session.upload(remote, &bytes, 0o640).await.unwrap();
    assert_eq!(sha256(&std::fs::read(&path).unwrap()), sha256(&bytes));
    let out = session
        .exec_collect(
            &format!(
                "sha256sum {}",
                devcluster::provision::ssh::shell_quote(remote)
            ),
            None,
        )
        .await
        .unwrap();
    let remote_sum = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        remote_sum.split_whitespace().next().unwrap(),
        sha256(&bytes)
    );
    assert_eq!(common::mode(&path), 0o640);
    // Replacing it leaves no temporary file behind.
    session.upload(remote, b"small", 0o600).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"small");
    assert_eq!(common::mode(&path), 0o600);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[tokio::test]
async fn an_upload_that_cannot_be_written_says_where() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    // A directory where the parent should be.
    let file = fx.guest.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let remote = format!("{}/below/it", file.display());
    let err = session.upload(&remote, b"data", 0o644).await.unwrap_err();
    let SshError::Upload { code, stderr, .. } = &err else {
        panic!("{err:?}")
    };
    assert_ne!(*code, 0);
    assert!(stderr.contains("Not a directory"), "{stderr}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot write {remote} on {}", fx.node))
    );
}

// ---- steps -----------------------------------------------------------------

const STEP_ONE: &str = r#"
echo "one: hello $GREETING"
echo "one: to stderr" >&2
echo run >> "$COUNTER"
"#;

const STEP_TWO: &str = r#"
printf 'two: no newline at the end'
echo run >> "$COUNTER"
"#;

fn two_steps(counter: &Path) -> Vec<Step> {
    let counter = counter.to_str().unwrap();
    vec![
        Step::new("one", STEP_ONE)
            .env("GREETING", "dev world's")
            .env("COUNTER", format!("{counter}.one")),
        Step::new("two", STEP_TWO).env("COUNTER", format!("{counter}.two")),
    ]
}

#[tokio::test]
async fn run_steps_logs_marks_done_and_skips_on_the_second_run() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    let counter = fx.guest.path().join("counter");
    let steps = two_steps(&counter);
    let mut log = fx.log();

    let mut events = Vec::new();
    run_steps(&session, &steps, &[], &mut log, |e| events.push(e))
        .await
        .unwrap();
    let names: Vec<String> = events
        .iter()
        .map(|e| match e {
            StepEvent::Started(n) => format!("started {n}"),
            StepEvent::Skipped(n) => format!("skipped {n}"),
            StepEvent::Finished(n, _) => format!("finished {n}"),
            StepEvent::Failed(n, _) => format!("failed {n}"),
        })
        .collect();
    assert_eq!(
        names,
        ["started one", "finished one", "started two", "finished two"]
    );
    for step in ["one", "two"] {
        assert!(fx.step_dir().join(format!("{step}.done")).is_file());
        assert!(fx.step_dir().join(format!("{step}.sh")).is_file());
        assert_eq!(
            std::fs::read_to_string(format!("{}.{step}", counter.display())).unwrap(),
            "run\n"
        );
        assert!(step_done_in_guest(&session, step).await.unwrap());
    }
    assert!(!step_done_in_guest(&session, "three").await.unwrap());
    let marker = std::fs::read_to_string(fx.step_dir().join("one.done")).unwrap();
    assert!(marker.starts_with(&format!("sha256:{}\n", sha256(STEP_ONE.as_bytes()))));

    let text = fx.log_text();
    let lines: Vec<(&str, &str)> = text.lines().map(parse_log_line).collect();
    assert_eq!(lines[0], ("one", "started"));
    assert_eq!(
        lines[1],
        (
            "one",
            format!(
                "env: GREETING='dev world'\\''s' COUNTER={}.one",
                counter.display()
            )
            .as_str()
        )
    );
    assert!(
        lines.contains(&("one", "stdout: one: hello dev world's")),
        "{text}"
    );
    assert!(lines.contains(&("one", "stderr: one: to stderr")), "{text}");
    assert!(
        lines.contains(&("two", "stdout: two: no newline at the end")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|(s, r)| *s == "one" && r.starts_with("finished in ")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|(s, r)| *s == "two" && r.starts_with("finished in ")),
        "{text}"
    );

    // Second run, the caller's state says both are done.
    let done = vec!["one".to_string(), "two".to_string()];
    let mut events = Vec::new();
    run_steps(&session, &steps, &done, &mut log, |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(
        events,
        [
            StepEvent::Skipped("one".into()),
            StepEvent::Skipped("two".into())
        ]
    );
    // Third run with the state lost: the guest's markers say so.
    let mut events = Vec::new();
    run_steps(&session, &steps, &[], &mut log, |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(
        events,
        [
            StepEvent::Skipped("one".into()),
            StepEvent::Skipped("two".into())
        ]
    );
    let text = fx.log_text();
    assert!(text.contains("[one] skipped: already done\n"), "{text}");
    assert!(text.contains("[two] skipped: already done\n"), "{text}");
    assert!(
        text.contains("[one] skipped: already done (marker in the guest)\n"),
        "{text}"
    );
    // Nothing ran twice.
    for step in ["one", "two"] {
        assert_eq!(
            std::fs::read_to_string(format!("{}.{step}", counter.display())).unwrap(),
            "run\n"
        );
    }
}

/// A stand-in for a provisioner with the same test hook as prepare-os.sh
/// (which must not run on a test machine), and more output than the tail
/// keeps.
const FAILING: &str = r#"
STEP=fail-me
for i in $(seq 1 30); do echo "line $i"; done
if [[ "${DEVCLUSTER_TEST_FAIL_STEP:-}" == "$STEP" ]]; then
  echo "$STEP: failing on purpose: DEVCLUSTER_TEST_FAIL_STEP=$STEP (test hook)" >&2
  exit 3
fi
echo ok
"#;

#[tokio::test]
async fn a_failing_step_reports_node_step_exit_code_and_tail() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    let mut log = fx.log();
    let steps = vec![
        Step::new("fail-me", FAILING).env(TEST_FAIL_STEP_ENV, "fail-me"),
        Step::new("after", "echo never"),
    ];
    let mut events = Vec::new();
    let err = run_steps(&session, &steps, &[], &mut log, |e| events.push(e))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("node {}: step fail-me failed (exit 3)", fx.node)
    );
    let StepError::Failed { code, tail, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*code, 3);
    assert_eq!(tail.len(), 20);
    assert_eq!(tail[0], "line 12");
    assert_eq!(tail[18], "line 30");
    assert_eq!(
        tail[19],
        "fail-me: failing on purpose: DEVCLUSTER_TEST_FAIL_STEP=fail-me (test hook)"
    );
    assert_eq!(err.tail(), tail.as_slice());
    let report = devcluster::hints::report(&anyhow::Error::new(err));
    assert_eq!(
        report.hint.as_deref(),
        Some(format!("see the whole log with `devcluster logs {}`", fx.node).as_str())
    );
    assert!(
        matches!(events.as_slice(), [StepEvent::Started(a), StepEvent::Failed(b, _)] if a == "fail-me" && b == "fail-me")
    );
    assert!(!fx.step_dir().join("fail-me.done").exists());
    assert!(!fx.step_dir().join("after.sh").exists());
    assert!(fx.log_text().contains("[fail-me] failed (exit 3) after "));

    // Without the hook the same step succeeds.
    let ok = Step::new("fail-me", FAILING);
    run_step(&session, &ok, &mut log).await.unwrap();
    assert!(fx.step_dir().join("fail-me.done").exists());
}

#[tokio::test]
async fn a_host_file_is_uploaded_once_and_a_changed_cache_file_is_refused() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    let host = tempfile::tempdir().unwrap();
    let host_path = host.path().join("containerd-2.x.tar.gz");
    let mut bytes = vec![0u8; 2 * 1024 * 1024 + 17];
    getrandom::fill(&mut bytes).unwrap();
    std::fs::write(&host_path, &bytes).unwrap();
    let node_path = fx
        .guest
        .path()
        .join("opt/devcluster/software/containerd.tar.gz");
    let node_str = node_path.to_str().unwrap().to_string();
    let step = Step::new(
        "install",
        format!(
            "sha256sum {} | cut -d' ' -f1",
            devcluster::provision::ssh::shell_quote(&node_str)
        ),
    )
    .upload(Upload {
        host_path: host_path.clone(),
        node_path: node_str.clone(),
        sha256: sha256(&bytes),
    });
    let mut log = fx.log();
    run_step(&session, &step, &mut log)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", fx.log_text()));
    assert_eq!(sha256(&std::fs::read(&node_path).unwrap()), sha256(&bytes));
    let text = fx.log_text();
    assert!(
        text.contains(&format!(
            "[install] upload: {node_str} ({} bytes, sha256 {})",
            bytes.len(),
            sha256(&bytes)
        )),
        "{text}"
    );
    // The script ran after the upload and saw the whole file.
    assert!(
        text.contains(&format!("stdout: {}", sha256(&bytes))),
        "{text}"
    );

    // A second run finds the file on the node and sends nothing: the
    // host file is gone, so a send would fail.
    std::fs::remove_file(&host_path).unwrap();
    run_step(&session, &step, &mut log)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", fx.log_text()));
    assert!(
        fx.log_text()
            .contains(&format!("[install] upload: {node_str} already there")),
        "{}",
        fx.log_text()
    );

    // A node file that differs is replaced, but only by a host file that
    // still has the sha256 it was verified with.
    std::fs::write(&node_path, b"stale").unwrap();
    let mut changed = bytes.clone();
    changed[0] ^= 0xff;
    std::fs::write(&host_path, &changed).unwrap();
    let err = run_step(&session, &step, &mut log).await.unwrap_err();
    assert!(
        matches!(&err, StepError::HostFileChanged { actual, .. } if *actual == sha256(&changed)),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&node_path).unwrap(), b"stale");
    std::fs::write(&host_path, &bytes).unwrap();
    run_step(&session, &step, &mut log).await.unwrap();
    assert_eq!(sha256(&std::fs::read(&node_path).unwrap()), sha256(&bytes));
}

/// Prints the sha256 of $TOKEN (so the test knows the value arrived intact
/// without the script containing it), echoes it to both streams, and checks
/// that no process above the script has it on its command line.
const USES_SECRET: &str = r#"
printf 'sha:%s\n' "$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)"
echo "token is $TOKEN"
echo "token again: $TOKEN" >&2
echo "public is $PUBLIC"
pid=$$
while [[ "$pid" -gt 1 ]]; do
  if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "${TOKEN%%$'\n'*}"; then
    echo "secret on the command line of pid $pid" >&2
    exit 1
  fi
  pid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status")
done
echo "command lines clean"
echo "via-sudo:${SUDO_USER:-none}"
"#;

async fn secret_step_run(sudo: bool) {
    let fx = fx();
    let sshd = fx.sshd();
    let mut target = fx.target(sshd.port);
    target.sudo = sudo;
    let session = Session::connect(&target, Duration::from_secs(20))
        .await
        .unwrap();
    let secret = "s3cr3t-Tok3n 'quoted' $HOME \"dq\"\nsecond-line-of-it";
    let step = Step::new("secret", USES_SECRET)
        .env("PUBLIC", "visible-value")
        .secret_env("TOKEN", Secret::new(secret));
    let mut log = fx.log();
    run_step(&session, &step, &mut log)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", fx.log_text()));
    let text = fx.log_text();
    assert!(
        text.contains(&format!("sha:{}", sha256(secret.as_bytes()))),
        "{text}"
    );
    assert!(
        text.contains("[secret] env: PUBLIC=visible-value TOKEN=<redacted>\n"),
        "{text}"
    );
    assert!(text.contains("stdout: public is visible-value\n"), "{text}");
    assert!(text.contains("stdout: token is <redacted>\n"), "{text}");
    assert!(text.contains("stderr: token again: <redacted>\n"), "{text}");
    assert!(text.contains("stdout: command lines clean\n"), "{text}");
    for part in secret.lines() {
        assert!(
            !text.contains(part),
            "{part:?} leaked into the log:\n{text}"
        );
    }
    assert!(!text.contains("s3cr3t"), "{text}");
    let via = if sudo {
        "via-sudo:root"
    } else {
        "via-sudo:none"
    };
    assert!(text.contains(&format!("stdout: {via}\n")), "{text}");
    // Nor in the guest's step directory.
    for entry in std::fs::read_dir(fx.step_dir()).unwrap() {
        let content = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!content.contains("s3cr3t"));
    }
}

#[tokio::test]
async fn secrets_reach_the_step_but_never_the_log_or_a_command_line() {
    secret_step_run(false).await;
}

#[tokio::test]
async fn steps_run_through_sudo_when_the_target_says_so() {
    common::require_tool("sudo");
    assert!(
        is_root(),
        "this test runs `sudo -n` as root (as the guest's passwordless sudo would)"
    );
    secret_step_run(true).await;
}

const READS_FILES: &str = r#"#!/usr/bin/env bash
set -euo pipefail
for f in "$DIR/etc/app/config.yaml" "$DIR/etc/app/pki/ca.crt"; do
  printf '%s %s sha:%s\n' "$(basename "$f")" "$(stat -c %a "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
done
"#;

#[tokio::test]
async fn step_files_are_uploaded_with_their_modes_before_the_script_runs() {
    let fx = fx();
    let sshd = fx.sshd();
    let session = fx.session(&sshd).await;
    let dir = fx.guest.path().join("root");
    let dir_s = dir.to_str().unwrap();
    let config = "token: f1l3-s3cr3t.0123456789abcdef\n";
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let step = Step::new("files", READS_FILES)
        .env("DIR", dir_s)
        // Directories that do not exist yet, and a file that does with
        // another mode and content: replaced.
        .file(
            format!("{dir_s}/etc/app/config.yaml"),
            Secret::new(config),
            0o600,
        )
        .file(
            format!("{dir_s}/etc/app/pki/ca.crt"),
            Secret::new(ca),
            0o644,
        );
    std::fs::create_dir_all(dir.join("etc/app")).unwrap();
    std::fs::write(dir.join("etc/app/config.yaml"), "old").unwrap();
    let mut log = fx.log();
    run_step(&session, &step, &mut log)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", fx.log_text()));

    assert_eq!(
        std::fs::read_to_string(dir.join("etc/app/config.yaml")).unwrap(),
        config
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("etc/app/pki/ca.crt")).unwrap(),
        ca
    );
    let text = fx.log_text();
    // The script saw both files, with their modes, when it ran.
    assert!(
        text.contains(&format!(
            "stdout: config.yaml 600 sha:{}\n",
            sha256(config.as_bytes())
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "stdout: ca.crt 644 sha:{}\n",
            sha256(ca.as_bytes())
        )),
        "{text}"
    );
    // The log names the files, never their contents.
    assert!(
        text.contains(&format!(
            "[files] file: {dir_s}/etc/app/config.yaml (0600, {} bytes)\n",
            config.len()
        )),
        "{text}"
    );
    assert!(!text.contains("f1l3-s3cr3t"), "{text}");
    assert!(!text.contains("MIIB"), "{text}");
    // No temporary upload file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("etc/app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("upload"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---- measurement -------------------------------------------------------------

/// Connect + `true` + close on loopback, 20 times: the median is the fixed
/// cost of one SSH connection (key exchange, ed25519 auth, one channel).
/// Also the cost of one more command on an open session, which is what each
/// step pays (a step is 3-4 commands).
#[tokio::test]
#[allow(clippy::print_stderr)]
async fn connect_and_exec_true_is_fast() {
    let fx = fx();
    let sshd = fx.sshd();
    let target = fx.target(sshd.port);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (mut connect, mut total, mut again) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        let t0 = Instant::now();
        let session = Session::connect(&target, Duration::from_secs(10))
            .await
            .unwrap();
        let t1 = Instant::now();
        assert_eq!(session.exec("true", None, |_, _| {}).await.unwrap(), 0);
        let t2 = Instant::now();
        assert_eq!(session.exec("true", None, |_, _| {}).await.unwrap(), 0);
        again.push(t2.elapsed());
        session.close().await.unwrap();
        connect.push(t1 - t0);
        total.push(t2 - t0);
    }
    let (c, t, a) = (median(connect), median(total), median(again));
    eprintln!(
        "ssh loopback, median (min..max) of 20: connect {:?} ({:?}..{:?}); \
         connect + exec true {:?} ({:?}..{:?}); exec true on an open session {:?} ({:?}..{:?})",
        c.0, c.1, c.2, t.0, t.1, t.2, a.0, a.1, a.2
    );
    assert!(t.0 < Duration::from_secs(2), "{:?}", t.0);
}

/// The way `up` drives nodes: one spawned task per node (the futures are
/// `Send`), each with its own session and log, running at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_run_in_parallel_tasks() {
    let fx = fx();
    let sshd = fx.sshd();
    let mut tasks = Vec::new();
    for i in 0..2 {
        let mut target = fx.target(sshd.port);
        target.step_dir = format!("{}/node{i}", fx.step_dir().display());
        let log_path = fx.guest.path().join(format!("node{i}.log"));
        tasks.push(tokio::spawn(async move {
            let (session, _) = wait_for_ssh(&target, Duration::from_secs(20)).await?;
            let mut log = NodeLog::open_path(&log_path).unwrap();
            // Each step prints when it starts and ends (ns since the epoch).
            let steps = vec![Step::new(
                "sleep",
                "date +%s%N; sleep 5; date +%s%N; echo slept",
            )];
            let mut events = Vec::new();
            run_steps(&session, &steps, &[], &mut log, |e| events.push(e)).await?;
            anyhow::Ok((events.len(), std::fs::read_to_string(&log_path)?))
        }));
    }
    let mut spans = Vec::new();
    for task in tasks {
        let (events, log) = task.await.unwrap().unwrap();
        assert_eq!(events, 2);
        assert!(log.contains("[sleep] stdout: slept\n"), "{log}");
        let stamps: Vec<u128> = log
            .lines()
            .filter_map(|l| l.split("[sleep] stdout: ").nth(1))
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        assert_eq!(stamps.len(), 2, "{log}");
        spans.push((stamps[0], stamps[1]));
    }
    // Both steps ran at the same time: each started before the other
    // ended. (Overlap, not wall time: a loaded machine slows both.)
    let (a, b) = (spans[0], spans[1]);
    assert!(a.0 < b.1 && b.0 < a.1, "steps did not overlap: {spans:?}");
}

/// The SFTP writer that Windows uploads use, against OpenSSH's own
/// sftp-server (the program Win32-OpenSSH ships as sftp-server.exe):
/// missing directories made, 3 MiB in chunks, a shorter rewrite truncates,
/// the mode applied, a refused path named with the server's status.
#[tokio::test]
async fn sftp_writes_files_as_windows_uploads_do() {
    use std::os::unix::fs::PermissionsExt;
    let fx = fx();
    let sshd = fx.sshd();
    let s = fx.session(&sshd).await;
    let path = fx.guest.path().join("new/dirs/file.bin");
    let sftp_path = path.to_str().unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    if let Err(e) = s.sftp_write(sftp_path, &big, 0o600).await {
        panic!("sftp: {e:?}\nsshd log:\n{}", sshd.log());
    }
    assert_eq!(sha256(&std::fs::read(&path).unwrap()), sha256(&big));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    s.sftp_write(sftp_path, b"short\n", 0o600).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"short\n");

    // A path under a file cannot be made: the server's status, named.
    let bad = format!("{sftp_path}/under-a-file");
    match s.sftp_write(&bad, b"x", 0o600).await {
        Err(SshError::Sftp { path, source, .. }) => {
            assert_eq!(path, bad);
            let text = source.to_string();
            assert!(text.starts_with(&format!("SFTP open {bad}: ")), "{text}");
        }
        other => panic!("expected an SFTP error, got {other:?}"),
    }
    s.close().await.unwrap();
}
