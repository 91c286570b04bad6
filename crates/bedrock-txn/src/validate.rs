//! Commit validation: [`ReadSet`] (what a transaction observed) and
//! [`validate`], the pure check run under the engine's write lock.
//!
//! # Why this is enough for serializability
//! Each observation is "key `k` had no version newer than sequence number
//! `s`" (the value read was the newest one at `s`), or "no key in range
//! `[a, b)` had a version newer than `s`" (the scan saw the whole range as
//! of `s`). [`validate`] runs atomically with the commit's sequence-number
//! assignment (inside [`bedrock_lsm::Db::write_checked`]) and accepts only
//! if every observation still holds against the latest state, i.e. every
//! value the transaction read is still the current one at its commit
//! point. The transaction then behaves as if it ran entirely at that point:
//! committed transactions are serializable in commit-sequence order (the
//! backward validation of Kung & Robinson, "On Optimistic Methods for
//! Concurrency Control", 1981, with range observations for phantoms).
//!
//! Writes need no check: a blind write invalidates nothing this
//! transaction observed, and write–write order is the commit order.
//!
//! # Replicated mode
//! [`validate`] depends only on (the read set, the store state up to the
//! previous sequence number): no clock, no lock table, no in-memory
//! transaction state. A Raft replica can therefore ship
//! `(ReadSet, WriteBatch)` in the log entry and run
//! [`crate::Db::write_validated`] at apply time; every replica reaches the
//! same verdict for the same entry.

use std::collections::BTreeMap;

use bedrock_lsm::LatestView;

use crate::{Error, Result};

/// A range `[start, end)` a transaction scanned, and the sequence number
/// its contents were observed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRange {
    /// Inclusive start.
    pub start: Vec<u8>,
    /// Exclusive end; `None` is unbounded.
    pub end: Option<Vec<u8>>,
    /// The scan saw every key of the range as of this sequence number.
    pub observed_seq: u64,
}

/// What a transaction observed: the input of [`validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSet {
    /// Point reads (keys not found count too): key → the sequence number
    /// its value was observed at. The read saw the newest version with a
    /// sequence number `<=` this one. A key read several times keeps the
    /// smallest.
    pub keys: BTreeMap<Vec<u8>, u64>,
    /// Scanned ranges, in the order scanned.
    pub ranges: Vec<ScannedRange>,
}

impl ReadSet {
    /// Records that `key` was observed as of sequence number `seq`.
    pub fn record_key(&mut self, key: &[u8], seq: u64) {
        match self.keys.get_mut(key) {
            Some(s) => *s = (*s).min(seq),
            None => {
                self.keys.insert(key.to_vec(), seq);
            }
        }
    }

    /// Records that `[start, end)` was scanned as of sequence number `seq`.
    pub fn record_range(&mut self, start: &[u8], end: Option<&[u8]>, seq: u64) {
        self.ranges.push(ScannedRange { start: start.to_vec(), end: end.map(<[u8]>::to_vec), observed_seq: seq });
    }

    /// True if nothing was observed (such a transaction needs no check).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

/// The commit check: `Ok` if every observation in `reads` still holds in
/// `view` (the latest state, including writes not yet visible to
/// readers); else [`Error::Conflict`] naming the first changed key in key
/// order, or the start of the first changed range in scan order.
///
/// A key conflicts if its newest version (a put or a tombstone) has a
/// sequence number greater than the one it was observed at; a range
/// conflicts if any key in it does. Pure and deterministic: the same
/// `reads` against the same store state give the same answer on every
/// replica; this is the function a Raft replica runs at apply time.
///
/// # Errors
/// [`Error::Conflict`]; [`Error::Storage`] if reading the store fails.
pub fn validate(view: &LatestView<'_>, reads: &ReadSet) -> Result<()> {
    for (key, &observed) in &reads.keys {
        if view.latest_seq(key)?.is_some_and(|seq| seq > observed) {
            return Err(Error::Conflict { key: key.clone() });
        }
    }
    for r in &reads.ranges {
        if view.range_modified_after(&r.start, r.end.as_deref(), r.observed_seq)? {
            return Err(Error::Conflict { key: r.start.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_reads_keep_the_oldest_observation() {
        let mut r = ReadSet::default();
        assert!(r.is_empty());
        r.record_key(b"k", 9);
        r.record_key(b"k", 5);
        r.record_key(b"k", 7);
        assert_eq!(r.keys.get(&b"k"[..]), Some(&5));
        r.record_range(b"a", None, 3);
        assert_eq!(r.ranges, vec![ScannedRange { start: b"a".to_vec(), end: None, observed_seq: 3 }]);
        assert!(!r.is_empty());
    }
}
