//! `cargo xtask bench cluster [--requests N] [--recovery-keys N] [--runs N]`:
//! a 3-node Bedrock cluster (release build, temporary directory, free
//! loopback ports) measured for
//!
//! - put throughput and p50/p99 latency at 1, 16, 64 and 256 concurrent
//!   requests, driven two ways: `bedrock bench` (gRPC, clients spread over
//!   the three endpoints) and this crate's HTTP/1.1 load generator
//!   ([`crate::loadgen`]: `PUT /put`, connections spread over the
//!   endpoints). When `etcd` is on `PATH`, a 3-node etcd cluster gets the
//!   same HTTP load through its v3 JSON gateway (`POST /v3/kv/put`), so the
//!   two systems are compared with one client; otherwise it is skipped
//!   with a message. Both clusters run side by side and their runs
//!   alternate. Each figure is the median of `--runs` runs (default 3);
//!   a run sends `--requests` puts (default 20,000; a tenth
//!   of that with 1 client) of 100-byte values and stops after 60 s;
//! - recovery: (i) the leader SIGKILLed: time until a survivor reports a
//!   new leader (polled with `bedrock status`, every 20 ms) and until a put
//!   through a survivor succeeds, median of `--runs`; (ii) a follower
//!   SIGKILLed after `--recovery-keys` keys (default 1,000,000) are
//!   loaded, restarted at once: time until it serves the last key by a
//!   linearizable read, and its peak RSS; (iii) a follower killed and
//!   wiped, removed, and added back under a new id with `--join`: time
//!   until it serves that read through a snapshot.
//!
//! Prints markdown tables for docs/benchmarks.md. Every wait is bounded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::cluster::{self, NodeSpec, Start};
use crate::loadgen::{self, Api, Report};

/// Concurrent requests measured.
const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];
/// Value size of the throughput runs, bytes.
const VALUE_SIZE: usize = 100;
/// Longest one throughput run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Keys per `/txn` when loading the recovery keys.
const LOAD_BATCH: u64 = 1_000;

