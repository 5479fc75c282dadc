//! Image downloads, the cache and the `images` verbs, against a real HTTP
//! server on 127.0.0.1 (tests/common/http.rs) that supports Range and
//! counts the bytes it serves.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::http::{Resource, Server, data, sha256_hex};
use common::{Test, files_under, make_cluster};
use devcluster::dirs::Dirs;
use devcluster::images::golden::{self, GoldenKey};
use devcluster::images::{self, Fetch, Format, ImageError, NoProgress, Progress};
use devcluster::plan::Os;
use devcluster::spec::ProviderKind;

const LEN: usize = 4 << 20;

/// A user catalog entry `name` whose one artifact is `url`.
fn entry(dirs: &Dirs, name: &str, url: &str, checksum: &str, format: &str) {
    let dir = dirs.config.join("images");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "name = \"{name}\"\nos = \"linux\"\nversion = \"1\"\nfirmware = \"uefi\"\ndefault_user = \"u\"\n\
             [[artifacts]]\nproviders = [\"libvirt\", \"hyperv\", \"virtualbox\"]\nurl = \"{url}\"\n{checksum}\nformat = \"{format}\"\n"
        ),
    )
    .unwrap();
}

fn sha_line(sha: &str) -> String {
    format!("sha256 = \"{sha}\"")
}

/// Fast retries, no proxies (the server is on loopback).
fn fetch(p: &dyn Progress) -> Fetch<'_> {
    let mut f = Fetch::new(p);
    f.download.backoff = Duration::from_millis(20);
    f.download.max_backoff = Duration::from_millis(100);
    f.download.proxies = false;
    f
}

fn once(p: &dyn Progress) -> Fetch<'_> {
    let mut f = fetch(p);
    f.download.attempts = 1;
    f
}

