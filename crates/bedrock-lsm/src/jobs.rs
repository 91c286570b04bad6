//! [`JobLimit`]: how many background jobs (memtable flushes and
//! compactions) do work at the same time, flushes first.
//!
//! The flush thread and the compaction threads are separate so that a long
//! compaction never holds a flush back (RocksDB's high- and low-priority
//! pools). On a machine with few CPUs that separation costs the foreground:
//! a flush and a compaction running together take both CPUs of a 2-CPU
//! machine, and the thread that writes waits for a scheduler slice in
//! between (measured in docs/benchmarks-engine.md: about ten times more
//! puts over 4 ms). With a limit, a job waits for a slot before it starts;
//! a compaction holding a slot hands it to a waiting flush between two
//! entries ([`JobSlot::yield_to_flush`]) and takes one again after, so a
//! flush waits for at most one entry's work and never for a whole
//! compaction.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};

/// Counts running background jobs against a limit (0: no limit).
#[derive(Debug)]
pub(crate) struct JobLimit {
    limit: usize,
    /// Jobs holding a slot.
    running: Mutex<usize>,
    /// Signalled whenever a slot is given back.
    freed: Condvar,
    /// Flushes waiting for a slot; compactions yield to them.
    flushes_waiting: AtomicUsize,
}

/// A slot held by one background job; given back on drop.
#[derive(Debug)]
pub(crate) struct JobSlot<'a> {
    jobs: &'a JobLimit,
    held: bool,
}

impl JobLimit {
    /// At most `limit` jobs at once; 0 means no limit.
    pub(crate) fn new(limit: usize) -> JobLimit {
        JobLimit { limit, running: Mutex::new(0), freed: Condvar::new(), flushes_waiting: AtomicUsize::new(0) }
    }

    /// Waits for a slot for a flush. Running compactions give theirs up at
    /// their next [`JobSlot::yield_to_flush`], and no compaction takes a
    /// slot while a flush waits.
    pub(crate) fn flush(&self) -> JobSlot<'_> {
        if self.limit == 0 {
            return JobSlot { jobs: self, held: false };
        }
        self.flushes_waiting.fetch_add(1, Ordering::SeqCst);
        let mut running = self.running.lock();
        while *running >= self.limit {
            self.freed.wait(&mut running);
        }
        *running += 1;
        self.flushes_waiting.fetch_sub(1, Ordering::SeqCst);
        // Compactions waiting for the flush to get its slot may go on.
        self.freed.notify_all();
        JobSlot { jobs: self, held: true }
    }

    /// Waits for a slot for a compaction: one that is free and not wanted
    /// by a flush.
    pub(crate) fn compaction(&self) -> JobSlot<'_> {
        if self.limit == 0 {
            return JobSlot { jobs: self, held: false };
        }
        let mut running = self.running.lock();
        while *running >= self.limit || self.flushes_waiting.load(Ordering::SeqCst) > 0 {
            self.freed.wait(&mut running);
        }
        *running += 1;
        JobSlot { jobs: self, held: true }
    }

    fn release(&self) {
        *self.running.lock() -= 1;
        self.freed.notify_all();
    }
}

impl JobSlot<'_> {
    /// Called by a compaction between two entries: if a flush waits for a
    /// slot, gives this one to it and waits for a slot again (after the
    /// flush, when the limit is 1). Returns true if it paused. One atomic
    /// load when no flush waits.
    pub(crate) fn yield_to_flush(&mut self) -> bool {
        if !self.held || self.jobs.flushes_waiting.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.jobs.release();
        self.held = false;
        *self = self.jobs.compaction();
        true
    }
}

impl Drop for JobSlot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.jobs.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;

    #[test]
    fn without_a_limit_nothing_waits_or_yields() {
        let jobs = JobLimit::new(0);
        let mut a = jobs.compaction();
        let _b = jobs.compaction();
        let _f = jobs.flush();
        assert!(!a.yield_to_flush());
    }

    #[test]
    fn a_waiting_flush_takes_the_slot_of_a_running_compaction() {
        let jobs = JobLimit::new(1);
        let flushed = AtomicBool::new(false);
        std::thread::scope(|s| {
            let mut compaction = jobs.compaction();
            assert!(!compaction.yield_to_flush(), "no flush waits yet");
            let flusher = s.spawn(|| {
                let _slot = jobs.flush();
                // The compaction is paused while the flush holds the slot.
                std::thread::sleep(Duration::from_millis(20));
                flushed.store(true, Ordering::SeqCst);
            });
            while jobs.flushes_waiting.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            assert!(compaction.yield_to_flush());
            assert!(flushed.load(Ordering::SeqCst), "the compaction went on only after the flush");
            flusher.join().unwrap();
            assert_eq!(*jobs.running.lock(), 1);
        });
        assert_eq!(*jobs.running.lock(), 0, "every slot is given back");
    }

    #[test]
    fn compactions_beyond_the_limit_wait_for_a_slot() {
        let jobs = JobLimit::new(2);
        let (a, b) = (jobs.compaction(), jobs.compaction());
        let started = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _c = jobs.compaction();
                started.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(20));
            assert!(!started.load(Ordering::SeqCst), "a third compaction waits");
            drop(a);
        });
        assert!(started.load(Ordering::SeqCst));
        drop(b);
        assert_eq!(*jobs.running.lock(), 0);
    }
}
