//! One node as the scheduler sees it: the Node object, its parsed
//! allocatable resources, and the running totals of the active pods
//! assigned to it ([`NodeUsage`]), kept up to date pod by pod so no decision
//! has to look at every pod.

use super::filters::ready_status;
use super::pod_info::{is_active, node_name, PodInfo};
use super::ports::HostPort;
use super::resources::{node_allocatable, Allocatable, Resources};
use super::tolerations::{NO_EXECUTE, NO_SCHEDULE, PREFER_NO_SCHEDULE};
use rkube_api::proto::{object::Kind as Body, Node, Pod};
use rkube_api::Object;
use std::collections::HashMap;
use std::sync::Arc;

/// What the active pods assigned to one node use, summed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeUsage {
    /// Sum of requests.
    pub requested: Resources,
    /// Sum of requests with scoring defaults.
    pub non_zero: Resources,
    /// Number of pods.
    pub pods: i64,
    /// Host ports in use, with the number of pods using each.
    pub host_ports: HashMap<HostPort, u32>,
    /// Pods per controller uid.
    pub owners: HashMap<String, u32>,
}

impl NodeUsage {
    /// The usage of `pods` (those of them that are active).
    pub fn from_pods(pods: &[&Pod]) -> NodeUsage {
        let mut u = NodeUsage::default();
        for p in pods.iter().filter(|p| is_active(p)) {
            u.add(&PodInfo::new(p));
        }
        u
    }

    pub fn add(&mut self, p: &PodInfo) {
        self.requested.add(&p.requests);
        self.non_zero.add(&p.non_zero);
        self.pods += 1;
        for hp in &p.host_ports {
            *self.host_ports.entry(hp.clone()).or_insert(0) += 1;
        }
        if let Some(o) = &p.owner {
            *self.owners.entry(o.clone()).or_insert(0) += 1;
        }
    }

    /// Undoes [`NodeUsage::add`] of the same `p`.
    pub fn remove(&mut self, p: &PodInfo) {
        self.requested.sub(&p.requests);
        self.non_zero.sub(&p.non_zero);
        self.pods -= 1;
        for hp in &p.host_ports {
            decrement(&mut self.host_ports, hp);
        }
        if let Some(o) = &p.owner {
            decrement(&mut self.owners, o.as_str());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pods == 0
    }

    /// Pods of the controller `uid` on this node.
    pub fn owner_count(&self, uid: &str) -> u32 {
        self.owners.get(uid).copied().unwrap_or(0)
    }

    /// Whether `hp` conflicts with a host port in use.
    pub fn port_in_use(&self, hp: &HostPort) -> bool {
        self.host_ports.keys().any(|used| used.conflicts_with(hp))
    }
}

fn decrement<K, Q>(m: &mut HashMap<K, u32>, k: &Q)
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(n) = m.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            m.remove(k);
        }
    }
}

/// Facts about a node the filters and scores ask for every decision,
/// derived once per node update so the common case (ready, not cordoned,
/// untainted) costs no lookups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// The Ready condition is True.
    pub ready: bool,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// Has a NoSchedule or NoExecute taint.
    pub hard_taints: bool,
    /// Has a PreferNoSchedule taint.
    pub soft_taints: bool,
}

impl NodeFacts {
    pub fn of(node: &Node) -> NodeFacts {
        let taints = node
            .spec
            .as_ref()
            .map(|s| s.taints.as_slice())
            .unwrap_or(&[]);
        NodeFacts {
            ready: ready_status(node) == "True",
            unschedulable: node.spec.as_ref().is_some_and(|s| s.unschedulable),
            hard_taints: taints
                .iter()
                .any(|t| t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE),
            soft_taints: taints.iter().any(|t| t.effect == PREFER_NO_SCHEDULE),
        }
    }
}

/// A node with its allocatable resources and current usage.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    object: Arc<Object>,
    pub facts: NodeFacts,
    pub allocatable: Allocatable,
    pub usage: NodeUsage,
}

impl NodeInfo {
    /// `None` if `object` is not a Node.
    pub fn new(object: Arc<Object>, usage: NodeUsage) -> Option<NodeInfo> {
        let Some(Body::Node(node)) = object.kind.as_ref() else {
            return None;
        };
        Some(NodeInfo {
            facts: NodeFacts::of(node),
            allocatable: node_allocatable(node),
            object,
            usage,
        })
    }

