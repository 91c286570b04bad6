//! Bedrock's write-ahead log, and the file-system layer every storage crate
//! goes through.
//!
//! The log is a directory of *segments* (`00000000000000000001.wal`, ...).
//! Each record is framed as `crc32 | len | payload` (see [`record`] and
//! `docs/formats.md`). A writer appends with [`Wal::append`] and waits for
//! durability with [`Wal::commit`]; under the default
//! [`SyncPolicy::Always`] concurrent writers share one fsync (group
//! commit). Segments are preallocated, roll over at
//! [`WalOptions::segment_size_bytes`], and are deleted by
//! [`Wal::purge_before`] once their contents live elsewhere.
//!
//! On open, [`replay`] reads what is there: a torn tail (a partial last
//! record from a crash) is truncated and logged; damage anywhere else is an
//! [`Error::Corruption`] naming the file and byte offset.
//!
//! It is not: an index of records (replay is sequential), or a log that
//! can be appended to after a failed fsync (the log is poisoned instead).
//!
//! ```
//! use std::sync::Arc;
//! use bedrock_wal::{replay, FaultFs, Wal, WalOptions, LogPosition};
//!
//! let fs = Arc::new(FaultFs::new());
//! let dir = std::path::Path::new("wal");
//! let wal = Wal::open(fs.clone(), dir, WalOptions::default())?;
//! wal.append_and_commit(b"first")?;
//! wal.append_and_commit(b"second")?;
//! drop(wal);
//!
//! let mut seen = Vec::new();
//! replay(&*fs, dir, &WalOptions::default(), 0, |_pos: LogPosition, rec: &[u8]| {
//!     seen.push(rec.to_vec());
//!     Ok::<(), bedrock_wal::Error>(())
//! })?;
//! assert_eq!(seen, vec![b"first".to_vec(), b"second".to_vec()]);
//! # Ok::<(), bedrock_wal::Error>(())
//! ```

mod error;
pub mod fs;
mod options;
pub mod record;
mod replay;
mod segment;
mod writer;

pub use error::{Error, Result};
pub use fs::{FaultFs, File, FileBytes, FileSystem, RealFs};
pub use options::{RecoveryMode, SyncPolicy, WalOptions};
pub use replay::{replay, segment_is_sealed, ReplayReport};
pub use segment::{parse_segment_name, segment_name, segment_path};
pub use writer::{LogPosition, Wal, WalStats, FSYNC_BATCH_BYTES, FSYNC_BATCH_RECORDS, FSYNC_SECONDS};
