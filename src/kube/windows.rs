//! The Kubernetes side of Windows workers: the pod network's Windows
//! agents and their identities, the node-selector pinning of everything
//! Linux-only, and what "a Windows node is ready" means.
//!
//! # The network: flannel on both OSes
//!
//! The Linux side already runs flannel with VXLAN on VNI 4096 and UDP 4789
//! ([`super::flannel`]). Windows nodes run flanneld.exe (as a scheduled
//! task: it cannot be a service itself) and kube-proxy.exe (a Windows
//! service, `--windows-service`), both from the host's cache
//! ([`crate::images::node_software`]), with CNI `flannel` delegating to
//! `win-overlay`. Calico's operator-managed Windows path was the other
//! choice; flannel wins on every count the issue names:
//! - maintained upstream: flanneld.exe is built by every flannel release
//!   and kube-proxy.exe by every Kubernetes release; only the HostProcess
//!   *manifests and images* were dropped by sig-windows-tools in 2025. Our
//!   glue replaces exactly those.
//! - memory on a 2 GiB control plane: flannel's Linux DaemonSet asks for
//!   50 MiB; Calico adds the Tigera operator, calico-node, Typha, the
//!   API server and kube-controllers (several hundred MiB).
//! - offline: the Windows agents are binaries in the host's cache; Calico's
//!   Windows components are HostProcess images each node pulls.
//! - reachability: VXLAN 4096/4789 on both OSes carries pod-to-pod traffic
//!   both ways; kube-proxy programs Services as HNS load balancers; the
//!   agents talk to the API server at its real endpoint (control-plane
//!   IP:6443), never through the service VIP, which Windows host processes
//!   and pods cannot use before kube-proxy works (sig-windows-tools #314).
//!
//! # Identities
//!
//! No node holds an admin credential: each Windows agent gets a
//! ServiceAccount of its own ([`agents_manifest`]) bound to the least role
//! that does its work: flanneld to flannel's own ClusterRole (`flannel`:
//! nodes get/list/watch, nodes/status patch, as upstream's DaemonSet), and
//! kube-proxy to `system:node-proxier` (what kubeadm's kube-proxy uses).
//! Their tokens come from the TokenRequest API ([`agent_token`]), go to the
//! node as files readable by SYSTEM and Administrators only, and are named
//! by `tokenFile` in each agent's kubeconfig ([`agent_kubeconfig`]): never
//! on a command line.
//!
//! # Pinning
//!
//! Every Linux-only workload is pinned to `kubernetes.io/os: linux`: the
//! flannel DaemonSet (in its manifest), and kubeadm's kube-proxy DaemonSet
//! and CoreDNS Deployment through [`linux_pins`] (kubeadm sets the
//! selector itself today; the patch makes it a fact devcluster checks, not
//! an assumption). The Windows agents are not pods, so nothing scheduled
//! is Windows-only; the example a user runs ([`example_pod`]) selects
//! `kubernetes.io/os: windows`.

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use crate::plan::{API_PORT, Plan};

/// The namespace of flannel (its Windows agent's identity lives there).
pub const FLANNEL_NAMESPACE: &str = super::flannel::NAMESPACE;
/// flanneld.exe's ServiceAccount.
pub const FLANNEL_WINDOWS_SA: &str = "flannel-windows";
/// kube-proxy.exe's ServiceAccount (in kube-system).
pub const KUBE_PROXY_WINDOWS_SA: &str = "kube-proxy-windows";
/// The label kubelet sets on Windows nodes: the OS build (`10.0.20348`).
pub const WINDOWS_BUILD_LABEL: &str = "node.kubernetes.io/windows-build";
/// Agent tokens are asked for a year; the API server may shorten it.
pub const AGENT_TOKEN_SECONDS: i64 = 365 * 24 * 3600;

