//! `devcluster node add|remove`: grow or shrink a cluster.
//!
//! `add --linux` plans the lowest free `NAME-wN` (its address, MAC and
//! host key follow from the name as for every node), creates its VM and
//! runs its steps. On an initialised cluster it joins: the bootstrap token
//! from `up` lives 24 hours, so when the API server no longer has it, a
//! fresh one is registered first (as `kubeadm token create` does) and
//! kept as the cluster's token ([`crate::kube::token`], shared with `up`). On a cluster whose control plane is not
//! initialised yet, the node is prepared and `up` joins it later.
//!
//! `add --windows` is the same for the lowest free `NAME-winN`, sized and
//! imaged like the cluster's other Windows workers (else the defaults),
//! from the Windows base disk `images build` made (missing: refused before
//! anything changes); its Kubernetes steps are [`crate::windows_join`]'s.
//!
//! `remove NODE` cordons and drains the worker through the API server
//! (DaemonSet and static pods stay, as with `kubectl drain
//! --ignore-daemonsets`), runs `kubeadm reset` on a Windows worker (so its
//! kubelet cannot register it again), deletes its Node object, then its VM
//! and disks, and drops it from the plan. The control plane is never removed:
//! `destroy` removes whole clusters.

use std::sync::Arc;

use anyhow::Context as _;
use std::time::Duration;

use super::Ctx;
use crate::cli::{NodeAddArgs, NodeCommand, NodeRemoveArgs};
use crate::error::{ExitStatus, HintExt, UserError};
use crate::kube::client;
use crate::machines;
use crate::plan::{Os, Plan, Role};
use crate::providers::Provider;
use crate::state::{self, ClusterLock, ClusterState, NodePhase};

/// How long the API server may take to answer before `node add/remove`
/// gives up on it.
const API_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long draining may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

pub fn node(ctx: &Ctx, cmd: &NodeCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        NodeCommand::Add(args) => add(ctx, args),
        NodeCommand::Remove(args) => remove(ctx, args),
    }
}

/// A client whose API server answers, or an error saying how to get there.
async fn answering_client(ctx: &Ctx, st: &ClusterState) -> anyhow::Result<kube::Client> {
    let path = crate::pki::admin_kubeconfig_path(&ctx.dirs, &st.name);
    let kube = client::client_from_admin_kubeconfig(&path).await?;
    client::wait_api_healthy(&kube, API_ANSWER_TIMEOUT)
        .await
        .map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "the API server of cluster {} does not answer",
                st.name
            ))
        })
        .hint(format!(
            "see `devcluster --cluster {} status`; `devcluster start` or `resume` the cluster if it is halted or suspended",
            st.name
        ))?;
    Ok(kube)
}

/// The size of a new `os` worker: like the cluster's other workers of
/// that OS, else devcluster's defaults for one.
fn worker_size(plan: &Plan, os: Os) -> anyhow::Result<(u32, u32, u32)> {
    if let Some(w) = plan
        .nodes
        .iter()
        .find(|n| n.os == os && n.role == Role::Worker)
    {
        return Ok((w.cpus, w.memory_mib, w.disk_gib));
    }
    let defaults = crate::spec::resolve(
        crate::spec::Val::new(plan.cluster.clone(), crate::spec::Origin::Default),
        crate::spec::Layer::default(),
    )?;
    let m = match os {
        Os::Linux => &defaults.linux,
        Os::Windows => &defaults.windows,
    };
    Ok((m.cpus.value, m.memory_mib.value, m.disk_gib.value))
}

/// The image of a new Windows worker: the cluster's other Windows
/// workers', else the default Windows image (its base disk must be built).
fn windows_image(plan: &Plan) -> anyhow::Result<String> {
    if let Some(w) = plan.nodes.iter().find(|n| n.os == Os::Windows) {
        return Ok(w.image.clone());
    }
    let defaults = crate::spec::resolve(
        crate::spec::Val::new(plan.cluster.clone(), crate::spec::Origin::Default),
        crate::spec::Layer::default(),
    )?;
    Ok(defaults.windows_image.value)
}

