//! The scheduler's cache: every node with the running usage of the pods
//! assigned to it, kept up to date from pod and node notices, so that a
//! decision looks only at nodes, never at all pods.
//!
//! It also remembers the scheduler's own decisions (*assumed* pods): a pod
//! is added to its node's usage the moment it is chosen, before the bind is
//! written, and stays there until the pod informer shows it bound (then it
//! is simply confirmed), the bind fails (then it is forgotten), or, as a
//! last resort, a while after a successful bind the informer never
//! reflected ([`Cache::expire`]). Without that, consecutive pods would all
//! see the same free node and pile onto it.
//!
//! Pods bound to a node the cache has no Node for yet are counted anyway,
//! and their usage moves onto the node when it appears.
//!
//! Besides each node's usage, an index from controller uid to the nodes
//! holding its pods lets spreading find a pod's siblings with one lookup per
//! decision rather than one per node.

use super::filters::ready_status;
use super::node_info::{NodeInfo, NodeUsage};
use super::pod_info::{is_active, node_name, pod_uid, PodInfo};
use rkube_api::proto::{object::Kind as Body, Node, Pod, Taint};
use rkube_api::Object;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where an assumed pod's bind is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assumed {
    /// The bind has not answered yet.
    Binding,
    /// The bind succeeded at this instant; the informer has not shown it.
    Bound(Instant),
}

#[derive(Clone, Debug)]
struct PodEntry {
    uid: String,
    node: String,
    info: PodInfo,
    /// `None` once the informer shows the pod bound.
    assumed: Option<Assumed>,
}

#[derive(Default)]
pub struct Cache {
    /// Nodes that exist, in no particular order.
    nodes: Vec<NodeInfo>,
    /// Node name → index in `nodes`.
    index: HashMap<String, usize>,
    /// Usage on nodes the cache has no Node object for.
    orphans: HashMap<String, NodeUsage>,
    /// Pods counted somewhere, by `namespace/name`.
    pods: HashMap<String, PodEntry>,
    /// Controller uid → (index in `nodes` → its pods there), for existing
    /// nodes: spreading looks up one small map per decision instead of one
    /// per node.
    owners: HashMap<String, HashMap<usize, u32>>,
    /// Where the next sampled search starts (rotates over all nodes).
    pub(crate) next_start: usize,
}

fn as_node(o: &Object) -> Option<&Node> {
    match o.kind.as_ref() {
        Some(Body::Node(n)) => Some(n),
        _ => None,
    }
}

