//! The db_bench-style workloads and how they are measured.
//!
//! Workloads run in groups; each group gets a fresh database:
//! - `fillseq`: N puts in key order.
//! - `random`: `fillrandom` (N unique keys in random order), then on that
//!   database after it settles `readrandom` (present keys), `readmissing`
//!   (absent keys between present ones), `seekrandom` (seek + 10 next),
//!   `readseq` (full scan), and last `overwrite` (N puts of random present
//!   keys, uniform with repetition, as db_bench's `overwrite`).
//! - `fillbatch`: N puts in key order, 100 per atomic batch.
//! - `fillsync1` / `fillsync64`: unique keys in random order, each put
//!   fsynced before it returns, from 1 and from 64 writer threads.
//! - `sustained` (not part of `all`): puts of uniformly random keys in
//!   `0..N` (no key list in memory, so N may be far larger than what is
//!   written) for `--max-seconds`, as fast as the engine takes them, then
//!   no settle: the engine's backpressure counters and the process's peak
//!   RSS are read at the end of the timed loop. With a large N it outpaces
//!   compaction, which is what it is for: memory must stay bounded and
//!   writes must be slowed, not stopped for long. `--sustained-batch K`
//!   writes K random keys per atomic batch (latency is then per batch).
//!
//! Write workloads count the bytes the process wrote (`/proc/self/io`)
//! from the first write until the engine has settled after the last, and
//! the directory's allocated size after the settle.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::{key, missing_key, permutation, Values, ENTRY_BYTES, KEY_LEN};
use crate::engine::Engine;
use crate::metrics::{dir_size, histogram, io_written, rss_now_kib, summary_us};

/// Every workload, in report order.
pub const ALL_WORKLOADS: &[&str] = &[
    "fillseq",
    "fillrandom",
    "overwrite",
    "readrandom",
    "readmissing",
    "seekrandom",
    "readseq",
    "fillsync1",
    "fillsync64",
    "fillbatch",
    "sustained",
];

/// Workloads that `all` leaves out (they run for a fixed time, not a fixed size).
pub const NOT_IN_ALL: &[&str] = &["sustained"];

/// The group (fresh database) a workload runs in.
pub fn group_of(workload: &str) -> &'static str {
    match workload {
        "fillseq" => "fillseq",
        "fillbatch" => "fillbatch",
        "fillsync1" => "fillsync1",
        "fillsync64" => "fillsync64",
        "sustained" => "sustained",
        _ => "random",
    }
}

/// The groups in run order.
pub const ALL_GROUPS: &[&str] = &["fillseq", "random", "fillbatch", "fillsync1", "fillsync64", "sustained"];

/// Sizes and limits of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub n: u64,
    pub reads: u64,
    pub sync_n: u64,
    pub sync_n_concurrent: u64,
    pub sync_threads: usize,
    pub batch: u64,
    pub sustained_batch: u64,
    pub seek_nexts: usize,
    pub max_cell: Duration,
    pub settle_max: Duration,
    pub seed: u64,
    pub workloads: Vec<String>,
}

impl RunConfig {
    fn wants(&self, w: &str) -> bool {
        self.workloads.iter().any(|x| x == w)
    }
}

/// The measurements of one workload on one engine in one repetition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub workload: String,
    pub engine: String,
    pub rep: usize,
    /// Operations completed (keys for fillbatch, entries for readseq).
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Latency per operation (per batch for fillbatch), microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// fillrandom: the longest put during which no CPU of the (virtual)
    /// machine lost time to the hypervisor (`/proc/stat` steal time, 10 ms
    /// resolution), microseconds: the worst latency the engine and the
    /// guest kernel are answerable for.
    #[serde(default)]
    pub max_no_steal_us: Option<f64>,
    /// Bytes written by the process (workload + settle) / logical bytes.
    pub write_amp: Option<f64>,
    /// Allocated bytes of the directory after the settle / live logical bytes.
    pub space_amp: Option<f64>,
    pub bytes_written: Option<u64>,
    pub cancelled_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub apparent_bytes: Option<u64>,
    /// Seconds the settle took (write workloads).
    pub settle_seconds: Option<f64>,
    /// The cell hit `--max-seconds` before finishing its operations.
    pub truncated: bool,
    pub peak_rss_kib: u64,
    pub internal: serde_json::Value,
}

struct Timed {
    done: u64,
    elapsed: Duration,
    truncated: bool,
    /// Start and duration of every call that took [`SLOW_CALL`] or more.
    slow: Vec<(Instant, Duration)>,
    /// For each call of 8 ms or more (by start), what the calling thread
    /// did from its last schedstat reading (at most 1,024 calls earlier)
    /// to the end of the call.
    slow_sched: Vec<(Instant, crate::metrics::ThreadSpan)>,
}

