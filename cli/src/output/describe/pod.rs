//! The pod page.

use super::container::{container_block, volumes_block};
use super::{annotations_block, events_block, labels_block, Related, Writer};
use crate::output::age::describe_time;
use crate::output::rows::pod::status as pod_status;
use rkube_api::proto::{ContainerStatus, Pod, Toleration};

/// A toleration as kubectl prints it: `key=value:Effect op=Exists for 300s`.
pub fn toleration_text(t: &Toleration) -> String {
    let mut s = t.key.clone();
    if !t.value.is_empty() {
        s.push('=');
        s.push_str(&t.value);
    }
    if !t.effect.is_empty() {
        s.push(':');
        s.push_str(&t.effect);
    }
    if t.operator == "Exists" && t.value.is_empty() {
        if s.is_empty() {
            s.push_str("op=Exists");
        } else {
            s.push_str(" op=Exists");
        }
    }
    if let Some(secs) = t.toleration_seconds {
        s.push_str(&format!(" for {secs}s"));
    }
    s
}

fn status_for<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

pub fn describe(p: &Pod, related: &Related) -> String {
    let meta = p.metadata.clone().unwrap_or_default();
    let spec = p.spec.clone().unwrap_or_default();
    let st = p.status.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    w.kv(0, "Priority", &spec.priority.unwrap_or(0).to_string());
    if !spec.service_account_name.is_empty() {
        w.kv(0, "Service Account", &spec.service_account_name);
    }
    if spec.node_name.is_empty() {
        w.kv(0, "Node", "<none>");
    } else if st.host_ip.is_empty() {
        w.kv(0, "Node", &spec.node_name);
    } else {
        w.kv(0, "Node", &format!("{}/{}", spec.node_name, st.host_ip));
    }
    if !st.start_time.is_empty() {
        w.kv(0, "Start Time", &describe_time(&st.start_time));
    }
    labels_block(&mut w, 0, "Labels", &meta.labels);
    annotations_block(&mut w, 0, &meta.annotations);
    if meta.deletion_timestamp.is_empty() {
        let phase = if st.phase.is_empty() {
            "Pending"
        } else {
            &st.phase
        };
        w.kv(0, "Status", phase);
    } else {
        w.kv(0, "Status", &pod_status(p));
        w.kv(
            0,
            "Termination Grace Period",
            &format!("{}s", meta.deletion_grace_period_seconds.unwrap_or(0)),
        );
    }
    if !st.reason.is_empty() {
        w.kv(0, "Reason", &st.reason);
    }
    if !st.message.is_empty() {
        w.kv(0, "Message", &st.message);
    }
    w.kv_or_none(0, "IP", &st.pod_ip);
    let ips: Vec<String> = if st.pod_ips.is_empty() && !st.pod_ip.is_empty() {
        vec![st.pod_ip.clone()]
    } else {
        st.pod_ips.iter().map(|i| i.ip.clone()).collect()
    };
    if ips.is_empty() {
        w.kv(0, "IPs", "<none>");
    } else {
        w.line(0, "IPs:");
        for ip in &ips {
            w.kv(1, "IP", ip);
        }
    }
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
    if !spec.init_containers.is_empty() {
        w.line(0, "Init Containers:");
        for c in &spec.init_containers {
            container_block(
                &mut w,
                c,
                status_for(&st.init_container_statuses, &c.name),
                "",
                true,
            );
        }
    }
    w.line(0, "Containers:");
    for c in &spec.containers {
        container_block(
            &mut w,
            c,
            status_for(&st.container_statuses, &c.name),
            "",
            true,
        );
    }
    if !st.conditions.is_empty() {
        w.line(0, "Conditions:");
        w.line(1, "Type\tStatus");
        for c in &st.conditions {
            w.line(1, &format!("{}\t{}", c.r#type, c.status));
        }
    }
    volumes_block(&mut w, 0, &spec.volumes);
    if !st.qos_class.is_empty() {
        w.kv(0, "QoS Class", &st.qos_class);
    }
    labels_block(&mut w, 0, "Node-Selectors", &spec.node_selector);
    if spec.tolerations.is_empty() {
        w.kv(0, "Tolerations", "<none>");
    } else {
        for (i, t) in spec.tolerations.iter().enumerate() {
            let text = super::clean(&toleration_text(t));
            if i == 0 {
                w.line(0, &format!("Tolerations:\t{text}"));
            } else {
                w.line(0, &format!("\t{text}"));
            }
        }
    }
    events_block(&mut w, &related.events, related.now);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{
        Container, ContainerState, ContainerStateRunning, ObjectMeta, PodCondition, PodSpec,
        PodStatus,
    };

    #[test]
    fn tolerations_read_like_kubectl() {
        let t = Toleration {
            key: "node.kubernetes.io/not-ready".into(),
            operator: "Exists".into(),
            effect: "NoExecute".into(),
            toleration_seconds: Some(300),
            ..Default::default()
        };
        assert_eq!(
            toleration_text(&t),
            "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s"
        );
        let t = Toleration {
            key: "k".into(),
            operator: "Equal".into(),
            value: "v".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        assert_eq!(toleration_text(&t), "k=v:NoSchedule");
    }

    #[test]
    fn pod_page_has_the_usual_sections() {
        let p = Pod {
            metadata: Some(ObjectMeta {
                name: "nginx-pod".into(),
                namespace: "default".into(),
                labels: [("app".to_string(), "nginx".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "nginx-container".into(),
                    image: "nginx".into(),
                    ..Default::default()
                }],
                node_name: "wn1".into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                host_ip: "10.0.0.11".into(),
                pod_ip: "10.244.1.5".into(),
                start_time: "2024-03-01T11:00:00Z".into(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                container_statuses: vec![ContainerStatus {
                    name: "nginx-container".into(),
                    ready: true,
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: "2024-03-01T11:00:05Z".into(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let page = describe(
            &p,
            &Related::empty(parse_time("2024-03-01T12:00:00Z").unwrap()),
        );
        for want in [
            "Name:         nginx-pod\n",
            "Node:         wn1/10.0.0.11\n",
            "Start Time:   Fri, 01 Mar 2024 11:00:00 +0000\n",
            "Status:       Running\n",
            "IP:           10.244.1.5\n",
            "  nginx-container:\n",
            "    Image:          nginx\n",
            "    State:          Running\n",
            "      Started:      Fri, 01 Mar 2024 11:00:05 +0000\n",
            "    Ready:          True\n",
            "    Restart Count:  0\n",
            "Conditions:\n  Type           Status\n  Ready          True\n",
            "Volumes:         <none>\n",
            "Node-Selectors:  <none>\n",
            "Events:  <none>\n",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
    }
}
