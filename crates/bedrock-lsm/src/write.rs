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
        inner.make_room(write_cost(payload_bytes, batch.len()))?;
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
        // The batch is built after the room is made, so its bytes are not
        // known yet: it is charged to the delayed write rate as empty.
        inner.make_room(0)?;
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

    /// Backpressure and memtable switch; called with `write_lock` held
    /// before a write of `bytes` (see [`write_cost`]).
    ///
    /// - *Delay*: while L0 is at or past the slowdown trigger, or every
    ///   immutable memtable slot is taken and the active memtable is
    ///   filling, the write sleeps for what its bytes cost at the delayed
    ///   write rate ([`pressure_steps`], [`delay_rate`], [`next_delay`]):
    ///   milliseconds per write at most, growing with the pressure.
    /// - *Stop*: while L0 is at the stop trigger, or the active memtable is
    ///   full and no immutable slot is free, the write waits for the
    ///   background work.
    ///
    /// Then, if the active memtable is full, it switches to a new one (and
    /// a new WAL segment).
    fn make_room(&self, bytes: u64) -> Result<()> {
        // The common case without the core lock (which background threads
        // take to install a version and to pick work): no error, no
        // pressure, room in the memtable (the active memtable only changes
        // under `write_lock`, which the caller holds).
        if !self.bg_failed.load(Ordering::Acquire) {
            let l0 = self.l0_files.load(Ordering::Acquire);
            let imms_full = self.immutable_count.load(Ordering::Acquire) >= self.opts.max_immutable_memtables;
            let mem_bytes = self.super_version.read().mem.approximate_bytes();
            if l0 < self.opts.l0_stop_trigger
                && mem_bytes < self.opts.memtable_size_bytes
                && pressure_steps(&self.opts, l0, mem_bytes, imms_full) == 0
            {
                return Ok(());
            }
        }
        let mut delayed = false;
        let mut stop_start: Option<Instant> = None;
        let mut core = self.core.lock();
        let result = loop {
            if let Err(e) = self.check_writable(&core) {
                break Err(e);
            }
            let l0 = core.version.levels.first().map_or(0, Vec::len);
            let mem_bytes = core.mem.approximate_bytes();
            let mem_full = mem_bytes >= self.opts.memtable_size_bytes;
            let imms_full = core.imms.len() >= self.opts.max_immutable_memtables;
            if l0 >= self.opts.l0_stop_trigger || (mem_full && imms_full) {
                if stop_start.is_none() {
                    tracing::warn!(l0_files = l0, immutable_memtables = core.imms.len(), "write stop");
                    Counters::add(&self.counters.stops, 1);
                    stop_start = Some(Instant::now());
                }
                self.core_cv.notify_all();
                self.core_cv.wait_for(&mut core, Duration::from_millis(100));
                continue;
            }
            if !delayed {
                delayed = true;
                let steps = pressure_steps(&self.opts, l0, mem_bytes, imms_full);
                if steps == 0 {
                    core.delay_until = None;
                } else {
                    let rate = delay_rate(&self.opts, steps);
                    if let Some(wait) = next_delay(&mut core.delay_until, Instant::now(), rate, bytes) {
                        Counters::add(&self.counters.slowdowns, 1);
                        let t = Instant::now();
                        parking_lot::MutexGuard::unlocked(&mut core, || std::thread::sleep(wait));
                        let waited = t.elapsed().as_micros() as u64;
                        Counters::add(&self.counters.stall_micros, waited);
                        Counters::max(&self.counters.max_stall_micros, waited);
                        tracing::trace!(l0_files = l0, steps, rate, waited_us = waited, "write delayed");
                        // The state may have changed while sleeping.
                        continue;
                    }
                }
            }
            if !mem_full {
                break Ok(());
            }
            break self.switch_memtable(&mut core);
        };
        if let Some(start) = stop_start {
            let waited = start.elapsed();
            Counters::add(&self.counters.stall_micros, waited.as_micros() as u64);
            Counters::max(&self.counters.max_stall_micros, waited.as_micros() as u64);
            tracing::info!(waited_ms = waited.as_millis() as u64, "write stop ended");
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
        // The old SuperVersion only shares memtables and a version that stay
        // referenced, so dropping it here frees nothing.
        drop(self.publish(core));
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

/// Bytes a batch of `entries` entries holding `payload_bytes` of keys and
/// values costs against the delayed write rate: 16 bytes more per entry
/// (sequence number, kind and framing).
fn write_cost(payload_bytes: u64, entries: usize) -> u64 {
    payload_bytes + 16 * entries as u64
}

/// Steps of backpressure short of a stop: 0 when writes go at full speed;
/// one per L0 file from the slowdown trigger on (1 at the trigger); while
/// every immutable memtable slot is taken, one per quarter of the active
/// memtable filled (1 at a quarter, 3 at three quarters). The larger of
/// the two counts.
pub(crate) fn pressure_steps(opts: &crate::Options, l0_files: usize, mem_bytes: usize, imms_full: bool) -> u32 {
    let l0_steps = (l0_files + 1).saturating_sub(opts.l0_slowdown_trigger);
    let mem_steps = if imms_full { mem_bytes.saturating_mul(4) / opts.memtable_size_bytes.max(1) } else { 0 };
    u32::try_from(l0_steps.max(mem_steps)).unwrap_or(u32::MAX)
}

/// The delayed write rate in bytes per second at `steps` (>= 1) of
/// pressure: `delayed_write_rate_bytes`, divided by 4 for each step past
/// the first, and never below 1 KiB/s.
pub(crate) fn delay_rate(opts: &crate::Options, steps: u32) -> u64 {
    let shift = 2 * steps.saturating_sub(1).min(31);
    (opts.delayed_write_rate_bytes >> shift).max(1024)
}

/// Longest single delay of one write.
const MAX_WRITE_DELAY: Duration = Duration::from_millis(100);

/// Admits `bytes` at `rate` bytes per second: `delay_until` is when the
/// bytes admitted so far have been paid for. Returns how long this write
/// must sleep (at most [`MAX_WRITE_DELAY`]), or `None` while the debt is
/// under 1 ms (it is carried to the next write, so a stream of small writes
/// sleeps once per millisecond of debt instead of never).
pub(crate) fn next_delay(delay_until: &mut Option<Instant>, now: Instant, rate: u64, bytes: u64) -> Option<Duration> {
    let cost = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
    let start = delay_until.map_or(now, |u| u.max(now));
    let until = start + cost;
    *delay_until = Some(until);
    let owed = until - now;
    (owed >= Duration::from_millis(1)).then(|| owed.min(MAX_WRITE_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    #[test]
    fn pressure_grows_with_l0_and_a_filling_memtable() {
        let o = Options::default();
        let mem = o.memtable_size_bytes;
        assert_eq!(pressure_steps(&o, 0, mem - 1, false), 0, "a full memtable with a free slot is no pressure");
        assert_eq!(pressure_steps(&o, 7, 0, false), 0);
        assert_eq!(pressure_steps(&o, 8, 0, false), 1);
        assert_eq!(pressure_steps(&o, 11, 0, false), 4);
        assert_eq!(pressure_steps(&o, 0, mem / 8, true), 0);
        assert_eq!(pressure_steps(&o, 0, mem / 4, true), 1);
        assert_eq!(pressure_steps(&o, 0, mem * 3 / 4, true), 3);
        assert_eq!(pressure_steps(&o, 9, mem * 3 / 4, true), 3);
    }

    #[test]
    fn each_step_divides_the_rate_by_four() {
        let o = Options::default();
        assert_eq!(delay_rate(&o, 1), 16 << 20);
        assert_eq!(delay_rate(&o, 2), 4 << 20);
        assert_eq!(delay_rate(&o, 4), 256 << 10);
        assert_eq!(delay_rate(&o, 40), 1024);
    }

    #[test]
    fn delays_are_paid_in_slices_and_bounded() {
        let now = Instant::now();
        let mut until = None;
        // 100 bytes at 1 MB/s cost 100 µs: carried, not slept.
        assert_eq!(next_delay(&mut until, now, 1_000_000, 100), None);
        for _ in 0..8 {
            assert_eq!(next_delay(&mut until, now, 1_000_000, 100), None);
        }
        // The tenth write brings the debt to 1 ms: it sleeps for all of it.
        assert_eq!(next_delay(&mut until, now, 1_000_000, 100), Some(Duration::from_millis(1)));
        // A huge write is delayed, but never by more than the cap.
        assert_eq!(next_delay(&mut until, now, 1_000_000, 1 << 30), Some(MAX_WRITE_DELAY));
        // Debt from the past is forgiven once the clock has passed it.
        let mut until = Some(now);
        let later = now + Duration::from_secs(5);
        assert_eq!(next_delay(&mut until, later, 1_000_000, 100), None);
        assert_eq!(until, Some(later + Duration::from_micros(100)));
    }
}
