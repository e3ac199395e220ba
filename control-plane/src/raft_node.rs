//! The Raft driver: one thread that owns the raft-rs `RawNode`, the disk log
//! and the right to apply to the state machine.
//!
//! Its loop, top to bottom: take commands (proposals, reads, peer messages)
//! until the next tick; tick; then handle `Ready`: send what may go before
//! persistence, install a snapshot, apply committed entries, append and fsync
//! new entries and the HardState, send what had to wait for the fsync, answer
//! reads, advance. Nothing is acknowledged before it is on disk on a quorum.

use crate::disk::{stage_snapshot, DiskLog, RaftStorage, StagedSnapshot};
use crate::logging::slog_to_tracing;
use crate::state_machine::StateMachine;
use crate::transport::Transport;
use anyhow::{Context, Result};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, EntryType, Message, MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use rkube_api::proto::internal::{MembershipContext, Proposal, ProposalHeader, Txn, TxnResult};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Nothing was done; the caller may retry here or elsewhere.
    #[error("{0}")]
    Unavailable(String),
    /// A write was proposed but its fate is unknown.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// Refused as asked; nothing was done (a membership change while
    /// another is in progress, or one that makes no sense).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Only the leader does this; nothing was done. `0`: none known.
    #[error("replica is not the leader (the leader is replica {0})")]
    NotLeader(u64),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Who leads, as this replica sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaderInfo {
    pub leader_id: u64,
    pub term: u64,
    pub is_leader: bool,
}

/// A replica's view of the group, for the cluster-status call.
#[derive(Clone, Debug, Default)]
pub struct RaftStatus {
    pub id: u64,
    pub leader_id: u64,
    pub term: u64,
    pub applied: u64,
    pub commit: u64,
    pub snapshot_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    /// For a leader: which peers answer (matched index advancing).
    pub peers_active: HashMap<u64, bool>,
    /// For a leader: each member's highest index known to be in its log.
    pub matched: HashMap<u64, u64>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// A configuration change is proposed and not yet applied.
    pub pending_conf: bool,
    /// Every member's address (learners included).
    pub members: BTreeMap<u64, String>,
}

