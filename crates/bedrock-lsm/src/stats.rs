//! Engine statistics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated by the engine, read by [`crate::Db::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) user_bytes: AtomicU64,
    pub(crate) flush_bytes: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) compaction_bytes_read: AtomicU64,
    pub(crate) compaction_bytes_written: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) compaction_pauses: AtomicU64,
    pub(crate) stall_micros: AtomicU64,
    pub(crate) slowdowns: AtomicU64,
    pub(crate) stops: AtomicU64,
    pub(crate) max_stall_micros: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn max(counter: &AtomicU64, n: u64) {
        counter.fetch_max(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Files and bytes of one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Number of SSTables.
    pub files: usize,
    /// Total SSTable bytes.
    pub bytes: u64,
    /// The level's size target in bytes, as compaction uses it now: 0 for
    /// L0 (governed by file count), for the last level with fixed targets,
    /// and for levels above the base level with dynamic ones (see
    /// `Options::dynamic_level_bytes`), which are kept empty.
    pub target_bytes: u64,
}

/// A snapshot of the engine's statistics since open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbStats {
    /// Bytes of keys and values in acknowledged writes (the logical bytes).
    pub user_bytes_written: u64,
    /// Bytes the WAL wrote (record headers included).
    pub wal_bytes_written: u64,
    /// fsyncs of WAL data; with group commit far fewer than writes.
    pub wal_syncs: u64,
    /// Bytes of SSTables written by flushes.
    pub flush_bytes_written: u64,
    /// Memtable flushes.
    pub flushes: u64,
    /// Bytes of SSTables read by compactions.
    pub compaction_bytes_read: u64,
    /// Bytes of SSTables written by compactions.
    pub compaction_bytes_written: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Times a compaction paused to give its slot to a flush (see
    /// [`crate::Options::background_job_limit`]).
    pub compaction_pauses: u64,
    /// (WAL + flush + compaction bytes written) / user bytes written; 0 before any write.
    pub write_amplification: f64,
    /// Per level, L0 first.
    pub levels: Vec<LevelStats>,
    /// Bytes in the active memtable (approximate).
    pub memtable_bytes: u64,
    /// Immutable memtables waiting for flush.
    pub immutable_memtables: usize,
    /// Compactions running now.
    pub running_compactions: usize,
    /// True if some level's compaction score is at least 1, so a
    /// compaction is due (running or waiting for a thread); RocksDB's
    /// `rocksdb.compaction-pending`. With it false, no compaction is
    /// running and the tree is in its settled shape.
    pub compaction_pending: bool,
    /// Microseconds writers spent delayed or stopped by backpressure.
    pub stall_micros: u64,
    /// Delays: times a write slept because L0 was at or past the slowdown
    /// trigger or the memtables were filling faster than they were flushed
    /// (see [`crate::Options::delayed_write_rate_bytes`]).
    pub slowdowns: u64,
    /// Stops: times a write waited for a flush or compaction because L0
    /// was at the stop trigger or no immutable memtable slot was free.
    pub stops: u64,
    /// The longest single backpressure wait of one write (delay or stop),
    /// in microseconds.
    pub max_stall_micros: u64,
    /// Data blocks read from live SSTables.
    pub block_reads: u64,
    /// Bloom filter checks on live SSTables.
    pub bloom_checks: u64,
    /// Bloom filter checks that ruled a table out.
    pub bloom_useful: u64,
    /// The newest sequence number visible to readers.
    pub last_sequence: u64,
    /// Live snapshots.
    pub snapshots: usize,
}
