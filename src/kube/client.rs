//! The Kubernetes API from the host, through kube-rs and the admin
//! kubeconfig devcluster made (`pki::ensure`): applying manifests and
//! waiting for the cluster to become usable. No kubectl on the host.
//!
//! Every wait is bounded: it polls until its condition holds or its
//! timeout passes, and then fails with what was not ready and why (a
//! node's Ready condition, a pod's scheduling or container state), or the
//! last error when the API server never answered. API errors while
//! waiting (an API server restarting under kubeadm) are retried until the
//! timeout.
//!
//! The pure parts (parsing manifests, judging nodes and pods, the timeout
//! messages) are separate functions, tested on recorded objects
//! (`testdata/kube/`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use ::kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use ::kube::core::{GroupVersionKind, TypeMeta};
use ::kube::discovery::{ApiCapabilities, ApiResource, Scope};
use ::kube::{Client, Config};
use k8s_openapi::api::core::v1::{Node, Pod};

/// The field manager of devcluster's server-side applies.
pub const FIELD_MANAGER: &str = "devcluster";
/// How often the waits poll.
const POLL: Duration = Duration::from_secs(2);
/// The longest a single request of a wait may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read the admin kubeconfig {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("cannot make a Kubernetes client from {}", path.display())]
    Client {
        path: PathBuf,
        #[source]
        source: ::kube::Error,
    },
    #[error("manifest document {index}: {message}")]
    Manifest { index: usize, message: String },
    #[error("the API server does not know {gvk}")]
    Discovery {
        gvk: String,
        #[source]
        source: ::kube::Error,
    },
    #[error("cannot apply {object}")]
    Apply {
        object: String,
        #[source]
        source: ::kube::Error,
    },
    #[error("cannot get a token for ServiceAccount {account} (TokenRequest)")]
    Token {
        account: String,
        #[source]
        source: ::kube::Error,
    },
    #[error("the TokenRequest for ServiceAccount {account} returned no token")]
    NoToken { account: String },
    #[error("{0}")]
    Timeout(TimedOut),
}

impl KubeError {
    pub fn hint(&self) -> Option<String> {
        match self {
            KubeError::Timeout(t) => t.hint.clone(),
            KubeError::Kubeconfig { .. } => Some(
                "`devcluster up` writes the admin kubeconfig; run it again to restore it".into(),
            ),
            _ => None,
        }
    }
}

/// A wait that ran out of time: what it waited for, how long, what was
/// still not ready and the last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    /// "nodes to be Ready", "the API server to be ready (/readyz)", ...
    pub what: String,
    pub waited: Duration,
    /// One line per thing that was not ready: `name: why`.
    pub not_ready: Vec<String>,
    /// The last error of a request, when the last poll failed.
    pub last_error: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {}s waiting for {}",
            self.waited.as_secs(),
            self.what
        )?;
        if !self.not_ready.is_empty() {
            write!(f, "; not ready: {}", self.not_ready.join("; "))?;
        }
        if let Some(e) = &self.last_error {
            write!(f, "; last error: {e}")?;
        }
        Ok(())
    }
}

// --- client ------------------------------------------------------------------

/// The client configuration of an admin kubeconfig (no network).
pub async fn admin_config(path: &Path) -> Result<Config, KubeError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| KubeError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| KubeError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
}

/// A client for the cluster of an admin kubeconfig (`pki::ensure` writes
/// one per cluster). Makes no request. Needs a tokio runtime.
pub async fn client_from_admin_kubeconfig(path: &Path) -> Result<Client, KubeError> {
    let config = admin_config(path).await?;
    Client::try_from(config).map_err(|source| KubeError::Client {
        path: path.to_path_buf(),
        source,
    })
}

// --- manifests ---------------------------------------------------------------

/// One object of a manifest, ready to apply.
#[derive(Debug, Clone)]
pub struct ManifestObject {
    pub gvk: GroupVersionKind,
    pub name: String,
    /// As written in the manifest (cluster-scoped objects have none).
    pub namespace: Option<String>,
    pub object: DynamicObject,
}

