//! Transaction semantics: atomic commit, read-your-writes, and the
//! anomalies optimistic validation must prevent. Each anomaly test states
//! what would happen without validation: the second commit would succeed.

use std::sync::Arc;

use bedrock_txn::{Db, Error, Options};
use bedrock_wal::FaultFs;

fn db() -> Db {
    Db::open(Options { fs: Arc::new(FaultFs::new()), ..Options::with_dir("db") }).unwrap()
}

#[test]
fn commit_is_atomic_and_rollback_discards() {
    let db = db();
    let mut t = db.begin_transaction();
    t.put(b"a", b"1").unwrap();
    t.put(b"b", b"2").unwrap();
    assert_eq!(db.get(b"a").unwrap(), None, "uncommitted writes are invisible");
    assert_eq!(t.get(b"a").unwrap(), Some(b"1".to_vec()), "read your own writes");
    let seq = t.commit().unwrap();
    assert_eq!(db.last_sequence(), seq);
    assert_eq!(db.get(b"b").unwrap(), Some(b"2".to_vec()));

    let mut t = db.begin_transaction();
    t.delete(b"a").unwrap();
    t.rollback();
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn scan_merges_own_writes_with_snapshot() {
    let db = db();
    db.put(b"a", b"1").unwrap();
    db.put(b"c", b"3").unwrap();
    let mut t = db.begin_transaction();
    t.put(b"b", b"2").unwrap();
    t.delete(b"c").unwrap();
    t.put(b"d", b"4").unwrap();
    let got = t.scan(b"", None, 0).unwrap();
    let keys: Vec<&[u8]> = got.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, vec![&b"a"[..], b"b", b"d"]);
    assert_eq!(t.scan(b"b", None, 1).unwrap(), vec![(b"b".to_vec(), b"2".to_vec())]);
}

/// Lost update: both read x and write x+1. Without validation both commit
/// and one increment is lost.
#[test]
fn lost_update_is_prevented() {
    let db = db();
    db.put(b"x", b"0").unwrap();
    let mut t1 = db.begin_transaction();
    let mut t2 = db.begin_transaction();
    t1.get(b"x").unwrap();
    t2.get(b"x").unwrap();
    t1.put(b"x", b"1").unwrap();
    t2.put(b"x", b"1").unwrap();
    t1.commit().unwrap();
    assert!(matches!(t2.commit(), Err(Error::Conflict { key }) if key == b"x"));
}

/// Write skew (two doctors on call): each checks that the other is on call
/// and goes off call. Without validation both commit and nobody is on call.
#[test]
fn write_skew_is_prevented() {
    let db = db();
    db.put(b"alice", b"on").unwrap();
    db.put(b"bob", b"on").unwrap();
    let mut t1 = db.begin_transaction();
    let mut t2 = db.begin_transaction();
    assert_eq!(t1.get(b"bob").unwrap(), Some(b"on".to_vec()));
    assert_eq!(t2.get(b"alice").unwrap(), Some(b"on".to_vec()));
    t1.put(b"alice", b"off").unwrap();
    t2.put(b"bob", b"off").unwrap();
    t1.commit().unwrap();
    assert!(matches!(t2.commit(), Err(Error::Conflict { .. })));
    let on = [&b"alice"[..], &b"bob"[..]].iter().filter(|k| db.get(k).unwrap() == Some(b"on".to_vec())).count();
    assert_eq!(on, 1);
}

/// Read skew: t1 reads x, t2 moves 10 from x to y, t1 reads y. t1 reads at
/// its snapshot so it sees the old y: the total stays consistent.
#[test]
fn read_skew_is_prevented() {
    let db = db();
    db.put(b"x", b"50").unwrap();
    db.put(b"y", b"50").unwrap();
    let mut t1 = db.begin_transaction();
    let x: i64 = String::from_utf8(t1.get(b"x").unwrap().unwrap()).unwrap().parse().unwrap();
    db.transaction(|t| {
        t.put(b"x", b"40")?;
        t.put(b"y", b"60")
    })
    .unwrap();
    let y: i64 = String::from_utf8(t1.get(b"y").unwrap().unwrap()).unwrap().parse().unwrap();
    assert_eq!(x + y, 100);
}

