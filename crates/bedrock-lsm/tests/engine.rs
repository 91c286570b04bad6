//! End-to-end behaviour of the engine on the real file system and on
//! `FaultFs`: reads and writes, flushes, compaction, reopen, limits, locks.

use std::path::Path;
use std::sync::Arc;

use bedrock_lsm::{Db, Error, Options, WriteBatch};
use bedrock_wal::{FaultFs, FileSystem};

fn small(dir: &Path) -> Options {
    Options {
        memtable_size_bytes: 64 << 10,
        target_file_size_bytes: 64 << 10,
        max_bytes_for_level_base: 1 << 20,
        ..Options::with_dir(dir)
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

fn count_files(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(suffix))
        .count()
}

#[test]
fn put_get_delete_scan() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options::with_dir(dir.path())).unwrap();
    let s1 = db.put(b"b", b"2").unwrap();
    let s2 = db.put(b"a", b"1").unwrap();
    assert!(s2 > s1, "sequence numbers increase");
    db.put(b"c", b"3").unwrap();
    db.delete(b"b").unwrap();
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"b").unwrap(), None);
    assert_eq!(db.get(b"zz").unwrap(), None);
    let all = db.scan(b"", None, 0).unwrap();
    assert_eq!(all, vec![(b"a".to_vec(), b"1".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
    assert_eq!(db.scan(b"b", Some(b"c"), 0).unwrap(), vec![]);
    assert_eq!(db.scan(b"", None, 1).unwrap().len(), 1);
}

#[test]
fn three_memtables_of_writes_make_sstables_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(dir.path());
    let n = 3_000u32; // ~3.5x the 64 KiB memtable limit with these sizes
    {
        let db = Db::open(opts.clone()).unwrap();
        for i in 0..n {
            db.put(&key(i), &value(i, 0)).unwrap();
        }
        db.flush().unwrap();
        let stats = db.stats();
        assert!(stats.flushes >= 3, "expected several flushes, got {stats:?}");
        assert!(count_files(dir.path(), ".sst") >= 1);
        // Flushed segments are deleted: the WAL holds at most the segments
        // of unflushed memtables plus the current one.
        let wal_files = count_files(&dir.path().join("wal"), ".wal");
        assert!(wal_files <= 2, "WAL directory not bounded: {wal_files} segments");
        assert!(db.verify().unwrap() as u32 >= n);
    }
    let db = Db::open(opts).unwrap();
    for i in 0..n {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 0)), "key {i}");
    }
    assert_eq!(db.scan(b"", None, 0).unwrap().len(), n as usize);
}

