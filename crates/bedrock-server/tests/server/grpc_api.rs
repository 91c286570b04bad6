//! The gRPC API (`bedrock.v1.KV`) through the generated tonic client.

use bedrock_proto::v1 as pb;
use bedrock_server::client::Client;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use tonic::Code;

use crate::common::{data_dir, Server};

async fn put(c: &mut Client, key: &str, value: &str) -> u64 {
    let req = pb::PutRequest { key: key.into(), value: value.into() };
    c.put(req).await.expect("put").into_inner().revision
}

async fn get(c: &mut Client, key: &str) -> Option<Vec<u8>> {
    let req = pb::GetRequest { key: key.into(), serializable: false };
    c.get(req).await.expect("get").into_inner().kv.map(|kv| kv.value)
}

/// Runs a scan and returns its chunks.
async fn scan(c: &mut Client, start: &str, end: &str, limit: u64) -> Vec<pb::ScanResponse> {
    let req = pb::ScanRequest { start: start.into(), end: end.into(), limit, serializable: false };
    let mut stream = c.scan(req).await.expect("scan").into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await.expect("scan chunk") {
        chunks.push(chunk);
    }
    chunks
}

fn keys(chunks: &[pb::ScanResponse]) -> Vec<String> {
    chunks.iter().flat_map(|c| &c.kvs).map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

fn put_op(key: &str, value: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest { key: key.into(), value: value.to_vec() })),
    }
}

fn get_op(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Get(pb::GetRequest { key: key.into(), serializable: false })),
    }
}

fn compare_value(key: &str, result: CompareResult, value: &str) -> pb::Compare {
    pb::Compare {
        key: key.into(),
        result: result.into(),
        target: CompareTarget::Value.into(),
        target_union: Some(TargetUnion::Value(value.into())),
    }
}

fn compare_exists(key: &str, exists: bool) -> pb::Compare {
    pb::Compare {
        key: key.into(),
        result: CompareResult::Equal.into(),
        target: CompareTarget::Exists.into(),
        target_union: Some(TargetUnion::Exists(exists)),
    }
}

#[tokio::test]
async fn put_get_delete() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let mut c = server.grpc().await;
    let r1 = put(&mut c, "name", "raft").await;
    let r2 = put(&mut c, "name", "paxos").await;
    assert!(r2 > r1, "revisions increase: {r1} then {r2}");
    let resp = c.get(pb::GetRequest { key: "name".into(), serializable: false }).await.unwrap().into_inner();
    assert_eq!(resp.kv, Some(pb::KeyValue { key: "name".into(), value: "paxos".into() }));
    assert!(resp.revision >= r2, "read revision {} covers the write at {r2}", resp.revision);

    // Binary keys and values round-trip exactly.
    let binary = pb::PutRequest { key: vec![0, 255, 10], value: vec![0xff, 0, 0xfe] };
    c.put(binary.clone()).await.unwrap();
    let got = c.get(pb::GetRequest { key: binary.key.clone(), serializable: false }).await.unwrap();
    assert_eq!(got.into_inner().kv.unwrap().value, binary.value);

    let del = c.delete(pb::DeleteRequest { key: "name".into() }).await.unwrap().into_inner();
    assert!(del.revision > r2);
    assert_eq!(get(&mut c, "name").await, None);

    for (req, what) in [
        (pb::PutRequest { key: vec![], value: vec![1] }, "empty key"),
        (pb::PutRequest { key: vec![b'k'; 9000], value: vec![1] }, "oversized key"),
        (pb::PutRequest { key: b"k".to_vec(), value: vec![0; (8 << 20) + 1] }, "oversized value"),
    ] {
        let status = c.put(req).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    let status = c.get(pb::GetRequest { key: vec![], serializable: false }).await.expect_err("empty key");
    assert_eq!(status.code(), Code::InvalidArgument);
    // The rejected requests did not disturb the server.
    assert_eq!(get(&mut c, "name").await, None);
    put(&mut c, "after", "ok").await;
    assert_eq!(get(&mut c, "after").await.as_deref(), Some(&b"ok"[..]));
}

#[tokio::test]
async fn scan_streams_ranges_in_chunks() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let mut c = server.grpc().await;
    // 600 keys of 4 KiB in one transaction: more than one storage page
    // (256 entries) and more than one 1 MiB chunk.
    let value = vec![b'v'; 4096];
    let success = (0..600).map(|i| put_op(&format!("k{i:04}"), &value)).collect();
    let txn = pb::TxnRequest { compare: vec![], success, failure: vec![] };
    let revision = c.txn(txn).await.unwrap().into_inner().revision;
    put(&mut c, "a-before", "x").await;
    put(&mut c, "z-after", "x").await;

    let all = scan(&mut c, "k", "l", 0).await;
    assert!(all.len() >= 3, "expected several chunks, got {}", all.len());
    let want: Vec<String> = (0..600).map(|i| format!("k{i:04}")).collect();
    assert_eq!(keys(&all), want);
    assert!(all.iter().flat_map(|c| &c.kvs).all(|kv| kv.value == value));
    let rev = all[0].revision;
    assert!(rev > revision && all.iter().all(|c| c.revision == rev), "one snapshot revision in every chunk");

    assert_eq!(keys(&scan(&mut c, "k0100", "k0103", 0).await), ["k0100", "k0101", "k0102"]);
    let limited = keys(&scan(&mut c, "k0250", "", 10).await);
    assert_eq!(limited, (250..260).map(|i| format!("k{i:04}")).collect::<Vec<_>>());
    // Crossing a page boundary with a limit: exactly `limit` keys, no repeats.
    let crossing = keys(&scan(&mut c, "", "", 300).await);
    assert_eq!(crossing.len(), 300);
    assert_eq!(crossing[0], "a-before");
    assert_eq!(crossing[299], "k0298");
    assert_eq!(keys(&scan(&mut c, "", "", 0).await).len(), 602);
    // An empty range still answers with one (empty) chunk.
    let empty = scan(&mut c, "m", "n", 0).await;
    assert_eq!((empty.len(), empty[0].kvs.len()), (1, 0));
    assert!(scan(&mut c, "z", "a", 0).await.iter().all(|c| c.kvs.is_empty()));
}

