//! The API's logic, independent of any transport: admission, defaulting,
//! validation, and the store calls behind every verb. The gRPC service (and a
//! later REST facade) are thin doors onto these handlers.

use crate::allocator::{self, AllocError, Allocation};
use crate::raft_node::StoreError;
use crate::state_machine::{ChangeType, TooOld};
use crate::store::Store;
use prost::Message as _;
use rkube_api::kinds::{self, Kind};
use rkube_api::proto::internal::{compare::Target, op::Op as OpKind, Compare, Op, Txn};
use rkube_api::proto::{
    object::Kind as Body, ObjectMeta, PodCondition, Preconditions, Scale, ScaleSpec, ScaleStatus,
    WatchEvent,
};
use rkube_api::selector::{FieldSelector, LabelSelector};
use rkube_api::{defaults, validation, Object};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Finalizer that makes the garbage collector delete an object's dependents
/// before the object itself (propagationPolicy Foreground).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer that makes the garbage collector release (un-own) an object's
/// dependents before the object is deleted (propagationPolicy Orphan).
pub const ORPHAN_FINALIZER: &str = "orphan";

/// The largest object the store accepts, as Kubernetes (etcd) does.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// How the API refuses a request; each maps to one gRPC code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A resourceVersion or uid precondition failed.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    /// A watch asked for history that is gone.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    OutcomeUnknown(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::OutcomeUnknown(m) => ApiError::OutcomeUnknown(m),
            StoreError::Internal(m) => ApiError::Internal(m),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The replicas this one knows, for cluster status.
#[derive(Clone, Debug)]
pub struct Peer {
    pub id: u64,
    pub address: String,
}

