//! Verified, resumable downloads.
//!
//! [`fetch`] streams a URL into `DEST.part`, computing the SHA-256 while it
//! writes (on a blocking thread, so hashing and disk overlap with the
//! network), and renames the part to `DEST` only when the hash is the
//! expected one. Beside the part, `DEST.part.json` keeps the server's
//! validators (ETag, Last-Modified). A later attempt — a retry, or the next
//! run after a kill — sends `Range: bytes=N-` with `If-Range`: 206 appends
//! (after re-hashing the N bytes on disk), 200 starts over (the file
//! changed, or the server ignores ranges), 416 verifies what is there.
//! Transient failures (connection errors, timeouts, a cut body, 5xx) are
//! retried with exponential backoff, each retry resuming; 4xx are not. A
//! checksum mismatch deletes the part. Proxies come from the environment
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`) and, on Windows
//! and macOS, the system settings.
//!
//! Progress goes through [`Progress`], which commands implement; this module
//! never prints.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, IF_RANGE, LAST_MODIFIED, RANGE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ImageError;
use crate::fsutil::{Access, atomic_write};

/// Where a download reports what it does. `label` names the image.
pub trait Progress: Send + Sync {
    /// Bytes start flowing from `url`, from `offset` (a resumed download)
    /// of `total` when known.
    fn start(&self, label: &str, url: &str, offset: u64, total: Option<u64>) {
        let _ = (label, url, offset, total);
    }
    /// `bytes` more arrived.
    fn advance(&self, label: &str, bytes: u64) {
        let _ = (label, bytes);
    }
    /// The file is complete and verified.
    fn finish(&self, label: &str) {
        let _ = label;
    }
    /// Something a person should know: a retry, a wait, a conversion.
    fn note(&self, label: &str, message: &str) {
        let _ = (label, message);
    }
}

/// Reports nothing (tests, library callers without a terminal).
pub struct NoProgress;
impl Progress for NoProgress {}

/// Retry and timeout settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubled each time up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// Longest silence while reading (a stalled connection is retried).
    pub read_timeout: Duration,
    /// Use proxies from the environment and the system (tests on loopback
    /// turn this off).
    pub proxies: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            proxies: true,
        }
    }
}

/// An HTTP client with rustls (aws-lc-rs, the binary's one crypto
/// provider), the platform's roots, and proxies from the environment.
pub fn client(opts: &Options) -> Result<reqwest::Client, ImageError> {
    // Library callers (tests) may not have installed it yet; the binary has.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("devcluster/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout);
    if !opts.proxies {
        b = b.no_proxy();
    }
    b.build().map_err(ImageError::Client)
}

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub url: &'a str,
    /// Expected sha256, lowercase hex.
    pub sha256: &'a str,
    /// Where the verified file goes.
    pub dest: &'a Path,
    /// Expected size, when known (progress without Content-Length).
    pub size: Option<u64>,
    /// For progress and messages: the image name.
    pub label: &'a str,
}

/// What a fetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Body bytes received over the network by this call (all attempts).
    pub fetched: u64,
    /// Bytes already on disk that the last attempt resumed after.
    pub resumed_from: u64,
    /// Attempts made.
    pub attempts: u32,
}

/// `DEST.part`: the download in progress.
pub fn part_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".part")
}

/// `DEST.part.json`: the validators of the part.
pub fn sidecar_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".part.json")
}

pub(crate) fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sidecar {
    url: String,
    sha256: String,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    last_modified: Option<String>,
}

impl Sidecar {
    /// What `If-Range` may carry: a strong ETag, else Last-Modified.
    fn validator(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }
}

/// Downloads `req.url` to `req.dest`, verified; resumes a part left by an
/// earlier attempt. `dest` is only ever the complete, verified file.
pub async fn fetch(
    client: &reqwest::Client,
    req: &Request<'_>,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Outcome, ImageError> {
    if let Some(path) = req.url.strip_prefix("file://") {
        return copy_local(Path::new(path), req, progress);
    }
    let mut out = Outcome::default();
    let mut delay = opts.backoff;
    loop {
        out.attempts += 1;
        match attempt(client, req, progress, &mut out).await {
            Ok(()) => return Ok(out),
            Err(e) if e.is_transient() && out.attempts < opts.attempts.max(1) => {
                tracing::debug!("download of {} failed: {e:?}", req.url);
                progress.note(req.label, &retry_note(&e, delay, out.attempts, opts));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(opts.max_backoff);
            }
            Err(e) => return Err(e),
        }
    }
}

/// `download failed (connection refused); retrying in 2s (attempt 3 of 5)`:
/// the innermost cause, which says what happened.
fn retry_note(e: &ImageError, delay: Duration, done: u32, opts: &Options) -> String {
    let what = match e {
        ImageError::Http { status, .. } => format!("the server answered {status}"),
        ImageError::Protocol { message, .. } => message.clone(),
        other => {
            let mut last: &dyn std::error::Error = other;
            while let Some(c) = last.source() {
                last = c;
            }
            last.to_string()
        }
    };
    format!(
        "download failed ({what}); retrying in {delay:.0?} (attempt {} of {})",
        done + 1,
        opts.attempts
    )
}

async fn attempt(
    client: &reqwest::Client,
    req: &Request<'_>,
    progress: &dyn Progress,
    out: &mut Outcome,
) -> Result<(), ImageError> {
    let part = part_path(req.dest);
    let side = sidecar_path(req.dest);
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { what, path, source }
    };
    if let Some(parent) = req.dest.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    }
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    // Resume only a part of this very file from this very URL, with a
    // validator that tells whether the server's file is still the same.
    let validator = (have > 0)
        .then(|| read_sidecar(&side))
        .flatten()
        .filter(|s| s.url == req.url && s.sha256 == req.sha256)
        .and_then(|s| s.validator().map(str::to_string));
    let mut rb = client.get(req.url);
    if let Some(v) = &validator {
        rb = rb
            .header(RANGE, format!("bytes={have}-"))
            .header(IF_RANGE, v.as_str());
    }
    let mut resp = rb.send().await.map_err(|source| ImageError::Request {
        url: req.url.to_string(),
        source,
    })?;
    let status = resp.status();
    let protocol = |message: String| ImageError::Protocol {
        url: req.url.to_string(),
        message,
    };
    let (offset, total) = match status {
        StatusCode::PARTIAL_CONTENT if validator.is_some() => {
            let Some((start, total)) = content_range(resp.headers()) else {
                discard(&part, &side);
                return Err(protocol(
                    "a partial answer without a usable Content-Range; starting over".into(),
                ));
            };
            if start != have {
                discard(&part, &side);
                return Err(protocol(format!(
                    "the server resumed at byte {start} instead of {have}; starting over"
                )));
            }
            (have, total)
        }
        StatusCode::OK => {
            // A fresh start: the server ignored the range, or the file
            // changed since the part was written (If-Range did not match).
            let sidecar = Sidecar {
                url: req.url.to_string(),
                sha256: req.sha256.to_string(),
                etag: header_str(resp.headers(), ETAG),
                last_modified: header_str(resp.headers(), LAST_MODIFIED),
            };
            let text = serde_json::to_vec(&sidecar).unwrap_or_default();
            atomic_write(&side, &text, Access::Normal).map_err(io("cannot write", &side))?;
            (0, resp.content_length())
        }
        StatusCode::RANGE_NOT_SATISFIABLE if validator.is_some() => {
            // Nothing after byte N: the part may be the whole file.
            progress.note(req.label, "verifying the download already on disk");
            let actual = hash_prefix(&part, Sha256::new()).map_err(io("cannot read", &part))?;
            let actual = format!("{:x}", actual.finalize());
            if actual == req.sha256 {
                out.resumed_from = have;
                return complete(&part, &side, req, progress);
            }
            discard(&part, &side);
            return Err(protocol(
                "the server has no bytes after those already downloaded, and they do not match; starting over".into(),
            ));
        }
        StatusCode::PARTIAL_CONTENT => {
            discard(&part, &side);
            return Err(protocol("a partial answer to a full request".into()));
        }
        s => {
            return Err(ImageError::Http {
                url: req.url.to_string(),
                status: s,
            });
        }
    };
    let hasher = if offset > 0 {
        progress.note(
            req.label,
            &format!("resuming after {} already downloaded", human_bytes(offset)),
        );
        hash_prefix(&part, Sha256::new()).map_err(io("cannot read", &part))?
    } else {
        Sha256::new()
    };
    let file = if offset > 0 {
        OpenOptions::new().append(true).open(&part)
    } else {
        File::create(&part)
    }
    .map_err(io("cannot write", &part))?;
    out.resumed_from = offset;
    progress.start(req.label, req.url, offset, total.or(req.size));

    // The network on this task; hashing and writing on a blocking thread.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let writer = tokio::task::spawn_blocking(move || write_all(file, hasher, rx));
    let mut body_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let n = chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed: its error comes below
                }
                out.fetched += n;
                progress.advance(req.label, n);
            }
            Ok(None) => break,
            Err(e) => {
                body_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let (hasher, written) = writer
        .await
        .map_err(|e| io("cannot write", &part)(std::io::Error::other(e)))?
        .map_err(io("cannot write", &part))?;
    if let Some(source) = body_error {
        // Transient: the part and its validators stay for the next attempt.
        return Err(ImageError::Request {
            url: req.url.to_string(),
            source,
        });
    }
    let len = offset + written;
    if let Some(t) = total
        && len != t
    {
        return Err(protocol(format!(
            "the connection closed after {len} of {t} bytes"
        )));
    }
    let actual = format!("{:x}", hasher.finalize());
    if actual != req.sha256 {
        discard(&part, &side);
        return Err(ImageError::Checksum {
            url: req.url.to_string(),
            expected: req.sha256.to_string(),
            actual,
        });
    }
    complete(&part, &side, req, progress)
}

fn complete(
    part: &Path,
    side: &Path,
    req: &Request<'_>,
    progress: &dyn Progress,
) -> Result<(), ImageError> {
    rename_with_retry(part, req.dest).map_err(|source| ImageError::Io {
        what: "cannot move the verified download to",
        path: req.dest.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(side);
    progress.finish(req.label);
    Ok(())
}

/// Hashes and appends what arrives, then syncs the file (the cache trusts a
/// file once it has its final name).
fn write_all<B: AsRef<[u8]>>(
    file: File,
    mut hasher: Sha256,
    mut rx: tokio::sync::mpsc::Receiver<B>,
) -> std::io::Result<(Sha256, u64)> {
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut n = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        let chunk = chunk.as_ref();
        hasher.update(chunk);
        w.write_all(chunk)?;
        n += chunk.len() as u64;
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_data()?;
    Ok((hasher, n))
}

fn hash_prefix(path: &Path, mut hasher: Sha256) -> std::io::Result<Sha256> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}

fn discard(part: &Path, side: &Path) {
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(side);
}

fn read_sidecar(path: &Path) -> Option<Sidecar> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn header_str(h: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Content-Range: bytes START-END/TOTAL` -> (START, TOTAL when known).
fn content_range(h: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = h.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let total = total.trim().parse().ok();
    Some((start, total))
}

