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
    #[error("node {node}: the {provider} base disk of {image} is not built yet")]
    NoWindowsBase {
        node: String,
        image: String,
        provider: crate::spec::ProviderKind,
    },
    #[error(transparent)]
    Image(#[from] images::ImageError),
    #[error("node {node}: its VM could not be created or started")]
    Provider {
        node: String,
        #[source]
        source: ProviderError,
    },
    #[error(transparent)]
    Network(ProviderError),
}

/// Resolves every node's base image before anything is created, so a
/// missing image fails `up` with nothing changed. Images not in the cache
/// are downloaded here (unless `fetch` is offline), with progress on
/// `fetch.progress`.
pub async fn resolve_bases(
    dirs: &Dirs,
    plan: &Plan,
    provider: crate::spec::ProviderKind,
    fetch: &images::Fetch<'_>,
) -> Result<BTreeMap<String, BaseImage>, MachinesError> {
    let mut out = BTreeMap::new();
    for node in &plan.nodes {
        if node.os == Os::Windows {
            if !out.contains_key(&node.image) {
                out.insert(
                    node.image.clone(),
                    windows_base(dirs, plan, node, provider)?,
                );
            }
            continue;
        }
        if !out.contains_key(&node.image) {
            let base = images::base_for(dirs, &node.image, node.os, provider, fetch).await?;
            out.insert(node.image.clone(), base);
        }
    }
    Ok(out)
}

/// The Windows images of `plan` whose base disk is not built yet for
/// `provider` (`up` builds them first); other problems show in
/// [`resolve_bases`].
pub fn missing_windows_bases(
    dirs: &Dirs,
    plan: &Plan,
    provider: crate::spec::ProviderKind,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for node in plan.nodes.iter().filter(|n| n.os == Os::Windows) {
        if let Err(MachinesError::NoWindowsBase { image, .. }) =
            windows_base(dirs, plan, node, provider)
            && !out.contains(&image)
        {
            out.push(image);
        }
    }
    out
}

/// A Windows node's base: the sysprepped disk `devcluster images build`
/// made from the image's ISO ([`images::winbase`]). `path` is the disk
/// (for libvirt, the volume in the images pool, whose name is its file
/// name); `sha256` the ISO's.
fn windows_base(
    dirs: &Dirs,
    plan: &Plan,
    node: &NodePlan,
    provider: crate::spec::ProviderKind,
) -> Result<BaseImage, MachinesError> {
    let entry = images::catalog::find(dirs, &node.image)?;
    let unsupported = |message: String| MachinesError::Unsupported {
        node: node.name.clone(),
        message,
    };
    if entry.os != Os::Windows {
        return Err(unsupported(format!(
            "image {} is a {} image; Windows workers need a Windows Server image",
            entry.name,
            entry.os.as_str()
        )));
    }
    let image = crate::seed::windows::image_for(&entry.name).ok_or_else(|| {
        unsupported(format!(
            "image {} has no Windows answer-file settings (known: windows-server-2022, windows-server-2025)",
            entry.name
        ))
    })?;
    let iso = entry
        .artifact_for(provider)?
        .sha256
        .clone()
        .unwrap_or_default();
    let devices = windows_devices(plan, provider);
    let disk = images::winbase::lookup(dirs, &image, &iso, provider, devices).ok_or_else(|| {
        MachinesError::NoWindowsBase {
            node: node.name.clone(),
            image: entry.name.clone(),
            provider,
        }
    })?;
    Ok(BaseImage {
        name: entry.name.clone(),
        path: disk.volume.map(|v| v.path).unwrap_or(disk.path),
        sha256: iso,
        firmware: crate::providers::Firmware::Uefi,
        secure_boot: true,
    })
}

/// The devices of `plan`'s Windows guests on `provider`: `[libvirt]
/// windows_devices` is libvirt's setting; elsewhere the provider's own.
pub fn windows_devices(
    plan: &Plan,
    provider: crate::spec::ProviderKind,
) -> crate::spec::WindowsDevices {
    if provider == crate::spec::ProviderKind::Libvirt {
        plan.libvirt.windows_devices
    } else {
        crate::spec::WindowsDevices::Emulated
    }
}

/// The provider's name of a Windows node's base disk ([`VmSpec::golden`]):
/// the recorded volume whose path [`windows_base`] put in `base.path`. Not
/// the path's file name: a Hyper-V path is a Windows path wherever
/// devcluster runs, and a provider names its volumes as it likes. A record
/// without a volume (a disk in the cache) falls back to the file name.
fn windows_base_volume(dirs: &Dirs, base: &BaseImage) -> Option<String> {
    images::golden::list(dirs)
        .ok()
        .and_then(|disks| {
            disks
                .into_iter()
                .find_map(|d| d.volume.filter(|v| v.path == base.path).map(|v| v.name))
        })
        .or_else(|| {
            base.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
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
    let seed_err = |source| MachinesError::Seed {
        node: node.name.clone(),
        source,
    };
    // A Windows node is a linked clone of its base disk (see
    // `windows_base`) with its identity on an answer-file CD.
    let (seed_iso, golden) = if node.os == Os::Windows {
        let seed = crate::seed::windows::node_seed_for(plan, node, secrets).ok_or_else(|| {
            MachinesError::NoHostKey {
                node: node.name.clone(),
            }
        })?;
        let iso = crate::seed::windows::node_seed_iso(&seed).map_err(seed_err)?;
        (iso, windows_base_volume(dirs, base))
    } else {
        let seed = crate::seed::seed_inputs_for(
            plan,
            node,
            &secrets.ssh_client.public_line,
            host.private_openssh.expose(),
            &host.public_line,
        );
        // VirtualBox VMs have a NAT NIC besides the cluster's (see
        // providers::virtualbox): their seed configures both.
        let iso = if plan.provider == crate::spec::ProviderKind::Virtualbox {
            let nat_mac = crate::providers::virtualbox::nat_mac(&node.mac);
            crate::seed::linux_seed_iso_two_nics(&seed, &nat_mac)
        } else {
            crate::seed::linux_seed_iso(&seed)
        };
        (iso.map_err(seed_err)?, None)
    };
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
        golden,
        seed_iso,
        install_iso: None,
        // Read by libvirt only (see `windows_devices`); its Windows nodes
        // boot the base disk built for the same choice.
        windows_devices: match node.os {
            Os::Windows => plan.libvirt.windows_devices,
            Os::Linux => crate::spec::WindowsDevices::Emulated,
        },
        drivers_iso: None,
        serial_log: dirs
            .cluster(&plan.cluster)
            .join("logs")
            .join(format!("{}.serial.log", node.name)),
    })
}

