//! ReplicationController and ReplicaSet controller.
//!
//! Both kinds keep `spec.replicas` pods of their template running; they
//! differ only in how the selector is written (an equality map for an RC,
//! `matchLabels`/`matchExpressions` for an RS). One generic implementation,
//! [`ReplicaManager`], works over [`ReplicaOwner`], which both implement.
//!
//! One reconcile of an owner (`namespace/name`):
//!
//! 1. Check the owner's expectations ([`Expectations`]): creates and deletes
//!    issued earlier that the pod informer has not shown yet. While some are
//!    outstanding (for at most [`EXPECTATIONS_TIMEOUT`]) no pods are created
//!    or deleted, so a slow cache never causes a double create.
//! 2. Claim pods ([`claim_pods`]): of the namespace's active pods, those
//!    whose controller ownerReference is the owner and whose labels match
//!    are its own; matching orphans are adopted (after a linearizable read
//!    confirms the owner is still this one and not being deleted); owned
//!    pods that no longer match are released.
//! 3. Create the missing pods from the template in slow-start batches
//!    (1, 2, 4, ... so a create that fails, fails once), or delete the
//!    surplus, worst pods first ([`pods_to_delete`]).
//! 4. Write the status ([`calculate_status`]) if it changed.
//!
//! Owners being deleted (deletionTimestamp) are left to the garbage
//! collector.

use super::events::{EventRecorder, NORMAL, WARNING};
use super::informer::{key_of, object_key, Informer, Informers, Notice};
use super::workqueue::WorkQueue;
use super::{feed, run_workers, Action, ControllerConfig, Reconcile};
use crate::handlers::{ApiError, Handlers};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use rkube_api::kinds::Kind;
use rkube_api::proto::{
    object::Kind as Body, ObjectMeta, OwnerReference, Pod, PodCondition, PodTemplateSpec,
    Preconditions, ReplicaCondition, ReplicaSet, ReplicaSetStatus, ReplicationController,
    ReplicationControllerStatus,
};
use rkube_api::selector::LabelSelector;
use rkube_api::Object;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// How long outstanding creates/deletes block an owner before they are
/// assumed lost (Kubernetes waits 5 minutes; our writes either commit within
/// seconds or fail).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many pods are created or deleted in one reconcile, as in
/// Kubernetes (`burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// Pod-name prefixes are cut to this length so the random suffix fits a
/// DNS label, as Kubernetes' name generator does.
const MAX_GENERATE_NAME_PREFIX: usize = 58;

/// The condition set while creating or deleting pods fails.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

static NO_LABELS: LazyLock<HashMap<String, String>> = LazyLock::new(HashMap::new);

// ---------------------------------------------------------------- pod helpers

/// The pod inside an object, if it holds one.
pub fn pod_of(o: &Object) -> Option<&Pod> {
    match o.kind.as_ref() {
        Some(Body::Pod(p)) => Some(p),
        _ => None,
    }
}

pub fn pod_phase(p: &Pod) -> &str {
    p.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("")
}

/// Active: not being deleted and not terminated (Succeeded or Failed).
pub fn pod_is_active(p: &Pod) -> bool {
    let deleting = p
        .metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty());
    !deleting && !matches!(pod_phase(p), "Succeeded" | "Failed")
}

/// The pod's `Ready` condition, if it has one.
pub fn pod_ready_condition(p: &Pod) -> Option<&PodCondition> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
}

/// Ready: the `Ready` condition is `True`.
pub fn pod_is_ready(p: &Pod) -> bool {
    pod_ready_condition(p).is_some_and(|c| c.status == "True")
}

/// Since when the pod has been ready (its Ready condition's
/// lastTransitionTime), if it is ready.
pub fn pod_ready_since(p: &Pod) -> Option<DateTime<Utc>> {
    pod_ready_condition(p)
        .filter(|c| c.status == "True")
        .and_then(|c| parse_time(&c.last_transition_time))
}

/// The ownerReference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .find(|r| r.controller == Some(true))
}

/// An object's labels (empty if it has none).
pub fn labels_of(o: &Object) -> &HashMap<String, String> {
    o.metadata().map(|m| &m.labels).unwrap_or(&NO_LABELS)
}

