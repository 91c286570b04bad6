//! The crate's error type.

use std::path::PathBuf;

/// Errors of the replication layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not applied, and safe to retry: no leader is known, leadership
    /// changed before the request was proposed, the proposal was replaced
    /// by a new leader's entry, or the node is stopping.
    #[error("unavailable (not applied, retry): {0}")]
    Unavailable(String),
    /// This node is not the leader; `leader` is the leader it knows of.
    /// Callers forward the request there.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The known leader, if any.
        leader: Option<u64>,
    },
    /// The request was proposed but its fate is unknown (it timed out, or
    /// the connection to the leader broke): it may or may not be applied.
    /// Never retried automatically.
    #[error("outcome unknown (the write may or may not have been applied): {0}")]
    OutcomeUnknown(String),
    /// A transaction's reads were changed by a later commit; not applied.
    #[error("transaction conflict on key {key:?}")]
    Conflict {
        /// The first conflicting key.
        key: Vec<u8>,
    },
    /// Bad input (key or value too large, unknown member, ...); not applied.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] bedrock_txn::Error),
    /// The Raft log failed (I/O, corruption, poisoned).
    #[error(transparent)]
    Wal(#[from] bedrock_wal::Error),
    /// The raft crate refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// Stored Raft state is damaged: the file and byte offset of the record.
    #[error("corruption in {} at byte offset {offset}: {reason}", path.display())]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset (0 if unknown).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file system call failed.
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
    /// The peer transport failed (connect, RPC error, rejected peer).
    #[error("transport: {0}")]
    Transport(String),
    /// The node has stopped.
    #[error("the raft node has stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// True if the request was certainly not applied and may be retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::NotLeader { .. } | Error::Stopped)
    }
}

impl From<bedrock_lsm::Error> for Error {
    fn from(e: bedrock_lsm::Error) -> Self {
        Error::Storage(bedrock_txn::Error::from(e))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
