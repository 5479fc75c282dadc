//! kubeadm's configuration files, rendered from the plan.
//!
//! The control plane gets one file with three documents: an
//! `InitConfiguration` (our bootstrap token, the node's IP as the API
//! server's advertise address, containerd, the kubelet's `node-ip`), a
//! `ClusterConfiguration` (the plan's API endpoint, pod and service
//! networks, the API server's extra SANs) and a `KubeletConfiguration`
//! (systemd cgroups, the cluster DNS address). Workers get a
//! `JoinConfiguration`: discovery by the bootstrap token, pinned to the
//! cluster CA by its public-key hash. The kubeadm API version comes from
//! `provisioners/kubernetes-versions.toml`; `v1beta3` and `v1beta4` are
//! rendered (they differ here only in `kubeletExtraArgs`: a map in v1beta3,
//! a list of `{name, value}` in v1beta4).
//!
//! # `kubernetesVersion`
//!
//! The host knows the minor (`1.36`); apt on the node installs that minor's
//! newest patch release, which the host cannot know without the internet.
//! `stable-1.36` would make kubeadm ask dl.k8s.io (and fall back to its own
//! version after a timeout when it cannot), and `--kubernetes-version`
//! cannot be combined with `--config`. So the `ClusterConfiguration` says
//! `kubernetesVersion:` [`VERSION_PLACEHOLDER`] and `init-control-plane.sh`
//! replaces that exact line with `kubeadm version -o short`: the control
//! plane runs exactly the version of the kubeadm and kubelet installed.
//!
//! # Secrets
//!
//! Both files contain the bootstrap token, so they are [`Secret`]s: upload
//! them with mode 0600 ([`node_files`] says so) and never log them.
//!
//! # Timeouts
//!
//! With v1beta4, kubeadm waits [`SLOW_TIMEOUT`] instead of its 4-5 minute
//! defaults for the kubelet, the control plane's components and a joining
//! kubelet's TLS bootstrap: without KVM the VMs run under software
//! emulation and everything takes several times longer.
//!
//! YAML comes from `serde_norway`, never from string templates.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Bug;
use crate::pki::{ClusterSecrets, Secret};
use crate::plan::{API_PORT, NodePlan, Os, Plan, Role};
use crate::versions::KubernetesVersion;

/// Where the control plane's config goes in the guest.
pub const INIT_CONFIG_PATH: &str = "/etc/devcluster/kubeadm-init.yaml";
/// Where a worker's config goes in the guest.
pub const JOIN_CONFIG_PATH: &str = "/etc/devcluster/kubeadm-join.yaml";
/// Where kubeadm expects the cluster's CAs.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// The `kubernetesVersion` the init script replaces with the installed
/// kubeadm's version (see the module documentation).
pub const VERSION_PLACEHOLDER: &str = "DEVCLUSTER_INSTALLED_KUBEADM_VERSION";
/// containerd's CRI socket on Linux.
pub const CRI_SOCKET_LINUX: &str = "unix:///run/containerd/containerd.sock";
/// containerd's CRI socket on Windows.
pub const CRI_SOCKET_WINDOWS: &str = "npipe:////./pipe/containerd-containerd";
/// How long kubeadm waits for the kubelet, the control plane's components
/// and a joining kubelet's TLS bootstrap (kubeadm's defaults are 4-5
/// minutes; under software emulation, where no KVM is available, a node
/// is several times slower).
pub const SLOW_TIMEOUT: &str = "10m0s";
/// How long the bootstrap token is valid after `kubeadm init` (kubeadm's
/// default).
pub const TOKEN_TTL: &str = "24h0m0s";
pub const DNS_DOMAIN: &str = "cluster.local";

/// The kubeadm config API versions devcluster renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeadmApi {
    V1beta3,
    V1beta4,
}

