//! [`Wal`]: appending records to segments, with group commit.
//!
//! # Group commit
//! Appends are serialized by the `writer` mutex and only `pwrite` into the
//! current segment. A writer that must wait for durability returns at once
//! if an fsync already covered its record; otherwise, if no fsync is
//! running, it becomes the leader and fsyncs everything written so far,
//! on behalf of every writer behind it; if one is running, it waits for
//! it (a condition variable) and checks again. The leader holds no lock
//! during its fsync, so when it finishes every writer it covered returns
//! together, and the next batch, appended meanwhile, gets the next fsync:
//! N concurrent writers need about one fsync per fsync duration rather
//! than N (the leader/follower scheme of LevelDB's `DBImpl::Write` and
//! RocksDB's write groups).
//!
//! # Sealing
//! A roll (at a memtable switch, or when a segment is full) only creates
//! the next segment and remembers the closed one with its end offset: it
//! does not fsync, so the writer that switches is not held up by a
//! segment's worth of dirty pages. The closed segment is *sealed* later
//! (cut to its written length, then `fdatasync`), by whichever comes
//! first: the next fsync of the log ([`Wal::commit`] under
//! [`SyncPolicy::Always`], the `EveryMs` thread, [`Wal::sync`]), an
//! explicit [`Wal::seal_before`], or [`Wal::purge_before`] (before the
//! segment is deleted). Segments are sealed in order, before the fsync of
//! any later segment. [`Wal::discard_before`] deletes closed segments
//! without sealing them, for a caller that never replays them again (the
//! LSM once a flush has put their records in an SSTable): under
//! [`SyncPolicy::Never`] such a segment is never synced at all.
//!
//! # Invariants
//! - `synced <= written` (as [`LogPosition`]s).
//! - Every closed segment is sealed before an fsync makes any record of a
//!   later segment durable, so an acknowledged record never follows a hole:
//!   a segment that is found unsealed after a crash (zero fill after its
//!   records) held no acknowledged record past its end, and no later
//!   segment holds an acknowledged record.
//! - Once poisoned, no write or sync is attempted again.
//!
//! # Metrics
//! Each group-commit fsync is recorded through the [`metrics`] facade (a
//! no-op unless the program installs a recorder): [`FSYNC_SECONDS`] (the
//! `fdatasync` duration) and [`FSYNC_BATCH_RECORDS`] / [`FSYNC_BATCH_BYTES`]
//! (what one fsync made durable, so the group-commit batch size).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use crate::fs::{File, FileSystem};
use crate::segment::{list_segments, segment_path};
use crate::{record, Error, Result, SyncPolicy, WalOptions};

/// A position in the log: segment id and byte offset within it. Positions
/// order by segment, then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPosition {
    /// Segment id.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// Histogram of group-commit `fdatasync` durations, in seconds.
pub const FSYNC_SECONDS: &str = "bedrock_wal_fsync_seconds";
/// Histogram of records made durable by one group-commit fsync.
pub const FSYNC_BATCH_RECORDS: &str = "bedrock_wal_fsync_batch_records";
/// Histogram of bytes made durable by one group-commit fsync.
pub const FSYNC_BATCH_BYTES: &str = "bedrock_wal_fsync_batch_bytes";

/// Counters of the log's activity since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records appended.
    pub records: u64,
    /// Bytes written to segments, headers included.
    pub bytes_written: u64,
    /// fsyncs of segment data.
    pub syncs: u64,
}

/// A segmented write-ahead log open for appending. Thread-safe: share it
/// with `Arc`. See the module docs for the group-commit scheme.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    flusher: Option<(Sender<()>, JoinHandle<()>)>,
}

#[derive(Debug)]
struct Shared {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    opts: WalOptions,
    writer: Mutex<Writer>,
    /// Who leads the group commit; followers wait on `sync_done`.
    sync_lock: Mutex<SyncLeader>,
    /// Signalled when a group-commit leader finishes (or fails).
    sync_done: Condvar,
    synced: Mutex<LogPosition>,
    poison: Mutex<Option<String>>,
    stats: Mutex<WalStats>,
    /// Closed segments not yet sealed, oldest first.
    unsealed: Mutex<VecDeque<Closed>>,
    /// Held while sealing: segments are sealed once each and in order, and
    /// a caller that finds `unsealed` without a segment knows it is sealed.
    seal_lock: Mutex<()>,
    /// The newest segment whose directory entry is known to be durable.
    dir_synced: Mutex<u64>,
}

