//! Three-node clusters of real processes on loopback: replication through
//! any node, linearizable reads through the others, and leader failure
//! under load with every acknowledged write surviving on every replica.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bedrock_proto::v1 as pb;

use crate::cluster_harness::{scan_all, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_through_one_node_reads_linearizably_through_the_others() {
    let cluster = Cluster::start(3);
    cluster.leader(Duration::from_secs(30)).await;
    let mut c2 = cluster.node(2).grpc().await;
    let put = pb::PutRequest { key: b"name".to_vec(), value: b"raft".to_vec() };
    let revision = c2.put(put).await.expect("put through node 2").into_inner().revision;
    for id in [1, 3] {
        let mut c = cluster.node(id).grpc().await;
        let got = c.get(pb::GetRequest { key: b"name".to_vec(), serializable: false }).await.expect("get").into_inner();
        assert_eq!(got.kv.map(|kv| kv.value).as_deref(), Some(&b"raft"[..]), "node {id}");
        assert!(got.revision >= revision, "node {id} read revision {} < {revision}", got.revision);
    }
    // `bedrock status` through any node lists every member's client address.
    let out = std::process::Command::new(crate::common::BIN)
        .args(["--endpoints", &cluster.node(3).endpoint(), "status", "-o", "json"])
        .output()
        .expect("run bedrock status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let members: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(members.len(), 3, "{members:?}");
    for m in &members {
        let expected = cluster.node(m["id"].as_u64().expect("id")).endpoint();
        assert_eq!(m["client_addr"].as_str(), Some(expected.as_str()), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_sigkill_under_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let endpoints = cluster.endpoints(&[1, 2, 3]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..16 {
        // Each writer uses a node other than the leader first, so it keeps
        // going through the kill.
        let order: Vec<String> = endpoints.iter().cycle().skip(w % 3).take(3).cloned().collect();
        let acked = acked.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut client = bedrock_proto::Client::connect(order).await.expect("connect");
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && i < 100_000 {
                let key = format!("w{w:02}-{i:06}");
                if client.put(key.as_bytes(), b"v").await.is_ok() {
                    acked.lock().unwrap().push(key);
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "no write acknowledged before the kill");
    cluster.kill(leader);
    let killed_at = Instant::now();
    let new_leader = cluster.leader(Duration::from_secs(10)).await;
    let elected_in = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    // A put through the new leader succeeds.
    let mut c = cluster.node(new_leader).grpc().await;
    c.put(pb::PutRequest { key: b"after-kill".to_vec(), value: b"1".to_vec() }).await.expect("put after failover");
    let serving_in = killed_at.elapsed();
    eprintln!("new leader {new_leader} elected {elected_in:?} and serving {serving_in:?} after the kill");
    assert!(serving_in < Duration::from_secs(3), "serving again only after {serving_in:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    // Restart the old leader; every replica converges to the same contents.
    cluster.restart(leader);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > before, "no write acknowledged after the kill");
    let deadline = Instant::now() + Duration::from_secs(60);
    let contents = loop {
        let mut all = Vec::new();
        for id in 1..=3 {
            all.push(scan_all(cluster.node(id)).await);
        }
        if all.iter().all(|c| c == &all[0]) {
            break all.swap_remove(0);
        }
        assert!(Instant::now() < deadline, "replicas did not converge");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let keys: std::collections::HashSet<Vec<u8>> = contents.into_iter().map(|(k, _)| k).collect();
    let missing: Vec<&String> = acked.iter().filter(|k| !keys.contains(k.as_bytes())).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