#[test]
fn overwrites_and_deletes_compact_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(small(dir.path())).unwrap();
    for round in 0..8 {
        for i in 0..1_000u32 {
            if round == 7 && i % 2 == 0 {
                db.delete(&key(i)).unwrap();
            } else {
                db.put(&key(i), &value(i, round)).unwrap();
            }
        }
        db.flush().unwrap();
    }
    // Let the background threads finish every compaction that is due.
    for _ in 0..500 {
        if !db.stats().compaction_pending {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stats = db.stats();
    assert!(stats.compactions >= 1, "{stats:?}");
    assert!(!stats.compaction_pending && stats.running_compactions == 0, "{stats:?}");
    // Settled means every level is within its target (levels kept empty
    // have target 0), and the data sits in the last levels.
    assert!(stats.levels[0].files < db.options().l0_compaction_trigger, "{stats:?}");
    for (level, l) in stats.levels.iter().enumerate().skip(1).take(stats.levels.len() - 2) {
        assert!(l.bytes <= l.target_bytes, "level {level}: {stats:?}");
    }
    assert!(stats.levels.last().is_some_and(|l| l.files > 0 && l.target_bytes >= l.bytes), "{stats:?}");
    for i in 0..1_000u32 {
        let expect = if i % 2 == 0 { None } else { Some(value(i, 7)) };
        assert_eq!(db.get(&key(i)).unwrap(), expect, "key {i}");
    }
    assert_eq!(db.scan(b"", None, 0).unwrap().len(), 500);
    db.verify().unwrap();
}

/// Waits (up to 10 s) until no compaction is due or running.
fn settle(db: &Db) -> bedrock_lsm::DbStats {
    for _ in 0..500 {
        let stats = db.stats();
        if !stats.compaction_pending {
            return stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    db.stats()
}

#[test]
fn fixed_level_targets_migrate_to_dynamic_ones_without_losing_data() {
    const KEYS: u32 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    // Written with fixed targets (L1 1 MiB, L2 2 MiB), so data reaches
    // L1 and L2.
    let fixed = Options { dynamic_level_bytes: false, level_size_multiplier: 2, ..small(dir.path()) };
    let db = Db::open(fixed.clone()).unwrap();
    for round in 0..3 {
        for i in 0..KEYS {
            db.put(&key(i), &value(i, round)).unwrap();
        }
        db.flush().unwrap();
    }
    let stats = settle(&db);
    assert!(stats.levels[1].files > 0 && stats.levels[2].files > 0, "{stats:?}");
    drop(db);

    // Reopened with dynamic targets: the data drains to the last levels,
    // and every key keeps its newest value on the way.
    let db = Db::open(Options { dynamic_level_bytes: true, ..fixed }).unwrap();
    let stats = settle(&db);
    assert!(!stats.compaction_pending, "{stats:?}");
    let last = stats.levels.len() - 1;
    for (level, l) in stats.levels.iter().enumerate().take(last).skip(1) {
        assert!(l.bytes <= l.target_bytes, "level {level}: {stats:?}");
    }
    assert_eq!((stats.levels[1].files, stats.levels[2].files), (0, 0), "{stats:?}");
    assert!(stats.levels[last].files > 0, "{stats:?}");
    for i in 0..KEYS {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 2)), "key {i}");
    }
    db.verify().unwrap();
}

#[test]
fn snapshot_reads_are_repeatable_across_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(small(dir.path())).unwrap();
    for i in 0..500u32 {
        db.put(&key(i), &value(i, 0)).unwrap();
    }
    let snap = db.snapshot();
    for round in 1..6 {
        for i in 0..500u32 {
            db.put(&key(i), &value(i, round)).unwrap();
        }
        db.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    for i in 0..500u32 {
        assert_eq!(db.get_at(&key(i), &snap).unwrap(), Some(value(i, 0)));
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 5)));
    }
    let at_snap: Vec<_> = db.iter_at(b"", None, &snap).collect::<Result<_, _>>().unwrap();
    assert_eq!(at_snap.len(), 500);
    assert!(at_snap.iter().enumerate().all(|(i, (_, v))| *v == value(i as u32, 0)));
}

#[test]
fn bad_input_is_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options { max_key_bytes: 16, max_value_bytes: 32, ..Options::with_dir(dir.path()) }).unwrap();
    assert!(matches!(db.put(b"", b"v"), Err(Error::EmptyKey)));
    assert!(matches!(db.put(&[b'k'; 17], b"v"), Err(Error::KeyTooLarge { len: 17, max: 16 })));
    assert!(matches!(db.put(b"k", &[0; 33]), Err(Error::ValueTooLarge { len: 33, max: 32 })));
    let mut batch = WriteBatch::new();
    batch.put(b"good", b"v");
    batch.put(b"", b"v");
    assert!(db.write(batch).is_err());
    assert_eq!(db.get(b"good").unwrap(), None, "a rejected batch writes nothing");
    assert_eq!(db.last_sequence(), 0);
}