pub enum Command {
    Propose {
        request_id: u64,
        /// The encoded `Proposal`.
        data: Vec<u8>,
        /// Its transaction, kept until the entry applies here so it need not
        /// be decoded again.
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResult, StoreError>>,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Step(Box<Message>),
    Unreachable(u64),
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    Status(oneshot::Sender<RaftStatus>),
    /// A membership change (leader only); answered with the index it took
    /// effect at, once applied here.
    ConfChange {
        request_id: u64,
        change: ConfChangeV2,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Hand leadership to this voter.
    TransferLeader(u64),
    /// A peer says this replica was removed from the cluster: stop.
    Removed(String),
    Shutdown,
}

/// What the driver shares with the async side.
pub struct Shared {
    pub sm: parking_lot::RwLock<StateMachine>,
    pub applied: watch::Sender<u64>,
    pub revision: watch::Sender<i64>,
    pub leader: watch::Sender<LeaderInfo>,
    /// Removed replica ids and the index of each removal (the peer service
    /// refuses their messages).
    pub removed: Arc<parking_lot::RwLock<BTreeMap<u64, u64>>>,
}

#[derive(Clone, Debug)]
pub struct RaftConfig {
    pub id: u64,
    pub voters: Vec<u64>,
    /// Every initial member's address (`--peers`): the membership until the
    /// first configuration change records its own.
    pub peers: Vec<(u64, String)>,
    /// Joining an existing cluster: a new data directory starts with no
    /// configuration and waits for the leader's snapshot.
    pub join: bool,
    pub data_dir: PathBuf,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Take a snapshot after this many applied entries.
    pub snapshot_interval: u64,
    /// Entries kept in the log behind a snapshot for slow followers.
    pub snapshot_keep: u64,
    pub history_limit: usize,
}

/// Someone waiting for a ReadIndex answer: the index to wait for.
type ReadWaiter = oneshot::Sender<Result<u64, StoreError>>;

struct Driver {
    id: u64,
    node: RawNode<RaftStorage>,
    log: DiskLog,
    shared: Arc<Shared>,
    transport: Transport,
    cfg: RaftConfig,
    pending: HashMap<u64, (oneshot::Sender<Result<TxnResult, StoreError>>, Txn)>,
    pending_conf: HashMap<u64, oneshot::Sender<Result<u64, StoreError>>>,
    /// A configuration change was applied: snapshot (and compact) now, so
    /// that a joining replica is always sent a snapshot that includes it.
    snapshot_now: bool,
    reads: HashMap<Vec<u8>, (Instant, Vec<ReadWaiter>)>,
    new_reads: Vec<ReadWaiter>,
    read_seq: u64,
    applied: u64,
    last_snapshot: u64,
    /// A snapshot being encoded and written on its own thread.
    snapshotting: Option<Receiver<Result<StagedSnapshot>>>,
    leader: LeaderInfo,
}

/// Opens the data directory, restores the state machine and starts the
/// driver thread.
pub fn start(
    cfg: RaftConfig,
    transport: Transport,
    rx: Receiver<Command>,
) -> Result<(Arc<Shared>, std::thread::JoinHandle<()>)> {
    let initial: &[u64] = if cfg.join { &[] } else { &cfg.voters };
    let recovered = DiskLog::open(&cfg.data_dir, initial)?;
    let mut sm = StateMachine::new(cfg.history_limit);
    let mut applied = 0;
    if let Some(snap) = &recovered.snapshot {
        sm.restore(snap.get_data())
            .context("restoring the state machine from snapshot.bin")?;
        applied = snap.get_metadata().index;
    }
    if let Some(index) = sm.removed().get(&cfg.id) {
        anyhow::bail!(
            "replica {} was removed from the cluster at log index {index}: its data directory \
             {} is stale and may not serve or rejoin; to bring this machine back, empty the \
             directory and add it as a new member with a new id (rkubectl member add ID \
             ADDRESS, then start it with --join)",
            cfg.id,
            cfg.data_dir.display()
        );
    }
    let mut transport = transport;
    if !sm.members().is_empty() {
        transport.set_peers(sm.members());
    }
    let removed = Arc::new(parking_lot::RwLock::new(sm.removed().clone()));
    let storage = recovered.log.storage();
    let raft_cfg = raft::Config {
        id: cfg.id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        read_only_option: raft::ReadOnlyOption::Safe,
        ..Default::default()
    };
    raft_cfg.validate().context("raft configuration")?;
    let logger = slog_to_tracing();
    let node = RawNode::new(&raft_cfg, storage, &logger).context("starting raft")?;
    let (applied_tx, _) = watch::channel(applied);
    let (rev_tx, _) = watch::channel(sm.revision());
    let (leader_tx, _) = watch::channel(LeaderInfo::default());
    let shared = Arc::new(Shared {
        sm: parking_lot::RwLock::new(sm),
        applied: applied_tx,
        revision: rev_tx,
        leader: leader_tx,
        removed,
    });
    let last_snapshot = recovered.log.storage().snapshot_index();
    let mut driver = Driver {
        id: cfg.id,
        node,
        log: recovered.log,
        shared: shared.clone(),
        transport,
        cfg,
        pending: HashMap::new(),
        pending_conf: HashMap::new(),
        snapshot_now: false,
        reads: HashMap::new(),
        new_reads: Vec::new(),
        read_seq: 0,
        applied,
        last_snapshot,
        snapshotting: None,
        leader: LeaderInfo::default(),
    };
    let handle = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            // A disk or state error, or a panic in raft-rs: this replica
            // must not go on serving (local reads, watches) without its
            // driver.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run(rx))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = ?e, "raft driver failed; exiting");
                    eprintln!("Error: {e:#}");
                    std::process::exit(70);
                }
                Err(_) => {
                    tracing::error!("raft driver panicked; exiting");
                    std::process::exit(70);
                }
            }
        })?;
    Ok((shared, handle))
}

