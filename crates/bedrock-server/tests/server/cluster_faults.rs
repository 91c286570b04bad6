//! Cluster faults with real processes on loopback:
//!
//! - a follower killed while 200,000 keys are written and the leader's log
//!   is compacted past it comes back through a snapshot, with the same
//!   contents as the leader and a bounded peak RSS;
//! - membership changes under load: a learner joins, catches up, is
//!   promoted, and the leader is removed, with no write lost and only
//!   retryable errors seen;
//! - quorum loss in a 5-node cluster: two nodes down still commit, three
//!   down refuse writes and linearizable reads until one comes back;
//! - a write through a follower just after the leader died waits for the
//!   next leader instead of failing with UNKNOWN.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bedrock_proto::v1 as pb;
use tonic::Code;

use crate::cluster_harness::{admin, free_ports, scan_all, wait_for, Cluster};
use crate::common::Server;

/// Compacts the Raft log once 20 entries are applied beyond the last
/// compaction, keeping 10: a follower that misses more than a few (packed,
/// up to 1 MiB) entries can only catch up through a snapshot.
const EAGER_SNAPSHOTS: [&str; 4] = ["--snapshot-entries", "20", "--snapshot-catchup-entries", "10"];

/// Bound on one request in these tests (the server answers within its own
/// 5 s request timeout).
const REQUEST_BOUND: Duration = Duration::from_secs(15);

fn key_of(i: usize) -> Vec<u8> {
    format!("key-{i:07}").into_bytes()
}

/// A 64-byte value that differs for every key.
fn value_of(i: usize) -> Vec<u8> {
    format!("{i:07}-{}", "v".repeat(56)).into_bytes()
}

/// A transaction putting keys `range` (no comparisons).
fn put_txn(range: std::ops::Range<usize>) -> pb::TxnRequest {
    let put = |i| pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest { key: key_of(i), value: value_of(i) })),
    };
    pb::TxnRequest { compare: Vec::new(), success: range.map(put).collect(), failure: Vec::new() }
}

/// Writes keys `0..keys` in transactions of `batch` keys, by 8 concurrent
/// clients spread over `endpoints`; every transaction must succeed.
async fn write_keys(endpoints: &[String], keys: usize, batch: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let endpoint = endpoints[w % endpoints.len()].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = bedrock_server::client::connect(std::slice::from_ref(&endpoint), &Default::default())
                .await
                .expect("connect");
            loop {
                let start = next.fetch_add(1, Ordering::Relaxed) * batch;
                if start >= keys {
                    return;
                }
                let txn = put_txn(start..keys.min(start + batch));
                let r = tokio::time::timeout(REQUEST_BOUND, c.txn(txn)).await;
                let r = r.unwrap_or_else(|_| panic!("txn at key {start} via {endpoint}: no answer"));
                assert!(r.expect("txn").into_inner().succeeded, "txn without comparisons succeeds");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
}

/// Peak resident set size of process `pid` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM value in kB")
}

