//! The classic anomalies, each shown prevented, and each shown to occur
//! when commit validation is switched off (the hidden test hook
//! `Transaction::disable_validation_for_testing`) wherever validation is
//! what prevents it. Where something else prevents it (a snapshot, or
//! locks), the test says so.
//!
//! Scenarios follow Berenson et al., "A Critique of ANSI SQL Isolation
//! Levels" (1995): P4 lost update, A5B write skew, A5A read skew, P3
//! phantom.

mod common;

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use bedrock_txn::{Db, Error, Transaction, TxnOptions};
use common::{get_int, int, memory_db};

fn pessimistic() -> TxnOptions {
    TxnOptions { pessimistic: true, lock_timeout: Duration::from_secs(10) }
}

fn maybe_unchecked(txn: &mut Transaction, validated: bool) {
    if !validated {
        txn.disable_validation_for_testing();
    }
}

// ---------------------------------------------------------------- lost update

/// Optimistic: t1 and t2 both read x = 0 and write x + 1. Returns the final
/// x: 1 means an increment was lost.
fn lost_update_optimistic(validated: bool) -> (i64, Vec<bool>) {
    let db = memory_db();
    db.put(b"x", b"0").unwrap();
    let mut t1 = db.begin_transaction();
    let mut t2 = db.begin_transaction();
    maybe_unchecked(&mut t2, validated);
    for t in [&mut t1, &mut t2] {
        let x = get_int(t, "x").unwrap();
        t.put(b"x", (x + 1).to_string().as_bytes()).unwrap();
    }
    let committed = vec![t1.commit().is_ok(), t2.commit().is_ok()];
    (int(db.get(b"x").unwrap()), committed)
}

#[test]
fn lost_update_is_prevented_by_validation() {
    let (x, committed) = lost_update_optimistic(true);
    assert_eq!(committed, vec![true, false], "the second commit conflicts");
    assert_eq!(x, 1, "only the committed increment is applied");
}

#[test]
fn lost_update_happens_without_validation() {
    let (x, committed) = lost_update_optimistic(false);
    assert_eq!(committed, vec![true, true]);
    assert_eq!(x, 1, "two committed increments, one lost");
}

/// Pessimistic: both take a shared lock reading x, then both upgrade to
/// write it. The second upgrade closes a cycle and is the deadlock victim;
/// the first commits; the victim's retry sees its write. Locks prevent the
/// anomaly here, with or without validation.
#[test]
fn lost_update_is_prevented_by_locks() {
    let db = memory_db();
    db.put(b"x", b"0").unwrap();
    let barrier = Barrier::new(2);
    let results: Vec<Result<u64, Error>> = thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut t = db.begin_transaction_with(pessimistic());
                    t.disable_validation_for_testing();
                    let x = get_int(&mut t, "x")?;
                    barrier.wait();
                    t.put(b"x", (x + 1).to_string().as_bytes())?;
                    t.commit()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let victims = results.iter().filter(|r| matches!(r, Err(Error::Deadlock { key }) if key == b"x")).count();
    assert_eq!((victims, results.iter().filter(|r| r.is_ok()).count()), (1, 1), "{results:?}");
    db.transaction_with(pessimistic(), |t| {
        let x = get_int(t, "x")?;
        t.put(b"x", (x + 1).to_string().as_bytes())
    })
    .unwrap();
    assert_eq!(int(db.get(b"x").unwrap()), 2);
}

// ----------------------------------------------------------------- write skew

fn doctors_on_call(db: &Db) -> usize {
    [&b"alice"[..], b"bob"].iter().filter(|k| db.get(k).unwrap().as_deref() == Some(b"on")).count()
}

