//! Node podCIDR allocation, like Kubernetes' nodeipam range allocator: the
//! cluster CIDR (`--cluster-cidr`, default 10.244.0.0/16) is cut into
//! blocks of `--node-cidr-mask-size` bits (default /24), and a Node created
//! without `spec.podCIDR` gets the lowest free block.
//!
//! Each claimed block is a marker key (`/registry/podcidrs/10.244.3.0-24`)
//! holding a stub of the Node that owns it, written in the same transaction
//! as the Node with an "absent" compare (as `allocator.rs` does for
//! ClusterIPs), so two concurrent creates can never get the same block on
//! any replica. A Node that brings its own podCIDR keeps it and claims the
//! blocks it overlaps when they are free; it is never refused (hollow nodes
//! pick their own ranges, sometimes the same one twice). A deleted Node
//! releases the markers it owns, or hands each to another Node that still
//! uses that block.

use rkube_api::proto::internal::{compare::Target, op::Op as OpKind, Compare, Op};
use rkube_api::proto::{object::Kind as Body, Node, NodeSpec, ObjectMeta};
use rkube_api::Object;
use std::net::Ipv4Addr;

pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const DEFAULT_NODE_CIDR_MASK_SIZE: u8 = 24;
/// Where the markers live.
pub const MARKER_PREFIX: &str = "/registry/podcidrs/";
/// A node podCIDR overlapping more blocks than this claims none of them
/// (one transaction would otherwise hold thousands of markers).
pub const MAX_CLAIMED_BLOCKS: usize = 256;
/// As Kubernetes: at most 2^16 node ranges in the cluster CIDR.
const MAX_MASK_DIFF: u8 = 16;

/// The cluster CIDR and the size of each node's block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrConfig {
    base: u32,
    prefix: u8,
    node_mask: u8,
}

impl Default for CidrConfig {
    fn default() -> Self {
        CidrConfig::new(DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_CIDR_MASK_SIZE)
            .expect("the default cluster CIDR is valid")
    }
}

/// Parses `a.b.c.d/n` (IPv4 only) into (network address, prefix length),
/// without requiring the host bits to be zero.
pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.trim().split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    Some((u32::from(ip) & mask(len), len))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

fn size(len: u8) -> u64 {
    1u64 << (32 - len as u32)
}

impl CidrConfig {
    /// `cluster_cidr` as `a.b.c.d/n` with its host bits zero; `node_mask`
    /// at least `n`, at most 30, and at most 16 bits longer than `n`.
    pub fn new(cluster_cidr: &str, node_mask: u8) -> Result<CidrConfig, String> {
        let (base, prefix) = parse_cidr(cluster_cidr).ok_or_else(|| {
            format!("--cluster-cidr {cluster_cidr:?} is not an IPv4 CIDR (a.b.c.d/n)")
        })?;
        let given: Ipv4Addr = cluster_cidr
            .split_once('/')
            .and_then(|(ip, _)| ip.parse().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        if u32::from(given) != base {
            return Err(format!(
                "--cluster-cidr {cluster_cidr:?} has host bits set (the network is {}/{prefix})",
                Ipv4Addr::from(base)
            ));
        }
        if node_mask < prefix || node_mask > 30 {
            return Err(format!(
                "--node-cidr-mask-size {node_mask} must be between the cluster CIDR's prefix \
                 length ({prefix}) and 30"
            ));
        }
        if node_mask - prefix > MAX_MASK_DIFF {
            return Err(format!(
                "--node-cidr-mask-size {node_mask} would cut {cluster_cidr} into more than 65536 \
                 node ranges (at most {MAX_MASK_DIFF} bits more than the cluster prefix)"
            ));
        }
        Ok(CidrConfig {
            base,
            prefix,
            node_mask,
        })
    }

    pub fn cluster_cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }

    pub fn node_mask_size(&self) -> u8 {
        self.node_mask
    }

    /// How many node blocks the cluster CIDR holds.
    pub fn blocks(&self) -> u32 {
        1u32 << (self.node_mask - self.prefix)
    }

    /// Block `i` as a CIDR.
    pub fn block_cidr(&self, i: u32) -> String {
        let net = self.base + (i << (32 - self.node_mask as u32));
        format!("{}/{}", Ipv4Addr::from(net), self.node_mask)
    }

    pub fn marker_key(&self, i: u32) -> String {
        let net = self.base + (i << (32 - self.node_mask as u32));
        format!("{MARKER_PREFIX}{}-{}", Ipv4Addr::from(net), self.node_mask)
    }

