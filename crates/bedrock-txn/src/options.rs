//! [`TxnOptions`]: the concurrency mode of one transaction and its lock
//! wait bound.

use std::time::Duration;

/// Options of one read-write transaction, passed to
/// [`crate::Db::begin_transaction_with`]. [`TxnOptions::default`] is an
/// optimistic transaction, which is what [`crate::Db::begin_transaction`]
/// starts.
///
/// The size limit of a transaction is the engine's
/// [`bedrock_lsm::Options::max_batch_bytes`] (default 32 MiB): a committed
/// transaction is one write batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOptions {
    /// `false`: optimistic. Reads come from a snapshot taken at begin, take
    /// no locks and are validated at commit; a conflict makes the commit
    /// fail with the retryable [`crate::Error::Conflict`].
    ///
    /// `true`: pessimistic (strict two-phase locking). A read takes a
    /// shared lock on the key and a write an exclusive one, waiting for
    /// conflicting holders; reads see the latest committed value; every
    /// lock is held until commit, rollback or drop. Commit still validates
    /// (see [`crate::validate`]), which catches non-transactional writes
    /// and inserts into scanned ranges.
    ///
    /// Default: `false` (optimistic).
    pub pessimistic: bool,
    /// How long a pessimistic transaction waits for one lock before the
    /// operation fails with [`crate::Error::LockTimeout`]. A deadlock is
    /// reported at once as [`crate::Error::Deadlock`], without waiting for
    /// this. Ignored by optimistic transactions, which never wait.
    ///
    /// Default: 1 s (TiKV's `wait-for-lock-timeout`). Zero means "fail at
    /// once instead of waiting"; [`Duration::MAX`] means no bound (only
    /// deadlock detection ends a wait).
    pub lock_timeout: Duration,
}

/// Default of [`TxnOptions::lock_timeout`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions { pessimistic: false, lock_timeout: DEFAULT_LOCK_TIMEOUT }
    }
}

impl TxnOptions {
    /// Pessimistic options with the default lock timeout.
    pub fn pessimistic() -> Self {
        TxnOptions { pessimistic: true, ..TxnOptions::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults() {
        let o = TxnOptions::default();
        assert!(!o.pessimistic);
        assert_eq!(o.lock_timeout, Duration::from_secs(1));
        assert_eq!(TxnOptions::pessimistic(), TxnOptions { pessimistic: true, lock_timeout: Duration::from_secs(1) });
    }
}