/// Windows may hold a fresh file open briefly (virus scanners): retry.
fn rename_with_retry(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::rename(from, to) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100 * tries));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A `file://` artifact: copied with the same verification (an air-gapped
/// copy on a USB disk, a mirror on a share).
pub fn copy_local(
    src: &Path,
    req: &Request<'_>,
    progress: &dyn Progress,
) -> Result<Outcome, ImageError> {
    let part = part_path(req.dest);
    let side = sidecar_path(req.dest);
    let rd = |source| ImageError::Io {
        what: "cannot read",
        path: src.to_path_buf(),
        source,
    };
    let wr = |source| ImageError::Io {
        what: "cannot write",
        path: part.clone(),
        source,
    };
    if !src.is_file() {
        return Err(ImageError::Missing {
            path: src.to_path_buf(),
        });
    }
    if let Some(parent) = req.dest.parent() {
        std::fs::create_dir_all(parent).map_err(wr)?;
    }
    let mut input = File::open(src).map_err(rd)?;
    let total = input.metadata().map(|m| m.len()).ok();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&part).map_err(wr)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    progress.start(req.label, req.url, 0, total);
    let mut copied = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(rd)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(wr)?;
        copied += n as u64;
        progress.advance(req.label, n as u64);
    }
    let f = w.into_inner().map_err(|e| wr(e.into_error()))?;
    f.sync_data().map_err(wr)?;
    drop(f);
    let actual = format!("{:x}", hasher.finalize());
    if actual != req.sha256 {
        discard(&part, &side);
        return Err(ImageError::Checksum {
            url: req.url.to_string(),
            expected: req.sha256.to_string(),
            actual,
        });
    }
    complete(&part, &side, req, progress)?;
    Ok(Outcome {
        fetched: copied,
        resumed_from: 0,
        attempts: 1,
    })
}

