//! The systems under test, behind one trait: Bedrock in both transaction
//! modes, and fjall's optimistic (serializable snapshot isolation)
//! transactions.
//!
//! Durability is the same for every engine: each commit is written to the
//! operating system (one `write`/`pwrite` per commit, surviving a process
//! crash) and not fsynced, unless `--sync` is given, in which case every
//! commit is fdatasynced before it returns (Bedrock: `SyncPolicy::Always`,
//! with group commit; fjall: `PersistMode::SyncData` per transaction).

use std::path::Path;
use std::time::Duration;

use bedrock_txn::{Db, Error, Options, Transaction, TxnOptions, WriteBatch};
use bedrock_wal::SyncPolicy;
use fjall::{KeyspaceCreateOptions, OptimisticTxDatabase, OptimisticTxKeyspace, PersistMode, Readable};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Size of every value: an 8-byte counter and padding.
pub const VALUE_BYTES: usize = 100;

pub fn key(k: u64) -> [u8; 12] {
    let mut out = *b"user00000000";
    let digits = format!("{k:08}");
    out[4..].copy_from_slice(&digits.as_bytes()[digits.len() - 8..]);
    out
}

/// A value holding counter `n`.
pub fn value(n: u64) -> Vec<u8> {
    let mut out = vec![b'x'; VALUE_BYTES];
    out[..8].copy_from_slice(&n.to_le_bytes());
    out
}

/// The value with its counter incremented (a missing key counts as 0).
fn bump(old: Option<&[u8]>) -> Vec<u8> {
    value(old.map_or(0, counter) + 1)
}

pub fn counter(value: &[u8]) -> u64 {
    u64::from_le_bytes(value[..8].try_into().unwrap())
}

/// What one attempt of a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Committed,
    /// Conflict, deadlock victim or lock timeout: nothing was written.
    Aborted,
}

pub trait Engine: Sync {
    fn name(&self) -> &'static str;
    /// Loads `n` keys with counter 0.
    fn preload(&self, n: u64) -> Result<()>;
    /// Reads, increments and writes each key in one transaction.
    fn read_modify_write(&self, keys: &[u64]) -> Result<Attempt>;
    /// Sum of every counter.
    fn total(&self, n: u64) -> Result<u64>;
}

pub struct Bedrock {
    db: Db,
    options: TxnOptions,
    name: &'static str,
}

impl Bedrock {
    pub fn open(dir: &Path, pessimistic: bool, sync: bool) -> Result<Bedrock> {
        let mut opts = Options::with_dir(dir);
        opts.wal.sync = if sync { SyncPolicy::Always } else { SyncPolicy::Never };
        let options = TxnOptions { pessimistic, lock_timeout: Duration::from_secs(1) };
        let name = if pessimistic { "bedrock-pessimistic" } else { "bedrock-optimistic" };
        Ok(Bedrock { db: Db::open(opts)?, options, name })
    }

    fn body(t: &mut Transaction, keys: &[u64], pessimistic: bool) -> bedrock_txn::Result<()> {
        for &k in keys {
            let k = key(k);
            let v = if pessimistic { t.get_for_update(&k)? } else { t.get(&k)? };
            t.put(&k, &bump(v.as_deref()))?;
        }
        Ok(())
    }
}

impl Engine for Bedrock {
    fn name(&self) -> &'static str {
        self.name
    }

    fn preload(&self, n: u64) -> Result<()> {
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut b = WriteBatch::new();
            for &k in chunk {
                b.put(&key(k), &value(0));
            }
            self.db.write(b)?;
        }
        Ok(())
    }

    fn read_modify_write(&self, keys: &[u64]) -> Result<Attempt> {
        let mut t = self.db.begin_transaction_with(self.options);
        match Self::body(&mut t, keys, self.options.pessimistic).and_then(|()| t.commit()) {
            Ok(_) => Ok(Attempt::Committed),
            Err(Error::Conflict { .. } | Error::Deadlock { .. } | Error::LockTimeout { .. }) => Ok(Attempt::Aborted),
            Err(e) => Err(e.into()),
        }
    }

    fn total(&self, n: u64) -> Result<u64> {
        let rows = self.db.scan(b"user", Some(b"userz"), 0)?;
        assert_eq!(rows.len() as u64, n);
        Ok(rows.iter().map(|(_, v)| counter(v)).sum())
    }
}

pub struct Fjall {
    db: OptimisticTxDatabase,
    ks: OptimisticTxKeyspace,
    sync: bool,
}

impl Fjall {
    pub fn open(dir: &Path, sync: bool) -> Result<Fjall> {
        let db = OptimisticTxDatabase::builder(dir).open()?;
        let ks = db.keyspace("default", KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, ks, sync })
    }
}

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall-optimistic"
    }

    fn preload(&self, n: u64) -> Result<()> {
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut tx = self.db.write_tx()?;
            for &k in chunk {
                tx.insert(&self.ks, key(k), value(0));
            }
            tx.commit()?.map_err(|c| format!("preload: {c}"))?;
        }
        Ok(())
    }

    fn read_modify_write(&self, keys: &[u64]) -> Result<Attempt> {
        let mut tx = self.db.write_tx()?;
        if self.sync {
            tx = tx.durability(Some(PersistMode::SyncData));
        }
        for &k in keys {
            let k = key(k);
            let v = tx.get(&self.ks, k)?;
            tx.insert(&self.ks, k, bump(v.as_deref()));
        }
        Ok(match tx.commit()? {
            Ok(()) => Attempt::Committed,
            Err(_conflict) => Attempt::Aborted,
        })
    }

    fn total(&self, n: u64) -> Result<u64> {
        let snapshot = self.db.read_tx();
        let mut sum = 0;
        let mut count = 0;
        for guard in snapshot.iter(&self.ks) {
            let (_, v) = guard.into_inner()?;
            sum += counter(&v);
            count += 1;
        }
        assert_eq!(count, n);
        Ok(sum)
    }
}
