//! What `detect.ps1` reports about the host, and the decisions made on it:
//! whether `--provider auto` may pick Hyper-V ([`detection`]) and the host
//! checks doctor lists ([`checks`]). Both are pure functions of the
//! recorded facts, so they are tested on recorded JSON.

use serde::Deserialize;

use super::runner::{ADD_TO_HYPERV_ADMINS, ENABLE_HYPERV};
use super::{NAT_NAME, NAT_PREFIX, SWITCH_NAME};
use crate::doctor::Check;
use crate::providers::Detection;
use crate::spec::ProviderKind;

/// The facts, as `detect.ps1` prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Facts {
    /// The Hyper-V PowerShell module is installed.
    pub module: bool,
    /// `Win32_ComputerSystem.HypervisorPresent`: the hypervisor is running.
    pub hypervisor_present: bool,
    pub user: String,
    pub admin: bool,
    /// Member of Hyper-V Administrators (S-1-5-32-578).
    pub hyperv_admin: bool,
    /// The Virtual Machine Management service's status (`Running`, ...).
    pub vmms: String,
    /// devcluster's switch, when it exists.
    pub switch: Option<SwitchFact>,
    /// IPv4 addresses (`a.b.c.d/len`) on the switch's vEthernet.
    pub address: Vec<String>,
    pub nats: Vec<NatFact>,
    /// VirtualBox's service is installed.
    pub virtualbox: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SwitchFact {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub notes: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NatFact {
    pub name: String,
    pub prefix: String,
}

/// A NetNat that is not devcluster's: another name, or our name with
/// another prefix. A host has one NAT network, so it is in the way.
pub fn foreign_nat(facts: &Facts) -> Option<&NatFact> {
    facts
        .nats
        .iter()
        .find(|n| n.name != NAT_NAME || n.prefix != NAT_PREFIX)
}

/// What to do about a NetNat someone else made.
pub fn foreign_nat_fix(nat: &NatFact) -> String {
    format!(
        "Windows allows one NAT network per host and `{}` ({}) is not devcluster's; if nothing needs it any more (Docker Desktop, an old lab), remove it in an elevated PowerShell with `Remove-NetNat -Name '{}' -Confirm:$false`; otherwise use --provider virtualbox",
        nat.name, nat.prefix, nat.name
    )
}

/// Whether Hyper-V can be used now, and if not the one fix that comes first.
pub fn detection(facts: &Facts) -> Detection {
    let no = |detail: String, fix: String| Detection {
        kind: ProviderKind::Hyperv,
        usable: false,
        detail,
        fix: Some(fix),
    };
    if !facts.module {
        return no(
            "the Hyper-V PowerShell module is not installed".into(),
            format!("in an elevated PowerShell, `{ENABLE_HYPERV}`, then restart Windows"),
        );
    }
    if !facts.hypervisor_present {
        return no(
            if facts.virtualbox {
                "the Hyper-V hypervisor is not running (VirtualBox is installed: it may have had it turned off)".into()
            } else {
                "the Hyper-V hypervisor is not running".into()
            },
            "in an elevated PowerShell, `bcdedit /set hypervisorlaunchtype auto`, enable virtualization in the firmware settings if it is off, then restart Windows".into(),
        );
    }
    if facts.vmms != "Running" {
        return no(
            format!(
                "the Hyper-V Virtual Machine Management service (vmms) is {}",
                if facts.vmms.is_empty() {
                    "missing"
                } else {
                    &facts.vmms
                }
            ),
            "in an elevated PowerShell, `Start-Service vmms`".into(),
        );
    }
    if !facts.admin && !facts.hyperv_admin {
        return no(
            format!(
                "{} is neither an administrator nor in Hyper-V Administrators",
                facts.user
            ),
            format!(
                "in an elevated PowerShell, `{ADD_TO_HYPERV_ADMINS}`, then sign out and in again"
            ),
        );
    }
    if let Some(nat) = foreign_nat(facts) {
        return no(
            format!(
                "another NAT network is configured: {} ({})",
                nat.name, nat.prefix
            ),
            foreign_nat_fix(nat),
        );
    }
    Detection {
        kind: ProviderKind::Hyperv,
        usable: true,
        detail: format!(
            "Hyper-V running, {} {}",
            facts.user,
            if facts.admin {
                "is an administrator"
            } else {
                "is in Hyper-V Administrators"
            }
        ),
        fix: None,
    }
}

/// The host checks of Hyper-V, for doctor.
pub fn checks(facts: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(if facts.module {
        Check::ok(
            "hyperv.module",
            "the Hyper-V PowerShell module is installed",
        )
    } else {
        Check::fail(
            "hyperv.module",
            "the Hyper-V PowerShell module is not installed",
            format!("in an elevated PowerShell, `{ENABLE_HYPERV}`, then restart Windows"),
        )
    });
    out.push(if facts.hypervisor_present {
        Check::ok("hyperv.hypervisor", "HypervisorPresent: the hypervisor is running")
    } else {
        Check::fail(
            "hyperv.hypervisor",
            "HypervisorPresent is false: the hypervisor is not running",
            "in an elevated PowerShell, `bcdedit /set hypervisorlaunchtype auto`, enable virtualization in the firmware settings, then restart Windows",
        )
    });
    out.push(if facts.admin {
        Check::ok(
            "hyperv.permissions",
            format!("{} is an administrator", facts.user),
        )
    } else if facts.hyperv_admin {
        Check::ok(
            "hyperv.permissions",
            format!("{} is in Hyper-V Administrators (S-1-5-32-578)", facts.user),
        )
    } else {
        Check::fail(
            "hyperv.permissions",
            format!(
                "{} is neither an administrator nor in Hyper-V Administrators (S-1-5-32-578)",
                facts.user
            ),
            format!(
                "in an elevated PowerShell, `{ADD_TO_HYPERV_ADMINS}`, then sign out and in again"
            ),
        )
    });
    let setup = super::setup_commands(None);
    out.push(match &facts.switch {
        Some(s) if s.kind == "Internal" => Check::ok(
            "hyperv.switch",
            format!(
                "switch {} (internal){}",
                s.name,
                if facts.address.is_empty() {
                    String::new()
                } else {
                    format!(", addresses {}", facts.address.join(", "))
                }
            ),
        ),
        Some(s) => Check::fail(
            "hyperv.switch",
            format!("a switch named {} exists but is {}, not internal", s.name, s.kind),
            format!("rename or remove that switch (`Hyper-V\\Remove-VMSwitch -Name '{}'`); devcluster makes its own", s.name),
        ),
        None => Check::warn(
            "hyperv.switch",
            format!("devcluster's internal switch {SWITCH_NAME} does not exist yet"),
            format!("the first `devcluster up` creates it and needs an elevated PowerShell once; or create it now there: `{setup}`"),
        ),
    });
    match foreign_nat(facts) {
        Some(nat) => out.push(Check::fail(
            "hyperv.netnat",
            format!("NetNat {} ({}) is not devcluster's; a host has one NAT network", nat.name, nat.prefix),
            foreign_nat_fix(nat),
        )),
        None if facts.nats.is_empty() => out.push(Check::warn(
            "hyperv.netnat",
            format!("devcluster's NetNat {NAT_NAME} ({NAT_PREFIX}) does not exist yet"),
            format!("the first `devcluster up` creates it and needs an elevated PowerShell once; or create it now there: `{setup}`"),
        )),
        None => out.push(Check::ok(
            "hyperv.netnat",
            format!("NetNat {NAT_NAME} covers {NAT_PREFIX}"),
        )),
    }
    out
}
