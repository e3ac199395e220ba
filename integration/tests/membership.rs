//! Control-plane membership changes through the API and rkubectl: a replica
//! added (learner, catch-up, voter) and others removed, the leader among
//! them, while the nemesis workload's clients and watchers run; the history
//! is checked linearizable and complete, the longest pause between
//! acknowledged writes is measured, and a removed replica restarted on its
//! old data directory refuses to serve. Then the refusals: bad input,
//! another change in progress, a credential that may not change membership.

use rkube_api::client::Client;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::{
    ClusterStatusRequest, Lease, MemberAddRequest, MemberRemoveRequest, Namespace, ObjectMeta,
};
use rkube_api::Object;
use rkube_integration::nemesis::{self, Recorded, Workload, WorkloadOptions};
use rkube_integration::{wait_for, Cluster, Options};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;

/// The two tests run one after the other (each starts several replicas;
/// the pause measured by the first must not be another test's load).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes a Lease every 10 ms through a failover client and measures the
/// longest time between two acknowledged writes.
struct GapProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Duration, u64)>,
}

impl GapProbe {
    async fn start(client: Client) -> GapProbe {
        let ns = Object::from_body(Body::Namespace(Namespace {
            metadata: Some(ObjectMeta {
                name: "probe".into(),
                ..Default::default()
            }),
            ..Default::default()
        }));
        client.create(ns).await.expect("the probe's namespace");
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut last = Instant::now();
                let mut worst = Duration::ZERO;
                let mut acked = 0u64;
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let lease = Object::from_body(Body::Lease(Lease {
                        metadata: Some(ObjectMeta {
                            name: format!("p{n}"),
                            namespace: "probe".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }));
                    if tokio::time::timeout(Duration::from_secs(5), client.create(lease))
                        .await
                        .is_ok_and(|r| r.is_ok())
                    {
                        worst = worst.max(last.elapsed());
                        last = Instant::now();
                        acked += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (worst.max(last.elapsed()), acked)
            }
        });
        GapProbe { stop, task }
    }

    async fn finish(self) -> (Duration, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("probe task")
    }
}

/// The members as replica `i` answers: (id, learner) pairs.
async fn members_at(cluster: &Cluster, i: usize) -> Option<Vec<(u64, bool)>> {
    let s = cluster.status_of(i).await?;
    Some(s.members.iter().map(|m| (m.id, m.learner)).collect())
}

/// Index of the replica with id `id`.
fn index_of(cluster: &Cluster, id: u64) -> usize {
    cluster
        .replicas
        .iter()
        .position(|r| r.id == id)
        .expect("replica id")
}