    /// The blocks `cidr` overlaps (empty when it is not IPv4, lies outside
    /// the cluster CIDR, or overlaps more than [`MAX_CLAIMED_BLOCKS`]).
    pub fn overlapping(&self, cidr: &str) -> Vec<u32> {
        let Some((net, len)) = parse_cidr(cidr) else {
            return Vec::new();
        };
        let (lo, hi) = (net as u64, net as u64 + size(len) - 1);
        let (clo, chi) = (self.base as u64, self.base as u64 + size(self.prefix) - 1);
        let (lo, hi) = (lo.max(clo), hi.min(chi));
        if lo > hi {
            return Vec::new();
        }
        let shift = 32 - self.node_mask as u32;
        let first = ((lo - clo) >> shift) as u32;
        let last = ((hi - clo) >> shift) as u32;
        if (last - first) as usize >= MAX_CLAIMED_BLOCKS {
            return Vec::new();
        }
        (first..=last).collect()
    }

    /// Marker keys of every block the node's podCIDRs overlap.
    pub fn node_keys(&self, spec: &NodeSpec) -> Vec<String> {
        let mut blocks: Vec<u32> = node_cidrs(spec)
            .iter()
            .flat_map(|c| self.overlapping(c))
            .collect();
        blocks.sort_unstable();
        blocks.dedup();
        blocks.into_iter().map(|b| self.marker_key(b)).collect()
    }

    /// The free block to take: the lowest one, or on a retry after a
    /// collision (`attempt` > 0) one of the lowest `attempt + 1` free ones
    /// at random, so that concurrent creators stop racing for the same one.
    pub fn pick(&self, is_claimed: impl Fn(&str) -> bool, attempt: u32, seed: u32) -> Option<u32> {
        let spread = attempt.saturating_add(1);
        let nth = if attempt == 0 { 0 } else { seed % spread };
        let mut last = None;
        let mut seen = 0;
        for i in 0..self.blocks() {
            if is_claimed(&self.marker_key(i)) {
                continue;
            }
            last = Some(i);
            if seen == nth {
                return last;
            }
            seen += 1;
        }
        last
    }
}

/// The node's podCIDRs: `podCIDRs`, else `podCIDR`.
pub fn node_cidrs(spec: &NodeSpec) -> Vec<String> {
    if !spec.pod_cidrs.is_empty() {
        spec.pod_cidrs.clone()
    } else if !spec.pod_cidr.is_empty() {
        vec![spec.pod_cidr.clone()]
    } else {
        Vec::new()
    }
}

/// Makes `podCIDR` and `podCIDRs` agree (`podCIDRs[0]` is `podCIDR`), as
/// Kubernetes keeps them.
pub fn normalize(spec: &mut NodeSpec) {
    if spec.pod_cidr.is_empty() {
        if let Some(first) = spec.pod_cidrs.first() {
            spec.pod_cidr = first.clone();
        }
    } else if spec.pod_cidrs.is_empty() {
        spec.pod_cidrs = vec![spec.pod_cidr.clone()];
    }
}