impl ManifestObject {
    /// `Kind namespace/name` or `Kind name`, for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.gvk.kind, self.name),
            None => format!("{} {}", self.gvk.kind, self.name),
        }
    }
}

/// Splits multi-document YAML into objects. Empty documents are skipped;
/// a document without `apiVersion`, `kind` or `metadata.name` is an error
/// naming it (1-based, counting non-empty documents).
pub fn parse_manifests(yaml: &str) -> Result<Vec<ManifestObject>, KubeError> {
    let mut out = Vec::new();
    let mut index = 0;
    for de in serde_norway::Deserializer::from_str(yaml) {
        let value: serde_norway::Value =
            serde::Deserialize::deserialize(de).map_err(|e| KubeError::Manifest {
                index: index + 1,
                message: format!("not YAML: {e}"),
            })?;
        if value.is_null() {
            continue;
        }
        index += 1;
        let err = |message: String| KubeError::Manifest { index, message };
        let json = serde_json::to_value(&value)
            .map_err(|e| err(format!("not a Kubernetes object: {e}")))?;
        let object: DynamicObject = serde_json::from_value(json)
            .map_err(|e| err(format!("not a Kubernetes object: {e}")))?;
        let types: &TypeMeta = object
            .types
            .as_ref()
            .ok_or_else(|| err("no apiVersion and kind".into()))?;
        if types.api_version.is_empty() || types.kind.is_empty() {
            return Err(err("no apiVersion and kind".into()));
        }
        let parts: Vec<&str> = types.api_version.split('/').collect();
        if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(err(format!(
                "bad apiVersion {:?}: not VERSION or GROUP/VERSION",
                types.api_version
            )));
        }
        let gvk = GroupVersionKind::try_from(types)
            .map_err(|e| err(format!("bad apiVersion {:?}: {e}", types.api_version)))?;
        let name = object
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(format!("{} without metadata.name", gvk.kind)))?;
        out.push(ManifestObject {
            gvk,
            name,
            namespace: object.metadata.namespace.clone(),
            object,
        });
    }
    Ok(out)
}

fn gvk_string(gvk: &GroupVersionKind) -> String {
    if gvk.group.is_empty() {
        format!("{}/{}", gvk.version, gvk.kind)
    } else {
        format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind)
    }
}

/// Server-side applies every object of a multi-document manifest, in
/// order, as field manager [`FIELD_MANAGER`] (forcing conflicts: these
/// objects are devcluster's). Each kind is looked up on the server when it
/// is first met, so a manifest may define a CRD before its objects.
/// Namespaced objects without a namespace go to `default`. Returns what it
/// applied (`Kind namespace/name`).
pub async fn apply_manifests(client: &Client, yaml: &str) -> Result<Vec<String>, KubeError> {
    let objects = parse_manifests(yaml)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut kinds: BTreeMap<String, (ApiResource, ApiCapabilities)> = BTreeMap::new();
    let mut applied = Vec::new();
    for obj in objects {
        let key = gvk_string(&obj.gvk);
        if !kinds.contains_key(&key) {
            let found = ::kube::discovery::pinned_kind(client, &obj.gvk)
                .await
                .map_err(|source| KubeError::Discovery {
                    gvk: key.clone(),
                    source,
                })?;
            kinds.insert(key.clone(), found);
        }
        let (resource, caps) = &kinds[&key];
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.namespace.as_deref().unwrap_or("default"),
                resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), resource),
        };
        api.patch(&obj.name, &params, &Patch::Apply(&obj.object))
            .await
            .map_err(|source| KubeError::Apply {
                object: obj.describe(),
                source,
            })?;
        tracing::debug!(object = %obj.describe(), "applied");
        applied.push(obj.describe());
    }
    Ok(applied)
}

// --- judging nodes and pods (pure) ------------------------------------------------

