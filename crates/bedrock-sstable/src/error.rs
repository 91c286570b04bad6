//! The crate's error type.

use std::path::PathBuf;

/// Errors returned by the table builder, reader and iterator.
///
/// Every variant that concerns bytes on disk names the file, and where it
/// can, the byte offset in that file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call failed. `op` names the call (`"write"`,
    /// `"sync_data"`), `path` the table file.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The table file the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes of a table are impossible: a bad magic number or version,
    /// a block handle out of range, a malformed entry, keys out of order.
    /// Nothing at or after `offset` in the damaged structure was returned.
    #[error("corruption in {} at byte offset {offset}: {reason}", path.display())]
    Corruption {
        /// The damaged table file.
        path: PathBuf,
        /// Byte offset in `path` of the damaged block, entry or footer.
        offset: u64,
        /// What was wrong with the bytes.
        reason: String,
    },
    /// A block or the footer failed its CRC32 check.
    #[error(
        "checksum mismatch in {} for the block at byte offset {offset}: stored {expected:#010x}, computed {actual:#010x}",
        path.display()
    )]
    ChecksumMismatch {
        /// The damaged table file.
        path: PathBuf,
        /// Byte offset in `path` of the first byte of the block (or footer).
        offset: u64,
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum computed over the bytes read.
        actual: u32,
    },
    /// [`crate::TableBuilder::add`] was given a key that does not sort
    /// strictly after the previous one (per [`crate::compare_internal_keys`]).
    #[error("keys added out of order to {}: each internal key must sort strictly after the previous one", path.display())]
    OutOfOrder {
        /// The table being built.
        path: PathBuf,
    },
    /// An option is out of range; the string names the option and the rule.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
    /// [`crate::TableBuilder::add`] was given a key that is not an internal
    /// key (shorter than [`crate::TRAILER_LEN`] bytes, or an unknown kind).
    #[error("malformed internal key of {len} bytes added to {}", path.display())]
    MalformedKey {
        /// The table being built.
        path: PathBuf,
        /// Length of the rejected key in bytes.
        len: usize,
    },
    /// [`crate::TableBuilder::add`] was given an internal key longer than
    /// [`crate::MAX_KEY_BYTES`] or a value longer than
    /// [`crate::MAX_VALUE_BYTES`]. Nothing was added.
    #[error("entry too large for {}: key {key_len} bytes, value {value_len} bytes", path.display())]
    EntryTooLarge {
        /// The table being built.
        path: PathBuf,
        /// Length of the internal key in bytes.
        key_len: usize,
        /// Length of the value in bytes.
        value_len: usize,
    },
    /// An earlier write to this table failed, so its contents are unknown;
    /// the builder refuses every further call. Delete the file and start over.
    #[error("the table builder for {} is poisoned by an earlier I/O failure", path.display())]
    Poisoned {
        /// The table being built.
        path: PathBuf,
    },
}

impl Error {
    /// Wraps an `io::Error` with the operation and path it came from.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// A corruption error.
    pub(crate) fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption { path: path.into(), offset, reason: reason.into() }
    }

    /// A copy of this error. `Error` is not `Clone` (an `io::Error` is not),
    /// so an I/O error is rebuilt from its kind and message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Error::Io { op, path, source } => {
                Error::Io { op, path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            Error::Corruption { path, offset, reason } => {
                Error::Corruption { path: path.clone(), offset: *offset, reason: reason.clone() }
            }
            Error::ChecksumMismatch { path, offset, expected, actual } => {
                Error::ChecksumMismatch { path: path.clone(), offset: *offset, expected: *expected, actual: *actual }
            }
            Error::OutOfOrder { path } => Error::OutOfOrder { path: path.clone() },
            Error::InvalidOptions(s) => Error::InvalidOptions(s.clone()),
            Error::MalformedKey { path, len } => Error::MalformedKey { path: path.clone(), len: *len },
            Error::EntryTooLarge { path, key_len, value_len } => {
                Error::EntryTooLarge { path: path.clone(), key_len: *key_len, value_len: *value_len }
            }
            Error::Poisoned { path } => Error::Poisoned { path: path.clone() },
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keeps_every_field() {
        let e = Error::ChecksumMismatch { path: "t.sst".into(), offset: 7, expected: 1, actual: 2 };
        assert_eq!(e.to_string(), e.duplicate().to_string());
        let e = Error::io("write", "t.sst", std::io::Error::other("disk on fire"));
        let d = e.duplicate();
        assert_eq!(e.to_string(), d.to_string());
        assert!(matches!(d, Error::Io { op: "write", .. }));
    }
}