/// Calls at least this long are kept one by one (start and duration), so
/// a slow call can be matched with what the machine did meanwhile.
const SLOW_CALL: Duration = Duration::from_millis(1);

/// Runs `op(0..n)` on one thread, timing each call, until done or `max`.
fn timed(n: u64, max: Duration, h: &mut Histogram<u64>, mut op: impl FnMut(u64) -> Result<()>) -> Result<Timed> {
    let start = Instant::now();
    let mut done = 0;
    let mut truncated = false;
    let mut slow = Vec::new();
    let mut slow_sched = Vec::new();
    let mut last_times = crate::metrics::ThreadTimes::now();
    while done < n {
        if done.is_multiple_of(256) && start.elapsed() > max {
            truncated = true;
            break;
        }
        if done.is_multiple_of(1024) {
            last_times = crate::metrics::ThreadTimes::now();
        }
        let t = Instant::now();
        op(done)?;
        let took = t.elapsed();
        h.saturating_record(took.as_nanos() as u64);
        if took >= SLOW_CALL {
            slow.push((t, took));
        }
        if took >= Duration::from_millis(8) {
            slow_sched.push((t, crate::metrics::ThreadTimes::now().since(&last_times)));
        }
        done += 1;
    }
    Ok(Timed { done, elapsed: start.elapsed(), truncated, slow, slow_sched })
}

/// What the disk and the hypervisor did around each put of 8 ms or more,
/// against the share of all windows of the same length that saw a
/// discard or steal time: if slow puts coincide with one of them far more
/// often than chance, it is a suspect.
fn slow_put_report(name: &str, t: &Timed, samples: &[crate::metrics::DiskSample]) -> String {
    use crate::metrics::disk_window;
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return String::new() };
    let mut s = String::new();
    let total = disk_window(samples, first.at, last.at);
    let window = Duration::from_millis(25);
    let (mut windows, mut with_discard, mut with_steal) = (0u64, 0u64, 0u64);
    let mut at = first.at;
    while at + window <= last.at {
        let w = disk_window(samples, at, at + window);
        windows += 1;
        with_discard += u64::from(w.discards > 0);
        with_steal += u64::from(w.steal_ms.iter().any(|&ms| ms > 0));
        at += window;
    }
    let pct = |n: u64| 100.0 * n as f64 / windows.max(1) as f64;
    s += &format!(
        "  {name} fillrandom disk: {} discards ({:.0} MiB), {} flushes, {} writes; steal {:?} ms per CPU; \
         of 25 ms windows {:.1}% saw a discard, {:.1}% steal time\n",
        total.discards,
        total.discard_mib,
        total.flushes,
        total.writes,
        total.steal_ms,
        pct(with_discard),
        pct(with_steal),
    );
    let origin = first.at;
    for &(start, took) in t.slow.iter().filter(|(_, took)| *took >= Duration::from_millis(8)) {
        let w = disk_window(samples, start - Duration::from_millis(10), start + took);
        s += &format!(
            "    slow put at {:>7.3} s: {:>5.1} ms; from 10 ms before: {} discards ({:.0} MiB), {} flushes, {} writes, \
             in flight up to {}, steal {:?} ms per CPU, sampler's longest gap {:.1} ms (runnable {:.1}); \
             writer since its last reading: {}\n",
            start.saturating_duration_since(origin).as_secs_f64(),
            took.as_secs_f64() * 1e3,
            w.discards,
            w.discard_mib,
            w.flushes,
            w.writes,
            w.in_flight,
            w.steal_ms,
            w.max_gap_ms,
            w.max_gap_wait_ms,
            t.slow_sched.iter().find(|(at, _)| *at == start).map_or("-".into(), |(_, d)| d.to_string()),
        );
    }
    s
}

/// The longest call of `t` (histogram `h`) whose span, from 10 ms before
/// it started, saw no steal time on any CPU; `None` without samples.
fn max_without_steal(t: &Timed, h: &Histogram<u64>, samples: &[crate::metrics::DiskSample]) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let stolen = |start: Instant, took: Duration| {
        crate::metrics::disk_window(samples, start - Duration::from_millis(10), start + took).steal_ms.iter().any(|&ms| ms > 0)
    };
    let slow_clean = t.slow.iter().filter(|&&(start, took)| !stolen(start, took)).map(|&(_, took)| took).max();
    // Calls shorter than SLOW_CALL were not kept one by one: the longest
    // of them is the largest histogram value below it.
    let below = h
        .iter_recorded()
        .map(|v| v.value_iterated_to())
        .filter(|&ns| ns < SLOW_CALL.as_nanos() as u64)
        .max()
        .map(Duration::from_nanos);
    slow_clean.max(below)
}

