//! DaemonSet controller: one pod of each DaemonSet on every eligible node.
//!
//! **Eligibility** ([`placement`]). A node fits a DaemonSet when it matches
//! the template's `nodeSelector` and the label expressions of its required
//! node affinity (the template's `matchFields` do not count: every pod's
//! are replaced by its own node). Taints are judged against the template's
//! tolerations plus those every DaemonSet pod gets ([`daemon_tolerations`]),
//! in two steps, as in Kubernetes: the DaemonSet *should run* on a node whose
//! NoSchedule and NoExecute taints are all tolerated, and an existing pod
//! *may continue running* on a node whose NoExecute taints are tolerated.
//! Readiness is never required, and since the automatic tolerations cover
//! `not-ready`/`unreachable` NoExecute, a pod on a failing node stays there
//! (no new pod is created on a node that gained a NoSchedule taint).
//!
//! **Pods** ([`new_daemon_pod`]): template labels, `generateName: <ds>-`, a
//! controller ownerReference, the automatic tolerations, and required node
//! affinity pinned to the node (`matchFields: metadata.name In [node]`) for
//! the scheduler to bind. A pod belongs to its `spec.nodeName`, else to the
//! node of that affinity ([`target_node`]).
//!
//! **Reconcile** ([`plan`]): create where a node should run a pod and has
//! none (not even one still terminating: as in Kubernetes, the new pod waits
//! for the old one to be gone); delete pods on nodes where they may not continue, pods of nodes that
//! no longer exist, finished (Succeeded/Failed) pods (their replacement is
//! backed off per node), and duplicates (keeping a bound, running one, then
//! the oldest). Orphans matching the selector are adopted, owned pods that
//! no longer match are released. Creates and deletes are counted in
//! [`Expectations`], and nothing is created or deleted for a DaemonSet until
//! the pod cache has observed its previous writes (or 30 s passed), so a slow
//! cache never duplicates pods.
//!
//! **Status** ([`compute_status`]) is written (status only) when it
//! changes. There are no rolling updates yet: `updatedNumberScheduled`
//! equals `currentNumberScheduled`, and template changes apply only to pods
//! created afterwards.

use super::events::{EventRecorder, NORMAL, WARNING};
use super::informer::{key_of, object_key, Informer, Informers, Notice};
use super::node_lifecycle::{
    tolerated, NO_EXECUTE, NO_SCHEDULE, TAINT_NOT_READY, TAINT_UNREACHABLE,
};
use super::workqueue::WorkQueue;
use super::{feed, run_workers, Action, ControllerConfig, Reconcile};
use crate::handlers::{ApiError, Handlers};
use chrono::{DateTime, Utc};
use rkube_api::kinds::Kind;
use rkube_api::proto::{
    object::Kind as Body, Affinity, DaemonSet, DaemonSetStatus, Node, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectMeta, OwnerReference, Pod, PodSpec, Preconditions, Toleration,
};
use rkube_api::selector::LabelSelector;
use rkube_api::Object;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a DaemonSet waits for the cache to observe its writes before
/// acting anyway.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(30);
/// The node field DaemonSet pods are pinned by.
pub const NODE_NAME_FIELD: &str = "metadata.name";
/// Replacements of finished pods on one node back off from this...
const FAILED_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// ...to at most this.
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(300);
const COMPONENT: &str = "daemonset-controller";

// ---------------------------------------------------------------- tolerations

fn exists_toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: key.into(),
        operator: "Exists".into(),
        value: String::new(),
        effect: effect.into(),
        toleration_seconds: None,
    }
}

/// The tolerations every DaemonSet pod gets, as in Kubernetes.
pub fn daemon_tolerations() -> Vec<Toleration> {
    vec![
        exists_toleration(TAINT_NOT_READY, NO_EXECUTE),
        exists_toleration(TAINT_UNREACHABLE, NO_EXECUTE),
        exists_toleration("node.kubernetes.io/disk-pressure", NO_SCHEDULE),
        exists_toleration("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
        exists_toleration("node.kubernetes.io/pid-pressure", NO_SCHEDULE),
        exists_toleration("node.kubernetes.io/unschedulable", NO_SCHEDULE),
    ]
}

fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    let op = |t: &Toleration| {
        if t.operator.is_empty() {
            "Equal".to_string()
        } else {
            t.operator.clone()
        }
    };
    a.key == b.key && op(a) == op(b) && a.value == b.value && a.effect == b.effect
}

/// Adds `t`, replacing a toleration with the same key, operator, value and
/// effect (whatever its tolerationSeconds), as Kubernetes does.
pub fn add_or_update_toleration(list: &mut Vec<Toleration>, t: Toleration) {
    match list.iter_mut().find(|x| same_toleration(x, &t)) {
        Some(x) => *x = t,
        None => list.push(t),
    }
}

/// The template's tolerations with the automatic ones added.
pub fn with_daemon_tolerations(template: &[Toleration]) -> Vec<Toleration> {
    let mut out = template.to_vec();
    for t in daemon_tolerations() {
        add_or_update_toleration(&mut out, t);
    }
    out
}

// ---------------------------------------------------------------- eligibility

/// Whether node `labels` satisfy one node selector requirement.
pub fn requirement_matches(r: &NodeSelectorRequirement, labels: &HashMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let number = |s: &str| s.trim().parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| r.values.contains(v)),
        "NotIn" => !value.is_some_and(|v| r.values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(|v| number(v)),
                r.values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Whether node `labels` carry every `nodeSelector` pair.
pub fn node_selector_matches(
    selector: &HashMap<String, String>,
    labels: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether node `labels` satisfy the label expressions of the required node
/// affinity: some term's expressions all hold. `matchFields` are ignored
/// (each pod's are replaced by its node), so a term without expressions
/// matches.
pub fn required_affinity_matches(
    affinity: Option<&Affinity>,
    labels: &HashMap<String, String>,
) -> bool {
    let Some(req) = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    req.node_selector_terms.is_empty()
        || req.node_selector_terms.iter().any(|t| {
            t.match_expressions
                .iter()
                .all(|r| requirement_matches(r, labels))
        })
}

/// Where a DaemonSet's pod belongs, for one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// A pod should be created on this node if it has none.
    pub should_run: bool,
    /// An existing pod may stay (a NoSchedule taint alone does not evict).
    pub should_continue_running: bool,
}

/// Whether a DaemonSet with pod `template` belongs on `node`.
pub fn placement(template: &PodSpec, node: &Node) -> Placement {
    let empty = HashMap::new();
    let meta = node.metadata.as_ref();
    let name = meta.map(|m| m.name.as_str()).unwrap_or_default();
    let labels = meta.map(|m| &m.labels).unwrap_or(&empty);
    if !template.node_name.is_empty() && template.node_name != name {
        return Placement::default();
    }
    if !node_selector_matches(&template.node_selector, labels)
        || !required_affinity_matches(template.affinity.as_ref(), labels)
    {
        return Placement::default();
    }
    let tolerations = with_daemon_tolerations(&template.tolerations);
    let taints = node
        .spec
        .as_ref()
        .map(|s| s.taints.as_slice())
        .unwrap_or(&[]);
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .any(|t| effects.contains(&t.effect.as_str()) && !tolerated(&tolerations, t))
    };
    Placement {
        should_run: !untolerated(&[NO_SCHEDULE, NO_EXECUTE]),
        should_continue_running: !untolerated(&[NO_EXECUTE]),
    }
}

// ---------------------------------------------------------------- pods

/// Required node affinity pinned to `node`: every term's `matchFields`
/// become `metadata.name In [node]` (label expressions kept); without terms,
/// one term with just that.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let field = NodeSelectorRequirement {
        key: NODE_NAME_FIELD.into(),
        operator: "In".into(),
        values: vec![node.to_string()],
    };
    let mut a = affinity.unwrap_or_default();
    let req = a
        .node_affinity
        .get_or_insert_with(Default::default)
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(Default::default);
    if req.node_selector_terms.is_empty() {
        req.node_selector_terms.push(NodeSelectorTerm::default());
    }
    for t in &mut req.node_selector_terms {
        t.match_fields = vec![field.clone()];
    }
    a
}

/// The node a DaemonSet pod belongs to: its `spec.nodeName` once bound,
/// else the node its required affinity pins it to.
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if !spec.node_name.is_empty() {
        return Some(&spec.node_name);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In" && r.values.len() == 1)
        .map(|r| r.values[0].as_str())
}

