//! The Kubernetes steps of a Windows worker (`provisioners/windows/`),
//! pure functions of the plan, the cluster's secrets and the node software
//! in the host's cache:
//!
//! 1. `prepare-windows-node`: containerd, crictl, kubelet and kubeadm from
//!    the uploaded files (verified on the node against `software.json`);
//! 2. `join-windows`: `kubeadm join` with the Linux workers' token, CA hash
//!    and deadline;
//! 3. `network-windows`: flanneld.exe and kube-proxy.exe with their own
//!    ServiceAccount tokens.
//!
//! The software files themselves are large binaries: [`uploads`] lists
//! them (host path -> node path, sha256) for the runner to copy over SFTP
//! before the first step; the small text files (scripts, `software.json`,
//! the join config, agent kubeconfigs and tokens) are step files. The
//! Windows runner (run with `-NoProfile -NonInteractive -ExecutionPolicy
//! Bypass`, a reboot on exit 3010) is engineer winsteps' (issue 13); how
//! a step file's mode maps to an ACL is the runner's, and the scripts
//! restrict every secret file with icacls themselves as well.

use serde::Serialize;

use crate::error::Bug;
use crate::images::node_software::CachedArtifact;
use crate::kube::{kubeadm, windows};
use crate::pki::{ClusterSecrets, Secret};
use crate::plan::{NodePlan, Os, Plan, Role};

use super::deadlines::Deadlines;
use super::{Step, Upload};

pub const PREPARE_SCRIPT: &str =
    include_str!("../../provisioners/windows/prepare-windows-node.ps1");
pub const KUBELET_SERVICE_SCRIPT: &str =
    include_str!("../../provisioners/windows/kubelet-service.ps1");
pub const JOIN_SCRIPT: &str = include_str!("../../provisioners/windows/join-windows.ps1");
pub const NETWORK_SCRIPT: &str = include_str!("../../provisioners/windows/network-windows.ps1");

/// The common start of the three steps (`# @step-common` in each).
pub const STEP_COMMON_SCRIPT: &str = include_str!("../../provisioners/windows/step-common.ps1");
/// The line of a step script [`STEP_COMMON_SCRIPT`] replaces.
pub const STEP_COMMON_MARK: &str = "# @step-common\n";

/// A step script as it runs: [`STEP_COMMON_SCRIPT`] in place of its mark.
pub fn render(script: &str) -> Result<String, Bug> {
    if script.matches(STEP_COMMON_MARK).count() != 1 {
        return Err(Bug(
            "a Windows step script without exactly one # @step-common line".into(),
        ));
    }
    Ok(script.replacen(STEP_COMMON_MARK, STEP_COMMON_SCRIPT, 1))
}

pub const PREPARE: &str = "prepare-windows-node";
pub const JOIN: &str = "join-windows";
pub const NETWORK: &str = "network-windows";

/// Where the node software goes on the node.
pub const SOFTWARE_DIR: &str = "C:\\devcluster\\software";
/// Where the agents' kubeconfigs and tokens go.
pub const AGENT_DIR: &str = "C:\\devcluster\\agents";
/// Windows joins take longer than Linux ones (the kubelet's TLS bootstrap
/// is followed by the first pull of the Windows pause image, whose layers
/// are far larger than Linux's), so the join budget of the plan's
/// [`Deadlines`] is this many times longer on a Windows node.
pub const WINDOWS_JOIN_FACTOR: u32 = 2;
/// Default of `[windows] taint`: on. Most Linux workloads (Helm charts,
/// quick `kubectl run`s) select no OS; untainted, the scheduler puts some
/// of them on the Windows node, where they fail to pull. Windows pods
/// tolerate it explicitly (the `up` summary's example does).
pub const DEFAULT_TAINT: bool = true;

#[derive(Serialize)]
struct ManifestItem<'a> {
    name: &'a str,
    version: &'a str,
    file: &'a str,
    sha256: &'a str,
}