#[test]
fn second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = Db::open(Options::with_dir(dir.path())).unwrap();
    match Db::open(Options::with_dir(dir.path())) {
        Err(Error::Locked { path }) => assert!(path.ends_with("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn wal_replay_restores_unflushed_writes_after_drop() {
    let fs = Arc::new(FaultFs::new());
    let opts = Options { fs: fs.clone(), ..Options::with_dir("db") };
    {
        let db = Db::open(opts.clone()).unwrap();
        let mut b = WriteBatch::new();
        b.put(b"x", b"1");
        b.put(b"y", b"2");
        db.write(b).unwrap();
        db.delete(b"y").unwrap();
    }
    let db = Db::open(opts).unwrap();
    assert_eq!(db.get(b"x").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"y").unwrap(), None);
    assert_eq!(db.last_sequence(), 2);
    assert!(fs.exists(Path::new("db/CURRENT")));
}

#[test]
fn corrupt_sstable_is_reported_with_its_path() {
    let fs = Arc::new(FaultFs::new());
    let opts = Options { fs: fs.clone(), ..Options::with_dir("db") };
    {
        let db = Db::open(opts.clone()).unwrap();
        for i in 0..100 {
            db.put(&key(i), &value(i, 0)).unwrap();
        }
        db.flush().unwrap();
    }
    let names = fs.read_dir(Path::new("db")).unwrap();
    let sst = names.iter().find(|n| n.ends_with(".sst")).expect("an SSTable");
    let path = Path::new("db").join(sst);
    let mut bytes = fs.contents(&path).unwrap();
    bytes[20] ^= 0xff;
    fs.set_contents(&path, bytes).unwrap();
    let result = Db::open(opts).and_then(|db| db.verify().map(|_| db));
    let err = result.expect_err("a flipped byte in a data block must be detected");
    assert!(err.to_string().contains(sst.as_str()), "error names the file: {err}");
}

#[test]
fn checkpoint_opens_as_an_exact_point_in_time_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(small(&dir.path().join("db"))).unwrap();
    for i in 0..2_000u32 {
        db.put(&key(i), &value(i, 0)).unwrap();
    }
    let cp = dir.path().join("checkpoint");
    let seq = db.checkpoint(&cp).unwrap();
    assert_eq!(seq, db.last_sequence());
    assert!(db.checkpoint(&cp).is_err(), "an existing directory is refused");
    // Later writes and compactions of the original do not reach the copy.
    for i in 0..2_000u32 {
        db.put(&key(i), &value(i, 1)).unwrap();
    }
    db.flush().unwrap();
    let copy = Db::open(small(&cp)).unwrap();
    assert_eq!(copy.last_sequence(), seq);
    for i in (0..2_000u32).step_by(7) {
        assert_eq!(copy.get(&key(i)).unwrap(), Some(value(i, 0)));
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 1)));
    }
    copy.verify().unwrap();
}

#[test]
fn write_at_without_wal_keeps_flushed_writes_and_caller_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options { disable_wal: true, ..small(dir.path()) };
    let db = Db::open(opts()).unwrap();
    let batch = |k: &[u8], v: &[u8]| {
        let mut b = WriteBatch::new();
        b.put(k, v);
        b
    };
    assert!(matches!(db.put(b"k", b"v"), Err(Error::WriteMode(_))));
    assert_eq!(db.write_at(5, |_| Ok(batch(b"a", b"1"))).unwrap(), 5);
    assert!(matches!(db.write_at(5, |_| Ok(batch(b"a", b"2"))), Err(Error::WriteMode(_))));
    // The builder sees the latest state, including the write at 5.
    db.write_at(7, |view| {
        assert_eq!(view.latest_seq(b"a").unwrap(), Some(5));
        Ok(batch(b"b", b"2"))
    })
    .unwrap();
    // A log entry without writes still advances the sequence number.
    db.write_at(9, |_| Ok(WriteBatch::new())).unwrap();
    assert_eq!(db.last_sequence(), 9);
    db.flush().unwrap();
    assert_eq!(db.last_flushed_sequence(), 9);
    db.write_at(10, |_| Ok(batch(b"c", b"lost"))).unwrap();
    // Only the bad batch's entry fails; nothing of it is applied.
    assert!(db.write_at(11, |_| Ok(batch(b"", b"x"))).is_err());
    drop(db);

    let db = Db::open(opts()).unwrap();
    assert_eq!(db.last_sequence(), 9, "unflushed writes are the caller's to replay");
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(db.get(b"c").unwrap(), None);
    assert_eq!(db.write_at(10, |_| Ok(batch(b"c", b"again"))).unwrap(), 10);
}

