//! `cargo xtask jepsen --nodes 5 --time 60 --nemesis kill,pause,partition
//! --workload register|bank|set|list-append [--clients N] [--seed S]
//! [--out DIR]`: a Jepsen-style test of a real cluster of `bedrock serve`
//! processes.
//!
//! Clients (one OS thread each) send requests to random nodes over the
//! HTTP API while a nemesis, every 2–5 s, injects one fault, the enabled
//! nemeses in shuffled rounds (each once a round): SIGKILL and restart of
//! a random node or the leader (`kill`, 1–4 s), SIGSTOP / SIGCONT
//! (`pause`, 1–4 s), or a network fault between the nodes (`partition`,
//! 6–10 s, longer than the server's 5 s request timeout). Every fault is healed before the final reads. Each
//! operation is recorded with its call and return times and one of three
//! outcomes: `ok`, `fail` (certainly not applied: HTTP 4xx/503, or the
//! connection was refused so nothing was sent) or `info` (indeterminate:
//! HTTP 504, or the connection broke after the request went out). Nobody
//! retries an `info` operation.
//!
//! Host modes (printed at the start and in the summary):
//! - `netns`, with `--nemesis partition` when running as root with `ip`
//!   and `iptables` (`.ci/run` installs them): node i runs in network
//!   namespace `bedrockj-<i>` at 10.77.0.(10+i), ports 8080 (client) and
//!   9000 (Raft), through `ip netns exec` (which execs, so signals reach
//!   the server); veth pairs join the namespaces to bridge `bedrockj0`
//!   (10.77.0.1) in the root namespace, where the clients stay. See
//!   `netns.rs`: stale `bedrockj` objects of a crashed run are removed at
//!   the start, everything is torn down at the end.
//! - `loopback` otherwise: all nodes on 127.0.0.1 on free ports, kill and
//!   pause only; the output says that partitions are not available.
//!
//! Network faults are iptables DROP rules in the nodes' namespaces (INPUT
//! `-s` and OUTPUT `-d` each cut-off peer), so they cut node-to-node
//! traffic only and clients reach every node throughout, as in Jepsen. The
//! shapes come in turn, from a random one: isolate the leader (a random
//! node if none is known); a random majority/minority split; a bridge (two
//! halves that both see one middle node); packet loss, where every packet
//! between two nodes is dropped with a probability of 10–40 %
//! (`-m statistic --mode random`; this kernel has no `netem`, so no delay
//! or reordering). Each partition window records the nodes it cuts off
//! from a majority; no operation sent to such a node after the cut may be
//! acknowledged before the heal (it could neither commit nor confirm a
//! ReadIndex read). The summary counts those operations and what the
//! majority acknowledged meanwhile.
//!
//! Workloads and checkers:
//! - `register`: gets and puts of unique values on 5 keys; the history is
//!   checked for linearizability by the Wing–Gong/Porcupine checker in
//!   `crates/bedrock-raft/tests/linearizability/` (indeterminate puts may
//!   take effect late or never; failed gets are dropped).
//! - `bank`: 8 accounts of 100; transfers read two balances (linearizable
//!   gets) and commit a compare-and-swap transaction moving a random
//!   amount; reads scan all accounts at one revision. Every read, and the
//!   final one, must sum to 800 with no negative balance.
//! - `set`: inserts of unique elements; every acknowledged insert must be
//!   in the final read, and nothing that was never attempted.
//! - `list-append`: transactions of 1–3 appends to and reads of lists
//!   under 6 keys, each a `/txn` whose compares pin every list it touches
//!   to the value read just before; checked for serializability by the
//!   Elle-style checker in `crates/bedrock-txn/tests/elle/` (inferred ww,
//!   wr and rw dependencies, no cycle), and every committed append must be
//!   in the final read, no aborted one. An indeterminate transaction
//!   counts as committed if its appends are in the final read, else as
//!   aborted.
//!
//! Output in `--out` (default `target/jepsen/<workload>`): `history.jsonl`
//! (one operation per line), `nemesis.jsonl` (one fault window per line:
//! kind, node, detail such as `split [1, 4] | [2, 3, 5]`, the cut-off
//! nodes), `latency.svg` (latency of every operation over time, nemesis
//! windows shaded: kill red, pause blue, partition green, loss orange) and
//! a summary on stdout. The exit status is non-zero when the checker finds
//! a violation.

#[path = "../../crates/bedrock-raft/tests/linearizability/mod.rs"]
#[allow(dead_code)]
mod linearizability;

#[path = "../../crates/bedrock-txn/tests/elle/mod.rs"]
#[allow(dead_code)]
mod elle;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::cluster::{self, NodeSpec, Start, Started};
use crate::loadgen::Conn;
use crate::netns::{self, Net, NetFault};

/// Accounts of the bank workload and their starting balance.
const ACCOUNTS: u64 = 8;
const START_BALANCE: i64 = 100;
/// Keys of the register workload.
const REGISTER_KEYS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Register,
    Bank,
    Set,
    ListAppend,
}

