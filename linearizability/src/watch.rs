//! Watch streams checked against the committed history.
//!
//! The committed history (the *reference*) is every change the store made
//! to the watched objects, in revision order: the harness reads it at the
//! end of a run with a watch from the run's first revision on a healed
//! cluster. [`check_reference`] first proves the reference itself against
//! the history of API calls: every acknowledged write is in it at the
//! revision it was acknowledged with, nothing in it comes from a write that
//! failed or that nobody made, and per key it is a legal sequence (created
//! when absent, modified or deleted when present). [`check_watch`] then
//! checks what one watcher received, across its reconnections: every event
//! in revision order, none missing, none twice, none that was never
//! committed (or that differs from what was).

use crate::kv::{Input, KvOp, Output, Revision, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change as a watch delivers it. `value` is the object's value in the
/// event (for a deletion, the value it held).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub revision: Revision,
    pub key: String,
    pub kind: EventType,
    pub value: Value,
}

/// One watch call: opened at revision `from` (it should deliver every
/// change after it) and the events it delivered until it broke or was
/// stopped.
#[derive(Clone, Debug, Default)]
pub struct Segment {
    pub from: Revision,
    pub events: Vec<Event>,
    /// The watcher could not resume where it left off (the history it
    /// needed was compacted: "too old") and relisted at `from`: changes
    /// between the previous segment's last event and `from` may be missing.
    pub relisted: bool,
}

/// Everything one watcher received. A watcher reopens its watch after an
/// error at the last revision it saw; `caught_up_to` is the revision it
/// had reached when the run ended (it must have every change up to there;
/// the committed history it is checked against ends there, so later
/// events are checked for order only).
#[derive(Clone, Debug, Default)]
pub struct WatchLog {
    pub name: String,
    pub segments: Vec<Segment>,
    pub caught_up_to: Revision,
}

/// What the reference check found.
#[derive(Debug, Default)]
pub struct ReferenceReport {
    /// Acknowledged writes found in the committed history at their
    /// revision.
    pub acknowledged_found: usize,
    /// Acknowledged writes missing (or at another revision): lost writes.
    pub acknowledged_lost: usize,
    /// Writes with an unknown outcome that were committed.
    pub unknown_committed: usize,
    pub anomalies: Vec<String>,
}

