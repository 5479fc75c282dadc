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
}
