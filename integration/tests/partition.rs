//! A replica cut off from its peers, while clients still reach it, never
//! answers from its stale state: every answer that depends on the current
//! state of an object either waits for the leader's confirmation (and so
//! fails while cut off) or goes through the replicated log. Replicas run
//! in network namespaces of their own (`rkube_integration::nemesis`);
//! needs root, else prints `RKUBE-SKIP: nemesis: <why>`.

use rkube_api::client::Client;
use rkube_api::proto::{DeleteRequest, Preconditions};
use rkube_integration::nemesis::{lease, value_of, ReplicaNet};
use rkube_integration::{wait_for, Cluster, Options};
use std::time::Duration;
use tonic::{Code, Status};

fn delete(name: &str, rv: Option<&str>) -> DeleteRequest {
    DeleteRequest {
        kind: "Lease".into(),
        namespace: "default".into(),
        name: name.into(),
        preconditions: rv.map(|rv| Preconditions {
            resource_version: rv.into(),
            uid: String::new(),
        }),
        ..Default::default()
    }
}

/// Not a definite answer (the replica could not confirm with a leader),
/// else what was answered.
fn stale_answer<T: std::fmt::Debug>(what: &str, r: Result<T, Status>) -> Option<String> {
    match r {
        Err(s) if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) => None,
        Err(s) => Some(format!("{what}: {:?} {}", s.code(), s.message())),
        Ok(o) => Some(format!("{what}: ok {o:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_off_from_the_leader_gives_no_stale_answers() {
    let Some(net) = ReplicaNet::create(3) else {
        return;
    };
    let cluster = Cluster::start(net.options(Options::default())).await;
    let leader = cluster.leader_index().await;
    let cut = (leader + 1) % 3;
    let majority: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    let maj = Client::new(
        &majority
            .iter()
            .map(|&i| cluster.replicas[i].addr.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let c1 = maj.create(lease("default", "c", 1, "")).await.unwrap();
    let d1 = maj.create(lease("default", "d", 2, "")).await.unwrap();
    let rev: i64 = d1.resource_version().parse().unwrap();
    cluster.wait_revision(cut, rev).await;

    net.partition(&[vec![cut], majority.clone()]);
    // The majority moves on: b is created, c updated.
    let b = maj.create(lease("default", "b", 3, "")).await.unwrap();
    let c2 = maj
        .update(lease("default", "c", 4, c1.resource_version()))
        .await
        .unwrap();
    // The cut-off replica still has c at c1 and no b. It must not say so.
    let stale = cluster
        .client_of(cut)
        .with_failover_timeout(Duration::from_millis(1));
    let (r1, r2, r3, r4, r5) = tokio::join!(
        // NotFound would deny an acknowledged create.
        stale.update(lease("default", "b", 5, "")),
        stale.delete(delete("b", None)),
        // Conflict would deny the current version.
        stale.delete(delete("c", Some(c2.resource_version()))),
        stale.update(lease("default", "c", 6, c2.resource_version())),
        // Success would confirm a version that is gone (nothing to write:
        // the same content at the old version).
        stale.update(c1.clone()),
    );
    let stale_answers: Vec<String> = [
        stale_answer("update of an object created after the cut", r1),
        stale_answer("delete of an object created after the cut", r2),
        stale_answer("delete at the current version", r3),
        stale_answer("update at the current version", r4),
        stale_answer("an update that changes nothing, at a stale version", r5),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        stale_answers.is_empty(),
        "a replica cut off from the leader answered from its stale state:\n{}",
        stale_answers.join("\n")
    );

    // Healed, the replica answers again, with the current state.
    net.heal();
    let now = wait_for(
        "the healed replica to answer",
        Duration::from_secs(30),
        || {
            let stale = stale.clone();
            async move { stale.get("Lease", "default", "c").await.ok() }
        },
    )
    .await;
    assert_eq!(value_of(&now), Some(4));
    let e = stale.update(c1.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    let gone = stale.delete(delete("b", Some(b.resource_version()))).await;
    assert_eq!(value_of(&gone.unwrap()), Some(3));
}

/// A write whose answer is lost on the way back may well have been done:
/// the client must say the outcome is unknown, not retry it on another
/// replica and report what the retry got (AlreadyExists for its own
/// create).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_whose_answer_is_lost_has_an_unknown_outcome() {
    let Some(net) = ReplicaNet::create(3) else {
        return;
    };
    let cluster = Cluster::start(net.options(Options::default())).await;
    let client = cluster.client();
    let target = 1;
    client.prefer(target);
    // An open connection to the target replica.
    client.get("Namespace", "", "default").await.unwrap();
    net.drop_answers(target);
    let started = std::time::Instant::now();
    let r = client.create(lease("default", "lost", 1, "")).await;
    net.heal();
    let stored = wait_for("the created lease", Duration::from_secs(30), || {
        let c = cluster.client();
        async move { c.get("Lease", "default", "lost").await.ok() }
    })
    .await;
    assert_eq!(value_of(&stored), Some(1), "the create was done");
    match r {
        Err(s) if s.code() == Code::DeadlineExceeded => {
            assert!(s.message().contains("unknown"), "{s:?}");
        }
        other => panic!(
            "the create was done, but after {:?} the client answered {other:?}",
            started.elapsed()
        ),
    }
}