fn windows(node: &NodePlan, step: &str) -> Result<(), Bug> {
    if node.os != Os::Windows || node.role != Role::Worker {
        return Err(Bug(format!(
            "step {step} is for Windows workers, not {} ({} {})",
            node.name,
            node.os.as_str(),
            node.role.as_str()
        )));
    }
    Ok(())
}

/// The node software files to upload, in catalog order.
pub fn uploads(software: &[CachedArtifact]) -> Vec<Upload> {
    software
        .iter()
        .map(|a| Upload {
            host_path: a.path.clone(),
            node_path: format!("{SOFTWARE_DIR}\\{}", a.file_name),
            sha256: a.sha256.clone(),
        })
        .collect()
}

/// `software.json`: what the node checks every uploaded file against.
pub fn software_manifest(software: &[CachedArtifact]) -> String {
    let items: Vec<ManifestItem> = software
        .iter()
        .map(|a| ManifestItem {
            name: a.name,
            version: &a.version,
            file: &a.file_name,
            sha256: &a.sha256,
        })
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_default()
}

fn version(plan: &Plan) -> Result<&'static crate::versions::KubernetesVersion, Bug> {
    crate::versions::find(&plan.kubernetes_version).ok_or_else(|| {
        Bug(format!(
            "the plan's Kubernetes version {} is not supported",
            plan.kubernetes_version
        ))
    })
}

/// containerd, crictl, kubelet (service) and kubeadm: the node software
/// copied from the host's cache first ([`uploads`], skipped for files the
/// node already has), then the manifest the script verifies them against.
pub fn prepare(plan: &Plan, node: &NodePlan, software: &[CachedArtifact]) -> Result<Step, Bug> {
    windows(node, PREPARE)?;
    let v = version(plan)?;
    let step = uploads(software)
        .into_iter()
        .fold(Step::new(PREPARE, render(PREPARE_SCRIPT)?), Step::upload);
    Ok(step
        .env("SOFTWARE_DIR", SOFTWARE_DIR)
        .env("NODE_NAME", &node.name)
        .env("NODE_IP", node.ip.to_string())
        .env("PAUSE_IMAGE", &v.pause_image)
        .file(
            format!("{SOFTWARE_DIR}\\software.json"),
            Secret::new(software_manifest(software)),
            0o644,
        )
        .file(
            "C:\\k\\kubelet-service.ps1",
            Secret::new(KUBELET_SERVICE_SCRIPT),
            0o644,
        ))
}

/// `kubeadm join` (same token, CA hash and deadline rules as Linux).
pub fn join(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    deadlines: &Deadlines,
    taint: bool,
) -> Result<Step, Bug> {
    windows(node, JOIN)?;
    let v = version(plan)?;
    let config = kubeadm::windows_join_config_with(
        plan,
        node,
        &secrets.bootstrap_token,
        &secrets.ca_cert_hash,
        v,
        taint,
    )?;
    Ok(Step::new(JOIN, render(JOIN_SCRIPT)?)
        .env("KUBEADM_CONFIG", kubeadm::WINDOWS_JOIN_CONFIG_PATH)
        .env("API_ENDPOINT", &plan.network.api_endpoint)
        .env(
            "API_WAIT_TIMEOUT",
            deadlines.api_wait.as_secs().max(1).to_string(),
        )
        .env(
            "JOIN_TIMEOUT",
            (deadlines.join * WINDOWS_JOIN_FACTOR)
                .as_secs()
                .max(1)
                .to_string(),
        )
        .env("NODE_NAME", &node.name)
        .env("NODE_IP", node.ip.to_string())
        .file(kubeadm::WINDOWS_JOIN_CONFIG_PATH, config, 0o600)
        .redact(secrets.bootstrap_token.clone()))
}

/// The agents' tokens, from [`windows::agent_token`].
pub struct AgentTokens {
    pub flannel: Secret,
    pub kube_proxy: Secret,
}

