//! `devcluster dashboard`'s local web server: one page for one cluster.
//!
//! The page is rendered here from the same status `devcluster status`
//! computes ([`crate::cluster_status`]), the step times of the state file
//! and the provisioning logs. It updates itself through server-sent events
//! (`/events`): the nodes fragment when it changes, and new log lines as
//! steps write them. The events task of a page exists only while that page
//! is open, so an idle server (no page open) does nothing at all: no timer
//! and no polling.
//!
//! Actions (suspend, resume, halt, start, use this context) go to the
//! [`Backend`] the command implements with the CLI's own code, taking the
//! same cluster lock: a running `up` makes them fail with the lock's
//! message. `/k8s/` is the Kubernetes view (Headlamp), proxied through the
//! API server's service proxy; see [`headlamp`].
//!
//! Every request passes [`guard::check`] first. The server is hyper's
//! (already in the dependency tree through reqwest and kube): a handful of
//! routes need no framework.

pub mod guard;
pub mod headlamp;
pub mod page;

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use serde::Serialize;

use crate::cluster_status::ClusterStatus;
use crate::state::ClusterState;

pub use guard::Secrets;

/// One step of a node's timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StepRow {
    pub name: String,
    pub took_ms: Option<u64>,
    pub failed: bool,
}

/// The outcome of the last action, shown on the page.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ActionResult {
    pub ok: bool,
    pub message: String,
}

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub status: ClusterStatus,
    /// Per node, its steps in the order they started.
    pub steps: Vec<(String, Vec<StepRow>)>,
    pub context: String,
    pub context_current: bool,
    pub initialised: bool,
    pub last_action: Option<ActionResult>,
}

/// Each node's step timeline from the state file (`step_times`).
pub fn steps_of(st: &ClusterState) -> Vec<(String, Vec<StepRow>)> {
    st.plan
        .nodes
        .iter()
        .map(|n| {
            let ns = st.node(&n.name);
            let mut rows: Vec<_> = ns.step_times.iter().collect();
            rows.sort_by_key(|(_, t)| t.started_ms);
            let rows = rows
                .into_iter()
                .map(|(name, t)| StepRow {
                    name: name.clone(),
                    took_ms: t.took_ms,
                    failed: ns.failed_step.as_deref() == Some(name),
                })
                .collect();
            (n.name.clone(), rows)
        })
        .collect()
}

/// What the server asks of the cluster; the command implements it with
/// the CLI's code.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The current picture (`last_action` is the server's to fill).
    async fn snapshot(&self) -> Snapshot;
    /// Runs `suspend`, `resume`, `halt`, `start` or `use-context`: the
    /// message to show, or the error's. `None`: no such action.
    async fn act(&self, action: &str) -> Option<Result<String, String>>;
    /// Where the nodes' provisioning logs are (`NODE.log`).
    fn log_dir(&self) -> PathBuf;
    /// The Kubernetes view, Headlamp deployed and a token in hand.
    async fn kube_view(&self) -> Result<Arc<headlamp::View>, String>;
}

/// A response body: whole, or a stream of server-sent events.
pub enum Body {
    Full(Option<Bytes>),
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(body.into())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type.parse().expect("static"));
    h.insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    h.insert("x-content-type-options", "nosniff".parse().expect("static"));
    r
}

fn json(status: StatusCode, v: &impl Serialize) -> Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// The server's state, shared by its connections.
pub struct App {
    secrets: Secrets,
    backend: Arc<dyn Backend>,
    cache: Mutex<Option<Snapshot>>,
    last_action: Mutex<Option<ActionResult>>,
    action_running: tokio::sync::Mutex<()>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl App {
    pub fn new(secrets: Secrets, backend: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(Self {
            secrets,
            backend,
            cache: Mutex::new(None),
            last_action: Mutex::new(None),
            action_running: tokio::sync::Mutex::new(()),
            changed: tokio::sync::watch::channel(0).0,
        })
    }

    /// A fresh snapshot, kept for the next page load.
    pub async fn refresh(&self) -> Snapshot {
        let mut s = self.backend.snapshot().await;
        s.last_action = self.last_action.lock().expect("not poisoned").clone();
        *self.cache.lock().expect("not poisoned") = Some(s.clone());
        s
    }

    fn set_action(&self, a: ActionResult) {
        *self.last_action.lock().expect("not poisoned") = Some(a);
        self.changed.send_modify(|g| *g += 1);
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let admit = guard::check(
            &self.secrets,
            &parts.method,
            &path,
            parts.uri.query(),
            &parts.headers,
        );
        match admit {
            Err(r) => {
                tracing::debug!(%path, status = %r.status, "refused a request");
                Ok(respond(r.status, "text/plain; charset=utf-8", r.message))
            }
            Ok(guard::Admit::SetCookie { to }) => {
                let mut r = respond(StatusCode::SEE_OTHER, "text/plain", "");
                let h = r.headers_mut();
                h.insert(
                    header::LOCATION,
                    to.parse().unwrap_or(http::HeaderValue::from_static("/")),
                );
                let cookie = format!(
                    "{}={}; HttpOnly; SameSite=Strict; Path=/",
                    self.secrets.cookie_name(),
                    self.secrets.secret
                );
                h.insert(header::SET_COOKIE, cookie.parse().expect("hex"));
                Ok(r)
            }
            Ok(guard::Admit::Cookie) => Ok(self.route(parts, body, path).await),
        }
    }

    async fn route(
        self: Arc<Self>,
        parts: http::request::Parts,
        body: Incoming,
        path: String,
    ) -> Response<Body> {
        match (&parts.method, path.as_str()) {
            (&Method::GET, "/") => {
                let cached = self.cache.lock().expect("not poisoned").clone();
                let snap = match cached {
                    Some(s) => s,
                    None => self.refresh().await,
                };
                respond(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    page::page(&snap, &self.secrets.csrf),
                )
            }
            (&Method::GET, "/api/status") => json(StatusCode::OK, &self.refresh().await),
            (&Method::GET, "/events") => self.events(),
            (&Method::POST, p) if p.starts_with("/api/") => self.act(&p["/api/".len()..]).await,
            (_, p) if p == "/k8s" || p.starts_with("/k8s/") => {
                let view = match self.backend.kube_view().await {
                    Ok(v) => v,
                    Err(e) => {
                        return respond(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain; charset=utf-8",
                            e,
                        );
                    }
                };
                let body = match body.collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return respond(StatusCode::BAD_REQUEST, "text/plain", e.to_string()),
                };
                let pq = parts.uri.path_and_query().map_or("/k8s/", |p| p.as_str());
                match view.forward(&parts.method, pq, &parts.headers, body).await {
                    Ok(r) => r.map(|b| Body::Full(Some(b))),
                    Err(e) => respond(StatusCode::BAD_GATEWAY, "text/plain; charset=utf-8", e),
                }
            }
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
        }
    }

