//! Power cuts with `FaultFs`: transactions in both modes run from several
//! threads with fsync before acknowledgement (the default sync policy)
//! while crash images are taken. In every image, reopened:
//! - every transaction acknowledged before the image is fully present;
//! - every transaction is all-or-nothing (its three marker keys and its
//!   bank transfer);
//! - no transaction that failed with a conflict left anything behind;
//! - the bank total is unchanged.
//!
//! At the end the file system starts failing every write, as if power
//! went out under load: commits then fail with `Storage` (outcome
//! unknown), and the last image must still satisfy all of the above.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bedrock_txn::{Db, Error, Options, Transaction, TxnOptions};
use bedrock_wal::{FaultFs, WalOptions};
use common::{int, Rng};

const ACCOUNTS: u64 = 5;
const MARKERS: u64 = 3;

fn opts(fs: &FaultFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        memtable_size_bytes: 16 << 10,
        target_file_size_bytes: 64 << 10,
        max_bytes_for_level_base: 1 << 20,
        wal: WalOptions { segment_size_bytes: 64 << 10, ..WalOptions::default() },
        ..Options::with_dir("db")
    }
}

fn account(a: u64) -> Vec<u8> {
    format!("acct{a}").into_bytes()
}

fn marker(id: u64, j: u64) -> Vec<u8> {
    format!("t/{id:08}/{j}").into_bytes()
}

/// One transaction: three marker keys plus a transfer between accounts.
fn work(t: &mut Transaction, id: u64, rng: &mut Rng) -> bedrock_txn::Result<()> {
    for j in 0..MARKERS {
        t.put(&marker(id, j), id.to_string().as_bytes())?;
    }
    let from = rng.below(ACCOUNTS);
    let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
    let (f, b) = (int(t.get_for_update(&account(from))?), int(t.get_for_update(&account(to))?));
    t.put(&account(from), (f - 1).to_string().as_bytes())?;
    t.put(&account(to), (b + 1).to_string().as_bytes())
}

#[derive(Default)]
struct Ledger {
    acked: HashSet<u64>,
    conflicted: HashSet<u64>,
}

/// Opens the image and checks the invariants; returns how many
/// transactions survived.
fn check_image(image: &FaultFs, acked: &HashSet<u64>, conflicted: &HashSet<u64>) -> usize {
    let db = Db::open(opts(image)).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    let total: i64 = (0..ACCOUNTS).map(|a| int(db.get(&account(a)).unwrap())).sum();
    assert_eq!(total, 100 * ACCOUNTS as i64, "bank total after recovery");
    let mut present: BTreeMap<u64, u64> = BTreeMap::new();
    for (key, value) in db.scan(b"t/", Some(b"t0"), 0).unwrap() {
        let id: u64 = std::str::from_utf8(&key[2..10]).unwrap().parse().unwrap();
        assert_eq!(value, id.to_string().into_bytes());
        *present.entry(id).or_default() += 1;
    }
    for (id, n) in &present {
        assert_eq!(*n, MARKERS, "transaction {id} is partly applied");
        assert!(!conflicted.contains(id), "transaction {id} failed with a conflict but was applied");
    }
    for id in acked {
        assert!(present.contains_key(id), "acknowledged transaction {id} lost");
    }
    present.len()
}

#[test]
fn acknowledged_transactions_survive_power_cuts_whole() {
    let fs = FaultFs::new();
    let db = Db::open(opts(&fs)).unwrap();
    db.transaction(|t| (0..ACCOUNTS).try_for_each(|a| t.put(&account(a), b"100"))).unwrap();
    let ledger = Mutex::new(Ledger::default());
    let (next_id, stop, failed) = (AtomicU64::new(0), AtomicBool::new(false), AtomicU64::new(0));
    let mut images = 0;
    thread::scope(|s| {
        for w in 0..4u64 {
            let (db, ledger, next_id, stop, failed) = (&db, &ledger, &next_id, &stop, &failed);
            s.spawn(move || {
                let options = if w % 2 == 0 { TxnOptions::default() } else { TxnOptions::pessimistic() };
                let mut rng = Rng::new(w + 7);
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let mut t = db.begin_transaction_with(options);
                    match work(&mut t, id, &mut rng).and_then(|()| t.commit()) {
                        Ok(_) => ledger.lock().unwrap().acked.insert(id),
                        Err(e) if e.is_retryable() => ledger.lock().unwrap().conflicted.insert(id),
                        // After the power cut below: outcome unknown.
                        Err(Error::Storage(_)) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => panic!("{e}"),
                    };
                }
            });
        }
        for round in 0..12u64 {
            thread::sleep(Duration::from_millis(40));
            let (acked, conflicted) = {
                let l = ledger.lock().unwrap();
                (l.acked.clone(), l.conflicted.clone())
            };
            let survived = check_image(&fs.crash(round), &acked, &conflicted);
            assert!(survived >= acked.len());
            images += 1;
        }
        // Power fails under load: every further write or fsync errors.
        fs.set_mutation_limit(Some(fs.mutation_count() + 25));
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
    });
    let l = ledger.lock().unwrap();
    check_image(&fs.crash(99), &l.acked, &l.conflicted);
    let flushes = db.stats().flushes;
    eprintln!("{} acknowledged, {} conflicted, {flushes} flushes", l.acked.len(), l.conflicted.len());
    assert!(images == 12 && l.acked.len() > 50, "acked {}", l.acked.len());
    assert!(flushes >= 1, "the workload must cross a memtable flush");
    assert_eq!(failed.load(Ordering::Relaxed), 4, "every writer saw the power cut as a storage error");
}
