//! Compute resources: what a pod requests and what a node can hold.
//!
//! A pod's request for a resource is the sum over its containers, or the
//! largest single init container's if that is more (init containers run one
//! at a time, before the others), as Kubernetes computes it. A container that
//! sets a limit but no request requests its limit (Kubernetes defaults the
//! request to the limit). For *scoring* only, a container without a CPU or
//! memory request counts 100m / 200Mi, so pods that request nothing still
//! spread out.
//!
//! A node's capacity for pods is `status.allocatable`: `cpu`, `memory`,
//! `pods`. A missing entry means no limit on that resource; an entry that
//! does not parse counts as zero (nothing fits rather than everything).

use rkube_api::proto::{Container, Node, PodSpec};
use rkube_api::quantity::{parse_millis, parse_value};
use std::collections::HashMap;

/// The CPU a container without a CPU request counts for scoring.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request counts for scoring.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// CPU and memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Resources {
    pub fn new(milli_cpu: i64, memory: i64) -> Resources {
        Resources { milli_cpu, memory }
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(o.milli_cpu);
        self.memory = self.memory.saturating_sub(o.memory);
    }

    fn max(self, o: Resources) -> Resources {
        Resources::new(self.milli_cpu.max(o.milli_cpu), self.memory.max(o.memory))
    }
}

/// What a pod asks of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// What the node must have free (the fit check).
    pub requests: Resources,
    /// The same with defaults for missing requests (scoring only).
    pub non_zero: Resources,
}

/// The resource requests of a pod spec.
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let mut requests = Resources::default();
    let mut non_zero = Resources::default();
    for c in &spec.containers {
        let (r, nz) = container_requests(c);
        requests.add(&r);
        non_zero.add(&nz);
    }
    for c in &spec.init_containers {
        let (r, nz) = container_requests(c);
        requests = requests.max(r);
        non_zero = non_zero.max(nz);
    }
    PodRequests { requests, non_zero }
}

/// (requests, requests with scoring defaults) of one container.
fn container_requests(c: &Container) -> (Resources, Resources) {
    let get = |name: &str, parse: fn(&str) -> Option<i64>| -> Option<i64> {
        let r = c.resources.as_ref()?;
        let q = r.requests.get(name).or_else(|| r.limits.get(name))?;
        // Validation rejects bad and negative quantities; be safe anyway.
        Some(parse(q).unwrap_or(0).max(0))
    };
    let cpu = get("cpu", parse_millis);
    let memory = get("memory", parse_value);
    (
        Resources::new(cpu.unwrap_or(0), memory.unwrap_or(0)),
        Resources::new(
            cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
            memory.unwrap_or(DEFAULT_MEMORY_REQUEST),
        ),
    )
}

/// What a node can hold; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub milli_cpu: Option<i64>,
    pub memory: Option<i64>,
    pub pods: Option<i64>,
}

/// The node's `status.allocatable`.
pub fn node_allocatable(node: &Node) -> Allocatable {
    match node.status.as_ref() {
        Some(s) => allocatable_of(&s.allocatable),
        None => Allocatable::default(),
    }
}

fn allocatable_of(m: &HashMap<String, String>) -> Allocatable {
    let get = |name: &str, parse: fn(&str) -> Option<i64>| {
        m.get(name).map(|q| parse(q).unwrap_or(0).max(0))
    };
    Allocatable {
        milli_cpu: get("cpu", parse_millis),
        memory: get("memory", parse_value),
        pods: get("pods", parse_value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{NodeStatus, ResourceRequirements};

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sums_containers() {
        let spec = PodSpec {
            containers: vec![
                container(&[("cpu", "100m"), ("memory", "64Mi")], &[]),
                container(&[("cpu", "0.5"), ("memory", "1G")], &[]),
            ],
            ..Default::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.requests, Resources::new(600, (64 << 20) + 1_000_000_000));
        assert_eq!(r.non_zero, r.requests);
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let spec = PodSpec {
            containers: vec![container(&[("memory", "1Gi")], &[("cpu", "2")])],
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec).requests, Resources::new(2000, 1 << 30));
    }

    #[test]
    fn init_containers_count_their_largest() {
        let spec = PodSpec {
            containers: vec![
                container(&[("cpu", "100m")], &[]),
                container(&[("cpu", "100m")], &[]),
            ],
            init_containers: vec![
                container(&[("cpu", "1"), ("memory", "1Mi")], &[]),
                container(&[("cpu", "150m")], &[]),
            ],
            ..Default::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.requests, Resources::new(1000, 1 << 20));
        // Non-zero: containers 200m + 400Mi; the init container 1 CPU + 1Mi.
        assert_eq!(r.non_zero, Resources::new(1000, 2 * DEFAULT_MEMORY_REQUEST));
    }

    #[test]
    fn missing_requests_are_zero_but_count_defaults_for_scoring() {
        let spec = PodSpec {
            containers: vec![Container::default(), container(&[("cpu", "300m")], &[])],
            ..Default::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.requests, Resources::new(300, 0));
        assert_eq!(r.non_zero, Resources::new(400, 2 * DEFAULT_MEMORY_REQUEST));
        assert_eq!(pod_requests(&PodSpec::default()), PodRequests::default());
    }

    #[test]
    fn allocatable_parses_and_missing_is_unlimited() {
        let mut node = Node::default();
        assert_eq!(node_allocatable(&node), Allocatable::default());
        node.status = Some(NodeStatus {
            allocatable: [("cpu", "3500m"), ("memory", "8Gi"), ("pods", "110")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        });
        assert_eq!(
            node_allocatable(&node),
            Allocatable {
                milli_cpu: Some(3500),
                memory: Some(8 << 30),
                pods: Some(110),
            }
        );
        node.status.as_mut().unwrap().allocatable =
            [("cpu".to_string(), "lots".to_string())].into();
        assert_eq!(
            node_allocatable(&node),
            Allocatable {
                milli_cpu: Some(0),
                memory: None,
                pods: None,
            }
        );
    }
}
