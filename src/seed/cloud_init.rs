//! The cloud-init NoCloud files of a Linux node, rendered from plain inputs.
//!
//! Three files end up on the seed ISO:
//!
//! - `meta-data`: the instance id and the hostname. cloud-init runs its
//!   per-instance modules (users, keys, `write_files`) once per instance id,
//!   so the id is stable for the node's life and differs between nodes, and
//!   between two clusters that happen to reuse a name (see
//!   [`instance_id`]).
//! - `network-config`: network config version 2 with one ethernet matched
//!   by the planned MAC, renamed to [`INTERFACE`], a static address, the
//!   default gateway and DNS. The default route is written as `gateway4`,
//!   not `routes: [{to: default}]`: cloud-init 22.4 (Debian 12) rejects
//!   `to: default` (it expects an IP network), and its ENI renderer turns
//!   `to: 0.0.0.0/0` into `post-up route add default gw ...|| true`, which
//!   silently does nothing on images without net-tools. `gateway4` becomes
//!   a plain `gateway` line in `/etc/network/interfaces`. netplan
//!   (Ubuntu 24.04) still accepts `gateway4` (with a deprecation warning).
//! - `user-data`: `#cloud-config` with the hostname, our `devcluster` user
//!   (passwordless sudo, key login only), our pre-generated ed25519 host
//!   key (so the host can pin it before first boot), `/etc/hosts` for the
//!   whole cluster and the `write_files` later steps add.
//!
//! `/etc/hosts` is written through `write_files` with `manage_etc_hosts:
//! false`: with `true`, cloud-init re-renders `/etc/hosts` from its template
//! on every boot (after `write_files`), dropping the cluster's names.
//!
//! YAML comes from `serde_norway`, never from string templates. One trap
//! remains: `serde_norway` quotes strings by YAML 1.2 rules, but cloud-init
//! reads YAML 1.1 (PyYAML), where plain `yes`, `on`, `1_000`, `2024-01-02`
//! or a MAC such as `52:54:00:12:34:56` (a base-60 integer!) are not
//! strings. Every rendered string is checked, and one that PyYAML would
//! read as something else is an error ([`RenderError::Yaml11`]) instead of
//! a silently broken guest.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;
use serde_norway::Value;
use sha2::{Digest, Sha256};

/// The login user on every Linux node.
pub const USER: &str = "devcluster";
/// The name the cluster NIC gets in the guest (matched by MAC). Not a
/// kernel name like `eth0`, so the rename never races the kernel's own
/// naming when a VM has a second NIC.
pub const INTERFACE: &str = "cluster0";
const SUDO_RULE: &str = "ALL=(ALL) NOPASSWD:ALL";
const SHELL: &str = "/bin/bash";

/// Everything a Linux node's NoCloud seed is made of.
#[derive(Clone, PartialEq, Eq)]
pub struct LinuxSeed {
    /// cloud-init's instance id; see [`instance_id`].
    pub instance_id: String,
    pub hostname: String,
    pub fqdn: Option<String>,
    /// The login user, normally [`USER`].
    pub user: String,
    /// OpenSSH public keys allowed to log in as `user`.
    pub ssh_authorized_keys: Vec<String>,
    /// The guest's SSH host key, OpenSSH private key format (PEM-armoured).
    pub host_key_ed25519_private: String,
    /// The same key's public half (`ssh-ed25519 AAAA... comment`).
    pub host_key_ed25519_public: String,
    /// The cluster NIC's MAC, `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// The name the cluster NIC gets, normally [`INTERFACE`].
    pub interface: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    /// Every cluster node, for `/etc/hosts`.
    pub hosts: Vec<(String, Ipv4Addr)>,
    /// Files cloud-init writes, after `/etc/hosts`.
    pub write_files: Vec<WriteFile>,
}

/// The private host key must not end up in logs.
impl fmt::Debug for LinuxSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinuxSeed")
            .field("instance_id", &self.instance_id)
            .field("hostname", &self.hostname)
            .field("fqdn", &self.fqdn)
            .field("user", &self.user)
            .field("ssh_authorized_keys", &self.ssh_authorized_keys)
            .field("host_key_ed25519_private", &"<redacted>")
            .field("host_key_ed25519_public", &self.host_key_ed25519_public)
            .field("mac", &self.mac)
            .field("interface", &self.interface)
            .field("ip", &self.ip)
            .field("prefix", &self.prefix)
            .field("gateway", &self.gateway)
            .field("dns", &self.dns)
            .field("hosts", &self.hosts)
            .field("write_files", &self.write_files)
            .finish()
    }
}

