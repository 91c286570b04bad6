//! Engine options, each with its default and unit.

use std::path::PathBuf;
use std::sync::Arc;

use bedrock_sstable::{Compression, TableOptions};
use bedrock_wal::{FileSystem, RealFs, WalOptions};

use crate::{Error, Result};

/// Options of an LSM database. Build with struct-update syntax from
/// [`Options::default`] or [`Options::with_dir`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory. Default: `bedrock-data` (relative to the working
    /// directory).
    pub dir: PathBuf,
    /// The file system all files go through. Default: [`RealFs`].
    pub fs: Arc<dyn FileSystem>,
    /// Create the directory and an empty database if missing. Default: true.
    pub create_if_missing: bool,
    /// Write-ahead log options (sync policy, segment size, recovery mode).
    /// Default: [`WalOptions::default`] (fsync before acknowledging).
    pub wal: WalOptions,
    /// The caller keeps the write-ahead log itself (a Raft log): writes go
    /// through [`crate::Db::write_at`] with caller-assigned sequence
    /// numbers and are not logged by the engine, so a crash loses what was
    /// not flushed and the caller replays its own log from
    /// [`crate::Db::last_flushed_sequence`] + 1 on restart. [`crate::Db::write`]
    /// is refused in this mode. Default: false.
    pub disable_wal: bool,
    /// Largest key in bytes. Default: 8 KiB (TiKV's `max-key-size`).
    /// Minimum: 1.
    pub max_key_bytes: usize,
    /// Largest value in bytes. Default: 8 MiB. Minimum: 0.
    pub max_value_bytes: usize,
    /// Largest encoded write batch (one transaction) in bytes. Default:
    /// 32 MiB. Must not exceed `wal.max_record_bytes`.
    pub max_batch_bytes: usize,
    /// The active memtable becomes immutable and is flushed to an SSTable
    /// once its approximate size passes this. Default: 64 MiB.
    /// Minimum: 4 KiB.
    pub memtable_size_bytes: usize,
    /// Immutable memtables waiting for flush; a write that would create one
    /// more stalls until a flush finishes. While all of them are taken,
    /// writes are delayed (see `delayed_write_rate_bytes`) once the active
    /// memtable is a quarter full, more as it fills. Default: 2. Minimum: 1.
    pub max_immutable_memtables: usize,
    /// Level-0 file count that triggers an L0→L1 compaction. Default: 4.
    /// Minimum: 1.
    pub l0_compaction_trigger: usize,
    /// Level-0 file count at which writes start to be delayed: held to
    /// `delayed_write_rate_bytes`, and to a quarter of the previous rate for
    /// each further L0 file. Default: 8. Must be at least
    /// `l0_compaction_trigger`.
    pub l0_slowdown_trigger: usize,
    /// Level-0 file count at which writes stop until compaction catches up.
    /// Default: 12. Must be greater than `l0_slowdown_trigger`.
    pub l0_stop_trigger: usize,
    /// Write rate, in bytes per second (keys + values + 16 bytes per entry),
    /// that writes are held to at the first step of backpressure (L0 at
    /// `l0_slowdown_trigger`, or every immutable memtable slot taken and
    /// the active memtable a quarter full). Each further step (one more L0
    /// file; another quarter of the memtable) divides it by 4. Writers
    /// sleep for the time their bytes cost at that rate, in slices of at
    /// least 1 ms and at most 100 ms per write, so a write is delayed by
    /// milliseconds rather than stopped for a whole flush or compaction.
    /// Default: 16 MiB/s (RocksDB's `delayed_write_rate`). Minimum:
    /// 16 KiB/s.
    pub delayed_write_rate_bytes: u64,
    /// Target size of level 1 in bytes; level n+1 targets `level_size_multiplier`
    /// times level n. With [`Options::dynamic_level_bytes`], the upper
    /// bound of the *base* level's target instead. Default: 256 MiB.
    /// Minimum: 1 MiB.
    pub max_bytes_for_level_base: u64,
    /// Size level targets from the bottom up, as RocksDB's
    /// `level_compaction_dynamic_level_bytes` (its default since 8.4):
    /// the last level's target is the size of the largest level, each
    /// level above is `level_size_multiplier` times smaller but never
    /// below `max_bytes_for_level_base`, and the levels above the first
    /// one whose computed target is at most `max_bytes_for_level_base`
    /// stay empty. L0 compacts into the highest
    /// level in use (the *base level*), so a small database lives in the
    /// last level, about 90% of a large one is in the last level, and each
    /// byte is rewritten fewer times than with fixed targets from L1 down.
    /// Levels above the base level that hold data (a database written with
    /// fixed targets) are compacted down first. With `false`, level n
    /// targets `max_bytes_for_level_base * level_size_multiplier^(n-1)`
    /// ([`Options::level_target_bytes`]). Levels of `compression_per_level`
    /// count from L0 either way. Default: true.
    pub dynamic_level_bytes: bool,
    /// Growth factor between level targets. Default: 10. Minimum: 2.
    pub level_size_multiplier: u64,
    /// Number of levels, L0 included. Default: 7. Range: 2..=16.
    pub num_levels: usize,
    /// Compaction output files are cut at this size in bytes.
    /// Default: 64 MiB. Minimum: 64 KiB.
    pub target_file_size_bytes: u64,
    /// Which file of level n >= 1 a compaction into level n+1 takes.
    /// Default: [`CompactionPri::MinOverlappingRatio`].
    pub compaction_pri: CompactionPri,
    /// Threads running compactions, besides the one thread that flushes
    /// memtables (so a long compaction never delays a flush).
    /// Default: 1 (suits small machines). Range: 1..=16.
    pub background_compactions: usize,
    /// How many background jobs (the flush and the compactions) may work
    /// at the same time; 0 means no limit. A flush that wants a slot takes
    /// it from a running compaction, which pauses between two entries until
    /// the flush is done. Keeping one CPU free of background work keeps the
    /// writing threads from being descheduled behind it. Default: one less
    /// than the CPUs this process may use (`available_parallelism`), at
    /// least 1: 1 on a 2-CPU machine, no limit in effect from 3 CPUs on
    /// with the default single compaction thread.
    pub background_job_limit: usize,
    /// Compression of data blocks per level: level `i` uses entry
    /// `min(i, len - 1)`; empty means `table.compression` everywhere. A
    /// common production choice is `[None, None, Lz4]`: the upper levels,
    /// rewritten often, stay uncompressed. Default: empty.
    pub compression_per_level: Vec<Compression>,
    /// SSTable layout (block size, restart interval, bloom bits per key).
    /// Default: [`TableOptions::default`] (4 KiB blocks, 10 bloom bits per key).
    pub table: TableOptions,
}