/// Checks the committed history against the API calls that made it (all
/// writes to the watched objects must be in `ops`).
pub fn check_reference(reference: &[Event], ops: &[KvOp]) -> ReferenceReport {
    let mut r = ReferenceReport::default();
    for w in reference.windows(2) {
        if w[1].revision <= w[0].revision {
            r.anomalies.push(format!(
                "committed history out of order: {:?} then {:?}",
                w[0], w[1]
            ));
        }
    }
    let at: HashMap<Revision, &Event> = reference.iter().map(|e| (e.revision, e)).collect();
    // Writers by value, acknowledged deletes by revision.
    let mut writer: HashMap<Value, &KvOp> = HashMap::new();
    let mut deletes: HashMap<Revision, &KvOp> = HashMap::new();
    let mut unknown_deletes: HashMap<&str, usize> = HashMap::new();
    for op in ops {
        match (&op.input, &op.output) {
            (Input::Create { value } | Input::Update { value, .. }, _) => {
                writer.insert(*value, op);
            }
            (Input::Delete { .. }, Output::Deleted { revision, .. }) => {
                deletes.insert(*revision, op);
            }
            (Input::Delete { .. }, Output::Unknown) => {
                *unknown_deletes.entry(op.key.as_str()).or_default() += 1
            }
            _ => {}
        }
    }
    // Every acknowledged write is there, as acknowledged.
    for op in ops {
        let Some(rev) = op.acknowledged_revision() else {
            continue;
        };
        let expected = match (&op.input, &op.output) {
            (Input::Create { value }, _) => (EventType::Added, Some(*value)),
            (Input::Update { value, .. }, _) => (EventType::Modified, Some(*value)),
            (Input::Delete { .. }, Output::Deleted { value, .. }) => {
                (EventType::Deleted, Some(*value))
            }
            _ => continue,
        };
        match at.get(&rev) {
            Some(e) if e.key == op.key && e.kind == expected.0 && Some(e.value) == expected.1 => {
                r.acknowledged_found += 1
            }
            Some(e) => {
                r.acknowledged_lost += 1;
                r.anomalies.push(format!(
                    "acknowledged write {op} is not what was committed at revision {rev}: {e:?}"
                ));
            }
            None => {
                r.acknowledged_lost += 1;
                r.anomalies.push(format!(
                    "acknowledged write lost: {op} is not in the committed history"
                ));
            }
        }
    }
    // Every committed change was asked for, by a write that did not fail,
    // once; per key the sequence is legal.
    let mut state: BTreeMap<&str, Value> = BTreeMap::new();
    let mut applied: HashMap<Value, Revision> = HashMap::new();
    let mut unknown_deletes_used: HashMap<&str, usize> = HashMap::new();
    for e in reference {
        let cur = state.get(e.key.as_str()).copied();
        match e.kind {
            EventType::Added | EventType::Modified => {
                let legal = match e.kind {
                    EventType::Added => cur.is_none(),
                    _ => cur.is_some(),
                };
                if !legal {
                    r.anomalies.push(format!(
                        "committed history: {e:?} on a key whose object is {cur:?}"
                    ));
                }
                if let Some(prev) = applied.insert(e.value, e.revision) {
                    r.anomalies.push(format!(
                        "write applied twice: v{} at revisions {prev} and {}",
                        e.value, e.revision
                    ));
                }
                match writer.get(&e.value) {
                    None => r
                        .anomalies
                        .push(format!("committed a change nobody wrote: {e:?}")),
                    Some(w) => {
                        let kind_ok = matches!(
                            (&w.input, e.kind),
                            (Input::Create { .. }, EventType::Added)
                                | (Input::Update { .. }, EventType::Modified)
                        );
                        if w.key != e.key || !kind_ok {
                            r.anomalies
                                .push(format!("committed {e:?}, which is not what {w} asked"));
                        }
                        match w.output {
                            Output::Written { .. } => {}
                            Output::Unknown => r.unknown_committed += 1,
                            _ => r
                                .anomalies
                                .push(format!("a write that failed was committed: {w} at {e:?}")),
                        }
                    }
                }
                state.insert(e.key.as_str(), e.value);
            }
            EventType::Deleted => {
                if cur != Some(e.value) {
                    r.anomalies.push(format!(
                        "committed history: {e:?} deletes an object that holds {cur:?}"
                    ));
                }
                state.remove(e.key.as_str());
                if let Some(d) = deletes.get(&e.revision) {
                    if d.key != e.key {
                        r.anomalies
                            .push(format!("committed {e:?}, which is not what {d} asked"));
                    }
                } else {
                    let used = unknown_deletes_used.entry(e.key.as_str()).or_default();
                    if *used < unknown_deletes.get(e.key.as_str()).copied().unwrap_or(0) {
                        *used += 1;
                        r.unknown_committed += 1;
                    } else {
                        r.anomalies.push(format!(
                            "committed a delete nobody made (or that failed): {e:?}"
                        ));
                    }
                }
            }
        }
    }
    r
}

