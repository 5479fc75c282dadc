//! Images: the catalog (TOML, one file per image), verified resumable
//! downloads, the local cache, conversion to each provider's disk format,
//! and golden disks.
//!
//! An entry says what an image is (OS, firmware, default user, licence) and
//! where each provider's artifact comes from (URL + sha256, or a checksum
//! file that lists it; format; compression). The built-in entries live in
//! `images/*.toml` in the source tree and are embedded in the binary; users
//! add or override entries (same name wins) in `<config dir>/images/*.toml`.
//! `images import` writes such an entry for a local disk, after copying the
//! disk into the cache under its sha256, so the entry keeps working when the
//! original file moves.
//!
//! ```toml
//! name = "ubuntu-24.04"
//! os = "linux"               # linux | windows
//! version = "24.04"
//! firmware = "uefi"          # uefi | bios
//! default_user = "ubuntu"
//! secure_boot = false        # optional: the bootloader is signed
//! license = "..."            # optional: a note shown by `images list`
//! license_url = "https://..."                # optional
//! license_requires_acceptance = false        # true: download only with --accept-license
//! [[artifacts]]
//! providers = ["libvirt"]    # which providers use this file
//! url = "https://..."        # or file:///... for a local file
//! sha256 = "..."             # or both of:
//! # checksum_url = "https://.../SHA256SUMS"  (a sha256sum-style file)
//! # checksum_name = "the-file-name.img"      (the line to use in it)
//! format = "qcow2"           # qcow2 | vhdx | vhd | vdi | vmdk | iso | raw
//! compression = "none"       # none | gzip (the sha256 is of the file as downloaded)
//! size = 123                 # optional: bytes, for progress when the server does not say
//! ```
//!
//! Cache layout (`<cache>` is the platform cache dir, or
//! `$DEVCLUSTER_HOME/cache`):
//!
//! ```text
//! <cache>/images/NAME/<sha256>.<format>                  verified download (or import)
//! <cache>/images/NAME/<sha256>.<format>.part(.json)      a download in progress + its validators
//! <cache>/images/NAME/<sha256>.converted.<format>        converted for a provider (qemu-img)
//! <cache>/images/NAME/index.json                         artifact URL -> sha256 (offline lookups)
//! <cache>/golden/<provider>/<key>/disk.<format>          golden disks (see `golden`)
//! <cache>/locks/                                         one process downloads, others wait
//! ```

pub mod cache;
pub mod catalog;
pub mod convert;
pub mod download;
pub mod golden;
pub mod node_software;
pub mod winbase;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dirs::Dirs;
use crate::fsutil::{Access, atomic_write};
use crate::plan::Os;
use crate::providers::{BaseImage, Firmware};
use crate::spec::ProviderKind;

pub use cache::{Inventory, Pulled};
pub use catalog::{Listed, Source, find, user_entries};
pub use download::{NoProgress, Progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Qcow2,
    Vhdx,
    Vhd,
    Vdi,
    Vmdk,
    Iso,
    Raw,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Vhdx => "vhdx",
            Format::Vhd => "vhd",
            Format::Vdi => "vdi",
            Format::Vmdk => "vmdk",
            Format::Iso => "iso",
            Format::Raw => "raw",
        }
    }

    /// Recognizes a disk format by its magic bytes.
    pub fn sniff(head: &[u8]) -> Format {
        if head.starts_with(b"QFI\xfb") {
            Format::Qcow2
        } else if head.starts_with(b"vhdxfile") {
            Format::Vhdx
        } else if head.starts_with(b"KDMV") {
            Format::Vmdk
        } else if head.len() >= 0x48 && head[0x40..0x44] == [0x7f, 0x10, 0xda, 0xbe] {
            Format::Vdi
        } else if head.len() >= 0x8006 && &head[0x8001..0x8006] == b"CD001" {
            Format::Iso
        } else {
            Format::Raw
        }
    }
}

/// How an artifact is compressed as published. The sha256 is always of the
/// file as downloaded; the cache keeps the decompressed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl Compression {
    fn is_none(&self) -> bool {
        *self == Compression::None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub providers: Vec<ProviderKind>,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A sha256sum-style file listing the artifact's hash (e.g. Ubuntu's
    /// `SHA256SUMS`), used when `sha256` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_url: Option<String>,
    /// The file name to look up in `checksum_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_name: Option<String>,
    pub format: Format,
    #[serde(default, skip_serializing_if = "Compression::is_none")]
    pub compression: Compression,
    /// Size in bytes as downloaded, when known (progress without a
    /// Content-Length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    pub name: String,
    pub os: Os,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub firmware: Firmware,
    /// The image's own login user (devcluster adds its own user anyway).
    pub default_user: String,
    /// Whether the bootloader is signed for UEFI Secure Boot.
    #[serde(default)]
    pub secure_boot: bool,
    /// A note on the image's licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_url: Option<String>,
    /// The licence must be accepted (`--accept-license`) before download:
    /// evaluation media.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub license_requires_acceptance: bool,
    pub artifacts: Vec<Artifact>,
}

