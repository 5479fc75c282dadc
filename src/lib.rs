//! devcluster: a real multi-node Kubernetes cluster — a Linux control plane
//! plus Linux and Windows Server workers — as VMs on the developer's machine.
//!
//! The shape (see DESIGN.md): a pure core that turns what the user asked
//! for into a plan and rendered files (`spec`, `plan`), thin commands
//! (`commands/`), and effects at the edges (state on disk, providers, SSH,
//! the Kubernetes API).

pub mod cli;
pub mod cluster_status;
pub mod commands;
pub mod dashboard;
pub mod dirs;
pub mod doctor;
pub mod error;
pub mod fsutil;
pub mod golden;
pub mod hints;
pub mod host;
pub mod images;
pub mod kube;
pub mod kubeconfig;
pub mod machines;
pub mod net;
pub mod pki;
pub mod plan;
pub mod providers;
pub mod provision;
pub mod seed;
pub mod spec;
pub mod state;
#[cfg(test)]
pub(crate) mod test_support;
pub mod ui;
pub mod versions;
pub mod winbuild;
pub mod windows_join;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::commands::{Ctx, arg_origin};
use crate::error::ExitStatus;
use crate::hints::report;
use crate::spec::Val;
use crate::ui::{Printer, Verbosity};

/// The whole program: parse, run, and turn the outcome into an exit code.
/// A panic is reported as a bug and exits 2.
pub fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = format!(
            "error: internal error (a bug in devcluster): {info}\n\
             hint: please report it with the command you ran and `devcluster -vv` output\n"
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    }));
    let status = std::panic::catch_unwind(run).unwrap_or(ExitStatus::Bug);
    ExitCode::from(status.code())
}

fn run() -> ExitStatus {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    ExitStatus::Success
                }
                _ => ExitStatus::Failure,
            };
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitStatus::Failure;
        }
    };
    let verbosity = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, 0) => Verbosity::Normal,
        (false, 1) => Verbosity::Verbose,
        (false, _) => Verbosity::Trace,
    };
    init_tracing(verbosity);
    // One TLS crypto provider for everything (kube, reqwest, russh, rcgen):
    // two linked providers and no default make rustls panic.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let printer = Printer::new(verbosity, cli.global.no_progress);
    let result = dispatch(&cli, &matches, printer);
    match result {
        Ok(status) => status,
        Err(err) => {
            let r = report(&err);
            printer.error(&r);
            r.status
        }
    }
}

fn dispatch(cli: &Cli, matches: &clap::ArgMatches, printer: Printer) -> anyhow::Result<ExitStatus> {
    if let Command::Completions(args) = &cli.command {
        return commands::completions::completions(&printer, args);
    }
    let ctx = Ctx {
        dirs: dirs::Dirs::from_env()?,
        printer,
        cluster: Val::new(
            cli.global.cluster.clone(),
            arg_origin(matches, "cluster", "--cluster", Some("DEVCLUSTER_CLUSTER")),
        ),
    };
    let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(matches);
    match &cli.command {
        Command::Up(args) => commands::up::up(&ctx, args, sub),
        Command::Status(args) => commands::status::status(&ctx, args),
        Command::List(args) => commands::list::list(&ctx, args),
        Command::Destroy(args) => commands::destroy::destroy(&ctx, args),
        Command::Kubeconfig(args) => commands::kubeconfig::kubeconfig(&ctx, args),
        Command::Use(args) => commands::use_::use_(&ctx, args),
        Command::Images(cmd) => commands::images::images(&ctx, cmd),
        Command::Suspend => commands::lifecycle::run(&ctx, commands::lifecycle::Op::Suspend),
        Command::Resume => commands::lifecycle::run(&ctx, commands::lifecycle::Op::Resume),
        Command::Halt(args) => commands::lifecycle::run(
            &ctx,
            commands::lifecycle::Op::Halt(std::time::Duration::from_secs(args.timeout)),
        ),
        Command::Start => commands::lifecycle::run(&ctx, commands::lifecycle::Op::Start),
        Command::Ssh(args) => commands::ssh::ssh(&ctx, args),
        Command::Logs(args) => commands::logs::logs(&ctx, args),
        Command::Dashboard(args) => commands::dashboard::dashboard(&ctx, args),
        Command::Node(cmd) => commands::node::node(&ctx, cmd),
        Command::Doctor(args) => commands::doctor::doctor(&ctx, args),
        Command::Completions(_) => unreachable!("handled above"),
    }
}

fn init_tracing(verbosity: Verbosity) {
    use tracing_subscriber::EnvFilter;
    let default = match verbosity {
        Verbosity::Quiet => "error",
        Verbosity::Normal => "warn",
        Verbosity::Verbose => "devcluster=debug,info",
        Verbosity::Trace => "devcluster=trace,debug",
    };
    let filter =
        EnvFilter::try_from_env("DEVCLUSTER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbosity >= Verbosity::Trace)
        .try_init();
}
