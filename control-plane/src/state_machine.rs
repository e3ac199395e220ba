//! The replicated state machine: an ordered map from keys to objects with a
//! cluster-wide revision, like etcd's MVCC store without old versions, plus a
//! bounded history of changes that watches are served from.
//!
//! It knows nothing of Raft: it applies transactions in the order it is given
//! them, deterministically, and can be serialised to and restored from a
//! snapshot. Every replica holds one; all reach the same state.

use prost::Message as _;
use rkube_api::proto::internal::{
    compare::Target, op::Op as OpKind, MemberAddress, RemovedMember, StateSnapshot, Txn, TxnResult,
};
use rkube_api::proto::Object;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

/// One stored object.
#[derive(Clone, Debug)]
pub struct Stored {
    pub object: Arc<Object>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One change to one key, as watches deliver it.
#[derive(Clone, Debug)]
pub struct Change {
    pub revision: i64,
    pub key: String,
    pub change: ChangeType,
    /// The object after the change (for a deletion: its last state, with
    /// resourceVersion set to the deletion's revision).
    pub object: Arc<Object>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<Object>>,
}

/// Why a watch cannot start where it asked.
#[derive(Debug, PartialEq, Eq)]
pub struct TooOld {
    pub requested: i64,
    pub oldest: i64,
}

pub struct StateMachine {
    data: BTreeMap<String, Stored>,
    revision: i64,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Every change with a revision greater than this is in `history`.
    compacted: i64,
    /// Control-plane members' addresses, set by configuration changes
    /// (empty until the first: the replicas' `--peers` then).
    members: BTreeMap<u64, String>,
    /// Removed replica ids and the log index that removed each.
    removed: BTreeMap<u64, u64>,
}

impl StateMachine {
    pub fn new(history_limit: usize) -> StateMachine {
        StateMachine {
            data: BTreeMap::new(),
            revision: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            members: BTreeMap::new(),
            removed: BTreeMap::new(),
        }
    }

    /// The members' addresses as the last configuration change set them
    /// (empty before any change).
    pub fn members(&self) -> &BTreeMap<u64, String> {
        &self.members
    }

    /// Removed replica ids, each with the index of its removal.
    pub fn removed(&self) -> &BTreeMap<u64, u64> {
        &self.removed
    }

    /// Applies the membership part of a configuration change entry at
    /// `index`: the new address list, and the ids that left it for good.
    pub fn set_members(&mut self, members: BTreeMap<u64, String>, removed: &[u64], index: u64) {
        for id in removed {
            self.removed.entry(*id).or_insert(index);
        }
        self.members = members;
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Stored> {
        self.data.get(key)
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Stored)> {
        self.data
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Applies a transaction: all compares hold and all ops apply at one new
    /// revision, or nothing changes.
    pub fn apply(&mut self, txn: Txn) -> TxnResult {
        self.apply_with(txn, true)
    }

    /// [`StateMachine::apply`]; `answer` false skips copying the stored
    /// objects into the result (nobody waits for it: another replica's
    /// write).
    pub fn apply_with(&mut self, txn: Txn, answer: bool) -> TxnResult {
        for (i, c) in txn.compares.iter().enumerate() {
            let cur = self.data.get(&c.key);
            let holds = match &c.target {
                Some(Target::Absent(_)) => cur.is_none(),
                Some(Target::Present(_)) => cur.is_some(),
                Some(Target::ModRevision(r)) => cur.map(|s| s.mod_revision) == Some(*r),
                None => true,
            };
            if !holds {
                return TxnResult {
                    succeeded: false,
                    revision: self.revision,
                    failed_compare: i as i32,
                    current: cur.map(|s| (*s.object).clone()),
                    current_mod_revision: cur.map(|s| s.mod_revision).unwrap_or(0),
                    stored: vec![],
                };
            }
        }
        if txn.ops.is_empty() {
            return TxnResult {
                succeeded: true,
                revision: self.revision,
                ..Default::default()
            };
        }
        self.revision += 1;
        let rev = self.revision;
        let mut stored = Vec::new();
        for op in txn.ops {
            match op.op {
                Some(OpKind::Put(mut obj)) => {
                    if let Some(m) = obj.metadata_mut() {
                        m.resource_version = rev.to_string();
                    }
                    let obj = Arc::new(obj);
                    let prev = self.data.get(&op.key).cloned();
                    let create_revision = prev.as_ref().map(|p| p.create_revision).unwrap_or(rev);
                    self.data.insert(
                        op.key.clone(),
                        Stored {
                            object: obj.clone(),
                            create_revision,
                            mod_revision: rev,
                        },
                    );
                    if answer {
                        stored.push((*obj).clone());
                    }
                    self.record(Change {
                        revision: rev,
                        key: op.key.clone(),
                        change: if prev.is_some() {
                            ChangeType::Modified
                        } else {
                            ChangeType::Added
                        },
                        object: obj,
                        prev: prev.map(|p| p.object),
                    });
                }
                Some(OpKind::Delete(_)) => {
                    if let Some(prev) = self.data.remove(&op.key) {
                        let mut last = (*prev.object).clone();
                        if let Some(m) = last.metadata_mut() {
                            m.resource_version = rev.to_string();
                        }
                        self.record(Change {
                            revision: rev,
                            key: op.key.clone(),
                            change: ChangeType::Deleted,
                            object: Arc::new(last),
                            prev: Some(prev.object),
                        });
                    }
                }
                None => {}
            }
        }
        TxnResult {
            succeeded: true,
            revision: rev,
            stored,
            ..Default::default()
        }
    }

    fn record(&mut self, c: Change) {
        self.history.push_back(Arc::new(c));
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                // Everything up to and including this revision may now be
                // incomplete in history.
                self.compacted = self.compacted.max(old.revision);
            }
        }
    }

