//! Bedrock (`bedrock-lsm`, by path from this repository).
//!
//! Options: 64 MiB memtable, at most 2 immutable memtables, 4 KiB blocks,
//! restart interval 16, 10 bloom bits per key, L0 trigger 4 (slowdown 8,
//! stop 12), dynamic level targets (the default; base level at most
//! 256 MiB, ×10 per level), 64 MiB output files, the file to compact
//! from a level by least overlap with the next (`compaction_pri`, the
//! default; `--bedrock-compaction-pri round-robin` for the other), one
//! compaction thread plus the flush thread, of which one works at a time on
//! this 2-CPU machine (`background_job_limit`, default CPUs - 1: a flush
//! pauses the compaction); writeback hinted every 1 MiB of a table
//! (`bytes_per_sync`, the default); `--compression` through
//! `compression_per_level` (LZ4 from bedrock-sstable); no block cache
//! (tables are read through mmap, so the OS page cache is the cache). Durability:
//! `SyncPolicy::Never` for buffered cells (one `pwrite` per batch, no
//! fsync), `SyncPolicy::Always` (fdatasync with group commit) for
//! fillsync. WAL segments are 64 MiB and preallocated (the default).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use bedrock_lsm::{Db, Options, WriteBatch};
use bedrock_sstable::Compression as TableCompression;
use bedrock_wal::SyncPolicy;

use crate::engine::{wait_quiet, Common, CompactionPri, Durability, Engine};

pub struct Bedrock {
    db: Db,
}

impl Bedrock {
    pub fn open(dir: &Path, c: &Common) -> Result<Self> {
        let mut opts = Options::with_dir(dir);
        opts.wal.sync = match c.durability {
            Durability::Buffered => SyncPolicy::Never,
            Durability::SyncEachWrite => SyncPolicy::Always,
        };
        opts.memtable_size_bytes = c.memtable_bytes as usize;
        opts.max_immutable_memtables = 2;
        opts.table.block_size_bytes = c.block_bytes;
        opts.table.bloom_bits_per_key = c.bloom_bits_per_key as usize;
        opts.l0_compaction_trigger = c.l0_trigger;
        opts.l0_slowdown_trigger = 8;
        opts.l0_stop_trigger = 12;
        opts.max_bytes_for_level_base = 256 << 20;
        opts.level_size_multiplier = 10;
        opts.target_file_size_bytes = 64 << 20;
        opts.background_compactions = 1;
        opts.compaction_pri = match c.bedrock_compaction_pri {
            CompactionPri::MinOverlappingRatio => bedrock_lsm::CompactionPri::MinOverlappingRatio,
            CompactionPri::RoundRobin => bedrock_lsm::CompactionPri::RoundRobin,
        };
        opts.compression_per_level = (0..3)
            .map(|l| if c.compression.level_compressed(l) { TableCompression::Lz4 } else { TableCompression::None })
            .collect();
        let db = Db::open(opts).with_context(|| format!("open bedrock in {}", dir.display()))?;
        Ok(Bedrock { db })
    }
}

impl Engine for Bedrock {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put(key, value)?;
        Ok(())
    }

    fn write_batch(&self, items: &[(&[u8], &[u8])]) -> Result<()> {
        let mut batch = WriteBatch::new();
        for (k, v) in items {
            batch.put(k, v);
        }
        self.db.write(batch)?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get(key)?.map(|v| v.len()))
    }

    fn seek_next(&self, key: &[u8], nexts: usize) -> Result<usize> {
        let mut n = 0;
        for item in self.db.iter(key, None).take(1 + nexts) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        for item in self.db.iter(b"", None) {
            let (k, v) = item?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Bedrock has no "wait for compactions" call yet: flush, then poll
    /// `stats()` until L0 is below the trigger, nothing waits for flush,
    /// and the compaction count has not moved for one second.
    fn settle(&self, max_wait: Duration) -> Result<()> {
        self.db.flush()?;
        let trigger = self.db.options().l0_compaction_trigger;
        let mut last = u64::MAX;
        let settled = wait_quiet(max_wait, || {
            let s = self.db.stats();
            let l0 = s.levels.first().map_or(0, |l| l.files);
            let quiet = l0 < trigger
                && s.immutable_memtables == 0
                && s.running_compactions == 0
                && !s.compaction_pending
                && s.compactions == last;
            last = s.compactions;
            Ok(quiet)
        })?;
        if !settled {
            eprintln!("  warning: bedrock did not settle within {max_wait:?}");
        }
        Ok(())
    }

    fn internal_stats(&self) -> serde_json::Value {
        let s = self.db.stats();
        serde_json::json!({
            "write_amplification_internal": s.write_amplification,
            "wal_syncs": s.wal_syncs,
            "flushes": s.flushes,
            "compactions": s.compactions,
            "compaction_pauses": s.compaction_pauses,
            "compaction_bytes_written": s.compaction_bytes_written,
            "stall_micros": s.stall_micros,
            "slowdowns": s.slowdowns,
            "stops": s.stops,
            "max_stall_micros": s.max_stall_micros,
            "immutable_memtables": s.immutable_memtables,
            "levels": s.levels.iter().map(|l| (l.files, l.bytes)).collect::<Vec<_>>(),
        })
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.close()?;
        Ok(())
    }
}
