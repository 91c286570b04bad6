//! The async face of the database used by both front ends: validates keys,
//! runs every (blocking, fsyncing) storage call on tokio's blocking pool and
//! converts storage errors into [`ApiError`]s.

use bedrock_raft::command::Command;
use bedrock_raft::Replica;
use bedrock_txn::{Db, WriteBatch};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::read::{self, KeyValue, ScanChunk, ScanRange};
use crate::txn::{self, TxnRequest, TxnResponse};

/// Largest request accepted on either protocol (an HTTP body or a gRPC
/// message), and largest gRPC message sent, in bytes: room for a maximal key
/// and value (8 KiB and 8 MiB by default) and for a transaction carrying
/// several. Values over the storage limit are rejected by the storage layer
/// with a precise message. gRPC clients need the same receive limit to read
/// large values (tonic's default is 4 MiB).
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// Request limits the server checks before reaching the storage layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted key, in bytes (the storage layer's `max_key_bytes`).
    pub max_key_bytes: usize,
}

impl Limits {
    /// Rejects an empty key or one longer than `max_key_bytes`. Writes are
    /// checked again by the storage layer; checking here too makes reads of
    /// impossible keys an error instead of a silent miss.
    pub fn check_key(&self, key: &[u8]) -> Result<(), ApiError> {
        if key.is_empty() {
            return Err(ApiError::invalid("key must not be empty"));
        }
        if key.len() > self.max_key_bytes {
            return Err(ApiError::InvalidArgument(format!(
                "key of {} bytes exceeds the limit of {} bytes",
                key.len(),
                self.max_key_bytes
            )));
        }
        Ok(())
    }
}

/// A value read with the revision of the snapshot it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read<T> {
    /// What was read.
    pub value: T,
    /// The snapshot's revision.
    pub revision: u64,
}

/// Cheap to clone: a handle to the database plus the request limits.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    limits: Limits,
    /// Where backups take their checkpoints (see [`Store::with_scratch_dir`]).
    scratch: std::path::PathBuf,
}

/// Where requests go.
#[derive(Debug, Clone)]
enum Backend {
    /// Single node: straight to the database (its own WAL).
    Direct(Db),
    /// A cluster member: writes through Raft, reads after ReadIndex.
    Cluster(Replica),
}

/// Number of scan chunks buffered between the storage thread and a slow
/// gRPC client before the storage thread waits.
const SCAN_CHANNEL_CHUNKS: usize = 4;

impl Store {
    /// Wraps an open database (single-node server).
    pub fn new(db: Db, limits: Limits) -> Store {
        Store { backend: Backend::Direct(db), limits, scratch: default_scratch() }
    }

    /// Serves through a Raft replica (cluster member).
    pub fn replicated(replica: Replica, limits: Limits) -> Store {
        Store { backend: Backend::Cluster(replica), limits, scratch: default_scratch() }
    }

    /// Sets the directory backups take their checkpoints in; it must be on
    /// the data directory's file system (checkpoints hard-link SSTables).
    /// Default: `bedrock-backups` in the system's temporary directory.
    pub fn with_scratch_dir(mut self, dir: std::path::PathBuf) -> Store {
        self.scratch = dir;
        self
    }

    /// The directory backups take their checkpoints in.
    pub fn scratch_dir(&self) -> &std::path::Path {
        &self.scratch
    }

    /// The replica, in cluster mode.
    pub fn replica(&self) -> Option<&Replica> {
        match &self.backend {
            Backend::Cluster(r) => Some(r),
            Backend::Direct(_) => None,
        }
    }

    /// The database to read, after making a local read linearizable
    /// (ReadIndex) unless `serializable` allows a possibly stale read.
    async fn read_db(&self, serializable: bool) -> Result<Db, ApiError> {
        match &self.backend {
            Backend::Direct(db) => Ok(db.clone()),
            Backend::Cluster(r) => {
                if !serializable {
                    r.read_index().await?;
                }
                Ok(self.local_db())
            }
        }
    }

    /// Replicates one write batch; returns its revision.
    async fn replicate(r: &Replica, batch: WriteBatch) -> Result<u64, ApiError> {
        let mut results = r.propose(vec![Command::Write(batch)]).await?;
        match results.pop() {
            Some(result) => Ok(result?),
            None => Err(ApiError::OutcomeUnknown("no result for the write".into())),
        }
    }

    /// The storage engine's statistics (in cluster mode, of the state
    /// machine's database). Cheap: counters and the current version.
    pub fn engine_stats(&self) -> bedrock_txn::DbStats {
        self.local_db().stats()
    }

    /// This node's database, without any read barrier.
    fn local_db(&self) -> Db {
        match &self.backend {
            Backend::Direct(db) => db.clone(),
            Backend::Cluster(r) => r.node().state_machine().db(),
        }
    }

    /// The limits requests are checked against.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Reads `key` (`None`: missing).
    pub async fn get(&self, key: Vec<u8>) -> Result<Read<Option<Vec<u8>>>, ApiError> {
        self.get_with(key, false).await
    }

