//! The node page, with the pods on the node and what they request.

use super::{annotations_block, clean, events_block, labels_block, Related, Writer};
use crate::output::age::{age, describe_time};
use crate::output::quantity::{cpu_millis, format_bytes, format_cpu, parse, with_percent};
use crate::output::rows::node::roles;
use rkube_api::proto::{Node, Pod, Taint};
use std::collections::HashMap;

/// A taint as `key=value:Effect`.
pub fn taint_text(t: &Taint) -> String {
    if t.value.is_empty() {
        format!("{}:{}", t.key, t.effect)
    } else {
        format!("{}={}:{}", t.key, t.value, t.effect)
    }
}

/// CPU (millicores) and memory (bytes) requests and limits of a pod.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PodResources {
    pub cpu_requests: i64,
    pub cpu_limits: i64,
    pub memory_requests: f64,
    pub memory_limits: f64,
}

pub fn pod_resources(p: &Pod) -> PodResources {
    let mut r = PodResources::default();
    let containers = p
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    for c in containers {
        let Some(res) = &c.resources else { continue };
        let get = |m: &HashMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
        r.cpu_requests += cpu_millis(&get(&res.requests, "cpu")).unwrap_or(0);
        r.cpu_limits += cpu_millis(&get(&res.limits, "cpu")).unwrap_or(0);
        r.memory_requests += parse(&get(&res.requests, "memory")).unwrap_or(0.0);
        r.memory_limits += parse(&get(&res.limits, "memory")).unwrap_or(0.0);
    }
    r
}

fn resource_map(w: &mut Writer, title: &str, m: &HashMap<String, String>) {
    if m.is_empty() {
        return;
    }
    w.line(0, &format!("{title}:"));
    let mut pairs: Vec<_> = m.iter().collect();
    pairs.sort();
    for (k, v) in pairs {
        w.kv(1, k, v);
    }
}

fn pods_section(
    w: &mut Writer,
    pods: &[Pod],
    allocatable: &HashMap<String, String>,
    related: &Related,
) {
    let cpu_cap = allocatable
        .get("cpu")
        .and_then(|c| cpu_millis(c))
        .map(|m| m as f64);
    let mem_cap = allocatable.get("memory").and_then(|m| parse(m));
    w.kv(
        0,
        "Non-terminated Pods",
        &format!("({} in total)", pods.len()),
    );
    w.line(
        1,
        "Namespace\tName\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge",
    );
    w.line(
        1,
        "---------\t----\t------------\t----------\t---------------\t-------------\t---",
    );
    let mut total = PodResources::default();
    for p in pods {
        let meta = p.metadata.clone().unwrap_or_default();
        let r = pod_resources(p);
        total.cpu_requests += r.cpu_requests;
        total.cpu_limits += r.cpu_limits;
        total.memory_requests += r.memory_requests;
        total.memory_limits += r.memory_limits;
        w.line(
            1,
            &format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                meta.namespace,
                meta.name,
                with_percent(&format_cpu(r.cpu_requests), r.cpu_requests as f64, cpu_cap),
                with_percent(&format_cpu(r.cpu_limits), r.cpu_limits as f64, cpu_cap),
                with_percent(
                    &format_bytes(r.memory_requests as i64),
                    r.memory_requests,
                    mem_cap
                ),
                with_percent(
                    &format_bytes(r.memory_limits as i64),
                    r.memory_limits,
                    mem_cap
                ),
                age(&meta.creation_timestamp, related.now),
            ),
        );
    }
    w.line(0, "Allocated resources:");
    w.line(
        1,
        "(Total limits may be over 100 percent, i.e., overcommitted.)",
    );
    w.line(1, "Resource\tRequests\tLimits");
    w.line(1, "--------\t--------\t------");
    w.line(
        1,
        &format!(
            "cpu\t{}\t{}",
            with_percent(
                &format_cpu(total.cpu_requests),
                total.cpu_requests as f64,
                cpu_cap
            ),
            with_percent(
                &format_cpu(total.cpu_limits),
                total.cpu_limits as f64,
                cpu_cap
            )
        ),
    );
    w.line(
        1,
        &format!(
            "memory\t{}\t{}",
            with_percent(
                &format_bytes(total.memory_requests as i64),
                total.memory_requests,
                mem_cap
            ),
            with_percent(
                &format_bytes(total.memory_limits as i64),
                total.memory_limits,
                mem_cap
            )
        ),
    );
}

