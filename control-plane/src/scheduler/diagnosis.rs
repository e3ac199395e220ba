//! Why a pod fits nowhere, in kubectl's words: the FailedScheduling event
//! and the PodScheduled condition's message, e.g.
//! `0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't
//! match Pod's node affinity/selector.`
//!
//! Each reason is counted over the nodes that gave it (a node can give
//! several: `Insufficient cpu` and `Insufficient memory`), written
//! `<count> <reason>`, and the entries are sorted as strings, as Kubernetes
//! does.

use super::filters::Reason;
use std::collections::HashMap;

/// The message when the cluster has no nodes at all.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// The reasons the nodes of a cluster gave for rejecting one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// How many nodes gave each reason.
    pub reasons: HashMap<Reason, usize>,
}

impl Diagnosis {
    pub fn new(nodes: usize) -> Diagnosis {
        Diagnosis {
            nodes,
            reasons: HashMap::new(),
        }
    }

    /// Records one node's reasons.
    pub fn add(&mut self, reasons: Vec<Reason>) {
        for r in reasons {
            *self.reasons.entry(r).or_insert(0) += 1;
        }
    }

    /// Records `n` nodes that all gave `reason`.
    pub fn add_n(&mut self, reason: Reason, n: usize) {
        if n > 0 {
            *self.reasons.entry(reason).or_insert(0) += n;
        }
    }

    pub fn message(&self) -> String {
        if self.nodes == 0 {
            return NO_NODES.to_string();
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        if parts.is_empty() {
            format!("0/{} nodes are available.", self.nodes)
        } else {
            format!(
                "0/{} nodes are available: {}.",
                self.nodes,
                parts.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubectl_example() {
        let mut d = Diagnosis::new(3);
        d.add(vec![Reason::NodeAffinity]);
        d.add(vec![Reason::Unschedulable]);
        d.add(vec![Reason::NodeAffinity]);
        assert_eq!(
            d.message(),
            "0/3 nodes are available: 1 node(s) were unschedulable, \
             2 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn nodes_may_give_several_reasons() {
        let mut d = Diagnosis::new(3);
        for _ in 0..3 {
            d.add(vec![Reason::InsufficientCpu, Reason::InsufficientMemory]);
        }
        assert_eq!(
            d.message(),
            "0/3 nodes are available: 3 Insufficient cpu, 3 Insufficient memory."
        );
    }

    #[test]
    fn taints_and_ports_and_counts_sorted_as_strings() {
        let mut d = Diagnosis::new(15);
        d.add(vec![Reason::UntoleratedTaint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: "".into(),
        }]);
        d.add(vec![Reason::HostPorts]);
        d.add_n(Reason::NotReady, 10);
        d.add(vec![Reason::TooManyPods]);
        d.add(vec![Reason::TooManyPods]);
        d.add_n(Reason::NodeAffinity, 0);
        assert_eq!(
            d.message(),
            "0/15 nodes are available: \
             1 node(s) didn't have free ports for the requested pod ports, \
             1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
             10 node(s) were not ready, 2 Too many pods."
        );
    }

    #[test]
    fn no_nodes() {
        assert_eq!(Diagnosis::new(0).message(), NO_NODES);
        assert_eq!(Diagnosis::new(2).message(), "0/2 nodes are available.");
    }
}
