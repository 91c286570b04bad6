//! Three in-process nodes on the in-memory transport: replication,
//! linearizable reads through followers, leader failure, snapshots for a
//! node that fell behind a compacted log, membership changes, a network
//! that drops, duplicates, delays and reorders messages (seeded), and a
//! partitioned minority.

use std::path::Path;
use std::time::{Duration, Instant};

use bedrock_lsm::WriteBatch;
use bedrock_raft::command::Command;
use bedrock_raft::transport::MemNetwork;
use bedrock_raft::{Member, MemberChange, Members, Node, NodeConfig, NodeHandle, Replica};

fn members(n: u64) -> Members {
    Members::parse_initial_cluster(
        &(1..=n).map(|i| format!("{i}=127.0.0.1:{}", 19000 + i)).collect::<Vec<_>>().join(","),
    )
    .unwrap()
}

fn config(id: u64, root: &Path, initial: Option<Members>) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, root.join(format!("n{id}")));
    cfg.cluster_id = 7;
    cfg.tick = Duration::from_millis(20);
    cfg.compact_entries = 300;
    cfg.catch_up_entries = 50;
    cfg.initial_cluster = initial;
    cfg.lsm.memtable_size_bytes = 64 << 10;
    cfg
}

fn start(net: &MemNetwork, cfg: NodeConfig) -> Node {
    let net = net.clone();
    Node::start(cfg, move |h| net.transport(h)).unwrap()
}

fn put(key: &str, value: &str) -> Vec<Command> {
    let mut b = WriteBatch::new();
    b.put(key.as_bytes(), value.as_bytes());
    vec![Command::Write(b)]
}

