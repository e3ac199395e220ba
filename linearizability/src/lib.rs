//! A linearizability checker, written for rkube's fault tests.
//!
//! [`check`] decides whether a concurrent history of operations (each with
//! the time it was invoked and the time its answer arrived) can be explained
//! by some order of the operations that (a) respects real time — an
//! operation that returned before another was invoked comes first — and (b)
//! is a legal sequential run of a [`Model`]. It is the Wing & Gong search
//! with Lowe's memoisation, as in Knossos and Porcupine: walk the history's
//! call/return events, linearize a pending call whenever the model accepts
//! it, backtrack when a return is reached whose call could not be placed,
//! and never explore the same (set of linearized operations, model state)
//! twice.
//!
//! Operations whose outcome is unknown (a timed-out write, a connection
//! lost mid-request) have no return time: they are concurrent with
//! everything after their invocation and may take effect at any point, or
//! never. Models express that by answering several possible next states;
//! the search tracks the set of states the history may be in (Porcupine's
//! "nondeterministic model" as a power-set model).
//!
//! [`kv`] is a model of rkube's API for one object key (create, update with
//! a resourceVersion precondition, get, delete) and checks whole histories
//! partitioned by key; [`watch`] checks watch streams against the committed
//! history.

pub mod kv;
pub mod watch;

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Ord + Debug;
    type Input: Debug;
    type Output: Debug;
    /// The states the object may start in.
    fn init(&self) -> Vec<Self::State>;
    /// The states `state` may be in after `input` ran there and answered
    /// `output`; empty when that answer is impossible in `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Vec<Self::State>;
}

/// One operation of a history. Times are in any monotonic unit (the
/// harness uses nanoseconds since the run began).
#[derive(Clone, Debug)]
pub struct Operation<I, O> {
    pub client: u64,
    pub input: I,
    pub output: O,
    pub call: u64,
    /// `None`: no answer that settles it; the operation may take effect at
    /// any time after its call.
    pub ret: Option<u64>,
}

/// Why a history is not linearizable: the furthest the search got.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Operations placed in the longest legal prefix found.
    pub linearized: usize,
    pub total: usize,
    /// The model states after that prefix.
    pub states: String,
    /// The operation whose answer arrived before any remaining candidate
    /// could be placed.
    pub blocked_by: usize,
    /// The operations that could have come next (invoked before
    /// `blocked_by` returned); none fits the model.
    pub candidates: Vec<usize>,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Linearizable,
    NotLinearizable(Failure),
    /// The search gave up after this many steps without a verdict.
    Undecided {
        steps: u64,
    },
}

impl Outcome {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Outcome::Linearizable)
    }
}