/// The ServiceAccounts and bindings of the Windows agents (applied from the
/// host through kube-rs, like flannel).
pub fn agents_manifest() -> String {
    let docs = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": FLANNEL_WINDOWS_SA, "namespace": FLANNEL_NAMESPACE}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "devcluster:flannel-windows"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flannel"},
            "subjects": [{"kind": "ServiceAccount", "name": FLANNEL_WINDOWS_SA, "namespace": FLANNEL_NAMESPACE}]}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": KUBE_PROXY_WINDOWS_SA, "namespace": "kube-system"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "devcluster:kube-proxy-windows"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
            "subjects": [{"kind": "ServiceAccount", "name": KUBE_PROXY_WINDOWS_SA, "namespace": "kube-system"}]}),
    ];
    docs.iter()
        .map(|d| serde_norway::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// An agent's kubeconfig: the real API endpoint, the cluster CA, and the
/// token by file (`token_file`, a Windows path). Holds no secret itself.
pub fn agent_kubeconfig(plan: &Plan, ca_pem: &str, user: &str, token_file: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": plan.cluster, "cluster": {
            "server": format!("https://{}", plan.network.api_endpoint),
            "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"tokenFile": token_file}}],
        "contexts": [{"name": user, "context": {"cluster": plan.cluster, "user": user}}],
        "current-context": user,
    });
    serde_norway::to_string(&doc).unwrap_or_default()
}

/// Agent tokens are renewed by `up` when they expire within this margin.
pub const AGENT_TOKEN_MARGIN: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// What `up` does with a Windows node's agent tokens (the style of
/// [`super::token::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTokenDecision {
    /// Valid for at least [`AGENT_TOKEN_MARGIN`]: kept.
    Fresh,
    /// Expired, or expiring within the margin: network-windows runs again
    /// with new ones (the agents re-read their `tokenFile`).
    Expiring,
    /// devcluster has no record of when they expire: renewed.
    Unknown,
}

impl AgentTokenDecision {
    pub fn renew(self) -> bool {
        self != AgentTokenDecision::Fresh
    }
}

/// The decision for agent tokens that expire at `expires` (`None`: not
/// known), at `now`.
pub fn decide_agent_tokens(
    expires: Option<time::OffsetDateTime>,
    now: time::OffsetDateTime,
) -> AgentTokenDecision {
    match expires {
        None => AgentTokenDecision::Unknown,
        Some(e) if e - now > AGENT_TOKEN_MARGIN => AgentTokenDecision::Fresh,
        Some(_) => AgentTokenDecision::Expiring,
    }
}

/// A token for ServiceAccount `namespace/name` from the TokenRequest API.
pub async fn agent_token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<crate::pki::Secret, kube::Error> {
    Ok(agent_token_expiring(client, namespace, name).await?.0)
}

/// [`agent_token`] and when the API server says it expires.
pub async fn agent_token_expiring(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(crate::pki::Secret, Option<time::OffsetDateTime>), kube::Error> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let api: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), namespace);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(AGENT_TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let out = api
        .create_token_request(name, &kube::api::PostParams::default(), &req)
        .await?;
    let Some(status) = out.status else {
        return Ok((crate::pki::Secret::new(String::new()), None));
    };
    // Through its JSON form (RFC 3339), whatever time type backs it.
    let expires = serde_json::to_value(&status.expiration_timestamp)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .and_then(|s| {
            time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).ok()
        });
    Ok((crate::pki::Secret::new(status.token), expires))
}

/// A strategic-merge patch devcluster applies to an object kubeadm made.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    pub kind: &'static str,
    pub namespace: &'static str,
    pub name: &'static str,
    pub patch: Value,
}

fn os_selector(os: &str) -> Value {
    json!({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": os}}}}})
}

/// kubeadm's Linux-only workloads, pinned to Linux nodes.
pub fn linux_pins() -> Vec<Pin> {
    vec![
        Pin {
            kind: "DaemonSet",
            namespace: "kube-system",
            name: "kube-proxy",
            patch: os_selector("linux"),
        },
        Pin {
            kind: "Deployment",
            namespace: "kube-system",
            name: "coredns",
            patch: os_selector("linux"),
        },
    ]
}

/// Applies [`linux_pins`] (strategic merge: other selectors stay).
pub async fn apply_linux_pins(
    client: &kube::Client,
) -> Result<Vec<String>, super::client::KubeError> {
    let mut done = Vec::new();
    for pin in linux_pins() {
        let object = format!("{}/{} {}", pin.kind, pin.name, pin.namespace);
        apply_pin(client, &pin)
            .await
            .map_err(|source| super::client::KubeError::Apply {
                object: object.clone(),
                source,
            })?;
        done.push(object);
    }
    Ok(done)
}

async fn apply_pin(client: &kube::Client, pin: &Pin) -> Result<(), kube::Error> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use kube::api::{Patch, PatchParams};
    let pp = PatchParams::default();
    let patch = Patch::Strategic(&pin.patch);
    match pin.kind {
        "DaemonSet" => {
            let api: kube::Api<DaemonSet> = kube::Api::namespaced(client.clone(), pin.namespace);
            api.patch(pin.name, &pp, &patch).await?;
        }
        _ => {
            let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), pin.namespace);
            api.patch(pin.name, &pp, &patch).await?;
        }
    }
    Ok(())
}

