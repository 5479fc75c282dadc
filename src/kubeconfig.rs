//! The user's kubeconfig: add, switch to and remove a cluster's entries the
//! way kubectl does, and touch nothing else.
//!
//! # What we write
//!
//! A cluster NAME owns exactly three entries, all named `devcluster-NAME`:
//! a `clusters` entry (server `https://<control-plane IP>:6443` and the CA),
//! a `users` entry (the admin client certificate and key) and a `contexts`
//! entry joining them. Upserting updates the fields we own in place
//! (`server`, `certificate-authority-data`; `client-certificate-data`,
//! `client-key-data`; `cluster`, `user`) and drops the ones that would
//! contradict them (`certificate-authority`, `insecure-skip-tls-verify`,
//! `client-certificate`, `client-key`); anything the user added to our
//! entries (a context's `namespace`, extensions) stays. Other entries,
//! other fields and keys we do not know are left exactly as they were.
//!
//! # Why a generic YAML tree
//!
//! We edit an order-preserving `serde_norway::Value` tree, not kube's typed
//! `Kubeconfig`. A typed round trip re-orders keys, drops or adds fields
//! (kube adds `provideClusterInfo: false`, kubectl itself drops every field
//! its Go structs do not know) and absolutizes relative paths; a tree keeps
//! every foreign entry, field and unknown key, in order, byte-identical once
//! re-serialized. What a YAML parser cannot keep is lost, as with kubectl:
//! comments, quoting style and anchors (aliases are expanded).
//!
//! # Which file
//!
//! kubectl's rules (client-go `clientcmd`), followed exactly:
//! - `KUBECONFIG` set and non-empty: its list (`:`-separated, `;` on
//!   Windows; empty items ignored, duplicates dropped). An entry that
//!   already exists is modified in the first file that defines it. New
//!   entries and `current-context` go to the *default file*: the only file
//!   if there is one, else the first file of the list that exists, else the
//!   **last** one (created; kubectl's `GetDefaultFilename`).
//! - Otherwise `~/.kube/config` (home from `directories::BaseDirs`).
//!
//! The effective current context is the first non-empty `current-context`
//! in list order. Removing a cluster drops its three entries from every
//! file of the list and empties `current-context` wherever it names the
//! cluster's context.
//!
//! # Safe writes
//!
//! Every edit holds `<file>.lock` for *every* file of the list, created
//! exclusively (`create_new`) in sorted order: kubectl and kind use the same
//! files, so we never interleave with them. A held lock is retried with
//! backoff for [`LOCK_TIMEOUT`]; then the error names the lock file and says
//! to delete it if nothing is running (kubectl would give up at once). The
//! files are read under the lock, changed in memory, and written only if
//! their content changed: the previous content is kept as
//! `<file>.devcluster.bak`, and the new one replaces the file atomically
//! (temp + rename via [`crate::fsutil`]), 0600 on Unix (kubectl creates its
//! files 0600 too). A symlinked kubeconfig is written through to its target.
//!
//! # Bad input
//!
//! A file that is not valid YAML, has the wrong shape (the top level not a
//! mapping, `clusters` not a list, an entry without a string `name`,
//! `current-context` not a string), is a directory, or cannot be read is
//! an error naming that file, and nothing is written anywhere. An empty
//! file (or one holding only comments or `null`) is an empty config, as
//! kubectl's loader treats it; our entries are added to it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_norway::{Mapping, Value};

use crate::dirs::Dirs;
use crate::fsutil::{Access, atomic_write};

/// Prefix of every name devcluster owns in a kubeconfig.
pub const PREFIX: &str = "devcluster-";

/// How long an edit waits for another program's lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The kinds of named entries: (list key, body key).
const KINDS: [(&str, &str); 3] = [
    ("clusters", "cluster"),
    ("users", "user"),
    ("contexts", "context"),
];

