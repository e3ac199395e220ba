//! One scheduling decision over the cache: filter nodes, score the feasible
//! ones, pick the best.
//!
//! Large clusters are sampled, as Kubernetes does
//! (`percentageOfNodesToScore`): the search stops once it has found
//! [`feasible_nodes_to_find`] feasible nodes — all of them below 100 nodes;
//! above, `max(5, 50 − nodes/125)` percent, but never fewer than 100 (so
//! 10% = 500 of 5,000 nodes). Each search starts where the previous one
//! stopped, so every node gets its turn. A pod that fits nowhere has been
//! checked against every node, so its diagnosis is complete.
//!
//! A pod whose required affinity pins node names (DaemonSet pods) is
//! checked against those nodes only; the others count as not matching its
//! affinity.

use super::affinity::candidate_node_names;
use super::cache::Cache;
use super::diagnosis::Diagnosis;
use super::filters::{run_filters, Reason};
use super::node_info::NodeInfo;
use super::pod_info::PodInfo;
use super::scoring::{pick_best, totals, NodeScore};
use rand::Rng;
use rkube_api::proto::Pod;

/// Below this many nodes, all are checked; above, never fewer.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The smallest share of a large cluster checked, in percent.
pub const MIN_PERCENTAGE_OF_NODES: usize = 5;