/// Phantom: t1 counts the keys in a range and writes the count; t2 inserts
/// into the range. Without range validation t1 commits a stale count.
#[test]
fn phantom_insert_into_scanned_range_is_a_conflict() {
    let db = db();
    db.put(b"emp/1", b"a").unwrap();
    let mut t1 = db.begin_transaction();
    let n = t1.scan(b"emp/", Some(b"emp0"), 0).unwrap().len();
    t1.put(b"count", n.to_string().as_bytes()).unwrap();
    db.put(b"emp/2", b"b").unwrap();
    assert!(matches!(t1.commit(), Err(Error::Conflict { .. })));
    // An insert outside the scanned range does not conflict.
    let mut t3 = db.begin_transaction();
    t3.scan(b"emp/", Some(b"emp0"), 0).unwrap();
    t3.put(b"count", b"2").unwrap();
    db.put(b"zzz", b"c").unwrap();
    t3.commit().unwrap();
}

#[test]
fn bad_input_and_size_limit_are_typed_errors() {
    let db =
        Db::open(Options { fs: Arc::new(FaultFs::new()), max_batch_bytes: 1024, ..Options::with_dir("db") }).unwrap();
    let mut t = db.begin_transaction();
    assert!(matches!(t.put(b"", b"v"), Err(Error::InvalidArgument(_))));
    assert!(matches!(t.put(&vec![b'k'; 9000], b"v"), Err(Error::InvalidArgument(_))));
    t.put(b"a", &[0; 600]).unwrap();
    assert!(matches!(t.put(b"b", &[0; 600]), Err(Error::TooLarge { .. })));
    t.commit().unwrap();
    assert_eq!(db.get(b"b").unwrap(), None);
    assert!(db.get(b"a").unwrap().is_some());
}

/// 10 accounts, 8 threads of random transfers through the retry helper; a
/// reader checks at random snapshots that the total never changes.
#[test]
fn bank_total_is_invariant() {
    let db = db();
    for a in 0..10 {
        db.put(format!("acct{a}").as_bytes(), b"100").unwrap();
    }
    let read_total = |db: &Db| -> i64 {
        let r = db.begin_read_only();
        (0..10)
            .map(|a| {
                String::from_utf8(r.get(format!("acct{a}").as_bytes()).unwrap().unwrap())
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            })
            .sum()
    };
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let db = db.clone();
            s.spawn(move || {
                let mut x = t * 7919 + 1;
                for _ in 0..500 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let (from, to) = ((x >> 33) % 10, (x >> 45) % 10);
                    if from == to {
                        continue;
                    }
                    let moved = db.transaction(|txn| {
                        let get = |txn: &mut bedrock_txn::Transaction, a: u64| -> bedrock_txn::Result<i64> {
                            Ok(String::from_utf8(txn.get(format!("acct{a}").as_bytes())?.unwrap())
                                .unwrap()
                                .parse()
                                .unwrap())
                        };
                        let (fb, tb) = (get(txn, from)?, get(txn, to)?);
                        let amount = (x % 7) as i64;
                        txn.put(format!("acct{from}").as_bytes(), (fb - amount).to_string().as_bytes())?;
                        txn.put(format!("acct{to}").as_bytes(), (tb + amount).to_string().as_bytes())
                    });
                    assert!(moved.is_ok() || matches!(moved, Err(Error::Conflict { .. })), "{moved:?}");
                }
            });
        }
        let db = db.clone();
        s.spawn(move || {
            for _ in 0..200 {
                assert_eq!(read_total(&db), 1000);
            }
        });
    });
    assert_eq!(read_total(&db), 1000);
}
