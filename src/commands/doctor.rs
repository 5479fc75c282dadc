//! `devcluster doctor`: check the host, print each check with its fix;
//! and [`preflight`], the subset `up` runs before it creates anything.

use std::path::Path;

use super::Ctx;
use crate::cli::DoctorArgs;
use crate::doctor::{self, Outcome, Status, facts};
use crate::error::{ExitStatus, UserError};
use crate::plan::Plan;
use crate::spec::{self, Layer, ProviderKind, Spec};
use crate::ui::OutputFormat;

pub fn doctor(ctx: &Ctx, args: &DoctorArgs) -> anyhow::Result<ExitStatus> {
    // A bad cluster name is bad input (exit 1 with its message), not a
    // host problem.
    ctx.cluster_name()?;
    let default = spec::resolve(ctx.cluster.clone(), Layer::from_env())?;
    let (configured, source) = configured(ctx, args.config.as_deref(), args.provider);
    let spec_for_net = configured.as_ref().unwrap_or(&default);
    let subnet = match super::up::make_plan(ctx, spec_for_net, true) {
        Ok(plan) => Ok((
            plan.network.subnet,
            crate::state::load(&ctx.dirs, &plan.cluster)
                .ok()
                .flatten()
                .is_some(),
        )),
        Err(e) => Err(message_and_hint(&e)),
    };
    let provider = args
        .provider
        .or_else(|| configured.as_ref().ok().map(|s| s.provider.value))
        .unwrap_or(ProviderKind::Auto);
    let checks = facts::run(&facts::Request {
        dirs: &ctx.dirs,
        configured: configured.as_ref().map_err(|e| e.clone()),
        config_source: source,
        default: &default,
        subnet,
        provider,
        scope: facts::Scope::Doctor,
    });
    let outcome = Outcome::new(checks);
    match args.output {
        OutputFormat::Json => ctx.printer.json(&outcome)?,
        OutputFormat::Table => ctx.printer.out(doctor::render(&outcome)),
    }
    Ok(if outcome.passed {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// The configured cluster (environment, project file, user file, defaults;
/// `--provider` over them), or the configuration's error.
fn configured(
    ctx: &Ctx,
    config: Option<&Path>,
    provider: Option<ProviderKind>,
) -> (Result<Spec, (String, Option<String>)>, String) {
    let (files, source) = match super::up::config_files(ctx, config) {
        Ok(x) => x,
        Err(e) => return (Err((e.message.clone(), e.hint.clone())), String::new()),
    };
    let flags = Layer {
        provider: provider.map(|p| spec::Val::new(p, spec::Origin::Flag("--provider"))),
        ..Layer::default()
    };
    let layer = flags.over(Layer::from_env()).over(files);
    let spec = spec::resolve(ctx.cluster.clone(), layer).map_err(|e| (e.message, e.hint));
    (spec, source)
}

fn message_and_hint(e: &anyhow::Error) -> (String, Option<String>) {
    match e.downcast_ref::<UserError>() {
        Some(u) => (u.message.clone(), u.hint.clone()),
        None => (crate::error::one_line(e.as_ref()), None),
    }
}

/// The checks `up` needs for this cluster on `provider`, run before it
/// writes anything: the first failed one is the error, with the same
/// words and fix `devcluster doctor` prints.
pub fn preflight(
    ctx: &Ctx,
    spec: &Spec,
    plan: &Plan,
    provider: ProviderKind,
    existing: bool,
) -> anyhow::Result<()> {
    let checks = facts::run(&facts::Request {
        dirs: &ctx.dirs,
        configured: Ok(spec),
        config_source: String::new(),
        default: spec,
        subnet: Ok((plan.network.subnet, existing)),
        provider,
        scope: facts::Scope::Up {
            kubernetes: plan.kubernetes,
        },
    });
    match checks.into_iter().find(|c| c.status == Status::Fail) {
        None => Ok(()),
        Some(c) => Err(
            UserError::new(format!("host check {} failed: {}", c.name, c.found))
                .hint(format!(
                    "{} (`devcluster doctor` runs every check)",
                    c.fix.unwrap_or_default()
                ))
                .into(),
        ),
    }
}
