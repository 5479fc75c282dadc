//! Windows base disks: a Windows Server installation, sysprepped, built
//! once per ISO from the evaluation media by `devcluster images build`
//! and kept with the golden disks ([`super::golden`]): the same records,
//! `images list`, `images prune` and the same lock, so two processes never
//! build one twice.
//!
//! The key is what went into the disk: the ISO's sha256, the provider and
//! a hash of the build (the scripts on the build CD and the answer file's
//! template). Its `kubernetes_version` slot holds [`KIND`], which no
//! Kubernetes version can equal, so a base disk is never mistaken for a
//! node's golden disk.

use super::golden::{self, GoldenDisk, GoldenKey};
use crate::dirs::Dirs;
use crate::pki::Secret;
use crate::seed::windows::{self, BuildSeed, WindowsImage};
use crate::spec::{ProviderKind, WindowsDevices};

/// The `kubernetes_version` of a Windows base disk's key.
pub const KIND: &str = "windows-base";

/// The hash of everything the build runs: every build script and the
/// answer file rendered from fixed inputs (so a template change is a new
/// disk, but the per-build key and password are not). The devices are in
/// it: a base disk built for virtio has the virtio-win drivers in it (and
/// the answer file that loaded them), one for emulated devices does not.
pub fn build_sha256(image: &WindowsImage, devices: WindowsDevices) -> String {
    let fixed = BuildSeed {
        image: image.clone(),
        authorized_key: "ssh-ed25519 KEY".into(),
        admin_password: Secret::new("PASSWORD"),
        openssh_zip: None,
        devices,
    };
    let answer = windows::autounattend(&fixed);
    let mut files: Vec<(&str, &[u8])> = windows::BUILD_SCRIPTS
        .iter()
        .map(|(n, t)| (*n, t.as_bytes()))
        .collect();
    files.push((windows::ANSWER_FILE, answer.as_bytes()));
    golden::provisioners_sha256(files)
}

/// The key of the base disk built from the ISO `iso_sha256` for
/// `provider` with `devices`.
pub fn key(
    image: &WindowsImage,
    iso_sha256: &str,
    provider: ProviderKind,
    devices: WindowsDevices,
) -> GoldenKey {
    GoldenKey {
        base_sha256: iso_sha256.to_string(),
        kubernetes_version: KIND.to_string(),
        provider,
        provisioners_sha256: build_sha256(image, devices),
    }
}

/// The base disk, if one was built completely.
pub fn lookup(
    dirs: &Dirs,
    image: &WindowsImage,
    iso_sha256: &str,
    provider: ProviderKind,
    devices: WindowsDevices,
) -> Option<GoldenDisk> {
    golden::lookup(dirs, &key(image, iso_sha256, provider, devices))
}

/// Win32-OpenSSH for Windows Server 2022, whose own OpenSSH is a Feature
/// on Demand that downloads from Windows Update (fails offline and behind
/// WSUS). The x64 release zip, pinned: URL and sha256 as recorded
/// independently by several public projects that verify it (2025-2026),
/// e.g. a build script verifying `OPENSSH_SHA256` before use, and a
/// third-party notice table listing the artifact's SHA-256.
pub const OPENSSH_VERSION: &str = "10.0.0.0p2-Preview";
pub const OPENSSH_URL: &str = "https://github.com/PowerShell/Win32-OpenSSH/releases/download/10.0.0.0p2-Preview/OpenSSH-Win64.zip";
pub const OPENSSH_SHA256: &str = "23f50f3458c4c5d0b12217c6a5ddfde0137210a30fa870e98b29827f7b43aba5";

/// The cache entry of the Win32-OpenSSH zip: kept in the host cache like
/// an image (downloaded once, verified, `--offline` after that).
pub fn openssh_entry() -> super::ImageEntry {
    pinned_entry(Pinned {
        name: format!("win32-openssh-{OPENSSH_VERSION}"),
        version: OPENSSH_VERSION,
        url: OPENSSH_URL,
        sha256: OPENSSH_SHA256,
        license: "MIT-style licence of PowerShell/Win32-OpenSSH",
        license_url: "https://github.com/PowerShell/Win32-OpenSSH",
        providers: vec![
            ProviderKind::Libvirt,
            ProviderKind::Hyperv,
            ProviderKind::Virtualbox,
        ],
    })
}

/// The zip in the host cache, downloaded and verified if it is not there.
pub async fn ensure_openssh(
    dirs: &Dirs,
    fetch: &super::Fetch<'_>,
) -> Result<super::cache::Cached, super::ImageError> {
    ensure_pinned(dirs, openssh_entry(), fetch).await
}

