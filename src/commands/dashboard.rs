//! `devcluster dashboard [--no-browser] [--port P] [-o json]`: serves the
//! cluster's page on 127.0.0.1 until Ctrl-C (see `crate::dashboard`). The
//! buttons run the lifecycle verbs' own code under the cluster lock.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::Ctx;
use super::lifecycle::{self, Op};
use crate::cli::{DashboardArgs, UseArgs};
use crate::cluster_status;
use crate::dashboard::{self, App, Backend, Secrets, Snapshot, headlamp};
use crate::dirs::Dirs;
use crate::error::{ExitStatus, UserError};
use crate::fsutil::{Access, atomic_write};
use crate::kubeconfig::{self, Kubeconfig};
use crate::spec::Val;
use crate::state::{self, ClusterState};
use crate::ui::{OutputFormat, Printer};

/// What the lock holder is called while a button's operation runs.
const HOLDER: &str = "devcluster dashboard";

pub fn dashboard(ctx: &Ctx, args: &DashboardArgs) -> anyhow::Result<ExitStatus> {
    let cluster = ctx.cluster_name()?.to_string();
    let st = state::load_existing(&ctx.dirs, &cluster)?;
    let runtime = super::runtime()?;
    let r = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| {
                UserError::new(format!("cannot listen on 127.0.0.1:{}: {e}", args.port))
                    .hint("pick another --port, or leave it out for any free port")
            })?;
        let port = listener.local_addr()?.port();
        let secrets = Secrets::generate(port)?;
        let url = format!("http://127.0.0.1:{port}/?k={}", secrets.secret);
        let backend = Arc::new(CliBackend {
            dirs: ctx.dirs.clone(),
            printer: ctx.printer,
            cluster: ctx.cluster.clone(),
            last_state: Mutex::new(st),
            view: tokio::sync::Mutex::new(None),
        });
        let app = App::new(secrets.clone(), backend);
        app.refresh().await;
        match args.output {
            // One line, read as soon as it is printed.
            OutputFormat::Json => ctx.printer.out(serde_json::json!({
                "url": url,
                "token": secrets.secret,
                "port": port,
            })),
            OutputFormat::Table => {
                ctx.printer
                    .out(format!("dashboard of cluster {cluster}: {url}"));
                ctx.printer.info("Ctrl-C stops it");
            }
        }
        let opener = if args.no_browser {
            None
        } else {
            Some(open_browser(&ctx.dirs, &cluster, &url, &ctx.printer))
        };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let r = dashboard::serve(listener, app, shutdown).await;
        if let Some(Some(file)) = opener {
            let _ = std::fs::remove_file(file);
        }
        anyhow::Ok(r?)
    });
    super::finish(runtime);
    r?;
    Ok(ExitStatus::Success)
}

/// Opens the page with the platform's opener. The URL carries the secret,
/// which must not appear on a command line (other users can read those):
/// the opener gets a private file that redirects to the URL instead.
fn open_browser(dirs: &Dirs, cluster: &str, url: &str, printer: &Printer) -> Option<PathBuf> {
    let file = dirs.cluster(cluster).join("dashboard-open.html");
    let html = format!(
        "<!doctype html><meta http-equiv=refresh content=\"0;url={url}\"><a href=\"{url}\">devcluster dashboard</a>"
    );
    if let Err(e) = atomic_write(&file, html.as_bytes(), Access::Private) {
        printer.warn(format!("cannot open a browser: {e}; open the URL above"));
        return None;
    }
    let mut cmd = if cfg!(target_os = "windows") {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else {
        std::process::Command::new("xdg-open")
    };
    cmd.arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Err(e) = cmd.spawn() {
        printer.warn(format!(
            "cannot start the browser ({:?}: {e}); open the URL above",
            cmd.get_program()
        ));
    }
    Some(file)
}

struct CliBackend {
    dirs: Dirs,
    printer: Printer,
    cluster: Val<String>,
    /// The last state read, for when the file cannot be read.
    last_state: Mutex<ClusterState>,
    view: tokio::sync::Mutex<Option<Arc<headlamp::View>>>,
}

impl CliBackend {
    fn ctx(&self) -> Ctx {
        Ctx {
            dirs: self.dirs.clone(),
            printer: self.printer,
            cluster: self.cluster.clone(),
        }
    }

    fn state(&self) -> ClusterState {
        let mut last = self.last_state.lock().expect("not poisoned");
        if let Ok(st) = state::load_existing(&self.dirs, &self.cluster.value) {
            *last = st;
        }
        last.clone()
    }
}

/// Runs blocking CLI code on its own thread (it starts its own runtime).
async fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.expect("the worker thread sends before it ends")
}