/// The `kubernetes.io/os` a pod template selects, if it selects one.
pub fn template_os(object: &Value) -> Option<&str> {
    object["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/os"].as_str()
}

/// Why Windows node `node` is not ready for pods, or `None`: Ready, its
/// Windows build reported, a pod CIDR assigned, and flanneld.exe
/// registered (its `flannel.alpha.coreos.com/*` annotations, VXLAN, the
/// node's own address).
pub fn windows_node_not_ready(node: &Node, node_ip: &str) -> Option<String> {
    if let Some(why) = super::client::node_not_ready(node) {
        return Some(why);
    }
    let labels = node.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if label("kubernetes.io/os") != Some("windows") {
        return Some(format!(
            "registered as {} (kubernetes.io/os), not windows",
            label("kubernetes.io/os").unwrap_or("no OS")
        ));
    }
    if label(WINDOWS_BUILD_LABEL).is_none() {
        return Some(format!("no {WINDOWS_BUILD_LABEL} label yet"));
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_none()
    {
        return Some("no pod CIDR assigned yet (kube-controller-manager)".into());
    }
    let annotations = node.metadata.annotations.as_ref();
    let ann = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    match (
        ann("flannel.alpha.coreos.com/backend-type"),
        ann("flannel.alpha.coreos.com/public-ip"),
    ) {
        (None, _) => Some(
            "flanneld.exe has not registered the node (no flannel.alpha.coreos.com annotations: see the network-windows step's log)".into(),
        ),
        (Some(t), _) if t != "vxlan" => Some(format!("flannel backend {t}, not vxlan")),
        (_, Some(ip)) if ip != node_ip => Some(format!(
            "flanneld.exe uses {ip}, not the node's cluster address {node_ip}"
        )),
        (_, None) => Some("flanneld.exe has published no public IP".into()),
        _ => None,
    }
}

/// For each of `nodes` (name, cluster address) not ready for pods,
/// `name: why` ([`windows_node_not_ready`]), in `nodes` order.
pub fn windows_nodes_not_ready(listed: &[Node], nodes: &[(String, String)]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|(name, ip)| {
            let why = match listed
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(name.as_str()))
            {
                None => Some("not registered with the API server".to_string()),
                Some(n) => windows_node_not_ready(n, ip),
            };
            why.map(|w| format!("{name}: {w}"))
        })
        .collect()
}

/// Waits until every one of `nodes` (name, cluster address) is ready for
/// pods; the timeout names what is missing on which node.
pub async fn wait_windows_nodes_ready(
    client: &kube::Client,
    nodes: &[(String, String)],
    timeout: std::time::Duration,
) -> Result<(), super::client::KubeError> {
    let api: kube::Api<Node> = kube::Api::all(client.clone());
    let names: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    super::client::poll(
        format!(
            "Windows nodes to be ready for pods ({})",
            names.join(", ")
        ),
        timeout,
        Some(
            "see the node's `devcluster logs NODE` (join-windows, network-windows); on the node, `Get-Service kubelet, kube-proxy, containerd` and the flanneld scheduled task".into(),
        ),
        || async {
            let listed = api
                .list(&kube::api::ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(windows_nodes_not_ready(&listed.items, nodes))
        },
    )
    .await
}

/// `ltsc2022` or `ltsc2025` for a `node.kubernetes.io/windows-build` value
/// (process isolation needs the container's build to match the node's).
pub fn ltsc_tag(build: &str) -> Option<&'static str> {
    match build.strip_prefix("10.0.")?.split('.').next()? {
        "20348" => Some("ltsc2022"),
        "26100" => Some("ltsc2025"),
        _ => None,
    }
}

/// The `ltsc…` tag of a built-in Windows image (`windows-server-2022`):
/// what the node's build will be before the node reports it.
pub fn ltsc_for_image(image: &str) -> Option<&'static str> {
    match image {
        "windows-server-2022" => Some("ltsc2022"),
        "windows-server-2025" => Some("ltsc2025"),
        _ => None,
    }
}

/// A node's `node.kubernetes.io/windows-build`, when it reported one.
pub fn windows_build(nodes: &[Node], name: &str) -> Option<String> {
    nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))?
        .metadata
        .labels
        .as_ref()?
        .get(WINDOWS_BUILD_LABEL)
        .cloned()
}

