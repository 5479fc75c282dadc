//! How long the bootstrap may wait, per plan: one set of rules for every
//! node OS (the Linux join step and the Windows one read the same numbers).
//!
//! Two rules make a healthy but slow machine pass:
//! - A worker's join deadline starts when the API server first answers
//!   (`/readyz`), not when the worker is ready to join: workers are
//!   prepared in parallel with the control plane, and how long the control
//!   plane takes to come up is the control plane's deadline, not theirs.
//!   So a join step gets two budgets: [`Deadlines::api_wait`] for the API
//!   server to answer at all, then [`Deadlines::join`] from that moment.
//! - Under software emulation (libvirt domain type `qemu`: no KVM, every
//!   instruction translated) everything is several times slower, so every
//!   readiness timeout is multiplied by [`EMULATION_FACTOR`].

use std::time::Duration;

use crate::plan::Plan;
use crate::spec::{DomainType, ProviderKind};

/// How much longer everything takes under software emulation (TCG) than
/// with hardware virtualisation: measured here, a Debian guest reaches
/// SSH in ~50 s under TCG against ~15 s under KVM.
pub const EMULATION_FACTOR: u32 = 3;

/// The budgets on hardware virtualisation; [`Deadlines::for_plan`] scales
/// them.
const API_WAIT: Duration = Duration::from_secs(1800);
const JOIN: Duration = Duration::from_secs(600);
const API_HEALTHY: Duration = Duration::from_secs(300);
const NODES_READY: Duration = Duration::from_secs(600);
const PODS_READY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// A worker waits this long for the API server to answer `/readyz` at
    /// all (the control plane is still being prepared and initialised).
    pub api_wait: Duration,
    /// From the API server's first answer: this long to join (discovery,
    /// TLS bootstrap, retries).
    pub join: Duration,
    /// The API server answering after `kubeadm init`, seen from the host.
    pub api_healthy: Duration,
    /// Every planned node Ready.
    pub nodes_ready: Duration,
    /// The pod network's and CoreDNS's pods Ready.
    pub pods_ready: Duration,
}

/// Whether the plan's VMs run under software emulation. `auto` lets the
/// provider choose (KVM where it can), so it counts as hardware.
pub fn emulated(plan: &Plan) -> bool {
    matches!(plan.provider, ProviderKind::Libvirt | ProviderKind::Auto)
        && plan.libvirt.domain_type == DomainType::Qemu
}

impl Deadlines {
    /// The budgets for `plan`'s machines.
    pub fn for_plan(plan: &Plan) -> Self {
        Self::scaled(if emulated(plan) { EMULATION_FACTOR } else { 1 })
    }

    /// The hardware budgets times `factor`.
    pub fn scaled(factor: u32) -> Self {
        let f = factor.max(1);
        Self {
            api_wait: API_WAIT * f,
            join: JOIN * f,
            api_healthy: API_HEALTHY * f,
            nodes_ready: NODES_READY * f,
            pods_ready: PODS_READY * f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(provider: ProviderKind, domain_type: DomainType) -> Plan {
        let spec = crate::spec::resolve(
            crate::spec::Val::new("dl".into(), crate::spec::Origin::Flag("--cluster")),
            crate::spec::Layer::default(),
        )
        .unwrap();
        let mut p = crate::plan::plan(&spec, &crate::plan::Surroundings::default()).unwrap();
        p.provider = provider;
        p.libvirt.domain_type = domain_type;
        p
    }

    #[test]
    fn software_emulation_scales_every_timeout() {
        let hw = Deadlines::for_plan(&plan(ProviderKind::Libvirt, DomainType::Kvm));
        assert_eq!(hw, Deadlines::scaled(1));
        assert_eq!(hw.join, Duration::from_secs(600));
        assert_eq!(hw.api_wait, Duration::from_secs(1800));
        let tcg = Deadlines::for_plan(&plan(ProviderKind::Libvirt, DomainType::Qemu));
        assert_eq!(tcg.join, Duration::from_secs(1800));
        assert_eq!(tcg.api_wait, Duration::from_secs(5400));
        assert_eq!(tcg.api_healthy, Duration::from_secs(900));
        assert_eq!(tcg.nodes_ready, Duration::from_secs(1800));
        assert_eq!(tcg.pods_ready, Duration::from_secs(900));
        assert_eq!(
            Deadlines::for_plan(&plan(ProviderKind::Libvirt, DomainType::Auto)),
            hw
        );
        // Another provider's VMs do not run under libvirt's TCG.
        assert_eq!(
            Deadlines::for_plan(&plan(ProviderKind::Hyperv, DomainType::Qemu)),
            hw
        );
        assert_eq!(Deadlines::scaled(0), hw);
    }
}