/// Before VMs are created: a node whose VM is gone gets a new, empty disk,
/// so the steps its state records as done are forgotten (when that node is
/// the control plane, every worker's `join` too:
/// [`crate::state::ClusterState::control_plane_recreated`]); and each VM to
/// be created is cloned from a golden disk when one fits
/// ([`crate::golden::for_node`]), recorded in its state. Returns the nodes
/// cloned from a golden disk, and notes for the user (a golden disk that
/// does not fit).
pub async fn choose_disks(
    dirs: &Dirs,
    provider: &dyn Provider,
    st: &mut crate::state::ClusterState,
    vms: &mut [VmSpec],
) -> Result<(Vec<(String, images::golden::GoldenDisk)>, Vec<String>), MachinesError> {
    use crate::providers::VmState;
    let caps = provider.capabilities();
    let mut cloned = Vec::new();
    let mut notes = Vec::new();
    let cp = st.plan.control_plane().name.clone();
    let mut cp_recreated = false;
    for vm in vms.iter_mut() {
        let state = provider
            .state(&vm.name)
            .await
            .map_err(|source| MachinesError::Provider {
                node: vm.name.clone(),
                source,
            })?;
        if state != VmState::Absent {
            continue;
        }
        let ns = st.nodes.entry(vm.name.clone()).or_default();
        // A control plane that had done steps had a cluster workers may
        // have joined; one that never ran any is simply being made.
        if vm.name == cp && !ns.completed_steps.is_empty() {
            cp_recreated = true;
        }
        ns.completed_steps.clear();
        ns.failed_step = None;
        ns.from_golden = None;
        let Some(node) = st.plan.node(&vm.name) else {
            continue;
        };
        match crate::golden::for_node(dirs, &st.plan, node, &vm.base, provider.kind(), caps) {
            Ok(Some(g)) => {
                vm.golden = g.volume.as_ref().map(|v| v.name.clone());
                ns.from_golden = Some(g.key.id());
                cloned.push((vm.name.clone(), g));
            }
            Ok(None) => {}
            Err(note) => notes.push(note),
        }
    }
    if cp_recreated {
        let joined = st.control_plane_recreated();
        if !joined.is_empty() {
            notes.push(format!(
                "the control plane's VM is gone: it is made again with a new, empty cluster, so {} join it again",
                joined.join(", ")
            ));
        }
    }
    Ok((cloned, notes))
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

/// What a node reports while it is provisioned.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    WaitingForSsh,
    SshReady(std::time::Duration),
    Step(crate::provision::StepEvent),
    Golden(GoldenEvent),
    /// What the node's task waits for between steps, as a person reads
    /// it: another node (the control plane's release, its network add-on)
    /// or the host (fetching the node's software).
    Waiting(String),
    /// The control plane's prepare-node installed this patch release
    /// (`X.Y.Z`): the cluster's, from now on ([`Plan::kubernetes_release`]).
    Release(String),
}

/// Keeping the control plane's prepared disk ([`crate::golden`]).
#[derive(Debug, Clone)]
pub enum GoldenEvent {
    Capturing,
    Kept {
        id: String,
        bytes: u64,
        took: std::time::Duration,
    },
    /// Not kept, and why (`up` goes on: it is an optimisation).
    NotKept(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Ssh(#[from] crate::provision::ssh::SshError),
    #[error(transparent)]
    Step(#[from] crate::provision::StepError),
    #[error(transparent)]
    Log(#[from] crate::provision::log::LogError),
    #[error("node {node}: step {step} failed")]
    Kube {
        node: String,
        step: String,
        #[source]
        source: Box<crate::kube::client::KubeError>,
    },
    #[error("node {node}: did not run {step}: the control plane {control_plane} failed")]
    ControlPlaneFailed {
        node: String,
        step: String,
        control_plane: String,
    },
    #[error("node {node}: cannot get its node software")]
    NodeSoftware {
        node: String,
        #[source]
        source: Arc<crate::images::node_software::NodeSoftwareError>,
    },
    #[error("node {node}: cannot make its steps")]
    Steps {
        node: String,
        #[source]
        source: crate::error::Bug,
    },
    /// A Windows node that never answered SSH: its first boot is where it
    /// went wrong, so the hint says where to watch it.
    #[error("Windows node {node} did not answer SSH")]
    WindowsSsh {
        node: String,
        /// Where to look: the console and the serial log, per provider.
        look: String,
        #[source]
        source: crate::provision::ssh::SshError,
    },
}

impl ProvisionError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ProvisionError::Step(s) => s.hint(),
            ProvisionError::Ssh(s) => s.hint(),
            ProvisionError::Kube { node, source, .. } => source
                .hint()
                .or_else(|| Some(format!("see the whole log with `devcluster logs {node}`"))),
            ProvisionError::ControlPlaneFailed { .. } => Some(
                "fix the control plane's failure (above), then run `devcluster up` again".into(),
            ),
            ProvisionError::NodeSoftware { source, .. } => source.hint(),
            ProvisionError::WindowsSsh { look, .. } => Some(look.clone()),
            _ => None,
        }
    }
}

/// Several nodes failed: each node with its own error, in plan order.
#[derive(Debug)]
pub struct NodesFailed(pub Vec<(String, ProvisionError)>);

impl std::fmt::Display for NodesFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<String> = self.0.iter().map(|(_, e)| e.to_string()).collect();
        write!(f, "{} nodes failed: {}", all.len(), all.join("; "))
    }
}

