//! `cargo xtask crash --cycles N [--seed S] [--dir D]`: the engine crash
//! loop, in the style of RocksDB's `db_crashtest.py`.
//!
//! Each cycle starts a child process (this binary, `crash-child`) that
//! opens the database with `SyncPolicy::Always` and a tiny memtable (so
//! flushes and compactions are in flight most of the time) and writes
//! batches. Batch `i` puts `BATCH_KEYS` keys whose values carry `i` and a
//! checksum of the batch; after each acknowledged write the child prints
//! `ack i` on its stdout, a pipe to the parent. After a random delay the
//! parent sends SIGKILL, reopens the database itself and checks:
//! every acknowledged batch is present and whole, no batch is half there,
//! every value's checksum matches, and `Db::verify` (every SSTable
//! checksum, key order, level invariants) passes. The next child continues
//! after the highest batch present; every 25 cycles the directory starts
//! afresh so the full check stays short.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bedrock_lsm::{Db, Options, WriteBatch};
use bedrock_wal::{SyncPolicy, WalOptions};

/// Keys per batch.
const BATCH_KEYS: u64 = 4;

/// Cycles per database: after this many the directory starts afresh, which
/// keeps each cycle's full check short.
const CYCLES_PER_DB: u64 = 25;

fn options(dir: &Path) -> Options {
    Options {
        wal: WalOptions { sync: SyncPolicy::Always, segment_size_bytes: 256 << 10, ..WalOptions::default() },
        memtable_size_bytes: 32 << 10,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 4,
        l0_stop_trigger: 8,
        max_bytes_for_level_base: 1 << 20,
        target_file_size_bytes: 64 << 10,
        ..Options::with_dir(dir)
    }
}

fn key(batch: u64, j: u64) -> Vec<u8> {
    // Keys of one batch are far apart so they land in different files.
    format!("{j}/batch-{batch:010}").into_bytes()
}

fn value(batch: u64, j: u64) -> Vec<u8> {
    let body = format!("batch={batch};key={j};pad={}", "v".repeat((batch % 200) as usize));
    let sum = crc(body.as_bytes());
    format!("{body};crc={sum:08x}").into_bytes()
}

fn crc(bytes: &[u8]) -> u32 {
    // FNV-1a: the point is only to detect a damaged or mixed-up value.
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The child: writes batches from `start` until killed.
pub fn child(args: &[String]) -> Result<()> {
    let [dir, start] = args else { bail!("usage: crash-child DIR START") };
    let db = Db::open(options(Path::new(dir)))?;
    let mut out = std::io::stdout().lock();
    for batch in start.parse::<u64>()?.. {
        let mut b = WriteBatch::new();
        for j in 0..BATCH_KEYS {
            b.put(&key(batch, j), &value(batch, j));
        }
        db.write(b)?;
        use std::io::Write;
        writeln!(out, "ack {batch}")?;
        out.flush()?;
    }
    Ok(())
}

/// The parent loop.
pub fn run(args: &[String]) -> Result<()> {
    let mut cycles = 20u64;
    let mut seed = 1u64;
    let mut dir: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--cycles" => cycles = value.parse()?,
            "--seed" => seed = value.parse()?,
            "--dir" => dir = Some(PathBuf::from(value)),
            _ => bail!("usage: cargo xtask crash [--cycles N] [--seed S] [--dir D]"),
        }
    }
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("bedrock-crash-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe()?;
    let mut rng = seed.max(1);
    let mut next = 0u64;
    let started = Instant::now();
    let mut total_acked = 0u64;
    for cycle in 0..cycles {
        if cycle % CYCLES_PER_DB == 0 {
            let _ = std::fs::remove_dir_all(&dir);
            next = 0;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(20 + rng % 300);
        let acked = run_child(&exe, &dir, next, delay)?;
        let present = check(&dir, acked)
            .with_context(|| format!("cycle {cycle} (seed {seed}, dir {}): check failed", dir.display()))?;
        total_acked += acked.map_or(0, |a| a + 1 - next);
        next = present.map_or(next, |p| p + 1);
    }
    println!(
        "crash: {cycles} cycles, {total_acked} acknowledged batches, all present and whole ({:.1} s, seed {seed})",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs one child until `delay` has passed (after its first ack), then
/// SIGKILLs it. Returns the highest acknowledged batch.
fn run_child(exe: &Path, dir: &Path, start: u64, delay: Duration) -> Result<Option<u64>> {
    let mut child = Command::new(exe)
        .args(["crash-child", &dir.to_string_lossy(), &start.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the crash child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse::<u64>().ok()) {
                if tx.send(n).is_err() {
                    return;
                }
            }
        }
    });
    let mut acked = rx.recv_timeout(Duration::from_secs(30)).ok();
    ensure!(acked.is_some(), "the child acknowledged nothing within 30 s");
    let deadline = Instant::now() + delay;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(n) => acked = Some(n),
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the child exited on its own"),
        }
    }
    child.kill().context("SIGKILL")?;
    child.wait()?;
    let _ = reader.join();
    // Acks already in the pipe were acknowledged before the kill.
    while let Ok(n) = rx.try_recv() {
        acked = Some(n);
    }
    Ok(acked)
}

/// Reopens the database and checks it; returns the highest batch present.
fn check(dir: &Path, acked: Option<u64>) -> Result<Option<u64>> {
    let db = Db::open(options(dir))?;
    db.verify()?;
    let mut batches: BTreeMap<u64, u64> = BTreeMap::new();
    for kv in db.iter(b"", None) {
        let (k, v) = kv?;
        let text = String::from_utf8(k.clone()).context("key is not UTF-8")?;
        let (j, batch) = text.split_once("/batch-").context("unexpected key")?;
        let (j, batch): (u64, u64) = (j.parse()?, batch.parse()?);
        ensure!(v == value(batch, j), "batch {batch} key {j}: value damaged or mixed up");
        *batches.entry(batch).or_default() += 1;
    }
    for (batch, n) in &batches {
        ensure!(*n == BATCH_KEYS, "batch {batch} is half-applied: {n} of {BATCH_KEYS} keys");
    }
    if let Some(acked) = acked {
        for batch in 0..=acked {
            ensure!(batches.contains_key(&batch), "acknowledged batch {batch} lost (acked up to {acked})");
        }
    }
    let max = batches.keys().next_back().copied();
    if let (Some(max), Some(count)) = (max, u64::try_from(batches.len()).ok()) {
        ensure!(count == max + 1, "batches are not a prefix: {count} present, highest {max}");
    }
    Ok(max)
}
