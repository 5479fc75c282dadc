//! Host-side PKI: everything a cluster trusts, made before any VM boots.
//!
//! kubeadm normally invents a cluster's certificate authorities inside the
//! control-plane VM, so the join command and the admin kubeconfig exist only
//! after `kubeadm init` and must be copied back out. We turn that around:
//! the host generates the CAs, the service-account key pair, a bootstrap
//! token, the admin client certificate and every SSH key up front. kubeadm
//! finds the CAs pre-placed in `/etc/kubernetes/pki` and only issues the
//! leaf certificates (apiserver, kubelet client, etcd server/peer, ...)
//! from them. Workers can therefore join with `--discovery-token-ca-cert-hash`
//! in parallel with the control plane, and the admin kubeconfig is ready
//! before any VM exists.
//!
//! # Layout (`<state>/clusters/NAME/`)
//!
//! ```text
//! pki/ca.crt  ca.key                 cluster CA (CN kubernetes-ca)
//! pki/front-proxy-ca.crt  .key       front-proxy CA (kubernetes-front-proxy-ca)
//! pki/etcd/ca.crt  etcd/ca.key       etcd CA (etcd-ca)
//! pki/sa.key  sa.pub                 service-account signing key pair
//! pki/admin.crt  admin.key           admin client cert (O kubeadm:cluster-admins)
//! pki/bootstrap-token                abcdef.0123456789abcdef
//! ssh/id_ed25519  id_ed25519.pub     the host's SSH client key
//! ssh/hosts/NODE/ssh_host_ed25519_key(.pub)   each guest's SSH host key
//! ssh/known_hosts                    the pinned host keys, by IP and name
//! admin.kubeconfig                   server https://CP-IP:6443, certs embedded
//! ```
//!
//! The file names below `pki/` are exactly kubeadm's names under
//! `/etc/kubernetes/pki` ([`ClusterSecrets::kubeadm_pki_files`]). The
//! directories are 0700 and every private file 0600 on Unix (owner-only ACL
//! on Windows, via [`crate::fsutil`]).
//!
//! # Key type: RSA-2048
//!
//! kubeadm accepts RSA or ECDSA P-256 for an existing CA. We use RSA-2048
//! because it is kubeadm's default `encryptionAlgorithm`: the leaf
//! certificates kubeadm issues in the VM are RSA-2048 too, so the whole chain
//! is what every kubeadm cluster has and what every client (kubectl, Go,
//! rustls, Windows' schannel on the Windows nodes) is known to handle. rcgen
//! can generate RSA keys only with aws-lc-rs, which is the one crypto
//! provider this binary links anyway. Private keys are written as PKCS#8
//! (`PRIVATE KEY`), which kubeadm and the apiserver read for `ca.key` and
//! `sa.key` alike. SSH keys are Ed25519 (OpenSSH format): small, fast, and
//! accepted by every OpenSSH including Windows Server's.
//!
//! # Validity
//!
//! CAs are valid 10 years, the admin certificate 1 year (never beyond its
//! CA). Both start 24 hours in the past, as minikube does, so that a guest
//! whose clock lags the host (a Windows guest whose RTC runs in local time,
//! a resumed VM before its clock is resynced) still accepts them. [`ensure`]
//! re-issues the admin certificate when fewer than 30 days remain.
//!
//! # Never regenerated
//!
//! [`ensure`] generates what is missing and loads what exists. Once any node
//! of the cluster has left the `planned` phase (see [`crate::state`]), the
//! cluster-wide material may be inside a VM, and regenerating it would split
//! the cluster's trust: a missing or mismatched CA, service-account key,
//! token or SSH client key is then an error with a hint, never silently
//! replaced. Before that point nothing has left the host, so an incomplete
//! pair (a crash between writing a key and its certificate) is simply
//! regenerated, together with anything signed by it. Files that exist but do
//! not parse are always an error: devcluster does not delete what it cannot
//! read. Things derived only for the host are re-derived whenever needed:
//! public halves from their private keys, the admin certificate (signed by
//! the existing CA), `known_hosts` and `admin.kubeconfig`. A node that is new
//! in the plan (`node add`) gets a host key; a node whose VM exists must
//! already have one.
//!
//! Callers hold the cluster lock ([`crate::state::ClusterLock`]); [`ensure`]
//! itself does not lock.
//!
//! Secrets never reach logs: [`Secret`] has a redacting `Debug` and no
//! `Display`, error messages carry paths only, and tracing events name
//! files, not contents.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::dirs::Dirs;
use crate::fsutil::{Access, atomic_write};
use crate::plan::Plan;
use crate::state::{self, NodePhase, StateError};

