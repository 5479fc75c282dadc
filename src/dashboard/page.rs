//! The cluster page, rendered on the server. The same fragment renderers
//! serve the first page and every server-sent update, so the page never
//! shows anything a reload would show differently.

use std::fmt::Write as _;

use super::Snapshot;

pub const CSS: &str = include_str!("assets/page.css");
pub const JS: &str = include_str!("assets/page.js");

/// Escapes text for HTML (the same five characters as XML; `&apos;` is
/// valid HTML5).
pub use crate::providers::libvirt::xml::esc;

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

fn ms(ms: u64) -> String {
    crate::ui::duration(std::time::Duration::from_millis(ms))
}

/// The nodes table, the step timelines and the context line: everything
/// that changes.
pub fn live(s: &Snapshot) -> String {
    let mut o = String::new();
    let st = &s.status;
    let _ = write!(
        o,
        "<p class=meta>{} · Kubernetes {} · API {} · subnet {}</p>",
        esc(&st.provider),
        esc(&st.kubernetes_version),
        esc(&st.api_endpoint),
        esc(&st.subnet)
    );
    o.push_str("<table id=nodes><thead><tr><th>Node<th>Role<th>OS<th>IP<th>VM<th>SSH<th>Phase<th>Kubernetes<th>Version<th>Disk</tr></thead><tbody>");
    for n in &st.nodes {
        let _ = write!(
            o,
            "<tr data-node=\"{name}\"><td>{name}<td>{}<td>{}<td class=ip>{}<td class=\"vm vm-{vmc}\">{}<td>{}<td class=phase>{}<td>{}<td>{}<td>{}</tr>",
            esc(&n.role),
            esc(&n.os),
            esc(&n.ip),
            esc(&n.vm),
            yes_no(n.ssh),
            esc(&n.phase),
            esc(n.kubernetes.as_deref().unwrap_or("-")),
            esc(n.kubelet_version.as_deref().unwrap_or("-")),
            esc(n.golden_disk.as_deref().map_or("base image", |g| g)),
            name = esc(&n.name),
            vmc = esc(&n.vm.replace(' ', "-")),
        );
    }
    o.push_str("</tbody></table><h2>Steps</h2><div class=steps>");
    for (node, steps) in &s.steps {
        let _ = write!(o, "<div class=timeline><h3>{}</h3><ol>", esc(node));
        if steps.is_empty() {
            o.push_str("<li class=none>no step ran yet</li>");
        }
        for step in steps {
            let (class, took) = match step.took_ms {
                Some(t) if step.failed => ("failed", format!("failed after {}", ms(t))),
                Some(t) => ("done", ms(t)),
                None if step.failed => ("failed", "failed".into()),
                None => ("running", "running or cut short".into()),
            };
            let _ = write!(
                o,
                "<li class={class}><span>{}</span><span class=took>{}</span></li>",
                esc(&step.name),
                esc(&took)
            );
        }
        o.push_str("</ol></div>");
    }
    o.push_str("</div>");
    let _ = write!(
        o,
        "<p id=context>kubeconfig context <code>{}</code>: {}</p>",
        esc(&s.context),
        if s.context_current {
            "kubectl's current context"
        } else {
            "not the current context"
        }
    );
    if let Some(a) = &s.last_action {
        let _ = write!(
            o,
            "<p id=action-result class=\"{}\">{}</p>",
            if a.ok { "ok" } else { "err" },
            esc(&a.message)
        );
    }
    o
}

/// The whole page.
pub fn page(s: &Snapshot, csrf: &str) -> String {
    let name = esc(&s.status.name);
    let k8s = if s.initialised {
        "<a class=button href=\"/k8s/\" target=_blank>Kubernetes view (Headlamp)</a>"
    } else {
        "<span class=note>The Kubernetes view opens once the control plane is initialised.</span>"
    };
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><meta name=csrf content=\"{csrf}\"><title>devcluster {name}</title><style>{CSS}</style></head><body><header><h1>devcluster <b>{name}</b></h1><nav><button data-op=suspend>Suspend</button><button data-op=resume>Resume</button><button data-op=halt>Halt</button><button data-op=start>Start</button><button data-op=use-context>Use this context</button>{k8s}</nav></header><main><div id=live>{live}</div><h2>Logs</h2><pre id=log></pre></main><script>{JS}</script></body></html>",
        csrf = esc(csrf),
        live = live(s),
    )
}
