//! `GET /metrics`: the server's metrics in the Prometheus text format.
//!
//! Metrics are recorded through the [`metrics`] facade and rendered by
//! `metrics-exporter-prometheus`, whose recorder is installed once per
//! process by [`install`]. Three sources feed them:
//!
//! - **Requests** ([`track`], a middleware on the whole router):
//!   `bedrock_requests_total{protocol, op, code}` and the histogram
//!   `bedrock_request_duration_seconds{protocol, op}`, per operation of the
//!   HTTP routes and the gRPC services. The duration runs until the
//!   response headers are ready (for a streamed scan, until the first
//!   chunk is queued).
//! - **The write-ahead log** (recorded by `bedrock-wal` itself at every
//!   group-commit fsync): `bedrock_wal_fsync_seconds`,
//!   `bedrock_wal_fsync_batch_records`, `bedrock_wal_fsync_batch_bytes`. In
//!   cluster mode this WAL is the Raft log.
//! - **Engine and Raft state**, read at scrape time ([`render`]): memtable
//!   bytes, per-level SSTable files and bytes, flush and compaction bytes,
//!   write stalls, block reads and bloom filter checks; and in cluster mode
//!   the Raft term, role, leader, commit / applied / first / last index,
//!   pending proposals, snapshots sent and installed, voters and learners.
//!
//! Every name starts with `bedrock_`; byte counts end in `_bytes`,
//! durations are seconds, cumulative counts end in `_total`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::Store;

/// Request latency histogram name (seconds).
pub const REQUEST_SECONDS: &str = "bedrock_request_duration_seconds";
/// Request counter name.
pub const REQUESTS_TOTAL: &str = "bedrock_requests_total";

/// Histogram buckets for durations, in seconds: 50 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Histogram buckets for batch sizes (records or bytes): powers of 4.
const SIZE_BUCKETS: &[f64] =
    &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0, 4_194_304.0, 16_777_216.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle). `None` if another recorder was installed first, in
/// which case `/metrics` answers 503.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Prefix("bedrock_wal_fsync_batch".into()), SIZE_BUCKETS))
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS_TOTAL, "Client requests answered, by protocol, operation and status code.");
    describe_histogram!(REQUEST_SECONDS, Unit::Seconds, "Client request latency until the response headers.");
    describe_histogram!(bedrock_wal::FSYNC_SECONDS, Unit::Seconds, "Duration of one WAL group-commit fdatasync.");
    describe_histogram!(bedrock_wal::FSYNC_BATCH_RECORDS, Unit::Count, "Records made durable by one WAL fsync.");
    describe_histogram!(bedrock_wal::FSYNC_BATCH_BYTES, Unit::Bytes, "Bytes made durable by one WAL fsync.");
    describe_gauge!("bedrock_memtable_bytes", Unit::Bytes, "Bytes in the active memtable (approximate).");
    describe_gauge!("bedrock_immutable_memtables", "Immutable memtables waiting for flush.");
    describe_gauge!("bedrock_level_files", "SSTables per level.");
    describe_gauge!("bedrock_running_compactions", "Compactions running now.");
    describe_gauge!("bedrock_compaction_pending", "1 if some level's compaction score is at least 1, else 0.");
    describe_gauge!("bedrock_level_bytes", Unit::Bytes, "SSTable bytes per level.");
    describe_counter!("bedrock_compaction_read_bytes_total", Unit::Bytes, "Bytes compactions read.");
    describe_counter!("bedrock_compaction_written_bytes_total", Unit::Bytes, "Bytes compactions wrote.");
    describe_counter!("bedrock_compaction_pauses_total", "Times a compaction paused to let a flush run.");
    describe_counter!(
        "bedrock_write_stall_microseconds_total",
        Unit::Microseconds,
        "Time writers spent stalled or slowed."
    );
    describe_counter!(
        "bedrock_write_stops_total",
        "Writes that waited at a hard stop (L0 stop trigger, or no free memtable)."
    );
    describe_gauge!(
        "bedrock_write_stall_max_microseconds",
        Unit::Microseconds,
        "Longest single write stall or delay since open."
    );
    describe_gauge!("bedrock_raft_term", "Current Raft term.");
    describe_gauge!("bedrock_raft_role", "1 for this node's current Raft role (label role), 0 for the others.");
    describe_gauge!("bedrock_raft_commit_index", "Raft commit index.");
    describe_gauge!("bedrock_raft_applied_index", "Raft applied index.");
    describe_gauge!("bedrock_raft_proposals_pending", "Proposals waiting to be applied.");
    describe_counter!("bedrock_raft_snapshots_sent_total", "Raft snapshots sent since start.");
}