fn kv_current(cluster: &Cluster, id: u64) -> String {
    std::fs::read_to_string(cluster.data_dir(id).join("KV_CURRENT")).expect("read KV_CURRENT").trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_down_during_200k_writes_and_compaction_catches_up_through_a_snapshot() {
    const KEYS: usize = 200_000;
    const MAX_PEAK_RSS_KIB: u64 = 512 * 1024;
    let t0 = Instant::now();
    let mut cluster = Cluster::start_with(3, &EAGER_SNAPSHOTS);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let other = (1..=3).find(|&id| id != leader && id != follower).expect("another follower");

    // The follower has some state of its own before it dies.
    write_keys(&cluster.endpoints(&[follower]), 1_000, 100).await;
    let f = cluster.status(follower).await;
    let generation_before = kv_current(&cluster, follower);
    let installs_before = cluster.node(follower).log().matches("snapshot installed").count();
    cluster.kill(follower);

    let written = Instant::now();
    write_keys(&cluster.endpoints(&[leader, other]), KEYS, 1_000).await;
    eprintln!("wrote {KEYS} keys in {:?}", written.elapsed());
    // The leader's log no longer holds the entry after the follower's last.
    let (c, last) = (&cluster, f.last_index);
    let first = wait_for("the leader to compact its log past the follower", Duration::from_secs(30), || async move {
        let s = c.status(leader).await;
        (s.first_index > last + 1).then_some(s.first_index)
    })
    .await;
    let commit = cluster.status(leader).await.commit_index;
    eprintln!("follower {follower} stopped at index {}; leader's log now starts at {first}", f.last_index);

    cluster.restart(follower);
    let restarted = Instant::now();
    let c = &cluster;
    wait_for("the restarted follower to catch up", Duration::from_secs(60), || async move {
        (c.status(follower).await.applied_index >= commit).then_some(())
    })
    .await;
    let caught_up_in = restarted.elapsed();

    let log = cluster.node(follower).log();
    assert!(log.matches("snapshot installed").count() > installs_before, "no snapshot installed; log:\n{log}");
    assert_ne!(kv_current(&cluster, follower), generation_before, "the state machine was not replaced");
    let on_leader = scan_all(cluster.node(leader)).await;
    let on_follower = scan_all(cluster.node(follower)).await;
    assert_eq!(on_leader.len(), KEYS, "the first 1,000 keys were overwritten by the bulk write");
    assert_eq!(on_leader[0], (key_of(0), value_of(0)));
    assert_eq!(on_leader[KEYS - 1], (key_of(KEYS - 1), value_of(KEYS - 1)));
    let first_difference = on_leader.iter().zip(&on_follower).position(|(a, b)| a != b);
    assert!(
        on_leader.len() == on_follower.len() && first_difference.is_none(),
        "follower holds {} pairs, leader {}; first difference at position {first_difference:?}",
        on_follower.len(),
        on_leader.len()
    );

    let pid = cluster.node(follower).pid().expect("follower running");
    let peak = peak_rss_kib(pid);
    eprintln!(
        "follower {follower} caught up through a snapshot in {caught_up_in:?}; peak RSS {} MiB; test took {:?}",
        peak / 1024,
        t0.elapsed()
    );
    assert!(peak < MAX_PEAK_RSS_KIB, "peak RSS {peak} KiB of the restarted follower exceeds {MAX_PEAK_RSS_KIB} KiB");
}

/// What the background writer of the membership test saw.
#[derive(Debug, Default)]
struct WriterLog {
    /// Keys whose put was acknowledged, with the value written.
    acked: Vec<(Vec<u8>, Vec<u8>)>,
    /// `UNAVAILABLE` answers (each retried: nothing was applied).
    unavailable: usize,
    /// Every other error, or a put that stayed unavailable too often.
    failures: Vec<String>,
}

/// A put is sent at most this many times while the server answers
/// `UNAVAILABLE` (each answer can take up to the server's 5 s request
/// timeout, so this allows a leaderless window of several seconds).
const MAX_ATTEMPTS: usize = 5;
/// `UNAVAILABLE` answers allowed over the whole membership test, summed
/// over the writers: a leadership hand-over or two.
const MAX_UNAVAILABLE: usize = 20;

/// Puts `w-<writer>-<i>` keys, alternating between `endpoints`, until
/// `stop`, 2,000 puts or 90 s.
async fn background_writer(w: usize, endpoints: Vec<String>, stop: Arc<AtomicBool>, log: Arc<Mutex<WriterLog>>) {
    let mut clients = Vec::new();
    for e in &endpoints {
        clients.push(
            bedrock_server::client::connect(std::slice::from_ref(e), &Default::default()).await.expect("connect"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0..2_000 {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            return;
        }
        let key = format!("w-{w}-{i:05}").into_bytes();
        let value = format!("value {i} of writer {w}").into_bytes();
        let c = &mut clients[i % endpoints.len()];
        for attempt in 1..=MAX_ATTEMPTS {
            let put = pb::PutRequest { key: key.clone(), value: value.clone() };
            let r = tokio::time::timeout(REQUEST_BOUND, c.put(put)).await;
            {
                let mut log = log.lock().unwrap();
                match r {
                    Ok(Ok(_)) => {
                        log.acked.push((key.clone(), value.clone()));
                        break;
                    }
                    Ok(Err(s)) if s.code() == Code::Unavailable && attempt < MAX_ATTEMPTS => log.unavailable += 1,
                    Ok(Err(s)) => log.failures.push(format!("put {i} of writer {w}, attempt {attempt}: {s:?}")),
                    Err(_) => log.failures.push(format!("put {i} of writer {w}: no answer within {REQUEST_BOUND:?}")),
                }
                if !log.failures.is_empty() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Allowed writer errors: only `UNAVAILABLE` (the request was not applied),
/// each retried, at most [`MAX_ATTEMPTS`] times for one put and at most
/// [`MAX_UNAVAILABLE`] in all. Anything else — `UNKNOWN`, `INTERNAL`, a
/// transport error, a request without an answer — fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_joins_is_promoted_and_the_leader_is_removed_under_load() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let via = cluster.endpoints(&[2]);
    // Node 1 leads, so removing it exercises the hand-over of leadership.
    if leader != 1 {
        cluster.cli(&via, &["member", "transfer-leader", "1"]);
        let c = &cluster;
        wait_for("node 1 to lead", Duration::from_secs(10), || async move {
            (c.leader(Duration::from_secs(5)).await == 1).then_some(())
        })
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(WriterLog::default()));
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(background_writer(w, cluster.endpoints(&[2, 3]), stop.clone(), log.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Add node 4 as a learner, then start it with --join.
    let ports = free_ports(2);
    let (raft_addr, client_addr) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let list = cluster.cli(&via, &["member", "add", "4", &raft_addr, &client_addr]);
    assert!(list.lines().any(|l| l.starts_with("4 ") && l.contains("learner") && l.contains(&client_addr)), "{list}");
    cluster.spawn_joining(4, ports[0], &client_addr, &via[0]);
    assert_eq!(cluster.node(4).endpoint(), client_addr);
    let c = &cluster;
    wait_for("node 4 to catch up", Duration::from_secs(60), || async move {
        let commit = c.status(1).await.commit_index;
        (c.status(4).await.applied_index >= commit).then_some(())
    })
    .await;
    assert!(cluster.node(4).log().contains("snapshot installed"), "a new member catches up through a snapshot");

    let list = cluster.cli(&via, &["member", "promote", "4"]);
    assert!(list.lines().any(|l| l.starts_with("4 ") && l.contains("voter")), "{list}");
    let list = cluster.cli(&via, &["member", "remove", "1"]);
    assert!(!list.lines().any(|l| l.starts_with("1 ")), "node 1 still listed:\n{list}");
    let new_leader = cluster.leader(Duration::from_secs(10)).await;
    assert!([2, 3, 4].contains(&new_leader), "leader {new_leader} after removing node 1");
    // Node 1 keeps running (as an operator might leave it): the others
    // must not let it disturb them. The writer goes on a little longer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    eprintln!("writer: {} acknowledged, {} UNAVAILABLE answers retried", log.acked.len(), log.unavailable);
    assert!(log.failures.is_empty(), "writer failures: {:#?}", log.failures);
    assert!(log.unavailable <= MAX_UNAVAILABLE, "{} UNAVAILABLE answers", log.unavailable);
    assert!(log.acked.len() >= 100, "only {} writes acknowledged", log.acked.len());
    let on_4: BTreeMap<Vec<u8>, Vec<u8>> = scan_all(cluster.node(4)).await.into_iter().collect();
    let lost: Vec<String> = log
        .acked
        .iter()
        .filter(|(k, v)| on_4.get(k) != Some(v))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes not readable on node 4, e.g. {:?}",
        lost.len(),
        &lost[..5.min(lost.len())]
    );
    let status = cluster.status(new_leader).await;
    assert_eq!(status.leader, new_leader);
}

/// What a request that must not succeed got instead.
async fn must_fail<T: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> String {
    let started = Instant::now();
    match tokio::time::timeout(REQUEST_BOUND, fut).await {
        Ok(Ok(r)) => panic!("{what} succeeded without a quorum: {:?}", r.into_inner()),
        Ok(Err(s)) => {
            let allowed = [Code::Unavailable, Code::Unknown, Code::DeadlineExceeded];
            assert!(allowed.contains(&s.code()), "{what} failed with an unexpected status: {s:?}");
            format!("{:?} after {:?}", s.code(), started.elapsed())
        }
        Err(_) => format!("no answer within {REQUEST_BOUND:?}"),
    }
}

async fn put_ok(s: &Server, key: &str) {
    let mut c = s.grpc().await;
    let put = pb::PutRequest { key: key.as_bytes().to_vec(), value: b"v".to_vec() };
    let r = tokio::time::timeout(REQUEST_BOUND, c.put(put)).await;
    r.unwrap_or_else(|_| panic!("put {key} via {}: no answer", s.endpoint())).expect("put");
}

async fn get_linearizable(s: &Server, key: &str) -> Option<Vec<u8>> {
    let mut c = s.grpc().await;
    let get = pb::GetRequest { key: key.as_bytes().to_vec(), serializable: false };
    let r = tokio::time::timeout(REQUEST_BOUND, c.get(get)).await.expect("get answered");
    r.expect("get").into_inner().kv.map(|kv| kv.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_commit_with_two_down_and_refuse_with_three_down() {
    let mut cluster = Cluster::start(5);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    // The minority: the leader and one follower.
    let minority = [leader, leader % 5 + 1];
    for id in minority {
        cluster.kill(id);
    }
    let alive = cluster.running();
    assert_eq!(alive.len(), 3);
    for &id in &alive {
        put_ok(cluster.node(id), &format!("with-3-of-5-via-{id}")).await;
    }
    for &id in &alive {
        for &via in &alive {
            let key = format!("with-3-of-5-via-{via}");
            assert_eq!(get_linearizable(cluster.node(id), &key).await.as_deref(), Some(&b"v"[..]), "node {id}");
        }
    }

    // A third node down: two of five cannot commit nor serve a
    // linearizable read.
    let third = alive[0];
    cluster.kill(third);
    let (a, b) = (cluster.node(alive[1]), cluster.node(alive[2]));
    let (mut ca, mut cb) = (a.grpc().await, b.grpc().await);
    let put = pb::PutRequest { key: b"with-2-of-5".to_vec(), value: b"v".to_vec() };
    let get = pb::GetRequest { key: b"with-3-of-5-via-1".to_vec(), serializable: false };
    let (put_outcome, get_outcome) =
        tokio::join!(must_fail("put", ca.put(put)), must_fail("linearizable get", cb.get(get)));
    eprintln!("with 2 of 5 nodes: put -> {put_outcome}; linearizable get -> {get_outcome}");

    // One node back: three of five commit again.
    let restarted = Instant::now();
    cluster.restart(minority[0]);
    let back = cluster.node(minority[0]);
    wait_for("a put to succeed with 3 of 5 nodes again", Duration::from_secs(30), || async move {
        let mut c = back.grpc().await;
        let put = pb::PutRequest { key: b"after-restart".to_vec(), value: b"v".to_vec() };
        matches!(tokio::time::timeout(REQUEST_BOUND, c.put(put)).await, Ok(Ok(_))).then_some(())
    })
    .await;
    eprintln!("committing again {:?} after restarting node {}", restarted.elapsed(), minority[0]);
    for id in cluster.running() {
        assert_eq!(get_linearizable(cluster.node(id), "after-restart").await.as_deref(), Some(&b"v"[..]), "node {id}");
        let key = format!("with-3-of-5-via-{}", alive[1]);
        assert_eq!(get_linearizable(cluster.node(id), &key).await.as_deref(), Some(&b"v"[..]), "node {id}");
    }
}

/// A write sent through a follower just after the leader died failed at
/// once with UNKNOWN: the follower forwarded it to the dead leader and
/// took the refused connection for a request that may have been sent.
/// Nothing was sent, so the follower now waits for the next leader and
/// the write succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_through_a_follower_just_after_the_leader_died_waits_for_the_next_leader() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    // The follower has a connection to the leader.
    put_ok(cluster.node(follower), "before").await;
    cluster.kill(leader);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // (MemberList answers locally; Status would reach out to the dead
    // leader and reset the follower's connection to it.)
    let mut admin = admin(cluster.node(follower)).await.expect("admin client");
    let believed = admin.member_list(pb::MemberListRequest {}).await.expect("member list").into_inner().leader;
    assert_eq!(believed, leader, "the follower already knows a new leader; the test needs the old one");
    let started = Instant::now();
    let mut c = cluster.node(follower).grpc().await;
    let put = pb::PutRequest { key: b"after".to_vec(), value: b"v".to_vec() };
    let r = tokio::time::timeout(REQUEST_BOUND, c.put(put)).await.expect("put answered");
    r.expect("a put through a follower while the leader is gone waits for the next leader");
    eprintln!("put through follower {follower} succeeded {:?} after the leader died", started.elapsed());
    assert_eq!(get_linearizable(cluster.node(follower), "after").await.as_deref(), Some(&b"v"[..]));
}
