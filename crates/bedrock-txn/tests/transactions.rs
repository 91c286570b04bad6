//! Transaction semantics in both modes: atomic commit, rollback,
//! read-your-writes, scans merged with buffered writes, typed errors for
//! bad input and size limits with nothing partially applied, the retry
//! helper's bound, and the public validation entry point.

mod common;

use std::sync::Arc;

use bedrock_txn::{Db, Error, Options, ReadSet, TxnOptions, WriteBatch, MAX_TRANSACTION_ATTEMPTS};
use bedrock_wal::{FaultFs, SyncPolicy, WalOptions};
use common::{memory_db, modes};

#[test]
fn commit_is_atomic_and_rollback_discards() {
    for (name, options) in modes() {
        let db = memory_db();
        let mut t = db.begin_transaction_with(options);
        t.put(b"a", b"1").unwrap();
        t.put(b"b", b"2").unwrap();
        assert_eq!(db.get(b"a").unwrap(), None, "{name}: uncommitted writes are invisible");
        assert_eq!(t.get(b"a").unwrap(), Some(b"1".to_vec()), "{name}: read your own writes");
        let before = db.last_sequence();
        let seq = t.commit().unwrap();
        assert_eq!(seq, before + 1, "{name}: one transaction, one sequence number");
        assert_eq!(db.last_sequence(), seq);
        assert_eq!(db.get(b"b").unwrap(), Some(b"2".to_vec()));

        let mut t = db.begin_transaction_with(options);
        t.delete(b"a").unwrap();
        t.put(b"c", b"3").unwrap();
        t.rollback();
        assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()), "{name}");
        assert_eq!(db.get(b"c").unwrap(), None, "{name}");
        assert_eq!(db.last_sequence(), seq, "{name}: a rollback writes nothing");
    }
}

#[test]
fn embedded_api_of_the_issue() {
    let db = memory_db();
    let mut txn = db.begin_transaction();
    txn.put(b"hello", b"embedded world").unwrap();
    txn.put(b"status", b"ok").unwrap();
    txn.commit().unwrap();
    let read = db.begin_read_only();
    assert_eq!(read.get(b"hello").unwrap().as_deref(), Some(&b"embedded world"[..]));
}

