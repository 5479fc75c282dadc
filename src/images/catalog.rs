//! The catalog: built-in entries (embedded from `images/*.toml`) and the
//! user's entries in `<config dir>/images/*.toml`. A user entry with the
//! name of a built-in one replaces it (a mirror, an air-gapped copy, a
//! newer release).

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Serialize;

use super::{ImageEntry, ImageError, valid_name};
use crate::dirs::Dirs;
use crate::spec::ProviderKind;

/// The built-in entries: `(file in the source tree, its text)`.
/// `builtin_files_are_all_embedded` checks that this lists every file.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "images/ubuntu-24.04.toml",
        include_str!("../../images/ubuntu-24.04.toml"),
    ),
    (
        "images/windows-server-2022.toml",
        include_str!("../../images/windows-server-2022.toml"),
    ),
    (
        "images/windows-server-2025.toml",
        include_str!("../../images/windows-server-2025.toml"),
    ),
];

/// Where an entry comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Embedded in devcluster (`images/NAME.toml` in its source).
    Builtin { file: &'static str },
    /// A file of the user's; `overrides` when it replaces a built-in entry.
    User { path: PathBuf, overrides: bool },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin { .. } => write!(f, "built-in"),
            Source::User {
                path,
                overrides: false,
            } => write!(f, "{}", path.display()),
            Source::User {
                path,
                overrides: true,
            } => write!(f, "{} (overrides built-in)", path.display()),
        }
    }
}

/// One entry with where it came from.
#[derive(Debug, Clone)]
pub struct Listed {
    pub entry: ImageEntry,
    pub source: Source,
}

/// Checks what the format cannot say by itself.
pub fn validate(entry: &ImageEntry) -> Result<(), String> {
    if !valid_name(&entry.name) {
        return Err(format!(
            "invalid name {:?}: use lowercase letters, digits, '.', '-' and '_'",
            entry.name
        ));
    }
    if entry.artifacts.is_empty() {
        return Err("no [[artifacts]]".into());
    }
    if entry.license_requires_acceptance && entry.license.is_none() {
        return Err("license_requires_acceptance needs a license note".into());
    }
    let mut seen: Vec<ProviderKind> = Vec::new();
    for (i, a) in entry.artifacts.iter().enumerate() {
        let at = format!("artifact {}", i + 1);
        if a.providers.is_empty() {
            return Err(format!("{at}: providers is empty"));
        }
        for p in &a.providers {
            if *p == ProviderKind::Auto {
                return Err(format!(
                    "{at}: \"auto\" is not a provider (libvirt, hyperv, virtualbox)"
                ));
            }
            if seen.contains(p) {
                return Err(format!("{at}: a second artifact for provider {p}"));
            }
            seen.push(*p);
        }
        let scheme_ok = |u: &str| {
            u.starts_with("https://") || u.starts_with("http://") || u.starts_with("file://")
        };
        if !scheme_ok(&a.url) {
            return Err(format!(
                "{at}: url {:?} must start with https://, http:// or file://",
                a.url
            ));
        }
        match (&a.sha256, &a.checksum_url, &a.checksum_name) {
            (Some(s), None, None) => {
                if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("{at}: sha256 {s:?} is not 64 hex digits"));
                }
            }
            (None, Some(u), Some(n)) => {
                if !scheme_ok(u) {
                    return Err(format!(
                        "{at}: checksum_url {u:?} must start with https://, http:// or file://"
                    ));
                }
                if n.is_empty() {
                    return Err(format!("{at}: checksum_name is empty"));
                }
            }
            _ => {
                return Err(format!(
                    "{at}: give either sha256, or checksum_url and checksum_name"
                ));
            }
        }
    }
    Ok(())
}

/// Parses and validates one entry's text; `source_name` is for messages.
pub fn parse(source_name: &str, text: &str) -> Result<ImageEntry, ImageError> {
    let entry: ImageEntry = toml::from_str(text).map_err(|source| ImageError::Parse {
        path: PathBuf::from(source_name),
        source,
    })?;
    validate(&entry).map_err(|message| ImageError::Invalid {
        source_name: source_name.to_string(),
        message,
    })?;
    Ok(entry)
}

