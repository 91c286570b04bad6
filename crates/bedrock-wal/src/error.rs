//! The crate's error type.

use std::path::PathBuf;

/// Errors returned by the write-ahead log and the file systems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed. `op` names the call (`"write"`,
    /// `"sync_data"`, ...) and `path` the file or directory it was made on.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file or directory the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record failed its checksum, or its framing is impossible, somewhere
    /// other than a torn tail. Nothing after `offset` in `path` was used.
    #[error("corruption in {} at byte offset {offset}: {reason}", path.display())]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first damaged record in `path`.
        offset: u64,
        /// What was wrong with the bytes.
        reason: String,
    },
    /// An earlier write or fsync failed, so what is durable is unknown; the
    /// log refuses every further write until it is reopened (an fsync that
    /// failed is never retried, see the PostgreSQL "fsyncgate" discussion).
    #[error("the log is poisoned by an earlier I/O failure: {0}")]
    Poisoned(String),
    /// A record larger than [`crate::WalOptions::max_record_bytes`].
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Length of the rejected payload in bytes.
        len: usize,
        /// The configured limit in bytes.
        max: usize,
    },
    /// An option is out of range; the string names the option and the rule.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
}

impl Error {
    /// Wraps an `io::Error` with the operation and path it came from.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
