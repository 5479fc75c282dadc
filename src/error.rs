//! Errors as the user sees them.
//!
//! Library modules return their own `thiserror` enums whose messages describe
//! only their own layer and carry the cause as `#[source]`. Commands use
//! `anyhow`. At the top, [`report`] prints one line of what failed, one
//! `caused by:` line per source, and a `hint:` when one of the errors in the
//! chain knows the fix (`crate::hints` knows which module error knows
//! which, so this module depends on none of them). Exit codes: 1 for user and environment errors (the
//! normal case), 2 for bugs ([`Bug`] anywhere in the chain, or a panic).

use std::error::Error as StdError;
use std::fmt;

/// Exit status of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    Bug,
    /// A command run in a node (`devcluster ssh NODE -- CMD`) exited with
    /// this code: passed through.
    Child(u8),
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Bug => 2,
            ExitStatus::Child(code) => code,
        }
    }
}

/// An error that is a mistake in devcluster itself, not in the user's input
/// or environment. Exits 2.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0}")]
pub struct Bug(pub String);

/// A user-facing error with a known fix. `Display` is the message only; the
/// hint is printed on its own `hint:` line.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Attaches a hint to an error without changing its message or chain.
pub struct WithHint {
    inner: anyhow::Error,
    hint: String,
}

impl fmt::Debug for WithHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for WithHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl StdError for WithHint {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source()
    }
}

/// `result.hint("run devcluster doctor")`.
pub trait HintExt<T> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> HintExt<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| {
            anyhow::Error::new(WithHint {
                inner: e.into(),
                hint: hint.into(),
            })
        })
    }
}

/// What the top level prints for an error: the message, its causes and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
    pub status: ExitStatus,
}

/// An error and its causes on one line, `message: cause: cause`: for
/// messages that are not the command's own error (warnings, notes).
pub fn one_line(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Turns an error chain into a [`Report`], with the hints only this
/// module's own types know (see [`report_with`]).
pub fn report(err: &anyhow::Error) -> Report {
    report_with(err, |_| None)
}

/// Turns an error chain into a [`Report`]. The hint is the first one found
/// walking the chain from the top: a [`WithHint`] or [`UserError`], or what
/// `module_hint` says of a module's own error type. Which module error
/// knows which fix is decided above this module (`crate::hints`), so that
/// this module imports none of them and every module can use it.
pub fn report_with(
    err: &anyhow::Error,
    module_hint: impl Fn(&(dyn StdError + 'static)) -> Option<String>,
) -> Report {
    let mut chain = err.chain();
    let message = chain.next().map(ToString::to_string).unwrap_or_default();
    let mut causes: Vec<String> = Vec::new();
    for cause in chain {
        let text = cause.to_string();
        // `WithHint` and some wrappers repeat their inner message: say it once.
        if causes.last() != Some(&text) && text != message {
            causes.push(text);
        }
    }
    let mut hint = None;
    let mut status = ExitStatus::Failure;
    for cause in err.chain() {
        if hint.is_none() {
            hint = own_hint(cause).or_else(|| module_hint(cause));
        }
        if cause.downcast_ref::<Bug>().is_some() {
            status = ExitStatus::Bug;
        }
    }
    Report {
        message,
        causes,
        hint,
        status,
    }
}

fn own_hint(err: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(e) = err.downcast_ref::<WithHint>() {
        return Some(e.hint.clone());
    }
    if let Some(e) = err.downcast_ref::<UserError>() {
        return e.hint.clone();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prints_chain_and_hint() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err: anyhow::Result<()> = Err(anyhow::Error::new(inner).context("reading state.json"));
        let err = err.hint("run devcluster up").unwrap_err();
        let r = report(&err);
        assert_eq!(r.message, "reading state.json");
        assert_eq!(r.causes, vec!["no such file".to_string()]);
        assert_eq!(r.hint.as_deref(), Some("run devcluster up"));
        assert_eq!(r.status, ExitStatus::Failure);
    }

    #[test]
    fn bug_exits_two() {
        let err = anyhow::Error::new(Bug("plan has no control plane".into())).context("planning");
        assert_eq!(report(&err).status, ExitStatus::Bug);
    }

    #[test]
    fn user_error_hint() {
        let err = anyhow::Error::new(UserError::new("bad").hint("fix it"));
        let r = report(&err);
        assert_eq!(r.message, "bad");
        assert_eq!(r.hint.as_deref(), Some("fix it"));
    }
}
