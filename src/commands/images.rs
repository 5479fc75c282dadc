//! `devcluster images`: the images nodes boot from.

use serde::Serialize;

use super::Ctx;
use crate::cli::{ImagesCommand, ImportArgs, OutputArgs};
use crate::error::ExitStatus;
use crate::images::{self, Import};
use crate::ui::{self, OutputFormat};

pub fn images(ctx: &Ctx, cmd: &ImagesCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ImagesCommand::Import(args) => import(ctx, args),
        ImagesCommand::List(args) => list(ctx, args),
    }
}

fn import(ctx: &Ctx, a: &ImportArgs) -> anyhow::Result<ExitStatus> {
    if !a.path.is_file() {
        return Err(crate::error::UserError::new(format!(
            "image file {} does not exist",
            a.path.display()
        ))
        .hint("give the path of a disk image, e.g. a qcow2 cloud image")
        .into());
    }
    ctx.printer
        .info(format!("importing {} as {} ...", a.path.display(), a.name));
    let (entry, file) = images::import(
        &ctx.dirs,
        &Import {
            name: a.name.clone(),
            path: a.path.clone(),
            os: a.os,
            user: a.user.clone(),
            firmware: a.firmware,
            secure_boot: a.secure_boot,
        },
    )?;
    let artifact = &entry.artifacts[0];
    ctx.printer.info(format!(
        "imported {} ({}, {}, sha256 {}) into {}",
        entry.name,
        entry.os.as_str(),
        artifact.format.as_str(),
        artifact.sha256.as_deref().unwrap_or("?"),
        file.display()
    ));
    ctx.printer.info(format!(
        "use it with: devcluster up --{}-image {}",
        entry.os.as_str(),
        entry.name
    ));
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct Row {
    name: String,
    os: &'static str,
    format: String,
    cached: bool,
    size_bytes: Option<u64>,
    source: String,
}

fn list(ctx: &Ctx, args: &OutputArgs) -> anyhow::Result<ExitStatus> {
    let rows: Vec<Row> = images::user_entries(&ctx.dirs)?
        .into_iter()
        .map(|l| {
            let artifact = l.entry.artifacts.first();
            let local = artifact
                .and_then(|a| a.url.strip_prefix("file://"))
                .and_then(|p| std::fs::metadata(p).ok());
            Row {
                name: l.entry.name.clone(),
                os: l.entry.os.as_str(),
                format: artifact
                    .map(|a| a.format.as_str().to_string())
                    .unwrap_or_default(),
                cached: local.is_some(),
                size_bytes: local.map(|m| m.len()),
                source: l.source.display().to_string(),
            }
        })
        .collect();
    match args.output {
        OutputFormat::Json => ctx.printer.json(&rows)?,
        OutputFormat::Table if rows.is_empty() => ctx
            .printer
            .info("no images; import one with `devcluster images import NAME PATH --os linux`"),
        OutputFormat::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.os.to_string(),
                        r.format.clone(),
                        r.size_bytes
                            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                            .unwrap_or_else(|| "missing".into()),
                        r.source.clone(),
                    ]
                })
                .collect();
            ctx.printer.out(ui::table(
                &["NAME", "OS", "FORMAT", "CACHED", "ENTRY"],
                &table,
            ));
        }
    }
    Ok(ExitStatus::Success)
}