#[tokio::test]
async fn txn_compare_success_and_failure_paths() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let mut c = server.grpc().await;
    put(&mut c, "k", "b").await;

    // EQUAL holds: success runs and its writes commit at one revision.
    let req = pb::TxnRequest {
        compare: vec![compare_value("k", CompareResult::Equal, "b"), compare_exists("lock", false)],
        success: vec![put_op("k", b"c"), put_op("other", b"1"), get_op("k")],
        failure: vec![get_op("k")],
    };
    let ok = c.txn(req.clone()).await.unwrap().into_inner();
    assert!(ok.succeeded);
    assert_eq!(ok.responses.len(), 3);
    let Some(pb::response_op::Response::Get(read)) = &ok.responses[2].response else { panic!("{ok:?}") };
    assert_eq!(read.kv.as_ref().unwrap().value, b"c");
    assert!(
        matches!(ok.responses[0].response, Some(pb::response_op::Response::Put(ref p)) if p.revision == ok.revision)
    );

    // Same request again: "k" is now "c", so failure runs and writes nothing.
    let failed = c.txn(req).await.unwrap().into_inner();
    assert!(!failed.succeeded);
    assert_eq!(failed.responses.len(), 1);
    assert_eq!(get(&mut c, "other").await.as_deref(), Some(&b"1"[..]));

    // Ordering comparisons and values of missing keys.
    let holds = |cmp: pb::Compare| pb::TxnRequest { compare: vec![cmp], success: vec![], failure: vec![] };
    let mut check = Vec::new();
    for (cmp, want) in [
        (compare_value("k", CompareResult::Greater, "b"), true),
        (compare_value("k", CompareResult::Less, "b"), false),
        (compare_value("k", CompareResult::NotEqual, "c"), false),
        (compare_value("missing", CompareResult::NotEqual, "x"), false),
        (compare_exists("missing", false), true),
        (compare_exists("k", true), true),
    ] {
        check.push((c.txn(holds(cmp.clone())).await.unwrap().into_inner().succeeded, want, cmp));
    }
    for (got, want, cmp) in check {
        assert_eq!(got, want, "{cmp:?}");
    }

    // Malformed transactions are InvalidArgument and apply nothing.
    let mut exists_greater = compare_exists("k", true);
    exists_greater.result = CompareResult::Greater.into();
    let mut bad_enum = compare_value("k", CompareResult::Equal, "c");
    bad_enum.target = 7;
    let empty_op = pb::RequestOp { request: None };
    for req in [
        holds(exists_greater),
        holds(bad_enum),
        pb::TxnRequest { compare: vec![], success: vec![put_op("x", b"1"), put_op("", b"1")], failure: vec![] },
        pb::TxnRequest { compare: vec![], success: vec![empty_op], failure: vec![] },
    ] {
        let status = c.txn(req).await.expect_err("invalid txn");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    assert_eq!(get(&mut c, "x").await, None);
}

/// Concurrent compare-and-swap increments of one counter: the compare and
/// the write are atomic, so no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_swap_loses_no_update() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let mut c = server.grpc().await;
    put(&mut c, "counter", "0").await;
    const TASKS: usize = 8;
    const INCREMENTS: usize = 15;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let mut c = server.grpc().await;
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for _attempt in 0..2000 {
                if done == INCREMENTS {
                    break;
                }
                let current = String::from_utf8(get(&mut c, "counter").await.unwrap()).unwrap();
                let next = (current.parse::<usize>().unwrap() + 1).to_string();
                let req = pb::TxnRequest {
                    compare: vec![compare_value("counter", CompareResult::Equal, &current)],
                    success: vec![put_op("counter", next.as_bytes())],
                    failure: vec![],
                };
                match c.txn(req).await {
                    Ok(resp) if resp.get_ref().succeeded => done += 1,
                    Ok(_) => {}
                    // Conflicts survive the server's retries only under heavy contention.
                    Err(status) if status.code() == Code::Aborted => {}
                    Err(status) => panic!("txn failed: {status:?}"),
                }
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += tokio::time::timeout(std::time::Duration::from_secs(60), task).await.unwrap().unwrap();
    }
    assert_eq!(total, TASKS * INCREMENTS, "every task finished its increments");
    assert_eq!(get(&mut c, "counter").await.unwrap(), total.to_string().into_bytes());
}