/// flanneld.exe and kube-proxy.exe, each with its own token.
pub fn network(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    tokens: &AgentTokens,
    deadlines: &Deadlines,
) -> Result<Step, Bug> {
    windows(node, NETWORK)?;
    let vip = plan
        .network
        .service_cidr
        .nth(1)
        .ok_or_else(|| Bug("the service network has no first address".into()))?;
    let mut step = Step::new(NETWORK, render(NETWORK_SCRIPT)?)
        .env("SOFTWARE_DIR", SOFTWARE_DIR)
        .env("NODE_NAME", &node.name)
        .env("NODE_IP", node.ip.to_string())
        .env("API_SERVER", windows::api_server(plan))
        .env("POD_CIDR", plan.network.pod_cidr.to_string())
        .env("SERVICE_CIDR", plan.network.service_cidr.to_string())
        .env("KUBERNETES_VIP", vip.to_string())
        .env("AGENT_DIR", AGENT_DIR)
        // flanneld's lease and kube-proxy's first load balancer: the pod
        // network's budget, doubled for Windows (HNS network creation).
        .env(
            "READY_TIMEOUT",
            (deadlines.pods_ready * WINDOWS_JOIN_FACTOR)
                .as_secs()
                .to_string(),
        );
    for (name, user, token) in [
        ("flannel", windows::FLANNEL_WINDOWS_SA, &tokens.flannel),
        (
            "kube-proxy",
            windows::KUBE_PROXY_WINDOWS_SA,
            &tokens.kube_proxy,
        ),
    ] {
        let token_file = format!("{AGENT_DIR}\\{name}.token");
        let kubeconfig = windows::agent_kubeconfig(plan, &secrets.ca.cert_pem, user, &token_file);
        step = step
            .file(
                format!("{AGENT_DIR}\\{name}.kubeconfig"),
                Secret::new(kubeconfig),
                0o600,
            )
            .file(token_file, token.clone(), 0o600)
            .redact(token.clone());
    }
    Ok(step)
}