impl KubeadmApi {
    pub fn of(version: &KubernetesVersion) -> Result<Self, Bug> {
        match version.kubeadm_api.as_str() {
            "kubeadm.k8s.io/v1beta3" => Ok(Self::V1beta3),
            "kubeadm.k8s.io/v1beta4" => Ok(Self::V1beta4),
            other => Err(Bug(format!(
                "Kubernetes {}: kubeadm API {other:?} is not one devcluster renders (v1beta3, v1beta4)",
                version.minor
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1beta3 => "kubeadm.k8s.io/v1beta3",
            Self::V1beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

/// A file a node needs before its kubeadm step: guest path, contents, mode.
#[derive(Debug, Clone)]
pub struct NodeFile {
    pub path: String,
    pub content: Secret,
    pub mode: u32,
}

// --- the documents -----------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitConfiguration<'a> {
    api_version: &'static str,
    kind: &'static str,
    bootstrap_tokens: Vec<BootstrapToken<'a>>,
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: ApiEndpoint,
    node_registration: NodeRegistration,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeouts: Option<Timeouts>,
}

/// v1beta4's kubeadm timeouts (v1beta3 has no such section).
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    control_plane_component_health_check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kubelet_health_check: Option<&'static str>,
    #[serde(rename = "tlsBootstrap", skip_serializing_if = "Option::is_none")]
    tls_bootstrap: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapToken<'a> {
    token: &'a str,
    description: &'static str,
    ttl: &'static str,
    usages: [&'static str; 2],
    groups: [&'static str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiEndpoint {
    advertise_address: String,
    bind_port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeRegistration {
    name: String,
    cri_socket: &'static str,
    kubelet_extra_args: ExtraArgs,
    /// `None`: kubeadm's default (no taint on a worker).
    #[serde(skip_serializing_if = "Option::is_none")]
    taints: Option<Vec<Taint>>,
}

#[derive(Serialize)]
struct Taint {
    key: &'static str,
    value: &'static str,
    effect: &'static str,
}

/// The taint a Windows worker may carry (`[windows] taint`): Linux pods
/// without an OS node selector (most charts) then never land on it.
pub const WINDOWS_TAINT: (&str, &str, &str) = ("os", "windows", "NoSchedule");
/// The label devcluster puts on its Windows workers (kubelet
/// `--node-labels`; kubelet may set labels outside `kubernetes.io`).
pub const WINDOWS_NODE_LABEL: &str = "devcluster.dev/windows-worker";
/// Where a Windows worker's JoinConfiguration goes.
pub const WINDOWS_JOIN_CONFIG_PATH: &str = "C:\\devcluster\\kubeadm-join.yaml";

#[derive(Serialize)]
#[serde(untagged)]
enum ExtraArgs {
    /// v1beta3
    Map(BTreeMap<&'static str, String>),
    /// v1beta4
    List(Vec<Arg>),
}

#[derive(Serialize)]
struct Arg {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfiguration {
    api_version: &'static str,
    kind: &'static str,
    cluster_name: String,
    kubernetes_version: &'static str,
    control_plane_endpoint: String,
    networking: Networking,
    api_server: ApiServer,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Networking {
    dns_domain: &'static str,
    pod_subnet: String,
    service_subnet: String,
}

#[derive(Serialize)]
struct ApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubeletConfiguration {
    api_version: &'static str,
    kind: &'static str,
    cgroup_driver: &'static str,
    #[serde(rename = "clusterDNS")]
    cluster_dns: Vec<String>,
    cluster_domain: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinConfiguration<'a> {
    api_version: &'static str,
    kind: &'static str,
    discovery: Discovery<'a>,
    node_registration: NodeRegistration,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeouts: Option<Timeouts>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Discovery<'a> {
    bootstrap_token: BootstrapTokenDiscovery<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapTokenDiscovery<'a> {
    api_server_endpoint: &'a str,
    token: &'a str,
    ca_cert_hashes: [&'a str; 1],
}

fn node_registration(api: KubeadmApi, node: &NodePlan) -> NodeRegistration {
    let node_ip = node.ip.to_string();
    let kubelet_extra_args = match api {
        KubeadmApi::V1beta3 => ExtraArgs::Map(BTreeMap::from([("node-ip", node_ip)])),
        KubeadmApi::V1beta4 => ExtraArgs::List(vec![Arg {
            name: "node-ip",
            value: node_ip,
        }]),
    };
    NodeRegistration {
        name: node.name.clone(),
        cri_socket: match node.os {
            Os::Linux => CRI_SOCKET_LINUX,
            Os::Windows => CRI_SOCKET_WINDOWS,
        },
        kubelet_extra_args,
        taints: None,
    }
}

/// A Windows worker's `JoinConfiguration`: the Linux workers' (same token,
/// CA hash, endpoint and timeouts) with containerd's named pipe, the
/// node label [`WINDOWS_NODE_LABEL`] and, when `taint`, [`WINDOWS_TAINT`].
/// Contains the bootstrap token.
pub fn windows_join_config_with(
    plan: &Plan,
    node: &NodePlan,
    token: &Secret,
    ca_cert_hash: &str,
    version: &KubernetesVersion,
    taint: bool,
) -> Result<Secret, Bug> {
    if node.os != Os::Windows {
        return Err(Bug(format!(
            "Windows join config asked for {}, a {} node",
            node.name,
            node.os.as_str()
        )));
    }
    let text = join_config_with(plan, node, token, ca_cert_hash, version)?;
    let mut doc: serde_norway::Value = serde_norway::from_str(text.expose())
        .map_err(|e| Bug(format!("cannot re-read the join config: {e}")))?;
    let api = KubeadmApi::of(version)?;
    let label = format!("{WINDOWS_NODE_LABEL}=true");
    let reg = &mut doc["nodeRegistration"];
    match api {
        KubeadmApi::V1beta3 => {
            reg["kubeletExtraArgs"]["node-labels"] = serde_norway::Value::from(label);
        }
        KubeadmApi::V1beta4 => {
            if let Some(list) = reg["kubeletExtraArgs"].as_sequence_mut() {
                list.push(to_value(Arg {
                    name: "node-labels",
                    value: label,
                })?);
            }
        }
    }
    if taint {
        let (key, value, effect) = WINDOWS_TAINT;
        reg["taints"] = to_value([Taint { key, value, effect }])?;
    }
    Ok(Secret::new(yaml_documents(&[doc])?))
}

fn yaml_documents(docs: &[serde_norway::Value]) -> Result<String, Bug> {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_norway::to_string(doc)
            .map_err(|e| Bug(format!("cannot render kubeadm YAML: {e}")))?;
        out.push_str(&text);
    }
    Ok(out)
}

fn to_value(doc: impl Serialize) -> Result<serde_norway::Value, Bug> {
    serde_norway::to_value(doc).map_err(|e| Bug(format!("cannot render kubeadm YAML: {e}")))
}

fn check_control_plane(plan: &Plan, node: &NodePlan) -> Result<(), Bug> {
    if node.role != Role::ControlPlane || node.os != Os::Linux {
        return Err(Bug(format!(
            "kubeadm init config asked for {} ({} {}), not the Linux control plane",
            node.name,
            node.os.as_str(),
            node.role.as_str()
        )));
    }
    if plan.network.api_endpoint != format!("{}:{API_PORT}", node.ip) {
        return Err(Bug(format!(
            "the plan's API endpoint {} is not the control plane {}:{API_PORT}",
            plan.network.api_endpoint, node.ip
        )));
    }
    Ok(())
}

/// The control plane's kubeadm config (three YAML documents); see the
/// module documentation. Contains the bootstrap token.
pub fn init_config(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    version: &KubernetesVersion,
) -> Result<Secret, Bug> {
    init_config_with(plan, node, &secrets.bootstrap_token, version)
}

/// [`init_config`] with the token given directly (tests use a fixed one).
pub fn init_config_with(
    plan: &Plan,
    node: &NodePlan,
    token: &Secret,
    version: &KubernetesVersion,
) -> Result<Secret, Bug> {
    check_control_plane(plan, node)?;
    let api = KubeadmApi::of(version)?;
    let init = InitConfiguration {
        api_version: api.as_str(),
        kind: "InitConfiguration",
        bootstrap_tokens: vec![BootstrapToken {
            token: token.expose(),
            description: "devcluster: joins the cluster's nodes",
            ttl: TOKEN_TTL,
            usages: ["signing", "authentication"],
            groups: ["system:bootstrappers:kubeadm:default-node-token"],
        }],
        local_api_endpoint: ApiEndpoint {
            advertise_address: node.ip.to_string(),
            bind_port: API_PORT,
        },
        node_registration: node_registration(api, node),
        timeouts: (api == KubeadmApi::V1beta4).then(|| Timeouts {
            control_plane_component_health_check: Some(SLOW_TIMEOUT),
            kubelet_health_check: Some(SLOW_TIMEOUT),
            ..Timeouts::default()
        }),
    };
    let cluster = ClusterConfiguration {
        api_version: api.as_str(),
        kind: "ClusterConfiguration",
        cluster_name: plan.cluster.clone(),
        kubernetes_version: VERSION_PLACEHOLDER,
        control_plane_endpoint: plan.network.api_endpoint.clone(),
        networking: Networking {
            dns_domain: DNS_DOMAIN,
            pod_subnet: plan.network.pod_cidr.to_string(),
            service_subnet: plan.network.service_cidr.to_string(),
        },
        api_server: ApiServer {
            cert_sans: vec![
                node.ip.to_string(),
                "127.0.0.1".into(),
                "localhost".into(),
                node.name.clone(),
            ],
        },
    };
    let kubelet = KubeletConfiguration {
        api_version: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        cgroup_driver: "systemd",
        cluster_dns: vec![plan.network.cluster_dns.to_string()],
        cluster_domain: DNS_DOMAIN,
    };
    let text = yaml_documents(&[to_value(init)?, to_value(cluster)?, to_value(kubelet)?])?;
    Ok(Secret::new(text))
}

/// A worker's `JoinConfiguration`. Contains the bootstrap token.
pub fn join_config(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    version: &KubernetesVersion,
) -> Result<Secret, Bug> {
    join_config_with(
        plan,
        node,
        &secrets.bootstrap_token,
        &secrets.ca_cert_hash,
        version,
    )
}

/// [`join_config`] with the token and CA hash given directly.
pub fn join_config_with(
    plan: &Plan,
    node: &NodePlan,
    token: &Secret,
    ca_cert_hash: &str,
    version: &KubernetesVersion,
) -> Result<Secret, Bug> {
    if node.role != Role::Worker {
        return Err(Bug(format!(
            "kubeadm join config asked for {}, which is not a worker",
            node.name
        )));
    }
    if !ca_cert_hash.starts_with("sha256:") {
        return Err(Bug("the CA hash is not sha256:<hex>".into()));
    }
    let api = KubeadmApi::of(version)?;
    let join = JoinConfiguration {
        api_version: api.as_str(),
        kind: "JoinConfiguration",
        discovery: Discovery {
            bootstrap_token: BootstrapTokenDiscovery {
                api_server_endpoint: &plan.network.api_endpoint,
                token: token.expose(),
                ca_cert_hashes: [ca_cert_hash],
            },
        },
        node_registration: node_registration(api, node),
        timeouts: (api == KubeadmApi::V1beta4).then(|| Timeouts {
            kubelet_health_check: Some(SLOW_TIMEOUT),
            tls_bootstrap: Some(SLOW_TIMEOUT),
            ..Timeouts::default()
        }),
    };
    Ok(Secret::new(yaml_documents(&[to_value(join)?])?))
}

/// Every file `node` needs before its kubeadm step, with its mode: on the
/// control plane the cluster CAs and service-account key in
/// [`PKI_DIR`] and [`INIT_CONFIG_PATH`]; on a worker [`JOIN_CONFIG_PATH`].
/// The configs are 0600 (they hold the bootstrap token).
pub fn node_files(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    version: &KubernetesVersion,
) -> Result<Vec<NodeFile>, Bug> {
    match node.role {
        Role::ControlPlane => {
            let mut files: Vec<NodeFile> = secrets
                .kubeadm_pki_files()
                .into_iter()
                .map(|(path, content, mode)| NodeFile {
                    path: format!("{PKI_DIR}/{path}"),
                    content: Secret::new(content),
                    mode,
                })
                .collect();
            files.push(NodeFile {
                path: INIT_CONFIG_PATH.into(),
                content: init_config(plan, node, secrets, version)?,
                mode: 0o600,
            });
            Ok(files)
        }
        Role::Worker => Ok(vec![NodeFile {
            path: JOIN_CONFIG_PATH.into(),
            content: join_config(plan, node, secrets, version)?,
            mode: 0o600,
        }]),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::{Layer, Origin, Val};

    pub(crate) const TOKEN: &str = "abcdef.0123456789abcdef";
    pub(crate) const HASH: &str =
        "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    pub(crate) fn plan(minor: &str) -> Plan {
        let layer = Layer {
            workers: Some(Val::new(2, Origin::Flag("--workers"))),
            windows_workers: Some(Val::new(1, Origin::Flag("--windows-workers"))),
            kubernetes_version: Some(Val::new(
                minor.to_string(),
                Origin::Flag("--kubernetes-version"),
            )),
            ..Layer::default()
        };
        let spec =
            crate::spec::resolve(Val::new("dev".into(), Origin::Flag("--cluster")), layer).unwrap();
        let plan = crate::plan::plan(&spec, &crate::plan::Surroundings::default()).unwrap();
        assert_eq!(plan.kubernetes_version, minor);
        plan
    }

    fn version(minor: &str) -> &'static KubernetesVersion {
        crate::versions::find(minor).unwrap()
    }

    fn init(minor: &str) -> String {
        let plan = plan(minor);
        let cp = plan.control_plane().clone();
        init_config_with(&plan, &cp, &Secret::new(TOKEN), version(minor))
            .unwrap()
            .expose()
            .to_string()
    }

    fn join(minor: &str, node: &str) -> String {
        let plan = plan(minor);
        let node = plan.node(node).unwrap().clone();
        join_config_with(&plan, &node, &Secret::new(TOKEN), HASH, version(minor))
            .unwrap()
            .expose()
            .to_string()
    }

    #[test]
    fn init_config_oldest_version() {
        insta::assert_snapshot!(init("1.35"));
    }

    #[test]
    fn init_config_newest_version() {
        insta::assert_snapshot!(init("1.37"));
    }

    #[test]
    fn join_config_oldest_version() {
        insta::assert_snapshot!(join("1.35", "dev-w1"));
    }

    #[test]
    fn join_config_newest_version() {
        insta::assert_snapshot!(join("1.37", "dev-w2"));
    }

    #[test]
    fn every_supported_version_has_a_kubeadm_api_we_render() {
        for v in crate::versions::supported() {
            KubeadmApi::of(v).unwrap();
        }
    }

    #[test]
    fn init_config_documents_parse_and_say_what_the_plan_says() {
        let plan = plan("1.36");
        let text = init("1.36");
        let docs: Vec<serde_norway::Value> = text
            .split("\n---\n")
            .map(|d| serde_norway::from_str(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "InitConfiguration",
                "ClusterConfiguration",
                "KubeletConfiguration"
            ]
        );
        let (init, cluster, kubelet) = (&docs[0], &docs[1], &docs[2]);
        assert_eq!(init["apiVersion"].as_str(), Some("kubeadm.k8s.io/v1beta4"));
        assert_eq!(init["bootstrapTokens"][0]["token"].as_str(), Some(TOKEN));
        assert_eq!(init["bootstrapTokens"][0]["ttl"].as_str(), Some("24h0m0s"));
        let cp_ip = plan.control_plane().ip.to_string();
        assert_eq!(
            init["localAPIEndpoint"]["advertiseAddress"].as_str(),
            Some(cp_ip.as_str())
        );
        assert_eq!(init["localAPIEndpoint"]["bindPort"].as_u64(), Some(6443));
        assert_eq!(
            init["nodeRegistration"]["kubeletExtraArgs"][0]["value"].as_str(),
            Some(cp_ip.as_str())
        );
        assert_eq!(
            cluster["controlPlaneEndpoint"].as_str(),
            Some(plan.network.api_endpoint.as_str())
        );
        assert_eq!(
            cluster["networking"]["podSubnet"].as_str(),
            Some("10.244.0.0/16")
        );
        assert_eq!(
            cluster["networking"]["serviceSubnet"].as_str(),
            Some("10.96.0.0/12")
        );
        assert_eq!(kubelet["clusterDNS"][0].as_str(), Some("10.96.0.10"));
        assert_eq!(kubelet["cgroupDriver"].as_str(), Some("systemd"));
        // The init script replaces exactly this line (init-control-plane.sh).
        let line = format!("kubernetesVersion: {VERSION_PLACEHOLDER}");
        assert_eq!(text.lines().filter(|l| *l == line).count(), 1, "{text}");
    }

    #[test]
    fn v1beta3_uses_a_map_for_kubelet_extra_args() {
        let plan = plan("1.36");
        let node = plan.node("dev-w1").unwrap();
        let mut old = version("1.36").clone();
        old.kubeadm_api = "kubeadm.k8s.io/v1beta3".into();
        let text = join_config_with(&plan, node, &Secret::new(TOKEN), HASH, &old).unwrap();
        let doc: serde_norway::Value = serde_norway::from_str(text.expose()).unwrap();
        assert_eq!(doc["apiVersion"].as_str(), Some("kubeadm.k8s.io/v1beta3"));
        assert_eq!(
            doc["nodeRegistration"]["kubeletExtraArgs"]["node-ip"].as_str(),
            Some(node.ip.to_string().as_str())
        );
        old.kubeadm_api = "kubeadm.k8s.io/v1beta5".into();
        assert!(join_config_with(&plan, node, &Secret::new(TOKEN), HASH, &old).is_err());
    }

    #[test]
    fn windows_workers_join_through_the_containerd_pipe() {
        let text = join("1.36", "dev-win1");
        assert!(
            text.contains("criSocket: npipe:////./pipe/containerd-containerd\n"),
            "{text}"
        );
    }

    fn windows_join_text(minor: &str, taint: bool) -> String {
        let plan = plan(minor);
        let node = plan.node("dev-win1").unwrap().clone();
        windows_join_config_with(
            &plan,
            &node,
            &Secret::new(TOKEN),
            HASH,
            version(minor),
            taint,
        )
        .unwrap()
        .expose()
        .to_string()
    }

    fn windows_join(minor: &str, taint: bool) -> serde_norway::Value {
        serde_norway::from_str(&windows_join_text(minor, taint)).unwrap()
    }

    #[test]
    fn windows_join_config_snapshot() {
        insta::assert_snapshot!(windows_join_text("1.36", true));
    }

    /// Each field against kubeadm v1beta4's JoinConfiguration
    /// (k8s.io/kubernetes cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go):
    /// discovery.bootstrapToken {apiServerEndpoint, token, caCertHashes},
    /// nodeRegistration {name, criSocket, kubeletExtraArgs [{name, value}],
    /// taints [{key, value, effect}]}, timeouts {kubeletHealthCheck,
    /// tlsBootstrap}.
    #[test]
    fn windows_join_config_fields_are_kubeadm_v1beta4() {
        let plan = plan("1.36");
        let node = plan.node("dev-win1").unwrap();
        let doc = windows_join("1.36", true);
        assert_eq!(doc["apiVersion"].as_str(), Some("kubeadm.k8s.io/v1beta4"));
        assert_eq!(doc["kind"].as_str(), Some("JoinConfiguration"));
        let d = &doc["discovery"]["bootstrapToken"];
        assert_eq!(
            d["apiServerEndpoint"].as_str(),
            Some(plan.network.api_endpoint.as_str())
        );
        assert_eq!(d["token"].as_str(), Some(TOKEN));
        assert_eq!(d["caCertHashes"][0].as_str(), Some(HASH));
        let r = &doc["nodeRegistration"];
        assert_eq!(r["name"].as_str(), Some("dev-win1"));
        assert_eq!(r["criSocket"].as_str(), Some(CRI_SOCKET_WINDOWS));
        let args: Vec<(&str, &str)> = r["kubeletExtraArgs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| (a["name"].as_str().unwrap(), a["value"].as_str().unwrap()))
            .collect();
        let ip = node.ip.to_string();
        assert_eq!(
            args,
            [
                ("node-ip", ip.as_str()),
                ("node-labels", "devcluster.dev/windows-worker=true")
            ]
        );
        assert!(
            args.iter().all(|(n, _)| *n != "pod-infra-container-image"),
            "kubelet 1.34+ refuses --pod-infra-container-image"
        );
        assert_eq!(r["taints"][0]["key"].as_str(), Some("os"));
        assert_eq!(r["taints"][0]["value"].as_str(), Some("windows"));
        assert_eq!(r["taints"][0]["effect"].as_str(), Some("NoSchedule"));
        assert_eq!(doc["timeouts"]["tlsBootstrap"].as_str(), Some(SLOW_TIMEOUT));
        assert_eq!(
            doc["timeouts"]["kubeletHealthCheck"].as_str(),
            Some(SLOW_TIMEOUT)
        );
        let untainted = windows_join("1.36", false);
        assert!(untainted["nodeRegistration"].get("taints").is_none());
        let linux = join("1.36", "dev-w1");
        assert!(!linux.contains("taints"), "{linux}");
        assert!(
            windows_join_config_with(
                &plan,
                plan.node("dev-w1").unwrap(),
                &Secret::new(TOKEN),
                HASH,
                version("1.36"),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn roles_are_checked() {
        let plan = plan("1.36");
        let v = version("1.36");
        let token = Secret::new(TOKEN);
        let worker = plan.node("dev-w1").unwrap();
        assert!(init_config_with(&plan, worker, &token, v).is_err());
        assert!(join_config_with(&plan, plan.control_plane(), &token, HASH, v).is_err());
        assert!(join_config_with(&plan, worker, &token, "md5:00", v).is_err());
    }
}