impl std::error::Error for NodesFailed {}

impl NodesFailed {
    pub fn hint(&self) -> Option<String> {
        let logs: Vec<String> = self
            .0
            .iter()
            .map(|(node, _)| format!("`devcluster logs {node}`"))
            .collect();
        // A Windows node that never answered SSH has its own place to look.
        let windows: Vec<String> = self
            .0
            .iter()
            .filter_map(|(node, e)| match e {
                ProvisionError::WindowsSsh { look, .. } => Some(format!("{node}: {look}")),
                _ => None,
            })
            .collect();
        let mut hint = format!(
            "see the whole logs with {}; after fixing the cause, `devcluster up` continues from the failed steps",
            logs.join(", ")
        );
        for w in windows {
            hint.push_str("; ");
            hint.push_str(&w);
        }
        Some(hint)
    }
}

/// The host-side step after `kubeadm init`: the pod network applied
/// through the API server. Recorded with the control plane's steps.
pub const NETWORK_ADDON: &str = "network-addon";

/// The steps of a node, in order: the OS preparation, then (unless the
/// plan is machines only) the Kubernetes ones. Every step honours the test
/// hook ([`crate::provision::Step::with_test_hook_from_env`]).
pub fn node_steps(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    software: Option<&[crate::images::node_software::CachedArtifact]>,
) -> Result<Vec<crate::provision::Step>, crate::error::Bug> {
    use crate::provision::steps;
    let mut out = vec![steps::prepare_os(plan, node)];
    // A Windows worker's Kubernetes steps need the cluster's release and
    // its agents' tokens first: its task builds them
    // ([`crate::windows_join::kubernetes`]).
    if plan.kubernetes && node.os == Os::Linux {
        out.extend(steps::kubernetes_steps(plan, node, secrets, software)?);
    }
    Ok(out
        .into_iter()
        .map(crate::provision::Step::with_test_hook_from_env)
        .collect())
}

/// Applies the pod network (flannel, configured for the plan) once the
/// API server answers, logging to the control plane's log.
async fn network_addon(
    plan: &Plan,
    secrets: &ClusterSecrets,
    log: &mut crate::provision::log::NodeLog,
) -> Result<(), crate::kube::client::KubeError> {
    use crate::kube::client;
    let _ = log.line(NETWORK_ADDON, "waiting for the API server (/readyz)");
    let kube = client::client_from_admin_kubeconfig(&secrets.admin_kubeconfig_path).await?;
    client::wait_api_healthy(
        &kube,
        crate::provision::deadlines::Deadlines::for_plan(plan).api_healthy,
    )
    .await?;
    let manifest = crate::kube::flannel::manifest(plan).map_err(|e| {
        crate::kube::client::KubeError::Manifest {
            index: 0,
            message: e.0,
        }
    })?;
    let mut applied = client::apply_manifests(&kube, &manifest).await?;
    // Linux-only workloads pinned, and the Windows agents' identities
    // (src/kube/windows.rs), before any Windows node joins.
    applied.extend(crate::kube::windows::apply_linux_pins(&kube).await?);
    if plan.nodes.iter().any(|n| n.os == Os::Windows) {
        applied.extend(
            client::apply_manifests(&kube, &crate::kube::windows::agents_manifest()).await?,
        );
    }
    for object in applied {
        let _ = log.line(NETWORK_ADDON, &format!("applied {object}"));
    }
    let _ = log.line(
        NETWORK_ADDON,
        &format!(
            "flannel {} (VXLAN VNI {}, UDP {}) for {}",
            crate::kube::flannel::RELEASE,
            crate::kube::flannel::VXLAN_VNI,
            crate::kube::flannel::VXLAN_PORT,
            plan.network.pod_cidr
        ),
    );
    Ok(())
}

/// How far the control plane's task got, as the workers of the same run
/// see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPlaneProgress {
    /// Its steps through prepare-node have not finished.
    Preparing,
    /// They finished; the release its kubeadm reported, when read.
    Prepared(Option<String>),
    /// It failed, at any step.
    Failed,
}

/// Resolves when the control plane's task reports that it failed, and
/// never otherwise: a control plane that succeeds drops its sender, which
/// is no signal. Workers race their waits and joins against it.
pub async fn control_plane_failed(
    progress: &mut tokio::sync::watch::Receiver<ControlPlaneProgress>,
) {
    if progress
        .wait_for(|p| *p == ControlPlaneProgress::Failed)
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}

/// Whether a worker's prepare-node waits for the control plane's: when
/// the cluster's one patch release is not chosen yet and the control plane
/// is provisioned in the same run (its prepare-node chooses it, see
/// [`Plan::kubernetes_release`]), and the worker has a prepare-node to run.
/// prepare-os runs before the wait.
pub fn prepare_node_waits(
    plan: &Plan,
    node: &NodePlan,
    cp_in_run: bool,
    runs_prepare_node: bool,
) -> bool {
    plan.kubernetes
        && node.role == crate::plan::Role::Worker
        && plan.kubernetes_release.is_none()
        && cp_in_run
        && runs_prepare_node
}

/// Which nodes [`provision_all`] works on, and whether workers join.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Only this node (`node add`); every node when `None`.
    pub only: Option<String>,
    /// False: workers stop before `join` (a node added while the control
    /// plane is not initialised yet; `up` joins it later).
    pub join: bool,
    /// Only the steps done before (each is skipped and logged as such):
    /// `start` checks its nodes and leaves unfinished work to `up`.
    pub done_only: bool,
    /// Workers to join again (a re-created control plane): their guest's
    /// `join` marker is removed before their steps run.
    pub rejoin: Vec<String>,
    /// Never download (`--offline`): Windows workers' node software must
    /// be in the host's cache.
    pub offline: bool,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            only: None,
            join: true,
            done_only: false,
            rejoin: Vec::new(),
            offline: false,
        }
    }
}

