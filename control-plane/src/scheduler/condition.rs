//! The `PodScheduled` condition of a pod that fits nowhere: status False,
//! reason Unschedulable, the diagnosis as message. Written only when it
//! changes, so retries do not turn into a stream of writes.

use rkube_api::proto::{object::Kind as Body, PodCondition};
use rkube_api::Object;

pub const POD_SCHEDULED: &str = "PodScheduled";
pub const UNSCHEDULABLE: &str = "Unschedulable";

/// The pod with its PodScheduled condition set to False/Unschedulable with
/// `message`, or `None` if it already says exactly that (or `obj` is not a
/// pod). `now` is the transition time when the status changes. The object
/// keeps its resourceVersion, so writing it fails if the pod changed since
/// (e.g. it was bound meanwhile).
pub fn unschedulable_update(obj: &Object, message: &str, now: &str) -> Option<Object> {
    let Some(Body::Pod(pod)) = obj.kind.as_ref() else {
        return None;
    };
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == POD_SCHEDULED));
    if let Some(c) = current {
        if c.status == "False" && c.reason == UNSCHEDULABLE && c.message == message {
            return None;
        }
    }
    let last_transition_time = match current {
        Some(c) if c.status == "False" && !c.last_transition_time.is_empty() => {
            c.last_transition_time.clone()
        }
        _ => now.to_string(),
    };
    let mut new = obj.clone();
    let Some(Body::Pod(pod)) = new.kind.as_mut() else {
        return None;
    };
    let status = pod.status.get_or_insert_with(Default::default);
    let condition = PodCondition {
        r#type: POD_SCHEDULED.into(),
        status: "False".into(),
        last_probe_time: String::new(),
        last_transition_time,
        reason: UNSCHEDULABLE.into(),
        message: message.into(),
    };
    match status
        .conditions
        .iter_mut()
        .find(|c| c.r#type == POD_SCHEDULED)
    {
        Some(c) => *c = condition,
        None => status.conditions.push(condition),
    }
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::pod;

    fn condition(o: &Object) -> PodCondition {
        let Some(Body::Pod(p)) = o.kind.as_ref() else {
            panic!("not a pod")
        };
        let cs = &p.status.as_ref().unwrap().conditions;
        assert_eq!(cs.iter().filter(|c| c.r#type == POD_SCHEDULED).count(), 1);
        cs.iter()
            .find(|c| c.r#type == POD_SCHEDULED)
            .unwrap()
            .clone()
    }

    #[test]
    fn sets_the_condition_once() {
        let p = pod("p").object();
        let msg = "0/1 nodes are available: 1 Insufficient cpu.";
        let updated = unschedulable_update(&p, msg, "t1").expect("a change");
        let c = condition(&updated);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", "Unschedulable", msg)
        );
        assert_eq!(c.last_transition_time, "t1");
        assert_eq!(unschedulable_update(&updated, msg, "t2"), None);
        // A new message rewrites it; the status did not change, so the
        // transition time stays.
        let again = unschedulable_update(&updated, "other", "t3").unwrap();
        let c = condition(&again);
        assert_eq!(
            (c.message.as_str(), c.last_transition_time.as_str()),
            ("other", "t1")
        );
    }

    #[test]
    fn replaces_a_true_condition() {
        let p = pod("p").object();
        let mut o = (*p).clone();
        if let Some(Body::Pod(pod)) = o.kind.as_mut() {
            pod.status.as_mut().unwrap().conditions.push(PodCondition {
                r#type: POD_SCHEDULED.into(),
                status: "True".into(),
                last_transition_time: "t0".into(),
                ..Default::default()
            });
        }
        let c = condition(&unschedulable_update(&o, "m", "t1").unwrap());
        assert_eq!(
            (c.status.as_str(), c.last_transition_time.as_str()),
            ("False", "t1")
        );
    }

    #[test]
    fn not_a_pod() {
        assert_eq!(unschedulable_update(&Object::default(), "m", "t"), None);
    }
}
