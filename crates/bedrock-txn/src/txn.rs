//! Transactions: optimistic read-write ([`Transaction`]) and snapshot
//! read-only ([`ReadTransaction`]).
//!
//! # Isolation
//! A read-write transaction reads at a snapshot taken when it begins, sees
//! its own writes, and buffers its writes. At commit, under the engine's
//! write lock, it checks that no key it read and no range it scanned has a
//! version newer than its snapshot (backward validation, Kung & Robinson,
//! "On Optimistic Methods for Concurrency Control", 1981); if one does, it
//! fails with [`Error::Conflict`] and writes nothing. Otherwise all its
//! writes commit as one WAL record with one sequence number. Validating
//! reads *and* scanned ranges against every later commit makes the history
//! serializable in commit order, phantoms included: a transaction that
//! scanned a range conflicts with a concurrent insert into it.
//!
//! The check is a pure function of (reads, scanned ranges, snapshot,
//! store state), see [`validate`], so a replicated log can run it
//! deterministically on every replica at apply time.

use std::collections::BTreeMap;
use std::ops::Bound;

use bedrock_lsm::{LatestView, Snapshot, WriteBatch};

use crate::{Db, Error, Result};

/// Keys read and ranges scanned by a transaction: what commit validates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSet {
    /// Point reads (keys not found count too).
    pub keys: Vec<Vec<u8>>,
    /// Scanned ranges `[start, end)`; `end = None` is unbounded.
    pub ranges: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Checks `reads` against the latest state: `Err(Conflict)` if any key
/// read, or any key in a scanned range, has a version with a sequence
/// number greater than `snapshot_seq`.
///
/// # Errors
/// [`Error::Conflict`] naming the first changed key (or range start);
/// [`Error::Storage`] if reading the store fails.
pub fn validate(view: &LatestView<'_>, reads: &ReadSet, snapshot_seq: u64) -> Result<()> {
    for key in &reads.keys {
        if view.latest_seq(key)?.is_some_and(|seq| seq > snapshot_seq) {
            return Err(Error::Conflict { key: key.clone() });
        }
    }
    for (start, end) in &reads.ranges {
        if view.range_modified_after(start, end.as_deref(), snapshot_seq)? {
            return Err(Error::Conflict { key: start.clone() });
        }
    }
    Ok(())
}

/// An optimistic read-write transaction. Dropping it without
/// [`Transaction::commit`] rolls it back (it holds no locks).
#[derive(Debug)]
pub struct Transaction {
    db: Db,
    snapshot: Snapshot,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    reads: ReadSet,
    write_bytes: usize,
}

impl Transaction {
    pub(crate) fn new(db: Db) -> Self {
        let snapshot = db.lsm.snapshot();
        Transaction { db, snapshot, writes: BTreeMap::new(), reads: ReadSet::default(), write_bytes: 0 }
    }