#[test]
fn under_sync_never_flushed_log_segments_are_deleted_unsynced() {
    let fs = FaultFs::new();
    let opts = Options {
        fs: Arc::new(fs.clone()),
        memtable_size_bytes: 16 << 10,
        wal: bedrock_wal::WalOptions { sync: bedrock_wal::SyncPolicy::Never, ..bedrock_wal::WalOptions::default() },
        ..Options::with_dir("db")
    };
    let db = Db::open(opts.clone()).unwrap();
    for i in 0..2000 {
        db.put(&key(i), &value(i, 0)).unwrap();
    }
    db.flush().unwrap();
    let s = db.stats();
    assert!(s.flushes >= 5, "{s:?}");
    assert_eq!(s.wal_syncs, 0, "no flush synced the log it made obsolete");
    let segments = fs.read_dir(Path::new("db/wal")).unwrap();
    assert_eq!(segments.len(), 1, "only the live segment is left: {segments:?}");
    drop(db);
    // Everything flushed survives a power cut: it is in synced SSTables.
    let db = Db::open(Options { fs: Arc::new(fs.crash(11)), ..opts }).unwrap();
    for i in 0..2000 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 0)), "key {i}");
    }
}

/// WAL options that roll a segment every few records, without a memtable
/// switch, under `SyncPolicy::Never` (so nothing seals the closed segments).
fn rolling_unsynced(fs: &FaultFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        wal: bedrock_wal::WalOptions {
            sync: bedrock_wal::SyncPolicy::Never,
            segment_size_bytes: 4096,
            preallocate_chunk_bytes: 4096,
            ..bedrock_wal::WalOptions::default()
        },
        ..Options::with_dir("db")
    }
}

/// Writes 200 keys into a log of several unsealed segments, drops the
/// database without a flush, and returns the WAL segment ids.
fn unsealed_log(fs: &FaultFs) -> Vec<u64> {
    let db = Db::open(rolling_unsynced(fs)).unwrap();
    for i in 0..200 {
        db.put(&key(i), &value(i, 0)).unwrap();
    }
    drop(db);
    let mut ids: Vec<u64> =
        fs.read_dir(Path::new("db/wal")).unwrap().iter().filter_map(|n| bedrock_wal::parse_segment_name(n)).collect();
    ids.sort_unstable();
    assert!(ids.len() >= 4, "the log must span several segments: {ids:?}");
    ids
}

/// The byte offsets at which the records of a segment start, and its end.
fn record_starts(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut starts = Vec::new();
    let end = bedrock_wal::record::scan::<()>(bytes, 1 << 20, |off, _| {
        starts.push(off as usize);
        Ok(())
    })
    .unwrap();
    let bedrock_wal::record::ScanEnd::Clean { end } = end else { panic!("damaged segment") };
    (starts, end as usize)
}

fn present(db: &Db) -> Vec<bool> {
    (0..200).map(|i| db.get(&key(i)).unwrap().is_some()).collect()
}

/// Opens the log `unsealed_log` wrote after damage to it: a proper prefix
/// of the 200 writes survives, and the repair is durable (the next open
/// sees the same prefix).
fn opens_with_a_prefix_of_the_writes(fs: &FaultFs) {
    let db = Db::open(rolling_unsynced(fs)).unwrap();
    let got = present(&db);
    let survived = got.iter().filter(|p| **p).count();
    assert!(got[..survived].iter().all(|p| *p), "a prefix of the writes survives: {got:?}");
    assert!(survived > 0 && survived < 200);
    drop(db);
    let db = Db::open(rolling_unsynced(fs)).unwrap();
    assert_eq!(present(&db), got, "the repair is durable");
}

#[test]
fn unsealed_segments_replay_whole() {
    let fs = FaultFs::new();
    let ids = unsealed_log(&fs);
    let first = bedrock_wal::segment_path(Path::new("db/wal"), ids[0]);
    assert!(!bedrock_wal::segment_is_sealed(&fs, Path::new("db/wal"), ids[0], &rolling_unsynced(&fs).wal).unwrap());
    assert!(fs.contents(&first).is_some());
    let db = Db::open(rolling_unsynced(&fs)).unwrap();
    assert!(present(&db).iter().all(|p| *p), "every write of the unsealed segments is replayed");
}

