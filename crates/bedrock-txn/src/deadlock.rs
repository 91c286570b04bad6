//! The wait-for graph of the lock manager and its cycle check.
//!
//! A node is a transaction; an edge `a → b` means "`a` is waiting for a
//! lock and `b` holds a conflicting lock on that key, or is queued ahead
//! of `a` with a conflicting request". Only waiting transactions have
//! outgoing edges, and a transaction waits for at most one lock at a time.
//!
//! # Invariants
//! - **Exact.** The edges of a waiting transaction are recomputed from the
//!   lock table (under the key's shard lock) whenever the holders or the
//!   queue of that key change, and removed when its wait ends. So every
//!   cycle in the graph is a real deadlock (no false victims).
//! - **Every cycle is found when it forms.** Recomputing edges only ever
//!   *removes* edges of transactions already waiting (a request ahead that
//!   is granted keeps its mode; one that leaves is no longer ahead). New
//!   edges appear only (a) out of a transaction that starts waiting;
//!   (b) into a transaction that is running, not waiting (a fast-path grant
//!   or upgrade), which has no outgoing edge and so closes no cycle until
//!   it waits itself; (c) from the waiters of a key into a holder whose
//!   upgrade request (shared → exclusive) is queued at the front: each of
//!   them already reached that holder, because the queue's front request
//!   is exclusive (a shared one compatible with the shared holders would
//!   have been granted) and waits for every holder, and every later
//!   request conflicts with it or with the holders. Hence a cycle is closed
//!   only by a transaction starting to wait, and the check at that moment
//!   ([`WaitForGraph::would_deadlock`]) finds it. The requester that closes
//!   the cycle is the victim; it is never queued.
//!
//! The graph sits behind one mutex, taken only on the slow path (a request
//! that must wait, or a release or timeout on a key with waiters), always
//! after the shard lock of the key concerned; requests that are granted at
//! once never touch it.

use std::collections::{HashMap, HashSet};

use crate::lock::TxnId;

/// Edges from each waiting transaction to the transactions it waits for.
#[derive(Debug, Default)]
pub(crate) struct WaitForGraph {
    edges: HashMap<TxnId, Vec<TxnId>>,
}

impl WaitForGraph {
    /// True if `waiter` waiting for `blockers` would close a cycle: some
    /// blocker already (transitively) waits for `waiter`. `waiter` must
    /// not be waiting now.
    pub(crate) fn would_deadlock(&self, waiter: TxnId, blockers: &[TxnId]) -> bool {
        debug_assert!(!self.edges.contains_key(&waiter), "a transaction waits for one lock at a time");
        let mut seen: HashSet<TxnId> = HashSet::new();
        let mut stack: Vec<TxnId> = blockers.to_vec();
        while let Some(t) = stack.pop() {
            if t == waiter {
                return true;
            }
            if seen.insert(t) {
                if let Some(next) = self.edges.get(&t) {
                    stack.extend_from_slice(next);
                }
            }
        }
        false
    }

    /// Sets the transactions `waiter` waits for (replacing earlier edges);
    /// an empty list removes it.
    pub(crate) fn set(&mut self, waiter: TxnId, blockers: Vec<TxnId>) {
        if blockers.is_empty() {
            self.edges.remove(&waiter);
        } else {
            self.edges.insert(waiter, blockers);
        }
    }

    /// `waiter` stopped waiting (granted, timed out).
    pub(crate) fn remove(&mut self, waiter: TxnId) {
        self.edges.remove(&waiter);
    }

    /// Number of waiting transactions (for tests and invariants).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.edges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles_through_the_requester_only() {
        let mut g = WaitForGraph::default();
        g.set(1, vec![2]);
        g.set(2, vec![3, 4]);
        assert!(g.would_deadlock(3, &[1]), "3 → 1 → 2 → 3");
        assert!(g.would_deadlock(4, &[5, 1]), "4 → 1 → 2 → 4");
        assert!(!g.would_deadlock(5, &[1]), "1 → 2 → {{3, 4}} never reaches 5");
        assert!(!g.would_deadlock(6, &[]));
        g.remove(2);
        assert!(!g.would_deadlock(3, &[1]), "edge 2 → 3 is gone");
        g.set(1, vec![]);
        assert_eq!(g.waiting(), 0);
    }

    #[test]
    fn handles_shared_subgraphs_without_revisiting() {
        // A diamond fan-out repeated 20 times: a naive DFS without a visited
        // set would walk 2^20 paths.
        let mut g = WaitForGraph::default();
        for i in 0..20u64 {
            let (a, b, next) = (3 * i + 1, 3 * i + 2, 3 * i + 3);
            g.set(3 * i, vec![a, b]);
            g.set(a, vec![next]);
            g.set(b, vec![next]);
        }
        assert!(!g.would_deadlock(1000, &[0]));
        assert!(g.would_deadlock(60, &[0]));
    }
}