/// How long the CAs are valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long the admin client certificate is valid.
pub const ADMIN_VALIDITY: Duration = Duration::days(365);
/// Certificates start this long before "now" (guest clock skew).
const BACKDATE: Duration = Duration::hours(24);
/// The admin certificate is re-issued when less than this is left.
const ADMIN_RENEW_BEFORE: Duration = Duration::days(30);

/// The admin certificate's subject: kubeadm's admin user name, in the group
/// that `kubeadm init` (1.29 and later) binds to the `cluster-admin`
/// ClusterRole, as kubeadm's own admin.conf is. Not `system:masters`: that
/// group bypasses RBAC, so a leaked certificate in it could only be revoked
/// by replacing the CA; this one is revoked by deleting the
/// `kubeadm:cluster-admins` ClusterRoleBinding.
pub const ADMIN_CN: &str = "kubernetes-admin";
pub const ADMIN_ORG: &str = "kubeadm:cluster-admins";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid {what}", path.display())]
    Invalid {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Detail,
    },
    #[error("{} does not belong to {}", path.display(), other.display())]
    Mismatch { path: PathBuf, other: PathBuf },
    #[error("{} is missing, but the cluster's machines already trust the one it held", path.display())]
    Missing { path: PathBuf },
    #[error("cannot generate {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: Detail,
    },
    #[error("the system's random number generator failed")]
    Random(#[source] Detail),
    #[error("node name {0:?} cannot be used as a file name")]
    NodeName(String),
    #[error("cannot read cluster {0}'s state")]
    State(String, #[source] StateError),
}

/// The text of a lower-level error (parsers and generators whose error
/// types are not `std::error::Error` or would leak their input).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Detail(pub String);

impl Detail {
    fn of(e: impl fmt::Display) -> Self {
        Detail(e.to_string())
    }
}

impl PkiError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PkiError::Invalid { path, .. } => Some(format!(
                "restore {} from a backup; if the cluster has no VMs yet, delete it and run `devcluster up` again to generate a new one",
                path.display()
            )),
            PkiError::Mismatch { .. } | PkiError::Missing { .. } => Some(
                "restore the cluster's pki/ and ssh/ directories from a backup, or start over with `devcluster destroy` and `devcluster up`".into(),
            ),
            _ => None,
        }
    }
}

/// Secret text (a private key, a token). `Debug` shows `<redacted>`; there
/// is no `Display`, so it cannot end up in a message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for writing it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// An SSH key pair: the private key in OpenSSH format, the public key as
/// one `ssh-ed25519 AAAA... comment` line (no newline).
#[derive(Clone, Debug)]
pub struct SshKeyPair {
    pub private_openssh: Secret,
    pub public_line: String,
}

/// Everything secret a cluster has, loaded or freshly generated.
#[derive(Clone)]
pub struct ClusterSecrets {
    pub cluster: String,
    /// The cluster CA (`ca.crt`/`ca.key`).
    pub ca: CertAndKey,
    pub front_proxy_ca: CertAndKey,
    pub etcd_ca: CertAndKey,
    /// Service-account signing key (PKCS#8 PEM) and its public key (SPKI PEM).
    pub sa_key_pem: Secret,
    pub sa_pub_pem: String,
    /// The admin client certificate (O kubeadm:cluster-admins).
    pub admin: CertAndKey,
    /// `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub bootstrap_token: Secret,
    /// `sha256:<hex>` over the cluster CA's SubjectPublicKeyInfo: kubeadm's
    /// `--discovery-token-ca-cert-hash`.
    pub ca_cert_hash: String,
    /// The host's SSH client key, authorized on every node.
    pub ssh_client: SshKeyPair,
    host_keys: BTreeMap<String, SshKeyPair>,
    /// The Administrator password of the cluster's Windows nodes
    /// (`pki/windows-admin-password`, 0600); none without Windows nodes.
    /// Nodes are reached by key; this exists because Windows requires one.
    pub windows_admin_password: Option<Secret>,
    pub admin_kubeconfig_path: PathBuf,
    pub ssh_client_key_path: PathBuf,
    pub known_hosts_path: PathBuf,
}