/// Middleware: counts each request and records its latency, labelled by
/// protocol (`http` or `grpc`), operation and status code (the HTTP status,
/// or for gRPC the `grpc-status` when the answer carries it in its headers,
/// which tonic does for every error; `0` otherwise).
pub async fn track(request: Request, next: Next) -> Response {
    let (protocol, op) = operation(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    let code = match protocol {
        "grpc" => response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "0".to_owned(), str::to_owned),
        _ => response.status().as_u16().to_string(),
    };
    counter!(REQUESTS_TOTAL, "protocol" => protocol, "op" => op, "code" => code).increment(1);
    histogram!(REQUEST_SECONDS, "protocol" => protocol, "op" => op).record(elapsed);
    response
}

/// (protocol, operation) of a request path; unknown paths are `other`, so
/// a scanner cannot blow up the label set.
fn operation(path: &str) -> (&'static str, &'static str) {
    const GRPC: &[(&str, &str)] = &[
        ("/bedrock.v1.KV/Get", "get"),
        ("/bedrock.v1.KV/Put", "put"),
        ("/bedrock.v1.KV/Delete", "delete"),
        ("/bedrock.v1.KV/Scan", "scan"),
        ("/bedrock.v1.KV/Txn", "txn"),
        ("/bedrock.v1.Cluster/MemberList", "member_list"),
        ("/bedrock.v1.Cluster/MemberAdd", "member_add"),
        ("/bedrock.v1.Cluster/MemberPromote", "member_promote"),
        ("/bedrock.v1.Cluster/MemberRemove", "member_remove"),
        ("/bedrock.v1.Cluster/TransferLeader", "transfer_leader"),
        ("/bedrock.v1.Cluster/Status", "status"),
        ("/bedrock.v1.Maintenance/Backup", "backup"),
        ("/grpc.health.v1.Health/Check", "health"),
        ("/grpc.health.v1.Health/Watch", "health_watch"),
    ];
    const HTTP: &[(&str, &str)] = &[
        ("/put", "put"),
        ("/get", "get"),
        ("/delete", "delete"),
        ("/scan", "scan"),
        ("/txn", "txn"),
        ("/health", "health"),
        ("/metrics", "metrics"),
    ];
    if let Some((_, op)) = GRPC.iter().find(|(p, _)| *p == path) {
        return ("grpc", op);
    }
    if let Some((_, op)) = HTTP.iter().find(|(p, _)| *p == path) {
        return ("http", op);
    }
    if path.starts_with("/grpc.reflection.") {
        return ("grpc", "reflection");
    }
    ("http", "other")
}