/// The end of the `up` summary for a plan with Windows workers: a Windows
/// pod whose image tag matches the first Windows node's build (process
/// isolation needs the same build), from its reported build when known,
/// else from its image. `None` without Windows nodes or a known tag.
pub fn summary_example(plan: &Plan, nodes: &[Node]) -> Option<String> {
    let node = plan
        .nodes
        .iter()
        .find(|n| n.os == crate::plan::Os::Windows)?;
    let (tag, from) = match windows_build(nodes, &node.name) {
        Some(build) => (ltsc_tag(&build)?, format!("{}'s build {build}", node.name)),
        None => (
            ltsc_for_image(&node.image)?,
            format!("{}'s image {}", node.name, node.image),
        ),
    };
    Some(format!(
        "a Windows pod ({tag} matches {from}):\n  kubectl apply -f - <<'EOF'\n{}EOF\n  kubectl get pod win-hello -o wide",
        example_pod(tag)
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    ))
}

/// A Windows example for the `up` summary: a pod on the node's build,
/// tolerating devcluster's Windows taint.
pub fn example_pod(tag: &str) -> String {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "win-hello"},
        "spec": {
            "nodeSelector": {"kubernetes.io/os": "windows"},
            "tolerations": [{"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"}],
            "containers": [{
                "name": "hello",
                "image": format!("mcr.microsoft.com/windows/servercore:{tag}"),
                "command": ["powershell", "-Command", "Write-Output hello; Start-Sleep 3600"],
            }],
        },
    });
    serde_norway::to_string(&doc).unwrap_or_default()
}

