//! Manifests: strict decoding of YAML and JSON documents into typed objects,
//! and encoding objects back the way `kubectl -o yaml|json` prints them.
//!
//! Decoding happens in two steps so that each error can say where it is: the
//! text is parsed into a generic tree (syntax errors name the line), then the
//! tree is decoded into the kind its `apiVersion`/`kind` name (unknown fields
//! and wrong types name the field path). Nothing is dropped or guessed.

use crate::kinds::{self, Kind};
use crate::proto::Object;
use serde::Deserialize;
use std::fmt;

/// A manifest that could not be decoded, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file (or `-` for standard input).
    pub source: String,
    /// 1-based document number within a multi-document stream.
    pub document: usize,
    /// 1-based line, when the problem is in the text itself.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error parsing {}", self.source)?;
        if self.document > 1 {
            write!(f, " (document {})", self.document)?;
        }
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Decodes every document in `text` (YAML, possibly several documents, or
/// JSON; a `List` kind's items are expanded). Either all documents decode or
/// the first error is returned.
pub fn decode(text: &str, source: &str) -> Result<Vec<Object>, ManifestError> {
    let trimmed = text.trim_start();
    let mut values = Vec::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ManifestError {
            source: source.to_string(),
            document: 1,
            line: Some(e.line()),
            message: format!("invalid JSON: {e}"),
        })?;
        values.push(v);
    } else {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let v = serde_yaml::Value::deserialize(doc).map_err(|e| ManifestError {
                source: source.to_string(),
                document: i + 1,
                line: e.location().map(|l| l.line()),
                message: format!("invalid YAML: {}", strip_location(&e.to_string())),
            })?;
            if v.is_null() {
                continue; // an empty document (a trailing `---`)
            }
            let json = yaml_to_json(v).map_err(|m| ManifestError {
                source: source.to_string(),
                document: i + 1,
                line: None,
                message: m,
            })?;
            values.push(json);
        }
    }
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        let err = |message: String| ManifestError {
            source: source.to_string(),
            document: i + 1,
            line: None,
            message,
        };
        if v.get("kind").and_then(|k| k.as_str()) == Some("List") {
            let items = v
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            for (j, item) in items.into_iter().enumerate() {
                out.push(decode_value(item).map_err(|m| err(format!("items[{j}]: {m}")))?);
            }
        } else {
            out.push(decode_value(v).map_err(err)?);
        }
    }
    if out.is_empty() {
        return Err(ManifestError {
            source: source.to_string(),
            document: 1,
            line: None,
            message: "no objects found".into(),
        });
    }
    Ok(out)
}

/// Decodes one object from a JSON value, strictly.
pub fn decode_value(v: serde_json::Value) -> Result<Object, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected an object, found {}", json_type(&v)))?;
    let text = |key: &str| -> Result<String, String> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!(
                "{key}: invalid type: {}, expected a string",
                json_type(other)
            )),
        }
    };
    let kind = Kind::from_type_meta(&text("apiVersion")?, &text("kind")?)?;
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    kinds::from_json(kind, v).map_err(|m| {
        if name.is_empty() {
            format!("error decoding {kind}: {m}")
        } else {
            format!("error decoding {kind} {name:?}: {m}")
        }
    })
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "sequence",
        serde_json::Value::Object(_) => "map",
    }
}

/// serde_yaml appends " at line L column C"; the line is reported separately.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Converts a YAML tree to JSON, refusing what JSON cannot hold (non-string
/// keys, tags) instead of silently mangling it.
fn yaml_to_json(v: serde_yaml::Value) -> Result<serde_json::Value, String> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => serde_json::Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| format!("number {n} cannot be represented"))?
            }
        }
        Y::String(s) => serde_json::Value::String(s),
        Y::Sequence(items) => serde_json::Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    other => return Err(format!("unsupported mapping key {other:?}")),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(t) => return Err(format!("YAML tags are not supported ({})", t.tag)),
    })
}

/// Removes what `kubectl -o yaml` would not print: nulls, empty strings,
/// empty lists and maps.
pub fn prune(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => {
            for x in a.iter_mut() {
                prune(x);
            }
            a.is_empty()
        }
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !prune(x));
            m.is_empty()
        }
        _ => false,
    }
}

/// The object as kubectl prints it with `-o json`.
pub fn to_json_value(obj: &Object) -> serde_json::Value {
    let mut v = obj.to_json();
    prune(&mut v);
    v
}

pub fn to_json_string(obj: &Object) -> String {
    serde_json::to_string_pretty(&to_json_value(obj)).unwrap_or_default()
}