impl Scope {
    pub fn includes(&self, node: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == node)
    }
}

/// Per node, in parallel: wait for SSH with the pinned host key, then run
/// the node's steps, skipping those in `done`. Workers prepare and start
/// joining while the control plane is still initialising (join retries
/// discovery until the API server answers); when the control plane fails,
/// a worker waiting to join stops instead of waiting out its timeout.
/// After `kubeadm init` the control plane's task applies the pod network
/// from the host ([`NETWORK_ADDON`]). With `capture`, the control plane's
/// disk is kept as a golden disk right after its prepare-node runs (see
/// [`crate::golden`]). Events stream to `events` (the caller persists
/// state on each); returns each node's outcome.
#[allow(clippy::too_many_arguments)]
pub async fn provision_all(
    dirs: &Dirs,
    plan: &Plan,
    secrets: &ClusterSecrets,
    done: &BTreeMap<String, Vec<String>>,
    scope: &Scope,
    capture: Option<crate::golden::Capture>,
    ssh_timeout: std::time::Duration,
    events: tokio::sync::mpsc::UnboundedSender<(String, NodeEvent)>,
) -> Vec<(String, Result<(), ProvisionError>)> {
    use crate::plan::Role;
    use crate::provision::StepEvent;
    use crate::provision::ssh::{SshTarget, wait_for_ssh};
    use crate::provision::steps::{JOIN, PREPARE_NODE};
    let (cp_tx, cp_rx) = tokio::sync::watch::channel(ControlPlaneProgress::Preparing);
    let mut cp_tx = Some(cp_tx);
    let cp_name = plan.control_plane().name.clone();
    let cp_in_run = scope.includes(&cp_name);
    // Linux nodes upload containerd, runc and the CNI plugins from the
    // cache (`up` and `node add` fetched them before provisioning).
    let linux_software = crate::images::node_software::linux_needed(plan);
    // What Windows workers wait on besides the control plane's progress
    // (the release): the network add-on.
    let addon_done = done
        .get(&cp_name)
        .is_some_and(|d| d.iter().any(|s| s == NETWORK_ADDON));
    let (addon_tx, addon_rx) = tokio::sync::watch::channel(addon_done);
    let mut addon_tx = Some(addon_tx);
    let windows_software = Arc::new(crate::windows_join::SoftwareCell::new());
    let mut set = tokio::task::JoinSet::new();
    let mut results = Vec::new();
    for node in plan.nodes.iter().filter(|n| scope.includes(&n.name)) {
        let target = match SshTarget::for_node(node, secrets) {
            Ok(t) => t,
            Err(e) => {
                results.push((node.name.clone(), Err(e.into())));
                continue;
            }
        };
        let done = done.get(&node.name).cloned().unwrap_or_default();
        let prepared = done.iter().any(|d| d == PREPARE_NODE);
        let software = match linux_software && node.os == crate::plan::Os::Linux {
            false => None,
            true => match crate::images::node_software::cached_linux(dirs) {
                Ok(s) => Some(s),
                // A prepare-node that is done is not run again (nor one
                // that `start` leaves out): no upload.
                Err(_) if prepared || scope.done_only => None,
                Err(source) => {
                    let node = node.name.clone();
                    results.push((
                        node.clone(),
                        Err(ProvisionError::NodeSoftware {
                            node,
                            source: Arc::new(source),
                        }),
                    ));
                    continue;
                }
            },
        };
        let mut steps = match node_steps(plan, node, secrets, software.as_deref()) {
            Ok(s) => s,
            Err(source) => {
                let node = node.name.clone();
                results.push((node.clone(), Err(ProvisionError::Steps { node, source })));
                continue;
            }
        };
        if !scope.join {
            steps.retain(|s| s.name != JOIN);
        }
        if scope.done_only {
            steps.retain(|s| done.contains(&s.name));
        }
        let addon =
            plan.kubernetes && (!scope.done_only || done.iter().any(|d| d == NETWORK_ADDON));
        let is_cp = node.role == Role::ControlPlane;
        // Only the control plane's task reports its progress; the workers
        // wait on it before prepare-node (for the release) and `join`.
        let report = if is_cp { cp_tx.take() } else { None };
        let addon_tx = if is_cp { addon_tx.take() } else { None };
        let mut cp_progress = cp_rx.clone();
        let runs_prepare_node = !prepared && steps.iter().any(|s| s.name == PREPARE_NODE);
        let waits = prepare_node_waits(plan, node, cp_in_run, runs_prepare_node);
        let windows = (scope.join && !scope.done_only && crate::windows_join::joins(plan, node))
            .then(|| crate::windows_join::Shared {
                control_plane: cp_rx.clone(),
                addon: addon_rx.clone(),
                software: windows_software.clone(),
                offline: scope.offline,
            });
        let (mut before, join): (Vec<_>, Vec<_>) = steps.into_iter().partition(|s| s.name != JOIN);
        // The steps through prepare-node (after which the control plane's
        // release is read and its disk may be kept), then the rest; a
        // worker that waits runs prepare-node apart, after the wait.
        let capture = if is_cp { capture.clone() } else { None };
        let mut rest = match before.iter().position(|s| s.name == PREPARE_NODE) {
            Some(i) => before.split_off(i + 1),
            None => Vec::new(),
        };
        let waiting_step = if waits { before.pop() } else { None };
        let (dirs, plan, secrets) = (dirs.clone(), plan.clone(), secrets.clone());
        let node_plan = node.clone();
        let cp_name = cp_name.clone();
        let name = node.name.clone();
        let ssh_timeout = ssh_timeout_for(node, ssh_timeout);
        // A Windows worker's join steps are windows_join's.
        let rejoin_steps: Vec<&'static str> = if windows.is_some() {
            crate::windows_join::JOIN_STEPS.to_vec()
        } else if !join.is_empty() {
            vec![JOIN]
        } else {
            Vec::new()
        };
        let rejoin = scope.rejoin.contains(&name) && !rejoin_steps.is_empty();
        let tx = events.clone();
        set.spawn(async move {
            let send = |ev: NodeEvent| {
                let _ = tx.send((name.clone(), ev));
            };
            let r = async {
                send(NodeEvent::WaitingForSsh);
                let (session, waited) = wait_for_ssh(&target, ssh_timeout)
                    .await
                    .map_err(|e| ssh_failed(&dirs, &plan, &node_plan, e))?;
                send(NodeEvent::SshReady(waited));
                let mut log = crate::provision::log::NodeLog::open(&dirs, &plan.cluster, &name)?;
                // This worker gives up on `step` because the control plane failed.
                let stopped = |log: &mut crate::provision::log::NodeLog, step: &str, how: &str| {
                    let _ = log.line(step, &format!("{how}: the control plane {cp_name} failed"));
                    ProvisionError::ControlPlaneFailed {
                        node: name.clone(),
                        step: step.into(),
                        control_plane: cp_name.clone(),
                    }
                };
                if rejoin {
                    for step in &rejoin_steps {
                        crate::provision::forget_step(&session, step).await?;
                        let _ = log.line(step, "forgotten: the control plane was re-created");
                    }
                }
                let mut prepared = None;
                crate::provision::run_steps(&session, &before, &done, &mut log, |ev| {
                    if let StepEvent::Finished(step, took) = &ev
                        && step == PREPARE_NODE
                    {
                        prepared = Some(*took);
                    }
                    send(NodeEvent::Step(ev))
                })
                .await?;
                let mut chosen_release = None;
                if is_cp && plan.kubernetes && plan.kubernetes_release.is_none() {
                    // The cluster's one patch release: what this first
                    // prepare-node installed, kept for every later node.
                    let out = session
                        .exec_collect("kubeadm version -o short", None)
                        .await?;
                    let printed = String::from_utf8_lossy(&out.stdout);
                    if let Some(release) =
                        crate::plan::parse_release(&plan.kubernetes_version, &printed)
                    {
                        let _ = log.line(
                            PREPARE_NODE,
                            &format!("the cluster's Kubernetes release is {release}"),
                        );
                        send(NodeEvent::Release(release.clone()));
                        chosen_release = Some(release);
                    }
                }
                if let Some(tx) = &report {
                    let _ = tx.send(ControlPlaneProgress::Prepared(chosen_release));
                }
                if let Some(step) = waiting_step {
                    let why = format!(
                        "waiting for {cp_name}'s prepare-node: it chooses the cluster's Kubernetes release"
                    );
                    let _ = log.line(PREPARE_NODE, &why);
                    send(NodeEvent::Waiting(why));
                    let seen = cp_progress
                        .wait_for(|p| *p != ControlPlaneProgress::Preparing)
                        .await
                        .map(|p| p.clone());
                    let step = match seen {
                        Ok(ControlPlaneProgress::Prepared(Some(release))) => {
                            let mut chosen = plan.clone();
                            chosen.kubernetes_release = Some(release);
                            crate::provision::steps::prepare_node(
                                &chosen,
                                &node_plan,
                                software.as_deref(),
                            )
                            .map_err(|source| ProvisionError::Steps {
                                node: name.clone(),
                                source,
                            })?
                            .with_test_hook_from_env()
                        }
                        Ok(ControlPlaneProgress::Failed) => {
                            return Err(stopped(&mut log, PREPARE_NODE, "not run"));
                        }
                        // No release read (or no control plane task):
                        // the newest patch, as before a release is known.
                        _ => step,
                    };
                    rest.insert(0, step);
                }
                if let (Some(capture), Some(prepared)) = (&capture, prepared) {
                    send(NodeEvent::Golden(GoldenEvent::Capturing));
                    let kept = crate::golden::capture(
                        &dirs,
                        &session,
                        &mut log,
                        capture,
                        &plan.cluster,
                        &name,
                        prepared,
                    )
                    .await;
                    send(NodeEvent::Golden(match kept {
                        Ok(k) => GoldenEvent::Kept {
                            id: k.disk.key.id(),
                            bytes: k.disk.size_bytes,
                            took: k.took,
                        },
                        Err(e) => {
                            let why = crate::error::one_line(&e);
                            let _ = log.line(crate::golden::LOG_TAG, &format!("not kept: {why}"));
                            GoldenEvent::NotKept(why)
                        }
                    }));
                }
                crate::provision::run_steps(&session, &rest, &done, &mut log, |ev| {
                    send(NodeEvent::Step(ev))
                })
                .await?;
                if !join.is_empty() {
                    // Stop when the control plane fails.
                    let failed = control_plane_failed(&mut cp_progress);
                    tokio::select! {
                        r = crate::provision::run_steps(&session, &join, &done, &mut log, |ev| {
                            send(NodeEvent::Step(ev))
                        }) => r?,
                        () = failed => return Err(stopped(&mut log, JOIN, "stopped")),
                    }
                }
                if let Some(shared) = windows {
                    crate::windows_join::kubernetes(
                        &dirs, &plan, &node_plan, &secrets, &session, &mut log, &done, shared,
                        &send,
                    )
                    .await?;
                }
                let _ = session.close().await;
                if is_cp && addon {
                    if done.iter().any(|d| d == NETWORK_ADDON) {
                        let _ = log.line(NETWORK_ADDON, "skipped: already done");
                        send(NodeEvent::Step(StepEvent::Skipped(NETWORK_ADDON.into())));
                    } else {
                        send(NodeEvent::Step(StepEvent::Started(NETWORK_ADDON.into())));
                        let started = std::time::Instant::now();
                        match network_addon(&plan, &secrets, &mut log).await {
                            Ok(()) => {
                                if let Some(tx) = &addon_tx {
                                    let _ = tx.send(true);
                                }
                                send(NodeEvent::Step(StepEvent::Finished(
                                    NETWORK_ADDON.into(),
                                    started.elapsed(),
                                )))
                            }
                            Err(source) => {
                                let _ = log.line(NETWORK_ADDON, &format!("failed: {source}"));
                                send(NodeEvent::Step(StepEvent::Failed(
                                    NETWORK_ADDON.into(),
                                    started.elapsed(),
                                )));
                                return Err(ProvisionError::Kube {
                                    node: name.clone(),
                                    step: NETWORK_ADDON.into(),
                                    source: Box::new(source),
                                });
                            }
                        }
                    }
                }
                Ok::<(), ProvisionError>(())
            }
            .await;
            if r.is_err()
                && let Some(tx) = report
            {
                let _ = tx.send(ControlPlaneProgress::Failed);
            }
            (name, r)
        });
    }
    drop(events);
    // Without the control plane in scope nobody chooses a release or
    // applies the add-on: a Windows worker waiting on them stops.
    drop(addon_tx);
    // A control plane that could not even start its task.
    let cp = &plan.control_plane().name;
    if let Some(tx) = cp_tx
        && results.iter().any(|(n, r)| n == cp && r.is_err())
    {
        let _ = tx.send(ControlPlaneProgress::Failed);
    }
    while let Some(j) = set.join_next().await {
        match j {
            Ok(r) => results.push(r),
            Err(e) => results.push((
                "?".into(),
                Err(ProvisionError::Step(crate::provision::StepError::Invalid {
                    node: "?".into(),
                    step: "?".into(),
                    source: crate::error::Bug(format!("provisioning task failed: {e}")),
                })),
            )),
        }
    }
    results
}

