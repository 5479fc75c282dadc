//! One file per verb. Each is thin: read state, call the core, print.

use clap::ArgMatches;

use crate::dirs::Dirs;
use crate::spec::{Origin, Val};
use crate::ui::Printer;

pub mod completions;
pub mod dashboard;
pub mod destroy;
pub mod doctor;
pub mod images;
pub mod kubeconfig;
pub mod lifecycle;
pub mod list;
pub mod logs;
pub mod node;
pub mod ssh;
pub mod status;
pub mod up;
pub mod use_;

/// What every command gets.
pub struct Ctx {
    pub dirs: Dirs,
    pub printer: Printer,
    /// The `--cluster` value and where it came from (not validated yet).
    pub cluster: Val<String>,
}

impl Ctx {
    /// The cluster name after validation.
    pub fn cluster_name(&self) -> Result<&str, crate::error::UserError> {
        crate::spec::validate_cluster_name(&self.cluster)?;
        Ok(&self.cluster.value)
    }
}

/// Origin of a clap argument's value: the flag, or its environment variable.
pub fn arg_origin(
    matches: &ArgMatches,
    id: &str,
    flag: &'static str,
    env: Option<&'static str>,
) -> Origin {
    match (matches.value_source(id), env) {
        (Some(clap::parser::ValueSource::EnvVariable), Some(var)) => Origin::Env(var),
        (Some(clap::parser::ValueSource::DefaultValue), _) => Origin::Default,
        _ => Origin::Flag(flag),
    }
}

/// The async runtime of commands that talk to hypervisors and guests: a
/// small multi-threaded one (blocking libvirt calls run beside SSH).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// How long a finished command waits for work still running on its
/// runtime (a blocking libvirt call, an SSH channel closing).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Ends a command's runtime: its worker threads are stopped and joined
/// before the process exits.
///
/// Why not `shutdown_background`: it returns while the workers are still
/// dropping tasks (and, with them, libvirt connections), so they raced
/// the process's exit handlers. On CI a `status` that had printed its
/// JSON died of SIGSEGV in a worker thread inside libc. Joining removes
/// that race; the grace bounds a blocking call that would not return.
pub fn finish(runtime: tokio::runtime::Runtime) {
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
}

/// How long a node may take from start to answering SSH (software
/// emulation boots take a minute or two).
pub const SSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// Per node, in parallel: wait for SSH, run the node's steps (skipping
/// those done), with progress on the terminal and the state saved after
/// every event, so a kill or Ctrl-C leaves a state `up` continues from.
/// Nodes that finish become ready; a failed step is reported with the last
/// lines of the node's log.
pub async fn provision(
    ctx: &Ctx,
    st: &mut crate::state::ClusterState,
    secrets: &crate::pki::ClusterSecrets,
    scope: &crate::machines::Scope,
    capture: Option<crate::golden::Capture>,
) -> anyhow::Result<()> {
    use crate::machines::{self, ProvisionError};
    use crate::state::{self, NodePhase};
    let done = st
        .nodes
        .iter()
        .map(|(k, v)| (k.clone(), v.completed_steps.clone()))
        .collect();
    let plan = st.plan.clone();
    let mut scope = scope.clone();
    scope.rejoin = st
        .nodes
        .iter()
        .filter(|(_, n)| n.rejoin)
        .map(|(name, _)| name.clone())
        .collect();
    let scope = &scope;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let progress = crate::ui::NodeProgress::new(
        ctx.printer,
        plan.nodes
            .iter()
            .filter(|n| scope.includes(&n.name))
            .map(|n| n.name.as_str()),
    );
    let work = machines::provision_all(
        &ctx.dirs,
        &plan,
        secrets,
        &done,
        scope,
        capture,
        SSH_TIMEOUT,
        tx,
    );
    let mut golden_notes = Vec::new();
    tokio::pin!(work);
    let results = loop {
        tokio::select! {
            Some((node, ev)) = rx.recv() => {
                if let machines::NodeEvent::Golden(machines::GoldenEvent::NotKept(why)) = &ev {
                    golden_notes.push(format!("{node}: its prepared disk was not kept as a golden disk: {why}"));
                }
                machines::apply_event(st, &node, &ev, &progress);
                state::save(&ctx.dirs, st)?;
            }
            results = &mut work => break results,
            _ = tokio::signal::ctrl_c() => {
                progress.clear();
                state::save(&ctx.dirs, st)?;
                return Err(crate::error::UserError::new(format!(
                    "interrupted: cluster {} is partly provisioned",
                    st.name
                ))
                .hint("run `devcluster up` again to continue, or `devcluster destroy` to remove it")
                .into());
            }
        }
    };
    while let Ok((node, ev)) = rx.try_recv() {
        machines::apply_event(st, &node, &ev, &progress);
    }
    progress.clear();
    for note in golden_notes {
        ctx.printer.warn(note);
    }
    let mut failures: Vec<(usize, String, ProvisionError)> = Vec::new();
    for (node, r) in results {
        match r {
            Ok(()) => {
                // A step that failed before and was not run now (`start`)
                // still stands.
                let ns = st.nodes.entry(node).or_default();
                if ns.failed_step.is_none() {
                    ns.phase = NodePhase::Ready;
                }
            }
            Err(e) => {
                if let Some(ns) = st.nodes.get_mut(&node) {
                    ns.phase = NodePhase::Failed;
                }
                if let ProvisionError::Step(step) = &e
                    && !step.tail().is_empty()
                {
                    ctx.printer.info(format!("last lines of {node}'s log:"));
                    for line in step.tail() {
                        ctx.printer.info(format!("  {line}"));
                    }
                }
                let order = plan.nodes.iter().position(|n| n.name == node);
                failures.push((order.unwrap_or(usize::MAX), node, e));
            }
        }
    }
    state::save(&ctx.dirs, st)?;
    // In plan order, the control plane first: the workers' failures often
    // follow from its.
    failures.sort_by_key(|(order, _, _)| *order);
    let mut failures: Vec<(String, ProvisionError)> =
        failures.into_iter().map(|(_, n, e)| (n, e)).collect();
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0).1.into()),
        _ => Err(machines::NodesFailed(failures).into()),
    }
}
