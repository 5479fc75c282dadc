//! A Windows worker's Kubernetes steps inside `up` and `node add`: the
//! effects around the pure steps of [`crate::provision::windows_node`].
//!
//! A Windows worker's task in [`crate::machines::provision_all`] runs
//! `prepare-os` like every node, then [`kubernetes`]:
//!
//! 1. it waits for the cluster's one patch release
//!    ([`Plan::kubernetes_release`]): the control plane's prepare-node
//!    chooses it, and kubelet/kubeadm/kube-proxy.exe must be exactly that
//!    release, so nothing can be fetched before;
//! 2. the host fetches the Windows node software for that release once
//!    ([`Shared::software`]: the first Windows task fetches, the others
//!    wait for the same result) through the images cache
//!    ([`node_software::ensure_all`]: verified, offline-aware);
//! 3. `prepare-windows-node` uploads it (files the node already has are
//!    skipped by sha256) and installs containerd, crictl and the kubelet
//!    service;
//! 4. `join-windows` joins with the Linux workers' token, CA hash and
//!    deadline rules, in parallel with them, stopping when the control
//!    plane fails (as a Linux worker's `join` does);
//! 5. `network-windows` waits for the control plane's `network-addon` (it
//!    creates the agents' ServiceAccounts), asks the TokenRequest API for
//!    flanneld's and kube-proxy's tokens and starts both agents.
//!
//! A step already done (in the state) is skipped without building it: its
//! software and tokens are not needed then. `up`'s readiness wait for
//! Windows nodes is [`wait_ready`].

use std::sync::Arc;

use crate::dirs::Dirs;
use crate::images::node_software::{self, CachedArtifact, NodeSoftwareError};
use crate::machines::{ControlPlaneProgress, NodeEvent, ProvisionError};
use crate::pki::ClusterSecrets;
use crate::plan::{NodePlan, Os, Plan};
use crate::provision::deadlines::Deadlines;
use crate::provision::log::NodeLog;
use crate::provision::ssh::Session;
use crate::provision::windows_node::{self, AgentTokens};
use crate::provision::{Step, StepEvent};

/// The node software of the cluster's release, fetched once per
/// [`crate::machines::provision_all`] for all its Windows workers.
pub type SoftwareCell = tokio::sync::OnceCell<Result<Vec<CachedArtifact>, Arc<NodeSoftwareError>>>;

/// What a Windows worker's task waits on and shares with the others.
#[derive(Clone)]
pub struct Shared {
    /// How far the control plane's task got: the release its
    /// prepare-node chose (when the plan has none yet), or its failure.
    /// The same channel Linux workers wait on.
    pub control_plane: tokio::sync::watch::Receiver<ControlPlaneProgress>,
    /// True once the control plane's `network-addon` is done.
    pub addon: tokio::sync::watch::Receiver<bool>,
    pub software: Arc<SoftwareCell>,
    /// Never download (`--offline`): the software must be in the cache.
    pub offline: bool,
}

/// The Windows Kubernetes steps, in order (after `prepare-os`).
pub const STEPS: [&str; 3] = [
    windows_node::PREPARE,
    windows_node::JOIN,
    windows_node::NETWORK,
];

/// The steps a Windows worker runs again when the control plane was
/// re-created (a new cluster: a new join, new agent identities).
pub const JOIN_STEPS: [&str; 2] = [windows_node::JOIN, windows_node::NETWORK];

/// Waits for `wanted`, or fails when the control plane fails first.
async fn unless_cp_fails<T>(
    shared: &Shared,
    plan: &Plan,
    node: &str,
    step: &str,
    wanted: impl std::future::Future<Output = T>,
) -> Result<T, ProvisionError> {
    let mut cp = shared.control_plane.clone();
    let failed = crate::machines::control_plane_failed(&mut cp);
    tokio::select! {
        // A failed control plane first: its task drops its sender right
        // after saying it failed.
        biased;
        () = failed => Err(ProvisionError::ControlPlaneFailed {
            node: node.to_string(),
            step: step.to_string(),
            control_plane: plan.control_plane().name.clone(),
        }),
        v = wanted => Ok(v),
    }
}