#[derive(Clone)]
pub struct Handlers {
    store: Store,
    peers: Arc<Vec<Peer>>,
    /// Set when the replica shuts down: open watches end so clients fail
    /// over instead of hanging on a dying server.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

/// An object as read for a read-modify-write.
struct Current {
    object: Object,
    mod_revision: i64,
}

/// Options of a watch.
pub struct WatchSpec {
    pub kind: String,
    pub namespace: String,
    pub label_selector: String,
    pub field_selector: String,
    pub resource_version: String,
    pub allow_bookmarks: bool,
}

impl Handlers {
    pub fn new(store: Store, peers: Vec<Peer>) -> Handlers {
        Handlers {
            store,
            peers: Arc::new(peers),
            stop: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Ends every open watch (on shutdown).
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    // ------------------------------------------------------------ create

    #[tracing::instrument(level = "debug", skip_all, fields(kind = ?obj.kind(), name = obj.name()))]
    pub async fn create(&self, mut obj: Object, dry_run: bool) -> ApiResult<Object> {
        let kind = obj.kind().ok_or_else(|| {
            ApiError::Invalid("kind: Required value: the object holds no kind".into())
        })?;
        {
            let meta = obj
                .metadata_mut()
                .ok_or_else(|| ApiError::Invalid("metadata: Required value".into()))?;
            if kind.namespaced() {
                if meta.namespace.is_empty() {
                    meta.namespace = "default".into();
                }
            } else {
                meta.namespace.clear();
            }
            if meta.name.is_empty() && !meta.generate_name.is_empty() {
                meta.name = format!("{}{}", meta.generate_name, random_suffix());
            }
            meta.uid = uuid::Uuid::new_v4().to_string();
            meta.creation_timestamp = now();
            meta.generation = 1;
            meta.resource_version.clear();
            meta.deletion_timestamp.clear();
            meta.deletion_grace_period_seconds = None;
        }
        obj.set_type_meta();
        defaults::apply_defaults(&mut obj);
        if let Some(Body::Pod(p)) = obj.kind.as_mut() {
            let st = p.status.get_or_insert_with(Default::default);
            if st.phase.is_empty() {
                st.phase = "Pending".into();
            }
        }
        validation::validate(&obj).map_err(|e| ApiError::Invalid(e.to_string()))?;
        check_size(&obj)?;
        if dry_run {
            return Ok(obj);
        }
        let key = kind.key(obj.namespace(), obj.name());
        let (name, namespace) = (obj.name().to_string(), obj.namespace().to_string());
        let mut base = vec![Compare {
            key: key.clone(),
            target: Some(Target::Absent(true)),
        }];
        if kind.namespaced() {
            base.push(Compare {
                key: Kind::Namespace.key("", &namespace),
                target: Some(Target::Present(true)),
            });
        }
        // Retries only when a picked service address collided.
        for _ in 0..8 {
            let mut o = obj.clone();
            let alloc = self.allocate(&mut o, None)?;
            if kind == Kind::Service {
                // Again, now that addresses are filled in.
                validation::validate(&o).map_err(|e| ApiError::Invalid(e.to_string()))?;
            }
            let mut compares = base.clone();
            compares.extend(alloc.compares);
            let mut ops = vec![put(&key, o)];
            ops.extend(alloc.ops);
            let r = self.store.txn(Txn { compares, ops }).await?;
            if r.succeeded {
                return r
                    .stored
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiError::Internal("store returned no object".into()));
            }
            let i = r.failed_compare as usize;
            return Err(match i {
                0 => ApiError::AlreadyExists(format!("{} {name:?} already exists", kind.plural())),
                1 if kind.namespaced() => ApiError::NotFound(format!(
                    "namespaces {namespace:?} not found: create the namespace first"
                )),
                _ => match alloc.requested.get(i - base.len()) {
                    Some(m) if !m.is_empty() => ApiError::Invalid(m.clone()),
                    _ => continue,
                },
            });
        }
        Err(ApiError::Unavailable(
            "could not allocate a service address after several tries; retry".into(),
        ))
    }

    /// Allocates a Service's ClusterIP and NodePorts (keeping `old`'s on
    /// update); other kinds need nothing.
    fn allocate(&self, obj: &mut Object, old: Option<&Object>) -> ApiResult<Allocation> {
        let Some(Body::Service(svc)) = obj.kind.as_mut() else {
            return Ok(Allocation::default());
        };
        let old = match old.and_then(|o| o.kind.as_ref()) {
            Some(Body::Service(o)) => Some(o),
            _ => None,
        };
        let st = self.store.state();
        allocator::allocate(
            svc,
            old,
            |ip| st.get(&allocator::ip_key(ip)).is_some(),
            |p| st.get(&allocator::port_key(p)).is_some(),
            rand::random(),
        )
        .map_err(|e| match e {
            AllocError::Invalid(m) => ApiError::Invalid(m),
            AllocError::Exhausted(m) => ApiError::Unavailable(m),
        })
    }

    // ------------------------------------------------------------ reads

    async fn read_barrier(&self, resource_version: &str) -> ApiResult<()> {
        if resource_version == "0" {
            return Ok(());
        }
        Ok(self.store.linearize().await?)
    }

    pub async fn get(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        resource_version: &str,
    ) -> ApiResult<Object> {
        let kind = parse_kind(kind)?;
        let ns = effective_namespace(kind, namespace);
        self.read_barrier(resource_version).await?;
        Ok(self.current(kind, &ns, name)?.object)
    }

    fn current(&self, kind: Kind, ns: &str, name: &str) -> ApiResult<Current> {
        if name.is_empty() {
            return Err(ApiError::Invalid("name: Required value".into()));
        }
        let st = self.store.state();
        st.get(&kind.key(ns, name))
            .map(|s| Current {
                object: (*s.object).clone(),
                mod_revision: s.mod_revision,
            })
            .ok_or_else(|| not_found(kind, name))
    }

    pub async fn list(
        &self,
        kind: &str,
        namespace: &str,
        label_selector: &str,
        field_selector: &str,
        resource_version: &str,
    ) -> ApiResult<(Vec<Object>, i64)> {
        let kind = parse_kind(kind)?;
        let filter = Filter::new(kind, namespace, label_selector, field_selector)?;
        self.read_barrier(resource_version).await?;
        let st = self.store.state();
        let items = st
            .range(&filter.prefix)
            .filter(|(_, s)| filter.matches(&s.object))
            .map(|(_, s)| (*s.object).clone())
            .collect();
        Ok((items, st.revision()))
    }

    // ------------------------------------------------------------ watch

    /// Starts a watch; events arrive on the returned channel until the
    /// receiver is dropped or an error (history compacted) is sent.
    pub async fn watch(&self, spec: WatchSpec) -> ApiResult<mpsc::Receiver<ApiResult<WatchEvent>>> {
        let kind = parse_kind(&spec.kind)?;
        let filter = Filter::new(
            kind,
            &spec.namespace,
            &spec.label_selector,
            &spec.field_selector,
        )?;
        let (tx, rx) = mpsc::channel(1024);
        let mut initial = Vec::new();
        let start = match spec.resource_version.as_str() {
            "" | "0" => {
                let st = self.store.state();
                for (_, s) in st.range(&filter.prefix) {
                    if filter.matches(&s.object) {
                        initial.push(WatchEvent {
                            r#type: "ADDED".into(),
                            resource_version: s.mod_revision.to_string(),
                            object: Some((*s.object).clone()),
                        });
                    }
                }
                st.revision()
            }
            rv => {
                let r: i64 = rv.parse().map_err(|_| {
                    ApiError::Invalid(format!("resourceVersion {rv:?} is not a revision number"))
                })?;
                let st = self.store.state();
                if r < st.compacted_revision() {
                    return Err(too_old(&TooOld {
                        requested: r,
                        oldest: st.compacted_revision(),
                    }));
                }
                r
            }
        };
        let mut revisions = self.store.revision();
        let store = self.store.clone();
        let mut stop = self.stop.subscribe();
        let stream = async move {
            for ev in initial {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            let mut pos = start;
            loop {
                let changes = {
                    let st = store.state();
                    st.changes_since(pos, usize::MAX)
                };
                let changes = match changes {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(too_old(&e))).await;
                        return;
                    }
                };
                for c in changes {
                    pos = c.revision;
                    if !c.key.starts_with(&filter.prefix) {
                        continue;
                    }
                    let now = filter.matches(&c.object);
                    let before = c.prev.as_ref().map(|p| filter.matches(p)).unwrap_or(false);
                    let ty = match (c.change, before, now) {
                        (ChangeType::Added, _, true) => "ADDED",
                        (ChangeType::Modified, true, true) => "MODIFIED",
                        (ChangeType::Modified, false, true) => "ADDED",
                        (ChangeType::Modified, true, false) => "DELETED",
                        (ChangeType::Deleted, true, _) => "DELETED",
                        _ => continue,
                    };
                    let ev = WatchEvent {
                        r#type: ty.into(),
                        object: Some((*c.object).clone()),
                        resource_version: c.revision.to_string(),
                    };
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
                let idle = tokio::time::timeout(Duration::from_secs(10), async {
                    revisions.wait_for(|r| *r > pos).await.is_ok()
                })
                .await;
                match idle {
                    Ok(true) => {}
                    Ok(false) => return, // the replica is shutting down
                    Err(_) => {
                        if spec.allow_bookmarks {
                            let ev = WatchEvent {
                                r#type: "BOOKMARK".into(),
                                object: None,
                                resource_version: pos.to_string(),
                            };
                            if tx.send(Ok(ev)).await.is_err() {
                                return;
                            }
                        } else if tx.is_closed() {
                            return;
                        }
                    }
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = stream => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
        Ok(rx)
    }

    // ------------------------------------------------------------ update

    /// Replaces an object (`status_only`: only its status). A non-empty
    /// metadata.resourceVersion must match the stored one.
    #[tracing::instrument(level = "debug", skip_all, fields(kind = ?obj.kind(), name = obj.name()))]
    pub async fn update(&self, obj: Object, status_only: bool, dry_run: bool) -> ApiResult<Object> {
        let kind = obj
            .kind()
            .ok_or_else(|| ApiError::Invalid("kind: Required value".into()))?;
        let ns = effective_namespace(kind, obj.namespace());
        let name = obj.name().to_string();
        let precondition = parse_rv(obj.resource_version())?;
        let mut linearized = false;
        for _ in 0..16 {
            let cur = self.current(kind, &ns, &name)?;
            if let Some(rv) = precondition {
                if rv != cur.mod_revision {
                    if rv > cur.mod_revision && !linearized {
                        // This replica may simply be behind.
                        self.store.linearize().await?;
                        linearized = true;
                        continue;
                    }
                    return Err(conflict(kind, &name));
                }
            }
            let new = merge_update(&cur.object, obj.clone(), status_only);
            match self.try_write(kind, &cur, new, dry_run).await? {
                Some(o) => return Ok(o),
                None if precondition.is_some() => return Err(conflict(kind, &name)),
                None => {
                    self.store.linearize().await?;
                    linearized = true;
                }
            }
        }
        Err(conflict(kind, &name))
    }

    /// Validates and writes `new` over `cur` if `cur` is still current.
    /// `Ok(None)`: it was not (retry). Completes a deletion whose last
    /// finalizer is gone.
    async fn try_write(
        &self,
        kind: Kind,
        cur: &Current,
        mut new: Object,
        dry_run: bool,
    ) -> ApiResult<Option<Object>> {
        let mut unchanged = new.clone();
        if let Some(m) = unchanged.metadata_mut() {
            m.resource_version = cur.object.resource_version().to_string();
        }
        if unchanged == cur.object {
            return Ok(Some(cur.object.clone()));
        }
        if let Some(m) = new.metadata_mut() {
            m.resource_version.clear();
        }
        if let (Some(Body::Service(n)), Some(Body::Service(o))) =
            (new.kind.as_mut(), cur.object.kind.as_ref())
        {
            // An update that leaves the allocated address out keeps it.
            if let (Some(ns), Some(os)) = (n.spec.as_mut(), o.spec.as_ref()) {
                if ns.cluster_ip.is_empty() {
                    ns.cluster_ip = os.cluster_ip.clone();
                    ns.cluster_ips = os.cluster_ips.clone();
                }
            }
        }
        validation::validate_update(&cur.object, &new)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        check_size(&new)?;
        if dry_run {
            return Ok(Some(new));
        }
        let key = kind.key(cur.object.namespace(), cur.object.name());
        let finishing = new
            .metadata()
            .map(|m| !m.deletion_timestamp.is_empty() && m.finalizers.is_empty())
            .unwrap_or(false);
        let mut compares = vec![Compare {
            key: key.clone(),
            target: Some(Target::ModRevision(cur.mod_revision)),
        }];
        let mut ops = Vec::new();
        let mut requested = Vec::new();
        if finishing {
            ops.push(Op {
                key: key.clone(),
                op: Some(OpKind::Delete(true)),
            });
            ops.extend(release_ops(&cur.object));
        } else {
            let alloc = self.allocate(&mut new, Some(&cur.object))?;
            compares.extend(alloc.compares);
            requested = alloc.requested;
            ops.push(put(&key, new.clone()));
            ops.extend(alloc.ops);
        }
        let r = self.store.txn(Txn { compares, ops }).await?;
        if !r.succeeded {
            if let Some(m) = requested.get((r.failed_compare as usize).wrapping_sub(1)) {
                if !m.is_empty() {
                    return Err(ApiError::Invalid(m.clone()));
                }
            }
            return Ok(None);
        }
        if finishing {
            if let Some(m) = new.metadata_mut() {
                m.resource_version = r.revision.to_string();
            }
            return Ok(Some(new));
        }
        Ok(r.stored.into_iter().next())
    }

    /// Applies a JSON merge patch (RFC 7386) to the current object.
    pub async fn patch(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        patch_type: &str,
        patch: &str,
        status_only: bool,
    ) -> ApiResult<Object> {
        let kind = parse_kind(kind)?;
        match patch_type {
            "" | "merge" | "strategic" | "application/merge-patch+json" => {}
            other => {
                return Err(ApiError::Invalid(format!(
                    "patch type {other:?} is not supported: use \"merge\""
                )))
            }
        }
        let doc: serde_json::Value = serde_json::from_str(patch)
            .map_err(|e| ApiError::Invalid(format!("the patch is not valid JSON: {e}")))?;
        if !doc.is_object() {
            return Err(ApiError::Invalid("the patch must be a JSON object".into()));
        }
        let precondition = doc
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
            .map(parse_rv)
            .transpose()?
            .flatten();
        let ns = effective_namespace(kind, namespace);
        for _ in 0..16 {
            let cur = self.current(kind, &ns, name)?;
            if let Some(rv) = precondition {
                if rv != cur.mod_revision {
                    return Err(conflict(kind, name));
                }
            }
            let mut v = cur.object.to_json();
            merge_patch(&mut v, &doc);
            let patched = kinds::from_json(kind, v).map_err(|m| {
                ApiError::Invalid(format!("the patched {kind} {name:?} is invalid: {m}"))
            })?;
            let new = merge_update(&cur.object, patched, status_only);
            if let Some(o) = self.try_write(kind, &cur, new, false).await? {
                return Ok(o);
            }
            if precondition.is_some() {
                return Err(conflict(kind, name));
            }
            self.store.linearize().await?;
        }
        Err(conflict(kind, name))
    }

    // ------------------------------------------------------------ delete

    pub async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        propagation_policy: &str,
        preconditions: Option<Preconditions>,
    ) -> ApiResult<Object> {
        let kind = parse_kind(kind)?;
        match propagation_policy {
            "" | "Background" | "Foreground" | "Orphan" => {}
            other => {
                return Err(ApiError::Invalid(format!(
                    "propagationPolicy: Unsupported value: {other:?}: supported values: \
                     \"Background\", \"Foreground\", \"Orphan\""
                )))
            }
        }
        if kind == Kind::Namespace && matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::Forbidden(format!(
                "namespaces {name:?} is forbidden: this namespace may not be deleted"
            )));
        }
        let ns = effective_namespace(kind, namespace);
        let pre = preconditions.unwrap_or_default();
        let pre_rv = parse_rv(&pre.resource_version)?;
        for attempt in 0..16 {
            if attempt > 0 {
                self.store.linearize().await?;
            }
            let cur = self.current(kind, &ns, name)?;
            let meta = cur.object.metadata().cloned().unwrap_or_default();
            if !pre.uid.is_empty() && pre.uid != meta.uid {
                return Err(ApiError::Conflict(format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    pre.uid, meta.uid
                )));
            }
            if let Some(rv) = pre_rv {
                if rv != cur.mod_revision {
                    return Err(ApiError::Conflict(format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, \
                         ResourceVersion in object meta: {}",
                        cur.mod_revision
                    )));
                }
            }
            let policy_finalizer = match propagation_policy {
                "Foreground" => Some(FOREGROUND_FINALIZER),
                "Orphan" => Some(ORPHAN_FINALIZER),
                _ => None,
            };
            if let Some(f) = policy_finalizer {
                // The garbage collector deletes (Foreground) or releases
                // (Orphan) the dependents, then removes the finalizer, which
                // completes the deletion.
                if meta.finalizers.iter().any(|x| x == f) && !meta.deletion_timestamp.is_empty() {
                    return Ok(cur.object);
                }
                let mut marked = cur.object.clone();
                if let Some(m) = marked.metadata_mut() {
                    if !m.finalizers.iter().any(|x| x == f) {
                        m.finalizers.push(f.to_string());
                    }
                    if m.deletion_timestamp.is_empty() {
                        m.deletion_timestamp = now();
                        m.deletion_grace_period_seconds = Some(0);
                    }
                }
                match self.try_write(kind, &cur, marked, false).await? {
                    Some(o) => return Ok(o),
                    None => continue,
                }
            }
            if !meta.finalizers.is_empty() {
                // Finalizers hold the object: mark it; whoever owns each
                // finalizer removes it, and the last removal deletes.
                if !meta.deletion_timestamp.is_empty() {
                    return Ok(cur.object);
                }
                let mut marked = cur.object.clone();
                if let Some(m) = marked.metadata_mut() {
                    m.deletion_timestamp = now();
                    m.deletion_grace_period_seconds = Some(0);
                }
                match self.try_write(kind, &cur, marked, false).await? {
                    Some(o) => return Ok(o),
                    None => continue,
                }
            }
            let key = kind.key(&ns, name);
            let mut ops = vec![Op {
                key: key.clone(),
                op: Some(OpKind::Delete(true)),
            }];
            ops.extend(release_ops(&cur.object));
            if kind == Kind::Namespace {
                // Everything in the namespace goes with it.
                let st = self.store.state();
                for k in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
                    for (key, stored) in st.range(&k.key_prefix(Some(name))) {
                        ops.push(Op {
                            key: key.clone(),
                            op: Some(OpKind::Delete(true)),
                        });
                        ops.extend(release_ops(&stored.object));
                    }
                }
            }
            let r = self
                .store
                .txn(Txn {
                    compares: vec![Compare {
                        key,
                        target: Some(Target::ModRevision(cur.mod_revision)),
                    }],
                    ops,
                })
                .await?;
            if r.succeeded {
                let mut gone = cur.object;
                if let Some(m) = gone.metadata_mut() {
                    m.resource_version = r.revision.to_string();
                }
                return Ok(gone);
            }
            if pre_rv.is_some() {
                return Err(conflict(kind, name));
            }
        }
        Err(conflict(kind, name))
    }

    // ------------------------------------------------------------ scale, bind

    pub async fn get_scale(&self, kind: &str, namespace: &str, name: &str) -> ApiResult<Scale> {
        let kind = scalable(kind)?;
        self.read_barrier("").await?;
        let cur = self.current(kind, &effective_namespace(kind, namespace), name)?;
        to_scale(&cur.object)
    }

    pub async fn update_scale(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        replicas: i32,
        resource_version: &str,
    ) -> ApiResult<Scale> {
        let kind = scalable(kind)?;
        if replicas < 0 {
            return Err(ApiError::Invalid(format!(
                "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            )));
        }
        let precondition = parse_rv(resource_version)?;
        let ns = effective_namespace(kind, namespace);
        for attempt in 0..16 {
            if attempt > 0 {
                self.store.linearize().await?;
            }
            let cur = self.current(kind, &ns, name)?;
            if let Some(rv) = precondition {
                if rv != cur.mod_revision {
                    return Err(conflict(kind, name));
                }
            }
            let mut new = cur.object.clone();
            match new.kind.as_mut() {
                Some(Body::ReplicationController(rc)) => {
                    rc.spec.get_or_insert_with(Default::default).replicas = Some(replicas)
                }
                Some(Body::ReplicaSet(rs)) => {
                    rs.spec.get_or_insert_with(Default::default).replicas = Some(replicas)
                }
                _ => {}
            }
            if let Some(m) = new.metadata_mut() {
                if new_generation_needed(&cur.object, replicas) {
                    m.generation += 1;
                }
            }
            if let Some(o) = self.try_write(kind, &cur, new, false).await? {
                return to_scale(&o);
            }
            if precondition.is_some() {
                return Err(conflict(kind, name));
            }
        }
        Err(conflict(kind, name))
    }

    /// Assigns a pod to a node, once.
    pub async fn bind(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        uid: &str,
    ) -> ApiResult<Object> {
        if node.is_empty() {
            return Err(ApiError::Invalid(
                "target.name: Required value: a node name".into(),
            ));
        }
        let ns = effective_namespace(Kind::Pod, namespace);
        for attempt in 0..16 {
            if attempt > 0 {
                self.store.linearize().await?;
            }
            let cur = self.current(Kind::Pod, &ns, name)?;
            let mut new = cur.object.clone();
            let Some(Body::Pod(pod)) = new.kind.as_mut() else {
                return Err(ApiError::Internal("stored pod is not a pod".into()));
            };
            let meta = pod.metadata.clone().unwrap_or_default();
            if !uid.is_empty() && meta.uid != uid {
                return Err(ApiError::Conflict(format!(
                    "pod {name:?} has uid {}, not {uid}: it was replaced",
                    meta.uid
                )));
            }
            if !meta.deletion_timestamp.is_empty() {
                return Err(ApiError::Conflict(format!("pod {name:?} is being deleted")));
            }
            let spec = pod.spec.get_or_insert_with(Default::default);
            if !spec.node_name.is_empty() {
                if spec.node_name == node {
                    return Ok(cur.object);
                }
                return Err(ApiError::Conflict(format!(
                    "pod {name:?} is already assigned to node {:?}",
                    spec.node_name
                )));
            }
            spec.node_name = node.to_string();
            let st = pod.status.get_or_insert_with(Default::default);
            st.conditions.retain(|c| c.r#type != "PodScheduled");
            st.conditions.push(PodCondition {
                r#type: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: now(),
                ..Default::default()
            });
            // Binding changes spec and status together, bypassing the
            // spec-immutability rule that applies to users' updates.
            let key = Kind::Pod.key(&ns, name);
            check_size(&new)?;
            let r = self
                .store
                .txn(Txn {
                    compares: vec![Compare {
                        key: key.clone(),
                        target: Some(Target::ModRevision(cur.mod_revision)),
                    }],
                    ops: vec![put(&key, new)],
                })
                .await?;
            if r.succeeded {
                return r
                    .stored
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiError::Internal("store returned no object".into()));
            }
        }
        Err(conflict(Kind::Pod, name))
    }
}

// ---------------------------------------------------------------- helpers

/// Which objects a list or watch wants.
struct Filter {
    prefix: String,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(kind: Kind, namespace: &str, labels: &str, fields: &str) -> ApiResult<Filter> {
        let labels = LabelSelector::parse(labels).map_err(|e| ApiError::Invalid(e.to_string()))?;
        let fields = FieldSelector::parse(fields).map_err(|e| ApiError::Invalid(e.to_string()))?;
        let ns = if kind.namespaced() && !namespace.is_empty() {
            Some(namespace)
        } else {
            None
        };
        Ok(Filter {
            prefix: kind.key_prefix(ns),
            labels,
            fields,
        })
    }

    fn matches(&self, o: &Object) -> bool {
        let empty = Default::default();
        let labels = o.metadata().map(|m| &m.labels).unwrap_or(&empty);
        self.labels.matches(labels) && self.fields.matches(|path| o.field(path))
    }
}

/// Deletes of the service-address markers an object holds.
fn release_ops(obj: &Object) -> Vec<Op> {
    allocator::held_keys(obj)
        .into_iter()
        .map(|key| Op {
            key,
            op: Some(OpKind::Delete(true)),
        })
        .collect()
}

fn put(key: &str, obj: Object) -> Op {
    Op {
        key: key.to_string(),
        op: Some(OpKind::Put(obj)),
    }
}

fn parse_kind(kind: &str) -> ApiResult<Kind> {
    Kind::from_name(kind)
        .or_else(|| Kind::from_cli(kind))
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "the server does not serve kind {kind:?} (served: {})",
                Kind::ALL.map(|k| k.name()).join(", ")
            ))
        })
}

