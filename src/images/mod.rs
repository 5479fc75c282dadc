//! Images: catalog entries (TOML, one file per image) and the local cache.
//!
//! An entry says what an image is (OS, firmware, default user) and where
//! each provider's artifact comes from (URL + sha256, format). Users add
//! entries as `<config dir>/images/NAME.toml`; `images import` writes one
//! for a local disk, after copying the disk into the cache under its
//! sha256, so the entry keeps working when the original file moves.
//!
//! ```toml
//! name = "ubuntu-24.04"
//! os = "linux"               # linux | windows
//! version = "24.04"
//! firmware = "uefi"          # uefi | bios
//! default_user = "ubuntu"
//! [[artifacts]]
//! providers = ["libvirt"]    # which providers can boot this file
//! url = "https://..."        # or file:///... for a local file
//! sha256 = "..."
//! format = "qcow2"           # qcow2 | vhdx | vhd | vdi | vmdk | iso | raw
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dirs::Dirs;
use crate::fsutil::{Access, atomic_write};
use crate::plan::Os;
use crate::providers::{BaseImage, Firmware};
use crate::spec::ProviderKind;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub providers: Vec<ProviderKind>,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub format: Format,
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
    pub artifacts: Vec<Artifact>,
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
    #[error("image {name}: {url} needs downloading, which this devcluster build cannot do yet")]
    NotLocal { name: String, url: String },
    #[error("image file {} is missing", path.display())]
    Missing { path: PathBuf },
    #[error("invalid image entry {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid image name {0:?}: use lowercase letters, digits, '.', '-' and '_'")]
    Name(String),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ImageError::Unknown { known, .. } if known.is_empty() => Some(
                "import a local disk image with `devcluster images import NAME PATH --os linux`, then use --linux-image NAME".into(),
            ),
            ImageError::Unknown { known, .. } => Some(format!(
                "known images: {}; or import one with `devcluster images import NAME PATH --os linux`",
                known.join(", ")
            )),
            ImageError::NotLocal { .. } | ImageError::NoArtifact { .. } => Some(
                "import a local disk image with `devcluster images import NAME PATH --os linux`, then use --linux-image NAME".into(),
            ),
            ImageError::Missing { .. } => {
                Some("import the image again with `devcluster images import`".into())
            }
            _ => None,
        }
    }
}

fn user_catalog_dir(dirs: &Dirs) -> PathBuf {
    dirs.config.join("images")
}

/// One entry with the file it came from.
#[derive(Debug, Clone)]
pub struct Listed {
    pub entry: ImageEntry,
    pub source: PathBuf,
}

/// The user's catalog entries, sorted by name.
pub fn user_entries(dirs: &Dirs) -> Result<Vec<Listed>, ImageError> {
    let dir = user_catalog_dir(dirs);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ImageError::Io {
                what: "cannot read",
                path: dir,
                source,
            });
        }
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ImageError::Io {
            what: "cannot read",
            path: path.clone(),
            source,
        })?;
        let entry: ImageEntry = toml::from_str(&text).map_err(|source| ImageError::Parse {
            path: path.clone(),
            source,
        })?;
        out.push(Listed {
            entry,
            source: path,
        });
    }
    out.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    Ok(out)
}

/// Finds an image by name.
pub fn find(dirs: &Dirs, name: &str) -> Result<ImageEntry, ImageError> {
    let all = user_entries(dirs)?;
    all.iter()
        .find(|l| l.entry.name == name)
        .map(|l| l.entry.clone())
        .ok_or_else(|| ImageError::Unknown {
            name: name.to_string(),
            known: all.iter().map(|l| l.entry.name.clone()).collect(),
        })
}

/// The base disk a provider boots nodes of `os` from.
pub fn base_for(
    dirs: &Dirs,
    name: &str,
    os: Os,
    provider: ProviderKind,
) -> Result<BaseImage, ImageError> {
    let entry = find(dirs, name)?;
    if entry.os != os {
        return Err(ImageError::WrongOs {
            name: name.into(),
            found: entry.os.as_str(),
            wanted: os.as_str(),
        });
    }
    let artifact = entry
        .artifacts
        .iter()
        .find(|a| a.providers.contains(&provider))
        .ok_or(ImageError::NoArtifact {
            name: name.into(),
            provider,
        })?;
    let Some(path) = artifact.url.strip_prefix("file://") else {
        return Err(ImageError::NotLocal {
            name: name.into(),
            url: artifact.url.clone(),
        });
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(ImageError::Missing { path });
    }
    let sha256 = match &artifact.sha256 {
        Some(s) => s.clone(),
        None => sha256_file(&path)?,
    };
    Ok(BaseImage {
        name: entry.name.clone(),
        path,
        sha256,
        firmware: entry.firmware,
        secure_boot: entry.secure_boot,
    })
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

fn valid_name(name: &str) -> bool {
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
/// and writes its catalog entry. Importing the same name again replaces it.
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
    let dir = dirs.cache.join("images").join(&req.name);
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let dest = dir.join(format!("{sha256}.{}", format.as_str()));
    if !dest.is_file() {
        let tmp = dir.join(format!(".{sha256}.part"));
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
        artifacts: vec![Artifact {
            providers: vec![ProviderKind::Libvirt],
            url: format!("file://{}", dest.display()),
            sha256: Some(sha256),
            format,
        }],
    };
    let text = format!(
        "# Imported by `devcluster images import` from {}\n{}",
        req.path.display(),
        toml::to_string(&entry).map_err(|e| ImageError::Io {
            what: "cannot serialize the entry for",
            path: dest.clone(),
            source: std::io::Error::other(e),
        })?
    );
    let file = user_catalog_dir(dirs).join(format!("{}.toml", req.name));
    atomic_write(&file, text.as_bytes(), Access::Normal).map_err(io("cannot write", &file))?;
    Ok((entry, file))
}

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

    #[test]
    fn import_then_resolve() {
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
        let base = base_for(&dirs, "my-debian", Os::Linux, ProviderKind::Libvirt).unwrap();
        assert_eq!(std::fs::read(&base.path).unwrap(), bytes);
        assert_eq!(base.sha256.len(), 64);
        assert!(matches!(
            base_for(&dirs, "my-debian", Os::Windows, ProviderKind::Libvirt),
            Err(ImageError::WrongOs { .. })
        ));
        assert!(matches!(
            base_for(&dirs, "nope", Os::Linux, ProviderKind::Libvirt),
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
}
