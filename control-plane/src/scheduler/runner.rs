//! The scheduling loop: one worker takes pending pods off the queue, decides
//! each against the cache, assumes it on the chosen node and hands the bind
//! to the binder ([`super::binder`]); a pod that fits nowhere gets a
//! FailedScheduling event and its PodScheduled condition, and is *parked*.
//!
//! Parked pods are retried, as in Kubernetes, when the cluster changes in a
//! way that may help ([`super::sync`]) *and* their back-off (1 s doubling
//! to 10 s per failed attempt) has passed — an earlier change schedules the
//! retry for the end of the back-off. So a steady stream of changes (pods
//! coming and going) retries each unschedulable pod at most once per
//! back-off instead of once per change. Without any change they wait for
//! the periodic resync (`--resync`), which retries every pending pod.
//!
//! Decisions are made one at a time, under the cache's lock, so two pods
//! can never both take a node's last free resources; only the binds, which
//! wait on Raft, run concurrently. A decision itself never waits.

use super::algorithm;
use super::cache::Cache;
use super::condition::unschedulable_update;
use super::pod_info::{needs_scheduling, pod_uid, PodInfo};
use crate::controllers::events::{EventRecorder, WARNING};
use crate::controllers::informer::Informer;
use crate::controllers::workqueue::WorkQueue;
use crate::controllers::{Action, Reconcile};
use crate::handlers::{now, ApiError, Handlers};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rkube_api::proto::object::Kind as Body;
use rkube_api::Object;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The component name on events.
pub const COMPONENT: &str = "default-scheduler";
/// Back-off of an unschedulable pod: this, doubling per failed attempt...
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// ...up to this (Kubernetes' defaults).
pub const RETRY_MAX: Duration = Duration::from_secs(10);
/// A FailedScheduling event with an unchanged message is repeated at most
/// this often per pod.
pub const EVENT_REPEAT: Duration = Duration::from_secs(60);

/// Back-off after the `attempts`-th failed attempt.
pub fn retry_backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (RETRY_INITIAL * (1u32 << shift)).min(RETRY_MAX)
}

/// Work for the binder.
pub enum Job {
    /// Bind the pod (the informer's object) to the node it is assumed on.
    Bind {
        key: String,
        pod: Arc<Object>,
        node: String,
    },
    /// Write a pod's status (the PodScheduled condition).
    Status(Box<Object>),
}

/// Failed attempts of one pod.
#[derive(Default)]
pub(crate) struct Failures {
    attempts: u32,
    /// When the back-off of the last failure ends.
    retry_at: Option<Instant>,
    last_event: Option<(String, Instant)>,
}

impl Failures {
    /// Whether to record an event with `message` now (and note it).
    fn event_due(&mut self, message: &str, now: Instant) -> bool {
        let due = match &self.last_event {
            Some((m, at)) => m != message || now.saturating_duration_since(*at) >= EVENT_REPEAT,
            None => true,
        };
        if due {
            self.last_event = Some((message.to_string(), now));
        }
        due
    }
}

/// What the scheduler knows, behind one lock.
pub(crate) struct State {
    pub(crate) cache: Cache,
    /// Pods that fit nowhere at their last attempt, waiting for a change.
    pub(crate) parked: HashSet<String>,
    pub(crate) failures: HashMap<String, Failures>,
    rng: StdRng,
}

impl State {
    /// Forgets a pod that no longer needs scheduling.
    pub(crate) fn forget_pending(&mut self, key: &str) {
        self.parked.remove(key);
        self.failures.remove(key);
    }
}

pub struct Scheduler {
    pub(crate) handlers: Handlers,
    pub(crate) pods: Arc<Informer>,
    pub(crate) nodes: Arc<Informer>,
    pub(crate) queue: Arc<WorkQueue>,
    pub(crate) jobs: mpsc::Sender<Job>,
    pub(crate) recorder: EventRecorder,
    /// True once the cache has been built from both informers.
    pub(crate) synced: watch::Sender<bool>,
    pub(crate) state: Mutex<State>,
}

enum Outcome {
    Bind(String),
    Unschedulable {
        message: String,
        attempts: u32,
        event: bool,
    },
}

impl Scheduler {
    pub fn new(
        handlers: Handlers,
        pods: Arc<Informer>,
        nodes: Arc<Informer>,
        queue: Arc<WorkQueue>,
        jobs: mpsc::Sender<Job>,
    ) -> Scheduler {
        Scheduler {
            recorder: EventRecorder::new(handlers.clone(), COMPONENT),
            handlers,
            pods,
            nodes,
            queue,
            jobs,
            synced: watch::channel(false).0,
            state: Mutex::new(State {
                cache: Cache::new(),
                parked: HashSet::new(),
                failures: HashMap::new(),
                rng: StdRng::from_entropy(),
            }),
        }
    }