    /// The changes after revision `after` (at most `max`), or `TooOld` if
    /// some of them are no longer retained.
    pub fn changes_since(&self, after: i64, max: usize) -> Result<Vec<Arc<Change>>, TooOld> {
        if after < self.compacted {
            return Err(TooOld {
                requested: after,
                oldest: self.compacted,
            });
        }
        let start = self.history.partition_point(|c| c.revision <= after);
        Ok(self.history.range(start..).take(max).cloned().collect())
    }

    /// The oldest revision a watch may start from.
    pub fn compacted_revision(&self) -> i64 {
        self.compacted
    }

    /// Serialises the whole state as a `StateSnapshot`, encoding each
    /// stored object in place (no copies of the objects are made).
    pub fn snapshot(&self) -> Vec<u8> {
        encode_snapshot(
            self.revision,
            self.data.iter(),
            &self.members,
            &self.removed,
        )
    }

    /// A point-in-time copy of the state that shares every stored object
    /// (one key copy and one reference count per entry), to be encoded into
    /// a snapshot on another thread while this state moves on.
    pub fn snapshot_view(&self) -> SnapshotView {
        SnapshotView {
            revision: self.revision,
            data: self
                .data
                .iter()
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect(),
            members: self.members.clone(),
            removed: self.removed.clone(),
        }
    }

    /// Replaces the whole state with a snapshot's. History restarts empty:
    /// watches older than the snapshot must relist.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), prost::DecodeError> {
        let snap = StateSnapshot::decode(bytes)?;
        self.data = snap
            .entries
            .into_iter()
            .map(|e| {
                (
                    e.key,
                    Stored {
                        object: Arc::new(e.object.unwrap_or_default()),
                        create_revision: e.create_revision,
                        mod_revision: e.mod_revision,
                    },
                )
            })
            .collect();
        self.revision = snap.revision;
        self.members = snap
            .members
            .into_iter()
            .map(|m| (m.id, m.address))
            .collect();
        self.removed = snap.removed.into_iter().map(|r| (r.id, r.index)).collect();
        self.history.clear();
        self.compacted = snap.revision;
        Ok(())
    }
}

/// What [`StateMachine::snapshot_view`] copies.
pub struct SnapshotView {
    revision: i64,
    data: Vec<(String, Stored)>,
    members: BTreeMap<u64, String>,
    removed: BTreeMap<u64, u64>,
}

impl SnapshotView {
    /// The same bytes [`StateMachine::snapshot`] gives for that state.
    pub fn encode(&self) -> Vec<u8> {
        encode_snapshot(
            self.revision,
            self.data.iter().map(|(k, s)| (k, s)),
            &self.members,
            &self.removed,
        )
    }
}

