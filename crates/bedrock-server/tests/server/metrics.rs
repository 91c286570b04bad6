//! `GET /metrics`: the Prometheus text exposition of a node under load has
//! every metric the operations guide lists, with non-zero values, and its
//! counters grow with the load.

use std::collections::BTreeMap;

use bedrock_proto::v1 as pb;

use crate::common::{data_dir, http, Server};

/// One scrape: sample (name plus labels, as printed) → value.
async fn scrape(server: &Server) -> BTreeMap<String, f64> {
    let resp = http(server.addr, "GET", "/metrics", None).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{:?}", resp.headers);
    let mut samples = BTreeMap::new();
    for line in resp.text().lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        samples.insert(name.to_string(), value);
    }
    samples
}

/// The value of the one sample whose name and labels contain every part
/// of `needle` (e.g. `["bedrock_requests_total{", "op=\"put\"", "protocol=\"grpc\""]`),
/// summed if several match.
fn value(samples: &BTreeMap<String, f64>, needle: &[&str]) -> f64 {
    let matching: Vec<f64> =
        samples.iter().filter(|(name, _)| needle.iter().all(|n| name.contains(n))).map(|(_, v)| *v).collect();
    assert!(!matching.is_empty(), "no sample matches {needle:?}; samples:\n{samples:#?}");
    matching.iter().sum()
}

async fn load(server: &Server, round: u32) {
    let mut grpc = server.grpc().await;
    for i in 0..200u32 {
        let key = format!("k{round}-{i:04}").into_bytes();
        grpc.put(pb::PutRequest { key: key.clone(), value: vec![b'v'; 100] }).await.expect("gRPC put");
        grpc.get(pb::GetRequest { key, ..Default::default() }).await.expect("gRPC get");
    }
    for i in 0..20u32 {
        let resp = http(server.addr, "PUT", &format!("/put?key=h{round}-{i}"), Some(b"value")).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let missing = http(server.addr, "GET", "/get?key=absent", None).await;
    assert_eq!(missing.status, 404);
}

/// A one-member Raft cluster, so the Raft metrics are there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_requests_wal_engine_and_raft_and_counters_grow() {
    let (_tmp, dir) = data_dir();
    // Both ports chosen up front, so the client listener cannot take the raft port.
    let ports = crate::cluster_harness::free_ports(2);
    let (raft, client) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let args = [
        "--raft-addr".to_string(),
        raft.clone(),
        "--initial-cluster".to_string(),
        format!("1={raft}"),
        "--client-addr".to_string(),
        client,
    ];
    let server = Server::start_with(&dir, &args);

    load(&server, 1).await;
    let first = scrape(&server).await;
    let grpc_puts = ["bedrock_requests_total{", "protocol=\"grpc\"", "op=\"put\"", "code=\"0\""];
    let http_puts = ["bedrock_requests_total{", "protocol=\"http\"", "op=\"put\"", "code=\"200\""];
    let http_404 = ["bedrock_requests_total{", "protocol=\"http\"", "op=\"get\"", "code=\"404\""];
    assert_eq!(value(&first, &grpc_puts), 200.0);
    assert_eq!(value(&first, &http_puts), 20.0);
    assert_eq!(value(&first, &http_404), 1.0);
    for needle in [
        &["bedrock_request_duration_seconds_count{", "op=\"get\"", "protocol=\"grpc\""][..],
        &["bedrock_request_duration_seconds_bucket{", "op=\"put\"", "le=\"+Inf\""],
        &["bedrock_wal_fsync_seconds_count"],
        &["bedrock_wal_fsync_seconds_sum"],
        &["bedrock_wal_fsync_batch_records_count"],
        &["bedrock_wal_fsync_batch_bytes_sum"],
        &["bedrock_memtable_bytes"],
        &["bedrock_raft_term"],
        &["bedrock_raft_role{", "role=\"leader\""],
        &["bedrock_raft_commit_index"],
        &["bedrock_raft_applied_index"],
        &["bedrock_raft_voters"],
    ] {
        assert!(value(&first, needle) > 0.0, "{needle:?} is zero");
    }
    // Present (zero is a fine value for these on a small load).
    for needle in [
        &["bedrock_level_files{", "level=\"0\""][..],
        &["bedrock_level_bytes{", "level=\"0\""],
        &["bedrock_compaction_read_bytes_total"],
        &["bedrock_compaction_written_bytes_total"],
        &["bedrock_write_stall_microseconds_total"],
        &["bedrock_write_stops_total"],
        &["bedrock_write_stall_max_microseconds"],
        &["bedrock_raft_proposals_pending"],
        &["bedrock_raft_snapshots_sent_total"],
    ] {
        value(&first, needle);
    }

    load(&server, 2).await;
    let second = scrape(&server).await;
    assert_eq!(value(&second, &grpc_puts), 400.0);
    assert_eq!(value(&second, &http_puts), 40.0);
    for needle in
        [&["bedrock_wal_fsync_seconds_count"][..], &["bedrock_raft_commit_index"], &["bedrock_raft_applied_index"]]
    {
        assert!(value(&second, needle) > value(&first, needle), "{needle:?} did not grow");
    }
    // The first scrape itself was counted.
    assert!(value(&second, &["bedrock_requests_total{", "op=\"metrics\""]) >= 1.0);
}

/// The single-node server exports the engine's own WAL and levels; a
/// flush on shutdown is not needed to see level 0 once data is flushed,
/// so only presence and request counts are checked here.
#[tokio::test]
async fn single_node_server_exports_metrics() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    load(&server, 1).await;
    let samples = scrape(&server).await;
    assert_eq!(value(&samples, &["bedrock_requests_total{", "protocol=\"grpc\"", "op=\"get\"", "code=\"0\""]), 200.0);
    assert!(value(&samples, &["bedrock_wal_fsync_seconds_count"]) > 0.0);
    assert!(value(&samples, &["bedrock_wal_written_bytes_total"]) > 0.0);
    assert!(value(&samples, &["bedrock_user_written_bytes_total"]) > 0.0);
    assert!(!samples.keys().any(|k| k.starts_with("bedrock_raft_")), "no Raft metrics without a cluster");
}