/// How a compaction of level n >= 1 into level n+1 chooses its input
/// file, as RocksDB's `compaction_pri`. Files that a running compaction
/// holds, or whose overlap in level n+1 it holds, are passed over, and
/// the next file in this order is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompactionPri {
    /// The file whose overlapping bytes in level n+1, per byte of its own,
    /// are fewest: the compaction that rewrites the least of level n+1 for
    /// the bytes it moves down (round-robin sweeps through key ranges that
    /// level n+1 is dense in as often as through sparse ones). RocksDB's
    /// `kMinOverlappingRatio`, its default (`advanced_options.h`; see
    /// `VersionStorageInfo::UpdateFilesByCompactionPri`). Ties go to the
    /// file with the smaller keys. Measured against round-robin
    /// (docs/benchmarks-engine.md, "Compaction priority"): 1.08-1.33× the
    /// keys/s under writes that outpace compaction; 8% more compaction
    /// bytes on a 10M-key fill, whose levels hold only a few files.
    #[default]
    MinOverlappingRatio,
    /// The first file after the last key the previous compaction of the
    /// level took, wrapping around at the end (LevelDB's compact pointer;
    /// RocksDB's `kRoundRobin`). Spreads compactions evenly over the key
    /// space whatever the overlap.
    RoundRobin,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dir: PathBuf::from("bedrock-data"),
            fs: RealFs::shared(),
            create_if_missing: true,
            wal: WalOptions::default(),
            disable_wal: false,
            max_key_bytes: 8 << 10,
            max_value_bytes: 8 << 20,
            max_batch_bytes: 32 << 20,
            memtable_size_bytes: 64 << 20,
            max_immutable_memtables: 2,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 8,
            l0_stop_trigger: 12,
            delayed_write_rate_bytes: 16 << 20,
            max_bytes_for_level_base: 256 << 20,
            dynamic_level_bytes: true,
            level_size_multiplier: 10,
            num_levels: 7,
            target_file_size_bytes: 64 << 20,
            compaction_pri: CompactionPri::default(),
            background_compactions: 1,
            background_job_limit: std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
            compression_per_level: Vec::new(),
            table: TableOptions::default(),
        }
    }
}

