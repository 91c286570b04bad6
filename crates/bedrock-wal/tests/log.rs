//! The write-ahead log end to end: segment roll-over, replay order, torn
//! tails, corruption reports, purge, group commit and power cuts.

use std::path::Path;
use std::sync::Arc;

use bedrock_wal::{replay, segment_path, Error, FaultFs, FileSystem, RecoveryMode, SyncPolicy, Wal, WalOptions};

fn small() -> WalOptions {
    WalOptions { segment_size_bytes: 8192, preallocate_chunk_bytes: 4096, ..WalOptions::default() }
}

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("record-{i:05}-{}", "x".repeat(i % 90)).into_bytes()).collect()
}

fn read_all(fs: &FaultFs, opts: &WalOptions) -> Result<(Vec<Vec<u8>>, bedrock_wal::ReplayReport), Error> {
    let mut out = Vec::new();
    let report = replay(fs, Path::new("wal"), opts, 0, |_, r| {
        out.push(r.to_vec());
        Ok::<(), Error>(())
    })?;
    Ok((out, report))
}

#[test]
fn records_replay_in_order_across_segments() {
    let fs = FaultFs::new();
    let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), small()).unwrap();
    let recs = records(500);
    for r in &recs {
        wal.append_and_commit(r).unwrap();
    }
    let segments = wal.segments().unwrap();
    assert!(segments.len() > 3, "8 KiB segments must roll over: {segments:?}");
    for id in &segments[..segments.len() - 1] {
        let len = fs.contents(&segment_path(Path::new("wal"), *id)).unwrap().len();
        assert!(len <= 8192, "closed segment {id} is {len} bytes");
    }
    drop(wal);
    let (got, report) = read_all(&fs, &small()).unwrap();
    assert_eq!(got, recs);
    assert_eq!(report.truncated, None);
}

#[test]
fn torn_tail_is_truncated_and_reported_once() {
    let fs = FaultFs::new();
    let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), small()).unwrap();
    let recs = records(20);
    for r in &recs {
        wal.append_and_commit(r).unwrap();
    }
    let last = *wal.segments().unwrap().last().unwrap();
    drop(wal);
    let path = segment_path(Path::new("wal"), last);
    let mut bytes = fs.contents(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes.truncate(end - 5); // cut the last record in half
    fs.set_contents(&path, bytes).unwrap();
    let (got, report) = read_all(&fs, &small()).unwrap();
    assert_eq!(got, recs[..19].to_vec());
    let (file, _) = report.truncated.expect("the torn tail is reported");
    assert_eq!(file, path);
    let (again, report) = read_all(&fs, &small()).unwrap();
    assert_eq!((again, report.truncated), (recs[..19].to_vec(), None), "the repair is durable");
}

#[test]
fn damage_before_the_tail_names_file_and_offset() {
    let fs = FaultFs::new();
    let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), small()).unwrap();
    for r in records(30) {
        wal.append_and_commit(&r).unwrap();
    }
    let first = wal.segments().unwrap()[0];
    drop(wal);
    let path = segment_path(Path::new("wal"), first);
    let mut bytes = fs.contents(&path).unwrap();
    bytes[100] ^= 0x10;
    fs.set_contents(&path, bytes).unwrap();
    match read_all(&fs, &small()) {
        Err(Error::Corruption { path: p, offset, .. }) => {
            assert_eq!(p, path);
            assert!(offset <= 100, "offset {offset} is the damaged record's start");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    // Point-in-time recovery keeps the prefix before the damage.
    let pit = WalOptions { recovery: RecoveryMode::PointInTime, ..small() };
    let (got, _) = read_all(&fs, &pit).unwrap();
    assert!(got.len() < 30 && records(30).starts_with(&got));
}

#[test]
fn purge_removes_only_older_segments() {
    let fs = FaultFs::new();
    let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), small()).unwrap();
    for r in records(100) {
        wal.append(&r).unwrap();
    }
    let keep_from = wal.roll().unwrap();
    wal.append_and_commit(b"after roll").unwrap();
    let removed = wal.purge_before(keep_from).unwrap();
    assert!(removed >= 1);
    assert_eq!(wal.segments().unwrap(), vec![keep_from]);
    drop(wal);
    assert_eq!(read_all(&fs, &small()).unwrap().0, vec![b"after roll".to_vec()]);
}

#[test]
fn concurrent_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(bedrock_wal::RealFs::shared(), dir.path(), WalOptions::default()).unwrap());
    std::thread::scope(|s| {
        for t in 0..8 {
            let wal = wal.clone();
            s.spawn(move || {
                for i in 0..100 {
                    wal.append_and_commit(format!("{t}-{i}").as_bytes()).unwrap();
                }
            });
        }
    });
    let stats = wal.stats();
    assert_eq!(stats.records, 800);
    assert!(stats.syncs < stats.records, "group commit: {} syncs for {} records", stats.syncs, stats.records);
}

