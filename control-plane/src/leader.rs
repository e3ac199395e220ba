//! Leader-only work: started when this replica becomes the Raft leader and
//! stopped when it stops being one, so nothing runs twice in the cluster.
//!
//! Tasks: bootstrap (the namespaces every cluster has), then the scheduler
//! and every controller (`controllers::run_all`).

use crate::controllers::{self, ControllerConfig};
use crate::handlers::{ApiError, Handlers};
use rkube_api::proto::{object::Kind as Body, Namespace, ObjectMeta};
use rkube_api::Object;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Starts one piece of leader-only work; it runs until aborted.
pub type LeaderTask =
    Arc<dyn Fn(Handlers) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Runs `tasks` whenever this replica leads.
pub async fn run(handlers: Handlers, tasks: Vec<LeaderTask>) {
    let mut leader = handlers.store().leader();
    let mut running: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let is_leader = leader.borrow_and_update().is_leader;
        if is_leader && running.is_empty() {
            tracing::info!(
                tasks = tasks.len(),
                "became leader: starting leader-only work"
            );
            running = tasks
                .iter()
                .map(|t| tokio::spawn(t(handlers.clone())))
                .collect();
        } else if !is_leader && !running.is_empty() {
            tracing::info!("lost leadership: stopping leader-only work");
            for h in running.drain(..) {
                h.abort();
            }
        }
        if leader.changed().await.is_err() {
            return;
        }
    }
}

/// The built-in tasks: bootstrap, then the scheduler and controllers.
pub fn default_tasks(cfg: ControllerConfig) -> Vec<LeaderTask> {
    vec![
        Arc::new(|h| Box::pin(bootstrap_namespaces(h))),
        Arc::new(move |h| Box::pin(controllers::run_all(h, cfg.clone()))),
    ]
}

/// Creates the namespaces every cluster has, if missing.
async fn bootstrap_namespaces(h: Handlers) {
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        loop {
            let ns = Object::from_body(Body::Namespace(Namespace {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }));
            match h.create(ns, false).await {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => break,
                Err(e) => {
                    tracing::debug!(namespace = name, error = %e, "bootstrap retry");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