/// Applies one node event to the state (completed steps, the failed one,
/// the phase) and shows it on `progress`.
pub fn apply_event(
    st: &mut crate::state::ClusterState,
    node: &str,
    ev: &NodeEvent,
    progress: &crate::ui::NodeProgress,
) {
    use crate::provision::StepEvent;
    use crate::state::NodePhase;
    use crate::state::{StepTime, now_ms};
    let ns = st.nodes.entry(node.to_string()).or_default();
    match ev {
        NodeEvent::WaitingForSsh => progress.set(node, "waiting for SSH"),
        NodeEvent::SshReady(t) => progress.set(node, format!("SSH ready after {t:.0?}")),
        NodeEvent::Waiting(what) => progress.set(node, what),
        NodeEvent::Step(StepEvent::Started(s)) => {
            ns.step_times.insert(
                s.clone(),
                StepTime {
                    started_ms: now_ms(),
                    took_ms: None,
                },
            );
            progress.set(node, format!("{s} ..."));
        }
        NodeEvent::Step(StepEvent::Skipped(s)) => {
            if !ns.completed_steps.contains(s) {
                ns.completed_steps.push(s.clone());
            }
            progress.set(node, format!("{s} skipped (already done)"));
        }
        NodeEvent::Step(StepEvent::Finished(s, t)) => {
            if !ns.completed_steps.contains(s) {
                ns.completed_steps.push(s.clone());
            }
            if s == crate::provision::steps::JOIN {
                ns.rejoin = false;
            }
            if ns.failed_step.as_deref() == Some(s) {
                ns.failed_step = None;
            }
            if let Some(t) = ns.step_times.get_mut(s) {
                t.took_ms = Some(now_ms().saturating_sub(t.started_ms));
            }
            progress.set(node, format!("{s} done in {t:.1?}"));
        }
        NodeEvent::Release(release) => {
            // Chosen once: a later report never changes it.
            if st.plan.kubernetes_release.is_none() {
                st.plan.kubernetes_release = Some(release.clone());
            }
        }
        NodeEvent::Golden(GoldenEvent::Capturing) => {
            progress.set(node, "keeping the prepared disk as a golden disk ...")
        }
        NodeEvent::Golden(GoldenEvent::Kept { id, bytes, took }) => progress.set(
            node,
            format!(
                "kept golden disk {id} ({}) in {}",
                crate::images::download::human_bytes(*bytes),
                crate::ui::duration(*took)
            ),
        ),
        NodeEvent::Golden(GoldenEvent::NotKept(_)) => {
            progress.set(node, "golden disk not kept (see the warning)")
        }
        NodeEvent::Step(StepEvent::Failed(s, t)) => {
            if let Some(time) = ns.step_times.get_mut(s) {
                time.took_ms = Some(now_ms().saturating_sub(time.started_ms));
            }
            ns.failed_step = Some(s.clone());
            ns.phase = NodePhase::Failed;
            progress.finish(node, format!("{s} failed after {t:.1?}"));
        }
    }
}

