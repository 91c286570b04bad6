//! The load and run phases: closed-loop clients, each on its own gRPC
//! connection, issuing one request at a time.
//!
//! Every loop is bounded twice: by a count (the records to load, each
//! client's share of the operations) and by a deadline (the phase's time
//! limit), and each request by [`REQUEST_TIMEOUT`]. A failed or timed-out
//! request is counted as an error of its kind; it never ends the phase.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bedrock_proto::v1 as pb;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

use super::generators::{key_name, InsertSequence};
use super::report::{self, Phase, PhaseReport, PhaseStats, Sample};
use super::workload::{KeyChooser, OpKind, WorkloadSpec};
use crate::bench::REQUEST_TIMEOUT;
use crate::client::Client;

/// How often the progress bar and the throughput timeline are sampled.
const SAMPLE_PERIOD: Duration = Duration::from_millis(100);

/// What both phases need to know.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The workload.
    pub spec: WorkloadSpec,
    /// Records loaded before the run phase.
    pub records: u64,
    /// Operations of the run phase.
    pub operations: u64,
    /// Value size in bytes.
    pub field_length: usize,
    /// The key chooser, built once (the `latest` one sums O(records)
    /// terms) and cloned for each client.
    pub keys: KeyChooser,
    /// Seed; client `i` of a phase uses `seed + i` (and the run phase
    /// offsets it further so it does not repeat the load's values).
    pub seed: u64,
    /// Longest the load phase may take.
    pub load_time_limit: Duration,
    /// Longest the run phase may take.
    pub run_time_limit: Duration,
}

/// Progress shared by the clients of a phase and read by the sampler.
#[derive(Debug, Default)]
struct Counters {
    /// Successful top-level operations.
    ops: AtomicU64,
    /// Failed top-level operations.
    errors: AtomicU64,
    /// Successful operations per kind, read-modify-write parts included.
    by_op: [AtomicU64; 5],
}

impl Counters {
    fn sample(&self, secs: f64) -> Sample {
        Sample {
            secs,
            ops: self.ops.load(Ordering::Relaxed),
            by_op: std::array::from_fn(|i| self.by_op[i].load(Ordering::Relaxed)),
        }
    }
}

/// One client's state.
struct Worker {
    client: Client,
    rng: SmallRng,
    spec: WorkloadSpec,
    keys: KeyChooser,
    value: Vec<u8>,
    inserts: Arc<InsertSequence>,
    counters: Arc<Counters>,
    stats: PhaseStats,
    deadline: Instant,
}

/// What a client hands back at the end of a phase.
struct WorkerResult {
    stats: PhaseStats,
    hit_time_limit: bool,
}

/// Inserts keys `0..records`, spread over the clients.
pub async fn load(clients: &[Client], setup: &Setup) -> anyhow::Result<PhaseReport> {
    let next = Arc::new(InsertSequence::new(0));
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let deadline = start + setup.load_time_limit;
    let mut tasks = JoinSet::new();
    for (i, client) in clients.iter().enumerate() {
        let worker = Worker::new(client.clone(), setup, i as u64, next.clone(), counters.clone(), deadline)?;
        tasks.spawn(worker.load(setup.records));
    }
    let kinds = [OpKind::Insert];
    drive(Phase::Load, setup.records, setup.load_time_limit, &kinds, tasks, counters, start).await
}

/// Runs the workload's mix; client `i` issues its share of the operations.
pub async fn run(clients: &[Client], setup: &Setup) -> anyhow::Result<PhaseReport> {
    let inserts = Arc::new(InsertSequence::new(setup.records));
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let deadline = start + setup.run_time_limit;
    let threads = clients.len() as u64;
    let mut tasks = JoinSet::new();
    for (i, client) in clients.iter().enumerate() {
        // The load used seeds seed..seed+threads.
        let seed_offset = threads + i as u64;
        let worker = Worker::new(client.clone(), setup, seed_offset, inserts.clone(), counters.clone(), deadline)?;
        let quota = setup.operations / threads + u64::from((i as u64) < setup.operations % threads);
        tasks.spawn(worker.run(quota));
    }
    let mut kinds: Vec<OpKind> = setup.spec.mix.iter().map(|(kind, _)| *kind).collect();
    if kinds.contains(&OpKind::ReadModifyWrite) {
        kinds.push(OpKind::Update);
    }
    kinds.sort();
    drive(Phase::Run, setup.operations, setup.run_time_limit, &kinds, tasks, counters, start).await
}