impl ImageEntry {
    /// The artifact `provider` uses.
    pub fn artifact_for(&self, provider: ProviderKind) -> Result<&Artifact, ImageError> {
        self.artifacts
            .iter()
            .find(|a| a.providers.contains(&provider))
            .ok_or(ImageError::NoArtifact {
                name: self.name.clone(),
                provider,
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {name} is not known")]
    Unknown { name: String, known: Vec<String> },
    #[error("image {name} has no artifact for the {provider} provider")]
    NoArtifact {
        name: String,
        provider: ProviderKind,
    },
    #[error("image {name} is a {found} image, but {wanted} nodes need a {wanted} image")]
    WrongOs {
        name: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("image {name} is not in the cache, and devcluster is offline")]
    Offline {
        name: String,
        provider: Option<ProviderKind>,
    },
    #[error(
        "image {name} comes under a licence you must accept first: {license}{}",
        url.as_deref().map(|u| format!(" ({u})")).unwrap_or_default()
    )]
    License {
        name: String,
        license: String,
        url: Option<String>,
    },
    #[error("image file {} is missing", path.display())]
    Missing { path: PathBuf },
    #[error("invalid image entry {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid image entry {source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error("invalid image name {0:?}: use lowercase letters, digits, '.', '-' and '_'")]
    Name(String),
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot download {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot download {url}: the server answered {status}")]
    Http {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error(
        "checksum mismatch for {url}: expected sha256 {expected}, got {actual} (the download was deleted)"
    )]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{checksum_url} lists no sha256 for {name}")]
    NotListed { checksum_url: String, name: String },
    #[error("cannot download {url}: {message}")]
    Protocol { url: String, message: String },
    #[error("{} needs {to}, but qemu-img, which converts {from} to {to}, was not found", path.display())]
    NoConverter {
        path: PathBuf,
        from: &'static str,
        to: &'static str,
    },
    #[error("qemu-img could not convert {} to {to}: {stderr}", path.display())]
    Convert {
        path: PathBuf,
        to: &'static str,
        stderr: String,
    },
    #[error("cannot tell which images the clusters use")]
    Clusters(#[source] crate::state::StateError),
    #[error("cannot tell which images cluster {cluster} uses")]
    ClusterState {
        cluster: String,
        #[source]
        source: crate::state::StateError,
    },
    #[error("image {name} is used by cluster(s) {}", clusters.join(", "))]
    InUse { name: String, clusters: Vec<String> },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// Errors worth another attempt: the network or the server hiccupped.
    pub fn is_transient(&self) -> bool {
        match self {
            ImageError::Request { source, .. } => !source.is_builder() && !source.is_redirect(),
            ImageError::Http { status, .. } => status.is_server_error(),
            ImageError::Protocol { .. } => true,
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ImageError::Unknown { known, .. } if known.is_empty() => Some(
                "import a local disk image with `devcluster images import NAME PATH --os linux`, then use --linux-image NAME".into(),
            ),
            ImageError::Unknown { known, .. } => Some(format!(
                "known images: {}; or import one with `devcluster images import NAME PATH --os linux`",
                known.join(", ")
            )),
            ImageError::NoArtifact { name, .. } => Some(format!(
                "add an artifact for that provider in a user entry <config dir>/images/{name}.toml, or import a disk with `devcluster images import`"
            )),
            ImageError::Offline { name, provider } => Some(format!(
                "run `devcluster images pull {name}{}` while online, then try again",
                provider.map(|p| format!(" --provider {p}")).unwrap_or_default()
            )),
            ImageError::License { .. } => Some(
                "read the licence; if you accept it, run the command again with --accept-license"
                    .into(),
            ),
            ImageError::Missing { .. } => {
                Some("import the image again with `devcluster images import`".into())
            }
            ImageError::Checksum { .. } => Some(
                "try again; if it happens again, the file or the entry's checksum changed: check the entry (`devcluster images list`)".into(),
            ),
            ImageError::Http { status, .. } if status.as_u16() == 404 => Some(
                "the file is gone from the server: dated releases are removed after a while; point a user entry of the same name in <config dir>/images/ at a current URL".into(),
            ),
            ImageError::Request { .. } => Some(
                "check the network and the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY); a partial download resumes when you try again".into(),
            ),
            ImageError::NoConverter { .. } => Some(convert::install_hint().into()),
            ImageError::ClusterState { cluster, .. } => Some(format!(
                "fix or remove that cluster first (`devcluster --cluster {cluster} destroy`)"
            )),
            ImageError::InUse { .. } => Some(
                "destroy those clusters first, or pass --force (their VMs keep working: providers copy the base)".into(),
            ),
            _ => None,
        }
    }
}

/// How images are fetched: online or not, licences accepted, where
/// progress goes, retry settings, and which qemu-img converts.
pub struct Fetch<'a> {
    /// Never touch the network: a missing image is an error.
    pub offline: bool,
    /// The user accepted the licences of evaluation media.
    pub accept_license: bool,
    pub progress: &'a dyn Progress,
    pub download: download::Options,
    /// qemu-img to convert with; `None`: `DEVCLUSTER_QEMU_IMG`, else PATH.
    pub qemu_img: Option<PathBuf>,
    client: OnceLock<reqwest::Client>,
}

impl<'a> Fetch<'a> {
    pub fn new(progress: &'a dyn Progress) -> Self {
        Self {
            offline: false,
            accept_license: false,
            progress,
            download: download::Options::default(),
            qemu_img: None,
            client: OnceLock::new(),
        }
    }

    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    pub fn accept_license(mut self, accept: bool) -> Self {
        self.accept_license = accept;
        self
    }

    /// The HTTP client, made on first use (an offline run never makes one).
    pub fn client(&self) -> Result<&reqwest::Client, ImageError> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let c = download::client(&self.download)?;
        Ok(self.client.get_or_init(|| c))
    }
}

/// The base disk a provider boots nodes of `os` from: from the cache when
/// it is there (no network), else downloaded and verified (unless
/// offline), then converted to the provider's format when needed.
pub async fn base_for(
    dirs: &Dirs,
    name: &str,
    os: Os,
    provider: ProviderKind,
    fetch: &Fetch<'_>,
) -> Result<BaseImage, ImageError> {
    let entry = find(dirs, name)?;
    if entry.os != os {
        return Err(ImageError::WrongOs {
            name: name.into(),
            found: entry.os.as_str(),
            wanted: os.as_str(),
        });
    }
    let artifact = entry.artifact_for(provider)?;
    let cached = cache::ensure(dirs, &entry, artifact, Some(provider), fetch).await?;
    let path = convert::for_provider(dirs, &entry.name, &cached, provider, fetch).await?;
    Ok(BaseImage {
        name: entry.name.clone(),
        path,
        sha256: cached.sha256,
        firmware: entry.firmware,
        secure_boot: entry.secure_boot,
    })
}

/// `images pull`: downloads (and for `provider`, converts) what the image
/// needs, so later runs work offline. Without a provider, every artifact.
pub async fn pull(
    dirs: &Dirs,
    name: &str,
    provider: Option<ProviderKind>,
    fetch: &Fetch<'_>,
) -> Result<Vec<Pulled>, ImageError> {
    // The files a Windows build puts on its CDs (virtio-win, the
    // Win32-OpenSSH zip) are pulled as they are: no provider format.
    let (entry, provider) = match winbase::build_media(dirs, name)? {
        Some(media) => (media, None),
        None => (find(dirs, name)?, provider),
    };
    let artifacts: Vec<&Artifact> = match provider {
        Some(p) => vec![entry.artifact_for(p)?],
        None => entry.artifacts.iter().collect(),
    };
    let mut out = Vec::new();
    for artifact in artifacts {
        let cached = cache::ensure(dirs, &entry, artifact, provider, fetch).await?;
        let path = match provider {
            Some(p) => convert::for_provider(dirs, &entry.name, &cached, p, fetch).await?,
            None => cached.path.clone(),
        };
        out.push(Pulled {
            name: entry.name.clone(),
            url: artifact.url.clone(),
            path,
            sha256: cached.sha256.clone(),
            downloaded: cached.downloaded,
        });
    }
    Ok(out)
}

pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let io = |source| ImageError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}

