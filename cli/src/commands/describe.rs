//! `describe`: finds the objects (by name, by name prefix as kubectl does,
//! or all matching `-l`), fetches what each page shows besides the object
//! (events, pods, endpoints), and prints the pages.

use super::{kind_of, label_selector};
use crate::args::DescribeArgs;
use crate::context::Ctx;
use crate::errors::{self, Outcome};
use crate::output::describe::{describe, Related};
use crate::output::rows::selector_text;
use crate::output::{eprint_line, print};
use crate::resources::parse_targets;
use anyhow::{bail, Result};
use rkube_api::kinds::Kind;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::{Endpoints, Event, Pod};
use rkube_api::Object;
use tonic::Code;

/// Events about one object.
async fn events_for(ctx: &Ctx, obj: &Object, kind: Kind) -> Vec<Event> {
    let ns = obj.namespace().to_string();
    let name = obj.name().to_string();
    let by_name = format!("involvedObject.name={name}");
    let list = match ctx.list(Kind::Event, &ns, "", &by_name).await {
        Ok(l) => l,
        // A server that cannot select on that field: filter here.
        Err(_) => match ctx.list(Kind::Event, &ns, "", "").await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "events not listed");
                return vec![];
            }
        },
    };
    list.items
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Body::Event(e)) => Some(e),
            _ => None,
        })
        .filter(|e| {
            let r = e.involved_object.clone().unwrap_or_default();
            r.name == name
                && (r.kind.is_empty() || r.kind == kind.name())
                && (r.namespace.is_empty() || !kind.namespaced() || r.namespace == ns)
        })
        .collect()
}

fn pods_of(items: Vec<Object>) -> Vec<Pod> {
    items
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Body::Pod(p)) => Some(p),
            _ => None,
        })
        .collect()
}

/// Pods matching a controller's selector (none for an empty selector).
async fn pods_selected(ctx: &Ctx, ns: &str, selector: &str) -> Vec<Pod> {
    if selector.is_empty() {
        return vec![];
    }
    match ctx.list(Kind::Pod, ns, selector, "").await {
        Ok(l) => pods_of(l.items),
        Err(e) => {
            tracing::debug!(error = %e, "pods not listed");
            vec![]
        }
    }
}

/// Pods bound to a node.
async fn pods_on_node(ctx: &Ctx, node: &str) -> Vec<Pod> {
    let sel = format!("spec.nodeName={node}");
    match ctx.list(Kind::Pod, "", "", &sel).await {
        Ok(l) => pods_of(l.items),
        Err(_) => match ctx.list(Kind::Pod, "", "", "").await {
            Ok(l) => pods_of(l.items)
                .into_iter()
                .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name == node))
                .collect(),
            Err(_) => vec![],
        },
    }
}

/// Everything a page shows about `obj` besides the object itself.
pub async fn related(ctx: &Ctx, obj: &Object) -> Result<Related> {
    let kind = kind_of(obj)?;
    let mut r = Related::empty(chrono::Utc::now());
    r.events = events_for(ctx, obj, kind).await;
    let ns = obj.namespace();
    match obj.kind.as_ref() {
        Some(Body::ReplicationController(rc)) => {
            let sel = rc
                .spec
                .as_ref()
                .map(|s| crate::output::rows::join_labels(&s.selector))
                .unwrap_or_default();
            r.pods = pods_selected(ctx, ns, &sel).await;
        }
        Some(Body::ReplicaSet(rs)) => {
            let sel = selector_text(rs.spec.as_ref().and_then(|s| s.selector.as_ref()));
            r.pods = pods_selected(ctx, ns, &sel).await;
        }
        Some(Body::DaemonSet(ds)) => {
            let sel = selector_text(ds.spec.as_ref().and_then(|s| s.selector.as_ref()));
            r.pods = pods_selected(ctx, ns, &sel).await;
        }
        Some(Body::Node(_)) => r.pods = pods_on_node(ctx, obj.name()).await,
        Some(Body::Service(_)) => {
            r.endpoints = match ctx.client.get(Kind::Endpoints.name(), ns, obj.name()).await {
                Ok(Object {
                    kind: Some(Body::Endpoints(e)),
                }) => Some(e),
                _ => None::<Endpoints>,
            };
        }
        _ => {}
    }
    Ok(r)
}

/// The named object, or those whose names start with `name` when there is
/// no exact match.
async fn find(ctx: &Ctx, kind: Kind, name: &str) -> Result<Vec<Object>> {
    let ns = ctx.object_namespace(kind);
    match ctx.client.get(kind.name(), &ns, name).await {
        Ok(o) => Ok(vec![o]),
        Err(s) if s.code() == Code::NotFound => {
            let list = ctx.list(kind, &ns, "", "").await?;
            let matches: Vec<Object> = list
                .items
                .into_iter()
                .filter(|o| o.name().starts_with(name))
                .collect();
            if matches.is_empty() {
                Err(errors::server(s))
            } else {
                Ok(matches)
            }
        }
        Err(s) => Err(errors::server(s)),
    }
}

pub async fn run(ctx: &Ctx, args: &DescribeArgs) -> Result<()> {
    let label_sel = label_selector(args.selector.as_deref())?;
    let targets = parse_targets(&args.args)?;
    if targets.iter().any(|t| !t.names.is_empty()) && !label_sel.is_empty() {
        bail!("name cannot be provided when a selector is specified");
    }
    let mut outcome = Outcome::new();
    let mut printed = 0usize;
    let mut any_namespaced = false;
    for t in &targets {
        any_namespaced |= t.kind.namespaced();
        let mut objects = Vec::new();
        if t.names.is_empty() {
            match ctx
                .list(t.kind, &ctx.list_namespace(t.kind), &label_sel, "")
                .await
            {
                Ok(l) => objects = l.items,
                Err(e) => outcome.fail(&e),
            }
        } else {
            for name in &t.names {
                match find(ctx, t.kind, name).await {
                    Ok(found) => objects.extend(found),
                    Err(e) => outcome.fail(&e),
                }
            }
        }
        for obj in objects {
            let rel = match related(ctx, &obj).await {
                Ok(r) => r,
                Err(e) => {
                    outcome.fail(&e);
                    continue;
                }
            };
            if printed > 0 {
                print("\n\n");
            }
            print(&describe(&obj, &rel));
            printed += 1;
        }
    }
    if printed == 0 && !outcome.failed() {
        eprint_line(&ctx.nothing_found(any_namespaced));
    }
    outcome.finish()
}