fn cached(dirs: &Dirs, name: &str, sha: &str, ext: &str) -> PathBuf {
    dirs.cache
        .join("images")
        .join(name)
        .join(format!("{sha}.{ext}"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .collect()
}

/// Records what progress reports.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);
impl Progress for Recorder {
    fn start(&self, label: &str, _url: &str, offset: u64, total: Option<u64>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {label} {offset} {total:?}"));
    }
    fn finish(&self, label: &str) {
        self.0.lock().unwrap().push(format!("finish {label}"));
    }
    fn note(&self, label: &str, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("note {label} {message}"));
    }
}

#[tokio::test]
async fn a_full_download_verifies_lands_in_the_cache_and_is_reused_offline() {
    let server = Server::start();
    let body = data(LEN, 1);
    let sha = sha256_hex(&body);
    server.put("/img", Resource::new(body.clone()));
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(&dirs, "t", &server.url("/img"), &sha_line(&sha), "qcow2");

    let rec = Recorder::default();
    let pulled = images::pull(&dirs, "t", None, &fetch(&rec)).await.unwrap();
    assert_eq!(pulled.len(), 1);
    assert!(pulled[0].downloaded);
    let path = cached(&dirs, "t", &sha, "qcow2");
    assert_eq!(pulled[0].path, path);
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(server.served(), LEN as u64);
    // Only the verified file (no part, no sidecar) beside the index.
    let files: Vec<PathBuf> = files_in(&dirs.cache.join("images/t"))
        .into_iter()
        .filter(|p| !p.ends_with("index.json"))
        .collect();
    assert_eq!(files, vec![path.clone()]);
    let events = rec.0.lock().unwrap().clone();
    assert_eq!(events[0], format!("start t 0 Some({LEN})"));
    assert_eq!(events.last().unwrap(), "finish t");

    // Cached: no request at all, also offline, also with the server gone.
    server.clear_log();
    let base = images::base_for(
        &dirs,
        "t",
        Os::Linux,
        ProviderKind::Libvirt,
        &fetch(&NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(base.path, path);
    assert_eq!(base.sha256, sha);
    assert!(server.log().is_empty());
    drop(server);
    let offline = fetch(&NoProgress).offline(true);
    images::base_for(&dirs, "t", Os::Linux, ProviderKind::Libvirt, &offline)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_download_cut_at_half_resumes_with_only_the_rest() {
    let server = Server::start();
    let body = data(LEN, 2);
    let sha = sha256_hex(&body);
    let half = (LEN / 2) as u64;
    server.put(
        "/img",
        Resource {
            cut_after: Some(half),
            ..Resource::new(body.clone())
        },
    );
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(&dirs, "t", &server.url("/img"), &sha_line(&sha), "raw");

    // The first run dies at 50 %: the part and its validators stay.
    let err = images::pull(&dirs, "t", None, &once(&NoProgress))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let dest = cached(&dirs, "t", &sha, "raw");
    let part = images::download::part_path(&dest);
    assert_eq!(std::fs::metadata(&part).unwrap().len(), half);
    assert!(images::download::sidecar_path(&dest).is_file());
    assert!(!dest.exists());
    assert_eq!(server.served(), half);

    // The next run asks for the rest only, with If-Range, and verifies
    // the whole file (the first half re-hashed from disk).
    server.clear_log();
    images::pull(&dirs, "t", None, &once(&NoProgress))
        .await
        .unwrap();
    let log = server.log_for("/img");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, 206);
    assert_eq!(log[0].range.as_deref(), Some(&*format!("bytes={half}-")));
    assert_eq!(log[0].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(server.served(), LEN as u64 - half, "re-fetched nothing");
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(!part.exists());
}

#[tokio::test]
async fn a_cut_is_retried_within_one_run_resuming() {
    let server = Server::start();
    let body = data(LEN, 3);
    let sha = sha256_hex(&body);
    server.put(
        "/img",
        Resource {
            cut_after: Some(LEN as u64 / 3),
            // Only Last-Modified: it is the validator then.
            etag: None,
            ..Resource::new(body.clone())
        },
    );
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(&dirs, "t", &server.url("/img"), &sha_line(&sha), "raw");
    let rec = Recorder::default();
    images::pull(&dirs, "t", None, &fetch(&rec)).await.unwrap();
    assert_eq!(server.served(), LEN as u64, "every byte once");
    let log = server.log_for("/img");
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].status, 206);
    assert_eq!(
        log[1].if_range.as_deref(),
        Some("Sun, 05 Jul 2026 10:00:00 GMT")
    );
    let notes = rec.0.lock().unwrap().join("\n");
    assert!(notes.contains("retrying in"), "{notes}");
    assert_eq!(
        std::fs::read(cached(&dirs, "t", &sha, "raw")).unwrap(),
        body
    );
}

#[tokio::test]
async fn a_server_that_ignores_range_restarts_cleanly() {
    let server = Server::start();
    let body = data(LEN, 4);
    let sha = sha256_hex(&body);
    server.put(
        "/img",
        Resource {
            cut_after: Some(LEN as u64 / 2),
            ranges: false,
            ..Resource::new(body.clone())
        },
    );
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(&dirs, "t", &server.url("/img"), &sha_line(&sha), "raw");
    images::pull(&dirs, "t", None, &once(&NoProgress))
        .await
        .unwrap_err();
    server.clear_log();
    images::pull(&dirs, "t", None, &once(&NoProgress))
        .await
        .unwrap();
    let log = server.log_for("/img");
    assert_eq!(log[0].status, 200, "asked for a range, got the whole file");
    assert!(log[0].range.is_some());
    assert_eq!(server.served(), LEN as u64);
    assert_eq!(
        std::fs::read(cached(&dirs, "t", &sha, "raw")).unwrap(),
        body
    );
}

#[tokio::test]
async fn a_changed_etag_restarts() {
    let server = Server::start();
    let old = data(LEN, 5);
    let new = data(LEN, 6);
    let sha = sha256_hex(&new);
    // The server still has the old file when the first run starts, cut.
    server.put(
        "/img",
        Resource {
            cut_after: Some(LEN as u64 / 2),
            ..Resource::new(old)
        },
    );
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(&dirs, "t", &server.url("/img"), &sha_line(&sha), "raw");
    images::pull(&dirs, "t", None, &once(&NoProgress))
        .await
        .unwrap_err();
    // Then the file changes (new ETag and date): If-Range no longer
    // matches, the server sends it whole, and the run starts over.
    server.put(
        "/img",
        Resource {
            etag: Some("\"v2\"".into()),
            last_modified: Some("Mon, 06 Jul 2026 10:00:00 GMT".into()),
            ..Resource::new(new.clone())
        },
    );
    server.clear_log();
    images::pull(&dirs, "t", None, &once(&NoProgress))
        .await
        .unwrap();
    let log = server.log_for("/img");
    assert_eq!(log[0].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(log[0].status, 200);
    assert_eq!(server.served(), LEN as u64);
    assert_eq!(std::fs::read(cached(&dirs, "t", &sha, "raw")).unwrap(), new);
}

#[tokio::test]
async fn a_complete_part_is_verified_on_416() {
    let server = Server::start();
    let body = data(LEN, 7);
    let sha = sha256_hex(&body);
    server.put("/img", Resource::new(body.clone()));
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(&dirs, "t", &server.url("/img"), &sha_line(&sha), "raw");
    // A run killed after the last byte, before the rename.
    let dest = cached(&dirs, "t", &sha, "raw");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(images::download::part_path(&dest), &body).unwrap();
    std::fs::write(
        images::download::sidecar_path(&dest),
        format!(
            "{{\"url\":\"{}\",\"sha256\":\"{sha}\",\"etag\":\"\\\"v1\\\"\"}}",
            server.url("/img")
        ),
    )
    .unwrap();
    images::pull(&dirs, "t", None, &once(&NoProgress))
        .await
        .unwrap();
    let log = server.log_for("/img");
    assert_eq!(log[0].status, 416);
    assert_eq!(server.served(), 0);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[tokio::test]
async fn transient_errors_are_retried_but_4xx_are_not() {
    let server = Server::start();
    let body = data(64 << 10, 8);
    let sha = sha256_hex(&body);
    server.put(
        "/flaky",
        Resource {
            fail_first: 2,
            ..Resource::new(body.clone())
        },
    );
    server.put(
        "/forbidden",
        Resource {
            status: Some(403),
            ..Resource::new(body.clone())
        },
    );
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(
        &dirs,
        "flaky",
        &server.url("/flaky"),
        &sha_line(&sha),
        "raw",
    );
    entry(
        &dirs,
        "forbidden",
        &server.url("/forbidden"),
        &sha_line(&sha),
        "raw",
    );
    images::pull(&dirs, "flaky", None, &fetch(&NoProgress))
        .await
        .unwrap();
    let statuses: Vec<u16> = server.log_for("/flaky").iter().map(|l| l.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    let err = images::pull(&dirs, "forbidden", None, &fetch(&NoProgress))
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Http { .. }), "{err:?}");
    assert_eq!(server.log_for("/forbidden").len(), 1, "no retry on 403");
}

#[tokio::test]
async fn not_found_and_connection_refused_name_the_url() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    let sha = "0".repeat(64);
    let missing = server.url("/gone.img");
    entry(&dirs, "gone", &missing, &sha_line(&sha), "raw");
    let err = images::pull(&dirs, "gone", None, &fetch(&NoProgress))
        .await
        .unwrap_err();
    let r = devcluster::hints::report(&anyhow::Error::new(err));
    assert_eq!(
        r.message,
        format!("cannot download {missing}: the server answered 404 Not Found")
    );
    assert!(r.hint.unwrap().contains("point a user entry"));
    assert_eq!(server.log().len(), 1, "no retry on 404");

    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = format!("http://127.0.0.1:{port}/x.img");
    entry(&dirs, "refused", &refused, &sha_line(&sha), "raw");
    let rec = Recorder::default();
    let mut f = fetch(&rec);
    f.download.attempts = 2;
    let err = images::pull(&dirs, "refused", None, &f).await.unwrap_err();
    let r = devcluster::hints::report(&anyhow::Error::new(err));
    assert_eq!(r.message, format!("cannot download {refused}"));
    let causes = r.causes.join("\n").to_lowercase();
    assert!(causes.contains("connection refused"), "{causes}");
    assert!(r.hint.unwrap().contains("proxy"));
    assert!(
        rec.0.lock().unwrap().iter().any(|n| n.contains("retrying")),
        "a refused connection is retried"
    );
    assert!(files_in(&dirs.cache.join("images")).is_empty());
}

#[tokio::test]
async fn checksum_from_a_checksum_file_then_offline() {
    let server = Server::start();
    let body = data(LEN, 9);
    let sha = sha256_hex(&body);
    server.put("/rel/disk.img", Resource::new(body.clone()));
    let sums = format!("{} *other.img\n{sha} *disk.img\n", sha256_hex(b"other"));
    server.put("/rel/SHA256SUMS", Resource::new(sums.into_bytes()));
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(
        &dirs,
        "t",
        &server.url("/rel/disk.img"),
        &format!(
            "checksum_url = \"{}\"\nchecksum_name = \"disk.img\"",
            server.url("/rel/SHA256SUMS")
        ),
        "qcow2",
    );
    let p = images::pull(&dirs, "t", None, &fetch(&NoProgress))
        .await
        .unwrap();
    assert_eq!(p[0].sha256, sha);
    assert_eq!(p[0].path, cached(&dirs, "t", &sha, "qcow2"));
    // Offline, with the server gone: the cache remembers the hash.
    drop(server);
    let base = images::base_for(
        &dirs,
        "t",
        Os::Linux,
        ProviderKind::Libvirt,
        &fetch(&NoProgress).offline(true),
    )
    .await
    .unwrap();
    assert_eq!(base.sha256, sha);

    // A name the list does not have.
    let server = Server::start();
    server.put("/SUMS", Resource::new(b"nothing here\n".to_vec()));
    entry(
        &dirs,
        "unlisted",
        &server.url("/x.img"),
        &format!(
            "checksum_url = \"{}\"\nchecksum_name = \"x.img\"",
            server.url("/SUMS")
        ),
        "raw",
    );
    let err = images::pull(&dirs, "unlisted", None, &fetch(&NoProgress))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} lists no sha256 for x.img", server.url("/SUMS"))
    );
}