#[test]
fn acknowledged_records_survive_a_power_cut() {
    for sync in [SyncPolicy::Always, SyncPolicy::Never] {
        let fs = FaultFs::new();
        let opts = WalOptions { sync, ..small() };
        let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), opts.clone()).unwrap();
        let recs = records(300);
        for (i, r) in recs.iter().enumerate() {
            wal.append_and_commit(r).unwrap();
            if i % 37 == 0 {
                let image = fs.crash(i as u64);
                let (got, _) = read_all(&image, &opts).unwrap();
                assert!(recs.starts_with(&got), "replay is a prefix of what was written");
                if sync == SyncPolicy::Always {
                    assert!(got.len() > i, "record {i} was acknowledged under Always but lost");
                }
            }
        }
    }
}

#[test]
fn failed_fsync_poisons_the_log() {
    use bedrock_wal::fs::{FaultKind, Injection, OpKind};
    let fs = FaultFs::new();
    let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), small()).unwrap();
    wal.append_and_commit(b"ok").unwrap();
    fs.inject(Injection { op: OpKind::Sync, path_contains: None, after: 0, kind: FaultKind::Eio, sticky: false });
    assert!(matches!(wal.append_and_commit(b"lost"), Err(Error::Io { op: "sync_data", .. })));
    assert!(wal.is_poisoned());
    assert!(matches!(wal.append_and_commit(b"refused"), Err(Error::Poisoned(_))), "a failed fsync is never retried");
    assert!(fs.exists(Path::new("wal")));
}

fn sealed(fs: &FaultFs, id: u64) -> bool {
    bedrock_wal::segment_is_sealed(fs, Path::new("wal"), id, &small()).unwrap()
}

/// A log under `SyncPolicy::Never` with one record in its first segment,
/// rolled once: (the log, the first segment, the second).
fn rolled_unsynced(fs: &FaultFs) -> (Wal, u64, u64) {
    let opts = WalOptions { sync: SyncPolicy::Never, ..small() };
    let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), opts).unwrap();
    let first = wal.position().segment;
    wal.append(b"one").unwrap();
    let next = wal.roll().unwrap();
    (wal, first, next)
}

#[test]
fn a_roll_leaves_the_seal_to_later() {
    let fs = FaultFs::new();
    let (wal, first, next) = rolled_unsynced(&fs);
    assert_eq!(wal.unsealed_segments(), vec![first], "the roll does not seal");
    assert!(!sealed(&fs, first), "zero fill is still there");
    wal.append(b"two").unwrap();
    wal.seal_before(next).unwrap();
    assert!(wal.unsealed_segments().is_empty());
    assert!(sealed(&fs, first), "sealed: cut to its records");
    let syncs = wal.stats().syncs;
    wal.seal_before(next).unwrap();
    assert_eq!(wal.stats().syncs, syncs, "sealing again is a no-op");
}

#[test]
fn a_sync_seals_every_closed_segment_first() {
    let fs = FaultFs::new();
    let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), small()).unwrap();
    let first = wal.position().segment;
    // Appended but not yet committed when the roll happens, as a writer
    // waiting for the group commit while another switches the memtable.
    let pos = wal.append(b"in flight").unwrap();
    wal.roll().unwrap();
    wal.append_and_commit(b"after the roll").unwrap();
    assert!(wal.unsealed_segments().is_empty());
    assert!(sealed(&fs, first));
    wal.commit(pos).unwrap();
    // Even in a crash image right now, both records are there.
    let (got, _) = read_all(&fs.crash(7), &small()).unwrap();
    assert_eq!(got, vec![b"in flight".to_vec(), b"after the roll".to_vec()]);
}

#[test]
fn purge_seals_before_deleting() {
    use bedrock_wal::fs::{FaultKind, Injection, OpKind};
    let fs = FaultFs::new();
    let (wal, first, next) = rolled_unsynced(&fs);
    fs.inject(Injection { op: OpKind::Sync, path_contains: None, after: 0, kind: FaultKind::Eio, sticky: false });
    assert!(wal.purge_before(next).is_err(), "the seal failed, so nothing may be deleted");
    assert!(fs.exists(&segment_path(Path::new("wal"), first)));
    assert!(wal.is_poisoned());
}

