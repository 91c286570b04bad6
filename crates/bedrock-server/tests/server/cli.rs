//! The CLI client (`bedrock put/get/del/scan/txn`) against a running server.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::common::{data_dir, Server, BIN};

/// Runs `bedrock --endpoints <endpoints> <args…>` with optional stdin.
fn bedrock(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bedrock");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default().as_bytes()).expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("bedrock output")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "status {:?}, stderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_del_scan_txn() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let ep = server.endpoint();
    tokio::task::block_in_place(|| {
        // The first endpoint refuses connections; the client moves on.
        let eps = format!("127.0.0.1:1,{ep}");
        assert_eq!(ok(&bedrock(&eps, &["put", "name", "raft"], None)), "OK\n");
        assert_eq!(ok(&bedrock(&ep, &["get", "name"], None)), "raft\n");
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
            ok(&bedrock(&ep, &["put", k, v], None));
        }
        assert_eq!(ok(&bedrock(&ep, &["scan"], None)), "a\t1\nb\t2\nc\t3\nname\traft\n");
        assert_eq!(ok(&bedrock(&ep, &["scan", "b", "name"], None)), "b\t2\nc\t3\n");
        assert_eq!(ok(&bedrock(&ep, &["scan", "a", "--limit", "2"], None)), "a\t1\nb\t2\n");

        assert_eq!(ok(&bedrock(&ep, &["del", "b"], None)), "OK\n");
        let missing = bedrock(&ep, &["get", "b"], None);
        assert_eq!(missing.status.code(), Some(1));
        assert!(missing.stdout.is_empty());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("key not found: b"));

        let txn = r#"{"compare":[{"key":"a","value":"1"}],"success":[{"put":{"key":"a","value":"2"}}]}"#;
        let result: serde_json::Value = serde_json::from_str(&ok(&bedrock(&ep, &["txn"], Some(txn)))).unwrap();
        assert_eq!(result["succeeded"], true);
        assert_eq!(ok(&bedrock(&ep, &["get", "a"], None)), "2\n");

        let down = bedrock("127.0.0.1:1", &["get", "a"], None);
        assert_eq!(down.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_json() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let ep = server.endpoint();
    tokio::task::block_in_place(|| {
        let args = ["bench", "--op", "get", "--clients", "4", "--requests", "400", "--key-space", "50", "--json"];
        let report: serde_json::Value = serde_json::from_str(&ok(&bedrock(&ep, &args, None))).unwrap();
        assert_eq!(report["op"], "get");
        assert_eq!(report["completed"], 400);
        assert_eq!((report["errors"].as_u64(), report["misses"].as_u64()), (Some(0), Some(0)));
        let l = &report["latency_us"];
        assert!(l["p50"].as_u64() <= l["p99"].as_u64() && l["p99"].as_u64() <= l["max"].as_u64());
        assert!(report["throughput_ops_per_sec"].as_f64().unwrap() > 0.0);
    });
    // The preload wrote the whole key space.
    let mut c = server.grpc().await;
    let req = bedrock_proto::v1::ScanRequest {
        start: b"bench/".to_vec(),
        end: b"bench0".to_vec(),
        limit: 0,
        serializable: false,
    };
    let mut stream = c.scan(req).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(chunk) = stream.message().await.unwrap() {
        n += chunk.kvs.len();
    }
    assert_eq!(n, 50);
}
