//! The image cache: what is downloaded where, who uses it, and cleaning it.
//!
//! A verified file is named by its sha256 and trusted from then on: a
//! cached image is used without touching the network. For entries that
//! take their checksum from a list (`checksum_url`), `index.json` remembers
//! which sha256 an artifact URL had, so those work offline too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::download::{self, Progress, Request, with_suffix};
use super::{Artifact, Compression, Fetch, Format, IMPORT_MARK, ImageEntry, ImageError, catalog};
use crate::dirs::Dirs;
use crate::fsutil::{Access, atomic_write};
use crate::spec::ProviderKind;

/// `<cache>/images/NAME`.
pub fn image_dir(dirs: &Dirs, name: &str) -> PathBuf {
    dirs.cache.join("images").join(name)
}

fn locks_dir(dirs: &Dirs) -> PathBuf {
    dirs.cache.join("locks")
}

/// A verified artifact in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub path: PathBuf,
    pub sha256: String,
    pub format: Format,
    /// Whether this call downloaded it (else it was there already).
    pub downloaded: bool,
}

/// What `images pull` got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pulled {
    pub name: String,
    pub url: String,
    /// The file the provider uses (converted when it needs another format).
    pub path: PathBuf,
    pub sha256: String,
    pub downloaded: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// Artifact URL -> what it was when downloaded.
    artifacts: BTreeMap<String, IndexEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexEntry {
    sha256: String,
    format: Format,
}

fn read_index(dir: &Path) -> Index {
    std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn record(dir: &Path, url: &str, sha256: &str, format: Format) -> Result<(), ImageError> {
    let mut index = read_index(dir);
    index.artifacts.insert(
        url.to_string(),
        IndexEntry {
            sha256: sha256.to_string(),
            format,
        },
    );
    let path = dir.join("index.json");
    let text = serde_json::to_vec_pretty(&index).unwrap_or_default();
    atomic_write(&path, &text, Access::Normal).map_err(|source| ImageError::Io {
        what: "cannot write",
        path,
        source,
    })
}

/// The cached file of an artifact, if it is there (no network).
pub fn cached_file(dirs: &Dirs, name: &str, artifact: &Artifact) -> Option<(PathBuf, String)> {
    let dir = image_dir(dirs, name);
    let sha = match &artifact.sha256 {
        Some(s) => s.to_ascii_lowercase(),
        None => read_index(&dir)
            .artifacts
            .get(&artifact.url)?
            .sha256
            .clone(),
    };
    let path = dir.join(format!("{sha}.{}", artifact.format.as_str()));
    path.is_file().then_some((path, sha))
}

/// Makes sure an artifact is in the cache, verified: there already (no
/// network), else downloaded — unless offline, or its licence is not
/// accepted. One process downloads; others wait for it and use its file.
pub async fn ensure(
    dirs: &Dirs,
    entry: &ImageEntry,
    artifact: &Artifact,
    provider: Option<ProviderKind>,
    fetch: &Fetch<'_>,
) -> Result<Cached, ImageError> {
    let name = &entry.name;
    let hit = |path: PathBuf, sha256: String| Cached {
        path,
        sha256,
        format: artifact.format,
        downloaded: false,
    };
    if let Some((path, sha)) = cached_file(dirs, name, artifact) {
        return Ok(hit(path, sha));
    }
    // Local files (an air-gapped copy) are fine offline; the network is not.
    let remote = |u: &str| !u.starts_with("file://");
    let needs_network = remote(&artifact.url)
        || (artifact.sha256.is_none() && artifact.checksum_url.as_deref().is_some_and(remote));
    if fetch.offline && needs_network {
        return Err(ImageError::Offline {
            name: name.clone(),
            provider,
        });
    }
    if entry.license_requires_acceptance && !fetch.accept_license {
        return Err(ImageError::License {
            name: name.clone(),
            license: entry.license.clone().unwrap_or_default(),
            url: entry.license_url.clone(),
        });
    }
    let sha = match (
        &artifact.sha256,
        &artifact.checksum_url,
        &artifact.checksum_name,
    ) {
        (Some(s), _, _) => s.to_ascii_lowercase(),
        (None, Some(url), Some(file)) => {
            fetch
                .progress
                .note(name, &format!("reading the checksum from {url}"));
            let text = match url.strip_prefix("file://") {
                Some(path) => download::read_local_text(Path::new(path))?,
                None => {
                    download::fetch_text(
                        fetch.client()?,
                        url,
                        &fetch.download,
                        fetch.progress,
                        name,
                    )
                    .await?
                }
            };
            download::parse_sums(&text, file).ok_or_else(|| ImageError::NotListed {
                checksum_url: url.clone(),
                name: file.clone(),
            })?
        }
        _ => {
            return Err(ImageError::Invalid {
                source_name: name.clone(),
                message: "an artifact without sha256 or checksum_url + checksum_name".into(),
            });
        }
    };
    let dir = image_dir(dirs, name);
    let dest = dir.join(format!("{sha}.{}", artifact.format.as_str()));
    let _lock = lock(
        dirs,
        &format!("{name}-{}", &sha[..16]),
        fetch.progress,
        name,
    )
    .await?;
    let mut downloaded = false;
    if !dest.is_file() {
        // Another process may have finished it while we waited.
        let target = match artifact.compression {
            Compression::None => dest.clone(),
            Compression::Gzip => with_suffix(&dest, ".gz"),
        };
        if !target.is_file() {
            let req = Request {
                url: &artifact.url,
                sha256: &sha,
                dest: &target,
                size: artifact.size,
                label: name,
            };
            match artifact.url.strip_prefix("file://") {
                Some(path) => {
                    download::copy_local(Path::new(path), &req, fetch.progress)?;
                }
                None => {
                    download::fetch(fetch.client()?, &req, &fetch.download, fetch.progress).await?;
                }
            }
        }
        if artifact.compression == Compression::Gzip {
            fetch.progress.note(name, "decompressing");
            gunzip(&target, &dest)?;
            let _ = std::fs::remove_file(&target);
        }
        downloaded = true;
    }
    record(&dir, &artifact.url, &sha, artifact.format)?;
    Ok(Cached {
        path: dest,
        sha256: sha,
        format: artifact.format,
        downloaded,
    })
}

fn gunzip(from: &Path, to: &Path) -> Result<(), ImageError> {
    let tmp = with_suffix(to, ".tmp");
    let r = (|| -> std::io::Result<()> {
        let mut input =
            flate2::read::MultiGzDecoder::new(std::io::BufReader::new(File::open(from)?));
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        std::io::copy(&mut input, &mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, to)
    })();
    r.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ImageError::Io {
            what: "cannot decompress",
            path: from.to_path_buf(),
            source,
        }
    })
}