fn add(ctx: &Ctx, args: &NodeAddArgs) -> anyhow::Result<ExitStatus> {
    let name = ctx.cluster_name()?;
    let _lock = ClusterLock::acquire(&ctx.dirs, name, "devcluster node add")?;
    let mut st = state::load_existing(&ctx.dirs, name)?;
    if st.node(&st.plan.control_plane().name).phase == NodePhase::Planned {
        return Err(
            UserError::new(format!("cluster {name} has no machines yet"))
                .hint(format!(
                    "create it with `devcluster --cluster {name} up --workers N`"
                ))
                .into(),
        );
    }
    let mut plan = st.plan.clone();
    let new = if args.windows {
        // From the Windows base disk `images build` made (resolve_bases
        // below refuses before anything changes when it is missing).
        let size = worker_size(&plan, Os::Windows)?;
        let image = windows_image(&plan)?;
        crate::plan::add_windows_worker(&mut plan, size, &image)?
    } else {
        let image = plan.control_plane().image.clone();
        let size = worker_size(&plan, Os::Linux)?;
        crate::plan::add_linux_worker(&mut plan, size, &image)?
    };
    if let Some(host) = crate::host::physical_memory_mib()
        && plan.total_memory_mib() > host
    {
        return Err(UserError::new(format!(
            "with {new} the cluster needs {} MiB of memory but this host has {host} MiB",
            plan.total_memory_mib()
        ))
        .hint("remove a worker first (`devcluster node remove NODE`)")
        .into());
    }
    let join = st.initialised();
    let p = &ctx.printer;
    let runtime = super::runtime()?;
    let result = runtime.block_on(async {
        let provider = super::lifecycle::cluster_provider(ctx, &st).await?;
        let downloads = crate::ui::DownloadProgress::new(*p);
        let fetch = crate::images::Fetch::new(&downloads).offline(args.offline);
        let bases = machines::resolve_bases(&ctx.dirs, &plan, provider.kind(), &fetch).await;
        let software = match &bases {
            Ok(_) => crate::images::node_software::ensure_for_plan(&ctx.dirs, &plan, &fetch)
                .await
                .map(drop),
            Err(_) => Ok(()),
        };
        downloads.clear();
        let bases = bases?;
        software?;
        if join {
            let kube = answering_client(ctx, &st).await?;
            let token = crate::pki::ensure(&ctx.dirs, &st.plan)?.bootstrap_token;
            if crate::kube::token::ensure_joinable(&kube, &ctx.dirs, name, &token)
                .await?
                .renew()
            {
                p.info("the bootstrap token from `up` has expired: registered a new one");
            }
        }

        st.plan = plan;
        st.nodes.entry(new.clone()).or_default();
        state::save(&ctx.dirs, &st)?;
        let secrets = crate::pki::ensure(&ctx.dirs, &st.plan)?;
        let node = st
            .plan
            .node(&new)
            .ok_or_else(|| crate::error::Bug(format!("{new} vanished from the plan")))?
            .clone();
        let vm = machines::vm_spec(&ctx.dirs, &st.plan, &node, &bases[&node.image], &secrets)?;
        let mut vms = vec![vm];
        let (cloned, notes) =
            machines::choose_disks(&ctx.dirs, provider.as_ref(), &mut st, &mut vms).await?;
        for note in notes
            .into_iter()
            .chain(crate::golden::report(&cloned, None))
        {
            p.info(note);
        }
        state::save(&ctx.dirs, &st)?;
        for notice in provider.prepare_create().await? {
            p.warn(notice);
        }
        p.info(format!(
            "creating {new} ({}) on {}",
            node.ip,
            provider.kind()
        ));
        let created = machines::create_and_start(provider, &st.plan, vms, |_, _| {}).await;
        if created.is_ok() {
            st.nodes.entry(new.clone()).or_default().phase = NodePhase::Created;
        }
        state::save(&ctx.dirs, &st)?;
        created?;
        let scope = machines::Scope {
            only: Some(new.clone()),
            join,
            offline: args.offline,
            ..machines::Scope::default()
        };
        super::provision(ctx, &mut st, &secrets, &scope, None).await?;
        if join {
            let kube = client::client_from_admin_kubeconfig(&secrets.admin_kubeconfig_path).await?;
            p.info(format!("waiting for {new} to be Ready"));
            let deadlines = crate::provision::deadlines::Deadlines::for_plan(&st.plan);
            if node.os == Os::Windows {
                let ip = node.ip.to_string();
                crate::kube::windows::wait_windows_nodes_ready(
                    &kube,
                    &[(new.clone(), ip)],
                    crate::windows_join::ready_bound(&deadlines),
                )
                .await?;
            } else {
                client::wait_nodes_ready(&kube, std::slice::from_ref(&new), deadlines.nodes_ready)
                    .await?;
            }
        }
        anyhow::Ok(())
    });
    super::finish(runtime);
    result?;
    let ip = st
        .plan
        .node(&new)
        .map(|n| n.ip.to_string())
        .unwrap_or_default();
    if join {
        p.out(format!("{new} ({ip}) joined cluster {name} and is Ready"));
    } else if st.plan.kubernetes {
        p.out(format!(
            "{new} ({ip}) is prepared; it joins when `devcluster --cluster {name} up` has initialised the control plane"
        ));
    } else {
        p.out(format!("{new} ({ip}) added to cluster {name}"));
    }
    Ok(ExitStatus::Success)
}