#[derive(Debug)]
struct Opts {
    nodes: u64,
    time: Duration,
    kill: bool,
    pause: bool,
    partition: bool,
    workload: Workload,
    clients: u64,
    seed: u64,
    out: PathBuf,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            nodes: 5,
            time: Duration::from_secs(60),
            kill: true,
            pause: true,
            partition: false,
            workload: Workload::Register,
            clients: 8,
            seed: std::process::id().into(),
            out: PathBuf::new(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--nodes" => o.nodes = value()?.parse().context("--nodes")?,
                "--time" => o.time = Duration::from_secs(value()?.parse().context("--time takes seconds")?),
                "--clients" => o.clients = value()?.parse().context("--clients")?,
                "--seed" => o.seed = value()?.parse().context("--seed")?,
                "--out" => o.out = PathBuf::from(value()?),
                "--workload" => {
                    o.workload = match value()?.as_str() {
                        "register" => Workload::Register,
                        "bank" => Workload::Bank,
                        "set" => Workload::Set,
                        "list-append" => Workload::ListAppend,
                        w => bail!("unknown workload {w} (register, bank, set, list-append)"),
                    }
                }
                "--nemesis" => {
                    let list = value()?.clone();
                    (o.kill, o.pause, o.partition) = (false, false, false);
                    for n in list.split(',').filter(|n| !n.is_empty()) {
                        match n {
                            "kill" => o.kill = true,
                            "pause" => o.pause = true,
                            "partition" => o.partition = true,
                            "none" => {}
                            other => bail!("unknown nemesis {other} (kill, pause, partition, none)"),
                        }
                    }
                }
                other => bail!("unknown flag {other}"),
            }
        }
        ensure!((3..=9).contains(&o.nodes), "--nodes must be 3..=9");
        ensure!(o.clients >= 1, "--clients must be at least 1");
        if o.out.as_os_str().is_empty() {
            let name = match o.workload {
                Workload::Register => "register",
                Workload::Bank => "bank",
                Workload::Set => "set",
                Workload::ListAppend => "list-append",
            };
            o.out = PathBuf::from("target/jepsen").join(name);
        }
        Ok(o)
    }
}

/// How a recorded operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Info,
}

/// One operation of the history.
#[derive(Debug, Clone)]
struct Record {
    client: u64,
    node: u64,
    f: &'static str,
    key: u64,
    value: Option<i64>,
    /// What a read returned (register: the value; bank: the balances; set: the elements).
    read: Option<Vec<i64>>,
    /// list-append: the transaction's micro-operations with what they saw.
    txn: Vec<elle::Op>,
    outcome: Outcome,
    start_us: u64,
    end_us: u64,
    error: String,
}

/// The answer to one HTTP request.
enum Reply {
    /// Answered with this status and body.
    Answered(u16, Vec<u8>),
    /// Nothing was sent (connection refused or timed out).
    NotSent(String),
    /// Sent, but no answer (the connection broke or timed out).
    Lost(String),
}

fn http(addr: &str, method: &str, target: &str, body: &[u8]) -> Reply {
    let Ok(addr) = addr.parse() else { return Reply::NotSent(format!("bad address {addr}")) };
    let mut conn = match Conn::open(addr) {
        Ok(c) => c,
        Err(e) => return Reply::NotSent(e.to_string()),
    };
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(body);
    match conn.send(&req) {
        Ok((status, body)) => Reply::Answered(status, body),
        Err(e) => Reply::Lost(format!("{e:#}")),
    }
}

/// Outcome of a write from its reply: 200 ok; 4xx and 503 certainly not
/// applied; 504, other 5xx and lost connections indeterminate.
fn write_outcome(reply: &Reply) -> (Outcome, String) {
    match reply {
        Reply::Answered(200, _) => (Outcome::Ok, String::new()),
        Reply::Answered(s @ (400..=499 | 503), b) => {
            (Outcome::Fail, format!("{s} {}", String::from_utf8_lossy(b).trim()))
        }
        Reply::Answered(s, b) => (Outcome::Info, format!("{s} {}", String::from_utf8_lossy(b).trim())),
        Reply::NotSent(e) => (Outcome::Fail, e.clone()),
        Reply::Lost(e) => (Outcome::Info, e.clone()),
    }
}

/// Outcome of a `/txn` write: like [`write_outcome`], but an answer with
/// `"succeeded":false` (a compare failed, nothing applied) is a failure.
fn txn_outcome(reply: &Reply) -> (Outcome, String) {
    match reply {
        Reply::Answered(200, body) if String::from_utf8_lossy(body).contains(r#""succeeded":false"#) => {
            (Outcome::Fail, "compare failed".into())
        }
        other => write_outcome(other),
    }
}

/// A small xorshift generator, so a seed names the clients' choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The cluster under test.
struct Cluster {
    bin: PathBuf,
    specs: Vec<NodeSpec>,
    initial: String,
    procs: Mutex<Vec<Option<Started>>>,
    paused: Mutex<BTreeSet<u64>>,
    /// The nodes' network namespaces, when the partition nemesis has them.
    net: Option<Net>,
}

/// Client and Raft ports of a node in its own namespace (its own address).
const NETNS_CLIENT_PORT: u16 = 8080;
const NETNS_RAFT_PORT: u16 = 9000;