/// One `write_files` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    /// Unix mode, e.g. `0o644`.
    pub permissions: u32,
    /// `user:group`.
    pub owner: String,
    /// Write at the end of boot (after users exist) instead of early;
    /// needed for files owned by or under the home of [`USER`].
    pub defer: bool,
}

impl WriteFile {
    /// A file owned by root, written early in boot.
    pub fn root(path: impl Into<String>, content: impl Into<String>, permissions: u32) -> Self {
        Self {
            path: path.into(),
            content: content.into(),
            permissions,
            owner: "root:root".into(),
            defer: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "`{value}` (in {file}) would be read as a {kind}, not a string, by cloud-init's YAML 1.1 parser"
    )]
    Yaml11 {
        file: &'static str,
        value: String,
        kind: &'static str,
    },
    #[error("serializing {file}")]
    Serialize {
        file: &'static str,
        #[source]
        source: serde_norway::Error,
    },
}

/// The instance id of a node: its name plus a hash of the cluster, the
/// node and the node's SSH host key. The same for every boot of the node
/// (cloud-init does not re-run), different for another node, and different
/// when a cluster is destroyed and re-created under the same name (new host
/// keys), so a disk cloned from an older node never skips its new seed.
pub fn instance_id(cluster: &str, node: &str, host_key_public: &str) -> String {
    let mut h = Sha256::new();
    for part in [cluster, node, host_key_public.trim()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{node}-{hex}")
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

/// `meta-data`.
pub fn meta_data(seed: &LinuxSeed) -> Result<String, RenderError> {
    to_yaml(
        "meta-data",
        &MetaData {
            instance_id: &seed.instance_id,
            local_hostname: &seed.hostname,
        },
    )
}

#[derive(Serialize)]
struct NetworkConfig<'a> {
    version: u8,
    ethernets: std::collections::BTreeMap<&'a str, Ethernet<'a>>,
}

#[derive(Serialize)]
struct Ethernet<'a> {
    #[serde(rename = "match")]
    matches: MacMatch<'a>,
    #[serde(rename = "set-name")]
    set_name: &'a str,
    dhcp4: bool,
    addresses: Vec<String>,
    gateway4: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Serialize)]
struct MacMatch<'a> {
    macaddress: &'a str,
}

#[derive(Serialize)]
struct Nameservers {
    addresses: Vec<String>,
}

/// `network-config` (network config version 2).
pub fn network_config(seed: &LinuxSeed) -> Result<String, RenderError> {
    let ethernet = Ethernet {
        matches: MacMatch {
            macaddress: &seed.mac,
        },
        set_name: &seed.interface,
        dhcp4: false,
        addresses: vec![format!("{}/{}", seed.ip, seed.prefix)],
        gateway4: seed.gateway.to_string(),
        nameservers: (!seed.dns.is_empty()).then(|| Nameservers {
            addresses: seed.dns.iter().map(ToString::to_string).collect(),
        }),
    };
    to_yaml(
        "network-config",
        &NetworkConfig {
            version: 2,
            ethernets: [(seed.interface.as_str(), ethernet)].into(),
        },
    )
}

/// The name the NAT NIC gets in a two-NIC guest (VirtualBox's NIC 1).
pub const NAT_INTERFACE: &str = "nat0";

#[derive(Serialize)]
struct TwoNicEthernet<'a> {
    #[serde(rename = "match")]
    matches: MacMatch<'a>,
    #[serde(rename = "set-name")]
    set_name: &'a str,
    dhcp4: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
}

/// `network-config` of a VM with two NICs (VirtualBox): NIC 1 (`nat_mac`,
/// renamed [`NAT_INTERFACE`]) takes DHCP from VirtualBox's NAT, which
/// gives the default route and DNS: the host-only network does not route
/// to the internet. NIC 2 (the planned MAC, renamed `seed.interface`) has
/// the planned address and no gateway, so every cluster address (kubelet
/// `node-ip`, the API server, flannel's `--iface`) is on it and never the
/// NAT address 10.0.2.15 every VM shares. `seed.gateway` and `seed.dns`
/// are not used.
pub fn network_config_two_nics(seed: &LinuxSeed, nat_mac: &str) -> Result<String, RenderError> {
    let nat = TwoNicEthernet {
        matches: MacMatch {
            macaddress: nat_mac,
        },
        set_name: NAT_INTERFACE,
        dhcp4: true,
        addresses: Vec::new(),
    };
    let cluster = TwoNicEthernet {
        matches: MacMatch {
            macaddress: &seed.mac,
        },
        set_name: &seed.interface,
        dhcp4: false,
        addresses: vec![format!("{}/{}", seed.ip, seed.prefix)],
    };
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u8,
        ethernets: std::collections::BTreeMap<&'a str, TwoNicEthernet<'a>>,
    }
    to_yaml(
        "network-config",
        &Doc {
            version: 2,
            ethernets: [(NAT_INTERFACE, nat), (seed.interface.as_str(), cluster)].into(),
        },
    )
}

