//! `devcluster images`: the catalog, the cache and golden disks.

use super::Ctx;
use crate::cli::{BuildArgs, ImagesCommand, ImportArgs, OutputArgs, PullArgs, RemoveArgs};
use crate::error::ExitStatus;
use crate::images::download::human_bytes;
use crate::images::{self, Fetch, Import};
use crate::ui::{self, OutputFormat};

pub fn images(ctx: &Ctx, cmd: &ImagesCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ImagesCommand::Import(args) => import(ctx, args),
        ImagesCommand::List(args) => list(ctx, args),
        ImagesCommand::Pull(args) => pull(ctx, args),
        ImagesCommand::Remove(args) => remove(ctx, args),
        ImagesCommand::Prune => prune(ctx),
        ImagesCommand::Build(args) => build(ctx, args),
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

fn list(ctx: &Ctx, args: &OutputArgs) -> anyhow::Result<ExitStatus> {
    let inv = images::cache::inventory(&ctx.dirs)?;
    if args.output == OutputFormat::Json {
        ctx.printer.json(&inv)?;
        return Ok(ExitStatus::Success);
    }
    let dash = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let rows: Vec<Vec<String>> = inv
        .images
        .iter()
        .map(|r| {
            let mut source = r.source.clone();
            if r.license_requires_acceptance {
                source.push_str(" [evaluation licence: --accept-license]");
            }
            vec![
                r.name.clone(),
                r.os.unwrap_or("?").to_string(),
                r.version.clone().unwrap_or_else(|| "-".into()),
                if r.cached { "yes" } else { "no" }.to_string(),
                if r.size_bytes > 0 {
                    human_bytes(r.size_bytes)
                } else {
                    "-".into()
                },
                dash(&r.used_by),
                source,
            ]
        })
        .collect();
    let mut out = ui::table(
        &[
            "NAME", "OS", "VERSION", "CACHED", "SIZE", "USED BY", "SOURCE",
        ],
        &rows,
    );
    if !inv.golden.is_empty() {
        let rows: Vec<Vec<String>> = inv
            .golden
            .iter()
            .map(|g| {
                vec![
                    g.id.clone(),
                    g.image.clone(),
                    g.provider.to_string(),
                    g.kubernetes_version.clone(),
                    human_bytes(g.size_bytes),
                    dash(&g.used_by),
                ]
            })
            .collect();
        out.push_str("\n\n");
        out.push_str(&ui::table(
            &[
                "GOLDEN DISK",
                "IMAGE",
                "PROVIDER",
                "KUBERNETES",
                "SIZE",
                "USED BY",
            ],
            &rows,
        ));
    }
    ctx.printer.out(out);
    Ok(ExitStatus::Success)
}

fn pull(ctx: &Ctx, a: &PullArgs) -> anyhow::Result<ExitStatus> {
    if a.provider == Some(crate::spec::ProviderKind::Auto) {
        return Err(crate::error::UserError::new(
            "--provider auto does not name a provider",
        )
        .hint("use --provider libvirt, hyperv or virtualbox, or leave it out to pull every artifact")
        .into());
    }
    let progress = ui::DownloadProgress::new(ctx.printer);
    let fetch = Fetch::new(&progress)
        .offline(a.offline)
        .accept_license(a.accept_license);
    let runtime = super::runtime()?;
    let pulled = runtime.block_on(images::pull(&ctx.dirs, &a.name, a.provider, &fetch));
    progress.clear();
    super::finish(runtime);
    for p in pulled? {
        if !p.downloaded {
            ctx.printer
                .info(format!("{}: already in the cache", p.name));
        }
        ctx.printer.out(p.path.display());
    }
    Ok(ExitStatus::Success)
}

fn remove(ctx: &Ctx, a: &RemoveArgs) -> anyhow::Result<ExitStatus> {
    let r = images::cache::remove(&ctx.dirs, &a.name, a.force)?;
    ctx.printer.info(format!(
        "removed {} from the cache: freed {}",
        a.name,
        human_bytes(r.freed_bytes)
    ));
    if let Some(entry) = r.entry {
        ctx.printer
            .info(format!("removed its entry {}", entry.display()));
    }
    Ok(ExitStatus::Success)
}

fn prune(ctx: &Ctx) -> anyhow::Result<ExitStatus> {
    // Golden disks and Windows base disks are kept in the provider's
    // storage: deleted through that provider, at the address they were
    // kept with.
    let mut runtime = None;
    let p = images::cache::prune(&ctx.dirs, |kind, v| {
        let rt = match &runtime {
            Some(rt) => rt,
            None => runtime.insert(super::runtime().map_err(|e| e.to_string())?),
        };
        rt.block_on(async {
            let config = crate::providers::ProviderConfig {
                libvirt_uri: v.uri.clone(),
                libvirt_domain_type: crate::spec::DomainType::Auto,
                cache_dir: ctx.dirs.cache.clone(),
            };
            let provider = crate::providers::open(kind, &config)
                .await
                .map_err(|e| e.to_string())?;
            // The whole cause and its fix: a refusal (a base disk some VM
            // still has as parent) says which VM and what to do.
            provider.remove_golden(&v.name).await.map_err(|e| {
                let why = crate::error::one_line(&e);
                match e.hint() {
                    Some(hint) => format!("{why}; {hint}"),
                    None => why,
                }
            })
        })
    })?;
    for (id, why) in &p.golden_kept {
        ctx.printer.warn(format!(
            "kept golden disk {id}: its volume could not be deleted: {why}"
        ));
    }
    for (name, size) in &p.images {
        ctx.printer
            .info(format!("removed image {name} ({})", human_bytes(*size)));
    }
    for (id, image, size) in &p.golden {
        ctx.printer.info(format!(
            "removed golden disk {id} of {image} ({})",
            human_bytes(*size)
        ));
    }
    for name in &p.kept_imported {
        ctx.printer.info(format!(
            "kept {name}: imported, so it cannot be downloaded again (remove it with `devcluster images remove {name}`)"
        ));
    }
    for name in &p.busy {
        ctx.printer
            .info(format!("kept {name}: it is being downloaded"));
    }
    ctx.printer
        .out(format!("freed {}", human_bytes(p.freed_bytes)));
    Ok(ExitStatus::Success)
}

fn build(ctx: &Ctx, a: &BuildArgs) -> anyhow::Result<ExitStatus> {
    let kind = match a.provider {
        None | Some(crate::spec::ProviderKind::Auto) => crate::spec::ProviderKind::Libvirt,
        Some(k) => k,
    };
    let defaults = crate::spec::Layer::from_env().over(crate::spec::Layer::defaults());
    let config = crate::providers::ProviderConfig {
        libvirt_uri: defaults.libvirt_uri.map(|v| v.value).unwrap_or_default(),
        libvirt_domain_type: defaults
            .libvirt_domain_type
            .map(|v| v.value)
            .unwrap_or(crate::spec::DomainType::Auto),
        cache_dir: ctx.dirs.cache.clone(),
    };
    crate::winbuild::windows_image(&ctx.dirs, &a.name)?;
    let runtime = super::runtime()?;
    let disk = runtime.block_on(async {
        // `select`, not `open`: a provider this host cannot run is refused
        // with its detection's reason and fix before anything is fetched.
        let (provider, _) = crate::providers::select(kind, &config).await?;
        build_base(
            ctx,
            &a.name,
            provider.as_ref(),
            &BuildOpts {
                allow_software_emulation: a.allow_software_emulation,
                offline: a.offline,
                accept_license: a.accept_license,
                devices: a.windows_devices.unwrap_or_default(),
            },
        )
        .await
    });
    super::finish(runtime);
    let disk = disk?;
    ctx.printer.out(format!(
        "base disk {} of {} ({}) : {}",
        disk.key.id(),
        disk.image,
        human_bytes(disk.size_bytes),
        disk.path.display()
    ));
    Ok(ExitStatus::Success)
}

/// How `images build` (and `up`, when a base disk is missing) may build.
pub struct BuildOpts {
    pub allow_software_emulation: bool,
    pub offline: bool,
    pub accept_license: bool,
    /// The builder's disk and NIC (libvirt's `windows_devices`).
    pub devices: crate::spec::WindowsDevices,
}

/// Builds the Windows base disk of Windows image `name` with `provider`
/// (the one `up` or `images build` selected), or finds it built. Refuses,
/// before anything is created, a provider that cannot build one and
/// software emulation without the opt-in.
pub async fn build_base(
    ctx: &Ctx,
    name: &str,
    provider: &dyn crate::providers::Provider,
    opts: &BuildOpts,
) -> anyhow::Result<crate::images::golden::GoldenDisk> {
    use crate::error::UserError;
    use crate::winbuild;
    // A provider without `windows_builds` is refused by `winbuild::build`,
    // before the ISO is fetched.
    let notes = provider.prepare_create().await?;
    let software = provider.software_emulation();
    if software && !opts.allow_software_emulation {
        return Err(UserError::new(format!(
            "building {name} here would run Windows Setup under software emulation (no working hardware virtualisation), which takes hours; refusing without {}",
            winbuild::SOFTWARE_FLAG
        ))
        .hint(format!(
            "run it on a host where KVM or Hyper-V works, or pass {} to wait the hours",
            winbuild::SOFTWARE_FLAG
        ))
        .into());
    }
    for n in notes {
        ctx.printer.warn(n);
    }
    if software {
        ctx.printer.warn(format!(
            "building {name} under software emulation: this takes hours (typically about {})",
            ui::duration(winbuild::TYPICAL_SOFTWARE)
        ));
    }
    let downloads = ui::DownloadProgress::new(ctx.printer);
    let fetch = Fetch::new(&downloads)
        .offline(opts.offline)
        .accept_license(opts.accept_license);
    let place = winbuild::Place::default_for(name);
    let bars = ui::NodeProgress::new(ctx.printer, [place.vm.as_str()]);
    let progress = Progress {
        bars: &bars,
        vm: place.vm.clone(),
        printer: ctx.printer,
        last: std::sync::Mutex::new(None),
    };
    let req = winbuild::Request {
        image: name.to_string(),
        place,
        bounds: winbuild::Bounds::for_emulation(software),
        poll: std::time::Duration::from_secs(2),
        typical: if software {
            winbuild::TYPICAL_SOFTWARE
        } else {
            winbuild::TYPICAL_HW
        },
        devices: opts.devices,
    };
    let r = winbuild::build(&ctx.dirs, provider, &req, &fetch, &progress).await;
    downloads.clear();
    bars.clear();
    Ok(r?)
}

/// The build's progress on the Printer: one line per phase, refreshed
/// once a minute with the elapsed time.
struct Progress<'a> {
    bars: &'a ui::NodeProgress,
    vm: String,
    printer: ui::Printer,
    last: std::sync::Mutex<Option<(String, u64)>>,
}

impl crate::winbuild::BuildProgress for Progress<'_> {
    fn note(&self, message: &str) {
        self.printer.info(message);
    }

    fn phase(&self, phase: &str, elapsed: std::time::Duration, typical: std::time::Duration) {
        let now = (phase.to_string(), elapsed.as_secs() / 60);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != Some(&now) {
            self.bars.set(
                &self.vm,
                crate::winbuild::progress_line(phase, elapsed, typical),
            );
            *last = Some(now);
        }
    }
}
