//! The node software catalogs (src/images/node_software.rs: Windows, and
//! Linux's containerd, runc and CNI plugins) against a real HTTP server on
//! 127.0.0.1 (tests/common/http.rs) laid out like the publishers' servers:
//! dl.k8s.io's bare `.sha256` files, containerd's `.sha256sum` lines,
//! runc's `runc.sha256sum`, GitHub release assets with `.sha256` beside
//! them (the Linux entries as a mirror serves them, under `github.com/`).
//! The bodies are test data, not the real binaries (no internet here).

mod common;

use std::time::Duration;

use common::Test;
use common::http::{Resource, Server, data, sha256_hex};
use devcluster::images::node_software::{
    self, ChecksumSource, NodeArtifact, NodeSoftwareError, Origins, ensure, ensure_all,
};
use devcluster::images::{Fetch, ImageError, NoProgress};

fn fetch(offline: bool) -> Fetch<'static> {
    let mut f = Fetch::new(&NoProgress).offline(offline);
    f.download.backoff = Duration::from_millis(20);
    f.download.max_backoff = Duration::from_millis(100);
    f.download.proxies = false;
    f.download.attempts = 2;
    f
}

/// Serves every artifact of the catalog and its checksum file in the
/// publisher's format; returns the catalog.
fn serve(server: &Server, release: &str) -> node_software::Catalog {
    let origins = Origins {
        kubernetes: server.url("/k8s"),
        github: server.url("/gh"),
    };
    let catalog = node_software::catalog_from(&origins, release).unwrap();
    for (i, a) in catalog.artifacts.iter().enumerate() {
        let body = data(64 << 10, i as u64 + 1);
        let sha = sha256_hex(&body);
        let path = a.url.strip_prefix(&server.url("")).unwrap().to_string();
        server.put(&path, Resource::new(body));
        let ChecksumSource::File { url, name } = &a.checksum else {
            panic!("{a:?}: every built-in entry reads the publisher's file");
        };
        let sums = if url.contains("/k8s/") {
            sha.clone()
        } else {
            format!("{sha}  {name}\n")
        };
        let spath = url.strip_prefix(&server.url("")).unwrap().to_string();
        server.put(&spath, Resource::new(sums.into_bytes()));
    }
    catalog
}

#[tokio::test]
async fn downloads_once_verifies_and_then_works_offline() {
    let t = Test::new();
    let dirs = t.dirs();
    let server = Server::start();
    let catalog = serve(&server, "1.36.2");
    let got = ensure_all(&dirs, &catalog, &fetch(false)).await.unwrap();
    assert_eq!(got.len(), catalog.artifacts.len());
    for (c, a) in got.iter().zip(&catalog.artifacts) {
        assert!(c.downloaded, "{}", c.name);
        let bytes = std::fs::read(&c.path).unwrap();
        assert_eq!(sha256_hex(&bytes), c.sha256);
        assert!(c.path.ends_with(&a.file_name));
        assert!(
            c.path.starts_with(
                dirs.cache
                    .join("node-software")
                    .join(a.name)
                    .join(&a.version)
            ),
            "{}",
            c.path.display()
        );
    }
    let served = server.served();
    // Second time: offline, from the cache, nothing asked of the server.
    let again = ensure_all(&dirs, &catalog, &fetch(true)).await.unwrap();
    assert!(again.iter().all(|c| !c.downloaded));
    assert_eq!(server.served(), served);
    // Another patch release is other kubelet/kubeadm/kube-proxy files:
    // offline, they are missing, and the error names the first of them.
    let other = serve(&server, "1.36.3");
    let err = ensure_all(&dirs, &other, &fetch(true)).await.unwrap_err();
    match &err {
        NodeSoftwareError::Offline { name, version } => {
            assert_eq!((name.as_str(), version.as_str()), ("kubelet", "1.36.3"));
        }
        e => panic!("{e:?}"),
    }
    assert!(err.hint().unwrap().contains("online"));
}