impl Cluster {
    /// Starts `n` nodes: each in its namespace of `net`, or all on
    /// 127.0.0.1 on free ports.
    fn start(bin: PathBuf, n: u64, dir: &Path, net: Option<Net>) -> Result<Cluster> {
        let specs: Vec<NodeSpec> = if net.is_some() {
            (1..=n)
                .map(|i| NodeSpec {
                    client: format!("{}:{NETNS_CLIENT_PORT}", netns::node_addr(i)),
                    raft: format!("{}:{NETNS_RAFT_PORT}", netns::node_addr(i)),
                    netns: Some(netns::namespace(i)),
                    ..NodeSpec::new(i, NETNS_CLIENT_PORT, NETNS_RAFT_PORT, dir)
                })
                .collect()
        } else {
            let ports = crate::bench_cluster::free_ports(2 * n as usize)?;
            (1..=n).map(|i| NodeSpec::new(i, ports[(i - 1) as usize], ports[(n + i - 1) as usize], dir)).collect()
        };
        let initial = cluster::initial_cluster(&specs);
        let c = Cluster { bin, specs, initial, procs: Mutex::new(Vec::new()), paused: Mutex::default(), net };
        for s in &c.specs {
            let started = cluster::spawn(&c.bin, s, &Start::Initial(&c.initial), &[])?;
            c.procs.lock().expect("lock").push(Some(started));
        }
        for (i, s) in c.specs.iter().enumerate() {
            let mut procs = c.procs.lock().expect("lock");
            let started = procs[i].as_mut().context("node not started")?;
            cluster::wait_serving(s, started, Duration::from_secs(60))?;
            if s.netns.is_some() {
                // `ip netns exec` must have exec'd the server, so that
                // SIGKILL and SIGSTOP reach it rather than a wrapper.
                let pid = started.child.id();
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let program = cmdline.split(|&b| b == 0).next().unwrap_or_default();
                ensure!(
                    program == c.bin.as_os_str().as_encoded_bytes(),
                    "node {} (pid {pid}) runs {:?}, not the server: signals would miss it",
                    s.id,
                    String::from_utf8_lossy(program)
                );
            }
        }
        cluster::wait_leader(&c.bin, &c.endpoints(), None, Duration::from_secs(30))?;
        Ok(c)
    }

    fn endpoints(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.client.clone()).collect()
    }

    fn pid(&self, id: u64) -> Option<u32> {
        self.procs.lock().expect("lock").get((id - 1) as usize)?.as_ref().map(|p| p.child.id())
    }

    fn kill(&self, id: u64) {
        let taken = self.procs.lock().expect("lock").get_mut((id - 1) as usize).and_then(Option::take);
        if let Some(mut p) = taken {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        self.paused.lock().expect("lock").remove(&id);
    }

    fn restart(&self, id: u64) -> Result<()> {
        let spec = &self.specs[(id - 1) as usize];
        let mut started = cluster::spawn(&self.bin, spec, &Start::Initial(&self.initial), &[])?;
        cluster::wait_serving(spec, &mut started, Duration::from_secs(60))?;
        self.procs.lock().expect("lock")[(id - 1) as usize] = Some(started);
        Ok(())
    }

    fn signal(&self, id: u64, sig: &str) {
        if let Some(pid) = self.pid(id) {
            let _ = std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
        }
    }

    /// Removes network faults, restarts killed nodes and resumes paused ones.
    fn heal(&self) -> Result<()> {
        if let Some(net) = &self.net {
            net.heal()?;
        }
        for id in std::mem::take(&mut *self.paused.lock().expect("lock")) {
            self.signal(id, "CONT");
        }
        for s in &self.specs {
            if self.pid(s.id).is_none() {
                self.restart(s.id)?;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.specs.len() as u64 {
            self.signal(id, "CONT");
            self.kill(id);
        }
    }
}

/// One nemesis window, for the chart and `nemesis.jsonl`.
#[derive(Debug, Clone)]
struct Fault {
    kind: &'static str,
    /// The node killed, paused or isolated, or the bridge's middle; 0 for
    /// a split or packet loss.
    node: u64,
    /// The network fault in words (empty for kill and pause).
    detail: String,
    /// Nodes cut off from a majority: none of them may acknowledge an
    /// operation that starts and ends inside the window.
    cut_off: Vec<u64>,
    start_us: u64,
    end_us: u64,
}

/// Runs `cargo xtask jepsen ...`.
pub fn run(args: &[String]) -> Result<()> {
    let o = Opts::parse(args)?;
    let bin = cluster::build_bedrock(false)?;
    let _ = std::fs::remove_dir_all(&o.out);
    std::fs::create_dir_all(&o.out).with_context(|| format!("create {}", o.out.display()))?;
    let data = o.out.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
    let nemeses: Vec<&str> = [(o.kill, "kill"), (o.pause, "pause"), (o.partition, "partition")]
        .iter()
        .filter(|n| n.0)
        .map(|n| n.1)
        .collect();
    println!(
        "jepsen: {} nodes, {:?} workload, {} clients, {} s, nemesis [{}], seed {}, output in {}",
        o.nodes,
        o.workload,
        o.clients,
        o.time.as_secs(),
        nemeses.join(" "),
        o.seed,
        o.out.display()
    );
    let ids: Vec<u64> = (1..=o.nodes).collect();
    let (net, host_mode) = if o.partition {
        match Net::setup(&ids) {
            Ok(net) => (Some(net), "netns"),
            Err(e) => {
                println!("jepsen: network namespaces unavailable: {e:#}");
                (None, "loopback")
            }
        }
    } else {
        (None, "loopback")
    };
    match &net {
        Some(_) => println!(
            "jepsen: host mode netns: node i in namespace bedrockj-<i> at {}..{} (client port \
             {NETNS_CLIENT_PORT}, raft port {NETNS_RAFT_PORT}), bridge bedrockj0 at {}; clients in the root \
             namespace; partitions and packet loss between nodes by iptables",
            netns::node_addr(1),
            netns::node_addr(o.nodes),
            netns::BRIDGE_ADDR
        ),
        None => println!(
            "jepsen: host mode loopback: all nodes on 127.0.0.1, process-level nemeses only (kill, pause); \
             partitions are not available{}",
            if o.partition {
                ", nemesis `partition` skipped"
            } else {
                " (they need `--nemesis partition`, root, `ip` and `iptables`)"
            }
        ),
    }
    let cluster = Arc::new(Cluster::start(bin, o.nodes, &data, net)?);
    let epoch = Instant::now();
    let now_us = move || epoch.elapsed().as_micros() as u64;
    if o.workload == Workload::Bank {
        setup_bank(&cluster)?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::<Record>::new()));
    let mut threads = Vec::new();
    for client in 0..o.clients {
        let (cluster, stop, history, workload) = (cluster.clone(), stop.clone(), history.clone(), o.workload);
        let seed = o.seed.wrapping_add(client * 7919);
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let node = 1 + rng.below(cluster.specs.len() as u64);
                let addr = cluster.specs[(node - 1) as usize].client.clone();
                let mut r = match workload {
                    Workload::Register => register_op(&addr, client, n, &mut rng, &now_us),
                    Workload::Bank => bank_op(&addr, &mut rng, &now_us),
                    Workload::Set => set_op(&addr, client, n, &now_us),
                    Workload::ListAppend => append_op(&addr, client, n, &mut rng, &now_us),
                };
                (r.client, r.node) = (client, node);
                history.lock().expect("lock").push(r);
                n += 1;
                if matches!(workload, Workload::Bank | Workload::ListAppend) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }));
    }

    let faults = nemesis(&cluster, &o, &now_us);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let faults = faults?;
    cluster.heal()?;
    cluster::wait_leader(&cluster.bin, &cluster.endpoints(), None, Duration::from_secs(30))?;
    let mut history = std::mem::take(&mut *history.lock().expect("lock"));
    history.sort_by_key(|r| r.start_us);

    let verdict = match o.workload {
        Workload::Register => check_register(&history),
        Workload::Bank => check_bank(&cluster, &history),
        Workload::Set => check_set(&cluster, &history),
        Workload::ListAppend => check_list_append(&cluster, &history),
    };
    write_outputs(&o.out, &history, &faults)?;
    let count = |x: Outcome| history.iter().filter(|r| r.outcome == x).count();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &faults {
        *kinds.entry(f.kind).or_default() += 1;
    }
    println!(
        "jepsen: {} operations: {} ok, {} fail, {} indeterminate; {} faults injected {kinds:?}; host mode {host_mode}",
        history.len(),
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Info),
        faults.len()
    );
    let verdict = match (verdict, check_cut_off(&history, &faults)) {
        (Ok(summary), Ok(cut)) => {
            if let Some(cut) = cut {
                println!("jepsen: {cut}");
            }
            Ok(summary)
        }
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    match verdict {
        Ok(summary) => {
            println!("jepsen: {:?} checker: VALID ({summary})", o.workload);
            Ok(())
        }
        Err(e) => {
            println!("jepsen: {:?} checker: INVALID: {e}", o.workload);
            bail!("the {:?} history is not valid; see {}", o.workload, o.out.display())
        }
    }
}

