//! Node lifecycle controller: node health from heartbeats, the
//! `unreachable` / `not-ready` taints, taint-based eviction, and clean-up
//! after deleted nodes.
//!
//! **Heartbeats.** A node is heard from when its Lease
//! `kube-node-lease/<node>` is renewed (`spec.renewTime`) or when it posts a
//! Ready condition with a newer `lastHeartbeatTime`; its *last heartbeat* is
//! the later of the two. Remote timestamps are never compared with this
//! replica's clock: the controller remembers, by its own monotonic clock,
//! when it last saw the last heartbeat *advance* ([`HealthTracker`]). A node
//! seen for the first time (every node, when a new leader starts this
//! controller) counts as heard from at that moment, so a new leader gives
//! every node a full `--node-monitor-grace-period` before judging it.
//!
//! **Health.** With no heartbeat change for the grace period, every node
//! condition becomes `Unknown` (reason `NodeStatusUnknown`), a Warning
//! `NodeNotReady` event is recorded and the node is tainted
//! `node.kubernetes.io/unreachable` (NoSchedule and NoExecute). Otherwise the
//! taints follow the node's own Ready condition: `False` taints
//! `node.kubernetes.io/not-ready`, `Unknown` taints `unreachable`, `True`
//! removes both (event `NodeReady`). A node that never reported a Ready
//! condition keeps its taints until it goes stale.
//!
//! **Eviction.** Every pod bound to a node with NoExecute taints is deleted
//! once a taint it does not tolerate appears, or when the shortest
//! `tolerationSeconds` of the tolerations it uses runs out (counted from the
//! taint's `timeAdded`). Kubernetes' admission gives pods a 300 s toleration
//! for `unreachable` and `not-ready`; we emulate it: a pod with no toleration
//! for one of those two taints tolerates it for `--pod-eviction-timeout`.
//! DaemonSet pods tolerate both forever and are never evicted. Eviction is
//! a graceful deletion (the pod's own grace period): the pod only gets a
//! deletionTimestamp, and its node's agent finishes it, or, when the node is
//! dead, the pod garbage collector (`podgc.rs`) force-deletes it once the
//! grace period has passed.
//!
//! **Deleted nodes.** When a Node is deleted, the pods bound to it are
//! force-deleted (grace 0: no agent will confirm them) and its Lease is
//! deleted. Pods bound to a node this controller never saw are cleaned up
//! only after that node has stayed absent for the grace period and a quorum
//! read confirms it (a kubelet may register late).
//!
//! The decisions are pure functions ([`last_heartbeat`], [`HealthTracker`],
//! [`mark_unknown`], [`desired_taints`], [`eviction_time`], [`tolerates`]);
//! the reconciler only reads caches and writes through the handlers.

use super::events::{EventRecorder, NORMAL, WARNING};
use super::informer::{Informer, Informers, Notice};
use super::workqueue::WorkQueue;
use super::{feed, run_workers, Action, ControllerConfig, Reconcile};
use crate::handlers::{now, ApiError, Handlers};
use chrono::{DateTime, Utc};
use rkube_api::kinds::Kind;
use rkube_api::proto::{
    object::Kind as Body, Lease, Node, NodeCondition, NodeStatus, Preconditions, Taint, Toleration,
};
use rkube_api::Object;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Taint of a node whose heartbeats stopped (Ready=Unknown).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint of a node that reports Ready=False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";
/// Where nodes keep their heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
pub const REASON_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_STATUS_UNKNOWN: &str = "Kubelet stopped posting node status.";
/// For a Ready condition the node never posted (as Kubernetes words it).
pub const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
pub const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

const COMPONENT: &str = "node-controller";
/// How long an evicted pod's uid is remembered (so a slow cache does not
/// make us delete and announce it twice).
const EVICTED_MEMORY: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------- tolerations

/// Whether `tol` tolerates `taint`, as Kubernetes matches them: an empty
/// effect matches every effect, an empty key with `Exists` matches every
/// key, `Exists` ignores the value and `Equal` (or no operator) compares it.
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if !tol.effect.is_empty() && tol.effect != taint.effect {
        return false;
    }
    if !tol.key.is_empty() && tol.key != taint.key {
        return false;
    }
    match tol.operator.as_str() {
        "Exists" => true,
        "" | "Equal" => tol.value == taint.value,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

// ---------------------------------------------------------------- heartbeats

/// Parses an RFC 3339 timestamp (with or without fractional seconds).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The node's Ready condition, if it posted one.
pub fn ready_condition(status: Option<&NodeStatus>) -> Option<&NodeCondition> {
    status.and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
}

/// The node's last heartbeat as the node itself stamped it: the later of its
/// Lease's renewTime and its Ready condition's lastHeartbeatTime.
pub fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<DateTime<Utc>> {
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| parse_time(&s.renew_time));
    let posted =
        ready_condition(node.status.as_ref()).and_then(|c| parse_time(&c.last_heartbeat_time));
    renewed.max(posted)
}

/// What this controller has seen of one node.
#[derive(Clone, Debug)]
struct Observed {
    uid: String,
    heartbeat: Option<DateTime<Utc>>,
    /// Local (monotonic) time at which `heartbeat` last advanced, or at which
    /// the node was first seen.
    at: Instant,
}

/// Tracks, by the local clock, when each node's heartbeat last advanced.
#[derive(Default, Debug)]
pub struct HealthTracker {
    nodes: HashMap<String, Observed>,
}

impl HealthTracker {
    /// Records the heartbeat node `name` (object `uid`) shows at `now`, and
    /// returns when (local clock) it was last heard from. A node seen for the
    /// first time, or recreated under a new uid, counts as heard from `now`;
    /// after that only a *later* heartbeat counts.
    pub fn observe(
        &mut self,
        name: &str,
        uid: &str,
        heartbeat: Option<DateTime<Utc>>,
        now: Instant,
    ) -> Instant {
        match self.nodes.get_mut(name) {
            Some(o) if o.uid == uid => {
                if heartbeat > o.heartbeat {
                    o.heartbeat = heartbeat;
                    o.at = now;
                }
                o.at
            }
            _ => {
                self.nodes.insert(
                    name.to_string(),
                    Observed {
                        uid: uid.to_string(),
                        heartbeat,
                        at: now,
                    },
                );
                now
            }
        }
    }

