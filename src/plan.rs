//! From a validated spec to a deterministic plan: every name, address and
//! size a cluster will have, decided before anything is created.
//!
//! Addresses are stable per node name, not per position: in the cluster's
//! /24, the gateway (the host side of the cluster network) is `.1`, the
//! control plane `.10`, Linux worker `wN` is `.20+N` and Windows worker
//! `winN` is `.30+N`. Adding or removing a node never moves another one,
//! and a node re-created later gets its old address back. `.100`–`.254` are
//! left for a DHCP range (anything that is not a node).
//!
//! MACs are locally administered unicast (`02:` first octet), three octets
//! from a hash of the cluster name and the last octet equal to the node's
//! host number, so they are unique within a cluster by construction and
//! differ between clusters. Providers pin these MACs to the planned IPs.
//!
//! The subnet is the first candidate `192.168.100.0/24` ... `192.168.199.0/24`
//! that overlaps none of the host's interface networks and routes and no
//! other devcluster cluster. Once chosen it is kept in the cluster's state
//! for its whole life: certificates name the control-plane IP. Hyper-V
//! clusters share one NetNat, so theirs come from inside its prefix
//! instead ([`HYPERV_NAT_PREFIX`]: `192.168.240.0/24` ... `192.168.255.0/24`),
//! and as that switch has no DNS their nodes get public resolvers
//! ([`HYPERV_RESOLVERS`]).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::UserError;
use crate::net::Cidr;
use crate::spec::{DomainType, Machine, NetworkMode, ProviderKind, Spec, Val, WindowsDevices};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
}

impl Os {
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    pub name: String,
    pub role: Role,
    pub os: Os,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The cluster's own /24.
    pub subnet: Cidr,
    /// The host's address on the cluster network; the nodes' gateway and DNS.
    pub gateway: Ipv4Addr,
    pub pod_cidr: Cidr,
    pub service_cidr: Cidr,
    pub cluster_dns: Ipv4Addr,
    /// `IP:6443` of the control plane: kubeadm's controlPlaneEndpoint.
    pub api_endpoint: String,
    /// The nodes' DNS resolvers when the cluster network has no DNS of its
    /// own (Hyper-V's internal switch); empty: the gateway answers DNS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibvirtPlan {
    pub uri: String,
    pub domain_type: DomainType,
    pub network_mode: NetworkMode,
    /// Windows guests' disk and NIC (older states: emulated).
    #[serde(default)]
    pub windows_devices: WindowsDevices,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub cluster: String,
    pub provider: ProviderKind,
    /// `X.Y`; installed as one patch release of that minor.
    pub kubernetes_version: String,
    /// The cluster's one patch release, `X.Y.Z`: chosen once, when the
    /// control plane's prepare-node installed the newest patch of
    /// `kubernetes_version`, and from then on installed exactly on every
    /// node (Linux packages, Windows binaries, kubeadm join). None until
    /// then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_release: Option<String>,
    /// False with `--no-kubernetes`: machines only.
    pub kubernetes: bool,
    /// Windows workers join tainted `os=windows:NoSchedule` (`[windows]
    /// taint`; the default is only written when changed).
    #[serde(
        default = "default_windows_taint",
        skip_serializing_if = "is_default_windows_taint"
    )]
    pub windows_taint: bool,
    pub network: NetworkPlan,
    pub nodes: Vec<NodePlan>,
    pub libvirt: LibvirtPlan,
}

fn default_windows_taint() -> bool {
    crate::provision::windows_node::DEFAULT_TAINT
}

fn is_default_windows_taint(taint: &bool) -> bool {
    *taint == default_windows_taint()
}

/// Host number of the control plane in the cluster /24.
pub const CONTROL_PLANE_HOST: u32 = 10;
const LINUX_WORKER_BASE: u32 = 20;
const WINDOWS_WORKER_BASE: u32 = 30;
/// The API server port.
pub const API_PORT: u16 = 6443;

