//! The crate's error type.

/// Errors returned by transactions and the transactional [`crate::Db`].
///
/// A failed transaction never applies anything: writes are buffered until
/// commit, and a commit either writes its one batch or nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input is invalid (empty key, key or value over the
    /// configured limit); nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Something this transaction read changed before it could commit:
    /// another write landed on `key` (or into a range this transaction
    /// scanned, starting at `key`) after the transaction observed it; or,
    /// for an optimistic commit, a pessimistic transaction holds a lock on
    /// a key it writes. Nothing was written; retry the whole transaction.
    #[error("transaction conflict on key {}", String::from_utf8_lossy(key))]
    Conflict {
        /// The key (or the start of the scanned range) that changed.
        key: Vec<u8>,
    },
    /// This pessimistic transaction was chosen as the victim of a deadlock
    /// while waiting for a lock on `key`: it was rolled back at once (its
    /// locks released, its writes discarded) so the other transactions in
    /// the cycle can proceed. Retry the whole transaction; any further use
    /// of this one returns [`Error::Finished`].
    #[error(
        "deadlock while waiting for a lock on key {}; the transaction was rolled back",
        String::from_utf8_lossy(key)
    )]
    Deadlock {
        /// The key whose lock request would have closed the cycle.
        key: Vec<u8>,
    },
    /// A pessimistic transaction waited [`crate::TxnOptions::lock_timeout`]
    /// for a lock on `key` without getting it. Only the operation failed:
    /// the transaction keeps its other locks and buffered writes and may go
    /// on, retry the operation, or roll back.
    #[error("lock wait timeout on key {} after {waited_ms} ms", String::from_utf8_lossy(key))]
    LockTimeout {
        /// The key whose lock was not granted.
        key: Vec<u8>,
        /// How long the request waited, in milliseconds.
        waited_ms: u64,
    },
    /// The transaction already ended: it was rolled back as a deadlock
    /// victim. (`commit` and `rollback` consume the transaction, so using
    /// one after either is a compile-time error; this is the only way to
    /// reach a finished transaction.) Start a new transaction.
    #[error("the transaction already ended (rolled back as a deadlock victim)")]
    Finished,
    /// The transaction's writes exceed the batch limit
    /// ([`bedrock_lsm::Options::max_batch_bytes`], default 32 MiB); the
    /// write that passed it was not added, nothing was written.
    #[error("transaction of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Approximate encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The storage engine failed (I/O, corruption, read-only after an
    /// earlier failure). If it happened during commit, the outcome of the
    /// commit is unknown.
    #[error(transparent)]
    Storage(bedrock_lsm::Error),
}

impl Error {
    /// True if running the whole transaction again may succeed:
    /// [`Error::Conflict`] and [`Error::Deadlock`]. [`Db::transaction`]
    /// retries exactly these.
    ///
    /// [`Db::transaction`]: crate::Db::transaction
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. } | Error::Deadlock { .. })
    }
}

impl From<bedrock_lsm::Error> for Error {
    fn from(e: bedrock_lsm::Error) -> Self {
        match e {
            bedrock_lsm::Error::BatchTooLarge { len, max } => Error::TooLarge { size: len, max },
            e if e.is_invalid_argument() => Error::InvalidArgument(e.to_string()),
            e => Error::Storage(e),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