/// How long SSH may take to answer on a Windows node: a first boot runs
/// the specialize pass and a reboot before sshd starts (Lima #5255: ten
/// minutes "is not sufficient for the initial boot of Windows guests").
pub const WINDOWS_SSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);

/// TEST ONLY: seconds a Windows node may take to answer SSH, instead of
/// [`WINDOWS_SSH_TIMEOUT`] (the real-VM test of a stand-in Windows disk
/// that never boots Windows waits for it briefly).
pub const TEST_WINDOWS_SSH_TIMEOUT_ENV: &str = "DEVCLUSTER_TEST_WINDOWS_SSH_TIMEOUT";

/// The SSH readiness bound of `node`: `base`, or at least
/// [`WINDOWS_SSH_TIMEOUT`] for a Windows node (unless
/// [`TEST_WINDOWS_SSH_TIMEOUT_ENV`] says otherwise).
pub fn ssh_timeout_for(node: &NodePlan, base: std::time::Duration) -> std::time::Duration {
    match node.os {
        Os::Linux => base,
        Os::Windows => match std::env::var(TEST_WINDOWS_SSH_TIMEOUT_ENV)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(secs) => std::time::Duration::from_secs(secs),
            None => base.max(WINDOWS_SSH_TIMEOUT),
        },
    }
}