/// `IP:6443` of the plan: the real endpoint the Windows agents use.
pub fn api_server(plan: &Plan) -> String {
    debug_assert!(plan.network.api_endpoint.ends_with(&format!(":{API_PORT}")));
    format!("https://{}", plan.network.api_endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items<T: serde::de::DeserializeOwned>(file: &str) -> Vec<T> {
        let path = format!("{}/testdata/kube/{file}", env!("CARGO_MANIFEST_DIR"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::from_value(v["items"].clone()).unwrap()
    }

    #[test]
    fn agent_tokens_are_renewed_within_a_month_of_expiry() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let day = time::Duration::days(1);
        assert_eq!(
            decide_agent_tokens(Some(now + day * 365), now),
            AgentTokenDecision::Fresh
        );
        assert_eq!(
            decide_agent_tokens(Some(now + day * 31), now),
            AgentTokenDecision::Fresh
        );
        assert_eq!(
            decide_agent_tokens(Some(now + day * 29), now),
            AgentTokenDecision::Expiring
        );
        assert_eq!(
            decide_agent_tokens(Some(now - day), now),
            AgentTokenDecision::Expiring
        );
        assert_eq!(decide_agent_tokens(None, now), AgentTokenDecision::Unknown);
        assert!(!AgentTokenDecision::Fresh.renew());
        assert!(AgentTokenDecision::Expiring.renew() && AgentTokenDecision::Unknown.renew());
    }

    fn docs(yaml: &str) -> Vec<Value> {
        serde_norway::Deserializer::from_str(yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect()
    }

    #[test]
    fn agents_manifest_snapshot_and_least_privilege() {
        let text = agents_manifest();
        insta::assert_snapshot!(text);
        let docs = docs(&text);
        assert_eq!(docs.len(), 4);
        for d in &docs {
            if d["kind"] == "ClusterRoleBinding" {
                let role = d["roleRef"]["name"].as_str().unwrap();
                assert!(
                    ["flannel", "system:node-proxier"].contains(&role),
                    "never an admin role: {role}"
                );
            }
        }
        // Parses as the objects devcluster applies.
        crate::kube::client::parse_manifests(&text).unwrap();
    }

    #[test]
    fn agent_kubeconfig_points_at_the_real_endpoint_and_holds_no_token() {
        let plan = crate::kube::kubeadm::tests::plan("1.36");
        let text = agent_kubeconfig(
            &plan,
            "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n",
            "flannel-windows",
            "C:\\devcluster\\agents\\flannel.token",
        );
        insta::assert_snapshot!(text);
        let doc: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"].as_str().unwrap(),
            api_server(&plan)
        );
        assert!(
            !api_server(&plan).contains("10.96."),
            "never the service VIP"
        );
        assert_eq!(
            doc["users"][0]["user"]["tokenFile"].as_str(),
            Some("C:\\devcluster\\agents\\flannel.token")
        );
        assert!(doc["users"][0]["user"].get("token").is_none());
    }

    /// Every workload devcluster applies or patches selects an OS: the
    /// flannel manifest's DaemonSets and kubeadm's kube-proxy and CoreDNS
    /// select linux; the Windows example selects windows.
    #[test]
    fn every_applied_workload_is_pinned_to_its_os() {
        let plan = crate::kube::kubeadm::tests::plan("1.36");
        let flannel = crate::kube::flannel::manifest(&plan).unwrap();
        let mut workloads = 0;
        for d in docs(&flannel) {
            if ["DaemonSet", "Deployment"].contains(&d["kind"].as_str().unwrap_or_default()) {
                assert_eq!(template_os(&d), Some("linux"), "{d}");
                workloads += 1;
            }
        }
        assert!(workloads > 0);
        let pins = linux_pins();
        let pinned: Vec<&str> = pins.iter().map(|p| p.name).collect();
        assert_eq!(pinned, ["kube-proxy", "coredns"]);
        for p in &pins {
            assert_eq!(template_os(&p.patch), Some("linux"), "{p:?}");
        }
        for d in docs(&agents_manifest()) {
            assert!(d["spec"].is_null(), "the agents manifest schedules nothing");
        }
        let pod: Value = serde_norway::from_str(&example_pod("ltsc2022")).unwrap();
        assert_eq!(
            pod["spec"]["nodeSelector"]["kubernetes.io/os"].as_str(),
            Some("windows")
        );
    }

    #[test]
    fn windows_readiness_names_what_is_missing() {
        let nodes: Vec<Node> = items("nodes-windows.json");
        let find = |n: &str| {
            nodes
                .iter()
                .find(|x| x.metadata.name.as_deref() == Some(n))
                .unwrap()
        };
        assert_eq!(
            windows_node_not_ready(find("dev-win1"), "192.168.100.30"),
            None
        );
        let why = windows_node_not_ready(find("dev-win2"), "192.168.100.31").unwrap();
        assert!(why.contains("flanneld.exe has not registered"), "{why}");
        let why = windows_node_not_ready(find("dev-win3"), "192.168.100.32").unwrap();
        assert!(why.starts_with("Ready=False"), "{why}");
        assert!(why.contains("container runtime network not ready"), "{why}");
        let why = windows_node_not_ready(find("dev-win1"), "192.168.100.99").unwrap();
        assert!(why.contains("not the node's cluster address"), "{why}");
        let build = find("dev-win1").metadata.labels.as_ref().unwrap()[WINDOWS_BUILD_LABEL].clone();
        assert_eq!(ltsc_tag(&build), Some("ltsc2022"));
    }

    #[test]
    fn the_summary_example_matches_the_nodes_build() {
        let plan = crate::kube::kubeadm::tests::plan("1.36");
        let mut nodes: Vec<Node> = items("nodes-windows.json");
        // Before the node reports: from its image (the default,
        // windows-server-2025).
        let text = summary_example(&plan, &[]).unwrap();
        assert!(text.contains("servercore:ltsc2025"), "{text}");
        assert!(
            text.contains("dev-win1's image windows-server-2025"),
            "{text}"
        );
        // Reported: from the build label, which wins (a 2022 build here).
        nodes[0]
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(WINDOWS_BUILD_LABEL.into(), "10.0.20348".into());
        let text = summary_example(&plan, &nodes).unwrap();
        assert!(text.contains("servercore:ltsc2022"), "{text}");
        assert!(text.contains("build 10.0.20348"), "{text}");
        insta::assert_snapshot!(summary_example(&plan, &[]).unwrap());
        let mut linux_only = plan.clone();
        linux_only.nodes.retain(|n| n.os == crate::plan::Os::Linux);
        assert_eq!(summary_example(&linux_only, &[]), None);
    }

    #[test]
    fn ltsc_tags_match_builds() {
        assert_eq!(ltsc_tag("10.0.20348"), Some("ltsc2022"));
        assert_eq!(ltsc_tag("10.0.26100"), Some("ltsc2025"));
        assert_eq!(ltsc_tag("10.0.17763"), None);
        assert_eq!(ltsc_tag("bogus"), None);
        insta::assert_snapshot!(example_pod("ltsc2025"));
    }
}
