//! `devcluster kubeconfig`: locate, print, merge or remove the cluster's
//! kubeconfig entries. Without a flag it prints the admin kubeconfig's path:
//! key material reaches the terminal only when asked for with `--print`.

use super::Ctx;
use crate::cli::KubeconfigArgs;
use crate::error::ExitStatus;
use crate::kubeconfig::{self, KubeconfigError};
use crate::{pki, state};

pub fn kubeconfig(ctx: &Ctx, args: &KubeconfigArgs) -> anyhow::Result<ExitStatus> {
    let name = ctx.cluster_name()?;
    let context = kubeconfig::context_name(name);
    if args.remove {
        // Works for clusters that are gone too: it cleans up leftovers.
        let changed = kubeconfig::remove_cluster_entries(name)?;
        if changed.is_empty() {
            ctx.printer
                .info(format!("your kubeconfig has no entries named {context}"));
        } else {
            for file in changed {
                ctx.printer
                    .info(format!("removed {context} from {}", file.display()));
            }
        }
        return Ok(ExitStatus::Success);
    }
    state::load_existing(&ctx.dirs, name)?;
    let admin = pki::admin_kubeconfig_path(&ctx.dirs, name);
    let no_admin = || KubeconfigError::NoAdmin {
        cluster: name.to_string(),
        path: admin.clone(),
    };
    if args.merge {
        let switch = !args.no_switch_context;
        let file = kubeconfig::merge_cluster(&ctx.dirs, name, switch)?;
        ctx.printer.info(if switch {
            format!(
                "merged {context} into {} and made it the current context",
                file.display()
            )
        } else {
            format!("merged {context} into {}", file.display())
        });
    } else if args.print {
        let text = match std::fs::read_to_string(&admin) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_admin().into()),
            Err(source) => {
                return Err(KubeconfigError::Read {
                    path: admin.clone(),
                    source,
                }
                .into());
            }
        };
        ctx.printer.out(text.trim_end_matches('\n'));
    } else {
        if !admin.is_file() {
            return Err(no_admin().into());
        }
        ctx.printer.out(admin.display());
    }
    Ok(ExitStatus::Success)
}