/// Waits for the clients while sampling progress; builds the report.
async fn drive(
    phase: Phase,
    requested: u64,
    time_limit: Duration,
    kinds: &[OpKind],
    mut tasks: JoinSet<anyhow::Result<WorkerResult>>,
    counters: Arc<Counters>,
    start: Instant,
) -> anyhow::Result<PhaseReport> {
    // Clients check the deadline before each operation, and an operation
    // is at most two requests.
    let hard_stop = start + time_limit + 3 * REQUEST_TIMEOUT;
    let bar = progress_bar(phase, requested);
    // Clients started before this point: the counts at 0 s are zeros, not a sample taken now.
    let mut samples = vec![Sample { secs: 0.0, ops: 0, by_op: [0; 5] }];
    let mut stats = PhaseStats::new()?;
    let mut hit_time_limit = false;
    let mut tick = tokio::time::interval(SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => {
                if let Some(joined) = joined {
                    let result = joined??;
                    stats.merge(&result.stats)?;
                    hit_time_limit |= result.hit_time_limit;
                }
            }
            _ = tick.tick() => {
                let sample = counters.sample(start.elapsed().as_secs_f64());
                bar.set_position(sample.ops + counters.errors.load(Ordering::Relaxed));
                samples.push(sample);
                if Instant::now() > hard_stop {
                    tasks.abort_all();
                    bar.abandon();
                    bail!("{phase:?} phase: clients still busy {:?} after its time limit", hard_stop - start - time_limit);
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    samples.push(counters.sample(elapsed));
    let ops = counters.ops.load(Ordering::Relaxed);
    Ok(PhaseReport {
        phase,
        operations_requested: requested,
        operations: ops,
        errors: counters.errors.load(Ordering::Relaxed),
        hit_time_limit,
        elapsed_secs: elapsed,
        throughput_ops_per_sec: if elapsed > 0.0 { ops as f64 / elapsed } else { 0.0 },
        ops: stats.reports(elapsed),
        timeline: report::timeline(&samples, kinds),
    })
}

/// A bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(phase: Phase, total: u64) -> ProgressBar {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let template = "{prefix:>4} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ops, {per_sec:0}, ETA {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(match phase {
        Phase::Load => "load",
        Phase::Run => "run",
    });
    bar
}

/// Microseconds since `started`.
fn micros_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Runs one request with [`REQUEST_TIMEOUT`]; `None` if it failed.
async fn timed<T>(request: impl Future<Output = Result<T, tonic::Status>>) -> Option<(T, u64)> {
    let started = Instant::now();
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Some((value, micros_since(started))),
        Ok(Err(_)) | Err(_) => None,
    }
}

impl Worker {
    fn new(
        client: Client,
        setup: &Setup,
        seed_offset: u64,
        inserts: Arc<InsertSequence>,
        counters: Arc<Counters>,
        deadline: Instant,
    ) -> anyhow::Result<Self> {
        let mut rng = SmallRng::seed_from_u64(setup.seed.wrapping_add(seed_offset));
        // YCSB fills values with random printable characters.
        let value = (0..setup.field_length).map(|_| rng.gen_range(b' '..=b'~')).collect();
        Ok(Self {
            client,
            rng,
            spec: setup.spec,
            keys: setup.keys.clone(),
            value,
            inserts,
            counters,
            stats: PhaseStats::new()?,
            deadline,
        })
    }

    /// Inserts key numbers from the shared sequence until `records` are taken.
    async fn load(mut self, records: u64) -> anyhow::Result<WorkerResult> {
        // At most `records` iterations over all clients: each takes a fresh key number.
        loop {
            if Instant::now() >= self.deadline {
                return Ok(self.finish(true));
            }
            let keynum = self.inserts.next();
            if keynum >= records {
                return Ok(self.finish(false));
            }
            let ok = self.put(OpKind::Insert, key_name(keynum)).await;
            self.done(ok);
        }
    }

    /// Issues `quota` operations of the workload's mix.
    async fn run(mut self, quota: u64) -> anyhow::Result<WorkerResult> {
        for _ in 0..quota {
            if Instant::now() >= self.deadline {
                return Ok(self.finish(true));
            }
            let kind = self.spec.choose(self.rng.gen());
            let ok = self.one(kind).await;
            self.done(ok);
        }
        Ok(self.finish(false))
    }