/// How many feasible nodes a search looks for in a cluster of `nodes`.
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes <= MIN_FEASIBLE_NODES_TO_FIND {
        return nodes;
    }
    let percentage = 50usize
        .saturating_sub(nodes / 125)
        .max(MIN_PERCENTAGE_OF_NODES);
    (nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Chooses a node for `pod` (`info` = `PodInfo::new(pod)`), or says why
/// none fits. Does not change what the cache counts (the caller assumes the
/// pod on the chosen node), only where the next search starts.
pub fn schedule<R: Rng + ?Sized>(
    cache: &mut Cache,
    pod: &Pod,
    info: &PodInfo,
    rng: &mut R,
) -> Result<String, Diagnosis> {
    let total = cache.node_count();
    let mut diagnosis = Diagnosis::new(total);
    if total == 0 {
        return Err(diagnosis);
    }
    let mut feasible: Vec<usize> = Vec::new();
    let mut check = |i: usize, node: &NodeInfo, diagnosis: &mut Diagnosis| -> usize {
        match run_filters(pod, info, node) {
            Ok(()) => feasible.push(i),
            Err(reasons) => diagnosis.add(reasons),
        }
        feasible.len()
    };
    if let Some(names) = candidate_node_names(pod) {
        let mut checked = 0;
        for name in &names {
            if let Some(i) = cache.node_index(name) {
                checked += 1;
                check(i, &cache.nodes()[i], &mut diagnosis);
            }
        }
        diagnosis.add_n(Reason::NodeAffinity, total - checked);
    } else {
        let want = feasible_nodes_to_find(total);
        let start = cache.next_start % total;
        let mut checked = 0;
        let nodes = cache.nodes();
        while checked < total {
            let i = (start + checked) % total;
            checked += 1;
            if check(i, &nodes[i], &mut diagnosis) >= want {
                break;
            }
        }
        cache.next_start = (start + checked) % total;
    }
    if feasible.is_empty() {
        return Err(diagnosis);
    }
    let nodes = cache.nodes();
    let owners = info.owner.as_deref().and_then(|o| cache.owner_counts(o));
    let scores: Vec<NodeScore> = feasible
        .iter()
        .map(|&i| {
            let same_owner = owners.and_then(|m| m.get(&i)).copied().unwrap_or(0);
            NodeScore::of(pod, info, &nodes[i], same_owner)
        })
        .collect();
    let best = pick_best(&totals(&scores), rng).expect("feasible is not empty");
    Ok(nodes[feasible[best]].name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use crate::scheduler::tolerations::NO_SCHEDULE;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashSet;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(42)
    }

    /// Schedules and assumes, as the scheduler loop does.
    fn place(c: &mut Cache, p: &Pod, r: &mut StdRng) -> Result<String, String> {
        let info = PodInfo::new(p);
        let key = format!("default/{}", p.metadata.as_ref().unwrap().name);
        let uid = p.metadata.as_ref().unwrap().uid.clone();
        match schedule(c, p, &info, r) {
            Ok(n) => {
                c.assume(&key, &uid, &n, info);
                Ok(n)
            }
            Err(d) => Err(d.message()),
        }
    }

    #[test]
    fn sample_sizes() {
        assert_eq!(feasible_nodes_to_find(0), 0);
        assert_eq!(feasible_nodes_to_find(3), 3);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(101), 100);
        assert_eq!(feasible_nodes_to_find(400), 188);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
    }

    #[test]
    fn three_rc_pods_over_three_equal_nodes_get_one_node_each() {
        for seed in 0..20 {
            let mut c = Cache::new();
            for n in ["wn1", "wn2", "wn3"] {
                c.set_node(node(n).standard().object());
            }
            let mut r = StdRng::seed_from_u64(seed);
            let mut used = HashSet::new();
            for i in 0..3 {
                let p = pod(&format!("rc-{i}")).owner("rc-uid").build();
                used.insert(place(&mut c, &p, &mut r).unwrap());
            }
            assert_eq!(used.len(), 3, "seed {seed}: {used:?}");
        }
    }

    #[test]
    fn consecutive_pods_do_not_overcommit() {
        let mut c = Cache::new();
        for n in ["a", "b"] {
            c.set_node(node(n).cpu("1").memory("1Gi").pods("10").object());
        }
        let mut r = rng();
        let mut per_node = std::collections::HashMap::new();
        for i in 0..4 {
            let p = pod(&format!("p{i}")).cpu("500m").build();
            *per_node
                .entry(place(&mut c, &p, &mut r).unwrap())
                .or_insert(0) += 1;
        }
        assert_eq!(per_node.get("a"), Some(&2));
        assert_eq!(per_node.get("b"), Some(&2));
        let p = pod("p5").cpu("500m").build();
        assert_eq!(
            place(&mut c, &p, &mut r),
            Err("0/2 nodes are available: 2 Insufficient cpu.".into())
        );
    }

    #[test]
    fn unschedulable_diagnosis_covers_every_node() {
        let mut c = Cache::new();
        c.set_node(node("cordoned").object());
        c.set_node(node("cordoned").unschedulable().object());
        c.set_node(node("other-zone").label("zone", "b").object());
        c.set_node(node("no-zone").object());
        let p = pod("p").node_selector("zone", "a").build();
        assert_eq!(
            place(&mut c, &p, &mut rng()),
            Err("0/3 nodes are available: 1 node(s) were unschedulable, \
                 2 node(s) didn't match Pod's node affinity/selector."
                .into())
        );
        assert_eq!(
            place(&mut Cache::new(), &p, &mut rng()),
            Err("no nodes available to schedule pods".into())
        );
    }

    #[test]
    fn pinned_pods_look_at_their_node_only() {
        let mut c = Cache::new();
        for i in 0..10 {
            c.set_node(node(&format!("n{i}")).object());
        }
        let p = pod("ds-1").pinned_to("n7").build();
        assert_eq!(place(&mut c, &p, &mut rng()), Ok("n7".into()));
        c.set_node(node("n3").taint("dedicated", "x", NO_SCHEDULE).object());
        let p = pod("ds-2").pinned_to("n3").build();
        assert_eq!(
            place(&mut c, &p, &mut rng()),
            Err("0/10 nodes are available: \
                 1 node(s) had untolerated taint {dedicated: x}, \
                 9 node(s) didn't match Pod's node affinity/selector."
                .into())
        );
        let p = pod("ds-3").pinned_to("missing").build();
        assert_eq!(
            place(&mut c, &p, &mut rng()),
            Err("0/10 nodes are available: \
                 10 node(s) didn't match Pod's node affinity/selector."
                .into())
        );
    }

    #[test]
    fn large_clusters_are_sampled_in_rotation() {
        let mut c = Cache::new();
        for i in 0..1000 {
            c.set_node(node(&format!("n{i:04}")).standard().object());
        }
        let p = pod("p").build();
        let info = PodInfo::new(&p);
        let mut r = rng();
        schedule(&mut c, &p, &info, &mut r).unwrap();
        assert_eq!(c.next_start, 420);
        schedule(&mut c, &p, &info, &mut r).unwrap();
        assert_eq!(c.next_start, 840);
        schedule(&mut c, &p, &info, &mut r).unwrap();
        assert_eq!(c.next_start, 260, "wraps around");
    }

    #[test]
    fn sampling_skips_infeasible_nodes() {
        let mut c = Cache::new();
        // 200 nodes: 100 to find. Only the last 10 fit.
        for i in 0..200 {
            let n = node(&format!("n{i:03}")).standard();
            let n = if i < 190 { n.label("full", "yes") } else { n };
            c.set_node(n.object());
        }
        let p = pod("p").required("full", "DoesNotExist", &[]).build();
        let got = place(&mut c, &p, &mut rng()).unwrap();
        assert!(got.as_str() >= "n190", "{got}");
    }

    #[test]
    fn many_pods_spread_over_many_nodes() {
        let mut c = Cache::new();
        for i in 0..50 {
            c.set_node(node(&format!("n{i}")).standard().object());
        }
        let mut r = rng();
        let mut per_node = std::collections::HashMap::new();
        for i in 0..500 {
            let p = pod(&format!("p{i}"))
                .cpu("100m")
                .memory("100Mi")
                .owner("rs")
                .build();
            *per_node
                .entry(place(&mut c, &p, &mut r).unwrap())
                .or_insert(0u32) += 1;
        }
        assert_eq!(per_node.len(), 50);
        assert!(per_node.values().all(|&n| n == 10), "{per_node:?}");
    }

    /// Decision rate with 5,000 nodes (run in release with `--ignored
    /// --nocapture`): filters, scores and assumptions only.
    #[test]
    #[ignore]
    fn decision_rate_with_5000_nodes() {
        let mut c = Cache::new();
        for i in 0..5000 {
            c.set_node(node(&format!("node-{i:05}")).standard().object());
        }
        let pods: Vec<Pod> = (0..50_000)
            .map(|i| {
                pod(&format!("p{i}"))
                    .cpu("10m")
                    .memory("10Mi")
                    .owner(&format!("rs-{}", i % 100))
                    .build()
            })
            .collect();
        let mut r = rng();
        let t = std::time::Instant::now();
        for p in &pods {
            place(&mut c, p, &mut r).unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{} pods over 5000 nodes in {secs:.2} s: {:.0} decisions/s",
            pods.len(),
            pods.len() as f64 / secs
        );
    }
}
