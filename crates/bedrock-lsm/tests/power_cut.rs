//! Power-cut simulation with `FaultFs`: a crash image keeps only what was
//! fsynced (plus a random prefix of unsynced writes), as a power cut
//! would. Every batch acknowledged under `SyncPolicy::Always` must survive
//! whole; unacknowledged ones may vanish but never half-apply.

use std::sync::Arc;

use bedrock_lsm::{Db, Options, WriteBatch};
use bedrock_wal::fs::{FaultKind, Injection, OpKind};
use bedrock_wal::{FaultFs, SyncPolicy, WalOptions};

const KEYS_PER_BATCH: u32 = 3;

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

fn batch(id: u32) -> WriteBatch {
    let mut b = WriteBatch::new();
    for j in 0..KEYS_PER_BATCH {
        // Keys of a batch are spread over the key space so that they land in
        // different SSTables and blocks.
        b.put(format!("{j}-batch-{id:06}").as_bytes(), format!("v{id}-{}", "p".repeat(40)).as_bytes());
    }
    b
}

/// Opens the crash image and checks the invariants: every batch `< acked`
/// is fully present; every batch is all-or-nothing; a full consistency
/// check passes. Returns how many batches survived.
fn check_image(image: &FaultFs, acked: u32, written: u32) -> u32 {
    let db = Db::open(opts(image)).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    db.verify().expect("consistency check after recovery");
    let mut survived = 0;
    for id in 0..written {
        let present: Vec<bool> = (0..KEYS_PER_BATCH)
            .map(|j| {
                let v = db.get(format!("{j}-batch-{id:06}").as_bytes()).unwrap();
                if let Some(v) = &v {
                    assert!(v.starts_with(format!("v{id}-").as_bytes()), "wrong value for batch {id}");
                }
                v.is_some()
            })
            .collect();
        let all = present.iter().all(|p| *p);
        assert!(all || present.iter().all(|p| !*p), "batch {id} is half-applied: {present:?}");
        if id < acked {
            assert!(all, "acknowledged batch {id} lost (acked {acked})");
        }
        survived += u32::from(all);
    }
    survived
}

#[test]
fn acknowledged_batches_survive_power_cuts() {
    let fs = FaultFs::new();
    let db = Db::open(opts(&fs)).unwrap();
    let total = 1_500u32;
    let mut images = 0;
    for id in 0..total {
        db.write(batch(id)).unwrap();
        if id % 97 == 13 {
            let image = fs.crash(u64::from(id));
            let survived = check_image(&image, id + 1, total);
            assert!(survived > id, "batches 0..={id} were acknowledged");
            images += 1;
        }
    }
    assert!(images >= 10);
    assert!(db.stats().flushes >= 2, "the workload must cross memtable flushes");
}

/// Seeded random power cuts: each case runs a random workload (batch
/// count, memtable size, so flushes and compactions run in the
/// background at random moments) and cuts the power at a random point:
/// either a crash image taken while the engine runs, or the disk dying
/// after a random number of further file-system operations (writes then
/// fail, as at a power loss). `BEDROCK_POWER_CUT_CASES=N` (default
/// 2,000); a failing case names its seed.
#[test]
fn random_power_cuts_lose_nothing_acknowledged() {
    use rand::{Rng, SeedableRng};
    let cases: u64 = std::env::var("BEDROCK_POWER_CUT_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let (mut flushes, mut cut_mid_operation) = (0, 0);
    for seed in 0..cases {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let fs = FaultFs::new();
        let options = Options {
            memtable_size_bytes: [4 << 10, 16 << 10, 64 << 10][rng.gen_range(0..3)],
            l0_compaction_trigger: rng.gen_range(2..5),
            ..opts(&fs)
        };
        let db = Db::open(options).unwrap_or_else(|e| panic!("seed {seed}: open: {e}"));
        let batches = rng.gen_range(1..250u32);
        let die_after = rng.gen_bool(0.5).then(|| rng.gen_range(0..200));
        let mut acked = 0;
        let mut image = None;
        for id in 0..batches {
            if let Some(ops) = die_after.filter(|_| id == batches / 2) {
                fs.set_mutation_limit(Some(fs.mutation_count() + ops));
            }
            if db.write(batch(id)).is_err() {
                cut_mid_operation += 1;
                break;
            }
            acked = id + 1;
            if die_after.is_none() && id + 1 == batches {
                image = Some(fs.crash(seed));
            }
        }
        flushes += db.stats().flushes;
        let image = image.unwrap_or_else(|| fs.crash(seed));
        drop(db);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_image(&image, acked, batches)));
        assert!(result.is_ok(), "seed {seed} failed (BEDROCK_POWER_CUT_CASES={} to rerun up to it)", seed + 1);
    }
    eprintln!("{cases} power cuts; {cut_mid_operation} cut a write mid-operation; {flushes} flushes before the cuts");
    assert!(cases < 100 || (flushes > cases && cut_mid_operation > 0), "the cuts must hit flushes and writes");
}