/// Fields that contradict the ones we set, per body key.
fn conflicting(body_key: &str) -> &'static [&'static str] {
    match body_key {
        "cluster" => &["certificate-authority", "insecure-skip-tls-verify"],
        "user" => &["client-certificate", "client-key"],
        _ => &[],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot find your home directory (for ~/.kube/config)")]
    NoHome,
    #[error("no kubeconfig file to edit")]
    NoFiles,
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is a directory, not a kubeconfig file", path.display())]
    IsDir { path: PathBuf },
    #[error("{} is not valid YAML", path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("{} is not a valid kubeconfig: {what}", path.display())]
    Shape { path: PathBuf, what: String },
    #[error(
        "the kubeconfig lock file {} still exists after {} s: another kubectl or devcluster is editing the kubeconfig, or one was killed while doing so",
        lock.display(), waited.as_secs()
    )]
    Locked { lock: PathBuf, waited: Duration },
    #[error("cannot create the lock file {}", lock.display())]
    Lock {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster {cluster} has no admin kubeconfig ({})", path.display())]
    NoAdmin { cluster: String, path: PathBuf },
    #[error("there is no context {context} in {files}")]
    NoContext { context: String, files: String },
}

impl KubeconfigError {
    pub fn hint(&self) -> Option<String> {
        match self {
            KubeconfigError::NoHome => {
                Some("set KUBECONFIG to the kubeconfig file devcluster should edit".into())
            }
            KubeconfigError::Read { path, .. }
            | KubeconfigError::IsDir { path }
            | KubeconfigError::Yaml { path, .. }
            | KubeconfigError::Shape { path, .. } => Some(format!(
                "fix or move {} (devcluster changed nothing), or point KUBECONFIG at another file",
                path.display()
            )),
            KubeconfigError::Locked { lock, .. } => Some(format!(
                "if no kubectl or devcluster is running, delete {} and try again",
                lock.display()
            )),
            KubeconfigError::NoAdmin { cluster, .. } => Some(format!(
                "create the cluster with `devcluster --cluster {cluster} up`"
            )),
            KubeconfigError::NoContext { context, .. } => {
                let cluster = context.strip_prefix(PREFIX).unwrap_or(context);
                Some(format!(
                    "create the cluster with `devcluster --cluster {cluster} up`; `devcluster use` lists the clusters you have"
                ))
            }
            _ => None,
        }
    }
}

/// `devcluster-NAME`: the cluster, user and context name of cluster NAME.
pub fn context_name(cluster: &str) -> String {
    format!("{PREFIX}{cluster}")
}

/// The cluster NAME of a `devcluster-NAME` context.
pub fn cluster_of_context(context: &str) -> Option<&str> {
    context.strip_prefix(PREFIX).filter(|n| !n.is_empty())
}

// ---------------------------------------------------------------------------
// The admin kubeconfig and our entries

fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Mapping {
    pairs.into_iter().map(|(k, v)| (key(k), v)).collect()
}

/// The key order kubectl writes.
fn skeleton() -> Mapping {
    map([
        ("apiVersion", key("v1")),
        ("clusters", Value::Sequence(Vec::new())),
        ("contexts", Value::Sequence(Vec::new())),
        ("current-context", key("")),
        ("kind", key("Config")),
        ("preferences", Value::Mapping(Mapping::new())),
        ("users", Value::Sequence(Vec::new())),
    ])
}

/// A named entry in kubectl's key order (alphabetical).
fn entry(name: &str, body_key: &str, body: Mapping) -> Value {
    let mut m = Mapping::new();
    if body_key < "name" {
        m.insert(key(body_key), Value::Mapping(body));
        m.insert(key("name"), key(name));
    } else {
        m.insert(key("name"), key(name));
        m.insert(key(body_key), Value::Mapping(body));
    }
    Value::Mapping(m)
}

/// The admin kubeconfig of a cluster: one cluster, user and context named
/// `devcluster-NAME`, certificates embedded, current-context set.
pub fn admin_kubeconfig(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    let b64 = |s: &str| key(&base64::engine::general_purpose::STANDARD.encode(s));
    let name = context_name(cluster);
    let mut doc = skeleton();
    let entries = Entries {
        name: name.clone(),
        bodies: [
            map([
                ("certificate-authority-data", b64(ca_pem)),
                ("server", key(server)),
            ]),
            map([
                ("client-certificate-data", b64(cert_pem)),
                ("client-key-data", b64(key_pem)),
            ]),
            map([("cluster", key(&name)), ("user", key(&name))]),
        ],
    };
    upsert(&mut doc, &entries);
    set_current_context(&mut doc, &name);
    to_yaml(&doc)
}