impl ClusterSecrets {
    /// The SSH host key planned for a node.
    pub fn host_key(&self, node: &str) -> Option<&SshKeyPair> {
        self.host_keys.get(node)
    }

    /// The files kubeadm expects in `/etc/kubernetes/pki` on the control
    /// plane: (path below that directory, contents, Unix mode).
    pub fn kubeadm_pki_files(&self) -> Vec<(&'static str, &str, u32)> {
        vec![
            ("ca.crt", self.ca.cert_pem.as_str(), 0o644),
            ("ca.key", self.ca.key_pem.expose(), 0o600),
            (
                "front-proxy-ca.crt",
                self.front_proxy_ca.cert_pem.as_str(),
                0o644,
            ),
            (
                "front-proxy-ca.key",
                self.front_proxy_ca.key_pem.expose(),
                0o600,
            ),
            ("etcd/ca.crt", self.etcd_ca.cert_pem.as_str(), 0o644),
            ("etcd/ca.key", self.etcd_ca.key_pem.expose(), 0o600),
            ("sa.key", self.sa_key_pem.expose(), 0o600),
            ("sa.pub", self.sa_pub_pem.as_str(), 0o644),
        ]
    }

    /// The bootstrap token's id (the part before the dot; not secret).
    pub fn bootstrap_token_id(&self) -> &str {
        self.bootstrap_token
            .expose()
            .split('.')
            .next()
            .unwrap_or_default()
    }
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecrets")
            .field("cluster", &self.cluster)
            .field("ca_cert_hash", &self.ca_cert_hash)
            .field("bootstrap_token_id", &self.bootstrap_token_id())
            .field("ssh_client", &self.ssh_client.public_line)
            .field("host_keys", &self.host_keys.keys().collect::<Vec<_>>())
            .field("admin_kubeconfig_path", &self.admin_kubeconfig_path)
            .finish_non_exhaustive()
    }
}

/// Where a cluster's PKI and SSH files live.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub pki: PathBuf,
    pub ssh: PathBuf,
    pub admin_kubeconfig: PathBuf,
}

impl PkiPaths {
    pub fn new(dirs: &Dirs, cluster: &str) -> Self {
        let root = dirs.cluster(cluster);
        Self {
            pki: root.join("pki"),
            ssh: root.join("ssh"),
            admin_kubeconfig: admin_kubeconfig_path(dirs, cluster),
        }
    }

    /// `pki/<name>`, e.g. `ca.crt`, `etcd/ca.key`.
    pub fn pki_file(&self, name: &str) -> PathBuf {
        self.pki.join(name)
    }

    pub fn ssh_client_key(&self) -> PathBuf {
        self.ssh.join("id_ed25519")
    }

    pub fn host_key_dir(&self, node: &str) -> PathBuf {
        self.ssh.join("hosts").join(node)
    }