/// What `images import` was asked.
#[derive(Debug, Clone)]
pub struct Import {
    pub name: String,
    pub path: PathBuf,
    pub os: Os,
    pub user: String,
    pub firmware: Firmware,
    pub secure_boot: bool,
}

/// Copies a local disk into the cache (`<cache>/images/NAME/<sha256>.<fmt>`)
/// and writes its catalog entry. Importing the same name again replaces it;
/// a name of a built-in image overrides that image. Every provider may use
/// the disk: providers that need another format get a converted copy.
pub fn import(dirs: &Dirs, req: &Import) -> Result<(ImageEntry, PathBuf), ImageError> {
    if !valid_name(&req.name) {
        return Err(ImageError::Name(req.name.clone()));
    }
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { what, path, source }
    };
    let mut head = vec![0u8; 0x8006];
    let mut f = std::fs::File::open(&req.path).map_err(io("cannot read", &req.path))?;
    let n = read_up_to(&mut f, &mut head).map_err(io("cannot read", &req.path))?;
    head.truncate(n);
    let format = Format::sniff(&head);
    let sha256 = sha256_file(&req.path)?;
    let dir = cache::image_dir(dirs, &req.name);
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let dest = dir.join(format!("{sha256}.{}", format.as_str()));
    if !dest.is_file() {
        let tmp = dir.join(format!(".{sha256}.import"));
        std::fs::copy(&req.path, &tmp).map_err(io("cannot copy into", &tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io("cannot write", &dest))?;
    }
    let entry = ImageEntry {
        name: req.name.clone(),
        os: req.os,
        version: None,
        firmware: req.firmware,
        default_user: req.user.clone(),
        secure_boot: req.secure_boot,
        license: None,
        license_url: None,
        license_requires_acceptance: false,
        artifacts: vec![Artifact {
            providers: vec![
                ProviderKind::Libvirt,
                ProviderKind::Hyperv,
                ProviderKind::Virtualbox,
            ],
            url: format!("file://{}", dest.display()),
            sha256: Some(sha256),
            checksum_url: None,
            checksum_name: None,
            format,
            compression: Compression::None,
            size: Some(std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0)),
        }],
    };
    let text = format!(
        "{IMPORT_MARK} from {}\n{}",
        req.path.display(),
        toml::to_string(&entry).map_err(|e| ImageError::Io {
            what: "cannot serialize the entry for",
            path: dest.clone(),
            source: std::io::Error::other(e),
        })?
    );
    let file = catalog::user_catalog_dir(dirs).join(format!("{}.toml", req.name));
    atomic_write(&file, text.as_bytes(), Access::Normal).map_err(io("cannot write", &file))?;
    Ok((entry, file))
}

