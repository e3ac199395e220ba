//! Disk faults on a replica's data directory, with real processes: a torn
//! last write is cut off at start and the replica catches up from its
//! peers; a corrupt record, or a data directory that lost acknowledged
//! entries, stops the replica with a message saying why. A replica never
//! serves state other than the cluster's.

use rkube_api::proto::ListRequest;
use rkube_integration::nemesis::{lease, value_of};
use rkube_integration::{wait_for, Cluster, Options};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

fn wal(cluster: &Cluster, i: usize) -> PathBuf {
    cluster.replicas[i].data_dir.join("wal.log")
}

/// Leases name -> value, as replica `i` has applied them (its local state,
/// no leader involved) or, with `None`, as the cluster has them.
async fn leases(cluster: &Cluster, i: Option<usize>) -> BTreeMap<String, u64> {
    let (client, rv) = match i {
        Some(i) => (cluster.client_of(i), "0"),
        None => (cluster.client(), ""),
    };
    let list = client
        .list(ListRequest {
            kind: "Lease".into(),
            namespace: "default".into(),
            resource_version: rv.into(),
            ..Default::default()
        })
        .await
        .expect("list");
    list.items
        .iter()
        .map(|o| (o.name().to_string(), value_of(o).unwrap_or(0)))
        .collect()
}

async fn write(cluster: &Cluster, from: u64, to: u64) -> i64 {
    let c = cluster.client();
    let mut rev = 0;
    for v in from..to {
        let o = c
            .create(lease("default", &format!("l{v}"), v, ""))
            .await
            .expect("create");
        rev = o.resource_version().parse().unwrap();
    }
    rev
}

/// Waits for replica `i` to exit (it refused to start); returns its log.
async fn refused(cluster: &mut Cluster, i: usize) -> String {
    let status = wait_for(
        "the replica to refuse to start",
        Duration::from_secs(30),
        || {
            let st = cluster.exited(i);
            async move { st }
        },
    )
    .await;
    assert!(!status.success(), "it exited with {status:?}");
    cluster.log_of(i)
}

/// Restarts replica `i` and waits until it has the cluster's state.
async fn catches_up(cluster: &mut Cluster, i: usize, rev: i64) {
    cluster.start_replica(i);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster.status_of(i).await.is_none_or(|s| s.revision < rev) {
        assert!(
            std::time::Instant::now() < deadline,
            "replica {} did not catch up to revision {rev}: {:?}\n{}",
            i + 1,
            cluster.status_of(i).await,
            cluster.log_of(i)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want = leases(cluster, None).await;
    let have = leases(cluster, Some(i)).await;
    assert_eq!(have, want, "replica {} serves the cluster's state", i + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_write_is_cut_off_and_the_replica_catches_up() {
    let mut cluster = Cluster::start(Options::default()).await;
    write(&cluster, 0, 30).await;
    let victim = (cluster.leader_index().await + 1) % 3;
    cluster.kill(victim);
    // The crash cut the last write short: its last record is incomplete.
    let path = wal(&cluster, victim);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let rev = write(&cluster, 30, 40).await;
    catches_up(&mut cluster, victim, rev).await;
    assert!(
        cluster
            .log_of(victim)
            .contains("incomplete or corrupt record; truncating"),
        "{}",
        cluster.log_of(victim)
    );
    // And it takes part again: writes still commit with the other one down.
    cluster.kill((victim + 1) % 3);
    let rev = write(&cluster, 40, 45).await;
    cluster.wait_revision(victim, rev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_refuses_to_start() {
    let mut cluster = Cluster::start(Options::default()).await;
    write(&cluster, 0, 30).await;
    let victim = (cluster.leader_index().await + 1) % 3;
    cluster.kill(victim);
    // A bit flips in the middle of the log.
    let path = wal(&cluster, victim);
    let mut b = std::fs::read(&path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x08;
    std::fs::write(&path, &b).unwrap();
    cluster.start_replica(victim);
    let log = refused(&mut cluster, victim).await;
    assert!(
        log.contains("is corrupt at offset") && log.contains("refusing to start"),
        "the replica says why it does not start:\n{log}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b, "nothing was cut");
    // The others go on.
    write(&cluster, 30, 40).await;
}

/// A replica whose data directory was emptied (or replaced) has lost
/// entries and votes it acknowledged: Raft cannot take it back as the same
/// member. It stops, saying so, as soon as the leader's heartbeat shows
/// the loss (before: raft-rs panicked in the driver thread and the process
/// lived on without a driver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_data_directory_stops_and_says_why() {
    let mut cluster = Cluster::start(Options::default()).await;
    write(&cluster, 0, 30).await;
    let victim = (cluster.leader_index().await + 1) % 3;
    cluster.kill(victim);
    std::fs::remove_dir_all(&cluster.replicas[victim].data_dir).unwrap();
    cluster.start_replica(victim);
    let log = refused(&mut cluster, victim).await;
    assert!(
        log.contains("lost entries it had acknowledged"),
        "the replica says why it stops:\n{log}"
    );
    write(&cluster, 30, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_last_record_with_a_bad_checksum_refuses_to_start() {
    let mut cluster = Cluster::start(Options::default()).await;
    write(&cluster, 0, 10).await;
    let victim = (cluster.leader_index().await + 1) % 3;
    cluster.kill(victim);
    // Bit rot in the last record (no sign of an interrupted write).
    let path = wal(&cluster, victim);
    let mut b = std::fs::read(&path).unwrap();
    let n = b.len();
    b[n - 2] ^= 0x01;
    std::fs::write(&path, &b).unwrap();
    cluster.start_replica(victim);
    let log = refused(&mut cluster, victim).await;
    assert!(
        log.contains("fail their checksum but are complete records"),
        "the replica says why it does not start:\n{log}"
    );
}
