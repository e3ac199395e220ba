//! Replica-to-replica transport for Raft messages over gRPC.
//!
//! Outgoing: one task per peer drains that peer's queue into batches and
//! sends each batch as one unary call; while a call is in flight the next
//! batch accumulates. A failed call drops its batch (Raft retransmits) and
//! reports the peer unreachable. Incoming: the `RaftPeer` service hands each
//! message to the driver.

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

/// The sending side, used by the driver thread.
#[derive(Clone)]
pub struct Transport {
    peers: HashMap<u64, mpsc::UnboundedSender<Message>>,
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
        let mut map = HashMap::new();
        for (id, addr) in peers {
            if *id == me {
                continue;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            map.insert(*id, tx);
            tokio::spawn(peer_sender(
                me,
                *id,
                addr.clone(),
                rx,
                commands.clone(),
                tls.clone(),
            ));
        }
        Transport { peers: map }
    }

    pub fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            if let Some(tx) = self.peers.get(&m.to) {
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
        let ok = matches!(
            tokio::time::timeout(limit, client.send(req)).await,
            Ok(Ok(_))
        );
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
