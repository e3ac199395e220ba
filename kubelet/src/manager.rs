//! Watches the pods bound to this node and runs one worker per pod; routes
//! the runtime's container events to the worker of the pod they concern;
//! finds sandboxes whose pod no longer exists and removes them.

use crate::convert::PodId;
use crate::worker::Worker;
use crate::Ctx;
use rkube_api::proto::{object::Kind as Body, ListRequest, Pod, WatchRequest};
use rkube_runtime::proto as rt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_stream::StreamExt;

struct Handle {
    tx: watch::Sender<Option<Pod>>,
    wake: Arc<Notify>,
}

#[derive(Clone)]
pub struct Manager {
    ctx: Arc<Ctx>,
    workers: Arc<Mutex<HashMap<String, Handle>>>,
}

impl Manager {
    pub fn new(ctx: Arc<Ctx>) -> Manager {
        Manager {
            ctx,
            workers: Default::default(),
        }
    }

    /// How many pods have a worker (running or being torn down).
    pub fn active(&self) -> usize {
        self.workers.lock().unwrap().len()
    }

    fn dispatch(&self, uid: &str, pod: Option<Pod>, id_if_new: Option<PodId>) {
        let mut workers = self.workers.lock().unwrap();
        if let Some(h) = workers.get(uid) {
            h.tx.send_replace(pod);
            return;
        }
        let Some(id) = id_if_new.or_else(|| pod.as_ref().map(PodId::of)) else {
            return;
        };
        let (tx, rx) = watch::channel(pod);
        let wake = Arc::new(Notify::new());
        let worker = Worker::new(self.ctx.clone(), id, rx, wake.clone());
        workers.insert(uid.to_string(), Handle { tx, wake });
        let this = self.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            worker.run().await;
            this.workers.lock().unwrap().remove(&uid);
        });
    }

    fn wake(&self, uid: &str) {
        if let Some(h) = self.workers.lock().unwrap().get(uid) {
            h.wake.notify_one();
        }
    }

    /// Runs forever.
    pub async fn run(self) {
        tokio::spawn(self.clone().runtime_events());
        let mut first = true;
        loop {
            match self.watch_pods(&mut first).await {
                Ok(()) => tracing::debug!("pod watch ended; relisting"),
                Err(e) => tracing::warn!(error = %e, "pod watch failed; relisting"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn watch_pods(&self, first: &mut bool) -> anyhow::Result<()> {
        let selector = format!("spec.nodeName={}", self.ctx.node_name);
        let list = self
            .ctx
            .client
            .list(ListRequest {
                kind: "Pod".into(),
                field_selector: selector.clone(),
                ..Default::default()
            })
            .await?;
        let mut seen = HashSet::new();
        for o in list.items {
            if let Some(Body::Pod(p)) = o.kind {
                let uid = p
                    .metadata
                    .as_ref()
                    .map(|m| m.uid.clone())
                    .unwrap_or_default();
                seen.insert(uid.clone());
                self.dispatch(&uid, Some(p), None);
            }
        }
        // Pods deleted while we were not watching.
        let gone: Vec<String> = self
            .workers
            .lock()
            .unwrap()
            .keys()
            .filter(|u| !seen.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            self.dispatch(&uid, None, None);
        }
        if *first {
            *first = false;
            self.remove_orphans(&seen).await;
        }
        let mut stream = self
            .ctx
            .client
            .watch(WatchRequest {
                kind: "Pod".into(),
                field_selector: selector,
                resource_version: list.resource_version,
                ..Default::default()
            })
            .await?;
        while let Some(ev) = stream.next().await {
            let ev = ev?;
            let Some(Body::Pod(p)) = ev.object.and_then(|o| o.kind) else {
                continue;
            };
            let uid = p
                .metadata
                .as_ref()
                .map(|m| m.uid.clone())
                .unwrap_or_default();
            if ev.r#type == "DELETED" {
                self.dispatch(&uid, None, None);
            } else {
                self.dispatch(&uid, Some(p), None);
            }
        }
        Ok(())
    }

    /// Sandboxes labelled as ours whose pod is not bound here any more
    /// (deleted while the kubelet was down): torn down by a worker with no
    /// pod.
    async fn remove_orphans(&self, known: &HashSet<String>) {
        let list = match self
            .ctx
            .runtime
            .clone()
            .list_pod_sandbox(rt::ListPodSandboxRequest { filter: None })
            .await
        {
            Ok(l) => l.into_inner().items,
            Err(e) => {
                tracing::warn!(error = %e, "listing sandboxes for orphans");
                return;
            }
        };
        for s in list {
            let Some(uid) = s.labels.get(crate::labels::POD_UID).cloned() else {
                continue;
            };
            if known.contains(&uid) || self.workers.lock().unwrap().contains_key(&uid) {
                continue;
            }
            let id = PodId {
                uid: uid.clone(),
                name: s
                    .labels
                    .get(crate::labels::POD_NAME)
                    .cloned()
                    .unwrap_or_default(),
                namespace: s
                    .labels
                    .get(crate::labels::POD_NAMESPACE)
                    .cloned()
                    .unwrap_or_default(),
            };
            tracing::info!(pod = %id.full_name(), %uid, "removing the sandbox of a pod that no longer exists");
            self.dispatch(&uid, None, Some(id));
        }
    }

    /// Wakes the worker of the pod a container event concerns.
    async fn runtime_events(self) {
        loop {
            let stream = self
                .ctx
                .runtime
                .clone()
                .get_container_events(rt::GetEventsRequest {})
                .await;
            match stream {
                Ok(s) => {
                    let mut s = s.into_inner();
                    while let Some(Ok(ev)) = s.next().await {
                        let owner = self
                            .ctx
                            .sandbox_owner
                            .lock()
                            .unwrap()
                            .get(&ev.pod_sandbox_id)
                            .cloned();
                        match owner {
                            Some(uid) => self.wake(&uid),
                            None => {
                                // A sandbox we have not mapped yet: wake all.
                                let uids: Vec<String> =
                                    self.workers.lock().unwrap().keys().cloned().collect();
                                for u in uids {
                                    self.wake(&u);
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "container events unavailable"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
