//! A small HTTP/1.1 file server on 127.0.0.1 for download tests and the
//! download benchmark: `Range: bytes=N-` with `If-Range` (ETag or
//! Last-Modified), 416 past the end, and knobs to misbehave: ignore ranges,
//! answer a fixed status, fail the first requests with 503, cut the
//! connection after some bytes, send slowly. It counts the body bytes it
//! serves and logs each request, so tests can prove what was re-fetched.
//!
//! It runs on its own thread with its own tokio runtime, so sync tests,
//! async tests and child processes can all use it; it stops when dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One file the server serves, and how.
#[derive(Clone, Default)]
pub struct Resource {
    pub body: Arc<Vec<u8>>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Honour `Range` (else always 200 with the whole body).
    pub ranges: bool,
    /// Answer this status (with a short text body) instead of the file.
    pub status: Option<u16>,
    /// Answer 503 to this many requests first.
    pub fail_first: u32,
    /// Close the connection after this many body bytes, once.
    pub cut_after: Option<u64>,
    /// Sleep this long after every 64 KiB sent.
    pub throttle: Option<Duration>,
}

impl Resource {
    /// A well-behaved file: ranges honoured, a strong ETag.
    pub fn new(body: Vec<u8>) -> Self {
        Self {
            body: Arc::new(body),
            etag: Some("\"v1\"".into()),
            last_modified: Some("Sun, 05 Jul 2026 10:00:00 GMT".into()),
            ranges: true,
            ..Default::default()
        }
    }
}

/// What the server saw and did for one request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub status: u16,
    pub body_bytes: u64,
}

#[derive(Default)]
struct State {
    resources: HashMap<String, Resource>,
    log: Vec<Logged>,
}

pub struct Server {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let accept = async {
                    loop {
                        let Ok((sock, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = sock.set_nodelay(true);
                        tokio::spawn(serve(sock, st.clone()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn put(&self, path: &str, r: Resource) {
        self.state.lock().unwrap().resources.insert(path.into(), r);
    }

    pub fn update(&self, path: &str, f: impl FnOnce(&mut Resource)) {
        let mut st = self.state.lock().unwrap();
        f(st.resources.get_mut(path).expect("no such resource"));
    }

    /// Body bytes served so far (all paths).
    pub fn served(&self) -> u64 {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .map(|l| l.body_bytes)
            .sum()
    }

    /// Body bytes served for `path`.
    pub fn served_for(&self, path: &str) -> u64 {
        self.log_for(path).iter().map(|l| l.body_bytes).sum()
    }

    pub fn log_for(&self, path: &str) -> Vec<Logged> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.path == path)
            .cloned()
            .collect()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(mut sock: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let range = headers.get("range").cloned();
    let if_range = headers.get("if-range").cloned();

    // Decide under the lock; send without it.
    let resource = {
        let mut st = state.lock().unwrap();
        match st.resources.get_mut(&path) {
            None => None,
            Some(r) => {
                let snapshot = r.clone();
                if r.fail_first > 0 {
                    r.fail_first -= 1;
                }
                r.cut_after = None;
                Some(snapshot)
            }
        }
    };
    let mut log = Logged {
        path: path.clone(),
        range: range.clone(),
        if_range: if_range.clone(),
        status: 0,
        body_bytes: 0,
    };
    let Some(r) = resource else {
        log.status = 404;
        let _ = reply_text(&mut sock, 404, "Not Found").await;
        state.lock().unwrap().log.push(log);
        return;
    };
    if let Some(status) = r.status {
        log.status = status;
        let _ = reply_text(&mut sock, status, "Status").await;
        state.lock().unwrap().log.push(log);
        return;
    }
    if r.fail_first > 0 {
        log.status = 503;
        let _ = reply_text(&mut sock, 503, "Service Unavailable").await;
        state.lock().unwrap().log.push(log);
        return;
    }
    let len = r.body.len() as u64;
    let validator_ok = match &if_range {
        None => true,
        Some(v) => Some(v) == r.etag.as_ref() || Some(v) == r.last_modified.as_ref(),
    };
    let start = range
        .as_deref()
        .filter(|_| r.ranges && validator_ok)
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok());
    let mut head = String::new();
    let (status, from) = match start {
        Some(s) if s >= len => {
            head.push_str(&format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n"
            ));
            (416, len)
        }
        Some(s) => {
            head.push_str(&format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\n",
                len - 1,
                len - s
            ));
            (206, s)
        }
        None => {
            head.push_str(&format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n"));
            (200, 0)
        }
    };
    if let Some(e) = &r.etag {
        head.push_str(&format!("ETag: {e}\r\n"));
    }
    if let Some(m) = &r.last_modified {
        head.push_str(&format!("Last-Modified: {m}\r\n"));
    }
    if r.ranges {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    head.push_str("Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
    log.status = status;
    if sock.write_all(head.as_bytes()).await.is_err() || method == "HEAD" || status == 416 {
        state.lock().unwrap().log.push(log);
        return;
    }
    let end = match r.cut_after {
        Some(c) => (from + c).min(len),
        None => len,
    };
    let chunk = if r.throttle.is_some() {
        64 << 10
    } else {
        1 << 20
    };
    let mut at = from;
    while at < end {
        let next = (at + chunk).min(end);
        if sock
            .write_all(&r.body[at as usize..next as usize])
            .await
            .is_err()
        {
            break;
        }
        log.body_bytes += next - at;
        at = next;
        if let Some(d) = r.throttle {
            tokio::time::sleep(d).await;
        }
    }
    let _ = sock.flush().await;
    state.lock().unwrap().log.push(log);
    // Dropping the socket closes the connection (cut or not).
}

async fn reply_text(
    sock: &mut tokio::net::TcpStream,
    status: u16,
    text: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    sock.write_all(head.as_bytes()).await
}

/// Deterministic pseudo-random bytes (xorshift), fast to make in bulk.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}