/// The controller ownerReference pointing at DaemonSet `ds`.
pub fn owner_ref(ds: &DaemonSet) -> OwnerReference {
    let meta = ds.metadata.clone().unwrap_or_default();
    OwnerReference {
        api_version: Kind::DaemonSet.api_version().into(),
        kind: Kind::DaemonSet.name().into(),
        name: meta.name,
        uid: meta.uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod DaemonSet `ds` runs on `node` (the scheduler binds it).
pub fn new_daemon_pod(ds: &DaemonSet, node: &str) -> Pod {
    let meta = ds.metadata.clone().unwrap_or_default();
    let template = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    spec.tolerations = with_daemon_tolerations(&spec.tolerations);
    Pod {
        metadata: Some(ObjectMeta {
            generate_name: format!("{}-", meta.name),
            namespace: meta.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            owner_references: vec![owner_ref(ds)],
            ..Default::default()
        }),
        spec: Some(spec),
        ..Default::default()
    }
}

/// The controller ownerReference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .find(|r| r.controller == Some(true))
}

/// How a DaemonSet relates to a pod in its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours.
    Owned,
    /// An orphan our selector matches: take it.
    Adopt,
    /// Ours but no longer matching: let go.
    Release,
    /// Someone else's, or nothing to do with us.
    Ignore,
}

/// Ownership rules shared with the other workload controllers: a pod is
/// ours by controller ownerReference; orphans matching the selector are
/// adopted, ours that no longer match are released (pods being deleted are
/// neither adopted nor released).
pub fn claim(pod: &Pod, ds_uid: &str, selector: &LabelSelector) -> Claim {
    let empty = ObjectMeta::default();
    let meta = pod.metadata.as_ref().unwrap_or(&empty);
    let matches = selector.matches(&meta.labels);
    let deleting = !meta.deletion_timestamp.is_empty();
    match controller_of(meta) {
        Some(r) if r.uid == ds_uid => {
            if matches || deleting {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !deleting => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// A merge patch that makes `owner` a pod's controller (guarded by the
/// pod's resourceVersion).
fn adopt_patch(meta: &ObjectMeta, owner: OwnerReference) -> String {
    let mut refs = meta.owner_references.clone();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner);
    serde_json::json!({"metadata": {
        "resourceVersion": meta.resource_version,
        "ownerReferences": refs,
    }})
    .to_string()
}

/// A merge patch that removes the ownerReference to `owner_uid`.
fn release_patch(meta: &ObjectMeta, owner_uid: &str) -> String {
    let mut refs = meta.owner_references.clone();
    refs.retain(|r| r.uid != owner_uid);
    serde_json::json!({"metadata": {
        "resourceVersion": meta.resource_version,
        "ownerReferences": refs,
    }})
    .to_string()
}

/// What the planner needs to know of one pod of a DaemonSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaemonPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub bound: bool,
    pub running: bool,
    pub ready: bool,
    /// When it became Ready (its Ready condition's lastTransitionTime).
    pub ready_since: Option<DateTime<Utc>>,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Succeeded or Failed.
    pub finished: bool,
}

impl DaemonPod {
    pub fn of(pod: &Pod) -> DaemonPod {
        let meta = pod.metadata.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.r#type == "Ready" && c.status == "True");
        DaemonPod {
            node: target_node(pod).map(str::to_string),
            bound: pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty()),
            running: status.phase == "Running",
            ready: ready.is_some(),
            ready_since: ready.and_then(|c| parse_time(&c.last_transition_time)),
            terminating: !meta.deletion_timestamp.is_empty(),
            finished: status.phase == "Succeeded" || status.phase == "Failed",
            created: parse_time(&meta.creation_timestamp),
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
        }
    }

    fn active(&self) -> bool {
        !self.terminating && !self.finished
    }

    /// Which of a node's pods to keep: bound and running first, then bound,
    /// then the oldest, then by name.
    fn keep_order(&self) -> (u8, bool, Option<DateTime<Utc>>, &str) {
        let rank = match (self.bound, self.running) {
            (true, true) => 0,
            (true, false) => 1,
            _ => 2,
        };
        (rank, self.created.is_none(), self.created, &self.name)
    }

    /// Ready for at least `min_ready_seconds` at `now`.
    fn available(&self, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
        self.ready
            && (min_ready_seconds <= 0
                || self
                    .ready_since
                    .is_none_or(|t| t + chrono::Duration::seconds(min_ready_seconds.into()) <= now))
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    super::node_lifecycle::parse_time(s)
}

/// What to do for one DaemonSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that need a pod.
    pub create_on: Vec<String>,
    /// Indexes (into the pods given) of pods to delete.
    pub delete: Vec<usize>,
    /// Nodes whose finished pods are deleted (their replacement backs off).
    pub failed_on: Vec<String>,
}

/// Decides creates and deletes from `nodes` (name and placement, every node
/// that exists) and the DaemonSet's `pods`. Terminating pods are left alone
/// and do not count, but, as in Kubernetes, a node whose pod is still
/// terminating gets its new pod only once the old one is gone (they may
/// share host ports); pods not yet pinned to any node are left for the
/// scheduler.
pub fn plan(nodes: &[(String, Placement)], pods: &[DaemonPod]) -> Plan {
    let mut by_node: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut leaving: HashSet<&str> = HashSet::new();
    for (i, p) in pods.iter().enumerate() {
        if p.terminating {
            if let Some(n) = p.node.as_deref() {
                leaving.insert(n);
            }
            continue;
        }
        if let Some(n) = p.node.as_deref() {
            by_node.entry(n).or_default().push(i);
        }
    }
    let mut out = Plan::default();
    for (name, place) in nodes {
        let here = by_node.remove(name.as_str()).unwrap_or_default();
        if !place.should_continue_running {
            out.delete.extend(here);
            continue;
        }
        let (finished, mut active): (Vec<usize>, Vec<usize>) =
            here.into_iter().partition(|&i| pods[i].finished);
        if !finished.is_empty() {
            out.delete.extend(finished);
            out.failed_on.push(name.clone());
        }
        if active.is_empty() {
            if place.should_run && !leaving.contains(name.as_str()) {
                out.create_on.push(name.clone());
            }
        } else if active.len() > 1 {
            active.sort_by(|&a, &b| pods[a].keep_order().cmp(&pods[b].keep_order()));
            out.delete.extend(active.into_iter().skip(1));
        }
    }
    // Pods of nodes that no longer exist.
    let mut gone: Vec<usize> = by_node.into_values().flatten().collect();
    gone.sort_unstable();
    out.delete.extend(gone);
    out
}

/// The DaemonSet's status from the cluster as seen, and how long until a
/// ready pod becomes available (to look again then), if any is pending.
pub fn compute_status(
    nodes: &[(String, Placement)],
    pods: &[DaemonPod],
    generation: i64,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> (DaemonSetStatus, Option<Duration>) {
    let mut by_node: HashMap<&str, Vec<&DaemonPod>> = HashMap::new();
    for p in pods.iter().filter(|p| p.active()) {
        if let Some(n) = p.node.as_deref() {
            by_node.entry(n).or_default().push(p);
        }
    }
    let mut st = DaemonSetStatus {
        observed_generation: generation,
        ..Default::default()
    };
    let mut recheck: Option<Duration> = None;
    for (name, place) in nodes {
        let here = by_node.get(name.as_str());
        let kept = here.and_then(|v| v.iter().min_by(|a, b| a.keep_order().cmp(&b.keep_order())));
        if place.should_run {
            st.desired_number_scheduled += 1;
            let Some(p) = kept else { continue };
            st.current_number_scheduled += 1;
            if p.ready {
                st.number_ready += 1;
                if p.available(min_ready_seconds, now) {
                    st.number_available += 1;
                } else if let Some(since) = p.ready_since {
                    let at = since + chrono::Duration::seconds(min_ready_seconds.into());
                    let left = (at - now).to_std().unwrap_or_default();
                    recheck = Some(recheck.map_or(left, |r| r.min(left)));
                }
            }
        } else if kept.is_some() {
            st.number_misscheduled += 1;
        }
    }
    // No rolling updates yet: every scheduled pod counts as updated.
    st.updated_number_scheduled = st.current_number_scheduled;
    st.number_unavailable = (st.desired_number_scheduled - st.number_available).max(0);
    (st, recheck)
}

/// Back-off before replacing a finished pod for the `n`-th time in a row.
pub fn failed_backoff(n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(16);
    (FAILED_BACKOFF_BASE * factor).min(FAILED_BACKOFF_MAX)
}

// ---------------------------------------------------------------- expectations

#[derive(Debug)]
struct Expect {
    /// Pods created (`namespace/name`) the cache has not shown yet.
    creates: HashSet<String>,
    /// Pods deleted (`namespace/name` → uid) the cache still shows.
    deletes: HashMap<String, String>,
    /// A write whose outcome is unknown: wait for the timeout.
    uncertain: bool,
    since: Instant,
}

/// Writes of each DaemonSet the pod cache has not observed yet. Until it
/// has (or [`EXPECTATIONS_TIMEOUT`] passed), the DaemonSet is not managed,
/// so a stale cache never makes it create or delete twice.
#[derive(Debug, Default)]
pub struct Expectations {
    inner: parking_lot::Mutex<HashMap<String, Expect>>,
}

impl Expectations {
    fn entry<'a>(map: &'a mut HashMap<String, Expect>, ds: &str, now: Instant) -> &'a mut Expect {
        let e = map.entry(ds.to_string()).or_insert_with(|| Expect {
            creates: HashSet::new(),
            deletes: HashMap::new(),
            uncertain: false,
            since: now,
        });
        e.since = now;
        e
    }

    /// DaemonSet `ds` created pod `pod` (`namespace/name`).
    pub fn created(&self, ds: &str, pod: &str, now: Instant) {
        Self::entry(&mut self.inner.lock(), ds, now)
            .creates
            .insert(pod.to_string());
    }

    /// DaemonSet `ds` deleted pod `pod` with `uid`.
    pub fn deleted(&self, ds: &str, pod: &str, uid: &str, now: Instant) {
        Self::entry(&mut self.inner.lock(), ds, now)
            .deletes
            .insert(pod.to_string(), uid.to_string());
    }

    /// A write of `ds` may or may not have happened.
    pub fn uncertain(&self, ds: &str, now: Instant) {
        Self::entry(&mut self.inner.lock(), ds, now).uncertain = true;
    }

    /// The pod cache showed pod `pod` (`gone`: deleted or being deleted).
    pub fn observe(&self, ds: &str, pod: &str, uid: &str, gone: bool) {
        let mut map = self.inner.lock();
        if let Some(e) = map.get_mut(ds) {
            e.creates.remove(pod);
            if gone && e.deletes.get(pod).is_some_and(|u| u == uid) {
                e.deletes.remove(pod);
            }
        }
    }

    /// `Ok` when `ds` may act: its writes are all visible in the cache
    /// (`lookup` reads it) or it waited long enough; else how long at most
    /// until it may.
    pub fn satisfied(
        &self,
        ds: &str,
        now: Instant,
        lookup: impl Fn(&str) -> Option<Arc<Object>>,
    ) -> Result<(), Duration> {
        let mut map = self.inner.lock();
        let Some(e) = map.get_mut(ds) else {
            return Ok(());
        };
        let waited = now.saturating_duration_since(e.since);
        if waited >= EXPECTATIONS_TIMEOUT {
            map.remove(ds);
            return Ok(());
        }
        e.creates.retain(|k| lookup(k).is_none());
        e.deletes.retain(|k, uid| {
            lookup(k).is_some_and(|o| {
                o.metadata()
                    .is_some_and(|m| &m.uid == uid && m.deletion_timestamp.is_empty())
            })
        });
        if e.creates.is_empty() && e.deletes.is_empty() && !e.uncertain {
            map.remove(ds);
            return Ok(());
        }
        Err(EXPECTATIONS_TIMEOUT - waited)
    }

    pub fn forget(&self, ds: &str) {
        self.inner.lock().remove(ds);
    }
}

