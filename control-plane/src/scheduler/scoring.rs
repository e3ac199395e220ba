//! Scores: which of the feasible nodes a pod goes to. Each part is 0..=100
//! and weighted, as Kubernetes' score plugins are:
//!
//! - least allocated (weight 1): the fraction of the node's cpu and memory
//!   left free after placing the pod, averaged; pods without requests count
//!   100m / 200Mi here ([`super::resources`]); a resource without
//!   allocatable counts as all free;
//! - spreading (weight 2): fewer pods of the pod's controller (its
//!   controller ownerReference uid) on the node scores higher: `100 ×
//!   (max − count) / max` over the feasible nodes;
//! - taint preference (weight 1): fewer untolerated PreferNoSchedule taints
//!   score higher, normalised the same way;
//! - preferred node affinity: the weights of the matching terms, added as
//!   they are.
//!
//! The best total wins; ties are broken uniformly at random.

use super::affinity::preferred_weight;
use super::node_info::{NodeInfo, NodeUsage};
use super::pod_info::PodInfo;
use super::resources::Allocatable;
use super::tolerations::untolerated_preferences;
use rand::Rng;
use rkube_api::proto::Pod;

pub const MAX_SCORE: i64 = 100;
pub const LEAST_ALLOCATED_WEIGHT: i64 = 1;
pub const SPREAD_WEIGHT: i64 = 2;
pub const TAINT_PREFERENCE_WEIGHT: i64 = 1;

/// Free fraction (0..=100) of one resource after adding `want` to `used`.
fn free_fraction(want: i64, used: i64, capacity: Option<i64>) -> i64 {
    match capacity {
        None => MAX_SCORE,
        Some(c) if c <= 0 => 0,
        Some(c) => {
            let used = used.saturating_add(want);
            if used >= c {
                0
            } else {
                match (c - used).checked_mul(MAX_SCORE) {
                    Some(free) => free / c,
                    None => (i128::from(c - used) * i128::from(MAX_SCORE) / i128::from(c)) as i64,
                }
            }
        }
    }
}

/// Least allocated: the mean free fraction of cpu and memory after placing
/// the pod (0..=100).
pub fn least_allocated(pod: &PodInfo, alloc: &Allocatable, usage: &NodeUsage) -> i64 {
    let cpu = free_fraction(
        pod.non_zero.milli_cpu,
        usage.non_zero.milli_cpu,
        alloc.milli_cpu,
    );
    let memory = free_fraction(pod.non_zero.memory, usage.non_zero.memory, alloc.memory);
    (cpu + memory) / 2
}

/// `100 × (max − count) / max`: fewer is better; all 100 when `max` is 0.
pub fn fewer_is_better(count: u32, max: u32) -> i64 {
    if max == 0 {
        MAX_SCORE
    } else {
        MAX_SCORE * i64::from(max - count.min(max)) / i64::from(max)
    }
}

/// What one feasible node scores on its own, before normalising over all
/// of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeScore {
    pub least_allocated: i64,
    /// Pods of the pod's controller already on the node.
    pub same_owner: u32,
    /// Untolerated PreferNoSchedule taints.
    pub untolerated_preferences: u32,
    /// Sum of matching preferred node affinity weights.
    pub preferred: i64,
}

impl NodeScore {
    /// The scores of `node` for `pod`; `same_owner`: pods of the pod's
    /// controller on the node (the caller knows them faster than a lookup
    /// per node; see [`NodeUsage::owner_count`]).
    pub fn of(pod: &Pod, info: &PodInfo, node: &NodeInfo, same_owner: u32) -> NodeScore {
        let n = node.node();
        let untolerated_preferences = if node.facts.soft_taints {
            let tolerations = pod
                .spec
                .as_ref()
                .map(|s| s.tolerations.as_slice())
                .unwrap_or(&[]);
            let taints = n.spec.as_ref().map(|s| s.taints.as_slice()).unwrap_or(&[]);
            untolerated_preferences(tolerations, taints)
        } else {
            0
        };
        NodeScore {
            least_allocated: least_allocated(info, &node.allocatable, &node.usage),
            same_owner,
            untolerated_preferences,
            preferred: preferred_weight(pod, n),
        }
    }
}