/// Parses an RFC 3339 timestamp as the API writes them.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The ownerReference a controller puts on what it creates.
pub fn controller_owner_ref(kind: Kind, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: kind.api_version().into(),
        kind: kind.name().into(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `<owner>-`, cut so that the generated name stays a valid DNS label.
pub fn generate_name_prefix(owner: &str) -> String {
    let mut prefix = format!("{owner}-");
    if prefix.len() > MAX_GENERATE_NAME_PREFIX {
        let mut cut = MAX_GENERATE_NAME_PREFIX;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    prefix
}

/// A new pod from an owner's template: its labels, annotations, finalizers
/// and spec, named `<owner>-xxxxx`, controlled by the owner.
pub fn pod_from_template(kind: Kind, owner: &ObjectMeta, template: &PodTemplateSpec) -> Object {
    let tm = template.metadata.clone().unwrap_or_default();
    Object::from_body(Body::Pod(Pod {
        metadata: Some(ObjectMeta {
            generate_name: generate_name_prefix(&owner.name),
            namespace: owner.namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: vec![controller_owner_ref(kind, owner)],
            ..Default::default()
        }),
        spec: template.spec.clone(),
        ..Default::default()
    }))
}

// ---------------------------------------------------------------- owners

/// The status fields ReplicationControllers and ReplicaSets share.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<ReplicaCondition>,
}

/// What the controller needs of the object that owns replicas.
pub trait ReplicaOwner: Clone + Send + Sync + 'static {
    const KIND: Kind;
    /// The component name on events and logs.
    const CONTROLLER: &'static str;
    fn from_object(o: &Object) -> Option<&Self>;
    fn meta(&self) -> Option<&ObjectMeta>;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    /// The selector; `None` when it is missing, invalid or empty (an owner
    /// like that claims nothing).
    fn selector(&self) -> Option<LabelSelector>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn status(&self) -> ReplicaStatus;
    /// This object with `status`, ready for a status update.
    fn with_status(&self, status: &ReplicaStatus) -> Object;
}

impl ReplicaOwner for ReplicationController {
    const KIND: Kind = Kind::ReplicationController;
    const CONTROLLER: &'static str = "replication-controller";

    fn from_object(o: &Object) -> Option<&Self> {
        match o.kind.as_ref() {
            Some(Body::ReplicationController(rc)) => Some(rc),
            _ => None,
        }
    }
    fn meta(&self) -> Option<&ObjectMeta> {
        self.metadata.as_ref()
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().map(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn selector(&self) -> Option<LabelSelector> {
        let spec = self.spec.as_ref()?;
        let sel = LabelSelector::from_map(&spec.selector);
        (!sel.is_empty()).then_some(sel)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions,
        }
    }
    fn with_status(&self, st: &ReplicaStatus) -> Object {
        let mut rc = self.clone();
        rc.status = Some(ReplicationControllerStatus {
            replicas: st.replicas,
            fully_labeled_replicas: st.fully_labeled_replicas,
            ready_replicas: st.ready_replicas,
            available_replicas: st.available_replicas,
            observed_generation: st.observed_generation,
            conditions: st.conditions.clone(),
        });
        Object::from_body(Body::ReplicationController(rc))
    }
}

impl ReplicaOwner for ReplicaSet {
    const KIND: Kind = Kind::ReplicaSet;
    const CONTROLLER: &'static str = "replicaset-controller";

    fn from_object(o: &Object) -> Option<&Self> {
        match o.kind.as_ref() {
            Some(Body::ReplicaSet(rs)) => Some(rs),
            _ => None,
        }
    }
    fn meta(&self) -> Option<&ObjectMeta> {
        self.metadata.as_ref()
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().map(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn selector(&self) -> Option<LabelSelector> {
        let raw = self.spec.as_ref()?.selector.as_ref()?;
        LabelSelector::from_proto(raw)
            .ok()
            .filter(|s| !s.is_empty())
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions,
        }
    }
    fn with_status(&self, st: &ReplicaStatus) -> Object {
        let mut rs = self.clone();
        rs.status = Some(ReplicaSetStatus {
            replicas: st.replicas,
            fully_labeled_replicas: st.fully_labeled_replicas,
            ready_replicas: st.ready_replicas,
            available_replicas: st.available_replicas,
            observed_generation: st.observed_generation,
            conditions: st.conditions.clone(),
        });
        Object::from_body(Body::ReplicaSet(rs))
    }
}

// ---------------------------------------------------------------- pure logic

/// How an owner's view of the namespace's pods divides up.
#[derive(Debug, Default)]
pub struct Claims {
    /// Controlled by the owner and matching its selector.
    pub owned: Vec<Arc<Object>>,
    /// Without a controller, matching the selector: to adopt.
    pub adopt: Vec<Arc<Object>>,
    /// Controlled by the owner but no longer matching: to release.
    pub release: Vec<Arc<Object>>,
}

/// Divides `pods` (the namespace's active pods) for the owner with uid
/// `owner_uid`. Pods controlled by someone else are left out.
pub fn claim_pods(owner_uid: &str, selector: &LabelSelector, pods: &[Arc<Object>]) -> Claims {
    let mut c = Claims::default();
    for p in pods {
        let Some(meta) = p.metadata() else { continue };
        let matches = selector.matches(&meta.labels);
        match controller_ref(meta) {
            Some(r) if r.uid == owner_uid => {
                if matches {
                    c.owned.push(p.clone());
                } else {
                    c.release.push(p.clone());
                }
            }
            Some(_) => {}
            None => {
                if matches && meta.deletion_timestamp.is_empty() {
                    c.adopt.push(p.clone());
                }
            }
        }
    }
    c
}

/// Batch sizes for creating `total` pods: 1, 2, 4, ... (starting at
/// `initial`), the last one what remains.
pub fn slow_start_batches(total: usize, initial: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = total;
    let mut size = initial.max(1);
    while left > 0 {
        let n = size.min(left);
        out.push(n);
        left -= n;
        size = size.saturating_mul(2);
    }
    out
}

/// The order in which surplus pods go, worst first: unscheduled before
/// scheduled, Pending before Unknown before Running, not ready before ready,
/// ready for less time before more, more restarts before fewer, newer
/// before older (then by name, for determinism).
#[allow(clippy::type_complexity)]
fn deletion_rank(
    p: &Pod,
) -> (
    bool,
    u8,
    bool,
    Reverse<Option<DateTime<Utc>>>,
    Reverse<i32>,
    Reverse<Option<DateTime<Utc>>>,
    String,
) {
    let meta = p.metadata.clone().unwrap_or_default();
    let scheduled = p.spec.as_ref().is_some_and(|s| !s.node_name.is_empty());
    let phase = match pod_phase(p) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let ready = pod_is_ready(p);
    let restarts = p
        .status
        .as_ref()
        .map(|s| {
            s.container_statuses
                .iter()
                .map(|c| c.restart_count)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    (
        scheduled,
        phase,
        ready,
        Reverse(pod_ready_since(p)),
        Reverse(restarts),
        Reverse(parse_time(&meta.creation_timestamp)),
        meta.name,
    )
}

/// The `n` pods of `pods` to delete first.
pub fn pods_to_delete(pods: &[Arc<Object>], n: usize) -> Vec<Arc<Object>> {
    let mut ranked: Vec<_> = pods
        .iter()
        .filter_map(|o| pod_of(o).map(|p| (deletion_rank(p), o.clone())))
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked.into_iter().take(n).map(|(_, o)| o).collect()
}

/// What a create or delete failure puts in the ReplicaFailure condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
}

/// The status of an owner with these owned (active) pods, and when to look
/// again for pods that are ready but not yet available (minReadySeconds).
pub fn calculate_status(
    owned: &[&Pod],
    template_labels: &HashMap<String, String>,
    min_ready_seconds: i32,
    generation: i64,
    prev_conditions: &[ReplicaCondition],
    failure: Option<&Failure>,
    now: DateTime<Utc>,
) -> (ReplicaStatus, Option<Duration>) {
    let template = LabelSelector::from_map(template_labels);
    let min_ready = chrono::Duration::seconds(min_ready_seconds.max(0).into());
    let mut st = ReplicaStatus {
        replicas: owned.len() as i32,
        observed_generation: generation,
        ..Default::default()
    };
    let mut recheck: Option<Duration> = None;
    for p in owned {
        let labels = p.metadata.as_ref().map(|m| &m.labels).unwrap_or(&NO_LABELS);
        if template.matches(labels) {
            st.fully_labeled_replicas += 1;
        }
        if !pod_is_ready(p) {
            continue;
        }
        st.ready_replicas += 1;
        if min_ready_seconds <= 0 {
            st.available_replicas += 1;
            continue;
        }
        // As Kubernetes: available once ready for strictly longer than
        // minReadySeconds; a ready pod without a transition time never is.
        if let Some(since) = pod_ready_since(p) {
            let at = since + min_ready;
            if at < now {
                st.available_replicas += 1;
            } else {
                // Timestamps have second resolution: look a second later.
                let wait = (at - now).to_std().unwrap_or_default() + Duration::from_secs(1);
                recheck = Some(recheck.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    st.conditions = prev_conditions.to_vec();
    let existing = st
        .conditions
        .iter()
        .position(|c| c.r#type == REPLICA_FAILURE);
    match (failure, existing) {
        (Some(f), None) => st.conditions.push(ReplicaCondition {
            r#type: REPLICA_FAILURE.into(),
            status: "True".into(),
            last_transition_time: format_time(now),
            reason: f.reason.clone(),
            message: f.message.clone(),
        }),
        (None, Some(i)) => {
            st.conditions.remove(i);
        }
        _ => {}
    }
    (st, recheck)
}

// ---------------------------------------------------------------- expectations

#[derive(Debug)]
struct Pending {
    /// Names of pods created and not yet seen in the cache.
    creates: HashSet<String>,
    /// Creates whose outcome is unknown (leader changed mid-write): only the
    /// deadline clears them.
    unknown: u32,
    /// uid -> name of pods deleted and still in the cache.
    deletes: HashMap<String, String>,
    deadline: Instant,
}

/// What each owner is waiting to see in the pod informer after creating or
/// deleting pods. Kept per owner key; checked against the cache (so a
/// relist that skips notices does not strand it) and cleared from notices;
/// forgotten after a timeout in any case.
pub struct Expectations {
    ttl: Duration,
    by_owner: parking_lot::Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    pub fn new(ttl: Duration) -> Expectations {
        Expectations {
            ttl,
            by_owner: Default::default(),
        }
    }

    /// Starts a round of creates or deletes for `key` (its deadline runs
    /// from now).
    pub fn begin(&self, key: &str, now: Instant) {
        self.by_owner.lock().insert(
            key.to_string(),
            Pending {
                creates: HashSet::new(),
                unknown: 0,
                deletes: HashMap::new(),
                deadline: now + self.ttl,
            },
        );
    }

    fn with(&self, key: &str, f: impl FnOnce(&mut Pending)) {
        if let Some(p) = self.by_owner.lock().get_mut(key) {
            f(p)
        }
    }

    /// A create succeeded: wait to see pod `name`.
    pub fn created(&self, key: &str, name: &str) {
        self.with(key, |p| {
            p.creates.insert(name.to_string());
        })
    }

    /// A create's outcome is unknown: wait out the deadline.
    pub fn create_unknown(&self, key: &str) {
        self.with(key, |p| p.unknown += 1)
    }

    /// A delete is about to be issued: wait to see pod `uid` go.
    pub fn deleting(&self, key: &str, uid: &str, name: &str) {
        self.with(key, |p| {
            p.deletes.insert(uid.to_string(), name.to_string());
        })
    }

    /// The informer showed pod `name` (or a create of it failed).
    pub fn observe_created(&self, key: &str, name: &str) {
        self.with(key, |p| {
            p.creates.remove(name);
        })
    }

    /// The informer showed pod `uid` deleted or being deleted (or the delete
    /// failed, or found it gone).
    pub fn observe_deleted(&self, key: &str, uid: &str) {
        self.with(key, |p| {
            p.deletes.remove(uid);
        })
    }

    pub fn forget(&self, key: &str) {
        self.by_owner.lock().remove(key);
    }

    /// Whether `key` may act. `None`: nothing outstanding (or the deadline
    /// passed); `Some(d)`: wait, at most `d`. `seen(name)` says whether the
    /// cache holds pod `name`; `gone(uid, name)` whether pod `uid` has left
    /// it (or is being deleted).
    pub fn pending(
        &self,
        key: &str,
        now: Instant,
        seen: impl Fn(&str) -> bool,
        gone: impl Fn(&str, &str) -> bool,
    ) -> Option<Duration> {
        let mut map = self.by_owner.lock();
        let p = map.get_mut(key)?;
        p.creates.retain(|n| !seen(n));
        p.deletes.retain(|uid, name| !gone(uid, name));
        if p.creates.is_empty() && p.deletes.is_empty() && p.unknown == 0 {
            map.remove(key);
            return None;
        }
        if now >= p.deadline {
            tracing::info!(
                key,
                creates = p.creates.len() + p.unknown as usize,
                deletes = p.deletes.len(),
                "expectations expired; acting on the cache as it is"
            );
            map.remove(key);
            return None;
        }
        Some(p.deadline - now)
    }
}

// ---------------------------------------------------------------- the controller

/// The controller of one owner kind.
pub struct ReplicaManager<O: ReplicaOwner> {
    handlers: Handlers,
    owners: Arc<Informer>,
    pods: Arc<Informer>,
    expectations: Arc<Expectations>,
    recorder: EventRecorder,
    _owner: PhantomData<fn() -> O>,
}

/// Starts the ReplicationController and the ReplicaSet controllers.
pub fn start(informers: &Informers, cfg: &ControllerConfig) {
    start_for::<ReplicationController>(informers, cfg);
    start_for::<ReplicaSet>(informers, cfg);
}

fn start_for<O: ReplicaOwner>(informers: &Informers, cfg: &ControllerConfig) {
    let owners = informers.get(O::KIND);
    let pods = informers.get(Kind::Pod);
    let expectations = Arc::new(Expectations::new(EXPECTATIONS_TIMEOUT));
    let mgr = Arc::new(ReplicaManager::<O> {
        handlers: informers.handlers().clone(),
        owners: owners.clone(),
        pods: pods.clone(),
        expectations: expectations.clone(),
        recorder: EventRecorder::new(informers.handlers().clone(), O::CONTROLLER),
        _owner: PhantomData,
    });
    let queue = WorkQueue::new();
    let (map_owners, all_owners) = (owners.clone(), owners.clone());
    feed(
        informers,
        &[O::KIND, Kind::Pod],
        queue.clone(),
        cfg.resync,
        move |n| notice_keys::<O>(n, &|ns| map_owners.list_namespace(ns), &expectations),
        move || all_owners.keys(),
    );
    let (inf, workers) = (informers.clone(), cfg.workers);
    informers.spawn(async move {
        // Acting on a half-filled pod cache would create pods that exist.
        owners.wait_synced().await;
        pods.wait_synced().await;
        tracing::debug!(
            controller = O::CONTROLLER,
            "caches synced; starting workers"
        );
        run_workers(&inf, mgr, queue, workers);
    });
}

/// The owner key a pod's controller reference names, if it is of kind `O`.
fn owner_key_of<O: ReplicaOwner>(pod: &Object) -> Option<String> {
    let meta = pod.metadata()?;
    let r = controller_ref(meta)?;
    (r.kind == O::KIND.name()).then(|| key_of(&meta.namespace, &r.name))
}

/// The owners of a namespace, as the owner informer lists them.
type OwnerLister<'a> = &'a dyn Fn(&str) -> Vec<Arc<Object>>;

/// Owners of kind `O` in `namespace` whose selector matches `labels`.
fn matching_owners<O: ReplicaOwner>(
    owners: OwnerLister,
    namespace: &str,
    labels: &HashMap<String, String>,
) -> Vec<String> {
    owners(namespace)
        .iter()
        .filter(|o| {
            O::from_object(o)
                .and_then(|x| x.selector())
                .is_some_and(|s| s.matches(labels))
        })
        .map(|o| object_key(o))
        .collect()
}

/// Maps an informer notice to the owner keys to reconcile, noting on the
/// way what the pod informer has shown of expected creates and deletes.
fn notice_keys<O: ReplicaOwner>(
    n: &Notice,
    owners: OwnerLister,
    expectations: &Expectations,
) -> Vec<String> {
    let Notice::Changed {
        kind,
        old,
        new,
        deleted,
    } = n
    else {
        return Vec::new();
    };
    if *kind == O::KIND {
        return vec![object_key(new)];
    }
    if *kind != Kind::Pod {
        return Vec::new();
    }
    let mut keys = Vec::new();
    let new_owner = owner_key_of::<O>(new);
    if let Some(k) = &new_owner {
        let meta = new.metadata().cloned().unwrap_or_default();
        if *deleted || !meta.deletion_timestamp.is_empty() {
            expectations.observe_deleted(k, &meta.uid);
        } else if old.is_none() {
            expectations.observe_created(k, &meta.name);
        }
        keys.push(k.clone());
    }
    if let Some(k) = old.as_deref().and_then(owner_key_of::<O>) {
        if Some(&k) != new_owner.as_ref() {
            keys.push(k);
        }
    }
    let orphan = new.metadata().is_some_and(|m| controller_ref(m).is_none());
    if orphan && !*deleted {
        // Someone may want to adopt it, under its old or new labels.
        keys.extend(matching_owners::<O>(
            owners,
            new.namespace(),
            labels_of(new),
        ));
        if let Some(o) = old {
            if labels_of(o) != labels_of(new) {
                keys.extend(matching_owners::<O>(owners, o.namespace(), labels_of(o)));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[tonic::async_trait]
impl<O: ReplicaOwner> Reconcile for ReplicaManager<O> {
    fn name(&self) -> &'static str {
        O::CONTROLLER
    }

    async fn reconcile(&self, key: &str) -> Result<Action, ApiError> {
        let Some(obj) = self.owners.get_key(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let Some(owner) = O::from_object(&obj) else {
            return Ok(Action::Done);
        };
        let meta = owner.meta().cloned().unwrap_or_default();
        if !meta.deletion_timestamp.is_empty() {
            // The garbage collector deals with owners being deleted.
            return Ok(Action::Done);
        }
        let Some(selector) = owner.selector() else {
            tracing::warn!(key, kind = %O::KIND, "no usable selector; not managing pods");
            return Ok(Action::Done);
        };
        let ns = meta.namespace.clone();

        // Expectations first, then the pod list: a pod the check counts as
        // seen is then certainly in the list.
        let waiting = self.expectations.pending(
            key,
            Instant::now(),
            |name| self.pods.get(&ns, name).is_some(),
            |uid, name| match self.pods.get(&ns, name) {
                None => true,
                Some(p) => {
                    let m = p.metadata().cloned().unwrap_or_default();
                    m.uid != uid || !m.deletion_timestamp.is_empty()
                }
            },
        );
        let active: Vec<Arc<Object>> = self
            .pods
            .list_namespace(&ns)
            .into_iter()
            .filter(|p| pod_of(p).is_some_and(pod_is_active))
            .collect();
        let claims = claim_pods(&meta.uid, &selector, &active);
        let mut owned = claims.owned;
        let mut sync_err: Option<ApiError> = None;
        if !claims.adopt.is_empty() {
            match self.can_adopt(&meta).await {
                Ok(true) => {
                    for p in &claims.adopt {
                        match self.adopt(key, &meta, p).await {
                            Ok(Some(pod)) => owned.push(Arc::new(pod)),
                            Ok(None) => {}
                            Err(e) => {
                                sync_err.get_or_insert(e);
                            }
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    sync_err.get_or_insert(e);
                }
            }
        }
        for p in &claims.release {
            if let Err(e) = self.release(key, &meta, p).await {
                sync_err.get_or_insert(e);
            }
        }

        let mut failure = None;
        if sync_err.is_some() {
            // Unsure which pods are ours: counting now could over-create.
            tracing::debug!(key, "claiming pods failed; not scaling this round");
        } else if waiting.is_none() {
            if let Err((f, e)) = self.manage(key, &obj, owner, &owned).await {
                failure = Some(f);
                sync_err.get_or_insert(e);
            }
        } else {
            tracing::debug!(
                key,
                "waiting for earlier creates/deletes to show in the cache"
            );
        }

        let pods: Vec<&Pod> = owned.iter().filter_map(|o| pod_of(o)).collect();
        let prev = owner.status();
        let template_labels = owner
            .template()
            .and_then(|t| t.metadata.as_ref())
            .map(|m| &m.labels)
            .unwrap_or(&NO_LABELS);
        let (status, recheck) = calculate_status(
            &pods,
            template_labels,
            owner.min_ready_seconds(),
            meta.generation,
            &prev.conditions,
            failure.as_ref(),
            Utc::now(),
        );
        if status != prev {
            let mut update = owner.with_status(&status);
            if let Some(m) = update.metadata_mut() {
                // No precondition: the status is derived from the cache and
                // only this controller writes it.
                m.resource_version.clear();
            }
            match self.handlers.update(update, true, false).await {
                Ok(_) => tracing::debug!(
                    key,
                    replicas = status.replicas,
                    ready = status.ready_replicas,
                    available = status.available_replicas,
                    "status updated"
                ),
                Err(ApiError::NotFound(_)) => return Ok(Action::Done),
                Err(e) => {
                    sync_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = sync_err {
            return Err(e);
        }
        let again = match (waiting, recheck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(again.map_or(Action::Done, Action::RequeueAfter))
    }
}

impl<O: ReplicaOwner> ReplicaManager<O> {
    /// Before adopting: a linearizable read confirms the cached owner is
    /// still the stored one (same uid) and not being deleted.
    async fn can_adopt(&self, meta: &ObjectMeta) -> Result<bool, ApiError> {
        match self
            .handlers
            .get(O::KIND.name(), &meta.namespace, &meta.name, "")
            .await
        {
            Ok(fresh) => Ok(fresh
                .metadata()
                .is_some_and(|m| m.uid == meta.uid && m.deletion_timestamp.is_empty())),
            Err(ApiError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds the controller reference to an orphan, if it is unchanged since
    /// it was read. `Ok(None)`: it changed or went; its notice requeues us.
    async fn adopt(
        &self,
        key: &str,
        owner: &ObjectMeta,
        pod: &Object,
    ) -> Result<Option<Object>, ApiError> {
        let meta = pod.metadata().cloned().unwrap_or_default();
        let mut refs = meta.owner_references.clone();
        refs.push(controller_owner_ref(O::KIND, owner));
        match self.patch_owner_refs(&meta, refs).await {
            Ok(p) => {
                tracing::info!(key, pod = %meta.name, "adopted pod");
                Ok(Some(p))
            }
            Err(ApiError::Conflict(_) | ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the owner's reference from a pod that no longer matches.
    async fn release(&self, key: &str, owner: &ObjectMeta, pod: &Object) -> Result<(), ApiError> {
        let meta = pod.metadata().cloned().unwrap_or_default();
        let refs: Vec<_> = meta
            .owner_references
            .iter()
            .filter(|r| r.uid != owner.uid)
            .cloned()
            .collect();
        match self.patch_owner_refs(&meta, refs).await {
            Ok(_) => {
                tracing::info!(key, pod = %meta.name, "released pod");
                Ok(())
            }
            Err(ApiError::Conflict(_) | ApiError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn patch_owner_refs(
        &self,
        pod: &ObjectMeta,
        refs: Vec<OwnerReference>,
    ) -> Result<Object, ApiError> {
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": pod.resource_version,
                "ownerReferences": refs,
            }
        });
        self.handlers
            .patch(
                "Pod",
                &pod.namespace,
                &pod.name,
                "merge",
                &patch.to_string(),
                false,
            )
            .await
    }

    /// Creates or deletes pods toward `replicas`.
    async fn manage(
        &self,
        key: &str,
        obj: &Object,
        owner: &O,
        owned: &[Arc<Object>],
    ) -> Result<(), (Failure, ApiError)> {
        let want = owner.replicas().max(0) as usize;
        let have = owned.len();
        if have < want {
            let n = (want - have).min(BURST_REPLICAS);
            tracing::info!(key, have, want, creating = n, "too few replicas");
            self.create_pods(key, obj, owner, n).await.map_err(|e| {
                let f = Failure {
                    reason: "FailedCreate".into(),
                    message: e.to_string(),
                };
                (f, e)
            })
        } else if have > want {
            let n = (have - want).min(BURST_REPLICAS);
            tracing::info!(key, have, want, deleting = n, "too many replicas");
            let victims = pods_to_delete(owned, n);
            self.delete_pods(key, obj, &victims).await.map_err(|e| {
                let f = Failure {
                    reason: "FailedDelete".into(),
                    message: e.to_string(),
                };
                (f, e)
            })
        } else {
            Ok(())
        }
    }

    async fn create_pods(
        &self,
        key: &str,
        obj: &Object,
        owner: &O,
        count: usize,
    ) -> Result<(), ApiError> {
        let meta = owner.meta().cloned().unwrap_or_default();
        let Some(template) = owner.template() else {
            let e = ApiError::Invalid("spec.template: Required value".into());
            self.recorder.record(
                obj,
                WARNING,
                "FailedCreate",
                &format!("Error creating: {e}"),
            );
            return Err(e);
        };
        self.expectations.begin(key, Instant::now());
        let mut attempted = 0;
        for batch in slow_start_batches(count, 1) {
            let creates = (0..batch).map(|_| {
                self.handlers
                    .create(pod_from_template(O::KIND, &meta, template), false)
            });
            let results = join_all(creates).await;
            attempted += batch;
            let mut failed = None;
            for r in results {
                match r {
                    Ok(pod) => {
                        self.expectations.created(key, pod.name());
                        tracing::debug!(key, pod = pod.name(), "created pod");
                        self.recorder.record(
                            obj,
                            NORMAL,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", pod.name()),
                        );
                    }
                    Err(ApiError::OutcomeUnknown(m)) => {
                        // It may exist: wait for it (or the deadline).
                        tracing::debug!(key, error = %m, "pod create outcome unknown");
                        self.expectations.create_unknown(key);
                    }
                    Err(e) => {
                        self.recorder.record(
                            obj,
                            WARNING,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        );
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                tracing::warn!(
                    key,
                    error = %e,
                    skipped = count - attempted,
                    "creating pods failed; skipping the rest of this round"
                );
                return Err(e);
            }
        }
        Ok(())
    }

    async fn delete_pods(
        &self,
        key: &str,
        obj: &Object,
        victims: &[Arc<Object>],
    ) -> Result<(), ApiError> {
        self.expectations.begin(key, Instant::now());
        for p in victims {
            self.expectations.deleting(key, uid_of(p), p.name());
        }
        let deletes = victims.iter().map(|p| {
            self.handlers.delete(
                "Pod",
                p.namespace(),
                p.name(),
                "",
                Some(Preconditions {
                    uid: uid_of(p).to_string(),
                    resource_version: String::new(),
                }),
            )
        });
        let results = join_all(deletes).await;
        let mut first_err = None;
        for (p, r) in victims.iter().zip(results) {
            match r {
                Ok(_) => {
                    tracing::debug!(key, pod = p.name(), "deleted pod");
                    self.recorder.record(
                        obj,
                        NORMAL,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", p.name()),
                    );
                }
                // Gone already, or replaced by a namesake: nothing to wait for.
                Err(ApiError::NotFound(_) | ApiError::Conflict(_)) => {
                    self.expectations.observe_deleted(key, uid_of(p));
                }
                Err(ApiError::OutcomeUnknown(_)) => {}
                Err(e) => {
                    self.expectations.observe_deleted(key, uid_of(p));
                    self.recorder.record(
                        obj,
                        WARNING,
                        "FailedDelete",
                        &format!("Error deleting: {e}"),
                    );
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn uid_of(o: &Object) -> &str {
    o.metadata().map(|m| m.uid.as_str()).unwrap_or("")
}

// ---------------------------------------------------------------- test support

/// A one-replica store in a temporary directory, for tests that run the
/// controllers against real handlers.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::Duration;

    pub use crate::testing::OneReplica as TestStore;

    /// Starts a single replica, waits for it to lead, creates `default` and
    /// `other`.
    pub async fn store() -> TestStore {
        crate::testing::one_replica(5, 4, &["default", "other"]).await
    }

    /// Waits until `f` holds (polling), or panics after `secs`.
    pub async fn eventually<F, Fut>(what: &str, secs: u64, f: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if f().await {
                return;
            }
            if tokio::time::Instant::now() > end {
                panic!("timed out waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{
        Container, ContainerStatus, LabelSelector as ProtoSelector, LabelSelectorRequirement,
        PodSpec, PodStatus, ReplicaSetSpec, ReplicationControllerSpec,
    };

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    struct P {
        name: &'static str,
        labels: Vec<(&'static str, &'static str)>,
        owner: Option<&'static str>,
        node: &'static str,
        phase: &'static str,
        ready_since: Option<&'static str>,
        restarts: i32,
        created: &'static str,
        deleting: bool,
    }

    impl Default for P {
        fn default() -> Self {
            P {
                name: "p",
                labels: vec![("app", "web")],
                owner: None,
                node: "",
                phase: "Pending",
                ready_since: None,
                restarts: 0,
                created: "2024-01-01T00:00:00Z",
                deleting: false,
            }
        }
    }

    fn pod(p: P) -> Arc<Object> {
        let mut conditions = Vec::new();
        if let Some(since) = p.ready_since {
            conditions.push(PodCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_transition_time: since.into(),
                ..Default::default()
            });
        }
        Arc::new(Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: p.name.into(),
                namespace: "default".into(),
                uid: format!("uid-{}", p.name),
                labels: labels(&p.labels),
                creation_timestamp: p.created.into(),
                deletion_timestamp: if p.deleting {
                    "2024-01-01T00:00:00Z".into()
                } else {
                    String::new()
                },
                owner_references: p
                    .owner
                    .map(|uid| {
                        vec![OwnerReference {
                            api_version: "apps/v1".into(),
                            kind: "ReplicaSet".into(),
                            name: format!("owner-{uid}"),
                            uid: uid.into(),
                            controller: Some(true),
                            block_owner_deletion: Some(true),
                        }]
                    })
                    .unwrap_or_default(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: p.node.into(),
                containers: vec![Container {
                    name: "c".into(),
                    image: "nginx".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: p.phase.into(),
                conditions,
                container_statuses: vec![ContainerStatus {
                    name: "c".into(),
                    restart_count: p.restarts,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })))
    }

    fn names(v: &[Arc<Object>]) -> Vec<&str> {
        v.iter().map(|o| o.name()).collect()
    }

    #[test]
    fn active_and_ready() {
        let p = pod(P {
            phase: "Running",
            ready_since: Some("2024-01-01T00:00:00Z"),
            ..Default::default()
        });
        let p = pod_of(&p).unwrap();
        assert!(pod_is_active(p));
        assert!(pod_is_ready(p));
        for phase in ["Succeeded", "Failed"] {
            let q = pod(P {
                phase,
                ..Default::default()
            });
            assert!(!pod_is_active(pod_of(&q).unwrap()), "{phase}");
        }
        let q = pod(P {
            deleting: true,
            ..Default::default()
        });
        assert!(!pod_is_active(pod_of(&q).unwrap()));
        let q = pod(P::default());
        assert!(!pod_is_ready(pod_of(&q).unwrap()));
    }

    #[test]
    fn claims_adopt_orphans_and_release_mismatches() {
        let sel = LabelSelector::from_map(&labels(&[("app", "web")]));
        let pods = vec![
            pod(P {
                name: "mine",
                owner: Some("me"),
                ..Default::default()
            }),
            pod(P {
                name: "mine-relabelled",
                owner: Some("me"),
                labels: vec![("app", "db")],
                ..Default::default()
            }),
            pod(P {
                name: "theirs",
                owner: Some("other"),
                ..Default::default()
            }),
            pod(P {
                name: "orphan",
                ..Default::default()
            }),
            pod(P {
                name: "orphan-other-labels",
                labels: vec![("app", "db")],
                ..Default::default()
            }),
            pod(P {
                name: "orphan-deleting",
                deleting: true,
                ..Default::default()
            }),
        ];
        let c = claim_pods("me", &sel, &pods);
        assert_eq!(names(&c.owned), ["mine"]);
        assert_eq!(names(&c.adopt), ["orphan"]);
        assert_eq!(names(&c.release), ["mine-relabelled"]);
    }

    #[test]
    fn set_based_selectors_claim_too() {
        let sel = LabelSelector::from_proto(&ProtoSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: vec!["front".into(), "edge".into()],
            }],
        })
        .unwrap();
        let pods = vec![
            pod(P {
                name: "front",
                labels: vec![("app", "web"), ("tier", "front")],
                ..Default::default()
            }),
            pod(P {
                name: "back",
                labels: vec![("app", "web"), ("tier", "back")],
                ..Default::default()
            }),
        ];
        let c = claim_pods("me", &sel, &pods);
        assert_eq!(names(&c.adopt), ["front"]);
    }

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(0, 1), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1, 1), [1]);
        assert_eq!(slow_start_batches(7, 1), [1, 2, 4]);
        assert_eq!(slow_start_batches(10, 1), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(500, 1).iter().sum::<usize>(), 500);
        assert_eq!(slow_start_batches(5, 0), [1, 2, 2]);
    }

    #[test]
    fn deletion_prefers_unscheduled_pending_unready_newest() {
        let pods = vec![
            pod(P {
                name: "running-ready-old",
                node: "n1",
                phase: "Running",
                ready_since: Some("2024-01-01T00:00:00Z"),
                created: "2024-01-01T00:00:00Z",
                ..Default::default()
            }),
            pod(P {
                name: "running-ready-recently",
                node: "n1",
                phase: "Running",
                ready_since: Some("2024-01-02T00:00:00Z"),
                created: "2024-01-01T00:00:00Z",
                ..Default::default()
            }),
            pod(P {
                name: "running-unready",
                node: "n1",
                phase: "Running",
                ..Default::default()
            }),
            pod(P {
                name: "pending-scheduled",
                node: "n1",
                ..Default::default()
            }),
            pod(P {
                name: "unscheduled",
                ..Default::default()
            }),
            pod(P {
                name: "running-unready-restarting",
                node: "n1",
                phase: "Running",
                restarts: 5,
                ..Default::default()
            }),
            pod(P {
                name: "running-unready-newer",
                node: "n1",
                phase: "Running",
                created: "2024-02-01T00:00:00Z",
                ..Default::default()
            }),
        ];
        let order = pods_to_delete(&pods, pods.len());
        assert_eq!(
            names(&order),
            [
                "unscheduled",
                "pending-scheduled",
                "running-unready-restarting",
                "running-unready-newer",
                "running-unready",
                "running-ready-recently",
                "running-ready-old",
            ]
        );
        assert_eq!(
            names(&pods_to_delete(&pods, 2)),
            ["unscheduled", "pending-scheduled"]
        );
    }

    #[test]
    fn status_counts_labels_readiness_and_availability() {
        let now = t("2024-01-01T00:01:00Z");
        let pods = [
            pod(P {
                name: "a",
                labels: vec![("app", "web"), ("tier", "front")],
                ready_since: Some("2024-01-01T00:00:00Z"),
                ..Default::default()
            }),
            pod(P {
                name: "b",
                labels: vec![("app", "web")],
                ready_since: Some("2024-01-01T00:00:50Z"),
                ..Default::default()
            }),
            pod(P {
                name: "c",
                labels: vec![("app", "web"), ("tier", "front")],
                ..Default::default()
            }),
        ];
        let refs: Vec<&Pod> = pods.iter().map(|p| pod_of(p).unwrap()).collect();
        let tl = labels(&[("app", "web"), ("tier", "front")]);
        let (st, recheck) = calculate_status(&refs, &tl, 30, 7, &[], None, now);
        assert_eq!(st.replicas, 3);
        assert_eq!(st.fully_labeled_replicas, 2);
        assert_eq!(st.ready_replicas, 2);
        assert_eq!(st.available_replicas, 1, "b is ready for 10 s of 30");
        assert_eq!(st.observed_generation, 7);
        assert_eq!(recheck, Some(Duration::from_secs(21)));
        let (st, recheck) = calculate_status(&refs, &tl, 0, 7, &[], None, now);
        assert_eq!(st.available_replicas, 2);
        assert_eq!(recheck, None);
    }

    #[test]
    fn status_failure_condition_is_set_once_and_cleared() {
        let now = t("2024-01-01T00:00:00Z");
        let f = Failure {
            reason: "FailedCreate".into(),
            message: "quota".into(),
        };
        let (st, _) = calculate_status(&[], &HashMap::new(), 0, 1, &[], Some(&f), now);
        assert_eq!(st.conditions.len(), 1);
        assert_eq!(st.conditions[0].r#type, REPLICA_FAILURE);
        assert_eq!(st.conditions[0].reason, "FailedCreate");
        let later = t("2024-01-01T00:05:00Z");
        let (again, _) =
            calculate_status(&[], &HashMap::new(), 0, 1, &st.conditions, Some(&f), later);
        assert_eq!(again.conditions, st.conditions, "transition time kept");
        let (cleared, _) =
            calculate_status(&[], &HashMap::new(), 0, 1, &st.conditions, None, later);
        assert!(cleared.conditions.is_empty());
    }

    #[test]
    fn template_pods_carry_owner_and_labels() {
        let owner = ObjectMeta {
            name: "nginx-rc".into(),
            namespace: "web".into(),
            uid: "u1".into(),
            ..Default::default()
        };
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: labels(&[("app", "nginx")]),
                annotations: labels(&[("a", "b")]),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "nginx".into(),
                    image: "nginx".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        let o = pod_from_template(Kind::ReplicationController, &owner, &template);
        let m = o.metadata().unwrap();
        assert_eq!(m.generate_name, "nginx-rc-");
        assert_eq!(m.namespace, "web");
        assert_eq!(m.labels, labels(&[("app", "nginx")]));
        assert_eq!(m.annotations, labels(&[("a", "b")]));
        assert_eq!(
            m.owner_references,
            vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ReplicationController".into(),
                name: "nginx-rc".into(),
                uid: "u1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        );
        assert_eq!(pod_of(&o).unwrap().spec, template.spec);
        let long = "x".repeat(100);
        assert_eq!(generate_name_prefix(&long).len(), MAX_GENERATE_NAME_PREFIX);
    }

    #[test]
    fn owners_abstract_both_kinds() {
        let rc = ReplicationController {
            metadata: Some(ObjectMeta::default()),
            spec: Some(ReplicationControllerSpec {
                replicas: Some(3),
                min_ready_seconds: 5,
                selector: labels(&[("app", "web")]),
                template: None,
            }),
            status: None,
            ..Default::default()
        };
        assert_eq!(rc.replicas(), 3);
        assert_eq!(rc.min_ready_seconds(), 5);
        assert!(rc.selector().unwrap().matches(&labels(&[("app", "web")])));
        let st = ReplicaStatus {
            replicas: 2,
            observed_generation: 4,
            ..Default::default()
        };
        let o = rc.with_status(&st);
        assert_eq!(ReplicationController::from_object(&o).unwrap().status(), st);
        let rs = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                replicas: None,
                selector: Some(ProtoSelector {
                    match_expressions: vec![LabelSelectorRequirement {
                        key: "app".into(),
                        operator: "Exists".into(),
                        values: vec![],
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(rs.replicas(), 1);
        assert!(rs.selector().unwrap().matches(&labels(&[("app", "x")])));
        let empty = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                selector: Some(ProtoSelector::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            empty.selector().is_none(),
            "an empty selector claims nothing"
        );
        let o = rs.with_status(&st);
        assert_eq!(ReplicaSet::from_object(&o).unwrap().status(), st);
    }

    #[test]
    fn expectations_wait_for_the_cache_or_the_deadline() {
        let e = Expectations::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let never = |_: &str| false;
        let never2 = |_: &str, _: &str| false;
        assert_eq!(e.pending("ns/a", t0, never, never2), None, "nothing issued");
        e.begin("ns/a", t0);
        e.created("ns/a", "a-1");
        e.created("ns/a", "a-2");
        e.deleting("ns/a", "u9", "a-9");
        assert!(e.pending("ns/a", t0, never, never2).is_some());
        // The cache shows a-1; a notice shows a-2; the cache shows u9 gone.
        assert!(e.pending("ns/a", t0, |n| n == "a-1", never2).is_some());
        e.observe_created("ns/a", "a-2");
        assert!(e.pending("ns/a", t0, never, never2).is_some());
        assert_eq!(e.pending("ns/a", t0, never, |u, _| u == "u9"), None);
        // Once satisfied, forgotten.
        assert_eq!(e.pending("ns/a", t0, never, never2), None);

        // An unknown outcome only expires.
        e.begin("ns/b", t0);
        e.create_unknown("ns/b");
        assert_eq!(
            e.pending("ns/b", t0 + Duration::from_secs(10), never, never2),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            e.pending("ns/b", t0 + Duration::from_secs(30), never, never2),
            None
        );
        // Deletion notices clear deletes; forget clears everything.
        e.begin("ns/c", t0);
        e.deleting("ns/c", "u1", "c-1");
        e.observe_deleted("ns/c", "u1");
        assert_eq!(e.pending("ns/c", t0, never, never2), None);
        e.begin("ns/d", t0);
        e.created("ns/d", "d-1");
        e.forget("ns/d");
        assert_eq!(e.pending("ns/d", t0, never, never2), None);
    }

    #[test]
    fn pod_notices_map_to_owners_and_clear_expectations() {
        // No informer is needed for pods with a controller reference.
        let e = Expectations::new(Duration::from_secs(30));
        e.begin("default/owner-me", Instant::now());
        e.created("default/owner-me", "p");
        let none = |_: &str| Vec::new();
        let p = pod(P {
            owner: Some("me"),
            ..Default::default()
        });
        let n = Notice::Changed {
            kind: Kind::Pod,
            old: None,
            new: p.clone(),
            deleted: false,
        };
        assert_eq!(
            notice_keys::<ReplicaSet>(&n, &none, &e),
            ["default/owner-me"]
        );
        let never = |_: &str| false;
        assert_eq!(
            e.pending("default/owner-me", Instant::now(), never, |_, _| false),
            None,
            "the add notice observed the create"
        );
        // The RC controller ignores pods an RS controls.
        assert!(notice_keys::<ReplicationController>(&n, &none, &e).is_empty());
    }

    #[test]
    fn orphan_notices_go_to_matching_owners_old_and_new() {
        let e = Expectations::new(Duration::from_secs(30));
        let rs = |name: &str, app: &str| {
            Arc::new(Object::from_body(Body::ReplicaSet(ReplicaSet {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                spec: Some(ReplicaSetSpec {
                    selector: Some(ProtoSelector {
                        match_labels: labels(&[("app", app)]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })))
        };
        let list = |ns: &str| {
            assert_eq!(ns, "default");
            vec![rs("web", "web"), rs("db", "db"), rs("cache", "cache")]
        };
        let old = pod(P::default());
        let new = pod(P {
            labels: vec![("app", "db")],
            ..Default::default()
        });
        let n = Notice::Changed {
            kind: Kind::Pod,
            old: Some(old),
            new,
            deleted: false,
        };
        assert_eq!(
            notice_keys::<ReplicaSet>(&n, &list, &e),
            ["default/db", "default/web"]
        );
        let n = Notice::Changed {
            kind: Kind::ReplicaSet,
            old: None,
            new: rs("web", "web"),
            deleted: true,
        };
        assert_eq!(notice_keys::<ReplicaSet>(&n, &list, &e), ["default/web"]);
    }

    // ------------------------------------------------------------ end to end

    fn template(app: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: labels(&[("app", app)]),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: "nginx:1.25".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn new_rs(name: &str, app: &str, replicas: i32) -> Object {
        Object::from_body(Body::ReplicaSet(ReplicaSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: Some(ProtoSelector {
                    match_labels: labels(&[("app", app)]),
                    ..Default::default()
                }),
                template: Some(template(app)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn pods_in(h: &Handlers) -> Vec<Object> {
        h.list("Pod", "default", "", "", "").await.unwrap().0
    }

    async fn owned_by(h: &Handlers, uid: &str) -> Vec<Object> {
        pods_in(h)
            .await
            .into_iter()
            .filter(|p| {
                p.metadata()
                    .and_then(controller_ref)
                    .is_some_and(|r| r.uid == uid)
            })
            .collect()
    }

    fn test_config() -> ControllerConfig {
        ControllerConfig {
            resync: Duration::from_millis(500),
            workers: 2,
            ..Default::default()
        }
    }

    async fn set_ready(h: &Handlers, pod: &Object) {
        let mut p = h.get("Pod", pod.namespace(), pod.name(), "").await.unwrap();
        if let Some(Body::Pod(pp)) = p.kind.as_mut() {
            let st = pp.status.get_or_insert_with(Default::default);
            st.phase = "Running".into();
            st.conditions.push(PodCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_transition_time: crate::handlers::now(),
                ..Default::default()
            });
        }
        h.update(p, true, false).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replica_set_scales_adopts_releases_and_reports() {
        let ts = testing::store().await;
        let h = ts.handlers.clone();
        let informers = Informers::new(h.clone());
        start(&informers, &test_config());

        let rs = h.create(new_rs("web", "web", 3), false).await.unwrap();
        let uid = rs.metadata().unwrap().uid.clone();
        testing::eventually("3 pods", 10, || async {
            owned_by(&h, &uid).await.len() == 3
        })
        .await;
        for p in owned_by(&h, &uid).await {
            let m = p.metadata().unwrap();
            assert!(m.name.starts_with("web-"), "{}", m.name);
            let r = controller_ref(m).unwrap();
            assert_eq!(
                (r.kind.as_str(), r.api_version.as_str()),
                ("ReplicaSet", "apps/v1")
            );
            assert_eq!(r.block_owner_deletion, Some(true));
        }
        // Resyncs come and go; no pod is created twice.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(pods_in(&h).await.len(), 3);

        // Readiness shows in the status.
        for p in owned_by(&h, &uid).await {
            set_ready(&h, &p).await;
        }
        testing::eventually("status", 10, || async {
            let o = h.get("ReplicaSet", "default", "web", "").await.unwrap();
            let st = ReplicaSet::from_object(&o).unwrap().status();
            st.replicas == 3
                && st.ready_replicas == 3
                && st.available_replicas == 3
                && st.fully_labeled_replicas == 3
                && st.observed_generation == 1
        })
        .await;

        // An orphan with matching labels is adopted; the surplus goes, and
        // the not-ready orphan is the one deleted.
        let mut orphan =
            pod_from_template(Kind::ReplicaSet, &ObjectMeta::default(), &template("web"));
        if let Some(m) = orphan.metadata_mut() {
            m.owner_references.clear();
            m.generate_name.clear();
            m.name = "stray".into();
        }
        h.create(orphan, false).await.unwrap();
        testing::eventually("orphan adopted then deleted", 10, || async {
            let pods = owned_by(&h, &uid).await;
            pods.len() == 3 && pods_in(&h).await.len() == 3
        })
        .await;
        assert!(h.get("Pod", "default", "stray", "").await.is_err());

        // A relabelled pod is released and replaced.
        let victim = owned_by(&h, &uid).await.remove(0);
        let patch = r#"{"metadata":{"labels":{"app":"debug"}}}"#;
        h.patch("Pod", "default", victim.name(), "merge", patch, false)
            .await
            .unwrap();
        testing::eventually("released and replaced", 10, || async {
            let released = h.get("Pod", "default", victim.name(), "").await.unwrap();
            released.metadata().unwrap().owner_references.is_empty()
                && owned_by(&h, &uid).await.len() == 3
        })
        .await;

        // Scale down through the scale subresource.
        h.update_scale("ReplicaSet", "default", "web", 1, "")
            .await
            .unwrap();
        testing::eventually("1 pod", 10, || async {
            owned_by(&h, &uid).await.len() == 1
        })
        .await;
        testing::eventually("status follows", 10, || async {
            let o = h.get("ReplicaSet", "default", "web", "").await.unwrap();
            let st = ReplicaSet::from_object(&o).unwrap().status();
            st.replicas == 1 && st.observed_generation == 2
        })
        .await;
        // The newest pod (the unready replacement) went first; the survivor
        // is ready.
        let left = owned_by(&h, &uid).await;
        assert!(pod_is_ready(pod_of(&left[0]).unwrap()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replication_controller_creates_pods_and_events() {
        let ts = testing::store().await;
        let h = ts.handlers.clone();
        let informers = Informers::new(h.clone());
        start(&informers, &test_config());
        let rc = Object::from_body(Body::ReplicationController(ReplicationController {
            metadata: Some(ObjectMeta {
                name: "nginx-rc".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(ReplicationControllerSpec {
                replicas: Some(2),
                template: Some(template("nginx")),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let rc = h.create(rc, false).await.unwrap();
        let uid = rc.metadata().unwrap().uid.clone();
        testing::eventually("2 pods", 10, || async {
            owned_by(&h, &uid).await.len() == 2
        })
        .await;
        let pods = owned_by(&h, &uid).await;
        let r = controller_ref(pods[0].metadata().unwrap()).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.api_version.as_str()),
            ("ReplicationController", "v1")
        );
        testing::eventually("events", 10, || async {
            let events = h.list("Event", "default", "", "", "").await.unwrap().0;
            let created: Vec<String> = events
                .iter()
                .filter_map(|e| match e.kind.as_ref() {
                    Some(Body::Event(ev)) if ev.reason == "SuccessfulCreate" => {
                        Some(ev.message.clone())
                    }
                    _ => None,
                })
                .collect();
            pods.iter()
                .all(|p| created.contains(&format!("Created pod: {}", p.name())))
        })
        .await;
        // A ReplicaSet selecting the same labels does not steal them.
        h.create(new_rs("thief", "nginx", 0), false).await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(owned_by(&h, &uid).await.len(), 2);
        // Deleting a pod gets it replaced.
        h.delete("Pod", "default", pods[0].name(), "", None)
            .await
            .unwrap();
        testing::eventually("replaced", 10, || async {
            let now = owned_by(&h, &uid).await;
            now.len() == 2 && now.iter().all(|p| p.name() != pods[0].name())
        })
        .await;
        // A bound pod is deleted gracefully: while it is still Terminating
        // (no node agent here), its replacement is already made.
        let now = owned_by(&h, &uid).await;
        let victim = now[0].clone();
        let uid_v = victim.metadata().unwrap().uid.clone();
        h.bind("default", victim.name(), "wn1", &uid_v)
            .await
            .unwrap();
        let marked = h
            .delete("Pod", "default", victim.name(), "", None)
            .await
            .unwrap();
        assert!(!marked.metadata().unwrap().deletion_timestamp.is_empty());
        testing::eventually("replaced while terminating", 10, || async {
            let now = owned_by(&h, &uid).await;
            let active = now
                .iter()
                .filter(|p| pod_of(p).is_some_and(pod_is_active))
                .count();
            let leaving = now.iter().any(|p| p.name() == victim.name());
            active == 2 && leaving
        })
        .await;
    }
}
