//! Medians over repetitions, the printed tables (Markdown pipe tables, so
//! they paste into docs/benchmarks-engine.md as printed) and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::workloads::{Cell, ALL_WORKLOADS};

/// The median of each measurement of one (workload, engine) over its repetitions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Median {
    pub workload: String,
    pub engine: String,
    pub reps: usize,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub ops_per_sec_min: f64,
    pub ops_per_sec_max: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// fillrandom: median over repetitions of the longest put without
    /// steal time (see `Cell::max_no_steal_us`).
    pub max_no_steal_us: Option<f64>,
    pub write_amp: Option<f64>,
    pub space_amp: Option<f64>,
    pub truncated: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians per (workload, engine), workloads in report order, engines in `engines` order.
pub fn medians(cells: &[Cell], engines: &[String]) -> Vec<Median> {
    let mut by: BTreeMap<(usize, usize), Vec<&Cell>> = BTreeMap::new();
    for c in cells {
        let w = ALL_WORKLOADS.iter().position(|w| *w == c.workload).unwrap_or(usize::MAX);
        let e = engines.iter().position(|e| *e == c.engine).unwrap_or(usize::MAX);
        by.entry((w, e)).or_default().push(c);
    }
    by.into_values()
        .map(|cs| {
            let f = |g: &dyn Fn(&Cell) -> f64| median(cs.iter().map(|c| g(c)).collect());
            let opt = |g: &dyn Fn(&Cell) -> Option<f64>| {
                let v: Vec<f64> = cs.iter().filter_map(|c| g(c)).collect();
                (!v.is_empty()).then(|| median(v))
            };
            let ops: Vec<f64> = cs.iter().map(|c| c.ops_per_sec).collect();
            Median {
                workload: cs[0].workload.clone(),
                engine: cs[0].engine.clone(),
                reps: cs.len(),
                ops: f(&|c| c.ops as f64) as u64,
                ops_per_sec: median(ops.clone()),
                ops_per_sec_min: ops.iter().copied().fold(f64::INFINITY, f64::min),
                ops_per_sec_max: ops.iter().copied().fold(0.0, f64::max),
                p50_us: f(&|c| c.p50_us),
                p99_us: f(&|c| c.p99_us),
                max_us: f(&|c| c.max_us),
                max_no_steal_us: opt(&|c| c.max_no_steal_us),
                write_amp: opt(&|c| c.write_amp),
                space_amp: opt(&|c| c.space_amp),
                truncated: cs.iter().any(|c| c.truncated),
            }
        })
        .collect()
}

fn num(x: f64) -> String {
    let s = format!("{:.0}", x);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}")
}

fn opt2(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

/// One table per workload: every engine's numbers and bedrock / engine for ops/s.
pub fn workload_tables(ms: &[Median]) -> String {
    let mut out = String::new();
    for w in ALL_WORKLOADS {
        let rows: Vec<&Median> = ms.iter().filter(|m| m.workload == *w).collect();
        if rows.is_empty() {
            continue;
        }
        let bedrock = rows.iter().find(|m| m.engine == "bedrock").map(|m| m.ops_per_sec);
        let unit = match *w {
            "fillbatch" => " (latency per 100-key batch)",
            "readseq" => " (latency from one entry to the next)",
            _ => "",
        };
        let _ = writeln!(out, "\n### {w}{unit}\n");
        let _ = writeln!(
            out,
            "| engine | ops | ops/s (median) | ops/s min–max | p50 µs | p99 µs | max µs | max µs without steal | write-amp | space-amp | bedrock / engine |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for m in rows {
            let ratio = bedrock.map_or("-".into(), |b| format!("{:.2}", b / m.ops_per_sec));
            let trunc = if m.truncated { " (cut at --max-seconds)" } else { "" };
            let _ = writeln!(
                out,
                "| {}{trunc} | {} | {} | {}–{} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {ratio} |",
                m.engine,
                num(m.ops as f64),
                num(m.ops_per_sec),
                num(m.ops_per_sec_min),
                num(m.ops_per_sec_max),
                m.p50_us,
                m.p99_us,
                m.max_us,
                m.max_no_steal_us.map_or("-".into(), |us| format!("{us:.1}")),
                opt2(m.write_amp),
                opt2(m.space_amp),
            );
        }
    }
    out
}

/// The overview: ops/s per engine and the ratios bedrock / peer, with the
/// cells where Bedrock loses (below 1.0 against fjall, below 0.7 against
/// RocksDB) marked.
pub fn summary_table(ms: &[Median], engines: &[String]) -> String {
    let peers: Vec<&String> = engines.iter().filter(|e| *e != "bedrock").collect();
    let mut out = String::from("\n| workload |");
    for e in engines {
        let _ = write!(out, " {e} ops/s |");
    }
    for p in &peers {
        let _ = write!(out, " bedrock / {p} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(engines.len() + peers.len()));
    out.push('\n');
    for w in ALL_WORKLOADS {
        let get = |e: &str| ms.iter().find(|m| m.workload == *w && m.engine == e).map(|m| m.ops_per_sec);
        if engines.iter().all(|e| get(e).is_none()) {
            continue;
        }
        let _ = write!(out, "| {w} |");
        for e in engines {
            let _ = write!(out, " {} |", get(e).map_or("-".into(), num));
        }
        for p in &peers {
            let cell = match (get("bedrock"), get(p)) {
                (Some(b), Some(x)) => {
                    let r = b / x;
                    let limit = if p.as_str() == "fjall" { 1.0 } else { 0.7 };
                    if r < limit {
                        format!("**{r:.2}**")
                    } else {
                        format!("{r:.2}")
                    }
                }
                _ => "-".into(),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}
