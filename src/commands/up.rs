//! `devcluster up`: spec -> validate -> plan -> (dry run: print) -> create.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::ArgMatches;

use super::{Ctx, arg_origin};
use crate::cli::UpArgs;
use crate::error::{ExitStatus, UserError};
use crate::machines;
use crate::pki;
use crate::plan::{self, Plan, Surroundings};
use crate::providers::{self, Provider, ProviderConfig};
use crate::spec::{self, Layer, Spec, Val};
use crate::state::{self, ClusterLock, ClusterState, Listed, NodePhase};
use crate::ui::{self, OutputFormat};

pub fn up(ctx: &Ctx, args: &UpArgs, matches: &ArgMatches) -> anyhow::Result<ExitStatus> {
    let spec = load_spec(ctx, args, matches)?;
    if let Some(warning) = spec::check_host_memory(&spec, crate::host::physical_memory_mib())? {
        ctx.printer.warn(warning);
    }
    let plan = make_plan(ctx, &spec, !args.no_kubernetes)?;
    if args.dry_run {
        match args.output {
            OutputFormat::Json => ctx.printer.json(&plan)?,
            OutputFormat::Table => ctx.printer.out(render_plan(&plan)),
        }
        return Ok(ExitStatus::Success);
    }
    let _lock = ClusterLock::acquire(&ctx.dirs, &plan.cluster, "devcluster up")?;
    create(ctx, plan, args, spec.offline.value)
}

/// The real `up`: state, secrets, provider, images, VMs.
fn create(ctx: &Ctx, plan: Plan, args: &UpArgs, offline: bool) -> anyhow::Result<ExitStatus> {
    let p = &ctx.printer;
    let existing = state::load(&ctx.dirs, &plan.cluster)?;
    let plan = match existing {
        Some(ref e) => {
            let names = |pl: &Plan| pl.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
            if names(&e.plan) != names(&plan) {
                p.warn(format!(
                    "cluster {} exists with nodes {}: continuing it as it was planned",
                    plan.cluster,
                    names(&e.plan).join(", ")
                ));
            }
            e.plan.clone()
        }
        None => plan,
    };
    let started = Instant::now();
    let runtime = super::runtime()?;
    let config = ProviderConfig {
        libvirt_uri: plan.libvirt.uri.clone(),
        libvirt_domain_type: plan.libvirt.domain_type,
        cache_dir: ctx.dirs.cache.clone(),
    };
    let result = runtime.block_on(async {
        // Everything that can refuse the cluster comes before anything is
        // written: the provider, and every node's image.
        let (provider, skipped) = providers::select(plan.provider, &config).await?;
        for d in &skipped {
            p.info(format!("skipped provider {}: {}", d.kind, d.detail));
        }
        let downloads = ui::DownloadProgress::new(*p);
        let fetch = crate::images::Fetch::new(&downloads)
            .offline(offline)
            .accept_license(args.accept_license);
        let bases = machines::resolve_bases(&ctx.dirs, &plan, provider.kind(), &fetch).await;
        downloads.clear();
        let bases = bases?;
        if existing.is_none() {
            // A new cluster starts clean: VMs of the same name without a
            // state file are someone's (a lost state): refuse to adopt them;
            // disks left in its storage are nobody's: drop them.
            let orphans = provider.cluster_vms(&plan.cluster).await?;
            if !orphans.is_empty() {
                return Err(UserError::new(format!(
                    "VMs of a cluster {} exist ({}) but devcluster has no state for it",
                    plan.cluster,
                    orphans.join(", ")
                ))
                .hint(format!(
                    "remove them with `devcluster --cluster {} destroy`, then run up again",
                    plan.cluster
                ))
                .into());
            }
            provider.remove_storage(&plan.cluster).await?;
        }

        let mut st = existing.unwrap_or_else(|| ClusterState::new(plan));
        if st.plan.provider != provider.kind() {
            st.plan.provider = provider.kind();
        }
        state::save(&ctx.dirs, &st)?;
        let secrets = pki::ensure(&ctx.dirs, &st.plan)
            .context("preparing the cluster's keys and certificates")?;
        for notice in provider.prepare_create().await? {
            p.warn(notice);
        }
        let vms = st
            .plan
            .nodes
            .iter()
            .map(|n| machines::vm_spec(&ctx.dirs, &st.plan, n, &bases[&n.image], &secrets))
            .collect::<Result<Vec<_>, _>>()?;
        p.info(format!(
            "creating {} VMs on {} ({})",
            vms.len(),
            provider.kind(),
            st.plan.network.subnet
        ));
        let provider: Arc<dyn Provider> = Arc::from(provider);
        let mut done = Vec::new();
        let r = machines::create_and_start(provider, &st.plan, vms, |name, r| match r {
            Ok(()) => {
                p.info(format!("{name}: VM started"));
                done.push(name.to_string());
            }
            Err(e) => p.info(format!("{name}: failed: {e}")),
        })
        .await;
        for name in done {
            let node = st.nodes.entry(name).or_default();
            if node.phase == NodePhase::Planned {
                node.phase = NodePhase::Created;
            }
        }
        state::save(&ctx.dirs, &st)?;
        r?;

        // Per node, in parallel: SSH with the pinned host key, then steps.
        super::provision(ctx, &mut st, &secrets).await?;
        anyhow::Ok(st)
    });
    runtime.shutdown_background();
    let st = result?;
    p.out(summary(&st, started.elapsed()));
    if args.no_kubernetes {
        return Ok(ExitStatus::Success);
    }
    Err(UserError::new(format!(
        "cluster {}: the VMs are running, but this devcluster build cannot install Kubernetes on them yet",
        st.name
    ))
    .hint("use `devcluster up --no-kubernetes` for machines only; `devcluster destroy` removes them")
    .into())
}