    pub fn host_key(&self, node: &str) -> PathBuf {
        self.host_key_dir(node).join("ssh_host_ed25519_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.ssh.join("known_hosts")
    }
}

/// `clusters/NAME/admin.kubeconfig`.
pub fn admin_kubeconfig_path(dirs: &Dirs, cluster: &str) -> PathBuf {
    dirs.cluster(cluster).join("admin.kubeconfig")
}

/// Which secrets may already be inside a VM: those of nodes past `planned`.
struct Handout {
    nodes: BTreeMap<String, bool>,
}

impl Handout {
    fn read(dirs: &Dirs, cluster: &str) -> Result<Self, PkiError> {
        let state =
            state::load(dirs, cluster).map_err(|e| PkiError::State(cluster.to_string(), e))?;
        let nodes = state
            .map(|s| {
                s.nodes
                    .iter()
                    .map(|(n, ns)| (n.clone(), ns.phase != NodePhase::Planned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self { nodes })
    }

    fn any(&self) -> bool {
        self.nodes.values().any(|out| *out)
    }

    fn node(&self, name: &str) -> bool {
        self.nodes.get(name).copied().unwrap_or(false)
    }
}

/// Generates whatever of the cluster's secrets is missing and loads the
/// rest; see the module documentation for what is never regenerated.
pub fn ensure(dirs: &Dirs, plan: &Plan) -> Result<ClusterSecrets, PkiError> {
    let paths = PkiPaths::new(dirs, &plan.cluster);
    let handout = Handout::read(dirs, &plan.cluster)?;
    let out = handout.any();
    for node in &plan.nodes {
        if !valid_node_name(&node.name) {
            return Err(PkiError::NodeName(node.name.clone()));
        }
    }
    private_dir(&paths.pki)?;
    private_dir(&paths.pki.join("etcd"))?;
    private_dir(&paths.ssh)?;

    let ca = ensure_ca(&paths, "ca", "kubernetes-ca", out)?;
    let front_proxy = ensure_ca(&paths, "front-proxy-ca", "kubernetes-front-proxy-ca", out)?;
    let etcd = ensure_ca(&paths, "etcd/ca", "etcd-ca", out)?;
    let (sa_key_pem, sa_pub_pem) = ensure_sa(&paths, out)?;
    let bootstrap_token = ensure_token(&paths, out)?;
    let admin = ensure_admin(&paths, &ca)?;

    let ssh_client = ensure_ssh_key(
        &paths.ssh_client_key(),
        &format!("devcluster@{}", plan.cluster),
        out,
    )?;
    let mut host_keys = BTreeMap::new();
    for node in &plan.nodes {
        private_dir(&paths.host_key_dir(&node.name))?;
        let key = ensure_ssh_key(
            &paths.host_key(&node.name),
            &format!("root@{}", node.name),
            handout.node(&node.name),
        )?;
        host_keys.insert(node.name.clone(), key);
    }

    let windows_admin_password = if plan.nodes.iter().any(|n| n.os == crate::plan::Os::Windows) {
        Some(ensure_windows_password(&paths, out)?)
    } else {
        None
    };

    let mut known_hosts = String::new();
    for node in &plan.nodes {
        let key = &host_keys[&node.name];
        known_hosts.push_str(&format!(
            "{},{} {}\n",
            node.ip,
            node.name,
            strip_comment(&key.public_line)
        ));
    }
    write_if_changed(&paths.known_hosts(), known_hosts.as_bytes(), Access::Normal)?;

    let server = format!("https://{}", plan.network.api_endpoint);
    let kubeconfig = crate::kubeconfig::admin_kubeconfig(
        &plan.cluster,
        &server,
        &ca.pair.cert_pem,
        &admin.cert_pem,
        admin.key_pem.expose(),
    );
    write_if_changed(
        &paths.admin_kubeconfig,
        kubeconfig.as_bytes(),
        Access::Private,
    )?;

    Ok(ClusterSecrets {
        cluster: plan.cluster.clone(),
        ca_cert_hash: ca_cert_hash_of(&ca.spki),
        ca: ca.pair,
        front_proxy_ca: front_proxy.pair,
        etcd_ca: etcd.pair,
        sa_key_pem,
        sa_pub_pem,
        admin,
        bootstrap_token,
        ssh_client,
        host_keys,
        windows_admin_password,
        admin_kubeconfig_path: paths.admin_kubeconfig.clone(),
        ssh_client_key_path: paths.ssh_client_key(),
        known_hosts_path: paths.known_hosts(),
    })
}

/// kubeadm's discovery hash: `sha256:` + hex(SHA-256(SubjectPublicKeyInfo DER)).
pub fn ca_cert_hash_of(spki_der: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(spki_der)))
}

/// The discovery hash of a PEM CA certificate.
pub fn ca_cert_hash(cert_pem: &str) -> Result<String, Detail> {
    let info = CertInfo::parse(cert_pem)?;
    Ok(ca_cert_hash_of(&info.spki))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}

fn strip_comment(public_line: &str) -> String {
    public_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// Files

fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| PkiError::Invalid {
                path: path.to_path_buf(),
                what: "text file",
                source: Detail("not UTF-8".into()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write(path: &Path, bytes: &[u8], access: Access) -> Result<(), PkiError> {
    tracing::debug!(path = %path.display(), "writing");
    atomic_write(path, bytes, access).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_if_changed(path: &Path, bytes: &[u8], access: Access) -> Result<(), PkiError> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    write(path, bytes, access)
}

fn private_dir(path: &Path) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    fs_err::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], PkiError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| PkiError::Random(Detail::of(e)))?;
    Ok(buf)
}

// ---------------------------------------------------------------------------
// Certificates

/// What we need to know about a certificate we read.
struct CertInfo {
    spki: Vec<u8>,
    is_ca: bool,
    cert_sign: bool,
    not_after: i64,
    /// The subject's organisations (O), in order.
    orgs: Vec<String>,
}

impl CertInfo {
    fn parse(pem: &str) -> Result<Self, Detail> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(Detail::of)?;
        if pem.label != "CERTIFICATE" {
            return Err(Detail(format!(
                "PEM block is {}, not CERTIFICATE",
                pem.label
            )));
        }
        let cert = pem.parse_x509().map_err(Detail::of)?;
        let cert_sign = cert
            .key_usage()
            .map_err(Detail::of)?
            .map(|ku| ku.value.key_cert_sign())
            .unwrap_or(false);
        Ok(Self {
            spki: cert.public_key().raw.to_vec(),
            is_ca: cert.is_ca(),
            cert_sign,
            not_after: cert.validity().not_after.timestamp(),
            orgs: cert
                .subject()
                .iter_organization()
                .filter_map(|o| o.as_str().ok().map(str::to_string))
                .collect(),
        })
    }
}

/// Whether `cert_pem` carries a signature by the key of `issuer_pem`.
fn signed_by(cert_pem: &str, issuer_pem: &str) -> bool {
    let parse = |s: &str| x509_parser::pem::parse_x509_pem(s.as_bytes()).map(|(_, p)| p);
    let (Ok(cert), Ok(issuer)) = (parse(cert_pem), parse(issuer_pem)) else {
        return false;
    };
    let (Ok(cert), Ok(issuer)) = (cert.parse_x509(), issuer.parse_x509()) else {
        return false;
    };
    cert.verify_signature(Some(issuer.public_key())).is_ok()
}

fn generate_rsa(what: &'static str) -> Result<KeyPair, PkiError> {
    // RSA-2048: see the module documentation.
    KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(|e| PkiError::Generate {
        what,
        source: Detail::of(e),
    })
}

fn parse_key(path: &Path, pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|e| PkiError::Invalid {
        path: path.to_path_buf(),
        what: "private key",
        source: Detail::of(e),
    })
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut serial = random_bytes::<16>()?;
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // and without a leading zero byte
    Ok(SerialNumber::from_slice(&serial))
}

