//! The API's logic, independent of any transport: admission, defaulting,
//! validation, and the store calls behind every verb. The gRPC service (and a
//! later REST facade) are thin doors onto these handlers.

use crate::allocator::{self, AllocError, Allocation};
use crate::node_ipam::{self, CidrConfig};
use crate::raft_node::StoreError;
use crate::state_machine::{ChangeType, TooOld};
use crate::store::Store;
use prost::Message as _;
use rkube_api::kinds::{self, Kind};
use rkube_api::proto::internal::{compare::Target, op::Op as OpKind, Compare, Op, Txn};
use rkube_api::proto::{
    object::Kind as Body, Node, ObjectMeta, Pod, PodCondition, Preconditions, Scale, ScaleSpec,
    ScaleStatus, WatchEvent,
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
    /// A range to allocate from is full (node podCIDRs).
    #[error("{0}")]
    Exhausted(String),
    /// Refused in the current state; nothing was done.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::OutcomeUnknown(m) => ApiError::OutcomeUnknown(m),
            StoreError::Internal(m) => ApiError::Internal(m),
            StoreError::FailedPrecondition(m) => ApiError::FailedPrecondition(m),
            StoreError::NotLeader(id) => crate::membership::not_leader(id),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone)]
pub struct Handlers {
    store: Store,
    /// Where node podCIDRs come from.
    pod_cidrs: Arc<CidrConfig>,
    /// Set when the replica shuts down: open watches end so clients fail
    /// over instead of hanging on a dying server.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// Held for the whole of a membership change (an add spans two
    /// configuration changes and the learner's catch-up).
    pub(crate) membership: Arc<tokio::sync::Mutex<()>>,
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
    pub fn new(store: Store) -> Handlers {
        Handlers {
            store,
            pod_cidrs: Arc::new(CidrConfig::default()),
            stop: Arc::new(tokio::sync::watch::channel(false).0),
            membership: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Allocates node podCIDRs from `cfg` (`--cluster-cidr`,
    /// `--node-cidr-mask-size`) instead of the default 10.244.0.0/16 in /24s.
    /// Every replica must be given the same.
    pub fn with_pod_cidrs(mut self, cfg: CidrConfig) -> Handlers {
        self.pod_cidrs = Arc::new(cfg);
        self
    }

    pub fn pod_cidrs(&self) -> &CidrConfig {
        &self.pod_cidrs
    }

    /// Ends every open watch (on shutdown).
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    pub fn store(&self) -> &Store {
        &self.store
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
        if let Some(Body::Node(n)) = obj.kind.as_ref() {
            if n.spec
                .as_ref()
                .is_none_or(|s| node_ipam::node_cidrs(s).is_empty())
            {
                // The lowest free range as the cluster has it now, not as
                // this replica last applied it.
                self.store.linearize().await?;
            }
        }
        // Retries only when a picked service address or node range collided
        // with a concurrent create's (or this replica's view was behind).
        for attempt in 0..32 {
            let mut o = obj.clone();
            let alloc = self.allocate(&mut o, None, attempt)?;
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
        Err(ApiError::Unavailable(format!(
            "could not allocate {} after several tries (concurrent creates took the \
             candidates); retry",
            if kind == Kind::Node {
                "a node podCIDR"
            } else {
                "a service address"
            }
        )))
    }

    /// Allocates a Service's ClusterIP and NodePorts (keeping `old`'s on
    /// update) or a Node's podCIDR; other kinds need nothing. `attempt`
    /// counts retries after collisions.
    fn allocate(
        &self,
        obj: &mut Object,
        old: Option<&Object>,
        attempt: u32,
    ) -> ApiResult<Allocation> {
        let svc = match obj.kind.as_mut() {
            Some(Body::Service(svc)) => svc,
            Some(Body::Node(node)) => return self.allocate_pod_cidr(node, old, attempt),
            _ => return Ok(Allocation::default()),
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

    /// A Node's podCIDR: a new Node without one gets the lowest free block
    /// of the cluster CIDR; one that brings its own (or sets it on an
    /// update, from empty) claims the blocks it overlaps that are free. A
    /// collision with a concurrent claim fails the transaction's compare:
    /// retried. Once set, podCIDR never changes (validation).
    fn allocate_pod_cidr(
        &self,
        node: &mut Node,
        old: Option<&Object>,
        attempt: u32,
    ) -> ApiResult<Allocation> {
        let cfg = &*self.pod_cidrs;
        let meta = node.metadata.clone().unwrap_or_default();
        let spec = node.spec.get_or_insert_with(Default::default);
        node_ipam::normalize(spec);
        if let Some(Body::Node(o)) = old.and_then(|o| o.kind.as_ref()) {
            let held = o.spec.as_ref().map(node_ipam::node_cidrs);
            if held.is_some_and(|h| !h.is_empty()) {
                // Already claimed when it was set.
                return Ok(Allocation::default());
            }
        }
        let st = self.store.state();
        let is_claimed = |k: &str| st.get(k).is_some();
        if spec.pod_cidr.is_empty() {
            if old.is_some() {
                // Only creation allocates.
                return Ok(Allocation::default());
            }
            let block = cfg
                .pick(is_claimed, attempt, rand::random())
                .ok_or_else(|| ApiError::Exhausted(node_ipam::exhausted(cfg)))?;
            spec.pod_cidr = cfg.block_cidr(block);
            spec.pod_cidrs = vec![spec.pod_cidr.clone()];
        }
        let (compares, ops) = node_ipam::claim(cfg, &meta, spec, is_claimed);
        Ok(Allocation {
            requested: vec![String::new(); compares.len()],
            compares,
            ops,
        })
    }

    /// The compares and ops that release what a deleted object held:
    /// service address markers, and a Node's podCIDR markers (handed to
    /// another Node that uses the same block, if any).
    fn release(&self, obj: &Object) -> (Vec<Compare>, Vec<Op>) {
        let Some(Body::Node(node)) = obj.kind.as_ref() else {
            return (Vec::new(), release_ops(obj));
        };
        let Some(spec) = node.spec.as_ref() else {
            return (Vec::new(), Vec::new());
        };
        let meta = node.metadata.clone().unwrap_or_default();
        let cfg = &*self.pod_cidrs;
        let st = self.store.state();
        let own_key = Kind::Node.key("", &meta.name);
        node_ipam::release(
            cfg,
            &meta,
            spec,
            |key| {
                st.get(key).map(|s| node_ipam::MarkerState {
                    owner_uid: node_ipam::marker_owner(&s.object).to_string(),
                    mod_revision: s.mod_revision,
                })
            },
            |key| {
                st.range(&Kind::Node.key_prefix(None))
                    .filter(|(k, _)| **k != own_key)
                    .find_map(|(k, s)| match s.object.kind.as_ref() {
                        Some(Body::Node(n))
                            if n.spec
                                .as_ref()
                                .is_some_and(|sp| cfg.node_keys(sp).iter().any(|x| x == key)) =>
                        {
                            Some(node_ipam::Heir {
                                key: k.clone(),
                                meta: n.metadata.clone().unwrap_or_default(),
                                mod_revision: s.mod_revision,
                            })
                        }
                        _ => None,
                    })
            },
        )
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
        // This replica's state may be behind. A write made from it is safe
        // (its transaction compares the mod revision), but a refusal made
        // from it is not: NotFound or Conflict are answered only from state
        // read after the leader confirmed it current (ReadIndex).
        let mut linearized = false;
        for _ in 0..16 {
            let cur = match self.current(kind, &ns, &name) {
                Err(ApiError::NotFound(_)) if !linearized => {
                    self.store.linearize().await?;
                    linearized = true;
                    continue;
                }
                r => r?,
            };
            if let Some(rv) = precondition {
                if rv != cur.mod_revision {
                    if !linearized {
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
                // Changed meanwhile: read again, current this time (gone:
                // NotFound; another version: Conflict with a precondition,
                // else a retry on it).
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
            // Nothing to write, but the answer says `cur` is the current
            // version, which a replica that is behind cannot know: confirm.
            self.store.linearize().await?;
            let key = kind.key(cur.object.namespace(), cur.object.name());
            let now = self.store.state().get(&key).map(|s| s.mod_revision);
            if now != Some(cur.mod_revision) {
                return Ok(None);
            }
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
        if let (Some(Body::Node(n)), Some(Body::Node(o))) =
            (new.kind.as_mut(), cur.object.kind.as_ref())
        {
            // Likewise an update that leaves the podCIDR out keeps it.
            let ns = n.spec.get_or_insert_with(Default::default);
            if ns.pod_cidr.is_empty() && ns.pod_cidrs.is_empty() {
                if let Some(os) = o.spec.as_ref() {
                    ns.pod_cidr = os.pod_cidr.clone();
                    ns.pod_cidrs = os.pod_cidrs.clone();
                }
            }
            node_ipam::normalize(ns);
        }
        validation::validate_update(&cur.object, &new)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        check_size(&new)?;
        if dry_run {
            return Ok(Some(new));
        }
        let key = kind.key(cur.object.namespace(), cur.object.name());
        let finishing = completes_deletion(&cur.object, &new);
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
            let (c, o) = self.release(&cur.object);
            compares.extend(c);
            ops.extend(o);
        } else {
            let alloc = self.allocate(&mut new, Some(&cur.object), 0)?;
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
        // As for update: refusals only from state confirmed current.
        let mut linearized = false;
        for _ in 0..16 {
            let cur = match self.current(kind, &ns, name) {
                Err(ApiError::NotFound(_)) if !linearized => {
                    self.store.linearize().await?;
                    linearized = true;
                    continue;
                }
                r => r?,
            };
            if let Some(rv) = precondition {
                if rv != cur.mod_revision {
                    if !linearized {
                        self.store.linearize().await?;
                        linearized = true;
                        continue;
                    }
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
            self.store.linearize().await?;
            linearized = true;
        }
        Err(conflict(kind, name))
    }

    // ------------------------------------------------------------ delete

    /// Deletes an object, with the pod's own grace period for pods.
    pub async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        propagation_policy: &str,
        preconditions: Option<Preconditions>,
    ) -> ApiResult<Object> {
        self.delete_with_grace(
            kind,
            namespace,
            name,
            propagation_policy,
            preconditions,
            None,
        )
        .await
    }

    /// Deletes an object. A Pod that is bound to a node and not terminated
    /// is deleted gracefully, as Kubernetes does: with an effective grace
    /// period above zero (`grace_period_seconds`, else the pod's
    /// `terminationGracePeriodSeconds`) it only gets `deletionTimestamp`
    /// (now + grace) and `deletionGracePeriodSeconds`, and the node's agent
    /// deletes it again with grace 0 once its containers are stopped. A
    /// later delete may only shorten the grace. Finalizers hold any object
    /// until they are removed.
    pub async fn delete_with_grace(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        propagation_policy: &str,
        preconditions: Option<Preconditions>,
        grace_period_seconds: Option<i64>,
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
            // The first attempt reads this replica's state, which may be
            // behind: a refusal (NotFound, a failed precondition) waits for
            // a retry on state the leader confirmed current.
            let fresh = attempt > 0;
            if fresh {
                self.store.linearize().await?;
            }
            let cur = match self.current(kind, &ns, name) {
                Err(ApiError::NotFound(_)) if !fresh => continue,
                r => r?,
            };
            let meta = cur.object.metadata().cloned().unwrap_or_default();
            let pre_fails = (!pre.uid.is_empty() && pre.uid != meta.uid)
                || pre_rv.is_some_and(|rv| rv != cur.mod_revision);
            if pre_fails && !fresh {
                continue;
            }
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
            let mut marked = cur.object.clone();
            let mut write = false;
            let mut delete_now = true;
            if let Some(Body::Pod(pod)) = cur.object.kind.as_ref() {
                match pod_graceful(pod, grace_period_seconds, chrono::Utc::now()) {
                    Graceful::Now => {}
                    Graceful::Pending => delete_now = false,
                    Graceful::Mark { timestamp, grace } => {
                        if let Some(m) = marked.metadata_mut() {
                            if m.deletion_timestamp.is_empty() {
                                m.generation += 1;
                            }
                            m.deletion_timestamp = timestamp;
                            m.deletion_grace_period_seconds = Some(grace);
                        }
                        write = true;
                        delete_now = grace == 0;
                    }
                }
            }
            let policy_finalizer = match propagation_policy {
                "Foreground" => Some(FOREGROUND_FINALIZER),
                "Orphan" => Some(ORPHAN_FINALIZER),
                _ => None,
            };
            if let Some(m) = marked.metadata_mut() {
                if let Some(f) = policy_finalizer {
                    // The garbage collector deletes (Foreground) or releases
                    // (Orphan) the dependents, then removes the finalizer,
                    // which completes the deletion.
                    if !m.finalizers.iter().any(|x| x == f) {
                        m.finalizers.push(f.to_string());
                        write = true;
                    }
                }
                if !m.finalizers.is_empty() && m.deletion_timestamp.is_empty() {
                    // Finalizers hold the object: mark it; whoever owns each
                    // finalizer removes it, and the last removal deletes.
                    m.deletion_timestamp = now();
                    m.deletion_grace_period_seconds = Some(0);
                    write = true;
                }
            }
            let held = marked.metadata().is_some_and(|m| !m.finalizers.is_empty());
            if !delete_now || held {
                if !write {
                    return Ok(cur.object);
                }
                match self.try_write(kind, &cur, marked, false).await? {
                    Some(o) => return Ok(o),
                    None => continue,
                }
            }
            let key = kind.key(&ns, name);
            let mut compares = vec![Compare {
                key: key.clone(),
                target: Some(Target::ModRevision(cur.mod_revision)),
            }];
            let mut ops = vec![Op {
                key: key.clone(),
                op: Some(OpKind::Delete(true)),
            }];
            let (c, o) = self.release(&cur.object);
            compares.extend(c);
            ops.extend(o);
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
            let r = self.store.txn(Txn { compares, ops }).await?;
            if r.succeeded {
                let mut gone = cur.object;
                if let Some(m) = gone.metadata_mut() {
                    m.resource_version = r.revision.to_string();
                }
                return Ok(gone);
            }
            // Changed meanwhile: the next attempt reads it current (gone:
            // NotFound; another version: the precondition fails).
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
            // Refusals only from state confirmed current (see delete).
            let fresh = attempt > 0;
            if fresh {
                self.store.linearize().await?;
            }
            let cur = match self.current(kind, &ns, name) {
                Err(ApiError::NotFound(_)) if !fresh => continue,
                r => r?,
            };
            if let Some(rv) = precondition {
                if rv != cur.mod_revision {
                    if !fresh {
                        continue;
                    }
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
            // Answers other than a write only from state confirmed current
            // (see delete).
            let fresh = attempt > 0;
            if fresh {
                self.store.linearize().await?;
            }
            let cur = match self.current(Kind::Pod, &ns, name) {
                Err(ApiError::NotFound(_)) if !fresh => continue,
                r => r?,
            };
            let mut new = cur.object.clone();
            let Some(Body::Pod(pod)) = new.kind.as_mut() else {
                return Err(ApiError::Internal("stored pod is not a pod".into()));
            };
            let meta = pod.metadata.clone().unwrap_or_default();
            let bound = pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty());
            if !fresh
                && ((!uid.is_empty() && meta.uid != uid)
                    || bound
                    || !meta.deletion_timestamp.is_empty())
            {
                continue;
            }
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

/// The grace period a pod gets when nothing asks for one (Kubernetes'
/// default `terminationGracePeriodSeconds`).
pub const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;

/// What a delete does to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Graceful {
    /// No grace: delete it now (finalizers permitting).
    Now,
    /// Already terminating, and the delete asks for no shorter grace:
    /// nothing changes.
    Pending,
    /// Set (or shorten) deletionTimestamp and deletionGracePeriodSeconds; a
    /// grace of 0 then deletes unless finalizers hold the pod.
    Mark { timestamp: String, grace: i64 },
}

/// Kubernetes' graceful deletion of pods (the pod strategy's
/// CheckGracefulDelete and the registry's BeforeDelete): a negative grace
/// counts as 1 s; a pod not yet bound to a node, or Succeeded or Failed, has
/// no grace; a pod already terminating keeps its deletion unless a shorter
/// grace is asked, which moves deletionTimestamp to (the first request's
/// time + the new grace).
fn pod_graceful(pod: &Pod, requested: Option<i64>, now: chrono::DateTime<chrono::Utc>) -> Graceful {
    let requested = requested.map(|g| if g < 0 { 1 } else { g });
    let meta = pod.metadata.clone().unwrap_or_default();
    if !meta.deletion_timestamp.is_empty() {
        let current = meta.deletion_grace_period_seconds.unwrap_or(0);
        if current <= 0 {
            return Graceful::Now;
        }
        let Some(grace) = requested.filter(|g| *g < current) else {
            return Graceful::Pending;
        };
        let requested_at = chrono::DateTime::parse_from_rfc3339(&meta.deletion_timestamp)
            .map(|t| t.with_timezone(&chrono::Utc) - chrono::Duration::seconds(current))
            .unwrap_or(now);
        return Graceful::Mark {
            timestamp: rfc3339(requested_at + chrono::Duration::seconds(grace)),
            grace,
        };
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    let grace = if spec.node_name.is_empty() || matches!(phase, "Succeeded" | "Failed") {
        0
    } else {
        requested.unwrap_or_else(|| {
            spec.termination_grace_period_seconds
                .map(|g| if g < 0 { 1 } else { g })
                .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS)
        })
    };
    if grace == 0 {
        return Graceful::Now;
    }
    Graceful::Mark {
        timestamp: rfc3339(now + chrono::Duration::seconds(grace)),
        grace,
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whether writing `new` over `cur` completes a deletion: the write removes
/// the last finalizer of an object marked for deletion with no grace
/// pending (a pod still in its grace period waits for its node's final
/// delete instead), as Kubernetes' ShouldDeleteDuringUpdate.
fn completes_deletion(cur: &Object, new: &Object) -> bool {
    let (Some(c), Some(n)) = (cur.metadata(), new.metadata()) else {
        return false;
    };
    !n.deletion_timestamp.is_empty()
        && n.finalizers.is_empty()
        && !c.finalizers.is_empty()
        && !c.deletion_timestamp.is_empty()
        && c.deletion_grace_period_seconds.unwrap_or(0) <= 0
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

#[cfg(test)]
mod graceful_tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use rkube_api::proto::{PodSpec, PodStatus};

    fn pod(node: &str, phase: &str, tgps: Option<i64>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: node.into(),
                termination_grace_period_seconds: tgps,
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminating(ts: &str, grace: Option<i64>) -> Pod {
        let mut p = pod("wn1", "Running", Some(30));
        let m = p.metadata.as_mut().unwrap();
        m.deletion_timestamp = ts.into();
        m.deletion_grace_period_seconds = grace;
        p
    }

    fn mark(ts: &str, grace: i64) -> Graceful {
        Graceful::Mark {
            timestamp: ts.into(),
            grace,
        }
    }

    #[test]
    fn grace_follows_kubernetes() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        // Unbound or terminated: at once, whatever is asked.
        assert_eq!(
            pod_graceful(&pod("", "Pending", Some(30)), None, now),
            Graceful::Now
        );
        assert_eq!(
            pod_graceful(&pod("", "Pending", None), Some(20), now),
            Graceful::Now
        );
        for phase in ["Succeeded", "Failed"] {
            assert_eq!(
                pod_graceful(&pod("wn1", phase, Some(30)), None, now),
                Graceful::Now
            );
        }
        // Bound and not terminated: the pod's own grace, or the request's.
        let bound = pod("wn1", "Running", Some(30));
        assert_eq!(
            pod_graceful(&bound, None, now),
            mark("2024-01-01T00:00:30Z", 30)
        );
        assert_eq!(
            pod_graceful(&pod("wn1", "Pending", None), None, now),
            mark("2024-01-01T00:00:30Z", 30)
        );
        assert_eq!(
            pod_graceful(&pod("wn1", "Running", Some(5)), None, now),
            mark("2024-01-01T00:00:05Z", 5)
        );
        assert_eq!(
            pod_graceful(&bound, Some(10), now),
            mark("2024-01-01T00:00:10Z", 10)
        );
        assert_eq!(pod_graceful(&bound, Some(0), now), Graceful::Now);
        assert_eq!(
            pod_graceful(&pod("wn1", "Running", Some(0)), None, now),
            Graceful::Now
        );
        // A negative grace counts as 1 s.
        assert_eq!(
            pod_graceful(&bound, Some(-1), now),
            mark("2024-01-01T00:00:01Z", 1)
        );
        // Already terminating (asked at 00:00:00 with 30 s): only shorter
        // graces count, from the first request's time.
        let t = terminating("2024-01-01T00:00:30Z", Some(30));
        let later = now + chrono::Duration::seconds(12);
        assert_eq!(pod_graceful(&t, None, later), Graceful::Pending);
        assert_eq!(pod_graceful(&t, Some(30), later), Graceful::Pending);
        assert_eq!(pod_graceful(&t, Some(60), later), Graceful::Pending);
        assert_eq!(
            pod_graceful(&t, Some(10), later),
            mark("2024-01-01T00:00:10Z", 10)
        );
        assert_eq!(
            pod_graceful(&t, Some(0), later),
            mark("2024-01-01T00:00:00Z", 0)
        );
        // Marked without grace (finalizers): at once.
        assert_eq!(
            pod_graceful(&terminating("2024-01-01T00:00:00Z", Some(0)), None, now),
            Graceful::Now
        );
        assert_eq!(
            pod_graceful(&terminating("2024-01-01T00:00:00Z", None), None, now),
            Graceful::Now
        );
    }

    fn obj(finalizers: &[&str], ts: &str, grace: Option<i64>) -> Object {
        let mut p = pod("wn1", "Running", Some(30));
        let m = p.metadata.as_mut().unwrap();
        m.finalizers = finalizers.iter().map(|s| s.to_string()).collect();
        m.deletion_timestamp = ts.into();
        m.deletion_grace_period_seconds = grace;
        Object::from_body(Body::Pod(p))
    }

    #[test]
    fn only_removing_the_last_finalizer_of_a_due_deletion_deletes() {
        let ts = "2024-01-01T00:00:00Z";
        assert!(completes_deletion(
            &obj(&["x"], ts, Some(0)),
            &obj(&[], ts, Some(0))
        ));
        // A pod in its grace period waits for its node's final delete.
        assert!(!completes_deletion(
            &obj(&["x"], ts, Some(30)),
            &obj(&[], ts, Some(30))
        ));
        // A status update of a terminating pod without finalizers is a
        // plain update.
        assert!(!completes_deletion(
            &obj(&[], ts, Some(30)),
            &obj(&[], ts, Some(30))
        ));
        assert!(!completes_deletion(
            &obj(&["x"], ts, Some(0)),
            &obj(&["x"], ts, Some(0))
        ));
        assert!(!completes_deletion(
            &obj(&["x"], "", None),
            &obj(&[], "", None)
        ));
    }
}

#[cfg(test)]
mod end_to_end {
    use super::*;
    use crate::controllers::daemonset::testing::start;
    use rkube_api::proto::{Container, NodeSpec, PodSpec, WatchEvent};

    fn pod_obj(name: &str, node: &str, finalizers: &[&str]) -> Object {
        Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: "busybox".into(),
                    ..Default::default()
                }],
                node_name: node.into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    fn node_obj(name: &str, cidr: &str) -> Object {
        Object::from_body(Body::Node(Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                pod_cidr: cidr.into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    fn meta(o: &Object) -> ObjectMeta {
        o.metadata().cloned().unwrap_or_default()
    }

    fn cidr_of(o: &Object) -> (String, Vec<String>) {
        match &o.kind {
            Some(Body::Node(n)) => {
                let s = n.spec.clone().unwrap_or_default();
                (s.pod_cidr, s.pod_cidrs)
            }
            _ => panic!("not a node"),
        }
    }

    async fn next_event(rx: &mut mpsc::Receiver<ApiResult<WatchEvent>>) -> WatchEvent {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a watch event")
            .expect("an open watch")
            .expect("no watch error")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bound_pods_are_deleted_gracefully() {
        let c = start().await;
        let h = &c.handlers;
        let created = h.create(pod_obj("web", "wn1", &[]), false).await.unwrap();
        let uid = meta(&created).uid;
        let mut watch = h
            .watch(WatchSpec {
                kind: "Pod".into(),
                namespace: "default".into(),
                label_selector: String::new(),
                field_selector: String::new(),
                resource_version: created.resource_version().into(),
                allow_bookmarks: false,
            })
            .await
            .unwrap();

        // The first delete only marks it: now + 30 s.
        let before = chrono::Utc::now();
        let marked = h.delete("Pod", "default", "web", "", None).await.unwrap();
        let m = meta(&marked);
        assert_eq!(m.deletion_grace_period_seconds, Some(30));
        let deadline = chrono::DateTime::parse_from_rfc3339(&m.deletion_timestamp).unwrap();
        let secs = (deadline.with_timezone(&chrono::Utc) - before).num_seconds();
        assert!((29..=30).contains(&secs), "{secs}");
        assert!(h.get("Pod", "default", "web", "").await.is_ok());
        let ev = next_event(&mut watch).await;
        assert_eq!(ev.r#type, "MODIFIED");
        assert_eq!(
            meta(ev.object.as_ref().unwrap()).deletion_timestamp,
            m.deletion_timestamp
        );

        // Status and spec updates keep the deletion.
        let mut st = h.get("Pod", "default", "web", "").await.unwrap();
        if let Some(Body::Pod(p)) = st.kind.as_mut() {
            p.status.get_or_insert_with(Default::default).phase = "Running".into();
            p.metadata.as_mut().unwrap().deletion_timestamp.clear();
        }
        let after = h.update(st, true, false).await.unwrap();
        assert_eq!(meta(&after).deletion_timestamp, m.deletion_timestamp);
        let mut up = after.clone();
        if let Some(md) = up.metadata_mut() {
            md.labels.insert("a".into(), "b".into());
            md.deletion_timestamp.clear();
            md.deletion_grace_period_seconds = None;
        }
        let after = h.update(up, false, false).await.unwrap();
        assert_eq!(meta(&after).deletion_timestamp, m.deletion_timestamp);
        assert_eq!(meta(&after).deletion_grace_period_seconds, Some(30));
        let after = h
            .patch(
                "Pod",
                "default",
                "web",
                "merge",
                r#"{"metadata":{"labels":{"c":"d"}}}"#,
                false,
            )
            .await
            .unwrap();
        assert_eq!(meta(&after).deletion_timestamp, m.deletion_timestamp);

        // A longer grace is ignored; a shorter one shortens it.
        let same = h
            .delete_with_grace("Pod", "default", "web", "", None, Some(60))
            .await
            .unwrap();
        assert_eq!(meta(&same).deletion_timestamp, m.deletion_timestamp);
        let shorter = h
            .delete_with_grace("Pod", "default", "web", "", None, Some(10))
            .await
            .unwrap();
        let sm = meta(&shorter);
        assert_eq!(sm.deletion_grace_period_seconds, Some(10));
        let new_deadline = chrono::DateTime::parse_from_rfc3339(&sm.deletion_timestamp).unwrap();
        assert_eq!((deadline - new_deadline).num_seconds(), 20);

        // The node's final delete: grace 0 with the uid.
        let wrong = h
            .delete_with_grace(
                "Pod",
                "default",
                "web",
                "",
                Some(Preconditions {
                    uid: "someone-else".into(),
                    resource_version: String::new(),
                }),
                Some(0),
            )
            .await;
        assert!(matches!(wrong, Err(ApiError::Conflict(_))), "{wrong:?}");
        h.delete_with_grace(
            "Pod",
            "default",
            "web",
            "",
            Some(Preconditions {
                uid: uid.clone(),
                resource_version: String::new(),
            }),
            Some(0),
        )
        .await
        .unwrap();
        assert!(matches!(
            h.get("Pod", "default", "web", "").await,
            Err(ApiError::NotFound(_))
        ));
        let mut types = Vec::new();
        loop {
            let ev = next_event(&mut watch).await;
            types.push(ev.r#type.clone());
            if ev.r#type == "DELETED" {
                break;
            }
        }
        assert!(
            types[..types.len() - 1].iter().all(|t| t == "MODIFIED"),
            "{types:?}"
        );

        // Unbound, terminated, or grace 0: at once.
        h.create(pod_obj("pending", "", &[]), false).await.unwrap();
        h.delete("Pod", "default", "pending", "", None)
            .await
            .unwrap();
        assert!(h.get("Pod", "default", "pending", "").await.is_err());
        let done = h.create(pod_obj("done", "wn1", &[]), false).await.unwrap();
        let mut done = done;
        if let Some(Body::Pod(p)) = done.kind.as_mut() {
            p.status.get_or_insert_with(Default::default).phase = "Succeeded".into();
        }
        h.update(done, true, false).await.unwrap();
        h.delete("Pod", "default", "done", "", None).await.unwrap();
        assert!(h.get("Pod", "default", "done", "").await.is_err());
        h.create(pod_obj("now", "wn1", &[]), false).await.unwrap();
        h.delete_with_grace("Pod", "default", "now", "", None, Some(0))
            .await
            .unwrap();
        assert!(h.get("Pod", "default", "now", "").await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finalizers_and_grace_together() {
        let c = start().await;
        let h = &c.handlers;
        h.create(pod_obj("held", "wn1", &["example.com/hold"]), false)
            .await
            .unwrap();
        let marked = h.delete("Pod", "default", "held", "", None).await.unwrap();
        assert_eq!(meta(&marked).deletion_grace_period_seconds, Some(30));
        // Removing the finalizer during the grace period does not delete it:
        // the node's final delete does.
        let mut up = marked.clone();
        up.metadata_mut().unwrap().finalizers.clear();
        h.update(up, false, false).await.unwrap();
        let still = h.get("Pod", "default", "held", "").await.unwrap();
        assert!(meta(&still).finalizers.is_empty());
        h.delete_with_grace("Pod", "default", "held", "", None, Some(0))
            .await
            .unwrap();
        assert!(h.get("Pod", "default", "held", "").await.is_err());

        // The final delete while a finalizer remains: grace 0, held until
        // the finalizer goes, which then completes the deletion.
        h.create(pod_obj("held2", "wn1", &["example.com/hold"]), false)
            .await
            .unwrap();
        h.delete("Pod", "default", "held2", "", None).await.unwrap();
        let zero = h
            .delete_with_grace("Pod", "default", "held2", "", None, Some(0))
            .await
            .unwrap();
        assert_eq!(meta(&zero).deletion_grace_period_seconds, Some(0));
        let mut up = zero.clone();
        up.metadata_mut().unwrap().finalizers.clear();
        h.update(up, false, false).await.unwrap();
        assert!(h.get("Pod", "default", "held2", "").await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_get_distinct_pod_cidrs() {
        let c = start().await;
        let h = &c.handlers;
        // Concurrent creates never share a range.
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.create(node_obj(&format!("n{i}"), ""), false).await })
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for t in tasks {
            let n = t.await.unwrap().unwrap();
            let (cidr, cidrs) = cidr_of(&n);
            assert_eq!(cidrs, vec![cidr.clone()]);
            assert!(seen.insert(cidr));
        }
        // (Under contention a retry may take one of the few lowest free
        // ranges rather than the lowest.)
        assert!(seen.iter().all(|c| c.starts_with("10.244.")), "{seen:?}");
        for i in 0..12 {
            h.delete("Node", "", &format!("n{i}"), "", None)
                .await
                .unwrap();
        }
        // One at a time: the lowest free range each.
        for i in 0..12 {
            let n = h
                .create(node_obj(&format!("n{i}"), ""), false)
                .await
                .unwrap();
            assert_eq!(cidr_of(&n).0, format!("10.244.{i}.0/24"));
        }

        // A node with its own range keeps it and claims it; a duplicate is
        // accepted (never refused); allocation skips claimed ranges.
        let own = h
            .create(node_obj("own", "10.244.12.0/24"), false)
            .await
            .unwrap();
        assert_eq!(cidr_of(&own).0, "10.244.12.0/24");
        assert_eq!(cidr_of(&own).1, vec!["10.244.12.0/24".to_string()]);
        let dup = h
            .create(node_obj("dup", "10.244.12.0/24"), false)
            .await
            .unwrap();
        assert_eq!(cidr_of(&dup).0, "10.244.12.0/24");
        let next = h.create(node_obj("next", ""), false).await.unwrap();
        assert_eq!(cidr_of(&next).0, "10.244.13.0/24");
        let outside = h
            .create(node_obj("outside", "192.168.7.0/24"), false)
            .await
            .unwrap();
        assert_eq!(cidr_of(&outside).0, "192.168.7.0/24");

        // Delete + create reuses the lowest free range.
        h.delete("Node", "", "n3", "", None).await.unwrap();
        let again = h.create(node_obj("n3b", ""), false).await.unwrap();
        assert_eq!(cidr_of(&again).0, "10.244.3.0/24");
        // The owner of a shared range goes: the duplicate inherits it, so it
        // is not handed out again.
        h.delete("Node", "", "own", "", None).await.unwrap();
        let key = h.pod_cidrs().marker_key(12);
        let marker = h.store().state().get(&key).map(|s| (*s.object).clone());
        assert_eq!(
            marker.as_ref().map(node_ipam::marker_owner),
            Some(meta(&dup).uid.as_str())
        );
        let after = h.create(node_obj("after", ""), false).await.unwrap();
        assert_eq!(cidr_of(&after).0, "10.244.14.0/24");
        h.delete("Node", "", "dup", "", None).await.unwrap();
        assert!(h.store().state().get(&key).is_none(), "released");
        let reuse = h.create(node_obj("reuse", ""), false).await.unwrap();
        assert_eq!(cidr_of(&reuse).0, "10.244.12.0/24");

        // Immutable once set: a change is refused naming spec.podCIDR; an
        // update that leaves it out keeps it.
        let mut change = reuse.clone();
        if let Some(Body::Node(n)) = change.kind.as_mut() {
            let s = n.spec.as_mut().unwrap();
            s.pod_cidr = "10.244.99.0/24".into();
            s.pod_cidrs = vec![s.pod_cidr.clone()];
        }
        let e = h.update(change, false, false).await.unwrap_err();
        assert!(
            matches!(&e, ApiError::Invalid(m) if m.contains("spec.podCIDR")),
            "{e:?}"
        );
        let e = h
            .patch(
                "Node",
                "",
                "reuse",
                "merge",
                r#"{"spec":{"podCIDR":"10.244.98.0/24"}}"#,
                false,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ApiError::Invalid(m) if m.contains("spec.podCIDR")),
            "{e:?}"
        );
        let mut omit = reuse.clone();
        if let Some(Body::Node(n)) = omit.kind.as_mut() {
            let s = n.spec.as_mut().unwrap();
            s.pod_cidr.clear();
            s.pod_cidrs.clear();
            s.unschedulable = true;
        }
        let kept = h.update(omit, false, false).await.unwrap();
        assert_eq!(cidr_of(&kept).0, "10.244.12.0/24");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exhaustion_names_the_cluster_cidr() {
        let c = start().await;
        let h = c
            .handlers
            .clone()
            .with_pod_cidrs(CidrConfig::new("10.9.0.0/24", 26).unwrap());
        for i in 0..4 {
            let n = h
                .create(node_obj(&format!("n{i}"), ""), false)
                .await
                .unwrap();
            assert_eq!(cidr_of(&n).0, format!("10.9.0.{}/26", i * 64));
        }
        let e = h.create(node_obj("n4", ""), false).await.unwrap_err();
        assert!(
            matches!(&e, ApiError::Exhausted(m) if m.contains("10.9.0.0/24")),
            "{e:?}"
        );
        assert!(h.get("Node", "", "n4", "").await.is_err());
        // A node that brings its own range is still accepted.
        h.create(node_obj("n5", "10.9.0.0/26"), false)
            .await
            .unwrap();
        h.delete("Node", "", "n2", "", None).await.unwrap();
        let n = h.create(node_obj("n6", ""), false).await.unwrap();
        assert_eq!(cidr_of(&n).0, "10.9.0.128/26");
    }
}
