//! Golden disks: a node's disk after it was prepared (OS settings,
//! container runtime, Kubernetes packages), kept so that later nodes of the
//! same kind start as linked clones of it (qcow2 backing file, differencing
//! VHDX, VirtualBox linked clone) instead of being prepared again.
//!
//! A golden disk is identified by what went into it: the base image's
//! sha256, the Kubernetes version, the provider and a hash of the
//! provisioning scripts. Change any of them and it is a different disk.
//!
//! ```text
//! <cache>/golden/<provider>/<id>/disk.<format>
//! <cache>/golden/<provider>/<id>/golden.json     written last: a disk without it is incomplete
//! ```
//!
//! A provider whose hypervisor runs as another user keeps the disk in its
//! own storage instead (libvirt: a volume of the pool `devcluster-images`,
//! beside the base images, because QEMU must read it); `golden.json` then
//! names the volume ([`ProviderVolume`]) and the directory holds no disk.
//! How disks are captured and used: `crate::golden`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Format, ImageError};
use crate::dirs::Dirs;
use crate::fsutil::{Access, atomic_write};
use crate::spec::ProviderKind;

/// What a golden disk was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenKey {
    pub base_sha256: String,
    pub kubernetes_version: String,
    pub provider: ProviderKind,
    /// See [`provisioners_sha256`].
    pub provisioners_sha256: String,
}

impl GoldenKey {
    /// A stable id: the first 24 hex digits of the sha256 of the key.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            "golden-v1",
            &self.base_sha256,
            &self.kubernetes_version,
            &self.provider.to_string(),
            &self.provisioners_sha256,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        format!("{:x}", h.finalize())[..24].to_string()
    }
}

/// The hash of a set of provisioning scripts `(name, content)`,
/// independent of their order.
pub fn provisioners_sha256<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (name, content) in files {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((content.len() as u64).to_le_bytes());
        h.update(content);
    }
    format!("{:x}", h.finalize())
}

/// A stored golden disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenDisk {
    pub key: GoldenKey,
    /// The catalog name of its base image.
    pub image: String,
    pub format: Format,
    /// RFC 3339.
    pub created: String,
    /// Set when the provider keeps the disk in its own storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<ProviderVolume>,
    /// Its virtual size: a clone's disk cannot be smaller.
    #[serde(default)]
    pub capacity_bytes: u64,
    /// The node it was made from, `cluster/node`.
    #[serde(default)]
    pub source: String,
    /// How long preparing that node took (the steps a clone skips).
    #[serde(default)]
    pub prepared_ms: u64,
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    pub size_bytes: u64,
}

/// A golden disk in the provider's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderVolume {
    /// The provider's name for it.
    pub name: String,
    /// Where it is on the provider's host.
    pub path: PathBuf,
    pub bytes: u64,
    /// Which provider instance holds it (the libvirt URI).
    pub uri: String,
}

/// What [`store_volume`] records besides the key.
#[derive(Debug, Clone)]
pub struct Made {
    pub image: String,
    pub format: Format,
    pub capacity_bytes: u64,
    pub source: String,
    pub prepared_ms: u64,
}

fn root(dirs: &Dirs) -> PathBuf {
    dirs.cache.join("golden")
}

/// `<cache>/golden/<provider>/<id>`.
pub fn dir(dirs: &Dirs, key: &GoldenKey) -> PathBuf {
    root(dirs).join(key.provider.to_string()).join(key.id())
}

fn read(dir: &Path) -> Option<GoldenDisk> {
    let bytes = std::fs::read(dir.join("golden.json")).ok()?;
    let mut g: GoldenDisk = serde_json::from_slice(&bytes).ok()?;
    if let Some(v) = &g.volume {
        g.path = v.path.clone();
        g.size_bytes = v.bytes;
    } else {
        g.path = dir.join(format!("disk.{}", g.format.as_str()));
        g.size_bytes = std::fs::metadata(&g.path).ok()?.len();
    }
    Some(g)
}