/// One cluster's three entries (cluster, user, context bodies), as taken
/// from its admin kubeconfig. `Debug` shows the name only.
#[derive(Clone, PartialEq)]
pub struct Entries {
    name: String,
    /// In [`KINDS`] order.
    bodies: [Mapping; 3],
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Entries {
    /// Entries from explicit bodies (tests, tools).
    pub fn new(name: &str, cluster: Mapping, user: Mapping, context: Mapping) -> Self {
        Self {
            name: name.to_string(),
            bodies: [cluster, user, context],
        }
    }

    /// The entries named `devcluster-CLUSTER` in the cluster's admin
    /// kubeconfig.
    pub fn from_admin_kubeconfig(path: &Path, cluster: &str) -> Result<Self, KubeconfigError> {
        let Some((_, doc)) = read_file(path)? else {
            return Err(KubeconfigError::NoAdmin {
                cluster: cluster.to_string(),
                path: path.to_path_buf(),
            });
        };
        let name = context_name(cluster);
        let mut bodies: [Mapping; 3] = Default::default();
        for (i, (list, body_key)) in KINDS.iter().enumerate() {
            let body = named(&doc, list, &name)
                .next()
                .and_then(|e| e.get(*body_key))
                .and_then(Value::as_mapping)
                .ok_or_else(|| KubeconfigError::Shape {
                    path: path.to_path_buf(),
                    what: format!("it has no {body_key} named {name}"),
                })?;
            bodies[i] = body.clone();
        }
        Ok(Self { name, bodies })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

// ---------------------------------------------------------------------------
// The pure core: documents in memory

/// Parses a kubeconfig's text: an empty document is an empty config; a
/// wrong shape is an error naming `path`.
pub fn parse(path: &Path, text: &[u8]) -> Result<Mapping, KubeconfigError> {
    let value: Value = serde_norway::from_slice(text).map_err(|source| KubeconfigError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    check_shape(path, value)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn check_shape(path: &Path, doc: Value) -> Result<Mapping, KubeconfigError> {
    let bad = |what: String| KubeconfigError::Shape {
        path: path.to_path_buf(),
        what,
    };
    let doc = match doc {
        Value::Null => return Ok(Mapping::new()),
        Value::Mapping(m) => m,
        other => {
            return Err(bad(format!(
                "the top level is {}, not a mapping",
                type_name(&other)
            )));
        }
    };
    for (list, _) in KINDS {
        match doc.get(list) {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let Value::Mapping(m) = item else {
                        return Err(bad(format!(
                            "{list}[{i}] is {}, not a mapping",
                            type_name(item)
                        )));
                    };
                    match m.get("name") {
                        Some(Value::String(_)) => {}
                        None => return Err(bad(format!("{list}[{i}] has no name"))),
                        Some(other) => {
                            return Err(bad(format!(
                                "the name of {list}[{i}] is {}, not a string",
                                type_name(other)
                            )));
                        }
                    }
                }
            }
            Some(other) => {
                return Err(bad(format!("`{list}` is {}, not a list", type_name(other))));
            }
        }
    }
    match doc.get("current-context") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => {
            return Err(bad(format!(
                "`current-context` is {}, not a string",
                type_name(other)
            )));
        }
    }
    Ok(doc)
}

/// YAML text of a document.
pub fn to_yaml(doc: &Mapping) -> String {
    // Serializing a tree of plain YAML values cannot fail.
    serde_norway::to_string(doc).unwrap_or_default()
}

fn entries_of<'a>(doc: &'a Mapping, list: &str) -> &'a [Value] {
    doc.get(list)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn name_of(item: &Value) -> Option<&str> {
    item.get("name").and_then(Value::as_str)
}

fn named<'a>(doc: &'a Mapping, list: &str, name: &'a str) -> impl Iterator<Item = &'a Value> {
    entries_of(doc, list)
        .iter()
        .filter(move |e| name_of(e) == Some(name))
}

/// Whether `doc` has an entry `name` in `list` (`clusters`, `users`,
/// `contexts`).
pub fn defines(doc: &Mapping, list: &str, name: &str) -> bool {
    named(doc, list, name).next().is_some()
}

/// The names in `list`, in order.
pub fn names(doc: &Mapping, list: &str) -> Vec<String> {
    entries_of(doc, list)
        .iter()
        .filter_map(name_of)
        .map(str::to_string)
        .collect()
}

/// `current-context`, when set and non-empty.
pub fn current_context(doc: &Mapping) -> Option<&str> {
    doc.get("current-context")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Sets `current-context` (in place if the key exists, else at the end).
pub fn set_current_context(doc: &mut Mapping, context: &str) {
    doc.insert(key("current-context"), key(context));
}

fn upsert_kind(doc: &mut Mapping, kind: usize, name: &str, body: &Mapping) {
    let (list, body_key) = KINDS[kind];
    let slot = doc
        .entry(key(list))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if !slot.is_sequence() {
        *slot = Value::Sequence(Vec::new());
    }
    let Value::Sequence(items) = slot else {
        return;
    };
    let found: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, e)| name_of(e) == Some(name))
        .map(|(i, _)| i)
        .collect();
    let Some((&first, dupes)) = found.split_first() else {
        items.push(entry(name, body_key, body.clone()));
        return;
    };
    for &i in dupes.iter().rev() {
        items.remove(i);
    }
    let Value::Mapping(e) = &mut items[first] else {
        return;
    };
    match e.get_mut(body_key) {
        Some(Value::Mapping(existing)) => {
            for k in conflicting(body_key) {
                if !body.contains_key(*k) {
                    existing.shift_remove(*k);
                }
            }
            for (k, v) in body {
                existing.insert(k.clone(), v.clone());
            }
        }
        _ => {
            e.insert(key(body_key), Value::Mapping(body.clone()));
        }
    }
}

