//! Multi-key ACID transactions over the Bedrock LSM engine.
//!
//! [`Db`] wraps `bedrock_lsm::Db` with the embedded API of the original
//! Bedrock: `Db::open(options)`, `db.begin_transaction()`,
//! `txn.put / get / delete / scan`, `txn.commit()`, `txn.rollback()`,
//! plus read-only snapshots ([`Db::begin_read_only`]), pessimistic
//! transactions ([`Db::begin_transaction_with`]) and a retry helper
//! ([`Db::transaction`]).
//!
//! # Guarantees
//! - **Atomic and durable.** A committed transaction is one write batch:
//!   one WAL record with one sequence number, acknowledged after it is
//!   durable under the engine's sync policy. A crash exposes all of it or
//!   none of it; readers never see part of it.
//! - **Serializable** read-write transactions, phantoms included: a
//!   transaction that scanned a range conflicts with a concurrent insert
//!   into it. Committed transactions are equivalent to running one at a
//!   time in commit-sequence order. See [`validate`].
//! - **Read-only transactions** ([`ReadTransaction`]) read one consistent
//!   snapshot without locks; they never block and never abort.
//!
//! # Two concurrency modes (as in TiKV)
//! - **Optimistic** (default, [`Db::begin_transaction`]): reads at the
//!   snapshot taken at begin, no locks; at commit the keys read and ranges
//!   scanned are validated against everything committed since, and a
//!   conflict fails the commit with the retryable [`Error::Conflict`].
//!   Best when conflicts are rare.
//! - **Pessimistic** (`begin_transaction_with(TxnOptions { pessimistic:
//!   true, lock_timeout })`): strict two-phase locking on keys through a
//!   per-key lock manager: shared locks on reads, exclusive on writes
//!   (upgraded in place), FIFO queues, 64 shards by key hash. A read sees
//!   the latest committed value. Waits are bounded by `lock_timeout`
//!   (default 1 s, [`Error::LockTimeout`]); deadlocks are found on a
//!   wait-for graph when a transaction starts waiting, and the transaction
//!   that would close the cycle is rolled back with [`Error::Deadlock`] at
//!   once. Commit still runs the same validation, which catches
//!   non-transactional writes and phantoms (scans take no range locks).
//!   Best under contention on hot keys.
//!
//! The commit step is a pure function of (reads observed, writes, store
//! state), [`validate`] and [`Db::write_validated`], so a replicated log
//! can run it deterministically on every replica at apply time.
//!
//! # Limits and errors
//! A transaction's writes are limited to the engine's
//! [`Options::max_batch_bytes`] (default 32 MiB; [`Error::TooLarge`]);
//! keys to `max_key_bytes` (8 KiB) and values to `max_value_bytes`
//! (8 MiB) ([`Error::InvalidArgument`]). `commit` and `rollback` consume
//! the transaction, so using it afterwards does not compile; dropping it
//! rolls it back and releases its locks. A failed operation or commit
//! never applies anything.
//!
//! It is not: a multi-version store with timestamps from an oracle (the
//! engine's sequence numbers order everything), a range-locking engine
//! (pessimistic scans are validated, not locked), or distributed (one
//! process; replication comes from `bedrock-raft`).
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use bedrock_txn::{Db, Options, TxnOptions};
//! # let dir = tempfile::tempdir()?;
//! # let options = Options::with_dir(dir.path());
//! let db = Db::open(options)?;
//!
//! // Optimistic (the default).
//! let mut txn = db.begin_transaction();
//! txn.put(b"hello", b"embedded world")?;
//! txn.put(b"status", b"ok")?;
//! txn.commit()?;
//! let read = db.begin_read_only();
//! assert_eq!(read.get(b"hello")?.as_deref(), Some(&b"embedded world"[..]));
//!
//! // Pessimistic: locks taken as the transaction goes, held to the end.
//! let lock_timeout = Duration::from_millis(500);
//! let mut txn = db.begin_transaction_with(TxnOptions { pessimistic: true, lock_timeout });
//! let status = txn.get_for_update(b"status")?; // exclusive lock, latest value
//! assert_eq!(status.as_deref(), Some(&b"ok"[..]));
//! txn.put(b"status", b"busy")?;
//! txn.commit()?;
//!
//! // Retry helper: reruns the closure on conflict or deadlock, with backoff.
//! let (_, seq) = db.transaction(|txn| {
//!     let n = txn.get(b"counter")?.map_or(0, |v| v[0]);
//!     txn.put(b"counter", &[n + 1])
//! })?;
//! assert_eq!(db.last_sequence(), seq);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod db;
mod deadlock;
mod error;
mod lock;
mod options;
mod pessimistic;
mod read_only;
#[cfg(doctest)]
mod readme;
mod scan;
mod txn;
mod validate;

pub use bedrock_lsm::{DbStats, Options, WriteBatch};
pub use db::{Db, MAX_TRANSACTION_ATTEMPTS};
pub use error::{Error, Result};
pub use options::{TxnOptions, DEFAULT_LOCK_TIMEOUT};
pub use read_only::ReadTransaction;
pub use txn::Transaction;
pub use validate::{validate, ReadSet, ScannedRange};
