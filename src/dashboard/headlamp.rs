//! The dashboard's Kubernetes view: Headlamp (kubernetes-sigs/headlamp,
//! what the archived Kubernetes Dashboard points to), in the cluster,
//! reached through the dashboard's own server.
//!
//! - **Deployed if missing**: its own namespace, a pinned image, two
//!   ServiceAccounts: `headlamp` runs the pod and is bound to nothing
//!   (Headlamp acts with the user's token, not its own), `headlamp-user`
//!   is the identity the view logs in as, bound to `cluster-admin`: the
//!   dashboard's user already holds the admin kubeconfig, and Headlamp is
//!   an editor of everything.
//! - **Reached** through the API server's service proxy
//!   (`/api/v1/namespaces/NS/services/http:headlamp:80/proxy/...`), with
//!   the admin client devcluster already has: no port-forward, no second
//!   listener. Headlamp runs with `-base-url /k8s`, so its pages and the
//!   dashboard's `/k8s/` line up path for path.
//! - **Logged in without pasting a token.** Headlamp reads a user's token
//!   from the cookie `headlamp-auth-<cluster>.<n>` (`backend/pkg/auth/
//!   cookies.go`, `GetTokenFromCookie`; its `/clusters/{c}/set-token`
//!   route sets it) and turns it into the Authorization header of its
//!   requests to the API server. The API server strips a client's
//!   Authorization header once it has authenticated it, so the token
//!   cannot travel as a header through the service proxy; a Cookie header
//!   does. So the dashboard adds that cookie to every request it forwards:
//!   the browser never sees the token, and nothing is pasted. The
//!   in-cluster context is named by `-in-cluster-context-name`, so the
//!   cookie's name is known.
//! - **The token** comes from the TokenRequest API for `headlamp-user`,
//!   10 minutes (the API's minimum), kept in memory only, renewed when
//!   close to expiry, and never logged (the [`View`]'s Debug hides it).
//!
//! Limits: bodies are forwarded whole (no streaming, no WebSocket
//! upgrade), so Headlamp's live watches fall back to its polling.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use kube::api::PostParams;
use kube::{Api, Client};

pub const NAMESPACE: &str = "devcluster-headlamp";
/// Pinned by tag: Headlamp's own chart (`charts/headlamp`, appVersion
/// 0.45.0) uses the same image. No registry is reachable here, so its
/// digest was not read; pin it by digest where one is.
pub const IMAGE: &str = "ghcr.io/headlamp-k8s/headlamp:v0.45.0";
pub const BASE_URL: &str = "/k8s";
/// Headlamp's name for the cluster it runs in.
pub const CLUSTER: &str = "devcluster";
pub const USER_ACCOUNT: &str = "headlamp-user";
pub const TOKEN_TTL: Duration = Duration::from_secs(600);
/// Headlamp splits cookies at 3800 bytes (`cookies.go`, chunkSize).
const COOKIE_CHUNK: usize = 3800;

/// The objects Headlamp needs, as one multi-document manifest.
pub fn manifest() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: headlamp
  namespace: {NAMESPACE}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {USER_ACCOUNT}
  namespace: {NAMESPACE}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: devcluster-headlamp-user
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
- kind: ServiceAccount
  name: {USER_ACCOUNT}
  namespace: {NAMESPACE}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: headlamp
  namespace: {NAMESPACE}
  labels:
    app.kubernetes.io/name: headlamp
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: headlamp
  template:
    metadata:
      labels:
        app.kubernetes.io/name: headlamp
    spec:
      serviceAccountName: headlamp
      nodeSelector:
        kubernetes.io/os: linux
      securityContext:
        runAsNonRoot: true
        runAsUser: 100
        runAsGroup: 101
      containers:
      - name: headlamp
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        args:
        - -in-cluster
        - -in-cluster-context-name={CLUSTER}
        - -base-url={BASE_URL}
        - -plugins-dir=/headlamp/plugins
        ports:
        - name: http
          containerPort: 4466
        readinessProbe:
          httpGet:
            path: {BASE_URL}/
            port: http
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            drop: ["ALL"]
---
apiVersion: v1
kind: Service
metadata:
  name: headlamp
  namespace: {NAMESPACE}
spec:
  selector:
    app.kubernetes.io/name: headlamp
  ports:
  - name: http
    port: 80
    targetPort: http
"#
    )
}

