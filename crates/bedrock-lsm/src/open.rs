//! Opening a database: lock, manifest, SSTables, WAL replay, fresh
//! manifest, orphan cleanup.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bedrock_wal::{FileSystem, Wal};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::WriteBatch;
use crate::db::{parse_table_name, Core, Db, Inner, SuperVersion, LOCK_FILE, WAL_DIR};
use crate::manifest::{self, Manifest, ManifestState, CURRENT};
use crate::memtable::Memtable;
use crate::stats::Counters;
use crate::version::{Version, VersionEdit};
use crate::{Error, Options, Result};

pub(crate) fn open(opts: Options) -> Result<Db> {
    opts.validate()?;
    let fs = opts.fs.clone();
    let dir = opts.dir.clone();
    if !opts.create_if_missing && !fs.exists(&dir.join(CURRENT)) {
        return Err(Error::io("open", &dir, std::io::Error::new(std::io::ErrorKind::NotFound, "no database here")));
    }
    fs.create_dir_all(&dir).map_err(|e| Error::io("create_dir_all", &dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = fs.lock(&lock_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked { path: lock_path.clone() },
        _ => Error::io("lock", &lock_path, e),
    })?;

    let state = manifest::load(&*fs, &dir, opts.num_levels)?.unwrap_or(ManifestState {
        number: 0,
        log_number: 0,
        next_file_number: 1,
        last_sequence: 0,
        files: Default::default(),
    });
    let mut version = Version::new(opts.num_levels);
    let mut opened = Vec::new();
    let mut snapshot_edit = VersionEdit::default();
    for (number, (level, file)) in &state.files {
        opened.push(Inner::open_table(&*fs, &dir, *number, file.smallest.clone(), file.largest.clone())?);
        snapshot_edit.added.push((*level, file.clone()));
    }
    version = version.apply(&snapshot_edit, &opened);
    version.check_invariants().map_err(|reason| Error::Corruption {
        path: dir.join(manifest::manifest_name(state.number)),
        offset: 0,
        reason,
    })?;

    let wal_dir = dir.join(WAL_DIR);
    let (mem, max_seq) = replay_wal(&*fs, &wal_dir, &opts, &state)?;
    let wal = Wal::open(fs.clone(), &wal_dir, opts.wal.clone())?;
    let log_number = wal.position().segment;
    let next_file = AtomicU64::new(state.next_file_number.max(1));

    // Flush what the WAL replay recovered, so the old segments can go.
    let mut last_flushed = state.last_sequence;
    if !mem.is_empty() {
        let mem = Arc::new(mem);
        let number = next_file.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(meta) = crate::background::write_l0_table(&fs, &dir, &opts, &mem, number, &[], u64::MAX)? {
            let edit = VersionEdit { added: vec![(0, meta.new_file())], ..VersionEdit::default() };
            version = version.apply(&edit, std::slice::from_ref(&meta));
            snapshot_edit.added.push((0, meta.new_file()));
        }
        last_flushed = max_seq;
    }

    let manifest_number = next_file.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    snapshot_edit.log_number = Some(log_number);
    snapshot_edit.last_sequence = Some(last_flushed);
    snapshot_edit.next_file_number = Some(manifest_number + 1);
    let manifest = Manifest::create(&*fs, &dir, manifest_number, &snapshot_edit)?;
    let live: HashSet<u64> = version.all_files().map(|(_, f)| f.number).collect();
    remove_obsolete(&*fs, &dir, &live, manifest_number)?;
    wal.purge_before(log_number)?;

    let mem = Arc::new(Memtable::new(log_number));
    let version = Arc::new(version);
    let l0_files = version.levels.first().map_or(0, Vec::len);
    let core = Core {
        mem: mem.clone(),
        imms: VecDeque::new(),
        version: version.clone(),
        last_flushed_seq: last_flushed,
        log_number,
        compact_pointer: vec![Vec::new(); opts.num_levels],
        running: Vec::new(),
        flushing: false,
        bg_error: None,
        shutdown: false,
        delay_until: None,
    };
    let sv = SuperVersion { mem, imms: Vec::new(), version };
    let jobs = crate::jobs::JobLimit::new(opts.background_job_limit);
    let inner = Arc::new(Inner {
        opts,
        fs,
        dir,
        wal,
        write_lock: Mutex::new(()),
        core: Mutex::new(core),
        manifest: Mutex::new(manifest),
        core_cv: Condvar::new(),
        super_version: RwLock::new(Arc::new(sv)),
        last_seq: AtomicU64::new(max_seq),
        visible_seq: AtomicU64::new(max_seq),
        next_file,
        l0_files: std::sync::atomic::AtomicUsize::new(l0_files),
        immutable_count: std::sync::atomic::AtomicUsize::new(0),
        bg_failed: std::sync::atomic::AtomicBool::new(false),
        snapshots: Default::default(),
        jobs,
        counters: Counters::default(),
        _lock: lock,
    });
    let background = crate::background::spawn(inner.clone())?;
    tracing::info!(dir = %inner.dir.display(), last_sequence = max_seq, "database open");
    Ok(Db { inner, background })
}

/// Replays WAL segments from the manifest's log number into a memtable,
/// skipping batches already in SSTables; returns it and the largest
/// sequence number seen.
fn replay_wal(fs: &dyn FileSystem, wal_dir: &Path, opts: &Options, state: &ManifestState) -> Result<(Memtable, u64)> {
    check_segments_contiguous(fs, wal_dir, state.log_number)?;
    let mem = Memtable::new(state.log_number);
    let mut max_seq = state.last_sequence;
    // Every batch takes the next sequence number, so the log's records are
    // consecutive, and the first one follows what the SSTables hold. A jump
    // means records are missing (a segment cut short at a record boundary
    // or deleted): refuse rather than replay around the hole.
    //
    // One jump is not damage: a jump at the start of a segment that follows
    // an *unsealed* one (zero fill after its records). A memtable switch
    // leaves the closed segment to be sealed later, and every closed
    // segment is sealed before any later record is fsynced, so such a
    // segment lost only unacknowledged records at its end, and the records
    // after the jump were never acknowledged either: the log ends there
    // (they are ignored, and deleted with the replayed segments).
    let mut previous: Option<(u64, u64)> = None;
    let mut log_end: Option<(u64, u64)> = None;
    let report = bedrock_wal::replay(fs, wal_dir, &opts.wal, state.log_number, |pos, payload| {
        if log_end.is_some() {
            return Ok(());
        }
        let Some((seq, batch)) = WriteBatch::decode(payload) else {
            return Err(Error::Corruption {
                path: bedrock_wal::segment_path(wal_dir, pos.segment),
                offset: pos.offset,
                reason: "WAL record (ending at this offset) is not a valid write batch".into(),
            });
        };
        let gap = match previous {
            Some((p, _)) => (seq != p + 1).then(|| format!("sequence number jumps from {p} to {seq}")),
            None => (seq > state.last_sequence + 1).then(|| {
                format!("the first record has sequence number {seq}, but the SSTables end at {}", state.last_sequence)
            }),
        };
        if let Some(gap) = gap {
            let from = previous.map_or(state.log_number.max(1), |(_, segment)| segment);
            if from < pos.segment && unsealed_between(fs, wal_dir, &opts.wal, from, pos.segment)? {
                tracing::warn!(segment = pos.segment, %gap, "WAL: records after an unsealed segment were never acknowledged; the log ends before them");
                log_end = Some((pos.segment, seq));
                return Ok(());
            }
            return Err(Error::Corruption {
                path: bedrock_wal::segment_path(wal_dir, pos.segment),
                offset: pos.offset,
                reason: format!("{gap}: WAL records before the one ending at this offset are missing"),
            });
        }
        previous = Some((seq, pos.segment));
        if seq > state.last_sequence {
            mem.apply(&batch, seq);
        }
        max_seq = max_seq.max(seq);
        Ok(())
    })?;
    if report.records > 0 || report.truncated.is_some() {
        tracing::info!(records = report.records, segments = ?report.segments, truncated = ?report.truncated, "WAL replayed");
    }
    Ok((mem, max_seq))
}

/// True if a segment in `from..to` exists and is not sealed (see
/// [`bedrock_wal::segment_is_sealed`]).
fn unsealed_between(
    fs: &dyn FileSystem,
    wal_dir: &Path,
    opts: &bedrock_wal::WalOptions,
    from: u64,
    to: u64,
) -> Result<bool> {
    for id in from..to {
        if fs.exists(&bedrock_wal::segment_path(wal_dir, id)) && !bedrock_wal::segment_is_sealed(fs, wal_dir, id, opts)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks that the WAL segments the manifest needs are all there: segment
/// `log_number` (the oldest one holding unflushed writes) and every later
/// one, without gaps. A missing one means acknowledged writes are gone
/// (for example a manifest that lost its newest edits points at a segment
/// that was already deleted), which must not open silently.
///
/// # Errors
/// [`Error::Corruption`] naming the missing segment.
fn check_segments_contiguous(fs: &dyn FileSystem, wal_dir: &Path, log_number: u64) -> Result<()> {
    if !fs.exists(wal_dir) {
        return Ok(());
    }
    let names = fs.read_dir(wal_dir).map_err(|e| Error::io("read_dir", wal_dir, e))?;
    let mut ids: Vec<u64> =
        names.iter().filter_map(|n| bedrock_wal::parse_segment_name(n)).filter(|&id| id >= log_number).collect();
    ids.sort_unstable();
    let Some(&first) = ids.first() else { return Ok(()) };
    // A new database records log number 0 before its first segment (1).
    let expected_first = if log_number == 0 { first } else { log_number };
    for (expected, id) in (expected_first..).zip(ids) {
        if id != expected {
            return Err(Error::Corruption {
                path: bedrock_wal::segment_path(wal_dir, expected),
                offset: 0,
                reason: format!(
                    "WAL segment {expected} is missing (the manifest needs every segment from {log_number}, \
                     and segment {id} exists): acknowledged writes would be lost"
                ),
            });
        }
    }
    Ok(())
}

/// Deletes SSTables not in the version (left by a crash mid-flush or
/// mid-compaction), old manifests and temporary files.
fn remove_obsolete(fs: &dyn FileSystem, dir: &Path, live: &HashSet<u64>, manifest_number: u64) -> Result<()> {
    let names = fs.read_dir(dir).map_err(|e| Error::io("read_dir", dir, e))?;
    let current_manifest = manifest::manifest_name(manifest_number);
    let mut removed = 0;
    for name in names {
        let orphan = match parse_table_name(&name) {
            Some(number) => !live.contains(&number),
            None => (name.starts_with("MANIFEST-") && name != current_manifest) || name.ends_with(".tmp"),
        };
        if orphan {
            let path = dir.join(&name);
            tracing::info!(file = %path.display(), "removing obsolete file");
            fs.remove(&path).map_err(|e| Error::io("remove", &path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fs.sync_dir(dir).map_err(|e| Error::io("sync_dir", dir, e))?;
    }
    Ok(())
}
