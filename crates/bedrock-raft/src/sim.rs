//! Deterministic simulation of a Raft cluster, in the style of
//! FoundationDB's simulator and TigerBeetle's VOPR: the real driver
//! ([`Driver`]: `Ready` handling, proposal bookkeeping, ReadIndex,
//! compaction, snapshots, crash recovery through [`recover`]) and the real
//! Raft log ([`LogStore`] on `bedrock-wal`) run in one thread, on the
//! in-memory fault-injecting file system, under a scheduler that draws
//! every decision from one seeded random generator:
//!
//! - the network delays each message by a random number of steps (so
//!   messages overtake each other), drops and duplicates them, and cuts
//!   partitions (a random minority, or one node) that later heal;
//! - nodes crash, losing whatever their file system had not synced
//!   ([`FaultFs::crash`]), and restart after a random downtime;
//! - clients put unique values and read (through ReadIndex) three keys on
//!   random nodes; a put whose outcome the client cannot know (the node
//!   crashed, the request timed out, `OutcomeUnknown`) is indeterminate.
//!
//! raft-rs draws election timeouts from `thread_rng`; the simulation
//! replaces each one as soon as it is drawn (whenever the election clock
//! was reset), from the node's own seeded generator, so a seed fixes the
//! whole run and a failing seed reproduces exactly
//! (`BEDROCK_SIMULATION_SEED=S`).
//!
//! Checked after every step of every node: one leader per term; every
//! committed entry is the same on every node that ever holds it (index,
//! term and bytes), so no committed entry is lost or changed; every entry a
//! node's state machine applies is the committed entry at that index, so
//! the applied logs are prefixes of one another. At the end, after every
//! fault is healed: the nodes converge to the same applied index and
//! state, and the client history is linearizable (`linearizability`).
//! The state machine is a model (a map persisted on the node's file
//! system when the driver asks for a flush, and received as a file with a
//! snapshot), standing in for the LSM, which has crash tests of its own.

#[path = "../tests/linearizability/mod.rs"]
mod linearizability;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bedrock_lsm::WriteBatch;
use bedrock_sstable::ValueKind;
use bedrock_wal::{FaultFs, FileSystem};
use linearizability::{Input, Op};
use parking_lot::Mutex;
use raft::eraftpb::{Message, MessageType};
use raft::{GetEntriesContext, StateRole};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;

use crate::command::{self, Command};
use crate::members::Members;
use crate::node::{recover, Apply, Driver, Msg, NodeConfig, Shared};
use crate::state::{CommandResult, INIT_INDEX};
use crate::storage::{LogStore, SnapshotSource};
use crate::transport::Transport;
use crate::{Error, Result};

/// Steps per Raft tick (a step is the scheduler's unit of time).
const STEPS_PER_TICK: u64 = 10;
const ELECTION_TICKS: usize = 10;
const KEYS: u64 = 3;
const CLIENTS: u64 = 4;
/// A client gives up on a request after this many steps.
const CLIENT_TIMEOUT: u64 = 300;

/// What the simulation may do, and which deliberately broken variants to
/// run (for the tests that show the checks catch them).
#[derive(Debug, Clone, Copy)]
struct Config {
    seed: u64,
    nodes: u64,
    /// Steps with faults, then as many fault-free steps for convergence.
    steps: u64,
    quiet_steps: u64,
    /// Reads served from the local state without ReadIndex.
    broken_local_reads: bool,
    /// The Raft log is never synced (acknowledge before fsync).
    broken_ack_before_fsync: bool,
    /// Print every event (`BEDROCK_SIMULATION_TRACE=1`), to debug a seed.
    print_trace: bool,
}

impl Config {
    fn new(seed: u64) -> Config {
        Config {
            seed,
            nodes: if seed % 4 == 0 { 5 } else { 3 },
            steps: 3_000,
            quiet_steps: 2_000,
            broken_local_reads: false,
            broken_ack_before_fsync: false,
            print_trace: std::env::var_os("BEDROCK_SIMULATION_TRACE").is_some(),
        }
    }
}

/// What a run observed, for the determinism check and the messages.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// Hash of every event in order.
    trace: u64,
    ops_ok: u64,
    ops_failed: u64,
    ops_indeterminate: u64,
    crashes: u64,
    partitions: u64,
    snapshots: u64,
    max_term: u64,
    applied: u64,
}

