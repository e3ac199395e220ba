//! `apply -f`: create what is missing; otherwise patch the object so that
//! the fields the manifest sets match it, removing fields an earlier apply
//! set that the manifest no longer has (remembered, as kubectl does, in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation). Prints
//! `created`, `configured` or `unchanged`.

use super::{kind_of, load_or_report};
use crate::args::FileArgs;
use crate::context::Ctx;
use crate::errors::{self, Outcome};
use crate::output::{eprint_line, print_line};
use crate::resources::object_ref;
use anyhow::{anyhow, Result};
use rkube_api::manifest;
use rkube_api::proto::PatchRequest;
use rkube_api::Object;
use serde_json::{Map, Value};
use tonic::Code;

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata fields the server owns; a manifest's values for them are not
/// applied.
const SERVER_METADATA: [&str; 8] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "name",
    "namespace",
];

/// Strips what apply never sends from a manifest's JSON: type meta, status,
/// server-owned metadata and the last-applied annotation itself; then drops
/// empty values. Both the new manifest and the recorded one go through this,
/// so they compare like with like.
pub fn normalize(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_METADATA {
                meta.remove(k);
            }
            if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                ann.remove(LAST_APPLIED);
            }
        }
    }
    manifest::prune(&mut v);
    v
}

/// The fields of a manifest that apply manages.
pub fn applied_fields(obj: &Object) -> Value {
    normalize(manifest::to_json_value(obj))
}

/// The annotation value: the manifest as compact JSON.
pub fn last_applied_text(obj: &Object) -> String {
    let mut v = manifest::to_json_value(obj);
    if let Some(ann) = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        ann.remove(LAST_APPLIED);
    }
    manifest::prune(&mut v);
    v.to_string()
}

/// A JSON merge patch that makes `current` agree with `modified`, deleting
/// keys `original` had that `modified` dropped.
pub fn three_way(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    let empty = Map::new();
    if let Some(orig) = original {
        for (k, ov) in orig {
            if modified.contains_key(k) {
                continue;
            }
            match (ov, current.and_then(|c| c.get(k))) {
                // Only what the earlier apply set inside it goes.
                (Value::Object(oo), Some(Value::Object(co))) => {
                    let sub = three_way(Some(oo), &empty, Some(co));
                    if !sub.is_empty() {
                        patch.insert(k.clone(), Value::Object(sub));
                    }
                }
                (_, Some(_)) => {
                    patch.insert(k.clone(), Value::Null);
                }
                (_, None) if current.is_none() => {
                    patch.insert(k.clone(), Value::Null);
                }
                (_, None) => {}
            }
        }
    }
    for (k, mv) in modified {
        let cv = current.and_then(|c| c.get(k));
        match (mv, cv) {
            (Value::Object(mo), Some(Value::Object(co))) => {
                let ov = original.and_then(|o| o.get(k)).and_then(Value::as_object);
                let sub = three_way(ov, mo, Some(co));
                if !sub.is_empty() {
                    patch.insert(k.clone(), Value::Object(sub));
                }
            }
            _ => {
                if cv != Some(mv) {
                    patch.insert(k.clone(), mv.clone());
                }
            }
        }
    }
    patch
}

/// The patch to send for `manifest` given the stored `current`, or `None`
/// if nothing would change. Also says whether `current` lacked the
/// last-applied annotation.
pub fn apply_patch(manifest: &Object, current: &Object) -> (Option<Value>, bool) {
    let cur_json = manifest::to_json_value(current);
    let last = current
        .metadata()
        .and_then(|m| m.annotations.get(LAST_APPLIED))
        .cloned();
    let original: Option<Value> = last
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .map(normalize);
    let modified = applied_fields(manifest);
    let empty = Map::new();
    let mut patch = three_way(
        original.as_ref().and_then(Value::as_object),
        modified.as_object().unwrap_or(&empty),
        cur_json.as_object(),
    );
    let text = last_applied_text(manifest);
    if last.as_deref() != Some(text.as_str()) {
        let meta = patch
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            let ann = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(ann) = ann.as_object_mut() {
                ann.insert(LAST_APPLIED.to_string(), Value::String(text));
            }
        }
    }
    let patch = (!patch.is_empty()).then_some(Value::Object(patch));
    (patch, last.is_none())
}

