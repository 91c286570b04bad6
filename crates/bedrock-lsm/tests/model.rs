//! Model-based property test: random sequences of put, delete, write
//! batch, snapshot, get, scan, cursor walks, flush, compaction, reopen and
//! power cut run against the engine and against a `BTreeMap` model (with
//! snapshots modelled as copies of the map). Any divergence fails, and
//! proptest shrinks it to a minimal sequence. 2,000 cases run by default
//! (about 40 s in a debug build); `BEDROCK_MODEL_CASES=N` for more.

use std::collections::BTreeMap;
use std::sync::Arc;

use bedrock_lsm::{CompactionPri, Db, Options, Snapshot, WriteBatch};
use bedrock_wal::{FaultFs, WalOptions};
use proptest::prelude::*;

/// The model: what the database should hold.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Batch(Vec<(u8, Option<u8>)>),
    TakeSnapshot,
    GetAt(u8, usize),
    Scan(u8, u8, usize),
    ScanAt(u8, u8, usize),
    /// A cursor walk: start (0 = seek, 1 = seek_for_prev, 2 = first, 3 =
    /// last) at a key, then steps (true = next, false = prev), over the
    /// range between two keys, at the latest state or a snapshot.
    Walk(u8, u8, u8, u8, Vec<bool>, Option<usize>),
    Flush,
    /// Flush, then wait for the background compaction that the L0 file
    /// count triggers (so tombstones and overwritten versions are dropped
    /// while snapshots may still need them).
    Compact,
    Reopen,
    PowerCut(u64),
}

fn key(k: u8) -> Vec<u8> {
    format!("k{:03}", k % 64).into_bytes()
}

fn value(v: u8, seq: usize) -> Vec<u8> {
    format!("v{v}-{seq}-{}", "x".repeat(usize::from(v) * 3)).into_bytes()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => any::<u8>().prop_map(Op::Delete),
        3 => prop::collection::vec((any::<u8>(), prop::option::of(any::<u8>())), 1..8).prop_map(Op::Batch),
        1 => Just(Op::TakeSnapshot),
        4 => (any::<u8>(), any::<usize>()).prop_map(|(k, s)| Op::GetAt(k, s)),
        2 => (any::<u8>(), any::<u8>(), 0..5usize).prop_map(|(a, b, l)| Op::Scan(a, b, l)),
        1 => (any::<u8>(), any::<u8>(), any::<usize>()).prop_map(|(a, b, s)| Op::ScanAt(a, b, s)),
        3 => (0..4u8, any::<u8>(), any::<u8>(), any::<u8>(), prop::collection::vec(any::<bool>(), 0..12), prop::option::of(any::<usize>()))
            .prop_map(|(how, at, a, b, steps, snap)| Op::Walk(how, at, a, b, steps, snap)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(Op::PowerCut),
    ]
}

fn options(fs: &FaultFs, compaction_pri: CompactionPri) -> Options {
    Options {
        compaction_pri,
        // Two compaction threads exercise concurrent compactions; with
        // the flush thread they share two job slots, so a flush often
        // pauses a compaction.
        background_compactions: 2,
        background_job_limit: 2,
        compression_per_level: vec![bedrock_sstable::Compression::None, bedrock_sstable::Compression::Lz4],
        fs: Arc::new(fs.clone()),
        memtable_size_bytes: 4096,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 2,
        l0_stop_trigger: 6,
        target_file_size_bytes: 64 << 10,
        max_bytes_for_level_base: 1 << 20,
        wal: WalOptions { segment_size_bytes: 8192, ..WalOptions::default() },
        table: bedrock_sstable::TableOptions { block_size_bytes: 256, ..Default::default() },
        ..Options::with_dir("db")
    }
}