/// Adds or updates all three entries in one document. A document without
/// content (a new or empty file) gets kubectl's skeleton first.
pub fn upsert(doc: &mut Mapping, entries: &Entries) {
    if doc.is_empty() {
        *doc = skeleton();
    }
    for (kind, body) in entries.bodies.iter().enumerate() {
        upsert_kind(doc, kind, &entries.name, body);
    }
}

/// Removes the entries named `name` from every list and empties
/// `current-context` if it is `name`. Returns whether anything changed.
pub fn remove(doc: &mut Mapping, name: &str) -> bool {
    let mut changed = false;
    for (list, _) in KINDS {
        if let Some(Value::Sequence(items)) = doc.get_mut(list) {
            let before = items.len();
            items.retain(|e| name_of(e) != Some(name));
            changed |= items.len() != before;
        }
    }
    if current_context(doc) == Some(name) {
        set_current_context(doc, "");
        changed = true;
    }
    changed
}

// ---------------------------------------------------------------------------
// Files

/// Reads and parses one kubeconfig file; `None` if it does not exist.
fn read_file(path: &Path) -> Result<Option<(Vec<u8>, Mapping)>, KubeconfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(KubeconfigError::IsDir {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KubeconfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let bytes = std::fs::read(path).map_err(|source| KubeconfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let doc = parse(path, &bytes)?;
    Ok(Some((bytes, doc)))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `<file>.lock`: kubectl's and kind's lock file name.
pub fn lock_path(file: &Path) -> PathBuf {
    with_suffix(file, ".lock")
}

/// `<file>.devcluster.bak`: the content before our last write.
pub fn backup_path(file: &Path) -> PathBuf {
    with_suffix(file, ".devcluster.bak")
}

/// Lock files we created; removed on drop.
struct Locks(Vec<PathBuf>);

impl Drop for Locks {
    fn drop(&mut self) {
        for lock in self.0.iter().rev() {
            let _ = std::fs::remove_file(lock);
        }
    }
}

/// One file of the list, as read under the lock, and our edit of it.
struct Loaded {
    path: PathBuf,
    original: Option<(Vec<u8>, Mapping)>,
    doc: Option<Mapping>,
}

impl Loaded {
    fn exists(&self) -> bool {
        self.original.is_some()
    }

    /// The document to edit; a new file starts empty.
    fn doc_mut(&mut self) -> &mut Mapping {
        self.doc.get_or_insert_with(Mapping::new)
    }
}

/// The user's kubeconfig files, and edits on them.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    files: Vec<PathBuf>,
    lock_timeout: Duration,
}

impl Kubeconfig {
    /// `KUBECONFIG`, else `~/.kube/config`.
    pub fn from_env() -> Result<Self, KubeconfigError> {
        if let Some(list) = std::env::var_os("KUBECONFIG") {
            let files = Self::with_files(std::env::split_paths(&list).collect());
            if !files.files.is_empty() {
                return Ok(files);
            }
        }
        let home = directories::BaseDirs::new().ok_or(KubeconfigError::NoHome)?;
        Ok(Self::with_files(vec![
            home.home_dir().join(".kube").join("config"),
        ]))
    }

    /// An explicit list, as if `KUBECONFIG` held it (empty items ignored,
    /// duplicates dropped).
    pub fn with_files(list: Vec<PathBuf>) -> Self {
        let mut files: Vec<PathBuf> = Vec::new();
        for f in list {
            if !f.as_os_str().is_empty() && !files.contains(&f) {
                files.push(f);
            }
        }
        Self {
            files,
            lock_timeout: LOCK_TIMEOUT,
        }
    }

    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn describe(&self) -> String {
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// kubectl's default file: the only one, else the first that exists,
    /// else the last.
    pub fn default_file(&self) -> Option<&Path> {
        let i = self.default_index(|p| p.exists())?;
        Some(&self.files[i])
    }

    fn default_index(&self, exists: impl Fn(&Path) -> bool) -> Option<usize> {
        match self.files.len() {
            0 => None,
            1 => Some(0),
            n => Some(self.files.iter().position(|f| exists(f)).unwrap_or(n - 1)),
        }
    }

    fn lock(&self) -> Result<Locks, KubeconfigError> {
        let mut files = self.files.clone();
        files.sort();
        let mut held = Locks(Vec::new());
        for file in files {
            let lock = lock_path(&file);
            if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs_err::create_dir_all(dir).map_err(|source| KubeconfigError::Lock {
                    lock: lock.clone(),
                    source,
                })?;
            }
            let start = Instant::now();
            let mut pause = Duration::from_millis(5);
            loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&lock)
                {
                    Ok(_) => {
                        held.0.push(lock);
                        break;
                    }
                    Err(e) if contended(&e) => {
                        let waited = start.elapsed();
                        if waited >= self.lock_timeout {
                            return Err(KubeconfigError::Locked {
                                lock,
                                waited: self.lock_timeout,
                            });
                        }
                        let jitter =
                            Duration::from_micros(u64::from(getrandom::u32().unwrap_or(0)) % 5000);
                        std::thread::sleep((pause + jitter).min(self.lock_timeout - waited));
                        pause = (pause * 2).min(Duration::from_millis(100));
                    }
                    Err(source) => return Err(KubeconfigError::Lock { lock, source }),
                }
            }
        }
        Ok(held)
    }

    fn load_all(&self) -> Result<Vec<Loaded>, KubeconfigError> {
        if self.files.is_empty() {
            return Err(KubeconfigError::NoFiles);
        }
        self.files
            .iter()
            .map(|path| {
                let original = read_file(path)?;
                Ok(Loaded {
                    path: path.clone(),
                    doc: original.as_ref().map(|(_, d)| d.clone()),
                    original,
                })
            })
            .collect()
    }

    /// Writes the files whose document changed. Returns them.
    fn save(loaded: &[Loaded]) -> Result<Vec<PathBuf>, KubeconfigError> {
        let mut written = Vec::new();
        for l in loaded {
            let Some(doc) = &l.doc else { continue };
            if l.original.as_ref().map(|(_, d)| d) == Some(doc) {
                continue;
            }
            write_file(&l.path, l.original.as_ref().map(|(b, _)| b.as_slice()), doc)?;
            written.push(l.path.clone());
        }
        Ok(written)
    }

    fn effective_context(loaded: &[Loaded]) -> Option<&str> {
        loaded
            .iter()
            .filter_map(|l| l.doc.as_ref().and_then(current_context))
            .next()
    }

    /// Adds or updates one cluster's entries; with `switch`, makes its
    /// context the current one. Returns the file holding the context.
    pub fn merge(&self, entries: &Entries, switch: bool) -> Result<PathBuf, KubeconfigError> {
        let _locks = self.lock()?;
        let mut loaded = self.load_all()?;
        let default = self
            .default_index(|p| loaded.iter().any(|l| l.path == p && l.exists()))
            .ok_or(KubeconfigError::NoFiles)?;
        let mut context_file = default;
        for (kind, (list, _)) in KINDS.iter().enumerate() {
            let dest = loaded
                .iter()
                .position(|l| {
                    l.doc
                        .as_ref()
                        .is_some_and(|d| defines(d, list, &entries.name))
                })
                .unwrap_or(default);
            let doc = loaded[dest].doc_mut();
            if doc.is_empty() {
                *doc = skeleton();
            }
            upsert_kind(doc, kind, &entries.name, &entries.bodies[kind]);
            if *list == "contexts" {
                context_file = dest;
            }
        }
        if switch && Self::effective_context(&loaded) != Some(entries.name.as_str()) {
            let doc = loaded[default].doc_mut();
            if doc.is_empty() {
                *doc = skeleton();
            }
            set_current_context(doc, &entries.name);
        }
        Self::save(&loaded)?;
        Ok(loaded[context_file].path.clone())
    }

    /// Removes the entries named `name` (and `current-context` if it is
    /// `name`) from every file. Returns the files changed.
    pub fn remove(&self, name: &str) -> Result<Vec<PathBuf>, KubeconfigError> {
        // Nothing to remove from files that do not exist: do not create
        // directories for lock files either.
        if !self.files.iter().any(|f| f.exists()) {
            return Ok(Vec::new());
        }
        let _locks = self.lock()?;
        let mut loaded = self.load_all()?;
        for l in &mut loaded {
            if let Some(doc) = &mut l.doc {
                remove(doc, name);
            }
        }
        Self::save(&loaded)
    }

    /// Makes `context` the current context; it must exist in some file.
    /// Returns the file that now names it.
    pub fn use_context(&self, context: &str) -> Result<PathBuf, KubeconfigError> {
        let _locks = self.lock()?;
        let mut loaded = self.load_all()?;
        let defined = loaded.iter().any(|l| {
            l.doc
                .as_ref()
                .is_some_and(|d| defines(d, "contexts", context))
        });
        if !defined {
            return Err(KubeconfigError::NoContext {
                context: context.to_string(),
                files: self.describe(),
            });
        }
        let default = self
            .default_index(|p| loaded.iter().any(|l| l.path == p && l.exists()))
            .ok_or(KubeconfigError::NoFiles)?;
        if Self::effective_context(&loaded) != Some(context) {
            set_current_context(loaded[default].doc_mut(), context);
            Self::save(&loaded)?;
        }
        Ok(loaded[default].path.clone())
    }

    /// The effective current context (first non-empty in list order).
    pub fn current_context(&self) -> Result<Option<String>, KubeconfigError> {
        let loaded = self.load_all()?;
        Ok(Self::effective_context(&loaded).map(str::to_string))
    }

    /// Every context name, in list order, each once.
    pub fn contexts(&self) -> Result<Vec<String>, KubeconfigError> {
        let mut out: Vec<String> = Vec::new();
        for l in self.load_all()? {
            for name in l
                .doc
                .as_ref()
                .map(|d| names(d, "contexts"))
                .unwrap_or_default()
            {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(windows)]
fn contended(e: &std::io::Error) -> bool {
    // A lock file being deleted by its holder answers "access denied".
    matches!(
        e.kind(),
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::PermissionDenied
    )
}

#[cfg(not(windows))]
fn contended(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::AlreadyExists
}

fn write_file(path: &Path, old: Option<&[u8]>, doc: &Mapping) -> Result<(), KubeconfigError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KubeconfigError::Write { path, source }
    };
    // Write through a symlink (dotfile repos), never replace it.
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(werr(path))?,
        _ => path.to_path_buf(),
    };
    if let Some(old) = old {
        let bak = backup_path(path);
        atomic_write(&bak, old, Access::Private).map_err(werr(&bak))?;
    }
    tracing::debug!(path = %path.display(), "writing kubeconfig");
    atomic_write(&target, to_yaml(doc).as_bytes(), Access::Private).map_err(werr(path))
}

