//! Multi-key ACID transactions over the Bedrock LSM engine.
//!
//! [`Db`] wraps `bedrock_lsm::Db` with the embedded API of the original
//! Bedrock: `Db::open(options)`, `db.begin_transaction()`,
//! `txn.put / get / delete / scan`, `txn.commit()`, `txn.rollback()`.
//!
//! Guarantees:
//! - **Atomic and durable**: a committed transaction is one WAL record with
//!   one sequence number; a crash exposes all of it or none of it.
//! - **Serializable** (optimistic): reads and scanned ranges are validated
//!   at commit against everything committed since the transaction's
//!   snapshot; a conflict returns the retryable [`Error::Conflict`] and
//!   writes nothing. See the `txn` module docs and [`validate`].
//! - Read-only transactions ([`Db::begin_read_only`]) read a snapshot and
//!   never block or abort.
//!
//! It is not (yet): a pessimistic, lock-based transaction manager; every
//! transaction here is optimistic.
//!
//! ```
//! use bedrock_txn::{Db, Options};
//! # let dir = tempfile::tempdir()?;
//! # let options = Options::with_dir(dir.path());
//! let db = Db::open(options)?;
//! let mut txn = db.begin_transaction();
//! txn.put(b"hello", b"embedded world")?;
//! txn.put(b"status", b"ok")?;
//! txn.commit()?;
//! let read = db.begin_read_only();
//! assert_eq!(read.get(b"hello")?.as_deref(), Some(&b"embedded world"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod db;
mod error;
#[cfg(doctest)]
mod readme;
mod txn;

pub use bedrock_lsm::{DbStats, Options, WriteBatch};
pub use db::{Db, MAX_TRANSACTION_ATTEMPTS};
pub use error::{Error, Result};
pub use txn::{validate, ReadSet, ReadTransaction, Transaction};
