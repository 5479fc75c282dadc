//! Headlamp's manifest and token request, and the Kubernetes view's path
//! through the dashboard server, against a local HTTP server that stands
//! in for the API server (its TokenRequest endpoint and its service proxy):
//! no live API server or Headlamp runs here.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;

use super::*;

#[test]
fn manifest_snapshot() {
    let m = manifest();
    insta::assert_snapshot!(m);
    let objs = crate::kube::client::parse_manifests(&m).unwrap();
    let kinds: Vec<_> = objs.iter().map(|o| o.describe()).collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    // The pod's account is bound to nothing; only the view's identity is.
    assert!(m.contains("serviceAccountName: headlamp\n"));
    assert_eq!(m.matches("name: cluster-admin").count(), 1);
    assert!(m.contains(&format!("image: {IMAGE}")) && !IMAGE.ends_with(":latest"));
}

#[test]
fn token_request_is_short_lived() {
    let tr = token_request();
    assert_eq!(tr.spec.expiration_seconds, Some(600));
    // 600 s is the smallest TTL the API server accepts.
    assert!(TOKEN_TTL.as_secs() >= 600 && TOKEN_TTL.as_secs() <= 3600);
    insta::assert_json_snapshot!(tr);
}

#[test]
fn long_tokens_are_split_as_headlamp_reads_them() {
    let t = "a".repeat(3800 + 5);
    let c = auth_cookie(&t);
    assert!(c.starts_with("headlamp-auth-devcluster.0=aaa"));
    assert!(c.ends_with("; headlamp-auth-devcluster.1=aaaaa"), "{c}");
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    cookie: Option<String>,
    authorization: Option<String>,
}

const TOKEN: &str = "eyJstand-in-token-5d41402abc4b2a76b9719d911017c592";

/// The stand-in for the API server: answers the TokenRequest and the
/// service proxy path, and records what it was sent.
async fn stand_in_api_server() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .map(|v| v.to_str().unwrap().to_string())
                        };
                        let path = req.uri().path_and_query().unwrap().to_string();
                        log.lock().unwrap().push(Seen {
                            method: req.method().to_string(),
                            path: path.clone(),
                            cookie: h("cookie"),
                            authorization: h("authorization"),
                        });
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let token_path = format!(
                            "/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{USER_ACCOUNT}/token"
                        );
                        let (status, ct, text) = if path.starts_with(&token_path) {
                            let asked: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            let ttl = asked["spec"]["expirationSeconds"].clone();
                            (200, "application/json", serde_json::json!({
                                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": ttl},
                                "status": {"token": TOKEN, "expirationTimestamp": "2026-12-02T03:00:00Z"}
                            }).to_string())
                        } else if path.starts_with(&proxy_path("/k8s/")) {
                            (
                                200,
                                "text/html",
                                format!("<title>Headlamp (stand-in)</title>{path}"),
                            )
                        } else {
                            (404, "text/plain", "not found".to_string())
                        };
                        let mut r = Response::new(Full::new(Bytes::from(text)));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        r.headers_mut().insert("content-type", ct.parse().unwrap());
                        r.headers_mut()
                            .insert("set-cookie", "from-upstream=1".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

/// Captures every tracing line (at TRACE) written while `f` runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct TestBackend {
    view: Arc<View>,
    dir: std::path::PathBuf,
}

#[async_trait::async_trait]
impl crate::dashboard::Backend for TestBackend {
    async fn snapshot(&self) -> crate::dashboard::Snapshot {
        unreachable!("the Kubernetes view does not need the cluster's status")
    }
    async fn act(&self, _: &str) -> Option<Result<String, String>> {
        None
    }
    fn log_dir(&self) -> std::path::PathBuf {
        self.dir.clone()
    }
    async fn kube_view(&self) -> Result<Arc<View>, String> {
        Ok(self.view.clone())
    }
}

#[tokio::test]
async fn the_view_through_the_dashboard_is_logged_in_and_the_token_stays_hidden() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (api, seen) = stand_in_api_server().await;
    let client = kube::Client::try_from(kube::Config::new(api.parse().unwrap())).unwrap();
    let view = Arc::new(View::connect(client).await.unwrap());
    assert!(!format!("{view:?}").contains(TOKEN));

    // The dashboard server in front of it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let secrets = crate::dashboard::Secrets::generate(port).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let app = crate::dashboard::App::new(
        secrets.clone(),
        Arc::new(TestBackend {
            view,
            dir: tmp.path().into(),
        }),
    );
    tokio::spawn(crate::dashboard::serve(
        listener,
        app,
        std::future::pending(),
    ));

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    // Without the secret: refused, nothing forwarded.
    let r = http.get(format!("{base}/k8s/")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only the TokenRequest so far"
    );

    let cookie = format!("{}={}", secrets.cookie_name(), secrets.secret);
    let r = http
        .get(format!("{base}/k8s/c/devcluster/pods?x=1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "upstream cookies are not passed on"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("Headlamp (stand-in)"), "{text}");
    assert!(!text.contains(TOKEN));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].method, "POST");
    let forwarded = &seen[1];
    assert_eq!(
        forwarded.path,
        "/api/v1/namespaces/devcluster-headlamp/services/http:headlamp:80/proxy/k8s/c/devcluster/pods?x=1"
    );
    // Logged in by Headlamp's own cookie; none of the dashboard's secrets
    // reach the cluster.
    assert_eq!(
        forwarded.cookie.as_deref(),
        Some(format!("headlamp-auth-devcluster.0={TOKEN}").as_str())
    );
    assert_eq!(forwarded.authorization, None);
    assert!(
        !forwarded
            .cookie
            .as_deref()
            .unwrap()
            .contains(&secrets.secret)
    );

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("forwarded to Headlamp"),
        "the capture works: {logs}"
    );
    for line in logs.lines() {
        assert!(!line.contains(TOKEN), "a log line holds the token: {line}");
    }
}