struct Opts {
    requests: u64,
    recovery_keys: u64,
    runs: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts { requests: 20_000, recovery_keys: 1_000_000, runs: 3 };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} takes a number"))?;
            let n: u64 = value.parse().with_context(|| format!("{flag} takes a number"))?;
            match flag.as_str() {
                "--requests" => o.requests = n,
                "--recovery-keys" => o.recovery_keys = n,
                "--runs" => o.runs = usize::try_from(n)?,
                _ => bail!("usage: cargo xtask bench cluster [--requests N] [--recovery-keys N] [--runs N]"),
            }
        }
        ensure!(o.requests >= 10 && o.recovery_keys >= 1 && o.runs >= 1, "numbers must be positive");
        Ok(o)
    }

    fn requests_at(&self, clients: usize) -> u64 {
        if clients == 1 {
            self.requests / 10
        } else {
            self.requests
        }
    }
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    let started = Instant::now();
    let bin = cluster::build_bedrock(true)?;
    let tmp = TempDir::new()?;
    println!("machine: {}", machine());
    let mut bedrock = Bedrock::start(&bin, &tmp.0.join("bedrock"))?;
    // Both clusters run side by side and their runs alternate, so a noisy
    // neighbour weighs on both alike.
    let etcd = match which("etcd") {
        Some(etcd) => Some((etcd_version(&etcd), Etcd::start(&etcd, &tmp.0.join("etcd"))?)),
        None => {
            println!("etcd is not on PATH: skipping the etcd comparison (`apt-get install etcd-server` provides it)");
            None
        }
    };
    let mut rows = Vec::new();
    for clients in CONCURRENCY {
        let requests = opts.requests_at(clients);
        let (mut grpc, mut http, mut etcd_runs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..opts.runs {
            grpc.push(bedrock.grpc_bench(clients, requests)?);
            let eps = bedrock.endpoints();
            http.push(loadgen::run_puts(Api::Bedrock, &eps, clients, requests, VALUE_SIZE, RUN_LIMIT)?);
            if let Some((_, e)) = &etcd {
                etcd_runs.push(loadgen::run_puts(Api::Etcd, &e.endpoints, clients, requests, VALUE_SIZE, RUN_LIMIT)?);
            }
        }
        let (grpc, http) = (median(grpc), median(http));
        let etcd_report = (!etcd_runs.is_empty()).then(|| median(etcd_runs));
        eprintln!(
            "{clients} clients: bedrock gRPC {:.0} ops/s, HTTP {:.0} ops/s; etcd HTTP {:.0} ops/s",
            grpc.ops_per_sec,
            http.ops_per_sec,
            etcd_report.map_or(f64::NAN, |e| e.ops_per_sec)
        );
        rows.push((clients, requests, grpc, http, etcd_report));
    }
    let etcd_version = etcd.map(|(version, cluster)| {
        drop(cluster);
        version
    });
    print_throughput(&rows, etcd_version.as_deref(), &opts);

    let failovers = (0..opts.runs).map(|_| bedrock.leader_failover()).collect::<Result<Vec<_>>>()?;
    let load = bedrock.load(opts.recovery_keys)?;
    let restart = bedrock.follower_restart(opts.recovery_keys)?;
    let rejoin = bedrock.wiped_rejoin(opts.recovery_keys)?;
    print_recovery(&failovers, load, &restart, &rejoin, &opts);
    println!("\n(total time {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// The median of each figure separately.
fn median(runs: Vec<Report>) -> Report {
    let pick = |f: fn(&Report) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Report {
        completed: runs.iter().map(|r| r.completed).sum::<u64>() / runs.len() as u64,
        errors: runs.iter().map(|r| r.errors).sum(),
        ops_per_sec: pick(|r| r.ops_per_sec),
        p50_ms: pick(|r| r.p50_ms),
        p99_ms: pick(|r| r.p99_ms),
    }
}

fn median_duration(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

type Row = (usize, u64, Report, Report, Option<Report>);

fn print_throughput(rows: &[Row], etcd: Option<&str>, opts: &Opts) {
    println!();
    println!(
        "Puts of {VALUE_SIZE}-byte values, 3 nodes on loopback, median of {} runs of {} requests ({} with 1 client).",
        opts.runs,
        opts.requests,
        opts.requests / 10
    );
    println!("Clients: bedrock gRPC = `bedrock bench`; HTTP = xtask's HTTP/1.1 load generator, keep-alive connections");
    println!(
        "spread over the three nodes (bedrock `PUT /put`; etcd {} v3 JSON gateway `POST /v3/kv/put`).",
        etcd.unwrap_or("(not run)")
    );
    println!();
    println!("| clients | bedrock gRPC ops/s | p50 ms | p99 ms | bedrock HTTP ops/s | p50 ms | p99 ms | etcd HTTP ops/s | p50 ms | p99 ms | bedrock/etcd (HTTP) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (clients, _, g, h, e) in rows {
        let etcd = e.map_or("| – | – | – | – |".to_string(), |e| {
            format!(
                "| {:.0} | {:.2} | {:.2} | {:.2}× |",
                e.ops_per_sec,
                e.p50_ms,
                e.p99_ms,
                h.ops_per_sec / e.ops_per_sec
            )
        });
        println!(
            "| {clients} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} {etcd}",
            g.ops_per_sec, g.p50_ms, g.p99_ms, h.ops_per_sec, h.p50_ms, h.p99_ms
        );
    }
    let errors: u64 = rows.iter().map(|(_, _, g, h, e)| g.errors + h.errors + e.map_or(0, |e| e.errors)).sum();
    println!("\nfailed requests over all runs: {errors}");
}

fn print_recovery(failovers: &[(Duration, Duration)], load: Duration, restart: &Restart, rejoin: &Rejoin, opts: &Opts) {
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let leader = median_duration(failovers.iter().map(|f| f.0).collect());
    let put = median_duration(failovers.iter().map(|f| f.1).collect());
    let keys = opts.recovery_keys;
    println!();
    println!("| recovery | time |");
    println!("|---|---|");
    println!("| leader SIGKILL → new leader (median of {}) | {} |", failovers.len(), secs(leader));
    println!(
        "| leader SIGKILL → first successful put through a survivor (median of {}) | {} |",
        failovers.len(),
        secs(put)
    );
    println!(
        "| follower SIGKILL after {keys} keys → restarted process serving its client API | {} |",
        secs(restart.serving)
    );
    println!("| follower SIGKILL after {keys} keys → serving a linearizable read | {} |", secs(restart.read));
    println!(
        "| wiped member re-added with a new id → serving a linearizable read (snapshot of {:.1} MiB) | {} |",
        rejoin.snapshot_bytes as f64 / (1 << 20) as f64,
        secs(rejoin.read)
    );
    println!();
    println!(
        "each run: {}; loading {keys} keys ({LOAD_BATCH} per /txn, 8 HTTP clients) took {}; restarted follower's peak RSS {} MiB",
        failovers.iter().map(|f| format!("{}/{}", secs(f.0), secs(f.1))).collect::<Vec<_>>().join(", "),
        secs(load),
        restart.peak_rss_kib / 1024
    );
}

/// Free loopback ports (bound, then released).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("bedrock-bench-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first `name` on `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu})")
}

fn etcd_version(etcd: &Path) -> String {
    let out = Command::new(etcd).arg("--version").output().map(|o| o.stdout).unwrap_or_default();
    let text = String::from_utf8_lossy(&out);
    let v = text.lines().find_map(|l| l.strip_prefix("etcd Version: ")).unwrap_or("?");
    format!("etcd {}", v.trim())
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Polls `check` every 5 ms until it returns `Some`, for at most `limit`.
fn poll<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The key and value of recovery key `i`.
fn recovery_kv(i: u64) -> (String, String) {
    (format!("rk/{i:09}"), format!("{i:09}-{}", "v".repeat(90)))
}

struct Restart {
    serving: Duration,
    read: Duration,
    peak_rss_kib: u64,
}

struct Rejoin {
    read: Duration,
    snapshot_bytes: u64,
}

/// The Bedrock cluster under test.
struct Bedrock {
    bin: PathBuf,
    ic: String,
    nodes: BTreeMap<u64, NodeSpec>,
    procs: BTreeMap<u64, Child>,
}

impl Drop for Bedrock {
    fn drop(&mut self) {
        for child in self.procs.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Bedrock {
    fn start(bin: &Path, dir: &Path) -> Result<Bedrock> {
        std::fs::create_dir_all(dir)?;
        let ports = free_ports(6)?;
        let specs: Vec<NodeSpec> =
            (1..=3).map(|i| NodeSpec::new(i, ports[i as usize - 1], ports[i as usize + 2], dir)).collect();
        let ic = cluster::initial_cluster(&specs);
        let mut b = Bedrock { bin: bin.to_path_buf(), ic, nodes: BTreeMap::new(), procs: BTreeMap::new() };
        for s in specs {
            b.nodes.insert(s.id, s);
        }
        for id in 1..=3 {
            b.spawn(id, None)?;
        }
        cluster::wait_leader(bin, &b.endpoints(), None, Duration::from_secs(30))?;
        Ok(b)
    }

    /// Starts node `id` (joining through `join` if given) and waits until
    /// it serves; returns when the process was started.
    fn spawn(&mut self, id: u64, join: Option<&str>) -> Result<Instant> {
        let spec = &self.nodes[&id];
        let start = match join {
            Some(endpoint) => Start::Join(endpoint),
            None => Start::Initial(&self.ic),
        };
        let at = Instant::now();
        let mut started = cluster::spawn(&self.bin, spec, &start, &[])?;
        let waited = cluster::wait_serving(spec, &mut started, Duration::from_secs(120));
        self.procs.insert(id, started.child);
        waited?;
        Ok(at)
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.procs.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.procs.keys().map(|id| self.nodes[id].client.clone()).collect()
    }

    fn leader(&self) -> Result<u64> {
        cluster::wait_leader(&self.bin, &self.endpoints(), None, Duration::from_secs(30))
    }

    fn follower(&self) -> Result<u64> {
        let leader = self.leader()?;
        self.procs.keys().copied().find(|&id| id != leader).context("no follower")
    }

    fn grpc_bench(&self, clients: usize, requests: u64) -> Result<Report> {
        let out = Command::new(&self.bin)
            .args(["--endpoints", &self.endpoints().join(","), "bench", "--op", "put", "--json"])
            .args(["--clients", &clients.to_string(), "--requests", &requests.to_string()])
            .args(["--key-space", &requests.to_string(), "--value-size", &VALUE_SIZE.to_string()])
            .args(["--duration", &RUN_LIMIT.as_secs().to_string()])
            .stderr(Stdio::inherit())
            .output()
            .context("run bedrock bench")?;
        ensure!(out.status.success(), "bedrock bench failed");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).context("bedrock bench --json output")?;
        let ms = |field: &str| r["latency_us"][field].as_f64().unwrap_or(f64::NAN) / 1000.0;
        Ok(Report {
            completed: r["completed"].as_u64().unwrap_or(0),
            errors: r["errors"].as_u64().unwrap_or(0),
            ops_per_sec: r["throughput_ops_per_sec"].as_f64().unwrap_or(f64::NAN),
            p50_ms: ms("p50"),
            p99_ms: ms("p99"),
        })
    }

    /// (i): SIGKILLs the leader; returns the time until a survivor reports
    /// a new leader and until a put through a survivor succeeds. The old
    /// leader is restarted afterwards.
    fn leader_failover(&mut self) -> Result<(Duration, Duration)> {
        let old = self.leader()?;
        // Let the restarted node of the previous run catch up first.
        std::thread::sleep(Duration::from_secs(2));
        self.kill(old);
        let killed = Instant::now();
        let survivors = self.endpoints();
        let (bin, eps) = (self.bin.clone(), survivors.clone());
        let elected = std::thread::spawn(move || {
            cluster::wait_leader(&bin, &eps, Some(old), Duration::from_secs(30)).map(|_| killed.elapsed())
        });
        let put = poll("a put through a survivor", Duration::from_secs(30), || {
            matches!(loadgen::request(&survivors[0], "PUT", "/put?key=failover-probe", b"v"), Ok((200, _)))
                .then(|| killed.elapsed())
        });
        let elected = elected.join().map_err(|_| anyhow::anyhow!("leader poll panicked"))?;
        self.spawn(old, None)?;
        let (elected, put) = (elected?, put?);
        eprintln!("leader {old} killed: new leader after {elected:?}, first put after {put:?}");
        Ok((elected, put))
    }

    /// Loads `keys` recovery keys through `/txn`; returns how long it took.
    fn load(&self, keys: u64) -> Result<Duration> {
        let started = Instant::now();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let endpoints = self.endpoints();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (next, endpoint) = (next.clone(), endpoints[t % endpoints.len()].clone());
                std::thread::spawn(move || -> Result<()> {
                    loop {
                        let first = next.fetch_add(LOAD_BATCH, std::sync::atomic::Ordering::Relaxed);
                        if first >= keys {
                            return Ok(());
                        }
                        let puts: Vec<serde_json::Value> = (first..keys.min(first + LOAD_BATCH))
                            .map(|i| {
                                let (k, v) = recovery_kv(i);
                                serde_json::json!({"put": {"key": k, "value": v}})
                            })
                            .collect();
                        let body = serde_json::to_vec(&serde_json::json!({ "success": puts }))?;
                        let (status, resp) = loadgen::request(&endpoint, "POST", "/txn", &body)?;
                        ensure!(status == 200, "/txn answered {status}: {}", String::from_utf8_lossy(&resp));
                        ensure!(started.elapsed() < Duration::from_secs(1800), "loading took over 30 minutes");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        }
        eprintln!("loaded {keys} keys in {:?}", started.elapsed());
        Ok(started.elapsed())
    }

    /// Polls a linearizable read of the last recovery key on `id` until it
    /// returns the right value.
    fn wait_read(&self, id: u64, keys: u64, limit: Duration) -> Result<()> {
        let (key, value) = recovery_kv(keys - 1);
        let endpoint = self.nodes[&id].client.clone();
        poll(&format!("node {id} to serve {key}"), limit, || {
            match loadgen::request(&endpoint, "GET", &format!("/get?key={key}"), b"") {
                Ok((200, body)) if body == value.as_bytes() => Some(()),
                _ => None,
            }
        })
    }

    /// (ii): SIGKILLs a follower and restarts it at once.
    fn follower_restart(&mut self, keys: u64) -> Result<Restart> {
        let f = self.follower()?;
        self.kill(f);
        let started = self.spawn(f, None)?;
        let serving = started.elapsed();
        self.wait_read(f, keys, Duration::from_secs(300))?;
        let read = started.elapsed();
        let peak_rss_kib = peak_rss_kib(self.procs[&f].id());
        eprintln!("follower {f} restarted: serving after {serving:?}, read after {read:?}");
        Ok(Restart { serving, read, peak_rss_kib })
    }

    /// (iii): kills a follower, wipes it, and adds it back as a new member.
    fn wiped_rejoin(&mut self, keys: u64) -> Result<Rejoin> {
        let leader = self.leader()?;
        let f = self.follower()?;
        self.kill(f);
        let old = self.nodes.remove(&f).context("spec")?;
        std::fs::remove_dir_all(&old.data)?;
        let via = self.nodes[&leader].client.clone();
        self.cli(&via, &["member", "remove", &f.to_string()])?;
        let id = self.nodes.keys().max().copied().unwrap_or(0).max(f) + 1;
        let ports = free_ports(2)?;
        let dir = old.data.parent().context("data dir has a parent")?;
        let spec = NodeSpec::new(id, ports[0], ports[1], dir);
        self.cli(&via, &["member", "add", &id.to_string(), &spec.raft, &spec.client])?;
        self.nodes.insert(id, spec);
        let started = self.spawn(id, Some(&via))?;
        self.wait_read(id, keys, Duration::from_secs(600))?;
        let read = started.elapsed();
        let log = std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default();
        let snapshot_bytes = log
            .lines()
            .filter(|l| l.contains("snapshot received"))
            .filter_map(|l| l.split("bytes=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        eprintln!("node {f} wiped, rejoined as {id}: read after {read:?}, snapshot {snapshot_bytes} bytes");
        poll("the new member to be promoted", Duration::from_secs(60), || {
            self.cli(&via, &["member", "promote", &id.to_string()]).ok()
        })?;
        Ok(Rejoin { read, snapshot_bytes })
    }

    fn cli(&self, endpoint: &str, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin).args(["--endpoints", endpoint]).args(args).output()?;
        ensure!(out.status.success(), "bedrock {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A 3-node etcd cluster on free loopback ports.
struct Etcd {
    procs: Vec<Child>,
    endpoints: Vec<String>,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Etcd {
    fn start(etcd: &Path, dir: &Path) -> Result<Etcd> {
        std::fs::create_dir_all(dir)?;
        let ports = free_ports(6)?;
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[3 + i]);
        let initial = (0..3).map(|i| format!("e{i}={}", peer(i))).collect::<Vec<_>>().join(",");
        let mut cluster = Etcd { procs: Vec::new(), endpoints: Vec::new() };
        for (i, port) in ports.iter().take(3).enumerate() {
            let client = format!("http://127.0.0.1:{port}");
            let log = std::fs::File::create(dir.join(format!("e{i}.log")))?;
            let child = Command::new(etcd)
                .args(["--name", &format!("e{i}"), "--data-dir"])
                .arg(dir.join(format!("e{i}")))
                .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer(i), "--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "bedrock-bench", "--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("start etcd")?;
            cluster.procs.push(child);
            cluster.endpoints.push(format!("127.0.0.1:{port}"));
        }
        for e in &cluster.endpoints {
            poll(&format!("etcd at {e} to be healthy"), Duration::from_secs(60), || {
                match loadgen::request(e, "GET", "/health", b"") {
                    Ok((200, body)) if String::from_utf8_lossy(&body).contains("true") => Some(()),
                    _ => None,
                }
            })?;
        }
        Ok(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ops: f64, p50: f64) -> Report {
        Report { completed: 10, errors: 1, ops_per_sec: ops, p50_ms: p50, p99_ms: p50 * 2.0 }
    }

    #[test]
    fn median_takes_each_figure_separately() {
        let m = median(vec![report(3.0, 9.0), report(1.0, 7.0), report(2.0, 8.0)]);
        assert_eq!((m.ops_per_sec, m.p50_ms, m.p99_ms, m.errors), (2.0, 8.0, 16.0, 3));
    }

    #[test]
    fn flags_and_defaults() {
        let o = Opts::parse(&[]).unwrap();
        assert_eq!((o.requests, o.recovery_keys, o.runs), (20_000, 1_000_000, 3));
        assert_eq!((o.requests_at(1), o.requests_at(16)), (2_000, 20_000));
        let args: Vec<String> = ["--recovery-keys", "5000", "--runs", "1"].iter().map(|s| s.to_string()).collect();
        let o = Opts::parse(&args).unwrap();
        assert_eq!((o.recovery_keys, o.runs), (5_000, 1));
        assert!(Opts::parse(&["--nope".to_string(), "1".to_string()]).is_err());
    }
}
