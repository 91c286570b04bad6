//! [`Db`]: the transactional database handle, and the retry helper.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bedrock_lsm::{DbStats, Options, WriteBatch};

use crate::lock::{LockManager, TxnId};
use crate::{validate, Error, ReadSet, ReadTransaction, Result, Transaction, TxnOptions};

/// A transactional key-value database: `bedrock_lsm::Db` plus serializable
/// transactions (optimistic or pessimistic) and the lock manager of the
/// pessimistic ones. Cheap to clone (an `Arc` inside); `Send` and `Sync`.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) shared: Arc<Shared>,
}

/// State shared by every handle and transaction of one database.
#[derive(Debug)]
pub(crate) struct Shared {
    lsm: bedrock_lsm::Db,
    pub(crate) locks: LockManager,
    next_txn: AtomicU64,
    /// Pessimistic transactions begun and not yet dropped.
    pessimistic: AtomicUsize,
}

impl Shared {
    pub(crate) fn next_txn_id(&self) -> TxnId {
        self.next_txn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn pessimistic_started(&self) {
        self.pessimistic.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn pessimistic_ended(&self) {
        self.pessimistic.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn any_pessimistic(&self) -> bool {
        self.pessimistic.load(Ordering::SeqCst) > 0
    }
}

/// Attempts made by [`Db::transaction`] before it returns the conflict.
pub const MAX_TRANSACTION_ATTEMPTS: u32 = 10;

impl Db {
    /// Opens or creates the database in `options.dir`.
    ///
    /// # Errors
    /// As for [`bedrock_lsm::Db::open`] (bad options, directory locked by
    /// another process, corruption, I/O), as [`Error::Storage`].
    pub fn open(options: Options) -> Result<Db> {
        let lsm = bedrock_lsm::Db::open(options).map_err(Error::Storage)?;
        let shared = Shared {
            lsm,
            locks: LockManager::default(),
            next_txn: AtomicU64::new(1),
            pessimistic: AtomicUsize::new(0),
        };
        Ok(Db { shared: Arc::new(shared) })
    }

    /// The value of `key`, or `None`. Reads the latest committed state.
    ///
    /// # Errors
    /// [`Error::Storage`] on read failures.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lsm().get(key)?)
    }

    /// Puts one key durably; returns the commit sequence number (the
    /// store's revision). Takes no lock: a pessimistic transaction that
    /// read the key fails its commit validation instead.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or oversized key or value;
    /// [`Error::Storage`] if the write fails (outcome unknown).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<u64> {
        Ok(self.lsm().put(key, value)?)
    }

    /// Deletes one key durably; returns the commit sequence number.
    ///
    /// # Errors
    /// As for [`Db::put`].
    pub fn delete(&self, key: &[u8]) -> Result<u64> {
        Ok(self.lsm().delete(key)?)
    }

    /// Applies a batch atomically and durably; returns its sequence number.
    ///
    /// # Errors
    /// As for [`Db::put`], plus [`Error::TooLarge`].
    pub fn write(&self, batch: WriteBatch) -> Result<u64> {
        Ok(self.lsm().write(batch)?)
    }

    /// Applies `batch` atomically and durably if [`validate`] accepts
    /// `reads` against the latest state, checked under the engine's write
    /// lock; returns the batch's sequence number. This is the whole commit
    /// step of a transaction, as a function of (reads observed, writes,
    /// store state): what a Raft replica runs when it applies a
    /// transaction's log entry.
    ///
    /// # Errors
    /// [`Error::Conflict`] (nothing written); otherwise as for [`Db::write`].
    pub fn write_validated(&self, reads: &ReadSet, batch: WriteBatch) -> Result<u64> {
        self.lsm().write_checked(batch, |view| validate(view, reads))?
    }

    /// Keys in `[start, end)` (`end = None`: unbounded), ascending, at most
    /// `limit` of them (0 = no limit), from the latest committed state.
    ///
    /// # Errors
    /// [`Error::Storage`] on read failures.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.lsm().scan(start, end, limit)?)
    }

    /// Starts an optimistic read-write transaction at a snapshot of now
    /// (the same as `begin_transaction_with(TxnOptions::default())`).
    pub fn begin_transaction(&self) -> Transaction {
        Transaction::new(self.clone(), TxnOptions::default())
    }

    /// Starts a read-write transaction in the mode `options` chooses
    /// (optimistic, or pessimistic with its lock timeout).
    pub fn begin_transaction_with(&self, options: TxnOptions) -> Transaction {
        Transaction::new(self.clone(), options)
    }

    /// Starts a read-only transaction: a consistent snapshot that takes no
    /// locks, never blocks and never aborts.
    pub fn begin_read_only(&self) -> ReadTransaction {
        ReadTransaction::new(self.clone())
    }

    /// Runs `f` in an optimistic transaction and commits it, retrying the
    /// whole transaction on a retryable error ([`Error::is_retryable`])
    /// with exponential backoff (1 ms doubling to 64 ms, each sleep drawn
    /// at random from its upper half), at most [`MAX_TRANSACTION_ATTEMPTS`]
    /// times. Returns `f`'s value and the commit sequence number.
    ///
    /// # Errors
    /// The last retryable error after the final attempt, or any other
    /// error at once.
    pub fn transaction<T>(&self, f: impl FnMut(&mut Transaction) -> Result<T>) -> Result<(T, u64)> {
        self.transaction_with(TxnOptions::default(), f)
    }

    /// [`Db::transaction`] in the mode `options` chooses. With
    /// `pessimistic`, a deadlock victim is retried like a conflict.
    ///
    /// # Errors
    /// As for [`Db::transaction`].
    pub fn transaction_with<T>(
        &self,
        options: TxnOptions,
        mut f: impl FnMut(&mut Transaction) -> Result<T>,
    ) -> Result<(T, u64)> {
        let mut backoff = Duration::from_millis(1);
        let mut attempt = 1;
        loop {
            let mut txn = self.begin_transaction_with(options);
            let id = txn.id;
            let outcome = f(&mut txn).and_then(|value| txn.commit().map(|seq| (value, seq)));
            match outcome {
                Err(e) if e.is_retryable() && attempt < MAX_TRANSACTION_ATTEMPTS => {
                    std::thread::sleep(jittered(backoff, id));
                    backoff = (backoff * 2).min(Duration::from_millis(64));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Flushes memtables to SSTables and waits (used at shutdown).
    ///
    /// # Errors
    /// [`Error::Storage`] if the flush fails.
    pub fn flush(&self) -> Result<()> {
        Ok(self.lsm().flush()?)
    }

    /// Engine statistics.
    pub fn stats(&self) -> DbStats {
        self.lsm().stats()
    }

    /// The newest committed sequence number (the store's revision).
    pub fn last_sequence(&self) -> u64 {
        self.lsm().last_sequence()
    }

    /// The underlying LSM engine.
    pub fn lsm(&self) -> &bedrock_lsm::Db {
        &self.shared.lsm
    }
}

/// A duration in `[backoff / 2, backoff]`, chosen by a hash of the
/// transaction id (unique per attempt), so that transactions that
/// conflicted together do not retry in lockstep.
fn jittered(backoff: Duration, txn: TxnId) -> Duration {
    let mut x = txn.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let half = backoff / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(x % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let b = Duration::from_millis(8);
        for id in 0..1000 {
            let d = jittered(b, id);
            assert!(d >= b / 2 && d <= b, "{d:?}");
        }
        assert_ne!(jittered(b, 1), jittered(b, 2));
    }
}
