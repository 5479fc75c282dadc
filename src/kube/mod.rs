//! Kubernetes on the nodes: kubeadm's configuration files, the pod network
//! (flannel) and the host's client of the cluster's API.
//!
//! The order `up` follows (the steps are in `provision::steps`):
//!
//! 1. every Linux node: `prepare-os`, then `prepare-node` (containerd, the
//!    Kubernetes packages of the plan's minor, the images);
//! 2. the control plane: `init-control-plane`, with the host-made CAs and
//!    [`kubeadm::init_config`] uploaded first; workers at the same time:
//!    `join`, with [`kubeadm::join_config`], waiting for the API server;
//! 3. from the host, with the admin kubeconfig: [`client::wait_api_healthy`],
//!    [`client::apply_manifests`] of [`flannel::manifest`], then
//!    [`client::wait_nodes_ready`] and [`client::wait_pods_ready`] for
//!    flannel and CoreDNS.
//!
//! Module name note: this module is `crate::kube`; the kube-rs crate is
//! reached as `::kube`.

pub mod client;
pub mod flannel;
pub mod kubeadm;
pub mod token;
pub mod windows;

/// CoreDNS's namespace.
pub const COREDNS_NAMESPACE: &str = "kube-system";
/// The label selector of CoreDNS's pods.
pub const COREDNS_SELECTOR: &str = "k8s-app=kube-dns";
