//! One file per verb. Each is thin: read state, call the core, print.

use clap::ArgMatches;

use crate::dirs::Dirs;
use crate::spec::{Origin, Val};
use crate::ui::Printer;

pub mod completions;
pub mod destroy;
pub mod images;
pub mod kubeconfig;
pub mod lifecycle;
pub mod list;
pub mod logs;
pub mod ssh;
pub mod status;
pub mod up;
pub mod use_;

/// What every command gets.
pub struct Ctx {
    pub dirs: Dirs,
    pub printer: Printer,
    /// The `--cluster` value and where it came from (not validated yet).
    pub cluster: Val<String>,
}

impl Ctx {
    /// The cluster name after validation.
    pub fn cluster_name(&self) -> Result<&str, crate::error::UserError> {
        crate::spec::validate_cluster_name(&self.cluster)?;
        Ok(&self.cluster.value)
    }
}

/// Origin of a clap argument's value: the flag, or its environment variable.
pub fn arg_origin(
    matches: &ArgMatches,
    id: &str,
    flag: &'static str,
    env: Option<&'static str>,
) -> Origin {
    match (matches.value_source(id), env) {
        (Some(clap::parser::ValueSource::EnvVariable), Some(var)) => Origin::Env(var),
        (Some(clap::parser::ValueSource::DefaultValue), _) => Origin::Default,
        _ => Origin::Flag(flag),
    }
}

/// The async runtime of commands that talk to hypervisors and guests: a
/// small multi-threaded one (blocking libvirt calls run beside SSH).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
