//! The Printer: the only place that writes to the terminal.
//!
//! Command output (tables, JSON) goes to stdout and is printed at every
//! verbosity: it is what the user asked for. Status lines, warnings and
//! errors go to stderr; `-q` keeps only errors. Diagnostics go through
//! `tracing` (also stderr, controlled by `-v`). Library code never prints:
//! it returns values, or reports progress through a trait the commands
//! implement with this Printer.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

use crate::error::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    verbosity: Verbosity,
    progress: bool,
}

impl Printer {
    pub fn new(verbosity: Verbosity, no_progress: bool) -> Self {
        // Progress bars only when a person watches stderr and nothing else
        // (verbose logs, quiet mode) competes for those lines.
        let progress = !no_progress
            && verbosity == Verbosity::Normal
            && std::io::stderr().is_terminal()
            && std::env::var_os("CI").is_none();
        Self {
            verbosity,
            progress,
        }
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// Whether progress bars may be drawn (else: plain step lines).
    pub fn progress(&self) -> bool {
        self.progress
    }

    /// The command's product, on stdout. Broken pipes are ignored, so
    /// `devcluster list | head -1` is not an error.
    pub fn out(&self, text: impl Display) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    /// Bytes on stdout as they are (log files).
    pub fn raw(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    /// Bytes on stderr as they are (a remote command's stderr).
    pub fn raw_err(&self, bytes: &[u8]) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    }

    /// Pretty JSON on stdout.
    pub fn json<T: serde::Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        self.out(text);
        Ok(())
    }

    /// A status line on stderr (hidden by `-q`).
    pub fn info(&self, text: impl Display) {
        if self.verbosity > Verbosity::Quiet {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    /// A warning on stderr (hidden by `-q`).
    pub fn warn(&self, text: impl Display) {
        if self.verbosity > Verbosity::Quiet {
            let _ = writeln!(std::io::stderr().lock(), "warning: {text}");
        }
    }

    /// Whether stdin and stderr are a terminal a person can answer on.
    pub fn interactive(&self) -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    /// Asks a yes/no question on the terminal; anything but y/yes is no.
    pub fn confirm(&self, question: &str) -> bool {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{question} [y/N] ");
        let _ = err.flush();
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }

    /// An error report, always printed (also with `-q`).
    pub fn error(&self, report: &Report) {
        let _ = write!(std::io::stderr().lock(), "{}", render_report(report));
    }
}

/// Per-node progress: with a terminal, one spinner line per node showing
/// its current step and elapsed time (indicatif); otherwise (or with
/// `--no-progress`, `-v`, `-q`) plain lines, one per event.
pub struct NodeProgress {
    printer: Printer,
    bars: Option<(
        indicatif::MultiProgress,
        std::collections::BTreeMap<String, indicatif::ProgressBar>,
    )>,
}

impl NodeProgress {
    pub fn new<'a>(printer: Printer, nodes: impl IntoIterator<Item = &'a str>) -> Self {
        if !printer.progress() {
            return Self {
                printer,
                bars: None,
            };
        }
        let multi = indicatif::MultiProgress::new();
        let style =
            indicatif::ProgressStyle::with_template("{spinner} {prefix:<16} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let bars = nodes
            .into_iter()
            .map(|n| {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(n.to_string());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                (n.to_string(), bar)
            })
            .collect();
        Self {
            printer,
            bars: Some((multi, bars)),
        }
    }

    /// What `node` is doing now.
    pub fn set(&self, node: &str, message: impl Display) {
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.get(node) {
                    bar.set_message(message.to_string());
                }
            }
            None => self.printer.info(format!("{node}: {message}")),
        }
    }

    /// `node` is done (or failed) with `message`.
    pub fn finish(&self, node: &str, message: impl Display) {
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.get(node) {
                    bar.finish_with_message(message.to_string());
                }
            }
            None => self.printer.info(format!("{node}: {message}")),
        }
    }

    /// Clears the bars (before a summary or an error is printed).
    pub fn clear(&self) {
        if let Some((multi, bars)) = &self.bars {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.finish();
                }
            }
            let _ = multi.clear();
        }
    }
}

/// Download progress for [`crate::images::Progress`]: with a terminal, a
/// bar per download (bytes, rate, ETA); otherwise plain lines: when it
/// starts, every 10 seconds, and when it is verified.
pub struct DownloadProgress {
    printer: Printer,
    downloads: std::sync::Mutex<std::collections::BTreeMap<String, Download>>,
}

struct Download {
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
    last_line: std::time::Instant,
    offset: u64,
    done: u64,
    total: Option<u64>,
}

impl DownloadProgress {
    pub fn new(printer: Printer) -> Self {
        Self {
            printer,
            downloads: Default::default(),
        }
    }