/// What planning needs to know about the world, gathered by the caller so
/// planning stays pure.
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    /// The subnet this cluster already has (from its state), kept as is.
    pub existing_subnet: Option<Cidr>,
    /// Networks the host reaches directly (interfaces, routes).
    pub host_networks: Vec<Cidr>,
    /// Subnets of the other devcluster clusters.
    pub other_clusters: Vec<(String, Cidr)>,
    /// Where the provider lets cluster subnets lie, if it restricts that.
    pub allowed: Option<AllowedSubnets>,
}

/// The ranges a provider allows cluster subnets in (VirtualBox: host-only
/// networks only inside what `/etc/vbox/networks.conf` permits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSubnets {
    pub ranges: Vec<Cidr>,
    /// Who restricts, for messages, e.g. `VirtualBox`.
    pub by: String,
    /// The file a range is added to, to allow it.
    pub file: String,
}

impl AllowedSubnets {
    fn allows(&self, subnet: &Cidr) -> bool {
        self.ranges
            .iter()
            .any(|r| r.prefix() <= subnet.prefix() && r.contains(subnet.addr()))
    }

    fn shown(&self) -> String {
        let r: Vec<String> = self.ranges.iter().map(ToString::to_string).collect();
        r.join(", ")
    }

    /// The /24s of the allowed ranges, at most 256 per range.
    fn subnets(&self) -> impl Iterator<Item = Cidr> + '_ {
        self.ranges
            .iter()
            .filter(|r| r.prefix() <= 24)
            .flat_map(|r| {
                let count = 1u32 << (24 - u32::from(r.prefix())).min(8);
                (0..count).filter_map(move |i| r.nth(i * 256).map(|a| Cidr::containing(a, 24)))
            })
    }
}

/// The candidate cluster subnets, in order of preference.
pub fn candidate_subnets() -> impl Iterator<Item = Cidr> {
    (100u8..=199).map(|third| Cidr::containing(Ipv4Addr::new(192, 168, third, 0), 24))
}

/// The one NetNat prefix every devcluster Hyper-V cluster's /24 lies in
/// (`providers::hyperv::NAT_PREFIX`).
pub const HYPERV_NAT_PREFIX: &str = crate::providers::hyperv::NAT_PREFIX;

/// Resolvers of nodes on Hyper-V, whose internal switch answers no DNS.
pub const HYPERV_RESOLVERS: [Ipv4Addr; 2] = [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)];

/// Whether the plan is for Hyper-V's shared NAT: asked for, or `auto` on
/// Windows (where Hyper-V is tried first).
fn uses_hyperv_nat(spec: &Spec) -> bool {
    spec.provider.value == ProviderKind::Hyperv
        || (spec.provider.value == ProviderKind::Auto && cfg!(windows))
}

/// The candidate subnets of a Hyper-V cluster: the /24s of the NAT prefix.
pub fn hyperv_candidate_subnets() -> impl Iterator<Item = Cidr> {
    (240u8..=255).map(|third| Cidr::containing(Ipv4Addr::new(192, 168, third, 0), 24))
}