/// Runs `step` unless it is done (see the module documentation).
async fn run(
    session: &Session,
    step: Step,
    done: &[String],
    log: &mut NodeLog,
    send: &(impl Fn(NodeEvent) + Sync),
) -> Result<(), ProvisionError> {
    let step = step.with_test_hook_from_env();
    crate::provision::run_steps(session, std::slice::from_ref(&step), done, log, |ev| {
        send(NodeEvent::Step(ev))
    })
    .await?;
    Ok(())
}

fn skip_if_done(name: &str, done: &[String], log: &mut NodeLog, send: &impl Fn(NodeEvent)) -> bool {
    if done.iter().any(|d| d == name) {
        let _ = log.line(name, "skipped: already done");
        send(NodeEvent::Step(StepEvent::Skipped(name.to_string())));
        return true;
    }
    false
}

/// The node software of `plan` at `release`, fetched on the first call.
async fn software(
    dirs: &Dirs,
    plan: &Plan,
    shared: &Shared,
    log: &mut NodeLog,
    send: &impl Fn(NodeEvent),
) -> Result<Vec<CachedArtifact>, Arc<NodeSoftwareError>> {
    let release = plan.kubernetes_release.clone().unwrap_or_default();
    send(NodeEvent::Waiting(format!(
        "Windows node software for Kubernetes {release} (host cache) ..."
    )));
    let fetched = shared
        .software
        .get_or_init(|| async {
            let catalog = node_software::catalog_for_plan(plan).map_err(Arc::new)?;
            let quiet = crate::images::download::NoProgress;
            let fetch = crate::images::Fetch::new(&quiet).offline(shared.offline);
            node_software::ensure_all(dirs, &catalog, &fetch)
                .await
                .map_err(Arc::new)
        })
        .await
        .clone();
    if let Ok(files) = &fetched {
        for a in files {
            let _ = log.line(
                windows_node::PREPARE,
                &format!(
                    "{} {} from the host cache {} (sha256 {}){}",
                    a.name,
                    a.version,
                    a.path.display(),
                    a.sha256,
                    if a.downloaded { ", downloaded now" } else { "" }
                ),
            );
        }
    }
    fetched
}

