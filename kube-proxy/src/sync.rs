//! The loop that feeds watch updates through the cache to the proxier.
//!
//! Nothing is served until both Services and Endpoints have been listed
//! (a Service seen before its Endpoints would refuse traffic it should
//! carry); then everything is synced once and every later update syncs the
//! Services it touched. Updates already queued are applied together, so a
//! burst costs one sync per Service, and each update takes effect before
//! the next is read: an Endpoints change reaches new connections within
//! one watch event. A tick retries listeners that could not bind.

use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::proxier::Proxier;
use crate::watch;
use rkube_api::client::Client;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often listeners that failed to bind are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    mut proxier: Proxier,
    metrics: Arc<Metrics>,
    mut announced: tokio::sync::watch::Receiver<BTreeSet<Ipv4Addr>>,
    shutdown: CancellationToken,
) {
    let mut announcer_alive = true;
    let (tx, mut rx) = mpsc::unbounded_channel();
    watch::spawn_all(client, tx);
    let mut cache = Cache::default();
    let mut synced_once = false;
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            update = rx.recv() => {
                let Some(update) = update else { break };
                let mut touched = cache.apply(update);
                while let Ok(more) = rx.try_recv() {
                    touched.extend(cache.apply(more));
                }
                if !cache.synced() {
                    continue;
                }
                if !synced_once {
                    proxier.sync_all(&cache).await;
                    synced_once = true;
                    tracing::info!(services = cache.service_keys().len(), "initial sync done");
                } else {
                    for key in touched {
                        proxier
                            .sync_service(&key, cache.service(&key), cache.endpoints(&key))
                            .await;
                    }
                }
                metrics.synced();
            }
            r = announced.changed(), if announcer_alive => match r {
                Ok(()) => {
                    let set = announced.borrow_and_update().clone();
                    proxier.set_announced(set);
                }
                Err(_) => announcer_alive = false,
            },
            _ = retry.tick() => proxier.retry_failed().await,
            _ = shutdown.cancelled() => break,
        }
    }
}
