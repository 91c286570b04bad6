//! Bedrock's LSM-tree storage engine.
//!
//! A [`Db`] keeps recent writes in a memtable (a skip list in an arena),
//! logs them to the write-ahead log (`bedrock-wal`) before acknowledging,
//! flushes full memtables to level-0 SSTables (`bedrock-sstable`), and
//! compacts levels in the background (leveled, picked by score like
//! RocksDB). A manifest of version edits is the single source of truth for
//! which SSTables are live.
//!
//! Invariants:
//! - Every write batch commits with one sequence number; readers see all
//!   of a batch or none of it.
//! - A write is acknowledged only after its WAL record is durable under the
//!   configured [`bedrock_wal::SyncPolicy`] (default: fsync, group commit).
//! - Internal keys order by (user key ascending, sequence number
//!   descending); deletes are tombstones until a bottommost compaction
//!   drops them.
//! - A [`Snapshot`] reads repeatably; compaction keeps every version a live
//!   snapshot can see.
//!
//! Limits (see [`Options`]): keys 1 byte to 8 KiB, values up to 8 MiB,
//! batches up to 32 MiB by default.
//!
//! It is not: a transaction manager (see `bedrock-txn`), or a
//! multi-process database (a lock file gives a second opener
//! [`Error::Locked`]).
//!
//! ```
//! use bedrock_lsm::{Db, Options, WriteBatch};
//! use bedrock_wal::FaultFs;
//! use std::sync::Arc;
//!
//! let opts = Options { fs: Arc::new(FaultFs::new()), ..Options::with_dir("db") };
//! let db = Db::open(opts)?;
//! db.put(b"hello", b"world")?;
//! let mut batch = WriteBatch::new();
//! batch.put(b"a", b"1");
//! batch.delete(b"hello");
//! db.write(batch)?;
//! assert_eq!(db.get(b"a")?, Some(b"1".to_vec()));
//! assert_eq!(db.get(b"hello")?, None);
//! let all: Vec<_> = db.iter(b"", None).collect::<Result<_, _>>()?;
//! assert_eq!(all, vec![(b"a".to_vec(), b"1".to_vec())]);
//! # Ok::<(), bedrock_lsm::Error>(())
//! ```

mod background;
mod batch;
mod checkpoint;
mod coding;
mod compaction;
mod cursor;
mod db;
mod error;
mod iter;
mod jobs;
mod manifest;
mod memtable;
mod open;
mod options;
mod snapshot;
mod stats;
mod version;
mod write;

pub use batch::WriteBatch;
pub use cursor::DbCursor;
pub use db::Db;
pub use error::{Error, Result};
pub use iter::DbIterator;
pub use options::{CompactionPri, Options};
pub use snapshot::Snapshot;
pub use stats::{DbStats, LevelStats};
pub use write::LatestView;