/// Injects faults until the time is up: every 2–5 s one fault, the
/// nemeses in shuffled rounds of each once: a node (the leader half of the time) killed
/// or paused for 1–4 s, or, with namespaces, a network fault for 6–10 s
/// (the shapes of [`NetFault::random`] in turn: isolate the leader,
/// majority/minority split, bridge, packet loss); then it is healed.
fn nemesis(cluster: &Cluster, o: &Opts, now_us: &dyn Fn() -> u64) -> Result<Vec<Fault>> {
    let mut rng = Rng::new(o.seed ^ 0xFA17);
    let deadline = Instant::now() + o.time;
    let mut faults = Vec::new();
    let ids: Vec<u64> = cluster.specs.iter().map(|s| s.id).collect();
    // Network faults take the four shapes in turn, from a random one.
    let mut shape = rng.below(4);
    let kinds: Vec<&'static str> =
        [(o.kill, "kill"), (o.pause, "pause"), (o.partition && cluster.net.is_some(), "partition")]
            .iter()
            .filter(|k| k.0)
            .map(|k| k.1)
            .collect();
    // Rounds of every nemesis once, shuffled: each shows up in a short run.
    let mut round: Vec<&'static str> = Vec::new();
    while Instant::now() + Duration::from_secs(7) < deadline {
        std::thread::sleep(Duration::from_millis(2_000 + rng.below(3_000)));
        if round.is_empty() {
            round.clone_from(&kinds);
            for i in (1..round.len()).rev() {
                round.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let Some(kind) = round.pop() else { continue };
        let leader = cluster::leader(&cluster.bin, &cluster.endpoints());
        if let (Some(net), "partition") = (&cluster.net, kind) {
            let fault = NetFault::random(shape, &ids, leader, &mut |n| rng.below(n));
            shape += 1;
            // Longer than the server's 5 s request timeout, so that
            // requests to a cut-off node can fail inside the window.
            let hold = Duration::from_millis(6_000 + rng.below(4_000));
            if Instant::now() + hold + Duration::from_secs(1) > deadline {
                break;
            }
            net.apply(&fault)?;
            let start_us = now_us();
            std::thread::sleep(hold);
            let end_us = now_us();
            net.heal()?;
            let node = match &fault {
                NetFault::Isolate(n) | NetFault::Bridge { middle: n, .. } => *n,
                NetFault::Split(..) | NetFault::Loss(_) => 0,
            };
            let (detail, cut_off) = (fault.to_string(), fault.cut_off(&ids));
            faults.push(Fault { kind: fault.kind(), node, detail, cut_off, start_us, end_us });
            continue;
        }
        let node = match leader {
            Some(l) if rng.below(2) == 0 => l,
            _ => 1 + rng.below(cluster.specs.len() as u64),
        };
        let start_us = now_us();
        match kind {
            "kill" => cluster.kill(node),
            _ => {
                cluster.signal(node, "STOP");
                cluster.paused.lock().expect("lock").insert(node);
            }
        }
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(3_000)));
        match kind {
            "kill" => cluster.restart(node)?,
            _ => {
                cluster.signal(node, "CONT");
                cluster.paused.lock().expect("lock").remove(&node);
            }
        }
        faults.push(Fault { kind, node, detail: String::new(), cut_off: Vec::new(), start_us, end_us: now_us() });
    }
    let rest = deadline.saturating_duration_since(Instant::now());
    std::thread::sleep(rest);
    Ok(faults)
}