/// Limits of one search.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub max_steps: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_steps: 20_000_000,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> BitSet {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Checks one history against `model`; also returns the number of search
/// steps taken.
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    budget: Budget,
) -> (Outcome, u64) {
    let n = ops.len();
    if n == 0 {
        return (Outcome::Linearizable, 0);
    }
    // Events: a call and a return per operation, in time order; at equal
    // times calls come first (touching operations count as concurrent).
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        let ret = op.ret.unwrap_or(u64::MAX);
        assert!(ret >= op.call, "operation {i} returns before its call");
        events.push((op.call, 0, i));
        events.push((ret, 1, i));
    }
    events.sort();
    // A doubly linked list over the events (node 0 is the head, node
    // 2n+1 the tail), so calls and their returns can be lifted out and
    // put back in O(1) (dancing links).
    let head = 0usize;
    let tail = 2 * n + 1;
    let mut next = vec![0usize; 2 * n + 2];
    let mut prev = vec![0usize; 2 * n + 2];
    let mut op_of = vec![usize::MAX; 2 * n + 2];
    let mut is_call = vec![false; 2 * n + 2];
    let mut ret_node = vec![0usize; n];
    for (k, &(_, kind, i)) in events.iter().enumerate() {
        let node = k + 1;
        op_of[node] = i;
        is_call[node] = kind == 0;
        if kind == 1 {
            ret_node[i] = node;
        }
    }
    let mut match_of = vec![0usize; 2 * n + 2];
    for node in 1..=2 * n {
        if is_call[node] {
            match_of[node] = ret_node[op_of[node]];
        }
    }
    for node in 0..=2 * n {
        next[node] = node + 1;
        prev[node + 1] = node;
    }

    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, c: usize| {
        let r = match_of[c];
        next[prev[c]] = next[c];
        prev[next[c]] = prev[c];
        next[prev[r]] = next[r];
        prev[next[r]] = prev[r];
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, c: usize| {
        let r = match_of[c];
        next[prev[r]] = r;
        prev[next[r]] = r;
        next[prev[c]] = c;
        prev[next[c]] = c;
    };

    let mut state: Vec<M::State> = canonical(model.init());
    let mut linearized = BitSet::new(n);
    let mut cache: HashSet<(BitSet, Vec<M::State>)> = HashSet::new();
    let mut calls: Vec<(usize, Vec<M::State>)> = Vec::new();
    let mut best: Option<Failure> = None;
    let mut steps: u64 = 0;
    let mut entry = next[head];
    while next[head] != tail {
        steps += 1;
        if steps > budget.max_steps {
            return (Outcome::Undecided { steps }, steps);
        }
        if is_call[entry] {
            let op = &ops[op_of[entry]];
            let mut new_state = Vec::new();
            for s in &state {
                new_state.extend(model.step(s, &op.input, &op.output));
            }
            let new_state = canonical(new_state);
            if !new_state.is_empty() {
                let mut lin = linearized.clone();
                lin.set(op_of[entry]);
                if cache.insert((lin.clone(), new_state.clone())) {
                    calls.push((entry, std::mem::replace(&mut state, new_state)));
                    linearized = lin;
                    lift(&mut next, &mut prev, entry);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return: its call (and everything before) could not be
            // placed from here. Record how far we got, then backtrack.
            if best.as_ref().is_none_or(|b| calls.len() > b.linearized) {
                let mut candidates = Vec::new();
                let mut e = next[head];
                while e != entry {
                    if is_call[e] {
                        candidates.push(op_of[e]);
                    }
                    e = next[e];
                }
                best = Some(Failure {
                    linearized: calls.len(),
                    total: n,
                    states: format!("{state:?}"),
                    blocked_by: op_of[entry],
                    candidates,
                });
            }
            let Some((c, s)) = calls.pop() else {
                return (
                    Outcome::NotLinearizable(best.expect("a failure was recorded")),
                    steps,
                );
            };
            state = s;
            linearized.clear(op_of[c]);
            unlift(&mut next, &mut prev, c);
            entry = next[c];
        }
    }
    (Outcome::Linearizable, steps)
}

fn canonical<S: Ord>(mut v: Vec<S>) -> Vec<S> {
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register: write(v) / read -> v.
    struct Register;
    #[derive(Debug, Clone)]
    enum RIn {
        W(u32),
        R,
    }
    impl Model for Register {
        type State = u32;
        type Input = RIn;
        type Output = Option<u32>;
        fn init(&self) -> Vec<u32> {
            vec![0]
        }
        fn step(&self, s: &u32, i: &RIn, o: &Option<u32>) -> Vec<u32> {
            match (i, o) {
                (RIn::W(v), _) => vec![*v],
                (RIn::R, Some(v)) if v == s => vec![*s],
                _ => vec![],
            }
        }
    }

    fn op(
        client: u64,
        input: RIn,
        output: Option<u32>,
        call: u64,
        ret: u64,
    ) -> Operation<RIn, Option<u32>> {
        Operation {
            client,
            input,
            output,
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn register_histories() {
        // Concurrent write and read: the read may see either value.
        let h = vec![
            op(0, RIn::W(1), None, 0, 10),
            op(1, RIn::R, Some(0), 1, 5),
            op(2, RIn::R, Some(1), 2, 6),
        ];
        assert!(check(&Register, &h, Budget::default()).0.is_linearizable());
        // A read after the write returned must see it.
        let h = vec![
            op(0, RIn::W(1), None, 0, 10),
            op(1, RIn::R, Some(0), 11, 12),
        ];
        let (o, _) = check(&Register, &h, Budget::default());
        match o {
            Outcome::NotLinearizable(f) => {
                assert_eq!(f.linearized, 1);
                assert_eq!(f.blocked_by, 1);
            }
            o => panic!("{o:?}"),
        }
        // Once a concurrent read saw the new value, a later read may not
        // see the old one (no flickering).
        let h = vec![
            op(0, RIn::W(1), None, 0, 100),
            op(1, RIn::R, Some(1), 1, 5),
            op(2, RIn::R, Some(0), 6, 8),
        ];
        assert!(!check(&Register, &h, Budget::default()).0.is_linearizable());
    }

    #[test]
    fn a_write_without_answer_may_land_late_or_never() {
        let unknown = Operation {
            client: 0,
            input: RIn::W(7),
            output: None,
            call: 0,
            ret: None,
        };
        let h = vec![
            unknown.clone(),
            op(1, RIn::R, Some(0), 10, 11),
            op(1, RIn::R, Some(7), 20, 21),
        ];
        assert!(check(&Register, &h, Budget::default()).0.is_linearizable());
        let h = vec![unknown.clone(), op(1, RIn::R, Some(0), 10, 11)];
        assert!(check(&Register, &h, Budget::default()).0.is_linearizable());
        // But once seen it cannot vanish.
        let h = vec![
            unknown,
            op(1, RIn::R, Some(7), 10, 11),
            op(1, RIn::R, Some(0), 20, 21),
        ];
        assert!(!check(&Register, &h, Budget::default()).0.is_linearizable());
    }

    #[test]
    fn the_budget_bounds_the_search() {
        // Many concurrent writes and an impossible read: exhaustive search.
        let mut h: Vec<_> = (0..18)
            .map(|i| op(i, RIn::W(i as u32 + 1), None, 0, 1000))
            .collect();
        h.push(op(99, RIn::R, Some(500), 0, 1000));
        let (o, steps) = check(&Register, &h, Budget { max_steps: 1000 });
        assert!(matches!(o, Outcome::Undecided { .. }), "{o:?}");
        assert!(steps > 1000);
    }
}