#[derive(Serialize)]
struct UserData<'a> {
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fqdn: Option<&'a str>,
    preserve_hostname: bool,
    manage_etc_hosts: bool,
    users: Vec<User<'a>>,
    ssh_pwauth: bool,
    disable_root: bool,
    ssh_deletekeys: bool,
    ssh_genkeytypes: Vec<&'a str>,
    ssh_keys: SshKeys<'a>,
    write_files: Vec<WriteFileEntry<'a>>,
}

#[derive(Serialize)]
struct User<'a> {
    name: &'a str,
    gecos: &'a str,
    sudo: &'a str,
    shell: &'a str,
    lock_passwd: bool,
    ssh_authorized_keys: Vec<&'a str>,
}

#[derive(Serialize)]
struct SshKeys<'a> {
    ed25519_private: &'a str,
    ed25519_public: &'a str,
}

#[derive(Serialize)]
struct WriteFileEntry<'a> {
    path: &'a str,
    content: &'a str,
    permissions: String,
    owner: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    defer: bool,
}

/// The contents of `/etc/hosts`: localhost, then every cluster node (the
/// node itself with its FQDN when it has one).
/// The block of `/etc/hosts` that devcluster owns. `prepare-os.sh` manages
/// the same block (same markers), so the two writers never duplicate lines.
pub const HOSTS_BEGIN: &str = "# BEGIN devcluster";
pub const HOSTS_END: &str = "# END devcluster";

pub fn etc_hosts(seed: &LinuxSeed) -> String {
    let mut out = String::from(
        "# Written by devcluster at first boot.\n\
         127.0.0.1 localhost\n\
         ::1 localhost ip6-localhost ip6-loopback\n\
         ff02::1 ip6-allnodes\n\
         ff02::2 ip6-allrouters\n\n",
    );
    let mut hosts = seed.hosts.clone();
    if !hosts.iter().any(|(name, _)| *name == seed.hostname) {
        hosts.insert(0, (seed.hostname.clone(), seed.ip));
    }
    out.push_str(HOSTS_BEGIN);
    out.push('\n');
    for (name, ip) in &hosts {
        match &seed.fqdn {
            Some(fqdn) if *name == seed.hostname && fqdn != name => {
                out.push_str(&format!("{ip} {fqdn} {name}\n"));
            }
            _ => out.push_str(&format!("{ip} {name}\n")),
        }
    }
    out.push_str(HOSTS_END);
    out.push('\n');
    out
}

/// `user-data`: `#cloud-config` and the document.
pub fn user_data(seed: &LinuxSeed) -> Result<String, RenderError> {
    let hosts = etc_hosts(seed);
    let hosts_file = WriteFile::root("/etc/hosts", hosts, 0o644);
    let write_files = std::iter::once(&hosts_file)
        .chain(&seed.write_files)
        .map(|f| WriteFileEntry {
            path: &f.path,
            content: &f.content,
            permissions: format!("{:04o}", f.permissions),
            owner: &f.owner,
            defer: f.defer,
        })
        .collect();
    let doc = UserData {
        hostname: &seed.hostname,
        fqdn: seed.fqdn.as_deref(),
        preserve_hostname: false,
        manage_etc_hosts: false,
        users: vec![User {
            name: &seed.user,
            gecos: "devcluster",
            sudo: SUDO_RULE,
            shell: SHELL,
            lock_passwd: true,
            ssh_authorized_keys: seed.ssh_authorized_keys.iter().map(|k| k.trim()).collect(),
        }],
        ssh_pwauth: false,
        disable_root: true,
        ssh_deletekeys: true,
        ssh_genkeytypes: Vec::new(),
        ssh_keys: SshKeys {
            ed25519_private: &seed.host_key_ed25519_private,
            ed25519_public: seed.host_key_ed25519_public.trim(),
        },
        write_files,
    };
    Ok(format!("#cloud-config\n{}", to_yaml("user-data", &doc)?))
}

fn to_yaml<T: Serialize>(file: &'static str, doc: &T) -> Result<String, RenderError> {
    let err = |source| RenderError::Serialize { file, source };
    let value = serde_norway::to_value(doc).map_err(err)?;
    check_yaml11(file, &value)?;
    serde_norway::to_string(&value).map_err(err)
}

