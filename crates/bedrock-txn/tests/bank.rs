//! The bank test (as in Jepsen): 10 accounts, 8 threads each making
//! 20,000 random transfers through the retry helper, in both modes, while
//! a reader checks at random snapshots that the total never changes. At the
//! end every balance must equal its opening balance plus the net of the
//! transfers that reported success: a lost update or a partial commit
//! shows up as a wrong balance even when the total is right.
//!
//! `BEDROCK_BANK_TRANSFERS` overrides the transfers per thread (default
//! 20,000, the full size, which CI runs).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use bedrock_txn::{Db, Transaction, TxnOptions};
use common::{int, memory_db, Rng};

const ACCOUNTS: u64 = 10;
const THREADS: u64 = 8;
const OPENING: i64 = 100;

fn transfers_per_thread() -> u64 {
    std::env::var("BEDROCK_BANK_TRANSFERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn account(a: u64) -> Vec<u8> {
    format!("acct{a}").into_bytes()
}

/// Moves `amount` from `from` to `to`. Even-numbered transfers read with
/// `get` (in pessimistic mode: shared locks upgraded on write), odd ones
/// with `get_for_update` (exclusive at once).
fn transfer(t: &mut Transaction, from: u64, to: u64, amount: i64, for_update: bool) -> bedrock_txn::Result<()> {
    let read = |t: &mut Transaction, a: u64| -> bedrock_txn::Result<i64> {
        Ok(int(if for_update { t.get_for_update(&account(a))? } else { t.get(&account(a))? }))
    };
    let (f, b) = (read(t, from)?, read(t, to)?);
    t.put(&account(from), (f - amount).to_string().as_bytes())?;
    t.put(&account(to), (b + amount).to_string().as_bytes())
}

fn balances(db: &Db) -> (u64, Vec<i64>) {
    let r = db.begin_read_only();
    (r.snapshot_seq(), (0..ACCOUNTS).map(|a| int(r.get(&account(a)).unwrap())).collect())
}

/// Runs the workload; returns (snapshots checked, transaction attempts).
fn run_bank(options: TxnOptions) -> (u64, u64) {
    let db = memory_db();
    for a in 0..ACCOUNTS {
        db.put(&account(a), OPENING.to_string().as_bytes()).unwrap();
    }
    let total = OPENING * ACCOUNTS as i64;
    let per_thread = transfers_per_thread();
    let done = AtomicBool::new(false);
    let (checks, attempts) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut expected = vec![OPENING; ACCOUNTS as usize];
    thread::scope(|s| {
        let writers: Vec<_> = (0..THREADS)
            .map(|seed| {
                let (db, attempts) = (&db, &attempts);
                s.spawn(move || {
                    let mut rng = Rng::new(seed + 1);
                    let mut net = vec![0i64; ACCOUNTS as usize];
                    for i in 0..per_thread {
                        let from = rng.below(ACCOUNTS);
                        let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                        let amount = rng.below(10) as i64 + 1;
                        // The helper gives up after MAX_TRANSACTION_ATTEMPTS;
                        // a transfer is retried until it commits.
                        loop {
                            let outcome = db.transaction_with(options, |t| {
                                attempts.fetch_add(1, Ordering::Relaxed);
                                transfer(t, from, to, amount, i % 2 == 1)
                            });
                            match outcome {
                                Ok(_) => break,
                                Err(e) if e.is_retryable() => continue,
                                Err(e) => panic!("transfer failed: {e}"),
                            }
                        }
                        net[from as usize] -= amount;
                        net[to as usize] += amount;
                    }
                    net
                })
            })
            .collect();
        s.spawn(|| {
            let mut rng = Rng::new(99);
            while !done.load(Ordering::Acquire) {
                let (seq, b) = balances(&db);
                assert_eq!(b.iter().sum::<i64>(), total, "total changed at snapshot {seq}: {b:?}");
                checks.fetch_add(1, Ordering::Relaxed);
                thread::sleep(std::time::Duration::from_micros(rng.below(500)));
            }
        });
        for w in writers {
            for (e, n) in expected.iter_mut().zip(w.join().unwrap()) {
                *e += n;
            }
        }
        done.store(true, Ordering::Release);
    });
    let (_, final_balances) = balances(&db);
    assert_eq!(final_balances.iter().sum::<i64>(), total);
    assert_eq!(final_balances, expected, "every committed transfer applied exactly once");
    (checks.load(Ordering::Relaxed), attempts.load(Ordering::Relaxed))
}

fn check(name: &str, options: TxnOptions) {
    let (checks, attempts) = run_bank(options);
    let commits = THREADS * transfers_per_thread();
    eprintln!("{name}: {commits} transfers in {attempts} attempts, {checks} snapshot checks");
    assert!(checks > 10, "the reader must have checked while transfers ran");
    assert!(attempts >= commits);
}

#[test]
fn bank_total_is_invariant_optimistic() {
    check("optimistic", TxnOptions::default());
}

#[test]
fn bank_total_is_invariant_pessimistic() {
    check("pessimistic", TxnOptions { pessimistic: true, ..TxnOptions::default() });
}
