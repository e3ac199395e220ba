//! Garbage collector: deletes dependents whose owners are gone, and carries
//! out Foreground and Orphan deletions.
//!
//! Work items are objects of any kind, keyed `Kind/namespace/name` (or
//! `Kind/name` for cluster-scoped kinds). Reconciling one:
//!
//! - **Dependent** (has ownerReferences, not being deleted): each owner is
//!   *solid* (exists with that uid), *waiting* (exists, being deleted with
//!   the `foregroundDeletion` finalizer) or *dangling* (no object with that
//!   name and uid). An owner missing from the cache is confirmed absent with
//!   a linearizable read before it counts as dangling, so neither a lagging
//!   informer nor a namesake with another uid gets a dependent deleted.
//!   With a solid owner left, references to dangling and waiting owners are
//!   removed; with none, the dependent is deleted ([`plan_dependent`]).
//! - **Owner being deleted with `foregroundDeletion`**: its dependents are
//!   queued (and so deleted, as their owner is waiting); once no dependent
//!   with `blockOwnerDeletion` remains — confirmed by listing the store —
//!   the finalizer is removed, which completes the owner's deletion.
//! - **Owner being deleted with `orphan`**: the reference to it is removed
//!   from every dependent, then the finalizer.
//!
//! An index from owner uid to dependents (rebuilt from the caches at each
//! resync, kept current from notices) finds the dependents of an owner that
//! goes away. Namespace deletion is the server's business.

