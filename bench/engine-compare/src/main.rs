//! `engine-compare`: db_bench-style workloads on bedrock-lsm, fjall and
//! RocksDB in the same run (see docs/benchmarks-engine.md).
//!
//! The parent process runs every (repetition, workload group, engine) in a
//! child process of this same binary, so each engine starts with a fresh
//! heap and its peak RSS can be reported; the child prints its cells as
//! JSON lines on stdout (`RESULT {...}`).

mod bedrock;
mod data;
mod engine;
mod fjall_engine;
mod metrics;
mod report;
#[cfg(feature = "rocksdb")]
mod rocks;
mod workloads;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;

use engine::{Common, CompactionPri, Compression, Durability};
use workloads::{Cell, RunConfig, ALL_GROUPS, ALL_WORKLOADS, NOT_IN_ALL};

/// db_bench-style comparison of bedrock-lsm with fjall and RocksDB.
#[derive(Parser, Debug, Clone)]
#[command(name = "engine-compare")]
struct Args {
    /// Keys written by the fill and overwrite workloads (16-byte keys, 100-byte values).
    #[arg(long, default_value_t = 1_000_000)]
    n: u64,
    /// Engines, comma separated [default: bedrock,fjall and rocksdb if compiled in].
    #[arg(long, value_delimiter = ',')]
    engines: Option<Vec<String>>,
    /// Workloads, comma separated, or `all`. Names: fillseq, fillrandom,
    /// overwrite, readrandom, readmissing, seekrandom, readseq, fillsync1,
    /// fillsync64, fillbatch (`fillsync` = both fillsyncs); `sustained`
    /// (random puts over N keys for --max-seconds, no settle) only when named.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    workloads: Vec<String>,
    /// Operations of readrandom, readmissing and seekrandom [default: N].
    #[arg(long)]
    reads: Option<u64>,
    /// Puts of fillsync1 (one writer, fsync per put).
    #[arg(long, default_value_t = 10_000)]
    sync_n: u64,
    /// Puts of fillsync64 (all writers together).
    #[arg(long, default_value_t = 64_000)]
    sync_n_concurrent: u64,
    /// Writer threads of fillsync64.
    #[arg(long, default_value_t = 64)]
    sync_threads: usize,
    /// Keys per batch in fillbatch.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Keys per write in `sustained` (1: single puts; more: atomic batches
    /// of random keys, to write faster than compaction can keep up).
    #[arg(long, default_value_t = 1)]
    sustained_batch: u64,
    /// Time limit of one cell's timed loop, seconds; the cell reports what it did by then.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Time limit of one settle (flush + wait for compactions), seconds.
    #[arg(long, default_value_t = 300)]
    settle_seconds: u64,
    /// Repetitions of every cell; the tables show medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Also write every cell and the medians to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Parent directory of the databases (each cell gets a fresh temporary
    /// directory in it) [default: the system temp dir]. Must not be tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Allow a tmpfs --dir (numbers would not reflect a disk).
    #[arg(long)]
    allow_tmpfs: bool,
    /// Data-block compression, the same for every engine.
    #[arg(long, value_enum, default_value_t = Compression::Lz4)]
    compression: Compression,
    /// Block cache of the peers in MiB (Bedrock reads through mmap).
    #[arg(long, default_value_t = 256)]
    cache_mib: u64,
    /// Which file of a level Bedrock compacts into the next
    /// (`Options::compaction_pri`; RocksDB here always uses its default,
    /// `kMinOverlappingRatio`).
    #[arg(long, value_enum, default_value_t = CompactionPri::MinOverlappingRatio)]
    bedrock_compaction_pri: CompactionPri,
    /// Seed of key orders and values.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run every cell in this process instead of a child (for profilers).
    #[arg(long)]
    in_process: bool,
    #[arg(long, hide = true)]
    child_engine: Option<String>,
    #[arg(long, hide = true)]
    child_group: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    child_rep: usize,
}

impl Args {
    fn engines(&self) -> Result<Vec<String>> {
        let list = match &self.engines {
            Some(e) => e.clone(),
            None => engine::ALL_ENGINES.iter().filter(|e| engine::available(e)).map(|e| e.to_string()).collect(),
        };
        for e in &list {
            ensure!(engine::ALL_ENGINES.contains(&e.as_str()), "unknown engine {e:?}");
            ensure!(engine::available(e), "engine {e} is not compiled in: rebuild with `--features {e}`");
        }
        Ok(list)
    }

