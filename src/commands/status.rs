//! `devcluster status`: one cluster's nodes.

use serde::Serialize;

use super::Ctx;
use crate::cli::OutputArgs;
use crate::error::ExitStatus;
use crate::state;
use crate::ui::{self, OutputFormat};

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: String,
    pub os: String,
    pub ip: String,
    /// What the VM is: from the provider when one manages it, else the
    /// node's phase from state (`planned` before a VM exists).
    pub vm: String,
    /// Node readiness in Kubernetes, when known.
    pub kubernetes: Option<String>,
    pub last_step: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub provider: String,
    pub kubernetes_version: String,
    pub api_endpoint: String,
    pub subnet: String,
    pub nodes: Vec<NodeStatus>,
}

pub fn status(ctx: &Ctx, args: &OutputArgs) -> anyhow::Result<ExitStatus> {
    let name = ctx.cluster_name()?;
    let s = state::load_existing(&ctx.dirs, name)?;
    let status = ClusterStatus {
        name: s.name.clone(),
        provider: s.plan.provider.to_string(),
        kubernetes_version: s.plan.kubernetes_version.clone(),
        api_endpoint: format!("https://{}", s.plan.network.api_endpoint),
        subnet: s.plan.network.subnet.to_string(),
        nodes: s
            .plan
            .nodes
            .iter()
            .map(|n| {
                let ns = s.node(&n.name);
                NodeStatus {
                    name: n.name.clone(),
                    role: n.role.as_str().into(),
                    os: n.os.as_str().into(),
                    ip: n.ip.to_string(),
                    vm: ns.phase.as_str().into(),
                    kubernetes: None,
                    last_step: ns.last_step().map(str::to_string),
                }
            })
            .collect(),
    };
    match args.output {
        OutputFormat::Json => ctx.printer.json(&status)?,
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = status
                .nodes
                .iter()
                .map(|n| {
                    vec![
                        n.name.clone(),
                        n.role.clone(),
                        n.os.clone(),
                        n.ip.clone(),
                        n.vm.clone(),
                        n.kubernetes.clone().unwrap_or_else(|| "-".into()),
                        n.last_step.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            ctx.printer.out(format!(
                "cluster {} ({}, Kubernetes {}, API {})\n\n{}",
                status.name,
                status.provider,
                status.kubernetes_version,
                status.api_endpoint,
                ui::table(
                    &["NODE", "ROLE", "OS", "IP", "VM", "KUBERNETES", "LAST STEP"],
                    &rows
                )
            ));
        }
    }
    Ok(ExitStatus::Success)
}
