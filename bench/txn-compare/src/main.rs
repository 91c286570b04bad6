//! `txn-compare`: a read-modify-write transaction benchmark of Bedrock's
//! optimistic and pessimistic transactions against fjall's optimistic
//! transactions, in one run on the same machine.
//!
//! Workload: `--keys` keys (default 100,000) with 100-byte values holding a
//! counter. A transaction picks 4 distinct keys (uniform, or Zipfian with
//! θ = 0.99, scrambled over the key space as in YCSB), and for each, in
//! the order drawn, reads the value (pessimistic Bedrock: `get_for_update`),
//! increments the counter and writes it back, then commits. An aborted
//! attempt (conflict, deadlock victim, lock timeout) is retried at once
//! with the same keys until it commits, the same policy for every engine.
//! Each cell (distribution × threads × engine) runs for `--seconds` on a
//! fresh, preloaded store. Afterwards the sum of all counters must equal
//! 4 × the commits counted, which catches a lost update in any engine.
//! With `--repeat N` (default 3) every cell runs N times (engines taking turns) and
//! the run with the median commits/s is reported.
//!
//! Output: a Markdown table of commits/s, abort rate (aborted attempts /
//! all attempts) and the ratio of Bedrock's commits/s to fjall's.

mod engines;
mod zipf;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engines::{Attempt, Bedrock, Engine, Fjall, Result};
use zipf::{KeyChooser, Rng, Zipfian};

const KEYS_PER_TXN: usize = 4;

struct Args {
    seconds: f64,
    keys: u64,
    threads: Vec<usize>,
    dists: Vec<String>,
    engines: Vec<String>,
    sync: bool,
    dir: Option<PathBuf>,
    repeat: usize,
}

const USAGE: &str = "usage: txn-compare [--seconds S] [--keys N] [--threads 1,8] \
[--dist uniform,zipfian] [--engines bedrock-optimistic,bedrock-pessimistic,fjall] [--sync] [--dir PATH] [--repeat N]";

fn parse_args() -> Result<Args> {
    let mut a = Args {
        seconds: 5.0,
        keys: 100_000,
        threads: vec![1, 8],
        dists: vec!["uniform".into(), "zipfian".into()],
        engines: vec!["bedrock-optimistic".into(), "bedrock-pessimistic".into(), "fjall".into()],
        sync: false,
        dir: None,
        repeat: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let list = |v: String| v.split(',').map(str::to_string).collect::<Vec<_>>();
        match flag.as_str() {
            "--seconds" => a.seconds = value()?.parse()?,
            "--keys" => a.keys = value()?.parse()?,
            "--threads" => {
                a.threads = list(value()?).iter().map(|t| t.parse()).collect::<std::result::Result<_, _>>()?
            }
            "--dist" => a.dists = list(value()?),
            "--engines" => a.engines = list(value()?),
            "--sync" => a.sync = true,
            "--dir" => a.dir = Some(value()?.into()),
            "--repeat" => a.repeat = value()?.parse::<usize>()?.max(1),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    Ok(a)
}

/// Result of one cell.
struct Cell {
    dist: String,
    threads: usize,
    engine: &'static str,
    commits: u64,
    aborts: u64,
    elapsed: Duration,
}

impl Cell {
    fn commits_per_sec(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }

    fn abort_rate(&self) -> f64 {
        let attempts = self.commits + self.aborts;
        if attempts == 0 {
            0.0
        } else {
            self.aborts as f64 / attempts as f64
        }
    }
}

fn pick_keys(chooser: &KeyChooser, rng: &mut Rng) -> [u64; KEYS_PER_TXN] {
    let mut keys = [u64::MAX; KEYS_PER_TXN];
    let mut n = 0;
    while n < KEYS_PER_TXN {
        let k = chooser.next(rng);
        if !keys[..n].contains(&k) {
            keys[n] = k;
            n += 1;
        }
    }
    keys
}

fn run_cell(
    engine: &dyn Engine,
    chooser: &KeyChooser,
    threads: usize,
    seconds: f64,
    seed: u64,
) -> Result<(u64, u64, Duration)> {
    let stop = AtomicBool::new(false);
    let (commits, aborts) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, commits, aborts) = (&stop, &commits, &aborts);
                s.spawn(move || -> Result<()> {
                    let mut rng = Rng::new(seed * 1000 + t as u64);
                    while !stop.load(Ordering::Relaxed) {
                        let keys = pick_keys(chooser, &mut rng);
                        while engine.read_modify_write(&keys)? == Attempt::Aborted {
                            aborts.fetch_add(1, Ordering::Relaxed);
                        }
                        commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().map_err(|_| "worker panicked")??;
        }
        Ok(())
    })?;
    Ok((commits.into_inner(), aborts.into_inner(), start.elapsed()))
}

fn open_engine(name: &str, dir: &std::path::Path, sync: bool) -> Result<Box<dyn Engine>> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(match name {
        "bedrock-optimistic" => Box::new(Bedrock::open(&dir, false, sync)?),
        "bedrock-pessimistic" => Box::new(Bedrock::open(&dir, true, sync)?),
        "fjall" => Box::new(Fjall::open(&dir, sync)?),
        other => return Err(format!("unknown engine {other}").into()),
    })
}

