//! Filters: whether a pod can go on a node at all. A node must pass every
//! filter; they run in this order and the first that fails gives the
//! node's reasons (the resource fit can give several at once, as in
//! Kubernetes):
//!
//! 1. ready: the node's `Ready` condition is `True`;
//! 2. schedulable: not `spec.unschedulable` (cordoned);
//! 3. node selector and required node affinity ([`super::affinity`]);
//! 4. taints: every NoSchedule/NoExecute taint is tolerated;
//! 5. host ports: none the pod wants is in use on the node;
//! 6. resources: cpu, memory and one pod slot fit in `status.allocatable`
//!    after the requests of the active pods already there.
//!
//! Kubernetes expresses 1 and 2 as taints (`node.kubernetes.io/not-ready`,
//! `unreachable`, `unschedulable`, effect NoSchedule) that DaemonSet pods
//! tolerate; so here too, a pod that tolerates that taint passes the check
//! (a NotReady node counts as `not-ready`, one whose readiness is Unknown as
//! `unreachable`). The NoExecute tolerations every pod may carry do not
//! count.

use super::affinity::pod_matches_node;
use super::node_info::{NodeInfo, NodeUsage};
use super::pod_info::PodInfo;
use super::resources::Allocatable;
use super::tolerations::{
    first_untolerated, tolerates_no_schedule_key, TAINT_NOT_READY, TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
};
use rkube_api::proto::{Node, Pod, Toleration};
use std::fmt;

/// Why a node cannot take a pod; displayed with Kubernetes' phrases.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NotReady,
    Unschedulable,
    NodeAffinity,
    UntoleratedTaint { key: String, value: String },
    HostPorts,
    InsufficientCpu,
    InsufficientMemory,
    TooManyPods,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::HostPorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::InsufficientCpu => f.write_str("Insufficient cpu"),
            Reason::InsufficientMemory => f.write_str("Insufficient memory"),
            Reason::TooManyPods => f.write_str("Too many pods"),
        }
    }
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .map(|s| s.tolerations.as_slice())
        .unwrap_or(&[])
}

/// The status of the node's Ready condition ("" if it has none).
pub fn ready_status(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .map(|c| c.status.as_str())
        .unwrap_or("")
}

/// 1. The node is Ready (or the pod tolerates its not-ready/unreachable
///    taint).
pub fn check_ready(pod: &Pod, node: &Node) -> Result<(), Reason> {
    let taint = match ready_status(node) {
        "True" => return Ok(()),
        "Unknown" => TAINT_UNREACHABLE,
        _ => TAINT_NOT_READY,
    };
    if tolerates_no_schedule_key(tolerations(pod), taint) {
        Ok(())
    } else {
        Err(Reason::NotReady)
    }
}

/// 2. The node is not cordoned (or the pod tolerates that).
pub fn check_schedulable(pod: &Pod, node: &Node) -> Result<(), Reason> {
    let cordoned = node.spec.as_ref().is_some_and(|s| s.unschedulable);
    if !cordoned || tolerates_no_schedule_key(tolerations(pod), TAINT_UNSCHEDULABLE) {
        Ok(())
    } else {
        Err(Reason::Unschedulable)
    }
}

/// 3. The node matches the pod's nodeSelector and required node affinity.
pub fn check_node_affinity(pod: &Pod, node: &Node) -> Result<(), Reason> {
    if pod_matches_node(pod, node) {
        Ok(())
    } else {
        Err(Reason::NodeAffinity)
    }
}

/// 4. The pod tolerates every NoSchedule and NoExecute taint of the node.
pub fn check_taints(pod: &Pod, node: &Node) -> Result<(), Reason> {
    let taints = node
        .spec
        .as_ref()
        .map(|s| s.taints.as_slice())
        .unwrap_or(&[]);
    match first_untolerated(tolerations(pod), taints) {
        None => Ok(()),
        Some(t) => Err(Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone(),
        }),
    }
}

/// 5. None of the pod's host ports is in use on the node.
pub fn check_host_ports(pod: &PodInfo, usage: &NodeUsage) -> Result<(), Reason> {
    if pod.host_ports.iter().any(|hp| usage.port_in_use(hp)) {
        Err(Reason::HostPorts)
    } else {
        Ok(())
    }
}