    fn workloads(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for w in &self.workloads {
            match w.as_str() {
                "all" => out.extend(ALL_WORKLOADS.iter().filter(|w| !NOT_IN_ALL.contains(w)).map(|s| s.to_string())),
                "fillsync" => out.extend(["fillsync1".to_string(), "fillsync64".to_string()]),
                w if ALL_WORKLOADS.contains(&w) => out.push(w.to_string()),
                w => bail!("unknown workload {w:?} (known: {}, fillsync, all)", ALL_WORKLOADS.join(", ")),
            }
        }
        Ok(out)
    }

    fn run_config(&self) -> Result<RunConfig> {
        ensure!(self.n > 0 && self.batch > 0 && self.sync_threads > 0 && self.repeat > 0, "sizes must be positive");
        Ok(RunConfig {
            n: self.n,
            reads: self.reads.unwrap_or(self.n),
            sync_n: self.sync_n,
            sync_n_concurrent: self.sync_n_concurrent,
            sync_threads: self.sync_threads,
            batch: self.batch,
            sustained_batch: self.sustained_batch.max(1),
            seek_nexts: 10,
            max_cell: Duration::from_secs(self.max_seconds),
            settle_max: Duration::from_secs(self.settle_seconds),
            seed: self.seed,
            workloads: self.workloads()?,
        })
    }

