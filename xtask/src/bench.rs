//! `cargo xtask bench <server | engine | txn>`.
//!
//! - `server`: builds the release `bedrock` binary, starts a single node on
//!   a fresh data directory (loopback, an ephemeral port), and runs
//!   `bedrock bench` for put and get with 16 and 64 concurrent gRPC
//!   clients. Prints a markdown table for docs/benchmarks.md.
//! - `cluster`: a 3-node cluster's put throughput (against etcd when it
//!   is installed) and recovery times (see `bench_cluster.rs`).
//! - `engine`, `txn`: run the peer-comparison crates in `bench/`, which
//!   live outside the workspace so their heavy peers (RocksDB, fjall)
//!   never build in `cargo test --workspace`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs the named benchmark with the remaining arguments.
pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("server") => server(args.get(1..).unwrap_or_default()),
        Some("cluster") => crate::bench_cluster::run(args.get(1..).unwrap_or_default()),
        Some(name @ ("engine" | "txn")) => {
            let manifest = format!("bench/{name}-compare/Cargo.toml");
            let mut cmd = vec!["run", "--release", "--manifest-path", manifest.as_str()];
            let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
            if !rest.is_empty() {
                cmd.push("--");
                cmd.extend(rest);
            }
            crate::run("cargo", &cmd)
        }
        _ => bail!("usage: cargo xtask bench <server [--requests N] | cluster [--requests N] [--recovery-keys N] [--runs N] | engine [ARGS] | txn [ARGS]>"),
    }
}

/// Kills the server when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server(args: &[String]) -> Result<()> {
    let requests = match args {
        [flag, n] if flag == "--requests" => n.parse::<u64>().context("--requests takes a number")?,
        [] => 50_000,
        _ => bail!("usage: cargo xtask bench server [--requests N]"),
    };
    let bin = crate::cluster::build_bedrock(true)?;
    let dir = std::env::temp_dir().join(format!("bedrock-bench-{}", std::process::id()));
    let (_server, addr) = start(&bin, &dir)?;
    println!("| op | clients | requests | ops/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for op in ["put", "get"] {
        for clients in ["16", "64"] {
            let report = bench(&bin, &addr, op, clients, requests)?;
            let ms = |field: &str| report["latency_us"][field].as_f64().unwrap_or(f64::NAN) / 1000.0;
            println!(
                "| {op} | {clients} | {requests} | {:.0} | {:.2} | {:.2} | {:.2} |",
                report["throughput_ops_per_sec"].as_f64().unwrap_or(f64::NAN),
                ms("p50"),
                ms("p99"),
                ms("max"),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn start(bin: &Path, dir: &Path) -> Result<(Server, String)> {
    let mut child = Command::new(bin)
        .args(["serve", "--client-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting bedrock serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let server = Server(child);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(addr) = line.strip_prefix("bedrock: serving client API on ") {
            return Ok((server, addr.trim().to_string()));
        }
    }
    bail!("the server exited before announcing its address")
}

fn bench(bin: &Path, addr: &str, op: &str, clients: &str, requests: u64) -> Result<serde_json::Value> {
    let out = Command::new(bin)
        .args(["--endpoints", addr, "bench", "--op", op, "--clients", clients, "--json"])
        .args(["--requests", &requests.to_string(), "--key-space", &requests.to_string()])
        .output()
        .context("running bedrock bench")?;
    if !out.status.success() {
        bail!("bedrock bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("bedrock bench --json output")
}