fn summary(st: &ClusterState, took: std::time::Duration) -> String {
    let rows: Vec<Vec<String>> = st
        .plan
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.role.as_str().into(),
                n.os.as_str().into(),
                n.ip.to_string(),
                st.node(&n.name).phase.as_str().into(),
            ]
        })
        .collect();
    format!(
        "{}\n\ncluster {} on {} in {:.0?}",
        ui::table(&["NODE", "ROLE", "OS", "IP", "STATE"], &rows),
        st.name,
        st.plan.provider,
        took
    )
}

/// Layers the configuration: flags and env > project file > user file > defaults.
pub fn load_spec(ctx: &Ctx, args: &UpArgs, m: &ArgMatches) -> anyhow::Result<Spec> {
    let flags = flag_layer(args, m);
    let project = match &args.config {
        Some(path) => {
            if !path.is_file() {
                return Err(UserError::new(format!(
                    "config file {} (from --config) does not exist",
                    path.display()
                ))
                .hint("give the path of a devcluster.toml, or leave --config out")
                .into());
            }
            spec::load_file(path)?
        }
        None => {
            let local = PathBuf::from("devcluster.toml");
            if local.is_file() {
                spec::load_file(Path::new("./devcluster.toml"))?
            } else {
                Layer::default()
            }
        }
    };
    let user_file = ctx.dirs.user_config_file();
    let user = if user_file.is_file() {
        spec::load_file(&user_file)?
    } else {
        Layer::default()
    };
    let layer = flags.over(Layer::from_env()).over(project).over(user);
    Ok(spec::resolve(ctx.cluster.clone(), layer)?)
}