fn scalable(kind: &str) -> ApiResult<Kind> {
    match parse_kind(kind)? {
        k @ (Kind::ReplicationController | Kind::ReplicaSet) => Ok(k),
        k => Err(ApiError::Invalid(format!(
            "{} have no scale subresource",
            k.plural()
        ))),
    }
}

fn effective_namespace(kind: Kind, namespace: &str) -> String {
    if !kind.namespaced() {
        String::new()
    } else if namespace.is_empty() {
        "default".into()
    } else {
        namespace.to_string()
    }
}

fn parse_rv(rv: &str) -> ApiResult<Option<i64>> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<i64>().map(Some).map_err(|_| {
        ApiError::Invalid(format!(
            "metadata.resourceVersion: Invalid value: {rv:?}: not a revision number"
        ))
    })
}

fn not_found(kind: Kind, name: &str) -> ApiError {
    ApiError::NotFound(format!("{} {name:?} not found", kind.plural()))
}

fn conflict(kind: Kind, name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
         please apply your changes to the latest version and try again",
        kind.plural()
    ))
}

fn too_old(e: &TooOld) -> ApiError {
    ApiError::Gone(format!(
        "too old resource version: {} (the oldest retained is {}); list again and watch from \
         the list's resourceVersion",
        e.requested, e.oldest
    ))
}