/// The step names of a node, in order: Linux nodes as
/// [`super::steps`] runs them; Windows workers `prepare-os` (computer
/// name, hosts file, time: engineer winsteps' `prepare-os.ps1`) and then
/// these three.
pub fn step_order(node: &NodePlan) -> Vec<&'static str> {
    match (node.os, node.role) {
        (Os::Windows, _) => vec![super::steps::PREPARE_OS, PREPARE, JOIN, NETWORK],
        (Os::Linux, Role::ControlPlane) => vec![
            super::steps::PREPARE_OS,
            super::steps::PREPARE_NODE,
            super::steps::INIT_CONTROL_PLANE,
        ],
        (Os::Linux, Role::Worker) => vec![
            super::steps::PREPARE_OS,
            super::steps::PREPARE_NODE,
            super::steps::JOIN,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::node_software::{self, Kind};
    use crate::test_support::assert_pwsh_parses;
    use std::path::PathBuf;

    fn software() -> Vec<CachedArtifact> {
        node_software::catalog("1.36.2")
            .unwrap()
            .artifacts
            .into_iter()
            .enumerate()
            .map(|(i, a)| CachedArtifact {
                name: a.name,
                version: a.version,
                kind: a.kind,
                path: PathBuf::from(format!("/cache/{}", a.file_name)),
                sha256: format!("{i:064x}"),
                file_name: a.file_name,
                downloaded: false,
            })
            .collect()
    }

    fn setup() -> (tempfile::TempDir, Plan, ClusterSecrets) {
        let plan = crate::kube::kubeadm::tests::plan("1.36");
        let tmp = tempfile::tempdir().unwrap();
        let dirs = crate::dirs::Dirs::under(tmp.path());
        let secrets = crate::pki::ensure(&dirs, &plan).unwrap();
        (tmp, plan, secrets)
    }

    fn tokens() -> AgentTokens {
        AgentTokens {
            flannel: Secret::new("flannel-token-value"),
            kube_proxy: Secret::new("kube-proxy-token-value"),
        }
    }

    #[test]
    fn every_windows_script_parses_and_is_snapshotted() {
        for (name, text) in [
            ("prepare-windows-node.ps1", render(PREPARE_SCRIPT).unwrap()),
            ("kubelet-service.ps1", KUBELET_SERVICE_SCRIPT.to_string()),
            ("join-windows.ps1", render(JOIN_SCRIPT).unwrap()),
            ("network-windows.ps1", render(NETWORK_SCRIPT).unwrap()),
        ] {
            assert_pwsh_parses(name, &text);
            insta::assert_snapshot!(name, text);
        }
        // The rendered steps stop on the first error and honour the hook.
        for (step, script) in [
            (PREPARE, PREPARE_SCRIPT),
            (JOIN, JOIN_SCRIPT),
            (NETWORK, NETWORK_SCRIPT),
        ] {
            let text = render(script).unwrap();
            assert!(text.contains(&format!("$Step = '{step}'\n")), "{step}");
            let set = text.find("$Step = ").unwrap();
            assert!(set < text.find("$ErrorActionPreference = 'Stop'").unwrap());
            assert!(set < text.find("DEVCLUSTER_TEST_FAIL_STEP").unwrap());
        }
        assert!(render("no mark").is_err());
    }

    #[test]
    fn scripts_never_pass_forbidden_kubelet_flags() {
        for text in [
            PREPARE_SCRIPT,
            KUBELET_SERVICE_SCRIPT,
            JOIN_SCRIPT,
            NETWORK_SCRIPT,
        ] {
            for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                assert!(!line.contains("WinOverlay=true"), "{line}");
                assert!(!line.contains("WinDSR=true"), "{line}");
                assert!(
                    !line.contains("pod-infra-container-image="),
                    "passes the flag: {line}"
                );
            }
        }
        // The kubelet service depends on containerd; containerd's config is
        // the generated one, patched for containerd 2.x's CRI tables.
        // ... and drops it should kubeadm ever write it.
        assert!(
            KUBELET_SERVICE_SCRIPT.contains("-like '--pod-infra-container-image*') { continue }")
        );
        assert!(KUBELET_SERVICE_SCRIPT.contains("depend= containerd"));
        assert!(KUBELET_SERVICE_SCRIPT.contains("kubeadm-flags.env"));
        assert!(PREPARE_SCRIPT.contains("config default"));
        assert!(PREPARE_SCRIPT.contains("io\\.containerd\\.cri\\.v1\\.runtime"));
        assert!(PREPARE_SCRIPT.contains("npipe:////./pipe/containerd-containerd"));
        assert!(PREPARE_SCRIPT.contains("10250"));
        assert!(PREPARE_SCRIPT.contains("Add-MpPreference"));
        assert!(NETWORK_SCRIPT.contains("VNI = 4096; Port = 4789"));
    }

    #[test]
    fn prepare_uploads_a_manifest_of_every_cached_file() {
        let (_tmp, plan, _secrets) = setup();
        let node = plan.node("dev-win1").unwrap();
        let sw = software();
        let step = prepare(&plan, node, &sw).unwrap();
        let manifest = step
            .files
            .iter()
            .find(|f| f.path.ends_with("software.json"))
            .unwrap();
        let items: Vec<serde_json::Value> =
            serde_json::from_str(manifest.content.expose()).unwrap();
        assert_eq!(items.len(), sw.len());
        for (item, a) in items.iter().zip(&sw) {
            assert_eq!(item["sha256"].as_str(), Some(a.sha256.as_str()));
            assert_eq!(item["file"].as_str(), Some(a.file_name.as_str()));
        }
        insta::assert_snapshot!("software.json", manifest.content.expose());
        let up = uploads(&sw);
        assert!(up.iter().all(|u| u.node_path.starts_with(SOFTWARE_DIR)));
        // The step copies every cached file, in catalog order, to
        // SOFTWARE_DIR under its published name, identified by its sha256.
        assert_eq!(step.uploads, up);
        let listed: Vec<(String, String, String)> = step
            .uploads
            .iter()
            .map(|u| {
                (
                    u.host_path.display().to_string(),
                    u.node_path.clone(),
                    u.sha256.clone(),
                )
            })
            .collect();
        let expected: Vec<(String, String, String)> = sw
            .iter()
            .map(|a| {
                (
                    format!("/cache/{}", a.file_name),
                    format!("C:\\devcluster\\software\\{}", a.file_name),
                    a.sha256.clone(),
                )
            })
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(listed.len(), 8);
        assert!(listed.iter().any(|(_, n, _)| n.ends_with("\\kubelet.exe")));
        assert!(sw.iter().any(|a| a.kind == Kind::TarGz));
        assert!(prepare(&plan, plan.node("dev-w1").unwrap(), &sw).is_err());
    }

    #[test]
    fn join_and_network_keep_secrets_off_the_command_line() {
        let (_tmp, plan, secrets) = setup();
        let node = plan.node("dev-win1").unwrap();
        let deadlines = Deadlines::scaled(1);
        let join = join(&plan, node, &secrets, &deadlines, DEFAULT_TAINT).unwrap();
        let net = network(&plan, node, &secrets, &tokens(), &deadlines).unwrap();
        for step in [&join, &net] {
            for (k, v) in &step.env {
                assert!(!v.contains(secrets.bootstrap_token.expose()), "{k}");
                assert!(!v.contains("token-value"), "{k}");
            }
        }
        let cfg = join
            .files
            .iter()
            .find(|f| f.path.ends_with("kubeadm-join.yaml"))
            .unwrap();
        assert_eq!(cfg.mode, 0o600);
        assert!(
            cfg.content
                .expose()
                .contains(secrets.bootstrap_token.expose())
        );
        let token_files: Vec<&str> = net
            .files
            .iter()
            .filter(|f| f.path.ends_with(".token"))
            .map(|f| f.content.expose())
            .collect();
        assert_eq!(
            token_files,
            ["flannel-token-value", "kube-proxy-token-value"]
        );
        assert!(net.files.iter().all(|f| f.mode == 0o600));
        let env: Vec<(&str, &str)> = net
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(env.contains(&("KUBERNETES_VIP", "10.96.0.1")));
        assert!(
            env.contains(&("API_SERVER", "https://192.168.100.10:6443")) || {
                let api = windows::api_server(&plan);
                env.contains(&("API_SERVER", api.as_str()))
            }
        );
        let join_env: Vec<(&str, &str)> = join
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // The Linux workers' budgets, the join one doubled for Windows.
        let api_wait = deadlines.api_wait.as_secs().to_string();
        let join_budget = (deadlines.join.as_secs() * 2).to_string();
        assert!(join_env.contains(&("API_WAIT_TIMEOUT", api_wait.as_str())));
        assert!(join_env.contains(&("JOIN_TIMEOUT", join_budget.as_str())));
        assert!(join_env.contains(&("API_ENDPOINT", plan.network.api_endpoint.as_str())));
    }

    /// A mixed plan (1 control plane, Linux workers, a Windows worker):
    /// each node's steps in order; every node runs its own in parallel.
    #[test]
    fn step_order_of_a_mixed_plan() {
        let (_tmp, plan, _secrets) = setup();
        let order: Vec<(String, Vec<&str>)> = plan
            .nodes
            .iter()
            .map(|n| (n.name.clone(), step_order(n)))
            .collect();
        insta::assert_debug_snapshot!(order);
        let win = plan.node("dev-win1").unwrap();
        assert_eq!(step_order(win), ["prepare-os", PREPARE, JOIN, NETWORK]);
        assert_eq!(
            step_order(plan.control_plane()).last(),
            Some(&super::super::steps::INIT_CONTROL_PLANE)
        );
    }
}