/// The built-in entries, parsed once. A malformed built-in catalog fails
/// the unit tests; should one ever ship, every image command says so.
pub fn builtin() -> Result<&'static [ImageEntry], ImageError> {
    static PARSED: OnceLock<Result<Vec<ImageEntry>, String>> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        BUILTIN
            .iter()
            .map(|(file, text)| parse(file, text).map_err(|e| crate::error::one_line(&e)))
            .collect()
    });
    match parsed {
        Ok(v) => Ok(v),
        Err(message) => Err(ImageError::Invalid {
            source_name: "the built-in catalog".into(),
            message: message.clone(),
        }),
    }
}

pub(crate) fn user_catalog_dir(dirs: &Dirs) -> PathBuf {
    dirs.config.join("images")
}

/// The user's catalog entries, sorted by name.
pub fn user_entries(dirs: &Dirs) -> Result<Vec<(ImageEntry, PathBuf)>, ImageError> {
    let dir = user_catalog_dir(dirs);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ImageError::Io {
                what: "cannot read",
                path: dir,
                source,
            });
        }
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ImageError::Io {
            what: "cannot read",
            path: path.clone(),
            source,
        })?;
        let entry = parse(&path.display().to_string(), &text).map_err(|e| match e {
            ImageError::Parse { source, .. } => ImageError::Parse {
                path: path.clone(),
                source,
            },
            other => other,
        })?;
        out.push((entry, path));
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name).then(a.1.cmp(&b.1)));
    // Two user files with one name: which one wins must not depend on the
    // directory order.
    for w in out.windows(2) {
        if w[0].0.name == w[1].0.name {
            return Err(ImageError::Invalid {
                source_name: w[1].1.display().to_string(),
                message: format!(
                    "image {} is also defined in {}",
                    w[0].0.name,
                    w[0].1.display()
                ),
            });
        }
    }
    Ok(out)
}

/// The whole catalog, user entries over built-in ones, sorted by name.
pub fn all(dirs: &Dirs) -> Result<Vec<Listed>, ImageError> {
    let user = user_entries(dirs)?;
    let builtin = builtin()?;
    let mut out: Vec<Listed> = builtin
        .iter()
        .zip(BUILTIN)
        .filter(|(e, _)| !user.iter().any(|(u, _)| u.name == e.name))
        .map(|(e, (file, _))| Listed {
            entry: e.clone(),
            source: Source::Builtin { file },
        })
        .collect();
    for (entry, path) in user {
        let overrides = builtin.iter().any(|b| b.name == entry.name);
        out.push(Listed {
            entry,
            source: Source::User { path, overrides },
        });
    }
    out.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    Ok(out)
}

/// Finds an image by name.
pub fn find(dirs: &Dirs, name: &str) -> Result<ImageEntry, ImageError> {
    find_listed(dirs, name).map(|l| l.entry)
}

