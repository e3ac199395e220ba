//! What the scheduler needs to know about a pod, computed once per pod (not
//! once per node it is checked against), and the pod states it cares about.

use super::ports::{pod_host_ports, HostPort};
use super::resources::{pod_requests, Resources};
use rkube_api::proto::{ObjectMeta, Pod};

/// The scheduler this one is: pods naming another are left alone.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// A pod's demands on a node, pre-computed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// Requests for the fit check.
    pub requests: Resources,
    /// Requests with defaults for missing ones, for scoring.
    pub non_zero: Resources,
    /// Host ports it occupies.
    pub host_ports: Vec<HostPort>,
    /// The uid of its controller (ownerReference with `controller: true`):
    /// pods of one owner are spread over nodes.
    pub owner: Option<String>,
}

impl PodInfo {
    pub fn new(pod: &Pod) -> PodInfo {
        let (requests, host_ports) = match pod.spec.as_ref() {
            Some(spec) => (pod_requests(spec), pod_host_ports(spec)),
            None => (Default::default(), Vec::new()),
        };
        PodInfo {
            requests: requests.requests,
            non_zero: requests.non_zero,
            host_ports,
            owner: pod
                .metadata
                .as_ref()
                .and_then(controller_uid)
                .map(str::to_string),
        }
    }
}

/// The uid of the object's controlling owner, if any.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .find(|r| r.controller == Some(true) && !r.uid.is_empty())
        .map(|r| r.uid.as_str())
}

pub fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.as_ref().map(|m| m.uid.as_str()).unwrap_or("")
}

/// The node the pod is bound to ("" if none).
pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .map(|s| s.node_name.as_str())
        .unwrap_or("")
}

fn is_terminated(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed")
}

fn is_deleting(pod: &Pod) -> bool {
    pod.metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

/// Active: not being deleted and not terminated. Only active pods use a
/// node's resources.
pub fn is_active(pod: &Pod) -> bool {
    !is_deleting(pod) && !is_terminated(pod)
}

/// Whether this scheduler should place the pod: unbound, active, and asking
/// for this scheduler (or none).
pub fn needs_scheduling(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.is_empty()
        && (spec.scheduler_name.is_empty() || spec.scheduler_name == SCHEDULER_NAME)
        && is_active(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{OwnerReference, PodSpec, PodStatus};

    fn pod() -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: "Pending".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn which_pods_need_scheduling() {
        let p = pod();
        assert!(needs_scheduling(&p));
        let mut named = pod();
        named.spec.as_mut().unwrap().scheduler_name = SCHEDULER_NAME.into();
        assert!(needs_scheduling(&named));
        let mut other = pod();
        other.spec.as_mut().unwrap().scheduler_name = "my-scheduler".into();
        assert!(!needs_scheduling(&other));
        let mut bound = pod();
        bound.spec.as_mut().unwrap().node_name = "n1".into();
        assert!(!needs_scheduling(&bound));
        let mut deleting = pod();
        deleting.metadata.as_mut().unwrap().deletion_timestamp = "2024-01-01T00:00:00Z".into();
        assert!(!needs_scheduling(&deleting) && !is_active(&deleting));
        for phase in ["Succeeded", "Failed"] {
            let mut done = pod();
            done.status.as_mut().unwrap().phase = phase.into();
            assert!(!needs_scheduling(&done) && !is_active(&done));
        }
        assert!(!needs_scheduling(&Pod::default()));
    }

    #[test]
    fn owner_is_the_controller_reference() {
        let mut p = pod();
        assert_eq!(PodInfo::new(&p).owner, None);
        p.metadata.as_mut().unwrap().owner_references = vec![
            OwnerReference {
                uid: "not-controller".into(),
                ..Default::default()
            },
            OwnerReference {
                uid: "rc-uid".into(),
                controller: Some(true),
                ..Default::default()
            },
        ];
        assert_eq!(PodInfo::new(&p).owner.as_deref(), Some("rc-uid"));
    }
}
