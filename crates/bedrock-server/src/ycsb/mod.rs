//! `bedrock bench --workload a|b|c|d|e|f`: the YCSB core workloads over
//! the gRPC API.
//!
//! A run has two phases, as in YCSB's `load` and `run` commands:
//!
//! 1. **load** (unless `--skip-load` or `--load false`) inserts records
//!    `0..--records` over `--threads` clients;
//! 2. **run** issues `--operations` operations of the workload's mix
//!    ([`workload`]), split evenly over the clients, stopping early at
//!    `--duration` seconds.
//!
//! Keys are `user` followed by the FNV hash of the record number, so
//! inserts are not sequential in key order; records are chosen by YCSB's
//! generators, reimplemented in [`generators`] (scrambled zipfian with
//! constant 0.99, or skewed-latest for workload D). Each record holds one
//! value of `--field-length` random printable bytes, not YCSB's ten
//! fields: Bedrock stores a value per key, and the size is what matters.
//!
//! Operations map onto the API as: read = Get, update and insert = Put,
//! scan = a Scan stream from the chosen key with a limit of 1..=100,
//! read-modify-write = Get then Put (timed as a pair, and each part also
//! as a read and an update). A failed request is counted as an error of
//! its kind and the run goes on; errors are reported, and the command
//! still exits 0.
//!
//! Results: a table on stdout (or one JSON object with `--json`, see
//! [`report::YcsbReport`]), optionally an SVG chart ([`chart`]). A
//! progress bar goes to stderr when it is a terminal. With a fixed
//! `--seed` each client repeats its sequence of operations and keys; the
//! interleaving of clients, and so which records exist when a workload D
//! or E read runs, depends on timing.

pub mod chart;
pub mod generators;
pub mod report;
pub mod runner;
pub mod workload;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{BenchArgs, YcsbWorkload};
use crate::client;
use report::YcsbReport;
use runner::Setup;
use workload::KeyChooser;

/// Longest a phase may run when `--duration` does not bound it (the load
/// phase always uses this).
pub const PHASE_TIME_LIMIT: Duration = Duration::from_secs(3600);

/// Runs `workload` as `args` say and prints the report.
pub async fn run(
    endpoints: &[String],
    access: &client::Access,
    args: &BenchArgs,
    workload: YcsbWorkload,
) -> anyhow::Result<()> {
    let setup = setup(args, workload);
    let mut clients = Vec::with_capacity(args.clients as usize);
    for _ in 0..args.clients {
        clients.push(client::connect(endpoints, access).await?);
    }
    let load = if args.load_phase() { Some(runner::load(&clients, &setup).await?) } else { None };
    let run = runner::run(&clients, &setup).await?;
    let errors = load.as_ref().map_or(0, |l| l.errors) + run.errors;
    let report = YcsbReport {
        workload,
        description: setup.spec.describe(),
        threads: args.clients,
        records: args.records,
        field_length_bytes: args.field_length,
        seed: args.seed,
        load,
        run,
        errors,
    };
    output(&report, args)
}

/// What the phases need, from the command line.
pub fn setup(args: &BenchArgs, workload: YcsbWorkload) -> Setup {
    let spec = workload::spec(workload);
    Setup {
        spec,
        records: args.records,
        operations: args.operations,
        field_length: args.field_length as usize,
        keys: KeyChooser::new(&spec, args.records, args.operations),
        seed: args.seed,
        load_time_limit: PHASE_TIME_LIMIT,
        run_time_limit: args.duration.map_or(PHASE_TIME_LIMIT, Duration::from_secs),
    }
}

/// Prints the report and writes the files asked for.
fn output(report: &YcsbReport, args: &BenchArgs) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if args.json {
        println!("{json}");
    } else {
        report::print_text(report);
    }
    if let Some(path) = &args.chart {
        write_chart(report, path)?;
    }
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = format!("ycsb-{}", format!("{:?}", report.workload).to_lowercase());
        let json_path = dir.join(format!("{stem}.json"));
        std::fs::write(&json_path, format!("{json}\n")).with_context(|| format!("writing {}", json_path.display()))?;
        write_chart(report, &dir.join(format!("{stem}.svg")))?;
        eprintln!("bedrock bench: report written to {}", json_path.display());
    }
    if report.errors > 0 {
        eprintln!("bedrock bench: warning: {} operations failed (see the errors columns)", report.errors);
    }
    Ok(())
}

fn write_chart(report: &YcsbReport, path: &Path) -> anyhow::Result<()> {
    chart::write_svg(report, path).with_context(|| format!("writing the chart {}", path.display()))?;
    eprintln!("bedrock bench: chart written to {}", path.display());
    Ok(())
}
