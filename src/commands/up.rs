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
use crate::provision::deadlines::Deadlines;
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
    create(ctx, plan, args, &spec)
}

/// The real `up`: state, secrets, provider, images, VMs.
fn create(ctx: &Ctx, plan: Plan, args: &UpArgs, spec: &Spec) -> anyhow::Result<ExitStatus> {
    let p = &ctx.printer;
    let offline = spec.offline.value;
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
            // Its plan stays; only whether Kubernetes is wanted follows
            // this run (`up --no-kubernetes`, then `up`).
            let mut kept = e.plan.clone();
            kept.kubernetes = plan.kubernetes;
            kept
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
        let provider: Arc<dyn Provider> = Arc::from(provider);
        for d in &skipped {
            p.info(format!("skipped provider {}: {}", d.kind, d.detail));
        }
        super::doctor::preflight(ctx, spec, &plan, provider.kind(), existing.is_some())?;
        // A Windows base disk not built yet is built now (the same
        // refusals as `images build`: another provider, software
        // emulation without the opt-in).
        for image in machines::missing_windows_bases(&ctx.dirs, &plan, provider.kind()) {
            p.info(format!(
                "the {} base disk of {image} is not built yet: building it",
                provider.kind()
            ));
            super::images::build_base(
                ctx,
                &image,
                provider.as_ref(),
                &super::images::BuildOpts {
                    allow_software_emulation: args.allow_software_emulation,
                    offline,
                    accept_license: args.accept_license,
                    devices: machines::windows_devices(&plan, provider.kind()),
                },
            )
            .await?;
        }
        let downloads = ui::DownloadProgress::new(*p);
        let fetch = crate::images::Fetch::new(&downloads)
            .offline(offline)
            .accept_license(args.accept_license);
        let bases = machines::resolve_bases(&ctx.dirs, &plan, provider.kind(), &fetch).await;
        // containerd & co. for the nodes, before anything is created.
        let software = match &bases {
            Ok(_) => crate::images::node_software::ensure_for_plan(&ctx.dirs, &plan, &fetch)
                .await
                .map(drop),
            Err(_) => Ok(()),
        };
        downloads.clear();
        let bases = bases?;
        software?;
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
        let mut secrets = pki::ensure(&ctx.dirs, &st.plan)
            .context("preparing the cluster's keys and certificates")?;
        for notice in provider.prepare_create().await? {
            p.warn(notice);
        }
        let mut vms = st
            .plan
            .nodes
            .iter()
            .map(|n| machines::vm_spec(&ctx.dirs, &st.plan, n, &bases[&n.image], &secrets))
            .collect::<Result<Vec<_>, _>>()?;
        let (cloned, notes) =
            machines::choose_disks(&ctx.dirs, provider.as_ref(), &mut st, &mut vms).await?;
        for note in notes {
            p.info(note);
        }
        state::save(&ctx.dirs, &st)?;
        p.info(format!(
            "creating {} VMs on {} ({})",
            vms.len(),
            provider.kind(),
            st.plan.network.subnet
        ));
        let mut done = Vec::new();
        let r = machines::create_and_start(provider.clone(), &st.plan, vms, |name, r| match r {
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

        if st.plan.kubernetes && st.joins_pending_after_init() {
            // A worker joins an API server from an earlier run, whose
            // token may have expired since: the same check as `node add`.
            let kube = client_from_admin(&secrets).await?;
            crate::kube::client::wait_api_healthy(&kube, Deadlines::for_plan(&st.plan).api_healthy)
                .await
                .context("the API server must answer before a worker joins it")?;
            let token = &secrets.bootstrap_token;
            if crate::kube::token::ensure_joinable(&kube, &ctx.dirs, &st.name, token)
                .await?
                .renew()
            {
                p.info("the bootstrap token from the first `up` has expired: registered a new one");
                secrets = pki::ensure(&ctx.dirs, &st.plan)
                    .context("reading the cluster's keys and certificates")?;
            }
        }

        let machines_took = started.elapsed();
        // Per node, in parallel: SSH with the pinned host key, then steps.
        let cp = st.plan.control_plane();
        let capture = crate::golden::Capture::for_control_plane(
            &ctx.dirs,
            &st.plan,
            &bases[&cp.image],
            provider.clone(),
            &st.plan.libvirt.uri,
            &st.node(&cp.name).completed_steps,
        );
        // Offered only when no golden disk of its key exists: one found
        // afterwards was kept by this run.
        let keeping = capture.as_ref().map(|c| c.key.clone());
        let scope = machines::Scope {
            offline,
            ..machines::Scope::default()
        };
        let provisioned = super::provision(ctx, &mut st, &secrets, &scope, capture).await;
        let kept = keeping.and_then(|key| crate::images::golden::lookup(&ctx.dirs, &key));
        let golden = crate::golden::report(&cloned, kept.as_ref());
        if provisioned.is_err() {
            for line in &golden {
                p.info(line);
            }
        }
        provisioned?;
        let nodes_took = started.elapsed() - machines_took;
        let mut phases = vec![("machines", machines_took), ("nodes", nodes_took)];
        if st.plan.kubernetes {
            let t = Instant::now();
            wait_ready(ctx, &st, &secrets).await?;
            phases.push(("ready", t.elapsed()));
        }
        anyhow::Ok((st, phases, golden))
    });
    super::finish(runtime);
    let (st, phases, golden) = result?;
    if args.no_kubernetes {
        p.out(summary(&st, started, &phases, &golden));
        return Ok(ExitStatus::Success);
    }
    let switch = !args.no_switch_context;
    let file = crate::kubeconfig::merge_cluster(&ctx.dirs, &st.name, switch)?;
    let context = crate::kubeconfig::context_name(&st.name);
    let mut out = summary(&st, started, &phases, &golden);
    out.push_str(&format!(
        "\n\nkubeconfig: {context} merged into {}{}",
        file.display(),
        if switch {
            " and made the current context"
        } else {
            " (current context unchanged: --no-switch-context)"
        }
    ));
    let using = if switch {
        String::new()
    } else {
        format!(" --context {context}")
    };
    out.push_str(&format!(
        "\n\nnext:\n  kubectl{using} get nodes -o wide\n  devcluster --cluster {0} status\n  devcluster --cluster {0} ssh {1}",
        st.name,
        st.plan.control_plane().name
    ));
    p.out(out);
    Ok(ExitStatus::Success)
}