    /// The sequence number of the snapshot this transaction reads at.
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot.seq()
    }

    /// Reads `key`: this transaction's own write if any, else the value at
    /// the snapshot. Recorded for validation.
    ///
    /// # Errors
    /// [`Error::Storage`] on read failures.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        self.reads.keys.push(key.to_vec());
        Ok(self.db.lsm.get_at(key, &self.snapshot)?)
    }

    /// Buffers a put of `key` = `value`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or oversized key or value;
    /// [`Error::TooLarge`] if the transaction's writes pass the batch limit.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        let max = self.db.lsm.options().max_value_bytes;
        if value.len() > max {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds the limit of {max} bytes",
                value.len()
            )));
        }
        self.add_write(key, Some(value.to_vec()))
    }

    /// Buffers a delete of `key`.
    ///
    /// # Errors
    /// As for [`Transaction::put`].
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.add_write(key, None)
    }

    /// Keys in `[start, end)` at the snapshot merged with this
    /// transaction's writes, ascending, at most `limit` (0 = no limit). The
    /// range actually covered is recorded for validation, so a concurrent
    /// insert into it is a conflict.
    ///
    /// # Errors
    /// [`Error::Storage`] on read failures.
    pub fn scan(&mut self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut stored = self.db.lsm.iter_at(start, end, &self.snapshot).peekable();
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut own = self.writes.range::<[u8], _>((Bound::Included(start), upper)).peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let next_stored = match stored.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => match stored.next() {
                    Some(Err(e)) => return Err(e.into()),
                    _ => None,
                },
                None => None,
            };
            let next_own = own.peek().map(|(k, _)| (*k).clone());
            let take_own = match (&next_stored, &next_own) {
                (None, None) => break,
                (Some(s), Some(o)) => o <= s,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if take_own {
                if next_stored == next_own {
                    stored.next();
                }
                if let Some((k, Some(v))) = own.next() {
                    out.push((k.clone(), v.clone()));
                }
            } else if let Some(Ok(kv)) = stored.next() {
                out.push(kv);
            }
        }
        // With a limit, only the part up to the last returned key was read.
        let covered_end = match out.last() {
            Some((k, _)) if out.len() == limit => {
                let mut after = k.clone();
                after.push(0);
                Some(after)
            }
            _ => end.map(<[u8]>::to_vec),
        };
        self.reads.ranges.push((start.to_vec(), covered_end));
        Ok(out)
    }

    /// Commits: validates the reads against every commit since the
    /// snapshot and applies the writes as one atomic, durable batch.
    /// Returns the commit sequence number, or the snapshot's for a
    /// transaction that wrote nothing.
    ///
    /// # Errors
    /// [`Error::Conflict`] (nothing written; retry); [`Error::Storage`] if
    /// the write fails (outcome unknown).
    pub fn commit(self) -> Result<u64> {
        if self.writes.is_empty() {
            return Ok(self.snapshot.seq());
        }
        let mut batch = WriteBatch::new();
        for (k, v) in &self.writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        let seq = self.snapshot.seq();
        let reads = &self.reads;
        self.db.lsm.write_checked(batch, |view| validate(view, reads, seq))?
    }

    /// Discards the transaction's writes.
    pub fn rollback(self) {}

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.db.lsm.options().max_key_bytes;
        if key.is_empty() {
            return Err(Error::InvalidArgument("empty key".into()));
        }
        if key.len() > max {
            return Err(Error::InvalidArgument(format!("key of {} bytes exceeds the limit of {max} bytes", key.len())));
        }
        Ok(())
    }

    fn add_write(&mut self, key: &[u8], value: Option<Vec<u8>>) -> Result<()> {
        let added = key.len() + value.as_ref().map_or(0, Vec::len) + 12;
        let max = self.db.lsm.options().max_batch_bytes;
        if self.write_bytes + added > max {
            return Err(Error::TooLarge { size: self.write_bytes + added, max });
        }
        self.write_bytes += added;
        self.writes.insert(key.to_vec(), value);
        Ok(())
    }
}

/// A read-only transaction: every read sees the same snapshot. Never
/// blocks writers and never aborts.
#[derive(Debug)]
pub struct ReadTransaction {
    db: Db,
    snapshot: Snapshot,
}

impl ReadTransaction {
    pub(crate) fn new(db: Db) -> Self {
        let snapshot = db.lsm.snapshot();
        ReadTransaction { db, snapshot }
    }

    /// The sequence number of the snapshot.
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot.seq()
    }

    /// The value of `key` at the snapshot.
    ///
    /// # Errors
    /// [`Error::Storage`] on read failures.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.lsm.get_at(key, &self.snapshot)?)
    }

    /// Keys in `[start, end)` at the snapshot, at most `limit` (0 = no limit).
    ///
    /// # Errors
    /// [`Error::Storage`] on read failures.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        Ok(self.db.lsm.iter_at(start, end, &self.snapshot).take(limit).collect::<Result<_, _>>()?)
    }
}