#[tokio::test]
async fn an_air_gapped_file_copy_works_offline() {
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    let usb = home.path().join("usb");
    std::fs::create_dir_all(&usb).unwrap();
    let body = data(LEN, 16);
    let sha = sha256_hex(&body);
    std::fs::write(usb.join("disk.img"), &body).unwrap();
    std::fs::write(usb.join("SHA256SUMS"), format!("{sha}  disk.img\n")).unwrap();
    entry(
        &dirs,
        "ubuntu-24.04",
        &format!("file://{}", usb.join("disk.img").display()),
        &format!(
            "checksum_url = \"file://{}\"\nchecksum_name = \"disk.img\"",
            usb.join("SHA256SUMS").display()
        ),
        "qcow2",
    );
    let offline = fetch(&NoProgress).offline(true);
    let base = images::base_for(
        &dirs,
        "ubuntu-24.04",
        Os::Linux,
        ProviderKind::Libvirt,
        &offline,
    )
    .await
    .unwrap();
    assert_eq!(base.path, cached(&dirs, "ubuntu-24.04", &sha, "qcow2"));
    assert_eq!(std::fs::read(&base.path).unwrap(), body);
    // A corrupt copy is refused like a bad download.
    std::fs::remove_dir_all(dirs.cache.join("images")).unwrap();
    std::fs::write(usb.join("disk.img"), b"corrupt").unwrap();
    let err = images::base_for(
        &dirs,
        "ubuntu-24.04",
        Os::Linux,
        ProviderKind::Libvirt,
        &offline,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImageError::Checksum { .. }), "{err:?}");
    assert!(files_in(&dirs.cache.join("images")).is_empty());
}