/// The virtio-win driver ISO (Fedora's build of the virtio-win drivers,
/// signed for Windows), for libvirt's opt-in virtio devices
/// ([`crate::spec::WindowsDevices::Virtio`]): Windows Setup loads the
/// virtio-blk and virtio-net drivers from it. Pinned to the stable release
/// 0.1.266-1; URL and sha256 as KubeVirt pins them (its WORKSPACE,
/// `http_file(name = "virtio_win_image")`), and the same sha256 in several
/// public Packer templates that verify the ISO. Fedora publishes no
/// checksum file beside it.
pub const VIRTIO_WIN_VERSION: &str = "0.1.266-1";
pub const VIRTIO_WIN_URL: &str = "https://fedorapeople.org/groups/virt/virtio-win/direct-downloads/archive-virtio/virtio-win-0.1.266-1/virtio-win-0.1.266.iso";
pub const VIRTIO_WIN_SHA256: &str =
    "57b0f6dc8dc92dc2ae8621f8b1bfbd8a873de9bedc788c4c4b305ea28acc77cd";

/// The catalog name of the virtio-win ISO: a user entry of this name
/// (`<config>/images/virtio-win.toml`) replaces the pinned one, as for any
/// image (a mirror, an air-gapped copy, another release).
pub const VIRTIO_WIN_NAME: &str = "virtio-win";

/// The cache entry of the virtio-win ISO (libvirt only; an opaque file).
pub fn virtio_win_entry() -> super::ImageEntry {
    pinned_entry(Pinned {
        name: VIRTIO_WIN_NAME.into(),
        version: VIRTIO_WIN_VERSION,
        url: VIRTIO_WIN_URL,
        sha256: VIRTIO_WIN_SHA256,
        license: "the virtio-win drivers' licences (BSD-3-Clause and GPL-2.0, Red Hat)",
        license_url: "https://github.com/virtio-win/virtio-win-pkg-scripts",
        providers: vec![ProviderKind::Libvirt],
    })
}

/// The virtio-win entry: the user's `virtio-win` catalog entry if there is
/// one, else the pinned one.
pub fn virtio_win_for(dirs: &Dirs) -> Result<super::ImageEntry, super::ImageError> {
    Ok(super::catalog::user_entries(dirs)?
        .into_iter()
        .map(|(e, _)| e)
        .find(|e| e.name == VIRTIO_WIN_NAME)
        .unwrap_or_else(virtio_win_entry))
}

/// The entry of a file a Windows build puts on a CD, by name (for
/// `images pull NAME`, which the offline error's hint names).
pub fn build_media(
    dirs: &Dirs,
    name: &str,
) -> Result<Option<super::ImageEntry>, super::ImageError> {
    if name == VIRTIO_WIN_NAME {
        return virtio_win_for(dirs).map(Some);
    }
    let openssh = openssh_entry();
    Ok((name == openssh.name).then_some(openssh))
}

/// The virtio-win ISO in the host cache, downloaded and verified if it is
/// not there.
pub async fn ensure_virtio_win(
    dirs: &Dirs,
    fetch: &super::Fetch<'_>,
) -> Result<super::cache::Cached, super::ImageError> {
    let entry = virtio_win_for(dirs)?;
    let artifact = entry.artifact_for(ProviderKind::Libvirt)?.clone();
    super::cache::ensure(dirs, &entry, &artifact, None, fetch).await
}

/// A file a build puts on a CD, pinned in code rather than in the catalog
/// (it is no node image, and users never choose it).
struct Pinned {
    name: String,
    version: &'static str,
    url: &'static str,
    sha256: &'static str,
    license: &'static str,
    license_url: &'static str,
    providers: Vec<ProviderKind>,
}

/// The cache entry of a pinned file. Its format is `raw`: an opaque file,
/// never converted.
fn pinned_entry(p: Pinned) -> super::ImageEntry {
    super::ImageEntry {
        name: p.name,
        os: crate::plan::Os::Windows,
        version: Some(p.version.into()),
        firmware: crate::providers::Firmware::Uefi,
        default_user: "Administrator".into(),
        secure_boot: false,
        license: Some(p.license.into()),
        license_url: Some(p.license_url.into()),
        license_requires_acceptance: false,
        artifacts: vec![super::Artifact {
            providers: p.providers,
            url: p.url.into(),
            sha256: Some(p.sha256.into()),
            checksum_url: None,
            checksum_name: None,
            format: super::Format::Raw,
            compression: Default::default(),
            size: None,
        }],
    }
}