#[test]
fn discard_deletes_closed_segments_without_syncing_them() {
    let fs = FaultFs::new();
    let (wal, first, next) = rolled_unsynced(&fs);
    wal.append(b"two").unwrap();
    let syncs = wal.stats().syncs;
    assert_eq!(wal.discard_before(next).unwrap(), 1);
    assert!(!fs.exists(&segment_path(Path::new("wal"), first)));
    assert_eq!(wal.stats().syncs, syncs, "nothing was synced");
    assert!(wal.unsealed_segments().is_empty(), "a later sync has nothing of it left to seal");
    // The log goes on: a sync now covers only the live segment, and
    // replay from it finds its records.
    wal.append(b"three").unwrap();
    wal.sync().unwrap();
    let opts = WalOptions { sync: SyncPolicy::Never, ..small() };
    let mut got = Vec::new();
    replay(&fs.crash(3), Path::new("wal"), &opts, next, |_, r| {
        got.push(r.to_vec());
        Ok::<(), Error>(())
    })
    .unwrap();
    assert_eq!(got, vec![b"two".to_vec(), b"three".to_vec()]);
}

#[test]
fn replay_accepts_unsealed_segments() {
    let fs = FaultFs::new();
    let opts = WalOptions { sync: SyncPolicy::Never, ..small() };
    let wal = Wal::open(Arc::new(fs.clone()), Path::new("wal"), opts.clone()).unwrap();
    let first = wal.position().segment;
    wal.append(b"one").unwrap();
    wal.append(b"two").unwrap();
    wal.roll().unwrap();
    wal.append(b"three").unwrap();
    drop(wal);
    assert!(!sealed(&fs, first), "closed without a seal: zero fill after its records");
    let (got, report) = read_all(&fs, &opts).unwrap();
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    assert_eq!(report.truncated, None);
}

/// A log under `SyncPolicy::Never`: "one" and "two" in the first segment,
/// "three" in the second; the first segment is sealed if `seal`. Returns
/// the first segment's path and the byte range of "two" in it.
fn two_segments(fs: &FaultFs, seal: bool) -> (std::path::PathBuf, std::ops::Range<usize>, std::path::PathBuf) {
    let (wal, first, next) = rolled_unsynced(fs);
    drop(wal);
    let path = segment_path(Path::new("wal"), first);
    let start = fs.contents(&path).unwrap().iter().rposition(|&b| b != 0).unwrap() + 1;
    // The roll left "one" alone in `first`, with zero fill after it;
    // write "two" after it as the log would have, then "three" into the
    // next segment.
    let mut bytes = fs.contents(&path).unwrap();
    let mut record = Vec::new();
    bedrock_wal::record::encode(b"two", &mut record);
    bytes.resize(bytes.len().max(start + record.len() + 64), 0);
    bytes[start..start + record.len()].copy_from_slice(&record);
    let end = start + record.len();
    if seal {
        bytes.truncate(end);
    }
    fs.set_contents(&path, bytes).unwrap();
    let mut three = Vec::new();
    bedrock_wal::record::encode(b"three", &mut three);
    let later = segment_path(Path::new("wal"), next);
    fs.set_contents(&later, three).unwrap();
    (path, start..end, later)
}

#[test]
fn a_torn_record_in_an_unsealed_segment_ends_the_log_there() {
    let fs = FaultFs::new();
    let (path, two, later) = two_segments(&fs, false);
    let (got, _) = read_all(&fs, &small()).unwrap();
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()], "intact, all three replay");

    // The crash wrote the header of "two" but not the end of its payload;
    // the zero fill after it shows the segment was never sealed, so
    // "three" (in a later segment) was never fsynced either.
    let mut bytes = fs.contents(&path).unwrap();
    bytes[two.end - 2..two.end].fill(0);
    fs.set_contents(&path, bytes).unwrap();
    let (got, report) = read_all(&fs, &small()).unwrap();
    assert_eq!(got, vec![b"one".to_vec()]);
    assert_eq!(report.truncated, Some((path.clone(), two.start as u64)));
    assert_eq!(report.segments.len(), 1, "{:?}", report.segments);
    assert!(!fs.exists(&later), "the later segment, never synced, is removed");
    let (again, report) = read_all(&fs, &small()).unwrap();
    assert_eq!((again, report.truncated), (vec![b"one".to_vec()], None), "the repair is durable");
}

#[test]
fn damage_to_the_last_record_of_a_sealed_segment_is_corruption() {
    let fs = FaultFs::new();
    let (path, two, later) = two_segments(&fs, true);
    let mut bytes = fs.contents(&path).unwrap();
    assert_eq!(bytes.len(), two.end, "sealed: the file ends at its last record");
    bytes[two.end - 1] ^= 0x40;
    fs.set_contents(&path, bytes).unwrap();
    match read_all(&fs, &small()) {
        Err(Error::Corruption { path: p, offset, .. }) => assert_eq!((p, offset), (path, two.start as u64)),
        other => panic!("a sealed segment's damaged record must not end the log quietly: {other:?}"),
    }
    assert!(fs.exists(&later), "nothing is removed");
}
