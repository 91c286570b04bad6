//! The write path: validation, backpressure, WAL append, memtable insert,
//! group commit, publication.
//!
//! # Visibility
//! Under `write_lock` a writer takes the next sequence number, appends its
//! batch to the WAL and inserts it into the memtable; it then releases the
//! lock and waits for the (shared) fsync. Only after that does it raise
//! `visible_seq` to its sequence number. Raising it to `max(visible, seq)`
//! is safe even if an earlier writer has not returned yet: its record is
//! earlier in the same log, so the fsync that covered ours covered it, and
//! it was inserted before ours. Readers read at `visible_seq`, so they
//! never see a write that a crash could take away.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::batch::WriteBatch;
use crate::db::{Core, Db, Inner};
use crate::memtable::Memtable;
use crate::stats::Counters;
use crate::{Error, Result};

/// The latest state of the store as seen by a write's check: every write
/// with a sequence number up to the one about to be assigned, visible or
/// not. Handed to the closure of [`Db::write_checked`].
#[derive(Debug)]
pub struct LatestView<'a> {
    inner: &'a Inner,
}

impl LatestView<'_> {
    /// The sequence number of the newest version of `key` (a put or a
    /// tombstone), or `None` if the key was never written.
    ///
    /// # Errors
    /// SSTable read failures.
    pub fn latest_seq(&self, key: &[u8]) -> Result<Option<u64>> {
        self.inner.latest_seq(key)
    }

    /// True if any key in `[lower, upper)` has a version (put or tombstone)
    /// with a sequence number greater than `seq`. Used to detect phantoms:
    /// a write into a range that a transaction scanned.
    ///
    /// # Errors
    /// SSTable read failures.
    pub fn range_modified_after(&self, lower: &[u8], upper: Option<&[u8]>, seq: u64) -> Result<bool> {
        use crate::iter::InternalIterator;
        let mut it = self.inner.merged();
        let mut target = Vec::new();
        bedrock_sstable::encode_internal_key(
            lower,
            bedrock_sstable::MAX_SEQUENCE,
            bedrock_sstable::ValueKind::Put,
            &mut target,
        );
        it.seek(&target);
        while it.valid() {
            let Some((user_key, entry_seq, _)) = bedrock_sstable::decode_internal_key(it.key()) else { break };
            if upper.is_some_and(|u| user_key >= u) {
                break;
            }
            if entry_seq > seq {
                return Ok(true);
            }
            it.next();
        }
        it.status().map(|()| false)
    }
}

impl Db {
    /// Applies `batch` atomically and durably (per the sync policy) and
    /// returns its sequence number. Blocks while backpressure stalls
    /// writes.
    ///
    /// # Errors
    /// [`Error::EmptyKey`], [`Error::KeyTooLarge`], [`Error::ValueTooLarge`],
    /// [`Error::BatchTooLarge`] for bad input (nothing is written);
    /// [`Error::Poisoned`] after an earlier failure; [`Error::Wal`] if the
    /// log write or fsync fails (the outcome is then unknown and the
    /// database refuses further writes).
    pub fn write(&self, batch: WriteBatch) -> Result<u64> {
        self.write_checked(batch, |_| Ok::<(), std::convert::Infallible>(()))?.map_err(|never| match never {})
    }

