//! Test builders for pods and nodes (unit tests only).

use super::affinity::FIELD_NODE_NAME;
use super::pod_info::PodInfo;
use rkube_api::proto::{
    object::Kind as Body, Affinity, Container, ContainerPort, Node, NodeAffinity, NodeCondition,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, ObjectMeta,
    OwnerReference, Pod, PodSpec, PodStatus, PreferredSchedulingTerm, ResourceRequirements, Taint,
    Toleration,
};
use rkube_api::Object;
use std::sync::Arc;

pub struct PodBuilder(Pod);

/// A pending pod `default/<name>` with uid `uid-<name>` and one container
/// that requests nothing.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: "nginx".into(),
                resources: Some(ResourceRequirements::default()),
                ..Default::default()
            }],
            scheduler_name: "default-scheduler".into(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: "Pending".into(),
            ..Default::default()
        }),
    })
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.as_mut().unwrap()
    }

    fn request(mut self, name: &str, q: &str) -> Self {
        let c = &mut self.spec().containers[0];
        c.resources
            .get_or_insert_with(Default::default)
            .requests
            .insert(name.into(), q.into());
        self
    }

    pub fn cpu(self, q: &str) -> Self {
        self.request("cpu", q)
    }

    pub fn memory(self, q: &str) -> Self {
        self.request("memory", q)
    }

    pub fn host_port(mut self, port: i32) -> Self {
        self.spec().containers[0].ports.push(ContainerPort {
            container_port: port,
            host_port: port,
            protocol: "TCP".into(),
            ..Default::default()
        });
        self
    }

    pub fn owner(mut self, uid: &str) -> Self {
        self.0
            .metadata
            .as_mut()
            .unwrap()
            .owner_references
            .push(OwnerReference {
                api_version: "v1".into(),
                kind: "ReplicationController".into(),
                name: uid.into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        self
    }

    pub fn on(mut self, node: &str) -> Self {
        self.spec().node_name = node.into();
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status.as_mut().unwrap().phase = phase.into();
        self
    }

    pub fn deleting(mut self) -> Self {
        self.0.metadata.as_mut().unwrap().deletion_timestamp = "2024-01-01T00:00:00Z".into();
        self
    }

    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec().node_selector.insert(k.into(), v.into());
        self
    }

    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        self.spec().tolerations.push(Toleration {
            key: key.into(),
            operator: operator.into(),
            value: value.into(),
            effect: effect.into(),
            ..Default::default()
        });
        self
    }

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(Default::default)
    }

    /// Adds a required term with one label expression.
    pub fn required(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        let term = NodeSelectorTerm {
            match_expressions: vec![requirement(key, op, values)],
            match_fields: vec![],
        };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default)
            .node_selector_terms
            .push(term);
        self
    }

    /// Pins the pod to `node` the way DaemonSet pods are.
    pub fn pinned_to(mut self, node: &str) -> Self {
        let term = NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![requirement(FIELD_NODE_NAME, "In", &[node])],
        };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default)
            .node_selector_terms
            .push(term);
        self
    }

    pub fn preferred(mut self, weight: i32, key: &str, op: &str, values: &[&str]) -> Self {
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .push(PreferredSchedulingTerm {
                weight,
                preference: Some(NodeSelectorTerm {
                    match_expressions: vec![requirement(key, op, values)],
                    match_fields: vec![],
                }),
            });
        self
    }

    pub fn build(self) -> Pod {
        self.0
    }

    pub fn info(self) -> PodInfo {
        PodInfo::new(&self.0)
    }

    pub fn object(self) -> Arc<Object> {
        Arc::new(Object::from_body(Body::Pod(self.0)))
    }
}

fn requirement(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

pub struct NodeBuilder(Node);

/// A Ready node with no allocatable limits, labels or taints.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: Some(ObjectMeta {
            name: name.into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }),
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    })
}

impl NodeBuilder {
    fn allocatable(mut self, name: &str, q: &str) -> Self {
        self.0
            .status
            .as_mut()
            .unwrap()
            .allocatable
            .insert(name.into(), q.into());
        self
    }

    pub fn cpu(self, q: &str) -> Self {
        self.allocatable("cpu", q)
    }

    pub fn memory(self, q: &str) -> Self {
        self.allocatable("memory", q)
    }

    pub fn pods(self, q: &str) -> Self {
        self.allocatable("pods", q)
    }

    /// 4 CPUs, 8Gi, 110 pods.
    pub fn standard(self) -> Self {
        self.cpu("4").memory("8Gi").pods("110")
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .insert(k.into(), v.into());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.0.spec.as_mut().unwrap().taints.push(Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
            ..Default::default()
        });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.0.spec.as_mut().unwrap().unschedulable = true;
        self
    }

    /// Sets the Ready condition's status ("False", "Unknown"); "" removes it.
    pub fn ready(mut self, status: &str) -> Self {
        let st = self.0.status.as_mut().unwrap();
        st.conditions.retain(|c| c.r#type != "Ready");
        if !status.is_empty() {
            st.conditions.push(NodeCondition {
                r#type: "Ready".into(),
                status: status.into(),
                ..Default::default()
            });
        }
        self
    }

    pub fn build(self) -> Node {
        self.0
    }

    pub fn object(self) -> Arc<Object> {
        Arc::new(Object::from_body(Body::Node(self.0)))
    }
}