/// Operations sent to a node while a network fault cut it off from a
/// majority (started after the rules were in): none may be acknowledged
/// before the rules are removed, since a node that cannot reach a quorum
/// can neither commit a write nor confirm a linearizable read. The
/// summary also counts what the majority acknowledged meanwhile, so a
/// partition that cut nothing would show. `Ok(None)` when no fault cut a
/// node off.
fn check_cut_off(history: &[Record], faults: &[Fault]) -> Result<Option<String>, String> {
    let windows: Vec<&Fault> = faults.iter().filter(|f| !f.cut_off.is_empty()).collect();
    if windows.is_empty() {
        return Ok(None);
    }
    let (mut sent, mut after, mut fail, mut info, mut majority) = (0, 0, 0, 0, 0);
    for f in &windows {
        for r in history.iter().filter(|r| (f.start_us..=f.end_us).contains(&r.start_us)) {
            if !f.cut_off.contains(&r.node) {
                majority += usize::from(r.outcome == Outcome::Ok && r.end_us <= f.end_us);
                continue;
            }
            sent += 1;
            match r.outcome {
                _ if r.end_us > f.end_us => after += 1,
                Outcome::Ok => {
                    return Err(format!(
                        "{} {} through node {} acknowledged at {} µs while `{}` cut it off from the majority \
                         ({}–{} µs)",
                        r.f, r.key, r.node, r.end_us, f.detail, f.start_us, f.end_us
                    ))
                }
                Outcome::Fail => fail += 1,
                Outcome::Info => info += 1,
            }
        }
    }
    Ok(Some(format!(
        "{} partitions cut nodes off from the majority: {sent} operations sent to cut-off nodes, none acknowledged \
         before the heal ({fail} failed and {info} indeterminate before it, {after} answered after it); {majority} \
         acknowledged through the majority meanwhile",
        windows.len()
    )))
}

fn record(f: &'static str, key: u64, value: Option<i64>, start_us: u64) -> Record {
    Record {
        client: 0,
        node: 0,
        f,
        key,
        value,
        read: None,
        txn: Vec::new(),
        outcome: Outcome::Fail,
        start_us,
        end_us: 0,
        error: String::new(),
    }
}

fn register_op(addr: &str, client: u64, n: u64, rng: &mut Rng, now_us: &dyn Fn() -> u64) -> Record {
    let key = rng.below(REGISTER_KEYS);
    let start = now_us();
    if rng.below(2) == 0 {
        let value = ((client + 1) * 1_000_000 + n) as i64;
        let reply = http(addr, "PUT", &format!("/put?key=r{key}"), value.to_string().as_bytes());
        let mut r = record("put", key, Some(value), start);
        (r.outcome, r.error) = write_outcome(&reply);
        r.end_us = now_us();
        r
    } else {
        let reply = http(addr, "GET", &format!("/get?key=r{key}"), b"");
        let mut r = record("get", key, None, start);
        match reply {
            Reply::Answered(200, body) => match String::from_utf8_lossy(&body).parse::<i64>() {
                Ok(v) => (r.outcome, r.read) = (Outcome::Ok, Some(vec![v])),
                Err(_) => (r.outcome, r.error) = (Outcome::Info, "unparsable value".into()),
            },
            Reply::Answered(404, _) => (r.outcome, r.read) = (Outcome::Ok, Some(Vec::new())),
            Reply::Answered(s, b) => r.error = format!("{s} {}", String::from_utf8_lossy(&b).trim()),
            Reply::NotSent(e) | Reply::Lost(e) => r.error = e,
        }
        r.end_us = now_us();
        r
    }
}

fn check_register(history: &[Record]) -> Result<String, String> {
    use linearizability::{Input, Op};
    let mut ops = Vec::new();
    for r in history {
        match (r.f, r.outcome) {
            ("put", Outcome::Fail) | ("get", Outcome::Fail | Outcome::Info) => {}
            ("put", outcome) => ops.push(Op {
                client: r.client,
                key: r.key,
                call: r.start_us,
                ret: (outcome == Outcome::Ok).then_some(r.end_us),
                input: Input::Put(r.value.unwrap_or_default() as u64),
                read: None,
            }),
            _ => ops.push(Op {
                client: r.client,
                key: r.key,
                call: r.start_us,
                ret: Some(r.end_us),
                input: Input::Get,
                read: r.read.as_ref().and_then(|v| v.first()).map(|&v| v as u64),
            }),
        }
    }
    linearizability::check(&ops)?;
    Ok(format!("{} operations linearizable over {REGISTER_KEYS} keys", ops.len()))
}

fn account(i: u64) -> String {
    format!("acct-{i}")
}

