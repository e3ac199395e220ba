//! List-then-watch loops that keep `ClusterRecords` current, one per kind.
//!
//! Each loop lists every object of its kind, replaces what the index holds
//! for that kind, then watches from the list's resourceVersion, applying
//! every event as it arrives. A broken stream resumes from the last revision
//! seen (on whichever replica the failover client reaches); `OutOfRange`
//! ("too old", the history moved past us) lists again. Failures back off
//! up to a few seconds; the loops run until the process ends.

use crate::records::ClusterRecords;
use parking_lot::Mutex;
use rkube_api::client::Client;
use rkube_api::kinds::Kind;
use rkube_api::proto::{ListRequest, WatchRequest};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts one watch loop per watched kind.
pub fn spawn_all(client: Client, records: Arc<Mutex<ClusterRecords>>) {
    for kind in crate::records::WATCHED {
        tokio::spawn(run(client.clone(), kind, records.clone()));
    }
}

/// Why a watch stream stopped.
enum Stop {
    /// Resume from the last revision.
    Broken,
    /// The revision is gone from history: list again.
    TooOld,
}

pub async fn run(client: Client, kind: Kind, records: Arc<Mutex<ClusterRecords>>) {
    let mut backoff = MIN_BACKOFF;
    let mut revision: Option<String> = None;
    loop {
        let rv = match revision.take() {
            Some(rv) => rv,
            None => match list(&client, kind, &records).await {
                Ok(rv) => rv,
                Err(e) => {
                    tracing::warn!(%kind, error = %e, "list failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let (stop, last) = watch(&client, kind, &rv, &records, &mut backoff).await;
        revision = match stop {
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

/// Lists every object of `kind` into the records; returns the revision.
async fn list(
    client: &Client,
    kind: Kind,
    records: &Mutex<ClusterRecords>,
) -> Result<String, tonic::Status> {
    let list = client
        .list(ListRequest {
            kind: kind.name().into(),
            ..Default::default()
        })
        .await?;
    tracing::info!(%kind, count = list.items.len(), revision = %list.resource_version, "listed");
    records.lock().replace(kind, &list.items);
    Ok(list.resource_version)
}

/// Follows one watch stream from `rv`; returns why it stopped and the last
/// revision applied.
async fn watch(
    client: &Client,
    kind: Kind,
    rv: &str,
    records: &Mutex<ClusterRecords>,
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
                if let Some(obj) = &ev.object {
                    match ev.r#type.as_str() {
                        "ADDED" | "MODIFIED" => records.lock().upsert(obj),
                        "DELETED" => records.lock().remove(obj),
                        _ => {}
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
