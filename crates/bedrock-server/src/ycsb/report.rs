//! Results of a YCSB run: per-operation latency statistics, throughput
//! over time, the JSON shape and the text table.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::workload::OpKind;
use crate::bench::Latency;
use crate::cli::YcsbWorkload;

/// Highest latency the histograms track exactly, in microseconds (larger
/// ones are clamped).
const MAX_TRACKED_MICROS: u64 = 60_000_000;

/// Phases shorter than this get 500 ms timeline intervals, longer ones 1 s.
pub const SHORT_PHASE_SECS: f64 = 30.0;

/// The whole result of `bedrock bench --workload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YcsbReport {
    /// Which workload.
    pub workload: YcsbWorkload,
    /// Its mix and distribution in words.
    pub description: String,
    /// Concurrent clients, each with its own connection.
    pub threads: u32,
    /// Records loaded (or assumed present with `--skip-load`).
    pub records: u64,
    /// Size of each record's value, in bytes.
    pub field_length_bytes: u32,
    /// Seed of the random generators.
    pub seed: u64,
    /// The load phase, unless skipped.
    pub load: Option<PhaseReport>,
    /// The run phase.
    pub run: PhaseReport,
    /// Failed operations over both phases (0 in a clean run).
    pub errors: u64,
}

/// Which phase a [`PhaseReport`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Inserting the records.
    Load,
    /// The workload's operation mix.
    Run,
}

/// The result of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Which phase.
    pub phase: Phase,
    /// Operations asked for.
    pub operations_requested: u64,
    /// Operations that succeeded (a read-modify-write counts once).
    pub operations: u64,
    /// Operations that failed or timed out.
    pub errors: u64,
    /// Whether the phase stopped at its time limit before all operations
    /// were issued.
    pub hit_time_limit: bool,
    /// Wall-clock time of the phase, in seconds.
    pub elapsed_secs: f64,
    /// Successful operations per second.
    pub throughput_ops_per_sec: f64,
    /// Statistics per operation kind (kinds that did not occur are left out).
    pub ops: Vec<OpReport>,
    /// Completed operations per interval.
    pub timeline: Timeline,
}

/// Statistics of one operation kind in one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    /// The kind.
    pub op: OpKind,
    /// Successful operations.
    pub count: u64,
    /// Failed or timed-out operations.
    pub errors: u64,
    /// Reads that found no value.
    pub not_found: u64,
    /// Successful operations per second of the phase.
    pub ops_per_sec: f64,
    /// Latency of successful operations, in microseconds.
    pub latency_us: Latency,
}

/// Throughput over time: completed operations per fixed interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Interval length in seconds (0.5 for phases under 30 s, else 1).
    pub interval_secs: f64,
    /// One point per interval, in order; the last may be shorter.
    pub points: Vec<TimelinePoint>,
}

/// Operations completed in one interval of a [`Timeline`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the interval, in seconds since the phase started.
    pub start_secs: f64,
    /// Length of the interval, in seconds.
    pub secs: f64,
    /// Successful operations (a read-modify-write counts once).
    pub ops: u64,
    /// Successful operations per kind (a read-modify-write also counts
    /// its read and its update).
    pub by_op: BTreeMap<OpKind, u64>,
}

impl TimelinePoint {
    /// Operations per second in this interval.
    pub fn ops_per_sec(&self) -> f64 {
        per_sec(self.ops, self.secs)
    }
}

fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// Latencies and failures of one operation kind, kept per client and
/// merged at the end of a phase.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latencies of successful operations, in microseconds.
    pub hist: Histogram<u64>,
    /// Failed or timed-out operations.
    pub errors: u64,
    /// Reads that found no value.
    pub not_found: u64,
}

impl OpStats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self { hist: Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)?, errors: 0, not_found: 0 })
    }
}

/// [`OpStats`] for every kind, indexed by [`OpKind::index`].
#[derive(Debug, Clone)]
pub struct PhaseStats {
    /// One entry per kind.
    pub ops: Vec<OpStats>,
}

impl PhaseStats {
    /// Empty statistics.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self { ops: OpKind::ALL.iter().map(|_| OpStats::new()).collect::<anyhow::Result<_>>()? })
    }

    /// The statistics of `kind`.
    pub fn op(&mut self, kind: OpKind) -> &mut OpStats {
        &mut self.ops[kind.index()]
    }

    /// Records a successful operation that took `micros`.
    pub fn record(&mut self, kind: OpKind, micros: u64) {
        self.op(kind).hist.saturating_record(micros.max(1));
    }

    /// Adds another client's statistics.
    pub fn merge(&mut self, other: &PhaseStats) -> anyhow::Result<()> {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.hist.add(&theirs.hist)?;
            mine.errors += theirs.errors;
            mine.not_found += theirs.not_found;
        }
        Ok(())
    }

    /// Per-kind reports for the kinds that occurred, over `elapsed_secs`.
    pub fn reports(&self, elapsed_secs: f64) -> Vec<OpReport> {
        OpKind::ALL
            .iter()
            .zip(&self.ops)
            .filter(|(_, s)| s.hist.len() + s.errors > 0)
            .map(|(&op, s)| OpReport {
                op,
                count: s.hist.len(),
                errors: s.errors,
                not_found: s.not_found,
                ops_per_sec: per_sec(s.hist.len(), elapsed_secs),
                latency_us: latency(&s.hist),
            })
            .collect()
    }
}

