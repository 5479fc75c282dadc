//! `devcluster status`: one cluster's nodes.

use super::Ctx;
use crate::cli::OutputArgs;
use crate::cluster_status;
use crate::error::ExitStatus;
use crate::state;
use crate::ui::{self, OutputFormat};

pub fn status(ctx: &Ctx, args: &OutputArgs) -> anyhow::Result<ExitStatus> {
    let name = ctx.cluster_name()?;
    let s = state::load_existing(&ctx.dirs, name)?;
    let status = {
        let runtime = super::runtime()?;
        let r = runtime.block_on(cluster_status::gather(&ctx.dirs, &s));
        super::finish(runtime);
        r?
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
                        match n.ssh {
                            Some(true) => "yes".into(),
                            Some(false) => "no".into(),
                            None => "-".into(),
                        },
                        n.phase.clone(),
                        n.kubernetes.clone().unwrap_or_else(|| "-".into()),
                        match (&n.kubelet_version, &n.windows_build) {
                            (Some(v), Some(b)) => format!("{v}, build {b}"),
                            (Some(v), None) => v.clone(),
                            (None, _) => "-".into(),
                        },
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
                    &[
                        "NODE",
                        "ROLE",
                        "OS",
                        "IP",
                        "VM",
                        "SSH",
                        "PHASE",
                        "KUBERNETES",
                        "VERSION",
                        "LAST STEP"
                    ],
                    &rows
                )
            ));
        }
    }
    Ok(ExitStatus::Success)
}
