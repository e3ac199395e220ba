//! Informers: list, then watch, into a local cache of one kind, and tell
//! subscribers which objects changed.
//!
//! Controllers read only from informer caches and write through the API
//! handlers. Everything is level-triggered: a subscriber that falls behind
//! (broadcast lag) is told to resync, and every controller also resyncs
//! periodically, so a missed event is repaired.

use crate::handlers::{ApiError, Handlers, WatchSpec};
use rkube_api::kinds::Kind;
use rkube_api::Object;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

/// `namespace/name`, or `name` for cluster-scoped objects: how caches and
/// work queues name objects.
pub fn object_key(o: &Object) -> String {
    key_of(o.namespace(), o.name())
}

pub fn key_of(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// Splits a key back into (namespace, name).
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

#[derive(Clone, Debug)]
pub enum Notice {
    /// An object was added, changed or deleted. `old` is the cached state
    /// before (for deletions, `new` is the last state).
    Changed {
        kind: Kind,
        old: Option<Arc<Object>>,
        new: Arc<Object>,
        deleted: bool,
    },
    /// The cache was rebuilt (relist) or the subscriber lagged: reconcile
    /// everything.
    Resync(Kind),
}

pub struct Informer {
    kind: Kind,
    cache: parking_lot::RwLock<BTreeMap<String, Arc<Object>>>,
    synced: watch::Sender<bool>,
    notices: broadcast::Sender<Notice>,
}

impl Informer {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Object>> {
        self.cache.read().get(&key_of(namespace, name)).cloned()
    }

    pub fn get_key(&self, key: &str) -> Option<Arc<Object>> {
        self.cache.read().get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Object>> {
        self.cache.read().values().cloned().collect()
    }

    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<Object>> {
        let prefix = format!("{namespace}/");
        self.cache
            .read()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.cache.read().keys().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    async fn run(self: Arc<Self>, handlers: Handlers) {
        loop {
            match self.list_and_watch(&handlers).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(kind = %self.kind, error = %e, "informer relisting");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn list_and_watch(&self, handlers: &Handlers) -> Result<(), ApiError> {
        let (items, rev) = handlers.list(self.kind.name(), "", "", "", "").await?;
        {
            let mut cache = self.cache.write();
            cache.clear();
            for o in items {
                cache.insert(object_key(&o), Arc::new(o));
            }
        }
        self.synced.send_replace(true);
        let _ = self.notices.send(Notice::Resync(self.kind));
        let mut rx = handlers
            .watch(WatchSpec {
                kind: self.kind.name().into(),
                namespace: String::new(),
                label_selector: String::new(),
                field_selector: String::new(),
                resource_version: rev.to_string(),
                allow_bookmarks: false,
            })
            .await?;
        while let Some(ev) = rx.recv().await {
            let ev = ev?;
            let Some(obj) = ev.object else { continue };
            let key = object_key(&obj);
            let new = Arc::new(obj);
            let deleted = ev.r#type == "DELETED";
            let old = {
                let mut cache = self.cache.write();
                if deleted {
                    cache.remove(&key)
                } else {
                    cache.insert(key, new.clone())
                }
            };
            let _ = self.notices.send(Notice::Changed {
                kind: self.kind,
                old,
                new,
                deleted,
            });
        }
        Err(ApiError::Unavailable("watch ended".into()))
    }
}

/// One informer per kind, shared by every controller of a leader term.
#[derive(Clone)]
pub struct Informers {
    handlers: Handlers,
    by_kind: Arc<parking_lot::Mutex<HashMap<Kind, Arc<Informer>>>>,
    tasks: Arc<parking_lot::Mutex<Option<JoinSet<()>>>>,
}

impl Informers {
    pub fn new(handlers: Handlers) -> Informers {
        Informers {
            handlers,
            by_kind: Default::default(),
            tasks: Arc::new(parking_lot::Mutex::new(Some(JoinSet::new()))),
        }
    }

    pub fn handlers(&self) -> &Handlers {
        &self.handlers
    }

    /// The informer of `kind`, started on first use.
    pub fn get(&self, kind: Kind) -> Arc<Informer> {
        let mut map = self.by_kind.lock();
        if let Some(i) = map.get(&kind) {
            return i.clone();
        }
        let inf = Arc::new(Informer {
            kind,
            cache: Default::default(),
            synced: watch::channel(false).0,
            notices: broadcast::channel(16 * 1024).0,
        });
        if let Some(set) = self.tasks.lock().as_mut() {
            set.spawn(inf.clone().run(self.handlers.clone()));
        }
        map.insert(kind, inf.clone());
        inf
    }

    /// Spawns a task that lives as long as these informers (it is aborted
    /// with them when leadership is lost).
    pub fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(set) = self.tasks.lock().as_mut() {
            set.spawn(f);
        }
    }

    /// Runs until aborted; dropping this future aborts every informer and
    /// task spawned through these informers.
    pub async fn run_forever(&self) {
        let _guard = AbortOnDrop(self.tasks.clone());
        std::future::pending::<()>().await
    }
}

struct AbortOnDrop(Arc<parking_lot::Mutex<Option<JoinSet<()>>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(mut s) = self.0.lock().take() {
            s.abort_all();
        }
    }
}
