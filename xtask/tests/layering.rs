//! Reads the workspace's `cargo metadata` and fails if a lower Bedrock
//! crate depends on a higher one (DESIGN.md: wal ← sstable ← lsm ← txn ←
//! raft ← server). Also checks that the checker itself catches a
//! violation.

use std::process::Command;

#[path = "../src/layering.rs"]
#[allow(dead_code)]
mod layering;

fn metadata() -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("valid metadata JSON")
}

#[test]
fn workspace_dependencies_point_downward() {
    let meta = metadata();
    let names: Vec<&str> = meta["packages"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    for crate_name in layering::ORDER {
        assert!(names.contains(&crate_name), "{crate_name} missing from the workspace");
    }
    assert_eq!(layering::violations(&meta), Vec::<String>::new());
}

#[test]
fn an_upward_dependency_is_reported() {
    let meta = serde_json::json!({"packages": [
        {"name": "bedrock-wal", "dependencies": [{"name": "bedrock-lsm", "kind": null}]},
        {"name": "bedrock-lsm", "dependencies": [{"name": "bedrock-wal", "kind": null}, {"name": "bedrock-server", "kind": "dev"}]},
        {"name": "bedrock-txn", "dependencies": [{"name": "bedrock-proto", "kind": null}]}
    ]});
    let v = layering::violations(&meta);
    assert_eq!(
        v,
        vec!["bedrock-wal depends on bedrock-lsm".to_string(), "bedrock-txn depends on bedrock-proto".to_string()]
    );
}
