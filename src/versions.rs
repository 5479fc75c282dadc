//! The supported Kubernetes versions, from `provisioners/kubernetes-versions.toml`.

use std::sync::OnceLock;

use serde::Deserialize;

pub(crate) const VERSIONS_TOML: &str = include_str!("../provisioners/kubernetes-versions.toml");

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesVersion {
    /// `X.Y`
    pub minor: String,
    pub kubeadm_api: String,
    pub pause_image: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsFile {
    default: String,
    versions: Vec<KubernetesVersion>,
}

fn file() -> &'static VersionsFile {
    static FILE: OnceLock<VersionsFile> = OnceLock::new();
    // The file is embedded and checked by a unit test: a parse error here
    // cannot come from user input.
    FILE.get_or_init(|| toml::from_str(VERSIONS_TOML).expect("embedded kubernetes-versions.toml"))
}

/// All supported versions, oldest first.
pub fn supported() -> &'static [KubernetesVersion] {
    &file().versions
}

/// The default minor version.
pub fn default_minor() -> &'static str {
    &file().default
}

/// The supported minors as a list for messages: `1.33, 1.34, 1.35`.
pub fn supported_list() -> String {
    supported()
        .iter()
        .map(|v| v.minor.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks up `X.Y` (a leading `v` is accepted).
pub fn find(version: &str) -> Option<&'static KubernetesVersion> {
    let v = version.trim().trim_start_matches('v');
    supported().iter().find(|k| k.minor == v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_is_consistent() {
        let f = file();
        assert!(!f.versions.is_empty());
        assert!(find(&f.default).is_some(), "default must be in the list");
        let mut seen = std::collections::BTreeSet::new();
        let mut last: (u32, u32) = (0, 0);
        for v in &f.versions {
            assert!(seen.insert(v.minor.clone()), "duplicate {}", v.minor);
            let (maj, min) = v.minor.split_once('.').expect("X.Y");
            let key = (maj.parse().unwrap(), min.parse().unwrap());
            assert!(key > last, "versions must be sorted oldest first");
            last = key;
            assert!(v.kubeadm_api.starts_with("kubeadm.k8s.io/v1beta"));
            assert!(v.pause_image.starts_with("registry.k8s.io/pause:"));
        }
        assert_eq!(find("v1.36").map(|v| v.minor.as_str()), Some("1.36"));
        assert!(find("1.20").is_none());
    }
}