fn check_size(obj: &Object) -> ApiResult<()> {
    let n = obj.encoded_len();
    if n > MAX_OBJECT_BYTES {
        return Err(ApiError::Invalid(format!(
            "{} {:?} is {n} bytes, over the {MAX_OBJECT_BYTES}-byte (1.5 MiB) object limit",
            obj.kind().map(|k| k.name()).unwrap_or("object"),
            obj.name()
        )));
    }
    Ok(())
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

/// The object an update stores: the user's object with the server-owned
/// metadata kept, status kept (or, for status updates, only status taken),
/// and generation bumped when the desired state changed.
fn merge_update(cur: &Object, new: Object, status_only: bool) -> Object {
    let mut out = if status_only {
        let mut o = cur.clone();
        o.take_status_from(&new);
        o
    } else {
        let mut o = new;
        o.set_type_meta();
        defaults::apply_defaults(&mut o);
        if o.has_status() {
            o.take_status_from(cur);
        }
        let cm = cur.metadata().cloned().unwrap_or_default();
        if let Some(m) = o.metadata_mut() {
            keep_server_fields(m, &cm);
            m.generation = cm.generation;
        }
        if o.desired_state() != cur.desired_state() {
            if let Some(m) = o.metadata_mut() {
                m.generation = cm.generation + 1;
            }
        }
        o
    };
    if let Some(m) = out.metadata_mut() {
        m.resource_version = cur.resource_version().to_string();
    }
    out
}

fn keep_server_fields(m: &mut ObjectMeta, cur: &ObjectMeta) {
    m.name = cur.name.clone();
    m.namespace = cur.namespace.clone();
    m.uid = cur.uid.clone();
    m.creation_timestamp = cur.creation_timestamp.clone();
    m.deletion_timestamp = cur.deletion_timestamp.clone();
    m.deletion_grace_period_seconds = cur.deletion_grace_period_seconds;
}

fn new_generation_needed(cur: &Object, replicas: i32) -> bool {
    match cur.kind.as_ref() {
        Some(Body::ReplicationController(rc)) => {
            rc.spec.as_ref().and_then(|s| s.replicas) != Some(replicas)
        }
        Some(Body::ReplicaSet(rs)) => rs.spec.as_ref().and_then(|s| s.replicas) != Some(replicas),
        _ => false,
    }
}

fn to_scale(o: &Object) -> ApiResult<Scale> {
    let (spec_replicas, status_replicas, selector) = match o.kind.as_ref() {
        Some(Body::ReplicationController(rc)) => {
            let spec = rc.spec.clone().unwrap_or_default();
            (
                spec.replicas.unwrap_or(1),
                rc.status.as_ref().map(|s| s.replicas).unwrap_or(0),
                LabelSelector::from_map(&spec.selector).to_string(),
            )
        }
        Some(Body::ReplicaSet(rs)) => {
            let spec = rs.spec.clone().unwrap_or_default();
            let sel = spec
                .selector
                .as_ref()
                .map(|s| LabelSelector::from_proto(s).map(|s| s.to_string()))
                .transpose()
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .unwrap_or_default();
            (
                spec.replicas.unwrap_or(1),
                rs.status.as_ref().map(|s| s.replicas).unwrap_or(0),
                sel,
            )
        }
        _ => return Err(ApiError::Invalid("no scale subresource".into())),
    };
    let m = o.metadata().cloned().unwrap_or_default();
    Ok(Scale {
        api_version: "autoscaling/v1".into(),
        kind: "Scale".into(),
        metadata: Some(ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            creation_timestamp: m.creation_timestamp,
            ..Default::default()
        }),
        spec: Some(ScaleSpec {
            replicas: spec_replicas,
        }),
        status: Some(ScaleStatus {
            replicas: status_replicas,
            selector,
        }),
    })
}

/// RFC 7386: objects merge recursively, `null` removes, anything else
/// replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match patch {
        serde_json::Value::Object(p) => {
            if !target.is_object() {
                *target = serde_json::Value::Object(Default::default());
            }
            if let serde_json::Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }
}
