//! The crate's error type.

/// Errors returned by transactions and the transactional [`crate::Db`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input is invalid (empty key, key or value over the
    /// configured limit); nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another transaction committed a write to `key` (or into a range this
    /// transaction scanned, starting at `key`) after this transaction's
    /// snapshot. Nothing was written; retry the whole transaction.
    #[error("transaction conflict on key {}", String::from_utf8_lossy(key))]
    Conflict {
        /// The key (or the start of the scanned range) that changed.
        key: Vec<u8>,
    },
    /// The transaction's writes exceed the batch limit
    /// ([`bedrock_lsm::Options::max_batch_bytes`]); nothing was written.
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
    /// True if retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. })
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