fn message(e: &anyhow::Error) -> String {
    let r = crate::error::report(e);
    let mut m = std::iter::once(r.message)
        .chain(r.causes)
        .collect::<Vec<_>>()
        .join(": ");
    if let Some(h) = r.hint {
        m.push_str(&format!(" (hint: {h})"));
    }
    m
}

#[async_trait]
impl Backend for CliBackend {
    async fn snapshot(&self) -> Snapshot {
        let st = self.state();
        let status = match cluster_status::gather(&self.dirs, &st).await {
            Ok(s) => s,
            Err(e) => {
                let mut s = cluster_status::from_state(&st);
                for n in &mut s.nodes {
                    n.vm = format!("unknown ({})", message(&e));
                }
                s
            }
        };
        let context = kubeconfig::context_name(&st.name);
        let context_current = Kubeconfig::from_env()
            .ok()
            .and_then(|k| k.current_context().ok().flatten())
            .is_some_and(|c| c == context);
        Snapshot {
            status,
            steps: dashboard::steps_of(&st),
            context,
            context_current,
            initialised: st.initialised(),
            last_action: None,
        }
    }

    async fn act(&self, action: &str) -> Option<Result<String, String>> {
        let op = match action {
            "suspend" => Op::Suspend,
            "resume" => Op::Resume,
            "halt" => Op::Halt(std::time::Duration::from_secs(60)),
            "start" => Op::Start,
            "use-context" => {
                let ctx = self.ctx();
                let name = self.cluster.value.clone();
                let r = on_thread(move || {
                    super::use_::use_(
                        &ctx,
                        &UseArgs {
                            name: Some(name.clone()),
                        },
                    )
                    .map(|_| {
                        format!(
                            "kubectl's current context is now {}",
                            kubeconfig::context_name(&name)
                        )
                    })
                })
                .await;
                return Some(r.map_err(|e| message(&e)));
            }
            _ => return None,
        };
        let ctx = self.ctx();
        let r = on_thread(move || lifecycle::run_as(&ctx, op, HOLDER)).await;
        Some(
            r.map(|()| format!("{}: done", op.verb()))
                .map_err(|e| message(&e)),
        )
    }

    fn log_dir(&self) -> PathBuf {
        self.dirs.cluster(&self.cluster.value).join("logs")
    }

    async fn kube_view(&self) -> Result<Arc<headlamp::View>, String> {
        let mut view = self.view.lock().await;
        if let Some(v) = &*view {
            return Ok(v.clone());
        }
        let st = self.state();
        if !st.initialised() {
            return Err("the Kubernetes view needs an initialised control plane: this cluster has none yet (machines only, or `up` has not run kubeadm)".into());
        }
        let path = crate::pki::admin_kubeconfig_path(&self.dirs, &st.name);
        let client = crate::kube::client::client_from_admin_kubeconfig(&path)
            .await
            .map_err(|e| crate::error::one_line(&e))?;
        if headlamp::ensure_deployed(&client)
            .await
            .map_err(|e| crate::error::one_line(&e))?
        {
            self.printer.info(format!(
                "deployed Headlamp ({}) in namespace {}",
                headlamp::IMAGE,
                headlamp::NAMESPACE
            ));
        }
        let v = Arc::new(
            headlamp::View::connect(client)
                .await
                .map_err(|e| crate::error::one_line(&e))?,
        );
        *view = Some(v.clone());
        Ok(v)
    }
}
