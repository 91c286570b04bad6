//! [`Transaction`]: a read-write transaction, optimistic or pessimistic.
//!
//! Both modes buffer writes in the transaction (read-your-writes) and
//! commit them as one write batch, applied only if [`crate::validate`]
//! accepts what the transaction observed. They differ in how reads are
//! made:
//!
//! - **Optimistic**: every read is at the snapshot taken at begin and
//!   takes no lock; a concurrent commit to something read makes the commit
//!   fail with [`Error::Conflict`].
//! - **Pessimistic** (strict two-phase locking, see the `pessimistic`
//!   module): a read first takes a shared lock on the key, a write (and
//!   [`Transaction::get_for_update`]) an exclusive one, and the read then
//!   sees the *latest* committed value. Locks are held until the
//!   transaction ends, so other transactions cannot change what it read;
//!   validation at commit still catches non-transactional writes
//!   ([`crate::Db::put`]) and inserts into scanned ranges, which locks on
//!   keys cannot see.
//!
//! `commit` and `rollback` take `self`, so using a transaction after it
//! ended does not compile. Dropping a transaction rolls it back and
//! releases its locks.

use std::collections::{BTreeMap, HashMap};

use bedrock_lsm::{Snapshot, WriteBatch};

use crate::lock::{LockMode, TxnId};
use crate::{Db, Error, ReadSet, Result, TxnOptions};

/// Fixed part of [`WriteBatch::approximate_bytes`] (sequence and count).
const BATCH_HEADER_BYTES: usize = 18;

/// A read-write transaction. Start one with [`Db::begin_transaction`]
/// (optimistic) or [`Db::begin_transaction_with`]. Dropping it without
/// [`Transaction::commit`] rolls it back and releases its locks.
#[derive(Debug)]
pub struct Transaction {
    pub(crate) db: Db,
    pub(crate) id: TxnId,
    pub(crate) options: TxnOptions,
    /// Taken at begin; optimistic reads use it.
    pub(crate) snapshot: Snapshot,
    pub(crate) writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Sum of the batch sizes of `writes` (header excluded).
    pub(crate) write_bytes: usize,
    pub(crate) reads: ReadSet,
    /// Locks held in the lock manager (pessimistic mode, or an optimistic
    /// commit in progress).
    pub(crate) locks: HashMap<Vec<u8>, LockMode>,
    /// Rolled back as a deadlock victim.
    pub(crate) aborted: bool,
    /// Off only through the test hook [`Transaction::disable_validation_for_testing`].
    pub(crate) validation: bool,
}

impl Transaction {
    pub(crate) fn new(db: Db, options: TxnOptions) -> Self {
        let snapshot = db.lsm().snapshot();
        let id = db.shared.next_txn_id();
        if options.pessimistic {
            db.shared.pessimistic_started();
        }
        Transaction {
            db,
            id,
            options,
            snapshot,
            writes: BTreeMap::new(),
            write_bytes: 0,
            reads: ReadSet::default(),
            locks: HashMap::new(),
            aborted: false,
            validation: true,
        }
    }

