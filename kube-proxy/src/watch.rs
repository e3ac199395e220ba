//! List-then-watch loops for Services and Endpoints, feeding [`Update`]s to
//! the sync loop.
//!
//! Each loop lists its kind, sends the whole list, then watches from the
//! list's resourceVersion and sends every change. A broken stream resumes
//! from the last revision seen (the failover client picks a replica that
//! answers); `OutOfRange` ("too old": the history moved past that revision)
//! lists again. Failures back off up to a few seconds. A loop ends only
//! when the sync loop is gone.

use crate::cache::Update;
use rkube_api::client::Client;
use rkube_api::kinds::Kind;
use rkube_api::proto::{ListRequest, WatchRequest};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tonic::Code;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The kinds the proxy follows.
pub const WATCHED: [Kind; 2] = [Kind::Service, Kind::Endpoints];

/// Starts one loop per watched kind.
pub fn spawn_all(client: Client, tx: UnboundedSender<Update>) {
    for kind in WATCHED {
        tokio::spawn(run(client.clone(), kind, tx.clone()));
    }
}

/// Why a watch stream stopped.
enum Stop {
    /// Resume from the last revision.
    Broken,
    /// The revision is gone from history: list again.
    TooOld,
    /// Nobody listens to updates any more.
    Closed,
}

pub async fn run(client: Client, kind: Kind, tx: UnboundedSender<Update>) {
    let mut backoff = MIN_BACKOFF;
    let mut revision: Option<String> = None;
    loop {
        let rv = match revision.take() {
            Some(rv) => rv,
            None => match list(&client, kind, &tx).await {
                Ok(Some(rv)) => rv,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(%kind, error = %e, "list failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let (stop, last) = watch(&client, kind, &rv, &tx, &mut backoff).await;
        revision = match stop {
            Stop::Closed => return,
            Stop::TooOld => {
                tracing::info!(%kind, revision = %last, "watch revision too old; listing again");
                None
            }
            Stop::Broken => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                Some(last)
            }
        };
    }
}

/// Lists every object of `kind` and sends them; returns the revision to
/// watch from (`None` when the receiver is gone).
async fn list(
    client: &Client,
    kind: Kind,
    tx: &UnboundedSender<Update>,
) -> Result<Option<String>, tonic::Status> {
    let list = client
        .list(ListRequest {
            kind: kind.name().into(),
            ..Default::default()
        })
        .await?;
    tracing::info!(%kind, count = list.items.len(), revision = %list.resource_version, "listed");
    if tx.send(Update::Listed(kind, list.items)).is_err() {
        return Ok(None);
    }
    Ok(Some(list.resource_version))
}

/// Follows one watch stream from `rv`; returns why it stopped and the last
/// revision sent on.
async fn watch(
    client: &Client,
    kind: Kind,
    rv: &str,
    tx: &UnboundedSender<Update>,
    backoff: &mut Duration,
) -> (Stop, String) {
    let mut last = rv.to_string();
    let req = WatchRequest {
        kind: kind.name().into(),
        resource_version: rv.to_string(),
        allow_bookmarks: true,
        ..Default::default()
    };
    let mut stream = match client.watch(req).await {
        Ok(s) => s,
        Err(s) if s.code() == Code::OutOfRange => return (Stop::TooOld, last),
        Err(s) => {
            tracing::warn!(%kind, error = %s, "watch failed; retrying");
            return (Stop::Broken, last);
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(ev)) => {
                *backoff = MIN_BACKOFF;
                let update = match (ev.r#type.as_str(), ev.object) {
                    ("ADDED" | "MODIFIED", Some(obj)) => Some(Update::Upsert(obj)),
                    ("DELETED", Some(obj)) => Some(Update::Deleted(obj)),
                    _ => None,
                };
                if let Some(u) = update {
                    if tx.send(u).is_err() {
                        return (Stop::Closed, last);
                    }
                }
                if !ev.resource_version.is_empty() {
                    last = ev.resource_version;
                }
            }
            Ok(None) => {
                tracing::info!(%kind, revision = %last, "watch ended; resuming");
                return (Stop::Broken, last);
            }
            Err(s) if s.code() == Code::OutOfRange => return (Stop::TooOld, last),
            Err(s) => {
                tracing::warn!(%kind, revision = %last, error = %s, "watch broke; resuming");
                return (Stop::Broken, last);
            }
        }
    }
}