impl Driver {
    fn run(&mut self, rx: Receiver<Command>) -> Result<()> {
        let mut last_tick = Instant::now();
        loop {
            let wait = self.cfg.tick.saturating_sub(last_tick.elapsed());
            match rx.recv_timeout(wait) {
                Ok(Command::Shutdown) => return Ok(()),
                Ok(cmd) => self.handle(cmd)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            // Take whatever else is queued, so one fsync covers many writes.
            for _ in 0..8192 {
                match rx.try_recv() {
                    Ok(Command::Shutdown) => return Ok(()),
                    Ok(cmd) => self.handle(cmd)?,
                    Err(_) => break,
                }
            }
            self.issue_reads();
            if last_tick.elapsed() >= self.cfg.tick {
                self.node.tick();
                last_tick = Instant::now();
                self.expire_reads();
            }
            self.on_ready()?;
        }
    }

    fn handle(&mut self, cmd: Command) -> Result<()> {
        match cmd {
            Command::Propose {
                request_id,
                data,
                txn,
                reply,
            } => {
                if self.node.raft.leader_id == raft::INVALID_ID {
                    let _ = reply.send(Err(StoreError::Unavailable(
                        "no control-plane leader is known yet (election in progress); retry".into(),
                    )));
                    return Ok(());
                }
                match self.node.propose(vec![], data) {
                    Ok(()) => {
                        self.pending.insert(request_id, (reply, txn));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(StoreError::Unavailable(format!(
                            "proposal refused: {e}; retry"
                        ))));
                    }
                }
            }
            Command::ReadIndex { reply } => self.new_reads.push(reply),
            Command::Step(m) => {
                // A leader's heartbeat commits only what it knows this
                // replica stored (acknowledged after an fsync). Beyond our
                // log, this data directory lost acknowledged entries (it was
                // emptied or replaced): Raft cannot take this replica back
                // as the same member (its lost votes and entries count in
                // quorums). raft-rs would panic; stop and say why.
                let last = self.node.raft.raft_log.last_index();
                if m.get_msg_type() == MessageType::MsgHeartbeat && m.commit > last {
                    anyhow::bail!(
                        "replica {} lost entries it had acknowledged: the leader (replica {}) \
                         knows entries up to index {} are stored here, but the log in {} ends \
                         at {last}; its data directory was emptied, replaced or damaged. It \
                         cannot rejoin as the same member: restore the data directory",
                        self.id,
                        m.from,
                        m.commit,
                        self.cfg.data_dir.display()
                    );
                }
                if let Err(e) = self.node.step(*m) {
                    tracing::debug!(error = %e, "dropping raft message");
                }
            }
            Command::Unreachable(id) => self.node.report_unreachable(id),
            Command::SnapshotSent { to, ok } => self.node.report_snapshot(
                to,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::ConfChange {
                request_id,
                change,
                reply,
            } => self.propose_conf_change(request_id, change, reply),
            Command::TransferLeader(to) => self.node.transfer_leader(to),
            Command::Removed(why) => anyhow::bail!("{why}"),
            Command::Shutdown => {}
        }
        Ok(())
    }

    fn propose_conf_change(
        &mut self,
        request_id: u64,
        change: ConfChangeV2,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    ) {
        if self.node.raft.state != StateRole::Leader {
            let _ = reply.send(Err(StoreError::NotLeader(self.node.raft.leader_id)));
            return;
        }
        if self.node.raft.has_pending_conf() || !self.pending_conf.is_empty() {
            // raft-rs would turn a second pending change into an empty entry.
            let _ = reply.send(Err(StoreError::FailedPrecondition(
                crate::membership::CHANGE_IN_PROGRESS.into(),
            )));
            return;
        }
        let context = Proposal {
            origin: self.id,
            request_id,
            txn: None,
        }
        .encode_to_vec();
        match self.node.propose_conf_change(context, change) {
            Ok(()) => {
                self.pending_conf.insert(request_id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(StoreError::FailedPrecondition(format!(
                    "membership change refused: {e}"
                ))));
            }
        }
    }

    /// One ReadIndex round for every read that arrived in this iteration.
    fn issue_reads(&mut self) {
        if self.new_reads.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.new_reads);
        if self.node.raft.leader_id == raft::INVALID_ID {
            for w in waiters {
                let _ = w.send(Err(StoreError::Unavailable(
                    "no control-plane leader is known yet (election in progress); retry".into(),
                )));
            }
            return;
        }
        self.read_seq += 1;
        let ctx = [self.id.to_le_bytes(), self.read_seq.to_le_bytes()].concat();
        self.node.read_index(ctx.clone());
        self.reads.insert(ctx, (Instant::now(), waiters));
    }