/// Settles the writes of `ops` whose outcome was unknown with what the
/// committed history says, to keep the search small: one that was
/// committed becomes acknowledged at its revision, and must have taken
/// effect before any operation that saw a later revision returned; one
/// that was not is dropped. Both only remove possible orders, so a
/// history found linearizable this way is linearizable as recorded (a
/// wrong committed history can only make the check fail, and
/// [`check_reference`] checks it on its own). Also returns anomalies: a
/// write committed before it was invoked.
pub fn resolve_unknown_writes(ops: &[KvOp], reference: &[Event]) -> (Vec<KvOp>, Vec<String>) {
    let mut anomalies = Vec::new();
    // The earliest return of an operation that saw each revision or later.
    let mut seen: Vec<(Revision, u64)> = ops
        .iter()
        .filter_map(|o| match o.output {
            Output::Written { revision }
            | Output::Deleted { revision, .. }
            | Output::Found { revision, .. } => Some((revision, o.ret)),
            _ => None,
        })
        .collect();
    seen.sort();
    let mut suffix_min = vec![u64::MAX; seen.len() + 1];
    for i in (0..seen.len()).rev() {
        suffix_min[i] = suffix_min[i + 1].min(seen[i].1);
    }
    let done_by = |rev: Revision| -> u64 {
        let i = seen.partition_point(|(r, _)| *r <= rev);
        suffix_min[i]
    };
    let by_value: HashMap<Value, &Event> = reference
        .iter()
        .filter(|e| e.kind != EventType::Deleted)
        .map(|e| (e.value, e))
        .collect();
    let mut out: Vec<Option<KvOp>> = ops.iter().cloned().map(Some).collect();
    let mut settle = |op: &mut KvOp, output: Output, rev: Revision| {
        let by = done_by(rev);
        if by < op.call {
            anomalies.push(format!(
                "{op} was committed at revision {rev}, but an operation that saw a later \
                 revision returned before it was invoked"
            ));
        }
        op.output = output;
        op.ret = by.max(op.call);
    };
    for slot in out.iter_mut() {
        let Some(op) = slot else { continue };
        if op.output != Output::Unknown {
            continue;
        }
        match op.input {
            Input::Create { value } | Input::Update { value, .. } => match by_value.get(&value) {
                Some(e) => {
                    let rev = e.revision;
                    settle(op, Output::Written { revision: rev }, rev);
                }
                None => *slot = None,
            },
            _ => {}
        }
    }
    // Deletes carry no value: give each committed delete that no answer
    // acknowledged to the earliest unknown delete of that key that could
    // have made it.
    let mut value_at: HashMap<Revision, Value> = HashMap::new();
    for op in out.iter().flatten() {
        match (&op.input, &op.output) {
            (
                Input::Create { value } | Input::Update { value, .. },
                Output::Written { revision },
            ) => {
                value_at.insert(*revision, *value);
            }
            (_, Output::Found { value, revision }) => {
                value_at.insert(*revision, *value);
            }
            _ => {}
        }
    }
    let acked_deletes: std::collections::HashSet<Revision> = ops
        .iter()
        .filter_map(|o| match (&o.input, &o.output) {
            (Input::Delete { .. }, Output::Deleted { revision, .. }) => Some(*revision),
            _ => None,
        })
        .collect();
    let mut unknown_deletes: Vec<usize> = (0..out.len())
        .filter(|&i| {
            out[i].as_ref().is_some_and(|o| {
                matches!(o.input, Input::Delete { .. }) && o.output == Output::Unknown
            })
        })
        .collect();
    unknown_deletes.sort_by_key(|&i| out[i].as_ref().map(|o| o.call));
    for e in reference
        .iter()
        .filter(|e| e.kind == EventType::Deleted && !acked_deletes.contains(&e.revision))
    {
        let by = done_by(e.revision);
        let pick = unknown_deletes.iter().position(|&i| {
            let o = out[i].as_ref().expect("an unknown delete");
            let Input::Delete { precondition } = o.input else {
                return false;
            };
            o.key == e.key
                && o.call <= by
                && precondition.is_none_or(|p| value_at.get(&p) == Some(&e.value))
        });
        if let Some(k) = pick {
            let i = unknown_deletes.remove(k);
            let op = out[i].as_mut().expect("an unknown delete");
            settle(
                op,
                Output::Deleted {
                    value: e.value,
                    revision: e.revision,
                },
                e.revision,
            );
        }
    }
    for i in unknown_deletes {
        out[i] = None;
    }
    (out.into_iter().flatten().collect(), anomalies)
}

