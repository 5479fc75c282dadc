//! `devcluster ssh NODE [-- CMD...]`: the system `ssh` with our key and the
//! pinned host keys (StrictHostKeyChecking=yes: a guest whose host key is
//! not the one devcluster generated is refused). The command's exit code
//! is devcluster's.

use std::process::Command;

use super::Ctx;
use crate::cli::SshArgs;
use crate::error::{ExitStatus, UserError};
use crate::pki::PkiPaths;
use crate::seed::cloud_init::USER;
use crate::state;

/// The ssh command line for a node (also used by tests and `logs`).
pub fn ssh_command(ctx: &Ctx, node: &str, command: &[String]) -> anyhow::Result<Command> {
    let cluster = ctx.cluster_name()?;
    let st = state::load_existing(&ctx.dirs, cluster)?;
    let Some(n) = st.plan.node(node) else {
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
    let paths = PkiPaths::new(&ctx.dirs, cluster);
    let ssh = which("ssh").ok_or_else(|| {
        UserError::new("no `ssh` program found on PATH")
            .hint("install the OpenSSH client (Debian/Ubuntu: apt install openssh-client; Windows: the OpenSSH Client optional feature)")
    })?;
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
        .arg(format!("{USER}@{}", n.ip));
    if !command.is_empty() {
        c.arg("--").args(command);
    }
    Ok(c)
}

pub fn ssh(ctx: &Ctx, args: &SshArgs) -> anyhow::Result<ExitStatus> {
    let mut c = ssh_command(ctx, &args.node, &args.command)?;
    let status = c.status()?;
    Ok(match status.code() {
        Some(0) => ExitStatus::Success,
        Some(code) => ExitStatus::Child(u8::try_from(code).unwrap_or(1)),
        // Killed by a signal.
        None => ExitStatus::Failure,
    })
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