    /// Whether the node has been seen (and not forgotten).
    pub fn knows(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    pub fn forget(&mut self, name: &str) {
        self.nodes.remove(name);
    }
}

/// Whether a node last heard from at `heard` is past its grace period.
pub fn is_stale(heard: Instant, now: Instant, grace: Duration) -> bool {
    now.saturating_duration_since(heard) > grace
}

// ---------------------------------------------------------------- health

/// A node's readiness as the taints should reflect it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady,
    Unknown,
    /// No Ready condition yet (and not stale): leave the taints alone.
    NotReported,
}

/// Readiness from the node's Ready condition.
pub fn reported_readiness(status: Option<&NodeStatus>) -> Readiness {
    match ready_condition(status).map(|c| c.status.as_str()) {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::NotReady,
        Some(_) => Readiness::Unknown,
        None => Readiness::NotReported,
    }
}

/// Marks every condition `Unknown` (a missing Ready condition is added), as
/// the controller does when a node stops heartbeating. Returns whether
/// anything changed; conditions already `Unknown` are left as they are, so
/// repeating this writes nothing.
pub fn mark_unknown(status: &mut NodeStatus, now: &str) -> bool {
    let mut changed = false;
    if !status.conditions.iter().any(|c| c.r#type == "Ready") {
        status.conditions.push(NodeCondition {
            r#type: "Ready".into(),
            status: "Unknown".into(),
            last_heartbeat_time: String::new(),
            last_transition_time: now.into(),
            reason: REASON_NEVER_UPDATED.into(),
            message: MESSAGE_NEVER_UPDATED.into(),
        });
        changed = true;
    }
    for c in &mut status.conditions {
        if c.status != "Unknown" {
            c.status = "Unknown".into();
            c.reason = REASON_STATUS_UNKNOWN.into();
            c.message = MESSAGE_STATUS_UNKNOWN.into();
            c.last_transition_time = now.into();
            changed = true;
        }
    }
    changed
}

fn managed_taint(t: &Taint) -> bool {
    (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY)
        && (t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE)
}

/// The taints a node should carry for `readiness`, or `None` when its
/// current taints are already right. Only the NoSchedule and NoExecute
/// `unreachable` / `not-ready` taints are managed; others are kept as they
/// are, and a managed taint that stays keeps its `timeAdded`.
pub fn desired_taints(current: &[Taint], readiness: Readiness, now: &str) -> Option<Vec<Taint>> {
    let wanted = match readiness {
        Readiness::Ready => None,
        Readiness::NotReady => Some(TAINT_NOT_READY),
        Readiness::Unknown => Some(TAINT_UNREACHABLE),
        Readiness::NotReported => return None,
    };
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed_taint(t) || Some(t.key.as_str()) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in [NO_SCHEDULE, NO_EXECUTE] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.into(),
                    value: String::new(),
                    effect: effect.into(),
                    time_added: now.into(),
                });
            }
        }
    }
    (out != current).then_some(out)
}

// ---------------------------------------------------------------- eviction