// ---------------------------------------------------------------------------
// What the commands and `up` call

/// Upserts cluster `cluster_name`'s entries (from its admin kubeconfig)
/// into the user's kubeconfig; with `switch`, makes it the current context.
/// Returns the file that holds the context.
pub fn merge_cluster(
    dirs: &Dirs,
    cluster_name: &str,
    switch: bool,
) -> Result<PathBuf, KubeconfigError> {
    let admin = crate::pki::admin_kubeconfig_path(dirs, cluster_name);
    let entries = Entries::from_admin_kubeconfig(&admin, cluster_name)?;
    Kubeconfig::from_env()?.merge(&entries, switch)
}

/// Removes cluster `cluster_name`'s entries from the user's kubeconfig.
/// Missing files (or no home directory) mean nothing to remove.
pub fn remove_cluster_entries(cluster_name: &str) -> Result<Vec<PathBuf>, KubeconfigError> {
    match Kubeconfig::from_env() {
        Ok(k) => k.remove(&context_name(cluster_name)),
        Err(KubeconfigError::NoHome) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The cluster whose context is kubectl's current context, if it is a
/// devcluster one. Never fails: an unreadable kubeconfig is `None`.
pub fn current_devcluster_context() -> Option<String> {
    let current = Kubeconfig::from_env().ok()?.current_context().ok()??;
    cluster_of_context(&current).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/k/config")
    }

    #[test]
    fn empty_and_null_are_empty_configs() {
        for text in ["", "\n", "# only a comment\n", "null\n", "~"] {
            assert!(parse(p(), text.as_bytes()).unwrap().is_empty(), "{text:?}");
        }
    }

    #[test]
    fn wrong_shapes_name_the_problem() {
        let cases = [
            ("- a\n- b\n", "the top level is a list"),
            ("clusters: oops\n", "`clusters` is a string"),
            ("users:\n- user: {}\n", "users[0] has no name"),
            (
                "contexts:\n- name: 3\n",
                "the name of contexts[0] is a number",
            ),
            ("current-context: [a]\n", "`current-context` is a list"),
        ];
        for (text, want) in cases {
            let err = parse(p(), text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains("/k/config"), "{err}");
        }
        assert!(matches!(
            parse(p(), b"a: [\n"),
            Err(KubeconfigError::Yaml { .. })
        ));
    }

    #[test]
    fn upsert_keeps_user_fields_of_our_entries() {
        let text = "contexts:\n- context:\n    cluster: devcluster-a\n    namespace: web\n    user: devcluster-a\n  name: devcluster-a\nclusters:\n- cluster:\n    certificate-authority: /old/ca\n    server: https://old\n    proxy-url: http://proxy\n  name: devcluster-a\n";
        let mut doc = parse(p(), text.as_bytes()).unwrap();
        let e = Entries::new(
            "devcluster-a",
            map([
                ("certificate-authority-data", key("Q0E=")),
                ("server", key("https://new")),
            ]),
            map([("client-certificate-data", key("Qw=="))]),
            map([
                ("cluster", key("devcluster-a")),
                ("user", key("devcluster-a")),
            ]),
        );
        upsert(&mut doc, &e);
        let out = to_yaml(&doc);
        assert!(out.contains("namespace: web"), "{out}");
        assert!(out.contains("proxy-url: http://proxy"), "{out}");
        assert!(out.contains("server: https://new"), "{out}");
        assert!(!out.contains("/old/ca"), "{out}");
        // Top-level key order is kept; the new `users` list goes last.
        let keys: Vec<_> = doc.keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["contexts", "clusters", "users"]);
    }

    #[test]
    fn remove_clears_only_our_current_context() {
        let mut doc = parse(
            p(),
            b"current-context: devcluster-a\ncontexts:\n- name: devcluster-a\n- name: other\n",
        )
        .unwrap();
        assert!(remove(&mut doc, "devcluster-a"));
        assert_eq!(current_context(&doc), None);
        assert_eq!(names(&doc, "contexts"), ["other"]);
        assert!(!remove(&mut doc, "devcluster-a"));
    }

    #[test]
    fn default_file_follows_kubectl() {
        let k = Kubeconfig::with_files(vec!["a".into(), "".into(), "b".into(), "a".into()]);
        assert_eq!(k.files(), [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(k.default_index(|_| false), Some(1));
        assert_eq!(k.default_index(|f| f == Path::new("b")), Some(1));
        assert_eq!(k.default_index(|_| true), Some(0));
        let one = Kubeconfig::with_files(vec!["x".into()]);
        assert_eq!(one.default_index(|_| false), Some(0));
    }

    #[test]
    fn context_names() {
        assert_eq!(context_name("dev"), "devcluster-dev");
        assert_eq!(cluster_of_context("devcluster-dev"), Some("dev"));
        assert_eq!(cluster_of_context("devcluster-"), None);
        assert_eq!(cluster_of_context("kind-dev"), None);
    }
}
