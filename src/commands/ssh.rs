//! `devcluster ssh NODE [-- CMD...]`: the system `ssh` with our key and the
//! pinned host keys (StrictHostKeyChecking=yes: a guest whose host key is
//! not the one devcluster generated is refused). The command's exit code
//! is devcluster's. Each ARG reaches the node as one word, a single one is
//! a whole command line, quoted for the node's shell: a POSIX shell on
//! Linux, PowerShell on Windows ([`crate::provision::remote`]). Without a
//! command: an interactive shell (bash, or PowerShell as Administrator).

use std::process::Command;

use super::Ctx;
use crate::cli::SshArgs;
use crate::error::{ExitStatus, UserError};
use crate::pki::PkiPaths;
use crate::provision::remote;
use crate::provision::ssh::login_user;
use crate::state;

/// The node's plan entry, or an error listing the nodes there are.
fn node_plan(
    ctx: &Ctx,
    node: &str,
) -> anyhow::Result<(state::ClusterState, crate::plan::NodePlan)> {
    let cluster = ctx.cluster_name()?;
    let st = state::load_existing(&ctx.dirs, cluster)?;
    let Some(n) = st.plan.node(node).cloned() else {
        return Err(
            UserError::new(format!("cluster {cluster} has no node {node}"))
                .hint(format!(
                    "its nodes are {}",
                    st.plan
                        .nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into(),
        );
    };
    Ok((st, n))
}

/// The system ssh command line for a node.
fn ssh_command(
    ctx: &Ctx,
    cluster: &str,
    ssh: &std::path::Path,
    n: &crate::plan::NodePlan,
    command: &[String],
) -> Command {
    let paths = PkiPaths::new(&ctx.dirs, cluster);
    let mut c = Command::new(ssh);
    c.arg("-i")
        .arg(paths.ssh_client_key())
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            paths.known_hosts().display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg(format!("{}@{}", login_user(n.os), n.ip));
    if !command.is_empty() {
        // ssh joins its arguments with spaces: give it the one string.
        c.arg("--").arg(remote::command_line(n.os, command));
    }
    c
}

pub fn ssh(ctx: &Ctx, args: &SshArgs) -> anyhow::Result<ExitStatus> {
    let (st, n) = node_plan(ctx, &args.node)?;
    let code = match which("ssh") {
        Some(ssh) => {
            let status = ssh_command(ctx, &st.name, &ssh, &n, &args.command).status()?;
            // None: killed by a signal.
            status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1))
        }
        None if args.command.is_empty() => {
            return Err(UserError::new("no `ssh` program found on PATH for an interactive shell")
                .hint("install the OpenSSH client (Debian/Ubuntu: apt install openssh-client; Windows: the OpenSSH Client optional feature), or give a command: devcluster ssh NODE -- CMD")
                .into());
        }
        // No ssh binary: run the command over our own SSH client.
        None => russh_exec(ctx, &st, &n, &args.command)?,
    };
    Ok(if code == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Child(code)
    })
}

/// Runs a command on a node with devcluster's own SSH client (the pinned
/// host key, our key), streaming its output; returns its exit code.
fn russh_exec(
    ctx: &Ctx,
    st: &state::ClusterState,
    n: &crate::plan::NodePlan,
    command: &[String],
) -> anyhow::Result<u8> {
    use crate::provision::ssh::{Session, SshTarget, Stream};
    let secrets = crate::pki::ensure(&ctx.dirs, &st.plan)?;
    let target = SshTarget::for_node(n, &secrets)?;
    // The same string the system ssh sends.
    let line = remote::command_line(n.os, command);
    let runtime = super::runtime()?;
    let r = runtime.block_on(async {
        let session = Session::connect(&target, std::time::Duration::from_secs(10)).await?;
        let code = session
            .exec(&line, None, |stream, bytes| match stream {
                Stream::Stdout => ctx.printer.raw(bytes),
                Stream::Stderr => ctx.printer.raw_err(bytes),
            })
            .await?;
        let _ = session.close().await;
        anyhow::Ok(code)
    });
    super::finish(runtime);
    Ok(u8::try_from(r?).unwrap_or(1))
}

/// Finds a program on PATH (with Windows' executable extensions).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    let exts: Vec<String> = if cfg!(windows) {
        std::env::var("PATHEXT")
            .unwrap_or_else(|_| ".EXE;.CMD;.BAT".into())
            .split(';')
            .map(str::to_string)
            .collect()
    } else {
        vec![String::new()]
    };
    std::env::split_paths(&path).find_map(|dir| {
        exts.iter()
            .map(|e| dir.join(format!("{program}{e}")))
            .find(|p| p.is_file())
    })
}