/// Group-commit state, under `Shared::sync_lock`.
#[derive(Debug, Default)]
struct SyncLeader {
    /// A leader is fsyncing; the lock is not held meanwhile.
    in_progress: bool,
    /// The counters at the last fsync, so the next one can report its
    /// batch size.
    last: WalStats,
}

/// A segment that no longer takes appends.
#[derive(Debug)]
struct Closed {
    segment: u64,
    file: Arc<dyn File>,
    /// Bytes of records in it (the rest is preallocated zero fill).
    end: u64,
}

#[derive(Debug)]
struct Writer {
    segment: u64,
    file: Arc<dyn File>,
    offset: u64,
    /// Bytes of the segment reserved with `fallocate` so far.
    allocated: u64,
    buf: Vec<u8>,
}

impl Wal {
    /// Opens the log in `dir` for appending, creating the directory if
    /// needed. Appends always go to a new segment whose id follows the
    /// largest existing one; call [`crate::replay`] first to read (and
    /// repair) what is there.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for bad options, [`Error::Io`] if the
    /// directory or the new segment cannot be created and synced.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path, opts: WalOptions) -> Result<Wal> {
        opts.validate()?;
        fs.create_dir_all(dir).map_err(|e| Error::io("create_dir_all", dir, e))?;
        let next = list_segments(&*fs, dir)?.last().map_or(1, |id| id + 1);
        let (file, allocated) = create_segment(&*fs, dir, next, &opts, true)?;
        let writer = Writer { segment: next, file, offset: 0, allocated, buf: Vec::new() };
        let start = LogPosition { segment: next, offset: 0 };
        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            opts,
            writer: Mutex::new(writer),
            sync_lock: Mutex::new(SyncLeader::default()),
            sync_done: Condvar::new(),
            synced: Mutex::new(start),
            poison: Mutex::new(None),
            stats: Mutex::new(WalStats::default()),
            unsealed: Mutex::new(VecDeque::new()),
            seal_lock: Mutex::new(()),
            dir_synced: Mutex::new(next),
        });
        let flusher = match shared.opts.sync {
            SyncPolicy::EveryMs(ms) => Some(spawn_flusher(shared.clone(), Duration::from_millis(ms))),
            _ => None,
        };
        Ok(Wal { shared, flusher })
    }

    /// Appends one record without waiting for durability; returns the
    /// position just past it. Pass that position to [`Wal::commit`].
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`], [`Error::Poisoned`] after an earlier
    /// failure, or [`Error::Io`] (which poisons the log).
    pub fn append(&self, payload: &[u8]) -> Result<LogPosition> {
        self.shared.append(payload)
    }

    /// Waits until everything up to `pos` is durable as the sync policy
    /// promises: under [`SyncPolicy::Always`] it group-commits an fsync;
    /// under the other policies it returns at once.
    ///
    /// # Errors
    /// [`Error::Poisoned`], or [`Error::Io`] if the fsync fails (which
    /// poisons the log: the failed fsync is never retried).
    pub fn commit(&self, pos: LogPosition) -> Result<()> {
        match self.shared.opts.sync {
            SyncPolicy::Always => self.shared.sync_to(pos),
            SyncPolicy::EveryMs(_) | SyncPolicy::Never => self.shared.check_poison(),
        }
    }

    /// [`Wal::append`] then [`Wal::commit`].
    ///
    /// # Errors
    /// As for those two.
    pub fn append_and_commit(&self, payload: &[u8]) -> Result<LogPosition> {
        let pos = self.append(payload)?;
        self.commit(pos)?;
        Ok(pos)
    }

    /// fsyncs everything appended so far, whatever the sync policy.
    ///
    /// # Errors
    /// As for [`Wal::commit`].
    pub fn sync(&self) -> Result<()> {
        let pos = self.position();
        self.shared.sync_to(pos)
    }

    /// Closes the current segment and starts a new one; returns the new
    /// segment's id. Every record appended before the call is in a segment
    /// with a smaller id, which is how the LSM knows which segments a
    /// memtable's contents live in. The closed segment is not synced here
    /// (see "Sealing" in the module docs): the roll costs a file creation
    /// and one `fallocate`, not an fsync.
    ///
    /// # Errors
    /// [`Error::Io`] (poisoning the log) or [`Error::Poisoned`].
    pub fn roll(&self) -> Result<u64> {
        let mut w = self.shared.writer.lock();
        self.shared.roll_locked(&mut w)?;
        Ok(w.segment)
    }

    /// Seals every closed segment with an id below `segment`: cuts its
    /// preallocated zero fill and fsyncs it, oldest first. Segments already
    /// sealed are skipped, so calling it again is cheap.
    ///
    /// # Errors
    /// [`Error::Io`] if a truncation, fsync or directory sync fails (which
    /// poisons the log), or [`Error::Poisoned`].
    pub fn seal_before(&self, segment: u64) -> Result<()> {
        match segment.checked_sub(1) {
            Some(last) => self.shared.seal_through(last),
            None => Ok(()),
        }
    }

    /// Deletes every closed segment with an id below `segment` without
    /// sealing or syncing it, for a caller whose replay never reads them
    /// again: it has made their contents durable elsewhere and recorded,
    /// durably, that replay starts at `segment` or later (the LSM after a
    /// flush, whose manifest edit names the first live segment). Unlike
    /// [`Wal::purge_before`], a segment whose dirty pages were never
    /// written back is dropped without costing the device a byte; RocksDB
    /// likewise deletes a flushed memtable's log without syncing it.
    /// Returns how many segments it deleted.
    ///
    /// # Errors
    /// [`Error::Io`] if a segment cannot be removed or the directory
    /// synced; [`Error::Poisoned`].
    pub fn discard_before(&self, segment: u64) -> Result<usize> {
        self.shared.check_poison()?;
        // No seal may be running on a segment while it is deleted.
        let _sealing = self.shared.seal_lock.lock();
        self.shared.unsealed.lock().retain(|c| c.segment >= segment);
        self.remove_segments_before(segment)
    }

    /// Closed segments not sealed yet (see [`Wal::seal_before`]).
    pub fn unsealed_segments(&self) -> Vec<u64> {
        self.shared.unsealed.lock().iter().map(|c| c.segment).collect()
    }

    /// Deletes every segment with an id below `segment`, except the one
    /// being written, sealing each first. Call it once their contents are
    /// durable elsewhere.
    ///
    /// # Errors
    /// [`Error::Io`] if a segment cannot be sealed or removed or the
    /// directory synced.
    pub fn purge_before(&self, segment: u64) -> Result<usize> {
        self.seal_before(segment)?;
        self.remove_segments_before(segment)
    }

    /// Removes the segment files with ids below `segment`, except the one
    /// being written, and syncs the directory if it removed any.
    fn remove_segments_before(&self, segment: u64) -> Result<usize> {
        let current = self.shared.writer.lock().segment;
        let dir = &self.shared.dir;
        let mut removed = 0;
        for id in list_segments(&*self.shared.fs, dir)? {
            if id < segment && id != current {
                let path = segment_path(dir, id);
                self.shared.fs.remove(&path).map_err(|e| Error::io("remove", &path, e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.shared.fs.sync_dir(dir).map_err(|e| Error::io("sync_dir", dir, e))?;
        }
        Ok(removed)
    }

    /// The position just past the last appended record.
    pub fn position(&self) -> LogPosition {
        let w = self.shared.writer.lock();
        LogPosition { segment: w.segment, offset: w.offset }
    }

    /// Ids of the segment files currently in the log directory, ascending.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be listed.
    pub fn segments(&self) -> Result<Vec<u64>> {
        list_segments(&*self.shared.fs, &self.shared.dir)
    }

    /// True once a write or fsync has failed; see [`Error::Poisoned`].
    pub fn is_poisoned(&self) -> bool {
        self.shared.poison.lock().is_some()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        *self.shared.stats.lock()
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.shared.opts
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.flusher.take() {
            drop(stop);
            let _ = handle.join();
        }
        if self.shared.opts.sync != SyncPolicy::Never && self.shared.check_poison().is_ok() {
            if let Err(e) = self.sync() {
                tracing::error!(error = %e, "WAL: final sync on close failed");
            }
        }
    }
}

impl Shared {
    fn check_poison(&self) -> Result<()> {
        match &*self.poison.lock() {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn poison(&self, err: Error) -> Error {
        tracing::error!(error = %err, "WAL: poisoned; refusing further writes");
        self.poison.lock().get_or_insert_with(|| err.to_string());
        err
    }

    fn append(&self, payload: &[u8]) -> Result<LogPosition> {
        if payload.len() > self.opts.max_record_bytes {
            return Err(Error::RecordTooLarge { len: payload.len(), max: self.opts.max_record_bytes });
        }
        let mut w = self.writer.lock();
        self.check_poison()?;
        let framed_len = (record::HEADER_LEN + payload.len()) as u64;
        if w.offset > 0 && w.offset + framed_len > self.opts.segment_size_bytes {
            self.roll_locked(&mut w)?;
        }
        if self.opts.preallocate && w.offset + framed_len > w.allocated {
            self.extend_allocation(&mut w, framed_len)?;
        }
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        record::encode(payload, &mut buf);
        let res = w.file.write_at(&buf, w.offset);
        w.buf = buf;
        if let Err(e) = res {
            return Err(self.poison(Error::io("write", segment_path(&self.dir, w.segment), e)));
        }
        w.offset += framed_len;
        let mut stats = self.stats.lock();
        stats.records += 1;
        stats.bytes_written += framed_len;
        Ok(LogPosition { segment: w.segment, offset: w.offset })
    }

    /// Reserves the next chunk of the segment (at least `needed` bytes past
    /// the write position). The new size is made durable by the next
    /// fdatasync of the segment, which every acknowledged write waits for.
    fn extend_allocation(&self, w: &mut Writer, needed: u64) -> Result<()> {
        let target = (w.offset + needed).max(w.allocated + self.opts.preallocate_chunk_bytes);
        let target = target.min(self.opts.segment_size_bytes.max(w.offset + needed));
        if let Err(e) = w.file.allocate(target) {
            return Err(self.poison(Error::io("fallocate", segment_path(&self.dir, w.segment), e)));
        }
        w.allocated = target;
        Ok(())
    }

    /// Group commit: see the module docs.
    fn sync_to(&self, pos: LogPosition) -> Result<()> {
        let mut leader = self.sync_lock.lock();
        loop {
            self.check_poison()?;
            if *self.synced.lock() >= pos {
                return Ok(());
            }
            if !leader.in_progress {
                break;
            }
            // The running fsync may not cover `pos`; wait for it, then
            // either return or lead the next one.
            self.sync_done.wait(&mut leader);
        }
        leader.in_progress = true;
        let last = leader.last;
        drop(leader);
        let result = self.sync_as_leader(last);
        let mut leader = self.sync_lock.lock();
        leader.in_progress = false;
        if let Ok(appended) = &result {
            leader.last = *appended;
        }
        drop(leader);
        self.sync_done.notify_all();
        result.map(drop)
    }

    /// The leader's fsync, without `sync_lock` held so that followers can
    /// queue (and writers append) meanwhile: seals closed segments, then
    /// fsyncs the current one up to what was written when it started, and
    /// raises `synced`. Returns the counters as of that point.
    fn sync_as_leader(&self, last: WalStats) -> Result<WalStats> {
        let (file, target, appended) = {
            let w = self.writer.lock();
            let appended = *self.stats.lock();
            (w.file.clone(), LogPosition { segment: w.segment, offset: w.offset }, appended)
        };
        // Closed segments first, so a durable record never follows a hole.
        self.seal_through(target.segment.saturating_sub(1))?;
        if *self.synced.lock() >= target {
            return Ok(last);
        }
        self.sync_dir_through(target.segment)?;
        let started = Instant::now();
        if let Err(e) = file.sync_data() {
            return Err(self.poison(Error::io("sync_data", segment_path(&self.dir, target.segment), e)));
        }
        metrics::histogram!(FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(FSYNC_BATCH_RECORDS).record((appended.records - last.records) as f64);
        metrics::histogram!(FSYNC_BATCH_BYTES).record((appended.bytes_written - last.bytes_written) as f64);
        self.stats.lock().syncs += 1;
        let mut synced = self.synced.lock();
        *synced = (*synced).max(target);
        Ok(appended)
    }

    /// Starts the next segment and queues the current one for sealing.
    /// Nothing is synced here: see "Sealing" in the module docs.
    fn roll_locked(&self, w: &mut Writer) -> Result<()> {
        self.check_poison()?;
        let next = w.segment + 1;
        let (file, allocated) =
            create_segment(&*self.fs, &self.dir, next, &self.opts, false).map_err(|e| self.poison(e))?;
        let old = std::mem::replace(&mut w.file, file);
        self.unsealed.lock().push_back(Closed { segment: w.segment, file: old, end: w.offset });
        w.segment = next;
        w.offset = 0;
        w.allocated = allocated;
        Ok(())
    }

    /// Seals the closed segments with ids up to `last`, oldest first: cuts
    /// the zero fill, so a sealed segment's length is its content, then
    /// fsyncs it (and the directory, if its entry is not durable yet).
    fn seal_through(&self, last: u64) -> Result<()> {
        let _sealing = self.seal_lock.lock();
        loop {
            let (segment, file, end) = match self.unsealed.lock().front() {
                Some(c) if c.segment <= last => (c.segment, c.file.clone(), c.end),
                _ => return Ok(()),
            };
            self.check_poison()?;
            if let Err(e) = file.set_len(end).and_then(|()| file.sync_data()) {
                return Err(self.poison(Error::io("seal (set_len + sync_data)", segment_path(&self.dir, segment), e)));
            }
            self.sync_dir_through(segment)?;
            self.unsealed.lock().pop_front();
            self.stats.lock().syncs += 1;
            let mut synced = self.synced.lock();
            *synced = (*synced).max(LogPosition { segment, offset: end });
        }
    }

    /// Makes the directory entries of every segment up to `segment` durable
    /// (a segment created by a roll is not synced at creation).
    fn sync_dir_through(&self, segment: u64) -> Result<()> {
        let mut done = self.dir_synced.lock();
        if *done >= segment {
            return Ok(());
        }
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            return Err(self.poison(Error::io("sync_dir", &self.dir, e)));
        }
        *done = segment;
        Ok(())
    }
}

/// Creates segment `id` and preallocates its first chunk; with `durable`,
/// also makes both the file and its name durable (on open; a roll leaves
/// that to the first fsync that needs it). Returns the file and the bytes
/// allocated.
fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    id: u64,
    opts: &WalOptions,
    durable: bool,
) -> Result<(Arc<dyn File>, u64)> {
    let path = segment_path(dir, id);
    let file = fs.create(&path).map_err(|e| Error::io("create", &path, e))?;
    let mut allocated = 0;
    if opts.preallocate {
        allocated = opts.preallocate_chunk_bytes.min(opts.segment_size_bytes);
        file.allocate(allocated).map_err(|e| Error::io("fallocate", &path, e))?;
        if durable {
            file.sync_data().map_err(|e| Error::io("sync_data", &path, e))?;
        }
    }
    if durable {
        fs.sync_dir(dir).map_err(|e| Error::io("sync_dir", dir, e))?;
    }
    Ok((Arc::from(file), allocated))
}

fn spawn_flusher(shared: Arc<Shared>, every: Duration) -> (Sender<()>, JoinHandle<()>) {
    let (tx, rx): (Sender<()>, Receiver<()>) = crossbeam_channel::bounded(0);
    let handle = std::thread::Builder::new()
        .name("bedrock-wal-sync".into())
        .spawn(move || loop {
            match rx.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {
                    let pos = {
                        let w = shared.writer.lock();
                        LogPosition { segment: w.segment, offset: w.offset }
                    };
                    if shared.check_poison().is_err() {
                        return;
                    }
                    if let Err(e) = shared.sync_to(pos) {
                        tracing::error!(error = %e, "WAL: periodic sync failed");
                        return;
                    }
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        })
        .unwrap_or_else(|e| panic!("cannot spawn the WAL sync thread: {e}"));
    (tx, handle)
}
