//! The dependency-direction check.

use anyhow::{bail, Result};

/// Bedrock's library crates, lowest first. A crate may depend only on
/// crates before it; `bedrock-proto` sits outside the chain and may be
/// used by `bedrock-raft` and `bedrock-server` only.
pub const ORDER: [&str; 6] =
    ["bedrock-wal", "bedrock-sstable", "bedrock-lsm", "bedrock-txn", "bedrock-raft", "bedrock-server"];

/// Crates allowed to depend on `bedrock-proto`.
const PROTO_USERS: [&str; 2] = ["bedrock-raft", "bedrock-server"];

/// Returns every violation as `"<crate> depends on <dep>"`.
pub fn violations(metadata: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    for pkg in &packages {
        let name = pkg["name"].as_str().unwrap_or_default();
        let rank = ORDER.iter().position(|n| *n == name);
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let bad = match (rank, ORDER.iter().position(|n| *n == dep_name)) {
                (Some(r), Some(d)) => d >= r,
                (None, Some(_)) => name == "bedrock-proto",
                _ => dep_name == "bedrock-proto" && rank.is_some() && !PROTO_USERS.contains(&name),
            };
            if bad {
                out.push(format!("{name} depends on {dep_name}"));
            }
        }
    }
    out
}

/// Fails if any crate depends on one above it.
pub fn check(metadata: &serde_json::Value) -> Result<()> {
    let v = violations(metadata);
    if !v.is_empty() {
        bail!("dependency direction violated (wal <- sstable <- lsm <- txn <- raft <- server):\n  {}", v.join("\n  "));
    }
    println!("layering: ok");
    Ok(())
}