async fn client_from_admin(secrets: &pki::ClusterSecrets) -> anyhow::Result<kube::Client> {
    Ok(crate::kube::client::client_from_admin_kubeconfig(&secrets.admin_kubeconfig_path).await?)
}

/// From the host, with the admin kubeconfig: every planned node Ready,
/// then the pod network's and CoreDNS's pods. Each wait is bounded and says
/// what is not ready on timeout (the plan's [`Deadlines`]: longer under
/// software emulation).
async fn wait_ready(
    ctx: &Ctx,
    st: &ClusterState,
    secrets: &pki::ClusterSecrets,
) -> anyhow::Result<()> {
    use crate::kube::{client, flannel};
    let p = &ctx.printer;
    let deadlines = Deadlines::for_plan(&st.plan);
    let kube = client::client_from_admin_kubeconfig(&secrets.admin_kubeconfig_path).await?;
    client::wait_api_healthy(&kube, deadlines.api_healthy).await?;
    // Windows nodes have their own wait, after the pod network's.
    let names: Vec<String> = st
        .plan
        .nodes
        .iter()
        .filter(|n| n.os == crate::plan::Os::Linux)
        .map(|n| n.name.clone())
        .collect();
    p.info(format!(
        "waiting for nodes {} to be Ready",
        names.join(", ")
    ));
    client::wait_nodes_ready(&kube, &names, deadlines.nodes_ready).await?;
    p.info("waiting for the pod network (flannel) and CoreDNS");
    client::wait_pods_ready(
        &kube,
        flannel::NAMESPACE,
        flannel::POD_SELECTOR,
        deadlines.pods_ready,
    )
    .await?;
    client::wait_pods_ready(
        &kube,
        "kube-system",
        "k8s-app=kube-dns",
        deadlines.pods_ready,
    )
    .await?;
    if st
        .plan
        .nodes
        .iter()
        .any(|n| n.os == crate::plan::Os::Windows)
    {
        p.info("waiting for the Windows nodes (kubelet, flanneld.exe, kube-proxy.exe)");
        crate::windows_join::wait_ready(&kube, &st.plan, &deadlines).await?;
    }
    Ok(())
}

fn summary(
    st: &ClusterState,
    started: Instant,
    phases: &[(&str, std::time::Duration)],
    golden: &[String],
) -> String {
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
    let started_ms = crate::state::now_ms().saturating_sub(started.elapsed().as_millis() as u64);
    let phases: Vec<String> = phases
        .iter()
        .map(|(name, took)| format!("{name} {}", ui::duration(*took)))
        .collect();
    let mut out = format!(
        "{}\n\n{}\ncluster {} on {} in {} ({})",
        ui::table(&["NODE", "ROLE", "OS", "IP", "STATE"], &rows),
        timeline(st, started_ms),
        st.name,
        st.plan.provider,
        ui::duration(started.elapsed()),
        phases.join(", ")
    );
    for line in golden {
        out.push('\n');
        out.push_str(line);
    }
    if let Some(example) = crate::kube::windows::summary_example(&st.plan, &[]) {
        out.push_str("\n\n");
        out.push_str(&example);
    }
    out
}

