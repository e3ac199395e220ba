//! `-o yaml`, `-o json` and `-o name`: one object as itself, several as a
//! `kind: List`, as kubectl prints them.

use super::format::OutputFormat;
use crate::resources;
use rkube_api::manifest;
use rkube_api::Object;
use serde::Serialize;
use serde_json::{json, Value};

/// JSON as kubectl indents it (four spaces).
pub fn json_pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// A `kind: List` holding the objects.
pub fn list_value(objects: &[Object]) -> Value {
    json!({
        "apiVersion": "v1",
        "items": objects.iter().map(manifest::to_json_value).collect::<Vec<_>>(),
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

/// `kind/name` for `-o name`.
pub fn name_line(obj: &Object) -> String {
    match obj.kind() {
        Some(k) => resources::object_ref(k, obj.name()),
        None => obj.name().to_string(),
    }
}

/// Renders objects in a structured format. `single`: exactly one object was
/// asked for by name, so it is printed alone rather than in a List. Table
/// formats render nothing here.
pub fn render(format: OutputFormat, objects: &[Object], single: bool) -> String {
    match format {
        OutputFormat::Yaml => {
            if single && objects.len() == 1 {
                manifest::to_yaml_string(&objects[0])
            } else {
                serde_yaml::to_string(&list_value(objects)).unwrap_or_default()
            }
        }
        OutputFormat::Json => {
            let v = if single && objects.len() == 1 {
                manifest::to_json_value(&objects[0])
            } else {
                list_value(objects)
            };
            let mut s = json_pretty(&v);
            s.push('\n');
            s
        }
        OutputFormat::Name => objects.iter().map(|o| name_line(o) + "\n").collect(),
        OutputFormat::Table | OutputFormat::Wide => String::new(),
    }
}

/// One object in a structured format, for `--watch` (YAML documents are
/// separated by `---`).
pub fn render_one(format: OutputFormat, obj: &Object, first: bool) -> String {
    match format {
        OutputFormat::Yaml => {
            let doc = manifest::to_yaml_string(obj);
            if first {
                doc
            } else {
                format!("---\n{doc}")
            }
        }
        _ => render(format, std::slice::from_ref(obj), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{object::Kind as Body, ObjectMeta, Pod, ReplicaSet};

    fn pod(name: &str) -> Object {
        Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    #[test]
    fn one_named_object_prints_alone() {
        let y = render(OutputFormat::Yaml, &[pod("nginx-pod")], true);
        assert!(
            y.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"),
            "{y}"
        );
        assert!(y.contains("name: nginx-pod"), "{y}");
        let j = render(OutputFormat::Json, &[pod("nginx-pod")], true);
        let v: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["kind"], "Pod");
        assert_eq!(v["metadata"]["name"], "nginx-pod");
        assert!(j.contains("\n    \"kind\": \"Pod\""), "{j}");
    }

    #[test]
    fn several_objects_print_as_a_list() {
        let objs = [pod("a"), pod("b")];
        let y = render(OutputFormat::Yaml, &objs, false);
        assert!(
            y.starts_with("apiVersion: v1\nitems:\n- apiVersion: v1\n"),
            "{y}"
        );
        assert!(
            y.contains("kind: List\nmetadata:\n  resourceVersion: ''\n"),
            "{y}"
        );
        let v: Value = serde_json::from_str(&render(OutputFormat::Json, &objs, false)).unwrap();
        assert_eq!(v["kind"], "List");
        assert_eq!(v["items"][1]["metadata"]["name"], "b");
        let empty: Value = serde_json::from_str(&render(OutputFormat::Json, &[], false)).unwrap();
        assert_eq!(empty["items"], json!([]));
    }

    #[test]
    fn names_carry_the_group() {
        let rs = Object::from_body(Body::ReplicaSet(ReplicaSet {
            metadata: Some(ObjectMeta {
                name: "nginx-rs".into(),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let out = render(OutputFormat::Name, &[pod("nginx-pod"), rs], false);
        assert_eq!(out, "pod/nginx-pod\nreplicaset.apps/nginx-rs\n");
    }

    #[test]
    fn watched_yaml_documents_are_separated() {
        assert!(!render_one(OutputFormat::Yaml, &pod("a"), true).starts_with("---"));
        assert!(render_one(OutputFormat::Yaml, &pod("a"), false).starts_with("---\n"));
    }
}