async fn apply_one(ctx: &Ctx, mut obj: Object) -> Result<String> {
    ctx.place(&mut obj)?;
    let kind = kind_of(&obj)?;
    let (ns, name) = (obj.namespace().to_string(), obj.name().to_string());
    if name.is_empty() {
        return Err(anyhow!("resource name may not be empty"));
    }
    let current = match ctx.client.get(kind.name(), &ns, &name).await {
        Ok(c) => Some(c),
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => return Err(errors::server(s)),
    };
    let Some(current) = current else {
        let mut create = obj.clone();
        let text = last_applied_text(&obj);
        if let Some(m) = create.metadata_mut() {
            m.annotations.insert(LAST_APPLIED.to_string(), text);
            m.resource_version.clear();
        }
        let created = ctx.client.create(create).await.map_err(errors::server)?;
        return Ok(format!("{} created", object_ref(kind, created.name())));
    };
    let (patch, missing) = apply_patch(&obj, &current);
    if missing {
        eprint_line(&format!(
            "Warning: {} {name:?} is missing the {LAST_APPLIED} annotation, which is needed \
             to remove fields on later applies; it will be added now.",
            kind.plural()
        ));
    }
    let Some(patch) = patch else {
        return Ok(format!("{} unchanged", object_ref(kind, &name)));
    };
    let updated = ctx
        .client
        .patch(PatchRequest {
            kind: kind.name().to_string(),
            namespace: ns,
            name: name.clone(),
            patch_type: "merge".into(),
            patch: patch.to_string(),
            status: false,
        })
        .await
        .map_err(errors::server)?;
    let verb = if updated.resource_version() == current.resource_version() {
        "unchanged"
    } else {
        "configured"
    };
    Ok(format!("{} {verb}", object_ref(kind, &name)))
}

pub async fn run(ctx: &Ctx, a: &FileArgs) -> Result<()> {
    let loaded = load_or_report(&a.files, a.recursive)?;
    let mut outcome = Outcome::new();
    for l in loaded {
        match apply_one(ctx, l.object).await {
            Ok(line) => print_line(&line),
            Err(e) => outcome.fail(&e),
        }
    }
    outcome.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn three_way_sets_changes_and_drops_removed_fields() {
        let original =
            obj(json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 3}}));
        let modified = obj(json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 5}}));
        let current = obj(json!({
            "metadata": {"labels": {"a": "1", "b": "2", "added-by-hand": "x"}},
            "spec": {"replicas": 3, "selector": {"app": "x"}},
            "status": {"replicas": 3}
        }));
        let p = three_way(Some(&original), &modified, Some(&current));
        assert_eq!(
            Value::Object(p),
            json!({"metadata": {"labels": {"b": null}}, "spec": {"replicas": 5}})
        );
    }

    #[test]
    fn dropped_maps_lose_only_what_was_applied() {
        let original = obj(json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 3}}));
        let modified = obj(json!({"spec": {"replicas": 3}}));
        let current = obj(json!({
            "metadata": {"name": "x", "labels": {"a": "1", "b": "2"}, "annotations": {"k": "v"}},
            "spec": {"replicas": 3}
        }));
        let p = three_way(Some(&original), &modified, Some(&current));
        assert_eq!(
            Value::Object(p),
            json!({"metadata": {"labels": {"a": null}}})
        );
    }

    #[test]
    fn nothing_to_do_is_an_empty_patch() {
        let m = obj(json!({"spec": {"replicas": 3}}));
        let current = obj(json!({"spec": {"replicas": 3, "other": 1}}));
        assert!(three_way(Some(&m), &m, Some(&current)).is_empty());
        // Without a previous apply nothing is deleted.
        assert!(three_way(None, &m, Some(&current)).is_empty());
    }

    #[test]
    fn patch_records_the_applied_manifest() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: x}}\nspec: {containers: [{name: c, image: nginx}]}\n";
        let m = manifest::decode(text, "p").unwrap().remove(0);
        let mut current = m.clone();
        if let Some(meta) = current.metadata_mut() {
            meta.resource_version = "7".into();
            meta.uid = "u".into();
        }
        let (patch, missing) = apply_patch(&m, &current);
        assert!(missing);
        let patch = patch.unwrap();
        let recorded = patch["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        let v: Value = serde_json::from_str(recorded).unwrap();
        assert_eq!(v["metadata"]["labels"]["app"], "x");
        assert!(patch.get("spec").is_none(), "{patch}");
        // Once recorded, the same manifest needs no patch.
        if let Some(meta) = current.metadata_mut() {
            meta.annotations
                .insert(LAST_APPLIED.into(), recorded.to_string());
        }
        let (patch, missing) = apply_patch(&m, &current);
        assert!(!missing);
        assert_eq!(patch, None);
    }
}