    /// A node with the usage of `pods` (those of them active and bound to
    /// it): the pure form, for tests and one-off checks.
    pub fn from_pods(node: Node, pods: &[&Pod]) -> NodeInfo {
        let name = node
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let mine: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| node_name(p) == name)
            .collect();
        let usage = NodeUsage::from_pods(&mine);
        NodeInfo::new(Arc::new(Object::from_body(Body::Node(node))), usage)
            .expect("a Node is a Node")
    }

    pub fn node(&self) -> &Node {
        match self.object.kind.as_ref() {
            Some(Body::Node(n)) => n,
            _ => unreachable!("NodeInfo holds a Node"),
        }
    }

    pub fn object(&self) -> &Arc<Object> {
        &self.object
    }

    pub fn name(&self) -> &str {
        self.object.name()
    }

    /// Replaces the Node object (a newer version of the same node).
    /// Returns false (and changes nothing) if `object` is not a Node.
    pub fn set_object(&mut self, object: Arc<Object>) -> bool {
        let Some(Body::Node(new)) = object.kind.as_ref() else {
            return false;
        };
        let same_allocatable = self.node().status.as_ref().map(|s| &s.allocatable)
            == new.status.as_ref().map(|s| &s.allocatable);
        if !same_allocatable {
            self.allocatable = node_allocatable(new);
        }
        self.facts = NodeFacts::of(new);
        self.object = object;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};

    #[test]
    fn usage_adds_and_removes() {
        let a = pod("a")
            .cpu("100m")
            .memory("64Mi")
            .host_port(80)
            .owner("rc1")
            .info();
        let b = pod("b").cpu("1").owner("rc1").info();
        let mut u = NodeUsage::default();
        u.add(&a);
        u.add(&b);
        assert_eq!(u.pods, 2);
        assert_eq!(u.requested, Resources::new(1100, 64 << 20));
        assert_eq!(u.owner_count("rc1"), 2);
        assert!(u.port_in_use(&HostPort::new("TCP", "", 80)));
        u.remove(&a);
        assert_eq!(u.pods, 1);
        assert_eq!(u.requested, Resources::new(1000, 0));
        assert_eq!(u.owner_count("rc1"), 1);
        assert!(!u.port_in_use(&HostPort::new("TCP", "", 80)));
        assert!(u.host_ports.is_empty());
        u.remove(&b);
        assert_eq!(u, NodeUsage::default());
    }

    #[test]
    fn from_pods_counts_active_pods_on_the_node() {
        let on = pod("on").cpu("200m").on("n1").build();
        let elsewhere = pod("elsewhere").cpu("1").on("n2").build();
        let done = pod("done").cpu("1").on("n1").phase("Succeeded").build();
        let deleting = pod("deleting").cpu("1").on("n1").deleting().build();
        let info = NodeInfo::from_pods(
            node("n1").cpu("2").build(),
            &[&on, &elsewhere, &done, &deleting],
        );
        assert_eq!(info.usage.pods, 1);
        assert_eq!(info.usage.requested.milli_cpu, 200);
        assert_eq!(info.allocatable.milli_cpu, Some(2000));
        assert_eq!(info.name(), "n1");
    }

    #[test]
    fn facts() {
        use crate::scheduler::tolerations::{NO_EXECUTE, PREFER_NO_SCHEDULE};
        let f = NodeFacts::of(&node("n").build());
        assert!(f.ready && !f.unschedulable && !f.hard_taints && !f.soft_taints);
        let f = NodeFacts::of(
            &node("n")
                .ready("Unknown")
                .unschedulable()
                .taint("a", "", NO_EXECUTE)
                .build(),
        );
        assert!(!f.ready && f.unschedulable && f.hard_taints && !f.soft_taints);
        let f = NodeFacts::of(&node("n").taint("a", "", PREFER_NO_SCHEDULE).build());
        assert!(!f.hard_taints && f.soft_taints);
        let mut info = NodeInfo::from_pods(node("n").build(), &[]);
        info.set_object(node("n").ready("False").object());
        assert!(!info.facts.ready);
    }

    #[test]
    fn set_object_reparses_allocatable() {
        let mut info = NodeInfo::from_pods(node("n1").cpu("2").build(), &[]);
        let newer = Arc::new(Object::from_body(Body::Node(node("n1").cpu("4").build())));
        assert!(info.set_object(newer));
        assert_eq!(info.allocatable.milli_cpu, Some(4000));
        let not_node = Arc::new(Object::from_body(Body::Pod(Pod::default())));
        assert!(!info.set_object(not_node));
    }
}
