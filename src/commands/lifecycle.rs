//! `suspend`, `resume`, `halt`, `start`: the same operation on every VM of
//! the cluster, in parallel, under the cluster lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Ctx;
use crate::error::ExitStatus;
use crate::machines;
use crate::providers::{Provider, Shutdown};
use crate::state::{self, ClusterLock, ClusterState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Suspend,
    Resume,
    Halt(Duration),
    Start,
}

impl Op {
    pub fn verb(self) -> &'static str {
        match self {
            Op::Suspend => "suspend",
            Op::Resume => "resume",
            Op::Halt(_) => "halt",
            Op::Start => "start",
        }
    }
}

/// Opens the provider a cluster was created with.
pub async fn cluster_provider(ctx: &Ctx, st: &ClusterState) -> anyhow::Result<Arc<dyn Provider>> {
    crate::cluster_status::cluster_provider(&ctx.dirs, st).await
}

pub fn run(ctx: &Ctx, op: Op) -> anyhow::Result<ExitStatus> {
    run_as(ctx, op, &format!("devcluster {}", op.verb()))?;
    Ok(ExitStatus::Success)
}

/// The operation, holding the cluster lock as `holder` (what a refused
/// command is told is running). The dashboard's buttons come here.
pub fn run_as(ctx: &Ctx, op: Op, holder: &str) -> anyhow::Result<()> {
    let cluster = ctx.cluster_name()?.to_string();
    let _lock = ClusterLock::acquire(&ctx.dirs, &cluster, holder)?;
    let st = state::load_existing(&ctx.dirs, &cluster)?;
    let runtime = super::runtime()?;
    let result = runtime.block_on(async {
        let provider = cluster_provider(ctx, &st).await?;
        let mut set = tokio::task::JoinSet::new();
        for node in &st.plan.nodes {
            let p = provider.clone();
            let name = node.name.clone();
            set.spawn(async move {
                let t = Instant::now();
                let r = match op {
                    Op::Suspend => p.suspend(&name).await.map(|()| "suspended"),
                    Op::Resume => p.resume(&name).await.map(|()| "resumed"),
                    Op::Start => p.start(&name).await.map(|()| "started"),
                    Op::Halt(timeout) => p.shutdown(&name, timeout).await.map(|s| match s {
                        Shutdown::AlreadyOff => "already off",
                        Shutdown::Graceful => "shut down",
                        Shutdown::Forced => "powered off (did not shut down in time)",
                    }),
                };
                (name, r, t.elapsed())
            });
        }
        let mut failed = None;
        while let Some(j) = set.join_next().await {
            let (name, r, took) = j?;
            match r {
                Ok(what) => ctx.printer.info(format!("{name}: {what} in {took:.1?}")),
                Err(e) => {
                    ctx.printer.info(format!("{name}: failed: {e}"));
                    failed.get_or_insert(
                        anyhow::Error::new(e).context(format!("{} of {name} failed", op.verb())),
                    );
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        match op {
            Op::Start => after_start(ctx, &st).await,
            Op::Resume => after_resume(ctx, &st).await,
            _ => Ok(()),
        }
    });
    super::finish(runtime);
    result
}

/// After a boot: wait for SSH on every node and go through the steps done
/// before, each skipped (the log says so); unfinished work is `up`'s.
async fn after_start(ctx: &Ctx, st: &ClusterState) -> anyhow::Result<()> {
    let secrets = crate::pki::ensure(&ctx.dirs, &st.plan)?;
    let mut st = st.clone();
    let scope = machines::Scope {
        done_only: true,
        ..machines::Scope::default()
    };
    super::provision(ctx, &mut st, &secrets, &scope, None).await
}

/// After a restore: step the guest clocks to the host's and check SSH.
async fn after_resume(ctx: &Ctx, st: &ClusterState) -> anyhow::Result<()> {
    let secrets = crate::pki::ensure(&ctx.dirs, &st.plan)?;
    for (node, r) in machines::sync_clocks(&st.plan, &secrets, Duration::from_secs(180)).await {
        match r {
            Ok(skew) => ctx.printer.info(format!(
                "{node}: clock was {skew:+.1} s off; set to the host's time"
            )),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("{node} does not answer SSH after resume")));
            }
        }
    }
    Ok(())
}