#[tokio::test]
async fn gzip_artifacts_are_verified_then_decompressed() {
    use std::io::Write;
    let server = Server::start();
    let body = data(LEN, 10);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let gz = gz.finish().unwrap();
    let sha = sha256_hex(&gz);
    server.put("/img.gz", Resource::new(gz));
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    entry(
        &dirs,
        "t",
        &server.url("/img.gz"),
        &format!("{}\ncompression = \"gzip\"", sha_line(&sha)),
        "qcow2",
    );
    let p = images::pull(&dirs, "t", None, &fetch(&NoProgress))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&p[0].path).unwrap(), body);
    assert!(!PathBuf::from(format!("{}.gz", p[0].path.display())).exists());
}

#[tokio::test]
async fn conversion_for_hyperv_and_virtualbox_with_qemu_img() {
    let home = tempfile::tempdir().unwrap();
    let dirs = Dirs::under(home.path());
    let src = home.path().join("small.qcow2");
    let Ok(status) = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&src)
        .arg("16M")
        .status()
    else {
        panic!("qemu-img is needed (Debian: apt install qemu-utils)");
    };
    assert!(status.success());
    images::import(
        &dirs,
        &images::Import {
            name: "small".into(),
            path: src,
            os: Os::Linux,
            user: "u".into(),
            firmware: devcluster::providers::Firmware::Uefi,
            secure_boot: false,
        },
    )
    .unwrap();
    let rec = Recorder::default();
    let f = fetch(&rec);
    let libvirt = images::base_for(&dirs, "small", Os::Linux, ProviderKind::Libvirt, &f)
        .await
        .unwrap();
    assert!(libvirt.path.to_string_lossy().ends_with(".qcow2"));
    let hyperv = images::base_for(&dirs, "small", Os::Linux, ProviderKind::Hyperv, &f)
        .await
        .unwrap();
    assert_eq!(
        hyperv.path,
        libvirt
            .path
            .with_file_name(format!("{}.converted.vhdx", libvirt.sha256))
    );
    assert!(
        std::fs::read(&hyperv.path)
            .unwrap()
            .starts_with(b"vhdxfile")
    );
    let vbox = images::base_for(&dirs, "small", Os::Linux, ProviderKind::Virtualbox, &f)
        .await
        .unwrap();
    let head = std::fs::read(&vbox.path).unwrap();
    assert_eq!(Format::sniff(&head[..0x48]), Format::Vdi);
    // Converted once, then reused.
    let converted = rec
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.contains("converting"))
        .count();
    assert_eq!(converted, 2);
    images::base_for(&dirs, "small", Os::Linux, ProviderKind::Hyperv, &f)
        .await
        .unwrap();
    assert_eq!(
        rec.0
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.contains("converting"))
            .count(),
        2
    );
    // Without qemu-img: an error naming what to install.
    std::fs::remove_file(&vbox.path).unwrap();
    let mut f = fetch(&NoProgress);
    f.qemu_img = Some(PathBuf::from("/nonexistent/qemu-img"));
    let err = images::base_for(&dirs, "small", Os::Linux, ProviderKind::Virtualbox, &f)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NoConverter { .. }), "{err:?}");
    assert!(err.to_string().contains("needs vdi"), "{err}");
    assert!(err.hint().unwrap().contains("qemu-utils"));
}