/// The range `[lo, hi)` named by two key indexes, in order.
fn bounds(a: u8, b: u8) -> (Vec<u8>, Vec<u8>) {
    let (a, b) = (key(a), key(b));
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn range(model: &BTreeMap<Vec<u8>, Vec<u8>>, a: u8, b: u8, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (lo, hi) = bounds(a, b);
    let it = model.range(lo..hi).map(|(k, v)| (k.clone(), v.clone()));
    if limit == 0 {
        it.collect()
    } else {
        it.take(limit).collect()
    }
}

fn run(ops: Vec<Op>, pri: CompactionPri) -> Result<(), TestCaseError> {
    let mut fs = FaultFs::new();
    let mut db = Some(Db::open(options(&fs, pri)).unwrap());
    let mut model: Model = BTreeMap::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let d = db.as_ref().unwrap();
        match op {
            Op::Put(k, v) => {
                d.put(&key(k), &value(v, i)).unwrap();
                model.insert(key(k), value(v, i));
            }
            Op::Delete(k) => {
                d.delete(&key(k)).unwrap();
                model.remove(&key(k));
            }
            Op::Batch(ops) => {
                let mut b = WriteBatch::new();
                for (k, v) in ops {
                    match v {
                        Some(v) => {
                            b.put(&key(k), &value(v, i));
                            model.insert(key(k), value(v, i));
                        }
                        None => {
                            b.delete(&key(k));
                            model.remove(&key(k));
                        }
                    }
                }
                d.write(b).unwrap();
            }
            Op::TakeSnapshot => snapshots.push((d.snapshot(), model.clone())),
            Op::GetAt(k, s) => {
                if snapshots.is_empty() {
                    prop_assert_eq!(d.get(&key(k)).unwrap(), model.get(&key(k)).cloned());
                } else {
                    let (snap, m) = &snapshots[s % snapshots.len()];
                    prop_assert_eq!(d.get_at(&key(k), snap).unwrap(), m.get(&key(k)).cloned());
                }
            }
            Op::Scan(a, b, limit) => {
                let (lo, hi) = bounds(a, b);
                prop_assert_eq!(d.scan(&lo, Some(&hi), limit).unwrap(), range(&model, a, b, limit));
            }
            Op::ScanAt(a, b, s) => {
                if let Some((snap, m)) = snapshots.get(s % snapshots.len().max(1)) {
                    let (lo, hi) = bounds(a, b);
                    let got: Vec<_> = d.iter_at(&lo, Some(&hi), snap).collect::<Result<_, _>>().unwrap();
                    prop_assert_eq!(got, range(m, a, b, 0));
                }
            }
            Op::Walk(how, at, a, b, steps, snap) => {
                let (lo, hi) = bounds(a, b);
                let (m, mut cursor) = match snap.and_then(|s| snapshots.get(s % snapshots.len().max(1))) {
                    Some((snap, m)) => (m, d.cursor_at(&lo, Some(&hi), snap)),
                    None => (&model, d.cursor(&lo, Some(&hi))),
                };
                let keys: Vec<(&Vec<u8>, &Vec<u8>)> = m.range(lo.clone()..hi.clone()).collect();
                let target = key(at);
                // Position in `keys` the model expects, None = invalid.
                let mut pos: Option<usize> = match how {
                    0 => {
                        cursor.seek(&target);
                        keys.iter().position(|(k, _)| **k >= target)
                    }
                    1 => {
                        cursor.seek_for_prev(&target);
                        keys.iter().rposition(|(k, _)| **k <= target)
                    }
                    2 => {
                        cursor.seek_to_first();
                        (!keys.is_empty()).then_some(0)
                    }
                    _ => {
                        cursor.seek_to_last();
                        keys.len().checked_sub(1)
                    }
                };
                for step in std::iter::once(None).chain(steps.into_iter().map(Some)) {
                    match step {
                        Some(true) if pos.is_some() => {
                            cursor.next();
                            pos = pos.map(|p| p + 1).filter(|p| *p < keys.len());
                        }
                        Some(false) if pos.is_some() => {
                            cursor.prev();
                            pos = pos.and_then(|p| p.checked_sub(1));
                        }
                        _ => {}
                    }
                    cursor.status().unwrap();
                    match pos {
                        Some(p) => {
                            prop_assert!(cursor.valid(), "cursor invalid, model at {:?}", keys[p].0);
                            prop_assert_eq!(
                                (cursor.key(), cursor.value()),
                                (keys[p].0.as_slice(), keys[p].1.as_slice())
                            );
                        }
                        None => prop_assert!(!cursor.valid(), "cursor at {:?}, model invalid", cursor.key()),
                    }
                }
            }
            Op::Flush => d.flush().unwrap(),
            Op::Compact => {
                d.flush().unwrap();
                let trigger = options(&fs, pri).l0_compaction_trigger;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while d.stats().levels.first().is_some_and(|l| l.files >= trigger) {
                    prop_assert!(std::time::Instant::now() < deadline, "the L0 compaction never ran");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            Op::Reopen => {
                snapshots.clear();
                drop(db.take()); // releases the directory lock
                db = Some(Db::open(options(&fs, pri)).unwrap());
            }
            Op::PowerCut(seed) => {
                // Every write was acknowledged under SyncPolicy::Always, so
                // the crash image must hold all of them.
                snapshots.clear();
                let image = fs.crash(seed);
                drop(db.take());
                fs = image;
                db = Some(Db::open(options(&fs, pri)).unwrap());
            }
        }
    }
    let d = db.as_ref().unwrap();
    let all: Vec<_> = d.iter(b"", None).collect::<Result<_, _>>().unwrap();
    let expected: Vec<_> = model.into_iter().collect();
    prop_assert_eq!(all, expected);
    d.verify().unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("BEDROCK_MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_btreemap_model(
        ops in prop::collection::vec(op(), 1..200),
        pri in prop_oneof![Just(CompactionPri::MinOverlappingRatio), Just(CompactionPri::RoundRobin)],
    ) {
        run(ops, pri)?;
    }
}
