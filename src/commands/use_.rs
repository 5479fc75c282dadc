//! `devcluster use [NAME]`: switch kubectl's current context to
//! `devcluster-NAME`, or list the devcluster contexts.

use super::Ctx;
use crate::cli::UseArgs;
use crate::error::ExitStatus;
use crate::kubeconfig::{self, Kubeconfig};
use crate::spec::{Origin, Val, validate_cluster_name};
use crate::{state, ui};

pub fn use_(ctx: &Ctx, args: &UseArgs) -> anyhow::Result<ExitStatus> {
    let kc = Kubeconfig::from_env()?;
    let Some(name) = &args.name else {
        return list(ctx, &kc);
    };
    validate_cluster_name(&Val::new(name.clone(), Origin::Flag("NAME")))?;
    let context = kubeconfig::context_name(name);
    // A cluster whose entries are not in the kubeconfig (removed, or a new
    // KUBECONFIG) gets them merged; otherwise only current-context changes.
    let file = if !kc.contexts()?.contains(&context) && state::load(&ctx.dirs, name)?.is_some() {
        kubeconfig::merge_cluster(&ctx.dirs, name, true)?
    } else {
        kc.use_context(&context)?
    };
    ctx.printer.info(format!(
        "switched to context {context} (in {})",
        file.display()
    ));
    Ok(ExitStatus::Success)
}

fn list(ctx: &Ctx, kc: &Kubeconfig) -> anyhow::Result<ExitStatus> {
    let current = kc.current_context()?;
    let rows: Vec<Vec<String>> = kc
        .contexts()?
        .into_iter()
        .filter_map(|c| {
            let cluster = kubeconfig::cluster_of_context(&c)?.to_string();
            let mark = if current.as_deref() == Some(c.as_str()) {
                "*"
            } else {
                ""
            };
            Some(vec![mark.to_string(), cluster, c])
        })
        .collect();
    if rows.is_empty() {
        ctx.printer.info(
            "your kubeconfig has no devcluster contexts; `devcluster up` creates a cluster and its context",
        );
    } else {
        ctx.printer
            .out(ui::table(&["CURRENT", "CLUSTER", "CONTEXT"], &rows));
    }
    Ok(ExitStatus::Success)
}