/// The steps this run did, in the order they started, with their start
/// relative to the run's: workers' `join` starting before the control
/// plane's `init-control-plane` finished is the parallel bootstrap at work,
/// and the last line says so.
pub fn timeline(st: &ClusterState, run_started_ms: u64) -> String {
    use crate::provision::steps::{INIT_CONTROL_PLANE, JOIN};
    let mut steps: Vec<(u64, &str, &str, Option<u64>)> = Vec::new();
    for n in &st.plan.nodes {
        if let Some(ns) = st.nodes.get(&n.name) {
            for (step, t) in &ns.step_times {
                if t.started_ms >= run_started_ms {
                    steps.push((t.started_ms, n.name.as_str(), step.as_str(), t.took_ms));
                }
            }
        }
    }
    if steps.is_empty() {
        return String::new();
    }
    steps.sort();
    let at = |ms: u64| {
        let s = ms.saturating_sub(run_started_ms) / 1000;
        format!("+{}:{:02}", s / 60, s % 60)
    };
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|(start, node, step, took)| {
            vec![
                node.to_string(),
                step.to_string(),
                at(*start),
                took.map_or_else(
                    || "-".into(),
                    |ms| ui::duration(std::time::Duration::from_millis(ms)),
                ),
            ]
        })
        .collect();
    let mut out = ui::table(&["NODE", "STEP", "STARTED", "TOOK"], &rows);
    out.push('\n');
    let init_done = steps
        .iter()
        .find(|s| s.2 == INIT_CONTROL_PLANE)
        .and_then(|s| s.3.map(|took| s.0 + took));
    let early: Vec<&str> = steps
        .iter()
        .filter(|s| s.2 == JOIN && init_done.is_some_and(|done| s.0 < done))
        .map(|s| s.1)
        .collect();
    if let Some(done) = init_done
        && !early.is_empty()
    {
        out.push_str(&format!(
            "{} started joining before kubeadm init finished at {}\n",
            early.join(", "),
            at(done)
        ));
    }
    out
}

/// Layers the configuration: flags and env > project file > user file > defaults.
pub fn load_spec(ctx: &Ctx, args: &UpArgs, m: &ArgMatches) -> anyhow::Result<Spec> {
    let flags = flag_layer(args, m);
    let (files, _) = config_files(ctx, args.config.as_deref())?;
    let layer = flags.over(Layer::from_env()).over(files);
    Ok(spec::resolve(ctx.cluster.clone(), layer)?)
}

/// The project file (`config`, else `./devcluster.toml` when it exists)
/// over the user file, and where the settings came from, for people.
pub fn config_files(ctx: &Ctx, config: Option<&Path>) -> Result<(Layer, String), UserError> {
    let mut from = Vec::new();
    let project = match config {
        Some(path) => {
            if !path.is_file() {
                return Err(UserError::new(format!(
                    "config file {} (from --config) does not exist",
                    path.display()
                ))
                .hint("give the path of a devcluster.toml, or leave --config out"));
            }
            from.push(path.display().to_string());
            spec::load_file(path)?
        }
        None => {
            let local = PathBuf::from("devcluster.toml");
            if local.is_file() {
                from.push("./devcluster.toml".to_string());
                spec::load_file(Path::new("./devcluster.toml"))?
            } else {
                Layer::default()
            }
        }
    };
    let user_file = ctx.dirs.user_config_file();
    let user = if user_file.is_file() {
        from.push(user_file.display().to_string());
        spec::load_file(&user_file)?
    } else {
        Layer::default()
    };
    let source = if from.is_empty() {
        "no ./devcluster.toml or user config: the defaults".to_string()
    } else {
        format!("{} parse", from.join(" and "))
    };
    Ok((project.over(user), source))
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
    env.allowed = crate::providers::virtualbox::plan_restriction(spec.provider.value)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StepTime;

    #[test]
    fn the_timeline_shows_workers_joining_before_init_finished() {
        let layer = Layer {
            workers: Some(Val::new(2, spec::Origin::Flag("--workers"))),
            ..Layer::default()
        };
        let spec = spec::resolve(
            Val::new("tl".into(), spec::Origin::Flag("--cluster")),
            layer,
        )
        .unwrap();
        let plan = plan::plan(&spec, &Surroundings::default()).unwrap();
        let mut st = ClusterState::new(plan);
        let t0 = 1_000_000;
        let mut set = |node: &str, step: &str, start_s: u64, took_s: Option<u64>| {
            st.nodes.get_mut(node).unwrap().step_times.insert(
                step.into(),
                StepTime {
                    started_ms: t0 + start_s * 1000,
                    took_ms: took_s.map(|s| s * 1000),
                },
            );
        };
        set("tl-cp", "prepare-os", 60, Some(5));
        set("tl-cp", "init-control-plane", 200, Some(70));
        set("tl-w1", "join", 190, Some(100));
        set("tl-w2", "join", 300, None);
        // A step of an earlier run is not part of this one's timeline.
        set("tl-w2", "prepare-os", 0, Some(5));
        let text = timeline(&st, t0 + 10_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NODE", "STEP", "STARTED", "TOOK"]
        );
        let rows: Vec<Vec<&str>> = lines[1..5]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["tl-cp", "prepare-os", "+0:50", "5s"],
                vec!["tl-w1", "join", "+3:00", "1m40s"],
                vec!["tl-cp", "init-control-plane", "+3:10", "1m10s"],
                vec!["tl-w2", "join", "+4:50", "-"],
            ]
        );
        assert_eq!(
            lines[5],
            "tl-w1 started joining before kubeadm init finished at +4:20"
        );
        assert_eq!(lines.len(), 6);
        assert_eq!(timeline(&st, t0 + 400_000), "");
    }
}