/// Pods of the pod's controller on `node`, from the node's usage.
pub fn same_owner(info: &PodInfo, node: &NodeInfo) -> u32 {
    info.owner
        .as_deref()
        .map(|o| node.usage.owner_count(o))
        .unwrap_or(0)
}

/// The weighted totals of feasible nodes' scores.
pub fn totals(scores: &[NodeScore]) -> Vec<i64> {
    let max_owner = scores.iter().map(|s| s.same_owner).max().unwrap_or(0);
    let max_prefs = scores
        .iter()
        .map(|s| s.untolerated_preferences)
        .max()
        .unwrap_or(0);
    scores
        .iter()
        .map(|s| {
            LEAST_ALLOCATED_WEIGHT * s.least_allocated
                + SPREAD_WEIGHT * fewer_is_better(s.same_owner, max_owner)
                + TAINT_PREFERENCE_WEIGHT * fewer_is_better(s.untolerated_preferences, max_prefs)
                + s.preferred
        })
        .collect()
}

/// The index of the highest total; equal ones are chosen between uniformly
/// at random. `None` if there are none.
pub fn pick_best<R: Rng + ?Sized>(totals: &[i64], rng: &mut R) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    let mut ties = 0u32;
    for (i, &t) in totals.iter().enumerate() {
        match best {
            Some((_, b)) if t < b => {}
            Some((_, b)) if t == b => {
                ties += 1;
                if rng.gen_range(0..ties) == 0 {
                    best = Some((i, t));
                }
            }
            _ => {
                best = Some((i, t));
                ties = 1;
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Scores `nodes` (all feasible for `pod`) and picks the best: the pure
/// form of what the scheduler does.
pub fn choose<R: Rng + ?Sized>(
    pod: &Pod,
    info: &PodInfo,
    nodes: &[&NodeInfo],
    rng: &mut R,
) -> Option<usize> {
    let scores: Vec<NodeScore> = nodes
        .iter()
        .map(|n| NodeScore::of(pod, info, n, same_owner(info, n)))
        .collect();
    pick_best(&totals(&scores), rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::resources::{DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST};
    use crate::scheduler::testutil::{node, pod};
    use crate::scheduler::tolerations::PREFER_NO_SCHEDULE;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn least_allocated_is_the_mean_free_fraction() {
        let n = node("n").cpu("4").memory("4Gi").build();
        let used = pod("a").cpu("1").memory("1Gi").on("n").build();
        let info = NodeInfo::from_pods(n, &[&used]);
        // cpu: (4 - 1 - 1) / 4 = 50; memory: (4 - 1 - 2) / 4 = 25.
        let p = pod("p").cpu("1").memory("2Gi").info();
        assert_eq!(least_allocated(&p, &info.allocatable, &info.usage), 37);
        // Over-full counts zero, never negative.
        let huge = pod("p").cpu("8").memory("8Gi").info();
        assert_eq!(least_allocated(&huge, &info.allocatable, &info.usage), 0);
    }

    #[test]
    fn pods_without_requests_count_defaults() {
        let n = node("n").cpu("1").memory("1000Mi").build();
        let info = NodeInfo::from_pods(n, &[]);
        let p = pod("p").info();
        assert_eq!(p.non_zero.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(p.non_zero.memory, DEFAULT_MEMORY_REQUEST);
        // cpu: 900/1000 = 90; memory: 800/1000 = 80.
        assert_eq!(least_allocated(&p, &info.allocatable, &info.usage), 85);
        // Unlimited resources count as free.
        let bare = NodeInfo::from_pods(node("m").build(), &[]);
        assert_eq!(least_allocated(&p, &bare.allocatable, &bare.usage), 100);
    }

    #[test]
    fn emptier_nodes_win() {
        let busy = pod("busy").cpu("3").memory("3Gi").on("a").build();
        let a = NodeInfo::from_pods(node("a").standard().build(), &[&busy]);
        let b = NodeInfo::from_pods(node("b").standard().build(), &[]);
        let p = pod("p").cpu("100m").build();
        assert_eq!(
            choose(&p, &PodInfo::new(&p), &[&a, &b], &mut rng()),
            Some(1)
        );
    }

    #[test]
    fn spreading_prefers_fewer_pods_of_the_same_owner() {
        assert_eq!(fewer_is_better(0, 0), 100);
        assert_eq!(fewer_is_better(0, 2), 100);
        assert_eq!(fewer_is_better(1, 2), 50);
        assert_eq!(fewer_is_better(2, 2), 0);
        // Node a has one pod of rc1 (tiny) and is otherwise emptier than b,
        // which has a big pod of another owner: spreading still picks b.
        let mine = pod("m")
            .cpu("10m")
            .memory("1Mi")
            .owner("rc1")
            .on("a")
            .build();
        let other = pod("o").cpu("1").memory("1Gi").owner("rc2").on("b").build();
        let a = NodeInfo::from_pods(node("a").standard().build(), &[&mine]);
        let b = NodeInfo::from_pods(node("b").standard().build(), &[&other]);
        let p = pod("p").owner("rc1").build();
        let info = PodInfo::new(&p);
        let scores = [
            NodeScore::of(&p, &info, &a, same_owner(&info, &a)),
            NodeScore::of(&p, &info, &b, same_owner(&info, &b)),
        ];
        assert_eq!(scores[0].same_owner, 1);
        assert_eq!(scores[1].same_owner, 0);
        let t = totals(&scores);
        assert!(t[1] > t[0], "{t:?}");
        // Without an owner, there is no spreading: a (emptier) wins.
        let lone = pod("lone").build();
        assert_eq!(
            choose(&lone, &PodInfo::new(&lone), &[&a, &b], &mut rng()),
            Some(0)
        );
    }

    #[test]
    fn preferred_affinity_adds_its_weight() {
        let a = NodeInfo::from_pods(node("a").standard().build(), &[]);
        let b = NodeInfo::from_pods(node("b").standard().label("zone", "z1").build(), &[]);
        let p = pod("p")
            .preferred(30, "zone", "In", &["z1"])
            .preferred(5, "zone", "Exists", &[])
            .build();
        let info = PodInfo::new(&p);
        let scores = [
            NodeScore::of(&p, &info, &a, same_owner(&info, &a)),
            NodeScore::of(&p, &info, &b, same_owner(&info, &b)),
        ];
        assert_eq!(scores[1].preferred, 35);
        let t = totals(&scores);
        assert_eq!(t[1] - t[0], 35);
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let a = NodeInfo::from_pods(
            node("a")
                .standard()
                .taint("soft", "", PREFER_NO_SCHEDULE)
                .build(),
            &[],
        );
        let b = NodeInfo::from_pods(node("b").standard().build(), &[]);
        let p = pod("p").build();
        assert_eq!(
            choose(&p, &PodInfo::new(&p), &[&a, &b], &mut rng()),
            Some(1)
        );
        let tolerant = pod("p").toleration("soft", "Exists", "", "").build();
        let info = PodInfo::new(&tolerant);
        let t = totals(&[
            NodeScore::of(&tolerant, &info, &a, same_owner(&info, &a)),
            NodeScore::of(&tolerant, &info, &b, same_owner(&info, &b)),
        ]);
        assert_eq!(t[0], t[1]);
    }

    #[test]
    fn ties_are_broken_at_random() {
        let mut r = rng();
        assert_eq!(pick_best(&[], &mut r), None);
        assert_eq!(pick_best(&[1, 5, 3], &mut r), Some(1));
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            seen[pick_best(&[7, 9, 9, 9], &mut r).unwrap()] += 1;
        }
        assert_eq!(seen[0], 0);
        for &n in &seen[1..] {
            assert!((1000..1700).contains(&n), "{seen:?}");
        }
    }
}