/// An OS file lock in `<cache>/locks/`, held while one process downloads
/// or converts (released by the kernel if it dies).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// Takes lock `key`, waiting (and saying so, once) while another process
/// holds it.
pub async fn lock(
    dirs: &Dirs,
    key: &str,
    progress: &dyn Progress,
    label: &str,
) -> Result<CacheLock, ImageError> {
    let mut told = false;
    loop {
        if let Some(held) = try_lock(dirs, key)? {
            return Ok(held);
        }
        if !told {
            progress.note(
                label,
                "another devcluster process is downloading it; waiting for that one",
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Takes lock `key` if no other process holds it.
pub fn try_lock(dirs: &Dirs, key: &str) -> Result<Option<CacheLock>, ImageError> {
    let dir = locks_dir(dirs);
    let path = dir.join(format!("{key}.lock"));
    let err = |source| ImageError::Io {
        what: "cannot lock",
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(CacheLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(err(e)),
    }
}

/// Whether some process holds a lock whose key starts with `prefix`.
fn busy(dirs: &Dirs, prefix: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(locks_dir(dirs)) else {
        return false;
    };
    rd.flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.starts_with(prefix)
            && n.ends_with(".lock")
            && File::open(e.path())
                .map(|f| matches!(f.try_lock(), Err(TryLockError::WouldBlock)))
                .unwrap_or(false)
    })
}

/// Bytes under `path` (a file or a directory).
pub fn size_on_disk(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| size_on_disk(&e.path())).sum())
        .unwrap_or(0)
}

/// What one cluster uses.
#[derive(Debug, Clone)]
pub struct ClusterUse {
    pub cluster: String,
    pub provider: ProviderKind,
    pub kubernetes_version: String,
    pub images: BTreeSet<String>,
}

impl ClusterUse {
    fn of(s: &crate::state::ClusterState) -> Self {
        Self {
            cluster: s.name.clone(),
            provider: s.plan.provider,
            kubernetes_version: s.plan.kubernetes_version.clone(),
            images: s.plan.nodes.iter().map(|n| n.image.clone()).collect(),
        }
    }
}

/// What every cluster uses, from their plans. A cluster whose state cannot
/// be read is an error: cleaning up must not guess.
pub fn usage(dirs: &Dirs) -> Result<Vec<ClusterUse>, ImageError> {
    let listed = crate::state::list(dirs).map_err(ImageError::Clusters)?;
    let mut out = Vec::new();
    for l in listed {
        match l {
            crate::state::Listed::Ok(s) => out.push(ClusterUse::of(&s)),
            crate::state::Listed::Broken { name, error } => {
                return Err(ImageError::ClusterState {
                    cluster: name,
                    source: error,
                });
            }
        }
    }
    Ok(out)
}

fn users_of(uses: &[ClusterUse], image: &str) -> Vec<String> {
    uses.iter()
        .filter(|u| u.images.contains(image))
        .map(|u| u.cluster.clone())
        .collect()
}

/// One row of `images list`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    pub name: String,
    /// `linux` / `windows`; none for a cached image no entry names.
    pub os: Option<&'static str>,
    pub version: Option<String>,
    /// `built-in`, the user file, or `cache only` (no entry names it).
    pub source: String,
    pub overrides_builtin: bool,
    /// Every artifact of the entry is in the cache.
    pub cached: bool,
    /// Bytes in the cache for this image (downloads, conversions, parts).
    pub size_bytes: u64,
    pub used_by: Vec<String>,
    pub formats: Vec<&'static str>,
    pub license: Option<String>,
    pub license_requires_acceptance: bool,
}