fn flag_layer(a: &UpArgs, m: &ArgMatches) -> Layer {
    let o = |id: &str, flag: &'static str, env: Option<&'static str>| arg_origin(m, id, flag, env);
    fn v<T>(x: &Option<T>, origin: impl FnOnce() -> spec::Origin) -> Option<Val<T>>
    where
        T: Clone,
    {
        x.clone().map(|x| Val::new(x, origin()))
    }
    Layer {
        provider: v(&a.provider, || {
            o("provider", "--provider", Some("DEVCLUSTER_PROVIDER"))
        }),
        kubernetes_version: v(&a.kubernetes_version, || {
            o(
                "kubernetes_version",
                "--kubernetes-version",
                Some("DEVCLUSTER_KUBERNETES_VERSION"),
            )
        }),
        workers: v(&a.workers, || {
            o("workers", "--workers", Some("DEVCLUSTER_WORKERS"))
        }),
        windows_workers: v(&a.windows_workers, || {
            o(
                "windows_workers",
                "--windows-workers",
                Some("DEVCLUSTER_WINDOWS_WORKERS"),
            )
        }),
        cp_cpus: v(&a.control_plane_cpus, || {
            o("", "--control-plane-cpus", None)
        }),
        cp_memory_mib: v(&a.control_plane_memory, || {
            o("", "--control-plane-memory", None)
        }),
        cp_disk_gib: v(&a.control_plane_disk, || {
            o("", "--control-plane-disk", None)
        }),
        linux_cpus: v(&a.worker_cpus, || o("", "--worker-cpus", None)),
        linux_memory_mib: v(&a.worker_memory, || o("", "--worker-memory", None)),
        linux_disk_gib: v(&a.worker_disk, || o("", "--worker-disk", None)),
        linux_image: v(&a.linux_image, || o("", "--linux-image", None)),
        windows_cpus: v(&a.windows_cpus, || o("", "--windows-cpus", None)),
        windows_memory_mib: v(&a.windows_memory, || o("", "--windows-memory", None)),
        windows_disk_gib: v(&a.windows_disk, || o("", "--windows-disk", None)),
        windows_image: v(&a.windows_image, || o("", "--windows-image", None)),
        offline: a.offline.then(|| Val::new(true, o("", "--offline", None))),
        ..Layer::default()
    }
}

/// Plans against the host's networks and the other clusters; an existing
/// cluster keeps its subnet.
pub fn make_plan(ctx: &Ctx, spec: &Spec, kubernetes: bool) -> anyhow::Result<Plan> {
    let name = &spec.cluster.value;
    let mut env = Surroundings {
        host_networks: crate::host::networks_in_use(),
        ..Default::default()
    };
    for listed in state::list(&ctx.dirs).context("reading the other clusters")? {
        if let Listed::Ok(s) = listed {
            if &s.name == name {
                env.existing_subnet = Some(s.plan.network.subnet);
            } else {
                env.other_clusters
                    .push((s.name.clone(), s.plan.network.subnet));
            }
        }
    }
    // The cluster's own network shows up among the host's once it exists.
    if let Some(own) = env.existing_subnet {
        env.host_networks.retain(|n| !n.overlaps(&own));
    }
    let mut plan = plan::plan(spec, &env)?;
    plan.kubernetes = kubernetes;
    Ok(plan)
}

/// The plan as a person reads it.
pub fn render_plan(plan: &Plan) -> String {
    let net = &plan.network;
    let mut out = format!(
        "Plan for cluster {} (dry run: nothing was created or changed)\n\n",
        plan.cluster
    );
    let kubernetes = if plan.kubernetes {
        plan.kubernetes_version.clone()
    } else {
        format!(
            "none (--no-kubernetes; {} when installed)",
            plan.kubernetes_version
        )
    };
    let facts = [
        ("provider", plan.provider.to_string()),
        ("kubernetes", kubernetes),
        (
            "node network",
            format!("{} (gateway {})", net.subnet, net.gateway),
        ),
        ("pod network", net.pod_cidr.to_string()),
        (
            "service network",
            format!("{} (cluster DNS {})", net.service_cidr, net.cluster_dns),
        ),
        ("API server", format!("https://{}", net.api_endpoint)),
    ];
    for (k, v) in facts {
        out.push_str(&format!("{k:<16} {v}\n"));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = plan
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.role.as_str().to_string(),
                n.os.as_str().to_string(),
                n.ip.to_string(),
                n.cpus.to_string(),
                format!("{} MiB", n.memory_mib),
                format!("{} GiB", n.disk_gib),
                n.image.clone(),
            ]
        })
        .collect();
    out.push_str(&ui::table(
        &[
            "NODE", "ROLE", "OS", "IP", "CPUS", "MEMORY", "DISK", "IMAGE",
        ],
        &rows,
    ));
    let cpus: u32 = plan.nodes.iter().map(|n| n.cpus).sum();
    let disk: u32 = plan.nodes.iter().map(|n| n.disk_gib).sum();
    out.push_str(&format!(
        "\n\ntotal: {} nodes, {cpus} CPUs, {} MiB memory, {disk} GiB disk (thin-provisioned)",
        plan.nodes.len(),
        plan.total_memory_mib(),
    ));
    out
}