#[test]
fn a_lost_tail_of_an_unsealed_segment_ends_the_log_there() {
    let fs = FaultFs::new();
    let ids = unsealed_log(&fs);
    // A power cut lost the last record of an unsealed middle segment (its
    // pages never reached the disk) while a later segment's did.
    let path = bedrock_wal::segment_path(Path::new("db/wal"), ids[1]);
    let mut bytes = fs.contents(&path).unwrap();
    let (starts, end) = record_starts(&bytes);
    let cut = *starts.last().unwrap();
    bytes[cut..end].fill(0);
    fs.set_contents(&path, bytes).unwrap();
    opens_with_a_prefix_of_the_writes(&fs);
}

#[test]
fn a_torn_last_record_of_an_unsealed_segment_ends_the_log_there() {
    let fs = FaultFs::new();
    let ids = unsealed_log(&fs);
    // A power cut wrote the header of the last record of an unsealed
    // middle segment but not all of its payload, while a later segment's
    // pages reached the disk.
    let path = bedrock_wal::segment_path(Path::new("db/wal"), ids[1]);
    let mut bytes = fs.contents(&path).unwrap();
    let (_, end) = record_starts(&bytes);
    bytes[end - 3..end].fill(0);
    fs.set_contents(&path, bytes).unwrap();
    opens_with_a_prefix_of_the_writes(&fs);
}

#[test]
fn a_hole_before_a_sealed_end_is_corruption() {
    let fs = FaultFs::new();
    let ids = unsealed_log(&fs);
    // The same loss in a segment cut to its length (sealed): records
    // after it may have been acknowledged, so this must not open.
    let path = bedrock_wal::segment_path(Path::new("db/wal"), ids[1]);
    let bytes = fs.contents(&path).unwrap();
    let (starts, _) = record_starts(&bytes);
    fs.set_contents(&path, bytes[..*starts.last().unwrap()].to_vec()).unwrap();
    match Db::open(rolling_unsynced(&fs)) {
        Err(Error::Corruption { reason, .. }) => assert!(reason.contains("jumps"), "{reason}"),
        other => panic!("expected Corruption, got {other:?}"),
    }
}

#[test]
fn writes_under_l0_pressure_are_delayed_not_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        memtable_size_bytes: 16 << 10,
        // Any L0 file puts writes under pressure; the stop is out of reach.
        l0_compaction_trigger: 1,
        l0_slowdown_trigger: 1,
        l0_stop_trigger: 1000,
        delayed_write_rate_bytes: 16 << 10,
        wal: bedrock_wal::WalOptions { sync: bedrock_wal::SyncPolicy::Never, ..bedrock_wal::WalOptions::default() },
        ..small(dir.path())
    };
    let db = Db::open(opts).unwrap();
    let mut i = 0;
    while db.stats().slowdowns == 0 {
        db.put(&key(i), &value(i, 0)).unwrap();
        i += 1;
        assert!(i < 1_000_000, "no write was ever delayed");
    }
    for j in i..i + 200 {
        db.put(&key(j), &value(j, 0)).unwrap();
    }
    let s = db.stats();
    assert!(s.slowdowns >= 1 && s.stall_micros > 0 && s.max_stall_micros > 0, "{s:?}");
    assert_eq!(s.stops, 0, "pressure below the stop trigger only delays");
    for j in 0..i + 200 {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j, 0)));
    }
}

/// Holds every manifest fsync while closed, so a test can stop a flush in
/// the middle of its manifest write. A held fsync gives up after a minute,
/// so a failing test cannot hang.
#[derive(Debug, Default)]
struct ManifestGate {
    /// (closed, fsyncs waiting)
    state: std::sync::Mutex<(bool, usize)>,
    changed: std::sync::Condvar,
}

impl ManifestGate {
    fn set_closed(&self, closed: bool) {
        self.state.lock().unwrap().0 = closed;
        self.changed.notify_all();
    }

    fn waiting(&self) -> usize {
        self.state.lock().unwrap().1
    }

    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 += 1;
        self.changed.notify_all();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while s.0 && std::time::Instant::now() < deadline {
            s = self.changed.wait_timeout(s, std::time::Duration::from_millis(50)).unwrap().0;
        }
        s.1 -= 1;
    }
}