/// Whether a node change can make an unschedulable pod schedulable (or the
/// reverse): what it means for pending pods to be retried.
pub fn node_change_matters(old: &Node, new: &Node) -> bool {
    fn labels(n: &Node) -> Option<&HashMap<String, String>> {
        n.metadata.as_ref().map(|m| &m.labels)
    }
    fn spec(n: &Node) -> Option<(bool, &Vec<Taint>)> {
        n.spec.as_ref().map(|s| (s.unschedulable, &s.taints))
    }
    fn alloc(n: &Node) -> Option<&HashMap<String, String>> {
        n.status.as_ref().map(|s| &s.allocatable)
    }
    labels(old) != labels(new)
        || spec(old) != spec(new)
        || alloc(old) != alloc(new)
        || ready_status(old) != ready_status(new)
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    // ------------------------------------------------------------ nodes

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Adds or updates a node. True when the change can affect where
    /// pending pods fit (a new node; readiness, cordon, labels, taints or
    /// allocatable changed).
    pub fn set_node(&mut self, object: Arc<Object>) -> bool {
        let Some(node) = as_node(&object) else {
            return false;
        };
        let name = object.name().to_string();
        if let Some(&i) = self.index.get(&name) {
            let matters = node_change_matters(self.nodes[i].node(), node);
            self.nodes[i].set_object(object);
            return matters;
        }
        let usage = self.orphans.remove(&name).unwrap_or_default();
        if let Some(info) = NodeInfo::new(object, usage) {
            let i = self.nodes.len();
            self.index.insert(name, i);
            self.nodes.push(info);
            self.index_owners(i, true);
        }
        true
    }

    /// Adds (or removes) the owner counts of node `i` to the owner index.
    fn index_owners(&mut self, i: usize, add: bool) {
        for (owner, &n) in &self.nodes[i].usage.owners {
            if add {
                self.owners.entry(owner.clone()).or_default().insert(i, n);
            } else if let Some(m) = self.owners.get_mut(owner) {
                m.remove(&i);
                if m.is_empty() {
                    self.owners.remove(owner);
                }
            }
        }
    }

    /// Removes a node; pods still assigned to it keep counting there.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let last = self.nodes.len() - 1;
        self.index_owners(i, false);
        if i != last {
            self.index_owners(last, false);
        }
        let info = self.nodes.swap_remove(i);
        if i != last {
            self.index.insert(self.nodes[i].name().to_string(), i);
            self.index_owners(i, true);
        }
        if !info.usage.is_empty() {
            self.orphans.insert(name.to_string(), info.usage);
        }
    }

    /// Pods of controller `owner` per node (by index in [`Cache::nodes`]).
    pub fn owner_counts(&self, owner: &str) -> Option<&HashMap<usize, u32>> {
        self.owners.get(owner)
    }

    /// Replaces all nodes with `nodes` (after a relist).
    pub fn rebuild_nodes<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Arc<Object>>) {
        let mut seen = std::collections::HashSet::new();
        for o in nodes {
            if as_node(o).is_some() {
                seen.insert(o.name().to_string());
                self.set_node(o.clone());
            }
        }
        let gone: Vec<String> = self
            .index
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            self.remove_node(&n);
        }
    }

    // ------------------------------------------------------------ pods

    /// Adds (or removes) `entry` to its node's usage and the owner index.
    fn account(&mut self, entry: &PodEntry, add: bool) {
        let Some(&i) = self.index.get(&entry.node) else {
            let usage = self.orphans.entry(entry.node.clone()).or_default();
            if add {
                usage.add(&entry.info);
            } else {
                usage.remove(&entry.info);
                if usage.is_empty() {
                    self.orphans.remove(&entry.node);
                }
            }
            return;
        };
        if add {
            self.nodes[i].usage.add(&entry.info);
        } else {
            self.nodes[i].usage.remove(&entry.info);
        }
        if let Some(owner) = &entry.info.owner {
            let n = self.nodes[i].usage.owner_count(owner);
            if n > 0 {
                self.owners.entry(owner.clone()).or_default().insert(i, n);
            } else if let Some(m) = self.owners.get_mut(owner) {
                m.remove(&i);
                if m.is_empty() {
                    self.owners.remove(owner);
                }
            }
        }
    }

    fn insert(&mut self, key: &str, entry: PodEntry) {
        self.account(&entry, true);
        self.pods.insert(key.to_string(), entry);
    }

    fn remove(&mut self, key: &str) -> Option<PodEntry> {
        let e = self.pods.remove(key)?;
        self.account(&e, false);
        Some(e)
    }

    /// Pods counted (bound or assumed).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The node a pod is counted on, and whether it is only assumed there.
    pub fn pod_node(&self, key: &str) -> Option<(&str, Option<Assumed>)> {
        self.pods.get(key).map(|e| (e.node.as_str(), e.assumed))
    }

    /// Applies a pod's new state from the informer. True when it stopped
    /// using resources somewhere (deleted, finished, moved): pending pods
    /// may fit now.
    pub fn update_pod(&mut self, key: &str, pod: &Pod) -> bool {
        let uid = pod_uid(pod);
        let node = node_name(pod);
        let counts = is_active(pod) && !node.is_empty();
        match self.pods.get_mut(key) {
            Some(e) if counts && e.uid == uid && e.node == node => {
                // Already counted here (spec is immutable once bound); a
                // bind we assumed is now visible.
                e.assumed = None;
                false
            }
            // Our bind is in flight or not yet visible: keep counting it.
            Some(e) if e.assumed.is_some() && e.uid == uid && is_active(pod) && node.is_empty() => {
                false
            }
            Some(_) => {
                self.remove(key);
                if counts {
                    self.add_bound(key, pod);
                }
                true
            }
            None => {
                if counts {
                    self.add_bound(key, pod);
                }
                false
            }
        }
    }

    fn add_bound(&mut self, key: &str, pod: &Pod) {
        let entry = PodEntry {
            uid: pod_uid(pod).to_string(),
            node: node_name(pod).to_string(),
            info: PodInfo::new(pod),
            assumed: None,
        };
        self.insert(key, entry);
    }

    /// A pod was deleted. True when it was counted somewhere.
    pub fn delete_pod(&mut self, key: &str, uid: &str) -> bool {
        match self.pods.get(key) {
            Some(e) if e.uid == uid || uid.is_empty() => self.remove(key).is_some(),
            _ => false,
        }
    }

    /// Replaces all pods with `pods` (after a relist), keeping our
    /// assumptions about listed pods that do not show their bind yet.
    pub fn rebuild_pods<'a>(&mut self, pods: impl IntoIterator<Item = (String, &'a Pod)>) {
        let old = std::mem::take(&mut self.pods);
        for n in &mut self.nodes {
            n.usage = NodeUsage::default();
        }
        self.orphans.clear();
        self.owners.clear();
        for (key, pod) in pods {
            let uid = pod_uid(pod);
            let node = node_name(pod);
            if is_active(pod) && !node.is_empty() {
                self.add_bound(&key, pod);
            } else if is_active(pod) {
                if let Some(e) = old.get(&key) {
                    if e.assumed.is_some() && e.uid == uid {
                        self.insert(&key, e.clone());
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ assumptions

    /// Counts `info` on `node` now, ahead of the bind.
    pub fn assume(&mut self, key: &str, uid: &str, node: &str, info: PodInfo) {
        self.remove(key);
        self.insert(
            key,
            PodEntry {
                uid: uid.to_string(),
                node: node.to_string(),
                info,
                assumed: Some(Assumed::Binding),
            },
        );
    }

    /// Whether the pod (this uid) is already counted on a node: assumed,
    /// or bound.
    pub fn is_placed(&self, key: &str, uid: &str) -> bool {
        self.pods.get(key).is_some_and(|e| e.uid == uid)
    }

    /// The bind of an assumed pod succeeded.
    pub fn finish_binding(&mut self, key: &str, uid: &str) {
        if let Some(e) = self.pods.get_mut(key) {
            if e.uid == uid && e.assumed.is_some() {
                e.assumed = Some(Assumed::Bound(Instant::now()));
            }
        }
    }

    /// The bind of an assumed pod failed: stop counting it. True if it was
    /// still assumed (and now frees its resources).
    pub fn forget(&mut self, key: &str, uid: &str) -> bool {
        match self.pods.get(key) {
            Some(e) if e.uid == uid && e.assumed.is_some() => self.remove(key).is_some(),
            _ => false,
        }
    }

    /// Forgets assumed pods bound more than `ttl` ago that the informer
    /// never showed bound. Returns how many.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let stale: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| {
                matches!(e.assumed, Some(Assumed::Bound(t)) if now.saturating_duration_since(t) > ttl)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            self.remove(k);
        }
        stale.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use crate::scheduler::tolerations::NO_SCHEDULE;

    fn cache_with(nodes: &[&str]) -> Cache {
        let mut c = Cache::new();
        for n in nodes {
            assert!(c.set_node(node(n).standard().object()));
        }
        c
    }

    /// The owner index agrees with the nodes' usage; the name index with
    /// the nodes.
    fn check(c: &Cache) {
        let mut want: HashMap<String, HashMap<usize, u32>> = HashMap::new();
        for (i, n) in c.nodes.iter().enumerate() {
            assert_eq!(c.index.get(n.name()), Some(&i));
            for (o, &k) in &n.usage.owners {
                want.entry(o.clone()).or_default().insert(i, k);
            }
        }
        assert_eq!(c.index.len(), c.nodes.len());
        assert_eq!(c.owners, want);
    }

    fn cpu_on(c: &Cache, n: &str) -> i64 {
        c.node(n).unwrap().usage.requested.milli_cpu
    }

    #[test]
    fn bound_pods_count_on_their_node() {
        let mut c = cache_with(&["n1", "n2"]);
        let p = pod("p").cpu("500m").on("n1").build();
        assert!(!c.update_pod("default/p", &p));
        assert_eq!(cpu_on(&c, "n1"), 500);
        assert_eq!(c.node("n1").unwrap().usage.pods, 1);
        // A status change does not double count.
        assert!(!c.update_pod("default/p", &p));
        assert_eq!(c.node("n1").unwrap().usage.pods, 1);
        // Finishing frees it.
        let done = pod("p").cpu("500m").on("n1").phase("Succeeded").build();
        assert!(c.update_pod("default/p", &done));
        assert_eq!(cpu_on(&c, "n1"), 0);
        assert_eq!(c.pod_count(), 0);
    }

    #[test]
    fn unbound_pods_do_not_count_and_deletion_frees() {
        let mut c = cache_with(&["n1"]);
        assert!(!c.update_pod("default/p", &pod("p").cpu("1").build()));
        assert_eq!(c.pod_count(), 0);
        let p = pod("p").cpu("1").on("n1").build();
        c.update_pod("default/p", &p);
        assert!(!c.delete_pod("default/p", "other-uid"));
        assert!(c.delete_pod("default/p", "uid-p"));
        assert_eq!(cpu_on(&c, "n1"), 0);
        let going = pod("q").cpu("1").on("n1").build();
        c.update_pod("default/q", &going);
        assert!(c.update_pod("default/q", &pod("q").cpu("1").on("n1").deleting().build()));
        assert_eq!(cpu_on(&c, "n1"), 0);
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut c = cache_with(&["n1", "n2"]);
        let p = pod("p").cpu("1").build();
        c.assume("default/p", "uid-p", "n1", PodInfo::new(&p));
        assert!(c.is_placed("default/p", "uid-p"));
        assert!(!c.is_placed("default/p", "another-uid"));
        assert_eq!(cpu_on(&c, "n1"), 1000);
        // The informer still shows it unbound (e.g. our own condition
        // update): the assumption stays.
        assert!(!c.update_pod("default/p", &p));
        assert_eq!(cpu_on(&c, "n1"), 1000);
        assert_eq!(
            c.pod_node("default/p"),
            Some(("n1", Some(Assumed::Binding)))
        );
        c.finish_binding("default/p", "uid-p");
        assert!(matches!(
            c.pod_node("default/p"),
            Some(("n1", Some(Assumed::Bound(_))))
        ));
        // The bind shows up: confirmed, still counted once.
        assert!(!c.update_pod("default/p", &pod("p").cpu("1").on("n1").build()));
        assert_eq!(c.pod_node("default/p"), Some(("n1", None)));
        assert_eq!(cpu_on(&c, "n1"), 1000);
        assert!(
            !c.forget("default/p", "uid-p"),
            "confirmed pods are not forgotten"
        );

        let q = pod("q").cpu("2").build();
        c.assume("default/q", "uid-q", "n2", PodInfo::new(&q));
        assert!(c.forget("default/q", "uid-q"));
        assert_eq!(cpu_on(&c, "n2"), 0);
        assert!(!c.is_placed("default/q", "uid-q"));
    }

    #[test]
    fn a_bind_elsewhere_replaces_the_assumption() {
        let mut c = cache_with(&["n1", "n2"]);
        let p = pod("p").cpu("1").build();
        c.assume("default/p", "uid-p", "n1", PodInfo::new(&p));
        assert!(c.update_pod("default/p", &pod("p").cpu("1").on("n2").build()));
        assert_eq!(cpu_on(&c, "n1"), 0);
        assert_eq!(cpu_on(&c, "n2"), 1000);
    }

    #[test]
    fn expiry_drops_only_old_finished_binds() {
        let mut c = cache_with(&["n1"]);
        let p = pod("p").cpu("1").build();
        c.assume("default/p", "uid-p", "n1", PodInfo::new(&p));
        c.assume("default/q", "uid-q", "n1", pod("q").cpu("1").info());
        c.finish_binding("default/p", "uid-p");
        let ttl = Duration::from_secs(30);
        assert_eq!(c.expire(Instant::now(), ttl), 0);
        assert_eq!(c.expire(Instant::now() + Duration::from_secs(31), ttl), 1);
        assert_eq!(cpu_on(&c, "n1"), 1000, "q is still binding");
    }

    #[test]
    fn pods_on_unknown_nodes_move_in_when_the_node_appears() {
        let mut c = Cache::new();
        c.update_pod("default/p", &pod("p").cpu("1").on("late").build());
        assert!(c.node("late").is_none());
        assert!(c.set_node(node("late").object()));
        assert_eq!(cpu_on(&c, "late"), 1000);
        c.remove_node("late");
        assert_eq!(c.node_count(), 0);
        c.set_node(node("late").object());
        assert_eq!(
            cpu_on(&c, "late"),
            1000,
            "usage survives the node's absence"
        );
        c.remove_node("late");
        assert!(c.delete_pod("default/p", "uid-p"));
        assert!(c.orphans.is_empty());
    }

    #[test]
    fn node_changes_that_matter() {
        let mut c = cache_with(&["n1"]);
        // Same node again (e.g. a heartbeat): no.
        assert!(!c.set_node(node("n1").standard().object()));
        assert!(c.set_node(node("n1").standard().label("a", "b").object()));
        assert!(c.set_node(
            node("n1")
                .standard()
                .label("a", "b")
                .unschedulable()
                .object()
        ));
        assert!(c.set_node(
            node("n1")
                .standard()
                .label("a", "b")
                .unschedulable()
                .taint("t", "", NO_SCHEDULE)
                .object()
        ));
        assert!(c.set_node(node("n1").object()));
        assert!(c.set_node(node("n1").ready("False").object()));
        assert!(!c.set_node(node("n1").ready("False").object()));
        assert!(c.set_node(node("n1").object()));
    }

    #[test]
    fn removing_nodes_keeps_the_index_straight() {
        let mut c = cache_with(&["a", "b", "c", "d"]);
        c.remove_node("a");
        c.remove_node("zzz");
        assert_eq!(c.node_count(), 3);
        for n in ["b", "c", "d"] {
            assert_eq!(c.node(n).unwrap().name(), n);
        }
        c.rebuild_nodes(&[node("c").object(), node("e").object()]);
        let mut names: Vec<&str> = c.nodes().iter().map(|n| n.name()).collect();
        names.sort();
        assert_eq!(names, ["c", "e"]);
        assert_eq!(c.node_index("e").map(|i| c.nodes()[i].name()), Some("e"));
    }

    #[test]
    fn rebuild_keeps_pending_assumptions() {
        let mut c = cache_with(&["n1", "n2"]);
        let p = pod("p").cpu("1").build();
        let q = pod("q").cpu("1").build();
        let gone = pod("gone").cpu("1").build();
        c.assume("default/p", "uid-p", "n1", PodInfo::new(&p));
        c.assume("default/q", "uid-q", "n1", PodInfo::new(&q));
        c.assume("default/gone", "uid-gone", "n1", PodInfo::new(&gone));
        c.update_pod("default/old", &pod("old").cpu("1").on("n2").build());
        let q_bound = pod("q").cpu("1").on("n1").build();
        let other = pod("r").cpu("3").on("n2").build();
        c.rebuild_pods([
            ("default/p".to_string(), &p),
            ("default/q".to_string(), &q_bound),
            ("default/r".to_string(), &other),
        ]);
        assert_eq!(
            c.pod_node("default/p"),
            Some(("n1", Some(Assumed::Binding)))
        );
        assert_eq!(c.pod_node("default/q"), Some(("n1", None)));
        assert_eq!(c.pod_node("default/gone"), None);
        assert_eq!(c.pod_node("default/old"), None);
        assert_eq!(cpu_on(&c, "n1"), 2000);
        assert_eq!(cpu_on(&c, "n2"), 3000);
    }

    #[test]
    fn owner_index_follows_pods_and_nodes() {
        let mut c = cache_with(&["a", "b", "c"]);
        for (k, n) in [("p1", "a"), ("p2", "a"), ("p3", "b"), ("p4", "c")] {
            c.update_pod(&format!("default/{k}"), &pod(k).owner("rs").on(n).build());
        }
        c.update_pod("default/x", &pod("x").owner("other").on("c").build());
        check(&c);
        let count = |c: &Cache, o: &str, n: &str| {
            c.owner_counts(o)
                .and_then(|m| m.get(&c.node_index(n).unwrap()).copied())
                .unwrap_or(0)
        };
        assert_eq!(count(&c, "rs", "a"), 2);
        assert_eq!(count(&c, "other", "c"), 1);
        // Removing "a" moves "c" into its place.
        c.remove_node("a");
        check(&c);
        assert_eq!(count(&c, "other", "c"), 1);
        // "a" comes back with the pods still counted there.
        c.set_node(node("a").standard().object());
        check(&c);
        assert_eq!(count(&c, "rs", "a"), 2);
        c.remove_node("c");
        check(&c);
        c.delete_pod("default/p1", "uid-p1");
        c.delete_pod("default/p2", "uid-p2");
        check(&c);
        assert_eq!(count(&c, "rs", "a"), 0);
        c.assume("default/y", "uid-y", "b", pod("y").owner("rs").info());
        check(&c);
        assert_eq!(count(&c, "rs", "b"), 2);
        c.forget("default/y", "uid-y");
        check(&c);
        let z = pod("z").owner("rs").on("a").build();
        c.rebuild_pods([("default/z".to_string(), &z)]);
        check(&c);
        assert_eq!(count(&c, "rs", "a"), 1);
        assert_eq!(count(&c, "rs", "b"), 0);
        c.rebuild_nodes(&[node("b").object(), node("c").object()]);
        check(&c);
        assert!(c.owner_counts("rs").is_none());
        c.set_node(node("a").object());
        check(&c);
        assert_eq!(count(&c, "rs", "a"), 1);
    }
}
