//! ReplicationController, ReplicaSet and DaemonSet rows.

use super::{join_labels, or_none};
use crate::output::age::age;
use chrono::{DateTime, Utc};
use rkube_api::proto::{
    DaemonSet, LabelSelector as ProtoSelector, PodTemplateSpec, ReplicaSet, ReplicationController,
};
use rkube_api::selector::LabelSelector;

pub fn replica_columns(wide: bool) -> Vec<&'static str> {
    let mut c = vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"];
    if wide {
        c.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
    }
    c
}

pub fn daemonset_columns(wide: bool) -> Vec<&'static str> {
    let mut c = vec![
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE SELECTOR",
        "AGE",
    ];
    if wide {
        c.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
    }
    c
}

/// Container names and images of a pod template, comma-joined.
pub fn containers_and_images(t: Option<&PodTemplateSpec>) -> (String, String) {
    let containers = t
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers.iter().map(|c| c.image.as_str()).collect();
    (names.join(","), images.join(","))
}

/// A structured selector as `-l` text (`app=x,tier in (a,b)`).
pub fn selector_text(sel: Option<&ProtoSelector>) -> String {
    match sel {
        None => String::new(),
        Some(s) => match LabelSelector::from_proto(s) {
            Ok(ls) => ls.to_string(),
            Err(_) => {
                // Show what is there even if it does not validate.
                let mut parts: Vec<String> = {
                    let mut m: Vec<_> = s.match_labels.iter().collect();
                    m.sort();
                    m.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
                };
                for e in &s.match_expressions {
                    parts.push(format!("{} {} ({})", e.key, e.operator, e.values.join(",")));
                }
                parts.join(",")
            }
        },
    }
}

/// DESIRED, CURRENT and READY.
type Counts = (Option<i32>, i32, i32);

fn replica_row(
    name: &str,
    created: &str,
    (desired, current, ready): Counts,
    template: Option<&PodTemplateSpec>,
    selector: String,
    wide: bool,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut r = vec![
        name.to_string(),
        desired.unwrap_or(1).to_string(),
        current.to_string(),
        ready.to_string(),
        age(created, now),
    ];
    if wide {
        let (c, i) = containers_and_images(template);
        r.push(or_none(&c));
        r.push(or_none(&i));
        r.push(or_none(&selector));
    }
    r
}

pub fn rc_row(rc: &ReplicationController, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let meta = rc.metadata.clone().unwrap_or_default();
    let spec = rc.spec.clone().unwrap_or_default();
    let st = rc.status.clone().unwrap_or_default();
    replica_row(
        &meta.name,
        &meta.creation_timestamp,
        (spec.replicas, st.replicas, st.ready_replicas),
        spec.template.as_ref(),
        join_labels(&spec.selector),
        wide,
        now,
    )
}

pub fn rs_row(rs: &ReplicaSet, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let meta = rs.metadata.clone().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let st = rs.status.clone().unwrap_or_default();
    replica_row(
        &meta.name,
        &meta.creation_timestamp,
        (spec.replicas, st.replicas, st.ready_replicas),
        spec.template.as_ref(),
        selector_text(spec.selector.as_ref()),
        wide,
        now,
    )
}

pub fn daemonset_row(ds: &DaemonSet, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let meta = ds.metadata.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let st = ds.status.unwrap_or_default();
    let node_selector = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|s| join_labels(&s.node_selector))
        .unwrap_or_default();
    let mut r = vec![
        meta.name.clone(),
        st.desired_number_scheduled.to_string(),
        st.current_number_scheduled.to_string(),
        st.number_ready.to_string(),
        st.updated_number_scheduled.to_string(),
        st.number_available.to_string(),
        or_none(&node_selector),
        age(&meta.creation_timestamp, now),
    ];
    if wide {
        let (c, i) = containers_and_images(spec.template.as_ref());
        r.push(or_none(&c));
        r.push(or_none(&i));
        r.push(or_none(&selector_text(spec.selector.as_ref())));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{
        Container, DaemonSetSpec, DaemonSetStatus, LabelSelectorRequirement, ObjectMeta, PodSpec,
        ReplicaSetSpec, ReplicaSetStatus, ReplicationControllerSpec, ReplicationControllerStatus,
    };

    fn template(node_selector: &[(&str, &str)]) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "nginx-container".into(),
                    image: "nginx".into(),
                    ..Default::default()
                }],
                node_selector: node_selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
        }
    }

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            creation_timestamp: "2024-03-01T11:59:00Z".into(),
            ..Default::default()
        })
    }

    #[test]
    fn rc_rows() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        let rc = ReplicationController {
            metadata: meta("nginx-rc"),
            spec: Some(ReplicationControllerSpec {
                replicas: Some(3),
                selector: [("app".to_string(), "nginx-app".to_string())].into(),
                template: Some(template(&[])),
                ..Default::default()
            }),
            status: Some(ReplicationControllerStatus {
                replicas: 3,
                ready_replicas: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(rc_row(&rc, false, now), ["nginx-rc", "3", "3", "2", "60s"]);
        assert_eq!(
            rc_row(&rc, true, now),
            [
                "nginx-rc",
                "3",
                "3",
                "2",
                "60s",
                "nginx-container",
                "nginx",
                "app=nginx-app"
            ]
        );
    }

    #[test]
    fn rs_rows_show_expression_selectors() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        let rs = ReplicaSet {
            metadata: meta("nginx-rs"),
            spec: Some(ReplicaSetSpec {
                replicas: Some(3),
                selector: Some(ProtoSelector {
                    match_labels: Default::default(),
                    match_expressions: vec![LabelSelectorRequirement {
                        key: "tier".into(),
                        operator: "In".into(),
                        values: vec!["frontend".into()],
                    }],
                }),
                template: Some(template(&[])),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = rs_row(&rs, true, now);
        assert_eq!(r[..5], ["nginx-rs", "3", "1", "0", "60s"]);
        assert_eq!(r[7], "tier in (frontend)");
    }

    #[test]
    fn daemonset_rows() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        let ds = DaemonSet {
            metadata: meta("nginx-ds"),
            spec: Some(DaemonSetSpec {
                template: Some(template(&[("node", "server")])),
                ..Default::default()
            }),
            status: Some(DaemonSetStatus {
                desired_number_scheduled: 2,
                current_number_scheduled: 2,
                number_ready: 1,
                updated_number_scheduled: 2,
                number_available: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            daemonset_row(&ds, false, now),
            ["nginx-ds", "2", "2", "1", "2", "1", "node=server", "60s"]
        );
        assert_eq!(daemonset_columns(false)[6], "NODE SELECTOR");
        assert_eq!(daemonset_row(&ds, true, now)[10], "<none>");
    }
}
