//! The binder: runs the scheduler's writes — binds, and PodScheduled
//! condition updates — concurrently (up to [`MAX_IN_FLIGHT`]), off the
//! scheduling loop, so one Raft round trip per pod does not cap the rate.
//!
//! All of it runs inside one task spawned through the informers, so losing
//! leadership cancels every write in flight. A full queue of jobs makes the
//! scheduling loop wait (back-pressure).
//!
//! A bind that succeeds records `Scheduled` (`Successfully assigned ns/pod
//! to node`) and leaves the pod assumed until the informer shows it. A bind
//! answered Conflict (already bound, replaced, being deleted) or NotFound
//! is dropped; any other error retries the pod with back-off. Either way
//! the assumption is forgotten, and parked pods are retried since room was
//! freed.

use super::runner::{Job, Scheduler};
use crate::controllers::events::NORMAL;
use crate::handlers::ApiError;
use futures::stream::{FuturesUnordered, StreamExt};
use rkube_api::Object;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Writes in flight at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// Jobs queued before the scheduling loop waits.
pub const QUEUE_CAPACITY: usize = 1024;

/// Runs jobs from `rx` until it closes.
pub(crate) async fn run(sched: Arc<Scheduler>, mut rx: mpsc::Receiver<Job>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            job = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => match job {
                Some(job) => in_flight.push(sched.clone().run_job(job)),
                None => break,
            },
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

impl Scheduler {
    async fn run_job(self: Arc<Self>, job: Job) {
        match job {
            Job::Bind { key, pod, node } => self.bind(&key, &pod, &node).await,
            Job::Status(obj) => {
                if let Err(e) = self.handlers.update(*obj, true, false).await {
                    // A conflict means the pod changed (maybe bound): the
                    // next attempt looks again.
                    tracing::debug!(error = %e, "updating PodScheduled failed");
                }
            }
        }
    }

    async fn bind(&self, key: &str, pod: &Object, node: &str) {
        let (ns, name) = (pod.namespace(), pod.name());
        let uid = pod.metadata().map(|m| m.uid.as_str()).unwrap_or("");
        match self.handlers.bind(ns, name, node, uid).await {
            Ok(bound) => {
                self.state.lock().cache.finish_binding(key, uid);
                self.recorder.record(
                    &bound,
                    NORMAL,
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{name} to {node}"),
                );
            }
            Err(e) => {
                let freed = self.state.lock().cache.forget(key, uid);
                match e {
                    ApiError::Conflict(_) | ApiError::NotFound(_) => {
                        tracing::debug!(pod = key, node, error = %e, "bind refused; dropping");
                    }
                    _ => {
                        tracing::debug!(pod = key, node, error = %e, "bind failed; retrying");
                        self.queue.add_rate_limited(key);
                    }
                }
                if freed {
                    self.wake_parked();
                }
            }
        }
    }
}