#[test]
fn scan_merges_own_writes_with_stored_rows() {
    for (name, options) in modes() {
        let db = memory_db();
        db.put(b"a", b"1").unwrap();
        db.put(b"c", b"3").unwrap();
        db.put(b"e", b"5").unwrap();
        let mut t = db.begin_transaction_with(options);
        t.put(b"b", b"2").unwrap();
        t.delete(b"c").unwrap();
        t.put(b"d", b"4").unwrap();
        t.put(b"e", b"55").unwrap();
        let got = t.scan(b"", None, 0).unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = [("a", "1"), ("b", "2"), ("d", "4"), ("e", "55")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(got, expected, "{name}");
        assert_eq!(t.scan(b"b", None, 1).unwrap(), vec![(b"b".to_vec(), b"2".to_vec())], "{name}");
        assert_eq!(t.scan(b"b", Some(b"e"), 0).unwrap().len(), 2, "{name}: end is exclusive");
    }
}

#[test]
fn read_only_transactions_see_one_snapshot() {
    let db = memory_db();
    db.put(b"x", b"1").unwrap();
    let r = db.begin_read_only();
    db.transaction(|t| {
        t.put(b"x", b"2")?;
        t.put(b"y", b"2")
    })
    .unwrap();
    assert_eq!(r.get(b"x").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(r.scan(b"", None, 0).unwrap(), vec![(b"x".to_vec(), b"1".to_vec())]);
    assert!(r.snapshot_seq() < db.last_sequence());
}

#[test]
fn bad_input_and_size_limit_are_typed_errors_and_nothing_is_partially_applied() {
    for (name, options) in modes() {
        let wal = WalOptions { sync: SyncPolicy::Never, preallocate: false, ..WalOptions::default() };
        let opts = Options { fs: Arc::new(FaultFs::new()), wal, max_batch_bytes: 1024, ..Options::with_dir("db") };
        let db = Db::open(opts).unwrap();
        let mut t = db.begin_transaction_with(options);
        assert!(matches!(t.put(b"", b"v"), Err(Error::InvalidArgument(_))), "{name}");
        assert!(matches!(t.put(&vec![b'k'; 9000], b"v"), Err(Error::InvalidArgument(_))), "{name}");
        assert!(matches!(t.put(b"k", &vec![0; 9 << 20]), Err(Error::InvalidArgument(_))), "{name}");
        t.put(b"a", &[0; 600]).unwrap();
        // Overwriting a key replaces its share of the limit.
        for _ in 0..10 {
            t.put(b"a", &[1; 600]).unwrap();
        }
        match t.put(b"b", &[0; 600]) {
            Err(Error::TooLarge { size, max }) => assert!(size > max && max == 1024, "{name}: {size} {max}"),
            other => panic!("{name}: {other:?}"),
        }
        t.commit().unwrap();
        assert_eq!(db.get(b"b").unwrap(), None, "{name}: the write that passed the limit was not added");
        assert_eq!(db.get(b"a").unwrap(), Some(vec![1; 600]), "{name}");
    }
}

/// A transaction that always conflicts: the helper makes exactly
/// `MAX_TRANSACTION_ATTEMPTS` attempts and returns the conflict; nothing
/// of the transaction is applied.
#[test]
fn the_retry_helper_is_bounded() {
    let db = memory_db();
    db.put(b"k", b"0").unwrap();
    let mut attempts = 0;
    let outcome = db.transaction(|t| {
        attempts += 1;
        t.get(b"k")?;
        db.put(b"k", attempts.to_string().as_bytes())?; // invalidates the read
        t.put(b"mine", b"x")
    });
    assert!(matches!(outcome, Err(Error::Conflict { key }) if key == b"k"));
    assert_eq!(attempts, MAX_TRANSACTION_ATTEMPTS);
    assert_eq!(db.get(b"mine").unwrap(), None);

    // Errors that are not retryable are returned at once.
    let mut calls = 0;
    let outcome = db.transaction(|t| {
        calls += 1;
        t.put(b"", b"x")
    });
    assert!(matches!(outcome, Err(Error::InvalidArgument(_))));
    assert_eq!(calls, 1);
}

/// `Db::write_validated` is the commit step as a function of (reads, writes,
/// store state), the entry point a replica would use at apply time.
#[test]
fn write_validated_checks_a_hand_made_read_set() {
    let db = memory_db();
    let seq = db.put(b"k", b"1").unwrap();
    let mut reads = ReadSet::default();
    reads.record_key(b"k", seq);
    reads.record_key(b"never-written", 0);
    reads.record_range(b"r/", Some(b"r0"), seq);
    let mut batch = WriteBatch::new();
    batch.put(b"out", b"1");
    let applied = db.write_validated(&reads, batch.clone()).unwrap();
    assert_eq!(applied, seq + 1);

    db.put(b"r/new", b"x").unwrap();
    assert!(matches!(db.write_validated(&reads, batch.clone()), Err(Error::Conflict { key }) if key == b"r/"));
    reads.ranges.clear();
    db.delete(b"k").unwrap();
    assert!(matches!(db.write_validated(&reads, batch), Err(Error::Conflict { key }) if key == b"k"));
}

#[test]
fn an_optimistic_transaction_that_only_read_commits_without_a_write() {
    let db = memory_db();
    db.put(b"k", b"1").unwrap();
    let mut t = db.begin_transaction_with(TxnOptions::default());
    t.get(b"k").unwrap();
    let snapshot = t.snapshot_seq();
    db.put(b"k", b"2").unwrap();
    assert_eq!(t.commit().unwrap(), snapshot, "it read one snapshot: serializable at that point");
    assert_eq!(db.last_sequence(), snapshot + 1);
}
