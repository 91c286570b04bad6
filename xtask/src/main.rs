//! Project automation, run as `cargo xtask <command>` from anywhere in the
//! workspace:
//!
//! - `layering`: checks that Bedrock crates depend only downward
//!   (wal ← sstable ← lsm ← txn ← raft ← server).
//! - `tidy`: checks that every Rust module opens with a `//!` doc.
//! - `ci`: layering, tidy, then the README's test command.
//! - `bench server | cluster | engine | txn`: benchmarks (see `bench.rs`).
//! - `cluster up [--nodes N] [--release] | status | down [--wipe]`: a local
//!   cluster on loopback (see `cluster.rs`).
//! - `crash --cycles N`: the engine crash loop (see `crash.rs`).
//! - `jepsen --nodes N --time S --nemesis kill,pause,partition --workload
//!   register|bank|set|list-append`: fault injection on a real cluster with
//!   history checkers; partitions in network namespaces when root (see
//!   `jepsen.rs` and `netns.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

mod bench;
mod bench_cluster;
mod cluster;
mod crash;
mod jepsen;
mod layering;
mod loadgen;
mod netns;
mod tidy;

fn main() -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("layering") => layering::check(&metadata()?),
        Some("tidy") => tidy::check(&root),
        Some("bench") => bench::run(args.get(1..).unwrap_or_default()),
        Some("cluster") => cluster::run(args.get(1..).unwrap_or_default()),
        Some("crash") => crash::run(args.get(1..).unwrap_or_default()),
        Some("crash-child") => crash::child(args.get(1..).unwrap_or_default()),
        Some("jepsen") => jepsen::run(args.get(1..).unwrap_or_default()),
        Some("ci") => {
            layering::check(&metadata()?)?;
            tidy::check(&root)?;
            run("cargo", &["test", "--workspace"])
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <layering | tidy | ci | bench ... | cluster <up | status | down> | crash --cycles N | jepsen ...>"
            );
            bail!("unknown or missing command")
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn metadata() -> Result<serde_json::Value> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(cmd).args(args).status().with_context(|| format!("running {cmd}"))?;
    if !status.success() {
        bail!("{cmd} {} failed with {status}", args.join(" "));
    }
    Ok(())
}
