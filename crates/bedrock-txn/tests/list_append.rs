//! Elle-style list-append test: 8 threads run transactions that append
//! unique elements to, and read, lists stored under a few keys; the
//! recorded history (every transaction with what it observed, committed or
//! aborted) is checked for serializability by the checker in `elle/`,
//! which infers ww, wr and rw dependencies and looks for a cycle. A final
//! snapshot read checks that every committed append, and no aborted one,
//! is in the store.
//!
//! The negative test switches validation off and shows the checker
//! catching the resulting anomalies.

mod common;
mod elle;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use bedrock_txn::{Db, Transaction, TxnOptions};
use common::{memory_db, modes, Rng};
use elle::{Elem, Key, Op, Outcome, Txn};

const THREADS: u64 = 8;
const TXNS_PER_THREAD: u64 = 400;
const KEYS: u64 = 8;

fn list_key(k: Key) -> Vec<u8> {
    format!("list/{k}").into_bytes()
}

fn decode(value: Option<Vec<u8>>) -> Vec<Elem> {
    match value {
        Some(v) if !v.is_empty() => std::str::from_utf8(&v).unwrap().split(',').map(|e| e.parse().unwrap()).collect(),
        _ => Vec::new(),
    }
}

fn encode(list: &[Elem]) -> Vec<u8> {
    list.iter().map(u64::to_string).collect::<Vec<_>>().join(",").into_bytes()
}

/// Runs 1–4 random micro-operations in `t`, recording each as it completes.
fn body(t: &mut Transaction, rng: &mut Rng, next_elem: &AtomicU64, ops: &mut Vec<Op>) -> bedrock_txn::Result<()> {
    for _ in 0..=rng.below(4) {
        let key = rng.below(KEYS) as Key;
        if rng.below(2) == 0 {
            let list = decode(t.get(&list_key(key))?);
            ops.push(Op::Read { key, list });
        } else {
            let elem = next_elem.fetch_add(1, Ordering::Relaxed);
            let mut list = decode(t.get_for_update(&list_key(key))?);
            list.push(elem);
            t.put(&list_key(key), &encode(&list))?;
            ops.push(Op::Append { key, elem });
        }
    }
    Ok(())
}

fn run_txn(db: &Db, options: TxnOptions, validated: bool, rng: &mut Rng, next_elem: &AtomicU64) -> Txn {
    let mut t = db.begin_transaction_with(options);
    if !validated {
        t.disable_validation_for_testing();
    }
    let mut ops = Vec::new();
    let outcome = body(&mut t, rng, next_elem, &mut ops).and_then(|()| t.commit());
    let outcome = match outcome {
        Ok(_) => Outcome::Committed,
        Err(e) if e.is_retryable() => Outcome::Aborted,
        Err(e) => panic!("unexpected error: {e}"),
    };
    Txn { ops, outcome }
}

/// Runs the workload; returns the history (the final read last) and the
/// final contents of every list.
fn run(options: TxnOptions, validated: bool, seed: u64) -> (Vec<Txn>, HashMap<Key, Vec<Elem>>) {
    let db = memory_db();
    let next_elem = AtomicU64::new(1);
    let mut history: Vec<Txn> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (db, next_elem) = (&db, &next_elem);
                s.spawn(move || {
                    let mut rng = Rng::new(seed * 100 + i);
                    (0..TXNS_PER_THREAD)
                        .map(|_| run_txn(db, options, validated, &mut rng, next_elem))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let snapshot = db.begin_read_only();
    let finals: HashMap<Key, Vec<Elem>> =
        (0..KEYS as Key).map(|k| (k, decode(snapshot.get(&list_key(k)).unwrap()))).collect();
    let ops = finals.iter().map(|(k, list)| Op::Read { key: *k, list: list.clone() }).collect();
    history.push(Txn { ops, outcome: Outcome::Committed });
    (history, finals)
}

#[test]
fn list_append_histories_are_serializable() {
    for (name, options) in modes() {
        let (history, finals) = run(options, true, 1);
        let report = elle::check(&history).unwrap_or_else(|a| panic!("{name}: not serializable: {a:?}"));
        let lost = elle::lost_or_phantom_appends(&history, &finals);
        assert!(lost.is_empty(), "{name}: committed appends lost or aborted ones applied: {lost:?}");
        let aborted = history.len() - report.committed;
        eprintln!("{name}: {} committed, {aborted} aborted; edges {report:?}", report.committed);
        assert!(report.committed > history.len() / 2, "{name}: most transactions commit");
        assert!(report.ww > 100 && report.wr > 100 && report.rw > 100, "{name}: a dense graph: {report:?}");
    }
}

/// With validation off, optimistic transactions lose updates (both read a
/// list, both write it back with their own element) and skew; the checker
/// must notice. Up to five seeds, in case one run is lucky.
#[test]
fn the_checker_catches_anomalies_when_validation_is_off() {
    for seed in 1..=5 {
        let (history, _) = run(TxnOptions::default(), false, seed);
        if let Err(anomaly) = elle::check(&history) {
            let text = format!("{anomaly:?}");
            eprintln!("seed {seed}: caught {}", &text[..text.len().min(160)]);
            return;
        }
    }
    panic!("five runs without validation all passed the checker");
}