    /// The sequence number of the snapshot taken at begin (what optimistic
    /// reads see).
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot.seq()
    }

    /// The options this transaction was started with.
    pub fn options(&self) -> TxnOptions {
        self.options
    }

    /// What this transaction observed so far: the input of commit
    /// validation.
    pub fn read_set(&self) -> &ReadSet {
        &self.reads
    }

    /// Reads `key`: this transaction's own write if any; else, optimistic,
    /// the value at the begin snapshot; pessimistic, the latest committed
    /// value after taking a shared lock. Recorded for validation.
    ///
    /// # Errors
    /// [`Error::Deadlock`], [`Error::LockTimeout`] (pessimistic);
    /// [`Error::Finished`] after a deadlock; [`Error::Storage`].
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(key, LockMode::Shared)
    }

    /// Reads `key` intending to write it (`SELECT … FOR UPDATE`).
    /// Pessimistic: takes the exclusive lock at once, so a read-modify-write
    /// does not deadlock on a shared→exclusive upgrade against another
    /// transaction doing the same. Optimistic: the same as
    /// [`Transaction::get`].
    ///
    /// # Errors
    /// As for [`Transaction::get`].
    pub fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(key, LockMode::Exclusive)
    }

    fn read(&mut self, key: &[u8], mode: LockMode) -> Result<Option<Vec<u8>>> {
        self.check_active()?;
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        if self.options.pessimistic {
            self.lock(key, mode)?;
            return self.read_latest(key);
        }
        self.reads.record_key(key, self.snapshot.seq());
        Ok(self.db.lsm().get_at(key, &self.snapshot)?)
    }

    /// Buffers a put of `key` = `value` (pessimistic: after taking the
    /// exclusive lock on `key`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or oversized key or value;
    /// [`Error::TooLarge`] if the transaction's writes would pass the
    /// batch limit; [`Error::Deadlock`], [`Error::LockTimeout`],
    /// [`Error::Finished`] as for [`Transaction::get`]. On error nothing is
    /// buffered.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_active()?;
        self.check_key(key)?;
        let max = self.db.lsm().options().max_value_bytes;
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
        self.check_active()?;
        self.check_key(key)?;
        self.add_write(key, None)
    }

    /// Keys in `[start, end)` (`end = None`: unbounded), ascending, at most
    /// `limit` (0 = no limit), merged with this transaction's writes.
    /// Optimistic: at the begin snapshot; pessimistic: the latest committed
    /// state (scans take no locks). The range actually covered is recorded
    /// for validation, so a concurrent insert into it is a conflict.
    ///
    /// # Errors
    /// [`Error::Finished`] after a deadlock; [`Error::Storage`].
    pub fn scan(&mut self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_active()?;
        let latest;
        let snapshot = if self.options.pessimistic {
            latest = self.db.lsm().snapshot();
            &latest
        } else {
            &self.snapshot
        };
        let stored = self.db.lsm().iter_at(start, end, snapshot);
        let merged = crate::scan::merge(stored, &self.writes, start, end, limit)?;
        self.reads.record_range(start, merged.covered_end.as_deref(), snapshot.seq());
        Ok(merged.rows)
    }

    /// Commits: validates what the transaction observed against every
    /// commit since ([`crate::validate`]) and applies its writes as one
    /// atomic, durable write batch with one sequence number. Returns the
    /// commit sequence number; an optimistic transaction that wrote nothing
    /// returns its snapshot's (it read one consistent snapshot and needs no
    /// check), a pessimistic one that only read commits an empty batch so
    /// that its reads, made at different times, are validated. Locks are
    /// released after the batch is durable and visible.
    ///
    /// # Errors
    /// [`Error::Conflict`] (nothing written; retry); [`Error::Finished`]
    /// after a deadlock; [`Error::Storage`] if the write fails (outcome
    /// unknown).
    pub fn commit(mut self) -> Result<u64> {
        self.check_active()?;
        if self.writes.is_empty() && (!self.options.pessimistic || self.reads.is_empty()) {
            return Ok(self.snapshot.seq());
        }
        if !self.options.pessimistic {
            self.lock_writes_if_contended()?;
        }
        let mut batch = WriteBatch::new();
        for (k, v) in &self.writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        let unchecked = ReadSet::default();
        let reads = if self.validation { &self.reads } else { &unchecked };
        self.db.write_validated(reads, batch)
    }

    /// Discards the transaction's writes and releases its locks (the same
    /// as dropping it).
    pub fn rollback(self) {}

    /// **Test hook, not an API.** Commits this transaction without
    /// validation, so tests can show that each anomaly test fails without
    /// it. Never call it outside tests: it breaks serializability.
    #[doc(hidden)]
    pub fn disable_validation_for_testing(&mut self) {
        self.validation = false;
    }

    pub(crate) fn check_active(&self) -> Result<()> {
        if self.aborted {
            return Err(Error::Finished);
        }
        Ok(())
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.db.lsm().options().max_key_bytes;
        if key.is_empty() {
            return Err(Error::InvalidArgument("empty key".into()));
        }
        if key.len() > max {
            return Err(Error::InvalidArgument(format!("key of {} bytes exceeds the limit of {max} bytes", key.len())));
        }
        Ok(())
    }

    /// Size of one write in [`WriteBatch::approximate_bytes`] terms.
    fn entry_bytes(key: &[u8], value: Option<&Vec<u8>>) -> usize {
        match value {
            Some(v) => key.len() + v.len() + 12,
            None => key.len() + 6,
        }
    }

    fn add_write(&mut self, key: &[u8], value: Option<Vec<u8>>) -> Result<()> {
        let old = self.writes.get(key).map_or(0, |v| Self::entry_bytes(key, v.as_ref()));
        let new_total = self.write_bytes - old + Self::entry_bytes(key, value.as_ref());
        let max = self.db.lsm().options().max_batch_bytes;
        if new_total + BATCH_HEADER_BYTES > max {
            return Err(Error::TooLarge { size: new_total + BATCH_HEADER_BYTES, max });
        }
        if self.options.pessimistic {
            self.lock(key, LockMode::Exclusive)?;
        }
        self.write_bytes = new_total;
        self.writes.insert(key.to_vec(), value);
        Ok(())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.release_locks();
        if self.options.pessimistic {
            self.db.shared.pessimistic_ended();
        }
    }
}