/// Chooses the cluster subnet.
pub fn choose_subnet(spec: &Spec, env: &Surroundings) -> Result<Cidr, UserError> {
    if let Some(existing) = env.existing_subnet {
        return Ok(existing);
    }
    let avoid = [spec.pod_cidr.value, spec.service_cidr.value];
    if let Some(requested) = &spec.node_cidr {
        if let Some((other, _)) = env
            .other_clusters
            .iter()
            .find(|(_, c)| c.overlaps(&requested.value))
        {
            return Err(UserError::new(format!(
                "node network {} (from {}) is already used by cluster {other}",
                requested.value, requested.origin
            ))
            .hint("choose another node_cidr, or leave it out to let devcluster pick one"));
        }
        if let Some(allowed) = env.allowed.as_ref().filter(|a| !a.allows(&requested.value)) {
            return Err(UserError::new(format!(
                "node network {} (from {}) is outside the ranges {} allows for host-only networks ({})",
                requested.value,
                requested.origin,
                allowed.by,
                allowed.shown()
            ))
            .hint(format!(
                "add the line `* {}` to {} (as root), or leave node_cidr out to let devcluster pick an allowed /24",
                requested.value, allowed.file
            )));
        }
        if let Some(net) = env
            .host_networks
            .iter()
            .find(|c| c.overlaps(&requested.value))
        {
            return Err(UserError::new(format!(
                "node network {} (from {}) overlaps {net}, a network this host already uses",
                requested.value, requested.origin
            ))
            .hint("choose another node_cidr, or leave it out to let devcluster pick one"));
        }
        let nat: Cidr = HYPERV_NAT_PREFIX.parse().expect("a CIDR");
        if uses_hyperv_nat(spec)
            && !(nat.contains(requested.value.addr()) && requested.value.prefix() >= nat.prefix())
        {
            return Err(UserError::new(format!(
                "node network {} (from {}) is outside {HYPERV_NAT_PREFIX}, the one NAT prefix devcluster's Hyper-V clusters share",
                requested.value, requested.origin
            ))
            .hint(format!("choose a /24 inside {HYPERV_NAT_PREFIX}, or leave node_cidr out")));
        }
        return Ok(requested.value);
    }
    let free = |c: &Cidr| {
        !env.host_networks.iter().any(|n| n.overlaps(c))
            && !env.other_clusters.iter().any(|(_, n)| n.overlaps(c))
            && !avoid.iter().any(|n| n.overlaps(c))
    };
    let Some(allowed) = &env.allowed else {
        let mut candidates: Box<dyn Iterator<Item = Cidr>> = if uses_hyperv_nat(spec) {
            Box::new(hyperv_candidate_subnets())
        } else {
            Box::new(candidate_subnets())
        };
        let (first, last) = if uses_hyperv_nat(spec) {
            ("192.168.240.0", "192.168.255.0")
        } else {
            ("192.168.100.0", "192.168.199.0")
        };
        return candidates.find(free).ok_or_else(|| {
            UserError::new(format!(
                "no free /24 for the cluster network between {first} and {last}"
            ))
            .hint("set [network] node_cidr in devcluster.toml to a free /24")
        });
    };
    // The usual candidates where allowed, then the allowed ranges' own /24s.
    candidate_subnets()
        .filter(|c| allowed.allows(c))
        .chain(allowed.subnets())
        .find(free)
        .ok_or_else(|| {
            UserError::new(format!(
                "no free /24 for the cluster network inside the ranges {} allows for host-only networks ({})",
                allowed.by,
                allowed.shown()
            ))
            .hint(format!(
                "allow a free range: add a line such as `* 192.168.100.0/22` to {} (as root), then run up again",
                allowed.file
            ))
        })
}

/// The locally administered MAC of a node.
pub fn node_mac(cluster: &str, host: u32) -> String {
    let h = Sha256::digest(format!("devcluster/{cluster}").as_bytes());
    format!(
        "02:{:02x}:{:02x}:{:02x}:00:{:02x}",
        h[0],
        h[1],
        h[2],
        host & 0xff
    )
}