pub fn find_listed(dirs: &Dirs, name: &str) -> Result<Listed, ImageError> {
    let all = all(dirs)?;
    let known = all.iter().map(|l| l.entry.name.clone()).collect();
    all.into_iter()
        .find(|l| l.entry.name == name)
        .ok_or_else(|| ImageError::Unknown {
            name: name.to_string(),
            known,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Os;

    #[test]
    fn builtin_catalog_parses_and_is_sound() {
        let entries = builtin().unwrap_or_else(|e| panic!("{}", crate::error::one_line(&e)));
        assert_eq!(entries.len(), BUILTIN.len());
        let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), entries.len(), "two entries share a name");
        for e in entries {
            for a in &e.artifacts {
                assert!(
                    a.sha256.is_some() || (a.checksum_url.is_some() && a.checksum_name.is_some()),
                    "{}: an artifact without a checksum source",
                    e.name
                );
                assert!(a.url.starts_with("https://"), "{}: {}", e.name, a.url);
            }
            // Every provider can get each built-in image.
            for p in [
                ProviderKind::Libvirt,
                ProviderKind::Hyperv,
                ProviderKind::Virtualbox,
            ] {
                e.artifact_for(p).unwrap();
            }
        }
        // The defaults of the spec are in the catalog.
        let linux = entries.iter().find(|e| e.name == "ubuntu-24.04").unwrap();
        assert_eq!(linux.os, Os::Linux);
        assert!(!linux.license_requires_acceptance);
        for name in ["windows-server-2022", "windows-server-2025"] {
            let w = entries.iter().find(|e| e.name == name).unwrap();
            assert_eq!(w.os, Os::Windows);
            assert!(w.license_requires_acceptance, "{name}: evaluation licence");
            assert!(w.license.as_deref().unwrap().contains("evaluation"));
        }
    }

    #[test]
    fn builtin_files_are_all_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| format!("images/{}", e.file_name().to_string_lossy()))
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = BUILTIN.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new images/*.toml files to BUILTIN");
        // File name = entry name, so users know which file to override.
        for (file, text) in BUILTIN {
            let e = parse(file, text).unwrap();
            assert_eq!(*file, format!("images/{}.toml", e.name));
        }
    }

    #[test]
    fn validation_rejects_what_the_format_allows() {
        let base = r#"
name = "x"
os = "linux"
firmware = "uefi"
default_user = "u"
[[artifacts]]
providers = ["libvirt"]
url = "https://example.org/x.img"
format = "qcow2"
"#;
        let cases = [
            ("", "give either sha256, or checksum_url and checksum_name"),
            ("sha256 = \"abc\"\n", "is not 64 hex digits"),
            (
                "checksum_url = \"https://example.org/SUMS\"\n",
                "give either sha256",
            ),
        ];
        for (extra, msg) in cases {
            let text = format!("{base}{extra}");
            let err = parse("t.toml", &text).unwrap_err().to_string();
            assert!(err.contains(msg), "{extra:?}: {err}");
        }
        let ok = format!("{base}sha256 = \"{}\"\n", "a".repeat(64));
        parse("t.toml", &ok).unwrap();
        let unknown = format!("{ok}mirror = \"no\"\n");
        assert!(matches!(
            parse("t.toml", &unknown),
            Err(ImageError::Parse { .. })
        ));
        let auto = ok.replace("[\"libvirt\"]", "[\"auto\"]");
        assert!(parse("t.toml", &auto).is_err());
        let twice = format!(
            "{ok}[[artifacts]]\nproviders = [\"libvirt\"]\nurl = \"https://e/y\"\nformat = \"vdi\"\nsha256 = \"{}\"\n",
            "b".repeat(64)
        );
        assert!(
            parse("t.toml", &twice)
                .unwrap_err()
                .to_string()
                .contains("second artifact")
        );
    }

    #[test]
    fn user_entries_override_builtin_ones() {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(home.path());
        let dir = user_catalog_dir(&dirs);
        std::fs::create_dir_all(&dir).unwrap();
        let (_, text) = BUILTIN[0];
        let mirrored = text.replace(
            "https://cloud-images.ubuntu.com/releases",
            "https://mirror.example.org/ubuntu",
        );
        std::fs::write(dir.join("my-ubuntu.toml"), &mirrored).unwrap();
        let all = all(&dirs).unwrap();
        let u = all.iter().find(|l| l.entry.name == "ubuntu-24.04").unwrap();
        assert!(
            u.entry.artifacts[0]
                .url
                .starts_with("https://mirror.example.org/")
        );
        assert!(matches!(
            u.source,
            Source::User {
                overrides: true,
                ..
            }
        ));
        assert!(u.source.to_string().ends_with("(overrides built-in)"));
        let w = all
            .iter()
            .find(|l| l.entry.name == "windows-server-2022")
            .unwrap();
        assert_eq!(w.source.to_string(), "built-in");
        // The same name twice among the user's files is an error naming both.
        std::fs::write(dir.join("again.toml"), &mirrored).unwrap();
        let err = super::all(&dirs).unwrap_err().to_string();
        assert!(err.contains("also defined in"), "{err}");
    }
}