/// `GET /metrics`: refreshes the engine and Raft gauges, then renders every
/// metric in the Prometheus text format (version 0.0.4).
pub async fn serve_metrics(State(store): State<Store>) -> Response {
    let Some(handle) = install() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder unavailable\n").into_response();
    };
    let body = match tokio::task::spawn_blocking(move || {
        refresh(&store);
        handle.render()
    })
    .await
    {
        Ok(body) => body,
        Err(err) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering metrics failed: {err}\n")).into_response()
        }
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Copies the engine's statistics and the Raft status into gauges and
/// counters.
fn refresh(store: &Store) {
    let stats = store.engine_stats();
    gauge!("bedrock_memtable_bytes").set(stats.memtable_bytes as f64);
    gauge!("bedrock_immutable_memtables").set(stats.immutable_memtables as f64);
    for (level, l) in stats.levels.iter().enumerate() {
        let level = level.to_string();
        gauge!("bedrock_level_files", "level" => level.clone()).set(l.files as f64);
        gauge!("bedrock_level_bytes", "level" => level).set(l.bytes as f64);
    }
    counter!("bedrock_user_written_bytes_total").absolute(stats.user_bytes_written);
    counter!("bedrock_wal_written_bytes_total").absolute(stats.wal_bytes_written);
    counter!("bedrock_wal_syncs_total").absolute(stats.wal_syncs);
    counter!("bedrock_flush_written_bytes_total").absolute(stats.flush_bytes_written);
    counter!("bedrock_flushes_total").absolute(stats.flushes);
    counter!("bedrock_compaction_read_bytes_total").absolute(stats.compaction_bytes_read);
    counter!("bedrock_compaction_written_bytes_total").absolute(stats.compaction_bytes_written);
    counter!("bedrock_compactions_total").absolute(stats.compactions);
    counter!("bedrock_compaction_pauses_total").absolute(stats.compaction_pauses);
    gauge!("bedrock_running_compactions").set(stats.running_compactions as f64);
    gauge!("bedrock_compaction_pending").set(if stats.compaction_pending { 1.0 } else { 0.0 });
    gauge!("bedrock_write_amplification").set(stats.write_amplification);
    counter!("bedrock_write_stall_microseconds_total").absolute(stats.stall_micros);
    counter!("bedrock_write_slowdowns_total").absolute(stats.slowdowns);
    counter!("bedrock_write_stops_total").absolute(stats.stops);
    gauge!("bedrock_write_stall_max_microseconds").set(stats.max_stall_micros as f64);
    counter!("bedrock_block_reads_total").absolute(stats.block_reads);
    counter!("bedrock_bloom_checks_total").absolute(stats.bloom_checks);
    counter!("bedrock_bloom_useful_total").absolute(stats.bloom_useful);
    gauge!("bedrock_last_sequence").set(stats.last_sequence as f64);
    gauge!("bedrock_snapshots").set(stats.snapshots as f64);

    let Some(replica) = store.replica() else { return };
    let status = replica.node().status();
    gauge!("bedrock_raft_term").set(status.term as f64);
    for role in ["leader", "follower", "candidate", "pre-candidate", "learner"] {
        gauge!("bedrock_raft_role", "role" => role).set(if status.role == role { 1.0 } else { 0.0 });
    }
    gauge!("bedrock_raft_leader").set(status.leader as f64);
    gauge!("bedrock_raft_commit_index").set(status.commit_index as f64);
    gauge!("bedrock_raft_applied_index").set(status.applied_index as f64);
    gauge!("bedrock_raft_first_index").set(status.first_index as f64);
    gauge!("bedrock_raft_last_index").set(status.last_index as f64);
    gauge!("bedrock_raft_proposals_pending").set(status.pending_proposals as f64);
    counter!("bedrock_raft_snapshots_sent_total").absolute(status.snapshots_sent);
    counter!("bedrock_raft_snapshots_installed_total").absolute(status.snapshots_installed);
    gauge!("bedrock_raft_voters").set(status.voters.len() as f64);
    gauge!("bedrock_raft_learners").set(status.learners.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn operations_are_named_and_unknown_paths_collapse() {
        assert_eq!(operation("/put"), ("http", "put"));
        assert_eq!(operation("/bedrock.v1.KV/Put"), ("grpc", "put"));
        assert_eq!(operation("/bedrock.v1.Cluster/Status"), ("grpc", "status"));
        assert_eq!(operation("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), ("grpc", "reflection"));
        assert_eq!(operation("/wp-admin/x"), ("http", "other"));
    }
}
