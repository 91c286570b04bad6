//! The per-key lock manager of pessimistic transactions.
//!
//! Locks are shared (reads) or exclusive (writes); a holder of a shared
//! lock may upgrade it. The table is split into [`SHARDS`] shards by a hash
//! of the key, each a mutex over a map from key to [`KeyLock`], so requests
//! on unrelated keys almost never touch the same mutex, and an entry
//! exists only while a key is locked or awaited.
//!
//! # Fairness
//! Each key has a FIFO queue of waiting requests. A new request is granted
//! at once only if the queue is empty and it is compatible with every
//! holder: a shared request queues behind a waiting exclusive one, so
//! writers are not starved by a stream of readers. On release the queue is
//! granted from the front, as many compatible requests as possible, in
//! order. An upgrade goes to the *front* of the queue (the upgrader
//! already holds the key, and everyone queued waits for it anyway).
//!
//! # Waiting
//! A waiter parks on its own condition variable under the shard mutex;
//! the releasing thread grants its lock (moves it to the holders) and wakes
//! it, so a grant is never lost to a race. A wait ends when the lock is
//! granted or at the deadline (`lock_timeout`). Before parking, the
//! requester runs the deadlock check on the wait-for graph (see the
//! `deadlock` module); if waiting would close a cycle it gets
//! [`LockError::Deadlock`] without being queued.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::deadlock::WaitForGraph;

/// Identifies a transaction; never reused within a [`crate::Db`].
pub(crate) type TxnId = u64;

/// Number of shards of the lock table.
pub(crate) const SHARDS: usize = 64;

/// A lock mode. `Shared < Exclusive`: holding exclusive covers shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LockMode {
    /// Many holders; taken by reads.
    Shared,
    /// One holder; taken by writes and reads for update.
    Exclusive,
}

impl LockMode {
    fn compatible(self, other: LockMode) -> bool {
        self == LockMode::Shared && other == LockMode::Shared
    }
}

/// Why a lock was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockError {
    /// Waiting would close a cycle in the wait-for graph; not queued.
    Deadlock,
    /// Not granted within the timeout (or at once, for a zero timeout).
    Timeout {
        /// How long the request waited.
        waited: Duration,
    },
}

/// A queued request.
#[derive(Debug)]
struct Request {
    txn: TxnId,
    mode: LockMode,
    wake: Arc<Condvar>,
}

/// The lock state of one key.
///
/// Invariants (checked by [`KeyLock::check_invariants`]): holders are
/// distinct and pairwise compatible; the front request of the queue is not
/// grantable (otherwise it would have been granted); at most one queued
/// request is an upgrade, and it is at the front.
#[derive(Debug, Default)]
struct KeyLock {
    holders: Vec<(TxnId, LockMode)>,
    queue: VecDeque<Request>,
}

impl KeyLock {
    fn held_by(&self, txn: TxnId) -> Option<LockMode> {
        self.holders.iter().find(|(t, _)| *t == txn).map(|(_, m)| *m)
    }

    /// True if `txn` may hold `mode` alongside the other holders.
    fn compatible_with_holders(&self, txn: TxnId, mode: LockMode) -> bool {
        self.holders.iter().all(|(t, m)| *t == txn || m.compatible(mode))
    }

    fn grant(&mut self, txn: TxnId, mode: LockMode) {
        match self.holders.iter_mut().find(|(t, _)| *t == txn) {
            Some(held) => held.1 = held.1.max(mode),
            None => self.holders.push((txn, mode)),
        }
    }

    /// The transactions a request of `txn` for `mode` waits for if it
    /// stands behind `ahead`: conflicting holders and conflicting requests
    /// ahead of it.
    fn blockers<'a>(&self, txn: TxnId, mode: LockMode, ahead: impl Iterator<Item = &'a Request>) -> Vec<TxnId> {
        let mut out: Vec<TxnId> =
            self.holders.iter().filter(|(t, m)| *t != txn && !m.compatible(mode)).map(|(t, _)| *t).collect();
        for r in ahead {
            if r.txn != txn && !r.mode.compatible(mode) && !out.contains(&r.txn) {
                out.push(r.txn);
            }
        }
        out
    }

    /// Grants queued requests from the front while they are compatible,
    /// waking each, then recomputes the wait-for edges of those still
    /// queued. Call after any change of the holders or the queue.
    fn settle(&mut self, graph: &Mutex<WaitForGraph>) {
        if self.queue.is_empty() {
            return;
        }
        let mut graph = graph.lock();
        while let Some(front) = self.queue.front() {
            if !self.compatible_with_holders(front.txn, front.mode) {
                break;
            }
            let Some(r) = self.queue.pop_front() else { break };
            self.grant(r.txn, r.mode);
            graph.remove(r.txn);
            r.wake.notify_one();
        }
        for (i, r) in self.queue.iter().enumerate() {
            graph.set(r.txn, self.blockers(r.txn, r.mode, self.queue.iter().take(i)));
        }
        self.check_invariants();
    }

    fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.queue.is_empty()
    }

    fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            for (i, (t, m)) in self.holders.iter().enumerate() {
                for (u, n) in &self.holders[i + 1..] {
                    assert!(t != u, "transaction {t} listed twice as holder");
                    assert!(m.compatible(*n), "incompatible holders {t} and {u}");
                }
            }
            if let Some(front) = self.queue.front() {
                assert!(!self.compatible_with_holders(front.txn, front.mode), "grantable request left queued");
            }
            for r in self.queue.iter().skip(1) {
                assert!(self.held_by(r.txn).is_none(), "an upgrade request not at the front");
            }
        }
    }
}