fn hash_of(x: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// The digest of what an entry asks the state machine to do.
fn digest(commands: &[Command]) -> u64 {
    hash_of(command::encode(commands))
}

// ---------------------------------------------------------------------------
// The model state machine.

#[derive(Debug, Default, Clone)]
struct ModelState {
    applied: u64,
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl ModelState {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.applied.to_le_bytes().to_vec();
        for (k, v) in &self.kv {
            command::put_slice(&mut out, k);
            command::put_slice(&mut out, v);
        }
        out
    }

    fn decode(bytes: &[u8]) -> std::result::Result<ModelState, String> {
        let mut r = command::Reader { data: bytes };
        let mut state = ModelState { applied: r.u64()?, kv: BTreeMap::new() };
        while !r.data.is_empty() {
            let k = r.slice()?.to_vec();
            let v = r.slice()?.to_vec();
            state.kv.insert(k, v);
        }
        Ok(state)
    }
}

#[derive(Debug, Default)]
struct ModelInner {
    state: ModelState,
    durable: u64,
    /// `(index, digest)` of every entry applied since the last check.
    applied_log: Vec<(u64, u64)>,
    /// The newest checkpoint for sending: `(index, encoded state)`.
    checkpoint: Option<(u64, Vec<u8>)>,
    installed: u64,
}

/// The state machine of one simulated node.
#[derive(Debug)]
struct Model {
    fs: FaultFs,
    dir: PathBuf,
    inner: Mutex<ModelInner>,
}

impl Model {
    /// Opens the model from its durable file, if any.
    fn open(fs: FaultFs, dir: PathBuf) -> Result<Arc<Model>> {
        fs.create_dir_all(&dir).map_err(|e| Error::io("create_dir_all", &dir, e))?;
        let path = dir.join("state");
        let state = if fs.exists(&path) {
            let bytes = bedrock_wal::fs::read_all(&fs, &path).map_err(|e| Error::io("read", &path, e))?;
            ModelState::decode(&bytes).map_err(|reason| Error::Corruption { path, offset: 0, reason })?
        } else {
            ModelState::default()
        };
        let durable = state.applied;
        Ok(Arc::new(Model { fs, dir, inner: Mutex::new(ModelInner { state, durable, ..Default::default() }) }))
    }

    fn persist(&self, inner: &mut ModelInner) -> Result<()> {
        let path = self.dir.join("state");
        bedrock_wal::fs::write_atomic(&self.fs, &path, &inner.state.encode())
            .map_err(|e| Error::io("write", &path, e))?;
        inner.durable = inner.state.applied;
        Ok(())
    }

    fn receive_path(&self, index: u64, term: u64) -> PathBuf {
        self.dir.join(format!("recv-{index}-{term}"))
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.lock().state.kv.get(key).cloned()
    }
}

impl Apply for Arc<Model> {
    fn applied(&self) -> u64 {
        self.inner.lock().state.applied
    }

    fn durable_applied(&self) -> u64 {
        self.inner.lock().durable
    }

    fn bootstrap(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.state.applied < INIT_INDEX {
            inner.state.applied = INIT_INDEX;
            self.persist(&mut inner)?;
        }
        Ok(())
    }

    fn apply(&self, index: u64, commands: &[Command]) -> Result<Vec<CommandResult>> {
        let mut inner = self.inner.lock();
        if index <= inner.state.applied {
            return Ok(Vec::new());
        }
        let mut results = Vec::new();
        for c in commands {
            match c {
                Command::Write(batch) => {
                    for (kind, key, value) in batch.ops() {
                        match kind {
                            ValueKind::Put => inner.state.kv.insert(key.to_vec(), value.to_vec()),
                            _ => inner.state.kv.remove(key),
                        };
                    }
                    results.push(Ok(index));
                }
                Command::Txn { .. } => results.push(Err(Error::InvalidArgument("not modelled".into()))),
            }
        }
        inner.state.applied = index;
        inner.applied_log.push((index, digest(commands)));
        Ok(results)
    }

    fn apply_empty(&self, index: u64) -> Result<()> {
        Apply::apply(self, index, &[]).map(|_| ())
    }

    fn install(&self, index: u64, term: u64) -> Result<()> {
        let path = self.receive_path(index, term);
        let bytes = bedrock_wal::fs::read_all(&self.fs, &path).map_err(|e| Error::io("read snapshot", &path, e))?;
        let state =
            ModelState::decode(&bytes).map_err(|reason| Error::Corruption { path: path.clone(), offset: 0, reason })?;
        let mut inner = self.inner.lock();
        inner.state = state;
        inner.state.applied = index;
        inner.installed += 1;
        self.persist(&mut inner)?;
        let _ = self.fs.remove(&path);
        Ok(())
    }

    fn flush_in_background(&self) {
        let mut inner = self.inner.lock();
        if let Err(e) = self.persist(&mut inner) {
            tracing::error!(error = %e, "model flush failed");
        }
    }
}

/// Checkpoints are taken when a snapshot is first asked for and are ready
/// on the next request, as the real state machine's background
/// checkpoints are.
struct ModelSource(Arc<Model>);

impl SnapshotSource for ModelSource {
    fn ready_snapshot(&self, min_index: u64) -> Option<u64> {
        let mut inner = self.0.inner.lock();
        match &inner.checkpoint {
            Some((index, _)) if *index >= min_index => Some(*index),
            _ => {
                if inner.state.applied >= min_index {
                    inner.checkpoint = Some((inner.state.applied, inner.state.encode()));
                }
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Nodes and network.

struct Outbox(Mutex<Vec<Message>>);

impl Transport for Outbox {
    fn send(&self, msgs: Vec<Message>) {
        self.0.lock().extend(msgs);
    }
}

struct SimNode {
    id: u64,
    fs: FaultFs,
    model: Arc<Model>,
    driver: Option<Driver>,
    outbox: Arc<Outbox>,
    inbox: Vec<Msg>,
    /// Election timeouts come from here.
    rng: SmallRng,
    /// Crashed until this step.
    down_until: u64,
    /// Highest index whose committed entry this node was checked for.
    checked: u64,
}

struct InFlight {
    at: u64,
    seq: u64,
    msg: Message,
    /// A snapshot message carries the sender's checkpoint.
    snapshot: Option<Vec<u8>>,
}

enum Pending {
    Put { key: u64, value: u64, call: u64, sent: u64, rx: oneshot::Receiver<Result<Vec<CommandResult>>> },
    Get { key: u64, node: u64, call: u64, sent: u64, rx: oneshot::Receiver<Result<u64>> },
}

#[derive(Default)]
struct Client {
    pending: Option<Pending>,
    /// The leader this client last heard of.
    leader: u64,
    next_value: u64,
}

/// A committed entry as first seen: term, digest of the entry bytes, and
/// digest of the commands (what the state machine applies).
type Committed = (u64, u64, u64);

struct Sim {
    cfg: Config,
    rng: SmallRng,
    now: u64,
    /// Logical clock for history timestamps (call and return).
    clock: u64,
    nodes: Vec<SimNode>,
    net: Vec<InFlight>,
    seq: u64,
    drop_p: f64,
    dup_p: f64,
    max_delay: u64,
    /// `group[i]`: the partition side of node i+1 (all 0: healed).
    group: Vec<u8>,
    partition_until: u64,
    clients: Vec<Client>,
    history: Vec<Op>,
    leaders: HashMap<u64, u64>,
    committed: BTreeMap<u64, Committed>,
    outcome: Outcome,
    faults: bool,
}

fn members(n: u64) -> Members {
    let list: Vec<String> = (1..=n).map(|i| format!("{i}=127.0.0.{i}:1")).collect();
    Members::parse_initial_cluster(&list.join(",")).expect("valid member list")
}

fn key_bytes(k: u64) -> Vec<u8> {
    format!("key{k}").into_bytes()
}

fn node_config(id: u64, n: u64) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, PathBuf::from(format!("/n{id}")));
    cfg.cluster_id = 1;
    cfg.initial_cluster = Some(members(n));
    // Only the driver's tick-based clocks read this: ReadIndex timeouts
    // (20 ticks) and the log compaction check (every 10 ticks).
    cfg.tick = Duration::from_millis(100);
    cfg.election_ticks = ELECTION_TICKS;
    cfg.heartbeat_ticks = 1;
    cfg.compact_entries = 20;
    cfg.catch_up_entries = 5;
    cfg.read_timeout = Duration::from_secs(2);
    cfg
}

impl Sim {
    fn new(cfg: Config) -> Result<Sim> {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let drop_p = [0.0, 0.01, 0.05, 0.15][rng.gen_range(0..4)];
        let dup_p = [0.0, 0.02, 0.1][rng.gen_range(0..3)];
        let max_delay = [1, 5, 15, 30][rng.gen_range(0..4)];
        let mut sim = Sim {
            cfg,
            rng,
            now: 0,
            clock: 0,
            nodes: Vec::new(),
            net: Vec::new(),
            seq: 0,
            drop_p,
            dup_p,
            max_delay,
            group: vec![0; cfg.nodes as usize],
            partition_until: 0,
            clients: (0..CLIENTS).map(|_| Client::default()).collect(),
            history: Vec::new(),
            leaders: HashMap::new(),
            committed: BTreeMap::new(),
            outcome: Outcome::default(),
            faults: true,
        };
        for id in 1..=cfg.nodes {
            let node_rng = SmallRng::seed_from_u64(sim.rng.gen());
            let fs = FaultFs::new();
            let model = Model::open(fs.clone(), PathBuf::from(format!("/n{id}/sm")))?;
            sim.nodes.push(SimNode {
                id,
                fs,
                model,
                driver: None,
                outbox: Arc::new(Outbox(Mutex::new(Vec::new()))),
                inbox: Vec::new(),
                rng: node_rng,
                down_until: 0,
                checked: 0,
            });
            sim.start(id)?;
        }
        Ok(sim)
    }

    fn node(&mut self, id: u64) -> &mut SimNode {
        &mut self.nodes[(id - 1) as usize]
    }

    fn trace(&mut self, event: impl Hash + std::fmt::Debug) {
        if self.cfg.print_trace {
            eprintln!("step {}: {event:?}", self.now);
        }
        self.outcome.trace = hash_of((self.outcome.trace, event));
    }

    /// Opens node `id` from its file system, as a restarted process would.
    fn start(&mut self, id: u64) -> Result<()> {
        let n = self.cfg.nodes;
        let broken = self.cfg.broken_ack_before_fsync;
        let node = self.node(id);
        let cfg = node_config(id, n);
        let model = Model::open(node.fs.clone(), cfg.data_dir.join("sm"))?;
        let fs: Arc<dyn FileSystem> = Arc::new(node.fs.clone());
        // Small segments, so that log compaction rolls and deletes them.
        let wal = bedrock_wal::WalOptions { segment_size_bytes: 64 << 10, preallocate: false, ..Default::default() };
        let mut store = LogStore::open(fs, &cfg.data_dir.join("raft"), wal)?;
        let applier: Arc<dyn Apply> = Arc::new(model.clone());
        recover(&cfg, &mut store, &*applier)?;
        store.set_snapshot_source(Arc::new(ModelSource(model.clone())));
        let shared = Shared::new(&cfg, &store);
        let (_tx, rx) = crossbeam_channel::unbounded();
        let transport: Arc<dyn Transport> = node.outbox.clone();
        let mut driver = Driver::new(cfg, store, applier, shared, transport, rx)?;
        driver.broken_ack_before_fsync = broken;
        node.model = model;
        node.driver = Some(driver);
        node.checked = 0;
        node.inbox.clear();
        node.outbox.0.lock().clear();
        self.after_process(id)
    }

    fn crash(&mut self, id: u64) {
        let seed = self.rng.gen();
        let downtime = self.rng.gen_range(5..60) * STEPS_PER_TICK;
        let now = self.now;
        let node = self.node(id);
        // The image first: dropping the driver closes the WAL, which syncs.
        node.fs = node.fs.crash(seed);
        node.driver = None; // Pending replies are dropped: their clients see the crash.
        node.inbox.clear();
        node.outbox.0.lock().clear();
        node.down_until = now + downtime;
        self.outcome.crashes += 1;
        self.trace(("crash", id, seed));
    }

    fn is_up(&self, id: u64) -> bool {
        self.nodes[(id - 1) as usize].driver.is_some()
    }

    fn connected(&self, a: u64, b: u64) -> bool {
        self.group[(a - 1) as usize] == self.group[(b - 1) as usize]
    }

    /// Runs the driver of node `id` on its inbox, then for a tick if
    /// `tick`, and checks the invariants after each. (Separate turns, so
    /// that an election clock reset by a message is seen before a tick
    /// advances it.)
    fn process(&mut self, id: u64, tick: bool) -> Result<()> {
        let node = self.node(id);
        let inbox = std::mem::take(&mut node.inbox);
        if !inbox.is_empty() {
            let Some(driver) = node.driver.as_mut() else { return Ok(()) };
            driver.process(inbox, false)?;
            self.after_process(id)?;
        }
        if tick {
            let Some(driver) = self.node(id).driver.as_mut() else { return Ok(()) };
            driver.process(Vec::new(), true)?;
            self.after_process(id)?;
        }
        Ok(())
    }

    fn after_process(&mut self, id: u64) -> Result<()> {
        let node = &mut self.nodes[(id - 1) as usize];
        let Some(driver) = node.driver.as_mut() else { return Ok(()) };
        let raft = &mut driver.raw.raft;
        if raft.election_elapsed == 0 {
            // The election clock was reset: replace raft-rs's timeout
            // (from thread_rng) with a seeded one.
            raft.set_randomized_election_timeout(node.rng.gen_range(ELECTION_TICKS..2 * ELECTION_TICKS));
        }
        let (term, state, committed) = (raft.term, raft.state, raft.raft_log.committed);
        let first = raft.raft_log.first_index();
        let from = node.checked.max(first - 1) + 1;
        let entries = if from <= committed {
            raft.raft_log.slice(from, committed + 1, None, GetEntriesContext::empty(false)).map_err(Error::from)?
        } else {
            Vec::new()
        };
        node.checked = node.checked.max(committed);
        let applied_log = std::mem::take(&mut node.model.inner.lock().applied_log);
        self.outcome.max_term = self.outcome.max_term.max(term);
        if state == StateRole::Leader {
            let leader = *self.leaders.entry(term).or_insert(id);
            if leader != id {
                return Err(violation(format!("two leaders in term {term}: nodes {leader} and {id}")));
            }
        }
        for e in entries {
            let commands = if e.data.is_empty() || e.get_entry_type() != raft::eraftpb::EntryType::EntryNormal {
                Vec::new()
            } else {
                command::decode(&e.data)
                    .map_err(|r| violation(format!("committed entry {} undecodable: {r}", e.index)))?
            };
            let seen = (e.term, hash_of(&e.data[..]), digest(&commands));
            match self.committed.get(&e.index) {
                None => {
                    self.committed.insert(e.index, seen);
                }
                Some(first) if *first != seen => {
                    return Err(violation(format!(
                        "node {id} holds committed index {} as (term {}, digest {:x}); it was committed as (term {}, \
                         digest {:x})",
                        e.index, seen.0, seen.1, first.0, first.1
                    )));
                }
                Some(_) => {}
            }
        }
        for (index, d) in applied_log {
            if let Some(&(_, _, expected)) = self.committed.get(&index) {
                if expected != d {
                    return Err(violation(format!(
                        "node {id} applied index {index} differently from the committed entry"
                    )));
                }
            } else if index > INIT_INDEX {
                // Applied before any node was seen committing it: only
                // possible if it was compacted before the check ran.
                let first =
                    self.nodes[(id - 1) as usize].driver.as_ref().map_or(0, |d| d.raw.raft.raft_log.first_index());
                if index >= first {
                    return Err(violation(format!("node {id} applied index {index}, which no node has committed")));
                }
            }
        }
        let applied = self.nodes[(id - 1) as usize].model.inner.lock().state.applied;
        self.trace((id, term, state as u8, committed, applied));
        Ok(())
    }

    /// Moves what node `from` sent into the network.
    fn collect_outbox(&mut self, from: u64) {
        let msgs = std::mem::take(&mut *self.node(from).outbox.0.lock());
        for msg in msgs {
            let to = msg.to;
            if to == 0 || to > self.cfg.nodes {
                continue;
            }
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                let index = msg.get_snapshot().get_metadata().index;
                let checkpoint = self.node(from).model.inner.lock().checkpoint.clone();
                match checkpoint {
                    Some((i, bytes)) if i == index => {
                        let at = self.now + self.rng.gen_range(1..=self.max_delay);
                        self.push(InFlight { at, seq: 0, msg, snapshot: Some(bytes) });
                    }
                    _ => self.node(from).inbox.push(Msg::SnapshotStatus { to, ok: false }),
                }
                continue;
            }
            if self.faults && self.rng.gen_bool(self.drop_p) {
                self.trace(("drop", from, to));
                continue;
            }
            let copies = if self.faults && self.rng.gen_bool(self.dup_p) { 2 } else { 1 };
            for _ in 0..copies {
                let at = self.now + self.rng.gen_range(1..=self.max_delay);
                self.push(InFlight { at, seq: 0, msg: msg.clone(), snapshot: None });
            }
        }
    }

    fn push(&mut self, mut m: InFlight) {
        self.seq += 1;
        m.seq = self.seq;
        self.net.push(m);
    }

    /// Delivers the messages due now, in (time, send order).
    fn deliver(&mut self) -> Result<()> {
        let now = self.now;
        let mut due: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at <= now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|m| (m.at, m.seq));
        for m in due {
            let (from, to) = (m.msg.from, m.msg.to);
            let reachable = self.is_up(to) && self.connected(from, to);
            self.trace(("deliver", from, to, m.msg.get_msg_type() as i32, reachable));
            if let Some(bytes) = m.snapshot {
                if reachable {
                    let meta = m.msg.get_snapshot().get_metadata();
                    let node = self.node(to);
                    let path = node.model.receive_path(meta.index, meta.term);
                    bedrock_wal::fs::write_atomic(&node.fs, &path, &bytes).map_err(|e| Error::io("write", &path, e))?;
                    node.inbox.push(Msg::Raft(Box::new(m.msg)));
                    self.outcome.snapshots += 1;
                }
                if self.is_up(from) {
                    self.node(from).inbox.push(Msg::SnapshotStatus { to, ok: reachable });
                }
            } else if reachable {
                self.node(to).inbox.push(Msg::Raft(Box::new(m.msg)));
            }
        }
        Ok(())
    }

    fn nemesis(&mut self) -> Result<()> {
        let n = self.cfg.nodes;
        // Crash: at most a minority down at once.
        let down = (1..=n).filter(|&id| !self.is_up(id)).count() as u64;
        if down < (n - 1) / 2 && self.rng.gen_bool(0.003) {
            // Half the crashes hit the leader, the most interesting node.
            let leader = (1..=n).find(|&id| {
                self.nodes[(id - 1) as usize].driver.as_ref().is_some_and(|d| d.raw.raft.state == StateRole::Leader)
            });
            let id = match leader {
                Some(l) if self.rng.gen_bool(0.5) => l,
                _ => self.rng.gen_range(1..=n),
            };
            if self.is_up(id) {
                self.crash(id);
            }
        }
        // A power failure of the whole cluster: every node loses what it
        // had not synced, so only what a majority synced survives.
        if self.rng.gen_bool(0.0004) {
            self.trace("power failure");
            for id in 1..=n {
                if self.is_up(id) {
                    self.crash(id);
                }
            }
        }
        // Partitions: a random split or one isolated node, then healed.
        if self.group.iter().any(|&g| g != 0) {
            if self.now >= self.partition_until {
                self.group.iter_mut().for_each(|g| *g = 0);
                self.trace("heal");
            }
        } else if self.rng.gen_bool(0.002) {
            for g in self.group.iter_mut() {
                *g = 0;
            }
            if self.rng.gen_bool(0.5) {
                let id = self.rng.gen_range(0..n as usize);
                self.group[id] = 1;
            } else {
                for g in self.group.iter_mut() {
                    *g = self.rng.gen_range(0..2);
                }
            }
            self.partition_until = self.now + self.rng.gen_range(10..80) * STEPS_PER_TICK;
            self.outcome.partitions += 1;
            let group = self.group.clone();
            self.trace(("partition", group));
        }
        Ok(())
    }

    fn restart_due(&mut self) -> Result<()> {
        for id in 1..=self.cfg.nodes {
            let node = self.node(id);
            if node.driver.is_none() && node.down_until <= self.now {
                self.trace(("restart", id));
                self.start(id)?;
            }
        }
        Ok(())
    }

    fn clients(&mut self) {
        for c in 0..CLIENTS {
            self.poll_client(c);
            if self.clients[c as usize].pending.is_some() || !self.faults || !self.rng.gen_bool(0.05) {
                continue;
            }
            let n = self.cfg.nodes;
            let known = self.clients[c as usize].leader;
            let id = if known != 0 && self.rng.gen_bool(0.8) { known } else { self.rng.gen_range(1..=n) };
            let key = self.rng.gen_range(0..KEYS);
            self.clock += 1;
            let call = self.clock;
            if !self.is_up(id) {
                continue; // Connection refused: nothing was sent.
            }
            let pending = if self.rng.gen_bool(0.5) {
                let client = &mut self.clients[c as usize];
                client.next_value += 1;
                let value = (c + 1) * 1_000_000 + client.next_value;
                let mut batch = WriteBatch::new();
                batch.put(&key_bytes(key), &value.to_le_bytes());
                let (reply, rx) = oneshot::channel();
                self.node(id).inbox.push(Msg::Propose { commands: vec![Command::Write(batch)], reply });
                Pending::Put { key, value, call, sent: self.now, rx }
            } else if self.cfg.broken_local_reads {
                let read = self.read_local(id, key);
                self.clock += 1;
                self.history.push(Op { client: c, key, call, ret: Some(self.clock), input: Input::Get, read });
                self.outcome.ops_ok += 1;
                continue;
            } else {
                let (reply, rx) = oneshot::channel();
                self.node(id).inbox.push(Msg::ReadIndex { reply });
                Pending::Get { key, node: id, call, sent: self.now, rx }
            };
            self.trace(("call", c, id, key));
            self.clients[c as usize].pending = Some(pending);
        }
    }

    fn read_local(&self, id: u64, key: u64) -> Option<u64> {
        let v = self.nodes[(id - 1) as usize].model.get(&key_bytes(key))?;
        Some(u64::from_le_bytes(v.as_slice().try_into().unwrap_or([0; 8])))
    }

    fn poll_client(&mut self, c: u64) {
        let Some(pending) = self.clients[c as usize].pending.take() else { return };
        let timed_out = |sent: u64, now: u64| now.saturating_sub(sent) > CLIENT_TIMEOUT;
        let now = self.now;
        match pending {
            Pending::Put { key, value, call, sent, mut rx } => {
                let r = rx.try_recv();
                if matches!(r, Err(oneshot::error::TryRecvError::Empty)) && timed_out(sent, now) {
                    self.clients[c as usize].leader = 0;
                }
                let outcome = match r {
                    Ok(Ok(mut results)) => match results.pop() {
                        Some(Ok(_)) => Some(true),
                        _ => Some(false),
                    },
                    Ok(Err(Error::NotLeader { leader })) => {
                        self.clients[c as usize].leader = leader.unwrap_or(0);
                        Some(false)
                    }
                    Ok(Err(Error::Unavailable(_))) => Some(false),
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => None,
                    Err(oneshot::error::TryRecvError::Empty) if timed_out(sent, now) => None,
                    Err(oneshot::error::TryRecvError::Empty) => {
                        self.clients[c as usize].pending = Some(Pending::Put { key, value, call, sent: self.now, rx });
                        return;
                    }
                };
                self.clock += 1;
                let ret = self.clock;
                self.trace(("put", c, key, value, outcome));
                let input = Input::Put(value);
                match outcome {
                    Some(true) => {
                        self.outcome.ops_ok += 1;
                        self.history.push(Op { client: c, key, call, ret: Some(ret), input, read: None });
                    }
                    Some(false) => self.outcome.ops_failed += 1,
                    None => {
                        self.outcome.ops_indeterminate += 1;
                        self.history.push(Op { client: c, key, call, ret: None, input, read: None });
                    }
                }
            }
            Pending::Get { key, node, call, sent, mut rx } => {
                let r = rx.try_recv();
                if matches!(r, Err(oneshot::error::TryRecvError::Empty)) && timed_out(sent, now) {
                    self.clients[c as usize].leader = 0;
                }
                match r {
                    Ok(Ok(_index)) => {
                        // The node has applied at least up to the read
                        // index; its state now is a linearizable read.
                        let read = self.read_local(node, key);
                        self.clock += 1;
                        self.outcome.ops_ok += 1;
                        self.trace(("get", c, key, read));
                        self.history.push(Op { client: c, key, call, ret: Some(self.clock), input: Input::Get, read });
                    }
                    Err(oneshot::error::TryRecvError::Empty) if !timed_out(sent, now) => {
                        self.clients[c as usize].pending = Some(Pending::Get { key, node, call, sent, rx });
                    }
                    Ok(Err(Error::NotLeader { leader })) => {
                        self.clients[c as usize].leader = leader.unwrap_or(0);
                        self.outcome.ops_failed += 1;
                    }
                    // A failed read observed nothing.
                    _ => self.outcome.ops_failed += 1,
                }
            }
        }
    }

    /// One step: deliveries, client requests, driver turns, ticks, faults.
    fn step(&mut self) -> Result<()> {
        self.deliver()?;
        self.clients();
        for id in 1..=self.cfg.nodes {
            let tick = self.now % STEPS_PER_TICK == id % STEPS_PER_TICK;
            let node = self.node(id);
            if node.driver.is_some() && (tick || !node.inbox.is_empty()) {
                self.process(id, tick)?;
                self.collect_outbox(id);
            }
        }
        if self.faults {
            self.nemesis()?;
        }
        self.restart_due()?;
        self.now += 1;
        Ok(())
    }

    fn run(mut self) -> Result<Outcome> {
        while self.now < self.cfg.steps {
            self.step()?;
        }
        // Heal everything; let the clients finish; converge.
        self.faults = false;
        self.group.iter_mut().for_each(|g| *g = 0);
        for node in &mut self.nodes {
            node.down_until = 0;
        }
        let end = self.now + self.cfg.quiet_steps;
        while self.now < end {
            self.step()?;
        }
        for c in 0..CLIENTS {
            if let Some(Pending::Put { key, value, call, .. }) = self.clients[c as usize].pending.take() {
                self.outcome.ops_indeterminate += 1;
                self.history.push(Op { client: c, key, call, ret: None, input: Input::Put(value), read: None });
            }
        }
        let states: Vec<(u64, ModelState)> =
            self.nodes.iter().map(|n| (n.id, n.model.inner.lock().state.clone())).collect();
        let first = &states[0].1;
        for (id, s) in &states[1..] {
            if s.applied != first.applied || s.kv != first.kv {
                return Err(violation(format!(
                    "after healing, node {id} is at applied index {} and node 1 at {} (states {})",
                    s.applied,
                    first.applied,
                    if s.kv == first.kv { "equal" } else { "differ" }
                )));
            }
        }
        self.outcome.applied = first.applied;
        linearizability::check(&self.history).map_err(violation)?;
        Ok(self.outcome)
    }
}

fn violation(reason: String) -> Error {
    Error::Corruption { path: PathBuf::from("<simulation>"), offset: 0, reason }
}

/// Runs one seed; a panic (raft-rs panics on some broken invariants, such
/// as a commit index past the log it was given) is a failure of the seed.
fn simulate(cfg: Config) -> std::result::Result<Outcome, String> {
    let seed = cfg.seed;
    match std::panic::catch_unwind(|| Sim::new(cfg).and_then(Sim::run)) {
        Ok(result) => result.map_err(|e| format!("seed {seed}: {e}")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Err(format!("seed {seed}: panicked: {msg}"))
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds 1..=`BEDROCK_SIMULATION_SEEDS` (default 500), or only
/// `BEDROCK_SIMULATION_SEED`.
#[test]
fn simulated_clusters_stay_safe_and_linearizable() {
    let seeds: Vec<u64> = match env_u64("BEDROCK_SIMULATION_SEED") {
        Some(s) => vec![s],
        None => (1..=env_u64("BEDROCK_SIMULATION_SEEDS").unwrap_or(500)).collect(),
    };
    let mut total = Outcome::default();
    for &seed in &seeds {
        let o = simulate(Config::new(seed)).unwrap_or_else(|e| {
            panic!("{e}\nreproduce with BEDROCK_SIMULATION_SEED={seed} cargo test -p bedrock-raft simulated_clusters")
        });
        total.ops_ok += o.ops_ok;
        total.ops_failed += o.ops_failed;
        total.ops_indeterminate += o.ops_indeterminate;
        total.crashes += o.crashes;
        total.partitions += o.partitions;
        total.snapshots += o.snapshots;
        total.max_term = total.max_term.max(o.max_term);
    }
    eprintln!(
        "simulation: {} seeds, ops ok {} / failed {} / indeterminate {}, {} crashes, {} partitions, {} snapshots \
         delivered, highest term {}",
        seeds.len(),
        total.ops_ok,
        total.ops_failed,
        total.ops_indeterminate,
        total.crashes,
        total.partitions,
        total.snapshots,
        total.max_term
    );
    // The runs must exercise what they claim to.
    assert!(total.ops_ok > 0 && total.crashes > 0 && total.partitions > 0);
    if seeds.len() >= 50 {
        assert!(total.snapshots > 0, "no snapshot was ever sent");
    }
}

#[test]
fn a_seed_reproduces_exactly() {
    for seed in [3, 4] {
        let a = simulate(Config::new(seed)).expect("seed passes");
        let b = simulate(Config::new(seed)).expect("seed passes");
        assert_eq!(a, b, "seed {seed} took two different paths");
    }
}

/// Finds the first failing seed of a broken variant among `1..=limit`.
fn first_failure(limit: u64, broken: impl Fn(&mut Config)) -> Option<String> {
    (1..=limit).find_map(|seed| {
        let mut cfg = Config::new(seed);
        broken(&mut cfg);
        simulate(cfg).err()
    })
}

#[test]
fn reads_that_skip_read_index_are_caught() {
    let failure = first_failure(100, |c| c.broken_local_reads = true);
    let failure = failure.expect("stale local reads were never caught");
    eprintln!("caught: {failure}");
    assert!(failure.contains("no linearization"), "{failure}");
}

#[test]
fn acknowledging_before_fsync_is_caught() {
    let failure = first_failure(200, |c| c.broken_ack_before_fsync = true);
    let failure = failure.expect("a log that is never synced was never caught");
    eprintln!("caught: {failure}");
}

#[test]
fn model_state_round_trips() {
    let mut s = ModelState { applied: 42, kv: BTreeMap::new() };
    s.kv.insert(b"a".to_vec(), b"1".to_vec());
    s.kv.insert(b"bb".to_vec(), Vec::new());
    let d = ModelState::decode(&s.encode()).expect("decodes");
    assert_eq!((d.applied, d.kv), (s.applied, s.kv));
    assert!(ModelState::decode(&[1, 2]).is_err());
}
