//! [`ReadTransaction`]: consistent snapshot reads without locks.

use bedrock_lsm::Snapshot;

use crate::{Db, Result};

/// A read-only transaction: every read sees the same snapshot (the state
/// after some committed transaction and before the next, never part of
/// one). Takes no locks, never blocks writers, never aborts.
#[derive(Debug)]
pub struct ReadTransaction {
    db: Db,
    snapshot: Snapshot,
}

impl ReadTransaction {
    pub(crate) fn new(db: Db) -> Self {
        let snapshot = db.lsm().snapshot();
        ReadTransaction { db, snapshot }
    }

    /// The sequence number of the snapshot.
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot.seq()
    }

    /// The value of `key` at the snapshot.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] on read failures.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.lsm().get_at(key, &self.snapshot)?)
    }

    /// Keys in `[start, end)` at the snapshot, at most `limit` (0 = no limit).
    ///
    /// # Errors
    /// [`crate::Error::Storage`] on read failures.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        Ok(self.db.lsm().iter_at(start, end, &self.snapshot).take(limit).collect::<Result<_, _>>()?)
    }
}
