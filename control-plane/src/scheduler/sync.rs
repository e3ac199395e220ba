//! Keeps the cache in step with the pod and node informers, and retries
//! parked (unschedulable) pods when the cluster changes in a way that may
//! let them fit:
//!
//! - a node appears, or its readiness, cordon, labels, taints or
//!   allocatable change (heartbeats do not count);
//! - a pod stops using a node's resources (deleted, finished, moved), or an
//!   assumption is dropped;
//! - a relist (or a lagging subscription) rebuilds the cache.
//!
//! Changes are applied under the same lock decisions are made under, so a
//! pod parked by a decision cannot miss the change that would have freed
//! it. The cache is built from both informers before the first decision.

use super::pod_info::needs_scheduling;
use super::runner::Scheduler;
use crate::controllers::informer::{object_key, Notice};
use rkube_api::kinds::Kind;
use rkube_api::proto::object::Kind as Body;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};

/// How long after a successful bind an assumed pod is kept if the informer
/// never shows it bound (a safety net; normally that takes milliseconds).
pub const ASSUME_TTL: Duration = Duration::from_secs(60);
/// How often expired assumptions are looked for.
const EXPIRY_PERIOD: Duration = Duration::from_secs(10);

/// Applies notices until both subscriptions close.
pub(crate) async fn run(
    sched: Arc<Scheduler>,
    mut pods: broadcast::Receiver<Notice>,
    mut nodes: broadcast::Receiver<Notice>,
) {
    sched.nodes.wait_synced().await;
    sched.pods.wait_synced().await;
    sched.rebuild(Kind::Node);
    sched.rebuild(Kind::Pod);
    sched.synced.send_replace(true);
    tracing::debug!(
        nodes = sched.state.lock().cache.node_count(),
        "scheduler cache built"
    );
    let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
    loop {
        tokio::select! {
            n = nodes.recv() => match n {
                Ok(n) => sched.apply(&n),
                Err(RecvError::Lagged(_)) => sched.rebuild(Kind::Node),
                Err(RecvError::Closed) => return,
            },
            n = pods.recv() => match n {
                Ok(n) => sched.apply(&n),
                Err(RecvError::Lagged(_)) => sched.rebuild(Kind::Pod),
                Err(RecvError::Closed) => return,
            },
            _ = expiry.tick() => {
                let expired = sched.state.lock().cache.expire(Instant::now(), ASSUME_TTL);
                if expired > 0 {
                    tracing::warn!(expired, "assumed pods never showed up bound; forgetting them");
                    sched.wake_parked();
                }
            }
        }
    }
}

impl Scheduler {
    /// Applies one informer notice to the cache.
    pub(crate) fn apply(&self, notice: &Notice) {
        let wake = match notice {
            Notice::Resync(kind) => {
                self.rebuild(*kind);
                false
            }
            Notice::Changed {
                new, deleted, kind, ..
            } => {
                let mut st = self.state.lock();
                match (kind, new.kind.as_ref()) {
                    (Kind::Node, Some(Body::Node(_))) => {
                        if *deleted {
                            st.cache.remove_node(new.name());
                            false
                        } else {
                            st.cache.set_node(new.clone())
                        }
                    }
                    (Kind::Pod, Some(Body::Pod(pod))) => {
                        let key = object_key(new);
                        if *deleted {
                            st.forget_pending(&key);
                            let uid = pod.metadata.as_ref().map(|m| m.uid.as_str()).unwrap_or("");
                            st.cache.delete_pod(&key, uid)
                        } else {
                            if !needs_scheduling(pod) {
                                st.forget_pending(&key);
                            }
                            st.cache.update_pod(&key, pod)
                        }
                    }
                    _ => false,
                }
            }
        };
        if wake {
            self.wake_parked();
        }
    }

    /// Rebuilds the cache's view of `kind` from its informer, then retries
    /// parked pods.
    pub(crate) fn rebuild(&self, kind: Kind) {
        match kind {
            Kind::Node => {
                let nodes = self.nodes.list();
                self.state.lock().cache.rebuild_nodes(nodes.iter());
            }
            Kind::Pod => {
                let pods = self.pods.list();
                let listed = pods.iter().filter_map(|o| match o.kind.as_ref() {
                    Some(Body::Pod(p)) => Some((object_key(o), p)),
                    _ => None,
                });
                let mut st = self.state.lock();
                st.cache.rebuild_pods(listed);
                let present: HashSet<String> = pods.iter().map(|o| object_key(o)).collect();
                st.failures.retain(|k, _| present.contains(k));
                st.parked.retain(|k| present.contains(k));
            }
            _ => return,
        }
        self.wake_parked();
    }
}