fn validity(params: &mut CertificateParams, length: Duration, cap: Option<OffsetDateTime>) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    let until = now + length;
    params.not_after = cap.map_or(until, |cap| until.min(cap));
}

/// A CA as loaded or generated.
struct Ca {
    pair: CertAndKey,
    key: KeyPair,
    spki: Vec<u8>,
    not_after: i64,
    /// Generated in this call: whatever it signed must be re-issued.
    fresh: bool,
}

fn ensure_ca(paths: &PkiPaths, base: &str, cn: &str, out: bool) -> Result<Ca, PkiError> {
    let crt_path = paths.pki_file(&format!("{base}.crt"));
    let key_path = paths.pki_file(&format!("{base}.key"));
    let crt = read_opt(&crt_path)?;
    let key = read_opt(&key_path)?;
    match (crt, key) {
        (Some(crt), Some(key_pem)) => {
            let info = CertInfo::parse(&crt).map_err(|source| PkiError::Invalid {
                path: crt_path.clone(),
                what: "certificate",
                source,
            })?;
            if !info.is_ca || !info.cert_sign {
                return Err(PkiError::Invalid {
                    path: crt_path,
                    what: "CA certificate",
                    source: Detail("not a CA, or not allowed to sign certificates".into()),
                });
            }
            let key = parse_key(&key_path, &key_pem)?;
            if key.subject_public_key_info() == info.spki {
                return Ok(Ca {
                    pair: CertAndKey {
                        cert_pem: crt,
                        key_pem: Secret(key_pem),
                    },
                    key,
                    spki: info.spki,
                    not_after: info.not_after,
                    fresh: false,
                });
            }
            if out {
                return Err(PkiError::Mismatch {
                    path: key_path,
                    other: crt_path,
                });
            }
            tracing::debug!(path = %crt_path.display(), "CA key and certificate do not match; regenerating (no VM has them yet)");
        }
        (None, None) if out => return Err(PkiError::Missing { path: crt_path }),
        (Some(_), None) if out => return Err(PkiError::Missing { path: key_path }),
        (None, Some(_)) if out => return Err(PkiError::Missing { path: crt_path }),
        _ => {}
    }
    generate_ca(&crt_path, &key_path, cn)
}

