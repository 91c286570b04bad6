//! Seeded corruption of a whole database: each case takes the same
//! database (SSTables on two levels, a manifest with many version edits,
//! WAL segments holding unflushed writes), damages one of its files (flips
//! 1–8 random bits, or truncates it), and opens and reads it. Every case
//! must end in an error that names a file, in the documented recovery (a
//! torn WAL tail is cut off), or in correct data: never a panic, a hang or
//! a wrong value. `BEDROCK_CORRUPTION_CASES` sets the number of cases
//! (default 2,000).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bedrock_lsm::{Db, Options, WriteBatch};
use bedrock_wal::fs::FileSystem;
use bedrock_wal::{FaultFs, WalOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const KEYS: u32 = 1_200;

fn opts(fs: &FaultFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        memtable_size_bytes: 16 << 10,
        target_file_size_bytes: 64 << 10,
        max_bytes_for_level_base: 1 << 20,
        l0_compaction_trigger: 2,
        wal: WalOptions { segment_size_bytes: 64 << 10, ..WalOptions::default() },
        ..Options::with_dir("db")
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i:05}-{}", "x".repeat(i as usize % 50)).into_bytes()
}

/// The database every case starts from, as a crash image (so only what
/// was made durable is there, as after a power cut).
fn base() -> FaultFs {
    let fs = FaultFs::new();
    let db = Db::open(opts(&fs)).expect("open");
    for i in 0..KEYS {
        let mut b = WriteBatch::new();
        b.put(&key(i), &value(i));
        db.write(b).expect("write");
    }
    // Overwrites and deletes, some of them only in the WAL.
    for i in (0..KEYS).step_by(7) {
        let mut b = WriteBatch::new();
        b.delete(&key(i));
        db.write(b).expect("delete");
    }
    let image = fs.crash(0);
    drop(db);
    image
}

/// Writes in the order they were made: put `i` is write `i`; the delete
/// of `i` (every 7th key) is write `KEYS + i / 7`.
const WRITES: u32 = KEYS + KEYS.div_ceil(7);

/// Whether key `i` exists after the first `p` writes.
fn exists_after(i: u32, p: u32) -> bool {
    let put = i < p;
    let deleted = i % 7 == 0 && KEYS + i / 7 < p;
    put && !deleted
}

/// Whether `observed` (per key: present, absent, or unreadable = `None`)
/// is the state after some prefix of the writes; with `whole`, only the
/// full history is allowed.
fn is_prefix_state(observed: &[Option<bool>], whole: bool) -> bool {
    let candidates = if whole { WRITES..=WRITES } else { 0..=WRITES };
    candidates.into_iter().any(|p| {
        observed.iter().enumerate().all(|(i, seen)| seen.is_none_or(|present| present == exists_after(i as u32, p)))
    })
}

/// Files of the database, with their paths.
fn files(fs: &FaultFs) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [Path::new("db"), Path::new("db/wal")] {
        for name in fs.read_dir(dir).unwrap_or_default() {
            let path = dir.join(&name);
            if name != "LOCK" && fs.contents(&path).is_some_and(|c| !c.is_empty()) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Damages one file of `fs`; returns it and a description.
fn damage(fs: &FaultFs, rng: &mut SmallRng) -> (PathBuf, String) {
    let files = files(fs);
    let path = files[rng.gen_range(0..files.len())].clone();
    let mut bytes = fs.contents(&path).expect("file exists");
    // The WAL is preallocated with zeros; damage where the records are.
    let written = bytes.iter().rposition(|&b| b != 0).map_or(bytes.len(), |p| p + 1).max(1);
    if rng.gen_bool(0.25) {
        let len = rng.gen_range(0..written);
        bytes.truncate(len);
        fs.set_contents(&path, bytes).expect("set contents");
        let description = format!("{} truncated to {len} bytes", path.display());
        return (path, description);
    }
    let flips = rng.gen_range(1..=8);
    let mut at = Vec::new();
    for _ in 0..flips {
        let offset = rng.gen_range(0..written);
        bytes[offset] ^= 1 << rng.gen_range(0..8);
        at.push(offset);
    }
    fs.set_contents(&path, bytes).expect("set contents");
    let description = format!("{} bits flipped at {at:?}", path.display());
    (path, description)
}

/// Opens the damaged image and reads everything. Returns what happened,
/// panicking (with the case) on a wrong answer. `wal` says whether the
/// damaged file is a WAL segment, whose torn tail may be cut off (losing
/// the newest writes, so an earlier state is correct).
fn check(fs: &FaultFs, what: &str, wal: bool) -> &'static str {
    let db = match Db::open(opts(fs)) {
        Ok(db) => db,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("db/"), "{what}: the open error names no file: {msg}");
            return "refused to open";
        }
    };
    let mut observed = Vec::with_capacity(KEYS as usize);
    for i in 0..KEYS {
        match db.get(&key(i)) {
            Ok(Some(v)) => {
                assert_eq!(v, value(i), "{what}: wrong value for key {i}");
                observed.push(Some(true));
            }
            Ok(None) => observed.push(Some(false)),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("db/"), "{what}: a read error names no file: {msg}");
                observed.push(None);
            }
        }
    }
    assert!(
        is_prefix_state(&observed, !wal),
        "{what}: the store holds no state of the history{}",
        if wal { " (not even a prefix)" } else { " (writes lost without an error)" }
    );
    if let Ok(kvs) = db.scan(b"", None, usize::MAX) {
        for (k, v) in kvs {
            let i: u32 = std::str::from_utf8(&k)
                .ok()
                .and_then(|s| s.strip_prefix("key-")?.parse().ok())
                .unwrap_or_else(|| panic!("{what}: the scan returned a key nobody wrote: {k:?}"));
            assert_eq!(v, value(i), "{what}: the scan returned a wrong value for key {i}");
        }
    }
    let _ = db.verify();
    match (observed.iter().any(Option::is_none), is_prefix_state(&observed, true)) {
        (true, _) => "opened, some reads refused",
        (false, true) => "opened, all data",
        (false, false) => "opened, torn WAL tail cut",
    }
}

#[test]
fn damaged_files_give_errors_or_correct_data_never_wrong_data() {
    let cases: u64 = std::env::var("BEDROCK_CORRUPTION_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let base = base();
    assert!(files(&base).iter().any(|p| p.extension().is_some_and(|e| e == "sst")), "no SSTable in the base");
    assert!(files(&base).iter().any(|p| p.starts_with("db/wal")), "no WAL segment in the base");
    let mut outcomes = std::collections::BTreeMap::new();
    for case in 0..cases {
        let mut rng = SmallRng::seed_from_u64(case);
        let fs = base.crash(case);
        let (damaged, description) = damage(&fs, &mut rng);
        let what = format!("case {case}: {description}");
        let wal = damaged.starts_with("db/wal");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&fs, &what, wal)));
        match result {
            Ok(outcome) => *outcomes.entry(outcome).or_insert(0u64) += 1,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{what}: {msg}");
            }
        }
    }
    eprintln!("{cases} corruption cases: {outcomes:?}");
    assert_eq!(outcomes.values().sum::<u64>(), cases);
}