    /// Puts one key.
    ///
    /// # Errors
    /// As for [`Db::write`].
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<u64> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b)
    }

    /// Deletes one key (writes a tombstone).
    ///
    /// # Errors
    /// As for [`Db::write`].
    pub fn delete(&self, key: &[u8]) -> Result<u64> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b)
    }

    /// Applies `batch` only if `check` accepts the latest state, atomically
    /// with respect to every other write: `check` runs under the write lock,
    /// after every earlier write and before any later one. Returns
    /// `Ok(Err(e))` if `check` rejected the batch (nothing written).
    /// This is the hook optimistic transactions validate through.
    ///
    /// # Errors
    /// As for [`Db::write`].
    pub fn write_checked<E>(
        &self,
        batch: WriteBatch,
        check: impl FnOnce(&LatestView<'_>) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<u64, E>> {
        let inner = &*self.inner;
        if inner.opts.disable_wal {
            return Err(Error::WriteMode("the WAL is disabled: write with Db::write_at".into()));
        }
        inner.validate_batch(&batch)?;
        let payload_bytes: u64 = batch.ops().map(|(_, k, v)| (k.len() + v.len()) as u64).sum();
        let guard = inner.write_lock.lock();
        inner.make_room()?;
        if let Err(e) = check(&LatestView { inner }) {
            return Ok(Err(e));
        }
        let seq = inner.last_seq.load(Ordering::Relaxed) + 1;
        let pos = inner.wal.append(&batch.encode(seq)).map_err(|e| inner.poison(e))?;
        inner.super_version.read().mem.apply(&batch, seq);
        inner.last_seq.store(seq, Ordering::Relaxed);
        drop(guard);
        inner.wal.commit(pos).map_err(|e| inner.poison(e))?;
        inner.visible_seq.fetch_max(seq, Ordering::AcqRel);
        Counters::add(&inner.counters.user_bytes, payload_bytes);
        Ok(Ok(seq))
    }

    /// Applies, at the caller's sequence number `seq` and without logging
    /// it, the batch that `build` returns after looking at the latest
    /// state: `build` runs under the write lock, after every earlier write,
    /// so it can validate transactions (as the check of
    /// [`Db::write_checked`]) and keep only the writes that pass. For
    /// [`crate::Options::disable_wal`] databases, whose caller keeps the
    /// log: a Raft state machine applies log entry *i* with `seq = i`, so
    /// every replica holds the same versions. `seq` must be greater than
    /// [`Db::last_sequence`]; an empty batch only advances the sequence
    /// number (a log entry without writes), which the next flush records
    /// too. The write is visible when this returns and durable after the
    /// next flush ([`Db::last_flushed_sequence`]).
    ///
    /// # Errors
    /// [`Error::WriteMode`] if the WAL is enabled or `seq` is not above the
    /// last sequence number; what `build` returns; otherwise as for
    /// [`Db::write`]. Nothing is written on error.
    pub fn write_at(&self, seq: u64, build: impl FnOnce(&LatestView<'_>) -> Result<WriteBatch>) -> Result<u64> {
        let inner = &*self.inner;
        if !inner.opts.disable_wal {
            return Err(Error::WriteMode("Db::write_at needs Options::disable_wal".into()));
        }
        let _guard = inner.write_lock.lock();
        let last = inner.last_seq.load(Ordering::Relaxed);
        if seq <= last {
            return Err(Error::WriteMode(format!("sequence number {seq} is not above the last one, {last}")));
        }
        inner.make_room()?;
        let batch = build(&LatestView { inner })?;
        inner.validate_batch(&batch)?;
        let payload_bytes: u64 = batch.ops().map(|(_, k, v)| (k.len() + v.len()) as u64).sum();
        inner.super_version.read().mem.apply(&batch, seq);
        inner.last_seq.store(seq, Ordering::Relaxed);
        inner.visible_seq.fetch_max(seq, Ordering::AcqRel);
        Counters::add(&inner.counters.user_bytes, payload_bytes);
        Ok(seq)
    }
}

impl Inner {
    fn validate_batch(&self, batch: &WriteBatch) -> Result<()> {
        for (_, key, value) in batch.ops() {
            if key.is_empty() {
                return Err(Error::EmptyKey);
            }
            if key.len() > self.opts.max_key_bytes {
                return Err(Error::KeyTooLarge { len: key.len(), max: self.opts.max_key_bytes });
            }
            if value.len() > self.opts.max_value_bytes {
                return Err(Error::ValueTooLarge { len: value.len(), max: self.opts.max_value_bytes });
            }
        }
        let len = batch.approximate_bytes();
        if len > self.opts.max_batch_bytes {
            return Err(Error::BatchTooLarge { len, max: self.opts.max_batch_bytes });
        }
        Ok(())
    }

    /// A failed WAL write or fsync leaves the log poisoned; the database
    /// follows it into read-only mode so nothing unsynced is flushed.
    fn poison(&self, err: bedrock_wal::Error) -> Error {
        let err = Error::Wal(err);
        let mut core = self.core.lock();
        self.set_bg_error(&mut core, &err);
        err
    }

    /// Backpressure and memtable switch; called with `write_lock` held.
    /// Slows each write by 1 ms while L0 is past the slowdown trigger;
    /// stalls while L0 is at the stop trigger or the immutable memtables
    /// are at their limit; switches to a new memtable (and WAL segment)
    /// when the active one is full.
    fn make_room(&self) -> Result<()> {
        let mut slowed = false;
        let mut stall_start: Option<Instant> = None;
        let mut core = self.core.lock();
        let result = loop {
            if let Err(e) = self.check_writable(&core) {
                break Err(e);
            }
            let l0 = core.version.levels.first().map_or(0, Vec::len);
            let mem_full = core.mem.approximate_bytes() >= self.opts.memtable_size_bytes;
            let imms_full = core.imms.len() >= self.opts.max_immutable_memtables;
            if l0 >= self.opts.l0_stop_trigger || (mem_full && imms_full) {
                if stall_start.is_none() {
                    tracing::warn!(l0_files = l0, immutable_memtables = core.imms.len(), "write stall");
                    stall_start = Some(Instant::now());
                }
                self.core_cv.notify_all();
                self.core_cv.wait_for(&mut core, Duration::from_millis(100));
                continue;
            }
            if l0 >= self.opts.l0_slowdown_trigger && !slowed {
                slowed = true;
                Counters::add(&self.counters.slowdowns, 1);
                let t = Instant::now();
                parking_lot::MutexGuard::unlocked(&mut core, || std::thread::sleep(Duration::from_millis(1)));
                Counters::add(&self.counters.stall_micros, t.elapsed().as_micros() as u64);
                continue;
            }
            if !mem_full {
                break Ok(());
            }
            break self.switch_memtable(&mut core);
        };
        if let Some(start) = stall_start {
            let waited = start.elapsed();
            Counters::add(&self.counters.stall_micros, waited.as_micros() as u64);
            tracing::info!(waited_ms = waited.as_millis() as u64, "write stall ended");
        }
        result
    }

    /// Makes the active memtable immutable and starts a new one in a new
    /// WAL segment, so the old memtable's records all lie in earlier
    /// segments. Called with `write_lock` and the core lock held. A failed
    /// roll poisons the WAL, and the database with it.
    fn switch_memtable(&self, core: &mut Core) -> Result<()> {
        let segment = match self.wal.roll() {
            Ok(s) => s,
            Err(e) => {
                let err = Error::Wal(e);
                self.set_bg_error(core, &err);
                return Err(err);
            }
        };
        let old = std::mem::replace(&mut core.mem, std::sync::Arc::new(Memtable::new(segment)));
        core.imms.push_back(old);
        self.publish(core);
        self.core_cv.notify_all();
        Ok(())
    }

    /// Switches the active memtable (if non-empty) to immutable and waits
    /// until every immutable memtable is flushed.
    pub(crate) fn flush_and_wait(&self) -> Result<()> {
        {
            let _guard = self.write_lock.lock();
            let mut core = self.core.lock();
            self.check_writable(&core)?;
            // A memtable holding only sequence numbers (empty batches of
            // `write_at`) is flushed too, so the manifest records them.
            if !core.mem.is_empty() || core.mem.max_seq() > core.last_flushed_seq {
                while core.imms.len() >= self.opts.max_immutable_memtables && core.bg_error.is_none() {
                    self.core_cv.notify_all();
                    self.core_cv.wait_for(&mut core, Duration::from_millis(100));
                }
                self.check_writable(&core)?;
                self.switch_memtable(&mut core)?;
            }
            self.core_cv.notify_all();
        }
        let mut core = self.core.lock();
        while !core.imms.is_empty() {
            self.check_writable(&core)?;
            self.core_cv.wait_for(&mut core, Duration::from_millis(100));
        }
        self.check_writable(&core)
    }
}