/// First line of entries written by `images import`.
pub(crate) const IMPORT_MARK: &str = "# Imported by `devcluster images import`";

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_formats() {
        assert_eq!(Format::sniff(b"QFI\xfb\0\0\0\x03"), Format::Qcow2);
        assert_eq!(Format::sniff(b"vhdxfile...."), Format::Vhdx);
        assert_eq!(Format::sniff(&[0u8; 512]), Format::Raw);
        let mut iso = vec![0u8; 0x8006];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(Format::sniff(&iso), Format::Iso);
    }

    #[tokio::test]
    async fn import_then_resolve_offline() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let src = home.path().join("disk.img");
        let mut bytes = b"QFI\xfb".to_vec();
        bytes.resize(4096, 1);
        std::fs::write(&src, &bytes).unwrap();
        let req = Import {
            name: "my-debian".into(),
            path: src.clone(),
            os: Os::Linux,
            user: "debian".into(),
            firmware: Firmware::Uefi,
            secure_boot: false,
        };
        let (entry, file) = import(&dirs, &req).unwrap();
        assert!(file.ends_with("config/images/my-debian.toml"));
        assert_eq!(entry.artifacts[0].format, Format::Qcow2);
        std::fs::remove_file(&src).unwrap();
        // Offline: an imported image is in the cache, no network needed.
        let fetch = Fetch::new(&NoProgress).offline(true);
        let base = base_for(&dirs, "my-debian", Os::Linux, ProviderKind::Libvirt, &fetch)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&base.path).unwrap(), bytes);
        assert_eq!(base.sha256.len(), 64);
        assert!(matches!(
            base_for(
                &dirs,
                "my-debian",
                Os::Windows,
                ProviderKind::Libvirt,
                &fetch
            )
            .await,
            Err(ImageError::WrongOs { .. })
        ));
        assert!(matches!(
            base_for(&dirs, "nope", Os::Linux, ProviderKind::Libvirt, &fetch).await,
            Err(ImageError::Unknown { .. })
        ));
        assert!(
            import(
                &dirs,
                &Import {
                    name: "Bad Name".into(),
                    ..req
                }
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn offline_without_cache_names_the_pull_command() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let fetch = Fetch::new(&NoProgress).offline(true);
        let err = base_for(
            &dirs,
            "ubuntu-24.04",
            Os::Linux,
            ProviderKind::Libvirt,
            &fetch,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ImageError::Offline { .. }), "{err}");
        assert_eq!(
            err.hint().unwrap(),
            "run `devcluster images pull ubuntu-24.04 --provider libvirt` while online, then try again"
        );
    }

    #[tokio::test]
    async fn evaluation_media_need_the_licence_accepted() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let fetch = Fetch::new(&NoProgress);
        let err = pull(
            &dirs,
            "windows-server-2022",
            Some(ProviderKind::Hyperv),
            &fetch,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ImageError::License { .. }), "{err}");
        assert!(err.to_string().contains("evaluation"), "{err}");
        assert!(err.hint().unwrap().contains("--accept-license"));
    }
}