    /// Clears bars of downloads that did not finish (before an error).
    pub fn clear(&self) {
        self.with(|m| {
            for d in m.values() {
                if let Some(bar) = &d.bar {
                    bar.finish_and_clear();
                }
            }
            m.clear();
        });
    }

    fn with<R>(&self, f: impl FnOnce(&mut std::collections::BTreeMap<String, Download>) -> R) -> R {
        let mut map = self
            .downloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }
}

fn rate(bytes: u64, since: std::time::Instant) -> String {
    let secs = since.elapsed().as_secs_f64().max(0.001);
    format!(
        "{}/s",
        crate::images::download::human_bytes((bytes as f64 / secs) as u64)
    )
}

impl crate::images::Progress for DownloadProgress {
    fn start(&self, label: &str, url: &str, offset: u64, total: Option<u64>) {
        use crate::images::download::human_bytes;
        let bar = if self.printer.progress() {
            let (bar, template) = match total {
                Some(t) => (
                    indicatif::ProgressBar::new(t),
                    "{prefix:<16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                ),
                None => (
                    indicatif::ProgressBar::new_spinner(),
                    "{spinner} {prefix:<16} {bytes} {bytes_per_sec}",
                ),
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.to_string());
            bar.set_position(offset);
            bar.reset_eta();
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            Some(bar)
        } else {
            let size = total
                .map(|t| format!(" ({})", human_bytes(t)))
                .unwrap_or_default();
            let from = if offset > 0 {
                format!(", resuming at {}", human_bytes(offset))
            } else {
                String::new()
            };
            self.printer
                .info(format!("{label}: downloading {url}{size}{from}"));
            None
        };
        let now = std::time::Instant::now();
        self.with(|m| {
            // A retry starts again: the earlier attempt's bar goes.
            if let Some(bar) = m.get(label).and_then(|d| d.bar.as_ref()) {
                bar.finish_and_clear();
            }
            m.insert(
                label.to_string(),
                Download {
                    bar,
                    started: now,
                    last_line: now,
                    offset,
                    done: 0,
                    total,
                },
            )
        });
    }

    fn advance(&self, label: &str, bytes: u64) {
        use crate::images::download::human_bytes;
        let line = self.with(|m| {
            let d = m.get_mut(label)?;
            d.done += bytes;
            if let Some(bar) = &d.bar {
                bar.inc(bytes);
                return None;
            }
            if d.last_line.elapsed() < std::time::Duration::from_secs(10) {
                return None;
            }
            d.last_line = std::time::Instant::now();
            let at = d.offset + d.done;
            let of = match d.total {
                Some(t) if t > 0 => format!(
                    "{}% ({} of {})",
                    at * 100 / t,
                    human_bytes(at),
                    human_bytes(t)
                ),
                _ => human_bytes(at),
            };
            Some(format!("{label}: {of}, {}", rate(d.done, d.started)))
        });
        if let Some(line) = line {
            self.printer.info(line);
        }
    }

    fn finish(&self, label: &str) {
        use crate::images::download::human_bytes;
        let Some(d) = self.with(|m| m.remove(label)) else {
            return;
        };
        if let Some(bar) = &d.bar {
            bar.finish_and_clear();
        }
        self.printer.info(format!(
            "{label}: downloaded {} in {:.1?} ({}), sha256 verified",
            human_bytes(d.done),
            d.started.elapsed(),
            rate(d.done, d.started)
        ));
    }

    fn note(&self, label: &str, message: &str) {
        let text = format!("{label}: {message}");
        let printed = self.with(|m| match m.get(label).and_then(|d| d.bar.as_ref()) {
            Some(bar) => {
                bar.println(&text);
                true
            }
            None => false,
        });
        if !printed {
            self.printer.info(text);
        }
    }
}

/// The text of an error report: `error:`, `caused by:` lines, `hint:`.
pub fn render_report(report: &Report) -> String {
    let mut s = format!("error: {}\n", report.message);
    for cause in &report.causes {
        s.push_str(&format!("  caused by: {cause}\n"));
    }
    if let Some(hint) = &report.hint {
        s.push_str(&format!("hint: {hint}\n"));
    }
    s
}

/// A plain text table: a header row and left-aligned columns, two spaces
/// apart; the last column is not padded.
pub fn table<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.as_ref().chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            l.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                l.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(AsRef::as_ref).collect());
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "IP"],
            &[vec!["dev-cp", "10.0.0.2"], vec!["dev-win1", "10.0.0.10"]],
        );
        assert_eq!(t, "NAME      IP\ndev-cp    10.0.0.2\ndev-win1  10.0.0.10");
    }
}

/// A duration as a person reads it: `850ms`, `42s`, `3m05s`, `1h02m`.
pub fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod duration_tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_secs(42)), "42s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h02m");
    }
}
