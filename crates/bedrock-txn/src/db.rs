//! [`Db`]: the transactional database handle.

use std::sync::Arc;
use std::time::Duration;

use bedrock_lsm::{DbStats, Options, WriteBatch};

use crate::{Error, ReadTransaction, Result, Transaction};

/// A transactional key-value database: `bedrock_lsm::Db` plus optimistic
/// serializable transactions. Cheap to clone (an `Arc` inside); `Send` and
/// `Sync`.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) lsm: Arc<bedrock_lsm::Db>,
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
        Ok(Db { lsm: Arc::new(bedrock_lsm::Db::open(options).map_err(Error::Storage)?) })
    }

    /// The value of `key`, or `None`. Reads the latest committed state.
    ///
    /// # Errors
    /// [`Error::Storage`] on read failures.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lsm.get(key)?)
    }

    /// Puts one key durably; returns the commit sequence number (the
    /// store's revision).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or oversized key or value;
    /// [`Error::Storage`] if the write fails (outcome unknown).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<u64> {
        Ok(self.lsm.put(key, value)?)
    }

    /// Deletes one key durably; returns the commit sequence number.
    ///
    /// # Errors
    /// As for [`Db::put`].
    pub fn delete(&self, key: &[u8]) -> Result<u64> {
        Ok(self.lsm.delete(key)?)
    }

    /// Applies a batch atomically and durably; returns its sequence number.
    ///
    /// # Errors
    /// As for [`Db::put`], plus [`Error::TooLarge`].
    pub fn write(&self, batch: WriteBatch) -> Result<u64> {
        Ok(self.lsm.write(batch)?)
    }

    /// Keys in `[start, end)` (`end = None`: unbounded), ascending, at most
    /// `limit` of them (0 = no limit), from the latest committed state.
    ///
    /// # Errors
    /// [`Error::Storage`] on read failures.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.lsm.scan(start, end, limit)?)
    }

    /// Starts an optimistic read-write transaction at a snapshot of now.
    pub fn begin_transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    /// Starts a read-only transaction: a consistent snapshot that never
    /// blocks and never aborts.
    pub fn begin_read_only(&self) -> ReadTransaction {
        ReadTransaction::new(self.clone())
    }

    /// Runs `f` in a transaction and commits it, retrying on
    /// [`Error::Conflict`] with exponential backoff (1 ms doubling to 64 ms,
    /// with jitter), at most [`MAX_TRANSACTION_ATTEMPTS`] times. Returns
    /// `f`'s value and the commit sequence number.
    ///
    /// # Errors
    /// The last conflict after the final attempt, or any other error at once.
    pub fn transaction<T>(&self, mut f: impl FnMut(&mut Transaction) -> Result<T>) -> Result<(T, u64)> {
        let mut backoff = Duration::from_millis(1);
        let mut attempt = 1;
        loop {
            let mut txn = self.begin_transaction();
            let outcome = f(&mut txn).and_then(|value| txn.commit().map(|seq| (value, seq)));
            match outcome {
                Err(e) if e.is_retryable() && attempt < MAX_TRANSACTION_ATTEMPTS => {
                    let jitter = Duration::from_micros(u64::from(std::process::id() % 7 + attempt) * 100);
                    std::thread::sleep(backoff + jitter);
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
        Ok(self.lsm.flush()?)
    }

    /// Engine statistics.
    pub fn stats(&self) -> DbStats {
        self.lsm.stats()
    }

    /// The newest committed sequence number (the store's revision).
    pub fn last_sequence(&self) -> u64 {
        self.lsm.last_sequence()
    }

    /// The underlying LSM engine.
    pub fn lsm(&self) -> &bedrock_lsm::Db {
        &self.lsm
    }
}
