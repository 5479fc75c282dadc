//! `devcluster status`: one cluster's nodes.

use serde::Serialize;

use super::Ctx;
use crate::cli::OutputArgs;
use crate::error::ExitStatus;
use crate::state::{self, ClusterState, NodePhase};
use crate::ui::{self, OutputFormat};

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: String,
    pub os: String,
    pub ip: String,
    /// What the VM is, from the provider (`absent`, `running`, `off`,
    /// `suspended`, ...); `not created` before `up` made it.
    pub vm: String,
    /// Where the node is in devcluster's own work: planned, created,
    /// ready, failed.
    pub phase: String,
    /// Whether the node's SSH port answers (only asked of running VMs).
    pub ssh: Option<bool>,
    /// Node readiness in Kubernetes (`Ready`, `NotReady: why`, `not
    /// registered`, `API unreachable: why`), once the control plane was
    /// initialised.
    pub kubernetes: Option<String>,
    /// The node's kubelet version, as it reports it.
    pub kubelet_version: Option<String>,
    /// A Windows node's build (`node.kubernetes.io/windows-build`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_build: Option<String>,
    pub last_step: Option<String>,
    /// The golden disk the node's disk is a clone of (see `images list`).
    pub golden_disk: Option<String>,
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
                    vm: "not created".into(),
                    phase: ns.phase.as_str().into(),
                    ssh: None,
                    kubernetes: None,
                    kubelet_version: None,
                    windows_build: None,
                    last_step: ns.last_step().map(str::to_string),
                    golden_disk: ns.from_golden.clone(),
                }
            })
            .collect(),
    };
    let mut status = status;
    if s.nodes.values().any(|n| n.phase != NodePhase::Planned) {
        live(ctx, &s, &mut status)?;
    }
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

/// Asks the provider for each VM's state and probes SSH of running ones.
/// Only for clusters whose VMs were created: a planned cluster answers from
/// its state file alone (fast).
fn live(ctx: &Ctx, st: &ClusterState, status: &mut ClusterStatus) -> anyhow::Result<()> {
    let runtime = super::runtime()?;
    let r = runtime.block_on(async {
        let provider = match super::lifecycle::cluster_provider(ctx, st).await {
            Ok(p) => p,
            Err(e) => {
                for n in &mut status.nodes {
                    n.vm = format!("unknown ({e})");
                }
                return Ok(());
            }
        };
        for n in &mut status.nodes {
            let state = provider.state(&n.name).await?;
            n.vm = state.to_string();
            if state == crate::providers::VmState::Running {
                let addr = std::net::SocketAddr::new(n.ip.parse()?, 22);
                let probe = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    tokio::net::TcpStream::connect(addr),
                )
                .await;
                n.ssh = Some(matches!(probe, Ok(Ok(_))));
            }
        }
        kubernetes(ctx, st, status).await;
        anyhow::Ok(())
    });
    runtime.shutdown_background();
    r
}

/// Each node's readiness from the API server, once `kubeadm init` ran on
/// the control plane and its VM is running. One request, bounded.
async fn kubernetes(ctx: &Ctx, st: &ClusterState, status: &mut ClusterStatus) {
    use crate::kube::client;
    if !st.initialised() {
        return;
    }
    let cp = st.plan.control_plane();
    let cp_running = status
        .nodes
        .iter()
        .any(|n| n.name == cp.name && n.vm == crate::providers::VmState::Running.to_string());
    if !cp_running {
        for n in &mut status.nodes {
            n.kubernetes = Some("API down: the control plane is not running".into());
        }
        return;
    }
    let path = crate::pki::admin_kubeconfig_path(&ctx.dirs, &st.name);
    let nodes = match client::client_from_admin_kubeconfig(&path).await {
        Ok(kube) => client::list_nodes(&kube, std::time::Duration::from_secs(5)).await,
        Err(e) => Err(e.to_string()),
    };
    for n in &mut status.nodes {
        match &nodes {
            Ok(nodes) => {
                let (readiness, version) = client::node_readiness(nodes, &n.name);
                n.kubernetes = Some(readiness);
                n.kubelet_version = version;
                if n.os == crate::plan::Os::Windows.as_str() {
                    windows_status(nodes, n);
                }
            }
            Err(e) => n.kubernetes = Some(format!("API unreachable: {e}")),
        }
    }
}

/// A Windows node: its build, and readiness including its network agent
/// (`crate::kube::windows::windows_node_not_ready`).
fn windows_status(nodes: &[k8s_openapi::api::core::v1::Node], n: &mut NodeStatus) {
    use crate::kube::windows;
    n.windows_build = windows::windows_build(nodes, &n.name);
    if let Some(node) = nodes
        .iter()
        .find(|x| x.metadata.name.as_deref() == Some(n.name.as_str()))
        && let Some(why) = windows::windows_node_not_ready(node, &n.ip)
    {
        n.kubernetes = Some(format!("NotReady: {why}"));
    }
}
