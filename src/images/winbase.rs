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
use crate::spec::ProviderKind;

/// The `kubernetes_version` of a Windows base disk's key.
pub const KIND: &str = "windows-base";

/// The hash of everything the build runs: every build script and the
/// answer file rendered from fixed inputs (so a template change is a new
/// disk, but the per-build key and password are not).
pub fn build_sha256(image: &WindowsImage) -> String {
    let fixed = BuildSeed {
        image: image.clone(),
        authorized_key: "ssh-ed25519 KEY".into(),
        admin_password: Secret::new("PASSWORD"),
        openssh_zip: None,
    };
    let answer = windows::autounattend(&fixed);
    let mut files: Vec<(&str, &[u8])> = windows::BUILD_SCRIPTS
        .iter()
        .map(|(n, t)| (*n, t.as_bytes()))
        .collect();
    files.push((windows::ANSWER_FILE, answer.as_bytes()));
    golden::provisioners_sha256(files)
}

/// The key of the base disk built from the ISO `iso_sha256` for `provider`.
pub fn key(image: &WindowsImage, iso_sha256: &str, provider: ProviderKind) -> GoldenKey {
    GoldenKey {
        base_sha256: iso_sha256.to_string(),
        kubernetes_version: KIND.to_string(),
        provider,
        provisioners_sha256: build_sha256(image),
    }
}

/// The base disk, if one was built completely.
pub fn lookup(
    dirs: &Dirs,
    image: &WindowsImage,
    iso_sha256: &str,
    provider: ProviderKind,
) -> Option<GoldenDisk> {
    golden::lookup(dirs, &key(image, iso_sha256, provider))
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
/// an image (downloaded once, verified, `--offline` after that). Its
/// format is `raw`: an opaque file, never converted.
pub fn openssh_entry() -> super::ImageEntry {
    super::ImageEntry {
        name: format!("win32-openssh-{OPENSSH_VERSION}"),
        os: crate::plan::Os::Windows,
        version: Some(OPENSSH_VERSION.into()),
        firmware: crate::providers::Firmware::Uefi,
        default_user: "Administrator".into(),
        secure_boot: false,
        license: Some("MIT-style licence of PowerShell/Win32-OpenSSH".into()),
        license_url: Some("https://github.com/PowerShell/Win32-OpenSSH".into()),
        license_requires_acceptance: false,
        artifacts: vec![super::Artifact {
            providers: vec![
                ProviderKind::Libvirt,
                ProviderKind::Hyperv,
                ProviderKind::Virtualbox,
            ],
            url: OPENSSH_URL.into(),
            sha256: Some(OPENSSH_SHA256.into()),
            checksum_url: None,
            checksum_name: None,
            format: super::Format::Raw,
            compression: Default::default(),
            size: None,
        }],
    }
}

/// The zip in the host cache, downloaded and verified if it is not there.
pub async fn ensure_openssh(
    dirs: &Dirs,
    fetch: &super::Fetch<'_>,
) -> Result<super::cache::Cached, super::ImageError> {
    let entry = openssh_entry();
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
        let k = key(&a, &"1".repeat(64), ProviderKind::Libvirt);
        assert_eq!(k, key(&a, &"1".repeat(64), ProviderKind::Libvirt));
        assert_ne!(k.id(), key(&a, &"2".repeat(64), ProviderKind::Libvirt).id());
        assert_ne!(k.id(), key(&a, &"1".repeat(64), ProviderKind::Hyperv).id());
        // Same scripts, same template: the image index is the same too, so
        // the two versions differ by ISO only.
        assert_eq!(build_sha256(&a), build_sha256(&b));
        assert_eq!(k.kubernetes_version, KIND);
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
