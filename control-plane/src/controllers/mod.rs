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
    /// Which of the scheduler and controllers run (`--controllers`).
    pub enabled: Enabled,
}

type Start = fn(&Informers, &ControllerConfig);

/// The leader-only loops, by the name `--controllers` uses.
const LOOPS: [(&str, Start); 8] = [
    ("scheduler", crate::scheduler::start),
    ("replication", replication::start),
    ("daemonset", daemonset::start),
    ("nodelifecycle", node_lifecycle::start),
    ("endpoint", endpoints::start),
    ("garbagecollector", gc::start),
    ("podgc", podgc::start),
    ("loadbalancer", loadbalancer::start),
];

fn names() -> impl Iterator<Item = &'static str> {
    LOOPS.iter().map(|(n, _)| *n)
}

/// The set of loops that run, parsed from kube-controller-manager's
/// `--controllers` syntax: a comma-separated list where `*` means every
/// loop, `NAME` enables one and `-NAME` disables one (`*,-scheduler`).
/// An empty list runs none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enabled(Vec<&'static str>);

impl Enabled {
    pub fn all() -> Self {
        Enabled(names().collect())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(&name)
    }
}

impl std::str::FromStr for Enabled {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut star = false;
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                star = true;
                continue;
            }
            let (list, name) = match item.strip_prefix('-') {
                Some(n) => (&mut off, n),
                None => (&mut on, item),
            };
            let known = names().find(|k| *k == name).ok_or_else(|| {
                format!(
                    "--controllers: unknown controller {name:?}; known: *, {}",
                    names().collect::<Vec<_>>().join(", ")
                )
            })?;
            list.push(known);
        }
        if let Some(both) = on.iter().find(|n| off.contains(n)) {
            return Err(format!(
                "--controllers: {both:?} is both enabled and disabled"
            ));
        }
        Ok(Enabled(
            names()
                .filter(|n| (star || on.contains(n)) && !off.contains(n))
                .collect(),
        ))
    }
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
            enabled: Enabled::all(),
        }
    }
}

/// Starts the scheduler and every controller on shared informers; runs
/// until aborted (leadership lost), which stops all of them.
pub async fn run_all(handlers: Handlers, cfg: ControllerConfig) {
    let informers = Informers::new(handlers);
    for (name, start) in LOOPS {
        if cfg.enabled.contains(name) {
            start(&informers, &cfg);
        } else {
            tracing::warn!(controller = name, "disabled by --controllers");
        }
    }
    tracing::info!(enabled = ?cfg.enabled, "scheduler and controllers started");
    informers.run_forever().await
}

#[cfg(test)]
mod enabled_tests {
    use super::*;

    #[test]
    fn controllers_flag_syntax() {
        assert_eq!("*".parse::<Enabled>().unwrap(), Enabled::all());
        let e: Enabled = "*,-scheduler".parse().unwrap();
        assert!(!e.contains("scheduler") && e.contains("podgc"));
        let e: Enabled = "endpoint, podgc".parse().unwrap();
        assert!(e.contains("endpoint") && e.contains("podgc") && !e.contains("replication"));
        let none: Enabled = "".parse().unwrap();
        assert!(names().all(|n| !none.contains(n)));
        let err = "*,-schedular".parse::<Enabled>().unwrap_err();
        assert!(
            err.contains("\"schedular\"") && err.contains("scheduler"),
            "{err}"
        );
        let err = "podgc,-podgc".parse::<Enabled>().unwrap_err();
        assert!(err.contains("both"), "{err}");
    }
}
