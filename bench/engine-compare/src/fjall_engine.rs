//! fjall 3.x (crates.io), one keyspace.
//!
//! Options: 64 MiB memtable (`max_memtable_size`), 4 KiB data blocks,
//! bloom filters at 10 bits per key on every level (fjall's default uses a
//! 0.01% false-positive rate on L0), leveled compaction with its defaults
//! (L0 trigger 4, 64 MiB tables, L1 target 4 × 64 MiB = 256 MiB, ×10 per
//! level, the same shape as Bedrock), 2 worker threads (flush and
//! compaction share them; fjall's default is min(cores, 4) = 2 here),
//! block cache `--cache-mib`. Data blocks compressed per `--compression`
//! (index blocks never, fjall's default); journal compression stays at
//! fjall's default (LZ4 for entries above 4 KiB, so never for these
//! 100-byte values) unless `--compression none`.
//! Durability: buffered cells use fjall's default (each write flushes the
//! journal's buffer to the OS, no fsync); fillsync calls
//! `Database::persist(PersistMode::SyncData)` (fdatasync) after each put.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use fjall::config::{BlockSizePolicy, BloomConstructionPolicy, CompressionPolicy, FilterPolicy, FilterPolicyEntry};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::engine::{wait_quiet, Common, Compression, Durability, Engine};

pub struct Fjall {
    db: Database,
    ks: Keyspace,
    sync: bool,
    l0_trigger: usize,
}

impl Fjall {
    pub fn open(dir: &Path, c: &Common) -> Result<Self> {
        let mut builder = Database::builder(dir).cache_size(c.cache_bytes).worker_threads(2);
        if c.compression == Compression::None {
            builder = builder.journal_compression(CompressionType::None);
        }
        let db = builder.open().with_context(|| format!("open fjall in {}", dir.display()))?;
        let (memtable, block, bits, compression) =
            (c.memtable_bytes, c.block_bytes as u32, c.bloom_bits_per_key as f32, c.compression);
        let ks = db.keyspace("bench", || {
            let per_level: Vec<CompressionType> = (0..3)
                .map(|l| if compression.level_compressed(l) { CompressionType::Lz4 } else { CompressionType::None })
                .collect();
            KeyspaceCreateOptions::default()
                .max_memtable_size(memtable)
                .data_block_size_policy(BlockSizePolicy::all(block))
                .filter_policy(FilterPolicy::all(FilterPolicyEntry::Bloom(BloomConstructionPolicy::BitsPerKey(bits))))
                .data_block_compression_policy(CompressionPolicy::new(per_level))
                .index_block_compression_policy(CompressionPolicy::disabled())
        })?;
        Ok(Fjall { db, ks, sync: c.durability == Durability::SyncEachWrite, l0_trigger: c.l0_trigger })
    }
}

impl Engine for Fjall {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.ks.insert(key, value)?;
        if self.sync {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn write_batch(&self, items: &[(&[u8], &[u8])]) -> Result<()> {
        let mut batch = self.db.batch();
        if self.sync {
            batch = batch.durability(Some(PersistMode::SyncData));
        }
        for (k, v) in items {
            batch.insert(&self.ks, *k, *v);
        }
        batch.commit()?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.ks.get(key)?.map(|v| v.len()))
    }

    fn seek_next(&self, key: &[u8], nexts: usize) -> Result<usize> {
        let mut n = 0;
        for guard in self.ks.range(key..).take(1 + nexts) {
            let (k, v) = guard.into_inner()?;
            std::hint::black_box((k.len(), v.len()));
            n += 1;
        }
        Ok(n)
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        for guard in self.ks.iter() {
            let (k, v) = guard.into_inner()?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Rotates and flushes the memtable, then polls until no flush is
    /// queued, no compaction runs, L0 is below the trigger and the
    /// completed-compaction count has not moved for one second.
    fn settle(&self, max_wait: Duration) -> Result<()> {
        self.ks.rotate_memtable_and_wait()?;
        let mut last = usize::MAX;
        let settled = wait_quiet(max_wait, || {
            let done = self.db.compactions_completed();
            let quiet = self.db.outstanding_flushes() == 0
                && self.db.active_compactions() == 0
                && self.ks.l0_table_count() < self.l0_trigger
                && done == last;
            last = done;
            Ok(quiet)
        })?;
        if !settled {
            eprintln!("  warning: fjall did not settle within {max_wait:?}");
        }
        Ok(())
    }

    fn internal_stats(&self) -> serde_json::Value {
        serde_json::json!({
            "compactions": self.db.compactions_completed(),
            "tables": self.ks.table_count(),
            "l0_tables": self.ks.l0_table_count(),
            "disk_space": self.ks.disk_space(),
        })
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