// ---- the CLI ---------------------------------------------------------------

fn cli_entry(t: &Test, name: &str, url: &str, sha: &str) {
    entry(&t.dirs(), name, url, &sha_line(sha), "qcow2");
}

#[test]
fn a_wrong_checksum_leaves_nothing_and_exits_1_with_both_hashes() {
    let server = Server::start();
    let body = data(LEN, 11);
    let actual = sha256_hex(&body);
    let expected = sha256_hex(b"something else");
    server.put("/img", Resource::new(body));
    let mut t = Test::new();
    cli_entry(&t, "t", &server.url("/img"), &expected);
    let run = t
        .env("NO_PROXY", "127.0.0.1")
        .args(&["images", "pull", "t"])
        .run()
        .status(1)
        .stderr_has(&format!(
            "error: checksum mismatch for {}: expected sha256 {expected}, got {actual}",
            server.url("/img")
        ));
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
    assert_eq!(server.log().len(), 1, "a mismatch is not retried");
    assert!(
        files_in(&t.dirs().cache.join("images")).is_empty(),
        "{:?}",
        files_under(&t.dirs().cache)
    );
}

#[test]
fn a_404_exits_1_naming_the_url() {
    let server = Server::start();
    let mut t = Test::new();
    cli_entry(&t, "t", &server.url("/nope.img"), &"0".repeat(64));
    t.env("NO_PROXY", "127.0.0.1")
        .args(&["images", "pull", "t"])
        .run()
        .status(1)
        .stderr_has(&format!(
            "error: cannot download {}: the server answered 404 Not Found",
            server.url("/nope.img")
        ));
}

