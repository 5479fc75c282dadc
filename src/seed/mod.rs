//! What each VM boots with besides its disk: for Linux nodes a cloud-init
//! NoCloud seed ISO (label `cidata`), written by our own ISO 9660 writer
//! ([`iso`]) from files rendered as pure functions of the plan and the
//! cluster's secrets ([`cloud_init`]).

pub mod cloud_init;
pub mod iso;
pub mod windows;

pub use cloud_init::{LinuxSeed, RenderError, WriteFile};
pub use iso::IsoError;

use crate::plan::{NodePlan, Plan};

/// The volume label cloud-init's NoCloud datasource looks for.
pub const NOCLOUD_LABEL: &str = "cidata";

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("rendering the cloud-init seed")]
    Render(#[source] RenderError),
    #[error("building the seed ISO")]
    Iso(#[source] IsoError),
    #[error("rendering the Windows answer files")]
    Windows(#[source] windows::WindowsSeedError),
}

/// The three NoCloud files of a Linux node: `user-data`, `meta-data`,
/// `network-config`.
pub fn linux_seed_files(seed: &LinuxSeed) -> Result<[(&'static str, String); 3], RenderError> {
    Ok([
        ("user-data", cloud_init::user_data(seed)?),
        ("meta-data", cloud_init::meta_data(seed)?),
        ("network-config", cloud_init::network_config(seed)?),
    ])
}

/// The NoCloud seed ISO of a Linux node.
pub fn linux_seed_iso(seed: &LinuxSeed) -> Result<Vec<u8>, SeedError> {
    let files = linux_seed_files(seed).map_err(SeedError::Render)?;
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
    iso::build(NOCLOUD_LABEL, &refs).map_err(SeedError::Iso)
}

/// The NoCloud files of a Linux node with a NAT NIC for egress and the
/// cluster NIC (VirtualBox): as [`linux_seed_files`], with the two-NIC
/// `network-config` ([`cloud_init::network_config_two_nics`]).
pub fn linux_seed_files_two_nics(
    seed: &LinuxSeed,
    nat_mac: &str,
) -> Result<[(&'static str, String); 3], RenderError> {
    Ok([
        ("user-data", cloud_init::user_data(seed)?),
        ("meta-data", cloud_init::meta_data(seed)?),
        (
            "network-config",
            cloud_init::network_config_two_nics(seed, nat_mac)?,
        ),
    ])
}

/// The NoCloud seed ISO of a two-NIC Linux node (VirtualBox).
pub fn linux_seed_iso_two_nics(seed: &LinuxSeed, nat_mac: &str) -> Result<Vec<u8>, SeedError> {
    let files = linux_seed_files_two_nics(seed, nat_mac).map_err(SeedError::Render)?;
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
    iso::build(NOCLOUD_LABEL, &refs).map_err(SeedError::Iso)
}

/// A node's static address on the cluster network, as every guest's seed
/// writes it (cloud-init network-config for Linux, the specialize unattend
/// for Windows): matched by MAC, the address and prefix, the default
/// gateway and the resolvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticNetwork {
    pub mac: String,
    pub ip: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: std::net::Ipv4Addr,
    pub dns: Vec<std::net::Ipv4Addr>,
}

/// The static network of `node`, for whichever provider `plan` is on. No
/// provider gives addresses by DHCP to devcluster nodes; what differs is
/// who answers DNS: libvirt's dnsmasq on the gateway, while Hyper-V's
/// internal switch has no DNS, so its nodes get the plan's resolvers.
/// (VirtualBox's NIC 2 extends this: a host-only NIC with no gateway.)
pub fn static_network(plan: &Plan, node: &NodePlan) -> StaticNetwork {
    StaticNetwork {
        mac: node.mac.clone(),
        ip: node.ip,
        prefix: plan.network.subnet.prefix(),
        gateway: plan.network.gateway,
        dns: if plan.network.resolvers.is_empty() {
            vec![plan.network.gateway]
        } else {
            plan.network.resolvers.clone()
        },
    }
}

/// The seed inputs of a Linux node of `plan`: the node's own address on the
/// cluster network ([`static_network`]), every
/// node of the plan in `/etc/hosts`, our user with `authorized_key`, and the
/// node's pre-generated ed25519 host key.
pub fn seed_inputs_for(
    plan: &Plan,
    node: &NodePlan,
    authorized_key: &str,
    host_key_private: &str,
    host_key_public: &str,
) -> LinuxSeed {
    let net = static_network(plan, node);
    LinuxSeed {
        instance_id: cloud_init::instance_id(&plan.cluster, &node.name, host_key_public),
        hostname: node.name.clone(),
        fqdn: None,
        user: cloud_init::USER.to_string(),
        ssh_authorized_keys: vec![authorized_key.trim().to_string()],
        host_key_ed25519_private: host_key_private.to_string(),
        host_key_ed25519_public: host_key_public.trim().to_string(),
        mac: net.mac,
        interface: cloud_init::INTERFACE.to_string(),
        ip: net.ip,
        prefix: net.prefix,
        gateway: net.gateway,
        dns: net.dns,
        hosts: plan.nodes.iter().map(|n| (n.name.clone(), n.ip)).collect(),
        write_files: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Os, Surroundings, plan};
    use crate::spec::{Layer, Origin, Val, resolve};

    /// Test fixtures, not real keys.
    const AUTHORIZED_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTFIXTUREuserkeyNOTAREALKEY00000000000 devcluster@host\n";
    const HOST_KEY_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
        TEST+FIXTURE+NOT+A+REAL+KEY+TEST+FIXTURE+NOT+A+REAL+KEY+TEST+FIXTURE+NO\n\
        -----END OPENSSH PRIVATE KEY-----\n";
    const HOST_KEY_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTFIXTUREhostkeyNOTAREALKEY00000000000 root@dev-cp";

    fn three_nodes() -> Plan {
        let layer = Layer {
            workers: Some(Val::new(1, Origin::Flag("--workers"))),
            windows_workers: Some(Val::new(1, Origin::Flag("--windows-workers"))),
            ..Layer::default()
        };
        let spec = resolve(Val::new("dev".into(), Origin::Flag("--cluster")), layer).unwrap();
        plan(&spec, &Surroundings::default()).unwrap()
    }

    fn seed_of(p: &Plan, name: &str) -> LinuxSeed {
        let node = p.node(name).unwrap();
        seed_inputs_for(p, node, AUTHORIZED_KEY, HOST_KEY_PRIVATE, HOST_KEY_PUBLIC)
    }

    #[test]
    fn plan_has_the_three_nodes() {
        let p = three_nodes();
        let names: Vec<_> = p.nodes.iter().map(|n| (n.name.as_str(), n.os)).collect();
        assert_eq!(
            names,
            [
                ("dev-cp", Os::Linux),
                ("dev-w1", Os::Linux),
                ("dev-win1", Os::Windows)
            ]
        );
    }

    #[test]
    fn snapshot_control_plane_files() {
        let p = three_nodes();
        let s = seed_of(&p, "dev-cp");
        insta::assert_snapshot!("cp_user_data", cloud_init::user_data(&s).unwrap());
        insta::assert_snapshot!("cp_meta_data", cloud_init::meta_data(&s).unwrap());
        insta::assert_snapshot!("cp_network_config", cloud_init::network_config(&s).unwrap());
    }

    #[test]
    fn snapshot_worker_files() {
        let p = three_nodes();
        let s = seed_of(&p, "dev-w1");
        insta::assert_snapshot!("w1_meta_data", cloud_init::meta_data(&s).unwrap());
        insta::assert_snapshot!("w1_network_config", cloud_init::network_config(&s).unwrap());
    }

    #[test]
    fn inputs_follow_the_plan() {
        let p = three_nodes();
        let s = seed_of(&p, "dev-w1");
        let node = p.node("dev-w1").unwrap();
        assert_eq!((s.ip, &s.mac), (node.ip, &node.mac));
        assert_eq!(s.prefix, 24);
        assert_eq!(s.gateway, p.network.gateway);
        assert_eq!(s.dns, vec![p.network.gateway]);
        let hosts: Vec<_> = s.hosts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(hosts, ["dev-cp", "dev-w1", "dev-win1"]);
        assert_eq!(s.ssh_authorized_keys, [AUTHORIZED_KEY.trim()]);
        assert_ne!(s.instance_id, seed_of(&p, "dev-cp").instance_id);
    }

    /// Parses user-data back as YAML: the keys cloud-init reads are there
    /// with the types it expects.
    #[test]
    fn user_data_parses_with_the_types_cloud_init_expects() {
        use serde_norway::Value;
        let p = three_nodes();
        let s = seed_of(&p, "dev-cp");
        let text = cloud_init::user_data(&s).unwrap();
        assert!(text.starts_with("#cloud-config\n"));
        let doc: Value = serde_norway::from_str(&text).unwrap();
        let get = |k: &str| doc.get(k).unwrap_or_else(|| panic!("missing {k}"));
        assert_eq!(get("hostname").as_str(), Some("dev-cp"));
        assert_eq!(get("manage_etc_hosts").as_bool(), Some(false));
        assert_eq!(get("ssh_pwauth").as_bool(), Some(false));
        assert_eq!(get("disable_root").as_bool(), Some(true));
        assert_eq!(get("ssh_deletekeys").as_bool(), Some(true));
        assert_eq!(get("ssh_genkeytypes").as_sequence().map(Vec::len), Some(0));

        let users = get("users").as_sequence().unwrap();
        assert_eq!(users.len(), 1);
        let u = &users[0];
        assert_eq!(u["name"].as_str(), Some("devcluster"));
        assert_eq!(u["sudo"].as_str(), Some("ALL=(ALL) NOPASSWD:ALL"));
        assert_eq!(u["shell"].as_str(), Some("/bin/bash"));
        assert_eq!(u["lock_passwd"].as_bool(), Some(true));
        let keys = u["ssh_authorized_keys"].as_sequence().unwrap();
        assert_eq!(keys[0].as_str(), Some(AUTHORIZED_KEY.trim()));

        let host_keys = get("ssh_keys");
        // The private key survives byte for byte, final newline included
        // (OpenSSH refuses a key file without it).
        assert_eq!(
            host_keys["ed25519_private"].as_str(),
            Some(HOST_KEY_PRIVATE)
        );
        assert_eq!(host_keys["ed25519_public"].as_str(), Some(HOST_KEY_PUBLIC));

        let files = get("write_files").as_sequence().unwrap();
        let hosts = &files[0];
        assert_eq!(hosts["path"].as_str(), Some("/etc/hosts"));
        assert_eq!(hosts["permissions"].as_str(), Some("0644"));
        assert_eq!(hosts["owner"].as_str(), Some("root:root"));
        let content = hosts["content"].as_str().unwrap();
        for n in &p.nodes {
            assert!(
                content.contains(&format!("\n{} {}\n", n.ip, n.name)),
                "{}",
                n.name
            );
        }
    }

    #[test]
    fn write_files_are_appended_after_etc_hosts() {
        let p = three_nodes();
        let mut s = seed_of(&p, "dev-w1");
        s.write_files.push(WriteFile {
            path: "/home/devcluster/.hushlogin".into(),
            content: "\n".into(),
            permissions: 0o600,
            owner: "devcluster:devcluster".into(),
            defer: true,
        });
        let doc: serde_norway::Value =
            serde_norway::from_str(&cloud_init::user_data(&s).unwrap()).unwrap();
        let files = doc["write_files"].as_sequence().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[1]["path"].as_str(),
            Some("/home/devcluster/.hushlogin")
        );
        assert_eq!(files[1]["permissions"].as_str(), Some("0600"));
        assert_eq!(files[1]["defer"].as_bool(), Some(true));
        assert!(files[0].get("defer").is_none());
    }

    #[test]
    fn network_config_is_v2_matched_by_mac() {
        let p = three_nodes();
        let s = seed_of(&p, "dev-cp");
        let doc: serde_norway::Value =
            serde_norway::from_str(&cloud_init::network_config(&s).unwrap()).unwrap();
        assert_eq!(doc["version"].as_u64(), Some(2));
        let eth = &doc["ethernets"]["cluster0"];
        assert_eq!(eth["match"]["macaddress"].as_str(), Some(s.mac.as_str()));
        assert_eq!(eth["set-name"].as_str(), Some("cluster0"));
        assert_eq!(eth["addresses"][0].as_str(), Some("192.168.100.10/24"));
        assert_eq!(eth["gateway4"].as_str(), Some("192.168.100.1"));
        assert_eq!(
            eth["nameservers"]["addresses"][0].as_str(),
            Some("192.168.100.1")
        );
    }

    #[test]
    fn seed_iso_is_deterministic_and_labelled() {
        let p = three_nodes();
        let s = seed_of(&p, "dev-cp");
        let a = linux_seed_iso(&s).unwrap();
        assert_eq!(a, linux_seed_iso(&s).unwrap());
        assert_eq!(&a[16 * 2048 + 40..16 * 2048 + 46], b"cidata");
    }

    #[test]
    fn render_errors_surface_as_seed_errors() {
        let p = three_nodes();
        let mut s = seed_of(&p, "dev-cp");
        s.mac = "52:54:00:12:34:56".into();
        let err = linux_seed_iso(&s).unwrap_err();
        assert!(matches!(err, SeedError::Render(RenderError::Yaml11 { .. })));
    }
}