/// A small text file (a checksum list), with the same retries.
pub async fn fetch_text(
    client: &reqwest::Client,
    url: &str,
    opts: &Options,
    progress: &dyn Progress,
    label: &str,
) -> Result<String, ImageError> {
    const LIMIT: usize = 8 << 20;
    if let Some(path) = url.strip_prefix("file://") {
        return read_local_text(Path::new(path));
    }
    let mut attempts = 0;
    let mut delay = opts.backoff;
    loop {
        attempts += 1;
        let r = async {
            let resp = client
                .get(url)
                .send()
                .await
                .map_err(|source| ImageError::Request {
                    url: url.to_string(),
                    source,
                })?;
            if !resp.status().is_success() {
                return Err(ImageError::Http {
                    url: url.to_string(),
                    status: resp.status(),
                });
            }
            let bytes = resp.bytes().await.map_err(|source| ImageError::Request {
                url: url.to_string(),
                source,
            })?;
            if bytes.len() > LIMIT {
                return Err(ImageError::Protocol {
                    url: url.to_string(),
                    message: format!("a checksum file larger than {}", human_bytes(LIMIT as u64)),
                });
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        .await;
        match r {
            Err(e) if e.is_transient() && attempts < opts.attempts.max(1) => {
                progress.note(label, &retry_note(&e, delay, attempts, opts));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(opts.max_backoff);
            }
            r => return r,
        }
    }
}

/// A local checksum list.
pub fn read_local_text(path: &Path) -> Result<String, ImageError> {
    std::fs::read_to_string(path).map_err(|source| ImageError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    })
}

/// The sha256 of `name` in a checksum list: GNU (`HEX  name`, `HEX *name`)
/// or BSD (`SHA256 (name) = HEX`) lines.
pub fn parse_sums(text: &str, name: &str) -> Option<String> {
    let is_hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let same = |n: &str| n == name || n.strip_prefix("./") == Some(name);
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("SHA256 (")
            && let Some((n, hex)) = rest.split_once(") = ")
            && same(n)
            && is_hex(hex.trim())
        {
            return Some(hex.trim().to_ascii_lowercase());
        }
        if let Some((hex, n)) = line.split_once(char::is_whitespace) {
            let n = n.trim_start();
            let n = n.strip_prefix('*').unwrap_or(n);
            if is_hex(hex) && same(n) {
                return Some(hex.to_ascii_lowercase());
            }
        }
    }
    None
}

