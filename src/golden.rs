//! Golden disks: keeping a prepared node's disk, and starting later nodes
//! from it.
//!
//! Preparing a node (prepare-node: containerd, the Kubernetes packages, the
//! control-plane images) is most of the time `up` spends on a node, and it
//! is the same work for every node of the same base image, Kubernetes
//! version and provider. So the first time a combination is prepared, the
//! control plane's disk is copied right after prepare-node, before
//! `kubeadm init` writes any of the cluster's secrets to it; later nodes
//! (of any cluster: `up`, `node add`) are linked clones of that copy and
//! skip prepare-node. The control plane is the one copied because its
//! prepare-node pulls every image a node of either role needs.
//!
//! # Capture, while the node runs
//!
//! Shutting the node down to copy its disk would cost a reboot in the
//! middle of `up`. Instead the provider makes a point-in-time copy of the
//! running disk (libvirt: a push-mode backup, which QEMU writes itself, so
//! the qcow2 is never read half-written). Around the moment the copy's
//! point in time is fixed, the node is *sealed* (`provisioners/linux/
//! seal.sh`): what makes it this node rather than a prepared image is
//! moved into tmpfs — machine-id (emptied, so a clone's systemd makes a new
//! one at its first boot, as on a fresh cloud image), SSH host keys,
//! cloud-init's state and logs (which hold the seed's user-data, with the
//! node's host private key), the cluster's authorized key, the done
//! markers of node-specific steps — and put back at once after. The window
//! is about a second; if `devcluster` dies inside it, a timer in the guest
//! unseals after 5 minutes. A clone boots with its own seed: cloud-init
//! sees no state and runs as on a fresh image (hostname, users, the seed's
//! host keys); the done marker of prepare-node, kept in the copy, makes
//! the step runner skip it; prepare-os runs again (hostname, the cluster's
//! `/etc/hosts`).
//!
//! # Identity
//!
//! A golden disk is found by [`key`]: the base image's hash, the Kubernetes
//! minor, the provider and the hash of every script that shaped the disk
//! (changing prepare-node.sh makes a new golden disk). Capturing a disk
//! that exists, or failing to, never fails `up`: it is an optimisation,
//! reported as a warning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dirs::Dirs;
use crate::images::golden::{self as record, GoldenDisk, GoldenKey, Made, ProviderVolume};
use crate::images::{Format, ImageError};
use crate::plan::{NodePlan, Os, Plan};
use crate::providers::{BaseImage, Capabilities, Provider, ProviderError};
use crate::provision::ssh::shell_quote;
use crate::provision::{NodeLog, Session, SshError, steps};
use crate::spec::ProviderKind;

/// The script that seals and unseals a node around the copy.
pub const SEAL_SCRIPT: &str = include_str!("../provisioners/linux/seal.sh");

/// The tag of golden-disk lines in a node's log.
pub const LOG_TAG: &str = "golden-disk";

/// The golden disk of nodes of `plan` on `base`.
pub fn key(plan: &Plan, base: &BaseImage, provider: ProviderKind) -> GoldenKey {
    GoldenKey {
        base_sha256: base.sha256.clone(),
        kubernetes_version: plan.kubernetes_version.clone(),
        provider,
        provisioners_sha256: record::provisioners_sha256([
            ("linux/prepare-os.sh", steps::PREPARE_OS_SCRIPT.as_bytes()),
            (
                "linux/prepare-node.sh",
                steps::PREPARE_NODE_SCRIPT.as_bytes(),
            ),
            ("linux/seal.sh", SEAL_SCRIPT.as_bytes()),
            (
                "kubernetes-versions.toml",
                crate::versions::VERSIONS_TOML.as_bytes(),
            ),
        ]),
    }
}

/// Whether golden disks apply to `node` at all: Kubernetes nodes of Linux
/// on a provider that keeps them.
fn applies(plan: &Plan, node: &NodePlan, caps: Capabilities) -> bool {
    caps.golden_disks && plan.kubernetes && node.os == Os::Linux
}

/// The golden disk a new VM for `node` is cloned from, if there is one it
/// fits. `Err` is a note for the user: there is one, but it does not fit.
pub fn for_node(
    dirs: &Dirs,
    plan: &Plan,
    node: &NodePlan,
    base: &BaseImage,
    provider: ProviderKind,
    caps: Capabilities,
) -> Result<Option<GoldenDisk>, String> {
    if !applies(plan, node, caps) {
        return Ok(None);
    }
    let Some(g) = record::lookup(dirs, &key(plan, base, provider)) else {
        return Ok(None);
    };
    if g.volume.is_none() {
        return Ok(None);
    }
    let disk = u64::from(node.disk_gib) << 30;
    if disk < g.capacity_bytes {
        return Err(format!(
            "{}: prepared afresh, not cloned from golden disk {}: its disk ({} GiB) is smaller than the golden disk's ({} GiB)",
            node.name,
            g.key.id(),
            node.disk_gib,
            g.capacity_bytes.div_ceil(1 << 30)
        ));
    }
    Ok(Some(g))
}

