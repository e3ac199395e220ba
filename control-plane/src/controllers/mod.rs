//! Controllers and the scheduler: leader-only work built on informers and
//! work queues.
//!
//! - [`informer`]: list+watch caches shared by all controllers of a term.
//! - [`workqueue`]: per-key queues with dedup and back-off.
//! - [`events`]: Event recording.
//! - [`run_workers`]: the loop that feeds a queue's keys to a `Reconcile`.

pub mod daemonset;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod informer;
pub mod loadbalancer;
pub mod node_lifecycle;
pub mod podgc;
pub mod replication;
pub mod workqueue;

use crate::handlers::{ApiError, Handlers};
use informer::{Informers, Notice};
use std::sync::Arc;
use std::time::Duration;
use workqueue::WorkQueue;

/// What to do with a key after reconciling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Done until something changes (or the next resync).
    Done,
    /// Look again after this long (e.g. a deadline is pending).
    RequeueAfter(Duration),
}

/// A controller: brings one object (by key) toward its desired state, reading
/// informer caches and writing through the API handlers. Must be idempotent.
#[tonic::async_trait]
pub trait Reconcile: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn reconcile(&self, key: &str) -> Result<Action, ApiError>;
}

/// Runs `workers` loops taking keys from `queue` into `r`. Errors requeue
/// with back-off; success forgets the key's failures.
pub fn run_workers<R: Reconcile>(
    informers: &Informers,
    r: Arc<R>,
    queue: Arc<WorkQueue>,
    workers: usize,
) {
    for _ in 0..workers.max(1) {
        let (r, queue) = (r.clone(), queue.clone());
        informers.spawn(async move {
            while let Some(key) = queue.get().await {
                let span = tracing::debug_span!("reconcile", controller = r.name(), key = %key);
                let _enter = span.enter();
                drop(_enter);
                match r.reconcile(&key).await {
                    Ok(Action::Done) => queue.forget(&key),
                    Ok(Action::RequeueAfter(d)) => {
                        queue.forget(&key);
                        queue.add_after(&key, d);
                    }
                    Err(e) => {
                        tracing::debug!(controller = r.name(), key = %key, error = %e, "reconcile failed; retrying");
                        queue.add_rate_limited(&key);
                    }
                }
                queue.done(&key);
            }
        });
    }
}

/// Feeds a queue from informer notices: `map` turns each notice into the
/// keys to reconcile; a resync (or lag) enqueues `all()`. Also resyncs every
/// `resync` period, so a missed event is repaired.
pub fn feed<M, A>(
    informers: &Informers,
    sources: &[rkube_api::kinds::Kind],
    queue: Arc<WorkQueue>,
    resync: Duration,
    map: M,
    all: A,
) where
    M: Fn(&Notice) -> Vec<String> + Send + Sync + 'static,
    A: Fn() -> Vec<String> + Send + Sync + 'static,
{
    let map = Arc::new(map);
    let all = Arc::new(all);
    for kind in sources {
        let mut rx = informers.get(*kind).subscribe();
        let (q, map, all) = (queue.clone(), map.clone(), all.clone());
        informers.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(n) => {
                        let keys = match &n {
                            Notice::Resync(_) => all(),
                            _ => map(&n),
                        };
                        for k in keys {
                            q.add(&k);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for k in all() {
                            q.add(&k);
                        }
                    }
                    Err(_) => return,
                }
            }
        });
    }
    let q = queue.clone();
    informers.spawn(async move {
        let mut tick = tokio::time::interval(resync);
        tick.tick().await;
        loop {
            tick.tick().await;
            for k in all() {
                q.add(&k);
            }
        }
    });
}

/// Knobs of the controllers and the scheduler (flags of control-plane).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// How long a node's lease may go unrenewed before the node is marked
    /// NotReady/Unknown and tainted unreachable (Kubernetes: 40 s).
    pub node_monitor_grace: Duration,
    /// Default tolerationSeconds for pods on an unreachable or not-ready
    /// node before they are evicted (Kubernetes: 300 s).
    pub pod_eviction_timeout: Duration,
    /// How often every controller re-examines every object.
    pub resync: Duration,
    /// Workers per controller.
    pub workers: usize,
    /// How long a pod bound to a node that does not exist is left alone
    /// before the pod garbage collector deletes it (Kubernetes: 40 s).
    pub orphan_quarantine: Duration,
    /// Addresses for LoadBalancer Services (`--lb-pool`); `None`: they
    /// stay pending.
    pub lb_pool: Option<loadbalancer::LbPool>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            node_monitor_grace: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
            resync: Duration::from_secs(30),
            workers: 4,
            orphan_quarantine: Duration::from_secs(40),
            lb_pool: None,
        }
    }
}

/// Starts the scheduler and every controller on shared informers; runs
/// until aborted (leadership lost), which stops all of them.
pub async fn run_all(handlers: Handlers, cfg: ControllerConfig) {
    let informers = Informers::new(handlers);
    crate::scheduler::start(&informers, &cfg);
    replication::start(&informers, &cfg);
    daemonset::start(&informers, &cfg);
    node_lifecycle::start(&informers, &cfg);
    endpoints::start(&informers, &cfg);
    gc::start(&informers, &cfg);
    podgc::start(&informers, &cfg);
    loadbalancer::start(&informers, &cfg);
    tracing::info!("scheduler and controllers started");
    informers.run_forever().await
}
