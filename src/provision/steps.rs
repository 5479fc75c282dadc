//! The step definitions: embedded scripts from `provisioners/` and the
//! environment the plan gives them. Pure functions of the plan.

use crate::error::Bug;
use crate::kube::kubeadm;
use crate::pki::ClusterSecrets;
use crate::plan::{NodePlan, Os, Plan, Role};
use crate::versions::KubernetesVersion;

use super::deadlines::Deadlines;
use super::{Step, Upload};
use crate::images::node_software::{
    CachedArtifact, LINUX_CNI_PLUGINS, LINUX_CONTAINERD, LINUX_RUNC,
};

/// TEST ONLY: a step script whose name equals this variable's value prints
/// a message and exits 3 before changing anything. The command layer
/// passes it through from devcluster's own environment
/// ([`Step::with_test_hook_from_env`]).
pub const TEST_FAIL_STEP_ENV: &str = "DEVCLUSTER_TEST_FAIL_STEP";

/// `provisioners/linux/prepare-os.sh`.
pub const PREPARE_OS_SCRIPT: &str = include_str!("../../provisioners/linux/prepare-os.sh");

/// `provisioners/windows/prepare-os.ps1`.
pub const PREPARE_OS_WINDOWS_SCRIPT: &str =
    include_str!("../../provisioners/windows/prepare-os.ps1");

pub const PREPARE_OS: &str = "prepare-os";

/// Hostname, `/etc/hosts`, swap off, kernel modules, sysctls and time sync
/// of a Linux node; the computer name, the hosts file and time sync of a
/// Windows node (see each script's header).
pub fn prepare_os(plan: &Plan, node: &NodePlan) -> Step {
    let script = match node.os {
        Os::Linux => PREPARE_OS_SCRIPT,
        Os::Windows => PREPARE_OS_WINDOWS_SCRIPT,
    };
    Step::new(PREPARE_OS, script)
        .env("NODE_NAME", &node.name)
        .env("CLUSTER_HOSTS", cluster_hosts(plan))
}

/// `provisioners/linux/prepare-node.sh`.
pub const PREPARE_NODE_SCRIPT: &str = include_str!("../../provisioners/linux/prepare-node.sh");
/// `provisioners/linux/init-control-plane.sh`.
pub const INIT_CONTROL_PLANE_SCRIPT: &str =
    include_str!("../../provisioners/linux/init-control-plane.sh");
/// `provisioners/linux/join.sh`.
pub const JOIN_SCRIPT: &str = include_str!("../../provisioners/linux/join.sh");

pub const PREPARE_NODE: &str = "prepare-node";
pub const INIT_CONTROL_PLANE: &str = "init-control-plane";
pub const JOIN: &str = "join";

/// The plan's Kubernetes version (a plan names a supported one).
fn version(plan: &Plan) -> Result<&'static KubernetesVersion, Bug> {
    crate::versions::find(&plan.kubernetes_version).ok_or_else(|| {
        Bug(format!(
            "the plan's Kubernetes version {} is not supported",
            plan.kubernetes_version
        ))
    })
}

fn linux(node: &NodePlan, step: &str) -> Result<(), Bug> {
    if node.os == Os::Linux {
        Ok(())
    } else {
        Err(Bug(format!(
            "step {step} is for Linux nodes, not {} ({})",
            node.name,
            node.os.as_str()
        )))
    }
}

/// Where prepare-node finds the node software the host uploads.
pub const NODE_SOFTWARE_DIR: &str = "/var/lib/devcluster/node-software";

