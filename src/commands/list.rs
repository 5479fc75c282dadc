//! `devcluster list`: every cluster, from state alone (fast: no hypervisor
//! calls, so it answers in milliseconds with twenty clusters).

use serde::Serialize;

use super::Ctx;
use crate::cli::OutputArgs;
use crate::error::ExitStatus;
use crate::state::{self, ClusterState, Listed, NodePhase};
use crate::ui::{self, OutputFormat};

#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub name: String,
    pub provider: String,
    pub nodes: usize,
    pub state: String,
    pub api_endpoint: Option<String>,
    /// kubectl's current context is this cluster's.
    pub current: bool,
}

/// A cluster's overall state from its nodes' phases.
pub fn cluster_state(s: &ClusterState) -> &'static str {
    let phases: Vec<NodePhase> = s.plan.nodes.iter().map(|n| s.node(&n.name).phase).collect();
    if phases.contains(&NodePhase::Failed) {
        "failed"
    } else if phases.iter().all(|p| *p == NodePhase::Ready) {
        "ready"
    } else if phases.iter().all(|p| *p == NodePhase::Planned) {
        "planned"
    } else {
        "incomplete"
    }
}

pub fn list(ctx: &Ctx, args: &OutputArgs) -> anyhow::Result<ExitStatus> {
    // Never fails the list: an unreadable kubeconfig means "no current".
    let current = crate::kubeconfig::current_devcluster_context();
    let entries: Vec<ListEntry> = state::list(&ctx.dirs)?
        .into_iter()
        .map(|l| match l {
            Listed::Ok(s) => ListEntry {
                current: current.as_deref() == Some(s.name.as_str()),
                name: s.name.clone(),
                provider: s.plan.provider.to_string(),
                nodes: s.plan.nodes.len(),
                state: cluster_state(&s).to_string(),
                api_endpoint: Some(format!("https://{}", s.plan.network.api_endpoint)),
            },
            Listed::Broken { name, error } => ListEntry {
                current: current.as_deref() == Some(name.as_str()),
                name,
                provider: "?".into(),
                nodes: 0,
                state: format!("unreadable: {error}"),
                api_endpoint: None,
            },
        })
        .collect();
    match args.output {
        OutputFormat::Json => ctx.printer.json(&entries)?,
        OutputFormat::Table if entries.is_empty() => {
            ctx.printer
                .info("no clusters; create one with `devcluster up`");
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        if e.current { "*".into() } else { String::new() },
                        e.name.clone(),
                        e.provider.clone(),
                        e.nodes.to_string(),
                        e.state.clone(),
                        e.api_endpoint.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            ctx.printer.out(ui::table(
                &[
                    "CURRENT",
                    "NAME",
                    "PROVIDER",
                    "NODES",
                    "STATE",
                    "API SERVER",
                ],
                &rows,
            ));
        }
    }
    Ok(ExitStatus::Success)
}
