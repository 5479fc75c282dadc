//! The bootstrap token a node joins with, kept joinable: one rule for `up`
//! and `node add`, and for every node OS (a Windows JoinConfiguration takes
//! the same token and CA hash).
//!
//! `up` registers the token with `kubeadm init` for 24 hours (kubeadm's
//! default). Any join after that fails discovery: a worker whose earlier
//! step failed, a re-created worker VM, a worker added before init. So
//! before a join, the host reads the token's Secret in kube-system
//! ([`decide`]): a token that is fresh for at least [`MARGIN`] is kept; an
//! expired one, or one whose Secret is gone (the token cleaner deletes
//! expired ones), is replaced: a new token is registered with the cluster
//! (as `kubeadm token create` does) and only then kept in the cluster's
//! files, so the files never hold a token the cluster does not know.

use std::time::Duration;

use ::kube::Api;
use ::kube::Client;
use k8s_openapi::api::core::v1::Secret as K8sSecret;

use crate::dirs::Dirs;
use crate::kube::client::{self, KubeError};
use crate::pki::{self, PkiError, Secret};

/// A fresh bootstrap token lives this long (kubeadm's default).
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// A token must stay valid at least this long to be used for a join.
pub const MARGIN: Duration = Duration::from_secs(600);

/// What the cluster says of the token the host holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDecision {
    /// Usable for at least [`MARGIN`]: kept.
    Fresh,
    /// Its Secret exists but it expires (or expired), or it is not for
    /// authentication: replaced.
    Expired,
    /// No Secret for it: replaced.
    Missing,
}

impl TokenDecision {
    pub fn renew(self) -> bool {
        self != TokenDecision::Fresh
    }
}

/// The decision for a token whose Secret is `secret` (None: there is
/// none), at `now`.
pub fn decide(secret: Option<&K8sSecret>, now: time::OffsetDateTime) -> TokenDecision {
    match secret {
        None => TokenDecision::Missing,
        Some(s) if client::bootstrap_token_usable(s, now, MARGIN) => TokenDecision::Fresh,
        Some(_) => TokenDecision::Expired,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the bootstrap token's Secret kube-system/{name}")]
    Read {
        name: String,
        #[source]
        source: ::kube::Error,
    },
    #[error(transparent)]
    Register(#[from] KubeError),
    #[error(transparent)]
    Keep(#[from] PkiError),
}

impl TokenError {
    pub fn hint(&self) -> Option<String> {
        match self {
            TokenError::Register(e) => e.hint(),
            TokenError::Keep(e) => e.hint(),
            TokenError::Read { .. } => None,
        }
    }
}

/// Makes sure `token` (the cluster's, from its files) can join a node:
/// reads its Secret, and when it is not fresh registers a new token for
/// [`TOKEN_TTL`] and keeps it as the cluster's. Returns the decision; the
/// caller re-reads the cluster's secrets when it renewed.
pub async fn ensure_joinable(
    kube: &Client,
    dirs: &Dirs,
    cluster: &str,
    token: &Secret,
) -> Result<TokenDecision, TokenError> {
    let id = token.expose().split('.').next().unwrap_or_default();
    let name = client::token_secret_name(id);
    let api: Api<K8sSecret> = Api::namespaced(kube.clone(), "kube-system");
    let secret = api
        .get_opt(&name)
        .await
        .map_err(|source| TokenError::Read {
            name: name.clone(),
            source,
        })?;
    let decision = decide(secret.as_ref(), time::OffsetDateTime::now_utc());
    if decision.renew() {
        let fresh = pki::generate_bootstrap_token()?;
        client::create_bootstrap_token(kube, fresh.expose(), TOKEN_TTL).await?;
        pki::keep_bootstrap_token(dirs, cluster, &fresh)?;
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(expiration: &str) -> K8sSecret {
        K8sSecret {
            data: Some(
                [
                    ("usage-bootstrap-authentication", "true"),
                    ("expiration", expiration),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn fresh_expired_and_missing_tokens() {
        let now = time::OffsetDateTime::parse(
            "2026-12-02T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        // Made by `up` an hour ago: kept.
        assert_eq!(
            decide(Some(&secret("2026-12-03T11:00:00Z")), now),
            TokenDecision::Fresh
        );
        // A day and more after `up`: its Secret is still there (the token
        // cleaner has not run yet) but it expired.
        assert_eq!(
            decide(Some(&secret("2026-12-02T11:00:00Z")), now),
            TokenDecision::Expired
        );
        // Expiring within the margin counts as expired: a join takes time.
        assert_eq!(
            decide(Some(&secret("2026-12-02T12:09:59Z")), now),
            TokenDecision::Expired
        );
        assert_eq!(
            decide(Some(&secret("2026-12-02T12:10:01Z")), now),
            TokenDecision::Fresh
        );
        // The cleaner deleted it.
        assert_eq!(decide(None, now), TokenDecision::Missing);
        assert!(TokenDecision::Missing.renew() && TokenDecision::Expired.renew());
        assert!(!TokenDecision::Fresh.renew());
    }
}