/// One golden disk in `images list`.
#[derive(Debug, Clone, Serialize)]
pub struct GoldenRow {
    pub id: String,
    pub image: String,
    pub provider: ProviderKind,
    pub kubernetes_version: String,
    pub base_sha256: String,
    pub provisioners_sha256: String,
    pub format: Format,
    pub size_bytes: u64,
    pub used_by: Vec<String>,
    pub path: PathBuf,
}

/// The catalog and the cache together.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub images: Vec<ImageRow>,
    pub golden: Vec<GoldenRow>,
}

fn golden_users(uses: &[ClusterUse], g: &super::golden::GoldenDisk) -> Vec<String> {
    // Conservative: a cluster of the same provider and Kubernetes version
    // using the same image may have linked clones of it.
    uses.iter()
        .filter(|u| {
            // A cluster not created yet has provider `auto`: any may be its.
            (u.provider == g.key.provider || u.provider == ProviderKind::Auto)
                && u.kubernetes_version == g.key.kubernetes_version
                && u.images.contains(&g.image)
        })
        .map(|u| u.cluster.clone())
        .collect()
}

/// `images list`: every catalog entry, every cached image, every golden
/// disk, with sizes and the clusters using them.
pub fn inventory(dirs: &Dirs) -> Result<Inventory, ImageError> {
    let catalog = catalog::all(dirs)?;
    // Usage is best effort here (a broken cluster shows up in `list`).
    let uses: Vec<ClusterUse> = crate::state::list(dirs)
        .map(|l| {
            l.into_iter()
                .filter_map(|l| match l {
                    crate::state::Listed::Ok(s) => Some(ClusterUse::of(&s)),
                    crate::state::Listed::Broken { .. } => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut images: Vec<ImageRow> = catalog
        .iter()
        .map(|l| {
            let e = &l.entry;
            let mut formats: Vec<&'static str> =
                e.artifacts.iter().map(|a| a.format.as_str()).collect();
            formats.dedup();
            ImageRow {
                name: e.name.clone(),
                os: Some(e.os.as_str()),
                version: e.version.clone(),
                source: l.source.to_string(),
                overrides_builtin: matches!(
                    l.source,
                    catalog::Source::User {
                        overrides: true,
                        ..
                    }
                ),
                cached: e
                    .artifacts
                    .iter()
                    .all(|a| cached_file(dirs, &e.name, a).is_some()),
                size_bytes: size_on_disk(&image_dir(dirs, &e.name)),
                used_by: users_of(&uses, &e.name),
                formats,
                license: e.license.clone(),
                license_requires_acceptance: e.license_requires_acceptance,
            }
        })
        .collect();
    // Cached images no entry names any more still take space.
    if let Ok(rd) = std::fs::read_dir(dirs.cache.join("images")) {
        for d in rd.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if d.path().is_dir() && !images.iter().any(|r| r.name == name) {
                images.push(ImageRow {
                    used_by: users_of(&uses, &name),
                    name,
                    os: None,
                    version: None,
                    source: "cache only".into(),
                    overrides_builtin: false,
                    cached: true,
                    size_bytes: size_on_disk(&d.path()),
                    formats: Vec::new(),
                    license: None,
                    license_requires_acceptance: false,
                });
            }
        }
    }
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let golden = super::golden::list(dirs)?
        .into_iter()
        .map(|g| GoldenRow {
            id: g.key.id(),
            used_by: golden_users(&uses, &g),
            image: g.image.clone(),
            provider: g.key.provider,
            kubernetes_version: g.key.kubernetes_version.clone(),
            base_sha256: g.key.base_sha256.clone(),
            provisioners_sha256: g.key.provisioners_sha256.clone(),
            format: g.format,
            size_bytes: g.size_bytes,
            path: g.path.clone(),
        })
        .collect();
    Ok(Inventory { images, golden })
}

/// The user entry `images import` wrote for `name`, if that is what it is.
fn imported_entry(dirs: &Dirs, name: &str) -> Option<PathBuf> {
    let cache_dir = image_dir(dirs, name);
    catalog::user_entries(dirs)
        .ok()?
        .into_iter()
        .find(|(e, path)| {
            e.name == name
                && std::fs::read_to_string(path)
                    .map(|t| t.starts_with(IMPORT_MARK))
                    .unwrap_or(false)
                && e.artifacts.iter().all(|a| {
                    a.url
                        .strip_prefix("file://")
                        .is_some_and(|p| Path::new(p).starts_with(&cache_dir))
                })
        })
        .map(|(_, p)| p)
}

/// What `images remove` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Removed {
    pub freed_bytes: u64,
    /// The entry `images import` had written, removed with its disk.
    pub entry: Option<PathBuf>,
}

/// `images remove NAME`: deletes its cached files (and the entry of an
/// imported image). Refused while a cluster uses it, unless `force`.
pub fn remove(dirs: &Dirs, name: &str, force: bool) -> Result<Removed, ImageError> {
    if !super::valid_name(name) {
        return Err(ImageError::Name(name.to_string()));
    }
    let dir = image_dir(dirs, name);
    if let Err(e) = catalog::find(dirs, name)
        && !dir.is_dir()
    {
        return Err(e);
    }
    if !force {
        let clusters = users_of(&usage(dirs)?, name);
        if !clusters.is_empty() {
            return Err(ImageError::InUse {
                name: name.to_string(),
                clusters,
            });
        }
    }
    let entry = imported_entry(dirs, name);
    let freed_bytes = size_on_disk(&dir);
    remove_dir(&dir)?;
    if let Some(path) = &entry {
        std::fs::remove_file(path).map_err(|source| ImageError::Io {
            what: "cannot remove",
            path: path.clone(),
            source,
        })?;
    }
    Ok(Removed { freed_bytes, entry })
}

fn remove_dir(dir: &Path) -> Result<(), ImageError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ImageError::Io {
            what: "cannot remove",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// What `images prune` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pruned {
    /// Images whose cached files were deleted, with the bytes freed.
    pub images: Vec<(String, u64)>,
    /// Golden disks deleted (id, image, bytes).
    pub golden: Vec<(String, String, u64)>,
    /// Golden disks no cluster uses whose volume the provider could not
    /// delete (id, why): kept, with their record.
    pub golden_kept: Vec<(String, String)>,
    /// Imported images no cluster uses, kept: they are the user's own disks
    /// and cannot be downloaded again.
    pub kept_imported: Vec<String>,
    /// Images being downloaded right now, left alone.
    pub busy: Vec<String>,
    pub freed_bytes: u64,
}

/// `images prune`: deletes cached images and golden disks no cluster uses.
/// A golden disk in a provider's storage is deleted by `remove_volume`
/// before its record.
pub fn prune(
    dirs: &Dirs,
    mut remove_volume: impl FnMut(
        crate::spec::ProviderKind,
        &super::golden::ProviderVolume,
    ) -> Result<(), String>,
) -> Result<Pruned, ImageError> {
    let uses = usage(dirs)?;
    let mut out = Pruned::default();
    if let Ok(rd) = std::fs::read_dir(dirs.cache.join("images")) {
        let mut names: Vec<String> = rd
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            if !users_of(&uses, &name).is_empty() {
                continue;
            }
            if imported_entry(dirs, &name).is_some() {
                out.kept_imported.push(name);
                continue;
            }
            if busy(dirs, &format!("{name}-")) {
                out.busy.push(name);
                continue;
            }
            let dir = image_dir(dirs, &name);
            let size = size_on_disk(&dir);
            remove_dir(&dir)?;
            out.freed_bytes += size;
            out.images.push((name, size));
        }
    }
    for g in super::golden::list(dirs)? {
        if golden_users(&uses, &g).is_empty() {
            if let Some(v) = &g.volume
                && let Err(why) = remove_volume(g.key.provider, v)
            {
                out.golden_kept.push((g.key.id(), why));
                continue;
            }
            let size = super::golden::remove(dirs, &g)?;
            out.freed_bytes += size;
            out.golden.push((g.key.id(), g.image.clone(), size));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::golden::{self, GoldenKey, Made, ProviderVolume};
    use super::*;

    fn keep(dirs: &Dirs, image: &str, volume: &str) -> GoldenKey {
        let key = GoldenKey {
            base_sha256: "a".repeat(64),
            kubernetes_version: "1.36".into(),
            provider: ProviderKind::Libvirt,
            provisioners_sha256: image.into(),
        };
        let made = Made {
            image: image.into(),
            format: Format::Qcow2,
            capacity_bytes: 20 << 30,
            source: "gone/gone-cp".into(),
            prepared_ms: 1,
        };
        let v = ProviderVolume {
            name: volume.into(),
            path: format!("/pool/{volume}").into(),
            bytes: 100,
            uri: "qemu:///system".into(),
        };
        golden::store_volume(dirs, &key, made, v).unwrap();
        key
    }

    #[test]
    fn prune_deletes_a_golden_volume_before_its_record_and_keeps_both_when_it_cannot() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let deleted = keep(&dirs, "a", "golden-a.qcow2");
        let stuck = keep(&dirs, "b", "golden-b.qcow2");
        let mut asked = Vec::new();
        let p = prune(&dirs, |kind, v| {
            // The provider it was kept by, so prune asks that one.
            assert_eq!(kind, crate::spec::ProviderKind::Libvirt);
            asked.push(v.name.clone());
            if v.name == "golden-b.qcow2" {
                Err("libvirt is not running".into())
            } else {
                Ok(())
            }
        })
        .unwrap();
        asked.sort();
        assert_eq!(asked, ["golden-a.qcow2", "golden-b.qcow2"]);
        assert_eq!(p.golden.len(), 1);
        assert_eq!(p.golden[0].0, deleted.id());
        assert_eq!(
            p.golden_kept,
            [(stuck.id(), "libvirt is not running".to_string())]
        );
        assert!(golden::lookup(&dirs, &deleted).is_none());
        assert!(golden::lookup(&dirs, &stuck).is_some());
    }
    #[test]
    fn a_held_lock_is_not_taken_twice() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let first = try_lock(&dirs, "golden-x").unwrap();
        assert!(first.is_some());
        assert!(try_lock(&dirs, "golden-x").unwrap().is_none());
        assert!(try_lock(&dirs, "golden-y").unwrap().is_some());
        drop(first);
        assert!(try_lock(&dirs, "golden-x").unwrap().is_some());
    }
}