    /// raft-rs silently drops a read that cannot be served (no leader, or a
    /// leader that has not committed in its term yet); callers retry.
    fn expire_reads(&mut self) {
        let limit = self.cfg.tick * (self.cfg.election_ticks as u32);
        self.reads.retain(|_, (at, _)| at.elapsed() < limit);
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        if let Some(ss) = ready.ss() {
            let info = LeaderInfo {
                leader_id: ss.leader_id,
                term: self.node.raft.term,
                is_leader: ss.raft_state == StateRole::Leader,
            };
            self.set_leader(info);
        }
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            self.install_snapshot(snap)?;
        }
        let committed = ready.take_committed_entries();
        self.apply(committed)?;
        self.log.append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            let term_changed = hs.term != self.leader.term;
            self.log.set_hard_state(hs)?;
            if term_changed {
                let info = LeaderInfo {
                    term: hs.term,
                    ..self.leader
                };
                self.set_leader(info);
            }
        }
        self.log.sync()?;
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        for rs in ready.take_read_states() {
            if let Some((_, waiters)) = self.reads.remove(&rs.request_ctx) {
                for w in waiters {
                    let _ = w.send(Ok(rs.index));
                }
            }
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit)?;
            self.log.flush_lazy()?;
        }
        self.transport.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed)?;
        self.node.advance_apply();
        self.maybe_snapshot()?;
        Ok(())
    }

    fn set_leader(&mut self, info: LeaderInfo) {
        if info.term != self.leader.term && !self.pending.is_empty() {
            // Writes proposed under an older term may or may not commit; say
            // so now rather than let callers wait out their timeout.
            tracing::info!(
                pending = self.pending.len(),
                "leadership changed with writes in flight"
            );
            for (_, (w, _)) in self.pending.drain() {
                let _ = w.send(Err(StoreError::OutcomeUnknown(
                    "the control-plane leader changed while this write was in flight; \
                     its outcome is unknown: read before retrying"
                        .into(),
                )));
            }
        }
        if info.term != self.leader.term {
            for (_, w) in self.pending_conf.drain() {
                let _ = w.send(Err(StoreError::OutcomeUnknown(
                    "the control-plane leader changed while this membership change was in \
                     flight; its outcome is unknown: list the members before retrying"
                        .into(),
                )));
            }
        }
        if info != self.leader {
            tracing::info!(
                leader = info.leader_id,
                term = info.term,
                me = info.is_leader,
                "raft leadership"
            );
            self.leader = info;
            self.shared.leader.send_replace(info);
        }
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<()> {
        let index = snap.get_metadata().index;
        tracing::info!(index, "installing snapshot from the leader");
        self.shared
            .sm
            .write()
            .restore(snap.get_data())
            .context("restoring the state machine from a received snapshot")?;
        self.log.install_snapshot(snap)?;
        self.applied = index;
        self.last_snapshot = index;
        self.membership_changed();
        let rev = self.shared.sm.read().revision();
        self.shared.revision.send_replace(rev);
        self.shared.applied.send_replace(index);
        Ok(())
    }

    fn apply(&mut self, entries: Vec<raft::eraftpb::Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut replies = Vec::new();
        let mut conf_applied = false;
        let mut conf_replies = Vec::new();
        let mut removed_self = None;
        {
            let shared = self.shared.clone();
            let mut sm = shared.sm.write();
            for e in entries {
                if e.index <= self.applied {
                    continue;
                }
                match e.get_entry_type() {
                    EntryType::EntryNormal if !e.data.is_empty() => {
                        // This replica's own proposal: its transaction is
                        // still at hand, and someone waits for the answer.
                        let own = ProposalHeader::decode(&e.data[..])
                            .ok()
                            .filter(|h| h.origin == self.id)
                            .and_then(|h| self.pending.remove(&h.request_id));
                        if let Some((w, txn)) = own {
                            replies.push((w, sm.apply_with(txn, true)));
                            self.applied = e.index;
                            continue;
                        }
                        match Proposal::decode(&e.data[..]) {
                            Ok(p) => {
                                sm.apply_with(p.txn.unwrap_or_default(), false);
                            }
                            Err(err) => {
                                // Every replica skips it alike, so state stays
                                // identical; it can only come from a bug.
                                tracing::error!(index = e.index, error = %err, "undecodable entry");
                            }
                        }
                    }
                    EntryType::EntryConfChange => {
                        let cc = ConfChange::parse_from_bytes(&e.data)?;
                        let cs = self.node.apply_conf_change(&cc)?;
                        self.log.set_conf_state(cs);
                        self.snapshot_now = true;
                    }
                    EntryType::EntryConfChangeV2 => {
                        let cc = ConfChangeV2::parse_from_bytes(&e.data)?;
                        let cs = self.node.apply_conf_change(&cc)?;
                        self.log.set_conf_state(cs);
                        let removed: Vec<u64> = cc
                            .get_changes()
                            .iter()
                            .filter(|c| c.get_change_type() == ConfChangeType::RemoveNode)
                            .map(|c| c.node_id)
                            .collect();
                        let members: BTreeMap<u64, String> =
                            MembershipContext::decode(cc.get_context())
                                .unwrap_or_default()
                                .members
                                .into_iter()
                                .map(|m| (m.id, m.address))
                                .collect();
                        if members.is_empty() {
                            let same = sm.members().clone();
                            sm.set_members(same, &removed, e.index);
                        } else {
                            sm.set_members(members, &removed, e.index);
                        }
                        tracing::info!(
                            index = e.index,
                            voters = ?cs_voters(&self.node),
                            learners = ?cs_learners(&self.node),
                            "membership changed"
                        );
                        self.snapshot_now = true;
                        conf_applied = true;
                        if let Some(w) = Proposal::decode(e.get_context())
                            .ok()
                            .filter(|p| p.origin == self.id)
                            .and_then(|p| self.pending_conf.remove(&p.request_id))
                        {
                            conf_replies.push((w, e.index));
                        }
                        if removed.contains(&self.id) {
                            removed_self = Some(e.index);
                        }
                    }
                    _ => {}
                }
                self.applied = e.index;
            }
            self.shared.revision.send_replace(sm.revision());
        }
        if conf_applied {
            self.membership_changed();
        }
        self.shared.applied.send_replace(self.applied);
        for (w, r) in replies {
            let _ = w.send(Ok(r));
        }
        for (w, index) in conf_replies {
            let _ = w.send(Ok(index));
        }
        if let Some(index) = removed_self {
            // Take the snapshot that records the removal first, so a restart
            // on this directory refuses at once.
            self.maybe_snapshot()?;
            anyhow::bail!(
                "replica {} was removed from the cluster at log index {index}; stopping: its \
                 data directory may not serve or rejoin (add the machine again as a new member \
                 with a new id and an empty directory)",
                self.id
            );
        }
        Ok(())
    }

    /// After the state machine's membership changed (a configuration change
    /// applied, or a snapshot installed): tell the transport and the peer
    /// service.
    fn membership_changed(&mut self) {
        let sm = self.shared.sm.read();
        *self.shared.removed.write() = sm.removed().clone();
        if !sm.members().is_empty() {
            self.transport.set_peers(sm.members());
        }
    }

    /// Every member's address as this replica knows it: the last
    /// configuration change's list, else the initial `--peers`.
    pub fn member_addresses(&self) -> BTreeMap<u64, String> {
        let sm = self.shared.sm.read();
        if sm.members().is_empty() {
            self.cfg.peers.iter().cloned().collect()
        } else {
            sm.members().clone()
        }
    }

    /// Snapshots and compacts the log every `snapshot_interval` applied
    /// entries, and at once after a configuration change (`snapshot_now`).
    ///
    /// A periodic snapshot does not stop this thread: it takes a view of the
    /// state (sharing every object), and another thread encodes it and
    /// writes it next to the current snapshot; a later call installs it
    /// (rename, compaction, log rewrite). Until then the previous snapshot
    /// and the whole log stay valid, so a crash in between loses nothing. A
    /// forced snapshot is taken here and now (a joining replica must be
    /// sent one that includes its configuration); a periodic one finishing
    /// after it is older and is dropped.
    fn maybe_snapshot(&mut self) -> Result<()> {
        if let Some(rx) = &self.snapshotting {
            match rx.try_recv() {
                Ok(staged) => {
                    self.snapshotting = None;
                    let staged = staged.context("writing a snapshot")?;
                    let index = staged.snapshot.get_metadata().index;
                    let started = Instant::now();
                    if self
                        .log
                        .install_own_snapshot(staged, self.cfg.snapshot_keep)?
                    {
                        self.last_snapshot = self.last_snapshot.max(index);
                        tracing::info!(
                            index,
                            install_ms = started.elapsed().as_millis() as u64,
                            "snapshot saved, log compacted"
                        );
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    anyhow::bail!("the snapshot thread died")
                }
            }
        }
        let forced = std::mem::take(&mut self.snapshot_now);
        if !forced
            && (self.snapshotting.is_some()
                || self.applied < self.last_snapshot + self.cfg.snapshot_interval)
        {
            return Ok(());
        }
        if self.applied <= self.last_snapshot {
            return Ok(());
        }
        let index = self.applied;
        let term = self.node.store().term(index)?;
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.node.raft.prs().conf().to_conf_state());
        let started = Instant::now();
        if forced {
            // After a configuration change keep nothing behind the
            // snapshot: a replica that joins must start from a snapshot (the
            // initial configuration is not in the log), never from index 1.
            let data = self.shared.sm.read().snapshot();
            snap.set_data(data.into());
            self.log.save_own_snapshot(snap, 0)?;
            self.last_snapshot = index;
            tracing::info!(
                index,
                took_ms = started.elapsed().as_millis() as u64,
                "snapshot saved, log compacted"
            );
            return Ok(());
        }
        let view = self.shared.sm.read().snapshot_view();
        tracing::debug!(
            index,
            view_ms = started.elapsed().as_millis() as u64,
            "snapshot started"
        );
        let dir = self.log.dir().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                snap.set_data(view.encode().into());
                drop(view);
                let _ = tx.send(stage_snapshot(&dir, snap));
            })
            .context("starting the snapshot thread")?;
        self.snapshotting = Some(rx);
        Ok(())
    }

    fn status(&self) -> RaftStatus {
        let st = self.node.status();
        let store = self.node.store();
        let mut peers_active = HashMap::new();
        let mut matched = HashMap::new();
        if let Some(prs) = st.progress {
            for (id, pr) in prs.iter() {
                peers_active.insert(*id, pr.recent_active || *id == self.id);
                matched.insert(*id, pr.matched);
            }
        }
        RaftStatus {
            id: self.id,
            leader_id: self.node.raft.leader_id,
            term: self.node.raft.term,
            applied: self.applied,
            commit: self.node.raft.raft_log.committed,
            snapshot_index: store.snapshot_index(),
            first_index: store.first_index().unwrap_or(0),
            last_index: store.last_index().unwrap_or(0),
            peers_active,
            matched,
            voters: cs_voters(&self.node),
            learners: cs_learners(&self.node),
            pending_conf: self.node.raft.has_pending_conf() || !self.pending_conf.is_empty(),
            members: self.member_addresses(),
        }
    }
}

fn cs_voters(node: &RawNode<RaftStorage>) -> Vec<u64> {
    let mut v: Vec<u64> = node.raft.prs().conf().voters().ids().iter().collect();
    v.sort_unstable();
    v
}

fn cs_learners(node: &RawNode<RaftStorage>) -> Vec<u64> {
    let mut v: Vec<u64> = node.raft.prs().conf().learners().iter().copied().collect();
    v.sort_unstable();
    v
}

/// Sends commands to the driver.
pub type CommandSender = Sender<Command>;