pub fn describe(n: &Node, related: &Related) -> String {
    let meta = n.metadata.clone().unwrap_or_default();
    let spec = n.spec.clone().unwrap_or_default();
    let st = n.status.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Roles", &roles(n));
    labels_block(&mut w, 0, "Labels", &meta.labels);
    annotations_block(&mut w, 0, &meta.annotations);
    w.kv(
        0,
        "CreationTimestamp",
        &describe_time(&meta.creation_timestamp),
    );
    if spec.taints.is_empty() {
        w.kv(0, "Taints", "<none>");
    } else {
        for (i, t) in spec.taints.iter().enumerate() {
            let text = clean(&taint_text(t));
            if i == 0 {
                w.line(0, &format!("Taints:\t{text}"));
            } else {
                w.line(0, &format!("\t{text}"));
            }
        }
    }
    w.kv(
        0,
        "Unschedulable",
        if spec.unschedulable { "true" } else { "false" },
    );
    if st.conditions.is_empty() {
        w.kv(0, "Conditions", "<none>");
    } else {
        w.line(0, "Conditions:");
        w.line(
            1,
            "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage",
        );
        w.line(
            1,
            "----\t------\t-----------------\t------------------\t------\t-------",
        );
        for c in &st.conditions {
            w.line(
                1,
                &format!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    clean(&c.r#type),
                    clean(&c.status),
                    describe_time(&c.last_heartbeat_time),
                    describe_time(&c.last_transition_time),
                    clean(&c.reason),
                    clean(&c.message)
                ),
            );
        }
    }
    if st.addresses.is_empty() {
        w.kv(0, "Addresses", "<none>");
    } else {
        w.line(0, "Addresses:");
        for a in &st.addresses {
            w.kv(1, &a.r#type, &a.address);
        }
    }
    resource_map(&mut w, "Capacity", &st.capacity);
    resource_map(&mut w, "Allocatable", &st.allocatable);
    if let Some(info) = &st.node_info {
        w.line(0, "System Info:");
        for (k, v) in [
            ("Machine ID", &info.machine_id),
            ("System UUID", &info.system_uuid),
            ("Boot ID", &info.boot_id),
            ("Kernel Version", &info.kernel_version),
            ("OS Image", &info.os_image),
            ("Operating System", &info.operating_system),
            ("Architecture", &info.architecture),
            ("Container Runtime Version", &info.container_runtime_version),
            ("Kubelet Version", &info.kubelet_version),
            ("Kube-Proxy Version", &info.kube_proxy_version),
        ] {
            w.kv(1, k, v);
        }
    }
    if !spec.pod_cidr.is_empty() {
        w.kv(0, "PodCIDR", &spec.pod_cidr);
    }
    if !spec.pod_cidrs.is_empty() {
        w.kv(0, "PodCIDRs", &spec.pod_cidrs.join(","));
    }
    if !spec.provider_id.is_empty() {
        w.kv(0, "ProviderID", &spec.provider_id);
    }
    let running: Vec<Pod> = related
        .pods
        .iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().map(|s| s.phase.as_str()),
                Some("Succeeded" | "Failed")
            )
        })
        .cloned()
        .collect();
    pods_section(&mut w, &running, &st.allocatable, related);
    events_block(&mut w, &related.events, related.now);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{
        Container, NodeCondition, NodeSpec, NodeStatus, ObjectMeta, PodSpec, PodStatus,
        ResourceRequirements,
    };

    #[test]
    fn node_page_sums_pod_requests() {
        let node = Node {
            metadata: Some(ObjectMeta {
                name: "wn1".into(),
                labels: [("node".to_string(), "server".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                taints: vec![Taint {
                    key: "dedicated".into(),
                    value: "db".into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: [
                    ("cpu".to_string(), "2".to_string()),
                    ("memory".to_string(), "1Gi".to_string()),
                ]
                .into(),
                conditions: vec![NodeCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    reason: "KubeletReady".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = |name: &str, phase: &str| Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    resources: Some(ResourceRequirements {
                        requests: [
                            ("cpu".to_string(), "250m".to_string()),
                            ("memory".to_string(), "64Mi".to_string()),
                        ]
                        .into(),
                        limits: Default::default(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut related = Related::empty(parse_time("2024-03-01T12:00:00Z").unwrap());
        related.pods = vec![pod("a", "Running"), pod("done", "Succeeded")];
        let page = describe(&node, &related);
        for want in [
            "Roles:",
            "Taints:",
            "dedicated=db:NoSchedule\n",
            "Unschedulable:",
            "(1 in total)\n",
            "250m (12%)",
            "64Mi (6%)",
            "Allocated resources:\n",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
        assert!(!page.contains("done"), "{page}");
    }
}