/// Waits until replica `i` has exited, and returns its log.
async fn wait_exit(
    cluster: &mut Cluster,
    i: usize,
    what: &str,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = cluster.exited(i) {
            return (st, cluster.log_of(i));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: replica {} still runs; its log:\n{}",
            cluster.replicas[i].id,
            cluster.log_of(i)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_are_added_and_removed_under_load_without_losing_writes() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(Options {
        // Nothing compacted but by the configuration changes themselves:
        // the original replicas keep the whole change history to check
        // the run against.
        snapshot_interval: 10_000_000,
        history: 10_000_000,
        ..Default::default()
    })
    .await;
    let ns = "members";
    let workload = Workload::start(
        &cluster,
        WorkloadOptions {
            namespace: ns.into(),
            ..Default::default()
        },
    )
    .await;
    let probe = GapProbe::start(cluster.client()).await;
    wait_for(
        "the workload under way",
        Duration::from_secs(30),
        || async { (workload.operations() > 100).then_some(()) },
    )
    .await;
    let started = Instant::now();

    // Let the workload run on between changes.
    async fn let_run(workload: &Workload) {
        let target = workload.operations() + 150;
        wait_for("the workload to go on", Duration::from_secs(60), || async {
            (workload.operations() >= target).then_some(())
        })
        .await;
    }

    let mut removed = Vec::new();
    for step in ["add", "remove leader", "add", "remove follower"] {
        let lead = cluster.leader_index().await;
        match step {
            "add" => {
                // Started empty with --join, then added: learner, catch-up,
                // voter.
                let new = cluster.add_replica();
                let (id, addr) = (cluster.replicas[new].id, cluster.replicas[new].addr.clone());
                let out = cluster
                    .rkubectl(None, &["member", "add", &id.to_string(), &addr])
                    .ok();
                assert!(out.contains(&format!("member {id} added")), "{out}");
                let listed = cluster.rkubectl(None, &["member", "list"]).ok();
                assert_eq!(
                    listed.lines().filter(|l| l.contains(" voter ")).count(),
                    4,
                    "{listed}"
                );
                let rev = cluster.status_of(lead).await.unwrap().revision;
                cluster.wait_revision(new, rev).await;
                assert!(
                    cluster.log_of(new).contains("installing snapshot"),
                    "a new replica starts from a snapshot:\n{}",
                    cluster.log_of(new)
                );
            }
            _ => {
                // The leader leaves by handing leadership over first.
                let victim = if step == "remove leader" {
                    lead
                } else {
                    (0..cluster.replicas.len())
                        .find(|&i| i != lead && cluster.is_running(i))
                        .expect("a follower")
                };
                let id = cluster.replicas[victim].id;
                let out = cluster
                    .rkubectl(None, &["member", "remove", &id.to_string()])
                    .ok();
                assert!(out.contains(&format!("member {id} removed")), "{out}");
                let (status, log) = wait_exit(&mut cluster, victim, "a removed replica").await;
                assert!(!status.success());
                assert!(log.contains("was removed from the cluster"), "{log}");
                removed.push((victim, id));
            }
        }
        let_run(&workload).await;
    }
    let changes_took = started.elapsed();

    // The removed replicas, restarted on their old data directories,
    // refuse to serve.
    for &(i, id) in &removed {
        let before = cluster.log_of(i).len();
        cluster.start_replica(i);
        let (status, log) = wait_exit(&mut cluster, i, "a removed replica restarted").await;
        assert!(!status.success());
        let tail = &log[before..];
        assert!(
            tail.contains(&format!("replica {id} was removed from the cluster")),
            "replica {id} restarted on its stale directory must refuse, saying why:\n{tail}"
        );
    }

    // Three voters are left, replicas 4 and 5 among them.
    let i = cluster.leader_index().await;
    let members = members_at(&cluster, i).await.expect("members");
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members.contains(&(4, false)) && members.contains(&(5, false)),
        "{members:?}"
    );

    let (gap, probe_writes) = probe.finish().await;
    cluster.wait_ready().await;
    let ops_during = workload.operations();
    let recorded = workload.finish(Duration::from_secs(60)).await;
    let end = recorded.closing_revision();
    let Recorded {
        ops,
        watches,
        tally,
        watch_from,
    } = recorded;
    let reference = nemesis::committed_history(&cluster, ns, watch_from, end)
        .await
        .expect("a replica that kept the whole history");
    let nemesis::Checked {
        report,
        reference: rr,
        problems,
    } = nemesis::check_recorded(&ops, &watches, &tally, Some(&reference));
    println!(
        "membership run: 2 adds + 2 removes (one the leader) in {:.1} s; {} operations ({} during \
         the changes), {} acknowledged writes ({} found committed, {} lost), {} refused \
         (Unavailable); probe: {probe_writes} writes, longest pause between acknowledged writes \
         {} ms: {}",
        changes_took.as_secs_f64(),
        ops.len(),
        ops_during,
        report.acknowledged_writes,
        rr.acknowledged_found,
        rr.acknowledged_lost,
        tally.refused,
        gap.as_millis(),
        if problems.is_empty() {
            "ok".to_string()
        } else {
            format!("{} PROBLEMS", problems.len())
        }
    );
    assert!(problems.is_empty(), "problems: {problems:#?}");
    assert_eq!(rr.acknowledged_lost, 0);
    // No unavailability beyond one election: an election here takes at most
    // 2 x 500 ms to time out; allow twice as much again for the clients to
    // find the new leader on a loaded two-core CI machine (measured pauses:
    // docs/reliability.md).
    assert!(
        gap <= Duration::from_secs(3),
        "writes paused for {} ms during the membership changes",
        gap.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_are_checked_and_refused_clearly() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(Options {
        secure: true,
        ..Default::default()
    })
    .await;
    let admin = cluster.client();

    // Only administrators change the membership.
    let node = cluster.client_as("node-wn1");
    let e = node
        .call(|mut c| async move {
            c.member_add(MemberAddRequest {
                id: 9,
                address: "127.0.0.1:9".into(),
            })
            .await
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("membership"), "{e:?}");

    // Bad input: named, nothing changed.
    let err = cluster
        .rkubectl(None, &["member", "add", "9", "no-port"])
        .err();
    assert!(err.contains("HOST:PORT"), "{err}");
    let err = cluster
        .rkubectl(None, &["member", "add", "0", "127.0.0.1:9"])
        .err();
    assert!(err.contains("positive"), "{err}");
    let err = cluster
        .rkubectl(None, &["member", "add", "2", "127.0.0.1:9"])
        .err();
    assert!(err.contains("already a voting member"), "{err}");
    let err = cluster.rkubectl(None, &["member", "remove", "7"]).err();
    assert!(err.contains("not a member"), "{err}");
    let st = admin
        .call_idempotent(|mut c| async move { c.cluster_status(ClusterStatusRequest {}).await })
        .await
        .unwrap();
    assert_eq!(st.members.len(), 3, "{st:?}");

    // A fourth replica with its own certificate joins over mTLS.
    let four = cluster.add_replica();
    let addr4 = cluster.replicas[four].addr.clone();
    cluster.rkubectl(None, &["member", "add", "4", &addr4]).ok();
    let listed = cluster.rkubectl(None, &["member", "list"]).ok();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("4 ") && l.contains(" voter ")),
        "{listed}"
    );

    // One change at a time: an add whose replica never answers stays in
    // catch-up; meanwhile another change is refused.
    let pending = tokio::spawn({
        let admin = admin.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(8),
                admin.call(|mut c| async move {
                    c.member_add(MemberAddRequest {
                        id: 5,
                        address: "127.0.0.1:9".into(),
                    })
                    .await
                }),
            )
            .await
        }
    });
    wait_for(
        "replica 5 listed as a learner",
        Duration::from_secs(10),
        || async {
            let m = members_at(&cluster, index_of(&cluster, 1)).await?;
            m.contains(&(5, true)).then_some(())
        },
    )
    .await;
    let e = admin
        .call(|mut c| async move { c.member_remove(MemberRemoveRequest { id: 2 }).await })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("in progress"), "{e:?}");
    assert!(
        pending.await.unwrap().is_err(),
        "the add of a replica that never answers cannot finish"
    );
    // Once the caller gave up, the learner can be removed.
    wait_for("learner 5 removed", Duration::from_secs(90), || async {
        let r = admin
            .call(|mut c| async move { c.member_remove(MemberRemoveRequest { id: 5 }).await })
            .await;
        r.ok()
    })
    .await;
    // Its id is never reused.
    let err = cluster
        .rkubectl(None, &["member", "add", "5", "127.0.0.1:9"])
        .err();
    assert!(err.contains("never reused"), "{err}");

    // Four voters: any one may fail and writes go on.
    let lead = cluster.leader_index().await;
    cluster.kill(lead);
    let ns = Object::from_body(Body::Namespace(Namespace {
        metadata: Some(ObjectMeta {
            name: "after-kill".into(),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let created = wait_for(
        "a write with one of four down",
        Duration::from_secs(20),
        || {
            let (c, ns) = (admin.clone(), ns.clone());
            async move { c.create(ns).await.ok() }
        },
    )
    .await;
    let rev: i64 = created.resource_version().parse().unwrap();
    cluster.wait_revision(four, rev).await;
}