/// Fails on a string that `serde_norway` would write plain but PyYAML would
/// not read back as that string.
fn check_yaml11(file: &'static str, value: &Value) -> Result<(), RenderError> {
    match value {
        Value::String(s) => {
            if let Some(kind) = yaml11_kind(s) {
                let quoted = serde_norway::to_string(s)
                    .map(|out| out.starts_with(['\'', '"', '|']))
                    .unwrap_or(false);
                if !quoted {
                    return Err(RenderError::Yaml11 {
                        file,
                        value: s.clone(),
                        kind,
                    });
                }
            }
            Ok(())
        }
        Value::Sequence(items) => items.iter().try_for_each(|v| check_yaml11(file, v)),
        Value::Mapping(map) => map.iter().try_for_each(|(k, v)| {
            check_yaml11(file, k)?;
            check_yaml11(file, v)
        }),
        Value::Tagged(t) => check_yaml11(file, &t.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// What PyYAML's implicit resolvers (YAML 1.1) make of a plain scalar, if
/// not a string. Mirrors `yaml/resolver.py`; timestamps are matched a
/// little more broadly than PyYAML does.
fn yaml11_kind(s: &str) -> Option<&'static str> {
    const BOOLS: &[&str] = &[
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ];
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        Some("null")
    } else if BOOLS.contains(&s) {
        Some("boolean")
    } else if yaml11_int(s) || yaml11_float(s) {
        Some("number")
    } else if is_timestamp(s) {
        Some("date")
    } else {
        None
    }
}

fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(f)
}

/// `(:[0-5]?[0-9])+` — the base-60 tail of an int or float.
fn sexagesimal_tail(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut groups = 0;
    while i < b.len() {
        if b[i] != b':' {
            return false;
        }
        i += 1;
        match (b.get(i), b.get(i + 1)) {
            (Some(b'0'..=b'5'), Some(b'0'..=b'9')) => i += 2,
            (Some(b'0'..=b'9'), _) => i += 1,
            _ => return false,
        }
        groups += 1;
    }
    groups > 0
}

fn yaml11_int(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let digit_ = |b: u8| b.is_ascii_digit() || b == b'_';
    if let Some(rest) = s.strip_prefix("0b") {
        return all(rest, |b| matches!(b, b'0' | b'1' | b'_'));
    }
    if let Some(rest) = s.strip_prefix("0x") {
        return all(rest, |b| b.is_ascii_hexdigit() || b == b'_');
    }
    if s == "0" || (s.starts_with('0') && all(&s[1..], |b| matches!(b, b'0'..=b'7' | b'_'))) {
        return true;
    }
    if !s.starts_with(|c: char| ('1'..='9').contains(&c)) {
        return false;
    }
    let head = s.bytes().take_while(|&b| digit_(b)).count();
    head == s.len() || sexagesimal_tail(&s[head..])
}

fn yaml11_float(s: &str) -> bool {
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    let digit_ = |b: u8| b.is_ascii_digit() || b == b'_';
    // `\.[0-9][0-9_]*([eE][-+][0-9]+)?` (no sign allowed)
    if let Some(rest) = s.strip_prefix('.') {
        return rest.starts_with(|c: char| c.is_ascii_digit()) && fraction_exponent(rest);
    }
    if !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let head = unsigned.bytes().take_while(|&b| digit_(b)).count();
    let rest = &unsigned[head..];
    if let Some(frac) = rest.strip_prefix('.') {
        // `[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?`
        return fraction_exponent(frac);
    }
    // `[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*`
    match rest.rfind('.') {
        Some(dot) => sexagesimal_tail(&rest[..dot]) && rest[dot + 1..].bytes().all(digit_),
        None => false,
    }
}

/// `[0-9_]*([eE][-+][0-9]+)?`
fn fraction_exponent(s: &str) -> bool {
    let n = s
        .bytes()
        .take_while(|&b| b.is_ascii_digit() || b == b'_')
        .count();
    let rest = &s[n..];
    rest.is_empty()
        || (rest.len() >= 3
            && matches!(rest.as_bytes()[0], b'e' | b'E')
            && matches!(rest.as_bytes()[1], b'-' | b'+')
            && all(&rest[2..], |b| b.is_ascii_digit()))
}