/// containerd 2.x, runc and the CNI plugins from the host's cache
/// (`software`: [`node_software::cached_linux`], uploaded before the script
/// and checked again on the node against the sha256 in the environment),
/// the Kubernetes packages of the plan's minor (exactly the cluster's
/// release once it is chosen) and the images of a Linux node (see the
/// script's header). Needs the internet for the packages and images.
///
/// `software` is `None` only when the step is already done (the cache may
/// have been pruned since): a step without it is never run.
///
/// [`node_software::cached_linux`]: crate::images::node_software::cached_linux
pub fn prepare_node(
    plan: &Plan,
    node: &NodePlan,
    software: Option<&[CachedArtifact]>,
) -> Result<Step, Bug> {
    linux(node, PREPARE_NODE)?;
    let v = version(plan)?;
    let mut step = Step::new(PREPARE_NODE, PREPARE_NODE_SCRIPT)
        .env("KUBERNETES_MINOR", &v.minor)
        .env("PAUSE_IMAGE", &v.pause_image)
        .env("NODE_ROLE", node.role.as_str());
    // The cluster's one patch release, once chosen (see Plan).
    if let Some(release) = &plan.kubernetes_release {
        step = step.env("KUBERNETES_RELEASE", release);
    }
    let Some(software) = software else {
        return Ok(step);
    };
    step = step.env("NODE_SOFTWARE_DIR", NODE_SOFTWARE_DIR);
    for (name, file_var, sha_var) in [
        (LINUX_CONTAINERD, "CONTAINERD_ARCHIVE", "CONTAINERD_SHA256"),
        (LINUX_RUNC, "RUNC_BINARY", "RUNC_SHA256"),
        (
            LINUX_CNI_PLUGINS,
            "CNI_PLUGINS_ARCHIVE",
            "CNI_PLUGINS_SHA256",
        ),
    ] {
        let a = software
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Bug(format!("prepare-node of {}: no {name} given", node.name)))?;
        if name == LINUX_CONTAINERD {
            step = step.env("CONTAINERD_VERSION", &a.version);
        }
        step = step
            .env(file_var, &a.file_name)
            .env(sha_var, &a.sha256)
            .upload(Upload {
                host_path: a.path.clone(),
                node_path: format!("{NODE_SOFTWARE_DIR}/{}", a.file_name),
                sha256: a.sha256.clone(),
            });
    }
    Ok(step)
}

/// `kubeadm init` on the control plane. Uploads the cluster CAs, the
/// service-account key and the kubeadm config (with the bootstrap token)
/// first; the token is scrubbed from the output.
pub fn init_control_plane(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
) -> Result<Step, Bug> {
    linux(node, INIT_CONTROL_PLANE)?;
    if node.role != Role::ControlPlane {
        return Err(Bug(format!(
            "step {INIT_CONTROL_PLANE} asked for {}, which is a worker",
            node.name
        )));
    }
    let v = version(plan)?;
    let mut step = Step::new(INIT_CONTROL_PLANE, INIT_CONTROL_PLANE_SCRIPT)
        .env("KUBERNETES_MINOR", &v.minor)
        .env("KUBEADM_CONFIG", kubeadm::INIT_CONFIG_PATH)
        .env("VERSION_PLACEHOLDER", kubeadm::VERSION_PLACEHOLDER)
        .env("API_ENDPOINT", &plan.network.api_endpoint)
        .redact(secrets.bootstrap_token.clone());
    for f in kubeadm::node_files(plan, node, secrets, v)? {
        step = step.file(f.path, f.content, f.mode);
    }
    Ok(step)
}

/// `kubeadm join` of a Linux worker: waits up to `deadlines.api_wait` for
/// the API server to answer, then has `deadlines.join` from that moment
/// (see [`super::deadlines`]). Uploads the join config (with the bootstrap
/// token) first; the token is scrubbed from the output.
pub fn join(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    deadlines: &Deadlines,
) -> Result<Step, Bug> {
    linux(node, JOIN)?;
    if node.role != Role::Worker {
        return Err(Bug(format!(
            "step {JOIN} asked for {}, which is the control plane",
            node.name
        )));
    }
    let v = version(plan)?;
    let mut step = Step::new(JOIN, JOIN_SCRIPT)
        .env("KUBEADM_CONFIG", kubeadm::JOIN_CONFIG_PATH)
        .env("API_ENDPOINT", &plan.network.api_endpoint)
        .env("NODE_NAME", &node.name)
        .env(
            "API_WAIT_TIMEOUT",
            deadlines.api_wait.as_secs().max(1).to_string(),
        )
        .env("JOIN_TIMEOUT", deadlines.join.as_secs().max(1).to_string())
        .redact(secrets.bootstrap_token.clone());
    for f in kubeadm::node_files(plan, node, secrets, v)? {
        step = step.file(f.path, f.content, f.mode);
    }
    Ok(step)
}

