//! [`Db`]: opening, reading, snapshots, statistics and shutdown.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bedrock_sstable::{Table, ValueKind};
use bedrock_wal::{FileSystem, Wal};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::iter::{DbCursor, DbIterator, InternalIterator, LevelIterator, MergingIterator};
use crate::manifest::Manifest;
use crate::memtable::Memtable;
use crate::snapshot::SnapshotList;
use crate::stats::{Counters, DbStats, LevelStats};
use crate::version::{FileMeta, Version};
use crate::{Error, Options, Result, Snapshot};

/// Name of the lock file in the data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Name of the WAL subdirectory.
pub(crate) const WAL_DIR: &str = "wal";

pub(crate) fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

pub(crate) fn parse_table_name(name: &str) -> Option<u64> {
    name.strip_suffix(".sst")?.parse().ok()
}

/// What readers see: the memtables and the SSTables of one moment.
/// Swapped atomically as a whole, so a reader never sees a memtable both
/// as immutable and flushed, or neither.
#[derive(Debug)]
pub(crate) struct SuperVersion {
    pub(crate) mem: Arc<Memtable>,
    /// Newest first.
    pub(crate) imms: Vec<Arc<Memtable>>,
    pub(crate) version: Arc<Version>,
}

/// State changed by writers (memtable switch) and the background thread
/// (flush, compaction). Held only for short critical sections without
/// I/O: a finished flush or compaction writes its manifest edit under
/// [`Inner::manifest`] and takes this lock only to install the result.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) mem: Arc<Memtable>,
    /// Oldest first.
    pub(crate) imms: VecDeque<Arc<Memtable>>,
    pub(crate) version: Arc<Version>,
    pub(crate) last_flushed_seq: u64,
    pub(crate) log_number: u64,
    /// Per level, the largest key of the last compaction's input, so
    /// successive compactions of a level rotate through its key space.
    pub(crate) compact_pointer: Vec<Vec<u8>>,
    /// Compactions in progress: their input file numbers and, per output
    /// level, the user-key range they write. A new compaction may not touch
    /// these files or write an overlapping range into the same level.
    pub(crate) running: Vec<crate::compaction::Running>,
    /// A flush is in progress (only the flush thread sets it).
    pub(crate) flushing: bool,
    pub(crate) bg_error: Option<String>,
    pub(crate) shutdown: bool,
    /// Delayed writes: the time until which the bytes already admitted use
    /// up the delayed write rate (see `write.rs`, `make_room`); `None`
    /// while no delay applies.
    pub(crate) delay_until: Option<std::time::Instant>,
}

/// Shared engine state; the background thread holds an `Arc` of it.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) opts: Options,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
    pub(crate) wal: Wal,
    /// Serializes writers: sequence numbers are assigned, WAL records
    /// appended and memtable entries inserted in one order.
    pub(crate) write_lock: Mutex<()>,
    pub(crate) core: Mutex<Core>,
    /// The manifest writer, and the right to change `Core::version`: a
    /// flush or compaction takes this lock, reads the current version
    /// under the core lock, appends (and fsyncs) its edit holding only this
    /// lock, then installs the new version under the core lock. So a writer
    /// switching memtables never waits for a manifest fsync, as in
    /// RocksDB, whose `VersionSet::LogAndApply` releases the DB mutex while
    /// it writes the MANIFEST. Lock order: `manifest`, then `core`.
    pub(crate) manifest: Mutex<Manifest>,
    /// Signalled when background work may be needed and when it finishes.
    pub(crate) core_cv: Condvar,
    pub(crate) super_version: RwLock<Arc<SuperVersion>>,
    /// The last sequence number assigned (under `write_lock`).
    pub(crate) last_seq: AtomicU64,
    /// Every write with a sequence number `<=` this is durable (per the
    /// sync policy) and in a memtable or SSTable: readers read at it.
    pub(crate) visible_seq: AtomicU64,
    pub(crate) next_file: AtomicU64,
    /// Copies of `Core` state for the write path's lock-free check
    /// (`write.rs`, `make_room`): L0 files and immutable memtables as of
    /// the last `publish`, and whether a background error was recorded.
    /// The slow path re-reads the real values under the core lock.
    pub(crate) l0_files: std::sync::atomic::AtomicUsize,
    pub(crate) immutable_count: std::sync::atomic::AtomicUsize,
    pub(crate) bg_failed: std::sync::atomic::AtomicBool,
    pub(crate) snapshots: Arc<SnapshotList>,
    /// Slots for background jobs (`Options::background_job_limit`).
    pub(crate) jobs: crate::jobs::JobLimit,
    pub(crate) counters: Counters,
    pub(crate) _lock: Box<dyn Debug + Send + Sync>,
}