#[test]
fn crash_during_recovery_loses_nothing() {
    let fs = FaultFs::new();
    {
        let db = Db::open(opts(&fs)).unwrap();
        for id in 0..400 {
            db.write(batch(id)).unwrap();
        }
    }
    // Recovery itself writes (a flush of the replayed WAL, a new manifest,
    // deletions). Cut the power after each of its first operations in turn.
    let base = fs.crash(7);
    for limit in 0..40 {
        let attempt = base.crash(limit);
        attempt.set_mutation_limit(Some(limit));
        let _ = Db::open(opts(&attempt)); // may fail: the disk "died"
        let image = attempt.crash(limit + 1000);
        check_image(&image, 400, 400);
    }
}

#[test]
fn failed_fsync_poisons_and_loses_nothing_acknowledged() {
    let fs = FaultFs::new();
    let db = Db::open(opts(&fs)).unwrap();
    for id in 0..50 {
        db.write(batch(id)).unwrap();
    }
    fs.inject(Injection {
        op: OpKind::Sync,
        path_contains: Some(".wal".into()),
        after: 0,
        kind: FaultKind::Eio,
        sticky: false,
    });
    let err = db.write(batch(50)).expect_err("the fsync failed, so the write must not be acknowledged");
    assert!(err.to_string().contains("sync"), "{err}");
    // No retry of the failed fsync: every later write is refused.
    assert!(matches!(db.write(batch(51)), Err(bedrock_lsm::Error::Poisoned(_))));
    assert!(db.get(b"0-batch-000050").unwrap().is_none(), "a failed write is never visible");
    drop(db);
    let image = fs.crash(3);
    check_image(&image, 50, 52);
}

#[test]
fn enospc_on_wal_write_is_reported() {
    let fs = FaultFs::new();
    let db = Db::open(Options { wal: WalOptions { sync: SyncPolicy::Always, ..WalOptions::default() }, ..opts(&fs) })
        .unwrap();
    db.write(batch(0)).unwrap();
    fs.inject(Injection {
        op: OpKind::Write,
        path_contains: Some(".wal".into()),
        after: 0,
        kind: FaultKind::Enospc,
        sticky: true,
    });
    let err = db.write(batch(1)).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("no space"), "{err}");
    drop(db);
    fs.clear_faults();
    check_image(&fs.crash(1), 1, 2);
}

/// Options for the exhaustive test: no automatic flush (the workload
/// flushes at fixed points) and a compaction after every second flush.
fn exhaustive_opts(fs: &FaultFs) -> Options {
    Options { memtable_size_bytes: 1 << 20, l0_compaction_trigger: 2, ..opts(fs) }
}

const EXHAUSTIVE_BATCHES: u32 = 100;

/// The fixed workload: 100 batches, a flush after every 20th (each second
/// flush triggers a compaction, which it waits for), then a clean close.
/// Stops at the first error (the "disk" died). Returns the batches
/// acknowledged.
fn exhaustive_workload(fs: &FaultFs, limit: Option<u64>) -> u32 {
    fs.set_mutation_limit(limit);
    let dead = || limit.is_some_and(|l| fs.mutation_count() >= l);
    let Ok(db) = Db::open(exhaustive_opts(fs)) else { return 0 };
    let mut acked = 0;
    for id in 0..EXHAUSTIVE_BATCHES {
        if db.write(batch(id)).is_err() {
            return acked;
        }
        acked = id + 1;
        if acked % 20 == 0 {
            if db.flush().is_err() {
                return acked;
            }
            // Let the background compaction finish before the next write, so
            // every run performs the same operations in the same order.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while db.stats().levels.first().is_some_and(|l| l.files >= 2) && !dead() {
                assert!(std::time::Instant::now() < deadline, "compaction never finished");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
    let _ = db.close();
    acked
}

/// ALICE-style exhaustive crash test: for one fixed workload, the power
/// is cut after every single mutating file-system operation in turn
/// (create, write, set_len, fsync, directory fsync, rename, remove, link),
/// and each crash image must recover with every acknowledged batch whole.
/// Each image is also recovered a second time with the power cut again
/// part-way through that recovery. `BEDROCK_ALICE_SEEDS=N` varies which
/// unsynced writes survive each cut over N seeds (default 4: over 2,000
/// crash images).
#[test]
fn exhaustive_crash_after_every_operation() {
    let full = FaultFs::new();
    assert_eq!(exhaustive_workload(&full, None), EXHAUSTIVE_BATCHES);
    let total = full.mutation_count();
    let seeds: u64 = std::env::var("BEDROCK_ALICE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut images = 0u64;
    for seed in 0..seeds {
        for k in 0..=total {
            let fs = FaultFs::new();
            let acked = exhaustive_workload(&fs, Some(k));
            let image = fs.crash(k ^ (seed << 32));
            check_image(&image, acked, EXHAUSTIVE_BATCHES);
            // A second power cut during recovery, after a few of its operations.
            let again = image.crash(k + 1);
            again.set_mutation_limit(Some(k % 24));
            let _ = Db::open(exhaustive_opts(&again));
            check_image(&again.crash(k + 2), acked, EXHAUSTIVE_BATCHES);
            images += 2;
        }
    }
    eprintln!("{total} operations in the workload; {images} crash images recovered over {seeds} seed(s)");
    assert!(total > 200, "the workload is too small to mean much: {total} operations");
}
