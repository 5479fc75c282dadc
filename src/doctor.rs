//! Host checks (`devcluster doctor`, and the subset `up` runs before it
//! creates anything). A check is a small value: what was looked at, the
//! verdict, what was found and, for anything not ok, the exact fix on this
//! OS. Each provider contributes its own checks; the decision logic of each
//! is a pure function of recorded inputs so it is tested without the host.

use serde::Serialize;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but something deserves attention (slow, nearly full, ...).
    Warn,
    /// Stops `up`.
    Fail,
    /// Does not apply here (another OS, another provider).
    Skipped,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable name, e.g. `libvirt.reachable`, `hyperv.netnat`.
    pub name: String,
    pub status: Status,
    /// What was found, for people.
    pub found: String,
    /// The exact fix for this OS; set for anything not ok or skipped.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: impl Into<String>, found: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, found, None)
    }

    pub fn warn(name: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, found, Some(fix.into()))
    }

    pub fn fail(name: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, found, Some(fix.into()))
    }

    pub fn skipped(name: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(name, Status::Skipped, why, None)
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        found: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            found: found.into(),
            fix,
        }
    }
}