/// Drains `node`, then (a Windows worker) `kubeadm reset` on it, so its
/// kubelet stops and cannot register it again, then deletes its Node
/// object. A reset that fails is a warning: the VM goes next anyway.
async fn drain_reset_delete(
    ctx: &Ctx,
    st: &ClusterState,
    kube: &kube::Client,
    node: &crate::plan::NodePlan,
) -> anyhow::Result<client::Drained> {
    let drained = client::drain_node(kube, &node.name, DRAIN_TIMEOUT).await?;
    if drained.registered {
        if node.os == Os::Windows {
            let secrets = crate::pki::ensure(&ctx.dirs, &st.plan)?;
            match crate::windows_join::reset_node(node, &secrets).await {
                Ok(()) => ctx
                    .printer
                    .info(format!("{}: kubeadm reset done", node.name)),
                Err(e) => ctx.printer.warn(format!(
                    "{}: kubeadm reset failed ({e:#}); its VM is deleted anyway",
                    node.name
                )),
            }
        }
        client::delete_node(kube, &node.name).await?;
    }
    Ok(drained)
}

fn remove(ctx: &Ctx, args: &NodeRemoveArgs) -> anyhow::Result<ExitStatus> {
    let name = ctx.cluster_name()?;
    let _lock = ClusterLock::acquire(&ctx.dirs, name, "devcluster node remove")?;
    let mut st = state::load_existing(&ctx.dirs, name)?;
    let Some(node) = st.plan.node(&args.node).cloned() else {
        let names: Vec<&str> = st.plan.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(
            UserError::new(format!("cluster {name} has no node {}", args.node))
                .hint(format!("its nodes are {}", names.join(", ")))
                .into(),
        );
    };
    if node.role == Role::ControlPlane {
        return Err(UserError::new(format!(
            "{} is the control plane and cannot be removed",
            node.name
        ))
        .hint(format!(
            "`devcluster --cluster {name} destroy` removes the whole cluster"
        ))
        .into());
    }
    let p = &ctx.printer;
    let registered = st.initialised();
    let runtime = super::runtime()?;
    let result = runtime.block_on(async {
        if registered {
            let drained = match answering_client(ctx, &st).await {
                Ok(kube) => drain_reset_delete(ctx, &st, &kube, &node).await,
                Err(e) => Err(e),
            };
            match drained {
                Ok(d) if d.registered => p.info(format!(
                    "drained {} ({} pods evicted) and deleted it from Kubernetes",
                    node.name,
                    d.evicted.len()
                )),
                Ok(_) => p.info(format!("{} was not registered with Kubernetes", node.name)),
                Err(e) if args.force => p.warn(format!(
                    "not drained ({e:#}); removing the VM anyway (--force): delete the Node object later with `kubectl delete node {}`",
                    node.name
                )),
                Err(e) => {
                    return Err(e)
                        .context(format!("cannot drain {}", node.name))
                        .hint(format!(
                            "`devcluster node remove {} --force` removes the VM without draining it",
                            node.name
                        ));
                }
            }
        }
        let provider: Arc<dyn Provider> = super::lifecycle::cluster_provider(ctx, &st).await?;
        provider.delete_node(&node.name).await?;
        anyhow::Ok(())
    });
    super::finish(runtime);
    result?;
    st.plan.nodes.retain(|n| n.name != node.name);
    st.nodes.remove(&node.name);
    crate::windows_join::forget_agent_tokens(&ctx.dirs, name, &node.name);
    state::save(&ctx.dirs, &st)?;
    // known_hosts follows the plan.
    crate::pki::ensure(&ctx.dirs, &st.plan)?;
    p.out(format!("removed {} from cluster {name}", node.name));
    Ok(ExitStatus::Success)
}
