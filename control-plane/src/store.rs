//! The store as the API sees it: transactions that return once applied,
//! linearizable reads, the local state machine, and change notifications.

use crate::raft_node::{Command, CommandSender, LeaderInfo, RaftStatus, Shared, StoreError};
use crate::state_machine::StateMachine;
use prost::Message as _;
use rkube_api::proto::internal::{Proposal, Txn, TxnResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

#[derive(Clone)]
pub struct Store {
    id: u64,
    commands: CommandSender,
    shared: Arc<Shared>,
    next_request: Arc<AtomicU64>,
    /// How long a write may wait for its entry to apply.
    pub write_timeout: Duration,
    /// How long a linearizable read may wait for a leader to confirm.
    pub read_timeout: Duration,
}

impl Store {
    pub fn new(id: u64, commands: CommandSender, shared: Arc<Shared>) -> Store {
        Store {
            id,
            commands,
            shared,
            // Unique across restarts of this replica, so an entry proposed by
            // an earlier incarnation is never mistaken for a current request.
            next_request: Arc::new(AtomicU64::new(rand::random::<u64>() >> 1)),
            write_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Proposes a transaction and waits until it is applied here.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let proposal = Proposal {
            origin: self.id,
            request_id,
            txn: Some(txn),
        };
        let data = proposal.encode_to_vec();
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Propose {
                request_id,
                data,
                txn: proposal.txn.unwrap_or_default(),
                reply: tx,
            })
            .map_err(|_| StoreError::Unavailable("replica is shutting down".into()))?;
        match tokio::time::timeout(self.write_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(StoreError::OutcomeUnknown(
                "the write was dropped in flight; its outcome is unknown".into(),
            )),
            Err(_) => Err(StoreError::OutcomeUnknown(format!(
                "the write was not applied within {:?}; its outcome is unknown",
                self.write_timeout
            ))),
        }
    }

    /// Waits until this replica has applied everything committed before the
    /// call (Raft ReadIndex), so a read that follows is linearizable.
    pub async fn linearize(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.read_timeout;
        let mut last_err = StoreError::Unavailable("no leader confirmed the read".into());
        while Instant::now() < deadline {
            let (tx, rx) = oneshot::channel();
            self.commands
                .send(Command::ReadIndex { reply: tx })
                .map_err(|_| StoreError::Unavailable("replica is shutting down".into()))?;
            match tokio::time::timeout(Duration::from_millis(1000), rx).await {
                Ok(Ok(Ok(index))) => return self.wait_applied(index, deadline).await,
                Ok(Ok(Err(e))) => {
                    last_err = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Dropped (no leader could serve it) or slow: ask again.
                Ok(Err(_)) | Err(_) => {}
            }
        }
        Err(match last_err {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!(
                "could not confirm a linearizable read within {:?}: {m}",
                self.read_timeout
            )),
            e => e,
        })
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), StoreError> {
        let mut rx = self.shared.applied.subscribe();
        let wait = deadline.saturating_duration_since(Instant::now());
        let reached =
            tokio::time::timeout(wait, async { rx.wait_for(|a| *a >= index).await.is_ok() }).await;
        match reached {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Unavailable(format!(
                "this replica has not caught up to index {index}; retry"
            ))),
        }
    }

    /// The local state machine, for reads (after `linearize` if they must be
    /// linearizable). Hold the guard briefly.
    pub fn state(&self) -> parking_lot::RwLockReadGuard<'_, StateMachine> {
        self.shared.sm.read()
    }

    pub fn revision(&self) -> watch::Receiver<i64> {
        self.shared.revision.subscribe()
    }

    pub fn leader(&self) -> watch::Receiver<LeaderInfo> {
        self.shared.leader.subscribe()
    }

    /// Proposes a membership change (leader only) and waits until it is
    /// applied here; answers the log index it took effect at.
    pub async fn conf_change(
        &self,
        change: raft::eraftpb::ConfChangeV2,
    ) -> Result<u64, StoreError> {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::ConfChange {
                request_id,
                change,
                reply: tx,
            })
            .map_err(|_| StoreError::Unavailable("replica is shutting down".into()))?;
        match tokio::time::timeout(self.write_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(StoreError::OutcomeUnknown(
                "the membership change was dropped in flight; its outcome is unknown".into(),
            )),
            Err(_) => Err(StoreError::OutcomeUnknown(format!(
                "the membership change was not applied within {:?}; its outcome is unknown",
                self.write_timeout
            ))),
        }
    }

    /// Asks raft to hand leadership to `to` (a voter); watch `leader()` for
    /// the outcome.
    pub fn transfer_leader(&self, to: u64) -> Result<(), StoreError> {
        self.commands
            .send(Command::TransferLeader(to))
            .map_err(|_| StoreError::Unavailable("replica is shutting down".into()))
    }

    pub async fn status(&self) -> Result<RaftStatus, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Status(tx))
            .map_err(|_| StoreError::Unavailable("replica is shutting down".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("replica is shutting down".into()))
    }
}