fn chooser(dist: &str, keys: u64) -> Result<KeyChooser> {
    match dist {
        "uniform" => Ok(KeyChooser::Uniform { n: keys }),
        "zipfian" => Ok(KeyChooser::Zipfian(Zipfian::new(keys, 0.99))),
        other => Err(format!("unknown distribution {other}").into()),
    }
}

/// Runs every cell of one engine, each on a fresh, preloaded store (so no
/// cell inherits another's memtable or compaction debt), and checks after
/// each that the counters add up.
fn bench_engine(name: &str, args: &Args, root: &std::path::Path) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for (d, dist) in args.dists.iter().enumerate() {
        let chooser = chooser(dist, args.keys)?;
        for &threads in &args.threads {
            let engine = open_engine(name, &root.join(format!("{dist}-{threads}")), args.sync)?;
            engine.preload(args.keys)?;
            let (commits, aborts, elapsed) = run_cell(engine.as_ref(), &chooser, threads, args.seconds, d as u64 + 1)?;
            let total = engine.total(args.keys)?;
            if total != commits * KEYS_PER_TXN as u64 {
                return Err(format!("{name}: counters sum to {total}, expected {}: lost updates", commits * 4).into());
            }
            let cell = Cell { dist: dist.clone(), threads, engine: engine.name(), commits, aborts, elapsed };
            eprintln!(
                "{:>20} {:>8} {threads:>2} threads: {:>9.0} commits/s, abort rate {:.3}",
                cell.engine,
                cell.dist,
                cell.commits_per_sec(),
                cell.abort_rate()
            );
            cells.push(cell);
        }
    }
    Ok(cells)
}

fn print_table(cells: &[Cell], args: &Args) {
    let durability = if args.sync { "fdatasync per commit" } else { "written to the OS per commit, no fsync" };
    println!(
        "{} keys, {KEYS_PER_TXN} read-modify-writes per transaction, {} s per cell, {durability}\n",
        args.keys, args.seconds
    );
    println!("| distribution | threads | engine | commits/s | abort rate | bedrock / fjall |");
    println!("|---|---:|---|---:|---:|---:|");
    for c in cells {
        let fjall = cells.iter().find(|f| f.engine == "fjall-optimistic" && f.dist == c.dist && f.threads == c.threads);
        let ratio = match fjall {
            Some(f) if c.engine.starts_with("bedrock") && f.commits > 0 => {
                format!("{:.2}", c.commits_per_sec() / f.commits_per_sec())
            }
            _ => "".into(),
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.1}% | {ratio} |",
            c.dist,
            c.threads,
            c.engine,
            c.commits_per_sec(),
            100.0 * c.abort_rate()
        );
    }
}

/// One cell per (distribution, threads, engine): the run with the median
/// commits/s among the repeats.
fn medians(mut runs: Vec<Cell>) -> Vec<Cell> {
    runs.sort_by(|a, b| {
        (a.dist.as_str(), a.threads, a.engine)
            .cmp(&(b.dist.as_str(), b.threads, b.engine))
            .then(a.commits_per_sec().total_cmp(&b.commits_per_sec()))
    });
    let mut out = Vec::new();
    let mut group: Vec<Cell> = Vec::new();
    for cell in runs {
        if group.first().is_some_and(|g| g.dist != cell.dist || g.threads != cell.threads || g.engine != cell.engine) {
            let n = group.len();
            out.push(group.swap_remove(n / 2));
            group.clear();
        }
        group.push(cell);
    }
    if !group.is_empty() {
        let n = group.len();
        out.push(group.swap_remove(n / 2));
    }
    out
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let root =
        args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("txn-compare-{}", std::process::id())));
    if root.exists() {
        return Err(format!("{} exists; pass an empty --dir", root.display()).into());
    }
    let mut runs = Vec::new();
    // Engines take turns within each repeat, so slow drifts in machine load
    // spread over all of them.
    for r in 0..args.repeat {
        for name in &args.engines {
            runs.extend(bench_engine(name, &args, &root.join(format!("run{r}")))?);
        }
    }
    let mut cells = medians(runs);
    cells.sort_by_key(|c| {
        let engine = args.engines.iter().position(|e| c.engine.starts_with(e.as_str()));
        (args.dists.iter().position(|d| *d == c.dist), c.threads, engine)
    });
    print_table(&cells, &args);
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
