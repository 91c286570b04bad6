//! The [`Engine`] trait every compared store implements, and the settings
//! shared by all of them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How a write is acknowledged. Every engine in a cell runs with the same
/// durability, so no engine wins by skipping an fsync another one pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Each write reaches the OS (one `write` syscall into the WAL/journal)
    /// before it is acknowledged, without an fsync: a process crash loses
    /// nothing, a power cut may lose recent writes.
    Buffered,
    /// Each write is fsynced (`fdatasync`) before it is acknowledged;
    /// concurrent writers may share an fsync where the engine supports it.
    SyncEachWrite,
}

/// Settings that apply to every engine (the per-engine files map them to
/// their own options; docs/benchmarks-engine.md lists the result).
#[derive(Debug, Clone)]
pub struct Common {
    pub durability: Durability,
    /// Memtable / write buffer size in bytes (64 MiB).
    pub memtable_bytes: u64,
    /// Data block size in bytes (4 KiB).
    pub block_bytes: usize,
    /// Bloom filter bits per key (10).
    pub bloom_bits_per_key: u32,
    /// L0 file count that triggers a compaction (4).
    pub l0_trigger: usize,
    /// Block cache of the peers in bytes (Bedrock reads through mmap and has none).
    pub cache_bytes: u64,
    /// Data-block compression, the same policy for every engine.
    pub compression: Compression,
    /// Bedrock's choice of the file to compact from a level.
    pub bedrock_compaction_pri: CompactionPri,
}

/// Bedrock's `Options::compaction_pri`, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompactionPri {
    /// Least overlap in the next level per byte (RocksDB's `kMinOverlappingRatio`; the default).
    MinOverlappingRatio,
    /// The next file after the previous compaction's (LevelDB's compact pointer).
    RoundRobin,
}

/// Data-block compression, applied alike to every engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// LZ4 on every level (RocksDB's common production setting).
    Lz4,
    /// Levels 0 and 1 uncompressed, LZ4 from level 2 on (fjall's default,
    /// and the choice Bedrock's `compression_per_level` docs recommend).
    Lz4Deep,
    /// No compression anywhere (Bedrock's default).
    None,
}

impl Compression {
    /// Whether level `level` (0-based) is compressed.
    pub fn level_compressed(self, level: usize) -> bool {
        match self {
            Compression::Lz4 => true,
            Compression::Lz4Deep => level >= 2,
            Compression::None => false,
        }
    }
}

/// The operations the workloads need. Implementations are shared between
/// writer threads, so they take `&self`.
pub trait Engine: Send + Sync {
    /// One put, acknowledged under the engine's [`Durability`].
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Puts applied atomically as one batch.
    fn write_batch(&self, items: &[(&[u8], &[u8])]) -> Result<()>;
    /// Point read; returns the value's length if the key is present.
    fn get(&self, key: &[u8]) -> Result<Option<usize>>;
    /// Seeks to the first key `>= key` and reads up to `1 + nexts` entries
    /// (the one found, then `nexts` more); returns how many it read.
    fn seek_next(&self, key: &[u8], nexts: usize) -> Result<usize>;
    /// Visits every live entry in key order; `visit` returns false to stop.
    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    /// Flushes the memtable and waits (up to `max_wait`) until the engine
    /// reports no pending flush or compaction for one second.
    fn settle(&self, max_wait: Duration) -> Result<()>;
    /// Engine-specific counters for the JSON report.
    fn internal_stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Closes the engine cleanly.
    fn close(self: Box<Self>) -> Result<()>;
}

/// The engines this binary can run.
pub const ALL_ENGINES: &[&str] = &["bedrock", "fjall", "rocksdb"];

/// Opens engine `name` in the empty directory `dir`.
pub fn open(name: &str, dir: &Path, common: &Common) -> Result<Box<dyn Engine>> {
    match name {
        "bedrock" => Ok(Box::new(crate::bedrock::Bedrock::open(dir, common)?)),
        "fjall" => Ok(Box::new(crate::fjall_engine::Fjall::open(dir, common)?)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Ok(Box::new(crate::rocks::Rocks::open(dir, common)?)),
        #[cfg(not(feature = "rocksdb"))]
        "rocksdb" => bail!("this binary was built without RocksDB: rebuild with `--features rocksdb`"),
        other => bail!("unknown engine {other:?} (known: {})", ALL_ENGINES.join(", ")),
    }
}

/// True if engine `name` is compiled into this binary.
pub fn available(name: &str) -> bool {
    name != "rocksdb" || cfg!(feature = "rocksdb")
}

/// Polls `quiet` every 50 ms until it has returned true continuously for
/// one second, or `max_wait` passes. Returns false on timeout.
pub fn wait_quiet(max_wait: Duration, mut quiet: impl FnMut() -> Result<bool>) -> Result<bool> {
    let start = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    while start.elapsed() < max_wait {
        if quiet()? {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                return Ok(true);
            }
        } else {
            quiet_since = None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}
