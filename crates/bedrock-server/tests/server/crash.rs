//! Crash test: acknowledged writes survive SIGKILL, and transactions are
//! never torn.
//!
//! 16 concurrent gRPC clients write 100,000 distinct keys in total, as
//! plain `Put`s and as `Txn`s that write a pair of keys atomically. Every
//! acknowledged write is recorded. Once about half of the keys are
//! acknowledged the server is killed with SIGKILL (no flush, no shutdown
//! path), then restarted on the same data directory. Checked afterwards:
//! - every acknowledged key is present with the value written;
//! - every pair is all-or-nothing: both halves present, or neither;
//! - every present key was actually written (acknowledged, or in flight at
//!   the kill) and holds its value: nothing invented, nothing garbled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bedrock_proto::v1 as pb;
use bedrock_server::client::Client;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};

use crate::common::{data_dir, Server};

const CLIENTS: usize = 16;
const TOTAL_KEYS: usize = 100_000;
const KEYS_PER_CLIENT: usize = TOTAL_KEYS / CLIENTS;
/// The server is killed once this many keys are acknowledged.
const KILL_AFTER_KEYS: usize = TOTAL_KEYS / 2;
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_PHASE_TIMEOUT: Duration = Duration::from_secs(150);

fn key(i: usize) -> Vec<u8> {
    format!("crash/{i:06}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(i % 50)).into_bytes()
}

/// One write: a single key or an atomic pair of consecutive keys.
#[derive(Debug, Clone, Copy)]
enum Write {
    Single(usize),
    Pair(usize, usize),
}

/// What a client knows about each of its writes after the kill.
#[derive(Debug, Default)]
struct Outcome {
    acked: Vec<Write>,
    /// The write in flight when the connection broke (it may or may not
    /// have been applied).
    in_flight: Option<Write>,
}

/// A client's writes: alternately a single key and a pair of keys.
fn plan(client: usize) -> Vec<Write> {
    let (mut i, end) = (client * KEYS_PER_CLIENT, (client + 1) * KEYS_PER_CLIENT);
    let mut writes = Vec::new();
    while i < end {
        if writes.len() % 2 == 0 || i + 1 == end {
            writes.push(Write::Single(i));
            i += 1;
        } else {
            writes.push(Write::Pair(i, i + 1));
            i += 2;
        }
    }
    writes
}

fn put_op(i: usize) -> pb::RequestOp {
    let put = pb::PutRequest { key: key(i), value: value(i) };
    pb::RequestOp { request: Some(pb::request_op::Request::Put(put)) }
}

/// Issues one write; Ok only if the server acknowledged it.
async fn issue(c: &mut Client, w: Write) -> Result<(), String> {
    let call = async {
        match w {
            Write::Single(i) => c.put(pb::PutRequest { key: key(i), value: value(i) }).await.map(|_| ()),
            Write::Pair(a, b) => {
                let req = pb::TxnRequest {
                    // The pair is fresh, so the guard holds; it puts a read
                    // in the transaction as a real client's would.
                    compare: vec![pb::Compare {
                        key: key(a),
                        result: CompareResult::Equal.into(),
                        target: CompareTarget::Exists.into(),
                        target_union: Some(TargetUnion::Exists(false)),
                    }],
                    success: vec![put_op(a), put_op(b)],
                    failure: vec![],
                };
                let resp = c.txn(req).await?.into_inner();
                assert!(resp.succeeded, "fresh pair {a},{b}: guard failed");
                Ok(())
            }
        }
    };
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err("timed out".into()),
    }
}