/// Why a node is not Ready, or `None` when it is.
pub fn node_not_ready(node: &Node) -> Option<String> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match ready {
        None => Some("no Ready condition reported yet".into()),
        Some(c) if c.status == "True" => None,
        Some(c) => Some(format!(
            "Ready={}{}",
            c.status,
            reason_message(c.reason.as_deref(), c.message.as_deref())
        )),
    }
}

/// For each of `names` that is not Ready, `name: why` (in `names` order).
pub fn nodes_not_ready(nodes: &[Node], names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|name| {
            let node = nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(name.as_str()));
            let why = match node {
                None => Some("not registered with the API server".to_string()),
                Some(n) => node_not_ready(n),
            };
            why.map(|w| format!("{name}: {w}"))
        })
        .collect()
}

/// What `status` shows of one node: `Ready`, `NotReady: why`, or `not
/// registered`, and its kubelet's version when it reported one.
pub fn node_readiness(nodes: &[Node], name: &str) -> (String, Option<String>) {
    let Some(node) = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))
    else {
        return ("not registered".into(), None);
    };
    let version = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
        .filter(|v| !v.is_empty());
    let readiness = match node_not_ready(node) {
        None => "Ready".to_string(),
        Some(why) => format!("NotReady: {why}"),
    };
    (readiness, version)
}

/// Every node the API server knows, asked once with a short timeout (for
/// `status`: it must answer quickly even when the control plane is down).
pub async fn list_nodes(client: &Client, timeout: Duration) -> Result<Vec<Node>, String> {
    let api: Api<Node> = Api::all(client.clone());
    match tokio::time::timeout(timeout, api.list(&ListParams::default())).await {
        Ok(Ok(list)) => Ok(list.items),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// Why a pod is not Running and Ready, or `None` when it is.
pub fn pod_not_ready(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let condition = |t: &str| conditions.iter().find(|c| c.type_ == t);
    if phase == "Running" && condition("Ready").is_some_and(|c| c.status == "True") {
        return None;
    }
    let mut why: Vec<String> = Vec::new();
    if let Some(c) = condition("PodScheduled").filter(|c| c.status == "False") {
        why.push(format!(
            "not scheduled{}",
            reason_message(c.reason.as_deref(), c.message.as_deref())
        ));
    }
    let containers = status
        .into_iter()
        .flat_map(|s| {
            let init = s.init_container_statuses.as_deref().unwrap_or(&[]);
            let main = s.container_statuses.as_deref().unwrap_or(&[]);
            init.iter()
                .map(|c| (true, c))
                .chain(main.iter().map(|c| (false, c)))
        })
        .collect::<Vec<_>>();
    for (init, c) in containers {
        let label = if init {
            format!("init container {}", c.name)
        } else {
            format!("container {}", c.name)
        };
        let state = c.state.as_ref();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            // Waiting for the init containers says nothing new.
            if w.reason.as_deref() != Some("PodInitializing") {
                why.push(format!(
                    "{label} waiting{}",
                    reason_message(w.reason.as_deref(), w.message.as_deref())
                ));
            }
        } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            if !(init && t.exit_code == 0) {
                why.push(format!(
                    "{label} terminated (exit {}){}",
                    t.exit_code,
                    reason_message(t.reason.as_deref(), t.message.as_deref())
                ));
            }
        } else if state.and_then(|s| s.running.as_ref()).is_some() && !c.ready {
            why.push(format!("{label} running, not ready"));
        }
    }
    if why.is_empty()
        && let Some(c) = condition("Ready").filter(|c| c.status != "True")
    {
        why.push(format!(
            "Ready={}{}",
            c.status,
            reason_message(c.reason.as_deref(), c.message.as_deref())
        ));
    }
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    if why.is_empty() {
        Some(format!("{name}: {phase}"))
    } else {
        Some(format!("{name}: {phase}, {}", why.join(", ")))
    }
}

/// Each pod that is not Running and Ready, as `name: why`; a line saying
/// so when there is no pod at all.
pub fn pods_not_ready(pods: &[Pod]) -> Vec<String> {
    if pods.is_empty() {
        return vec!["no pod matches yet".into()];
    }
    pods.iter().filter_map(pod_not_ready).collect()
}