/// Builds the plan.
pub fn plan(spec: &Spec, env: &Surroundings) -> Result<Plan, UserError> {
    let subnet = choose_subnet(spec, env)?;
    let cluster = spec.cluster.value.clone();
    let host_ip = |host: u32| {
        subnet
            .nth(host)
            .ok_or_else(|| UserError::new(format!("internal error: {subnet} has no host {host}")))
    };
    let node = |name: String, role, os, host: u32, m: &Machine, image: &Val<String>| {
        Ok::<_, UserError>(NodePlan {
            name,
            role,
            os,
            ip: host_ip(host)?,
            mac: node_mac(&cluster, host),
            cpus: m.cpus.value,
            memory_mib: m.memory_mib.value,
            disk_gib: m.disk_gib.value,
            image: image.value.clone(),
        })
    };

    let mut nodes = vec![node(
        format!("{cluster}-cp"),
        Role::ControlPlane,
        Os::Linux,
        CONTROL_PLANE_HOST,
        &spec.control_plane,
        &spec.linux_image,
    )?];
    for i in 1..=spec.workers.value {
        nodes.push(node(
            format!("{cluster}-w{i}"),
            Role::Worker,
            Os::Linux,
            LINUX_WORKER_BASE + i,
            &spec.linux,
            &spec.linux_image,
        )?);
    }
    for i in 1..=spec.windows_workers.value {
        nodes.push(node(
            format!("{cluster}-win{i}"),
            Role::Worker,
            Os::Windows,
            WINDOWS_WORKER_BASE + i,
            &spec.windows,
            &spec.windows_image,
        )?);
    }

    let cp_ip = nodes[0].ip;
    Ok(Plan {
        cluster,
        provider: spec.provider.value,
        kubernetes_version: spec.kubernetes.minor.clone(),
        kubernetes_release: None,
        kubernetes: true,
        windows_taint: spec.windows_taint.value,
        network: NetworkPlan {
            subnet,
            gateway: host_ip(1)?,
            pod_cidr: spec.pod_cidr.value,
            service_cidr: spec.service_cidr.value,
            cluster_dns: spec.service_cidr.value.nth(10).ok_or_else(|| {
                UserError::new(format!(
                    "service network {} is too small for the cluster DNS address (.10)",
                    spec.service_cidr.value
                ))
            })?,
            api_endpoint: format!("{cp_ip}:{API_PORT}"),
            resolvers: if uses_hyperv_nat(spec) {
                HYPERV_RESOLVERS.to_vec()
            } else {
                Vec::new()
            },
        },
        nodes,
        libvirt: LibvirtPlan {
            uri: spec.libvirt_uri.value.clone(),
            domain_type: spec.libvirt_domain_type.value,
            network_mode: spec.libvirt_network_mode.value,
            windows_devices: spec.libvirt_windows_devices.value,
        },
    })
}

/// The most Linux workers a cluster has (`w1`..`w9`).
pub const MAX_LINUX_WORKERS: u32 = 9;

/// `node add --linux`: a new Linux worker in an existing plan, the lowest
/// free `wN` (its address and MAC follow from the name, like every node's),
/// sized by `machine` and booting `image`. Inserted after the last Linux
/// worker so the plan keeps its order. Returns the new node's name.
pub fn add_linux_worker(
    plan: &mut Plan,
    machine: (u32, u32, u32),
    image: &str,
) -> Result<String, UserError> {
    add_worker(plan, Os::Linux, machine, image)
}

/// `node add --windows`: as [`add_linux_worker`], the lowest free `winN`
/// (address `.3N`), after the last Windows worker (the end of the plan).
pub fn add_windows_worker(
    plan: &mut Plan,
    machine: (u32, u32, u32),
    image: &str,
) -> Result<String, UserError> {
    add_worker(plan, Os::Windows, machine, image)
}

fn add_worker(
    plan: &mut Plan,
    os: Os,
    machine: (u32, u32, u32),
    image: &str,
) -> Result<String, UserError> {
    let (prefix, base, what) = match os {
        Os::Linux => ("w", LINUX_WORKER_BASE, "Linux"),
        Os::Windows => ("win", WINDOWS_WORKER_BASE, "Windows"),
    };
    let name_of = |i: u32| format!("{}-{prefix}{i}", plan.cluster);
    let Some(i) = (1..=MAX_LINUX_WORKERS).find(|i| plan.node(&name_of(*i)).is_none()) else {
        return Err(UserError::new(format!(
            "cluster {} has {MAX_LINUX_WORKERS} {what} workers already, the most it can have",
            plan.cluster
        ))
        .hint("remove one with `devcluster node remove NODE` first"));
    };
    let host = base + i;
    let ip = plan.network.subnet.nth(host).ok_or_else(|| {
        UserError::new(format!(
            "internal error: {} has no host {host}",
            plan.network.subnet
        ))
    })?;
    let (cpus, memory_mib, disk_gib) = machine;
    let node = NodePlan {
        name: name_of(i),
        role: Role::Worker,
        os,
        ip,
        mac: node_mac(&plan.cluster, host),
        cpus,
        memory_mib,
        disk_gib,
        image: image.to_string(),
    };
    // Windows workers come last in a plan.
    let at = match os {
        Os::Windows => plan.nodes.len(),
        Os::Linux => plan
            .nodes
            .iter()
            .rposition(|n| n.os == Os::Linux)
            .map_or(plan.nodes.len(), |p| p + 1),
    };
    let name = node.name.clone();
    plan.nodes.insert(at, node);
    Ok(name)
}

