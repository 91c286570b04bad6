//! Unit tests of the lock manager: compatibility, fairness, upgrades,
//! deadlock detection, timeouts, and a concurrent stress test.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

const LONG: Duration = Duration::from_secs(10);
const S: LockMode = LockMode::Shared;
const X: LockMode = LockMode::Exclusive;

/// Waits until `n` transactions are queued (the lock manager's graph
/// records each waiter).
fn wait_for_waiters(lm: &LockManager, n: usize) {
    let start = Instant::now();
    while lm.waiting() != n {
        assert!(start.elapsed() < LONG, "expected {n} waiters, have {}", lm.waiting());
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn shared_locks_coexist_and_exclusive_excludes() {
    let lm = LockManager::default();
    lm.lock(1, b"k", S, LONG).unwrap();
    lm.lock(2, b"k", S, LONG).unwrap();
    assert_eq!(lm.lock(3, b"k", X, Duration::ZERO), Err(LockError::Timeout { waited: Duration::ZERO }));
    lm.lock(1, b"k", S, Duration::ZERO).unwrap();
    lm.unlock(1, b"k");
    lm.unlock(2, b"k");
    lm.lock(3, b"k", X, Duration::ZERO).unwrap();
    lm.lock(3, b"k", S, Duration::ZERO).unwrap();
    assert_eq!(lm.lock(4, b"k", S, Duration::ZERO), Err(LockError::Timeout { waited: Duration::ZERO }));
    lm.lock(4, b"other", X, Duration::ZERO).unwrap();
    lm.unlock(3, b"k");
    lm.unlock(4, b"other");
    assert_eq!(lm.len(), 0, "idle entries are removed");
}

#[test]
fn shared_request_queues_behind_waiting_exclusive() {
    let lm = LockManager::default();
    lm.lock(1, b"k", S, LONG).unwrap();
    thread::scope(|s| {
        let writer = s.spawn(|| lm.lock(2, b"k", X, LONG));
        wait_for_waiters(&lm, 1);
        let t = Instant::now();
        let reader = lm.lock(3, b"k", S, Duration::from_millis(50));
        assert!(matches!(reader, Err(LockError::Timeout { waited }) if waited >= Duration::from_millis(50)));
        assert!(t.elapsed() >= Duration::from_millis(50));
        lm.unlock(1, b"k");
        writer.join().unwrap().unwrap();
    });
    lm.unlock(2, b"k");
    assert_eq!((lm.len(), lm.waiting()), (0, 0));
}

#[test]
fn grants_in_fifo_order_and_batches_compatible_readers() {
    let lm = LockManager::default();
    lm.lock(1, b"k", X, LONG).unwrap();
    let order = AtomicU64::new(0);
    thread::scope(|s| {
        let mut handles = Vec::new();
        for (txn, mode) in [(2, X), (3, S), (4, S), (5, X)] {
            let (lm, order) = (&lm, &order);
            handles.push(s.spawn(move || {
                lm.lock(txn, b"k", mode, LONG).unwrap();
                let rank = order.fetch_add(1, Ordering::SeqCst);
                if mode == S {
                    // Both readers must hold together before either lets go.
                    thread::sleep(Duration::from_millis(20));
                }
                lm.unlock(txn, b"k");
                rank
            }));
            wait_for_waiters(lm, handles.len());
        }
        lm.unlock(1, b"k");
        let ranks: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ranks[0], 0, "the first queued writer goes first");
        assert_eq!(ranks[3], 3, "the last queued writer goes last");
    });
    assert_eq!((lm.len(), lm.waiting()), (0, 0));
}

#[test]
fn upgrade_waits_for_other_readers_then_holds_exclusive() {
    let lm = LockManager::default();
    lm.lock(1, b"k", S, LONG).unwrap();
    lm.lock(2, b"k", S, LONG).unwrap();
    thread::scope(|s| {
        let up = s.spawn(|| lm.lock(1, b"k", X, LONG));
        wait_for_waiters(&lm, 1);
        lm.unlock(2, b"k");
        up.join().unwrap().unwrap();
    });
    assert_eq!(lm.lock(2, b"k", S, Duration::ZERO), Err(LockError::Timeout { waited: Duration::ZERO }));
    lm.unlock(1, b"k");
    assert_eq!(lm.len(), 0);
}

#[test]
fn two_upgraders_deadlock_and_the_second_is_the_victim() {
    let lm = LockManager::default();
    lm.lock(1, b"k", S, LONG).unwrap();
    lm.lock(2, b"k", S, LONG).unwrap();
    thread::scope(|s| {
        let first = s.spawn(|| lm.lock(1, b"k", X, LONG));
        wait_for_waiters(&lm, 1);
        let t = Instant::now();
        assert_eq!(lm.lock(2, b"k", X, LONG), Err(LockError::Deadlock));
        assert!(t.elapsed() < Duration::from_millis(100));
        lm.unlock(2, b"k");
        first.join().unwrap().unwrap();
    });
    lm.unlock(1, b"k");
    assert_eq!((lm.len(), lm.waiting()), (0, 0));
}

#[test]
fn abba_and_three_way_cycles_are_detected() {
    let lm = LockManager::default();
    lm.lock(1, b"a", X, LONG).unwrap();
    lm.lock(2, b"b", X, LONG).unwrap();
    lm.lock(3, b"c", S, LONG).unwrap();
    thread::scope(|s| {
        let t1 = s.spawn(|| lm.lock(1, b"b", X, LONG));
        wait_for_waiters(&lm, 1);
        let t2 = s.spawn(|| lm.lock(2, b"c", X, LONG));
        wait_for_waiters(&lm, 2);
        // 3 → a (held by 1) → b (held by 2) → c (held by 3): a cycle of three.
        assert_eq!(lm.lock(3, b"a", S, LONG), Err(LockError::Deadlock));
        // A request that closes no cycle still waits (and times out here).
        assert!(matches!(lm.lock(4, b"a", S, Duration::from_millis(10)), Err(LockError::Timeout { .. })));
        lm.unlock(3, b"c");
        t2.join().unwrap().unwrap();
        lm.unlock(2, b"b");
        lm.unlock(2, b"c");
        t1.join().unwrap().unwrap();
    });
    lm.unlock(1, b"a");
    lm.unlock(1, b"b");
    assert_eq!((lm.len(), lm.waiting()), (0, 0));
}

#[test]
fn timed_out_writer_leaves_the_queue_and_readers_behind_it_proceed() {
    let lm = LockManager::default();
    lm.lock(1, b"k", S, LONG).unwrap();
    thread::scope(|s| {
        let writer = s.spawn(|| lm.lock(2, b"k", X, Duration::from_millis(50)));
        wait_for_waiters(&lm, 1);
        let reader = s.spawn(|| lm.lock(3, b"k", S, LONG));
        wait_for_waiters(&lm, 2);
        assert!(matches!(writer.join().unwrap(), Err(LockError::Timeout { .. })));
        reader.join().unwrap().unwrap();
    });
    lm.unlock(1, b"k");
    lm.unlock(3, b"k");
    assert_eq!((lm.len(), lm.waiting()), (0, 0));
}

/// Threads lock random keys in ascending order (so no deadlock is
/// possible) in random modes; per-key counters check mutual exclusion.
/// A false deadlock report fails the test.
#[test]
fn concurrent_ordered_locking_is_exclusive_and_never_deadlocks() {
    let lm = LockManager::default();
    let state: Vec<AtomicI64> = (0..8).map(|_| AtomicI64::new(0)).collect();
    let next_txn = AtomicU64::new(1);
    thread::scope(|s| {
        for seed in 0..4u64 {
            let (lm, state, next_txn) = (&lm, &state, &next_txn);
            s.spawn(move || {
                let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..2_000 {
                    let txn = next_txn.fetch_add(1, Ordering::Relaxed);
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let mut keys: Vec<usize> =
                        vec![(x % 8) as usize, ((x >> 8) % 8) as usize, ((x >> 16) % 8) as usize];
                    keys.sort_unstable();
                    keys.dedup();
                    let mut held = Vec::new();
                    for (i, k) in keys.iter().enumerate() {
                        let mode = if (x >> (24 + i)) & 1 == 1 { X } else { S };
                        lm.lock(txn, &[*k as u8], mode, LONG).expect("ordered locking cannot deadlock");
                        if mode == X {
                            assert_eq!(state[*k].swap(-1, Ordering::SeqCst), 0, "exclusive lock shared");
                        } else {
                            assert!(state[*k].fetch_add(1, Ordering::SeqCst) >= 0, "shared lock while exclusive");
                        }
                        held.push((*k, mode));
                    }
                    for (k, mode) in held {
                        if mode == X {
                            state[k].store(0, Ordering::SeqCst);
                        } else {
                            state[k].fetch_sub(1, Ordering::SeqCst);
                        }
                        lm.unlock(txn, &[k as u8]);
                    }
                }
            });
        }
    });
    assert_eq!((lm.len(), lm.waiting()), (0, 0));
}

/// Threads lock keys in random order with upgrades; deadlocks happen and
/// the victim releases everything. Every thread must finish (no deadlock
/// is missed: the timeout is long) and the table must end empty.
#[test]
fn concurrent_random_locking_resolves_every_deadlock() {
    let lm = LockManager::default();
    let next_txn = AtomicU64::new(1);
    let deadlocks = AtomicU64::new(0);
    let start = Instant::now();
    thread::scope(|s| {
        for seed in 0..4u64 {
            let (lm, next_txn, deadlocks) = (&lm, &next_txn, &deadlocks);
            s.spawn(move || {
                let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..1_000 {
                    let txn = next_txn.fetch_add(1, Ordering::Relaxed);
                    let mut held = Vec::new();
                    for step in 0..4 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = [(x % 4) as u8];
                        let mode = if step % 2 == 0 { S } else { X };
                        match lm.lock(txn, &key, mode, LONG) {
                            Ok(()) => held.push(key),
                            Err(LockError::Deadlock) => {
                                deadlocks.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(e) => panic!("{e:?} with a 10 s timeout: a deadlock was missed"),
                        }
                    }
                    for key in held {
                        lm.unlock(txn, &key);
                    }
                }
            });
        }
    });
    assert!(start.elapsed() < LONG);
    assert!(deadlocks.load(Ordering::Relaxed) > 0, "the workload is meant to produce deadlocks");
    assert_eq!((lm.len(), lm.waiting()), (0, 0));
}