/// One shard of the lock table.
#[derive(Debug, Default)]
struct Shard {
    keys: Mutex<HashMap<Vec<u8>, KeyLock>>,
}

/// The lock table: [`SHARDS`] shards plus the wait-for graph.
pub(crate) struct LockManager {
    shards: Box<[Shard]>,
    graph: Mutex<WaitForGraph>,
}

impl std::fmt::Debug for LockManager {
    /// Deliberately short: the table can hold many keys, and formatting
    /// must not take shard locks (a transaction may be printed while one
    /// is held elsewhere).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockManager").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

impl Default for LockManager {
    fn default() -> Self {
        LockManager { shards: (0..SHARDS).map(|_| Shard::default()).collect(), graph: Mutex::default() }
    }
}

impl LockManager {
    fn shard(&self, key: &[u8]) -> &Shard {
        let h = xxhash_rust::xxh3::xxh3_64(key);
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Acquires `mode` on `key` for `txn`, waiting at most `timeout`
    /// (zero: do not wait). Re-entrant: a lock already held in a covering
    /// mode is granted at once; a shared lock is upgraded in place.
    ///
    /// # Errors
    /// [`LockError::Deadlock`] if waiting would close a cycle (the request
    /// is not queued); [`LockError::Timeout`] if the deadline passes.
    pub(crate) fn lock(&self, txn: TxnId, key: &[u8], mode: LockMode, timeout: Duration) -> Result<(), LockError> {
        let start = Instant::now();
        let mut keys = self.shard(key).keys.lock();
        if !keys.contains_key(key) {
            keys.insert(key.to_vec(), KeyLock::default());
        }
        let Some(entry) = keys.get_mut(key) else { unreachable!("inserted above") };
        let held = entry.held_by(txn);
        if held >= Some(mode) {
            return Ok(());
        }
        let upgrade = held.is_some();
        if entry.compatible_with_holders(txn, mode) && (upgrade || entry.queue.is_empty()) {
            entry.grant(txn, mode);
            if upgrade {
                // Waiters now wait for an exclusive holder; refresh their edges.
                entry.settle(&self.graph);
            }
            return Ok(());
        }
        if timeout.is_zero() {
            return Err(LockError::Timeout { waited: Duration::ZERO });
        }
        let wake = self.enqueue(entry, txn, mode, upgrade)?;
        let deadline = start.checked_add(timeout);
        loop {
            if keys.get(key).and_then(|e| e.held_by(txn)) >= Some(mode) {
                return Ok(());
            }
            let timed_out = match deadline {
                Some(d) => wake.wait_until(&mut keys, d).timed_out(),
                None => {
                    wake.wait(&mut keys);
                    false
                }
            };
            if timed_out {
                if keys.get(key).and_then(|e| e.held_by(txn)) >= Some(mode) {
                    return Ok(());
                }
                self.abandon(&mut keys, key, txn);
                return Err(LockError::Timeout { waited: start.elapsed() });
            }
        }
    }

    /// Queues a request that cannot be granted now, unless waiting would
    /// close a cycle; returns the condition variable the grant will signal.
    /// An upgrade goes to the front of the queue, anything else to the back.
    fn enqueue(
        &self,
        entry: &mut KeyLock,
        txn: TxnId,
        mode: LockMode,
        upgrade: bool,
    ) -> Result<Arc<Condvar>, LockError> {
        let ahead: Box<dyn Iterator<Item = &Request>> =
            if upgrade { Box::new(std::iter::empty()) } else { Box::new(entry.queue.iter()) };
        let blockers = entry.blockers(txn, mode, ahead);
        debug_assert!(!blockers.is_empty(), "a request that must wait waits for someone");
        {
            let mut graph = self.graph.lock();
            if graph.would_deadlock(txn, &blockers) {
                return Err(LockError::Deadlock);
            }
            graph.set(txn, blockers);
        }
        let wake = Arc::new(Condvar::new());
        let request = Request { txn, mode, wake: wake.clone() };
        if upgrade {
            entry.queue.push_front(request);
            entry.settle(&self.graph);
        } else {
            entry.queue.push_back(request);
        }
        Ok(wake)
    }

    /// Removes `txn`'s queued request for `key` after a timeout.
    fn abandon(&self, keys: &mut HashMap<Vec<u8>, KeyLock>, key: &[u8], txn: TxnId) {
        if let Some(entry) = keys.get_mut(key) {
            entry.queue.retain(|r| r.txn != txn);
            self.graph.lock().remove(txn);
            entry.settle(&self.graph);
        }
        Self::drop_if_idle(keys, key);
    }

    fn drop_if_idle(keys: &mut HashMap<Vec<u8>, KeyLock>, key: &[u8]) {
        if keys.get(key).is_some_and(KeyLock::is_idle) {
            keys.remove(key);
        }
    }

    /// Releases `txn`'s lock on `key` (if any) and grants waiters.
    pub(crate) fn unlock(&self, txn: TxnId, key: &[u8]) {
        let mut keys = self.shard(key).keys.lock();
        if let Some(entry) = keys.get_mut(key) {
            entry.holders.retain(|(t, _)| *t != txn);
            entry.settle(&self.graph);
        }
        Self::drop_if_idle(&mut keys, key);
    }

    /// Keys with a lock entry (held or awaited), over all shards.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.keys.lock().len()).sum()
    }

    /// Transactions waiting for a lock.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.graph.lock().waiting()
    }
}

#[cfg(test)]
mod tests;