use super::informer::{object_key, Informers, Notice};
use super::workqueue::WorkQueue;
use super::{feed, run_workers, Action, ControllerConfig, Reconcile};
use crate::handlers::{ApiError, Handlers, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use rkube_api::kinds::Kind;
use rkube_api::proto::{ObjectMeta, OwnerReference, Preconditions};
use rkube_api::Object;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How often an owner waiting for its dependents is looked at again even
/// without notices.
const FOREGROUND_RECHECK: Duration = Duration::from_secs(2);

/// Bound on the cache of owner uids confirmed absent.
const ABSENT_CACHE_LIMIT: usize = 10_000;

/// The work-queue key of an object: `Kind/namespace/name`.
pub fn gc_key(kind: Kind, o: &Object) -> String {
    format!("{}/{}", kind.name(), object_key(o))
}

/// Splits a work-queue key into the kind and the informer key.
pub fn parse_gc_key(key: &str) -> Option<(Kind, &str)> {
    let (kind, rest) = key.split_once('/')?;
    Some((Kind::from_name(kind)?, rest))
}

fn refs_of(o: &Object) -> &[OwnerReference] {
    o.metadata()
        .map(|m| m.owner_references.as_slice())
        .unwrap_or(&[])
}

fn has_finalizer(m: &ObjectMeta, f: &str) -> bool {
    m.finalizers.iter().any(|x| x == f)
}

/// Being deleted with a finalizer this collector owns.
fn needs_collector(m: &ObjectMeta) -> bool {
    !m.deletion_timestamp.is_empty()
        && (has_finalizer(m, FOREGROUND_FINALIZER) || has_finalizer(m, ORPHAN_FINALIZER))
}

/// Whether `dep` holds a reference to `owner_uid` that blocks the owner's
/// foreground deletion.
fn blocks(dep: &Object, owner_uid: &str) -> bool {
    refs_of(dep)
        .iter()
        .any(|r| r.uid == owner_uid && r.block_owner_deletion == Some(true))
}

// ---------------------------------------------------------------- owner index

/// Owner uid -> work keys of the objects that reference it.
#[derive(Debug, Default)]
pub struct OwnerIndex {
    dependents: HashMap<String, HashSet<String>>,
}

impl OwnerIndex {
    pub fn add(&mut self, key: &str, refs: &[OwnerReference]) {
        for r in refs {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(key.to_string());
        }
    }

    pub fn remove(&mut self, key: &str, refs: &[OwnerReference]) {
        for r in refs {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
        }
    }

    /// Work keys of the objects referencing `uid`, sorted.
    pub fn dependents(&self, uid: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn has_dependents(&self, uid: &str) -> bool {
        self.dependents.get(uid).is_some_and(|s| !s.is_empty())
    }
}

/// Indexes `objects` (kind, object) and returns the work keys a full resync
/// enqueues: dependents, and owners this collector has to finish deleting.
pub fn index_objects<'a>(
    objects: impl IntoIterator<Item = (Kind, &'a Object)>,
) -> (OwnerIndex, Vec<String>) {
    let mut index = OwnerIndex::default();
    let mut keys = Vec::new();
    for (kind, o) in objects {
        let Some(m) = o.metadata() else { continue };
        let key = gc_key(kind, o);
        index.add(&key, &m.owner_references);
        if !m.owner_references.is_empty() || needs_collector(m) {
            keys.push(key);
        }
    }
    (index, keys)
}

/// Looks up a cached object: (kind, namespace, name).
type Lookup<'a> = &'a dyn Fn(Kind, &str, &str) -> Option<Arc<Object>>;

/// Where an owner of a `dependent_ns` object lives: cluster-scoped owners
/// have no namespace. `None`: a cluster-scoped dependent naming a
/// namespaced owner, which cannot be resolved.
fn owner_namespace(owner: Kind, dependent_ns: &str) -> Option<&str> {
    match (owner.namespaced(), dependent_ns.is_empty()) {
        (false, _) => Some(""),
        (true, false) => Some(dependent_ns),
        (true, true) => None,
    }
}

/// Maps a notice to the work keys it concerns, keeping `index` current.
fn notice_keys(n: &Notice, index: &parking_lot::Mutex<OwnerIndex>, lookup: Lookup) -> Vec<String> {
    let Notice::Changed {
        kind,
        old,
        new,
        deleted,
    } = n
    else {
        return Vec::new();
    };
    let key = gc_key(*kind, new);
    let old_refs = old.as_deref().map(refs_of).unwrap_or(&[]);
    let new_refs = refs_of(new);
    let meta = new.metadata().cloned().unwrap_or_default();
    let mut out = Vec::new();
    {
        let mut idx = index.lock();
        idx.remove(&key, old_refs);
        if *deleted {
            idx.remove(&key, new_refs);
        } else {
            idx.add(&key, new_refs);
        }
        // An owner gone or going: its dependents may be dangling now, or
        // waiting on it.
        if *deleted || !meta.deletion_timestamp.is_empty() {
            out.extend(idx.dependents(&meta.uid));
        }
    }
    if !*deleted {
        if !new_refs.is_empty() && (old.is_none() || old_refs != new_refs) {
            out.push(key.clone());
        }
        if needs_collector(&meta) {
            out.push(key.clone());
        }
    }
    // A dependent changed or went: an owner waiting for it may be done.
    for r in old_refs.iter().chain(new_refs) {
        let Some(k) = Kind::from_name(&r.kind) else {
            continue;
        };
        let Some(ns) = owner_namespace(k, new.namespace()) else {
            continue;
        };
        if let Some(owner) = lookup(k, ns, &r.name) {
            if owner
                .metadata()
                .is_some_and(|m| m.uid == r.uid && needs_collector(m))
            {
                out.push(gc_key(k, &owner));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------- decisions

/// An owner as a dependent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists (same uid) and is not waiting for its dependents.
    Solid,
    /// Exists, being deleted in the foreground: waiting for dependents.
    Waiting,
    /// No object with that name and uid.
    Dangling,
}

/// What to do with a dependent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependentPlan {
    Keep,
    /// Remove the references to these owner uids.
    RemoveRefs(Vec<String>),
    /// Delete it; in the foreground when an owner waits on it and it has
    /// dependents of its own (so the wait covers the whole subtree).
    Delete {
        foreground: bool,
    },
}

/// The decision for a dependent given each owner's state (by uid), as
/// Kubernetes' collector makes it.
pub fn plan_dependent(owners: &[(String, OwnerState)], has_dependents: bool) -> DependentPlan {
    let of = |s: OwnerState| -> Vec<String> {
        owners
            .iter()
            .filter(|(_, x)| *x == s)
            .map(|(u, _)| u.clone())
            .collect()
    };
    let (solid, waiting, dangling) = (
        of(OwnerState::Solid),
        of(OwnerState::Waiting),
        of(OwnerState::Dangling),
    );
    if dangling.is_empty() && waiting.is_empty() {
        return DependentPlan::Keep;
    }
    if !solid.is_empty() {
        let mut gone = dangling;
        gone.extend(waiting);
        return DependentPlan::RemoveRefs(gone);
    }
    DependentPlan::Delete {
        foreground: !waiting.is_empty() && has_dependents,
    }
}

// ---------------------------------------------------------------- the collector

pub struct GarbageCollector {
    informers: Informers,
    handlers: Handlers,
    index: Arc<parking_lot::Mutex<OwnerIndex>>,
    queue: Arc<WorkQueue>,
    /// Owner uids confirmed absent by a linearizable read (uids never come
    /// back).
    absent: parking_lot::Mutex<HashSet<String>>,
}

/// Starts the garbage collector.
pub fn start(informers: &Informers, cfg: &ControllerConfig) {
    let index = Arc::new(parking_lot::Mutex::new(OwnerIndex::default()));
    let queue = WorkQueue::new();
    let gc = Arc::new(GarbageCollector {
        informers: informers.clone(),
        handlers: informers.handlers().clone(),
        index: index.clone(),
        queue: queue.clone(),
        absent: Default::default(),
    });
    let (map_inf, map_index) = (informers.clone(), index.clone());
    let (all_inf, all_index) = (informers.clone(), index);
    feed(
        informers,
        &Kind::ALL,
        queue.clone(),
        cfg.resync,
        move |n| {
            let lookup = |k: Kind, ns: &str, name: &str| map_inf.get(k).get(ns, name);
            notice_keys(n, &map_index, &lookup)
        },
        move || resync_keys(&all_inf, &all_index),
    );
    let (inf, workers) = (informers.clone(), cfg.workers);
    informers.spawn(async move {
        // Until every cache is filled, a missing owner proves nothing.
        for kind in Kind::ALL {
            inf.get(kind).wait_synced().await;
        }
        for k in resync_keys(&inf, &gc.index) {
            queue.add(&k);
        }
        tracing::debug!("garbage collector: caches synced; starting workers");
        run_workers(&inf, gc, queue, workers);
    });
}

/// Rebuilds the owner index from every cache (holding its lock, so notices
/// apply on top of the rebuilt state) and returns the keys to look at.
fn resync_keys(informers: &Informers, index: &parking_lot::Mutex<OwnerIndex>) -> Vec<String> {
    let mut idx = index.lock();
    let lists: Vec<(Kind, Vec<Arc<Object>>)> = Kind::ALL
        .into_iter()
        .map(|k| (k, informers.get(k).list()))
        .collect();
    let (fresh, keys) = index_objects(
        lists
            .iter()
            .flat_map(|(k, objs)| objs.iter().map(move |o| (*k, o.as_ref()))),
    );
    *idx = fresh;
    keys
}

#[tonic::async_trait]
impl Reconcile for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbage-collector"
    }

    async fn reconcile(&self, key: &str) -> Result<Action, ApiError> {
        let Some((kind, okey)) = parse_gc_key(key) else {
            return Ok(Action::Done);
        };
        let Some(obj) = self.informers.get(kind).get_key(okey) else {
            return Ok(Action::Done);
        };
        let meta = obj.metadata().cloned().unwrap_or_default();
        if !meta.deletion_timestamp.is_empty() {
            if has_finalizer(&meta, ORPHAN_FINALIZER) {
                return self.orphan_dependents(key, kind, &meta).await;
            }
            if has_finalizer(&meta, FOREGROUND_FINALIZER) {
                return self.delete_dependents(key, kind, &meta).await;
            }
            return Ok(Action::Done);
        }
        if meta.owner_references.is_empty() {
            return Ok(Action::Done);
        }
        self.collect_dependent(key, kind, &meta).await
    }
}

impl GarbageCollector {
    /// Whether the owner `r` of an object in `ns` is solid, waiting or
    /// dangling. Absence in the cache is confirmed by a linearizable read.
    async fn owner_state(&self, ns: &str, r: &OwnerReference) -> Result<OwnerState, ApiError> {
        // Kinds this server does not serve cannot be checked: keep.
        let Some(kind) = Kind::from_name(&r.kind) else {
            return Ok(OwnerState::Solid);
        };
        let Some(ns) = owner_namespace(kind, ns) else {
            return Ok(OwnerState::Solid);
        };
        if self.absent.lock().contains(&r.uid) {
            return Ok(OwnerState::Dangling);
        }
        let state_of = |o: &Object| match o.metadata() {
            Some(m)
                if !m.deletion_timestamp.is_empty() && has_finalizer(m, FOREGROUND_FINALIZER) =>
            {
                OwnerState::Waiting
            }
            _ => OwnerState::Solid,
        };
        if let Some(o) = self.informers.get(kind).get(ns, &r.name) {
            if o.metadata().is_some_and(|m| m.uid == r.uid) {
                return Ok(state_of(&o));
            }
        }
        match self.handlers.get(kind.name(), ns, &r.name, "").await {
            Ok(o) if o.metadata().is_some_and(|m| m.uid == r.uid) => Ok(state_of(&o)),
            Ok(_) | Err(ApiError::NotFound(_)) => {
                let mut absent = self.absent.lock();
                if absent.len() >= ABSENT_CACHE_LIMIT {
                    absent.clear();
                }
                absent.insert(r.uid.clone());
                Ok(OwnerState::Dangling)
            }
            Err(e) => Err(e),
        }
    }

    async fn collect_dependent(
        &self,
        key: &str,
        kind: Kind,
        meta: &ObjectMeta,
    ) -> Result<Action, ApiError> {
        let mut owners = Vec::new();
        for r in &meta.owner_references {
            owners.push((r.uid.clone(), self.owner_state(&meta.namespace, r).await?));
        }
        let has_dependents = self.index.lock().has_dependents(&meta.uid);
        match plan_dependent(&owners, has_dependents) {
            DependentPlan::Keep => {}
            DependentPlan::RemoveRefs(uids) => {
                tracing::info!(key, owners = ?uids, "removing references to owners that are gone or going");
                self.remove_owner_refs(kind, meta, &uids).await?;
            }
            DependentPlan::Delete { foreground } => {
                let policy = if foreground {
                    "Foreground"
                } else {
                    "Background"
                };
                tracing::info!(key, policy, "deleting dependent: no owner remains");
                // Guarded by the version the decision was made on: if the
                // dependent changed since (e.g. an orphaning removed its
                // references), the delete is refused and the change itself
                // brings it back here.
                let pre = Preconditions {
                    uid: meta.uid.clone(),
                    resource_version: meta.resource_version.clone(),
                };
                match self
                    .handlers
                    .delete(kind.name(), &meta.namespace, &meta.name, policy, Some(pre))
                    .await
                {
                    // Gone already.
                    Ok(_) | Err(ApiError::NotFound(_)) => {}
                    // Changed since the cache showed it, or replaced by a
                    // namesake: judge again once the cache has caught up.
                    Err(ApiError::Conflict(_)) => {
                        return Ok(Action::RequeueAfter(Duration::from_millis(100)))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Action::Done)
    }

    /// Dependents of `uid` in the caches (index entries checked against the
    /// objects themselves).
    fn cached_dependents(&self, uid: &str) -> Vec<(Kind, Arc<Object>)> {
        let keys = self.index.lock().dependents(uid);
        keys.iter()
            .filter_map(|k| {
                let (kind, okey) = parse_gc_key(k)?;
                let o = self.informers.get(kind).get_key(okey)?;
                refs_of(&o)
                    .iter()
                    .any(|r| r.uid == uid)
                    .then_some((kind, o))
            })
            .collect()
    }

    /// Dependents of an owner as the store holds them now: one linearizable
    /// list, then the local state (at least as new) for the other kinds.
    async fn live_dependents(
        &self,
        owner_kind: Kind,
        owner: &ObjectMeta,
    ) -> Result<Vec<(Kind, Object)>, ApiError> {
        let mut out = Vec::new();
        let mut rv = "";
        for kind in Kind::ALL {
            if owner_kind.namespaced() && !kind.namespaced() {
                continue;
            }
            let ns = if owner_kind.namespaced() {
                owner.namespace.as_str()
            } else {
                ""
            };
            let (items, _) = self.handlers.list(kind.name(), ns, "", "", rv).await?;
            rv = "0";
            out.extend(
                items
                    .into_iter()
                    .filter(|o| refs_of(o).iter().any(|r| r.uid == owner.uid))
                    .map(|o| (kind, o)),
            );
        }
        Ok(out)
    }

    /// Foreground deletion: delete dependents, then drop the finalizer once
    /// none that blocks remains.
    async fn delete_dependents(
        &self,
        key: &str,
        kind: Kind,
        meta: &ObjectMeta,
    ) -> Result<Action, ApiError> {
        let deps = self.cached_dependents(&meta.uid);
        for (k, d) in &deps {
            // Each is deleted (or un-owned, if it has another owner) as a
            // dependent whose owner is waiting.
            if d.metadata()
                .is_some_and(|m| m.deletion_timestamp.is_empty())
            {
                self.queue.add(&gc_key(*k, d));
            }
        }
        let blocking = deps.iter().filter(|(_, d)| blocks(d, &meta.uid)).count();
        if blocking > 0 {
            tracing::debug!(key, blocking, "waiting for dependents to be deleted");
            return Ok(Action::RequeueAfter(FOREGROUND_RECHECK));
        }
        let live: Vec<_> = self
            .live_dependents(kind, meta)
            .await?
            .into_iter()
            .filter(|(_, d)| blocks(d, &meta.uid))
            .collect();
        if !live.is_empty() {
            for (k, d) in &live {
                if d.metadata()
                    .is_some_and(|m| m.deletion_timestamp.is_empty())
                {
                    self.queue.add(&gc_key(*k, d));
                }
            }
            tracing::debug!(
                key,
                blocking = live.len(),
                "dependents not yet in the cache"
            );
            return Ok(Action::RequeueAfter(FOREGROUND_RECHECK));
        }
        tracing::info!(
            key,
            "dependents deleted; removing the foregroundDeletion finalizer"
        );
        self.remove_finalizer(kind, meta, FOREGROUND_FINALIZER)
            .await?;
        Ok(Action::Done)
    }

    /// Orphan deletion: remove the reference to the owner from every
    /// dependent, then the finalizer.
    async fn orphan_dependents(
        &self,
        key: &str,
        kind: Kind,
        meta: &ObjectMeta,
    ) -> Result<Action, ApiError> {
        let deps = self.live_dependents(kind, meta).await?;
        let uid = [meta.uid.clone()];
        let mut first_err = None;
        for (k, d) in &deps {
            let dm = d.metadata().cloned().unwrap_or_default();
            if let Err(e) = self.remove_owner_refs(*k, &dm, &uid).await {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        tracing::info!(
            key,
            orphaned = deps.len(),
            "dependents orphaned; removing the orphan finalizer"
        );
        self.remove_finalizer(kind, meta, ORPHAN_FINALIZER).await?;
        Ok(Action::Done)
    }

    /// Removes references to `uids` from the object, re-reading it on
    /// conflict. A vanished or replaced object is fine.
    async fn remove_owner_refs(
        &self,
        kind: Kind,
        dep: &ObjectMeta,
        uids: &[String],
    ) -> Result<(), ApiError> {
        for _ in 0..5 {
            let cur = match self
                .handlers
                .get(kind.name(), &dep.namespace, &dep.name, "")
                .await
            {
                Ok(o) => o,
                Err(ApiError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let Some(m) = cur.metadata() else {
                return Ok(());
            };
            if m.uid != dep.uid {
                return Ok(());
            }
            let refs: Vec<&OwnerReference> = m
                .owner_references
                .iter()
                .filter(|r| !uids.contains(&r.uid))
                .collect();
            if refs.len() == m.owner_references.len() {
                return Ok(());
            }
            let patch = serde_json::json!({
                "metadata": {
                    "resourceVersion": m.resource_version,
                    "ownerReferences": refs,
                }
            });
            match self
                .handlers
                .patch(
                    kind.name(),
                    &dep.namespace,
                    &dep.name,
                    "merge",
                    &patch.to_string(),
                    false,
                )
                .await
            {
                Ok(_) | Err(ApiError::NotFound(_)) => return Ok(()),
                Err(ApiError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::Conflict(format!(
            "{} {:?} kept changing while its ownerReferences were being updated",
            kind.plural(),
            dep.name
        )))
    }

    /// Removes `finalizer` from the object (the last one completes its
    /// deletion), re-reading it on conflict.
    async fn remove_finalizer(
        &self,
        kind: Kind,
        meta: &ObjectMeta,
        finalizer: &str,
    ) -> Result<(), ApiError> {
        for _ in 0..5 {
            let mut cur = match self
                .handlers
                .get(kind.name(), &meta.namespace, &meta.name, "")
                .await
            {
                Ok(o) => o,
                Err(ApiError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let Some(m) = cur.metadata_mut() else {
                return Ok(());
            };
            if m.uid != meta.uid || !has_finalizer(m, finalizer) {
                return Ok(());
            }
            m.finalizers.retain(|f| f != finalizer);
            // resourceVersion stays set: the update is conditional.
            match self.handlers.update(cur, false, false).await {
                Ok(_) | Err(ApiError::NotFound(_)) => return Ok(()),
                Err(ApiError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::Conflict(format!(
            "{} {:?} kept changing while its finalizer was being removed",
            kind.plural(),
            meta.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::replication::testing;
    use rkube_api::proto::{
        object::Kind as Body, Container, LabelSelector as ProtoSelector, Pod, PodSpec,
        PodTemplateSpec, ReplicaSet, ReplicaSetSpec,
    };

    fn oref(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: Kind::from_name(kind)
                .map(|k| k.api_version())
                .unwrap_or("example.com/v1")
                .into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(false),
            block_owner_deletion: Some(block),
        }
    }

    fn pod(name: &str, refs: Vec<OwnerReference>) -> Object {
        Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                uid: format!("uid-{name}"),
                owner_references: refs,
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
            ..Default::default()
        }))
    }

    fn rs(name: &str) -> Object {
        let labels: HashMap<String, String> = [("app".to_string(), name.to_string())].into();
        Object::from_body(Body::ReplicaSet(ReplicaSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                selector: Some(ProtoSelector {
                    match_labels: labels.clone(),
                    ..Default::default()
                }),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels,
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
                }),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn keys_round_trip() {
        let p = pod("a", vec![]);
        assert_eq!(gc_key(Kind::Pod, &p), "Pod/default/a");
        assert_eq!(
            parse_gc_key("Pod/default/a"),
            Some((Kind::Pod, "default/a"))
        );
        assert_eq!(parse_gc_key("Node/wn1"), Some((Kind::Node, "wn1")));
        assert_eq!(parse_gc_key("Widget/x"), None);
        assert_eq!(owner_namespace(Kind::Node, "default"), Some(""));
        assert_eq!(
            owner_namespace(Kind::ReplicaSet, "default"),
            Some("default")
        );
        assert_eq!(owner_namespace(Kind::ReplicaSet, ""), None);
    }

    #[test]
    fn plans_follow_owner_states() {
        use OwnerState::*;
        assert_eq!(
            plan_dependent(&[(s("a"), Solid)], false),
            DependentPlan::Keep
        );
        assert_eq!(
            plan_dependent(&[(s("a"), Dangling)], false),
            DependentPlan::Delete { foreground: false }
        );
        assert_eq!(
            plan_dependent(
                &[(s("a"), Solid), (s("b"), Dangling), (s("c"), Waiting)],
                true
            ),
            DependentPlan::RemoveRefs(vec![s("b"), s("c")])
        );
        assert_eq!(
            plan_dependent(&[(s("a"), Waiting), (s("b"), Dangling)], true),
            DependentPlan::Delete { foreground: true }
        );
        assert_eq!(
            plan_dependent(&[(s("a"), Waiting)], false),
            DependentPlan::Delete { foreground: false }
        );
        assert_eq!(plan_dependent(&[], false), DependentPlan::Keep);
    }

    #[test]
    fn index_tracks_dependents() {
        let a = pod("a", vec![oref("ReplicaSet", "rs", "u1", true)]);
        let b = pod(
            "b",
            vec![
                oref("ReplicaSet", "rs", "u1", true),
                oref("ReplicaSet", "rs2", "u2", false),
            ],
        );
        let c = pod("c", vec![]);
        let mut marked = rs("gone");
        if let Some(m) = marked.metadata_mut() {
            m.deletion_timestamp = "2024-01-01T00:00:00Z".into();
            m.finalizers = vec![ORPHAN_FINALIZER.into()];
        }
        let (mut idx, keys) = index_objects([
            (Kind::Pod, &a),
            (Kind::Pod, &b),
            (Kind::Pod, &c),
            (Kind::ReplicaSet, &marked),
        ]);
        assert_eq!(
            keys,
            ["Pod/default/a", "Pod/default/b", "ReplicaSet/default/gone"]
        );
        assert_eq!(idx.dependents("u1"), ["Pod/default/a", "Pod/default/b"]);
        assert_eq!(idx.dependents("u2"), ["Pod/default/b"]);
        assert!(idx.has_dependents("u2"));
        idx.remove("Pod/default/b", refs_of(&b));
        assert_eq!(idx.dependents("u1"), ["Pod/default/a"]);
        assert!(!idx.has_dependents("u2"));
        assert!(idx.dependents("nope").is_empty());
    }

    #[test]
    fn notices_enqueue_dependents_of_vanished_owners_and_waiting_owners() {
        let index = parking_lot::Mutex::new(OwnerIndex::default());
        let mut owner = rs("web");
        owner.metadata_mut().unwrap().uid = "u1".into();
        let owner = Arc::new(owner);
        let none = |_: Kind, _: &str, _: &str| None;
        let dep = Arc::new(pod("a", vec![oref("ReplicaSet", "web", "u1", true)]));
        // A new dependent is looked at and indexed.
        let n = Notice::Changed {
            kind: Kind::Pod,
            old: None,
            new: dep.clone(),
            deleted: false,
        };
        assert_eq!(notice_keys(&n, &index, &none), ["Pod/default/a"]);
        // A status-only change of it is not.
        let n = Notice::Changed {
            kind: Kind::Pod,
            old: Some(dep.clone()),
            new: dep.clone(),
            deleted: false,
        };
        assert!(notice_keys(&n, &index, &none).is_empty());
        // The owner's deletion enqueues its dependents.
        let n = Notice::Changed {
            kind: Kind::ReplicaSet,
            old: Some(owner.clone()),
            new: owner.clone(),
            deleted: true,
        };
        assert_eq!(notice_keys(&n, &index, &none), ["Pod/default/a"]);
        // A dependent going enqueues an owner waiting in the foreground.
        let mut waiting = (*owner).clone();
        if let Some(m) = waiting.metadata_mut() {
            m.deletion_timestamp = "2024-01-01T00:00:00Z".into();
            m.finalizers = vec![FOREGROUND_FINALIZER.into()];
        }
        let waiting = Arc::new(waiting);
        let w = waiting.clone();
        let lookup = move |k: Kind, ns: &str, name: &str| {
            (k == Kind::ReplicaSet && ns == "default" && name == "web").then(|| w.clone())
        };
        let n = Notice::Changed {
            kind: Kind::Pod,
            old: Some(dep.clone()),
            new: dep.clone(),
            deleted: true,
        };
        assert_eq!(notice_keys(&n, &index, &lookup), ["ReplicaSet/default/web"]);
        assert!(!index.lock().has_dependents("u1"), "deletion unindexes");
        // The owner being marked enqueues itself.
        let n = Notice::Changed {
            kind: Kind::ReplicaSet,
            old: Some(owner.clone()),
            new: waiting,
            deleted: false,
        };
        assert_eq!(notice_keys(&n, &index, &none), ["ReplicaSet/default/web"]);
    }

    // ------------------------------------------------------------ end to end

    async fn exists(h: &Handlers, kind: &str, name: &str) -> bool {
        h.get(kind, "default", name, "").await.is_ok()
    }

    async fn refs_now(h: &Handlers, name: &str) -> Vec<String> {
        let o = h.get("Pod", "default", name, "").await.unwrap();
        refs_of(&o).iter().map(|r| r.name.clone()).collect()
    }

    fn uid(o: &Object) -> String {
        o.metadata().unwrap().uid.clone()
    }

    fn config() -> ControllerConfig {
        ControllerConfig {
            resync: Duration::from_millis(500),
            workers: 2,
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_deletion_and_dangling_references() {
        let ts = testing::store().await;
        let h = ts.handlers.clone();
        let web = h.create(rs("web"), false).await.unwrap();
        let keep = h.create(rs("keep"), false).await.unwrap();
        let (web_uid, keep_uid) = (uid(&web), uid(&keep));
        // Created before the collector starts: live owners must protect them.
        for (name, refs) in [
            ("only-web", vec![oref("ReplicaSet", "web", &web_uid, true)]),
            (
                "web-and-keep",
                vec![
                    oref("ReplicaSet", "web", &web_uid, true),
                    oref("ReplicaSet", "keep", &keep_uid, false),
                ],
            ),
            // Names "web" but an earlier incarnation's uid.
            (
                "stale-uid",
                vec![oref("ReplicaSet", "web", "uid-of-old-web", true)],
            ),
            ("unowned", vec![]),
            ("foreign-kind", vec![oref("Deployment", "d", "uid-d", true)]),
            (
                "node-lease-like",
                vec![oref("Node", "wn1", "uid-node", false)],
            ),
        ] {
            let mut p = pod(name, refs);
            p.metadata_mut().unwrap().uid.clear();
            h.create(p, false).await.unwrap();
        }
        let informers = Informers::new(h.clone());
        start(&informers, &config());

        testing::eventually("stale-uid collected", 10, || async {
            !exists(&h, "Pod", "stale-uid").await
        })
        .await;
        testing::eventually("dependent of a missing node collected", 10, || async {
            !exists(&h, "Pod", "node-lease-like").await
        })
        .await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        for name in ["only-web", "web-and-keep", "unowned", "foreign-kind"] {
            assert!(exists(&h, "Pod", name).await, "{name} must stay");
        }

        h.delete("ReplicaSet", "default", "web", "Background", None)
            .await
            .unwrap();
        testing::eventually("only-web collected", 10, || async {
            !exists(&h, "Pod", "only-web").await
        })
        .await;
        testing::eventually("dangling reference dropped", 10, || async {
            refs_now(&h, "web-and-keep").await == ["keep"]
        })
        .await;
        assert!(exists(&h, "Pod", "unowned").await);
        assert!(exists(&h, "Pod", "foreign-kind").await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn foreground_deletes_dependents_before_the_owner() {
        let ts = testing::store().await;
        let h = ts.handlers.clone();
        let informers = Informers::new(h.clone());
        start(&informers, &config());
        let fg = h.create(rs("fg"), false).await.unwrap();
        let keep = h.create(rs("keep"), false).await.unwrap();
        for (name, refs) in [
            ("fg-1", vec![oref("ReplicaSet", "fg", &uid(&fg), true)]),
            ("fg-2", vec![oref("ReplicaSet", "fg", &uid(&fg), true)]),
            (
                "shared",
                vec![
                    oref("ReplicaSet", "fg", &uid(&fg), true),
                    oref("ReplicaSet", "keep", &uid(&keep), false),
                ],
            ),
        ] {
            let mut p = pod(name, refs);
            p.metadata_mut().unwrap().uid.clear();
            h.create(p, false).await.unwrap();
        }
        let marked = h
            .delete("ReplicaSet", "default", "fg", "Foreground", None)
            .await
            .unwrap();
        assert!(!marked.metadata().unwrap().deletion_timestamp.is_empty());
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let owner_there = exists(&h, "ReplicaSet", "fg").await;
            let pods_left = exists(&h, "Pod", "fg-1").await || exists(&h, "Pod", "fg-2").await;
            if !owner_there {
                assert!(!pods_left, "the owner went before its dependents");
                break;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "foreground deletion stuck"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The pod with another owner is kept, without the reference.
        assert_eq!(refs_now(&h, "shared").await, ["keep"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphan_releases_dependents_then_deletes_the_owner() {
        let ts = testing::store().await;
        let h = ts.handlers.clone();
        let informers = Informers::new(h.clone());
        start(&informers, &config());
        let owner = h.create(rs("orph"), false).await.unwrap();
        for name in ["o-1", "o-2"] {
            let mut p = pod(name, vec![oref("ReplicaSet", "orph", &uid(&owner), true)]);
            p.metadata_mut().unwrap().uid.clear();
            h.create(p, false).await.unwrap();
        }
        h.delete("ReplicaSet", "default", "orph", "Orphan", None)
            .await
            .unwrap();
        testing::eventually("owner deleted", 10, || async {
            !exists(&h, "ReplicaSet", "orph").await
        })
        .await;
        for name in ["o-1", "o-2"] {
            assert!(refs_now(&h, name).await.is_empty(), "{name} released");
        }
        // And they stay: nothing dangles.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(exists(&h, "Pod", "o-1").await && exists(&h, "Pod", "o-2").await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replica_sets_cascade_with_the_replication_controller_running() {
        use crate::controllers::replication;
        let ts = testing::store().await;
        let h = ts.handlers.clone();
        let informers = Informers::new(h.clone());
        replication::start(&informers, &config());
        start(&informers, &config());
        let pods_of = |owner: String| {
            let h = h.clone();
            async move {
                h.list("Pod", "default", "", "", "")
                    .await
                    .unwrap()
                    .0
                    .into_iter()
                    .filter(|p| refs_of(p).iter().any(|r| r.uid == owner))
                    .count()
            }
        };
        let mut total = 0;
        for (name, policy) in [("bg", "Background"), ("fg", "Foreground"), ("or", "Orphan")] {
            let mut o = rs(name);
            if let Some(Body::ReplicaSet(r)) = o.kind.as_mut() {
                r.spec.as_mut().unwrap().replicas = Some(2);
            }
            let owner = uid(&h.create(o, false).await.unwrap());
            testing::eventually("2 pods", 10, || async { pods_of(owner.clone()).await == 2 }).await;
            h.delete("ReplicaSet", "default", name, policy, None)
                .await
                .unwrap();
            testing::eventually("owner gone", 10, || async {
                !exists(&h, "ReplicaSet", name).await
            })
            .await;
            testing::eventually("no pod refers to it", 10, || async {
                pods_of(owner.clone()).await == 0
            })
            .await;
            if policy == "Orphan" {
                total += 2;
            }
            tokio::time::sleep(Duration::from_millis(600)).await;
            let left = h.list("Pod", "default", "", "", "").await.unwrap().0.len();
            assert_eq!(
                left, total,
                "after {policy}: no pod recreated, orphans kept"
            );
        }
    }
}
