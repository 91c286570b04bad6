//! The locking side of [`Transaction`]: strict two-phase locking for
//! pessimistic transactions, and the brief write locks of an optimistic
//! commit while pessimistic transactions are running.
//!
//! # Pessimistic transactions
//! - A read takes a shared lock, a write or `get_for_update` an exclusive
//!   one (a held shared lock is upgraded), waiting up to
//!   [`crate::TxnOptions::lock_timeout`]; locks are only released when the
//!   transaction ends (commit, rollback, drop), after its batch is durable
//!   and visible. This is strict 2PL, which alone makes the transactions
//!   that lock what they touch serializable.
//! - After the lock is granted the read sees the latest committed value,
//!   recorded with the sequence number it was read at, so commit validation
//!   passes unless a writer that takes no locks (a non-transactional
//!   [`crate::Db::put`], or an insert into a scanned range) changed it.
//! - A deadlock victim is rolled back at once: its locks are released (so
//!   the rest of the cycle proceeds without waiting for the caller to drop
//!   it) and later calls return [`Error::Finished`]. A lock timeout fails
//!   only the operation.
//!
//! # Optimistic commits meet pessimistic locks
//! While any pessimistic transaction is running, an optimistic commit
//! first *tries* (without waiting) to take exclusive locks on the keys it
//! writes and fails with [`Error::Conflict`] if one is held: a lock holder
//! is promised that no transaction changes what it locked. It never waits,
//! so it cannot take part in a deadlock. With no pessimistic transaction
//! running this step is skipped; a pessimistic transaction starting during
//! an optimistic commit can at worst fail its own validation. While the
//! step runs, two optimistic commits writing the same key at the same
//! moment can also conflict with each other (each holds its locks only for
//! the length of its commit); without pessimistic transactions blind
//! writes never conflict.

use crate::lock::{LockError, LockMode};
use crate::{Error, ReadSet, Result, Transaction};

impl Transaction {
    /// Takes `mode` on `key` (or keeps a covering lock already held).
    pub(crate) fn lock(&mut self, key: &[u8], mode: LockMode) -> Result<()> {
        if self.locks.get(key).is_some_and(|held| *held >= mode) {
            return Ok(());
        }
        match self.db.shared.locks.lock(self.id, key, mode, self.options.lock_timeout) {
            Ok(()) => {
                self.locks.insert(key.to_vec(), mode);
                Ok(())
            }
            Err(LockError::Deadlock) => {
                tracing::debug!(txn = self.id, key = %String::from_utf8_lossy(key), "deadlock victim rolled back");
                self.abort();
                Err(Error::Deadlock { key: key.to_vec() })
            }
            Err(LockError::Timeout { waited }) => {
                tracing::debug!(txn = self.id, key = %String::from_utf8_lossy(key), ?waited, "lock wait timed out");
                Err(Error::LockTimeout {
                    key: key.to_vec(),
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// Reads the latest committed value of `key` (its lock is held) and
    /// records it. The sequence number is loaded before the read, so it is
    /// a lower bound of the state read: validation may at worst report a
    /// conflict for a write that landed in between, never miss one.
    pub(crate) fn read_latest(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let seq = self.db.lsm().last_sequence();
        let value = self.db.lsm().get(key)?;
        self.reads.record_key(key, seq);
        Ok(value)
    }

    /// Rolls back as a deadlock victim: drops writes and observations,
    /// releases every lock, and refuses further use.
    fn abort(&mut self) {
        self.aborted = true;
        self.writes.clear();
        self.write_bytes = 0;
        self.reads = ReadSet::default();
        self.release_locks();
    }

    pub(crate) fn release_locks(&mut self) {
        for (key, _) in self.locks.drain() {
            self.db.shared.locks.unlock(self.id, &key);
        }
    }

    /// Optimistic commit: if pessimistic transactions are running, takes
    /// exclusive locks on the written keys without waiting (released when
    /// the transaction is dropped, after the commit).
    pub(crate) fn lock_writes_if_contended(&mut self) -> Result<()> {
        if !self.db.shared.any_pessimistic() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = self.writes.keys().cloned().collect();
        for key in keys {
            match self.db.shared.locks.lock(self.id, &key, LockMode::Exclusive, std::time::Duration::ZERO) {
                Ok(()) => {
                    self.locks.insert(key, LockMode::Exclusive);
                }
                Err(_) => return Err(Error::Conflict { key }),
            }
        }
        Ok(())
    }
}
