//! Replica-to-replica transport for Raft messages over gRPC.
//!
//! Outgoing: one task per peer drains that peer's queue into batches and
//! sends each batch as one unary call; while a call is in flight the next
//! batch accumulates. A failed call drops its batch (Raft retransmits) and
//! reports the peer unreachable. Incoming: the `RaftPeer` service hands each
//! message to the driver.
//!
//! Peers come and go with configuration changes: the driver adds a sender
//! for a new member and drops a removed one's. A removed replica's messages
//! are refused with `FailedPrecondition` naming the index that removed it;
//! a replica told so by a peer stops (its data directory is stale).

use crate::raft_node::{Command, CommandSender};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use rkube_api::kubeconfig::TlsConfig;
use rkube_api::proto::internal::raft_peer_client::RaftPeerClient;
use rkube_api::proto::internal::raft_peer_server::RaftPeer;
use rkube_api::proto::internal::{RaftBatch, SendAck};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

const MAX_BATCH: usize = 1024;
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

/// The message a peer sends back to a removed replica; the removed replica
/// stops with it.
pub const REMOVED_MARKER: &str = "was removed from the cluster";

/// The sending side, used by the driver thread.
pub struct Transport {
    me: u64,
    peers: HashMap<u64, (String, mpsc::UnboundedSender<Message>)>,
    commands: CommandSender,
    tls: Option<TlsConfig>,
    /// Where sender tasks run (the driver thread is not a tokio thread).
    runtime: tokio::runtime::Handle,
}

impl Transport {
    /// Starts a sender task per peer (`id`, `host:port`) on the current
    /// tokio runtime.
    pub fn start(
        me: u64,
        peers: &[(u64, String)],
        commands: CommandSender,
        tls: Option<TlsConfig>,
    ) -> Transport {
        let mut t = Transport {
            me,
            peers: HashMap::new(),
            commands,
            tls,
            runtime: tokio::runtime::Handle::current(),
        };
        for (id, addr) in peers {
            t.add_peer(*id, addr);
        }
        t
    }

    /// Starts sending to `id` at `addr` (replacing an older address).
    pub fn add_peer(&mut self, id: u64, addr: &str) {
        if id == self.me {
            return;
        }
        if let Some((old, _)) = self.peers.get(&id) {
            if old == addr {
                return;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.peers.insert(id, (addr.to_string(), tx));
        self.runtime.spawn(peer_sender(
            self.me,
            id,
            addr.to_string(),
            rx,
            self.commands.clone(),
            self.tls.clone(),
        ));
    }

    /// Stops sending to `id` (its sender task ends with its queue).
    pub fn remove_peer(&mut self, id: u64) {
        if self.peers.remove(&id).is_some() {
            tracing::info!(peer = id, "peer removed from the transport");
        }
    }

    /// Makes the peer set exactly `members` (ids other than this replica's).
    pub fn set_peers(&mut self, members: &std::collections::BTreeMap<u64, String>) {
        let gone: Vec<u64> = self
            .peers
            .keys()
            .filter(|id| !members.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.remove_peer(id);
        }
        for (id, addr) in members {
            self.add_peer(*id, addr);
        }
    }

    pub fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            if let Some((_, tx)) = self.peers.get(&m.to) {
                let _ = tx.send(m);
            }
        }
    }
}

async fn peer_sender(
    me: u64,
    to: u64,
    addr: String,
    mut rx: mpsc::UnboundedReceiver<Message>,
    commands: CommandSender,
    tls: Option<TlsConfig>,
) {
    let endpoint = match rkube_api::client::endpoint(&addr, tls.as_ref()) {
        Ok(e) => e
            .connect_timeout(Duration::from_millis(300))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2)),
        Err(e) => {
            tracing::error!(peer = to, %addr, error = %e, "invalid peer address");
            return;
        }
    };
    let mut client = RaftPeerClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let snapshots: Vec<u64> = batch
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect();
        let req = RaftBatch {
            from: me,
            messages: batch
                .iter()
                .filter_map(|m| m.write_to_bytes().ok())
                .collect(),
        };
        let limit = if snapshots.is_empty() {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(60)
        };
        let ok = match tokio::time::timeout(limit, client.send(req)).await {
            Ok(Ok(_)) => true,
            Ok(Err(s))
                if s.code() == tonic::Code::FailedPrecondition
                    && s.message().contains(REMOVED_MARKER) =>
            {
                // This replica is no longer a member: it must not go on
                // serving (or campaigning) from a stale data directory.
                let _ = commands.send(Command::Removed(s.message().to_string()));
                return;
            }
            _ => false,
        };
        for to in &snapshots {
            let _ = commands.send(Command::SnapshotSent { to: *to, ok });
        }
        if ok {
            if failing {
                tracing::info!(peer = to, "peer reachable again");
                failing = false;
            }
        } else {
            if !failing {
                tracing::warn!(peer = to, %addr, "peer unreachable");
                failing = true;
            }
            let _ = commands.send(Command::Unreachable(to));
            // Do not pile up stale messages for a dead peer.
            while rx.try_recv().is_ok() {}
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The receiving side.
pub struct RaftPeerService {
    pub commands: CommandSender,
    pub auth: rkube_api::auth::Authenticator,
    /// Removed replica ids (and the index of each removal), kept current by
    /// the driver.
    pub removed: std::sync::Arc<parking_lot::RwLock<std::collections::BTreeMap<u64, u64>>>,
}

#[tonic::async_trait]
impl RaftPeer for RaftPeerService {
    async fn send(
        &self,
        request: tonic::Request<RaftBatch>,
    ) -> Result<tonic::Response<SendAck>, tonic::Status> {
        // Only control-plane replicas speak Raft (no token can).
        if self.auth.secure {
            let who = rkube_api::auth::certificate_identity(&request).map_err(|_| {
                tonic::Status::unauthenticated(
                    "Raft peers must present a control-plane certificate",
                )
            })?;
            if !who.in_group(rkube_api::kubeconfig::identities::GROUP_CONTROL_PLANE) {
                return Err(tonic::Status::permission_denied(format!(
                    "user {:?} is not a control-plane replica",
                    who.user
                )));
            }
        }
        let batch = request.into_inner();
        if let Some(index) = self.removed.read().get(&batch.from).copied() {
            return Err(tonic::Status::failed_precondition(format!(
                "replica {} {REMOVED_MARKER} at log index {index}; its data directory is \
                 stale and it may not rejoin: empty it and add it again as a new member \
                 (rkubectl member add) with a new id",
                batch.from
            )));
        }
        for bytes in batch.messages {
            let m = Message::parse_from_bytes(&bytes).map_err(|e| {
                tonic::Status::invalid_argument(format!("undecodable raft message: {e}"))
            })?;
            self.commands
                .send(Command::Step(Box::new(m)))
                .map_err(|_| tonic::Status::unavailable("replica is shutting down"))?;
        }
        Ok(tonic::Response::new(SendAck {}))
    }
}
