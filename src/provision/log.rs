//! Per-node logs: `clusters/NAME/logs/NODE.log`.
//!
//! One line per event or line of output, appended as it happens (so `tail
//! -f` and `devcluster logs` see a step while it runs):
//!
//! ```text
//! 2026-11-22T14:03:05.123Z [prepare-os] started
//! 2026-11-22T14:03:05.456Z [prepare-os] stdout: swap: off
//! 2026-11-22T14:03:07.001Z [prepare-os] finished in 1.9s
//! ```
//!
//! Timestamps are UTC with milliseconds. The file is owner-only on Unix:
//! step output is redacted of known secrets, but it is still the inside of
//! someone's machines.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::dirs::Dirs;

/// `clusters/CLUSTER/logs/NODE.log`.
pub fn log_path(dirs: &Dirs, cluster: &str, node: &str) -> PathBuf {
    dirs.cluster(cluster)
        .join("logs")
        .join(format!("{node}.log"))
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the log {}", path.display())]
pub struct LogError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// An open node log (append-only).
#[derive(Debug)]
pub struct NodeLog {
    path: PathBuf,
    file: File,
}

impl NodeLog {
    /// Opens (creating it and its directories) the log of `node` in
    /// `cluster`.
    pub fn open(dirs: &Dirs, cluster: &str, node: &str) -> Result<Self, LogError> {
        Self::open_path(&log_path(dirs, cluster, node))
    }

    /// Opens (creating it and its directories) a log at `path`.
    pub fn open_path(path: &Path) -> Result<Self, LogError> {
        let err = |source| LogError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir).map_err(err)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `TIMESTAMP [step] text`. `text` is one line; line breaks in
    /// it are written as `\n` so one event stays one line.
    pub fn line(&mut self, step: &str, text: &str) -> Result<(), LogError> {
        let text = text.replace('\n', "\\n");
        let line = format!("{} [{step}] {text}\n", timestamp());
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| LogError {
                path: self.path.clone(),
                source,
            })
    }
}

/// Now, as `2026-11-22T14:03:05.123Z`.
pub fn timestamp() -> String {
    format_timestamp(time::OffsetDateTime::now_utc())
}

fn format_timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Splits a stream of chunks into lines. A line longer than
/// [`LineSplitter::MAX_LINE`] bytes is cut there (binary or `\r`-animated
/// output must not grow without bound). Invalid UTF-8 is replaced; a
/// trailing `\r` is dropped.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    pub const MAX_LINE: usize = 16 * 1024;

    /// Feeds a chunk; calls `line` for every completed line.
    pub fn push(&mut self, chunk: &[u8], mut line: impl FnMut(String)) {
        for &b in chunk {
            if b == b'\n' {
                line(Self::text(&self.buf));
                self.buf.clear();
            } else {
                self.buf.push(b);
                if self.buf.len() >= Self::MAX_LINE {
                    line(Self::text(&self.buf));
                    self.buf.clear();
                }
            }
        }
    }

    /// The last, unterminated line, if any.
    pub fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let text = Self::text(&self.buf);
        self.buf.clear();
        Some(text)
    }

    fn text(bytes: &[u8]) -> String {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        String::from_utf8_lossy(bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_millis() {
        let t = time::Date::from_calendar_date(2026, time::Month::November, 22)
            .unwrap()
            .with_hms_micro(15, 3, 5, 123_456)
            .unwrap()
            .assume_offset(time::UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(format_timestamp(t), "2026-11-22T14:03:05.123Z");
    }

    #[test]
    fn lines_across_chunks() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.push(b"ab", |l| out.push(l));
        s.push(b"c\r\nde\nf", |l| out.push(l));
        assert_eq!(out, vec!["abc", "de"]);
        assert_eq!(s.finish().as_deref(), Some("f"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.push(&vec![b'x'; LineSplitter::MAX_LINE + 3], |l| out.push(l));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), LineSplitter::MAX_LINE);
        assert_eq!(s.finish().unwrap().len(), 3);
    }

    #[test]
    fn log_lines_append() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(dir.path());
        let mut log = NodeLog::open(&dirs, "dev", "dev-cp").unwrap();
        log.line("s", "one\ntwo").unwrap();
        drop(log);
        let mut log = NodeLog::open(&dirs, "dev", "dev-cp").unwrap();
        log.line("s", "three").unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("Z [s] one\\ntwo"), "{text}");
        assert!(lines[1].ends_with("Z [s] three"), "{text}");
        assert_eq!(
            log.path(),
            dir.path().join("state/clusters/dev/logs/dev-cp.log")
        );
    }
}