/// The golden disk for `key`, if one was stored completely.
pub fn lookup(dirs: &Dirs, key: &GoldenKey) -> Option<GoldenDisk> {
    read(&dir(dirs, key)).filter(|g| &g.key == key)
}

/// Stores a prepared disk as the golden disk for `key`: moved in (copied
/// when it is on another file system), its metadata written last. Replaces
/// an earlier disk of the same key.
pub fn store(
    dirs: &Dirs,
    key: &GoldenKey,
    image: &str,
    disk: &Path,
    format: Format,
) -> Result<GoldenDisk, ImageError> {
    let d = dir(dirs, key);
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { what, path, source }
    };
    let _ = std::fs::remove_file(d.join("golden.json"));
    std::fs::create_dir_all(&d).map_err(io("cannot create", &d))?;
    let dest = d.join(format!("disk.{}", format.as_str()));
    if std::fs::rename(disk, &dest).is_err() {
        let tmp = d.join(format!(".disk.{}.tmp", format.as_str()));
        std::fs::copy(disk, &tmp).map_err(io("cannot copy", disk))?;
        std::fs::rename(&tmp, &dest).map_err(io("cannot write", &dest))?;
        let _ = std::fs::remove_file(disk);
    }
    let g = GoldenDisk {
        key: key.clone(),
        image: image.to_string(),
        format,
        created: crate::state::now_rfc3339(),
        volume: None,
        capacity_bytes: 0,
        source: String::new(),
        prepared_ms: 0,
        size_bytes: std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0),
        path: dest,
    };
    write_meta(dirs, &g)?;
    Ok(g)
}

/// Records a golden disk the provider keeps ([`ProviderVolume`]). Replaces
/// the record of an earlier disk of the same key (whose volume the caller
/// deletes).
pub fn store_volume(
    dirs: &Dirs,
    key: &GoldenKey,
    made: Made,
    volume: ProviderVolume,
) -> Result<GoldenDisk, ImageError> {
    let g = GoldenDisk {
        key: key.clone(),
        image: made.image,
        format: made.format,
        created: crate::state::now_rfc3339(),
        capacity_bytes: made.capacity_bytes,
        source: made.source,
        prepared_ms: made.prepared_ms,
        path: volume.path.clone(),
        size_bytes: volume.bytes,
        volume: Some(volume),
    };
    write_meta(dirs, &g)?;
    Ok(g)
}

fn write_meta(dirs: &Dirs, g: &GoldenDisk) -> Result<(), ImageError> {
    let d = dir(dirs, &g.key);
    let meta = d.join("golden.json");
    let io = |what: &'static str| {
        let path = meta.clone();
        move |source| ImageError::Io { what, path, source }
    };
    std::fs::create_dir_all(&d).map_err(io("cannot create"))?;
    let text = serde_json::to_vec_pretty(g).unwrap_or_default();
    atomic_write(&meta, &text, Access::Normal).map_err(io("cannot write"))
}

/// Every complete golden disk.
pub fn list(dirs: &Dirs) -> Result<Vec<GoldenDisk>, ImageError> {
    let mut out = Vec::new();
    let Ok(providers) = std::fs::read_dir(root(dirs)) else {
        return Ok(out);
    };
    for p in providers.flatten() {
        let Ok(disks) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for d in disks.flatten() {
            if let Some(g) = read(&d.path()) {
                out.push(g);
            }
        }
    }
    out.sort_by(|a, b| (&a.image, a.key.id()).cmp(&(&b.image, b.key.id())));
    Ok(out)
}

