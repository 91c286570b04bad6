//! Pessimistic transactions: deadlock detection, lock timeouts, lock
//! release on every way a transaction ends, reads of the latest value,
//! and how optimistic commits respect pessimistic locks.

mod common;

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use bedrock_txn::{Error, TxnOptions};
use common::memory_db;

fn pessimistic(lock_timeout: Duration) -> TxnOptions {
    TxnOptions { pessimistic: true, lock_timeout }
}

/// Two transactions lock A then B and B then A. One of them is the victim
/// and gets `Deadlock` within 100 ms (the lock timeout is 10 s, so this is
/// detection, not a timeout); it is rolled back at once, so the other
/// gets its lock and commits. Repeated to cover both arrival orders.
#[test]
fn abba_deadlock_has_one_prompt_victim_and_the_other_commits() {
    for round in 0..20 {
        let db = memory_db();
        let barrier = Barrier::new(2);
        let outcomes: Vec<(Result<u64, Error>, Duration)> = thread::scope(|s| {
            let handles: Vec<_> = [(&b"A"[..], &b"B"[..]), (b"B", b"A")]
                .into_iter()
                .enumerate()
                .map(|(i, (first, second))| {
                    let (db, barrier) = (&db, &barrier);
                    s.spawn(move || {
                        let mut t = db.begin_transaction_with(pessimistic(Duration::from_secs(10)));
                        t.put(first, format!("t{i}").as_bytes()).unwrap();
                        barrier.wait();
                        if (round + i) % 2 == 0 {
                            thread::sleep(Duration::from_millis(5));
                        }
                        let start = Instant::now();
                        match t.put(second, format!("t{i}").as_bytes()) {
                            Ok(()) => (t.commit(), start.elapsed()),
                            Err(e) => {
                                let elapsed = start.elapsed();
                                assert!(matches!(t.get(b"A"), Err(Error::Finished)), "a victim is finished");
                                assert!(matches!(t.commit(), Err(Error::Finished)));
                                (Err(e), elapsed)
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let victims: Vec<_> = outcomes.iter().filter(|(r, _)| matches!(r, Err(Error::Deadlock { .. }))).collect();
        assert_eq!(victims.len(), 1, "round {round}: {outcomes:?}");
        assert!(victims[0].1 < Duration::from_millis(100), "round {round}: victim told after {:?}", victims[0].1);
        let winner = outcomes.iter().position(|(r, _)| r.is_ok()).expect("the other transaction commits");
        let value = format!("t{winner}").into_bytes();
        assert_eq!(db.get(b"A").unwrap(), Some(value.clone()), "round {round}: only the winner's writes");
        assert_eq!(db.get(b"B").unwrap(), Some(value));
    }
}

#[test]
fn lock_wait_is_bounded_by_lock_timeout_and_fails_only_the_operation() {
    let db = memory_db();
    let mut holder = db.begin_transaction_with(pessimistic(Duration::from_secs(10)));
    holder.put(b"k", b"holder").unwrap();
    let mut waiter = db.begin_transaction_with(pessimistic(Duration::from_millis(50)));
    waiter.put(b"other", b"waiter").unwrap();
    let start = Instant::now();
    match waiter.get(b"k") {
        Err(Error::LockTimeout { key, waited_ms }) => {
            assert_eq!(key, b"k");
            assert!(waited_ms >= 50, "{waited_ms}");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(waiter.put(b"k", b"x"), Err(Error::LockTimeout { .. })));
    // The transaction goes on with its other writes; nothing of the failed
    // operations was buffered.
    waiter.commit().unwrap();
    holder.commit().unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"holder"[..]));
    assert_eq!(db.get(b"other").unwrap().as_deref(), Some(&b"waiter"[..]));
}

#[test]
fn locks_are_released_by_commit_rollback_and_drop() {
    let db = memory_db();
    let probe = |db: &bedrock_txn::Db| {
        let mut t = db.begin_transaction_with(pessimistic(Duration::ZERO));
        t.put(b"k", b"probe").is_ok()
    };
    let mut t = db.begin_transaction_with(pessimistic(Duration::ZERO));
    t.get(b"k").unwrap();
    assert!(!probe(&db), "a shared lock blocks a writer");
    t.rollback();
    assert!(probe(&db));

    let mut t = db.begin_transaction_with(pessimistic(Duration::ZERO));
    t.put(b"k", b"v").unwrap();
    assert!(!probe(&db));
    drop(t);
    assert!(probe(&db), "dropping releases");
    assert_eq!(db.get(b"k").unwrap(), None, "dropping rolls back");

    let mut t = db.begin_transaction_with(pessimistic(Duration::ZERO));
    t.put(b"k", b"v").unwrap();
    t.commit().unwrap();
    assert!(probe(&db));
}

#[test]
fn unrelated_keys_never_wait() {
    let db = memory_db();
    let mut holders = Vec::new();
    for i in 0..200u32 {
        let mut t = db.begin_transaction_with(pessimistic(Duration::ZERO));
        t.put(format!("held{i}").as_bytes(), b"x").unwrap();
        holders.push(t);
    }
    let mut t = db.begin_transaction_with(pessimistic(Duration::ZERO));
    for i in 0..200u32 {
        t.put(format!("free{i}").as_bytes(), b"y").expect("a zero timeout fails on any wait");
    }
    t.commit().unwrap();
}

/// After waiting for a lock, a pessimistic read sees the value the previous
/// holder committed, not the snapshot at begin.
#[test]
fn a_read_after_a_lock_wait_sees_the_latest_commit() {
    let db = memory_db();
    db.put(b"n", b"1").unwrap();
    let mut first = db.begin_transaction_with(pessimistic(Duration::from_secs(10)));
    assert_eq!(first.get_for_update(b"n").unwrap().as_deref(), Some(&b"1"[..]));
    thread::scope(|s| {
        let second = s.spawn(|| {
            let mut t = db.begin_transaction_with(pessimistic(Duration::from_secs(10)));
            let seen = t.get_for_update(b"n").unwrap();
            t.put(b"n", b"3").unwrap();
            t.commit().unwrap();
            seen
        });
        thread::sleep(Duration::from_millis(30));
        first.put(b"n", b"2").unwrap();
        first.commit().unwrap();
        assert_eq!(second.join().unwrap().as_deref(), Some(&b"2"[..]));
    });
    assert_eq!(db.get(b"n").unwrap().as_deref(), Some(&b"3"[..]));
}

/// A pessimistic transaction that only read still validates at commit:
/// a non-transactional write between its reads makes them inconsistent.
#[test]
fn a_read_only_pessimistic_commit_is_validated() {
    let db = memory_db();
    db.put(b"x", b"50").unwrap();
    db.put(b"y", b"50").unwrap();
    let mut t = db.begin_transaction_with(pessimistic(Duration::from_secs(1)));
    t.get(b"x").unwrap();
    db.put(b"x", b"40").unwrap();
    t.get(b"y").unwrap();
    assert!(matches!(t.commit(), Err(Error::Conflict { key }) if key == b"x"));

    let mut t = db.begin_transaction_with(pessimistic(Duration::from_secs(1)));
    t.get(b"x").unwrap();
    t.get(b"y").unwrap();
    let seq = t.commit().unwrap();
    assert_eq!(seq, db.last_sequence(), "an unchanged read set commits");
}

/// While a pessimistic transaction holds a lock, an optimistic commit that
/// writes the key fails with `Conflict` instead of invalidating it.
#[test]
fn optimistic_commits_respect_pessimistic_locks() {
    let db = memory_db();
    db.put(b"k", b"0").unwrap();
    let mut p = db.begin_transaction_with(pessimistic(Duration::from_secs(1)));
    assert_eq!(p.get(b"k").unwrap().as_deref(), Some(&b"0"[..]));
    let mut o = db.begin_transaction();
    o.put(b"k", b"optimistic").unwrap();
    assert!(matches!(o.commit(), Err(Error::Conflict { key }) if key == b"k"));
    p.put(b"k", b"pessimistic").unwrap();
    p.commit().unwrap();
    let mut o = db.begin_transaction();
    o.put(b"k", b"optimistic").unwrap();
    o.commit().unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"optimistic"[..]));
}

#[test]
fn the_retry_helper_retries_deadlock_victims() {
    let db = memory_db();
    db.put(b"a", b"0").unwrap();
    db.put(b"b", b"0").unwrap();
    thread::scope(|s| {
        for (first, second) in [(&b"a"[..], &b"b"[..]), (b"b", b"a")] {
            let db = &db;
            s.spawn(move || {
                for _ in 0..200 {
                    // Shared locks upgraded in opposite orders: deadlocks
                    // are frequent. The helper retries them (up to its
                    // attempt limit, after which we start over).
                    loop {
                        let outcome = db.transaction_with(pessimistic(Duration::from_secs(10)), |t| {
                            for key in [first, second] {
                                let n: u64 = String::from_utf8(t.get(key)?.unwrap()).unwrap().parse().unwrap();
                                t.put(key, (n + 1).to_string().as_bytes())?;
                            }
                            Ok(())
                        });
                        match outcome {
                            Ok(_) => break,
                            Err(Error::Deadlock { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"400"[..]));
    assert_eq!(db.get(b"b").unwrap().as_deref(), Some(&b"400"[..]));
}