#[tokio::test]
async fn a_checksum_mismatch_is_refused_and_nothing_is_kept() {
    let t = Test::new();
    let dirs = t.dirs();
    let server = Server::start();
    let catalog = serve(&server, "1.36.2");
    let kubelet = catalog
        .artifacts
        .iter()
        .find(|a| a.name == "kubelet")
        .unwrap();
    let path = kubelet
        .url
        .strip_prefix(&server.url(""))
        .unwrap()
        .to_string();
    server.put(&path, Resource::new(b"tampered".to_vec()));
    let err = ensure(&dirs, kubelet, &fetch(false)).await.unwrap_err();
    match &err {
        NodeSoftwareError::Fetch { source, .. }
            if matches!(**source, ImageError::Checksum { .. }) => {}
        e => panic!("{e:?}"),
    }
    assert!(node_software::cached(&dirs, kubelet).is_none());
    let dir = node_software::artifact_dir(&dirs, kubelet);
    let left: Vec<_> = common::files_under(&dir)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_checksum_file_without_the_entry_is_refused() {
    let t = Test::new();
    let dirs = t.dirs();
    let server = Server::start();
    let catalog = serve(&server, "1.36.2");
    let containerd = &catalog.artifacts[0];
    let ChecksumSource::File { url, .. } = &containerd.checksum else {
        unreachable!()
    };
    let spath = url.strip_prefix(&server.url("")).unwrap().to_string();
    server.put(
        &spath,
        Resource::new(format!("{}  other-file.tar.gz\n", "0".repeat(64)).into_bytes()),
    );
    let err = ensure(&dirs, containerd, &fetch(false)).await.unwrap_err();
    assert!(
        matches!(err, NodeSoftwareError::NotListed { .. }),
        "{err:?}"
    );
    assert!(node_software::cached(&dirs, containerd).is_none());
}

#[tokio::test]
async fn a_cut_download_resumes_with_a_range_request() {
    let t = Test::new();
    let dirs = t.dirs();
    let server = Server::start();
    let catalog = serve(&server, "1.36.2");
    let kubeadm = catalog
        .artifacts
        .iter()
        .find(|a| a.name == "kubeadm")
        .unwrap();
    let path = kubeadm
        .url
        .strip_prefix(&server.url(""))
        .unwrap()
        .to_string();
    server.update(&path, |r| r.cut_after = Some(20_000));
    let got = ensure(&dirs, kubeadm, &fetch(false)).await.unwrap();
    assert!(got.downloaded);
    let log = server.log_for(&path);
    assert!(
        log.iter()
            .any(|l| l.range.as_deref() == Some("bytes=20000-")),
        "{log:?}"
    );
}

/// Serves the Linux catalog as a mirror on the loopback server would:
/// each file and the publisher's checksum file for it.
fn serve_linux(server: &Server) -> Vec<NodeArtifact> {
    let catalog = node_software::linux_catalog_from(&Origins::mirror(&server.url("/mirror")));
    for (i, a) in catalog.iter().enumerate() {
        let body = data(96 << 10, 100 + i as u64);
        let sha = sha256_hex(&body);
        let path = a.url.strip_prefix(&server.url("")).unwrap().to_string();
        server.put(&path, Resource::new(body));
        let ChecksumSource::File { url, name } = &a.checksum else {
            panic!("{a:?}: a mirror's checksums are read from it");
        };
        let spath = url.strip_prefix(&server.url("")).unwrap().to_string();
        server.put(
            &spath,
            Resource::new(format!("{sha}  {name}\n").into_bytes()),
        );
    }
    catalog
}

#[tokio::test]
async fn linux_node_software_downloads_once_and_then_works_offline() {
    let t = Test::new();
    let dirs = t.dirs();
    let server = Server::start();
    let catalog = serve_linux(&server);
    let names: Vec<&str> = catalog.iter().map(|a| a.name).collect();
    assert_eq!(
        names,
        ["linux-containerd", "linux-runc", "linux-cni-plugins"]
    );
    // Offline before anything is cached: refused, naming the first.
    let err = ensure(&dirs, &catalog[0], &fetch(true)).await.unwrap_err();
    assert!(
        matches!(&err, NodeSoftwareError::Offline { name, .. } if name == "linux-containerd"),
        "{err:?}"
    );
    assert_eq!(server.served(), 0);
    for a in &catalog {
        let got = ensure(&dirs, a, &fetch(false)).await.unwrap();
        assert!(got.downloaded, "{}", a.name);
        assert_eq!(sha256_hex(&std::fs::read(&got.path).unwrap()), got.sha256);
        assert!(got.path.ends_with(&a.file_name));
    }
    let served = server.served();
    for a in &catalog {
        let again = ensure(&dirs, a, &fetch(true)).await.unwrap();
        assert!(!again.downloaded, "{}", a.name);
    }
    assert_eq!(
        server.served(),
        served,
        "offline: nothing asked of the server"
    );
}

#[tokio::test]
async fn linux_node_software_with_a_wrong_sha256_is_refused() {
    let t = Test::new();
    let dirs = t.dirs();
    let server = Server::start();
    let catalog = serve_linux(&server);
    // The mirror's runc is not what its checksum file says.
    let runc = &catalog[1];
    let path = runc.url.strip_prefix(&server.url("")).unwrap().to_string();
    server.put(&path, Resource::new(b"tampered".to_vec()));
    let err = ensure(&dirs, runc, &fetch(false)).await.unwrap_err();
    assert!(
        matches!(&err, NodeSoftwareError::Fetch { source, .. } if matches!(**source, ImageError::Checksum { .. })),
        "{err:?}"
    );
    assert!(node_software::cached(&dirs, runc).is_none());
    // A pinned sha256 (how the upstream entries are checked) that the
    // served file does not have is refused too, with no checksum file read;
    // the right one is accepted.
    let containerd = &catalog[0];
    let body = data(96 << 10, 100);
    let mut pinned = containerd.clone();
    pinned.checksum = ChecksumSource::Pinned {
        sha256: "0".repeat(64),
        source: "test".into(),
    };
    let err = ensure(&dirs, &pinned, &fetch(false)).await.unwrap_err();
    assert!(
        matches!(&err, NodeSoftwareError::Fetch { source, .. } if matches!(**source, ImageError::Checksum { .. })),
        "{err:?}"
    );
    let left: Vec<_> = common::files_under(&node_software::artifact_dir(&dirs, &pinned))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    pinned.checksum = ChecksumSource::Pinned {
        sha256: sha256_hex(&body),
        source: "test".into(),
    };
    let got = ensure(&dirs, &pinned, &fetch(false)).await.unwrap();
    assert_eq!(got.sha256, sha256_hex(&body));
}
