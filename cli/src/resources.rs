//! Resource arguments as the command line spells them (`pods`, `rc,rs`,
//! `all`, `pod/nginx-pod`) and how objects are named in messages
//! (`replicaset.apps/nginx-rs`).

use anyhow::{anyhow, bail, Result};
use rkube_api::kinds::Kind;

/// What `get all` shows, in kubectl's order.
pub const ALL_CATEGORY: [Kind; 5] = [
    Kind::Pod,
    Kind::ReplicationController,
    Kind::Service,
    Kind::DaemonSet,
    Kind::ReplicaSet,
];

/// One kind and the names asked for (none: all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub names: Vec<String>,
}

/// Resolves one resource type (`po`, `pods`, `replicasets.apps`, `Pod`).
pub fn parse_kind(arg: &str) -> Result<Kind> {
    Kind::from_cli(arg.trim())
        .ok_or_else(|| anyhow!("the server doesn't have a resource type {:?}", arg.trim()))
}

/// Resolves `TYPE[,TYPE...]`, expanding `all`, without duplicates.
pub fn parse_kinds(arg: &str) -> Result<Vec<Kind>> {
    let mut kinds: Vec<Kind> = Vec::new();
    for part in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let found: Vec<Kind> = if part.eq_ignore_ascii_case("all") {
            ALL_CATEGORY.to_vec()
        } else {
            vec![parse_kind(part)?]
        };
        for k in found {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    if kinds.is_empty() {
        bail!("resource type {arg:?} names no resource");
    }
    Ok(kinds)
}

/// Parses `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...` into targets, in the
/// order given.
pub fn parse_targets(args: &[String]) -> Result<Vec<Target>> {
    let Some(first) = args.first() else {
        bail!(
            "you must specify the type of resource, e.g. pods, replicasets, nodes \
             (see 'rkubectl api-resources')"
        );
    };
    let mut targets: Vec<Target> = Vec::new();
    if first.contains('/') {
        for arg in args {
            let (kind, name) = arg.split_once('/').ok_or_else(|| {
                anyhow!(
                    "there is no need to specify a resource type as a separate argument when \
                     passing arguments in resource/name form (e.g. 'rkubectl get \
                     resource/<resource_name>' instead of 'rkubectl get resource \
                     resource/<resource_name>')"
                )
            })?;
            if name.is_empty() || name.contains('/') {
                bail!("arguments in resource/name form must have a single resource and name");
            }
            let kind = parse_kind(kind)?;
            match targets.iter_mut().find(|t| t.kind == kind) {
                Some(t) => t.names.push(name.to_string()),
                None => targets.push(Target {
                    kind,
                    names: vec![name.to_string()],
                }),
            }
        }
        return Ok(targets);
    }
    let names: Vec<String> = args[1..].to_vec();
    if names.iter().any(|n| n.contains('/')) {
        bail!(
            "there is no need to specify a resource type as a separate argument when passing \
             arguments in resource/name form (e.g. 'rkubectl get resource/<resource_name>' \
             instead of 'rkubectl get resource resource/<resource_name>')"
        );
    }
    for kind in parse_kinds(first)? {
        targets.push(Target {
            kind,
            names: names.clone(),
        });
    }
    Ok(targets)
}

/// The resource as kubectl names it in messages: the lowercase kind and,
/// outside the core group, the group (`pod`, `replicaset.apps`).
pub fn resource_name(kind: Kind) -> String {
    let lower = kind.name().to_ascii_lowercase();
    match kind.api_version().split_once('/') {
        Some((group, _)) => format!("{lower}.{group}"),
        None => lower,
    }
}

/// `replicaset.apps/nginx-rs`, as `create`, `scale`, `label` and `-o name`
/// print it.
pub fn object_ref(kind: Kind, name: &str) -> String {
    format!("{}/{name}", resource_name(kind))
}

/// `replicaset.apps "nginx-rs"`, as `delete` prints it.
pub fn quoted_ref(kind: Kind, name: &str) -> String {
    format!("{} {name:?}", resource_name(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn comma_lists_and_all_expand() {
        assert_eq!(
            parse_kinds("rc,rs").unwrap(),
            vec![Kind::ReplicationController, Kind::ReplicaSet]
        );
        assert_eq!(parse_kinds("all").unwrap(), ALL_CATEGORY.to_vec());
        assert_eq!(parse_kinds("po,pods,all").unwrap().len(), 5);
        let e = parse_kinds("deployments").unwrap_err().to_string();
        assert_eq!(e, "the server doesn't have a resource type \"deployments\"");
    }

    #[test]
    fn targets_take_names_or_slash_forms() {
        let t = parse_targets(&args(&["nodes", "wn1", "wn2"])).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].kind, Kind::Node);
        assert_eq!(t[0].names, args(&["wn1", "wn2"]));
        let t = parse_targets(&args(&["pod/a", "rs/b", "po/c"])).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].names, args(&["a", "c"]));
        assert_eq!(t[1].kind, Kind::ReplicaSet);
        assert!(parse_targets(&args(&["pod/a", "b"])).is_err());
        assert!(parse_targets(&args(&["pods", "pod/a"])).is_err());
        assert!(parse_targets(&[]).is_err());
    }

    #[test]
    fn names_carry_groups() {
        assert_eq!(object_ref(Kind::Pod, "nginx-pod"), "pod/nginx-pod");
        assert_eq!(object_ref(Kind::ReplicaSet, "x"), "replicaset.apps/x");
        assert_eq!(object_ref(Kind::DaemonSet, "x"), "daemonset.apps/x");
        assert_eq!(
            object_ref(Kind::ReplicationController, "nginx-rc"),
            "replicationcontroller/nginx-rc"
        );
        assert_eq!(object_ref(Kind::Lease, "l"), "lease.coordination.k8s.io/l");
        assert_eq!(
            quoted_ref(Kind::ReplicaSet, "nginx-rs"),
            "replicaset.apps \"nginx-rs\""
        );
    }
}
