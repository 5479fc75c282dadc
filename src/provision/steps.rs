//! The step definitions: embedded scripts from `provisioners/` and the
//! environment the plan gives them. Pure functions of the plan.

use crate::plan::{NodePlan, Plan};

use super::Step;

/// TEST ONLY: a step script whose name equals this variable's value prints
/// a message and exits 3 before changing anything. The command layer
/// passes it through from devcluster's own environment
/// ([`Step::with_test_hook_from_env`]).
pub const TEST_FAIL_STEP_ENV: &str = "DEVCLUSTER_TEST_FAIL_STEP";

/// `provisioners/linux/prepare-os.sh`.
pub const PREPARE_OS_SCRIPT: &str = include_str!("../../provisioners/linux/prepare-os.sh");

pub const PREPARE_OS: &str = "prepare-os";

/// Hostname, `/etc/hosts`, swap off, kernel modules, sysctls and time sync
/// of a Linux node (see the script's header).
pub fn prepare_os(plan: &Plan, node: &NodePlan) -> Step {
    Step::new(PREPARE_OS, PREPARE_OS_SCRIPT)
        .env("NODE_NAME", &node.name)
        .env("CLUSTER_HOSTS", cluster_hosts(plan))
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
    fn the_script_honours_the_test_hook() {
        // The hook is tested for real in tests/ssh.rs with a stand-in
        // script; prepare-os.sh itself must never run on a test machine.
        assert!(PREPARE_OS_SCRIPT.contains(r#""${DEVCLUSTER_TEST_FAIL_STEP:-}" == "$STEP""#));
        assert!(PREPARE_OS_SCRIPT.contains("readonly STEP=prepare-os\n"));
    }
}