/// `1.5 GiB`, `300.0 MiB`, `12 KiB`, `10 B`.
pub fn human_bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f >= K * K * K {
        format!("{:.1} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.0} KiB", f / K)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_lists() {
        let h = "ffe6203da54deeb6db5d2a98a83f9ec8e55f149d3f7ba622e1abe5fa966ee3d6";
        let gnu = format!(
            "{} *ubuntu-24.04-server-cloudimg-amd64.vmdk\n{h} *ubuntu-24.04-server-cloudimg-amd64.img\n",
            "0".repeat(64)
        );
        assert_eq!(
            parse_sums(&gnu, "ubuntu-24.04-server-cloudimg-amd64.img").as_deref(),
            Some(h)
        );
        assert_eq!(parse_sums(&gnu, "ubuntu-24.04-server-cloudimg-amd64"), None);
        let plain = format!("{}  ./disk.qcow2\n", h.to_uppercase());
        assert_eq!(parse_sums(&plain, "disk.qcow2").as_deref(), Some(h));
        let bsd = format!("SHA256 (disk.iso) = {h}\n");
        assert_eq!(parse_sums(&bsd, "disk.iso").as_deref(), Some(h));
    }

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, "bytes 500-999/1000".parse().unwrap());
        assert_eq!(content_range(&h), Some((500, Some(1000))));
        h.insert(CONTENT_RANGE, "bytes 5-9/*".parse().unwrap());
        assert_eq!(content_range(&h), Some((5, None)));
        h.insert(CONTENT_RANGE, "items 5-9/10".parse().unwrap());
        assert_eq!(content_range(&h), None);
    }

    #[test]
    fn validators() {
        let s = Sidecar {
            etag: Some("W/\"weak\"".into()),
            last_modified: Some("Sun, 05 Jul 2026 10:00:00 GMT".into()),
            ..Default::default()
        };
        assert_eq!(s.validator(), Some("Sun, 05 Jul 2026 10:00:00 GMT"));
        let s = Sidecar {
            etag: Some("\"strong\"".into()),
            ..s
        };
        assert_eq!(s.validator(), Some("\"strong\""));
    }
}