    async fn act(self: Arc<Self>, op: &str) -> Response<Body> {
        let Ok(_one) = self.action_running.try_lock() else {
            return json(
                StatusCode::CONFLICT,
                &ActionResult {
                    ok: false,
                    message: "another dashboard action is still running".into(),
                },
            );
        };
        self.set_action(ActionResult {
            ok: true,
            message: format!("{op}: running…"),
        });
        let r = match self.backend.act(op).await {
            None => return respond(StatusCode::NOT_FOUND, "text/plain", "no such action"),
            Some(r) => r,
        };
        let (status, result) = match r {
            Ok(m) => (
                StatusCode::OK,
                ActionResult {
                    ok: true,
                    message: m,
                },
            ),
            Err(m) => (
                StatusCode::CONFLICT,
                ActionResult {
                    ok: false,
                    message: m,
                },
            ),
        };
        self.set_action(result.clone());
        json(status, &result)
    }

    fn events(self: Arc<Self>) -> Response<Body> {
        let (tx, rx) = tokio::sync::mpsc::channel(32);
        let mut changed = self.changed.subscribe();
        tokio::spawn(async move {
            let mut tail = LogTail::new(self.backend.log_dir());
            let mut last = String::new();
            loop {
                let snap = self.refresh().await;
                let html = page::live(&snap);
                if html != last {
                    if tx.send(sse("live", &html)).await.is_err() {
                        return;
                    }
                    last = html;
                }
                let nodes: Vec<String> = snap.status.nodes.iter().map(|n| n.name.clone()).collect();
                // Logs every half second; the nodes every two, or at once
                // after an action changed something.
                for _ in 0..4 {
                    for (node, text) in tail.poll(&nodes) {
                        let data = serde_json::json!({ "node": node, "text": text }).to_string();
                        if tx.send(sse("log", &data)).await.is_err() {
                            return;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        r = changed.changed() => { if r.is_err() { return; } break; }
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        let mut r = Response::new(Body::Stream(rx));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            "text/event-stream".parse().expect("static"),
        );
        h.insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
        r
    }
}

/// One server-sent event (multi-line data as several `data:` lines).
pub fn sse(event: &str, data: &str) -> Bytes {
    let mut o = format!("event: {event}\n");
    for line in data.split('\n') {
        o.push_str("data: ");
        o.push_str(line.trim_end_matches('\r'));
        o.push('\n');
    }
    o.push('\n');
    Bytes::from(o)
}

/// Follows the nodes' log files: whole lines only, the last 64 KiB of a
/// file at first.
pub struct LogTail {
    dir: PathBuf,
    files: std::collections::BTreeMap<String, (u64, Vec<u8>)>,
}

const BACKLOG: u64 = 64 * 1024;

impl LogTail {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Default::default(),
        }
    }

    /// New complete lines per node since the last call.
    pub fn poll(&mut self, nodes: &[String]) -> Vec<(String, String)> {
        use std::io::{Read, Seek, SeekFrom};
        let mut out = Vec::new();
        for node in nodes {
            let path = self.dir.join(format!("{node}.log"));
            let Ok(mut f) = std::fs::File::open(&path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let first = !self.files.contains_key(node);
            let (pos, partial) = self
                .files
                .entry(node.clone())
                .or_insert_with(|| (len.saturating_sub(BACKLOG), Vec::new()));
            if len < *pos {
                *pos = 0;
                partial.clear();
            }
            if len == *pos || f.seek(SeekFrom::Start(*pos)).is_err() {
                continue;
            }
            let mut buf = Vec::new();
            if f.take(len - *pos).read_to_end(&mut buf).is_err() {
                continue;
            }
            let skip_to_line = first && *pos > 0;
            *pos += buf.len() as u64;
            partial.extend_from_slice(&buf);
            if skip_to_line {
                match partial.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        partial.drain(..=i);
                    }
                    None => continue,
                }
            }
            if let Some(end) = partial.iter().rposition(|&b| b == b'\n') {
                let lines: Vec<u8> = partial.drain(..=end).collect();
                out.push((node.clone(), String::from_utf8_lossy(&lines).into_owned()));
            }
        }
        out
    }
}

/// Serves until `shutdown` resolves. The listener must be on the loopback.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "refusing to serve on {addr}: not the loopback"
        )));
    }
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            () = &mut shutdown => return Ok(()),
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| app.clone().handle(req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("dashboard connection: {e}");
            }
        });
    }
}