#[test]
fn two_concurrent_pulls_download_once() {
    let server = Server::start();
    let body = data(LEN, 12);
    let sha = sha256_hex(&body);
    // Slow enough (about 1.3 s) that both processes are running at once.
    server.put(
        "/img",
        Resource {
            throttle: Some(Duration::from_millis(20)),
            ..Resource::new(body.clone())
        },
    );
    let t = Test::new();
    cli_entry(&t, "t", &server.url("/img"), &sha);
    let spawn = || {
        let mut c = t.command();
        c.args(["images", "pull", "t"])
            .env("NO_PROXY", "127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let a = spawn();
    std::thread::sleep(Duration::from_millis(200));
    let b = spawn();
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    assert_eq!(server.log_for("/img").len(), 1, "one download");
    assert_eq!(server.served(), LEN as u64);
    assert!(
        text(&b).contains("another devcluster process is downloading it; waiting"),
        "{}",
        text(&b)
    );
    let path = cached(&t.dirs(), "t", &sha, "qcow2");
    assert_eq!(
        String::from_utf8_lossy(&b.stdout).trim(),
        path.display().to_string()
    );
    assert_eq!(std::fs::read(&path).unwrap(), body);
}

#[test]
fn offline_pull_and_up_name_the_pull_command() {
    let mut t = Test::new();
    t.args(&["images", "pull", "ubuntu-24.04", "--offline"])
        .run()
        .status(1)
        .stderr_has("error: image ubuntu-24.04 is not in the cache, and devcluster is offline")
        .stderr_has("hint: run `devcluster images pull ubuntu-24.04` while online");
    // `offline = true` in the project file does the same for `up`, which
    // then writes nothing (or it stops earlier, on a host without a usable
    // provider).
    t.file(
        "devcluster.toml",
        "offline = true\n[network]\nnode_cidr = \"192.168.152.0/24\"\n",
    );
    let run = t.args(&["up", "--workers", "0"]).run().status(1);
    assert!(
        run.stderr
            .contains("devcluster images pull ubuntu-24.04 --provider")
            || run.stderr.contains("no usable provider"),
        "{}",
        run.stderr
    );
    assert!(!t.dirs().clusters().exists());
}

#[test]
fn evaluation_media_need_accept_license() {
    let server = Server::start();
    let body = data(64 << 10, 13);
    let sha = sha256_hex(&body);
    server.put("/eval.iso", Resource::new(body));
    let mut t = Test::new();
    t.args(&["images", "pull", "windows-server-2022"])
        .run()
        .status(1)
        .stderr_has("error: image windows-server-2022 comes under a licence you must accept first: Windows Server 2022 evaluation licence")
        .stderr_has("--accept-license");
    assert!(!t.dirs().cache.join("images").exists());
    // A mirror of it (a user entry of the same name), accepted.
    let dir = t.dirs().config.join("images");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mirror.toml"),
        format!(
            "name = \"windows-server-2022\"\nos = \"windows\"\nfirmware = \"uefi\"\ndefault_user = \"Administrator\"\n\
             license = \"evaluation\"\nlicense_requires_acceptance = true\n\
             [[artifacts]]\nproviders = [\"hyperv\"]\nurl = \"{}\"\nsha256 = \"{sha}\"\nformat = \"iso\"\n",
            server.url("/eval.iso")
        ),
    )
    .unwrap();
    t.env("NO_PROXY", "127.0.0.1")
        .args(&[
            "images",
            "pull",
            "windows-server-2022",
            "--provider",
            "hyperv",
            "--accept-license",
        ])
        .run()
        .status(0)
        .stdout_has(&format!("{sha}.iso"));
}

#[test]
fn list_json_and_prune_with_one_used_and_one_unused_image() {
    let server = Server::start();
    let used = data(LEN, 14);
    let unused = data(LEN / 2, 15);
    server.put("/used", Resource::new(used.clone()));
    server.put("/unused", Resource::new(unused.clone()));
    let mut t = Test::new();
    let dirs = t.dirs();
    // A mirror of the default Linux image, and another image.
    cli_entry(&t, "ubuntu-24.04", &server.url("/used"), &sha256_hex(&used));
    cli_entry(&t, "other", &server.url("/unused"), &sha256_hex(&unused));
    for name in ["ubuntu-24.04", "other"] {
        t.env("NO_PROXY", "127.0.0.1")
            .args(&["images", "pull", name])
            .run()
            .status(0);
    }
    // A cluster using ubuntu-24.04 (the default image).
    make_cluster(&dirs, "c1", 1, 0);
    let k8s = devcluster::state::load_existing(&dirs, "c1")
        .unwrap()
        .plan
        .kubernetes_version;
    // Golden disks: one the cluster may use, one it cannot.
    let golden = |image: &str, base: &str| {
        let disk = t.root.path().join(format!("{image}.qcow2"));
        std::fs::write(&disk, vec![7u8; 4096]).unwrap();
        let key = GoldenKey {
            base_sha256: base.into(),
            kubernetes_version: k8s.clone(),
            provider: ProviderKind::Libvirt,
            provisioners_sha256: golden::provisioners_sha256([("a.sh", &b"x"[..])]),
        };
        golden::store(&dirs, &key, image, &disk, Format::Qcow2).unwrap();
        key.id()
    };
    let used_golden = golden("ubuntu-24.04", &sha256_hex(&used));
    let unused_golden = golden("other", &sha256_hex(&unused));

    let list = t
        .args(&["images", "list", "-o", "json"])
        .run()
        .status(0)
        .json();
    let row = |name: &str| {
        list["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {list}"))
            .clone()
    };
    let u = row("ubuntu-24.04");
    assert_eq!(u["cached"], true);
    assert_eq!(u["used_by"], serde_json::json!(["c1"]));
    assert_eq!(u["overrides_builtin"], true);
    assert!(u["size_bytes"].as_u64().unwrap() >= LEN as u64);
    let o = row("other");
    assert_eq!(o["cached"], true);
    assert_eq!(o["used_by"], serde_json::json!([]));
    let w = row("windows-server-2025");
    assert_eq!(w["source"], "built-in");
    assert_eq!(w["cached"], false);
    assert_eq!(w["license_requires_acceptance"], true);
    let goldens = list["golden"].as_array().unwrap();
    assert_eq!(goldens.len(), 2);
    let g = goldens
        .iter()
        .find(|g| g["id"] == used_golden.as_str())
        .unwrap();
    assert_eq!(g["used_by"], serde_json::json!(["c1"]));
    // The table says the same.
    let table = t.args(&["images", "list"]).run().status(0);
    assert!(table.stdout.contains("GOLDEN DISK"), "{}", table.stdout);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("ubuntu-24.04") && l.contains(" c1 ")),
        "{}",
        table.stdout
    );

    // 2 MiB of image and 4 KiB of golden disk (plus their small metadata).
    let run = t.args(&["images", "prune"]).run().status(0);
    assert_eq!(run.stdout.trim(), "freed 2.0 MiB");
    assert!(run.stderr.contains("removed image other"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("removed golden disk {unused_golden} of other")),
        "{}",
        run.stderr
    );
    assert!(cached(&dirs, "ubuntu-24.04", &sha256_hex(&used), "qcow2").is_file());
    assert!(!dirs.cache.join("images/other").exists());
    let list = t
        .args(&["images", "list", "-o", "json"])
        .run()
        .status(0)
        .json();
    assert_eq!(list["golden"].as_array().unwrap().len(), 1);

    // remove: refused while used, then forced.
    t.args(&["images", "remove", "ubuntu-24.04"])
        .run()
        .status(1)
        .stderr_has("error: image ubuntu-24.04 is used by cluster(s) c1")
        .stderr_has("--force");
    t.args(&["images", "remove", "ubuntu-24.04", "--force"])
        .run()
        .status(0)
        .stderr_has("removed ubuntu-24.04 from the cache: freed 4.0 MiB");
    assert!(!dirs.cache.join("images/ubuntu-24.04").exists());
    // The user's mirror entry stays (it is their file, not an import).
    assert!(dirs.config.join("images/ubuntu-24.04.toml").is_file());
}