/// A node's SSH wait failed: a Windows node's error says where to watch
/// its first boot (the provider's console, its serial log, its node log).
fn ssh_failed(
    dirs: &Dirs,
    plan: &Plan,
    node: &NodePlan,
    source: crate::provision::ssh::SshError,
) -> ProvisionError {
    use crate::provision::ssh::SshError;
    if node.os != Os::Windows || !matches!(source, SshError::Unreachable { .. }) {
        return source.into();
    }
    let console = crate::providers::console_hint(plan.provider, &plan.libvirt.uri, &node.name);
    let serial = dirs
        .cluster(&plan.cluster)
        .join("logs")
        .join(format!("{}.serial.log", node.name));
    let look = format!(
        "a Windows node's first boot runs Windows' specialize pass and the seed's devcluster-node.ps1 before sshd answers; watch {console}, read its serial log {} (`devcluster logs {} --serial`); `devcluster status` shows whether the VM runs",
        serial.display(),
        node.name
    );
    // Its node log has no step yet: say there what happened and where to
    // look, for `devcluster logs NODE`.
    if let Ok(mut log) = crate::provision::log::NodeLog::open(dirs, &plan.cluster, &node.name) {
        let _ = log.line("ssh", &format!("{source}; {look}"));
    }
    ProvisionError::WindowsSsh {
        node: node.name.clone(),
        look,
        source,
    }
}

/// The command that prints a node's clock as Unix seconds (with a
/// fraction).
pub fn clock_read_command(os: Os) -> String {
    match os {
        Os::Linux => "date -u +%s.%N".into(),
        Os::Windows => crate::provision::remote::pwsh_exec_string(
            "[DateTimeOffset]::UtcNow.ToUnixTimeMilliseconds() / 1000.0",
        ),
    }
}

/// The commands that set a node's clock to `unix_secs` and restart its time
/// sync (a sync that fails, e.g. with no time source, is not an error).
pub fn clock_set_commands(target: &crate::provision::SshTarget, unix_secs: f64) -> Vec<String> {
    match target.os {
        Os::Linux => vec![
            target.privileged(&format!("date -u -s @{unix_secs:.3} >/dev/null")),
            target.privileged(
                "sh -c 'systemctl restart systemd-timesyncd 2>/dev/null || systemctl restart chrony 2>/dev/null || true'",
            ),
        ],
        Os::Windows => vec![crate::provision::remote::pwsh_exec_string(&format!(
            "Set-Date -Date ([DateTimeOffset]::FromUnixTimeMilliseconds({}).LocalDateTime) | Out-Null\n\
             & w32tm.exe /resync /nowait | Out-Null; $global:LASTEXITCODE = 0",
            (unix_secs * 1000.0).round() as i64
        ))],
    }
}