/// Two doctors on call; each checks that the other is on call, then goes
/// off call. Returns how many remain on call (0 is the anomaly).
fn write_skew_optimistic(validated: bool) -> usize {
    let db = memory_db();
    db.put(b"alice", b"on").unwrap();
    db.put(b"bob", b"on").unwrap();
    let mut t1 = db.begin_transaction();
    let mut t2 = db.begin_transaction();
    maybe_unchecked(&mut t2, validated);
    assert_eq!(t1.get(b"bob").unwrap().as_deref(), Some(&b"on"[..]));
    assert_eq!(t2.get(b"alice").unwrap().as_deref(), Some(&b"on"[..]));
    t1.put(b"alice", b"off").unwrap();
    t2.put(b"bob", b"off").unwrap();
    t1.commit().unwrap();
    let second = t2.commit();
    assert_eq!(second.is_ok(), !validated, "{second:?}");
    doctors_on_call(&db)
}

#[test]
fn write_skew_is_prevented_by_validation() {
    assert_eq!(write_skew_optimistic(true), 1);
}

#[test]
fn write_skew_happens_without_validation() {
    assert_eq!(write_skew_optimistic(false), 0, "both went off call");
}

/// Pessimistic: each holds a shared lock on the doctor it checked and
/// needs an exclusive lock on the other: a deadlock, one victim.
#[test]
fn write_skew_is_prevented_by_locks() {
    let db = memory_db();
    db.put(b"alice", b"on").unwrap();
    db.put(b"bob", b"on").unwrap();
    let barrier = Barrier::new(2);
    let results: Vec<Result<u64, Error>> = thread::scope(|s| {
        let handles: Vec<_> = [(&b"bob"[..], &b"alice"[..]), (b"alice", b"bob")]
            .into_iter()
            .map(|(other, me)| {
                let (db, barrier) = (&db, &barrier);
                s.spawn(move || {
                    let mut t = db.begin_transaction_with(pessimistic());
                    t.disable_validation_for_testing();
                    assert_eq!(t.get(other)?.as_deref(), Some(&b"on"[..]));
                    barrier.wait();
                    t.put(me, b"off")?;
                    t.commit()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| matches!(r, Err(Error::Deadlock { .. }))).count(), 1, "{results:?}");
    assert_eq!(doctors_on_call(&db), 1);
}

// ------------------------------------------------------------------ read skew

/// Optimistic: t1 reads x, a transfer moves 10 from x to y, t1 reads y.
/// t1 reads at its begin snapshot, so it sees the old y: the snapshot
/// prevents read skew on its own and validation plays no part (so there is
/// no negative test in this mode).
#[test]
fn read_skew_is_prevented_by_the_snapshot() {
    let db = memory_db();
    db.put(b"x", b"50").unwrap();
    db.put(b"y", b"50").unwrap();
    let mut t1 = db.begin_transaction();
    t1.disable_validation_for_testing();
    let x = get_int(&mut t1, "x").unwrap();
    db.transaction(|t| {
        t.put(b"x", b"40")?;
        t.put(b"y", b"60")
    })
    .unwrap();
    let y = get_int(&mut t1, "y").unwrap();
    assert_eq!(x + y, 100);
}

/// Pessimistic reads see the latest value. A writer that takes no locks
/// (a plain `Db::write`) moves 10 from x to y between t1's two reads, so t1
/// sees x = 50, y = 60 and records the total 110. Returns whether t1's
/// commit of that skewed total succeeded.
fn read_skew_pessimistic(validated: bool) -> bool {
    let db = memory_db();
    db.put(b"x", b"50").unwrap();
    db.put(b"y", b"50").unwrap();
    let mut t1 = db.begin_transaction_with(pessimistic());
    maybe_unchecked(&mut t1, validated);
    let x = get_int(&mut t1, "x").unwrap();
    let mut transfer = bedrock_txn::WriteBatch::new();
    transfer.put(b"x", b"40");
    transfer.put(b"y", b"60");
    db.write(transfer).unwrap();
    let y = get_int(&mut t1, "y").unwrap();
    assert_eq!(x + y, 110, "t1 saw x before and y after the transfer");
    t1.put(b"total", (x + y).to_string().as_bytes()).unwrap();
    match t1.commit() {
        Ok(_) => true,
        Err(Error::Conflict { key }) => {
            assert_eq!(key, b"x");
            assert_eq!(db.get(b"total").unwrap(), None);
            false
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn read_skew_is_prevented_by_validation_in_pessimistic_mode() {
    assert!(!read_skew_pessimistic(true));
}

#[test]
fn read_skew_happens_without_validation_in_pessimistic_mode() {
    assert!(read_skew_pessimistic(false), "the skewed total was committed");
}

/// Pessimistic against a pessimistic writer: the transfer waits for t1's
/// shared lock on x, so t1 sees a consistent pair (locks prevent it).
#[test]
fn read_skew_is_prevented_by_locks() {
    let db = memory_db();
    db.put(b"x", b"50").unwrap();
    db.put(b"y", b"50").unwrap();
    let mut t1 = db.begin_transaction_with(pessimistic());
    let x = get_int(&mut t1, "x").unwrap();
    thread::scope(|s| {
        let transfer = s.spawn(|| {
            db.transaction_with(pessimistic(), |t| {
                let x = int(t.get_for_update(b"x")?);
                let y = int(t.get_for_update(b"y")?);
                t.put(b"x", (x - 10).to_string().as_bytes())?;
                t.put(b"y", (y + 10).to_string().as_bytes())
            })
        });
        thread::sleep(Duration::from_millis(50));
        let y = get_int(&mut t1, "y").unwrap();
        assert_eq!(x + y, 100, "the transfer is still waiting for t1's lock on x");
        t1.commit().unwrap();
        transfer.join().unwrap().unwrap();
    });
    assert_eq!(int(db.get(b"x").unwrap()) + int(db.get(b"y").unwrap()), 100);
}

// -------------------------------------------------------------------- phantom

/// t1 counts the keys under `emp/` and stores the count; another
/// transaction inserts into that range and commits first. Returns whether
/// t1's stale count was committed. Scans take no locks in either mode, so
/// only the validation of the scanned range prevents this phantom.
fn phantom(options: TxnOptions, validated: bool) -> bool {
    let db = memory_db();
    db.put(b"emp/1", b"a").unwrap();
    let mut t1 = db.begin_transaction_with(options);
    maybe_unchecked(&mut t1, validated);
    let n = t1.scan(b"emp/", Some(b"emp0"), 0).unwrap().len();
    assert_eq!(n, 1);
    t1.put(b"count", n.to_string().as_bytes()).unwrap();
    db.transaction_with(options, |t| t.put(b"emp/2", b"b")).unwrap();
    match t1.commit() {
        Ok(_) => true,
        Err(Error::Conflict { key }) => {
            assert_eq!(key, b"emp/", "the conflict names the scanned range");
            false
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn phantom_is_prevented_by_validation() {
    for (name, options) in common::modes() {
        assert!(!phantom(options, true), "{name}");
    }
}

#[test]
fn phantom_happens_without_validation() {
    for (name, options) in common::modes() {
        assert!(phantom(options, false), "{name}: the stale count was committed");
    }
}

/// An insert outside the scanned range, or past the part of the range a
/// limited scan covered, is not a conflict.
#[test]
fn writes_outside_the_covered_range_do_not_conflict() {
    for (name, options) in common::modes() {
        let db = memory_db();
        for k in ["emp/1", "emp/3", "emp/5"] {
            db.put(k.as_bytes(), b"x").unwrap();
        }
        let mut t = db.begin_transaction_with(options);
        let rows = t.scan(b"emp/", Some(b"emp0"), 2).unwrap();
        assert_eq!(rows.len(), 2);
        t.put(b"count", b"2").unwrap();
        db.put(b"emp/4", b"x").unwrap();
        db.put(b"zzz", b"x").unwrap();
        t.commit().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