/// What a marker holds: which Node owns the block.
pub fn marker(owner: &ObjectMeta) -> Object {
    Object::from_body(Body::Node(Node {
        metadata: Some(ObjectMeta {
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// The uid of a marker's owner.
pub fn marker_owner(o: &Object) -> &str {
    o.metadata().map(|m| m.uid.as_str()).unwrap_or("")
}

/// Compares and puts that claim every free block the node's podCIDRs
/// overlap; taken blocks are left to their owner (never an error), with a
/// compare that they still are (a replica behind may show a marker already
/// released). A failed compare means the view was stale or a concurrent
/// claim won: retry.
pub fn claim(
    cfg: &CidrConfig,
    owner: &ObjectMeta,
    spec: &NodeSpec,
    is_claimed: impl Fn(&str) -> bool,
) -> (Vec<Compare>, Vec<Op>) {
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    for key in cfg.node_keys(spec) {
        if is_claimed(&key) {
            compares.push(Compare {
                key,
                target: Some(Target::Present(true)),
            });
            continue;
        }
        compares.push(Compare {
            key: key.clone(),
            target: Some(Target::Absent(true)),
        });
        ops.push(Op {
            key,
            op: Some(OpKind::Put(marker(owner))),
        });
    }
    (compares, ops)
}

/// A marker as read from the store.
pub struct MarkerState {
    pub owner_uid: String,
    pub mod_revision: i64,
}

/// Another Node that uses a block, to hand its marker to.
pub struct Heir {
    pub key: String,
    pub meta: ObjectMeta,
    pub mod_revision: i64,
}

/// Compares and ops for a Node's deletion: every marker of its blocks must
/// be unchanged (so two deletions never both skip or both hand over a
/// block); the ones it owns go to `heir(block key)` (with a compare that
/// the heir still exists) or are deleted.
pub fn release(
    cfg: &CidrConfig,
    node: &ObjectMeta,
    spec: &NodeSpec,
    marker_at: impl Fn(&str) -> Option<MarkerState>,
    heir: impl Fn(&str) -> Option<Heir>,
) -> (Vec<Compare>, Vec<Op>) {
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    for key in cfg.node_keys(spec) {
        let Some(m) = marker_at(&key) else { continue };
        compares.push(Compare {
            key: key.clone(),
            target: Some(Target::ModRevision(m.mod_revision)),
        });
        if m.owner_uid != node.uid {
            continue;
        }
        match heir(&key) {
            Some(h) => {
                compares.push(Compare {
                    key: h.key,
                    target: Some(Target::ModRevision(h.mod_revision)),
                });
                ops.push(Op {
                    key,
                    op: Some(OpKind::Put(marker(&h.meta))),
                });
            }
            None => ops.push(Op {
                key,
                op: Some(OpKind::Delete(true)),
            }),
        }
    }
    (compares, ops)
}

/// The message when no block is left.
pub fn exhausted(cfg: &CidrConfig) -> String {
    format!(
        "spec.podCIDR: no /{} node ranges left in the cluster CIDR {} ({} ranges, all allocated)",
        cfg.node_mask,
        cfg.cluster_cidr(),
        cfg.blocks()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn meta(name: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            uid: uid.into(),
            ..Default::default()
        }
    }

    fn spec(cidr: &str) -> NodeSpec {
        let mut s = NodeSpec {
            pod_cidr: cidr.into(),
            ..Default::default()
        };
        normalize(&mut s);
        s
    }

    #[test]
    fn config_is_checked() {
        let c = CidrConfig::default();
        assert_eq!(c.cluster_cidr(), "10.244.0.0/16");
        assert_eq!(c.blocks(), 256);
        assert_eq!(c.block_cidr(0), "10.244.0.0/24");
        assert_eq!(c.block_cidr(255), "10.244.255.0/24");
        assert_eq!(c.marker_key(3), "/registry/podcidrs/10.244.3.0-24");
        assert!(CidrConfig::new("10.244.0.1/16", 24)
            .unwrap_err()
            .contains("host bits"));
        assert!(CidrConfig::new("10.244.0.0/16", 8).is_err());
        assert!(CidrConfig::new("10.244.0.0/16", 31).is_err());
        assert!(CidrConfig::new("10.0.0.0/8", 25)
            .unwrap_err()
            .contains("65536"));
        assert!(CidrConfig::new("fd00::/64", 80).is_err());
        assert!(CidrConfig::new("nonsense", 24).is_err());
        let small = CidrConfig::new("192.168.0.0/24", 26).unwrap();
        assert_eq!(small.blocks(), 4);
        assert_eq!(small.block_cidr(3), "192.168.0.192/26");
    }

    #[test]
    fn picks_the_lowest_free_block() {
        let c = CidrConfig::default();
        assert_eq!(c.pick(|_| false, 0, 9), Some(0));
        let taken: HashSet<String> = [0, 1, 3].iter().map(|&i| c.marker_key(i)).collect();
        assert_eq!(c.pick(|k| taken.contains(k), 0, 9), Some(2));
        // After a collision: one of the lowest few free ones.
        for seed in 0..20 {
            let b = c.pick(|k| taken.contains(k), 2, seed).unwrap();
            assert!([2, 4, 5].contains(&b), "{b}");
        }
        assert_eq!(c.pick(|_| true, 0, 0), None);
        let small = CidrConfig::new("192.168.0.0/24", 26).unwrap();
        assert_eq!(small.pick(|k| k != small.marker_key(3), 5, 1), Some(3));
    }

    #[test]
    fn overlapping_blocks() {
        let c = CidrConfig::default();
        assert_eq!(c.overlapping("10.244.7.0/24"), vec![7]);
        assert_eq!(c.overlapping("10.244.7.128/25"), vec![7]);
        assert_eq!(c.overlapping("10.244.6.0/23"), vec![6, 7]);
        assert_eq!(c.overlapping("10.245.0.0/24"), Vec::<u32>::new());
        assert_eq!(c.overlapping("fd00::/64"), Vec::<u32>::new());
        assert_eq!(c.overlapping("garbage"), Vec::<u32>::new());
        // Larger than the cluster CIDR: clipped.
        assert_eq!(c.overlapping("10.0.0.0/8").len(), 256);
        assert_eq!(c.overlapping("10.244.0.0/17").len(), 128);
        // Too many blocks to claim in one transaction: none.
        let big = CidrConfig::new("10.0.0.0/8", 24).unwrap();
        assert!(big.overlapping("10.16.0.0/12").is_empty());
        assert_eq!(big.overlapping("10.16.0.0/16").len(), 256);
    }

    #[test]
    fn normalize_keeps_both_fields_in_step() {
        let s = spec("10.244.1.0/24");
        assert_eq!(s.pod_cidrs, vec!["10.244.1.0/24".to_string()]);
        let mut s = NodeSpec {
            pod_cidrs: vec!["10.244.2.0/24".into()],
            ..Default::default()
        };
        normalize(&mut s);
        assert_eq!(s.pod_cidr, "10.244.2.0/24");
        let mut s = NodeSpec::default();
        normalize(&mut s);
        assert!(s.pod_cidr.is_empty() && s.pod_cidrs.is_empty());
    }

    #[test]
    fn claims_free_blocks_only() {
        let c = CidrConfig::default();
        let (cmp, ops) = claim(&c, &meta("wn1", "u1"), &spec("10.244.6.0/23"), |k| {
            k == c.marker_key(6)
        });
        // The taken block must still be taken; the free one is claimed.
        assert_eq!(cmp.len(), 2);
        assert_eq!(cmp[0].key, c.marker_key(6));
        assert_eq!(cmp[0].target, Some(Target::Present(true)));
        assert_eq!(cmp[1].key, c.marker_key(7));
        assert_eq!(cmp[1].target, Some(Target::Absent(true)));
        assert_eq!(ops.len(), 1);
        match &ops[0].op {
            Some(OpKind::Put(o)) => assert_eq!(marker_owner(o), "u1"),
            other => panic!("{other:?}"),
        }
        // Outside the cluster CIDR: nothing to claim, never an error.
        let (cmp, ops) = claim(&c, &meta("wn1", "u1"), &spec("192.168.0.0/24"), |_| false);
        assert!(cmp.is_empty() && ops.is_empty());
    }

    #[test]
    fn release_deletes_or_hands_over_owned_markers() {
        let c = CidrConfig::default();
        let key = c.marker_key(5);
        let owned = |uid: &str| {
            let uid = uid.to_string();
            move |_: &str| {
                Some(MarkerState {
                    owner_uid: uid.clone(),
                    mod_revision: 11,
                })
            }
        };
        // Owned, nobody else uses it: deleted, guarded by its revision.
        let (cmp, ops) = release(
            &c,
            &meta("wn1", "u1"),
            &spec("10.244.5.0/24"),
            owned("u1"),
            |_| None,
        );
        assert_eq!(cmp.len(), 1);
        assert_eq!(cmp[0].target, Some(Target::ModRevision(11)));
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].key, key);
        assert!(matches!(ops[0].op, Some(OpKind::Delete(true))));
        // Owned, and wn2 uses the same block: handed over.
        let (cmp, ops) = release(
            &c,
            &meta("wn1", "u1"),
            &spec("10.244.5.0/24"),
            owned("u1"),
            |_| {
                Some(Heir {
                    key: "/registry/nodes/wn2".into(),
                    meta: meta("wn2", "u2"),
                    mod_revision: 4,
                })
            },
        );
        assert_eq!(cmp.len(), 2);
        assert_eq!(cmp[1].key, "/registry/nodes/wn2");
        match &ops[0].op {
            Some(OpKind::Put(o)) => assert_eq!(marker_owner(o), "u2"),
            other => panic!("{other:?}"),
        }
        // Someone else's: untouched, but guarded.
        let (cmp, ops) = release(
            &c,
            &meta("wn1", "u1"),
            &spec("10.244.5.0/24"),
            owned("u9"),
            |_| None,
        );
        assert_eq!(cmp.len(), 1);
        assert!(ops.is_empty());
        // No marker at all.
        let (cmp, ops) = release(
            &c,
            &meta("wn1", "u1"),
            &spec("10.244.5.0/24"),
            |_| None,
            |_| None,
        );
        assert!(cmp.is_empty() && ops.is_empty());
    }

    #[test]
    fn exhaustion_names_the_cluster_cidr() {
        let c = CidrConfig::new("10.1.0.0/24", 26).unwrap();
        let m = exhausted(&c);
        assert!(
            m.contains("10.1.0.0/24") && m.contains("spec.podCIDR"),
            "{m}"
        );
    }
}