/// Runs `op(0..n)` from `threads` threads (each takes the next index),
/// timing each call, until done or `max`.
fn timed_concurrent(
    n: u64,
    threads: usize,
    max: Duration,
    op: impl Fn(u64) -> Result<()> + Sync,
) -> Result<(Timed, Histogram<u64>)> {
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let truncated = AtomicBool::new(false);
    let start = Instant::now();
    let hists: Vec<Result<Histogram<u64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut h = histogram();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        if start.elapsed() > max {
                            truncated.store(true, Ordering::Relaxed);
                            break;
                        }
                        let t = Instant::now();
                        op(i)?;
                        h.saturating_record(t.elapsed().as_nanos() as u64);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(h)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("writer thread panicked")).collect()
    });
    let elapsed = start.elapsed();
    let mut all = histogram();
    for h in hists {
        all.add(h?).expect("same histogram bounds");
    }
    let t = Timed {
        done: done.load(Ordering::Relaxed),
        elapsed,
        truncated: truncated.load(Ordering::Relaxed),
        slow: Vec::new(),
        slow_sched: Vec::new(),
    };
    Ok((t, all))
}

/// Runs the workloads of `group` that `cfg` selects on `engine`, whose
/// (empty) database lives in `dir`.
pub fn run_group(group: &str, name: &str, engine: &dyn Engine, dir: &Path, cfg: &RunConfig) -> Result<Vec<Cell>> {
    let values = Values::new(cfg.seed);
    let mut cells = Vec::new();
    match group {
        "fillseq" => {
            let mut h = histogram();
            let w = Writes::start()?;
            let t = timed(cfg.n, cfg.max_cell, &mut h, |i| engine.put(&key(i), values.get(i)))?;
            cells.push(w.finish("fillseq", name, engine, dir, cfg, &t, &h, t.done, t.done)?);
        }
        "fillbatch" => {
            let batches = cfg.n.div_ceil(cfg.batch);
            let mut h = histogram();
            let w = Writes::start()?;
            let t = timed(batches, cfg.max_cell, &mut h, |b| {
                let keys: Vec<[u8; KEY_LEN]> = (b * cfg.batch..((b + 1) * cfg.batch).min(cfg.n)).map(key).collect();
                let items: Vec<(&[u8], &[u8])> =
                    keys.iter().enumerate().map(|(j, k)| (&k[..], values.get(b * cfg.batch + j as u64))).collect();
                engine.write_batch(&items)
            })?;
            let keys = (t.done * cfg.batch).min(cfg.n);
            cells.push(w.finish("fillbatch", name, engine, dir, cfg, &t, &h, keys, keys)?);
        }
        "fillsync1" | "fillsync64" => {
            let (n, threads) =
                if group == "fillsync1" { (cfg.sync_n, 1) } else { (cfg.sync_n_concurrent, cfg.sync_threads) };
            let perm = permutation(n, cfg.seed ^ 0x5eed);
            let w = Writes::start()?;
            let (t, h) =
                timed_concurrent(n, threads, cfg.max_cell, |i| engine.put(&key(perm[i as usize]), values.get(i)))?;
            cells.push(w.finish(group, name, engine, dir, cfg, &t, &h, t.done, t.done)?);
        }
        "random" => run_random(name, engine, dir, cfg, &values, &mut cells)?,
        "sustained" => {
            let mut rng = SmallRng::seed_from_u64(cfg.seed ^ 0x5057);
            let mut h = histogram();
            let w = Writes::start()?;
            // Resident memory sampled every 16,384 puts: the peak of the
            // whole (VmRSS), of the heap (RssAnon) and of mapped files (RssFile).
            let mut peak = (0u64, 0u64, 0u64);
            let per = cfg.sustained_batch;
            let t = timed(u64::MAX, cfg.max_cell, &mut h, |i| {
                if (i * per) % 16_384 < per {
                    let now = rss_now_kib();
                    peak = (peak.0.max(now.0), peak.1.max(now.1), peak.2.max(now.2));
                }
                if per == 1 {
                    return engine.put(&key(rng.gen_range(0..cfg.n)), values.get(i));
                }
                let keys: Vec<[u8; KEY_LEN]> = (0..per).map(|_| key(rng.gen_range(0..cfg.n))).collect();
                let items: Vec<(&[u8], &[u8])> =
                    keys.iter().enumerate().map(|(j, k)| (&k[..], values.get(i * per + j as u64))).collect();
                engine.write_batch(&items)
            })?;
            let io = io_written()?;
            // ops = keys written; latency is per write (per batch when --sustained-batch > 1).
            let mut c = base_cell("sustained", name, &t, &h, t.done * per);
            c.bytes_written = Some(io.0 - w.io.0);
            let mut internal = engine.internal_stats();
            if let Some(map) = internal.as_object_mut() {
                map.insert("rss_peak_kib".into(), peak.0.into());
                map.insert("rss_anon_peak_kib".into(), peak.1.into());
                map.insert("rss_file_peak_kib".into(), peak.2.into());
            }
            c.internal = internal;
            eprintln!(
                "  {name:8} sustained   {:>10.0} ops/s  {} puts in {:.0}s  p99 {:.1} us  max {:.1} us  {}",
                c.ops_per_sec,
                t.done,
                t.elapsed.as_secs_f64(),
                c.p99_us,
                c.max_us,
                c.internal
            );
            cells.push(c);
        }
        other => anyhow::bail!("unknown group {other}"),
    }
    Ok(cells)
}

