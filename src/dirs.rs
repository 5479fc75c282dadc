//! Where devcluster keeps its files.
//!
//! `DEVCLUSTER_HOME=DIR` puts config in `DIR/config`, state in `DIR/state`
//! and the cache in `DIR/cache` (tests use this). Otherwise the platform's
//! directories via `directories`: config in the config dir, state (cluster
//! dirs, VM disks) in the *local* data dir — never roaming AppData on
//! Windows, VM disks must not sync — and images in the cache dir.

use std::path::{Path, PathBuf};

use crate::error::UserError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub config: PathBuf,
    pub state: PathBuf,
    pub cache: PathBuf,
}

impl Dirs {
    /// From `DEVCLUSTER_HOME`, else the platform directories.
    pub fn from_env() -> Result<Self, UserError> {
        if let Some(home) = std::env::var_os("DEVCLUSTER_HOME").filter(|h| !h.is_empty()) {
            let home = PathBuf::from(home);
            let home = if home.is_absolute() {
                home
            } else {
                std::env::current_dir()
                    .map_err(|e| UserError::new(format!("cannot read the current directory: {e}")))?
                    .join(home)
            };
            return Ok(Self::under(&home));
        }
        let dirs =
            directories::ProjectDirs::from("dev", "devcluster", "devcluster").ok_or_else(|| {
                UserError::new("cannot find your home directory")
                    .hint("set DEVCLUSTER_HOME to a directory devcluster may use")
            })?;
        Ok(Self {
            config: dirs.config_dir().to_path_buf(),
            state: dirs.data_local_dir().to_path_buf(),
            cache: dirs.cache_dir().to_path_buf(),
        })
    }

    /// The layout under one root directory.
    pub fn under(root: &Path) -> Self {
        Self {
            config: root.join("config"),
            state: root.join("state"),
            cache: root.join("cache"),
        }
    }

    /// The user's config file (lowest layer above the defaults).
    pub fn user_config_file(&self) -> PathBuf {
        self.config.join("config.toml")
    }

    /// Directory holding one directory per cluster.
    pub fn clusters(&self) -> PathBuf {
        self.state.join("clusters")
    }

    /// `clusters/NAME`.
    pub fn cluster(&self, name: &str) -> PathBuf {
        self.clusters().join(name)
    }

    /// Lock files live outside the cluster dirs so `destroy` can remove a
    /// cluster dir while holding its lock (Windows cannot delete a
    /// directory with an open file in it).
    pub fn locks(&self) -> PathBuf {
        self.state.join("locks")
    }
}
