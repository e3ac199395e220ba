//! Unit-test support: a one-replica store (real Raft driver and disk log in
//! a temporary directory) with handlers, already leading, with namespaces.

use crate::handlers::Handlers;
use crate::raft_node::{self, Command, CommandSender, RaftConfig};
use crate::store::Store;
use crate::transport::Transport;
use rkube_api::proto::{object::Kind as Body, Namespace, ObjectMeta};
use rkube_api::Object;
use std::time::Duration;

/// A running one-replica store; shuts its driver down when dropped.
pub struct OneReplica {
    pub handlers: Handlers,
    commands: CommandSender,
    _dir: tempfile::TempDir,
}

impl Drop for OneReplica {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// Starts a replica ticking every `tick_ms` (elections after
/// `election_ticks`), waits until it leads, and creates `namespaces`.
pub async fn one_replica(tick_ms: u64, election_ticks: usize, namespaces: &[&str]) -> OneReplica {
    let dir = tempfile::tempdir().expect("tempdir");
    let (commands, rx) = std::sync::mpsc::channel();
    let peers = vec![(1u64, "127.0.0.1:1".to_string())];
    let transport = Transport::start(1, &peers, commands.clone(), None);
    let cfg = RaftConfig {
        id: 1,
        voters: vec![1],
        peers,
        join: false,
        data_dir: dir.path().to_path_buf(),
        tick: Duration::from_millis(tick_ms),
        election_ticks,
        heartbeat_ticks: 1,
        snapshot_interval: 1_000_000,
        snapshot_keep: 1_000,
        history_limit: 100_000,
    };
    let (shared, _driver) = raft_node::start(cfg, transport, rx).expect("raft starts");
    let store = Store::new(1, commands.clone(), shared);
    let mut leader = store.leader();
    tokio::time::timeout(Duration::from_secs(20), leader.wait_for(|l| l.is_leader))
        .await
        .expect("a one-replica group elects itself")
        .expect("leader channel");
    let handlers = Handlers::new(store);
    for ns in namespaces {
        let obj = Object::from_body(Body::Namespace(Namespace {
            metadata: Some(ObjectMeta {
                name: ns.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }));
        // The first write may race the leader's first entry: retry.
        let mut tries = 0;
        while let Err(e) = handlers.create(obj.clone(), false).await {
            tries += 1;
            assert!(tries < 100, "creating namespace {ns}: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    OneReplica {
        handlers,
        commands,
        _dir: dir,
    }
}
