//! From a plan to running VMs: the part of `up` between secrets and SSH.
//!
//! Everything here is idempotent: networks, disks and VMs that exist are
//! kept, so `up` after a failure or a kill converges instead of starting
//! over, and a node whose VM vanished is created again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::dirs::Dirs;
use crate::images;
use crate::pki::ClusterSecrets;
use crate::plan::{NodePlan, Os, Plan};
use crate::providers::{BaseImage, NetworkSpec, Provider, ProviderError, VmSpec};

#[derive(Debug, thiserror::Error)]
pub enum MachinesError {
    #[error("node {node}: {message}")]
    Unsupported { node: String, message: String },
    #[error("node {node}: cannot render its seed")]
    Seed {
        node: String,
        #[source]
        source: crate::seed::SeedError,
    },
    #[error("node {node}: no SSH host key was generated for it")]
    NoHostKey { node: String },
    #[error(transparent)]
    Image(#[from] images::ImageError),
    #[error("node {node}")]
    Provider {
        node: String,
        #[source]
        source: ProviderError,
    },
    #[error(transparent)]
    Network(ProviderError),
}

/// Resolves every node's base image before anything is created, so a
/// missing image fails `up` with nothing changed.
pub fn resolve_bases(
    dirs: &Dirs,
    plan: &Plan,
    provider: crate::spec::ProviderKind,
) -> Result<BTreeMap<String, BaseImage>, MachinesError> {
    let mut out = BTreeMap::new();
    for node in &plan.nodes {
        if node.os == Os::Windows {
            return Err(MachinesError::Unsupported {
                node: node.name.clone(),
                message: "Windows workers need the Windows node support, which this devcluster build does not have yet (use --windows-workers 0)".into(),
            });
        }
        if !out.contains_key(&node.image) {
            let base = images::base_for(dirs, &node.image, node.os, provider)?;
            out.insert(node.image.clone(), base);
        }
    }
    Ok(out)
}

/// The VM definition of one node: sizes from the plan, its seed ISO, its
/// serial log in the cluster's log dir.
pub fn vm_spec(
    dirs: &Dirs,
    plan: &Plan,
    node: &NodePlan,
    base: &BaseImage,
    secrets: &ClusterSecrets,
) -> Result<VmSpec, MachinesError> {
    let host = secrets
        .host_key(&node.name)
        .ok_or_else(|| MachinesError::NoHostKey {
            node: node.name.clone(),
        })?;
    let seed = crate::seed::seed_inputs_for(
        plan,
        node,
        &secrets.ssh_client.public_line,
        host.private_openssh.expose(),
        &host.public_line,
    );
    let seed_iso = crate::seed::linux_seed_iso(&seed).map_err(|source| MachinesError::Seed {
        node: node.name.clone(),
        source,
    })?;
    Ok(VmSpec {
        cluster: plan.cluster.clone(),
        name: node.name.clone(),
        role: node.role.as_str().into(),
        os: node.os,
        cpus: node.cpus,
        memory_mib: node.memory_mib,
        disk_gib: node.disk_gib,
        mac: node.mac.clone(),
        base: base.clone(),
        seed_iso,
        serial_log: dirs
            .cluster(&plan.cluster)
            .join("logs")
            .join(format!("{}.serial.log", node.name)),
    })
}

/// Ensures the network, then creates and starts every VM in parallel.
/// Calls `on_node(name, result)` as each node finishes.
pub async fn create_and_start(
    provider: Arc<dyn Provider>,
    plan: &Plan,
    vms: Vec<VmSpec>,
    mut on_node: impl FnMut(&str, &Result<(), MachinesError>),
) -> Result<(), MachinesError> {
    provider
        .ensure_network(&NetworkSpec::from_plan(plan))
        .await
        .map_err(MachinesError::Network)?;
    let mut set = tokio::task::JoinSet::new();
    for vm in vms {
        let p = provider.clone();
        set.spawn(async move {
            let r = async {
                p.create_node(&vm).await?;
                p.start(&vm.name).await
            }
            .await
            .map_err(|source| MachinesError::Provider {
                node: vm.name.clone(),
                source,
            });
            (vm.name, r)
        });
    }
    let mut first_err = None;
    while let Some(joined) = set.join_next().await {
        let (name, r) = joined.map_err(|e| MachinesError::Unsupported {
            node: "?".into(),
            message: format!("task failed: {e}"),
        })?;
        on_node(&name, &r);
        if let Err(e) = r
            && first_err.is_none()
        {
            first_err = Some(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