    /// Reads `key`; with `serializable` a cluster member answers from its
    /// local state without confirming it is current (may be stale).
    pub async fn get_with(&self, key: Vec<u8>, serializable: bool) -> Result<Read<Option<Vec<u8>>>, ApiError> {
        self.limits.check_key(&key)?;
        let db = self.read_db(serializable).await?;
        // A point read touches the memtable and at most a few memory-mapped
        // blocks (microseconds, no fsync), so it runs on the async worker:
        // a hop to the blocking pool cost more than the read itself
        // (measured: 9.7k -> see docs/benchmarks.md gets/s with 16 clients).
        read::get(&db, &key)
    }

    /// Writes `key` durably; returns the commit revision.
    pub async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<u64, ApiError> {
        self.limits.check_key(&key)?;
        match &self.backend {
            Backend::Direct(db) => {
                let db = db.clone();
                blocking(move || db.put(&key, &value).map_err(ApiError::from)).await
            }
            Backend::Cluster(r) => {
                let mut b = WriteBatch::new();
                b.put(&key, &value);
                Self::replicate(r, b).await
            }
        }
    }

    /// Deletes `key` durably; returns the commit revision.
    pub async fn delete(&self, key: Vec<u8>) -> Result<u64, ApiError> {
        self.limits.check_key(&key)?;
        match &self.backend {
            Backend::Direct(db) => {
                let db = db.clone();
                blocking(move || db.delete(&key).map_err(ApiError::from)).await
            }
            Backend::Cluster(r) => {
                let mut b = WriteBatch::new();
                b.delete(&key);
                Self::replicate(r, b).await
            }
        }
    }

    /// Reads the whole `range` into memory (callers bound it with a limit).
    pub async fn scan(&self, range: ScanRange) -> Result<Read<Vec<KeyValue>>, ApiError> {
        let db = self.read_db(false).await?;
        blocking(move || read::collect(&db, &range)).await
    }

    /// Streams `range` in chunks read from one snapshot. The storage work
    /// runs on the blocking pool and stops when the receiver is dropped.
    pub fn scan_stream(&self, range: ScanRange) -> mpsc::Receiver<Result<ScanChunk, ApiError>> {
        let (tx, rx) = mpsc::channel(SCAN_CHANNEL_CHUNKS);
        let store = self.clone();
        tokio::spawn(async move {
            let db = match store.read_db(false).await {
                Ok(db) => db,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let _ = tokio::task::spawn_blocking(move || {
                let sink = |chunk| tx.blocking_send(Ok(chunk)).is_ok();
                if let Err(err) = read::stream(&db, &range, sink) {
                    // The receiver may be gone already; then nobody is waiting.
                    let _ = tx.blocking_send(Err(err));
                }
            })
            .await;
        });
        rx
    }

    /// Runs a compare-and-swap transaction (retrying on conflicts).
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, ApiError> {
        req.validate(&self.limits)?;
        match &self.backend {
            Backend::Direct(db) => {
                let db = db.clone();
                blocking(move || txn::execute(&db, &req)).await
            }
            Backend::Cluster(r) => {
                let mut attempt = 0;
                loop {
                    let db = self.read_db(false).await?;
                    let (command, response) = txn::prepare(&db, &req)?;
                    let Some(command) = command else { return Ok(response) };
                    match r.propose(vec![command]).await?.pop() {
                        Some(Ok(revision)) => return Ok(TxnResponse { revision, ..response }),
                        Some(Err(bedrock_raft::Error::Conflict { .. }))
                            if attempt + 1 < bedrock_txn::MAX_TRANSACTION_ATTEMPTS =>
                        {
                            attempt += 1;
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => return Err(ApiError::OutcomeUnknown("no result for the transaction".into())),
                    }
                }
            }
        }
    }

    /// Writes a checkpoint of the whole key space into `dir` (which must
    /// not exist, on the data directory's file system) and returns its
    /// revision. In a cluster it first makes a ReadIndex round, so every
    /// write acknowledged before the call is in the checkpoint.
    ///
    /// # Errors
    /// `Unavailable` without a leader; `Internal` if the checkpoint fails.
    pub async fn checkpoint(&self, dir: std::path::PathBuf) -> Result<u64, ApiError> {
        let db = self.read_db(false).await?;
        blocking(move || db.lsm().checkpoint(&dir).map_err(|e| ApiError::from(bedrock_txn::Error::from(e)))).await
    }

    /// Flushes memtables to SSTables (on graceful shutdown).
    pub async fn flush(&self) -> Result<(), ApiError> {
        let db = self.local_db();
        blocking(move || db.flush().map_err(ApiError::from)).await
    }
}

fn default_scratch() -> std::path::PathBuf {
    std::env::temp_dir().join("bedrock-backups")
}

/// Runs a blocking storage call on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits() {
        let limits = Limits { max_key_bytes: 3 };
        assert!(limits.check_key(b"").is_err());
        assert!(limits.check_key(b"abc").is_ok());
        let err = limits.check_key(b"abcd").unwrap_err();
        assert_eq!(err.to_string(), "key of 4 bytes exceeds the limit of 3 bytes");
    }
}
