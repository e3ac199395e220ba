//! Pod garbage collector (Kubernetes' PodGC): force-deletes (grace 0, uid
//! precondition) pods that no node agent will ever finish deleting.
//!
//! - **Terminating on a node that no longer exists**: at once (after a
//!   quorum read confirms the node is gone).
//! - **Terminating on a node that is not Ready** (its Ready condition is
//!   `Unknown` or `False`): once the pod's `deletionTimestamp` has passed.
//!   A pod evicted from a dead node would otherwise stay Terminating for
//!   ever, and its name (and a StatefulSet-like replacement) with it.
//! - **Orphaned**: bound to a node that does not exist, after that node has
//!   been missing for the quarantine (`--pod-gc-orphan-quarantine`, 40 s;
//!   a node may register after its pods were bound), confirmed by a quorum
//!   read.
//!
//! Each deletion is announced by an Event (`DeletionByPodGC`) on the pod.
//! Decisions are [`judge`], a pure function; the reconciler reads only the
//! pod and node caches and writes through the handlers.

use super::events::{EventRecorder, NORMAL};
use super::informer::{object_key, Informer, Informers, Notice};
use super::workqueue::WorkQueue;
use super::{feed, run_workers, Action, ControllerConfig, Reconcile};
use crate::handlers::{ApiError, Handlers};
use chrono::{DateTime, Utc};
use rkube_api::kinds::Kind;
use rkube_api::proto::{object::Kind as Body, Node, Pod, Preconditions};
use rkube_api::Object;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const COMPONENT: &str = "pod-garbage-collector";
pub const REASON: &str = "DeletionByPodGC";
/// Slack added to wake-ups so a deadline has surely passed.
const SLACK: Duration = Duration::from_millis(10);

/// What the collector knows of the node a pod is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeView {
    /// In the cache; `ready` unless its Ready condition is Unknown/False.
    Present { ready: bool },
    /// Not in the cache, for this long (by the local clock).
    Missing { for_: Duration },
}

/// Why a pod is force-deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Terminating, and its node no longer exists.
    NodeGone,
    /// Terminating on a node that is not Ready, past its deadline.
    NodeNotReady,
    /// Not terminating, bound to a node that does not exist.
    Orphaned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not ours to delete (now or later, unless something changes).
    Keep,
    /// Look again after this long.
    Wait(Duration),
    /// Force-delete (a missing node is first confirmed by a quorum read).
    Delete(Why),
}

/// The pod's node, if bound.
pub fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .map(|s| s.node_name.as_str())
        .filter(|n| !n.is_empty())
}

/// Whether a node counts as Ready here: anything but a Ready condition
/// that is `Unknown` or `False` (a node that never reported is judged by the
/// node lifecycle controller, which marks it Unknown when its grace ends).
pub fn node_ready(node: &Node) -> bool {
    !node
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .is_some_and(|c| c.status == "Unknown" || c.status == "False")
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    super::node_lifecycle::parse_time(s)
}

/// Decides what to do with a bound pod.
pub fn judge(pod: &Pod, node: NodeView, quarantine: Duration, now: DateTime<Utc>) -> Verdict {
    let deletion = pod
        .metadata
        .as_ref()
        .map(|m| m.deletion_timestamp.as_str())
        .unwrap_or("");
    let terminating = !deletion.is_empty();
    match node {
        NodeView::Missing { .. } if terminating => Verdict::Delete(Why::NodeGone),
        NodeView::Missing { for_ } if for_ >= quarantine => Verdict::Delete(Why::Orphaned),
        NodeView::Missing { for_ } => Verdict::Wait(quarantine - for_ + SLACK),
        NodeView::Present { ready: false } if terminating => {
            let deadline = parse_time(deletion).unwrap_or(now);
            if deadline <= now {
                Verdict::Delete(Why::NodeNotReady)
            } else {
                Verdict::Wait((deadline - now).to_std().unwrap_or_default() + SLACK)
            }
        }
        NodeView::Present { .. } => Verdict::Keep,
    }
}

