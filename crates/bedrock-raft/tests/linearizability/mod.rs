//! A linearizability checker for histories of a key-value register
//! (get and put on several keys), in the style of Porcupine (Athalye) and
//! Knossos: the Wing–Gong search with Lowe's memoization of (linearized
//! set, state), run per key (a history is linearizable iff each key's
//! sub-history is, since keys are independent objects).
//!
//! An operation whose outcome is unknown (a put that timed out) has no
//! return time: it may take effect at any point after its call, or never,
//! which is what an infinitely late return allows. A get that failed
//! observed nothing and must be left out of the history.

use std::collections::{BTreeMap, HashSet};

/// What a client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Read the key.
    Get,
    /// Write this value to the key.
    Put(u64),
}

/// One completed (or indeterminate) operation on `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Client that issued it (for messages only).
    pub client: u64,
    /// The key.
    pub key: u64,
    /// When it was called (any monotonic unit).
    pub call: u64,
    /// When it returned; `None` if the outcome is unknown.
    pub ret: Option<u64>,
    /// What was asked.
    pub input: Input,
    /// For a get, the value read (`None`: absent).
    pub read: Option<u64>,
}

/// Checks `history`; `Err` names the first key whose operations admit no
/// linearization, with those operations.
pub fn check(history: &[Op]) -> Result<(), String> {
    let mut by_key: BTreeMap<u64, Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(*op);
    }
    for (key, ops) in by_key {
        if !linearizable(&ops) {
            let mut ops = ops;
            ops.sort_by_key(|o| o.call);
            let lines: Vec<String> = ops.iter().map(|o| format!("  {o:?}")).collect();
            return Err(format!("key {key}: no linearization of\n{}", lines.join("\n")));
        }
    }
    Ok(())
}

const NIL: usize = usize::MAX;

/// The register's next state after `op`, or `None` if `op` cannot happen
/// in `state`.
fn step(state: Option<u64>, op: &Op) -> Option<Option<u64>> {
    match op.input {
        Input::Put(v) => Some(Some(v)),
        Input::Get => (op.read == state).then_some(state),
    }
}

/// Wing–Gong with memoization over one object's operations.
fn linearizable(ops: &[Op]) -> bool {
    // Events: (time, is_return, op). At equal times calls come first, so
    // operations that touch in time count as concurrent.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        events.push((op.ret.unwrap_or(u64::MAX), true, i));
    }
    events.sort_unstable();
    let m = events.len();
    let head = m;
    let mut next = vec![NIL; m + 1];
    let mut prev = vec![NIL; m + 1];
    let mut ret_entry = vec![NIL; ops.len()];
    let mut last = head;
    for (e, &(_, is_ret, op)) in events.iter().enumerate() {
        next[last] = e;
        prev[e] = last;
        last = e;
        if is_ret {
            ret_entry[op] = e;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = next[e];
        if next[e] != NIL {
            prev[next[e]] = prev[e];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = e;
        if next[e] != NIL {
            prev[next[e]] = e;
        }
    };
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state: Option<u64> = None;
    let mut entry = next[head];
    while next[head] != NIL {
        let (_, is_ret, op) = events[entry];
        if !is_ret {
            if let Some(new_state) = step(state, &ops[op]) {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    stack.push((entry, state));
                    state = new_state;
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, ret_entry[op]);
                    entry = next[head];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = next[entry];
        } else {
            // An operation returned before it could be linearized: undo
            // the last choice and try the next candidate after it.
            let Some((call_entry, old_state)) = stack.pop() else { return false };
            let (_, _, undone) = events[call_entry];
            linearized[undone / 64] &= !(1 << (undone % 64));
            state = old_state;
            relink(&mut next, &mut prev, ret_entry[undone]);
            relink(&mut next, &mut prev, call_entry);
            entry = next[call_entry];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: u64, call: u64, ret: Option<u64>, v: u64) -> Op {
        Op { client, key: 1, call, ret, input: Input::Put(v), read: None }
    }

    fn get(client: u64, call: u64, ret: u64, read: Option<u64>) -> Op {
        Op { client, key: 1, call, ret: Some(ret), input: Input::Get, read }
    }

    #[test]
    fn sequential_histories() {
        assert!(check(&[put(1, 0, Some(10), 1), get(2, 20, 30, Some(1))]).is_ok());
        assert!(check(&[get(2, 0, 5, None), put(1, 10, Some(20), 1)]).is_ok());
        // A read after a completed write must see it.
        assert!(check(&[put(1, 0, Some(10), 1), get(2, 20, 30, None)]).is_err());
        // The later of two completed writes wins.
        assert!(check(&[put(1, 0, Some(10), 1), put(1, 20, Some(30), 2), get(2, 40, 50, Some(1))]).is_err());
        assert!(check(&[put(1, 0, Some(10), 1), put(1, 20, Some(30), 2), get(2, 40, 50, Some(2))]).is_ok());
    }

    #[test]
    fn concurrent_reads_may_see_either_side_but_never_go_back() {
        let w = put(1, 0, Some(100), 1);
        assert!(check(&[w, get(2, 10, 20, None), get(3, 30, 40, Some(1))]).is_ok());
        assert!(check(&[w, get(2, 10, 20, Some(1)), get(3, 30, 40, None)]).is_err(), "a read went back in time");
        // Overlapping reads may disagree in either order.
        assert!(check(&[w, get(2, 10, 50, Some(1)), get(3, 20, 60, None)]).is_ok());
    }

    #[test]
    fn indeterminate_writes_may_happen_late_or_never() {
        let w = put(1, 0, None, 7);
        assert!(check(&[w, get(2, 10, 20, None)]).is_ok(), "never (yet)");
        assert!(check(&[w, get(2, 10, 20, Some(7))]).is_ok(), "took effect");
        assert!(check(&[w, get(2, 10, 20, None), get(2, 500, 600, Some(7))]).is_ok(), "late");
        assert!(check(&[w, get(2, 10, 20, Some(7)), get(2, 30, 40, None)]).is_err(), "then undone");
        assert!(check(&[w, get(2, 10, 20, Some(8))]).is_err(), "a value nobody wrote");
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut other = get(2, 20, 30, None);
        other.key = 2;
        assert!(check(&[put(1, 0, Some(10), 1), other]).is_ok());
    }

    #[test]
    fn many_concurrent_writers_are_checked_quickly() {
        // 12 overlapping writes and a read of the one written last:
        // the memoization keeps this from exploring 12! orders.
        let mut h: Vec<Op> = (0..12).map(|i| put(i, i, Some(1_000), i + 1)).collect();
        h.push(get(99, 2_000, 2_001, Some(5)));
        assert!(check(&h).is_ok());
        h.push(get(99, 3_000, 3_001, Some(6)));
        assert!(check(&h).is_err());
    }
}