/// An LSM-tree key-value database. Thread-safe: share it with `Arc`.
/// Dropping it stops the background thread; unflushed writes stay in the
/// WAL and are replayed on the next open.
#[derive(Debug)]
pub struct Db {
    pub(crate) inner: Arc<Inner>,
    pub(crate) background: Vec<JoinHandle<()>>,
}

impl Db {
    /// Opens (or creates) the database in `opts.dir`: takes the directory
    /// lock, loads the manifest, opens the live SSTables, replays the WAL
    /// written since the last flush, writes a fresh manifest, deletes files
    /// left over from an interrupted flush or compaction, and starts the
    /// background flush/compaction thread.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`]; [`Error::Locked`] if another instance
    /// holds the directory; [`Error::Corruption`] (naming file and offset)
    /// for damaged metadata, SSTables or WAL records; [`Error::Io`].
    pub fn open(opts: Options) -> Result<Db> {
        crate::open::open(opts)
    }

    /// The value of `key` as of now, or `None` if absent or deleted.
    ///
    /// # Errors
    /// [`Error::Table`] if an SSTable read fails its checksum or I/O.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        self.inner.get_at(key, seq)
    }

    /// The value of `key` as of `snapshot`.
    ///
    /// # Errors
    /// As for [`Db::get`].
    pub fn get_at(&self, key: &[u8], snapshot: &Snapshot) -> Result<Option<Vec<u8>>> {
        self.inner.get_at(key, snapshot.seq())
    }

    /// Takes a snapshot of the current state.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.snapshots.take(&self.inner.visible_seq)
    }

    /// Iterates keys in `[lower, upper)` (`upper = None`: to the end) as of
    /// now, ascending. An empty `lower` starts at the first key.
    pub fn iter(&self, lower: &[u8], upper: Option<&[u8]>) -> DbIterator {
        DbIterator::new(self.cursor(lower, upper))
    }

    /// Iterates keys in `[lower, upper)` as of `snapshot`.
    pub fn iter_at(&self, lower: &[u8], upper: Option<&[u8]>, snapshot: &Snapshot) -> DbIterator {
        DbIterator::new(self.cursor_at(lower, upper, snapshot))
    }

    /// A bidirectional cursor over keys in `[lower, upper)` as of now;
    /// unpositioned until a seek.
    pub fn cursor(&self, lower: &[u8], upper: Option<&[u8]>) -> DbCursor {
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        DbCursor::new(self.inner.merged(), seq, lower, upper, None)
    }

    /// A bidirectional cursor over keys in `[lower, upper)` as of `snapshot`.
    pub fn cursor_at(&self, lower: &[u8], upper: Option<&[u8]>, snapshot: &Snapshot) -> DbCursor {
        DbCursor::new(self.inner.merged(), snapshot.seq(), lower, upper, Some(snapshot.clone()))
    }

    /// Up to `limit` key-value pairs in `[lower, upper)` (`limit` 0 = no
    /// limit), collected from [`Db::iter`].
    ///
    /// # Errors
    /// As for [`Db::get`].
    pub fn scan(&self, lower: &[u8], upper: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let it = self.iter(lower, upper);
        let limit = if limit == 0 { usize::MAX } else { limit };
        it.take(limit).collect()
    }

    /// The newest sequence number visible to readers (the store's revision).
    pub fn last_sequence(&self) -> u64 {
        self.inner.visible_seq.load(Ordering::Acquire)
    }

    /// The newest sequence number whose writes are all in SSTables: after
    /// a crash, replay starts after it.
    pub fn last_flushed_sequence(&self) -> u64 {
        self.inner.core.lock().last_flushed_seq
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Current statistics.
    pub fn stats(&self) -> DbStats {
        self.inner.stats()
    }

    /// Checks every live SSTable (all block checksums, key order) and the
    /// level invariants; returns the number of entries checked.
    ///
    /// # Errors
    /// [`Error::Table`] or [`Error::Corruption`] describing the first problem.
    pub fn verify(&self) -> Result<u64> {
        let sv = self.inner.current();
        sv.version.check_invariants().map_err(|reason| Error::Corruption {
            path: self.inner.dir.clone(),
            offset: 0,
            reason,
        })?;
        let mut entries = 0;
        for (_, f) in sv.version.all_files() {
            entries += f.table.verify()?;
        }
        Ok(entries)
    }

    /// Flushes the memtables to SSTables and waits until that is done.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if a background error happened; I/O errors.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_and_wait()
    }

    /// Flushes, then closes the database cleanly.
    ///
    /// # Errors
    /// As for [`Db::flush`]; the database is closed either way.
    pub fn close(self) -> Result<()> {
        self.flush()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.inner.core.lock().shutdown = true;
        self.inner.core_cv.notify_all();
        for handle in self.background.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Inner {
    pub(crate) fn current(&self) -> Arc<SuperVersion> {
        self.super_version.read().clone()
    }

    /// Publishes a new super version from `core`; call with the core lock held.
    /// Installs a new `SuperVersion` from `core` and returns the old one,
    /// which the caller should drop after releasing the core lock: the last
    /// reference to an old version unmaps its tables, and to a flushed
    /// memtable frees its entries, neither of which should hold a lock the
    /// write path takes.
    #[must_use = "drop the old SuperVersion after releasing the core lock"]
    pub(crate) fn publish(&self, core: &Core) -> Arc<SuperVersion> {
        let sv = SuperVersion {
            mem: core.mem.clone(),
            imms: core.imms.iter().rev().cloned().collect(),
            version: core.version.clone(),
        };
        self.l0_files.store(core.version.levels.first().map_or(0, Vec::len), Ordering::Release);
        self.immutable_count.store(core.imms.len(), Ordering::Release);
        std::mem::replace(&mut *self.super_version.write(), Arc::new(sv))
    }

    pub(crate) fn get_at(&self, key: &[u8], seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.newest(key, seq)?.and_then(|(_, kind, value)| (kind == ValueKind::Put).then_some(value)))
    }

    /// The newest sequence number of any version of `key`, tombstones and
    /// not-yet-visible writes included. Call under `write_lock` for an
    /// answer no writer can change.
    pub(crate) fn latest_seq(&self, key: &[u8]) -> Result<Option<u64>> {
        Ok(self.newest(key, bedrock_sstable::MAX_SEQUENCE)?.map(|(seq, _, _)| seq))
    }

    /// The newest version of `key` with sequence number `<= seq`, as
    /// (sequence number, kind, value): memtables newest first, then L0
    /// newest first, then one table per deeper level.
    fn newest(&self, key: &[u8], seq: u64) -> Result<Option<(u64, ValueKind, Vec<u8>)>> {
        let sv = self.current();
        for mem in std::iter::once(&sv.mem).chain(sv.imms.iter()) {
            if let Some(found) = mem.get(key, seq) {
                return Ok(Some(found));
            }
        }
        for f in sv.version.levels.first().into_iter().flatten().rev() {
            if let Some(found) = f.table.get(key, seq)? {
                return Ok(Some(found));
            }
        }
        for level in 1..sv.version.levels.len() {
            if let Some(f) = sv.version.find_in_sorted_level(level, key) {
                if let Some(found) = f.table.get(key, seq)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// A merging iterator over everything in the current super version.
    pub(crate) fn merged(&self) -> MergingIterator {
        let sv = self.current();
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
        children.push(Box::new(sv.mem.iter()));
        for m in &sv.imms {
            children.push(Box::new(m.iter()));
        }
        for f in sv.version.levels.first().into_iter().flatten().rev() {
            children.push(Box::new(Table::iter(&f.table)));
        }
        for files in sv.version.levels.iter().skip(1) {
            if !files.is_empty() {
                children.push(Box::new(LevelIterator::new(files.clone())));
            }
        }
        MergingIterator::new(children)
    }

    pub(crate) fn check_writable(&self, core: &Core) -> Result<()> {
        match &core.bg_error {
            Some(e) => Err(Error::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn set_bg_error(&self, core: &mut Core, err: &Error) {
        tracing::error!(error = %err, "background error: the database is now read-only");
        core.bg_error.get_or_insert_with(|| err.to_string());
        self.bg_failed.store(true, Ordering::Release);
        self.core_cv.notify_all();
    }

    pub(crate) fn stats(&self) -> DbStats {
        let sv = self.current();
        let c = &self.counters;
        let wal = self.wal.stats();
        let mut s = DbStats {
            user_bytes_written: Counters::get(&c.user_bytes),
            wal_bytes_written: wal.bytes_written,
            wal_syncs: wal.syncs,
            flush_bytes_written: Counters::get(&c.flush_bytes),
            flushes: Counters::get(&c.flushes),
            compaction_bytes_read: Counters::get(&c.compaction_bytes_read),
            compaction_bytes_written: Counters::get(&c.compaction_bytes_written),
            compactions: Counters::get(&c.compactions),
            compaction_pauses: Counters::get(&c.compaction_pauses),
            memtable_bytes: sv.mem.approximate_bytes() as u64,
            immutable_memtables: sv.imms.len(),
            stall_micros: Counters::get(&c.stall_micros),
            slowdowns: Counters::get(&c.slowdowns),
            stops: Counters::get(&c.stops),
            max_stall_micros: Counters::get(&c.max_stall_micros),
            last_sequence: self.visible_seq.load(Ordering::Acquire),
            snapshots: self.snapshots.len(),
            ..DbStats::default()
        };
        let targets = {
            let core = self.core.lock();
            s.running_compactions = core.running.len();
            s.compaction_pending = !core.running.is_empty() || crate::compaction::compaction_due(&self.opts, &core);
            crate::compaction::LevelTargets::new(&self.opts, &core.version)
        };
        let written = s.wal_bytes_written + s.flush_bytes_written + s.compaction_bytes_written;
        if s.user_bytes_written > 0 {
            s.write_amplification = written as f64 / s.user_bytes_written as f64;
        }
        for (level, files) in sv.version.levels.iter().enumerate() {
            s.levels.push(LevelStats {
                files: files.len(),
                bytes: files.iter().map(|f| f.size).sum(),
                target_bytes: targets.target(level),
            });
            for f in files {
                let t = f.table.stats();
                s.block_reads += t.block_reads;
                s.bloom_checks += t.bloom_checks;
                s.bloom_useful += t.bloom_negatives;
            }
        }
        s
    }

    /// Opens SSTable `number` as a live file.
    pub(crate) fn open_table(
        fs: &dyn FileSystem,
        dir: &Path,
        number: u64,
        smallest: Vec<u8>,
        largest: Vec<u8>,
    ) -> Result<Arc<FileMeta>> {
        let path = dir.join(table_name(number));
        let file = fs.open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Corruption {
                path: path.clone(),
                offset: 0,
                reason: "SSTable listed in the manifest is missing".into(),
            },
            _ => Error::io("open", &path, e),
        })?;
        let bytes = file.map().map_err(|e| Error::io("mmap", &path, e))?;
        let table = Arc::new(Table::open(bytes, path)?);
        Ok(Arc::new(FileMeta { number, size: table.file_size(), smallest, largest, table }))
    }
}