/// Where the host keeps when a Windows node's agent tokens expire (not a
/// secret): `<cluster>/windows-agents/NODE.json`.
pub fn agent_record_path(dirs: &Dirs, cluster: &str, node: &str) -> std::path::PathBuf {
    dirs.cluster(cluster)
        .join("windows-agents")
        .join(format!("{node}.json"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AgentRecord {
    /// RFC 3339: the earlier of the two tokens' expiry.
    expires: String,
}

fn read_expiry(dirs: &Dirs, cluster: &str, node: &str) -> Option<time::OffsetDateTime> {
    let text = std::fs::read(agent_record_path(dirs, cluster, node)).ok()?;
    let r: AgentRecord = serde_json::from_slice(&text).ok()?;
    time::OffsetDateTime::parse(&r.expires, &time::format_description::well_known::Rfc3339).ok()
}

fn write_expiry(dirs: &Dirs, cluster: &str, node: &str, expires: time::OffsetDateTime) {
    let path = agent_record_path(dirs, cluster, node);
    let Ok(expires) = expires.format(&time::format_description::well_known::Rfc3339) else {
        return;
    };
    let text = serde_json::to_vec_pretty(&AgentRecord { expires }).unwrap_or_default();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = crate::fsutil::atomic_write(&path, &text, crate::fsutil::Access::Normal);
}

/// `node remove`: the node's record goes with it.
pub fn forget_agent_tokens(dirs: &Dirs, cluster: &str, node: &str) {
    let _ = std::fs::remove_file(agent_record_path(dirs, cluster, node));
}

/// The agents' tokens from the TokenRequest API, with the admin
/// kubeconfig on the host (the node never sees that), and the earlier of
/// their expiries.
async fn agent_tokens(
    secrets: &ClusterSecrets,
) -> Result<(AgentTokens, Option<time::OffsetDateTime>), crate::kube::client::KubeError> {
    use crate::kube::{client::KubeError, windows};
    let kube =
        crate::kube::client::client_from_admin_kubeconfig(&secrets.admin_kubeconfig_path).await?;
    let token = |ns: &'static str, sa: &'static str| {
        let kube = kube.clone();
        async move {
            let (token, expires) =
                windows::agent_token_expiring(&kube, ns, sa)
                    .await
                    .map_err(|source| KubeError::Token {
                        account: format!("{ns}/{sa}"),
                        source,
                    })?;
            // An answer without a token would leave the agent unable to
            // authenticate: refuse it here rather than time out later.
            if token.expose().is_empty() {
                return Err(KubeError::NoToken {
                    account: format!("{ns}/{sa}"),
                });
            }
            Ok((token, expires))
        }
    };
    let (flannel, a) = token(windows::FLANNEL_NAMESPACE, windows::FLANNEL_WINDOWS_SA).await?;
    let (kube_proxy, b) = token("kube-system", windows::KUBE_PROXY_WINDOWS_SA).await?;
    let expires = match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    };
    Ok((
        AgentTokens {
            flannel,
            kube_proxy,
        },
        expires,
    ))
}

/// The Kubernetes steps of Windows worker `node` (see the module
/// documentation), on its open `session`, logging to its `log`.
#[allow(clippy::too_many_arguments)]
pub async fn kubernetes(
    dirs: &Dirs,
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    session: &Session,
    log: &mut NodeLog,
    done: &[String],
    shared: Shared,
    send: impl Fn(NodeEvent) + Sync,
) -> Result<(), ProvisionError> {
    let name = node.name.as_str();
    let bug = |source| ProvisionError::Steps {
        node: name.to_string(),
        source,
    };
    let mut plan = plan.clone();
    let deadlines = Deadlines::for_plan(&plan);

    if !skip_if_done(windows_node::PREPARE, done, log, &send) {
        if plan.kubernetes_release.is_none() {
            let _ = log.line(
                windows_node::PREPARE,
                "waiting for the control plane's prepare-node to choose the cluster's Kubernetes release",
            );
            send(NodeEvent::Waiting(
                "waiting for the control plane's Kubernetes release".into(),
            ));
        }
        let release = match plan.kubernetes_release.clone() {
            Some(r) => Some(r),
            None => {
                let mut cp = shared.control_plane.clone();
                unless_cp_fails(&shared, &plan, name, windows_node::PREPARE, async {
                    match cp
                        .wait_for(|p| *p != ControlPlaneProgress::Preparing)
                        .await
                        .map(|p| p.clone())
                    {
                        Ok(ControlPlaneProgress::Prepared(release)) => release,
                        _ => None,
                    }
                })
                .await?
            }
        };
        let Some(release) = release else {
            return Err(ProvisionError::NodeSoftware {
                node: name.to_string(),
                source: Arc::new(NodeSoftwareError::NoRelease {
                    minor: plan.kubernetes_version.clone(),
                }),
            });
        };
        plan.kubernetes_release = Some(release);
        let files = software(dirs, &plan, &shared, log, &send)
            .await
            .map_err(|source| ProvisionError::NodeSoftware {
                node: name.to_string(),
                source,
            })?;
        let step = windows_node::prepare(&plan, node, &files).map_err(bug)?;
        run(session, step, done, log, &send).await?;
    }

    if !skip_if_done(windows_node::JOIN, done, log, &send) {
        let taint = plan.windows_taint;
        let step = windows_node::join(&plan, node, secrets, &deadlines, taint).map_err(bug)?;
        let joined = unless_cp_fails(
            &shared,
            &plan,
            name,
            windows_node::JOIN,
            run(session, step, done, log, &send),
        )
        .await;
        match joined {
            Ok(r) => r?,
            Err(e) => {
                let _ = log.line(windows_node::JOIN, "stopped: the control plane failed");
                return Err(e);
            }
        }
    }

    // Agent tokens close to expiry (a year after they were asked for):
    // network-windows runs again with new ones.
    let mut done = done.to_vec();
    if done.iter().any(|d| d == windows_node::NETWORK) {
        let expires = read_expiry(dirs, &plan.cluster, name);
        let decision =
            crate::kube::windows::decide_agent_tokens(expires, time::OffsetDateTime::now_utc());
        if decision.renew() {
            let _ = log.line(
                windows_node::NETWORK,
                &format!("renewing the agents' tokens ({decision:?}, expiry {expires:?})"),
            );
            crate::provision::forget_step(session, windows_node::NETWORK).await?;
            done.retain(|d| d != windows_node::NETWORK);
        }
    }
    let done = done.as_slice();
    if !skip_if_done(windows_node::NETWORK, done, log, &send) {
        let mut addon = shared.addon.clone();
        let _ = log.line(
            windows_node::NETWORK,
            "waiting for the control plane's network-addon (the agents' ServiceAccounts)",
        );
        let applied = unless_cp_fails(&shared, &plan, name, windows_node::NETWORK, async {
            addon.wait_for(|a| *a).await.is_ok()
        })
        .await?;
        if !applied {
            return Err(ProvisionError::ControlPlaneFailed {
                node: name.to_string(),
                step: windows_node::NETWORK.into(),
                control_plane: plan.control_plane().name.clone(),
            });
        }
        let (tokens, expires) =
            agent_tokens(secrets)
                .await
                .map_err(|source| ProvisionError::Kube {
                    node: name.to_string(),
                    step: windows_node::NETWORK.into(),
                    source: Box::new(source),
                })?;
        let step = windows_node::network(&plan, node, secrets, &tokens, &deadlines).map_err(bug)?;
        run(session, step, done, log, &send).await?;
        if let Some(expires) = expires {
            write_expiry(dirs, &plan.cluster, name, expires);
        }
    }
    Ok(())
}

/// Whether `node`'s task runs [`kubernetes`].
pub fn joins(plan: &Plan, node: &NodePlan) -> bool {
    plan.kubernetes && node.os == Os::Windows
}

/// How long Windows nodes may take to be ready for pods once their steps
/// are done: the Linux bound, [`windows_node::WINDOWS_JOIN_FACTOR`] times
/// (the first pull of the Windows pause image, HNS network creation).
pub fn ready_bound(deadlines: &Deadlines) -> std::time::Duration {
    deadlines.nodes_ready * windows_node::WINDOWS_JOIN_FACTOR
}

/// From the host: every Windows node of `plan` ready for pods
/// ([`crate::kube::windows::windows_node_not_ready`]: Ready, its build
/// reported, a pod CIDR, flanneld.exe registered), bounded by
/// [`ready_bound`]; the timeout names what is missing on which node.
pub async fn wait_ready(
    kube: &kube::Client,
    plan: &Plan,
    deadlines: &Deadlines,
) -> Result<(), crate::kube::client::KubeError> {
    let nodes: Vec<(String, String)> = plan
        .nodes
        .iter()
        .filter(|n| n.os == Os::Windows)
        .map(|n| (n.name.clone(), n.ip.to_string()))
        .collect();
    if nodes.is_empty() {
        return Ok(());
    }
    crate::kube::windows::wait_windows_nodes_ready(kube, &nodes, ready_bound(deadlines)).await
}

/// How long `node remove` waits for a Windows node's SSH before its reset.
const RESET_SSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The PowerShell `node remove` runs on a Windows worker: `kubeadm reset`
/// (stops the kubelet, removes its certificates and kubeadm's files).
pub fn reset_command() -> String {
    crate::provision::remote::pwsh_exec_string(
        "if (Test-Path 'C:\\k\\kubeadm.exe') { & 'C:\\k\\kubeadm.exe' reset --force --cri-socket 'npipe:////./pipe/containerd-containerd' } else { Write-Output 'no C:\\k\\kubeadm.exe: nothing to reset' }",
    )
}

/// `kubeadm reset` on Windows worker `node` over SSH.
pub async fn reset_node(node: &NodePlan, secrets: &ClusterSecrets) -> anyhow::Result<()> {
    use crate::provision::ssh::{SshTarget, wait_for_ssh};
    let target = SshTarget::for_node(node, secrets)?;
    let (session, _) = wait_for_ssh(&target, RESET_SSH_TIMEOUT).await?;
    let out = session.exec_collect(&reset_command(), None).await?;
    let _ = session.close().await;
    if out.code != 0 {
        anyhow::bail!(
            "kubeadm reset exited {}: {}",
            out.code,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_nodes_wait_longer_than_linux_ones() {
        let d = Deadlines::scaled(1);
        assert_eq!(ready_bound(&d), d.nodes_ready * 2);
        assert!(ready_bound(&d) > d.nodes_ready);
    }

    /// A mixed plan: every node's steps as its task runs them, in order:
    /// `node_steps` (prepare-os, then Linux's Kubernetes steps) followed,
    /// on a Windows worker, by [`STEPS`]; what `step_order` documents.
    #[test]
    fn step_order_of_a_mixed_plan_as_run() {
        let plan = crate::kube::kubeadm::tests::plan("1.36");
        let tmp = tempfile::tempdir().unwrap();
        let secrets = crate::pki::ensure(&crate::dirs::Dirs::under(tmp.path()), &plan).unwrap();
        let mut seen = Vec::new();
        for node in &plan.nodes {
            let mut names: Vec<String> = crate::machines::node_steps(&plan, node, &secrets, None)
                .unwrap()
                .into_iter()
                .map(|s| s.name)
                .collect();
            if joins(&plan, node) {
                names.extend(STEPS.iter().map(|s| s.to_string()));
            }
            assert_eq!(names, windows_node::step_order(node), "{}", node.name);
            seen.push((node.os, names));
        }
        assert!(seen.iter().any(|(os, _)| *os == Os::Windows));
        assert_eq!(
            seen.iter().find(|(os, _)| *os == Os::Windows).unwrap().1,
            [
                "prepare-os",
                "prepare-windows-node",
                "join-windows",
                "network-windows"
            ]
        );
        // Machines only: prepare-os alone, on every OS.
        let mut machines = plan.clone();
        machines.kubernetes = false;
        for node in &machines.nodes {
            assert!(!joins(&machines, node));
            let steps = crate::machines::node_steps(&machines, node, &secrets, None).unwrap();
            assert_eq!(steps.len(), 1);
        }
    }

    #[test]
    fn the_agents_expiry_is_kept_per_node_and_forgotten_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(tmp.path());
        assert_eq!(read_expiry(&dirs, "dev", "dev-win1"), None);
        let at = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        write_expiry(&dirs, "dev", "dev-win1", at);
        assert_eq!(read_expiry(&dirs, "dev", "dev-win1"), Some(at));
        assert_eq!(read_expiry(&dirs, "dev", "dev-win2"), None);
        forget_agent_tokens(&dirs, "dev", "dev-win1");
        assert_eq!(read_expiry(&dirs, "dev", "dev-win1"), None);
    }

    #[test]
    fn the_reset_command_parses_and_names_the_windows_cri() {
        let cmd = reset_command();
        crate::test_support::assert_pwsh_parses("reset", &cmd);
        assert!(
            cmd.contains("& 'C:\\k\\kubeadm.exe' reset --force"),
            "{cmd}"
        );
        assert!(cmd.contains(crate::kube::kubeadm::CRI_SOCKET_WINDOWS));
    }
}