/// Encodes a `StateSnapshot` without building one (no object is copied).
fn encode_snapshot<'a>(
    revision: i64,
    data: impl ExactSizeIterator<Item = (&'a String, &'a Stored)>,
    members: &BTreeMap<u64, String>,
    removed: &BTreeMap<u64, u64>,
) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, int64, message, string, WireType};
    let mut buf = Vec::with_capacity(data.len() * 512);
    int64::encode(1, &revision, &mut buf);
    let mut entry = Vec::new();
    for (k, s) in data {
        entry.clear();
        string::encode(1, k, &mut entry);
        message::encode(2, &*s.object, &mut entry);
        int64::encode(3, &s.create_revision, &mut entry);
        int64::encode(4, &s.mod_revision, &mut entry);
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(entry.len() as u64, &mut buf);
        buf.extend_from_slice(&entry);
    }
    for (id, address) in members {
        let m = MemberAddress {
            id: *id,
            address: address.clone(),
        };
        message::encode(3, &m, &mut buf);
    }
    for (id, index) in removed {
        let r = RemovedMember {
            id: *id,
            index: *index,
        };
        message::encode(4, &r, &mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::internal::{Compare, Op};
    use rkube_api::proto::{object::Kind as Body, ObjectMeta, Pod};

    fn pod(name: &str) -> Object {
        Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    fn put(key: &str, o: Object) -> Op {
        Op {
            key: key.into(),
            op: Some(OpKind::Put(o)),
        }
    }

    fn create(key: &str, o: Object) -> Txn {
        Txn {
            compares: vec![Compare {
                key: key.into(),
                target: Some(Target::Absent(true)),
            }],
            ops: vec![put(key, o)],
        }
    }

    fn put_txn(key: &str, o: Object) -> Txn {
        Txn {
            compares: vec![],
            ops: vec![put(key, o)],
        }
    }

    #[test]
    fn revisions_and_compares() {
        let mut sm = StateMachine::new(100);
        let r = sm.apply(create("/a", pod("a")));
        assert!(r.succeeded);
        assert_eq!(r.revision, 1);
        assert_eq!(r.stored[0].resource_version(), "1");
        let again = sm.apply(create("/a", pod("a")));
        assert!(!again.succeeded);
        assert_eq!(again.current_mod_revision, 1);
        assert_eq!(sm.revision(), 1, "a failed txn does not bump the revision");
        let upd = Txn {
            compares: vec![Compare {
                key: "/a".into(),
                target: Some(Target::ModRevision(1)),
            }],
            ops: vec![put("/a", pod("a"))],
        };
        assert!(sm.apply(upd.clone()).succeeded);
        assert!(!sm.apply(upd.clone()).succeeded, "stale precondition");
        assert_eq!(sm.get("/a").unwrap().create_revision, 1);
        assert_eq!(sm.get("/a").unwrap().mod_revision, 2);
    }

    #[test]
    fn history_and_too_old() {
        let mut sm = StateMachine::new(3);
        for i in 0..5 {
            sm.apply(create(&format!("/k{i}"), pod("p")));
        }
        assert!(sm.changes_since(0, 100).is_err());
        let c = sm.changes_since(2, 100).unwrap();
        assert_eq!(
            c.iter().map(|c| c.revision).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(sm.changes_since(5, 100).unwrap().is_empty());
    }

    #[test]
    fn delete_records_last_state() {
        let mut sm = StateMachine::new(10);
        sm.apply(create("/a", pod("a")));
        sm.apply(Txn {
            compares: vec![],
            ops: vec![Op {
                key: "/a".into(),
                op: Some(OpKind::Delete(true)),
            }],
        });
        let c = sm.changes_since(1, 10).unwrap();
        assert_eq!(c[0].change, ChangeType::Deleted);
        assert_eq!(c[0].object.resource_version(), "2");
        assert!(sm.get("/a").is_none());
    }

    #[test]
    fn snapshot_round_trip_and_range() {
        let mut sm = StateMachine::new(10);
        sm.apply(create("/registry/pods/default/a", pod("a")));
        sm.apply(create("/registry/pods/default/b", pod("b")));
        sm.apply(create("/registry/pods/other/c", pod("c")));
        let bytes = sm.snapshot();
        let mut other = StateMachine::new(10);
        other.restore(&bytes).unwrap();
        assert_eq!(other.revision(), 3);
        assert_eq!(other.range("/registry/pods/default/").count(), 2);
        assert_eq!(other.range("/registry/pods/").count(), 3);
        assert!(
            other.changes_since(2, 10).is_err(),
            "history is gone after restore"
        );
        assert!(other.changes_since(3, 10).unwrap().is_empty());
    }

    #[test]
    fn snapshot_view_is_the_state_when_taken() {
        let mut sm = StateMachine::new(10);
        sm.apply(create("/registry/pods/default/a", pod("a")));
        sm.set_members([(1, "a:1".to_string())].into_iter().collect(), &[2], 7);
        let before = sm.snapshot();
        let view = sm.snapshot_view();
        // Later writes (a put over a stored key, a new key) do not reach it.
        sm.apply(put_txn("/registry/pods/default/a", pod("a2")));
        sm.apply(create("/registry/pods/default/b", pod("b")));
        assert_eq!(view.encode(), before);
        assert_ne!(sm.snapshot(), before);
    }

    #[test]
    fn membership_travels_in_snapshots() {
        let mut sm = StateMachine::new(10);
        sm.apply(create("/registry/pods/default/a", pod("a")));
        let members: BTreeMap<u64, String> = [(1, "a:1".to_string()), (4, "d:4".to_string())]
            .into_iter()
            .collect();
        sm.set_members(members.clone(), &[2], 7);
        // A second removal record of the same id keeps the first index.
        sm.set_members(members.clone(), &[2, 3], 9);
        let mut other = StateMachine::new(10);
        other.restore(&sm.snapshot()).unwrap();
        assert_eq!(other.members(), &members);
        assert_eq!(
            other
                .removed()
                .iter()
                .map(|(a, b)| (*a, *b))
                .collect::<Vec<_>>(),
            vec![(2, 7), (3, 9)]
        );
        assert_eq!(other.range("/registry/pods/").count(), 1);
    }
}