    fn common(&self, group: &str) -> Common {
        Common {
            durability: if group.starts_with("fillsync") { Durability::SyncEachWrite } else { Durability::Buffered },
            memtable_bytes: 64 << 20,
            block_bytes: 4096,
            bloom_bits_per_key: 10,
            l0_trigger: 4,
            cache_bytes: self.cache_mib << 20,
            compression: self.compression,
            bedrock_compaction_pri: self.bedrock_compaction_pri,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    match (&args.child_engine, &args.child_group) {
        (Some(e), Some(g)) => {
            for cell in run_cell_group(&args, e, g, args.child_rep)? {
                println!("RESULT {}", serde_json::to_string(&cell)?);
            }
            Ok(())
        }
        _ => run_parent(&args),
    }
}

/// Runs one workload group on one engine in a fresh directory.
fn run_cell_group(args: &Args, engine_name: &str, group: &str, rep: usize) -> Result<Vec<Cell>> {
    let cfg = args.run_config()?;
    let parent = args.data_dir();
    let tmp = tempfile::Builder::new()
        .prefix(&format!("engine-compare-{engine_name}-{group}-"))
        .tempdir_in(&parent)
        .with_context(|| format!("create a temporary directory in {}", parent.display()))?;
    let dir = tmp.path().join("db");
    std::fs::create_dir_all(&dir)?;
    let eng = engine::open(engine_name, &dir, &args.common(group))?;
    let mut cells = workloads::run_group(group, engine_name, &*eng, &dir, &cfg)?;
    eng.close()?;
    let rss = metrics::peak_rss_kib();
    for c in &mut cells {
        c.rep = rep;
        c.peak_rss_kib = rss;
    }
    Ok(cells)
}

fn run_child(engine_name: &str, group: &str, rep: usize) -> Result<Vec<Cell>> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .args(["--child-engine", engine_name, "--child-group", group, "--child-rep", &rep.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("spawn child")?;
    ensure!(out.status.success(), "{engine_name} {group} (rep {rep}) failed: {}", out.status);
    let stdout = String::from_utf8(out.stdout)?;
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).context("parse child result"))
        .collect()
}

/// `sync(1)`: writes every dirty page of every file system back to disk.
/// Best effort (the run goes on if it fails, and says so).
fn settle_page_cache() {
    match Command::new("sync").status() {
        Ok(status) if status.success() => {}
        other => eprintln!("  warning: sync before the next cell failed: {other:?}"),
    }
}

fn run_parent(args: &Args) -> Result<()> {
    let engines = args.engines()?;
    let cfg = args.run_config()?;
    let data = args.data_dir();
    std::fs::create_dir_all(&data)?;
    let (fs, dev) = metrics::mount_of(&data);
    ensure!(
        fs != "tmpfs" || args.allow_tmpfs,
        "{} is on tmpfs; pass --dir on a disk (or --allow-tmpfs)",
        data.display()
    );
    let header = header(args, &engines, &cfg, &fs, &dev);
    println!("{header}");
    let groups: Vec<&str> =
        ALL_GROUPS.iter().copied().filter(|g| cfg.workloads.iter().any(|w| workloads::group_of(w) == *g)).collect();
    let started = Instant::now();
    let mut cells = Vec::new();
    let mut rss: BTreeMap<String, u64> = BTreeMap::new();
    for rep in 0..args.repeat {
        for group in &groups {
            // Each repetition starts with the next engine, so no engine
            // always runs right after the same other one.
            let mut order = engines.clone();
            order.rotate_left(rep % engines.len().max(1));
            for e in &order {
                // Write back what the previous cell left dirty in the page
                // cache, so its writeback does not land on this cell.
                settle_page_cache();
                eprintln!("[{:>5.0}s] rep {} group {group} engine {e}", started.elapsed().as_secs_f64(), rep + 1);
                let got =
                    if args.in_process { run_cell_group(args, e, group, rep)? } else { run_child(e, group, rep)? };
                for c in &got {
                    let peak = rss.entry(c.engine.clone()).or_default();
                    *peak = (*peak).max(c.peak_rss_kib);
                }
                cells.extend(got);
                if let Some(path) = &args.json {
                    // Rewritten after every cell group, so a cut-short run keeps its cells.
                    write_json(path, &header, &engines, &cells, &rss)?;
                }
                std::io::stderr().flush().ok();
            }
        }
    }
    let medians = report::medians(&cells, &engines);
    println!(
        "## Summary (ops/s, median of {} run(s); bold: bedrock/fjall < 1.0 or bedrock/rocksdb < 0.7)",
        args.repeat
    );
    println!("{}", report::summary_table(&medians, &engines));
    println!("## Per workload{}", report::workload_tables(&medians));
    let what = if args.in_process { "this process" } else { "per engine, largest child" };
    println!("\nPeak RSS ({what}):");
    for (e, kib) in &rss {
        println!("  {e:8} {:.1} MiB", *kib as f64 / 1024.0);
    }
    println!("  parent   {:.1} MiB", metrics::peak_rss_kib() as f64 / 1024.0);
    println!("Total time: {:.0} s; load average at end: {}", started.elapsed().as_secs_f64(), loadavg());
    if let Some(path) = &args.json {
        write_json(path, &header, &engines, &cells, &rss)?;
        println!("Wrote {}", path.display());
    }
    Ok(())
}

fn write_json(
    path: &std::path::Path,
    header: &str,
    engines: &[String],
    cells: &[Cell],
    rss: &BTreeMap<String, u64>,
) -> Result<()> {
    let doc = serde_json::json!({
        "header": header,
        "args": std::env::args().collect::<Vec<_>>(),
        "peak_rss_kib": rss,
        "medians": report::medians(cells, engines),
        "cells": cells,
    });
    std::fs::write(path, serde_json::to_string_pretty(&doc)?).with_context(|| format!("write {}", path.display()))
}

fn header(args: &Args, engines: &[String], cfg: &RunConfig, fs: &str, dev: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let timer = timer_overhead_ns();
    format!(
        "# engine-compare\n\
         engines: {}   workloads: {}\n\
         N = {}, reads = {}, fillsync1 = {}, fillsync64 = {} puts from {} threads, batch = {}, \
         key 16 B, value 100 B (50% compressible)\n\
         compression {:?}, peers' block cache {} MiB; bedrock compaction_pri {:?}; max {} s per cell; repetitions {}\n\
         machine: {cores} cores, {cpu}; data dir {} ({fs} on {dev}); clock read ≈ {timer:.0} ns\n\
         bedrock source: {}\n\
         load average at start: {}",
        engines.join(","),
        cfg.workloads.join(","),
        cfg.n,
        cfg.reads,
        cfg.sync_n,
        cfg.sync_n_concurrent,
        cfg.sync_threads,
        cfg.batch,
        args.compression,
        args.cache_mib,
        args.bedrock_compaction_pri,
        args.max_seconds,
        args.repeat,
        args.data_dir().display(),
        bedrock_revision(),
        loadavg(),
    )
}

/// The repository commit the Bedrock crates were built from (read-only
/// `git` calls), with `+changes` if its engine crates differ from it.
fn bedrock_revision() -> String {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown (no git)".into() };
    let crates = ["status", "--porcelain", "--", "crates/bedrock-wal", "crates/bedrock-sstable", "crates/bedrock-lsm"];
    let dirty = git(&crates).is_some_and(|s| !s.is_empty());
    format!(
        "{head}{} (as of this run; the binary was built from the working tree)",
        if dirty { "+changes" } else { "" }
    )
}

/// The 1, 5 and 15 minute load averages (other work on the machine).
fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Cost of one `Instant::now()`, which every timed operation pays once or twice.
fn timer_overhead_ns() -> f64 {
    let n = 1_000_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(Instant::now());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}