/// 6. The pod's requests and one more pod fit in what is left of the
///    node's allocatable resources. Every shortfall is a reason.
pub fn check_resources(
    pod: &PodInfo,
    alloc: &Allocatable,
    usage: &NodeUsage,
) -> Result<(), Vec<Reason>> {
    let mut reasons = Vec::new();
    if alloc.pods.is_some_and(|max| usage.pods + 1 > max) {
        reasons.push(Reason::TooManyPods);
    }
    let short = |want: i64, used: i64, max: Option<i64>| {
        want > 0 && max.is_some_and(|max| used.saturating_add(want) > max)
    };
    if short(
        pod.requests.milli_cpu,
        usage.requested.milli_cpu,
        alloc.milli_cpu,
    ) {
        reasons.push(Reason::InsufficientCpu);
    }
    if short(pod.requests.memory, usage.requested.memory, alloc.memory) {
        reasons.push(Reason::InsufficientMemory);
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Runs every filter in order; the reasons of the first that fails. Checks
/// that cannot fail for this node or pod (by the node's cached
/// [`NodeFacts`](super::node_info::NodeFacts), or the pod asking for
/// nothing) are skipped.
pub fn run_filters(pod: &Pod, info: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    let n = node.node();
    let facts = &node.facts;
    let constrained = pod.spec.as_ref().is_some_and(|s| {
        !s.node_selector.is_empty()
            || s.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some_and(|na| {
                    na.required_during_scheduling_ignored_during_execution
                        .is_some()
                })
    });
    let single = |r: Result<(), Reason>| r.map_err(|r| vec![r]);
    if !facts.ready {
        single(check_ready(pod, n))?;
    }
    if facts.unschedulable {
        single(check_schedulable(pod, n))?;
    }
    if constrained {
        single(check_node_affinity(pod, n))?;
    }
    if facts.hard_taints {
        single(check_taints(pod, n))?;
    }
    if !info.host_ports.is_empty() {
        single(check_host_ports(info, &node.usage))?;
    }
    check_resources(info, &node.allocatable, &node.usage)
}

/// Whether `pod` fits on `node` given the pods on it (those of `pods_on_node`
/// that are active and bound to it count): the pure form of
/// [`run_filters`].
pub fn fits(pod: &Pod, node: &Node, pods_on_node: &[&Pod]) -> Result<(), Vec<Reason>> {
    let info = NodeInfo::from_pods(node.clone(), pods_on_node);
    run_filters(pod, &PodInfo::new(pod), &info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use crate::scheduler::tolerations::{NO_EXECUTE, NO_SCHEDULE, PREFER_NO_SCHEDULE};

    #[test]
    fn reason_phrases() {
        let taint = Reason::UntoleratedTaint {
            key: "dedicated".into(),
            value: "gpu".into(),
        };
        assert_eq!(
            taint.to_string(),
            "node(s) had untolerated taint {dedicated: gpu}"
        );
        let no_value = Reason::UntoleratedTaint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: "".into(),
        };
        assert_eq!(
            no_value.to_string(),
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
        );
        assert_eq!(
            Reason::NodeAffinity.to_string(),
            "node(s) didn't match Pod's node affinity/selector"
        );
        assert_eq!(Reason::InsufficientCpu.to_string(), "Insufficient cpu");
        assert_eq!(Reason::TooManyPods.to_string(), "Too many pods");
    }

    #[test]
    fn ready_filter() {
        let p = pod("p").build();
        assert_eq!(fits(&p, &node("n").build(), &[]), Ok(()));
        for status in ["False", "Unknown", ""] {
            let n = node("n").ready(status).build();
            assert_eq!(fits(&p, &n, &[]), Err(vec![Reason::NotReady]), "{status:?}");
        }
        // Default NoExecute tolerations do not help; NoSchedule ones (as
        // DaemonSet pods carry) do.
        let evictable = pod("p")
            .toleration(TAINT_NOT_READY, "Exists", "", NO_EXECUTE)
            .build();
        let n = node("n").ready("False").build();
        assert_eq!(fits(&evictable, &n, &[]), Err(vec![Reason::NotReady]));
        let daemon = pod("p")
            .toleration(TAINT_NOT_READY, "Exists", "", "")
            .toleration(TAINT_UNREACHABLE, "Exists", "", NO_SCHEDULE)
            .build();
        assert_eq!(fits(&daemon, &n, &[]), Ok(()));
        assert_eq!(
            fits(&daemon, &node("n").ready("Unknown").build(), &[]),
            Ok(())
        );
        let only_not_ready = pod("p")
            .toleration(TAINT_NOT_READY, "Exists", "", "")
            .build();
        assert_eq!(
            fits(&only_not_ready, &node("n").ready("Unknown").build(), &[]),
            Err(vec![Reason::NotReady])
        );
    }

    #[test]
    fn unschedulable_filter() {
        let n = node("n").unschedulable().build();
        assert_eq!(
            fits(&pod("p").build(), &n, &[]),
            Err(vec![Reason::Unschedulable])
        );
        let tolerant = pod("p")
            .toleration(TAINT_UNSCHEDULABLE, "Exists", "", NO_SCHEDULE)
            .build();
        assert_eq!(fits(&tolerant, &n, &[]), Ok(()));
    }

    #[test]
    fn selector_and_affinity_filter() {
        let n = node("n").label("disk", "ssd").build();
        assert_eq!(
            fits(&pod("p").node_selector("disk", "ssd").build(), &n, &[]),
            Ok(())
        );
        assert_eq!(
            fits(&pod("p").node_selector("disk", "hdd").build(), &n, &[]),
            Err(vec![Reason::NodeAffinity])
        );
        assert_eq!(
            fits(
                &pod("p").required("disk", "NotIn", &["ssd"]).build(),
                &n,
                &[]
            ),
            Err(vec![Reason::NodeAffinity])
        );
        assert_eq!(fits(&pod("p").pinned_to("n").build(), &n, &[]), Ok(()));
        assert_eq!(
            fits(&pod("p").pinned_to("other").build(), &n, &[]),
            Err(vec![Reason::NodeAffinity])
        );
    }

    #[test]
    fn taint_filter() {
        let n = node("n")
            .taint("soft", "", PREFER_NO_SCHEDULE)
            .taint("dedicated", "gpu", NO_SCHEDULE)
            .build();
        assert_eq!(
            fits(&pod("p").build(), &n, &[]),
            Err(vec![Reason::UntoleratedTaint {
                key: "dedicated".into(),
                value: "gpu".into()
            }])
        );
        let tolerant = pod("p").toleration("dedicated", "Equal", "gpu", "").build();
        assert_eq!(fits(&tolerant, &n, &[]), Ok(()));
        let wrong_value = pod("p").toleration("dedicated", "Equal", "cpu", "").build();
        assert!(fits(&wrong_value, &n, &[]).is_err());
        let everything = pod("p").toleration("", "Exists", "", "").build();
        assert_eq!(
            fits(
                &everything,
                &node("n").taint("a", "b", NO_EXECUTE).build(),
                &[]
            ),
            Ok(())
        );
        // PreferNoSchedule alone never filters.
        let soft = node("n").taint("soft", "", PREFER_NO_SCHEDULE).build();
        assert_eq!(fits(&pod("p").build(), &soft, &[]), Ok(()));
    }

    #[test]
    fn host_port_filter() {
        let n = node("n").build();
        let web = pod("web").host_port(80).on("n").build();
        assert_eq!(
            fits(&pod("p").host_port(80).build(), &n, &[&web]),
            Err(vec![Reason::HostPorts])
        );
        assert_eq!(fits(&pod("p").host_port(8080).build(), &n, &[&web]), Ok(()));
        assert_eq!(fits(&pod("p").build(), &n, &[&web]), Ok(()));
        // Pods that are gone or elsewhere do not hold the port.
        let done = pod("done").host_port(80).on("n").phase("Failed").build();
        let other = pod("other").host_port(80).on("m").build();
        assert_eq!(
            fits(&pod("p").host_port(80).build(), &n, &[&done, &other]),
            Ok(())
        );
    }

    #[test]
    fn resource_filter() {
        let n = node("n").cpu("1").memory("1Gi").pods("3").build();
        let a = pod("a").cpu("600m").memory("512Mi").on("n").build();
        assert_eq!(
            fits(&pod("p").cpu("400m").memory("512Mi").build(), &n, &[&a]),
            Ok(())
        );
        assert_eq!(
            fits(&pod("p").cpu("401m").build(), &n, &[&a]),
            Err(vec![Reason::InsufficientCpu])
        );
        assert_eq!(
            fits(&pod("p").cpu("500m").memory("600Mi").build(), &n, &[&a]),
            Err(vec![Reason::InsufficientCpu, Reason::InsufficientMemory])
        );
        // Pods without requests need only a pod slot.
        let b = pod("b").on("n").build();
        assert_eq!(fits(&pod("p").build(), &n, &[&a, &b]), Ok(()));
        let c = pod("c").on("n").build();
        assert_eq!(
            fits(&pod("p").build(), &n, &[&a, &b, &c]),
            Err(vec![Reason::TooManyPods])
        );
        // Terminated and deleting pods free their resources.
        let done = pod("done").cpu("1").on("n").phase("Succeeded").build();
        let going = pod("going").cpu("1").on("n").deleting().build();
        assert_eq!(
            fits(&pod("p").cpu("1").build(), &n, &[&done, &going]),
            Ok(())
        );
    }

    #[test]
    fn missing_allocatable_is_unlimited() {
        let n = node("n").memory("1Gi").build();
        let big = pod("p").cpu("1000").memory("1Gi").build();
        assert_eq!(fits(&big, &n, &[]), Ok(()));
        let bigger = pod("p").cpu("1000").memory("2Gi").build();
        assert_eq!(
            fits(&bigger, &n, &[]),
            Err(vec![Reason::InsufficientMemory])
        );
    }

    #[test]
    fn first_failing_filter_wins() {
        let n = node("n")
            .ready("False")
            .unschedulable()
            .taint("t", "", NO_SCHEDULE)
            .cpu("1")
            .build();
        assert_eq!(
            fits(&pod("p").cpu("2").build(), &n, &[]),
            Err(vec![Reason::NotReady])
        );
        let n = node("n").unschedulable().label("a", "b").build();
        assert_eq!(
            fits(&pod("p").node_selector("a", "c").build(), &n, &[]),
            Err(vec![Reason::Unschedulable])
        );
    }
}