/// `X.Y.Z` from what `kubeadm version -o short` prints (`v1.37.2`), when
/// it is a release of `minor`.
pub fn parse_release(minor: &str, printed: &str) -> Option<String> {
    let v = printed.trim().strip_prefix('v')?;
    let patch = v.strip_prefix(minor)?.strip_prefix('.')?;
    (!patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit())).then(|| v.to_string())
}

impl Plan {
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn control_plane(&self) -> &NodePlan {
        // `plan` always puts the control plane first.
        &self.nodes[0]
    }

    pub fn total_memory_mib(&self) -> u64 {
        self.nodes.iter().map(|n| u64::from(n.memory_mib)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Layer, Origin, resolve};
    use proptest::prelude::*;

    #[test]
    fn a_release_is_read_from_kubeadm_version() {
        assert_eq!(
            parse_release("1.37", "v1.37.2\n").as_deref(),
            Some("1.37.2")
        );
        assert_eq!(
            parse_release("1.37", "v1.37.12").as_deref(),
            Some("1.37.12")
        );
        assert_eq!(parse_release("1.37", "v1.36.2"), None);
        assert_eq!(parse_release("1.3", "v1.37.2"), None);
        assert_eq!(parse_release("1.37", "v1.37.0-rc.1"), None);
        assert_eq!(parse_release("1.37", "1.37.2"), None);
        assert_eq!(parse_release("1.37", ""), None);
    }

    fn spec(name: &str, workers: u32, windows: u32) -> Spec {
        let layer = Layer {
            workers: Some(Val::new(workers, Origin::Flag("--workers"))),
            windows_workers: Some(Val::new(windows, Origin::Flag("--windows-workers"))),
            ..Layer::default()
        };
        resolve(Val::new(name.into(), Origin::Flag("--cluster")), layer).unwrap()
    }

    #[test]
    fn added_workers_take_the_lowest_free_name_and_its_address() {
        let full = plan(&spec("dev", 2, 1), &Surroundings::default()).unwrap();
        let mut p = full.clone();
        p.nodes.retain(|n| n.name != "dev-w1");
        let name = add_linux_worker(&mut p, (1, 1024, 10), "guest").unwrap();
        assert_eq!(name, "dev-w1");
        let names: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["dev-cp", "dev-w2", "dev-w1", "dev-win1"]);
        let added = p.node("dev-w1").unwrap();
        let planned = full.node("dev-w1").unwrap();
        assert_eq!((added.ip, &added.mac), (planned.ip, &planned.mac));
        assert_eq!(
            (added.cpus, added.memory_mib, added.disk_gib),
            (1, 1024, 10)
        );
        assert_eq!(
            add_linux_worker(&mut p, (1, 1024, 10), "guest").unwrap(),
            "dev-w3"
        );
        for _ in 4..=MAX_LINUX_WORKERS {
            add_linux_worker(&mut p, (1, 1024, 10), "guest").unwrap();
        }
        let err = add_linux_worker(&mut p, (1, 1024, 10), "guest").unwrap_err();
        assert!(err.message.contains("9 Linux workers already"), "{err}");
    }