/// `FaultFs` with manifest fsyncs behind a [`ManifestGate`].
#[derive(Debug)]
struct GatedManifestFs {
    fs: FaultFs,
    gate: Arc<ManifestGate>,
}

#[derive(Debug)]
struct GatedFile {
    file: Box<dyn bedrock_wal::File>,
    gate: Option<Arc<ManifestGate>>,
}

impl GatedManifestFs {
    fn wrap(&self, path: &Path, file: Box<dyn bedrock_wal::File>) -> Box<dyn bedrock_wal::File> {
        let is_manifest = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST-"));
        Box::new(GatedFile { file, gate: is_manifest.then(|| self.gate.clone()) })
    }
}

impl FileSystem for GatedManifestFs {
    fn create(&self, path: &Path) -> std::io::Result<Box<dyn bedrock_wal::File>> {
        Ok(self.wrap(path, self.fs.create(path)?))
    }
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn bedrock_wal::File>> {
        Ok(self.wrap(path, self.fs.open(path)?))
    }
    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.fs.read_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.fs.create_dir_all(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.fs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.fs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.fs.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.fs.exists(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.fs.hard_link(from, to)
    }
    fn lock(&self, path: &Path) -> std::io::Result<Box<dyn std::fmt::Debug + Send + Sync>> {
        self.fs.lock(path)
    }
}

impl bedrock_wal::File for GatedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_at(buf, offset)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
    fn allocate(&self, len: u64) -> std::io::Result<()> {
        self.file.allocate(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        self.file.sync_data()
    }
    fn map(&self) -> std::io::Result<bedrock_wal::FileBytes> {
        self.file.map()
    }
}

/// Polls `done` every 5 ms for up to `secs` seconds.
fn eventually(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    done()
}

#[test]
fn a_memtable_switch_does_not_wait_for_a_manifest_fsync() {
    let gate = Arc::new(ManifestGate::default());
    let fs = GatedManifestFs { fs: FaultFs::new(), gate: gate.clone() };
    let opts = Options {
        fs: Arc::new(fs),
        memtable_size_bytes: 16 << 10,
        max_immutable_memtables: 3,
        l0_compaction_trigger: 8,
        l0_slowdown_trigger: 16,
        l0_stop_trigger: 24,
        ..Options::with_dir("db")
    };
    let db = Arc::new(Db::open(opts).unwrap());
    gate.set_closed(true);
    // Fill the first memtable; its flush then stops in the manifest fsync.
    let mut i = 0;
    while db.stats().immutable_memtables == 0 && db.stats().flushes == 0 {
        assert!(i < 10_000, "no memtable switch after {i} puts");
        db.put(&key(i), &value(i, 0)).unwrap();
        i += 1;
    }
    assert!(eventually(30, || gate.waiting() > 0), "the flush never reached its manifest fsync");
    // With the flush held there, fill another memtable: the writer must
    // switch to a new one without waiting for the manifest.
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut j = i;
            while db.stats().immutable_memtables < 2 && j < i + 10_000 {
                db.put(&key(j), &value(j, 0)).unwrap();
                j += 1;
            }
            tx.send(j).unwrap();
        })
    };
    let switched = rx.recv_timeout(std::time::Duration::from_secs(20));
    let while_held = switched.is_ok().then(|| (gate.waiting(), db.stats()));
    gate.set_closed(false);
    writer.join().unwrap();
    let end = switched.expect("a put blocked behind the manifest fsync of a flush");
    let (waiting, stats) = while_held.expect("taken when the writer finished");
    assert!(waiting > 0, "the manifest fsync finished early; the test proved nothing");
    assert_eq!(stats.flushes, 0, "no flush was installed while its manifest fsync was held");
    assert!(stats.immutable_memtables >= 2, "{stats:?}");
    db.flush().unwrap();
    for k in 0..end {
        assert_eq!(db.get(&key(k)).unwrap(), Some(value(k, 0)), "key {k}");
    }
}
