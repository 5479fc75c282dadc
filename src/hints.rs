//! Which error knows which fix.
//!
//! Every module's error type that knows how to fix itself has a `hint()`.
//! Finding it in an `anyhow` chain needs the concrete type, so one list of
//! downcasts is unavoidable; it lives here, above every module, and not in
//! `error.rs`: `error.rs` (`Bug`, `UserError`, `HintExt`, `Report`) is used
//! by every module, and a list of every module's errors inside it tied them
//! all into one dependency circle. Only the top level (`lib.rs`) and tests
//! call [`report`].

use std::error::Error as StdError;

use crate::error::{Report, report_with};

/// Turns an error chain into what the top level prints, hints included.
pub fn report(err: &anyhow::Error) -> Report {
    report_with(err, module_hint)
}

fn module_hint(err: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(e) = err.downcast_ref::<crate::state::StateError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::machines::NodesFailed>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::machines::ProvisionError>() {
        // Transparent: the step or SSH error inside is not in the chain.
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::machines::MachinesError>() {
        return match e {
            crate::machines::MachinesError::Image(i) => i.hint(),
            crate::machines::MachinesError::Network(p)
            | crate::machines::MachinesError::Provider { source: p, .. } => p.hint(),
            crate::machines::MachinesError::NoWindowsBase { .. } => Some(
                "build it with `devcluster images build IMAGE --accept-license` (up builds it itself on libvirt)".into(),
            ),
            _ => None,
        };
    }
    if let Some(e) = err.downcast_ref::<crate::winbuild::BuildError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::providers::ProviderError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::images::ImageError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::images::node_software::NodeSoftwareError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::pki::PkiError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::kubeconfig::KubeconfigError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::provision::StepError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::provision::SshError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::kube::token::TokenError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<crate::kube::client::KubeError>() {
        return e.hint();
    }
    None
}
