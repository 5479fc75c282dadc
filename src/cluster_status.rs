//! What `devcluster status` and the dashboard show of one cluster: each
//! node as the state file, the provider, an SSH probe and the API server
//! see it. One function computes it for both.

use std::sync::Arc;

use serde::Serialize;

use crate::dirs::Dirs;
use crate::providers::{self, Provider, ProviderConfig, VmState};
use crate::state::{ClusterState, NodePhase};

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub provider: String,
    pub kubernetes_version: String,
    pub api_endpoint: String,
    pub subnet: String,
    pub nodes: Vec<NodeStatus>,
}

/// Opens the provider a cluster was created with.
pub async fn cluster_provider(dirs: &Dirs, st: &ClusterState) -> anyhow::Result<Arc<dyn Provider>> {
    let config = ProviderConfig {
        libvirt_uri: st.plan.libvirt.uri.clone(),
        libvirt_domain_type: st.plan.libvirt.domain_type,
        cache_dir: dirs.cache.clone(),
    };
    let (p, _) = providers::select(st.plan.provider, &config).await?;
    Ok(Arc::from(p))
}

/// The status from the state file alone (no hypervisor, no network).
pub fn from_state(st: &ClusterState) -> ClusterStatus {
    ClusterStatus {
        name: st.name.clone(),
        provider: st.plan.provider.to_string(),
        kubernetes_version: st.plan.kubernetes_version.clone(),
        api_endpoint: format!("https://{}", st.plan.network.api_endpoint),
        subnet: st.plan.network.subnet.to_string(),
        nodes: st
            .plan
            .nodes
            .iter()
            .map(|n| {
                let ns = st.node(&n.name);
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
    }
}

/// The full status: the state file, then (for clusters whose VMs were
/// created) the provider's VM states, SSH probes of running VMs and, once
/// initialised, node readiness from the API server. Bounded: a 1 s probe
/// per node, one 5 s API request.
pub async fn gather(dirs: &Dirs, st: &ClusterState) -> anyhow::Result<ClusterStatus> {
    let mut status = from_state(st);
    if !st.nodes.values().any(|n| n.phase != NodePhase::Planned) {
        return Ok(status);
    }
    let provider = match cluster_provider(dirs, st).await {
        Ok(p) => p,
        Err(e) => {
            for n in &mut status.nodes {
                n.vm = format!("unknown ({e})");
            }
            return Ok(status);
        }
    };
    for n in &mut status.nodes {
        let state = provider.state(&n.name).await?;
        n.vm = state.to_string();
        if state == VmState::Running {
            let addr = std::net::SocketAddr::new(n.ip.parse()?, 22);
            let probe = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            n.ssh = Some(matches!(probe, Ok(Ok(_))));
        }
    }
    kubernetes(dirs, st, &mut status).await;
    Ok(status)
}

/// Each node's readiness from the API server, once `kubeadm init` ran on
/// the control plane and its VM is running. One request, bounded.
async fn kubernetes(dirs: &Dirs, st: &ClusterState, status: &mut ClusterStatus) {
    use crate::kube::client;
    if !st.initialised() {
        return;
    }
    let cp = st.plan.control_plane();
    let cp_running = status
        .nodes
        .iter()
        .any(|n| n.name == cp.name && n.vm == VmState::Running.to_string());
    if !cp_running {
        for n in &mut status.nodes {
            n.kubernetes = Some("API down: the control plane is not running".into());
        }
        return;
    }
    let path = crate::pki::admin_kubeconfig_path(dirs, &st.name);
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
