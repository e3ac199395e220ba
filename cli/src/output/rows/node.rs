//! Node rows: STATUS from the Ready condition, ROLES from role labels.

use crate::output::age::age;
use chrono::{DateTime, Utc};
use rkube_api::proto::Node;

pub fn columns(wide: bool) -> Vec<&'static str> {
    let mut c = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
    if wide {
        c.extend([
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME",
        ]);
    }
    c
}

/// `Ready`, `NotReady` or `Unknown`, plus `,SchedulingDisabled` when cordoned.
pub fn status(n: &Node) -> String {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .map(|c| c.status.as_str());
    let mut s = match ready {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if n.spec.as_ref().is_some_and(|s| s.unschedulable) {
        s.push_str(",SchedulingDisabled");
    }
    s
}

/// Roles from `node-role.kubernetes.io/ROLE` and `kubernetes.io/role` labels.
pub fn roles(n: &Node) -> String {
    let Some(meta) = n.metadata.as_ref() else {
        return "<none>".into();
    };
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in &meta.labels {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.push(v.clone());
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

/// The first address of a type, or `<none>`.
pub fn address(n: &Node, kind: &str) -> String {
    n.status
        .as_ref()
        .and_then(|s| s.addresses.iter().find(|a| a.r#type == kind))
        .map(|a| a.address.clone())
        .unwrap_or_else(|| "<none>".into())
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "<unknown>".into()
    } else {
        s.to_string()
    }
}

pub fn row(n: &Node, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let meta = n.metadata.clone().unwrap_or_default();
    let info = n
        .status
        .as_ref()
        .and_then(|s| s.node_info.clone())
        .unwrap_or_default();
    let mut r = vec![
        meta.name.clone(),
        status(n),
        roles(n),
        age(&meta.creation_timestamp, now),
        info.kubelet_version.clone(),
    ];
    if wide {
        r.push(address(n, "InternalIP"));
        r.push(address(n, "ExternalIP"));
        r.push(or_unknown(&info.os_image));
        r.push(or_unknown(&info.kernel_version));
        r.push(or_unknown(&info.container_runtime_version));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{
        NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, ObjectMeta,
    };

    fn node(ready: Option<&str>, unschedulable: bool, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: "wn1".into(),
                creation_timestamp: "2024-03-01T09:00:00Z".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                unschedulable,
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready
                    .map(|s| NodeCondition {
                        r#type: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                addresses: vec![NodeAddress {
                    r#type: "InternalIP".into(),
                    address: "10.0.0.11".into(),
                }],
                node_info: Some(NodeSystemInfo {
                    kubelet_version: "v1.28.0-rkube".into(),
                    os_image: "Debian".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn status_comes_from_the_ready_condition() {
        assert_eq!(status(&node(Some("True"), false, &[])), "Ready");
        assert_eq!(status(&node(Some("False"), false, &[])), "NotReady");
        assert_eq!(status(&node(Some("Unknown"), false, &[])), "Unknown");
        assert_eq!(status(&node(None, false, &[])), "Unknown");
        assert_eq!(
            status(&node(Some("True"), true, &[])),
            "Ready,SchedulingDisabled"
        );
    }

    #[test]
    fn roles_come_from_labels() {
        assert_eq!(roles(&node(None, false, &[])), "<none>");
        let n = node(
            None,
            false,
            &[
                ("node-role.kubernetes.io/worker", ""),
                ("node-role.kubernetes.io/control-plane", ""),
            ],
        );
        assert_eq!(roles(&n), "control-plane,worker");
    }

    #[test]
    fn rows() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        let n = node(Some("True"), false, &[]);
        assert_eq!(
            row(&n, false, now),
            ["wn1", "Ready", "<none>", "3h", "v1.28.0-rkube"]
        );
        let w = row(&n, true, now);
        assert_eq!(
            w[5..],
            ["10.0.0.11", "<none>", "Debian", "<unknown>", "<unknown>"]
        );
    }
}