/// Checks one watcher's events against the (checked) committed history.
/// Returns the anomalies found.
pub fn check_watch(reference: &[Event], log: &WatchLog) -> Vec<String> {
    let mut out = Vec::new();
    let at: BTreeMap<Revision, &Event> = reference.iter().map(|e| (e.revision, e)).collect();
    let mut last: Option<Revision> = None;
    for (i, seg) in log.segments.iter().enumerate() {
        // Events in order, each after the segment's start, none twice.
        for e in &seg.events {
            if e.revision <= seg.from {
                out.push(format!(
                    "{}: watch from revision {} delivered an older change {e:?}",
                    log.name, seg.from
                ));
            }
            if let Some(l) = last {
                if e.revision <= l {
                    out.push(format!(
                        "{}: event out of order or repeated: {e:?} after revision {l}",
                        log.name
                    ));
                }
            }
            last = Some(last.map_or(e.revision, |l| l.max(e.revision)));
            if e.revision > log.caught_up_to {
                // After the committed history read back (a late write
                // landing after the closing one): nothing to judge it by.
                continue;
            }
            match at.get(&e.revision) {
                Some(c) if *c == e => {}
                Some(c) => out.push(format!(
                    "{}: delivered {e:?} but what was committed at that revision is {c:?}",
                    log.name
                )),
                None => out.push(format!(
                    "{}: delivered a change that was never committed: {e:?}",
                    log.name
                )),
            }
        }
        // None missing: everything committed after `from` up to where the
        // next segment resumed (or to where the watcher caught up).
        let end = match log.segments.get(i + 1) {
            Some(next) if next.relisted => seg.events.last().map_or(seg.from, |e| e.revision),
            Some(next) => next.from,
            None => log.caught_up_to,
        }
        .min(log.caught_up_to);
        let got: std::collections::HashSet<Revision> =
            seg.events.iter().map(|e| e.revision).collect();
        // An empty span (the next segment resumed at or before this one's
        // start, or nothing came after it) owes nothing; ordering is checked
        // above.
        if end > seg.from {
            for (rev, c) in at.range(seg.from + 1..=end) {
                if !got.contains(rev) {
                    out.push(format!(
                        "{}: missed committed change {c:?} (watch from {} up to {end})",
                        log.name, seg.from
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Input::*, Output::*};

    fn op(key: &str, input: Input, output: Output, call: u64) -> KvOp {
        KvOp {
            client: 0,
            key: key.into(),
            input,
            output,
            call,
            ret: call + 1,
        }
    }

    fn ev(revision: Revision, key: &str, kind: EventType, value: Value) -> Event {
        Event {
            revision,
            key: key.into(),
            kind,
            value,
        }
    }

    fn history() -> (Vec<KvOp>, Vec<Event>) {
        use EventType::{Added, Modified};
        let ops = vec![
            op("a", Create { value: 1 }, Written { revision: 5 }, 0),
            op("b", Create { value: 2 }, Unknown, 2),
            op(
                "a",
                Update {
                    value: 3,
                    precondition: Some(5),
                },
                Written { revision: 7 },
                4,
            ),
            op(
                "a",
                Delete { precondition: None },
                Deleted {
                    value: 3,
                    revision: 8,
                },
                6,
            ),
            op(
                "b",
                Update {
                    value: 4,
                    precondition: None,
                },
                Conflict,
                8,
            ),
        ];
        let reference = vec![
            ev(5, "a", Added, 1),
            ev(6, "b", Added, 2),
            ev(7, "a", Modified, 3),
            ev(8, "a", EventType::Deleted, 3),
        ];
        (ops, reference)
    }

    #[test]
    fn a_faithful_reference_and_watch_pass() {
        let (ops, reference) = history();
        let r = check_reference(&reference, &ops);
        assert!(r.anomalies.is_empty(), "{:#?}", r.anomalies);
        assert_eq!(r.acknowledged_found, 3);
        assert_eq!(r.unknown_committed, 1);
        // A watcher that broke after revision 6 and resumed there.
        let log = WatchLog {
            name: "w".into(),
            segments: vec![
                Segment {
                    from: 4,
                    events: reference[..2].to_vec(),
                    relisted: false,
                },
                Segment {
                    from: 6,
                    events: reference[2..].to_vec(),
                    relisted: false,
                },
            ],
            caught_up_to: 8,
        };
        assert_eq!(check_watch(&reference, &log), Vec::<String>::new());
    }

    #[test]
    fn the_reference_check_rejects_lost_failed_and_phantom_writes() {
        let (ops, reference) = history();
        // The acknowledged update is missing.
        let mut lost = reference.clone();
        lost.remove(2);
        let r = check_reference(&lost, &ops);
        assert_eq!(r.acknowledged_lost, 1, "{:#?}", r.anomalies);
        // A failed update was committed.
        let mut failed = reference.clone();
        failed.push(ev(9, "b", EventType::Modified, 4));
        assert!(!check_reference(&failed, &ops).anomalies.is_empty());
        // A write refused with "nothing done" was committed.
        let mut refused_ops = ops.clone();
        refused_ops[1].output = Failed;
        assert!(!check_reference(&reference, &refused_ops)
            .anomalies
            .is_empty());
        // A change nobody made.
        let mut phantom = reference.clone();
        phantom.push(ev(9, "c", EventType::Added, 99));
        assert!(!check_reference(&phantom, &ops).anomalies.is_empty());
        // A delete nobody made.
        let mut deleted = reference.clone();
        deleted.push(ev(9, "b", EventType::Deleted, 2));
        assert!(!check_reference(&deleted, &ops).anomalies.is_empty());
        // An illegal sequence: added twice.
        let mut twice = reference.clone();
        twice.insert(2, ev(6, "a", EventType::Added, 1));
        assert!(!check_reference(&twice, &ops).anomalies.is_empty());
    }

    #[test]
    fn events_after_the_committed_history_are_checked_for_order_only() {
        let (_, reference) = history();
        // A watcher that saw a late change after the closing revision (8).
        let mut events = reference.clone();
        events.push(ev(9, "b", EventType::Modified, 77));
        let log = WatchLog {
            name: "w".into(),
            segments: vec![Segment {
                from: 4,
                events,
                relisted: false,
            }],
            caught_up_to: 8,
        };
        assert_eq!(check_watch(&reference, &log), Vec::<String>::new());
        // Still in order.
        let mut log = log;
        log.segments[0]
            .events
            .push(ev(9, "b", EventType::Modified, 78));
        assert!(!check_watch(&reference, &log).is_empty());
    }

    #[test]
    fn empty_spans_are_checked_without_panicking() {
        let (_, reference) = history();
        // A segment resumed before the previous one's start (a relist at an
        // older revision), and a run that ended before the last segment's
        // start: nothing owed, and no panic.
        let log = WatchLog {
            name: "w".into(),
            segments: vec![
                Segment {
                    from: 6,
                    events: vec![],
                    relisted: false,
                },
                Segment {
                    from: 4,
                    events: vec![],
                    relisted: true,
                },
            ],
            caught_up_to: 3,
        };
        let _ = check_watch(&reference, &log);
    }

    #[test]
    fn the_watch_check_rejects_missing_repeated_reordered_and_phantom_events() {
        let (_, reference) = history();
        let log = |segments: Vec<Segment>| WatchLog {
            name: "w".into(),
            segments,
            caught_up_to: 8,
        };
        let seg = |from, events: Vec<Event>| Segment {
            from,
            events,
            relisted: false,
        };
        // Missing one (the delete).
        let missing = log(vec![seg(4, reference[..3].to_vec())]);
        let a = check_watch(&reference, &missing);
        assert!(a.iter().any(|m| m.contains("missed")), "{a:?}");
        // Missing at a reconnection: resumed past what it had seen.
        let gap = log(vec![
            seg(4, reference[..1].to_vec()),
            seg(6, reference[2..].to_vec()),
        ]);
        let a = check_watch(&reference, &gap);
        assert!(a.iter().any(|m| m.contains("missed")), "{a:?}");
        // Unless it had to relist (too old): then the gap is legitimate.
        let mut relisted = gap.clone();
        relisted.segments[1].relisted = true;
        assert_eq!(check_watch(&reference, &relisted), Vec::<String>::new());
        // Repeated at a reconnection.
        let dup = log(vec![
            seg(4, reference[..2].to_vec()),
            seg(5, reference[1..].to_vec()),
        ]);
        let a = check_watch(&reference, &dup);
        assert!(a.iter().any(|m| m.contains("repeated")), "{a:?}");
        // Out of order.
        let mut swapped = reference.clone();
        swapped.swap(1, 2);
        let a = check_watch(&reference, &log(vec![seg(4, swapped)]));
        assert!(a.iter().any(|m| m.contains("out of order")), "{a:?}");
        // Never committed, or not what was committed.
        let mut phantom = reference.clone();
        phantom.push(ev(9, "c", EventType::Added, 99));
        let mut within = log(vec![seg(4, phantom)]);
        within.caught_up_to = 9;
        let a = check_watch(&reference, &within);
        assert!(a.iter().any(|m| m.contains("never committed")), "{a:?}");
        let mut wrong = reference.clone();
        wrong[2].value = 1;
        let a = check_watch(&reference, &log(vec![seg(4, wrong)]));
        assert!(a.iter().any(|m| m.contains("what was committed")), "{a:?}");
        // A stalled watcher that never caught up.
        let stalled = log(vec![seg(4, reference[..2].to_vec())]);
        assert!(!check_watch(&reference, &stalled).is_empty());
    }
}