// ---------------------------------------------------------------- controller

struct DaemonSetController {
    handlers: Handlers,
    dss: Arc<Informer>,
    pods: Arc<Informer>,
    nodes: Arc<Informer>,
    recorder: EventRecorder,
    expectations: Arc<Expectations>,
    /// (DaemonSet key, node) → (finished pods in a row, when last seen).
    failures: parking_lot::Mutex<HashMap<(String, String), (u32, Instant)>>,
}

/// The key of the DaemonSet controlling a pod, if one does.
fn owning_daemonset(o: &Object) -> Option<String> {
    let r = controller_of(o.metadata()?)?;
    (r.kind == Kind::DaemonSet.name()).then(|| key_of(o.namespace(), &r.name))
}

fn as_pod(o: &Object) -> Option<&Pod> {
    match o.kind.as_ref() {
        Some(Body::Pod(p)) => Some(p),
        _ => None,
    }
}

fn daemonset_selector(o: &Object) -> Option<LabelSelector> {
    match o.kind.as_ref() {
        Some(Body::DaemonSet(ds)) => ds
            .spec
            .as_ref()?
            .selector
            .as_ref()
            .and_then(|s| LabelSelector::from_proto(s).ok())
            .filter(|s| !s.is_empty()),
        _ => None,
    }
}

/// Whether a node change can change where DaemonSets run.
fn node_change_matters(old: Option<&Object>, new: &Object, deleted: bool) -> bool {
    let Some(old) = old else { return true };
    if deleted {
        return true;
    }
    let parts = |o: &Object| match o.kind.as_ref() {
        Some(Body::Node(n)) => (
            n.metadata.as_ref().map(|m| m.labels.clone()),
            n.spec.as_ref().map(|s| s.taints.clone()),
        ),
        _ => (None, None),
    };
    parts(old) != parts(new)
}

impl DaemonSetController {
    async fn wait_synced(&self) {
        self.dss.wait_synced().await;
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
    }