/// After a resume: a suspended guest's clock stands still while it is
/// saved, so it is hours behind and certificates look "not yet valid".
/// Steps every node's clock to the host's (over SSH, which also proves the
/// node answers again) and restarts its time sync. Returns each node's
/// skew before the step, in seconds (guest minus host).
pub async fn sync_clocks(
    plan: &Plan,
    secrets: &ClusterSecrets,
    timeout: std::time::Duration,
) -> Vec<(String, Result<f64, ProvisionError>)> {
    use crate::provision::ssh::{SshTarget, wait_for_ssh};
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::new();
    for node in &plan.nodes {
        let target = match SshTarget::for_node(node, secrets) {
            Ok(t) => t,
            Err(e) => {
                out.push((node.name.clone(), Err(e.into())));
                continue;
            }
        };
        let name = node.name.clone();
        let timeout = ssh_timeout_for(node, timeout);
        set.spawn(async move {
            let r = async {
                let (session, _) = wait_for_ssh(&target, timeout).await?;
                let guest = session
                    .exec_collect(&clock_read_command(target.os), None)
                    .await?;
                let guest: f64 = String::from_utf8_lossy(&guest.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(f64::NAN);
                let now = || {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0)
                };
                let skew = guest - now();
                for command in clock_set_commands(&target, now()) {
                    session.exec_collect(&command, None).await?;
                }
                let _ = session.close().await;
                Ok::<f64, ProvisionError>(skew)
            }
            .await;
            (name, r)
        });
    }
    while let Some(Ok(r)) = set.join_next().await {
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Windows node's `golden` is the provider's recorded name of the
    /// base disk (a VirtualBox base VM, whose disk file is `disk.vdi`);
    /// without a record, the path's file name (the libvirt volume name).
    #[test]
    fn a_windows_node_clones_the_recorded_base_disk_by_its_name() {
        let mut plan = crate::kube::kubeadm::tests::plan("1.37");
        plan.provider = crate::spec::ProviderKind::Virtualbox;
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(tmp.path());
        let win = plan.node("dev-win1").unwrap().clone();
        assert!(matches!(
            windows_base(&dirs, &plan, &win, plan.provider),
            Err(MachinesError::NoWindowsBase { .. })
        ));
        let entry = images::catalog::find(&dirs, &win.image).unwrap();
        let image = crate::seed::windows::image_for(&entry.name).unwrap();
        let iso = entry
            .artifact_for(plan.provider)
            .unwrap()
            .sha256
            .clone()
            .unwrap();
        let key = images::winbase::key(&image, &iso, plan.provider, Default::default());
        let disk = tmp.path().join("devcluster-winbase-x/disk.vdi");
        images::golden::store_volume(
            &dirs,
            &key,
            images::golden::Made {
                image: entry.name.clone(),
                format: images::Format::Vdi,
                capacity_bytes: 64 << 30,
                source: "built by devcluster-build-x".into(),
                prepared_ms: 1,
            },
            images::golden::ProviderVolume {
                name: "devcluster-winbase-x".into(),
                path: disk.clone(),
                bytes: 1,
                uri: String::new(),
            },
        )
        .unwrap();
        let base = windows_base(&dirs, &plan, &win, plan.provider).unwrap();
        assert_eq!(base.path, disk);
        let secrets = crate::pki::ensure(&dirs, &plan).unwrap();
        let vm = vm_spec(&dirs, &plan, &win, &base, &secrets).unwrap();
        assert_eq!(vm.golden.as_deref(), Some("devcluster-winbase-x"));
        // A base given by hand, with no record: its file name.
        let other = BaseImage {
            path: "/pool/winbase-1.qcow2".into(),
            ..base
        };
        plan.provider = crate::spec::ProviderKind::Libvirt;
        let vm = vm_spec(&dirs, &plan, &win, &other, &secrets).unwrap();
        assert_eq!(vm.golden.as_deref(), Some("winbase-1.qcow2"));
    }

    #[test]
    fn a_windows_nodes_golden_is_the_recorded_volume_name_not_a_file_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(tmp.path());
        // A Hyper-V base disk: a Windows path wherever devcluster runs.
        let path = std::path::PathBuf::from(
            r"C:\ProgramData\Microsoft\Windows\Hyper-V\devcluster\bases\0123abcd.vhdx",
        );
        let base = BaseImage {
            name: "windows-server-2025".into(),
            path: path.clone(),
            sha256: "iso".into(),
            firmware: crate::providers::Firmware::Uefi,
            secure_boot: true,
        };
        let key = images::golden::GoldenKey {
            base_sha256: "iso".into(),
            kubernetes_version: String::new(),
            provider: crate::spec::ProviderKind::Hyperv,
            provisioners_sha256: "build".into(),
        };
        images::golden::store_volume(
            &dirs,
            &key,
            images::golden::Made {
                image: "windows-server-2025".into(),
                format: images::Format::Vhdx,
                capacity_bytes: 1,
                source: "built by b".into(),
                prepared_ms: 1,
            },
            images::golden::ProviderVolume {
                name: "0123abcd.vhdx".into(),
                path,
                bytes: 1,
                uri: String::new(),
            },
        )
        .unwrap();
        assert_eq!(
            windows_base_volume(&dirs, &base).as_deref(),
            Some("0123abcd.vhdx")
        );
        // Without a record the file name is all there is (a disk in the
        // cache); here that is the whole Windows path, on a Unix host.
        let other = Dirs::under(&tmp.path().join("other"));
        let fallback = windows_base_volume(&other, &base).unwrap();
        assert!(fallback.ends_with("0123abcd.vhdx"), "{fallback}");
    }

    #[test]
    fn workers_prepare_node_waits_for_the_control_planes_release() {
        let mut plan = crate::kube::kubeadm::tests::plan("1.37");
        plan.kubernetes_release = None;
        let cp = plan.control_plane().clone();
        let w1 = plan.node("dev-w1").unwrap().clone();
        // The first `up`: the control plane chooses the release.
        assert!(prepare_node_waits(&plan, &w1, true, true));
        // The control plane never waits; nor a worker whose prepare-node
        // is done or not run (start), nor one provisioned without the
        // control plane (`node add`: nothing would ever choose it).
        assert!(!prepare_node_waits(&plan, &cp, true, true));
        assert!(!prepare_node_waits(&plan, &w1, true, false));
        assert!(!prepare_node_waits(&plan, &w1, false, true));
        // Chosen already (a later `up`, `node add`): nothing to wait for.
        plan.kubernetes_release = Some("1.37.1".into());
        assert!(!prepare_node_waits(&plan, &w1, true, true));
        plan.kubernetes_release = None;
        plan.kubernetes = false;
        assert!(!prepare_node_waits(&plan, &w1, true, true));
    }

    /// A Windows node that never answers SSH: the error names it, the hint
    /// says where to look (console, serial log), its node log says the
    /// same, and the several-nodes hint keeps it. A Linux node's error is
    /// the SSH error itself.
    #[test]
    fn a_windows_ssh_wait_that_fails_says_where_to_look() {
        use crate::provision::ssh::{ConnectError, SshError};
        let mut plan = crate::kube::kubeadm::tests::plan("1.36");
        plan.provider = crate::spec::ProviderKind::Libvirt;
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(tmp.path());
        let unreachable = |node: &str| SshError::Unreachable {
            node: node.into(),
            addr: "192.168.100.31:22".into(),
            waited: std::time::Duration::from_secs(90),
            attempts: 7,
            source: ConnectError::TimedOut(std::time::Duration::from_secs(20)),
        };
        let win = plan.node("dev-win1").unwrap();
        let e = ssh_failed(&dirs, &plan, win, unreachable("dev-win1"));
        assert_eq!(e.to_string(), "Windows node dev-win1 did not answer SSH");
        let hint = e.hint().unwrap();
        assert!(hint.contains("vncdisplay dev-win1"), "{hint}");
        assert!(hint.contains("dev-win1.serial.log"), "{hint}");
        let log =
            std::fs::read_to_string(crate::provision::log::log_path(&dirs, "dev", "dev-win1"))
                .unwrap();
        assert!(
            log.contains("[ssh] dev-win1 (192.168.100.31:22) did not answer SSH within 90s"),
            "{log}"
        );
        let linux = plan.node("dev-w1").unwrap();
        let l = ssh_failed(&dirs, &plan, linux, unreachable("dev-w1"));
        assert!(matches!(l, ProvisionError::Ssh(_)), "{l:?}");
        let both = NodesFailed(vec![("dev-w1".into(), l), ("dev-win1".into(), e)]);
        let hint = both.hint().unwrap();
        assert!(
            hint.contains("dev-win1: a Windows node's first boot"),
            "{hint}"
        );
    }
}