    /// `node add --windows`: the lowest free `NAME-winN`, with the address
    /// and MAC the plan would have given it, at the end of the plan.
    #[test]
    fn node_add_windows_takes_the_lowest_free_win_n() {
        let full = plan(&spec("dev", 1, 3), &Surroundings::default()).unwrap();
        let mut p = full.clone();
        p.nodes.retain(|n| n.name != "dev-win2");
        let name = add_windows_worker(&mut p, (2, 4096, 64), "windows-server-2025").unwrap();
        assert_eq!(name, "dev-win2");
        let names: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            ["dev-cp", "dev-w1", "dev-win1", "dev-win3", "dev-win2"]
        );
        let added = p.node("dev-win2").unwrap();
        let planned = full.node("dev-win2").unwrap();
        assert_eq!(
            (added.ip, &added.mac, added.os, added.role),
            (planned.ip, &planned.mac, Os::Windows, Role::Worker)
        );
        assert_eq!(
            add_windows_worker(&mut p, (2, 4096, 64), "windows-server-2025").unwrap(),
            "dev-win4"
        );
        // A cluster without Windows workers gets win1 at the end.
        let mut linux = plan(&spec("dev", 2, 0), &Surroundings::default()).unwrap();
        assert_eq!(
            add_windows_worker(&mut linux, (2, 4096, 64), "w").unwrap(),
            "dev-win1"
        );
        assert_eq!(linux.nodes.last().unwrap().name, "dev-win1");
        assert_eq!(linux.nodes.last().unwrap().ip.to_string(), "192.168.100.31");
        for _ in 5..=MAX_LINUX_WORKERS {
            add_windows_worker(&mut p, (2, 4096, 64), "w").unwrap();
        }
        let err = add_windows_worker(&mut p, (2, 4096, 64), "w").unwrap_err();
        assert!(err.message.contains("9 Windows workers already"), "{err}");
    }

    #[test]
    fn skips_used_subnets() {
        let s = spec("dev", 1, 0);
        let env = Surroundings {
            host_networks: vec![
                "192.168.100.0/24".parse().unwrap(),
                "192.168.96.0/21".parse().unwrap(),
            ],
            other_clusters: vec![("b".into(), "192.168.101.0/24".parse().unwrap())],
            ..Default::default()
        };
        let p = plan(&s, &env).unwrap();
        // 100 is the host's, 101 another cluster's, 102 and 103 are inside the /21.
        assert_eq!(p.network.subnet.to_string(), "192.168.104.0/24");
        assert_eq!(p.network.gateway.to_string(), "192.168.104.1");
        assert_eq!(p.network.api_endpoint, "192.168.104.10:6443");
        assert_eq!(p.network.cluster_dns.to_string(), "10.96.0.10");
    }

    #[test]
    fn allowed_ranges_restrict_the_subnet() {
        let s = spec("dev", 1, 0);
        let allowed = AllowedSubnets {
            ranges: vec!["192.168.56.0/21".parse().unwrap()],
            by: "VirtualBox".into(),
            file: "/etc/vbox/networks.conf".into(),
        };
        let env = Surroundings {
            host_networks: vec!["192.168.56.0/24".parse().unwrap()],
            other_clusters: vec![("b".into(), "192.168.57.0/24".parse().unwrap())],
            allowed: Some(allowed.clone()),
            ..Default::default()
        };
        // 56 is the host's (vboxnet0), 57 another cluster's.
        let p = plan(&s, &env).unwrap();
        assert_eq!(p.network.subnet.to_string(), "192.168.58.0/24");
        assert_eq!(p.network.api_endpoint, "192.168.58.10:6443");
        // Allowed ranges that hold the usual candidates use them first.
        let wide = Surroundings {
            allowed: Some(AllowedSubnets {
                ranges: vec!["192.168.0.0/16".parse().unwrap()],
                ..allowed.clone()
            }),
            ..Default::default()
        };
        assert_eq!(
            plan(&s, &wide).unwrap().network.subnet.to_string(),
            "192.168.100.0/24"
        );
        // All eight taken: the error says what to add to the file.
        let full = Surroundings {
            host_networks: vec!["192.168.56.0/21".parse().unwrap()],
            allowed: Some(allowed.clone()),
            ..Default::default()
        };
        let err = plan(&s, &full).unwrap_err();
        assert!(err.message.contains("192.168.56.0/21"), "{err}");
        assert!(
            format!("{err:?}").contains("to /etc/vbox/networks.conf"),
            "{err:?}"
        );
        // A pinned node_cidr outside them: the exact line to add.
        let mut pinned = s.clone();
        pinned.node_cidr = Some(Val::new(
            "192.168.150.0/24".parse().unwrap(),
            Origin::Flag("--node-cidr"),
        ));
        let err = plan(
            &pinned,
            &Surroundings {
                allowed: Some(allowed),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.message.contains("outside the ranges VirtualBox allows"));
        assert!(
            format!("{err:?}").contains("`* 192.168.150.0/24` to /etc/vbox/networks.conf"),
            "{err:?}"
        );
    }

    #[test]
    fn keeps_existing_subnet() {
        let s = spec("dev", 1, 0);
        let env = Surroundings {
            existing_subnet: Some("192.168.150.0/24".parse().unwrap()),
            host_networks: vec!["192.168.150.0/24".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(
            plan(&s, &env).unwrap().network.subnet.to_string(),
            "192.168.150.0/24"
        );
    }

    #[test]
    fn addresses_are_stable_per_name() {
        let small = plan(&spec("dev", 1, 1), &Surroundings::default()).unwrap();
        let big = plan(&spec("dev", 3, 2), &Surroundings::default()).unwrap();
        for n in &small.nodes {
            let same = big.node(&n.name).unwrap();
            assert_eq!((n.ip, &n.mac), (same.ip, &same.mac));
        }
        assert_eq!(small.nodes[0].name, "dev-cp");
        assert_eq!(small.nodes[2].name, "dev-win1");
    }

    #[test]
    fn hyperv_subnets_lie_inside_the_one_nat_prefix() {
        let mut s = spec("dev", 1, 0);
        s.provider = Val::new(
            ProviderKind::Hyperv,
            crate::spec::Origin::Flag("--provider"),
        );
        let nat: Cidr = HYPERV_NAT_PREFIX.parse().unwrap();
        let env = Surroundings {
            other_clusters: vec![("b".into(), "192.168.240.0/24".parse().unwrap())],
            ..Default::default()
        };
        let p = plan(&s, &env).unwrap();
        assert_eq!(p.network.subnet.to_string(), "192.168.241.0/24");
        assert!(nat.contains(p.network.subnet.addr()));
        assert_eq!(p.network.resolvers, HYPERV_RESOLVERS.to_vec());
        // A pinned node_cidr outside the prefix is refused, inside kept.
        s.node_cidr = Some(Val::new(
            "192.168.150.0/24".parse().unwrap(),
            crate::spec::Origin::Flag("node_cidr"),
        ));
        let err = plan(&s, &Surroundings::default()).unwrap_err();
        assert!(err.message.contains("outside 192.168.240.0/20"), "{err}");
        s.node_cidr = Some(Val::new(
            "192.168.250.0/24".parse().unwrap(),
            crate::spec::Origin::Flag("node_cidr"),
        ));
        assert_eq!(
            plan(&s, &Surroundings::default())
                .unwrap()
                .network
                .subnet
                .to_string(),
            "192.168.250.0/24"
        );
        // libvirt plans are unchanged: gateway DNS, no resolvers.
        let l = plan(&spec("dev", 1, 0), &Surroundings::default()).unwrap();
        assert!(l.network.resolvers.is_empty());
    }

    proptest! {
        #[test]
        fn plans_are_well_formed(
            name in "[a-z][a-z0-9-]{0,9}",
            workers in 0u32..=9,
            windows in 0u32..=9,
        ) {
            let p = plan(&spec(&name, workers, windows), &Surroundings::default()).unwrap();
            prop_assert_eq!(p.nodes.len() as u32, 1 + workers + windows);
            let mut names = std::collections::HashSet::new();
            let mut ips = std::collections::HashSet::new();
            let mut macs = std::collections::HashSet::new();
            for n in &p.nodes {
                prop_assert!(n.name.len() <= 15, "{} too long", n.name);
                prop_assert!(names.insert(n.name.clone()));
                prop_assert!(ips.insert(n.ip));
                prop_assert!(p.network.subnet.contains(n.ip));
                prop_assert!(n.ip != p.network.gateway);
                prop_assert!(macs.insert(n.mac.clone()));
                let first = u8::from_str_radix(&n.mac[..2], 16).unwrap();
                prop_assert!(first & 0b10 != 0, "locally administered");
                prop_assert!(first & 0b01 == 0, "unicast");
            }
        }
    }
}
