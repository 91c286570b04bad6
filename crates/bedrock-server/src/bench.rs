//! `bedrock bench`: a closed-loop load generator over the gRPC API.
//!
//! `--clients` tasks, each with its own connection (spread round robin
//! over the endpoints given), issue requests one at a time until
//! `--requests` have been issued in total or `--duration` has passed; each
//! request has a timeout. Latencies of successful requests go
//! into an HDR histogram (microseconds, 3 significant digits). For `get`
//! the whole key space is written first (bounded by [`PRELOAD_TIMEOUT`]).
//!
//! With `--workload` it runs a YCSB core workload instead ([`crate::ycsb`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bedrock_proto::v1 as pb;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::cli::{BenchArgs, BenchOp};
use crate::client::{self, Client};

/// Longest a single benchmark request may take before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the `get` preload may take.
pub const PRELOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Highest latency the histogram tracks exactly (larger ones are clamped).
const MAX_TRACKED_MICROS: u64 = 60_000_000;

/// The measured result, printed as text or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Measured operation.
    pub op: BenchOp,
    /// Concurrent clients.
    pub clients: u32,
    /// Requests asked for.
    pub requests: u64,
    /// Requests that succeeded.
    pub completed: u64,
    /// Requests that failed or timed out.
    pub errors: u64,
    /// `get` requests that found no value (preloaded keys should exist).
    pub misses: u64,
    /// Wall-clock time of the measured phase, in seconds.
    pub elapsed_secs: f64,
    /// Successful requests per second.
    pub throughput_ops_per_sec: f64,
    /// Latency percentiles of successful requests, in microseconds.
    pub latency_us: Latency,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

/// Per-client tallies.
struct Tally {
    hist: Histogram<u64>,
    errors: u64,
    misses: u64,
}

/// Runs the benchmark and prints the report.
pub async fn run(endpoints: &[String], access: &client::Access, args: BenchArgs) -> anyhow::Result<()> {
    if let Some(workload) = args.workload {
        return crate::ycsb::run(endpoints, access, &args, workload).await;
    }
    let mut clients = Vec::with_capacity(args.clients as usize);
    let mut order = endpoints.to_vec();
    for _ in 0..args.clients {
        clients.push(client::connect(&order, access).await?);
        if !order.is_empty() {
            // The next client starts at the next endpoint.
            order.rotate_left(1);
        }
    }
    let value = Arc::new(vec![b'x'; args.value_size]);
    if args.op == BenchOp::Get {
        preload(&clients, args.key_space, &value).await?;
    }
    let report = measure(clients, &args, value).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

/// The key of index `i`.
fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:012}").into_bytes()
}

/// Writes every key of the key space, spread over the clients.
async fn preload(clients: &[Client], key_space: u64, value: &Arc<Vec<u8>>) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let (mut client, next, value) = (client.clone(), next.clone(), value.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= key_space {
                    return anyhow::Ok(());
                }
                let req = pb::PutRequest { key: key(i), value: value.to_vec() };
                tokio::time::timeout(REQUEST_TIMEOUT, client.put(req)).await.context("preload put timed out")??;
            }
        });
    }
    let all = async {
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(PRELOAD_TIMEOUT, all).await {
        Ok(result) => result.context("preloading keys"),
        Err(_) => bail!("preloading {key_space} keys took over {PRELOAD_TIMEOUT:?}"),
    }
}

/// The measured phase.
async fn measure(clients: Vec<Client>, args: &BenchArgs, value: Arc<Vec<u8>>) -> anyhow::Result<BenchReport> {
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = args.duration.map(|secs| start + Duration::from_secs(secs));
    let mut tasks = tokio::task::JoinSet::new();
    for (id, client) in clients.into_iter().enumerate() {
        let load = Load {
            client,
            op: args.op,
            requests: args.requests,
            key_space: args.key_space,
            value: value.clone(),
            issued: issued.clone(),
            deadline,
            rng: SplitMix64(0x5eed_0000 ^ id as u64),
        };
        tasks.spawn(load.run());
    }
    let mut hist = new_histogram()?;
    let (mut errors, mut misses) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let tally = joined??;
        hist.add(&tally.hist)?;
        errors += tally.errors;
        misses += tally.misses;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let completed = hist.len();
    Ok(BenchReport {
        op: args.op,
        clients: args.clients,
        requests: args.requests,
        completed,
        errors,
        misses,
        elapsed_secs: elapsed,
        throughput_ops_per_sec: if elapsed > 0.0 { completed as f64 / elapsed } else { 0.0 },
        latency_us: Latency {
            mean: hist.mean(),
            p50: hist.value_at_quantile(0.50),
            p95: hist.value_at_quantile(0.95),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
        },
    })
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)?)
}

/// One client's closed loop.
struct Load {
    client: Client,
    op: BenchOp,
    requests: u64,
    key_space: u64,
    value: Arc<Vec<u8>>,
    issued: Arc<AtomicU64>,
    deadline: Option<Instant>,
    rng: SplitMix64,
}

impl Load {
    async fn run(mut self) -> anyhow::Result<Tally> {
        let mut tally = Tally { hist: new_histogram()?, errors: 0, misses: 0 };
        // Bounded by the shared request count and by the deadline.
        while self.deadline.is_none_or(|d| Instant::now() < d)
            && self.issued.fetch_add(1, Ordering::Relaxed) < self.requests
        {
            let k = key(self.rng.next() % self.key_space);
            let started = Instant::now();
            match tokio::time::timeout(REQUEST_TIMEOUT, self.one(k)).await {
                Ok(Ok(found)) => {
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    tally.hist.saturating_record(micros.max(1));
                    tally.misses += u64::from(!found);
                }
                Ok(Err(_)) | Err(_) => tally.errors += 1,
            }
        }
        Ok(tally)
    }

    /// Issues one request; returns whether a value was found (true for puts).
    async fn one(&mut self, key: Vec<u8>) -> Result<bool, tonic::Status> {
        match self.op {
            BenchOp::Put => {
                let req = pb::PutRequest { key, value: self.value.to_vec() };
                self.client.put(req).await.map(|_| true)
            }
            BenchOp::Get => {
                let req = pb::GetRequest { key, serializable: false };
                self.client.get(req).await.map(|r| r.into_inner().kv.is_some())
            }
        }
    }
}

/// A tiny deterministic generator for key choice (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn print_text(r: &BenchReport) {
    let l = &r.latency_us;
    let op = match r.op {
        BenchOp::Put => "put",
        BenchOp::Get => "get",
    };
    println!("op:          {op} ({} clients)", r.clients);
    println!("completed:   {} of {} requests in {:.2} s", r.completed, r.requests, r.elapsed_secs);
    println!("throughput:  {:.0} ops/s", r.throughput_ops_per_sec);
    println!(
        "latency us:  mean {:.0}  p50 {}  p95 {}  p99 {}  p99.9 {}  max {}",
        l.mean, l.p50, l.p95, l.p99, l.p999, l.max
    );
    println!("errors:      {}  misses: {}", r.errors, r.misses);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        assert!(key(9) < key(10));
        assert_eq!(key(7), b"bench/000000000007".to_vec());
    }

    #[test]
    fn splitmix_spreads_keys() {
        let mut rng = SplitMix64(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            seen.insert(rng.next() % 100);
        }
        assert!(seen.len() > 90, "only {} distinct keys of 100", seen.len());
    }
}
