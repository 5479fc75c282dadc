//! `devcluster destroy`: removes everything a cluster has, from any state.

use std::collections::BTreeSet;

use anyhow::Context as _;

use super::Ctx;
use crate::cli::DestroyArgs;
use crate::error::{ExitStatus, UserError};
use crate::providers::{self, ProviderConfig};
use crate::spec::{Layer, ProviderKind};
use crate::state::{self, ClusterLock, ClusterState, NodePhase};

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
        let st = state::load(&ctx.dirs, name).ok().flatten();
        let had_vms = remove_machines(ctx, name, st.as_ref())?;
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
        if existed || had_vms {
            ctx.printer.info(format!("destroyed cluster {name}"));
        } else {
            ctx.printer
                .info(format!("cluster {name} does not exist; nothing to destroy"));
        }
    }
    Ok(ExitStatus::Success)
}

/// Deletes the cluster's VMs, storage and network: the nodes the state
/// names plus any VM the provider knows as this cluster's (so a lost state
/// file leaves nothing behind). Without a usable provider this is only an
/// error if the state says VMs were created.
fn remove_machines(ctx: &Ctx, name: &str, st: Option<&ClusterState>) -> anyhow::Result<bool> {
    let defaults = Layer::from_env().over(Layer::defaults());
    let (kind, config) = match st {
        Some(s) => (
            s.plan.provider,
            ProviderConfig {
                libvirt_uri: s.plan.libvirt.uri.clone(),
                libvirt_domain_type: s.plan.libvirt.domain_type,
                cache_dir: ctx.dirs.cache.clone(),
            },
        ),
        None => (
            ProviderKind::Auto,
            ProviderConfig {
                libvirt_uri: defaults.libvirt_uri.map(|v| v.value).unwrap_or_default(),
                libvirt_domain_type: crate::spec::DomainType::Qemu,
                cache_dir: ctx.dirs.cache.clone(),
            },
        ),
    };
    let created = st
        .map(|s| s.nodes.values().any(|n| n.phase != NodePhase::Planned))
        .unwrap_or(false);
    let runtime = super::runtime()?;
    let r = runtime.block_on(async {
        let provider = match providers::select(kind, &config).await {
            Ok((p, _)) => p,
            Err(e) if created => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot delete the VMs of cluster {name}")));
            }
            Err(_) => return Ok(false),
        };
        let mut nodes: BTreeSet<String> = st
            .map(|s| s.plan.nodes.iter().map(|n| n.name.clone()).collect())
            .unwrap_or_default();
        nodes.extend(
            provider
                .cluster_vms(name)
                .await
                .with_context(|| format!("listing the VMs of cluster {name}"))?,
        );
        for node in &nodes {
            provider
                .delete_node(node)
                .await
                .with_context(|| format!("deleting VM {node}"))?;
        }
        provider.remove_storage(name).await?;
        provider.remove_network(name).await?;
        let found = !nodes.is_empty() && st.is_none();
        if !nodes.is_empty() {
            ctx.printer.info(format!(
                "deleted VMs {} and the network of cluster {name} ({})",
                nodes.into_iter().collect::<Vec<_>>().join(", "),
                provider.kind()
            ));
        }
        Ok(found)
    });
    super::finish(runtime);
    r.map_err(|e| {
        e.context(UserError::new(format!("destroying cluster {name} failed; nothing was removed from its state, run destroy again")))
    })
}
