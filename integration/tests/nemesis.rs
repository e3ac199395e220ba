//! Nemesis runs: concurrent clients against three replicas, each in a
//! network namespace of its own, while a nemesis kills (SIGKILL and
//! restart), pauses (SIGSTOP/SIGCONT) and partitions them (the leader cut
//! off from the majority, one replica cut off, a one-link "bridge" cut,
//! a replica's link down). Every run's history is checked linearizable
//! (`rkube-linearizability`), the committed history must hold every
//! acknowledged write, and every watcher must have received each committed
//! change once, in order.
//!
//! `RKUBE_NEMESIS_RUNS` (default 20) runs of `RKUBE_NEMESIS_SECONDS`
//! (default 60) each; one run in `RKUBE_NEMESIS_SNAPSHOT_EVERY` (default 4)
//! snapshots often. Needs root (namespaces, iptables); without it the
//! test prints `RKUBE-SKIP: nemesis: <why>`.

use rkube_integration::nemesis::{self, Recorded, ReplicaNet, Workload, WorkloadOptions};
use rkube_integration::{wait_for, Cluster, Options};
use rkube_linearizability::kv::KvOp;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Random in [lo, hi) milliseconds.
fn ms(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + rand::random::<u64>() % (hi - lo).max(1))
}

/// The leader as the running replicas see it (None during an election).
async fn leader(cluster: &Cluster) -> Option<usize> {
    for i in 0..cluster.replicas.len() {
        if !cluster.is_running(i) {
            continue;
        }
        if let Some(s) = cluster.status_of(i).await {
            if s.leader_id != 0 {
                return cluster.replicas.iter().position(|r| r.id == s.leader_id);
            }
        }
    }
    None
}

/// What a fault did, to undo it.
enum Undo {
    Restart(Vec<usize>),
    Resume(Vec<usize>),
    Heal,
}

/// Injects one random fault; returns its name and how to undo it.
async fn inject(cluster: &mut Cluster, net: &ReplicaNet) -> (String, Vec<Undo>) {
    let n = cluster.replicas.len();
    let any = rand::random::<usize>() % n;
    let lead = leader(cluster).await.unwrap_or(any);
    let other = |x: usize| (x + 1 + rand::random::<usize>() % (n - 1)) % n;
    match rand::random::<u32>() % 15 {
        0 | 1 => {
            cluster.kill(lead);
            ("kill leader".into(), vec![Undo::Restart(vec![lead])])
        }
        2 => {
            cluster.kill(any);
            ("kill".into(), vec![Undo::Restart(vec![any])])
        }
        3 | 4 => {
            cluster.pause(lead);
            ("pause leader".into(), vec![Undo::Resume(vec![lead])])
        }
        5 => {
            cluster.pause(any);
            ("pause".into(), vec![Undo::Resume(vec![any])])
        }
        6..=8 => {
            // The leader keeps its clients but loses its peers.
            let rest: Vec<usize> = (0..n).filter(|&i| i != lead).collect();
            net.partition(&[vec![lead], rest]);
            ("partition: leader from majority".into(), vec![Undo::Heal])
        }
        9 => {
            let rest: Vec<usize> = (0..n).filter(|&i| i != any).collect();
            net.partition(&[vec![any], rest]);
            ("partition: one replica".into(), vec![Undo::Heal])
        }
        10 => {
            // One link cut: the third replica still sees both.
            let b = other(lead);
            net.cut(lead, b);
            ("partition: bridge".into(), vec![Undo::Heal])
        }
        11 | 12 => {
            net.isolate(lead);
            ("leader link down".into(), vec![Undo::Heal])
        }
        13 => {
            // Quorum lost for a while: a kill and a pause together.
            let b = other(any);
            cluster.kill(any);
            cluster.pause(b);
            (
                "kill + pause (no quorum)".into(),
                vec![Undo::Restart(vec![any]), Undo::Resume(vec![b])],
            )
        }
        _ => {
            // The leader is paused while cut off, then comes back.
            net.partition(&[vec![lead], (0..n).filter(|&i| i != lead).collect()]);
            cluster.pause(lead);
            (
                "partition + pause leader".into(),
                vec![Undo::Resume(vec![lead]), Undo::Heal],
            )
        }
    }
}