fn pod_of(o: &Object) -> Option<&Pod> {
    match o.kind.as_ref() {
        Some(Body::Pod(p)) => Some(p),
        _ => None,
    }
}

fn node_of(o: &Object) -> Option<&Node> {
    match o.kind.as_ref() {
        Some(Body::Node(n)) => Some(n),
        _ => None,
    }
}

fn is_terminating(o: &Object) -> bool {
    o.metadata()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

struct PodGc {
    handlers: Handlers,
    pods: Arc<Informer>,
    nodes: Arc<Informer>,
    recorder: EventRecorder,
    quarantine: Duration,
    /// Nodes named by pods but absent, since when (local clock).
    missing_since: parking_lot::Mutex<HashMap<String, Instant>>,
}

impl PodGc {
    fn view(&self, node: &str) -> NodeView {
        let now = Instant::now();
        let mut missing = self.missing_since.lock();
        match self.nodes.get_key(node) {
            Some(n) => {
                missing.remove(node);
                NodeView::Present {
                    ready: node_of(&n).is_none_or(node_ready),
                }
            }
            None => {
                let since = *missing.entry(node.to_string()).or_insert(now);
                NodeView::Missing {
                    for_: now.saturating_duration_since(since),
                }
            }
        }
    }

    async fn force_delete(&self, obj: &Object, why: &Why, node: &str) -> Result<(), ApiError> {
        let uid = obj.metadata().map(|m| m.uid.clone()).unwrap_or_default();
        let (ns, name) = (obj.namespace(), obj.name());
        let r = self
            .handlers
            .delete_with_grace(
                Kind::Pod.name(),
                ns,
                name,
                "",
                Some(Preconditions {
                    uid,
                    resource_version: String::new(),
                }),
                Some(0),
            )
            .await;
        match r {
            Ok(_) => {
                let message = match why {
                    Why::NodeGone => format!(
                        "Force-deleting terminating pod {ns}/{name}: its node {node} no longer exists"
                    ),
                    Why::NodeNotReady => format!(
                        "Force-deleting terminating pod {ns}/{name}: its node {node} is not ready \
                         and its grace period has ended"
                    ),
                    Why::Orphaned => format!(
                        "Deleting orphaned pod {ns}/{name}: its node {node} does not exist"
                    ),
                };
                tracing::info!(pod = %format!("{ns}/{name}"), node, ?why, "pod garbage collected");
                self.recorder.record(obj, NORMAL, REASON, &message);
                Ok(())
            }
            // Gone already, or replaced by a namesake (uid precondition).
            Err(ApiError::NotFound(_)) | Err(ApiError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[tonic::async_trait]
impl Reconcile for PodGc {
    fn name(&self) -> &'static str {
        "pod-gc"
    }

    async fn reconcile(&self, key: &str) -> Result<Action, ApiError> {
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        let Some(obj) = self.pods.get_key(key) else {
            return Ok(Action::Done);
        };
        let Some(pod) = pod_of(&obj) else {
            return Ok(Action::Done);
        };
        let Some(node) = bound_node(pod) else {
            return Ok(Action::Done);
        };
        let view = self.view(node);
        match judge(pod, view, self.quarantine, Utc::now()) {
            Verdict::Keep => Ok(Action::Done),
            Verdict::Wait(d) => Ok(Action::RequeueAfter(d)),
            Verdict::Delete(why) => {
                if matches!(view, NodeView::Missing { .. }) {
                    // The cache may be behind: confirm with a quorum read.
                    match self.handlers.get(Kind::Node.name(), "", node, "").await {
                        Ok(_) => return Ok(Action::RequeueAfter(SLACK)),
                        Err(ApiError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                self.force_delete(&obj, &why, node).await?;
                Ok(Action::Done)
            }
        }
    }
}

/// Keys of the pods bound to `node` (only terminating ones unless `all`).
fn pods_on(pods: &Informer, node: &str, all: bool) -> Vec<String> {
    pods.list()
        .into_iter()
        .filter(|p| pod_of(p).and_then(bound_node) == Some(node) && (all || is_terminating(p)))
        .map(|p| object_key(&p))
        .collect()
}

/// Starts the pod garbage collector on `informers`.
pub fn start(informers: &Informers, cfg: &ControllerConfig) {
    let pods = informers.get(Kind::Pod);
    let nodes = informers.get(Kind::Node);
    let handlers = informers.handlers().clone();
    let ctrl = Arc::new(PodGc {
        recorder: EventRecorder::new(handlers.clone(), COMPONENT),
        handlers,
        pods: pods.clone(),
        nodes: nodes.clone(),
        quarantine: cfg.orphan_quarantine,
        missing_since: Default::default(),
    });
    let queue = WorkQueue::new();
    let map = {
        let (pods, nodes) = (pods.clone(), nodes.clone());
        move |n: &Notice| -> Vec<String> {
            let Notice::Changed {
                kind,
                old,
                new,
                deleted,
            } = n
            else {
                return Vec::new();
            };
            match kind {
                Kind::Pod if !*deleted => match pod_of(new).and_then(bound_node) {
                    // Only pods that may need collecting.
                    Some(node) if is_terminating(new) || nodes.get_key(node).is_none() => {
                        vec![object_key(new)]
                    }
                    _ => Vec::new(),
                },
                Kind::Node if *deleted => pods_on(&pods, new.name(), true),
                Kind::Node => {
                    let was_ready = old.as_deref().and_then(node_of).is_none_or(node_ready);
                    let ready = node_of(new).is_none_or(node_ready);
                    if was_ready && !ready {
                        pods_on(&pods, new.name(), false)
                    } else {
                        Vec::new()
                    }
                }
                _ => Vec::new(),
            }
        }
    };
    let all = {
        let (pods, nodes) = (pods.clone(), nodes.clone());
        move || -> Vec<String> {
            pods.list()
                .into_iter()
                .filter(|p| {
                    pod_of(p)
                        .and_then(bound_node)
                        .is_some_and(|node| is_terminating(p) || nodes.get_key(node).is_none())
                })
                .map(|p| object_key(&p))
                .collect()
        }
    };
    feed(
        informers,
        &[Kind::Pod, Kind::Node],
        queue.clone(),
        cfg.resync,
        map,
        all,
    );
    run_workers(informers, ctrl, queue, cfg.workers.min(2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{NodeCondition, NodeStatus, ObjectMeta, PodSpec};

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn pod(node: &str, deletion: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                deletion_timestamp: deletion.into(),
                deletion_grace_period_seconds: (!deletion.is_empty()).then_some(30),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: node.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(ready: Option<&str>) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: ready
                    .map(|s| NodeCondition {
                        r#type: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn readiness() {
        assert!(node_ready(&node(Some("True"))));
        assert!(!node_ready(&node(Some("False"))));
        assert!(!node_ready(&node(Some("Unknown"))));
        assert!(node_ready(&node(None)));
        assert!(node_ready(&Node::default()));
    }

    #[test]
    fn verdicts() {
        let q = Duration::from_secs(40);
        let now = t("2024-01-01T00:01:00Z");
        let running = pod("wn1", "");
        let leaving = pod("wn1", "2024-01-01T00:01:30Z");
        let overdue = pod("wn1", "2024-01-01T00:00:30Z");
        let ready = NodeView::Present { ready: true };
        let not_ready = NodeView::Present { ready: false };
        let gone = |s| NodeView::Missing {
            for_: Duration::from_secs(s),
        };
        // A healthy node's pods are its agent's business.
        assert_eq!(judge(&running, ready, q, now), Verdict::Keep);
        assert_eq!(judge(&overdue, ready, q, now), Verdict::Keep);
        // Not ready: terminating pods go once their deadline has passed.
        assert_eq!(judge(&running, not_ready, q, now), Verdict::Keep);
        assert_eq!(
            judge(&leaving, not_ready, q, now),
            Verdict::Wait(Duration::from_secs(30) + SLACK)
        );
        assert_eq!(
            judge(&overdue, not_ready, q, now),
            Verdict::Delete(Why::NodeNotReady)
        );
        // Node gone: terminating pods at once, others after the quarantine.
        assert_eq!(
            judge(&leaving, gone(0), q, now),
            Verdict::Delete(Why::NodeGone)
        );
        assert_eq!(
            judge(&running, gone(10), q, now),
            Verdict::Wait(Duration::from_secs(30) + SLACK)
        );
        assert_eq!(
            judge(&running, gone(40), q, now),
            Verdict::Delete(Why::Orphaned)
        );
        // An unparsable deadline counts as passed.
        let odd = pod("wn1", "yesterday");
        assert_eq!(
            judge(&odd, not_ready, q, now),
            Verdict::Delete(Why::NodeNotReady)
        );
    }
}

#[cfg(test)]
mod end_to_end {
    use super::super::daemonset::testing::{eventually, start, Cluster};
    use super::*;
    use rkube_api::proto::{Container, NodeCondition, NodeSpec, NodeStatus, ObjectMeta, PodSpec};

    async fn create_node(c: &Cluster, name: &str, ready: &str) {
        let n = Object::from_body(Body::Node(Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            ..Default::default()
        }));
        let mut n = c.handlers.create(n, false).await.unwrap();
        if let Some(Body::Node(node)) = n.kind.as_mut() {
            node.status = Some(NodeStatus {
                conditions: vec![NodeCondition {
                    r#type: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        c.handlers.update(n, true, false).await.unwrap();
    }

    async fn create_pod(c: &Cluster, name: &str, node: &str, grace: i64) -> Object {
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
                termination_grace_period_seconds: Some(grace),
                ..Default::default()
            }),
            ..Default::default()
        }));
        c.handlers.create(p, false).await.unwrap()
    }

    async fn gone(c: &Cluster, name: &str) -> Option<()> {
        c.get(Kind::Pod, "default", name)
            .await
            .is_none()
            .then_some(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collects_what_no_node_will_finish() {
        let c = start().await;
        create_node(&c, "alive", "True").await;
        create_node(&c, "dead", "Unknown").await;
        create_node(&c, "doomed", "True").await;
        // Terminating on a ready node: the node's agent finishes it.
        create_pod(&c, "on-alive", "alive", 30).await;
        // Terminating on a not-ready node: collected once its 1 s is up.
        create_pod(&c, "on-dead", "dead", 1).await;
        // Not terminating on a not-ready node: left alone.
        create_pod(&c, "stays", "dead", 30).await;
        // Bound to a node that never existed: collected after quarantine.
        create_pod(&c, "orphan", "ghost", 30).await;
        // Terminating on a node that gets deleted: collected at once.
        create_pod(&c, "on-doomed", "doomed", 30).await;
        for name in ["on-alive", "on-dead", "on-doomed"] {
            let o = c
                .handlers
                .delete("Pod", "default", name, "", None)
                .await
                .unwrap();
            assert!(!o.metadata().unwrap().deletion_timestamp.is_empty());
        }
        let cfg = ControllerConfig {
            resync: Duration::from_millis(500),
            workers: 2,
            orphan_quarantine: Duration::from_millis(1500),
            ..Default::default()
        };
        let started = Instant::now();
        super::start(&c.informers, &cfg);
        eventually("the pod on the dead node collected", || gone(&c, "on-dead")).await;
        eventually("the orphan collected", || gone(&c, "orphan")).await;
        assert!(started.elapsed() >= Duration::from_millis(1500));
        c.handlers
            .delete("Node", "", "doomed", "", None)
            .await
            .unwrap();
        eventually("the pod on the deleted node collected", || {
            gone(&c, "on-doomed")
        })
        .await;
        // (Events are written in the background.)
        eventually("an event for each", || async {
            let evs = c.events(REASON).await;
            ["on-dead", "orphan", "on-doomed"]
                .iter()
                .all(|name| {
                    evs.iter()
                        .any(|e| e.involved_object.as_ref().unwrap().name == *name)
                })
                .then_some(())
        })
        .await;
        // What is not ours stays.
        assert!(c.get(Kind::Pod, "default", "on-alive").await.is_some());
        assert!(c.get(Kind::Pod, "default", "stays").await.is_some());
    }
}
