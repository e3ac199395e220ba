//! `label` arguments: telling names from changes (`k=v`, `k-`), validating
//! them, and working out what a change does to an object's labels.

use anyhow::{bail, Result};
use rkube_api::validation::{validate_label_key, validate_label_value};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// The label changes asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelChanges {
    /// `k=v`: set (last one wins).
    pub set: BTreeMap<String, String>,
    /// `k-`: remove.
    pub remove: Vec<String>,
}

/// Whether an argument is a label change rather than a resource name.
pub fn is_label_arg(arg: &str) -> bool {
    arg.contains('=') || arg.ends_with('-')
}

/// Splits `label` arguments into resource arguments and label changes;
/// every resource must come before the first change.
pub fn split_args(args: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let at = args
        .iter()
        .position(|a| is_label_arg(a))
        .unwrap_or(args.len());
    let (resources, changes) = args.split_at(at);
    if let Some(bad) = changes.iter().find(|a| !is_label_arg(a)) {
        bail!("all resources must be specified before label changes: {bad}");
    }
    Ok((resources.to_vec(), changes.to_vec()))
}

/// Parses and validates `k=v` and `k-` arguments.
pub fn parse_changes(args: &[String]) -> Result<LabelChanges> {
    let mut ch = LabelChanges::default();
    for arg in args {
        if let Some((k, v)) = arg.split_once('=') {
            if let Err(why) = validate_label_key(k) {
                bail!("invalid label spec: {arg:?}: invalid label key {k:?}: {why}");
            }
            if let Err(why) = validate_label_value(v) {
                bail!("invalid label value: {arg:?}: {why}");
            }
            ch.set.insert(k.to_string(), v.to_string());
        } else if let Some(k) = arg.strip_suffix('-') {
            if let Err(why) = validate_label_key(k) {
                bail!("invalid label spec: {arg:?}: invalid label key {k:?}: {why}");
            }
            if !ch.remove.iter().any(|r| r == k) {
                ch.remove.push(k.to_string());
            }
        } else {
            bail!("invalid label spec: {arg:?}");
        }
    }
    if ch.remove.iter().any(|k| ch.set.contains_key(k)) {
        bail!("can not both modify and remove a label in the same command");
    }
    if ch.set.is_empty() && ch.remove.is_empty() {
        bail!("at least one label update is required");
    }
    Ok(ch)
}

/// What applying the changes to an object's labels amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelUpdate {
    /// The merge-patch `labels` map: new values, and `null` for removals.
    pub patch: Map<String, Value>,
    /// `labeled`, `unlabeled` or `not labeled`.
    pub verb: &'static str,
}

/// Checks the changes against the current labels (without `--overwrite` an
/// existing different value is an error) and computes the patch.
pub fn plan(
    current: &HashMap<String, String>,
    ch: &LabelChanges,
    overwrite: bool,
) -> Result<LabelUpdate> {
    if !overwrite {
        let mut problems = Vec::new();
        for (k, v) in &ch.set {
            if let Some(old) = current.get(k) {
                if old != v {
                    problems.push(format!(
                        "'{k}' already has a value ({old}), and --overwrite is false"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join(", "));
        }
    }
    let mut patch = Map::new();
    for (k, v) in &ch.set {
        if current.get(k) != Some(v) {
            patch.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let mut removed = 0;
    for k in &ch.remove {
        if current.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
            removed += 1;
        }
    }
    let added = ch.set.keys().filter(|k| !current.contains_key(*k)).count();
    let verb = if patch.is_empty() {
        "not labeled"
    } else if removed > added {
        "unlabeled"
    } else {
        "labeled"
    };
    Ok(LabelUpdate { patch, verb })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn labels(v: &[(&str, &str)]) -> HashMap<String, String> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_come_before_changes() {
        let (names, changes) = split_args(&args(&["nodes", "wn1", "wn2", "node=server"])).unwrap();
        assert_eq!(names, args(&["nodes", "wn1", "wn2"]));
        assert_eq!(changes, args(&["node=server"]));
        let (names, changes) = split_args(&args(&["node/wn1", "a-", "b=c"])).unwrap();
        assert_eq!(names, args(&["node/wn1"]));
        assert_eq!(changes.len(), 2);
        assert!(split_args(&args(&["nodes", "a=b", "wn1"])).is_err());
    }

    #[test]
    fn changes_parse_and_validate() {
        let ch = parse_changes(&args(&["node=server", "tier-", "empty="])).unwrap();
        assert_eq!(ch.set.get("node").map(String::as_str), Some("server"));
        assert_eq!(ch.set.get("empty").map(String::as_str), Some(""));
        assert_eq!(ch.remove, vec!["tier".to_string()]);
        assert!(parse_changes(&args(&["example.com/role=db"])).is_ok());
        let e = parse_changes(&args(&["bad key=x"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid label spec"), "{e}");
        let e = parse_changes(&args(&["k=bad value"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid label value"), "{e}");
        assert!(parse_changes(&args(&["-"])).is_err());
        assert!(parse_changes(&args(&["a=b", "a-"])).is_err());
        assert!(parse_changes(&[]).is_err());
    }

    #[test]
    fn overwrite_is_required_to_change_a_value() {
        let cur = labels(&[("node", "x")]);
        let ch = parse_changes(&args(&["node=server"])).unwrap();
        let e = plan(&cur, &ch, false).unwrap_err().to_string();
        assert_eq!(
            e,
            "'node' already has a value (x), and --overwrite is false"
        );
        let up = plan(&cur, &ch, true).unwrap();
        assert_eq!(up.verb, "labeled");
        assert_eq!(up.patch.get("node"), Some(&Value::String("server".into())));
        // The same value again is no change and needs no --overwrite.
        let same = parse_changes(&args(&["node=x"])).unwrap();
        assert_eq!(plan(&cur, &same, false).unwrap().verb, "not labeled");
    }

    #[test]
    fn removals_unlabel() {
        let cur = labels(&[("node", "x"), ("a", "b")]);
        let up = plan(&cur, &parse_changes(&args(&["node-"])).unwrap(), false).unwrap();
        assert_eq!(up.verb, "unlabeled");
        assert_eq!(up.patch.get("node"), Some(&Value::Null));
        let up = plan(&cur, &parse_changes(&args(&["missing-"])).unwrap(), false).unwrap();
        assert_eq!(up.verb, "not labeled");
        assert!(up.patch.is_empty());
    }
}