async fn run_client(mut c: Client, writes: Vec<Write>, acked_keys: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> Outcome {
    let mut out = Outcome::default();
    for w in writes {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match issue(&mut c, w).await {
            Ok(()) => {
                out.acked.push(w);
                let n = if matches!(w, Write::Pair(..)) { 2 } else { 1 };
                acked_keys.fetch_add(n, Ordering::Relaxed);
            }
            Err(_) => {
                out.in_flight = Some(w);
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_no_txn_is_torn() {
    let (_tmp, dir) = data_dir();
    let mut server = Server::start(&dir);
    let acked_keys = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        let c = server.grpc().await;
        clients.push(tokio::spawn(run_client(c, plan(id), acked_keys.clone(), stop.clone())));
    }
    // Kill at half way, bounded in time.
    let deadline = started + WRITE_PHASE_TIMEOUT;
    while acked_keys.load(Ordering::Relaxed) < KILL_AFTER_KEYS {
        assert!(
            Instant::now() < deadline,
            "only {} keys acknowledged in {WRITE_PHASE_TIMEOUT:?}",
            acked_keys.load(Ordering::Relaxed)
        );
        assert!(!clients.iter().all(|c| c.is_finished()), "clients stopped early; log:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let at_kill = acked_keys.load(Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(tokio::time::timeout(RPC_TIMEOUT * 2, c).await.expect("client stops").expect("client task"));
    }
    let write_secs = started.elapsed().as_secs_f64();

    let server = Server::start(&dir);
    let stored = read_all(&mut server.grpc().await).await;
    let report = check(&outcomes, &stored);
    eprintln!(
        "crash test: {at_kill} keys acknowledged at the kill ({write_secs:.1} s), {} acknowledged in total, \
         {} in flight, {} keys stored after restart",
        report.acked_keys,
        report.in_flight,
        stored.len()
    );
    assert!(report.acked_keys >= KILL_AFTER_KEYS && report.acked_keys < TOTAL_KEYS, "the kill happened mid-way");
}

/// Every `crash/` key after the restart, read with one streamed scan.
async fn read_all(c: &mut Client) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let req = pb::ScanRequest { start: b"crash/".to_vec(), end: b"crash0".to_vec(), limit: 0, serializable: false };
    let mut stream = c.scan(req).await.expect("scan").into_inner();
    let mut stored = BTreeMap::new();
    while let Some(chunk) =
        tokio::time::timeout(RPC_TIMEOUT, stream.message()).await.expect("scan chunk in time").expect("scan chunk")
    {
        for kv in chunk.kvs {
            stored.insert(kv.key, kv.value);
        }
    }
    stored
}

struct Report {
    acked_keys: usize,
    in_flight: usize,
}

/// Asserts the three properties of the module doc.
fn check(outcomes: &[Outcome], stored: &BTreeMap<Vec<u8>, Vec<u8>>) -> Report {
    let present = |i: usize| match stored.get(&key(i)) {
        None => false,
        Some(v) if *v == value(i) => true,
        Some(v) => panic!("key {i} holds {:?}, not the value written", String::from_utf8_lossy(v)),
    };
    let mut written = vec![false; TOTAL_KEYS];
    let mut acked_keys = 0;
    for out in outcomes {
        for w in &out.acked {
            match *w {
                Write::Single(i) => {
                    assert!(present(i), "acknowledged put of key {i} lost");
                    written[i] = true;
                    acked_keys += 1;
                }
                Write::Pair(a, b) => {
                    assert!(present(a) && present(b), "acknowledged pair {a},{b} lost: {} {}", present(a), present(b));
                    written[a] = true;
                    written[b] = true;
                    acked_keys += 2;
                }
            }
        }
        match out.in_flight {
            Some(Write::Single(i)) => written[i] = true,
            Some(Write::Pair(a, b)) => {
                assert_eq!(present(a), present(b), "torn transaction: pair {a},{b}");
                written[a] = true;
                written[b] = true;
            }
            None => {}
        }
    }
    for (k, _) in stored.iter() {
        let i: usize = std::str::from_utf8(&k[6..]).ok().and_then(|s| s.parse().ok()).expect("crash key");
        assert!(i < TOTAL_KEYS && written[i], "key {i} present but never written");
        assert!(present(i));
    }
    Report { acked_keys, in_flight: outcomes.iter().filter(|o| o.in_flight.is_some()).count() }
}
