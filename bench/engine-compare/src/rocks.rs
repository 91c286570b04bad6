//! RocksDB through the `rocksdb` crate (feature `rocksdb`; RocksDB is
//! built from source with LZ4 only).
//!
//! Options: 64 MiB write buffer, up to 3 write buffers (1 active + 2
//! immutable, as Bedrock), L0 compaction trigger 4 (slowdown/stop at
//! RocksDB's defaults 20/36), L1 target 256 MiB ×10 per level, 64 MiB
//! target files, leveled compaction with `level_compaction_dynamic_level_bytes`
//! (the default since 8.4), `max_background_jobs = 2` (one flush and one
//! compaction thread); block-based tables with 4 KiB blocks, a full bloom
//! filter at 10 bits per key, an LRU block cache of `--cache-mib`.
//! Compression per `--compression` through `compression_per_level`
//! (LZ4 everywhere is the common production setting).
//! Durability: `WriteOptions::set_sync(false)` for buffered cells (the
//! WAL is written to the OS on every write, no fsync), `set_sync(true)`
//! (fdatasync, with RocksDB's group commit) for fillsync.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteBatch, WriteOptions, DB};

use crate::engine::{wait_quiet, Common, Durability, Engine};

pub struct Rocks {
    db: DB,
    write_opts: WriteOptions,
    l0_trigger: u64,
    // Kept alive as long as the DB that uses it.
    _cache: Cache,
}

impl Rocks {
    pub fn open(dir: &Path, c: &Common) -> Result<Self> {
        let cache = Cache::new_lru_cache(c.cache_bytes as usize);
        let mut table = BlockBasedOptions::default();
        table.set_block_size(c.block_bytes);
        table.set_bloom_filter(f64::from(c.bloom_bits_per_key), false);
        table.set_block_cache(&cache);

        let mut o = Options::default();
        o.create_if_missing(true);
        o.set_write_buffer_size(c.memtable_bytes as usize);
        o.set_max_write_buffer_number(3);
        o.set_level_zero_file_num_compaction_trigger(c.l0_trigger as i32);
        o.set_max_bytes_for_level_base(256 << 20);
        o.set_max_bytes_for_level_multiplier(10.0);
        o.set_target_file_size_base(64 << 20);
        o.set_max_background_jobs(2);
        // The default since 8.4; set so an older linked RocksDB behaves the same.
        o.set_level_compaction_dynamic_level_bytes(true);
        let per_level: Vec<DBCompressionType> = (0..7)
            .map(|l| if c.compression.level_compressed(l) { DBCompressionType::Lz4 } else { DBCompressionType::None })
            .collect();
        o.set_compression_per_level(&per_level);
        o.set_block_based_table_factory(&table);

        let db = DB::open(&o, dir).with_context(|| format!("open rocksdb in {}", dir.display()))?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(c.durability == Durability::SyncEachWrite);
        Ok(Rocks { db, write_opts, l0_trigger: c.l0_trigger as u64, _cache: cache })
    }

    fn prop(&self, name: &str) -> Result<u64> {
        Ok(self.db.property_int_value(name)?.unwrap_or(0))
    }
}

impl Engine for Rocks {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_opt(key, value, &self.write_opts)?;
        Ok(())
    }

    fn write_batch(&self, items: &[(&[u8], &[u8])]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in items {
            batch.put(k, v);
        }
        self.db.write_opt(batch, &self.write_opts)?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get_pinned(key)?.map(|v| v.len()))
    }

    fn seek_next(&self, key: &[u8], nexts: usize) -> Result<usize> {
        let mut it = self.db.raw_iterator();
        it.seek(key);
        let mut n = 0;
        while n < 1 + nexts && it.valid() {
            std::hint::black_box((it.key().map(<[u8]>::len), it.value().map(<[u8]>::len)));
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mut it = self.db.raw_iterator();
        it.seek_to_first();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            if !visit(k, v) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// Flushes (waiting for it), then polls RocksDB's properties until no
    /// flush or compaction runs or is pending and L0 is below the trigger,
    /// for one second.
    fn settle(&self, max_wait: Duration) -> Result<()> {
        self.db.flush()?;
        let settled = wait_quiet(max_wait, || {
            Ok(self.prop("rocksdb.num-running-compactions")? == 0
                && self.prop("rocksdb.num-running-flushes")? == 0
                && self.prop("rocksdb.compaction-pending")? == 0
                && self.prop("rocksdb.mem-table-flush-pending")? == 0
                && self.prop("rocksdb.num-files-at-level0")? < self.l0_trigger)
        })?;
        if !settled {
            eprintln!("  warning: rocksdb did not settle within {max_wait:?}");
        }
        Ok(())
    }

    fn internal_stats(&self) -> serde_json::Value {
        let files: Vec<u64> =
            (0..7).map(|l| self.prop(&format!("rocksdb.num-files-at-level{l}")).unwrap_or(0)).collect();
        serde_json::json!({
            "files_per_level": files,
            "live_sst_files_size": self.prop("rocksdb.live-sst-files-size").unwrap_or(0),
            "estimate_live_data_size": self.prop("rocksdb.estimate-live-data-size").unwrap_or(0),
            "num_immutable_mem_table": self.prop("rocksdb.num-immutable-mem-table").unwrap_or(0),
            // "Cumulative stall: H:M:S, percent" and the per-cause stall counts.
            "stall": self.db.property_value("rocksdb.stats").ok().flatten().map(|text| {
                text.lines()
                    .filter(|l| l.starts_with("Cumulative stall") || l.starts_with("Stalls(count)"))
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" | ")
            }),
        })
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }
}

/// RocksDB 7.8 (Debian 12's librocksdb-dev) has no write buffer manager in
/// its C API; the `rocksdb` crate links the destructor anyway (from a drop
/// path this benchmark never takes, as it creates no write buffer manager).
#[cfg(feature = "rocksdb-system")]
#[no_mangle]
pub extern "C" fn rocksdb_write_buffer_manager_destroy(_manager: *mut std::ffi::c_void) {
    std::process::abort();
}