fn run_random(
    name: &str,
    engine: &dyn Engine,
    dir: &Path,
    cfg: &RunConfig,
    values: &Values,
    cells: &mut Vec<Cell>,
) -> Result<()> {
    let perm = permutation(cfg.n, cfg.seed);
    let mut h = histogram();
    let w = Writes::start()?;
    let sched = crate::metrics::thread_sched();
    let disk = crate::metrics::DiskSampler::start(dir);
    let t = timed(cfg.n, cfg.max_cell, &mut h, |i| engine.put(&key(perm[i as usize]), values.get(i)))?;
    let samples = disk.map(crate::metrics::DiskSampler::finish).unwrap_or_default();
    let inserted = t.done;
    let slow = |ms: u64| h.count_between(ms * 1_000_000, h.max());
    eprintln!(
        "  {name} fillrandom: puts over 4 ms {}, over 8 ms {}, over 16 ms {}; threads during the fill:\n{}",
        slow(4),
        slow(8),
        slow(16),
        crate::metrics::thread_sched_report(&sched, &crate::metrics::thread_sched())
    );
    eprint!("{}", slow_put_report(name, &t, &samples));
    let mut fill = w.finish("fillrandom", name, engine, dir, cfg, &t, &h, inserted, inserted)?;
    fill.max_no_steal_us = max_without_steal(&t, &h, &samples).map(|d| d.as_secs_f64() * 1e6);
    if let Some(us) = fill.max_no_steal_us {
        eprintln!("  {name} fillrandom: longest put without steal time {:.1} ms (longest of all {:.1} ms)", us / 1e3, fill.max_us / 1e3);
    }
    if cfg.wants("fillrandom") {
        cells.push(fill);
    }
    ensure!(inserted > 0, "fillrandom wrote nothing within --max-seconds");
    let mut rng = SmallRng::seed_from_u64(cfg.seed ^ 0xbead);
    let present = |rng: &mut SmallRng| key(perm[rng.gen_range(0..inserted) as usize]);

    if cfg.wants("readrandom") {
        let mut h = histogram();
        let mut found = 0u64;
        let t = timed(cfg.reads, cfg.max_cell, &mut h, |_| {
            found += u64::from(engine.get(&present(&mut rng))?.is_some());
            Ok(())
        })?;
        ensure!(found == t.done, "{name} readrandom: {} of {} present keys not found", t.done - found, t.done);
        cells.push(read_cell("readrandom", name, engine, &t, &h));
    }
    if cfg.wants("readmissing") {
        let mut h = histogram();
        let mut found = 0u64;
        let t = timed(cfg.reads, cfg.max_cell, &mut h, |_| {
            found += u64::from(engine.get(&missing_key(rng.gen_range(0..cfg.n)))?.is_some());
            Ok(())
        })?;
        ensure!(found == 0, "{name} readmissing: {found} absent keys found");
        cells.push(read_cell("readmissing", name, engine, &t, &h));
    }
    if cfg.wants("seekrandom") {
        let mut h = histogram();
        let t = timed(cfg.reads, cfg.max_cell, &mut h, |_| {
            let n = engine.seek_next(&present(&mut rng), cfg.seek_nexts)?;
            ensure!(n >= 1, "{name} seekrandom: seek to a present key found nothing");
            Ok(())
        })?;
        cells.push(read_cell("seekrandom", name, engine, &t, &h));
    }
    if cfg.wants("readseq") {
        let (t, h) = scan_all(engine, cfg.max_cell)?;
        ensure!(t.truncated || t.done == inserted, "{name} readseq saw {} entries, expected {inserted}", t.done);
        cells.push(read_cell("readseq", name, engine, &t, &h));
    }
    if cfg.wants("overwrite") {
        let mut h = histogram();
        let w = Writes::start()?;
        let t = timed(cfg.n, cfg.max_cell, &mut h, |i| engine.put(&present(&mut rng), values.get(i + cfg.n)))?;
        cells.push(w.finish("overwrite", name, engine, dir, cfg, &t, &h, t.done, inserted)?);
    }
    Ok(())
}