fn generate_ca(crt_path: &Path, key_path: &Path, cn: &str) -> Result<Ca, PkiError> {
    let key = generate_rsa("a CA key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // kubeadm's own CAs: digital signature, key encipherment, cert sign.
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.serial_number = Some(random_serial()?);
    validity(&mut params, CA_VALIDITY, None);
    let cert = params.self_signed(&key).map_err(|e| PkiError::Generate {
        what: "a CA certificate",
        source: Detail::of(e),
    })?;
    let key_pem = key.serialize_pem();
    let cert_pem = cert.pem();
    // Key first: a crash in between leaves an incomplete pair, which the
    // next run regenerates.
    write(key_path, key_pem.as_bytes(), Access::Private)?;
    write(crt_path, cert_pem.as_bytes(), Access::Normal)?;
    Ok(Ca {
        spki: key.subject_public_key_info(),
        not_after: params.not_after.unix_timestamp(),
        pair: CertAndKey {
            cert_pem,
            key_pem: Secret(key_pem),
        },
        key,
        fresh: true,
    })
}

fn ensure_admin(paths: &PkiPaths, ca: &Ca) -> Result<CertAndKey, PkiError> {
    let crt_path = paths.pki_file("admin.crt");
    let key_path = paths.pki_file("admin.key");
    if !ca.fresh
        && let (Some(crt), Some(key_pem)) = (read_opt(&crt_path)?, read_opt(&key_path)?)
    {
        // Host-only material: anything wrong with it is fixed by issuing a
        // new one from the (unchanged) CA.
        let renew_at = (OffsetDateTime::now_utc() + ADMIN_RENEW_BEFORE).unix_timestamp();
        let ok = CertInfo::parse(&crt).ok().is_some_and(|info| {
            KeyPair::from_pem(&key_pem).is_ok_and(|k| k.subject_public_key_info() == info.spki)
                && info.not_after > renew_at
                // One issued in system:masters by an older devcluster is
                // replaced by a revocable one.
                && info.orgs == [ADMIN_ORG]
                && signed_by(&crt, &ca.pair.cert_pem)
        });
        if ok {
            return Ok(CertAndKey {
                cert_pem: crt,
                key_pem: Secret(key_pem),
            });
        }
        tracing::debug!(path = %crt_path.display(), "re-issuing the admin certificate");
    }
    let key = generate_rsa("the admin key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ADMIN_ORG);
    dn.push(DnType::CommonName, ADMIN_CN);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    let cap = OffsetDateTime::from_unix_timestamp(ca.not_after).ok();
    validity(&mut params, ADMIN_VALIDITY, cap);
    let issuer =
        Issuer::from_ca_cert_pem(&ca.pair.cert_pem, &ca.key).map_err(|e| PkiError::Generate {
            what: "the admin certificate",
            source: Detail::of(e),
        })?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| PkiError::Generate {
            what: "the admin certificate",
            source: Detail::of(e),
        })?;
    let key_pem = key.serialize_pem();
    let cert_pem = cert.pem();
    write(&key_path, key_pem.as_bytes(), Access::Private)?;
    write(&crt_path, cert_pem.as_bytes(), Access::Normal)?;
    Ok(CertAndKey {
        cert_pem,
        key_pem: Secret(key_pem),
    })
}

// ---------------------------------------------------------------------------
// Service-account key pair

fn ensure_sa(paths: &PkiPaths, out: bool) -> Result<(Secret, String), PkiError> {
    let key_path = paths.pki_file("sa.key");
    let pub_path = paths.pki_file("sa.pub");
    let key = match read_opt(&key_path)? {
        Some(pem) => Some((parse_key(&key_path, &pem)?, pem)),
        None => None,
    };
    let existing_pub = read_opt(&pub_path)?;
    match key {
        Some((key, key_pem)) => {
            let derived = key.public_key_pem();
            match existing_pub {
                Some(p) if same_public_key(&p, &key) => return Ok((Secret(key_pem), p)),
                Some(_) if out => {
                    return Err(PkiError::Mismatch {
                        path: pub_path,
                        other: key_path,
                    });
                }
                // Missing, or (before any VM has it) stale: the key decides.
                _ => write(&pub_path, derived.as_bytes(), Access::Normal)?,
            }
            Ok((Secret(key_pem), derived))
        }
        None if out => Err(PkiError::Missing { path: key_path }),
        None => {
            let key = generate_rsa("the service-account key")?;
            let key_pem = key.serialize_pem();
            let pub_pem = key.public_key_pem();
            write(&key_path, key_pem.as_bytes(), Access::Private)?;
            write(&pub_path, pub_pem.as_bytes(), Access::Normal)?;
            Ok((Secret(key_pem), pub_pem))
        }
    }
}

fn same_public_key(pub_pem: &str, key: &KeyPair) -> bool {
    x509_parser::pem::parse_x509_pem(pub_pem.as_bytes())
        .is_ok_and(|(_, p)| p.label == "PUBLIC KEY" && p.contents == key.subject_public_key_info())
}

// ---------------------------------------------------------------------------
// Bootstrap token

/// Whether `s` has kubeadm's bootstrap token format.
pub fn is_bootstrap_token(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    matches!(s.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

/// A new token `[a-z0-9]{6}.[a-z0-9]{16}` from the OS CSPRNG, without
/// modulo bias (bytes >= 252 are drawn again).
pub fn generate_bootstrap_token() -> Result<Secret, PkiError> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut chars = Vec::with_capacity(22);
    while chars.len() < 22 {
        for b in random_bytes::<32>()? {
            if b < 252 && chars.len() < 22 {
                chars.push(ALPHABET[usize::from(b % 36)]);
            }
        }
    }
    let s = String::from_utf8(chars).unwrap_or_default();
    Ok(Secret(format!("{}.{}", &s[..6], &s[6..])))
}

/// Replaces the cluster's bootstrap token file with `token` (0600,
/// atomically); [`ensure`] loads it from then on.
pub fn keep_bootstrap_token(dirs: &Dirs, cluster: &str, token: &Secret) -> Result<(), PkiError> {
    let paths = PkiPaths::new(dirs, cluster);
    write(
        &paths.pki_file("bootstrap-token"),
        format!("{}\n", token.expose()).as_bytes(),
        Access::Private,
    )
}

fn ensure_token(paths: &PkiPaths, out: bool) -> Result<Secret, PkiError> {
    let path = paths.pki_file("bootstrap-token");
    match read_opt(&path)? {
        Some(text) => {
            let token = text.trim();
            if is_bootstrap_token(token) {
                Ok(Secret(token.to_string()))
            } else {
                Err(PkiError::Invalid {
                    path,
                    what: "bootstrap token",
                    source: Detail("expected [a-z0-9]{6}.[a-z0-9]{16}".into()),
                })
            }
        }
        None if out => Err(PkiError::Missing { path }),
        None => {
            let token = generate_bootstrap_token()?;
            write(
                &path,
                format!("{}\n", token.expose()).as_bytes(),
                Access::Private,
            )?;
            Ok(token)
        }
    }
}

/// A Windows Administrator password: 24 characters from upper, lower,
/// digits and a few symbols, at least one of each class, so it meets
/// Windows' complexity policy.
pub fn generate_windows_password() -> Result<Secret, PkiError> {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"-_.+=";
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].concat();
    let bytes: [u8; 24] = random_bytes()?;
    let mut out: Vec<u8> = bytes.iter().map(|b| all[*b as usize % all.len()]).collect();
    // One of each class in the first four places (a fixed position does
    // not weaken 20 random characters).
    for (i, class) in [UPPER, LOWER, DIGIT, SYMBOL].iter().enumerate() {
        out[i] = class[bytes[i] as usize % class.len()];
    }
    Ok(Secret(String::from_utf8(out).unwrap_or_default()))
}

fn ensure_windows_password(paths: &PkiPaths, out: bool) -> Result<Secret, PkiError> {
    let path = paths.pki_file("windows-admin-password");
    match read_opt(&path)? {
        Some(text) if !text.trim().is_empty() => Ok(Secret(text.trim().to_string())),
        Some(_) => Err(PkiError::Invalid {
            path,
            what: "Windows Administrator password",
            source: Detail("the file is empty".into()),
        }),
        None if out => Err(PkiError::Missing { path }),
        None => {
            let pw = generate_windows_password()?;
            write(
                &path,
                format!("{}\n", pw.expose()).as_bytes(),
                Access::Private,
            )?;
            Ok(pw)
        }
    }
}

// ---------------------------------------------------------------------------
// SSH keys

/// The key the Windows base-image builder authorizes for Administrator
/// while it builds (`<dir>/builder_ed25519`, 0600): the host's, not a
/// cluster's; sysprep leaves nothing of it a node needs.
pub fn builder_ssh_key(dir: &Path) -> Result<SshKeyPair, PkiError> {
    ensure_ssh_key(&dir.join("builder_ed25519"), "devcluster-builder", false)
}

fn ensure_ssh_key(path: &Path, comment: &str, out: bool) -> Result<SshKeyPair, PkiError> {
    let pub_path = {
        let mut p = path.as_os_str().to_owned();
        p.push(".pub");
        PathBuf::from(p)
    };
    let key = match read_opt(path)? {
        Some(text) => {
            let key = PrivateKey::from_openssh(&text).map_err(|e| PkiError::Invalid {
                path: path.to_path_buf(),
                what: "OpenSSH private key",
                source: Detail::of(e),
            })?;
            if key.algorithm() != Algorithm::Ed25519 || key.is_encrypted() {
                return Err(PkiError::Invalid {
                    path: path.to_path_buf(),
                    what: "OpenSSH private key",
                    source: Detail("expected an unencrypted ed25519 key".into()),
                });
            }
            (key, text)
        }
        None if out => {
            return Err(PkiError::Missing {
                path: path.to_path_buf(),
            });
        }
        None => {
            let seed = random_bytes::<32>()?;
            let pair = Ed25519Keypair::from_seed(&seed);
            let key = PrivateKey::new(KeypairData::from(pair), comment).map_err(|e| {
                PkiError::Generate {
                    what: "an SSH key",
                    source: Detail::of(e),
                }
            })?;
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| PkiError::Generate {
                    what: "an SSH key",
                    source: Detail::of(e),
                })?
                .to_string();
            write(path, text.as_bytes(), Access::Private)?;
            (key, text)
        }
    };
    let (key, text) = key;
    let public_line = key
        .public_key()
        .to_openssh()
        .map_err(|e| PkiError::Generate {
            what: "an SSH public key",
            source: Detail::of(e),
        })?;
    // The public half is derived: rewrite it if it is missing or stale.
    write_if_changed(
        &pub_path,
        format!("{public_line}\n").as_bytes(),
        Access::Normal,
    )?;
    Ok(SshKeyPair {
        private_openssh: Secret(text),
        public_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_kubeadm_format_and_differ() {
        let a = generate_bootstrap_token().unwrap();
        let b = generate_bootstrap_token().unwrap();
        assert!(is_bootstrap_token(a.expose()), "{}", a.expose());
        assert_ne!(a, b);
        assert!(!is_bootstrap_token("abcdef.0123456789abcde"));
        assert!(!is_bootstrap_token("ABCDEF.0123456789abcdef"));
        assert!(!is_bootstrap_token("abcdef0123456789abcdef"));
    }

    #[test]
    fn secrets_do_not_debug() {
        let s = Secret::new("-----BEGIN PRIVATE KEY-----");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let pair = CertAndKey {
            cert_pem: "cert".into(),
            key_pem: s,
        };
        assert!(!format!("{pair:?}").contains("PRIVATE"));
    }

    #[test]
    fn hash_is_sha256_of_spki() {
        assert_eq!(
            ca_cert_hash_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn node_names_are_checked() {
        assert!(valid_node_name("dev-win1"));
        assert!(!valid_node_name("../etc"));
        assert!(!valid_node_name(""));
    }
}