/// What `up` needs to keep the control plane's disk as a golden disk.
#[derive(Clone)]
pub struct Capture {
    pub provider: Arc<dyn Provider>,
    pub key: GoldenKey,
    /// The base image's catalog name.
    pub image: String,
    /// Which provider instance keeps the disk (the libvirt URI).
    pub uri: String,
}

impl Capture {
    /// The capture for `plan`'s control plane, when it is worth making:
    /// golden disks apply, none exists for its key, and its prepare-node
    /// has not run yet (it will in this `up`; a disk past it is not kept).
    pub fn for_control_plane(
        dirs: &Dirs,
        plan: &Plan,
        base: &BaseImage,
        provider: Arc<dyn Provider>,
        uri: &str,
        done: &[String],
    ) -> Option<Capture> {
        let cp = plan.control_plane();
        if !applies(plan, cp, provider.capabilities())
            || done.iter().any(|s| s == steps::PREPARE_NODE)
        {
            return None;
        }
        let key = key(plan, base, provider.kind());
        if record::lookup(dirs, &key).is_some() {
            return None;
        }
        Some(Capture {
            provider,
            key,
            image: base.name.clone(),
            uri: uri.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("could not {action} the node")]
    Ssh {
        action: &'static str,
        #[source]
        source: SshError,
    },
    #[error("{action} failed (exit {code}): {last}")]
    Script {
        action: &'static str,
        code: u32,
        last: String,
    },
    #[error("the provider could not copy the disk")]
    Provider(#[source] ProviderError),
    #[error("the golden disk could not be recorded")]
    Record(#[source] ImageError),
    #[error("another devcluster process is keeping golden disk {0} already")]
    Busy(String),
}

/// A golden disk just kept.
#[derive(Debug, Clone)]
pub struct Kept {
    pub disk: GoldenDisk,
    /// From the seal to the finished copy.
    pub took: Duration,
}

/// Runs seal.sh with `action` (seal | unseal) as root, its output into the
/// node's log.
async fn seal_script(
    session: &Session,
    log: &mut NodeLog,
    action: &'static str,
) -> Result<(), CaptureError> {
    let ssh = |source| CaptureError::Ssh { action, source };
    let target = session.target();
    let path = format!("{}/seal.sh", target.step_dir);
    session
        .upload(&path, SEAL_SCRIPT.as_bytes(), 0o700)
        .await
        .map_err(ssh)?;
    let command = target.privileged(&format!(
        "env SEAL_ACTION={action} SEAL_USER={} STEP_DIR={} KEEP_MARKERS={} bash -euo pipefail {}",
        shell_quote(&target.user),
        shell_quote(&target.step_dir),
        steps::PREPARE_NODE,
        shell_quote(&path)
    ));
    let out = session.exec_collect(&command, None).await.map_err(ssh)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines() {
        let _ = log.line(LOG_TAG, line);
    }
    if out.code != 0 {
        return Err(CaptureError::Script {
            action,
            code: out.code,
            last: text.lines().last().unwrap_or_default().to_string(),
        });
    }
    Ok(())
}

/// Keeps the disk of the running node `node` (of `cluster`), just
/// prepared in `prepared`, as the golden disk `capture` describes: seal,
/// begin the copy, unseal (always), wait for the copy, record it.
pub async fn capture(
    dirs: &Dirs,
    session: &Session,
    log: &mut NodeLog,
    capture: &Capture,
    cluster: &str,
    node: &str,
    prepared: Duration,
) -> Result<Kept, CaptureError> {
    let started = Instant::now();
    let id = capture.key.id();
    // One process keeps a given disk; a second `up` of the same kind at
    // the same time leaves it to the first (two would leave a volume
    // nobody records).
    let _held = crate::images::cache::try_lock(dirs, &format!("golden-{id}"))
        .map_err(CaptureError::Record)?
        .filter(|_| record::lookup(dirs, &capture.key).is_none())
        .ok_or_else(|| CaptureError::Busy(id.clone()))?;
    let _ = log.line(LOG_TAG, &format!("keeping this disk as golden disk {id}"));
    let begun = async {
        seal_script(session, log, "seal").await?;
        capture
            .provider
            .begin_golden(node, &id)
            .await
            .map_err(CaptureError::Provider)
    }
    .await;
    // Whatever happened, the node gets its files back.
    let unsealed = seal_script(session, log, "unseal").await;
    let volume = begun?;
    let finished = capture
        .provider
        .finish_golden(node, &volume)
        .await
        .map_err(CaptureError::Provider);
    let golden = match (unsealed, finished) {
        (Ok(()), Ok(v)) => v,
        (Err(e), _) | (Ok(()), Err(e)) => {
            let _ = capture.provider.remove_golden(&volume).await;
            return Err(e);
        }
    };
    let made = Made {
        image: capture.image.clone(),
        format: Format::Qcow2,
        capacity_bytes: golden.capacity_bytes,
        source: format!("{cluster}/{node}"),
        prepared_ms: prepared.as_millis() as u64,
    };
    let volume = ProviderVolume {
        name: golden.name.clone(),
        path: golden.path,
        bytes: golden.bytes,
        uri: capture.uri.clone(),
    };
    let disk = match record::store_volume(dirs, &capture.key, made, volume) {
        Ok(d) => d,
        Err(e) => {
            let _ = capture.provider.remove_golden(&golden.name).await;
            return Err(CaptureError::Record(e));
        }
    };
    let took = started.elapsed();
    let _ = log.line(
        LOG_TAG,
        &format!(
            "kept as golden disk {id} ({} bytes) in {:.1}s",
            disk.size_bytes,
            took.as_secs_f32()
        ),
    );
    Ok(Kept { disk, took })
}

/// The summary's lines on golden disks: the nodes this run cloned from one
/// (and the node time that saved: prepare-node's duration where the disk
/// was made, per clone), and a disk this run kept.
pub fn report(cloned: &[(String, GoldenDisk)], kept: Option<&GoldenDisk>) -> Vec<String> {
    use crate::images::download::human_bytes;
    use crate::ui::duration;
    let mut out = Vec::new();
    let mut ids: Vec<&GoldenDisk> = Vec::new();
    for (_, g) in cloned {
        if !ids.iter().any(|d| d.key == g.key) {
            ids.push(g);
        }
    }
    for g in ids {
        let nodes: Vec<&str> = cloned
            .iter()
            .filter(|(_, d)| d.key == g.key)
            .map(|(n, _)| n.as_str())
            .collect();
        let each = Duration::from_millis(g.prepared_ms);
        out.push(format!(
            "golden disk {} ({}, Kubernetes {}): {} started prepared; prepare-node took {} on {} when the disk was kept, so about {} of node time saved",
            g.key.id(),
            g.image,
            g.key.kubernetes_version,
            nodes.join(", "),
            duration(each),
            g.source,
            duration(each * nodes.len() as u32)
        ));
    }
    if let Some(g) = kept {
        out.push(format!(
            "kept {}'s prepared disk as golden disk {} ({}): later nodes of {} with Kubernetes {} start from it and skip prepare-node ({} here)",
            g.source,
            g.key.id(),
            human_bytes(g.size_bytes),
            g.image,
            g.key.kubernetes_version,
            duration(Duration::from_millis(g.prepared_ms))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Surroundings, plan};
    use crate::providers::Firmware;
    use crate::spec::{Layer, Origin, Val, resolve};

    fn plan_with(workers: u32, kubernetes: bool) -> Plan {
        let layer = Layer {
            workers: Some(Val::new(workers, Origin::Flag("--workers"))),
            ..Layer::default()
        };
        let spec = resolve(Val::new("dev".into(), Origin::Flag("--cluster")), layer).unwrap();
        let mut p = plan(&spec, &Surroundings::default()).unwrap();
        p.kubernetes = kubernetes;
        p
    }

    fn base() -> BaseImage {
        BaseImage {
            name: "ubuntu-24.04".into(),
            path: "/cache/base.qcow2".into(),
            sha256: "b".repeat(64),
            firmware: Firmware::Uefi,
            secure_boot: false,
        }
    }

    const CAPS: Capabilities = Capabilities {
        linked_clones: true,
        suspend_to_disk: true,
        snapshots: true,
        golden_disks: true,
        windows_builds: true,
    };

    fn keep(dirs: &Dirs, p: &Plan, capacity_gib: u64, prepared_ms: u64) -> GoldenDisk {
        record::store_volume(
            dirs,
            &key(p, &base(), ProviderKind::Libvirt),
            Made {
                image: "ubuntu-24.04".into(),
                format: Format::Qcow2,
                capacity_bytes: capacity_gib << 30,
                source: "dev/dev-cp".into(),
                prepared_ms,
            },
            ProviderVolume {
                name: "golden-x-1.qcow2".into(),
                path: "/var/lib/libvirt/images/devcluster-images/golden-x-1.qcow2".into(),
                bytes: 1_500 << 20,
                uri: "qemu:///system".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn the_key_follows_every_script_that_shapes_the_disk_but_not_the_cluster() {
        let p = plan_with(1, true);
        let k = key(&p, &base(), ProviderKind::Libvirt);
        // Another cluster of the same image and version: the same disk.
        let mut other = p.clone();
        other.cluster = "other".into();
        assert_eq!(key(&other, &base(), ProviderKind::Libvirt), k);
        let mut newer = p.clone();
        newer.kubernetes_version = "1.0".into();
        assert_ne!(key(&newer, &base(), ProviderKind::Libvirt).id(), k.id());
        let mut b = base();
        b.sha256 = "c".repeat(64);
        assert_ne!(key(&p, &b, ProviderKind::Libvirt).id(), k.id());
        assert_ne!(key(&p, &base(), ProviderKind::Hyperv).id(), k.id());
        // The seal script is part of it: a disk sealed differently is
        // another disk.
        assert_eq!(
            k.provisioners_sha256,
            record::provisioners_sha256([
                ("linux/prepare-os.sh", steps::PREPARE_OS_SCRIPT.as_bytes()),
                (
                    "linux/prepare-node.sh",
                    steps::PREPARE_NODE_SCRIPT.as_bytes()
                ),
                ("linux/seal.sh", SEAL_SCRIPT.as_bytes()),
                (
                    "kubernetes-versions.toml",
                    crate::versions::VERSIONS_TOML.as_bytes()
                ),
            ])
        );
    }

    #[test]
    fn nodes_are_cloned_from_a_golden_disk_that_fits() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let p = plan_with(1, true);
        let w1 = p.node("dev-w1").unwrap();
        // None kept yet.
        assert_eq!(
            for_node(&dirs, &p, w1, &base(), ProviderKind::Libvirt, CAPS),
            Ok(None)
        );
        let g = keep(&dirs, &p, u64::from(w1.disk_gib), 200_000);
        assert_eq!(
            for_node(&dirs, &p, w1, &base(), ProviderKind::Libvirt, CAPS),
            Ok(Some(g.clone()))
        );
        // Not for a provider without golden disks, a machines-only
        // cluster, another image.
        let no = Capabilities {
            golden_disks: false,
            ..CAPS
        };
        assert_eq!(
            for_node(&dirs, &p, w1, &base(), ProviderKind::Libvirt, no),
            Ok(None)
        );
        let machines_only = plan_with(1, false);
        let w1m = machines_only.node("dev-w1").unwrap();
        assert_eq!(
            for_node(
                &dirs,
                &machines_only,
                w1m,
                &base(),
                ProviderKind::Libvirt,
                CAPS
            ),
            Ok(None)
        );
        let mut other = base();
        other.sha256 = "d".repeat(64);
        assert_eq!(
            for_node(&dirs, &p, w1, &other, ProviderKind::Libvirt, CAPS),
            Ok(None)
        );
        // A disk smaller than the golden disk cannot hold it: said, and
        // the node is prepared afresh.
        let mut small = w1.clone();
        small.disk_gib = w1.disk_gib - 1;
        let note = for_node(&dirs, &p, &small, &base(), ProviderKind::Libvirt, CAPS).unwrap_err();
        assert_eq!(
            note,
            format!(
                "dev-w1: prepared afresh, not cloned from golden disk {}: its disk ({} GiB) is smaller than the golden disk's ({} GiB)",
                g.key.id(),
                w1.disk_gib - 1,
                w1.disk_gib
            )
        );
    }

    #[test]
    fn the_summary_says_which_nodes_started_prepared_and_what_that_saved() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let p = plan_with(2, true);
        let g = keep(&dirs, &p, 20, 200_000);
        let id = g.key.id();
        let cloned = vec![
            ("dev-w1".to_string(), g.clone()),
            ("dev-w2".to_string(), g.clone()),
        ];
        assert_eq!(
            report(&cloned, None),
            [format!(
                "golden disk {id} (ubuntu-24.04, Kubernetes {}): dev-w1, dev-w2 started prepared; prepare-node took 3m20s on dev/dev-cp when the disk was kept, so about 6m40s of node time saved",
                p.kubernetes_version
            )]
        );
        assert_eq!(
            report(&[], Some(&g)),
            [format!(
                "kept dev/dev-cp's prepared disk as golden disk {id} (1.5 GiB): later nodes of ubuntu-24.04 with Kubernetes {} start from it and skip prepare-node (3m20s here)",
                p.kubernetes_version
            )]
        );
        assert!(report(&[], None).is_empty());
    }
}