/// The Kubernetes steps of a Linux node, in order, to run after
/// [`prepare_os`]: `prepare-node`, then `init-control-plane` on the control
/// plane or `join` (with the plan's [`Deadlines`]) on a worker (`software`:
/// see [`prepare_node`]). The test
/// hook ([`Step::with_test_hook_from_env`]) is the caller's to add.
pub fn kubernetes_steps(
    plan: &Plan,
    node: &NodePlan,
    secrets: &ClusterSecrets,
    software: Option<&[CachedArtifact]>,
) -> Result<Vec<Step>, Bug> {
    let last = match node.role {
        Role::ControlPlane => init_control_plane(plan, node, secrets)?,
        Role::Worker => join(plan, node, secrets, &Deadlines::for_plan(plan))?,
    };
    Ok(vec![prepare_node(plan, node, software)?, last])
}

/// Every node as `name ip;name ip;...`, in plan order.
pub fn cluster_hosts(plan: &Plan) -> String {
    plan.nodes
        .iter()
        .map(|n| format!("{} {}", n.name, n.ip))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Layer, Origin, Val};

    fn plan() -> Plan {
        let layer = Layer {
            workers: Some(Val::new(1, Origin::Flag("--workers"))),
            windows_workers: Some(Val::new(1, Origin::Flag("--windows-workers"))),
            ..Layer::default()
        };
        let spec =
            crate::spec::resolve(Val::new("dev".into(), Origin::Flag("--cluster")), layer).unwrap();
        crate::plan::plan(&spec, &crate::plan::Surroundings::default()).unwrap()
    }

    #[test]
    fn prepare_os_env_comes_from_the_plan() {
        let plan = plan();
        let node = &plan.nodes[1];
        let step = prepare_os(&plan, node);
        assert_eq!(step.name, "prepare-os");
        assert!(step.script.starts_with("#!/usr/bin/env bash\n"));
        assert!(step.secret_env.is_empty());
        let hosts: Vec<String> = plan
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.name, n.ip))
            .collect();
        assert_eq!(
            step.env,
            vec![
                ("NODE_NAME".to_string(), node.name.clone()),
                ("CLUSTER_HOSTS".to_string(), hosts.join(";")),
            ]
        );
        assert_eq!(hosts.len(), 3);
    }

    #[test]
    fn prepare_os_of_a_windows_node_is_powershell() {
        let plan = plan();
        let win = plan.nodes.iter().find(|n| n.os == Os::Windows).unwrap();
        let step = prepare_os(&plan, win);
        assert_eq!(step.script, PREPARE_OS_WINDOWS_SCRIPT);
        assert_eq!(step.env[0], ("NODE_NAME".to_string(), win.name.clone()));
        assert!(step.script.contains("exit 3010"));
        crate::test_support::assert_pwsh_parses("prepare-os.ps1", &step.script);
        assert!(step.check().is_ok());
    }

    #[test]
    fn the_scripts_honour_the_test_hook() {
        // The hook is tested for real in tests/ssh.rs with a stand-in
        // script; the provisioners themselves must never run on a test
        // machine.
        for (name, script) in [
            (PREPARE_OS, PREPARE_OS_SCRIPT),
            (PREPARE_NODE, PREPARE_NODE_SCRIPT),
            (INIT_CONTROL_PLANE, INIT_CONTROL_PLANE_SCRIPT),
            (JOIN, JOIN_SCRIPT),
        ] {
            assert!(script.contains(r#""${DEVCLUSTER_TEST_FAIL_STEP:-}" == "$STEP""#));
            assert!(
                script.contains(&format!("readonly STEP={name}\n")),
                "{name}"
            );
        }
    }

    fn secrets(plan: &Plan) -> (tempfile::TempDir, ClusterSecrets) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = crate::dirs::Dirs::under(tmp.path());
        let secrets = crate::pki::ensure(&dirs, plan).unwrap();
        (tmp, secrets)
    }

    fn env(step: &Step) -> Vec<(&str, &str)> {
        step.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn kubernetes_steps_of_the_control_plane_and_a_worker() {
        let mut plan = plan();
        plan.nodes.retain(|n| n.os == Os::Linux);
        let (_tmp, secrets) = secrets(&plan);
        let token = secrets.bootstrap_token.expose().to_string();
        let v = crate::versions::find(&plan.kubernetes_version).unwrap();

        let cp = plan.control_plane();
        let steps = kubernetes_steps(&plan, cp, &secrets, None).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prepare-node", "init-control-plane"]);
        assert_eq!(
            env(&steps[0]),
            [
                ("KUBERNETES_MINOR", v.minor.as_str()),
                ("PAUSE_IMAGE", v.pause_image.as_str()),
                ("NODE_ROLE", "control-plane"),
            ],
            "a done prepare-node (no software given) has nothing to upload"
        );
        assert!(steps[0].files.is_empty());
        assert!(steps[0].uploads.is_empty());
        let init = &steps[1];
        assert_eq!(
            env(init),
            [
                ("KUBERNETES_MINOR", v.minor.as_str()),
                ("KUBEADM_CONFIG", "/etc/devcluster/kubeadm-init.yaml"),
                ("VERSION_PLACEHOLDER", kubeadm::VERSION_PLACEHOLDER),
                ("API_ENDPOINT", plan.network.api_endpoint.as_str()),
            ]
        );
        let files: Vec<(&str, u32)> = init
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.mode))
            .collect();
        assert_eq!(
            files,
            [
                ("/etc/kubernetes/pki/ca.crt", 0o644),
                ("/etc/kubernetes/pki/ca.key", 0o600),
                ("/etc/kubernetes/pki/front-proxy-ca.crt", 0o644),
                ("/etc/kubernetes/pki/front-proxy-ca.key", 0o600),
                ("/etc/kubernetes/pki/etcd/ca.crt", 0o644),
                ("/etc/kubernetes/pki/etcd/ca.key", 0o600),
                ("/etc/kubernetes/pki/sa.key", 0o600),
                ("/etc/kubernetes/pki/sa.pub", 0o644),
                ("/etc/devcluster/kubeadm-init.yaml", 0o600),
            ]
        );
        assert_eq!(init.files[0].content.expose(), secrets.ca.cert_pem);
        assert!(init.files[8].content.expose().contains(&token));
        // The token is in the file and scrubbed from the output, never in
        // the environment or on a command line.
        assert!(init.redact.iter().any(|r| r.expose() == token));
        assert!(init.env.iter().all(|(_, v)| !v.contains(&token)));
        assert!(init.secret_env.is_empty());
        assert!(!format!("{init:?}").contains(&token));
        assert!(init.check().is_ok());

        let w1 = plan.node("dev-w1").unwrap();
        let mut chosen = plan.clone();
        chosen.kubernetes_release = Some(format!("{}.4", v.minor));
        let release = format!("{}.4", v.minor);
        assert_eq!(
            env(&prepare_node(&chosen, w1, None).unwrap())[3],
            ("KUBERNETES_RELEASE", release.as_str())
        );
        let steps = kubernetes_steps(&plan, w1, &secrets, None).unwrap();
        assert_eq!(env(&steps[0]).len(), 3, "no release chosen yet");
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prepare-node", "join"]);
        assert_eq!(env(&steps[0])[2], ("NODE_ROLE", "worker"));
        let join = &steps[1];
        assert_eq!(
            env(join),
            [
                ("KUBEADM_CONFIG", "/etc/devcluster/kubeadm-join.yaml"),
                ("API_ENDPOINT", plan.network.api_endpoint.as_str()),
                ("NODE_NAME", "dev-w1"),
                ("API_WAIT_TIMEOUT", "1800"),
                ("JOIN_TIMEOUT", "600"),
            ]
        );
        assert_eq!(join.files.len(), 1);
        assert_eq!(join.files[0].path, "/etc/devcluster/kubeadm-join.yaml");
        assert_eq!(join.files[0].mode, 0o600);
        let config = join.files[0].content.expose();
        assert!(config.contains(&token) && config.contains(&secrets.ca_cert_hash));
        assert!(join.redact.iter().any(|r| r.expose() == token));
        assert!(join.check().is_ok());
    }

    #[test]
    fn windows_nodes_and_wrong_roles_are_refused() {
        let plan = plan();
        let (_tmp, secrets) = secrets(&plan);
        let win = plan.nodes.iter().find(|n| n.os == Os::Windows).unwrap();
        assert!(kubernetes_steps(&plan, win, &secrets, None).is_err());
        let w1 = plan.node("dev-w1").unwrap();
        assert!(init_control_plane(&plan, w1, &secrets).is_err());
        assert!(join(&plan, plan.control_plane(), &secrets, &Deadlines::scaled(1)).is_err());
    }

    /// The cached Linux node software as `cached_linux` gives it.
    fn software() -> Vec<CachedArtifact> {
        crate::images::node_software::linux_catalog_from(&Default::default())
            .into_iter()
            .enumerate()
            .map(|(i, a)| CachedArtifact {
                name: a.name,
                path: std::path::PathBuf::from(format!("/cache/{}/{}", a.name, a.file_name)),
                sha256: format!("{i}").repeat(64),
                version: a.version,
                file_name: a.file_name,
                kind: a.kind,
                downloaded: false,
            })
            .collect()
    }

    #[test]
    fn a_linux_nodes_prepare_node_uploads_containerd_runc_and_cni_from_the_cache() {
        let mut plan = plan();
        plan.kubernetes_version = "1.37".into();
        let w1 = plan.node("dev-w1").unwrap();
        let software = software();
        let step = prepare_node(&plan, w1, Some(&software)).unwrap();
        let dir = NODE_SOFTWARE_DIR;
        assert_eq!(
            step.uploads,
            [
                Upload {
                    host_path: "/cache/linux-containerd/containerd-2.3.4-linux-amd64.tar.gz".into(),
                    node_path: format!("{dir}/containerd-2.3.4-linux-amd64.tar.gz"),
                    sha256: "0".repeat(64),
                },
                Upload {
                    host_path: "/cache/linux-runc/runc.amd64".into(),
                    node_path: format!("{dir}/runc.amd64"),
                    sha256: "1".repeat(64),
                },
                Upload {
                    host_path: "/cache/linux-cni-plugins/cni-plugins-linux-amd64-v1.9.1.tgz".into(),
                    node_path: format!("{dir}/cni-plugins-linux-amd64-v1.9.1.tgz"),
                    sha256: "2".repeat(64),
                },
            ]
        );
        let (zero, one, two) = ("0".repeat(64), "1".repeat(64), "2".repeat(64));
        assert_eq!(
            env(&step),
            [
                ("KUBERNETES_MINOR", "1.37"),
                ("PAUSE_IMAGE", "registry.k8s.io/pause:3.10.1"),
                ("NODE_ROLE", "worker"),
                ("NODE_SOFTWARE_DIR", dir),
                ("CONTAINERD_VERSION", "2.3.4"),
                ("CONTAINERD_ARCHIVE", "containerd-2.3.4-linux-amd64.tar.gz"),
                ("CONTAINERD_SHA256", zero.as_str()),
                ("RUNC_BINARY", "runc.amd64"),
                ("RUNC_SHA256", one.as_str()),
                ("CNI_PLUGINS_ARCHIVE", "cni-plugins-linux-amd64-v1.9.1.tgz"),
                ("CNI_PLUGINS_SHA256", two.as_str()),
            ]
        );
        assert!(step.check().is_ok());
        // Every name the script reads is set.
        for (k, _) in &step.env {
            assert!(PREPARE_NODE_SCRIPT.contains(&format!("${{{k}")), "{k}");
        }
        // An entry missing from what is given is a bug, not a node without it.
        assert!(prepare_node(&plan, w1, Some(&software[..2])).is_err());
    }
}