/// The TokenRequest for the view's identity: short-lived, for the API
/// server's default audience.
pub fn token_request() -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(TOKEN_TTL.as_secs() as i64),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The API server path that reaches Headlamp for a dashboard path (which
/// starts with `/k8s`).
pub fn proxy_path(path_and_query: &str) -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/services/http:headlamp:80/proxy{path_and_query}")
}

/// The cookie header that logs a request in as `token`.
pub fn auth_cookie(token: &str) -> String {
    token
        .as_bytes()
        .chunks(COOKIE_CHUNK)
        .enumerate()
        .map(|(i, c)| format!("headlamp-auth-{CLUSTER}.{i}={}", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum HeadlampError {
    #[error("cannot deploy Headlamp")]
    Deploy(#[source] crate::kube::client::KubeError),
    #[error("cannot check for Headlamp's deployment")]
    Check(#[source] kube::Error),
    #[error("the TokenRequest for {NAMESPACE}/{USER_ACCOUNT} failed")]
    Token(#[source] kube::Error),
    #[error("the TokenRequest for {NAMESPACE}/{USER_ACCOUNT} returned no token")]
    NoToken,
}

/// Applies [`manifest`] unless Headlamp's Deployment exists. True when it
/// applied.
pub async fn ensure_deployed(client: &Client) -> Result<bool, HeadlampError> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NAMESPACE);
    if api
        .get_opt("headlamp")
        .await
        .map_err(HeadlampError::Check)?
        .is_some()
    {
        return Ok(false);
    }
    crate::kube::client::apply_manifests(client, &manifest())
        .await
        .map_err(HeadlampError::Deploy)?;
    Ok(true)
}

/// A fresh token for [`USER_ACCOUNT`] and when to renew it.
async fn request_token(client: &Client) -> Result<(String, Instant), HeadlampError> {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), NAMESPACE);
    let asked = Instant::now();
    let tr = api
        .create_token_request(USER_ACCOUNT, &PostParams::default(), &token_request())
        .await
        .map_err(HeadlampError::Token)?;
    let token = tr
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or(HeadlampError::NoToken)?;
    // Renew a minute before the API server's expiry.
    Ok((token, asked + TOKEN_TTL - Duration::from_secs(60)))
}

/// The Kubernetes view: a client of the API server and the view's token.
pub struct View {
    client: Client,
    token: tokio::sync::Mutex<(String, Instant)>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("View { token: <hidden> }")
    }
}

/// Request headers passed on to Headlamp (no cookies of ours, no auth).
const PASS_REQUEST: [header::HeaderName; 5] = [
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::CONTENT_TYPE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
];
const PASS_RESPONSE: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CONTENT_ENCODING,
];

impl View {
    /// Asks for the first token.
    pub async fn connect(client: Client) -> Result<Self, HeadlampError> {
        let token = request_token(&client).await?;
        Ok(Self {
            client,
            token: tokio::sync::Mutex::new(token),
        })
    }

    /// Forwards one request of the browser to Headlamp, logged in.
    pub async fn forward(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Bytes>, String> {
        let cookie = {
            let mut t = self.token.lock().await;
            if Instant::now() >= t.1 {
                *t = request_token(&self.client)
                    .await
                    .map_err(|e| crate::error::one_line(&e))?;
            }
            auth_cookie(&t.0)
        };
        let target = proxy_path(path_and_query);
        let mut req = http::Request::builder().method(method.clone()).uri(&target);
        for name in PASS_REQUEST {
            for v in headers.get_all(&name) {
                req = req.header(&name, v);
            }
        }
        let req = req
            .header(header::COOKIE, cookie)
            .body(kube::client::Body::from(body.to_vec()))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.send(req))
            .await
            .map_err(|_| "the API server's service proxy did not answer within 30 s".to_string())?
            .map_err(|e| {
                format!(
                    "the API server's service proxy: {}",
                    crate::error::one_line(&e)
                )
            })?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(30), body.collect_bytes())
            .await
            .map_err(|_| "Headlamp's answer did not finish within 30 s".to_string())?
            .map_err(|e| e.to_string())?;
        tracing::debug!(path = %path_and_query, status = %parts.status, "forwarded to Headlamp");
        let mut out = Response::new(body);
        *out.status_mut() = parts.status;
        for name in PASS_RESPONSE {
            for v in parts.headers.get_all(&name) {
                out.headers_mut().append(&name, v.clone());
            }
        }
        if parts.status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::debug!("Headlamp is not ready yet (its pod may still be pulling {IMAGE})");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
