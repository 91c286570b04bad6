//! The crate's error type.

use std::path::PathBuf;

/// Errors returned by the LSM engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key of zero length; keys must have at least one byte.
    #[error("empty key")]
    EmptyKey,
    /// A key longer than [`crate::Options::max_key_bytes`].
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Key length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A value longer than [`crate::Options::max_value_bytes`].
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Value length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A write batch whose encoding exceeds [`crate::Options::max_batch_bytes`].
    #[error("write batch of {len} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge {
        /// Encoded batch size in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// Another process (or another `Db` in this one) holds the directory lock.
    #[error("{} is locked by another Bedrock instance", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An I/O call failed.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes are damaged or inconsistent (a bad manifest record, a
    /// manifest naming a missing SSTable, an undecodable WAL batch).
    #[error("corruption in {} at byte offset {offset}: {reason}", path.display())]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage in `path` (0 when it is the whole file).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An error of the write-ahead log (I/O, corruption, poisoned).
    #[error(transparent)]
    Wal(#[from] bedrock_wal::Error),
    /// An error reading or writing an SSTable.
    #[error(transparent)]
    Table(#[from] bedrock_sstable::Error),
    /// A background flush or compaction, or an fsync, failed earlier; the
    /// database refuses writes until it is reopened, since what is durable
    /// is in doubt. Reads still work.
    #[error("the database is read-only after an earlier failure: {0}")]
    Poisoned(String),
    /// A write that does not fit the database's mode: [`crate::Db::write`]
    /// with [`crate::Options::disable_wal`] set, [`crate::Db::write_at`]
    /// without it, or a sequence number not above the last one.
    #[error("unsupported write: {0}")]
    WriteMode(String),
    /// An option is out of range; the string names it and the rule.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// True for errors caused by the caller's input (bad key, value or batch
    /// size), as opposed to failures of the store.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Error::EmptyKey | Error::KeyTooLarge { .. } | Error::ValueTooLarge { .. } | Error::BatchTooLarge { .. }
        )
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