/// Percentiles of `hist` (all 0 when it is empty).
pub fn latency(hist: &Histogram<u64>) -> Latency {
    Latency {
        mean: hist.mean(),
        p50: hist.value_at_quantile(0.50),
        p95: hist.value_at_quantile(0.95),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
        max: hist.max(),
    }
}

/// Cumulative successful operations at one moment of a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the phase started.
    pub secs: f64,
    /// Operations so far (a read-modify-write counts once).
    pub ops: u64,
    /// Operations so far per kind, indexed by [`OpKind::index`].
    pub by_op: [u64; 5],
}

/// Buckets cumulative `samples` (increasing in time, the last one at the
/// end of the phase) into fixed intervals. Counts at interval boundaries
/// are interpolated linearly between the neighbouring samples, so each
/// interval's count is exact up to the sampling period, and the counts
/// add up to the final sample's.
pub fn timeline(samples: &[Sample], kinds: &[OpKind]) -> Timeline {
    let elapsed = samples.last().map_or(0.0, |s| s.secs);
    let interval_secs = if elapsed < SHORT_PHASE_SECS { 0.5 } else { 1.0 };
    let intervals = (elapsed / interval_secs).ceil() as usize;
    let mut points = Vec::with_capacity(intervals);
    let mut before = [0; 6];
    for k in 0..intervals {
        let start_secs = k as f64 * interval_secs;
        let end = ((k + 1) as f64 * interval_secs).min(elapsed);
        let after = cumulative_at(samples, end);
        let by_op = kinds.iter().map(|&kind| (kind, after[kind.index() + 1] - before[kind.index() + 1])).collect();
        points.push(TimelinePoint { start_secs, secs: end - start_secs, ops: after[0] - before[0], by_op });
        before = after;
    }
    Timeline { interval_secs, points }
}

/// The counts (`ops`, then `by_op`) at `secs`, interpolated.
fn cumulative_at(samples: &[Sample], secs: f64) -> [u64; 6] {
    let counts = |s: &Sample| {
        let mut all = [s.ops, 0, 0, 0, 0, 0];
        all[1..].copy_from_slice(&s.by_op);
        all
    };
    let after = samples.iter().position(|s| s.secs >= secs);
    match after {
        None => samples.last().map_or([0; 6], counts),
        Some(0) => counts(&samples[0]),
        Some(i) => {
            let (a, b) = (&samples[i - 1], &samples[i]);
            let f = if b.secs > a.secs { (secs - a.secs) / (b.secs - a.secs) } else { 1.0 };
            let (ca, cb) = (counts(a), counts(b));
            std::array::from_fn(|j| ca[j] + ((cb[j] - ca[j]) as f64 * f).round() as u64)
        }
    }
}

/// Prints the report as a table on stdout.
pub fn print_text(report: &YcsbReport) {
    println!("YCSB workload {}", report.description);
    println!(
        "{} threads, {} records of {} bytes, seed {}",
        report.threads, report.records, report.field_length_bytes, report.seed
    );
    for phase in report.load.iter().chain([&report.run]) {
        let name = phase_name(phase.phase);
        println!(
            "{name}: {} of {} operations in {:.2} s, {:.0} ops/s, {} errors{}",
            phase.operations,
            phase.operations_requested,
            phase.elapsed_secs,
            phase.throughput_ops_per_sec,
            phase.errors,
            if phase.hit_time_limit { " (stopped at the time limit)" } else { "" }
        );
    }
    println!();
    println!(
        "{:<5} {:<17} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9}",
        "phase", "op", "count", "ops/s", "p50 us", "p95 us", "p99 us", "p99.9 us", "max us", "errors", "not found"
    );
    for phase in report.load.iter().chain([&report.run]) {
        for op in &phase.ops {
            let l = &op.latency_us;
            println!(
                "{:<5} {:<17} {:>9} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9}",
                phase_name(phase.phase),
                op.op.name(),
                op.count,
                op.ops_per_sec,
                l.p50,
                l.p95,
                l.p99,
                l.p999,
                l.max,
                op.errors,
                op.not_found
            );
        }
    }
    print_timeline_summary(&report.run.timeline);
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Load => "load",
        Phase::Run => "run",
    }
}

/// One line: the spread of per-interval throughput in the run phase.
fn print_timeline_summary(timeline: &Timeline) {
    // The last interval is usually partial and noisy; leave it out unless it is the only one.
    let mut sorted: Vec<f64> = timeline
        .points
        .iter()
        .filter(|p| p.secs >= timeline.interval_secs * 0.999 || timeline.points.len() == 1)
        .map(TimelinePoint::ops_per_sec)
        .collect();
    sorted.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
        let median = sorted[sorted.len() / 2];
        println!();
        println!(
            "run throughput per {} s interval: min {min:.0}, median {median:.0}, max {max:.0} ops/s ({} intervals)",
            timeline.interval_secs,
            sorted.len()
        );
    }
}