async fn wait_leader(nodes: &[&NodeHandle]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = nodes.iter().find_map(|n| n.leader().filter(|&l| l == n.id())) {
            return l;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read(r: &Replica, key: &str) -> Option<Vec<u8>> {
    r.read_index().await.unwrap();
    r.node().state_machine().db().get(key.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_fail_over_snapshot_and_change_membership() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new();
    let mut nodes: Vec<Option<Node>> =
        (1..=3).map(|id| Some(start(&net, config(id, dir.path(), Some(members(3)))))).collect();
    let handle = |nodes: &Vec<Option<Node>>, id: u64| nodes[id as usize - 1].as_ref().unwrap().handle();
    let all = |nodes: &Vec<Option<Node>>| nodes.iter().flatten().map(Node::handle).collect::<Vec<_>>();
    let h = all(&nodes);
    wait_leader(&h.iter().collect::<Vec<_>>()).await;

    // A write through node 2 is read back through nodes 1 and 3.
    let r2 = Replica::in_memory(h[1].clone(), net.clone());
    let results = r2.propose(put("name", "raft")).await.unwrap();
    let revision = *results[0].as_ref().unwrap();
    assert!(revision > 5);
    for r in [Replica::in_memory(h[0].clone(), net.clone()), Replica::in_memory(h[2].clone(), net.clone())] {
        assert_eq!(read(&r, "name").await.as_deref(), Some(&b"raft"[..]));
    }

    // A transaction whose read went stale conflicts on every replica alike.
    let mut reads = bedrock_txn::ReadSet::default();
    reads.record_key(b"name", revision - 1);
    let mut w = WriteBatch::new();
    w.put(b"name", b"stale");
    let res = r2.propose(vec![Command::Txn { reads, writes: w }]).await.unwrap();
    assert!(matches!(res[0], Err(bedrock_raft::Error::Conflict { .. })), "{res:?}");

    // Stop a follower, write enough to compact the log past it, restart it:
    // it catches up through a snapshot.
    let leader = wait_leader(&h.iter().collect::<Vec<_>>()).await;
    // Handles keep a stopped node's database open; let go of them.
    drop((h, r2));
    let lagging = (1..=3).find(|&i| i != leader).unwrap();
    net.remove(lagging);
    nodes[lagging as usize - 1].take().unwrap().stop();
    let rl = Replica::in_memory(handle(&nodes, leader), net.clone());
    for i in 0..1500 {
        rl.propose(put(&format!("k{i:05}"), &format!("v{i}"))).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle(&nodes, leader).status().first_index < 1000 {
        assert!(Instant::now() < deadline, "log never compacted: {:?}", handle(&nodes, leader).status());
        rl.propose(put("tick", "x")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes[lagging as usize - 1] = Some(start(&net, config(lagging, dir.path(), Some(members(3)))));
    let rlag = Replica::in_memory(handle(&nodes, lagging), net.clone());
    assert_eq!(read(&rlag, "k01499").await.as_deref(), Some(&b"v1499"[..]));
    assert!(handle(&nodes, lagging).status().snapshots_installed >= 1, "caught up without a snapshot");

    // Add node 4 as a learner (it joins empty and gets a snapshot), promote
    // it, then remove node 1; the cluster keeps serving.
    let n4 = start(&net, config(4, dir.path(), None));
    rl.change_membership(MemberChange::AddLearner {
        id: 4,
        member: Member { raft_addr: "127.0.0.1:19004".into(), client_addr: String::new() },
    })
    .await
    .unwrap();
    let r4 = Replica::in_memory(n4.handle(), net.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while n4.handle().state_machine().db().get(b"k01499").unwrap().is_none() {
        assert!(Instant::now() < deadline, "learner never caught up: {:?}", n4.handle().status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rl.change_membership(MemberChange::Promote { id: 4 }).await.unwrap();
    rl.change_membership(MemberChange::Remove { id: 1 }).await.unwrap();
    let res = r4.propose(put("after", "membership")).await.unwrap();
    assert!(res[0].is_ok());
    let st = n4.handle().status();
    assert!(st.voters.contains(&4) && !st.voters.contains(&1), "{st:?}");
    assert_eq!(
        read(&Replica::in_memory(handle(&nodes, 3), net.clone()), "after").await.as_deref(),
        Some(&b"membership"[..])
    );
}

/// `bedrock status` right after a restart showed a member with id 0 and
/// no entry for the node itself: the status was first published after the
/// driver's first tick.
#[test]
fn status_is_published_before_the_first_tick() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new();
    let mut cfg = config(2, dir.path(), Some(members(3)));
    cfg.tick = Duration::from_secs(3600);
    let node = start(&net, cfg);
    let s = node.handle().status();
    assert_eq!((s.id, s.role.as_str(), s.voters.len()), (2, "follower", 3));
    assert_eq!(s.members.0.len(), 3);
    node.stop();
}

/// A node started with `--join` could never catch up over gRPC: with no
/// configuration of its own it knew no peer address, so its answers to
/// the leader's first appends were dropped and the leader never got to
/// sending a snapshot. It now uses the addresses the cluster listed.
#[test]
fn joining_node_knows_the_listed_addresses_until_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new();
    let mut cfg = config(4, dir.path(), None);
    cfg.join_peers = members(4);
    let node = start(&net, cfg);
    assert_eq!(node.handle().members(), members(4));
    node.stop();
    // Once the node has a configuration, the hint is ignored.
    let mut cfg = config(1, dir.path(), Some(members(3)));
    cfg.join_peers = members(4);
    let node = start(&net, cfg);
    assert_eq!(node.handle().members(), members(3));
    node.stop();
}

/// Every key-value of a node's state machine, in key order.
fn contents(h: &NodeHandle) -> Vec<(Vec<u8>, Vec<u8>)> {
    h.state_machine().db().lsm().scan(b"", None, usize::MAX).unwrap()
}

/// Waits until every node has applied at least `index` (a write's
/// revision is its log index).
async fn converge(nodes: &[NodeHandle], index: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let applied: Vec<u64> = nodes.iter().map(|n| n.status().applied_index).collect();
        if applied.iter().all(|&a| a >= index) {
            return;
        }
        assert!(Instant::now() < deadline, "replicas never applied {index}: applied {applied:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes through every node while the network drops 10%, duplicates 10%
/// and delays (so reorders) messages by up to 20 ms. Every acknowledged
/// write is applied on every replica, writes with an unknown outcome are
/// applied everywhere or nowhere, and the replicas end identical. The seed
/// comes from `BEDROCK_SIM_SEED` (default 7) and is printed on failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_reordering_network_keeps_replicas_identical() {
    let seed: u64 = std::env::var("BEDROCK_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    eprintln!("seed {seed} (rerun with BEDROCK_SIM_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::with_seed(seed);
    let nodes: Vec<Node> = (1..=3).map(|id| start(&net, config(id, dir.path(), Some(members(3))))).collect();
    let handles: Vec<NodeHandle> = nodes.iter().map(Node::handle).collect();
    wait_leader(&handles.iter().collect::<Vec<_>>()).await;
    net.set_faults(bedrock_raft::transport::Faults { drop: 0.1, duplicate: 0.1, max_delay: Duration::from_millis(20) })
        .expect("set faults");

    let replicas: Vec<Replica> = handles.iter().map(|h| Replica::in_memory(h.clone(), net.clone())).collect();
    let (mut acked, mut unknown) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..150u32 {
        let key = format!("k{i:04}");
        loop {
            assert!(Instant::now() < deadline, "seed {seed}: writes stalled at {key}");
            match replicas[i as usize % 3].propose(put(&key, "v")).await {
                Ok(results) => {
                    results[0].as_ref().unwrap_or_else(|e| panic!("seed {seed}: {key}: {e}"));
                    acked.push(key);
                    break;
                }
                Err(bedrock_raft::Error::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(bedrock_raft::Error::OutcomeUnknown(_)) => {
                    unknown.push(key);
                    break;
                }
                Err(e) => panic!("seed {seed}: {key}: unexpected {e}"),
            }
        }
    }
    net.set_faults(bedrock_raft::transport::Faults::default()).expect("set faults");
    // One more write after healing commits everything before it.
    let last = *replicas[0].propose(put("final", "v")).await.unwrap()[0].as_ref().unwrap();
    converge(&handles, last).await;
    let first = contents(&handles[0]);
    for h in &handles[1..] {
        let other = contents(h);
        if other != first {
            let only = |a: &[(Vec<u8>, Vec<u8>)], b: &[(Vec<u8>, Vec<u8>)]| {
                a.iter()
                    .filter(|kv| !b.contains(kv))
                    .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>()
            };
            let statuses: Vec<_> = handles.iter().map(|h| h.status()).collect();
            panic!(
                "seed {seed}: node {} differs from node 1: only on node 1 {:?}, only on node {} {:?}; statuses {statuses:#?}",
                h.id(),
                only(&first, &other),
                h.id(),
                only(&other, &first)
            );
        }
    }
    let keys: Vec<String> = first.iter().map(|(k, _)| String::from_utf8(k.clone()).unwrap()).collect();
    for key in &acked {
        assert!(keys.contains(key), "seed {seed}: acknowledged {key} lost");
    }
    for key in &keys {
        assert!(
            key == "final" || acked.contains(key) || unknown.contains(key),
            "seed {seed}: {key} appeared from nowhere"
        );
    }
    eprintln!("seed {seed}: {} acknowledged, {} unknown", acked.len(), unknown.len());
}

/// The leader cut off from the other two cannot commit (the write fails
/// and never appears), the majority elects a new leader and commits, and
/// after healing the old leader catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_minority_cannot_commit_and_the_majority_can() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new();
    let nodes: Vec<Node> = (1..=3).map(|id| start(&net, config(id, dir.path(), Some(members(3))))).collect();
    let handles: Vec<NodeHandle> = nodes.iter().map(Node::handle).collect();
    let old = wait_leader(&handles.iter().collect::<Vec<_>>()).await;
    let others: Vec<u64> = (1..=3).filter(|&i| i != old).collect();
    net.partition(&[&[old], &others]);

    let minority = Replica::in_memory(handles[old as usize - 1].clone(), net.clone());
    let err = minority.propose(put("lost", "x")).await.expect_err("a minority committed a write");
    assert!(matches!(err, bedrock_raft::Error::Unavailable(_) | bedrock_raft::Error::OutcomeUnknown(_)), "{err}");
    assert!(minority.read_index().await.is_err(), "a minority served a linearizable read");

    let majority = Replica::in_memory(handles[others[0] as usize - 1].clone(), net.clone());
    majority.propose(put("kept", "y")).await.expect("the majority commits");
    let new = handles[others[0] as usize - 1].leader().unwrap();
    assert_ne!(new, old, "the isolated node still leads the majority");

    net.heal();
    let last = *majority.propose(put("after", "z")).await.unwrap()[0].as_ref().unwrap();
    converge(&handles, last).await;
    for h in &handles {
        let db = h.state_machine().db();
        assert_eq!(db.get(b"kept").unwrap().as_deref(), Some(&b"y"[..]), "node {}", h.id());
        assert_eq!(db.get(b"lost").unwrap(), None, "node {}: the minority's write appeared", h.id());
    }
}