/// ` (Reason: message)`, ` (Reason)`, ` (message)` or nothing.
fn reason_message(reason: Option<&str>, message: Option<&str>) -> String {
    let reason = reason.map(str::trim).filter(|s| !s.is_empty());
    let message = message.map(str::trim).filter(|s| !s.is_empty());
    match (reason, message) {
        (Some(r), Some(m)) => format!(" ({r}: {m})"),
        (Some(r), None) => format!(" ({r})"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

// --- waits ---------------------------------------------------------------------

/// Polls `check` until it returns no "not ready" lines or `timeout` passes.
/// `check` returns `Err` for a failed request (retried) and `Ok(lines)`
/// otherwise.
pub(crate) async fn poll<F, Fut>(
    what: String,
    timeout: Duration,
    hint: Option<String>,
    mut check: F,
) -> Result<(), KubeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, String>>,
{
    let started = Instant::now();
    let mut not_ready = Vec::new();
    let mut last_error: Option<String>;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left.min(REQUEST_TIMEOUT), check()).await {
            Ok(Ok(lines)) if lines.is_empty() => return Ok(()),
            Ok(Ok(lines)) => {
                not_ready = lines;
                last_error = None;
            }
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => {
                last_error = Some(format!(
                    "no answer within {}s",
                    left.min(REQUEST_TIMEOUT).as_secs()
                ))
            }
        }
        if started.elapsed() + POLL >= timeout {
            return Err(KubeError::Timeout(TimedOut {
                what,
                waited: timeout,
                not_ready,
                last_error,
                hint,
            }));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the API server's `/readyz` answers `ok`.
pub async fn wait_api_healthy(client: &Client, timeout: Duration) -> Result<(), KubeError> {
    poll(
        "the API server to be ready (/readyz)".into(),
        timeout,
        Some(
            "see the control plane's log with `devcluster logs NODE` (its kubeadm init step)"
                .into(),
        ),
        || async {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => Ok(Vec::new()),
                Ok(body) => Ok(vec![format!("/readyz: {}", body.trim())]),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

/// Waits until every node in `names` is registered and Ready. The timeout
/// error names those that are not, with their Ready condition's reason and
/// message.
pub async fn wait_nodes_ready(
    client: &Client,
    names: &[String],
    timeout: Duration,
) -> Result<(), KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    poll(
        format!("nodes to be Ready ({})", names.join(", ")),
        timeout,
        Some(
            "a node that is not Ready usually lacks the pod network; see `devcluster logs NODE`"
                .into(),
        ),
        || async {
            let nodes = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(nodes_not_ready(&nodes.items, names))
        },
    )
    .await
}

/// Waits until at least one pod in `namespace` matches `label_selector`
/// and every matching pod is Running and Ready: CoreDNS is
/// `kube-system`/`k8s-app=kube-dns`, flannel
/// [`NAMESPACE`](super::flannel::NAMESPACE)/[`POD_SELECTOR`](super::flannel::POD_SELECTOR).
pub async fn wait_pods_ready(
    client: &Client,
    namespace: &str,
    label_selector: &str,
    timeout: Duration,
) -> Result<(), KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(label_selector);
    poll(
        format!("pods {label_selector} in {namespace} to be Ready"),
        timeout,
        None,
        || async {
            let pods = api.list(&params).await.map_err(|e| e.to_string())?;
            Ok(pods_not_ready(&pods.items))
        },
    )
    .await
}

// --- draining and removing a node -----------------------------------------------

/// The pods `node remove` evicts from a node: all but DaemonSet pods
/// (their controller would put them back; they go with the node) and
/// mirror pods of static manifests (kubelet owns them), as `kubectl drain
/// --ignore-daemonsets` does. `(namespace, name)`.
pub fn pods_to_evict(pods: &[Pod]) -> Vec<(String, String)> {
    pods.iter()
        .filter(|p| {
            let daemonset = p
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"));
            let mirror = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
            !daemonset && !mirror
        })
        .filter_map(|p| {
            Some((
                p.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                p.metadata.name.clone()?,
            ))
        })
        .collect()
}

/// What draining a node did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    /// False when the API server had no such node (never joined).
    pub registered: bool,
    /// `namespace/name` of the pods evicted.
    pub evicted: Vec<String>,
}

/// `node remove`: cordons the node, evicts its pods (retrying while a
/// disruption budget refuses), waits until they are gone, then deletes the
/// Node object. Bounded by `timeout`; a node the API server does not know
/// is nothing to drain.
pub async fn drain_and_delete_node(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<Drained, KubeError> {
    let drained = drain_node(client, name, timeout).await?;
    if drained.registered {
        delete_node(client, name).await?;
    }
    Ok(drained)
}

/// The first half of [`drain_and_delete_node`]: cordon and evict.
pub async fn drain_node(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<Drained, KubeError> {
    use ::kube::api::EvictParams;
    let nodes: Api<Node> = Api::all(client.clone());
    let api_err = |what: &str, source| KubeError::Apply {
        object: format!("{what} node {name}"),
        source,
    };
    let cordon = serde_json::json!({"spec": {"unschedulable": true}});
    match nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&cordon))
        .await
    {
        Ok(_) => {}
        Err(::kube::Error::Api(e)) if e.code == 404 => return Ok(Drained::default()),
        Err(source) => return Err(api_err("cordon", source)),
    }
    let on_node = ListParams::default().fields(&format!("spec.nodeName={name}"));
    let all_pods: Api<Pod> = Api::all(client.clone());
    let evicted = std::sync::Mutex::new(std::collections::BTreeSet::new());
    poll(
        format!("the pods on {name} to be evicted"),
        timeout,
        Some(format!(
            "a PodDisruptionBudget may forbid evicting them; see `kubectl get pods -A -o wide --field-selector spec.nodeName={name}`"
        )),
        || async {
            let pods = all_pods.list(&on_node).await.map_err(|e| e.to_string())?;
            let left = pods_to_evict(&pods.items);
            for (ns, pod) in &left {
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                match api.evict(pod, &EvictParams::default()).await {
                    Ok(_) => {
                        if let Ok(mut e) = evicted.lock() {
                            e.insert(format!("{ns}/{pod}"));
                        }
                    }
                    // Gone already, or a budget says not yet: look again.
                    Err(::kube::Error::Api(e)) if e.code == 404 || e.code == 429 => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(left.iter().map(|(ns, pod)| format!("{ns}/{pod}")).collect())
        },
    )
    .await?;
    let drained = Drained {
        registered: true,
        evicted: evicted
            .into_inner()
            .map(|e| e.into_iter().collect())
            .unwrap_or_default(),
    };
    Ok(drained)
}

/// Deletes Node `name` (one already gone is no error).
pub async fn delete_node(client: &Client, name: &str) -> Result<(), KubeError> {
    use ::kube::api::DeleteParams;
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Apply {
            object: format!("delete node {name}"),
            source,
        }),
    }
}

// --- bootstrap tokens --------------------------------------------------------------

/// The name of the kube-system Secret of the bootstrap token with `id`.
pub fn token_secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

/// The Secret kubeadm makes for a bootstrap token (kube-system,
/// `bootstrap-token-ID`, type `bootstrap.kubernetes.io/token`): usable for
/// authentication and for signing the cluster-info ConfigMap, in kubeadm's
/// default node group, expiring at `expires` (RFC 3339).
pub fn bootstrap_token_secret(
    token: &str,
    expires: &str,
) -> Result<k8s_openapi::api::core::v1::Secret, KubeError> {
    let Some((id, secret)) = token.split_once('.') else {
        return Err(KubeError::Manifest {
            index: 0,
            message: "a bootstrap token is ID.SECRET".into(),
        });
    };
    let data: BTreeMap<String, String> = [
        ("token-id", id),
        ("token-secret", secret),
        ("expiration", expires),
        ("usage-bootstrap-authentication", "true"),
        ("usage-bootstrap-signing", "true"),
        (
            "auth-extra-groups",
            "system:bootstrappers:kubeadm:default-node-token",
        ),
        ("description", "made by devcluster node add"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Ok(k8s_openapi::api::core::v1::Secret {
        metadata: ::kube::api::ObjectMeta {
            name: Some(token_secret_name(id)),
            namespace: Some("kube-system".into()),
            ..Default::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        string_data: Some(data),
        ..Default::default()
    })
}

/// Whether a bootstrap token Secret can still authenticate a join for at
/// least `margin`: not expired (by its `expiration`) and usable for
/// authentication.
pub fn bootstrap_token_usable(
    secret: &k8s_openapi::api::core::v1::Secret,
    now: time::OffsetDateTime,
    margin: Duration,
) -> bool {
    let field = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    if field("usage-bootstrap-authentication").as_deref() != Some("true") {
        return false;
    }
    match field("expiration") {
        None => true,
        Some(exp) => {
            time::OffsetDateTime::parse(&exp, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|exp| exp > now + margin)
        }
    }
}

/// Registers `token` with the cluster for `ttl`, as `kubeadm token create`
/// does.
pub async fn create_bootstrap_token(
    client: &Client,
    token: &str,
    ttl: Duration,
) -> Result<(), KubeError> {
    let expires = (time::OffsetDateTime::now_utc() + ttl)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let secret = bootstrap_token_secret(token, &expires)?;
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "kube-system");
    api.create(&::kube::api::PostParams::default(), &secret)
        .await
        .map(|_| ())
        .map_err(|source| KubeError::Apply {
            object: "a bootstrap token Secret in kube-system".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items<T: serde::de::DeserializeOwned>(file: &str) -> Vec<T> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/kube")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| serde_json::from_value(i.clone()).unwrap())
            .collect()
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn drain_evicts_all_but_daemonset_and_mirror_pods() {
        let pods: Vec<Pod> = items("pods-on-node.json");
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            pods_to_evict(&pods),
            [
                s("default", "web-7c5ddbdf54-x2x9q"),
                s("batch", "report-29123456-abcde"),
            ]
        );
    }

    #[test]
    fn a_bootstrap_token_secret_is_what_kubeadm_makes() {
        let secret =
            bootstrap_token_secret("abcdef.0123456789abcdef", "2026-11-23T10:00:00Z").unwrap();
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("bootstrap-token-abcdef")
        );
        assert_eq!(secret.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            secret.type_.as_deref(),
            Some("bootstrap.kubernetes.io/token")
        );
        let data = secret.string_data.as_ref().unwrap();
        assert_eq!(data["token-id"], "abcdef");
        assert_eq!(data["token-secret"], "0123456789abcdef");
        assert_eq!(data["expiration"], "2026-11-23T10:00:00Z");
        assert_eq!(data["usage-bootstrap-authentication"], "true");
        assert_eq!(data["usage-bootstrap-signing"], "true");
        assert_eq!(
            data["auth-extra-groups"],
            "system:bootstrappers:kubeadm:default-node-token"
        );
        assert!(bootstrap_token_secret("nodot", "x").is_err());
    }

    #[test]
    fn token_usability_follows_expiration_and_usage() {
        use k8s_openapi::ByteString;
        let secret = |pairs: &[(&str, &str)]| k8s_openapi::api::core::v1::Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        let now = time::OffsetDateTime::parse(
            "2026-11-22T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let margin = Duration::from_secs(600);
        let auth = ("usage-bootstrap-authentication", "true");
        assert!(bootstrap_token_usable(
            &secret(&[auth, ("expiration", "2026-11-23T12:00:00Z")]),
            now,
            margin
        ));
        // Expiring within the margin, expired, unparsable, or not for
        // authentication: not usable.
        assert!(!bootstrap_token_usable(
            &secret(&[auth, ("expiration", "2026-11-22T12:05:00Z")]),
            now,
            margin
        ));
        assert!(!bootstrap_token_usable(
            &secret(&[auth, ("expiration", "2026-11-21T12:00:00Z")]),
            now,
            margin
        ));
        assert!(!bootstrap_token_usable(
            &secret(&[auth, ("expiration", "tomorrow")]),
            now,
            margin
        ));
        assert!(!bootstrap_token_usable(
            &secret(&[("expiration", "2026-11-23T12:00:00Z")]),
            now,
            margin
        ));
        // No expiration: a token that never expires.
        assert!(bootstrap_token_usable(&secret(&[auth]), now, margin));
    }

    #[test]
    fn node_readiness_says_ready_why_not_and_the_version() {
        let nodes: Vec<Node> = items("nodes-not-ready.json");
        assert_eq!(
            node_readiness(&nodes, "dev-cp"),
            ("Ready".to_string(), Some("v1.36.1".to_string()))
        );
        let (w1, v1) = node_readiness(&nodes, "dev-w1");
        assert!(w1.starts_with("NotReady: Ready=False"), "{w1}");
        assert_eq!(v1.as_deref(), Some("v1.36.1"));
        assert!(
            node_readiness(&nodes, "dev-w2")
                .0
                .starts_with("NotReady: Ready=Unknown")
        );
        assert_eq!(
            node_readiness(&nodes, "dev-w9"),
            ("not registered".to_string(), None)
        );
    }

    #[test]
    fn flannel_manifest_splits_into_objects_of_the_right_kinds() {
        let plan = crate::kube::kubeadm::tests::plan("1.36");
        let yaml = crate::kube::flannel::manifest(&plan).unwrap();
        let objects = parse_manifests(&yaml).unwrap();
        let got: Vec<(String, String, String, String, Option<String>)> = objects
            .iter()
            .map(|o| {
                (
                    o.gvk.group.clone(),
                    o.gvk.version.clone(),
                    o.gvk.kind.clone(),
                    o.name.clone(),
                    o.namespace.clone(),
                )
            })
            .collect();
        let s = |x: &str| x.to_string();
        let ns = Some(s("kube-flannel"));
        assert_eq!(
            got,
            vec![
                (s(""), s("v1"), s("Namespace"), s("kube-flannel"), None),
                (
                    s("rbac.authorization.k8s.io"),
                    s("v1"),
                    s("ClusterRole"),
                    s("flannel"),
                    None
                ),
                (
                    s("rbac.authorization.k8s.io"),
                    s("v1"),
                    s("ClusterRoleBinding"),
                    s("flannel"),
                    None
                ),
                (
                    s(""),
                    s("v1"),
                    s("ServiceAccount"),
                    s("flannel"),
                    ns.clone()
                ),
                (
                    s(""),
                    s("v1"),
                    s("ConfigMap"),
                    s("kube-flannel-cfg"),
                    ns.clone()
                ),
                (s("apps"), s("v1"), s("DaemonSet"), s("kube-flannel-ds"), ns),
            ]
        );
        assert_eq!(
            objects[5].describe(),
            "DaemonSet kube-flannel/kube-flannel-ds"
        );
        // What is sent is the whole object, data included.
        let cm = serde_json::to_value(&objects[4].object).unwrap();
        assert_eq!(cm["apiVersion"], "v1");
        assert_eq!(cm["kind"], "ConfigMap");
        assert!(
            cm["data"]["net-conf.json"]
                .as_str()
                .unwrap()
                .contains("4096")
        );
    }

    #[test]
    fn bad_documents_are_named() {
        let yaml = "---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\nkind: Pod\nmetadata:\n  name: b\n";
        let e = parse_manifests(yaml).unwrap_err();
        assert_eq!(e.to_string(), "manifest document 2: no apiVersion and kind");
        let e = parse_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "manifest document 1: ConfigMap without metadata.name"
        );
        let e = parse_manifests("apiVersion: a/b/c\nkind: X\nmetadata:\n  name: x\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("manifest document 1: bad apiVersion \"a/b/c\""),
            "{e}"
        );
        assert!(parse_manifests("# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn nodes_not_ready_name_the_node_and_the_kubelet_reason() {
        let nodes: Vec<Node> = items("nodes-not-ready.json");
        let lines = nodes_not_ready(&nodes, &names(&["dev-cp", "dev-w1", "dev-w2", "dev-w3"]));
        assert_eq!(
            lines,
            [
                "dev-w1: Ready=False (KubeletNotReady: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized)",
                "dev-w2: Ready=Unknown (NodeStatusUnknown: Kubelet stopped posting node status.)",
                "dev-w3: not registered with the API server",
            ]
        );
        assert!(nodes_not_ready(&nodes, &names(&["dev-cp"])).is_empty());
    }

    #[test]
    fn pods_not_ready_say_why() {
        let coredns: Vec<Pod> = items("pods-coredns-pending.json");
        assert_eq!(
            pods_not_ready(&coredns),
            [
                "coredns-7c65d6cfc9-5xq2v: Pending, not scheduled (Unschedulable: 0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.)",
                "coredns-7c65d6cfc9-k8m4n: Pending, container coredns waiting (ContainerCreating)",
            ]
        );
        let flannel: Vec<Pod> = items("pods-flannel-mixed.json");
        assert_eq!(
            pods_not_ready(&flannel),
            [
                "kube-flannel-ds-7wz9j: Running, container kube-flannel waiting (CrashLoopBackOff: back-off 2m40s restarting failed container=kube-flannel pod=kube-flannel-ds-7wz9j_kube-flannel(5e0c1f7e-4a4b-4c55-9a51-0f3f4f1f2d11))",
                "kube-flannel-ds-q4c8d: Pending, init container install-cni-plugin waiting (ErrImagePull: failed to pull and unpack image \"ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3\": failed to resolve reference \"ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3\": failed to do request: Head \"https://ghcr.io/v2/flannel-io/flannel-cni-plugin/manifests/v1.9.1-flannel3\": dial tcp: lookup ghcr.io on 192.168.100.1:53: no such host)",
            ]
        );
        assert_eq!(pods_not_ready(&[]), ["no pod matches yet"]);
    }

    #[test]
    fn timeout_messages_list_what_is_not_ready_and_the_last_error() {
        let t = TimedOut {
            what: "nodes to be Ready (dev-cp, dev-w1)".into(),
            waited: Duration::from_secs(300),
            not_ready: vec![
                "dev-w1: Ready=False (KubeletNotReady: cni plugin not initialized)".into(),
            ],
            last_error: None,
            hint: None,
        };
        assert_eq!(
            KubeError::Timeout(t.clone()).to_string(),
            "timed out after 300s waiting for nodes to be Ready (dev-cp, dev-w1); not ready: dev-w1: Ready=False (KubeletNotReady: cni plugin not initialized)"
        );
        let t = TimedOut {
            what: "the API server to be ready (/readyz)".into(),
            not_ready: vec![],
            last_error: Some("client error (Connect)".into()),
            ..t
        };
        assert_eq!(
            t.to_string(),
            "timed out after 300s waiting for the API server to be ready (/readyz); last error: client error (Connect)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn poll_gives_up_after_the_timeout_with_the_last_answer() {
        let mut calls = 0;
        let err = poll("things".into(), Duration::from_secs(10), None, || {
            calls += 1;
            let n = calls;
            async move {
                if n % 2 == 0 {
                    Err(format!("refused {n}"))
                } else {
                    Ok(vec![format!("thing: not yet ({n})")])
                }
            }
        })
        .await
        .unwrap_err();
        let KubeError::Timeout(t) = err else {
            panic!("{err:?}")
        };
        assert_eq!(t.waited, Duration::from_secs(10));
        assert!((4..=6).contains(&calls), "{calls}");
        // The last poll's outcome, and the last "not ready" answer.
        assert!(t.not_ready[0].starts_with("thing: not yet"), "{t:?}");
        assert_eq!(t.not_ready.len(), 1);

        let mut calls = 0;
        poll("things".into(), Duration::from_secs(10), None, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Ok(vec!["x".to_string()])
                } else {
                    Ok(vec![])
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(calls, 3);
    }
}