    fn finish(self, hit_time_limit: bool) -> WorkerResult {
        WorkerResult { stats: self.stats, hit_time_limit }
    }

    /// Counts one finished top-level operation.
    fn done(&self, ok: bool) {
        let counter = if ok { &self.counters.ops } else { &self.counters.errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a success of `kind` in the statistics and the timeline.
    fn record(&mut self, kind: OpKind, micros: u64) {
        self.stats.record(kind, micros);
        self.counters.by_op[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&mut self, kind: OpKind) {
        self.stats.op(kind).errors += 1;
    }

    /// A record that has been inserted, chosen by the workload's distribution.
    fn choose_key(&mut self) -> Vec<u8> {
        let inserted = self.inserts.acknowledged();
        key_name(self.keys.next(&mut self.rng, inserted))
    }

    /// One operation of `kind`; whether it succeeded.
    async fn one(&mut self, kind: OpKind) -> bool {
        match kind {
            OpKind::Insert => {
                let keynum = self.inserts.next();
                let ok = self.put(OpKind::Insert, key_name(keynum)).await;
                self.inserts.acknowledge(keynum);
                ok
            }
            OpKind::Read => {
                let key = self.choose_key();
                self.get(key).await
            }
            OpKind::Update => {
                let key = self.choose_key();
                self.put(OpKind::Update, key).await
            }
            OpKind::Scan => {
                let key = self.choose_key();
                let len = self.rng.gen_range(1..=self.spec.max_scan_length);
                self.scan(key, len).await
            }
            OpKind::ReadModifyWrite => {
                let key = self.choose_key();
                let started = Instant::now();
                let ok = self.get(key.clone()).await && self.put(OpKind::Update, key).await;
                if ok {
                    self.record(OpKind::ReadModifyWrite, micros_since(started));
                } else {
                    self.fail(OpKind::ReadModifyWrite);
                }
                ok
            }
        }
    }

    /// A value: the worker's random bytes with a fresh random prefix, so
    /// successive writes differ.
    fn next_value(&mut self) -> Vec<u8> {
        let mut value = self.value.clone();
        let stamp = format!("{:016x}", self.rng.gen::<u64>());
        let n = stamp.len().min(value.len());
        value[..n].copy_from_slice(&stamp.as_bytes()[..n]);
        value
    }

    async fn put(&mut self, kind: OpKind, key: Vec<u8>) -> bool {
        let req = pb::PutRequest { key, value: self.next_value() };
        match timed(self.client.put(req)).await {
            Some((_, micros)) => {
                self.record(kind, micros);
                true
            }
            None => {
                self.fail(kind);
                false
            }
        }
    }

    /// A read; a missing record counts as a success and as not found.
    async fn get(&mut self, key: Vec<u8>) -> bool {
        let req = pb::GetRequest { key, serializable: false };
        match timed(self.client.get(req)).await {
            Some((resp, micros)) => {
                self.record(OpKind::Read, micros);
                if resp.into_inner().kv.is_none() {
                    self.stats.op(OpKind::Read).not_found += 1;
                }
                true
            }
            None => {
                self.fail(OpKind::Read);
                false
            }
        }
    }

    /// Reads up to `len` records from `start` to the end of the stream.
    async fn scan(&mut self, start: Vec<u8>, len: u64) -> bool {
        let req = pb::ScanRequest { start, end: Vec::new(), limit: len, serializable: false };
        let mut client = self.client.clone();
        let whole = async move {
            let mut stream = client.scan(req).await?.into_inner();
            let mut rows = 0usize;
            // Bounded: the server sends at most `len` rows, and the whole
            // scan by REQUEST_TIMEOUT.
            while let Some(chunk) = stream.message().await? {
                rows += chunk.kvs.len();
            }
            Ok::<_, tonic::Status>(rows)
        };
        match timed(whole).await {
            Some((rows, micros)) => {
                self.record(OpKind::Scan, micros);
                if rows == 0 {
                    self.stats.op(OpKind::Scan).not_found += 1;
                }
                true
            }
            None => {
                self.fail(OpKind::Scan);
                false
            }
        }
    }
}