/// The object as kubectl prints it with `-o yaml`.
pub fn to_yaml_string(obj: &Object) -> String {
    serde_yaml::to_string(&to_json_value(obj)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::object::Kind as Body;

    const RS: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: nginx-rs
spec:
  replicas: 3
  template:
    metadata:
      labels:
        app: nginx-app
        tier: frontend
    spec:
      containers:
      - name: nginx-container
        image: nginx
        ports:
        - containerPort: 80
  selector:
    matchExpressions:
    - {key: tier, operator: In, values: [frontend]}
";

    #[test]
    fn decodes_camel_case_fields() {
        let objs = decode(RS, "rs.yml").unwrap();
        let Some(Body::ReplicaSet(rs)) = &objs[0].kind else {
            panic!("not a replicaset")
        };
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        let c = &spec
            .template
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(c.ports[0].container_port, 80);
        let e = &spec.selector.as_ref().unwrap().match_expressions[0];
        assert_eq!((e.key.as_str(), e.operator.as_str()), ("tier", "In"));
    }

    #[test]
    fn unknown_field_names_its_path() {
        let bad = RS.replace("{key: tier,", "{key: tier,app,");
        let e = decode(&bad, "rs.yml").unwrap_err();
        assert!(
            e.message
                .contains("spec.selector.matchExpressions[0].app: unknown field \"app\""),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_its_path() {
        let bad = RS.replace("replicas: 3", "replicas: three");
        let e = decode(&bad, "rs.yml").unwrap_err();
        assert!(e.message.contains("spec.replicas: invalid type"), "{e}");
    }

    #[test]
    fn yaml_syntax_error_names_the_line() {
        let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n name: x\nspec:\n containers:\n - name : c\n  image: nginx\n";
        let e = decode(bad, "pod.yml").unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.to_string().contains("line 8"), "{e}");
    }

    #[test]
    fn unknown_version_is_refused() {
        let bad = RS.replace("apps/v1", "apps/vi");
        let e = decode(&bad, "rs.yml").unwrap_err();
        assert!(e.message.contains("apps/vi"), "{e}");
    }

    #[test]
    fn multi_document_and_json() {
        let two = format!("{RS}---\n{}", RS.replace("nginx-rs", "other"));
        assert_eq!(decode(&two, "x").unwrap().len(), 2);
        let json = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},
            "spec":{"ports":[{"port":80,"targetPort":"http"},{"port":81,"targetPort":8081}]}}"#;
        let o = decode(json, "x").unwrap();
        let Some(Body::Service(s)) = &o[0].kind else {
            panic!()
        };
        let ports = &s.spec.as_ref().unwrap().ports;
        assert_eq!(ports[0].target_port, "http");
        assert_eq!(ports[1].target_port, "8081");
        let back = to_json_value(&o[0]);
        assert_eq!(back["spec"]["ports"][1]["targetPort"], 8081);
        assert_eq!(back["spec"]["ports"][0]["targetPort"], "http");
        let bad_json = "{\"apiVersion\": \"v1\",\n \"kind\": }";
        assert_eq!(decode(bad_json, "x").unwrap_err().line, Some(2));
    }

    #[test]
    fn encoding_round_trips_and_prunes() {
        let o = decode(RS, "rs.yml").unwrap().remove(0);
        let y = to_yaml_string(&o);
        assert!(
            y.starts_with("apiVersion: apps/v1\nkind: ReplicaSet\n"),
            "{y}"
        );
        assert!(!y.contains("status"), "{y}");
        assert!(y.contains("containerPort: 80"), "{y}");
        let again = decode(&y, "again").unwrap().remove(0);
        assert_eq!(again, o);
    }

    #[test]
    fn acronym_fields_use_kubernetes_names() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.244.1.2, hostIP: 192.168.0.2}\n";
        let o = decode(pod, "p").unwrap().remove(0);
        let v = to_json_value(&o);
        assert_eq!(v["status"]["podIP"], "10.244.1.2");
        assert_eq!(v["status"]["hostIP"], "192.168.0.2");
    }

    #[test]
    fn quantities_accept_numbers() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i, resources: {limits: {cpu: 1, memory: 64Mi}}}]}\n";
        let o = decode(pod, "p").unwrap().remove(0);
        let Some(Body::Pod(p)) = &o.kind else {
            panic!()
        };
        let r = p.spec.as_ref().unwrap().containers[0]
            .resources
            .as_ref()
            .unwrap();
        assert_eq!(r.limits["cpu"], "1");
        assert_eq!(r.limits["memory"], "64Mi");
    }
}
