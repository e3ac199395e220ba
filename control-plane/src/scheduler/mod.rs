//! The scheduler: assigns pending pods to nodes.
//!
//! A pod is pending when it has no `spec.nodeName`, no deletionTimestamp,
//! asks for this scheduler (`spec.schedulerName` empty or
//! `default-scheduler`) and has not finished. Pending pods are fed by the
//! pod informer into a work queue; one scheduling worker ([`runner`])
//! decides each pod against the [`cache`], which holds every node with the
//! running totals of the pods on it, and binds through the API
//! ([`binder`]).
//!
//! - Deciding ([`algorithm`]): [`filters`] remove nodes the pod cannot go
//!   to (ready, cordoned, [`affinity`] and nodeSelector, taints via
//!   [`tolerations`], host [`ports`], [`resources`]); [`scoring`] ranks the
//!   rest (least allocated, spreading of one controller's pods, taint
//!   preferences, preferred affinity). Large clusters are sampled.
//! - One decision at a time: two pods can never both be given a node's last
//!   free resources. The decision is assumed in the cache at once (before
//!   the bind is written), so the next pod already sees it; binds then run
//!   concurrently.
//! - A pod that fits nowhere: a FailedScheduling event and a PodScheduled
//!   condition with the [`diagnosis`] ([`condition`]), written only when
//!   they change; the pod is parked until the cluster changes in a way that
//!   may help ([`sync`]) and its back-off has passed, or the periodic
//!   resync.
//! - Cost per decision is independent of the number of pods: the cache is
//!   updated pod by pod from informer notices; large clusters are sampled
//!   ([`algorithm`]); DaemonSet pods pinned by name look at their node only.
//!
//! `ControllerConfig::workers` does not apply: there is always one
//! scheduling worker (plus up to [`binder::MAX_IN_FLIGHT`] binds in flight).
//!
//! Filters and scores are pure functions of a pod, a node and the node's
//! pods (or their [`node_info::NodeUsage`]), tested without a cluster.

pub mod affinity;
pub mod algorithm;
pub mod binder;
pub mod cache;
pub mod condition;
pub mod diagnosis;
#[cfg(test)]
mod e2e_tests;
pub mod filters;
pub mod node_info;
pub mod pod_info;
pub mod ports;
pub mod resources;
pub mod runner;
pub mod scoring;
pub mod sync;
#[cfg(test)]
mod testutil;
pub mod tolerations;

use crate::controllers::informer::{object_key, Informers, Notice};
use crate::controllers::workqueue::WorkQueue;
use crate::controllers::{feed, run_workers, ControllerConfig};
use pod_info::needs_scheduling;
use rkube_api::kinds::Kind;
use rkube_api::proto::object::Kind as Body;
use rkube_api::Object;
use runner::Scheduler;
use std::sync::Arc;
use tokio::sync::mpsc;

pub use pod_info::SCHEDULER_NAME;

fn pending(o: &Object) -> bool {
    matches!(o.kind.as_ref(), Some(Body::Pod(p)) if needs_scheduling(p))
}

/// Whether a pod notice calls for an attempt now: a pending pod that is new
/// (or newly pending), or whose spec or owners changed. Status-only changes
/// — such as the scheduler's own PodScheduled condition — do not, or every
/// failed attempt would trigger the next one at once; those pods wait for
/// their back-off or a cluster change.
pub fn worth_an_attempt(old: Option<&Object>, new: &Object) -> bool {
    let Some(Body::Pod(p)) = new.kind.as_ref() else {
        return false;
    };
    if !needs_scheduling(p) {
        return false;
    }
    match old.and_then(|o| o.kind.as_ref()) {
        Some(Body::Pod(o)) => {
            !needs_scheduling(o)
                || o.spec != p.spec
                || o.metadata.as_ref().map(|m| &m.owner_references)
                    != p.metadata.as_ref().map(|m| &m.owner_references)
        }
        _ => true,
    }
}

/// Starts the scheduler on `informers`: its cache, its binder and one
/// scheduling worker. Everything stops when the informers are aborted.
pub fn start(informers: &Informers, cfg: &ControllerConfig) {
    let pods = informers.get(Kind::Pod);
    let nodes = informers.get(Kind::Node);
    // Subscribe before anything runs, so no change between the cache's
    // first build and its first notice is missed.
    let pod_notices = pods.subscribe();
    let node_notices = nodes.subscribe();
    let queue = WorkQueue::new();
    let (jobs, job_rx) = mpsc::channel(binder::QUEUE_CAPACITY);
    let sched = Arc::new(Scheduler::new(
        informers.handlers().clone(),
        pods.clone(),
        nodes,
        queue.clone(),
        jobs,
    ));
    informers.spawn(sync::run(sched.clone(), pod_notices, node_notices));
    informers.spawn(binder::run(sched.clone(), job_rx));
    let all_pods = pods.clone();
    feed(
        informers,
        &[Kind::Pod],
        queue.clone(),
        cfg.resync,
        |n| match n {
            Notice::Changed {
                old,
                new,
                deleted: false,
                ..
            } if worth_an_attempt(old.as_deref(), new) => vec![object_key(new)],
            _ => Vec::new(),
        },
        move || {
            all_pods
                .list()
                .iter()
                .filter(|o| pending(o))
                .map(|o| object_key(o))
                .collect()
        },
    );
    // One worker: decisions must be serial (see `runner`); binds are not.
    run_workers(informers, sched, queue, 1);
}

#[cfg(test)]
mod tests {
    use super::testutil::pod;
    use super::*;

    #[test]
    fn which_pod_changes_trigger_an_attempt() {
        let p = pod("p").object();
        assert!(worth_an_attempt(None, &p));
        // Our own condition update: no.
        let cond = condition::unschedulable_update(&p, "0/1 nodes are available.", "t").unwrap();
        assert!(!worth_an_attempt(Some(&p), &cond));
        // A spec change (a toleration added): yes.
        let tolerant = pod("p").toleration("k", "Exists", "", "").object();
        assert!(worth_an_attempt(Some(&p), &tolerant));
        // Adopted by a controller: yes (spreading changes).
        assert!(worth_an_attempt(Some(&p), &pod("p").owner("rc").object()));
        // Bound, finished or another scheduler's: no.
        assert!(!worth_an_attempt(None, &pod("p").on("n").object()));
        assert!(!worth_an_attempt(
            Some(&p),
            &pod("p").phase("Failed").object()
        ));
        let mut other = pod("p").build();
        other.spec.as_mut().unwrap().scheduler_name = "other".into();
        assert!(!worth_an_attempt(
            None,
            &Object::from_body(Body::Pod(other))
        ));
    }
}
