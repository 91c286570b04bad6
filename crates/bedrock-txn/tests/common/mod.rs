//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::Arc;
use std::time::Duration;

use bedrock_txn::{Db, Options, Transaction, TxnOptions};
use bedrock_wal::{FaultFs, SyncPolicy, WalOptions};

/// An in-memory store. `SyncPolicy::Never` and no preallocation: these
/// tests are about concurrency control, and FaultFs makes each fsync copy
/// bytes and each preallocation zero 64 MiB (slow in a debug build); the
/// fsync path is covered by `crash.rs`, `kill9.rs` and bedrock-lsm.
pub fn memory_db() -> Db {
    let wal = WalOptions { sync: SyncPolicy::Never, preallocate: false, ..WalOptions::default() };
    Db::open(Options { fs: Arc::new(FaultFs::new()), wal, ..Options::with_dir("db") }).unwrap()
}

/// The two modes under test, with a name for messages.
pub fn modes() -> [(&'static str, TxnOptions); 2] {
    [
        ("optimistic", TxnOptions::default()),
        ("pessimistic", TxnOptions { pessimistic: true, lock_timeout: Duration::from_secs(5) }),
    ]
}

/// Parses a stored decimal integer.
pub fn int(v: Option<Vec<u8>>) -> i64 {
    let v = v.expect("value present");
    std::str::from_utf8(&v).unwrap().parse().unwrap()
}

/// Reads an integer key through a transaction.
pub fn get_int(txn: &mut Transaction, key: &str) -> bedrock_txn::Result<i64> {
    Ok(int(txn.get(key.as_bytes())?))
}

/// A small xorshift generator: deterministic per seed, no dependencies.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