    async fn wait_synced(&self) {
        if *self.synced.borrow() {
            return;
        }
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Something changed that may let parked pods fit: requeues each, now
    /// or when its back-off ends.
    pub(crate) fn wake_parked(&self) {
        let now = Instant::now();
        let due: Vec<(String, Option<Duration>)> = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            st.parked
                .drain()
                .map(|k| {
                    let wait = st
                        .failures
                        .get(&k)
                        .and_then(|f| f.retry_at)
                        .map(|t| t.saturating_duration_since(now))
                        .filter(|d| !d.is_zero());
                    (k, wait)
                })
                .collect()
        };
        if !due.is_empty() {
            tracing::debug!(
                pods = due.len(),
                "cluster changed: retrying unschedulable pods"
            );
        }
        for (k, wait) in due {
            match wait {
                Some(d) => self.queue.add_after(&k, d),
                None => self.queue.add(&k),
            }
        }
    }
}

#[tonic::async_trait]
impl Reconcile for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    async fn reconcile(&self, key: &str) -> Result<Action, ApiError> {
        self.wait_synced().await;
        let Some(obj) = self.pods.get_key(key) else {
            self.state.lock().forget_pending(key);
            return Ok(Action::Done);
        };
        let Some(Body::Pod(pod)) = obj.kind.as_ref() else {
            return Ok(Action::Done);
        };
        if !needs_scheduling(pod) {
            self.state.lock().forget_pending(key);
            return Ok(Action::Done);
        }
        let uid = pod_uid(pod).to_string();
        let info = PodInfo::new(pod);
        let outcome = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            if st.cache.is_placed(key, &uid) {
                // Our bind of it is in flight or not visible yet.
                return Ok(Action::Done);
            }
            match algorithm::schedule(&mut st.cache, pod, &info, &mut st.rng) {
                Ok(node) => {
                    st.cache.assume(key, &uid, &node, info);
                    st.forget_pending(key);
                    Outcome::Bind(node)
                }
                Err(diagnosis) => {
                    let message = diagnosis.message();
                    st.parked.insert(key.to_string());
                    let f = st.failures.entry(key.to_string()).or_default();
                    let now = Instant::now();
                    f.attempts += 1;
                    f.retry_at = Some(now + retry_backoff(f.attempts));
                    Outcome::Unschedulable {
                        event: f.event_due(&message, now),
                        attempts: f.attempts,
                        message,
                    }
                }
            }
        };
        match outcome {
            Outcome::Bind(node) => {
                tracing::debug!(pod = key, node = %node, "scheduled");
                let job = Job::Bind {
                    key: key.to_string(),
                    pod: obj.clone(),
                    node,
                };
                if self.jobs.send(job).await.is_err() {
                    return Err(ApiError::Unavailable("the scheduler is stopping".into()));
                }
                Ok(Action::Done)
            }
            Outcome::Unschedulable {
                message,
                attempts,
                event,
            } => {
                tracing::debug!(pod = key, attempts, reason = %message, "unschedulable");
                if event {
                    self.recorder
                        .record(&obj, WARNING, "FailedScheduling", &message);
                }
                if let Some(update) = unschedulable_update(&obj, &message, &now()) {
                    let _ = self.jobs.send(Job::Status(Box::new(update))).await;
                }
                // Parked: retried on a cluster change or the next resync.
                Ok(Action::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(retry_backoff(0), Duration::from_secs(1));
        assert_eq!(retry_backoff(1), Duration::from_secs(1));
        assert_eq!(retry_backoff(2), Duration::from_secs(2));
        assert_eq!(retry_backoff(4), Duration::from_secs(8));
        assert_eq!(retry_backoff(5), RETRY_MAX);
        assert_eq!(retry_backoff(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn events_repeat_only_on_change_or_after_a_while() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        assert!(f.event_due("a", t0));
        assert!(!f.event_due("a", t0 + Duration::from_secs(1)));
        assert!(f.event_due("b", t0 + Duration::from_secs(2)));
        assert!(!f.event_due("b", t0 + Duration::from_secs(3)));
        assert!(f.event_due("b", t0 + Duration::from_secs(2) + EVENT_REPEAT));
    }
}