    /// Adopts orphans and releases pods that stopped matching; returns the
    /// pods now owned.
    async fn claim_pods(
        &self,
        ds_obj: &Object,
        ds: &DaemonSet,
        selector: &LabelSelector,
    ) -> Result<Vec<Pod>, ApiError> {
        let meta = ds.metadata.clone().unwrap_or_default();
        let mut owned = Vec::new();
        let mut adopt = Vec::new();
        let mut release = Vec::new();
        for o in self.pods.list_namespace(&meta.namespace) {
            let Some(p) = as_pod(&o) else { continue };
            match claim(p, &meta.uid, selector) {
                Claim::Owned => owned.push(p.clone()),
                Claim::Adopt => adopt.push(p.clone()),
                Claim::Release => release.push(p.clone()),
                Claim::Ignore => {}
            }
        }
        if !adopt.is_empty() {
            // Adopt only for the live DaemonSet (not a deleted and recreated
            // one of the same name, nor one being deleted).
            let fresh = self
                .handlers
                .get(Kind::DaemonSet.name(), &meta.namespace, &meta.name, "")
                .await?;
            let live = fresh
                .metadata()
                .is_some_and(|m| m.uid == meta.uid && m.deletion_timestamp.is_empty());
            if live {
                for p in adopt {
                    let pm = p.metadata.clone().unwrap_or_default();
                    let r = self
                        .handlers
                        .patch(
                            Kind::Pod.name(),
                            &pm.namespace,
                            &pm.name,
                            "merge",
                            &adopt_patch(&pm, owner_ref(ds)),
                            false,
                        )
                        .await;
                    match r {
                        Ok(o) => {
                            tracing::info!(daemonset = %object_key(ds_obj), pod = %pm.name, "adopted pod");
                            if let Some(p) = as_pod(&o) {
                                owned.push(p.clone());
                            }
                        }
                        // Changed or gone meanwhile: its notice brings us back.
                        Err(ApiError::NotFound(_)) | Err(ApiError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        for p in release {
            let pm = p.metadata.clone().unwrap_or_default();
            match self
                .handlers
                .patch(
                    Kind::Pod.name(),
                    &pm.namespace,
                    &pm.name,
                    "merge",
                    &release_patch(&pm, &meta.uid),
                    false,
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(daemonset = %object_key(ds_obj), pod = %pm.name, "released pod")
                }
                Err(ApiError::NotFound(_)) | Err(ApiError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(owned)
    }

    /// Applies a plan: deletes, then creates in growing batches (1, 2, 4,
    /// ...) that stop at the first failure. Returns when to look again for
    /// backed-off nodes, or the first error.
    async fn manage(
        &self,
        key: &str,
        ds_obj: &Object,
        ds: &DaemonSet,
        nodes: &[(String, Placement)],
        pods: &[DaemonPod],
    ) -> Result<Option<Duration>, ApiError> {
        let plan = plan(nodes, pods);
        let now = Instant::now();
        let mut retry_in: Option<Duration> = None;
        let mut create_on = Vec::new();
        {
            let mut failures = self.failures.lock();
            // A ready pod on a node ends that node's run of failures.
            for p in pods.iter().filter(|p| p.active() && p.ready) {
                if let Some(n) = &p.node {
                    failures.remove(&(key.to_string(), n.clone()));
                }
            }
            for n in &plan.failed_on {
                let e = failures
                    .entry((key.to_string(), n.clone()))
                    .or_insert((0, now));
                *e = (e.0 + 1, now);
            }
            for n in &plan.create_on {
                match failures.get(&(key.to_string(), n.clone())) {
                    Some(&(count, last)) if now < last + failed_backoff(count) => {
                        let left = last + failed_backoff(count) - now;
                        retry_in = Some(retry_in.map_or(left, |r| r.min(left)));
                    }
                    _ => create_on.push(n.clone()),
                }
            }
        }
        let mut first_err: Option<ApiError> = None;

        let deletes = plan.delete.iter().map(|&i| {
            let p = &pods[i];
            self.expectations
                .deleted(key, &key_of(&p.namespace, &p.name), &p.uid, Instant::now());
            async move {
                let r = self
                    .handlers
                    .delete(
                        Kind::Pod.name(),
                        &p.namespace,
                        &p.name,
                        "",
                        Some(Preconditions {
                            uid: p.uid.clone(),
                            resource_version: String::new(),
                        }),
                    )
                    .await;
                (p, r)
            }
        });
        for (p, r) in futures::future::join_all(deletes).await {
            match r {
                Ok(_) => self.recorder.record(
                    ds_obj,
                    NORMAL,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", p.name),
                ),
                Err(ApiError::NotFound(_)) | Err(ApiError::Conflict(_)) => {}
                Err(e) => {
                    if matches!(e, ApiError::OutcomeUnknown(_)) {
                        self.expectations.uncertain(key, Instant::now());
                    } else {
                        self.expectations.observe(
                            key,
                            &key_of(&p.namespace, &p.name),
                            &p.uid,
                            true,
                        );
                    }
                    self.recorder.record(
                        ds_obj,
                        WARNING,
                        "FailedDelete",
                        &format!("Error deleting: {e}"),
                    );
                    first_err.get_or_insert(e);
                }
            }
        }

        let mut batch = 1;
        let mut rest = create_on.as_slice();
        while !rest.is_empty() && first_err.is_none() {
            let (now_batch, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            batch *= 2;
            let creates = now_batch.iter().map(|node| {
                let pod = Object::from_body(Body::Pod(new_daemon_pod(ds, node)));
                self.handlers.create(pod, false)
            });
            for r in futures::future::join_all(creates).await {
                match r {
                    Ok(p) => {
                        self.expectations
                            .created(key, &object_key(&p), Instant::now());
                        self.recorder.record(
                            ds_obj,
                            NORMAL,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", p.name()),
                        );
                    }
                    Err(e) => {
                        if matches!(e, ApiError::OutcomeUnknown(_)) {
                            self.expectations.uncertain(key, Instant::now());
                        }
                        self.recorder.record(
                            ds_obj,
                            WARNING,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        );
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(retry_in),
        }
    }
}

#[tonic::async_trait]
impl Reconcile for DaemonSetController {
    fn name(&self) -> &'static str {
        "daemonset"
    }

    async fn reconcile(&self, key: &str) -> Result<Action, ApiError> {
        self.wait_synced().await;
        let Some(ds_obj) = self.dss.get_key(key) else {
            self.expectations.forget(key);
            self.failures.lock().retain(|(k, _), _| k != key);
            return Ok(Action::Done);
        };
        let Some(Body::DaemonSet(ds)) = ds_obj.kind.as_ref() else {
            return Ok(Action::Done);
        };
        let meta = ds.metadata.clone().unwrap_or_default();
        if !meta.deletion_timestamp.is_empty() {
            return Ok(Action::Done);
        }
        let spec = ds.spec.clone().unwrap_or_default();
        let Some(selector) = daemonset_selector(&ds_obj) else {
            // Validation refuses these; never select every pod.
            tracing::warn!(daemonset = key, "no usable selector; skipping");
            return Ok(Action::Done);
        };
        let template = spec
            .template
            .as_ref()
            .and_then(|t| t.spec.clone())
            .unwrap_or_default();

        let owned = self.claim_pods(&ds_obj, ds, &selector).await?;
        let pods: Vec<DaemonPod> = owned.iter().map(DaemonPod::of).collect();
        let mut nodes: Vec<(String, Placement)> = self
            .nodes
            .list()
            .iter()
            .filter_map(|o| match o.kind.as_ref() {
                Some(Body::Node(n)) => Some((o.name().to_string(), placement(&template, n))),
                _ => None,
            })
            .collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));

        let mut next: Option<Duration> = None;
        let mut result = Ok(());
        let pod_cache = self.pods.clone();
        match self
            .expectations
            .satisfied(key, Instant::now(), |k| pod_cache.get_key(k))
        {
            Ok(()) => match self.manage(key, &ds_obj, ds, &nodes, &pods).await {
                Ok(retry) => next = retry,
                Err(e) => result = Err(e),
            },
            // The pod notices that satisfy it requeue us; this is the
            // fallback in case they never come.
            Err(wait) => next = Some(wait),
        }

        let (status, recheck) = compute_status(
            &nodes,
            &pods,
            meta.generation,
            spec.min_ready_seconds,
            Utc::now(),
        );
        if let Some(r) = recheck {
            next = Some(next.map_or(r, |n| n.min(r)));
        }
        if ds.status.unwrap_or_default() != status {
            let mut upd = (*ds_obj).clone();
            if let Some(Body::DaemonSet(d)) = upd.kind.as_mut() {
                d.status = Some(status);
            }
            self.handlers.update(upd, true, false).await?;
        }
        result?;
        Ok(next.map_or(Action::Done, Action::RequeueAfter))
    }
}

/// Starts this controller on `informers`.
pub fn start(informers: &Informers, cfg: &ControllerConfig) {
    let dss = informers.get(Kind::DaemonSet);
    let pods = informers.get(Kind::Pod);
    let nodes = informers.get(Kind::Node);
    let handlers = informers.handlers().clone();
    let expectations = Arc::new(Expectations::default());
    let ctrl = Arc::new(DaemonSetController {
        recorder: EventRecorder::new(handlers.clone(), COMPONENT),
        handlers,
        dss: dss.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        expectations: expectations.clone(),
        failures: Default::default(),
    });
    let queue = WorkQueue::new();
    let map = {
        let dss = dss.clone();
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
                Kind::DaemonSet => {
                    if *deleted {
                        expectations.forget(&object_key(new));
                    }
                    vec![object_key(new)]
                }
                Kind::Node => {
                    if node_change_matters(old.as_deref(), new, *deleted) {
                        dss.keys()
                    } else {
                        Vec::new()
                    }
                }
                Kind::Pod => {
                    let mut keys = Vec::new();
                    let pod_key = object_key(new);
                    let uid = new.metadata().map(|m| m.uid.clone()).unwrap_or_default();
                    let gone = *deleted
                        || new
                            .metadata()
                            .is_some_and(|m| !m.deletion_timestamp.is_empty());
                    for o in std::iter::once(new).chain(old.as_ref()) {
                        if let Some(k) = owning_daemonset(o) {
                            expectations.observe(&k, &pod_key, &uid, gone);
                            if !keys.contains(&k) {
                                keys.push(k);
                            }
                        }
                    }
                    // An orphan: whichever DaemonSets may adopt it.
                    let orphan = new.metadata().is_some_and(|m| controller_of(m).is_none());
                    if orphan && !gone {
                        let labels = new.metadata().map(|m| m.labels.clone()).unwrap_or_default();
                        for d in dss.list_namespace(new.namespace()) {
                            if daemonset_selector(&d).is_some_and(|s| s.matches(&labels)) {
                                let k = object_key(&d);
                                if !keys.contains(&k) {
                                    keys.push(k);
                                }
                            }
                        }
                    }
                    keys
                }
                _ => Vec::new(),
            }
        }
    };
    let all = {
        let dss = dss.clone();
        move || dss.keys()
    };
    feed(
        informers,
        &[Kind::DaemonSet, Kind::Node, Kind::Pod],
        queue.clone(),
        cfg.resync,
        map,
        all,
    );
    run_workers(informers, ctrl, queue, cfg.workers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{
        DaemonSetSpec, LabelSelector as ProtoSelector, NodeAffinity, NodeSelector, NodeSpec,
        PodCondition, PodStatus, PodTemplateSpec, Taint,
    };

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn node(name: &str, l: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                labels: labels(l),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                taints,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: String::new(),
            effect: effect.into(),
            time_added: String::new(),
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn affinity(terms: Vec<NodeSelectorTerm>) -> Affinity {
        Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
        }
    }

    fn term(exprs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: exprs,
            match_fields: vec![],
        }
    }

    fn daemonset(name: &str, template: PodSpec) -> DaemonSet {
        DaemonSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                uid: "ds-uid".into(),
                generation: 3,
                ..Default::default()
            }),
            spec: Some(DaemonSetSpec {
                selector: Some(ProtoSelector {
                    match_labels: labels(&[("name", name)]),
                    ..Default::default()
                }),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: labels(&[("name", name)]),
                        annotations: labels(&[("note", "x")]),
                        ..Default::default()
                    }),
                    spec: Some(template),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const RUN: Placement = Placement {
        should_run: true,
        should_continue_running: true,
    };
    const STAY: Placement = Placement {
        should_run: false,
        should_continue_running: true,
    };
    const NONE: Placement = Placement {
        should_run: false,
        should_continue_running: false,
    };

    fn dpod(name: &str, node: Option<&str>, created: &str) -> DaemonPod {
        DaemonPod {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            node: node.map(str::to_string),
            created: parse_time(created),
            ..Default::default()
        }
    }

    fn nodes(list: &[(&str, Placement)]) -> Vec<(String, Placement)> {
        list.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn requirements_and_selectors() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        assert!(requirement_matches(&req("zone", "In", &["a", "b"]), &l));
        assert!(!requirement_matches(&req("zone", "In", &["b"]), &l));
        assert!(requirement_matches(&req("zone", "NotIn", &["b"]), &l));
        assert!(requirement_matches(&req("gpu", "NotIn", &["x"]), &l));
        assert!(requirement_matches(&req("zone", "Exists", &[]), &l));
        assert!(!requirement_matches(&req("gpu", "Exists", &[]), &l));
        assert!(requirement_matches(&req("gpu", "DoesNotExist", &[]), &l));
        assert!(requirement_matches(&req("cores", "Gt", &["4"]), &l));
        assert!(!requirement_matches(&req("cores", "Gt", &["8"]), &l));
        assert!(requirement_matches(&req("cores", "Lt", &["64"]), &l));
        assert!(!requirement_matches(&req("zone", "Gt", &["1"]), &l));
        assert!(!requirement_matches(&req("gpu", "Lt", &["1"]), &l));
        assert!(!requirement_matches(&req("zone", "Like", &["a"]), &l));

        assert!(node_selector_matches(&labels(&[]), &l));
        assert!(node_selector_matches(&labels(&[("zone", "a")]), &l));
        assert!(!node_selector_matches(&labels(&[("zone", "b")]), &l));

        // Terms are ORed, expressions ANDed, matchFields ignored.
        let a = affinity(vec![
            term(vec![req("zone", "In", &["b"])]),
            term(vec![req("zone", "In", &["a"]), req("cores", "Gt", &["4"])]),
        ]);
        assert!(required_affinity_matches(Some(&a), &l));
        let a = affinity(vec![term(vec![
            req("zone", "In", &["a"]),
            req("gpu", "Exists", &[]),
        ])]);
        assert!(!required_affinity_matches(Some(&a), &l));
        let fields_only = affinity(vec![NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req(NODE_NAME_FIELD, "In", &["elsewhere"])],
        }]);
        assert!(required_affinity_matches(Some(&fields_only), &l));
        assert!(required_affinity_matches(None, &l));
        assert!(required_affinity_matches(Some(&Affinity::default()), &l));
    }

    #[test]
    fn placement_follows_selector_affinity_and_taints() {
        let spec = PodSpec {
            node_selector: labels(&[("node", "server")]),
            ..Default::default()
        };
        let server = node("wn1", &[("node", "server")], vec![]);
        assert_eq!(placement(&spec, &server), RUN);
        let other = node("wn3", &[], vec![]);
        assert_eq!(placement(&spec, &other), NONE);

        let spec = PodSpec {
            affinity: Some(affinity(vec![term(vec![req("disk", "In", &["ssd"])])])),
            ..Default::default()
        };
        assert_eq!(
            placement(&spec, &node("a", &[("disk", "ssd")], vec![])),
            RUN
        );
        assert_eq!(
            placement(&spec, &node("b", &[("disk", "hdd")], vec![])),
            NONE
        );

        // Taints: the automatic tolerations cover not-ready/unreachable
        // NoExecute and the pressure/unschedulable NoSchedule taints.
        let plain = PodSpec::default();
        for t in [
            taint(TAINT_NOT_READY, NO_EXECUTE),
            taint(TAINT_UNREACHABLE, NO_EXECUTE),
            taint("node.kubernetes.io/disk-pressure", NO_SCHEDULE),
            taint("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
            taint("node.kubernetes.io/pid-pressure", NO_SCHEDULE),
            taint("node.kubernetes.io/unschedulable", NO_SCHEDULE),
            taint("whatever", "PreferNoSchedule"),
        ] {
            assert_eq!(
                placement(&plain, &node("n", &[], vec![t.clone()])),
                RUN,
                "{t:?}"
            );
        }
        // An unreachable node (NoSchedule + NoExecute): keep the pod, make no
        // new one.
        let unreachable = node(
            "n",
            &[],
            vec![
                taint(TAINT_UNREACHABLE, NO_SCHEDULE),
                taint(TAINT_UNREACHABLE, NO_EXECUTE),
            ],
        );
        assert_eq!(placement(&plain, &unreachable), STAY);
        // An untolerated NoExecute taint: no pod at all.
        let dedicated = node("n", &[], vec![taint("dedicated", NO_EXECUTE)]);
        assert_eq!(placement(&plain, &dedicated), NONE);
        let master = node(
            "n",
            &[],
            vec![taint("node-role.kubernetes.io/control-plane", NO_SCHEDULE)],
        );
        assert_eq!(placement(&plain, &master), STAY);
        // ...unless the template tolerates it.
        let tolerant = PodSpec {
            tolerations: vec![Toleration {
                key: "dedicated".into(),
                operator: "Exists".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(placement(&tolerant, &dedicated), RUN);
        // Readiness is not required.
        let mut not_ready = node("n", &[], vec![]);
        not_ready.status = Some(rkube_api::proto::NodeStatus {
            conditions: vec![rkube_api::proto::NodeCondition {
                r#type: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(placement(&plain, &not_ready), RUN);
        // A template naming a node runs only there.
        let named = PodSpec {
            node_name: "wn2".into(),
            ..Default::default()
        };
        assert_eq!(placement(&named, &node("wn1", &[], vec![])), NONE);
        assert_eq!(placement(&named, &node("wn2", &[], vec![])), RUN);
    }

    #[test]
    fn tolerations_are_added_or_updated() {
        let mut list = vec![Toleration {
            key: TAINT_UNREACHABLE.into(),
            operator: "Exists".into(),
            effect: NO_EXECUTE.into(),
            toleration_seconds: Some(60),
            ..Default::default()
        }];
        let user = Toleration {
            key: "dedicated".into(),
            value: "gpu".into(),
            ..Default::default()
        };
        list.push(user.clone());
        let all = with_daemon_tolerations(&list);
        assert_eq!(all.len(), 7);
        // The same toleration with seconds is replaced by the forever one.
        let unreachable: Vec<_> = all.iter().filter(|t| t.key == TAINT_UNREACHABLE).collect();
        assert_eq!(unreachable.len(), 1);
        assert_eq!(unreachable[0].toleration_seconds, None);
        assert!(all.contains(&user));
        // Idempotent.
        assert_eq!(with_daemon_tolerations(&all), all);
    }

    #[test]
    fn pinning_and_target_node() {
        let a = pin_to_node(None, "wn1");
        let terms = &a
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(
            terms[0].match_fields,
            vec![req(NODE_NAME_FIELD, "In", &["wn1"])]
        );
        assert!(terms[0].match_expressions.is_empty());

        // The template's terms keep their expressions; matchFields replaced.
        let template = affinity(vec![
            NodeSelectorTerm {
                match_expressions: vec![req("disk", "In", &["ssd"])],
                match_fields: vec![req(NODE_NAME_FIELD, "In", &["old"])],
            },
            term(vec![req("zone", "Exists", &[])]),
        ]);
        let mut with_pref = template.clone();
        with_pref
            .node_affinity
            .as_mut()
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .push(Default::default());
        let a = pin_to_node(Some(with_pref), "wn2");
        let na = a.node_affinity.as_ref().unwrap();
        assert_eq!(
            na.preferred_during_scheduling_ignored_during_execution
                .len(),
            1
        );
        let terms = &na
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 2);
        assert_eq!(
            terms[0].match_expressions,
            vec![req("disk", "In", &["ssd"])]
        );
        assert_eq!(terms[1].match_expressions, vec![req("zone", "Exists", &[])]);
        for t in terms {
            assert_eq!(t.match_fields, vec![req(NODE_NAME_FIELD, "In", &["wn2"])]);
        }

        let mut pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(a),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&pod), Some("wn2"));
        // Bound: nodeName wins.
        pod.spec.as_mut().unwrap().node_name = "wn9".into();
        assert_eq!(target_node(&pod), Some("wn9"));
        assert_eq!(target_node(&Pod::default()), None);
    }

    #[test]
    fn new_pod_is_owned_pinned_and_tolerant() {
        let ds = daemonset(
            "nginx-ds",
            PodSpec {
                node_selector: labels(&[("node", "server")]),
                ..Default::default()
            },
        );
        let pod = new_daemon_pod(&ds, "wn1");
        let meta = pod.metadata.as_ref().unwrap();
        assert_eq!(meta.generate_name, "nginx-ds-");
        assert!(meta.name.is_empty());
        assert_eq!(meta.namespace, "default");
        assert_eq!(meta.labels, labels(&[("name", "nginx-ds")]));
        assert_eq!(meta.annotations, labels(&[("note", "x")]));
        assert_eq!(
            meta.owner_references,
            vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "DaemonSet".into(),
                name: "nginx-ds".into(),
                uid: "ds-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        );
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.node_name.is_empty(), "the scheduler binds it");
        assert_eq!(spec.node_selector, labels(&[("node", "server")]));
        assert_eq!(spec.tolerations, daemon_tolerations());
        assert_eq!(target_node(&pod), Some("wn1"));
    }

    #[test]
    fn claims() {
        let sel = LabelSelector::from_map(&labels(&[("name", "x")]));
        let mk = |l: &[(&str, &str)], owner: Option<&str>, deleting: bool| Pod {
            metadata: Some(ObjectMeta {
                labels: labels(l),
                deletion_timestamp: if deleting {
                    "2024-01-01T00:00:00Z".into()
                } else {
                    String::new()
                },
                owner_references: owner
                    .map(|u| {
                        vec![OwnerReference {
                            uid: u.into(),
                            controller: Some(true),
                            ..Default::default()
                        }]
                    })
                    .unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            claim(&mk(&[("name", "x")], Some("me"), false), "me", &sel),
            Claim::Owned
        );
        assert_eq!(
            claim(&mk(&[("name", "y")], Some("me"), false), "me", &sel),
            Claim::Release
        );
        assert_eq!(
            claim(&mk(&[("name", "y")], Some("me"), true), "me", &sel),
            Claim::Owned
        );
        assert_eq!(
            claim(&mk(&[("name", "x")], Some("other"), false), "me", &sel),
            Claim::Ignore
        );
        assert_eq!(
            claim(&mk(&[("name", "x")], None, false), "me", &sel),
            Claim::Adopt
        );
        assert_eq!(
            claim(&mk(&[("name", "x")], None, true), "me", &sel),
            Claim::Ignore
        );
        assert_eq!(
            claim(&mk(&[("name", "y")], None, false), "me", &sel),
            Claim::Ignore
        );

        let meta = ObjectMeta {
            resource_version: "42".into(),
            owner_references: vec![OwnerReference {
                uid: "other".into(),
                controller: Some(false),
                ..Default::default()
            }],
            ..Default::default()
        };
        let p: serde_json::Value = serde_json::from_str(&adopt_patch(
            &meta,
            OwnerReference {
                uid: "me".into(),
                controller: Some(true),
                ..Default::default()
            },
        ))
        .unwrap();
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert_eq!(
            p["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );
        assert_eq!(p["metadata"]["ownerReferences"][1]["uid"], "me");
        let p: serde_json::Value = serde_json::from_str(&release_patch(&meta, "other")).unwrap();
        assert_eq!(p["metadata"]["ownerReferences"], serde_json::json!([]));
    }

    #[test]
    fn plan_creates_on_eligible_nodes_without_pods() {
        let ns = nodes(&[("wn1", RUN), ("wn2", RUN), ("wn3", NONE)]);
        let pods = vec![dpod("a", Some("wn1"), "2024-01-01T00:00:00Z")];
        let p = plan(&ns, &pods);
        assert_eq!(p.create_on, vec!["wn2".to_string()]);
        assert!(p.delete.is_empty());
        // A pod on a node where it should merely stay: kept, no create.
        let ns = nodes(&[("wn1", STAY), ("wn2", STAY)]);
        let p = plan(&ns, &pods);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn plan_deletes_misplaced_gone_and_duplicate_pods() {
        let ns = nodes(&[("wn1", RUN), ("wn2", NONE)]);
        let mut old = dpod("old", Some("wn1"), "2024-01-01T00:00:00Z");
        old.bound = true;
        let new = dpod("new", Some("wn1"), "2024-01-01T00:05:00Z");
        let pods = vec![
            new,
            old,
            dpod("mis", Some("wn2"), "2024-01-01T00:00:00Z"),
            dpod("ghost", Some("wn9"), "2024-01-01T00:00:00Z"),
            dpod("unpinned", None, "2024-01-01T00:00:00Z"),
        ];
        let p = plan(&ns, &pods);
        assert!(p.create_on.is_empty());
        let mut del: Vec<&str> = p.delete.iter().map(|&i| pods[i].name.as_str()).collect();
        del.sort();
        assert_eq!(del, vec!["ghost", "mis", "new"]);
    }

    #[test]
    fn duplicates_keep_running_bound_then_oldest() {
        let ns = nodes(&[("wn1", RUN)]);
        let mut running = dpod("running", Some("wn1"), "2024-01-01T00:09:00Z");
        running.bound = true;
        running.running = true;
        let mut bound = dpod("bound", Some("wn1"), "2024-01-01T00:01:00Z");
        bound.bound = true;
        let oldest = dpod("oldest", Some("wn1"), "2024-01-01T00:00:00Z");
        let pods = vec![oldest.clone(), bound.clone(), running];
        let p = plan(&ns, &pods);
        let kept: Vec<&str> = (0..3)
            .filter(|i| !p.delete.contains(i))
            .map(|i| pods[i].name.as_str())
            .collect();
        assert_eq!(kept, vec!["running"]);
        // Without a running one: the bound one.
        let pods = vec![oldest.clone(), bound];
        assert_eq!(plan(&ns, &pods).delete, vec![0]);
        // All pending: the oldest (ties by name).
        let twin = dpod("a-twin", Some("wn1"), "2024-01-01T00:00:00Z");
        let pods = vec![
            oldest,
            dpod("young", Some("wn1"), "2024-01-01T01:00:00Z"),
            twin,
        ];
        let p = plan(&ns, &pods);
        let mut del = p.delete.clone();
        del.sort();
        assert_eq!(del, vec![0, 1]);
    }

    #[test]
    fn terminating_pods_are_waited_for_and_finished_pods_replaced() {
        let ns = nodes(&[("wn1", RUN), ("wn2", RUN), ("wn3", RUN)]);
        let mut leaving = dpod("leaving", Some("wn1"), "2024-01-01T00:00:00Z");
        leaving.terminating = true;
        let mut failed = dpod("failed", Some("wn2"), "2024-01-01T00:00:00Z");
        failed.finished = true;
        let mut leaving3 = dpod("leaving3", Some("wn3"), "2024-01-01T00:00:00Z");
        leaving3.terminating = true;
        let staying3 = dpod("staying3", Some("wn3"), "2024-01-01T00:00:00Z");
        let pods = vec![leaving, failed, leaving3, staying3];
        let p = plan(&ns, &pods);
        // wn1 waits until its terminating pod is gone (as Kubernetes).
        assert_eq!(p.create_on, vec!["wn2".to_string()]);
        assert_eq!(p.delete, vec![1]);
        assert_eq!(p.failed_on, vec!["wn2".to_string()]);
        // Once it is gone, a new one is created.
        let p = plan(&ns[..1], &[]);
        assert_eq!(p.create_on, vec!["wn1".to_string()]);
        // A terminating pod on a gone node is not deleted again.
        let mut t = dpod("t", Some("gone"), "2024-01-01T00:00:00Z");
        t.terminating = true;
        assert_eq!(plan(&[], &[t]), Plan::default());
    }

    #[test]
    fn status_counts() {
        let now = parse_time("2024-01-01T00:10:00Z").unwrap();
        let ns = nodes(&[
            ("wn1", RUN),
            ("wn2", RUN),
            ("wn3", RUN),
            ("wn4", STAY),
            ("wn5", NONE),
        ]);
        let ready = |name: &str, node: &str, since: &str| {
            let mut p = dpod(name, Some(node), "2024-01-01T00:00:00Z");
            p.bound = true;
            p.running = true;
            p.ready = true;
            p.ready_since = parse_time(since);
            p
        };
        let pods = vec![
            ready("a", "wn1", "2024-01-01T00:01:00Z"),
            // A duplicate does not count twice.
            ready("a2", "wn1", "2024-01-01T00:01:00Z"),
            ready("b", "wn2", "2024-01-01T00:09:50Z"),
            dpod("stay", Some("wn4"), "2024-01-01T00:00:00Z"),
            dpod("gone-node", Some("wn9"), "2024-01-01T00:00:00Z"),
        ];
        let (st, recheck) = compute_status(&ns, &pods, 7, 0, now);
        assert_eq!(
            st,
            DaemonSetStatus {
                desired_number_scheduled: 3,
                current_number_scheduled: 2,
                number_misscheduled: 1,
                number_ready: 2,
                observed_generation: 7,
                updated_number_scheduled: 2,
                number_available: 2,
                number_unavailable: 1,
            }
        );
        assert_eq!(recheck, None);
        // minReadySeconds: b has been ready 10 s of 30.
        let (st, recheck) = compute_status(&ns, &pods, 7, 30, now);
        assert_eq!(st.number_ready, 2);
        assert_eq!(st.number_available, 1);
        assert_eq!(st.number_unavailable, 2);
        assert_eq!(recheck, Some(Duration::from_secs(20)));
        // Terminating and finished pods do not count.
        let mut t = ready("t", "wn3", "2024-01-01T00:01:00Z");
        t.terminating = true;
        let mut f = ready("f", "wn3", "2024-01-01T00:01:00Z");
        f.finished = true;
        let (st, _) = compute_status(&nodes(&[("wn3", RUN)]), &[t, f], 1, 0, now);
        assert_eq!(st.current_number_scheduled, 0);
        assert_eq!(st.number_unavailable, 1);
    }

    #[test]
    fn daemon_pod_view() {
        let pod = Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                namespace: "default".into(),
                uid: "u".into(),
                creation_timestamp: "2024-01-01T00:00:00Z".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: "wn1".into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: "2024-01-01T00:00:05Z".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = DaemonPod::of(&pod);
        assert_eq!(d.node.as_deref(), Some("wn1"));
        assert!(d.bound && d.running && d.ready && d.active());
        assert_eq!(d.ready_since, parse_time("2024-01-01T00:00:05Z"));
        assert_eq!(d.created, parse_time("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(failed_backoff(1), Duration::from_secs(1));
        assert_eq!(failed_backoff(2), Duration::from_secs(2));
        assert_eq!(failed_backoff(4), Duration::from_secs(8));
        assert_eq!(failed_backoff(100), FAILED_BACKOFF_MAX);
    }

    fn pod_obj(ns: &str, name: &str, uid: &str, deleting: bool) -> Arc<Object> {
        Arc::new(Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                uid: uid.into(),
                deletion_timestamp: if deleting {
                    "2024-01-01T00:00:00Z".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            ..Default::default()
        })))
    }

    #[test]
    fn expectations_wait_for_the_cache() {
        let e = Expectations::default();
        let t0 = Instant::now();
        let empty = |_: &str| None;
        assert_eq!(e.satisfied("default/ds", t0, empty), Ok(()));

        // A create the cache has not shown yet holds the DaemonSet...
        e.created("default/ds", "default/ds-abcde", t0);
        let left = e.satisfied("default/ds", t0 + Duration::from_secs(1), empty);
        assert_eq!(left, Err(EXPECTATIONS_TIMEOUT - Duration::from_secs(1)));
        // ...until it does (level-based: a relist counts too).
        let cache = |k: &str| {
            (k == "default/ds-abcde").then(|| pod_obj("default", "ds-abcde", "u1", false))
        };
        assert_eq!(e.satisfied("default/ds", t0, cache), Ok(()));

        // Or until a notice about it was seen (it may be gone again since).
        e.created("default/ds", "default/ds-fghij", t0);
        e.observe("default/ds", "default/ds-fghij", "u2", true);
        assert_eq!(e.satisfied("default/ds", t0, empty), Ok(()));

        // A delete holds it while the cache still shows that pod alive.
        e.deleted("default/ds", "default/ds-abcde", "u1", t0);
        assert!(e.satisfied("default/ds", t0, cache).is_err());
        // Terminating counts as observed; a new pod under the name too.
        let deleting = |_: &str| Some(pod_obj("default", "ds-abcde", "u1", true));
        assert_eq!(e.satisfied("default/ds", t0, deleting), Ok(()));
        e.deleted("default/ds", "default/ds-abcde", "u1", t0);
        let replaced = |_: &str| Some(pod_obj("default", "ds-abcde", "other", false));
        assert_eq!(e.satisfied("default/ds", t0, replaced), Ok(()));
        // Delete notice.
        e.deleted("default/ds", "default/ds-abcde", "u1", t0);
        e.observe("default/ds", "default/ds-abcde", "wrong-uid", true);
        assert!(e.satisfied("default/ds", t0, cache).is_err());
        e.observe("default/ds", "default/ds-abcde", "u1", true);
        assert_eq!(e.satisfied("default/ds", t0, cache), Ok(()));

        // An unknown outcome waits for the timeout.
        e.uncertain("default/ds", t0);
        assert!(e
            .satisfied("default/ds", t0 + Duration::from_secs(29), empty)
            .is_err());
        assert_eq!(
            e.satisfied("default/ds", t0 + EXPECTATIONS_TIMEOUT, empty),
            Ok(())
        );
        // Timeout in general, and forgetting.
        e.created("default/ds", "default/never", t0);
        assert_eq!(
            e.satisfied("default/ds", t0 + Duration::from_secs(31), empty),
            Ok(())
        );
        e.created("default/ds", "default/never", t0);
        e.forget("default/ds");
        assert_eq!(e.satisfied("default/ds", t0, empty), Ok(()));
        // Other DaemonSets are independent.
        e.created("default/a", "default/a-1", t0);
        assert_eq!(e.satisfied("default/b", t0, empty), Ok(()));
    }

    #[test]
    fn node_changes_that_matter() {
        let mk = |l: &[(&str, &str)], taints: Vec<Taint>, ready: &str| {
            let mut n = node("wn1", l, taints);
            n.status = Some(rkube_api::proto::NodeStatus {
                conditions: vec![rkube_api::proto::NodeCondition {
                    r#type: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            Object::from_body(Body::Node(n))
        };
        let a = mk(&[("x", "1")], vec![], "True");
        assert!(node_change_matters(None, &a, false));
        assert!(node_change_matters(Some(&a), &a, true));
        // Heartbeats and readiness alone do not matter.
        assert!(!node_change_matters(
            Some(&a),
            &mk(&[("x", "1")], vec![], "False"),
            false
        ));
        assert!(node_change_matters(
            Some(&a),
            &mk(&[("x", "2")], vec![], "True"),
            false
        ));
        assert!(node_change_matters(
            Some(&a),
            &mk(&[("x", "1")], vec![taint("t", NO_SCHEDULE)], "True"),
            false
        ));
    }
}

/// A one-replica store in a temporary directory with real handlers, for
/// tests that run controllers end to end in-process.
#[cfg(test)]
pub(crate) mod testing {
    use crate::controllers::informer::Informers;
    use crate::handlers::Handlers;
    use rkube_api::kinds::Kind;
    use rkube_api::proto::object::Kind as Body;
    use rkube_api::Object;
    use std::future::Future;
    use std::time::Duration;

    pub(crate) struct Cluster {
        pub handlers: Handlers,
        pub informers: Informers,
        _replica: crate::testing::OneReplica,
    }

    pub(crate) async fn start() -> Cluster {
        let replica = crate::testing::one_replica(10, 5, &["default", "kube-node-lease"]).await;
        Cluster {
            informers: Informers::new(replica.handlers.clone()),
            handlers: replica.handlers.clone(),
            _replica: replica,
        }
    }

    impl Cluster {
        pub(crate) async fn list(&self, kind: Kind, namespace: &str) -> Vec<Object> {
            self.handlers
                .list(kind.name(), namespace, "", "", "")
                .await
                .unwrap()
                .0
        }

        pub(crate) async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Object> {
            self.handlers
                .get(kind.name(), namespace, name, "")
                .await
                .ok()
        }

        pub(crate) async fn events(&self, reason: &str) -> Vec<rkube_api::proto::Event> {
            self.list(Kind::Event, "")
                .await
                .into_iter()
                .filter_map(|o| match o.kind {
                    Some(Body::Event(e)) if e.reason == reason => Some(e),
                    _ => None,
                })
                .collect()
        }
    }

    /// Polls `f` until it yields a value (at most 30 s).
    pub(crate) async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod end_to_end {
    use super::testing::{eventually, start, Cluster};
    use super::*;
    use rkube_api::proto::{
        Container, DaemonSetSpec, LabelSelector as ProtoSelector, NodeSpec, PodTemplateSpec,
    };

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    async fn create_node(c: &Cluster, name: &str, l: &[(&str, &str)]) {
        let n = Object::from_body(Body::Node(Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                labels: labels(l),
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            ..Default::default()
        }));
        c.handlers.create(n, false).await.unwrap();
    }

    fn container() -> Container {
        Container {
            name: "nginx-container".into(),
            image: "nginx".into(),
            ..Default::default()
        }
    }

    /// The seed's nginx-ds-subsetnodes.yml: nodeSelector node=server.
    fn nginx_ds() -> Object {
        Object::from_body(Body::DaemonSet(DaemonSet {
            metadata: Some(ObjectMeta {
                name: "nginx-ds".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(DaemonSetSpec {
                selector: Some(ProtoSelector {
                    match_labels: labels(&[("name", "nginx")]),
                    ..Default::default()
                }),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: labels(&[("name", "nginx")]),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container()],
                        node_selector: labels(&[("node", "server")]),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    /// The pods (by node, sorted) of the DaemonSet with `uid`.
    async fn ds_pods(c: &Cluster, uid: &str) -> Vec<(String, Pod)> {
        let mut out: Vec<(String, Pod)> = c
            .list(Kind::Pod, "default")
            .await
            .into_iter()
            .filter_map(|o| match o.kind {
                Some(Body::Pod(p)) => Some(p),
                _ => None,
            })
            .filter(|p| {
                p.metadata
                    .as_ref()
                    .and_then(controller_of)
                    .is_some_and(|r| r.uid == uid)
            })
            .map(|p| (target_node(&p).unwrap_or_default().to_string(), p))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    async fn wait_nodes(c: &Cluster, uid: &str, want: &[&str]) -> Vec<(String, Pod)> {
        let what = format!("daemon pods on {want:?}");
        eventually(&what, || async {
            let pods = ds_pods(c, uid).await;
            let nodes: Vec<&str> = pods.iter().map(|(n, _)| n.as_str()).collect();
            (nodes == want).then_some(pods)
        })
        .await
    }

    async fn ds_status(c: &Cluster) -> DaemonSetStatus {
        match c.get(Kind::DaemonSet, "default", "nginx-ds").await {
            Some(Object {
                kind: Some(Body::DaemonSet(d)),
            }) => d.status.unwrap_or_default(),
            _ => panic!("the DaemonSet is gone"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn daemonset_follows_nodes_labels_and_orphans() {
        let c = start().await;
        create_node(&c, "wn1", &[("node", "server")]).await;
        create_node(&c, "wn2", &[("node", "server")]).await;
        create_node(&c, "wn3", &[]).await;
        let ds = c.handlers.create(nginx_ds(), false).await.unwrap();
        let uid = ds.metadata().unwrap().uid.clone();
        let cfg = ControllerConfig {
            resync: Duration::from_secs(1),
            workers: 2,
            ..Default::default()
        };
        start_controller(&c, &cfg);

        // One pod on each labelled node, pinned by affinity, not bound.
        let pods = wait_nodes(&c, &uid, &["wn1", "wn2"]).await;
        for (node, p) in &pods {
            let meta = p.metadata.as_ref().unwrap();
            assert!(meta.name.starts_with("nginx-ds-"), "{}", meta.name);
            assert_eq!(meta.generate_name, "nginx-ds-");
            assert_eq!(meta.labels, labels(&[("name", "nginx")]));
            let r = controller_of(meta).unwrap();
            assert_eq!(
                (r.kind.as_str(), r.name.as_str()),
                ("DaemonSet", "nginx-ds")
            );
            assert_eq!(r.block_owner_deletion, Some(true));
            let spec = p.spec.as_ref().unwrap();
            assert!(spec.node_name.is_empty());
            assert_eq!(target_node(p), Some(node.as_str()));
            for t in daemon_tolerations() {
                assert!(spec.tolerations.contains(&t), "{t:?}");
            }
        }
        eventually("status 2/2", || async {
            let st = ds_status(&c).await;
            (st.desired_number_scheduled == 2
                && st.current_number_scheduled == 2
                && st.number_misscheduled == 0
                && st.updated_number_scheduled == 2
                && st.number_unavailable == 2
                && st.observed_generation == 1)
                .then_some(())
        })
        .await;
        eventually("SuccessfulCreate events", || async {
            (!c.events("SuccessfulCreate").await.is_empty()).then_some(())
        })
        .await;

        // A node gains the label: a pod for it.
        c.handlers
            .patch(
                "Node",
                "",
                "wn3",
                "merge",
                r#"{"metadata":{"labels":{"node":"server"}}}"#,
                false,
            )
            .await
            .unwrap();
        wait_nodes(&c, &uid, &["wn1", "wn2", "wn3"]).await;
        // Stable: no duplicates appear over several resyncs.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(ds_pods(&c, &uid).await.len(), 3);

        // A node loses the label: its pod goes.
        c.handlers
            .patch(
                "Node",
                "",
                "wn1",
                "merge",
                r#"{"metadata":{"labels":{"node":null}}}"#,
                false,
            )
            .await
            .unwrap();
        wait_nodes(&c, &uid, &["wn2", "wn3"]).await;
        eventually("SuccessfulDelete events", || async {
            (!c.events("SuccessfulDelete").await.is_empty()).then_some(())
        })
        .await;

        // A node is deleted: its pod goes.
        c.handlers
            .delete("Node", "", "wn2", "", None)
            .await
            .unwrap();
        let pods = wait_nodes(&c, &uid, &["wn3"]).await;
        let pending = pods[0].1.metadata.as_ref().unwrap().name.clone();

        // An orphan bound to wn3 is adopted; of the two pods for wn3 the
        // bound one stays.
        let stray = Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: "stray".into(),
                namespace: "default".into(),
                labels: labels(&[("name", "nginx")]),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![container()],
                node_name: "wn3".into(),
                ..Default::default()
            }),
            ..Default::default()
        }));
        c.handlers.create(stray, false).await.unwrap();
        eventually(
            "the stray adopted and the pending duplicate deleted",
            || async {
                let pods = ds_pods(&c, &uid).await;
                let names: Vec<String> = pods
                    .iter()
                    .map(|(_, p)| p.metadata.as_ref().unwrap().name.clone())
                    .collect();
                (names == ["stray"]).then_some(())
            },
        )
        .await;
        assert!(c.get(Kind::Pod, "default", &pending).await.is_none());

        // The node becomes unreachable: the pod stays (tolerated NoExecute),
        // no new one is made, and it counts as misscheduled.
        c.handlers
            .patch(
                "Node",
                "",
                "wn3",
                "merge",
                r#"{"spec":{"taints":[
                    {"key":"node.kubernetes.io/unreachable","effect":"NoSchedule"},
                    {"key":"node.kubernetes.io/unreachable","effect":"NoExecute"}]}}"#,
                false,
            )
            .await
            .unwrap();
        eventually("status after unreachable", || async {
            let st = ds_status(&c).await;
            (st.desired_number_scheduled == 0 && st.number_misscheduled == 1).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let pods = ds_pods(&c, &uid).await;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].1.metadata.as_ref().unwrap().name, "stray");

        // An untolerated NoExecute taint: the pod goes.
        c.handlers
            .patch(
                "Node",
                "",
                "wn3",
                "merge",
                r#"{"spec":{"taints":[{"key":"dedicated","value":"db","effect":"NoExecute"}]}}"#,
                false,
            )
            .await
            .unwrap();
        // The stray is bound, so its deletion is graceful: Terminating
        // until its node's agent (none here) finishes it.
        eventually("the stray terminating", || async {
            let pods = ds_pods(&c, &uid).await;
            (pods.len() == 1
                && !pods[0]
                    .1
                    .metadata
                    .as_ref()
                    .unwrap()
                    .deletion_timestamp
                    .is_empty())
            .then_some(())
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn daemonset_with_affinity_and_tolerations() {
        let c = start().await;
        create_node(&c, "ssd1", &[("disk", "ssd")]).await;
        create_node(&c, "hdd1", &[("disk", "hdd")]).await;
        // A dedicated node only tolerant DaemonSets may use.
        let tainted = Object::from_body(Body::Node(Node {
            metadata: Some(ObjectMeta {
                name: "ssd2".into(),
                labels: labels(&[("disk", "ssd")]),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                taints: vec![rkube_api::proto::Taint {
                    key: "dedicated".into(),
                    value: "storage".into(),
                    effect: "NoSchedule".into(),
                    time_added: String::new(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }));
        c.handlers.create(tainted, false).await.unwrap();
        let mut ds = nginx_ds();
        if let Some(Body::DaemonSet(d)) = ds.kind.as_mut() {
            let spec = d
                .spec
                .as_mut()
                .unwrap()
                .template
                .as_mut()
                .unwrap()
                .spec
                .as_mut()
                .unwrap();
            spec.node_selector.clear();
            spec.affinity = Some(Affinity {
                node_affinity: Some(rkube_api::proto::NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(
                        rkube_api::proto::NodeSelector {
                            node_selector_terms: vec![NodeSelectorTerm {
                                match_expressions: vec![NodeSelectorRequirement {
                                    key: "disk".into(),
                                    operator: "In".into(),
                                    values: vec!["ssd".into()],
                                }],
                                match_fields: vec![],
                            }],
                        },
                    ),
                    ..Default::default()
                }),
            });
        }
        let ds = c.handlers.create(ds, false).await.unwrap();
        let uid = ds.metadata().unwrap().uid.clone();
        start_controller(
            &c,
            &ControllerConfig {
                resync: Duration::from_secs(1),
                workers: 1,
                ..Default::default()
            },
        );
        let pods = wait_nodes(&c, &uid, &["ssd1"]).await;
        let terms = &pods[0]
            .1
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_expressions[0].key, "disk");
        assert_eq!(terms[0].match_fields[0].values, vec!["ssd1".to_string()]);

        // Tolerating the taint (a template change) brings ssd2 in.
        let mut upd = c.get(Kind::DaemonSet, "default", "nginx-ds").await.unwrap();
        if let Some(Body::DaemonSet(d)) = upd.kind.as_mut() {
            let spec = d
                .spec
                .as_mut()
                .unwrap()
                .template
                .as_mut()
                .unwrap()
                .spec
                .as_mut()
                .unwrap();
            spec.tolerations.push(Toleration {
                key: "dedicated".into(),
                operator: "Equal".into(),
                value: "storage".into(),
                effect: "NoSchedule".into(),
                toleration_seconds: None,
            });
        }
        c.handlers.update(upd, false, false).await.unwrap();
        wait_nodes(&c, &uid, &["ssd1", "ssd2"]).await;
        eventually("observedGeneration 2", || async {
            let st = ds_status(&c).await;
            (st.observed_generation == 2 && st.desired_number_scheduled == 2).then_some(())
        })
        .await;
    }

    fn start_controller(c: &Cluster, cfg: &ControllerConfig) {
        super::start(&c.informers, cfg);
    }
}