impl Options {
    /// Default options with the data directory set to `dir`.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        Options { dir: dir.into(), ..Options::default() }
    }

    /// Checks every option against its documented range.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] naming the first offending option.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::InvalidOptions(msg.to_string()));
        self.wal.validate()?;
        self.table.validate()?;
        if self.max_key_bytes == 0 {
            return bad("max_key_bytes must be at least 1");
        }
        if self.max_batch_bytes > self.wal.max_record_bytes {
            return bad("max_batch_bytes must not exceed wal.max_record_bytes");
        }
        if self.memtable_size_bytes < 4096 {
            return bad("memtable_size_bytes must be at least 4096");
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1");
        }
        if self.l0_compaction_trigger == 0
            || self.l0_slowdown_trigger < self.l0_compaction_trigger
            || self.l0_stop_trigger <= self.l0_slowdown_trigger
        {
            return bad("need 1 <= l0_compaction_trigger <= l0_slowdown_trigger < l0_stop_trigger");
        }
        if self.delayed_write_rate_bytes < (16 << 10) {
            return bad("delayed_write_rate_bytes must be at least 16 KiB/s");
        }
        if self.max_bytes_for_level_base < (1 << 20) {
            return bad("max_bytes_for_level_base must be at least 1 MiB");
        }
        if self.level_size_multiplier < 2 {
            return bad("level_size_multiplier must be at least 2");
        }
        if !(2..=16).contains(&self.num_levels) {
            return bad("num_levels must be in 2..=16");
        }
        if !(1..=16).contains(&self.background_compactions) {
            return bad("background_compactions must be in 1..=16");
        }
        if self.target_file_size_bytes < (64 << 10) {
            return bad("target_file_size_bytes must be at least 64 KiB");
        }
        Ok(())
    }

    /// The SSTable options for files written to `level`.
    pub fn table_options_for(&self, level: usize) -> TableOptions {
        let compression = match self.compression_per_level.as_slice() {
            [] => self.table.compression,
            list => list.get(level).or(list.last()).copied().unwrap_or_default(),
        };
        TableOptions { compression, ..self.table.clone() }
    }

    /// Target size in bytes of `level` with fixed targets
    /// (`dynamic_level_bytes` false; 1-based levels; level 0 is governed
    /// by file count instead). [`crate::LevelStats::target_bytes`] reports
    /// the targets in effect.
    pub fn level_target_bytes(&self, level: usize) -> u64 {
        let mut target = self.max_bytes_for_level_base;
        for _ in 1..level {
            target = target.saturating_mul(self.level_size_multiplier);
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults() {
        let o = Options::default();
        assert_eq!(o.dir, PathBuf::from("bedrock-data"));
        assert!(o.create_if_missing);
        assert_eq!(o.max_key_bytes, 8 * 1024);
        assert_eq!(o.max_value_bytes, 8 * 1024 * 1024);
        assert_eq!(o.max_batch_bytes, 32 * 1024 * 1024);
        assert_eq!(o.memtable_size_bytes, 64 * 1024 * 1024);
        assert_eq!(o.max_immutable_memtables, 2);
        assert_eq!((o.l0_compaction_trigger, o.l0_slowdown_trigger, o.l0_stop_trigger), (4, 8, 12));
        assert_eq!(o.delayed_write_rate_bytes, 16 * 1024 * 1024);
        assert_eq!(o.max_bytes_for_level_base, 256 * 1024 * 1024);
        assert_eq!(o.level_size_multiplier, 10);
        assert_eq!(o.num_levels, 7);
        assert!(o.dynamic_level_bytes);
        assert_eq!(o.target_file_size_bytes, 64 * 1024 * 1024);
        assert_eq!(o.background_compactions, 1);
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(o.background_job_limit, if cpus <= 2 { 1 } else { cpus - 1 });
        assert!(o.compression_per_level.is_empty());
        assert_eq!(o.table_options_for(3).compression, Compression::None);
        let o = Options { compression_per_level: vec![Compression::None, Compression::Lz4], ..Options::default() };
        assert_eq!(o.table_options_for(0).compression, Compression::None);
        assert_eq!(o.table_options_for(5).compression, Compression::Lz4);
        o.validate().unwrap();
        assert_eq!(o.level_target_bytes(2), 2560 * 1024 * 1024);
    }

    #[test]
    fn validate_rejects_bad_triggers() {
        let o = Options { l0_stop_trigger: 8, ..Options::default() };
        assert!(matches!(o.validate(), Err(Error::InvalidOptions(_))));
        let o = Options { max_batch_bytes: usize::MAX, ..Options::default() };
        assert!(o.validate().is_err());
        let o = Options { delayed_write_rate_bytes: 1000, ..Options::default() };
        assert!(matches!(o.validate(), Err(Error::InvalidOptions(_))));
    }
}