async fn ensure_pinned(
    dirs: &Dirs,
    entry: super::ImageEntry,
    fetch: &super::Fetch<'_>,
) -> Result<super::cache::Cached, super::ImageError> {
    let artifact = entry.artifacts[0].clone();
    super::cache::ensure(dirs, &entry, &artifact, None, fetch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_iso_provider_and_build() {
        let a = windows::image_for("windows-server-2025").unwrap();
        let b = windows::image_for("windows-server-2022").unwrap();
        let e = WindowsDevices::Emulated;
        let k = key(&a, &"1".repeat(64), ProviderKind::Libvirt, e);
        assert_eq!(k, key(&a, &"1".repeat(64), ProviderKind::Libvirt, e));
        assert_ne!(
            k.id(),
            key(&a, &"2".repeat(64), ProviderKind::Libvirt, e).id()
        );
        assert_ne!(
            k.id(),
            key(&a, &"1".repeat(64), ProviderKind::Hyperv, e).id()
        );
        // A disk built with the virtio drivers is another disk.
        let v = key(
            &a,
            &"1".repeat(64),
            ProviderKind::Libvirt,
            WindowsDevices::Virtio,
        );
        assert_ne!(k.id(), v.id());
        // Same scripts, same template: the image index is the same too, so
        // the two versions differ by ISO only.
        assert_eq!(build_sha256(&a, e), build_sha256(&b, e));
        // ... but not with virtio: each version has its own driver folder.
        assert_ne!(
            build_sha256(&a, WindowsDevices::Virtio),
            build_sha256(&b, WindowsDevices::Virtio)
        );
        assert_eq!(k.kubernetes_version, KIND);
    }

    #[test]
    fn virtio_win_is_pinned_and_a_user_entry_replaces_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(tmp.path());
        let e = virtio_win_for(&dirs).unwrap();
        assert_eq!(e, virtio_win_entry());
        let a = e.artifact_for(ProviderKind::Libvirt).unwrap();
        assert_eq!(a.url, VIRTIO_WIN_URL);
        assert_eq!(a.sha256.as_deref(), Some(VIRTIO_WIN_SHA256));
        assert!(a.url.starts_with("https://") && a.url.contains("0.1.266-1"));
        assert_eq!(VIRTIO_WIN_SHA256.len(), 64);
        // libvirt's alone: the others give Windows their own devices.
        assert!(e.artifact_for(ProviderKind::Hyperv).is_err());
        let catalog = dirs.config.join("images");
        std::fs::create_dir_all(&catalog).unwrap();
        std::fs::write(
            catalog.join("virtio-win.toml"),
            format!(
                "name = \"virtio-win\"\nos = \"windows\"\nfirmware = \"uefi\"\ndefault_user = \"Administrator\"\n[[artifacts]]\nproviders = [\"libvirt\"]\nurl = \"file:///mirror/virtio-win.iso\"\nsha256 = \"{}\"\nformat = \"raw\"\n",
                "a".repeat(64)
            ),
        )
        .unwrap();
        let user = virtio_win_for(&dirs).unwrap();
        assert_eq!(user.artifacts[0].url, "file:///mirror/virtio-win.iso");
        assert_eq!(
            build_media(&dirs, VIRTIO_WIN_NAME)
                .unwrap()
                .unwrap()
                .artifacts[0]
                .url,
            "file:///mirror/virtio-win.iso"
        );
        assert!(build_media(&dirs, &openssh_entry().name).unwrap().is_some());
        assert!(build_media(&dirs, "ubuntu-24.04").unwrap().is_none());
        // A broken user entry is an error, not a silent fallback.
        std::fs::write(catalog.join("virtio-win.toml"), "name = ").unwrap();
        assert!(virtio_win_for(&dirs).is_err());
    }

    #[test]
    fn openssh_is_pinned() {
        let e = openssh_entry();
        assert_eq!(e.artifacts.len(), 1);
        let a = &e.artifacts[0];
        assert!(a.url.starts_with("https://") && a.url.contains(OPENSSH_VERSION));
        assert_eq!(a.sha256.as_deref().map(str::len), Some(64));
    }

    /// The zip comes through the host cache: a file:// copy with the pinned
    /// name and a wrong hash is refused, so nothing unverified reaches a
    /// build seed.
    #[tokio::test]
    async fn the_cache_refuses_a_zip_with_another_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(tmp.path());
        let mut entry = openssh_entry();
        let zip = tmp.path().join("OpenSSH-Win64.zip");
        std::fs::write(&zip, b"not the release").unwrap();
        entry.artifacts[0].url = format!("file://{}", zip.display());
        let artifact = entry.artifacts[0].clone();
        let progress = super::super::download::NoProgress;
        let fetch = super::super::Fetch::new(&progress);
        let r = super::super::cache::ensure(&dirs, &entry, &artifact, None, &fetch).await;
        assert!(r.is_err(), "a zip with another sha256 is refused");
    }
}