/// Deletes a golden disk's directory; returns the bytes freed. A disk in
/// the provider's storage ([`GoldenDisk::volume`]) is the caller's to
/// delete; its bytes are counted.
pub fn remove(dirs: &Dirs, g: &GoldenDisk) -> Result<u64, ImageError> {
    let d = dir(dirs, &g.key);
    let size = super::cache::size_on_disk(&d) + g.volume.as_ref().map_or(0, |v| v.bytes);
    match std::fs::remove_dir_all(&d) {
        Ok(()) => Ok(size),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(ImageError::Io {
            what: "cannot remove",
            path: d,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> GoldenKey {
        GoldenKey {
            base_sha256: "a".repeat(64),
            kubernetes_version: "1.36".into(),
            provider: ProviderKind::Libvirt,
            provisioners_sha256: provisioners_sha256([
                ("linux/prepare-os.sh", &b"#!/bin/sh\n"[..]),
                ("linux/kubeadm.sh", &b"echo\n"[..]),
            ]),
        }
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let k = key();
        assert_eq!(k.id(), key().id());
        assert_eq!(k.id().len(), 24);
        let other = GoldenKey {
            kubernetes_version: "1.35".into(),
            ..key()
        };
        assert_ne!(k.id(), other.id());
        // Script order does not matter; content does.
        assert_eq!(
            provisioners_sha256([("b", &b"2"[..]), ("a", &b"1"[..])]),
            provisioners_sha256([("a", &b"1"[..]), ("b", &b"2"[..])])
        );
        assert_ne!(
            provisioners_sha256([("a", &b"1"[..])]),
            provisioners_sha256([("a", &b"2"[..])])
        );
    }

    #[test]
    fn store_lookup_list_remove() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        assert_eq!(lookup(&dirs, &key()), None);
        let disk = home.path().join("prepared.qcow2");
        std::fs::write(&disk, b"QFI\xfbprepared").unwrap();
        let g = store(&dirs, &key(), "ubuntu-24.04", &disk, Format::Qcow2).unwrap();
        assert!(!disk.exists(), "moved in");
        assert!(
            g.path
                .ends_with(format!("golden/libvirt/{}/disk.qcow2", key().id()))
        );
        let found = lookup(&dirs, &key()).unwrap();
        assert_eq!(found.image, "ubuntu-24.04");
        assert_eq!(found.size_bytes, 12);
        assert_eq!(list(&dirs).unwrap(), vec![found.clone()]);
        // Without its metadata a disk is not golden (a store cut short).
        std::fs::remove_file(dir(&dirs, &key()).join("golden.json")).unwrap();
        assert_eq!(lookup(&dirs, &key()), None);
        assert_eq!(list(&dirs).unwrap(), vec![]);
        assert_eq!(remove(&dirs, &found).unwrap(), 12);
        assert!(!dir(&dirs, &key()).exists());
    }
    #[test]
    fn a_disk_in_the_providers_storage_is_recorded_by_its_volume() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let volume = ProviderVolume {
            name: "golden-abc-1.qcow2".into(),
            path: "/var/lib/libvirt/images/devcluster-images/golden-abc-1.qcow2".into(),
            bytes: 5_000,
            uri: "qemu:///system".into(),
        };
        let made = Made {
            image: "ubuntu-24.04".into(),
            format: Format::Qcow2,
            capacity_bytes: 20 << 30,
            source: "dev/dev-cp".into(),
            prepared_ms: 1234,
        };
        let g = store_volume(&dirs, &key(), made, volume.clone()).unwrap();
        // No disk file of ours: the record alone makes it complete.
        let found = lookup(&dirs, &key()).unwrap();
        assert_eq!(found, g);
        assert_eq!(found.path, volume.path);
        assert_eq!(found.size_bytes, 5_000);
        assert_eq!(found.volume.as_ref(), Some(&volume));
        assert_eq!((found.capacity_bytes, found.prepared_ms), (20 << 30, 1234));
        assert_eq!(found.source, "dev/dev-cp");
        // Removing counts the volume's bytes (the caller deletes it).
        let freed = remove(&dirs, &found).unwrap();
        assert!(freed >= 5_000, "{freed}");
        assert_eq!(lookup(&dirs, &key()), None);
    }
}
