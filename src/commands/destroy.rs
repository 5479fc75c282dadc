//! `devcluster destroy`: removes everything a cluster has, from any state.

use super::Ctx;
use crate::cli::DestroyArgs;
use crate::error::ExitStatus;
use crate::state::{self, ClusterLock};

pub fn destroy(ctx: &Ctx, args: &DestroyArgs) -> anyhow::Result<ExitStatus> {
    let names: Vec<String> = if args.all {
        state::list(&ctx.dirs)?
            .iter()
            .map(|l| l.name().to_string())
            .collect()
    } else {
        vec![ctx.cluster_name()?.to_string()]
    };
    if names.is_empty() {
        ctx.printer.info("no clusters to destroy");
        return Ok(ExitStatus::Success);
    }
    if !args.yes && ctx.printer.interactive() {
        let question = format!(
            "Destroy {} and everything in {}?",
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" }
        );
        if !ctx.printer.confirm(&question) {
            ctx.printer.info("nothing destroyed");
            return Ok(ExitStatus::Failure);
        }
    }
    for name in &names {
        let _lock = ClusterLock::acquire(&ctx.dirs, name, "devcluster destroy")?;
        let existed = ctx.dirs.cluster(name).exists();
        // Before the state goes: if the kubeconfig cannot be edited (locked,
        // malformed), destroy stops with the cluster still known and can be
        // run again once that is fixed.
        for file in crate::kubeconfig::remove_cluster_entries(name)? {
            ctx.printer.info(format!(
                "removed {} from {}",
                crate::kubeconfig::context_name(name),
                file.display()
            ));
        }
        state::remove(&ctx.dirs, name)?;
        if existed {
            ctx.printer.info(format!("destroyed cluster {name}"));
        } else {
            ctx.printer
                .info(format!("cluster {name} does not exist; nothing to destroy"));
        }
    }
    Ok(ExitStatus::Success)
}
