//! `devcluster logs NODE [--follow] [--serial]`: a node's provisioning log
//! (every step's output, timestamped), or its serial console.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use super::Ctx;
use crate::cli::LogsArgs;
use crate::error::{ExitStatus, UserError};
use crate::state;

pub fn logs(ctx: &Ctx, args: &LogsArgs) -> anyhow::Result<ExitStatus> {
    let cluster = ctx.cluster_name()?;
    let st = state::load_existing(&ctx.dirs, cluster)?;
    if st.plan.node(&args.node).is_none() {
        return Err(
            UserError::new(format!("cluster {cluster} has no node {}", args.node))
                .hint("`devcluster status` lists the nodes")
                .into(),
        );
    }
    let dir = ctx.dirs.cluster(cluster).join("logs");
    let path = if args.serial {
        dir.join(format!("{}.serial.log", args.node))
    } else {
        dir.join(format!("{}.log", args.node))
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !args.follow => {
            ctx.printer
                .info(format!("{} has no log yet ({})", args.node, path.display()));
            return Ok(ExitStatus::Success);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // --follow: wait for the file to appear.
            loop {
                std::thread::sleep(Duration::from_millis(500));
                if let Ok(f) = std::fs::File::open(&path) {
                    break f;
                }
            }
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    ctx.printer.raw(&buf);
    if !args.follow {
        return Ok(ExitStatus::Success);
    }
    let mut pos = file.stream_position()?;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(pos);
        if len < pos {
            // Truncated: start over.
            pos = 0;
        }
        if len > pos {
            file.seek(SeekFrom::Start(pos))?;
            buf.clear();
            file.read_to_end(&mut buf)?;
            pos += buf.len() as u64;
            ctx.printer.raw(&buf);
        }
    }
}