/// When a pod with `tolerations` must leave a node with `taints`: `None`
/// never; otherwise the moment (in the past means now). Only NoExecute
/// taints count. For each, the pod is allowed the shortest
/// `tolerationSeconds` among the tolerations matching it (forever if none of
/// them sets one); a taint nothing tolerates allows nothing, except
/// `unreachable` and `not-ready`, which allow `default_timeout` (the
/// toleration Kubernetes' admission would have added). `added_at` tells when
/// each taint appeared.
pub fn eviction_time(
    taints: &[Taint],
    tolerations: &[Toleration],
    default_timeout: Duration,
    added_at: impl Fn(&Taint) -> DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let default = chrono::Duration::from_std(default_timeout).unwrap_or(chrono::Duration::MAX);
    let mut earliest: Option<DateTime<Utc>> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let mut matching = tolerations
            .iter()
            .filter(|t| tolerates(t, taint))
            .peekable();
        let allowed = if matching.peek().is_none() {
            if taint.key == TAINT_UNREACHABLE || taint.key == TAINT_NOT_READY {
                Some(default)
            } else {
                Some(chrono::Duration::zero())
            }
        } else {
            matching
                .filter_map(|t| t.toleration_seconds)
                .min()
                .map(|s| chrono::Duration::seconds(s.max(0)))
        };
        if let Some(allowed) = allowed {
            let at = added_at(taint)
                .checked_add_signed(allowed)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    earliest
}

// ---------------------------------------------------------------- controller

#[derive(Default)]
struct State {
    health: HealthTracker,
    /// Nodes named by pods or leases but absent, since when (local clock).
    missing_since: HashMap<String, Instant>,
    /// (node, taint key, effect) → when first seen, for taints without a
    /// (parsable) timeAdded.
    taint_seen: HashMap<(String, String, String), DateTime<Utc>>,
    /// Pods evicted recently, by uid.
    evicted: HashMap<String, Instant>,
    /// The earliest pending wake-up per node (so requeues do not pile up).
    wake: HashMap<String, Instant>,
}

struct NodeLifecycle {
    handlers: Handlers,
    nodes: Arc<Informer>,
    leases: Arc<Informer>,
    pods: Arc<Informer>,
    recorder: EventRecorder,
    grace: Duration,
    eviction_timeout: Duration,
    state: parking_lot::Mutex<State>,
}

fn as_node(o: &Object) -> Option<&Node> {
    match o.kind.as_ref() {
        Some(Body::Node(n)) => Some(n),
        _ => None,
    }
}

fn node_taints(o: &Object) -> Vec<Taint> {
    as_node(o)
        .and_then(|n| n.spec.as_ref())
        .map(|s| s.taints.clone())
        .unwrap_or_default()
}

fn has_no_execute(o: &Object) -> bool {
    as_node(o)
        .and_then(|n| n.spec.as_ref())
        .is_some_and(|s| s.taints.iter().any(|t| t.effect == NO_EXECUTE))
}

/// The node a pod is bound to, if any.
fn bound_node(o: &Object) -> Option<&str> {
    match o.kind.as_ref() {
        Some(Body::Pod(p)) => p
            .spec
            .as_ref()
            .map(|s| s.node_name.as_str())
            .filter(|n| !n.is_empty()),
        _ => None,
    }
}

fn is_terminating(o: &Object) -> bool {
    o.metadata()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

fn uid_of(o: &Object) -> String {
    o.metadata().map(|m| m.uid.clone()).unwrap_or_default()
}

fn gone_ok(r: Result<Object, ApiError>) -> Result<bool, ApiError> {
    match r {
        Ok(_) => Ok(true),
        // Already gone, or replaced by another object of that name.
        Err(ApiError::NotFound(_)) | Err(ApiError::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

impl NodeLifecycle {
    async fn wait_synced(&self) {
        self.nodes.wait_synced().await;
        self.leases.wait_synced().await;
        self.pods.wait_synced().await;
    }

    /// Asks to be woken for `name` after `after`, unless an earlier wake-up
    /// is already pending.
    fn wake_after(&self, name: &str, after: Option<Duration>, now: Instant) -> Action {
        let Some(after) = after else {
            return Action::Done;
        };
        let at = now + after;
        let mut st = self.state.lock();
        match st.wake.get(name) {
            Some(&w) if w > now && w <= at => Action::Done,
            _ => {
                st.wake.insert(name.to_string(), at);
                Action::RequeueAfter(after)
            }
        }
    }

    async fn monitor(&self, name: &str, obj: Arc<Object>) -> Result<Action, ApiError> {
        let Some(node) = as_node(&obj) else {
            return Ok(Action::Done);
        };
        let uid = uid_of(&obj);
        let lease = self.leases.get(NODE_LEASE_NAMESPACE, name);
        let lease = lease.as_deref().and_then(|o| match o.kind.as_ref() {
            Some(Body::Lease(l)) => Some(l),
            _ => None,
        });
        let heartbeat = last_heartbeat(node, lease);
        let now_i = Instant::now();
        let heard = {
            let mut st = self.state.lock();
            st.missing_since.remove(name);
            st.health.observe(name, &uid, heartbeat, now_i)
        };
        let stale = is_stale(heard, now_i, self.grace);
        let ts = now();
        let mut cur: Object = (*obj).clone();
        let mut announced = false;
        if stale {
            let mut status = node.status.clone().unwrap_or_default();
            if mark_unknown(&mut status, &ts) {
                let mut upd = cur.clone();
                if let Some(Body::Node(n)) = upd.kind.as_mut() {
                    n.status = Some(status);
                }
                cur = self.handlers.update(upd, true, false).await?;
                tracing::info!(node = name, "node stopped heartbeating: Ready=Unknown");
                self.recorder.record(
                    &cur,
                    WARNING,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                );
                announced = true;
            }
        }
        let readiness = if stale {
            Readiness::Unknown
        } else {
            reported_readiness(as_node(&cur).and_then(|n| n.status.as_ref()))
        };
        if let Some(taints) = desired_taints(&node_taints(&cur), readiness, &ts) {
            let mut upd = cur.clone();
            if let Some(Body::Node(n)) = upd.kind.as_mut() {
                n.spec.get_or_insert_with(Default::default).taints = taints;
            }
            cur = self.handlers.update(upd, false, false).await?;
            tracing::info!(node = name, ?readiness, "node taints updated");
            match readiness {
                Readiness::Ready => self.recorder.record(
                    &cur,
                    NORMAL,
                    "NodeReady",
                    &format!("Node {name} status is now: NodeReady"),
                ),
                Readiness::NotReady | Readiness::Unknown if !announced => self.recorder.record(
                    &cur,
                    WARNING,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                ),
                _ => {}
            }
        }
        let mut next = self.evict(name, &cur).await?;
        if !stale {
            // Look again just after the grace period would run out.
            let left = self
                .grace
                .saturating_sub(now_i.saturating_duration_since(heard))
                + Duration::from_millis(10);
            next = Some(next.map_or(left, |n| n.min(left)));
        }
        Ok(self.wake_after(name, next, now_i))
    }

    /// Deletes the pods on `node` whose time is up; returns how long until
    /// the next one's.
    async fn evict(&self, name: &str, node: &Object) -> Result<Option<Duration>, ApiError> {
        let taints: Vec<Taint> = node_taints(node)
            .into_iter()
            .filter(|t| t.effect == NO_EXECUTE)
            .collect();
        let now_w = Utc::now();
        let added: HashMap<(String, String), DateTime<Utc>> = {
            let mut st = self.state.lock();
            st.taint_seen.retain(|(n, k, e), _| {
                n != name || taints.iter().any(|t| &t.key == k && &t.effect == e)
            });
            taints
                .iter()
                .map(|t| {
                    let at = parse_time(&t.time_added).unwrap_or_else(|| {
                        *st.taint_seen
                            .entry((name.to_string(), t.key.clone(), t.effect.clone()))
                            .or_insert(now_w)
                    });
                    ((t.key.clone(), t.effect.clone()), at)
                })
                .collect()
        };
        if taints.is_empty() {
            return Ok(None);
        }
        let added_at = |t: &Taint| {
            added
                .get(&(t.key.clone(), t.effect.clone()))
                .copied()
                .unwrap_or(now_w)
        };
        let mut next: Option<Duration> = None;
        let mut first_err = None;
        for pod_obj in self.pods.list() {
            let Some(Body::Pod(pod)) = pod_obj.kind.as_ref() else {
                continue;
            };
            if bound_node(&pod_obj) != Some(name) || is_terminating(&pod_obj) {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .map(|s| s.tolerations.as_slice())
                .unwrap_or(&[]);
            let Some(at) = eviction_time(&taints, tolerations, self.eviction_timeout, added_at)
            else {
                continue;
            };
            if at > now_w {
                let left = (at - now_w).to_std().unwrap_or_default() + Duration::from_millis(10);
                next = Some(next.map_or(left, |n| n.min(left)));
                continue;
            }
            let uid = uid_of(&pod_obj);
            {
                let mut st = self.state.lock();
                let now_i = Instant::now();
                st.evicted
                    .retain(|_, t| now_i.saturating_duration_since(*t) < EVICTED_MEMORY);
                if st.evicted.contains_key(&uid) {
                    continue;
                }
            }
            let (ns, pod_name) = (pod_obj.namespace().to_string(), pod_obj.name().to_string());
            let r = self
                .handlers
                .delete(
                    "Pod",
                    &ns,
                    &pod_name,
                    "",
                    Some(Preconditions {
                        uid: uid.clone(),
                        resource_version: String::new(),
                    }),
                )
                .await;
            match gone_ok(r) {
                Ok(true) => {
                    tracing::info!(node = name, pod = %format!("{ns}/{pod_name}"), "taint-based eviction");
                    self.recorder.record(
                        &pod_obj,
                        NORMAL,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {ns}/{pod_name}"),
                    );
                    self.state.lock().evicted.insert(uid, Instant::now());
                }
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(next),
        }
    }

    /// The node is not in the cache: if it was deleted (or never existed
    /// for a grace period), delete the pods bound to it and its Lease.
    async fn node_gone(&self, name: &str) -> Result<Action, ApiError> {
        let now_i = Instant::now();
        let wait = {
            let mut st = self.state.lock();
            if st.health.knows(name) {
                None
            } else {
                let since = *st.missing_since.entry(name.to_string()).or_insert(now_i);
                let waited = now_i.saturating_duration_since(since);
                (waited < self.grace).then(|| self.grace - waited + Duration::from_millis(10))
            }
        };
        if wait.is_some() {
            return Ok(self.wake_after(name, wait, now_i));
        }
        // The cache may be behind: confirm with a linearizable read.
        match self.handlers.get("Node", "", name, "").await {
            Ok(_) => return Ok(Action::Done),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let mut first_err = None;
        for pod_obj in self.pods.list() {
            // Terminating ones too: with the node gone, nobody else will
            // finish their deletion.
            if bound_node(&pod_obj) != Some(name) {
                continue;
            }
            let r = self
                .handlers
                .delete_with_grace(
                    "Pod",
                    pod_obj.namespace(),
                    pod_obj.name(),
                    "",
                    Some(Preconditions {
                        uid: uid_of(&pod_obj),
                        resource_version: String::new(),
                    }),
                    Some(0),
                )
                .await;
            match gone_ok(r) {
                Ok(true) => tracing::info!(
                    node = name,
                    pod = %format!("{}/{}", pod_obj.namespace(), pod_obj.name()),
                    "deleted a pod bound to a deleted node"
                ),
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Err(e) = gone_ok(
            self.handlers
                .delete("Lease", NODE_LEASE_NAMESPACE, name, "", None)
                .await,
        ) {
            first_err.get_or_insert(e);
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let mut st = self.state.lock();
        st.health.forget(name);
        st.missing_since.remove(name);
        st.wake.remove(name);
        st.taint_seen.retain(|(n, _, _), _| n != name);
        Ok(Action::Done)
    }
}

#[tonic::async_trait]
impl Reconcile for NodeLifecycle {
    fn name(&self) -> &'static str {
        "node-lifecycle"
    }

    async fn reconcile(&self, key: &str) -> Result<Action, ApiError> {
        self.wait_synced().await;
        match self.nodes.get_key(key) {
            Some(obj) => self.monitor(key, obj).await,
            None => self.node_gone(key).await,
        }
    }
}

/// How often every node is examined: a quarter of the grace period, at
/// most a second.
pub fn monitor_period(grace: Duration) -> Duration {
    (grace / 4)
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(10))
}

/// Starts this controller on `informers`.
pub fn start(informers: &Informers, cfg: &ControllerConfig) {
    let nodes = informers.get(Kind::Node);
    let leases = informers.get(Kind::Lease);
    let pods = informers.get(Kind::Pod);
    let handlers = informers.handlers().clone();
    let ctrl = Arc::new(NodeLifecycle {
        recorder: EventRecorder::new(handlers.clone(), COMPONENT),
        handlers,
        nodes: nodes.clone(),
        leases: leases.clone(),
        pods: pods.clone(),
        grace: cfg.node_monitor_grace,
        eviction_timeout: cfg.pod_eviction_timeout,
        state: Default::default(),
    });
    let queue = WorkQueue::new();

    let map = {
        let nodes = nodes.clone();
        move |n: &Notice| -> Vec<String> {
            let Notice::Changed {
                kind, new, deleted, ..
            } = n
            else {
                return Vec::new();
            };
            match kind {
                Kind::Node => vec![new.name().to_string()],
                Kind::Lease if new.namespace() == NODE_LEASE_NAMESPACE => {
                    vec![new.name().to_string()]
                }
                Kind::Pod if !*deleted => match bound_node(new) {
                    // Only pods that may need evicting or collecting.
                    Some(node) => match nodes.get_key(node) {
                        None => vec![node.to_string()],
                        Some(n) if has_no_execute(&n) => vec![node.to_string()],
                        Some(_) => Vec::new(),
                    },
                    None => Vec::new(),
                },
                _ => Vec::new(),
            }
        }
    };
    let all = {
        let (nodes, pods) = (nodes.clone(), pods.clone());
        move || -> Vec<String> {
            let mut keys: BTreeSet<String> = nodes.keys().into_iter().collect();
            for p in pods.list() {
                if let Some(n) = bound_node(&p) {
                    if !keys.contains(n) {
                        keys.insert(n.to_string());
                    }
                }
            }
            keys.into_iter().collect()
        }
    };
    feed(
        informers,
        &[Kind::Node, Kind::Lease, Kind::Pod],
        queue.clone(),
        cfg.resync,
        map,
        all,
    );

    // The monitor pass: every node, every period.
    let period = monitor_period(cfg.node_monitor_grace);
    let q = queue.clone();
    informers.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for k in nodes.keys() {
                q.add(&k);
            }
        }
    });
    run_workers(informers, ctrl, queue, cfg.workers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{LeaseSpec, NodeSpec, ObjectMeta};

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn taint(key: &str, effect: &str, added: &str) -> Taint {
        Taint {
            key: key.into(),
            value: String::new(),
            effect: effect.into(),
            time_added: added.into(),
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
            toleration_seconds: secs,
        }
    }

    fn node_with(conditions: Vec<NodeCondition>) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: "wn1".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cond(ty: &str, status: &str, heartbeat: &str) -> NodeCondition {
        NodeCondition {
            r#type: ty.into(),
            status: status.into(),
            last_heartbeat_time: heartbeat.into(),
            last_transition_time: "2024-01-01T00:00:00Z".into(),
            reason: "KubeletReady".into(),
            message: "kubelet is posting ready status".into(),
        }
    }

    fn lease(renew: &str) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: renew.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn toleration_matching() {
        let unreachable = taint(TAINT_UNREACHABLE, NO_EXECUTE, "");
        let dedicated = Taint {
            value: "gpu".into(),
            ..taint("dedicated", NO_SCHEDULE, "")
        };
        assert!(tolerates(
            &tol(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, None),
            &unreachable
        ));
        // Empty effect matches every effect; empty key + Exists everything.
        assert!(tolerates(
            &tol(TAINT_UNREACHABLE, "Exists", "", "", None),
            &unreachable
        ));
        assert!(tolerates(&tol("", "Exists", "", "", None), &unreachable));
        assert!(tolerates(&tol("", "Exists", "", "", None), &dedicated));
        // Wrong effect or key.
        assert!(!tolerates(
            &tol(TAINT_UNREACHABLE, "Exists", "", NO_SCHEDULE, None),
            &unreachable
        ));
        assert!(!tolerates(
            &tol(TAINT_NOT_READY, "Exists", "", NO_EXECUTE, None),
            &unreachable
        ));
        // Equal compares the value; no operator means Equal.
        assert!(tolerates(
            &tol("dedicated", "Equal", "gpu", NO_SCHEDULE, None),
            &dedicated
        ));
        assert!(tolerates(
            &tol("dedicated", "", "gpu", "", None),
            &dedicated
        ));
        assert!(!tolerates(
            &tol("dedicated", "Equal", "cpu", NO_SCHEDULE, None),
            &dedicated
        ));
        assert!(tolerates(
            &tol("dedicated", "Exists", "", NO_SCHEDULE, None),
            &dedicated
        ));
        assert!(!tolerates(
            &tol("dedicated", "Matches", "gpu", "", None),
            &dedicated
        ));
        assert!(tolerated(
            &[
                tol("x", "Exists", "", "", None),
                tol("dedicated", "Equal", "gpu", "", None)
            ],
            &dedicated
        ));
        assert!(!tolerated(&[], &dedicated));
    }

    #[test]
    fn heartbeat_is_the_later_of_lease_and_status() {
        let node = node_with(vec![cond("Ready", "True", "2024-01-01T00:00:10Z")]);
        assert_eq!(last_heartbeat(&node, None), Some(t("2024-01-01T00:00:10Z")));
        let l = lease("2024-01-01T00:00:20.123456Z");
        assert_eq!(
            last_heartbeat(&node, Some(&l)),
            Some(t("2024-01-01T00:00:20.123456Z"))
        );
        let old = lease("2024-01-01T00:00:05Z");
        assert_eq!(
            last_heartbeat(&node, Some(&old)),
            Some(t("2024-01-01T00:00:10Z"))
        );
        // Unparsable or absent values count as nothing.
        let bad = lease("yesterday");
        assert_eq!(
            last_heartbeat(&node, Some(&bad)),
            Some(t("2024-01-01T00:00:10Z"))
        );
        let bare = node_with(vec![]);
        assert_eq!(last_heartbeat(&bare, None), None);
        assert_eq!(
            last_heartbeat(&bare, Some(&l)),
            Some(t("2024-01-01T00:00:20.123456Z"))
        );
        // Other conditions' heartbeats are not the node's heartbeat.
        let other = node_with(vec![cond(
            "MemoryPressure",
            "False",
            "2030-01-01T00:00:00Z",
        )]);
        assert_eq!(last_heartbeat(&other, None), None);
    }

    #[test]
    fn tracker_uses_the_local_clock_and_gives_new_nodes_full_grace() {
        let grace = Duration::from_secs(40);
        let start = Instant::now();
        let mut tr = HealthTracker::default();
        // A node whose last heartbeat is ancient (the controller just became
        // leader): heard from "now", not judged by the remote timestamp.
        let ancient = Some(t("2000-01-01T00:00:00Z"));
        let heard = tr.observe("wn1", "u1", ancient, start);
        assert_eq!(heard, start);
        assert!(!is_stale(heard, start + Duration::from_secs(39), grace));
        // The same heartbeat seen again does not count as hearing from it.
        let heard = tr.observe("wn1", "u1", ancient, start + Duration::from_secs(30));
        assert_eq!(heard, start);
        assert!(is_stale(heard, start + Duration::from_secs(41), grace));
        // An advance counts, whatever the remote clock says.
        let later = Some(t("2000-01-01T00:00:10Z"));
        let t50 = start + Duration::from_secs(50);
        assert_eq!(tr.observe("wn1", "u1", later, t50), t50);
        assert!(!is_stale(t50, start + Duration::from_secs(60), grace));
        // Going backwards does not.
        assert_eq!(
            tr.observe("wn1", "u1", ancient, start + Duration::from_secs(55)),
            t50
        );
        // Losing a heartbeat source (lease deleted) does not either.
        assert_eq!(
            tr.observe("wn1", "u1", None, start + Duration::from_secs(56)),
            t50
        );
        // A node recreated under a new uid starts afresh.
        let t70 = start + Duration::from_secs(70);
        assert_eq!(tr.observe("wn1", "u2", ancient, t70), t70);
        assert!(tr.knows("wn1"));
        tr.forget("wn1");
        assert!(!tr.knows("wn1"));
        // A node that never heartbeats at all still gets its grace.
        let t80 = start + Duration::from_secs(80);
        assert_eq!(tr.observe("wn2", "u3", None, t80), t80);
        assert!(!is_stale(t80, t80 + grace, grace));
        assert!(is_stale(t80, t80 + grace + Duration::from_millis(1), grace));
    }

    #[test]
    fn mark_unknown_sets_every_condition_once() {
        let mut st = NodeStatus {
            conditions: vec![
                cond("Ready", "True", "2024-01-01T00:00:10Z"),
                cond("MemoryPressure", "False", "2024-01-01T00:00:10Z"),
            ],
            ..Default::default()
        };
        assert!(mark_unknown(&mut st, "2024-01-01T00:01:00Z"));
        for c in &st.conditions {
            assert_eq!(c.status, "Unknown");
            assert_eq!(c.reason, REASON_STATUS_UNKNOWN);
            assert_eq!(c.message, MESSAGE_STATUS_UNKNOWN);
            assert_eq!(c.last_transition_time, "2024-01-01T00:01:00Z");
            // The node's own heartbeat stamp is kept (it is not ours).
            assert_eq!(c.last_heartbeat_time, "2024-01-01T00:00:10Z");
        }
        let before = st.clone();
        assert!(!mark_unknown(&mut st, "2024-01-01T00:02:00Z"));
        assert_eq!(st, before);
        assert_eq!(reported_readiness(Some(&st)), Readiness::Unknown);

        // A node that never posted a Ready condition gets one.
        let mut empty = NodeStatus::default();
        assert!(mark_unknown(&mut empty, "2024-01-01T00:01:00Z"));
        let ready = ready_condition(Some(&empty)).unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason, REASON_NEVER_UPDATED);
        assert!(ready.last_heartbeat_time.is_empty());
    }

    #[test]
    fn readiness_from_conditions() {
        let r = |s: &str| {
            reported_readiness(Some(&node_with(vec![cond("Ready", s, "")]).status.unwrap()))
        };
        assert_eq!(r("True"), Readiness::Ready);
        assert_eq!(r("False"), Readiness::NotReady);
        assert_eq!(r("Unknown"), Readiness::Unknown);
        assert_eq!(reported_readiness(None), Readiness::NotReported);
        assert_eq!(
            reported_readiness(Some(&NodeStatus::default())),
            Readiness::NotReported
        );
    }

    #[test]
    fn taints_follow_readiness() {
        let now = "2024-01-01T00:01:00Z";
        let user = Taint {
            value: "gpu".into(),
            ..taint("dedicated", NO_SCHEDULE, "")
        };
        // Unknown: unreachable NoSchedule + NoExecute, stamped now.
        let got = desired_taints(std::slice::from_ref(&user), Readiness::Unknown, now).unwrap();
        assert_eq!(
            got,
            vec![
                user.clone(),
                taint(TAINT_UNREACHABLE, NO_SCHEDULE, now),
                taint(TAINT_UNREACHABLE, NO_EXECUTE, now)
            ]
        );
        // Already right: nothing to write (timeAdded kept).
        assert_eq!(desired_taints(&got, Readiness::Unknown, "later"), None);
        // NotReady replaces unreachable with not-ready.
        let nr = desired_taints(&got, Readiness::NotReady, now).unwrap();
        assert_eq!(
            nr,
            vec![
                user.clone(),
                taint(TAINT_NOT_READY, NO_SCHEDULE, now),
                taint(TAINT_NOT_READY, NO_EXECUTE, now)
            ]
        );
        // Ready removes both, keeping the user's taints.
        assert_eq!(
            desired_taints(&nr, Readiness::Ready, now),
            Some(vec![user.clone()])
        );
        assert_eq!(
            desired_taints(std::slice::from_ref(&user), Readiness::Ready, now),
            None
        );
        // Not reported: leave alone.
        assert_eq!(desired_taints(&nr, Readiness::NotReported, now), None);
        // A PreferNoSchedule taint with a managed key is not ours to manage.
        let prefer = taint(TAINT_UNREACHABLE, "PreferNoSchedule", "");
        assert_eq!(
            desired_taints(std::slice::from_ref(&prefer), Readiness::Ready, now),
            None
        );
        // A partial set is completed, the existing one keeps its stamp.
        let partial = vec![taint(TAINT_UNREACHABLE, NO_EXECUTE, "2024-01-01T00:00:00Z")];
        assert_eq!(
            desired_taints(&partial, Readiness::Unknown, now).unwrap(),
            vec![
                taint(TAINT_UNREACHABLE, NO_EXECUTE, "2024-01-01T00:00:00Z"),
                taint(TAINT_UNREACHABLE, NO_SCHEDULE, now)
            ]
        );
    }

    #[test]
    fn eviction_deadlines() {
        let added = t("2024-01-01T00:00:00Z");
        let at = |_: &Taint| added;
        let secs = |s: i64| Some(added + chrono::Duration::seconds(s));
        let default = Duration::from_secs(300);
        let unreachable = vec![
            taint(TAINT_UNREACHABLE, NO_SCHEDULE, ""),
            taint(TAINT_UNREACHABLE, NO_EXECUTE, ""),
        ];
        // No toleration: the emulated default toleration.
        assert_eq!(eviction_time(&unreachable, &[], default, at), secs(300));
        // Explicit seconds.
        let short = [tol(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(30))];
        assert_eq!(eviction_time(&unreachable, &short, default, at), secs(30));
        // Zero and negative seconds: now.
        let zero = [tol(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(-5))];
        assert_eq!(eviction_time(&unreachable, &zero, default, at), secs(0));
        // Tolerated forever (DaemonSet pods).
        let ds = [
            tol(TAINT_NOT_READY, "Exists", "", NO_EXECUTE, None),
            tol(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, None),
        ];
        assert_eq!(eviction_time(&unreachable, &ds, default, at), None);
        // A toleration that only covers NoSchedule does not help with NoExecute.
        let ns_only = [tol(TAINT_UNREACHABLE, "Exists", "", NO_SCHEDULE, None)];
        assert_eq!(
            eviction_time(&unreachable, &ns_only, default, at),
            secs(300)
        );
        // Several matching tolerations: the shortest bound wins.
        let two = [
            tol(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, None),
            tol("", "Exists", "", "", Some(60)),
        ];
        assert_eq!(eviction_time(&unreachable, &two, default, at), secs(60));
        // Any other NoExecute taint not tolerated: immediately.
        let mut other = unreachable.clone();
        other.push(taint("maintenance", NO_EXECUTE, ""));
        assert_eq!(eviction_time(&other, &ds, default, at), secs(0));
        // NoSchedule taints never evict.
        assert_eq!(
            eviction_time(&[taint("maintenance", NO_SCHEDULE, "")], &[], default, at),
            None
        );
        // Several taints: the earliest deadline; each from its own timeAdded.
        let both = vec![
            taint(TAINT_NOT_READY, NO_EXECUTE, "2024-01-01T00:00:00Z"),
            taint(TAINT_UNREACHABLE, NO_EXECUTE, "2024-01-01T00:01:00Z"),
        ];
        let by_stamp = |t: &Taint| parse_time(&t.time_added).unwrap();
        let tols = [tol(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(10))];
        assert_eq!(
            eviction_time(&both, &tols, default, by_stamp),
            Some(t("2024-01-01T00:01:10Z"))
        );
        let tols = [tol(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(600))];
        assert_eq!(
            eviction_time(&both, &tols, default, by_stamp),
            Some(t("2024-01-01T00:05:00Z"))
        );
        // Sub-second default timeouts are honoured.
        assert_eq!(
            eviction_time(&unreachable, &[], Duration::from_millis(1500), at),
            Some(added + chrono::Duration::milliseconds(1500))
        );
    }

    #[test]
    fn monitor_period_is_a_quarter_of_grace_at_most_a_second() {
        assert_eq!(
            monitor_period(Duration::from_secs(40)),
            Duration::from_secs(1)
        );
        assert_eq!(
            monitor_period(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(monitor_period(Duration::ZERO), Duration::from_millis(10));
    }
}

#[cfg(test)]
mod end_to_end {
    use super::super::daemonset::daemon_tolerations;
    use super::super::daemonset::testing::{eventually, start, Cluster};
    use super::*;
    use rkube_api::proto::{Container, LeaseSpec, NodeSpec, ObjectMeta, Pod, PodSpec};

    fn stamp() -> String {
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    fn ready(heartbeat: &str) -> NodeStatus {
        NodeStatus {
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_heartbeat_time: heartbeat.into(),
                last_transition_time: heartbeat.into(),
                reason: "KubeletReady".into(),
                message: "kubelet is posting ready status".into(),
            }],
            ..Default::default()
        }
    }

    async fn create_node(c: &Cluster, name: &str, status: NodeStatus) {
        let n = Object::from_body(Body::Node(Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            status: Some(status.clone()),
            ..Default::default()
        }));
        c.handlers.create(n, false).await.unwrap();
        // Status is not taken on create (as in Kubernetes): post it.
        let mut n = c.get(Kind::Node, "", name).await.unwrap();
        if let Some(Body::Node(node)) = n.kind.as_mut() {
            node.status = Some(status);
        }
        c.handlers.update(n, true, false).await.unwrap();
    }

    async fn renew(c: &Cluster, node: &str) {
        let spec = LeaseSpec {
            holder_identity: node.into(),
            lease_duration_seconds: Some(40),
            renew_time: stamp(),
            ..Default::default()
        };
        let lease = Object::from_body(Body::Lease(Lease {
            metadata: Some(ObjectMeta {
                name: node.into(),
                namespace: NODE_LEASE_NAMESPACE.into(),
                ..Default::default()
            }),
            spec: Some(spec),
            ..Default::default()
        }));
        match c.handlers.update(lease.clone(), false, false).await {
            Ok(_) => {}
            Err(ApiError::NotFound(_)) => {
                c.handlers.create(lease, false).await.unwrap();
            }
            Err(e) => panic!("renewing: {e}"),
        }
    }

    async fn create_pod(c: &Cluster, name: &str, node: &str, tolerations: Vec<Toleration>) {
        let p = Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: "busybox".into(),
                    ..Default::default()
                }],
                node_name: node.into(),
                tolerations,
                ..Default::default()
            }),
            ..Default::default()
        }));
        c.handlers.create(p, false).await.unwrap();
    }

    async fn node(c: &Cluster, name: &str) -> Node {
        match c.get(Kind::Node, "", name).await.map(|o| o.kind) {
            Some(Some(Body::Node(n))) => n,
            _ => panic!("node {name} is gone"),
        }
    }

    fn taint_keys(n: &Node) -> Vec<(String, String)> {
        n.spec
            .as_ref()
            .map(|s| {
                s.taints
                    .iter()
                    .map(|t| (t.key.clone(), t.effect.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn unreachable() -> Vec<(String, String)> {
        vec![
            (TAINT_UNREACHABLE.to_string(), NO_SCHEDULE.to_string()),
            (TAINT_UNREACHABLE.to_string(), NO_EXECUTE.to_string()),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heartbeats_taints_eviction_and_node_deletion() {
        let c = start().await;
        let grace = Duration::from_millis(2000);
        create_node(&c, "wn1", ready(&stamp())).await;
        renew(&c, "wn1").await;
        // A node whose last heartbeat is ancient when the controller starts.
        create_node(&c, "wn2", ready("2000-01-01T00:00:00Z")).await;
        create_pod(&c, "plain", "wn1", vec![]).await;
        create_pod(
            &c,
            "impatient",
            "wn1",
            vec![Toleration {
                key: TAINT_UNREACHABLE.into(),
                operator: "Exists".into(),
                effect: NO_EXECUTE.into(),
                toleration_seconds: Some(0),
                ..Default::default()
            }],
        )
        .await;
        create_pod(&c, "daemon", "wn1", daemon_tolerations()).await;
        create_pod(&c, "orphan", "ghost", vec![]).await;

        let cfg = ControllerConfig {
            node_monitor_grace: grace,
            pod_eviction_timeout: Duration::from_millis(2500),
            resync: Duration::from_secs(1),
            workers: 2,
            ..Default::default()
        };
        let started = Instant::now();
        super::start(&c.informers, &cfg);

        // Heartbeats keep wn1 healthy; wn2 gets a full grace period from the
        // controller's start, whatever its stamps say.
        let renewing = {
            let h = c.handlers.clone();
            tokio::spawn(async move {
                loop {
                    let spec = LeaseSpec {
                        holder_identity: "wn1".into(),
                        renew_time: stamp(),
                        ..Default::default()
                    };
                    let lease = Object::from_body(Body::Lease(Lease {
                        metadata: Some(ObjectMeta {
                            name: "wn1".into(),
                            namespace: NODE_LEASE_NAMESPACE.into(),
                            ..Default::default()
                        }),
                        spec: Some(spec),
                        ..Default::default()
                    }));
                    let _ = h.update(lease, false, false).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        tokio::time::sleep(grace / 2).await;
        let n2 = node(&c, "wn2").await;
        // (Read before the grace period ran out: not judged yet.)
        if started.elapsed() < grace {
            assert!(taint_keys(&n2).is_empty());
            assert_eq!(reported_readiness(n2.status.as_ref()), Readiness::Ready);
        }
        eventually("wn2 unreachable", || async {
            let n = node(&c, "wn2").await;
            (taint_keys(&n) == unreachable()).then_some(())
        })
        .await;
        assert!(started.elapsed() >= grace);
        let n2 = node(&c, "wn2").await;
        let cond = ready_condition(n2.status.as_ref()).unwrap();
        assert_eq!(cond.status, "Unknown");
        assert_eq!(cond.reason, REASON_STATUS_UNKNOWN);
        assert_eq!(cond.message, MESSAGE_STATUS_UNKNOWN);
        assert!(parse_time(&cond.last_transition_time).is_some());
        for t in &n2.spec.as_ref().unwrap().taints {
            assert!(parse_time(&t.time_added).is_some(), "{t:?}");
        }
        eventually("NodeNotReady event", || async {
            let evs = c.events("NodeNotReady").await;
            evs.iter()
                .any(|e| e.r#type == "Warning" && e.involved_object.as_ref().unwrap().name == "wn2")
                .then_some(())
        })
        .await;
        // wn1 has stayed healthy all along.
        tokio::time::sleep(grace / 2).await;
        let n1 = node(&c, "wn1").await;
        assert!(taint_keys(&n1).is_empty());
        assert_eq!(reported_readiness(n1.status.as_ref()), Readiness::Ready);
        // The orphan bound to a node that never existed is collected after
        // the grace period.
        eventually("orphan pod collected", || async {
            c.get(Kind::Pod, "default", "orphan")
                .await
                .is_none()
                .then_some(())
        })
        .await;

        // wn1 stops heartbeating.
        renewing.abort();
        eventually("wn1 unreachable", || async {
            (taint_keys(&node(&c, "wn1").await) == unreachable()).then_some(())
        })
        .await;
        // Eviction is a graceful deletion: the pods are marked Terminating
        // (the pod GC, not running here, finishes them on a dead node).
        let evicted = |name: &'static str| {
            let c = &c;
            move || async move {
                c.get(Kind::Pod, "default", name)
                    .await
                    .and_then(|o| o.metadata().map(|m| m.deletion_timestamp.clone()))
                    .filter(|ts| !ts.is_empty())
                    .map(|_| ())
            }
        };
        eventually("impatient pod evicted", evicted("impatient")).await;
        eventually(
            "plain pod evicted after the default timeout",
            evicted("plain"),
        )
        .await;
        // Not before the taint's timeAdded + pod_eviction_timeout.
        let gone_at = Utc::now();
        let n1 = node(&c, "wn1").await;
        let added = n1
            .spec
            .as_ref()
            .unwrap()
            .taints
            .iter()
            .find(|t| t.key == TAINT_UNREACHABLE && t.effect == NO_EXECUTE)
            .and_then(|t| parse_time(&t.time_added))
            .unwrap();
        assert!(gone_at >= added + chrono::Duration::milliseconds(2500));
        let evs = c.events("TaintManagerEviction").await;
        assert!(
            evs.iter()
                .any(|e| e.message == "Marking for deletion Pod default/plain"
                    && e.r#type == "Normal"),
            "{evs:?}"
        );
        // The DaemonSet-style pod tolerates it forever.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(c.get(Kind::Pod, "default", "daemon").await.is_some());

        // Heartbeats resume with Ready=True: the taints go.
        renew(&c, "wn1").await;
        let mut n = c.get(Kind::Node, "", "wn1").await.unwrap();
        if let Some(Body::Node(node)) = n.kind.as_mut() {
            node.status = Some(ready(&stamp()));
        }
        c.handlers.update(n, true, false).await.unwrap();
        eventually("wn1 untainted", || async {
            taint_keys(&node(&c, "wn1").await).is_empty().then_some(())
        })
        .await;
        eventually("NodeReady event", || async {
            (!c.events("NodeReady").await.is_empty()).then_some(())
        })
        .await;

        // The node reports Ready=False: not-ready taints.
        let mut n = c.get(Kind::Node, "", "wn1").await.unwrap();
        if let Some(Body::Node(node)) = n.kind.as_mut() {
            let mut st = ready(&stamp());
            st.conditions[0].status = "False".into();
            node.status = Some(st);
        }
        c.handlers.update(n, true, false).await.unwrap();
        eventually("wn1 not-ready", || async {
            let want = vec![
                (TAINT_NOT_READY.to_string(), NO_SCHEDULE.to_string()),
                (TAINT_NOT_READY.to_string(), NO_EXECUTE.to_string()),
            ];
            (taint_keys(&node(&c, "wn1").await) == want).then_some(())
        })
        .await;

        // The node is deleted: its pods and its lease go.
        c.handlers
            .delete("Node", "", "wn1", "", None)
            .await
            .unwrap();
        eventually("pods of the deleted node collected", || async {
            c.get(Kind::Pod, "default", "daemon")
                .await
                .is_none()
                .then_some(())
        })
        .await;
        eventually("lease of the deleted node deleted", || async {
            c.get(Kind::Lease, NODE_LEASE_NAMESPACE, "wn1")
                .await
                .is_none()
                .then_some(())
        })
        .await;
    }
}
