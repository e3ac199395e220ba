//! ReplicationController, ReplicaSet and DaemonSet pages.

use super::container::pod_template_block;
use super::{annotations_block, events_block, labels_block, pods_status, Related, Writer};
use crate::output::rows::join_labels;
use crate::output::rows::or_none;
use rkube_api::proto::{
    DaemonSet, ObjectMeta, Pod, ReplicaCondition, ReplicaSet, ReplicationController,
};

/// The pods that belong to a controller: those it controls, and matching
/// pods that no controller claims.
pub fn owned_pods(uid: &str, pods: &[Pod]) -> Vec<Pod> {
    pods.iter()
        .filter(|p| {
            let controller = p.metadata.as_ref().and_then(|m| {
                m.owner_references
                    .iter()
                    .find(|o| o.controller == Some(true))
            });
            match controller {
                Some(o) => uid.is_empty() || o.uid == uid,
                None => true,
            }
        })
        .cloned()
        .collect()
}

fn header(w: &mut Writer, meta: &ObjectMeta, selector: &str) {
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    w.kv(0, "Selector", &or_none(selector));
    labels_block(w, 0, "Labels", &meta.labels);
    annotations_block(w, 0, &meta.annotations);
}

fn conditions(w: &mut Writer, conds: &[ReplicaCondition]) {
    if conds.is_empty() {
        return;
    }
    w.line(0, "Conditions:");
    w.line(1, "Type\tStatus\tReason");
    w.line(1, "----\t------\t------");
    for c in conds {
        w.line(1, &format!("{}\t{}\t{}", c.r#type, c.status, c.reason));
    }
}

pub fn describe_rc(rc: &ReplicationController, related: &Related) -> String {
    let meta = rc.metadata.clone().unwrap_or_default();
    let spec = rc.spec.clone().unwrap_or_default();
    let st = rc.status.clone().unwrap_or_default();
    let mut w = Writer::new();
    header(&mut w, &meta, &join_labels(&spec.selector));
    w.kv(
        0,
        "Replicas",
        &format!(
            "{} current / {} desired",
            st.replicas,
            spec.replicas.unwrap_or(1)
        ),
    );
    w.kv(
        0,
        "Pods Status",
        &pods_status(&owned_pods(&meta.uid, &related.pods)),
    );
    pod_template_block(&mut w, spec.template.as_ref());
    conditions(&mut w, &st.conditions);
    events_block(&mut w, &related.events, related.now);
    w.finish()
}

pub fn describe_rs(rs: &ReplicaSet, related: &Related) -> String {
    let meta = rs.metadata.clone().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let st = rs.status.clone().unwrap_or_default();
    let mut w = Writer::new();
    let selector = crate::output::rows::selector_text(spec.selector.as_ref());
    header(&mut w, &meta, &selector);
    if let Some(owner) = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
    {
        w.kv(
            0,
            "Controlled By",
            &format!("{}/{}", owner.kind, owner.name),
        );
    }
    w.kv(
        0,
        "Replicas",
        &format!(
            "{} current / {} desired",
            st.replicas,
            spec.replicas.unwrap_or(1)
        ),
    );
    w.kv(
        0,
        "Pods Status",
        &pods_status(&owned_pods(&meta.uid, &related.pods)),
    );
    pod_template_block(&mut w, spec.template.as_ref());
    conditions(&mut w, &st.conditions);
    events_block(&mut w, &related.events, related.now);
    w.finish()
}

pub fn describe_ds(ds: &DaemonSet, related: &Related) -> String {
    let meta = ds.metadata.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let st = ds.status.unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    let selector = crate::output::rows::selector_text(spec.selector.as_ref());
    w.kv(0, "Selector", &or_none(&selector));
    let node_selector = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|s| join_labels(&s.node_selector))
        .unwrap_or_default();
    w.kv(0, "Node-Selector", &or_none(&node_selector));
    labels_block(&mut w, 0, "Labels", &meta.labels);
    annotations_block(&mut w, 0, &meta.annotations);
    w.line(
        0,
        &format!(
            "Desired Number of Nodes Scheduled: {}",
            st.desired_number_scheduled
        ),
    );
    w.line(
        0,
        &format!(
            "Current Number of Nodes Scheduled: {}",
            st.current_number_scheduled
        ),
    );
    w.line(
        0,
        &format!(
            "Number of Nodes Scheduled with Up-to-date Pods: {}",
            st.updated_number_scheduled
        ),
    );
    w.line(
        0,
        &format!(
            "Number of Nodes Scheduled with Available Pods: {}",
            st.number_available
        ),
    );
    w.line(
        0,
        &format!("Number of Nodes Misscheduled: {}", st.number_misscheduled),
    );
    w.kv(
        0,
        "Pods Status",
        &pods_status(&owned_pods(&meta.uid, &related.pods)),
    );
    pod_template_block(&mut w, spec.template.as_ref());
    events_block(&mut w, &related.events, related.now);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{
        OwnerReference, PodStatus, ReplicaSetSpec, ReplicaSetStatus, ReplicationControllerSpec,
        ReplicationControllerStatus,
    };

    fn pod(phase: &str, owner_uid: Option<&str>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                owner_references: owner_uid
                    .map(|u| OwnerReference {
                        uid: u.into(),
                        controller: Some(true),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rc_page_counts_its_pods() {
        let rc = ReplicationController {
            metadata: Some(ObjectMeta {
                name: "nginx-rc".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            spec: Some(ReplicationControllerSpec {
                replicas: Some(3),
                selector: [("app".to_string(), "nginx-app".to_string())].into(),
                ..Default::default()
            }),
            status: Some(ReplicationControllerStatus {
                replicas: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut related = Related::empty(parse_time("2024-03-01T12:00:00Z").unwrap());
        related.pods = vec![
            pod("Running", Some("u1")),
            pod("Pending", Some("u1")),
            pod("Running", Some("other")),
            pod("Running", None),
        ];
        let page = describe_rc(&rc, &related);
        for want in [
            "Name:         nginx-rc\n",
            "Selector:     app=nginx-app\n",
            "Replicas:     3 current / 3 desired\n",
            "Pods Status:  2 Running / 1 Waiting / 0 Succeeded / 0 Failed\n",
            "Pod Template:\n",
            "Events:  <none>\n",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
    }

    #[test]
    fn rs_page_shows_its_selector() {
        let rs = ReplicaSet {
            metadata: Some(ObjectMeta {
                name: "nginx-rs".into(),
                ..Default::default()
            }),
            spec: Some(ReplicaSetSpec {
                replicas: Some(2),
                selector: Some(rkube_api::proto::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    match_expressions: vec![],
                }),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus::default()),
            ..Default::default()
        };
        let page = describe_rs(
            &rs,
            &Related::empty(parse_time("2024-03-01T12:00:00Z").unwrap()),
        );
        assert!(page.contains("Selector:     app=web\n"), "{page}");
        assert!(
            page.contains("Replicas:     0 current / 2 desired\n"),
            "{page}"
        );
    }
}