/// A full scan; latency is the time from one entry to the next (one clock
/// read per entry, as db_bench's per-op histogram).
fn scan_all(engine: &dyn Engine, max: Duration) -> Result<(Timed, Histogram<u64>)> {
    let mut h = histogram();
    let start = Instant::now();
    let mut last = start;
    let mut done = 0u64;
    let mut truncated = false;
    engine.scan(&mut |k, v| {
        std::hint::black_box((k.len(), v.len()));
        let now = Instant::now();
        h.saturating_record((now - last).as_nanos() as u64);
        last = now;
        done += 1;
        if done.is_multiple_of(1024) && now - start > max {
            truncated = true;
            return false;
        }
        true
    })?;
    Ok((Timed { done, elapsed: start.elapsed(), truncated, slow: Vec::new(), slow_sched: Vec::new() }, h))
}

fn base_cell(workload: &str, engine: &str, t: &Timed, h: &Histogram<u64>, ops: u64) -> Cell {
    let (p50_us, p99_us, max_us) = summary_us(h);
    Cell {
        workload: workload.into(),
        engine: engine.into(),
        rep: 0,
        ops,
        seconds: t.elapsed.as_secs_f64(),
        ops_per_sec: ops as f64 / t.elapsed.as_secs_f64().max(1e-9),
        p50_us,
        p99_us,
        max_us,
        max_no_steal_us: None,
        write_amp: None,
        space_amp: None,
        bytes_written: None,
        cancelled_bytes: None,
        disk_bytes: None,
        apparent_bytes: None,
        settle_seconds: None,
        truncated: t.truncated,
        peak_rss_kib: 0,
        internal: serde_json::Value::Null,
    }
}

fn read_cell(workload: &str, engine_name: &str, engine: &dyn Engine, t: &Timed, h: &Histogram<u64>) -> Cell {
    let mut c = base_cell(workload, engine_name, t, h, t.done);
    c.internal = engine.internal_stats();
    eprintln!("  {engine_name:8} {workload:11} {:>10.0} ops/s  p99 {:.1} us", c.ops_per_sec, c.p99_us);
    c
}

/// The `/proc/self/io` counters at the start of a write workload.
struct Writes {
    io: (u64, u64),
}

impl Writes {
    fn start() -> Result<Self> {
        Ok(Writes { io: io_written()? })
    }

    /// Settles the engine and completes the cell: `keys` entries written
    /// (for write amplification), `live` distinct keys in the database
    /// (for space amplification).
    #[allow(clippy::too_many_arguments)]
    fn finish(
        self,
        workload: &str,
        name: &str,
        engine: &dyn Engine,
        dir: &Path,
        cfg: &RunConfig,
        t: &Timed,
        h: &Histogram<u64>,
        keys: u64,
        live: u64,
    ) -> Result<Cell> {
        let settle_start = Instant::now();
        engine.settle(cfg.settle_max)?;
        let settle_seconds = settle_start.elapsed().as_secs_f64();
        let io = io_written()?;
        let (disk, apparent) = dir_size(dir)?;
        let mut c = base_cell(workload, name, t, h, keys);
        let written = io.0 - self.io.0;
        c.bytes_written = Some(written);
        c.cancelled_bytes = Some(io.1 - self.io.1);
        c.write_amp = Some(written as f64 / (keys * ENTRY_BYTES).max(1) as f64);
        c.disk_bytes = Some(disk);
        c.apparent_bytes = Some(apparent);
        c.space_amp = Some(disk as f64 / (live * ENTRY_BYTES).max(1) as f64);
        c.settle_seconds = Some(settle_seconds);
        c.internal = engine.internal_stats();
        eprintln!(
            "  {name:8} {workload:11} {:>10.0} ops/s  p99 {:.1} us  max {:.1} us  settle {settle_seconds:.1}s  wa {:.2}  sa {:.2}  {}",
            c.ops_per_sec,
            c.p99_us,
            c.max_us,
            c.write_amp.unwrap_or(0.0),
            c.space_amp.unwrap_or(0.0),
            c.internal
        );
        Ok(c)
    }
}