fn setup_bank(cluster: &Cluster) -> Result<()> {
    let ops: Vec<String> =
        (0..ACCOUNTS).map(|i| format!(r#"{{"put":{{"key":"{}","value":"{START_BALANCE}"}}}}"#, account(i))).collect();
    let body = format!(r#"{{"success":[{}]}}"#, ops.join(","));
    for _ in 0..50 {
        for e in cluster.endpoints() {
            if let Reply::Answered(200, _) = http(&e, "POST", "/txn", body.as_bytes()) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("could not create the bank accounts")
}

/// Balances of all accounts at one revision (`/scan`), if the read worked.
fn read_bank(addr: &str) -> Result<Vec<i64>, String> {
    match http(addr, "GET", "/scan?start=acct-&end=acct.&limit=100", b"") {
        Reply::Answered(200, body) => {
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let kvs = v["kvs"].as_array().ok_or("no kvs")?;
            kvs.iter()
                .map(|kv| kv["value"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad balance {kv}")))
                .collect()
        }
        Reply::Answered(s, b) => Err(format!("{s} {}", String::from_utf8_lossy(&b).trim())),
        Reply::NotSent(e) | Reply::Lost(e) => Err(e),
    }
}

fn balance(addr: &str, i: u64) -> Option<i64> {
    match http(addr, "GET", &format!("/get?key={}", account(i)), b"") {
        Reply::Answered(200, body) => String::from_utf8_lossy(&body).parse().ok(),
        _ => None,
    }
}

fn bank_op(addr: &str, rng: &mut Rng, now_us: &dyn Fn() -> u64) -> Record {
    let start = now_us();
    if rng.below(4) == 0 {
        let mut r = record("read", 0, None, start);
        match read_bank(addr) {
            Ok(b) => (r.outcome, r.read) = (Outcome::Ok, Some(b)),
            Err(e) => r.error = e,
        }
        r.end_us = now_us();
        return r;
    }
    let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
    let amount = 1 + rng.below(5) as i64;
    let mut r = record("transfer", from * 100 + to, Some(amount), start);
    let (Some(a), Some(b)) = (balance(addr, from), balance(addr, to)) else {
        r.error = "balance read failed".into();
        r.end_us = now_us();
        return r;
    };
    if from == to || a < amount {
        r.error = "no transfer".into();
        r.end_us = now_us();
        return r;
    }
    let (fk, tk) = (account(from), account(to));
    let body = format!(
        r#"{{"compare":[{{"key":"{fk}","target":"VALUE","result":"EQUAL","value":"{a}"}},{{"key":"{tk}","target":"VALUE","result":"EQUAL","value":"{b}"}}],"success":[{{"put":{{"key":"{fk}","value":"{}"}}}},{{"put":{{"key":"{tk}","value":"{}"}}}}]}}"#,
        a - amount,
        b + amount
    );
    let reply = http(addr, "POST", "/txn", body.as_bytes());
    (r.outcome, r.error) = txn_outcome(&reply);
    r.end_us = now_us();
    r
}

fn check_bank(cluster: &Cluster, history: &[Record]) -> Result<String, String> {
    let total = START_BALANCE * ACCOUNTS as i64;
    let bad = |b: &[i64]| b.len() as u64 != ACCOUNTS || b.iter().sum::<i64>() != total || b.iter().any(|&x| x < 0);
    let reads: Vec<&Record> = history.iter().filter(|r| r.f == "read" && r.outcome == Outcome::Ok).collect();
    if let Some(r) = reads.iter().find(|r| r.read.as_deref().is_some_and(bad)) {
        return Err(format!(
            "read at {} µs through node {} saw {:?} (total must be {total})",
            r.start_us, r.node, r.read
        ));
    }
    let mut last = Err("no final read".to_string());
    for e in cluster.endpoints() {
        last = read_bank(&e);
        if last.is_ok() {
            break;
        }
    }
    let final_read = last?;
    if bad(&final_read) {
        return Err(format!("final read saw {final_read:?} (total must be {total})"));
    }
    let transfers = history.iter().filter(|r| r.f == "transfer" && r.outcome == Outcome::Ok).count();
    Ok(format!("{} reads and the final read sum to {total}; {transfers} transfers committed", reads.len()))
}

fn set_op(addr: &str, client: u64, n: u64, now_us: &dyn Fn() -> u64) -> Record {
    let element = ((client + 1) * 1_000_000 + n) as i64;
    let start = now_us();
    let reply = http(addr, "PUT", &format!("/put?key=set-{element:012}"), b"1");
    let mut r = record("add", 0, Some(element), start);
    (r.outcome, r.error) = write_outcome(&reply);
    r.end_us = now_us();
    r
}

fn check_set(cluster: &Cluster, history: &[Record]) -> Result<String, String> {
    let mut found = None;
    for e in cluster.endpoints() {
        if let Reply::Answered(200, body) = http(&e, "GET", "/scan?start=set-&end=set.&limit=100000", b"") {
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let keys: BTreeSet<i64> = v["kvs"]
                .as_array()
                .ok_or("no kvs")?
                .iter()
                .filter_map(|kv| kv["key"].as_str()?.strip_prefix("set-")?.parse().ok())
                .collect();
            found = Some(keys);
            break;
        }
    }
    let found = found.ok_or("the final read failed on every node")?;
    let acked: BTreeSet<i64> = history.iter().filter(|r| r.outcome == Outcome::Ok).filter_map(|r| r.value).collect();
    let attempted: BTreeSet<i64> = history.iter().filter_map(|r| r.value).collect();
    let lost: Vec<&i64> = acked.difference(&found).collect();
    let unexpected: Vec<&i64> = found.difference(&attempted).collect();
    let failed_but_present: Vec<i64> = history
        .iter()
        .filter(|r| r.outcome == Outcome::Fail)
        .filter_map(|r| r.value)
        .filter(|v| found.contains(v))
        .collect();
    if !lost.is_empty() || !unexpected.is_empty() || !failed_but_present.is_empty() {
        return Err(format!(
            "lost {} acknowledged ({:?}), {} never attempted ({:?}), {} reported failed but present ({:?})",
            lost.len(),
            lost.iter().take(10).collect::<Vec<_>>(),
            unexpected.len(),
            unexpected.iter().take(10).collect::<Vec<_>>(),
            failed_but_present.len(),
            failed_but_present.iter().take(10).collect::<Vec<_>>()
        ));
    }
    let info = history.iter().filter(|r| r.outcome == Outcome::Info).count();
    Ok(format!(
        "{} acknowledged inserts all present; {} of {info} indeterminate inserts present",
        acked.len(),
        history
            .iter()
            .filter(|r| r.outcome == Outcome::Info)
            .filter_map(|r| r.value)
            .filter(|v| found.contains(v))
            .count()
    ))
}

fn write_outputs(out: &Path, history: &[Record], faults: &[Fault]) -> Result<()> {
    let mut h = std::io::BufWriter::new(std::fs::File::create(out.join("history.jsonl"))?);
    for r in history {
        let line = serde_json::json!({
            "client": r.client, "node": r.node, "f": r.f, "key": r.key, "value": r.value, "read": r.read,
            "type": match r.outcome { Outcome::Ok => "ok", Outcome::Fail => "fail", Outcome::Info => "info" },
            "start_us": r.start_us, "end_us": r.end_us, "error": r.error,
        });
        writeln!(h, "{line}")?;
    }
    h.flush()?;
    let mut n = std::io::BufWriter::new(std::fs::File::create(out.join("nemesis.jsonl"))?);
    for f in faults {
        let line = serde_json::json!({
            "kind": f.kind, "node": f.node, "detail": f.detail, "cut_off": f.cut_off,
            "start_us": f.start_us, "end_us": f.end_us,
        });
        writeln!(n, "{line}")?;
    }
    n.flush()?;
    chart(&out.join("latency.svg"), history, faults)
}

/// Latency of every operation against its start time (log scale), one
/// colour per outcome, nemesis windows shaded.
fn chart(path: &Path, history: &[Record], faults: &[Fault]) -> Result<()> {
    use plotters::prelude::*;
    let secs = |us: u64| us as f64 / 1e6;
    let end = history.iter().map(|r| r.end_us).chain(faults.iter().map(|f| f.end_us)).max().unwrap_or(1);
    let max_ms = history.iter().map(|r| (r.end_us - r.start_us) as f64 / 1e3).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("latency over time (shaded: nemesis)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..secs(end).max(1.0), (0.1..max_ms * 1.5).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart.configure_mesh().x_desc("time (s)").y_desc("latency (ms)").draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    for f in faults {
        let colour = match f.kind {
            "kill" => RED.mix(0.12),
            "pause" => BLUE.mix(0.12),
            "loss" => RGBColor(255, 160, 0).mix(0.15),
            _ => GREEN.mix(0.15),
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(secs(f.start_us), 0.1), (secs(f.end_us), max_ms * 1.5)],
                colour.filled(),
            )))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut by_outcome: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in history {
        let name = match r.outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        };
        by_outcome.entry(name).or_default().push((secs(r.start_us), ((r.end_us - r.start_us) as f64 / 1e3).max(0.1)));
    }
    for (name, points) in by_outcome {
        let colour = match name {
            "ok" => BLUE,
            "fail" => RED,
            _ => MAGENTA,
        };
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 1, colour.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| Circle::new((x, y), 3, colour.filled()));
    }
    chart.configure_series_labels().border_style(BLACK).draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Lists of the list-append workload.
const LISTS: u64 = 6;

fn list_key(k: u64) -> String {
    format!("list-{k}")
}

fn parse_list(body: &[u8]) -> Option<Vec<u64>> {
    let text = std::str::from_utf8(body).ok()?;
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',').map(|e| e.parse().ok()).collect()
}

fn join_list(list: &[u64]) -> String {
    list.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// One list-append transaction: read the touched lists (linearizable
/// gets), then commit a `/txn` that compares each to what was read and
/// puts the appended lists.
fn append_op(addr: &str, client: u64, n: u64, rng: &mut Rng, now_us: &dyn Fn() -> u64) -> Record {
    let start = now_us();
    let mut r = record("txn", 0, None, start);
    let mut micro = Vec::new();
    for i in 0..1 + rng.below(3) {
        let key = rng.below(LISTS);
        let elem = (client + 1) * 10_000_000 + n * 4 + i;
        micro.push(if rng.below(2) == 0 { (key, Some(elem)) } else { (key, None) });
    }
    let mut lists: BTreeMap<u64, Option<Vec<u64>>> = BTreeMap::new();
    for &(key, _) in &micro {
        if lists.contains_key(&key) {
            continue;
        }
        let seen = match http(addr, "GET", &format!("/get?key={}", list_key(key)), b"") {
            Reply::Answered(200, body) => parse_list(&body).map(Some),
            Reply::Answered(404, _) => Some(None),
            _ => None,
        };
        let Some(seen) = seen else {
            r.error = "list read failed".into();
            r.end_us = now_us();
            return r;
        };
        lists.insert(key, seen);
    }
    let compares: Vec<String> = lists
        .iter()
        .map(|(k, v)| match v {
            Some(list) => format!(
                r#"{{"key":"{}","target":"VALUE","result":"EQUAL","value":"{}"}}"#,
                list_key(*k),
                join_list(list)
            ),
            None => format!(r#"{{"key":"{}","target":"EXISTS","exists":false}}"#, list_key(*k)),
        })
        .collect();
    let mut current: BTreeMap<u64, Vec<u64>> = lists.iter().map(|(k, v)| (*k, v.clone().unwrap_or_default())).collect();
    for &(key, elem) in &micro {
        let list = current.entry(key).or_default();
        match elem {
            Some(e) => {
                list.push(e);
                r.txn.push(elle::Op::Append { key: key as elle::Key, elem: e });
            }
            None => r.txn.push(elle::Op::Read { key: key as elle::Key, list: list.clone() }),
        }
    }
    let puts: Vec<String> = micro
        .iter()
        .filter(|(_, e)| e.is_some())
        .map(|(k, _)| *k)
        .collect::<BTreeSet<_>>()
        .iter()
        .map(|k| format!(r#"{{"put":{{"key":"{}","value":"{}"}}}}"#, list_key(*k), join_list(&current[k])))
        .collect();
    // Separate gets are not a snapshot: even a read-only transaction
    // commits a `/txn` whose compares prove every list was still as read.
    let success = if puts.is_empty() {
        lists.keys().map(|k| format!(r#"{{"get":{{"key":"{}"}}}}"#, list_key(*k))).collect::<Vec<_>>()
    } else {
        puts
    };
    let body = format!(r#"{{"compare":[{}],"success":[{}]}}"#, compares.join(","), success.join(","));
    let reply = http(addr, "POST", "/txn", body.as_bytes());
    (r.outcome, r.error) = txn_outcome(&reply);
    r.end_us = now_us();
    r
}

fn check_list_append(cluster: &Cluster, history: &[Record]) -> Result<String, String> {
    let mut final_reads: std::collections::HashMap<elle::Key, Vec<elle::Elem>> = std::collections::HashMap::new();
    for k in 0..LISTS {
        let mut got = None;
        for e in cluster.endpoints() {
            match http(&e, "GET", &format!("/get?key={}", list_key(k)), b"") {
                Reply::Answered(200, body) => got = parse_list(&body),
                Reply::Answered(404, _) => got = Some(Vec::new()),
                _ => continue,
            }
            break;
        }
        final_reads.insert(k as elle::Key, got.ok_or_else(|| format!("final read of list {k} failed"))?);
    }
    let present = |op: &elle::Op| match op {
        elle::Op::Append { key, elem } => final_reads.get(key).is_some_and(|l| l.contains(elem)),
        elle::Op::Read { .. } => true,
    };
    let txns: Vec<elle::Txn> = history
        .iter()
        .filter(|r| !r.txn.is_empty())
        .filter(|r| r.outcome != Outcome::Fail || r.txn.iter().any(|op| matches!(op, elle::Op::Append { .. })))
        .map(|r| {
            let committed = match r.outcome {
                Outcome::Ok => true,
                Outcome::Fail => false,
                // Resolved by the final read: all its appends or none.
                Outcome::Info => r.txn.iter().filter(|op| matches!(op, elle::Op::Append { .. })).all(present),
            };
            let outcome = if committed { elle::Outcome::Committed } else { elle::Outcome::Aborted };
            elle::Txn { ops: r.txn.clone(), outcome }
        })
        .collect();
    let report = elle::check(&txns).map_err(|a| format!("{a:?}"))?;
    let bad = elle::lost_or_phantom_appends(&txns, &final_reads);
    if !bad.is_empty() {
        return Err(format!(
            "appends lost or phantom in the final read: {:?}",
            bad.iter().take(10).collect::<Vec<_>>()
        ));
    }
    Ok(format!("{report:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(node: u64, outcome: Outcome, start_us: u64, end_us: u64) -> Record {
        Record { node, outcome, end_us, ..record("put", 0, Some(1), start_us) }
    }

    fn split() -> Fault {
        let cut_off = vec![1, 2];
        Fault { kind: "partition-split", node: 0, detail: "split".into(), cut_off, start_us: 100, end_us: 200 }
    }

    #[test]
    fn a_cut_off_node_acknowledging_inside_the_window_is_caught() {
        let history = [op(3, Outcome::Ok, 110, 120), op(1, Outcome::Ok, 150, 190)];
        let err = check_cut_off(&history, &[split()]).unwrap_err();
        assert!(err.contains("through node 1"), "{err}");
    }

    #[test]
    fn answers_after_the_heal_or_from_the_majority_are_fine() {
        let history = [
            op(1, Outcome::Ok, 90, 150),  // sent before the cut
            op(2, Outcome::Ok, 150, 250), // answered after the heal
            op(1, Outcome::Fail, 120, 130),
            op(2, Outcome::Info, 130, 199),
            op(3, Outcome::Ok, 110, 120),
        ];
        let summary = check_cut_off(&history, &[split()]).unwrap().unwrap();
        assert!(summary.contains("3 operations sent to cut-off nodes"), "{summary}");
        assert!(summary.contains("(1 failed and 1 indeterminate before it, 1 answered after it); 1 acknowledged"));
        assert_eq!(check_cut_off(&history, &[]), Ok(None));
    }
}