fn undo(cluster: &mut Cluster, net: &ReplicaNet, undos: Vec<Undo>) {
    for u in undos {
        match u {
            Undo::Restart(v) => v.into_iter().for_each(|i| cluster.restart(i)),
            Undo::Resume(v) => v.into_iter().for_each(|i| cluster.resume(i)),
            Undo::Heal => net.heal(),
        }
    }
}

#[derive(Default)]
struct Totals {
    runs: u64,
    ops: u64,
    acked: u64,
    unknown: u64,
    refused: u64,
    unknown_committed: u64,
    watch_events: u64,
    faults: BTreeMap<String, u64>,
    check_ms: u128,
    snapshot_runs: u64,
    without_reference: u64,
}

struct RunResult {
    summary: String,
    problems: Vec<String>,
    dump: String,
}

async fn one_run(run: u64, seconds: u64, totals: &mut Totals) -> Option<RunResult> {
    let net = ReplicaNet::create(3)?;
    // One run in four snapshots and compacts often (catch-up by snapshot
    // under faults, watches told "too old"); the others never, so every
    // replica keeps the whole change history to read the committed history
    // back from.
    let every = env_u64("RKUBE_NEMESIS_SNAPSHOT_EVERY", 4).max(1);
    let snapshots = run % every == every - 1;
    let mut cluster = Cluster::start(net.options(Options {
        snapshot_interval: if snapshots { 100 } else { 10_000_000 },
        snapshot_keep: if snapshots { 10 } else { 5_000 },
        history: 10_000_000,
        ..Default::default()
    }))
    .await;
    let ns = format!("nemesis-{run}");
    let workload = Workload::start(
        &cluster,
        WorkloadOptions {
            namespace: ns.clone(),
            ..Default::default()
        },
    )
    .await;
    let started = Instant::now();
    let end_at = started + Duration::from_secs(seconds);
    let mut faults: Vec<String> = Vec::new();
    while Instant::now() + Duration::from_secs(2) < end_at {
        tokio::time::sleep(ms(500, 2500)).await;
        let (name, undos) = inject(&mut cluster, &net).await;
        faults.push(name);
        // Mostly short faults; now and then one long enough for clients'
        // keep-alives to give up on a stopped or cut-off replica.
        let hold = if rand::random::<u32>().is_multiple_of(5) {
            ms(8000, 12000)
        } else {
            ms(1000, 5000)
        };
        tokio::time::sleep(hold.min(end_at.saturating_duration_since(Instant::now()))).await;
        undo(&mut cluster, &net, undos);
    }
    let elapsed = started.elapsed();
    net.heal();
    for i in 0..cluster.replicas.len() {
        cluster.resume(i);
        cluster.start_replica(i);
    }
    cluster.wait_ready().await;
    // Let every replica apply everything before the closing reads.
    wait_for(
        "replicas to agree on the revision",
        Duration::from_secs(30),
        || async {
            let mut revs = Vec::new();
            for i in 0..cluster.replicas.len() {
                revs.push(cluster.status_of(i).await?.revision);
            }
            revs.windows(2).all(|w| w[0] == w[1]).then_some(())
        },
    )
    .await;
    let ops_during = workload.operations();
    let recorded = workload.finish(Duration::from_secs(60)).await;
    let end = recorded.closing_revision();
    let Recorded {
        ops,
        watches,
        tally,
        watch_from,
    } = recorded;
    let reference = nemesis::committed_history(&cluster, &ns, watch_from, end).await;

    let t = Instant::now();
    let mut watch_events = 0;
    let mut relists = 0;
    for w in &watches {
        watch_events += w.segments.iter().map(|s| s.events.len()).sum::<usize>();
        relists += w.segments.iter().filter(|s| s.relisted).count();
    }
    let nemesis::Checked {
        report,
        reference: rr,
        problems,
    } = nemesis::check_recorded(&ops, &watches, &tally, reference.as_deref());
    let installs: usize = (0..cluster.replicas.len())
        .map(|i| cluster.log_of(i).matches("installing snapshot").count())
        .sum();
    let check_ms = t.elapsed().as_millis();

    let unknown = ops
        .iter()
        .filter(|o| o.output == rkube_linearizability::kv::Output::Unknown)
        .count();
    let mut fault_counts: BTreeMap<String, u64> = BTreeMap::new();
    for f in &faults {
        *fault_counts.entry(f.clone()).or_default() += 1;
        *totals.faults.entry(f.clone()).or_default() += 1;
    }
    totals.runs += 1;
    totals.snapshot_runs += snapshots as u64;
    totals.without_reference += reference.is_none() as u64;
    totals.ops += ops.len() as u64;
    let acked = report.acknowledged_writes;
    totals.acked += acked as u64;
    totals.unknown += unknown as u64;
    totals.refused += tally.refused;
    totals.unknown_committed += rr.unknown_committed as u64;
    totals.watch_events += watch_events as u64;
    totals.check_ms += check_ms;
    let summary = format!(
        "nemesis run {run}{}: {:.0} s under faults, {} operations ({} during faults; {} lists, \
         {} patches), {} keys, \
         {} acknowledged writes ({}), {} unknown outcomes ({} committed), \
         {} refused (Unavailable), {} read errors, {} watch events in {} watches ({} relists), {} faults {:?}, \
         checked in {} ms ({} search steps): {}",
        if snapshots {
            format!(" (snapshots: {installs} installed from a leader)")
        } else {
            String::new()
        },
        elapsed.as_secs_f64(),
        ops.len(),
        ops_during,
        tally.lists,
        tally.patches,
        report.keys,
        acked,
        if reference.is_some() {
            format!(
                "{} found committed, {} lost",
                rr.acknowledged_found, rr.acknowledged_lost
            )
        } else {
            "no replica kept the whole change history: checked by the final reads only".into()
        },
        unknown,
        rr.unknown_committed,
        tally.refused,
        tally.read_errors,
        watch_events,
        watches.len(),
        relists,
        faults.len(),
        fault_counts,
        check_ms,
        report.steps,
        if problems.is_empty() {
            "ok".to_string()
        } else {
            format!("{} PROBLEMS", problems.len())
        }
    );
    let mut dump = String::new();
    if !problems.is_empty() {
        let _ = writeln!(
            dump,
            "{summary}\n\nfaults in order: {faults:?}\n\nproblems:"
        );
        for p in &problems {
            let _ = writeln!(dump, "{p}");
        }
        let _ = writeln!(dump, "\nhistory:");
        let mut sorted: Vec<&KvOp> = ops.iter().collect();
        sorted.sort_by_key(|o| o.call);
        for o in sorted {
            let _ = writeln!(dump, "{o}");
        }
        let _ = writeln!(dump, "\ncommitted history:");
        for e in reference.iter().flatten() {
            let _ = writeln!(dump, "{e:?}");
        }
        for (i, _) in cluster.replicas.iter().enumerate() {
            let _ = writeln!(dump, "\n==== replica {} log:\n{}", i + 1, cluster.log_of(i));
        }
    }
    Some(RunResult {
        summary,
        problems,
        dump,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nemesis_runs_are_linearizable_and_lose_no_acknowledged_write() {
    if let Some(why) = nemesis::skip_reason() {
        println!("RKUBE-SKIP: nemesis: {why}");
        return;
    }
    let runs = env_u64("RKUBE_NEMESIS_RUNS", 20);
    let seconds = env_u64("RKUBE_NEMESIS_SECONDS", 60);
    let started = Instant::now();
    let mut totals = Totals::default();
    for run in 0..runs {
        let Some(r) = one_run(run, seconds, &mut totals).await else {
            return;
        };
        println!("{}", r.summary);
        if !r.problems.is_empty() {
            let path = std::env::temp_dir()
                .join(format!("rkube-nemesis-{}-run{run}.txt", std::process::id()));
            std::fs::write(&path, &r.dump).expect("writing the failed run's history");
            let shown: Vec<&String> = r.problems.iter().take(10).collect();
            panic!(
                "nemesis run {run} found {} problems (history, committed history and replica \
                 logs in {}):\n{}",
                r.problems.len(),
                path.display(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    println!(
        "nemesis: {} runs of {} s in {:.0} s: {} operations checked, {} acknowledged writes, \
         0 lost, {} unknown outcomes ({} committed), {} refused, {} watch events checked, \
         faults {:?}, checking took {} ms in all; {} runs with snapshots, {} without a \
         committed history",
        totals.runs,
        seconds,
        started.elapsed().as_secs_f64(),
        totals.ops,
        totals.acked,
        totals.unknown,
        totals.unknown_committed,
        totals.refused,
        totals.watch_events,
        totals.faults,
        totals.check_ms,
        totals.snapshot_runs,
        totals.without_reference
    );
}
