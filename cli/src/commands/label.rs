//! `label`: add, change (`--overwrite`) or remove (`k-`) labels with a JSON
//! merge patch carrying the resourceVersion that was read, re-reading and
//! retrying when someone else changed the object in between.

use super::label_selector;
use crate::args::LabelArgs;
use crate::context::Ctx;
use crate::errors::{self, Outcome};
use crate::labels::{parse_changes, plan, split_args, LabelChanges};
use crate::output::{eprint_line, print_line};
use crate::resources::{object_ref, parse_targets};
use anyhow::{bail, Result};
use rkube_api::kinds::Kind;
use rkube_api::proto::PatchRequest;
use rkube_api::Object;
use serde_json::{json, Value};
use tonic::Code;

/// Attempts before giving up on a contended object.
const ATTEMPTS: usize = 5;

/// The merge patch for new label values, guarded by `resource_version`.
pub fn patch_doc(labels: serde_json::Map<String, Value>, resource_version: &str) -> Value {
    json!({"metadata": {"labels": Value::Object(labels), "resourceVersion": resource_version}})
}

async fn label_one(
    ctx: &Ctx,
    kind: Kind,
    mut obj: Object,
    ch: &LabelChanges,
    overwrite: bool,
) -> Result<String> {
    let name = obj.name().to_string();
    let ns = obj.namespace().to_string();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            obj = ctx
                .client
                .get(kind.name(), &ns, &name)
                .await
                .map_err(errors::server)?;
        }
        let current = obj.metadata().map(|m| m.labels.clone()).unwrap_or_default();
        let update = plan(&current, ch, overwrite)?;
        if update.patch.is_empty() {
            return Ok(format!("{} {}", object_ref(kind, &name), update.verb));
        }
        let doc = patch_doc(update.patch, obj.resource_version());
        let req = PatchRequest {
            kind: kind.name().to_string(),
            namespace: ns.clone(),
            name: name.clone(),
            patch_type: "merge".into(),
            patch: doc.to_string(),
            status: false,
        };
        match ctx.client.patch(req).await {
            Ok(_) => return Ok(format!("{} {}", object_ref(kind, &name), update.verb)),
            Err(s) if s.code() == Code::Aborted && attempt + 1 < ATTEMPTS => continue,
            Err(s) => return Err(errors::server(s)),
        }
    }
    bail!("{} changed too often to label it", object_ref(kind, &name))
}

pub async fn run(ctx: &Ctx, a: &LabelArgs) -> Result<()> {
    let (resources, change_args) = split_args(&a.args)?;
    let ch = parse_changes(&change_args)?;
    let label_sel = label_selector(a.selector.as_deref())?;
    let targets = parse_targets(&resources)?;
    let named = targets.iter().any(|t| !t.names.is_empty());
    let selecting = !label_sel.is_empty() || a.all;
    if named && selecting {
        bail!("cannot specify both resource names and a selector or --all");
    }
    if !named && !selecting {
        bail!("resource(s) were provided, but no name was specified");
    }
    let mut outcome = Outcome::new();
    let mut found = 0usize;
    for t in &targets {
        let objects: Vec<Object> = if named {
            let ns = ctx.object_namespace(t.kind);
            let mut v = Vec::new();
            for n in &t.names {
                match ctx.client.get(t.kind.name(), &ns, n).await {
                    Ok(o) => v.push(o),
                    Err(s) => outcome.fail_status(&s),
                }
            }
            v
        } else {
            match ctx
                .list(t.kind, &ctx.list_namespace(t.kind), &label_sel, "")
                .await
            {
                Ok(l) => l.items,
                Err(e) => {
                    outcome.fail(&e);
                    continue;
                }
            }
        };
        for obj in objects {
            found += 1;
            match label_one(ctx, t.kind, obj, &ch, a.overwrite).await {
                Ok(line) => print_line(&line),
                Err(e) => outcome.fail(&e),
            }
        }
    }
    if found == 0 && !named && !outcome.failed() {
        eprint_line(&ctx.nothing_found(targets.iter().any(|t| t.kind.namespaced())));
    }
    outcome.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_carries_the_resource_version() {
        let mut m = serde_json::Map::new();
        m.insert("node".into(), Value::String("server".into()));
        m.insert("old".into(), Value::Null);
        let d = patch_doc(m, "42");
        assert_eq!(
            d,
            json!({"metadata": {"labels": {"node": "server", "old": null}, "resourceVersion": "42"}})
        );
    }
}