#[test]
fn prune_keeps_imported_images_and_remove_drops_their_entry() {
    let mut t = Test::new();
    let mut disk = b"QFI\xfb\0\0\0\x03".to_vec();
    disk.resize(64 * 1024, 0);
    std::fs::write(t.work().join("disk.qcow2"), &disk).unwrap();
    t.args(&["images", "import", "mine", "disk.qcow2", "--os", "linux"])
        .run()
        .status(0);
    t.args(&["images", "prune"])
        .run()
        .status(0)
        .stdout_has("freed 0 B")
        .stderr_has("kept mine: imported");
    t.args(&["images", "remove", "mine"])
        .run()
        .status(0)
        .stderr_has("freed 64 KiB")
        .stderr_has("removed its entry");
    assert!(!t.dirs().config.join("images/mine.toml").exists());
    t.args(&["images", "remove", "mine"])
        .run()
        .status(1)
        .stderr_has("image mine is not known");
}

#[test]
fn proxies_from_the_environment_are_used() {
    // The test server plays the proxy: a proxied request names the whole
    // URL, which is the path it sees.
    let proxy = Server::start();
    let body = data(64 << 10, 17);
    let sha = sha256_hex(&body);
    let url = "http://images.example.invalid/disk.img";
    proxy.put(url, Resource::new(body));
    let mut t = Test::new();
    cli_entry(&t, "t", url, &sha);
    t.env("HTTP_PROXY", &proxy.url(""))
        .env("NO_PROXY", "")
        .args(&["images", "pull", "t"])
        .run()
        .status(0);
    assert_eq!(proxy.log_for(url).len(), 1);
    assert!(cached(&t.dirs(), "t", &sha, "qcow2").is_file());
}