/// `YYYY-M...`: PyYAML's timestamp resolver starts with four digits and a
/// dash; anything of that shape is treated as a date here.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn seed() -> LinuxSeed {
        LinuxSeed {
            instance_id: "dev-cp-0123456789ab".into(),
            hostname: "dev-cp".into(),
            fqdn: None,
            user: USER.into(),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAATESTFIXTURE user@test".into()],
            host_key_ed25519_private:
                "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST-FIXTURE-NOT-A-KEY\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            host_key_ed25519_public: "ssh-ed25519 AAAATESTHOSTKEY root@dev-cp".into(),
            mac: "02:aa:bb:cc:00:0a".into(),
            interface: INTERFACE.into(),
            ip: Ipv4Addr::new(192, 168, 100, 10),
            prefix: 24,
            gateway: Ipv4Addr::new(192, 168, 100, 1),
            dns: vec![Ipv4Addr::new(192, 168, 100, 1)],
            hosts: vec![("dev-cp".into(), Ipv4Addr::new(192, 168, 100, 10))],
            write_files: vec![],
        }
    }

    #[test]
    fn yaml11_resolver_matches_pyyaml() {
        // Each verified with PyYAML 6 `yaml.safe_load`.
        let non_strings = [
            "yes",
            "No",
            "ON",
            "off",
            "~",
            "null",
            "",
            "0644",
            "0b101",
            "0x1F",
            "1_000",
            "-12",
            "52:54:00:12:34:56",
            "1:20",
            "190:20:30.15",
            "1.5",
            "1.",
            ".5",
            "-1.5e+3",
            ".inf",
            "-.Inf",
            ".nan",
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
        ];
        for s in non_strings {
            assert!(
                yaml11_kind(s).is_some(),
                "{s:?} is not a string in YAML 1.1"
            );
        }
        let strings = [
            "y",
            "n",
            "02:aa:bb:cc:00:0a",
            "02:11:22:33:00:10",
            "12:34:56:78:90:12",
            "1.2.3",
            "192.168.100.10/24",
            "1e5",
            "dev-cp",
            "0o17",
            "0xZ",
            "1:60",
            "ssh-ed25519 AAAA",
            "cafe",
            "1.5e3",
            "ALL=(ALL) NOPASSWD:ALL",
            "/bin/bash",
            "root:root",
            "<<",
            "=",
        ];
        for s in strings {
            assert_eq!(yaml11_kind(s), None, "{s:?} is a string in YAML 1.1");
        }
    }

    #[test]
    fn ambiguous_mac_is_an_error_not_a_broken_guest() {
        let mut s = seed();
        s.mac = "52:54:00:12:34:56".into();
        let err = network_config(&s).unwrap_err();
        assert!(
            matches!(&err, RenderError::Yaml11 { value, kind: "number", .. } if value == "52:54:00:12:34:56"),
            "{err}"
        );
        // Strings serde_norway quotes anyway are fine: `0644` is written '0644'.
        let mut s = seed();
        s.write_files.push(WriteFile::root("/etc/x", "on", 0o644));
        assert!(matches!(user_data(&s), Err(RenderError::Yaml11 { .. })));
        s.write_files[0].content = "on\n".into();
        assert!(user_data(&s).unwrap().contains("permissions: '0644'"));
    }

    #[test]
    fn instance_id_is_stable_and_distinct() {
        let a = instance_id("dev", "dev-cp", "ssh-ed25519 AAAA1");
        assert_eq!(a, instance_id("dev", "dev-cp", "ssh-ed25519 AAAA1\n"));
        assert!(a.starts_with("dev-cp-") && a.len() == "dev-cp-".len() + 12);
        assert_ne!(a, instance_id("dev", "dev-w1", "ssh-ed25519 AAAA1"));
        assert_ne!(a, instance_id("dev", "dev-cp", "ssh-ed25519 AAAA2"));
        assert_ne!(a, instance_id("dev2", "dev-cp", "ssh-ed25519 AAAA1"));
    }

    #[test]
    fn etc_hosts_names_self_with_fqdn_and_adds_missing_self() {
        let mut s = seed();
        s.fqdn = Some("dev-cp.devcluster.internal".into());
        s.hosts
            .push(("dev-w1".into(), Ipv4Addr::new(192, 168, 100, 21)));
        let hosts = etc_hosts(&s);
        assert!(hosts.contains("\n192.168.100.10 dev-cp.devcluster.internal dev-cp\n"));
        assert!(hosts.contains("\n192.168.100.21 dev-w1\n"));
        s.hosts.remove(0);
        assert!(etc_hosts(&s).contains("\n192.168.100.10 dev-cp.devcluster.internal dev-cp\n"));
    }

    #[test]
    fn debug_hides_the_private_key() {
        let text = format!("{:?}", seed());
        assert!(!text.contains("TEST-FIXTURE-NOT-A-KEY"));
        assert!(text.contains("<redacted>"));
    }
}
