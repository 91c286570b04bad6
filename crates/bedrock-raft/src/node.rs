//! The Raft driver: one thread owns the `RawNode`, ticks it, steps
//! incoming messages, batches proposals, and handles each `Ready` in the
//! order raft-rs documents for synchronous storage:
//!
//! 1. send the leader's messages (they may go before the entries are
//!    persisted, as in the Raft thesis §10.2.1);
//! 2. install a snapshot if there is one (log marker first, then the state
//!    machine);
//! 3. apply the committed entries (raft-rs hands out only entries that are
//!    both committed and persisted);
//! 4. append the new entries and the hard state to the log, one fsync;
//! 5. send the messages that must wait for persistence (votes, append
//!    responses);
//! 6. `advance`, then send and apply what the `LightReady` holds, and
//!    `advance_apply`.
//!
//! Requests arrive on a channel and are answered on oneshot channels.
//! Proposals queued together are packed into few entries (up to
//! [`NodeConfig::max_entry_bytes`] each) and share one fsync. A proposal is
//! remembered by (index, term) when proposed; when that index is applied,
//! the same term means it committed, another term means a new leader
//! replaced it (certainly not applied: `Unavailable`). Proposals raft-rs
//! drops (no leader, leadership transfer in progress) fail at once with
//! `Unavailable`; so do ReadIndex requests with no known leader, and
//! pending reads are failed when the leader changes or after
//! [`NodeConfig::read_timeout`], so nothing waits for a client timeout.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType,
    Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole, INVALID_ID};
use raft_proto::ConfChangeI as _;
use tokio::sync::oneshot;

use crate::command::{self, Command, Reader};
use crate::members::{Member, Members};
use crate::state::{CheckpointSource, CommandResult, StateMachine, INIT_INDEX};
use crate::storage::LogStore;
use crate::transport::Transport;
use crate::{Error, Result};

/// Configuration of a Raft node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (>= 1).
    pub id: u64,
    /// The node's data directory (Raft log, state machine, snapshots).
    pub data_dir: PathBuf,
    /// The initial cluster, for a node that bootstraps a new cluster (its
    /// log is empty and it is listed here). `None` for a node that joins an
    /// existing cluster (it waits for the leader to send a snapshot).
    pub initial_cluster: Option<Members>,
    /// For a node joining an existing cluster: the members' addresses, as
    /// the cluster listed them, used until the leader's snapshot brings
    /// the real configuration (the node must answer the leader's first
    /// messages before any snapshot is sent). Ignored once the node has a
    /// configuration. Default: empty.
    pub join_peers: Members,
    /// Identifies the cluster: peers with another id are refused.
    pub cluster_id: u64,
    /// Peer address of this node (`host:port`).
    pub raft_addr: String,
    /// Client API address of this node (`host:port`).
    pub client_addr: String,
    /// Duration of one Raft tick. Default: 100 ms.
    pub tick: Duration,
    /// Ticks without a leader message before a follower campaigns; the
    /// actual timeout is random in `[election_ticks, 2 * election_ticks)`.
    /// Default: 10 (so 1–2 s, etcd's default election timeout of 1 s).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats. Default: 1 (100 ms, etcd's default).
    pub heartbeat_ticks: usize,
    /// Proposals are packed into entries of at most this many bytes (a
    /// single larger proposal gets its own entry). Default: 1 MiB.
    pub max_entry_bytes: usize,
    /// The log is compacted when it holds more than this many applied
    /// entries. Default: 50,000.
    pub compact_entries: u64,
    /// Entries kept behind the applied index at compaction, so a follower
    /// that lags a little catches up from the log instead of a snapshot.
    /// Default: 5,000 (etcd's `SnapshotCatchUpEntries`).
    pub catch_up_entries: u64,
    /// A pending ReadIndex request fails (retryably) after this long.
    /// Default: 2 s.
    pub read_timeout: Duration,
    /// Options of the state machine's LSM (`dir` and `disable_wal` are set
    /// by the node).
    pub lsm: bedrock_lsm::Options,
}

impl NodeConfig {
    /// Defaults for node `id` in `data_dir`.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            data_dir: data_dir.into(),
            initial_cluster: None,
            join_peers: Members::default(),
            cluster_id: 0,
            raft_addr: String::new(),
            client_addr: String::new(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            max_entry_bytes: 1 << 20,
            compact_entries: 50_000,
            catch_up_entries: 5_000,
            read_timeout: Duration::from_secs(2),
            lsm: bedrock_lsm::Options::default(),
        }
    }
}

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Add `id` as a learner with its addresses.
    AddLearner {
        /// The new node's id.
        id: u64,
        /// Its addresses.
        member: Member,
    },
    /// Make learner `id` a voter.
    Promote {
        /// The learner.
        id: u64,
    },
    /// Remove `id` (voter or learner).
    Remove {
        /// The node.
        id: u64,
    },
}

/// A node's view of the cluster, as `bedrock status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node id.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `pre-candidate` or `learner`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Known leader (0: none).
    pub leader: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index (the store's revision).
    pub applied_index: u64,
    /// First index held in the log.
    pub first_index: u64,
    /// Last index held in the log.
    pub last_index: u64,
    /// Voter ids.
    pub voters: Vec<u64>,
    /// Learner ids.
    pub learners: Vec<u64>,
    /// Members with addresses.
    pub members: Members,
    /// Proposals waiting to be applied.
    pub pending_proposals: u64,
    /// Snapshots sent since start.
    pub snapshots_sent: u64,
    /// Snapshots installed since start.
    pub snapshots_installed: u64,
    /// True once this node has been removed from the cluster.
    pub removed: bool,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Msg {
    Propose { commands: Vec<Command>, reply: Reply<Vec<CommandResult>> },
    ReadIndex { reply: Reply<u64> },
    Change { change: MemberChange, reply: Reply<()> },
    Transfer { to: u64, reply: Reply<()> },
    Raft(Box<Message>),
    SnapshotStatus { to: u64, ok: bool },
    Unreachable(u64),
    Stop,
}

/// State shared between the driver thread and handles.
#[derive(Debug)]
pub(crate) struct Shared {
    id: u64,
    cluster_id: u64,
    status: Mutex<NodeStatus>,
    members: RwLock<Members>,
    leader: AtomicU64,
    stopped: AtomicBool,
    snapshots_sent: AtomicU64,
    raft_addr: String,
    client_addr: String,
}

impl Shared {
    pub(crate) fn new(cfg: &NodeConfig, store: &LogStore) -> Arc<Shared> {
        let members = if store.is_initialized() { store.members().clone() } else { cfg.join_peers.clone() };
        Arc::new(Shared {
            id: cfg.id,
            cluster_id: cfg.cluster_id,
            status: Mutex::new(NodeStatus::default()),
            members: RwLock::new(members),
            leader: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            snapshots_sent: AtomicU64::new(0),
            raft_addr: cfg.raft_addr.clone(),
            client_addr: cfg.client_addr.clone(),
        })
    }
}

/// A cheap, cloneable handle to a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    sm: Arc<StateMachine>,
}

/// A running Raft node; dropping it stops the driver thread.
#[derive(Debug)]
pub struct Node {
    handle: NodeHandle,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Opens the node's storage and starts its driver thread.
    /// `make_transport` receives the node's handle (for delivering
    /// incoming messages and reports) and returns the transport.
    ///
    /// # Errors
    /// Storage errors; [`Error::InvalidArgument`] for a bad configuration
    /// (id 0, a bootstrapping node missing from its initial cluster);
    /// [`Error::Corruption`] if the state machine is behind the log start
    /// with no snapshot to finish installing.
    pub fn start(cfg: NodeConfig, make_transport: impl FnOnce(NodeHandle) -> Arc<dyn Transport>) -> Result<Node> {
        if cfg.id == 0 {
            return Err(Error::InvalidArgument("node id 0 is reserved".into()));
        }
        let sm = StateMachine::open(&cfg.data_dir, cfg.lsm.clone())?;
        let mut store = LogStore::open(
            bedrock_wal::RealFs::shared(),
            &cfg.data_dir.join("raft"),
            bedrock_wal::WalOptions::default(),
        )?;
        let applier: Arc<dyn Apply> = Arc::new(sm.clone());
        recover(&cfg, &mut store, &*applier)?;
        store.set_snapshot_source(Arc::new(CheckpointSource(sm.clone())));
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Shared::new(&cfg, &store);
        let handle = NodeHandle { tx, shared: shared.clone(), sm };
        let transport = make_transport(handle.clone());
        let driver = Driver::new(cfg, store, applier, shared, transport, rx)?;
        let thread = std::thread::Builder::new()
            .name("bedrock-raft".into())
            .spawn(move || driver.run())
            .map_err(|e| Error::io("spawn", "bedrock-raft thread", e))?;
        Ok(Node { handle, thread: Some(thread) })
    }

    /// A handle to the node.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Stops the driver and waits for it. Pending requests fail.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let _ = self.handle.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

impl NodeHandle {
    /// This node's id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.shared.leader.load(Ordering::Acquire)).filter(|&l| l != INVALID_ID)
    }

    /// The members with their addresses.
    pub fn members(&self) -> Members {
        self.shared.members.read().clone()
    }

    /// The state machine (reads go to `state_machine().db()`).
    pub fn state_machine(&self) -> &Arc<StateMachine> {
        &self.sm
    }

    /// This node's status.
    pub fn status(&self) -> NodeStatus {
        let mut s = self.shared.status.lock().clone();
        s.snapshots_sent = self.shared.snapshots_sent.load(Ordering::Relaxed);
        s.snapshots_installed = self.sm.snapshots_installed();
        s
    }

    /// This node's peer and client addresses.
    pub fn addresses(&self) -> (&str, &str) {
        (&self.shared.raft_addr, &self.shared.client_addr)
    }

    /// Proposes `commands` as one or more entries if this node is the
    /// leader and waits until they are applied; one result per command.
    ///
    /// # Errors
    /// [`Error::NotLeader`] on a follower (forward to the leader);
    /// [`Error::Unavailable`] if raft dropped the proposal or a new leader
    /// replaced it; [`Error::OutcomeUnknown`] if the node stopped after
    /// proposing. The caller bounds the wait.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Vec<CommandResult>> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Propose { commands, reply })?;
        rx.await.unwrap_or_else(|_| Err(Error::OutcomeUnknown("the raft node stopped".into())))
    }

    /// Confirms leadership through ReadIndex (on the leader, or through it
    /// from a follower) and waits until this node has applied up to the
    /// read index; returns it. A read from the local state machine after
    /// this is linearizable.
    ///
    /// # Errors
    /// [`Error::Unavailable`] (retryable) with no leader, on a leader
    /// change, or after the read timeout.
    pub async fn read_index(&self) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::ReadIndex { reply })?;
        rx.await.unwrap_or(Err(Error::Stopped))
    }

    /// Proposes a membership change on the leader and waits until applied.
    ///
    /// # Errors
    /// [`Error::NotLeader`]; [`Error::InvalidArgument`] for an impossible
    /// change (unknown node, learner not caught up, removing the last
    /// voter); [`Error::Unavailable`] if another change is in progress.
    pub async fn change_membership(&self, change: MemberChange) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Change { change, reply })?;
        rx.await.unwrap_or_else(|_| Err(Error::OutcomeUnknown("the raft node stopped".into())))
    }

    /// Asks the leader (this node) to transfer leadership to `to`.
    ///
    /// # Errors
    /// [`Error::NotLeader`] on a follower.
    pub async fn transfer_leader(&self, to: u64) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Transfer { to, reply })?;
        rx.await.unwrap_or(Err(Error::Stopped))
    }

    /// Delivers a message from a peer.
    pub fn step(&self, msg: Message) {
        let _ = self.tx.send(Msg::Raft(Box::new(msg)));
    }

    /// Reports the end of a snapshot transfer to `to`.
    pub fn report_snapshot(&self, to: u64, ok: bool) {
        if ok {
            self.shared.snapshots_sent.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.tx.send(Msg::SnapshotStatus { to, ok });
    }

    /// Reports that `to` could not be reached.
    pub fn report_unreachable(&self, to: u64) {
        let _ = self.tx.send(Msg::Unreachable(to));
    }

    /// True once the node has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    fn send(&self, msg: Msg) -> Result<()> {
        if self.is_stopped() {
            return Err(Error::Stopped);
        }
        self.tx.send(msg).map_err(|_| Error::Stopped)
    }
}

/// Brings a freshly opened log and state machine into agreement before the
/// driver starts: bootstraps a new cluster's first member, finishes a
/// snapshot install that a crash interrupted, and raises a commit index
/// that lags the applied index.
pub(crate) fn recover(cfg: &NodeConfig, store: &mut LogStore, sm: &dyn Apply) -> Result<()> {
    if !store.is_initialized() {
        if let Some(initial) = &cfg.initial_cluster {
            if !initial.0.contains_key(&cfg.id) {
                return Err(Error::InvalidArgument(format!(
                    "node {} is not in the initial cluster; start it with --join instead",
                    cfg.id
                )));
            }
            let cs = ConfState { voters: initial.0.keys().copied().collect(), ..Default::default() };
            let mut members = initial.clone();
            if let Some(me) = members.0.get_mut(&cfg.id) {
                me.client_addr.clone_from(&cfg.client_addr);
            }
            sm.bootstrap()?;
            store.bootstrap(INIT_INDEX, cs, members)?;
            tracing::info!(id = cfg.id, voters = ?initial.0.keys().collect::<Vec<_>>(), "bootstrapped a new cluster");
        } else {
            tracing::info!(id = cfg.id, "empty node: waiting for the leader to send a snapshot");
        }
    }
    let log_start = store.first() - 1;
    if store.is_initialized() && sm.applied() < log_start {
        let term = raft::Storage::term(store, log_start).unwrap_or(0);
        sm.install(log_start, term).map_err(|e| Error::Corruption {
            path: cfg.data_dir.clone(),
            offset: 0,
            reason: format!(
                "the state machine (applied index {}) is behind the start of the raft log ({log_start}) and \
                 the snapshot that covers the gap is missing ({e}); remove the data directory and rejoin the \
                 node",
                sm.applied()
            ),
        })?;
    }
    let applied = sm.applied();
    if store.hard_state().commit < applied && store.is_initialized() {
        let mut hs = store.hard_state().clone();
        hs.commit = applied.min(store.last());
        let pos = store.set_hard_state(hs)?;
        store.sync(pos)?;
    }
    Ok(())
}

/// What the driver applies committed entries to: the node's
/// [`StateMachine`], or a model of it in the deterministic simulation.
/// The methods mean what the `StateMachine` methods of the same names do.
pub(crate) trait Apply: Send + Sync {
    fn applied(&self) -> u64;
    fn durable_applied(&self) -> u64;
    fn bootstrap(&self) -> Result<()>;
    fn apply(&self, index: u64, commands: &[Command]) -> Result<Vec<CommandResult>>;
    fn apply_empty(&self, index: u64) -> Result<()>;
    fn install(&self, index: u64, term: u64) -> Result<()>;
    fn flush_in_background(&self);
}

impl Apply for Arc<StateMachine> {
    fn applied(&self) -> u64 {
        StateMachine::applied(self)
    }
    fn durable_applied(&self) -> u64 {
        StateMachine::durable_applied(self)
    }
    fn bootstrap(&self) -> Result<()> {
        StateMachine::bootstrap(self)
    }
    fn apply(&self, index: u64, commands: &[Command]) -> Result<Vec<CommandResult>> {
        StateMachine::apply(self, index, commands)
    }
    fn apply_empty(&self, index: u64) -> Result<()> {
        StateMachine::apply_empty(self, index)
    }
    fn install(&self, index: u64, term: u64) -> Result<()> {
        StateMachine::install(self, index, term)
    }
    fn flush_in_background(&self) {
        StateMachine::flush_in_background(self)
    }
}

/// How an entry was applied.
enum Applied {
    Commands(Vec<CommandResult>),
    Empty,
    ConfChange,
}

enum Pending {
    Commands { term: u64, waiters: Vec<(Reply<Vec<CommandResult>>, usize, usize)> },
    Change { term: u64, reply: Reply<()> },
}

impl Pending {
    /// Answers every waiter with the error `error` makes.
    fn fail(self, error: impl Fn() -> Error) {
        match self {
            Pending::Commands { waiters, .. } => {
                for (reply, _, _) in waiters {
                    let _ = reply.send(Err(error()));
                }
            }
            Pending::Change { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

pub(crate) struct Driver {
    pub(crate) raw: RawNode<LogStore>,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    sm: Arc<dyn Apply>,
    transport: Arc<dyn Transport>,
    pending: BTreeMap<u64, Pending>,
    /// ReadIndex requests sent to raft, by context, with the tick count at
    /// which they time out.
    reads: HashMap<u64, (Reply<u64>, u64)>,
    /// Reads with their read index, waiting for the state machine to
    /// apply up to it, with the tick count at which they time out.
    read_waiters: Vec<(u64, Reply<u64>, u64)>,
    next_ctx: u64,
    cfg: NodeConfig,
    last_leader: u64,
    /// Ticks since start: the driver's clock for timeouts.
    ticks: u64,
    next_compaction_check: u64,
    removed: bool,
    #[cfg(test)]
    pub(crate) broken_ack_before_fsync: bool,
}

impl Driver {
    /// Creates the `RawNode` on the recovered `store` (see [`recover`]).
    pub(crate) fn new(
        cfg: NodeConfig,
        store: LogStore,
        sm: Arc<dyn Apply>,
        shared: Arc<Shared>,
        transport: Arc<dyn Transport>,
        rx: Receiver<Msg>,
    ) -> Result<Driver> {
        let log_start = store.first() - 1;
        let raft_cfg = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: sm.applied().max(log_start).min(store.hard_state().commit.max(log_start)),
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            max_uncommitted_size: 256 << 20,
            ..raft::Config::default()
        };
        raft_cfg.validate()?;
        let logger = slog::Logger::root(tracing_slog::TracingSlogDrain, slog::o!("raft_id" => cfg.id));
        let single_voter = store.conf_state().0.voters == [cfg.id] && store.conf_state().0.learners.is_empty();
        let mut raw = RawNode::new(&raft_cfg, store, &logger)?;
        if single_voter {
            raw.campaign()?;
        }
        let mut driver = Driver {
            raw,
            rx,
            shared,
            sm,
            transport,
            pending: BTreeMap::new(),
            reads: HashMap::new(),
            read_waiters: Vec::new(),
            next_ctx: 1,
            cfg,
            last_leader: INVALID_ID,
            ticks: 0,
            next_compaction_check: 0,
            removed: false,
            #[cfg(test)]
            broken_ack_before_fsync: false,
        };
        // The status is published before anyone can ask for it, not after
        // the first tick.
        driver.after_step();
        Ok(driver)
    }

    fn run(mut self) {
        let mut next_tick = Instant::now() + self.cfg.tick;
        let mut inbox = Vec::new();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(m) => inbox.push(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while inbox.len() < 4096 {
                match self.rx.try_recv() {
                    Ok(m) => inbox.push(m),
                    Err(_) => break,
                }
            }
            let tick = Instant::now() >= next_tick;
            if tick {
                next_tick += self.cfg.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.cfg.tick;
                }
            }
            match self.process(inbox.drain(..), tick) {
                Ok(false) => {}
                Ok(true) => break,
                Err(e) => {
                    tracing::error!(error = %e, "raft node failed; stopping it");
                    break;
                }
            }
        }
        self.shared.stopped.store(true, Ordering::Release);
        for (_, p) in std::mem::take(&mut self.pending) {
            p.fail(|| Error::OutcomeUnknown("the raft node stopped".into()));
        }
        tracing::info!(id = self.cfg.id, "raft node stopped");
    }

    /// One turn of the driver: steps `inbox`, proposes, ticks once if
    /// `tick`, handles the `Ready`. Returns true when asked to stop.
    /// Deterministic given the same inputs, storage and raft randomness,
    /// which is what the simulation relies on.
    ///
    /// # Errors
    /// Storage errors: the node must stop.
    pub(crate) fn process(&mut self, inbox: impl IntoIterator<Item = Msg>, tick: bool) -> Result<bool> {
        let mut stop = false;
        let mut proposals = Vec::new();
        for m in inbox {
            match m {
                Msg::Propose { commands, reply } => proposals.push((commands, reply)),
                Msg::Raft(m) => {
                    if let Err(e) = self.raw.step(*m) {
                        tracing::debug!(error = %e, "raft message ignored");
                    }
                }
                Msg::ReadIndex { reply } => self.read_index(reply),
                Msg::Change { change, reply } => self.change(change, reply),
                Msg::Transfer { to, reply } => {
                    let r = if self.raw.raft.state == StateRole::Leader {
                        self.raw.transfer_leader(to);
                        Ok(())
                    } else {
                        Err(Error::NotLeader { leader: self.leader() })
                    };
                    let _ = reply.send(r);
                }
                Msg::SnapshotStatus { to, ok } => {
                    self.raw.report_snapshot(to, if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure })
                }
                Msg::Unreachable(to) => self.raw.report_unreachable(to),
                Msg::Stop => stop = true,
            }
        }
        self.propose_all(proposals);
        if tick {
            self.raw.tick();
            self.ticks += 1;
            self.expire_reads();
        }
        self.handle_ready()?;
        self.after_step();
        Ok(stop)
    }

    fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&l| l != INVALID_ID)
    }

    fn propose_all(&mut self, proposals: Vec<(Vec<Command>, Reply<Vec<CommandResult>>)>) {
        if proposals.is_empty() {
            return;
        }
        if self.raw.raft.state != StateRole::Leader {
            let leader = self.leader();
            for (_, reply) in proposals {
                let _ = reply.send(Err(Error::NotLeader { leader }));
            }
            return;
        }
        let mut group: Vec<Command> = Vec::new();
        let mut waiters = Vec::new();
        let mut bytes = 0;
        for (commands, reply) in proposals {
            let size: usize = commands.iter().map(Command::approximate_bytes).sum();
            if !group.is_empty() && bytes + size > self.cfg.max_entry_bytes {
                self.propose_group(std::mem::take(&mut group), std::mem::take(&mut waiters));
                bytes = 0;
            }
            waiters.push((reply, group.len(), commands.len()));
            group.extend(commands);
            bytes += size;
        }
        if !waiters.is_empty() {
            self.propose_group(group, waiters);
        }
    }

    fn propose_group(&mut self, group: Vec<Command>, waiters: Vec<(Reply<Vec<CommandResult>>, usize, usize)>) {
        match self.raw.propose(Vec::new(), command::encode(&group)) {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                let term = self.raw.raft.term;
                self.pending.insert(index, Pending::Commands { term, waiters });
            }
            Err(e) => {
                for (reply, _, _) in waiters {
                    let _ = reply.send(Err(Error::Unavailable(format!("proposal dropped by raft: {e}"))));
                }
            }
        }
    }

    fn read_index(&mut self, reply: Reply<u64>) {
        if self.leader().is_none() {
            let _ = reply.send(Err(Error::Unavailable("no leader".into())));
            return;
        }
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        self.raw.read_index(ctx.to_le_bytes().to_vec());
        let timeout_ticks = (self.cfg.read_timeout.as_nanos() / self.cfg.tick.as_nanos().max(1)).max(1) as u64;
        self.reads.insert(ctx, (reply, self.ticks + timeout_ticks));
    }

    fn expire_reads(&mut self) {
        let now = self.ticks;
        let expired: Vec<u64> = self.reads.iter().filter(|(_, (_, d))| *d <= now).map(|(&c, _)| c).collect();
        for ctx in expired {
            if let Some((reply, _)) = self.reads.remove(&ctx) {
                let _ = reply.send(Err(Error::Unavailable("read index timed out".into())));
            }
        }
        // A node cut off after it got its read index may never apply up
        // to it: those reads time out too.
        let mut i = 0;
        while i < self.read_waiters.len() {
            if self.read_waiters[i].2 <= now {
                let (index, reply, _) = self.read_waiters.swap_remove(i);
                let applied = self.sm.applied();
                let _ = reply.send(Err(Error::Unavailable(format!(
                    "read index timed out waiting to apply up to {index} (applied {applied})"
                ))));
            } else {
                i += 1;
            }
        }
    }

    fn change(&mut self, change: MemberChange, reply: Reply<()>) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(Error::NotLeader { leader: self.leader() }));
            return;
        }
        match self.conf_change(&change) {
            Ok(cc) => match self.raw.propose_conf_change(encode_change(&change), cc) {
                Ok(()) => {
                    let index = self.raw.raft.raft_log.last_index();
                    let term = self.raw.raft.term;
                    self.pending.insert(index, Pending::Change { term, reply });
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Unavailable(format!("configuration change dropped: {e}"))));
                }
            },
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn conf_change(&self, change: &MemberChange) -> Result<ConfChangeV2> {
        let conf = self.raw.raft.prs().conf();
        let is_voter = |id| conf.voters().contains(id);
        let is_learner = |id| conf.learners().contains(&id);
        let (id, ty) = match change {
            MemberChange::AddLearner { id, .. } => {
                if *id == 0 || is_voter(*id) || is_learner(*id) {
                    return Err(Error::InvalidArgument(format!("node {id} is already a member (or id 0)")));
                }
                (*id, ConfChangeType::AddLearnerNode)
            }
            MemberChange::Promote { id } => {
                if !is_learner(*id) {
                    return Err(Error::InvalidArgument(format!("node {id} is not a learner")));
                }
                let matched = self.raw.raft.prs().get(*id).map_or(0, |p| p.matched);
                let last = self.raw.raft.raft_log.last_index();
                if matched + 1000 < last {
                    return Err(Error::InvalidArgument(format!(
                        "learner {id} has not caught up (matched index {matched}, leader's last index {last})"
                    )));
                }
                (*id, ConfChangeType::AddNode)
            }
            MemberChange::Remove { id } => {
                if !is_voter(*id) && !is_learner(*id) {
                    return Err(Error::InvalidArgument(format!("node {id} is not a member")));
                }
                if is_voter(*id) && conf.voters().ids().len() == 1 {
                    return Err(Error::InvalidArgument("cannot remove the last voter".into()));
                }
                (*id, ConfChangeType::RemoveNode)
            }
        };
        let mut single = ConfChangeSingle { node_id: id, ..Default::default() };
        single.set_change_type(ty);
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        Ok(cc)
    }

    fn handle_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        if !rd.messages().is_empty() {
            self.transport.send(rd.take_messages());
        }
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        self.apply(rd.take_committed_entries())?;
        let mut sync_to = self.raw.mut_store().append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            sync_to = Some(self.raw.mut_store().set_hard_state(hs.clone())?);
        }
        if let Some(pos) = sync_to.filter(|_| !self.ack_before_fsync()) {
            self.raw.store().sync(pos)?;
        }
        if !rd.persisted_messages().is_empty() {
            self.transport.send(rd.take_persisted_messages());
        }
        for rs in rd.take_read_states() {
            let ctx = Reader { data: &rs.request_ctx }.u64().unwrap_or(0);
            if let Some((reply, deadline)) = self.reads.remove(&ctx) {
                self.read_waiters.push((rs.index, reply, deadline));
            }
        }
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.store().hard_state().clone();
            hs.commit = commit;
            // Not synced on its own: the commit index is recoverable.
            self.raw.mut_store().set_hard_state(hs)?;
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.resolve_reads();
        Ok(())
    }

    /// A deliberately broken build for the simulation's own test: the log
    /// is never synced, so votes and entries are acknowledged before they
    /// are durable.
    fn ack_before_fsync(&self) -> bool {
        #[cfg(test)]
        return self.broken_ack_before_fsync;
        #[cfg(not(test))]
        false
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let members = Members::from_bytes(&snap.data).map_err(|reason| Error::Corruption {
            path: self.cfg.data_dir.clone(),
            offset: 0,
            reason: format!("snapshot {index} carries malformed members: {reason}"),
        })?;
        let cs = meta.get_conf_state().clone();
        // The log marker first: a crash before the state machine switch is
        // finished on restart from the received files.
        self.raw.mut_store().apply_snapshot_meta(index, term, cs, members.clone())?;
        self.sm.install(index, term)?;
        // Proposals at or below the snapshot are inside it, applied or
        // replaced: this node cannot tell which.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > index {
                break;
            }
            entry
                .remove()
                .fail(|| Error::OutcomeUnknown("the proposal's entry is inside an installed snapshot".into()));
        }
        *self.shared.members.write() = members;
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        for e in entries {
            let index = e.index;
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    let results = if e.data.is_empty() {
                        self.sm.apply_empty(index)?;
                        Applied::Empty
                    } else {
                        match command::decode(&e.data) {
                            Ok(commands) => Applied::Commands(self.sm.apply(index, &commands)?),
                            Err(reason) => {
                                tracing::error!(index, reason, "undecodable log entry applied as empty");
                                self.sm.apply_empty(index)?;
                                Applied::Empty
                            }
                        }
                    };
                    self.resolve(index, e.term, results);
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&e)?;
                    self.sm.apply_empty(index)?;
                    self.resolve(index, e.term, Applied::ConfChange);
                }
            }
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, e: &Entry) -> Result<()> {
        let cc = if e.get_entry_type() == EntryType::EntryConfChange {
            let mut v1 = ConfChange::default();
            v1.merge_from_bytes(&e.data).map_err(|err| Error::Transport(err.to_string()))?;
            v1.into_v2()
        } else {
            let mut v2 = ConfChangeV2::default();
            v2.merge_from_bytes(&e.data).map_err(|err| Error::Transport(err.to_string()))?;
            v2
        };
        if e.index <= self.raw.store().conf_state().1 {
            return Ok(()); // Already in the persisted configuration (replay).
        }
        let cs = self.raw.apply_conf_change(&cc)?;
        let mut members = self.raw.store().members().clone();
        if let Some(change) = decode_change(&e.context) {
            match change {
                MemberChange::AddLearner { id, member } => {
                    members.0.insert(id, member);
                }
                MemberChange::Remove { id } => {
                    members.0.remove(&id);
                }
                MemberChange::Promote { .. } => {}
            }
        }
        tracing::info!(index = e.index, voters = ?cs.voters, learners = ?cs.learners, "configuration changed");
        if !cs.voters.contains(&self.cfg.id) && !cs.learners.contains(&self.cfg.id) && !self.removed {
            tracing::warn!(id = self.cfg.id, "this node was removed from the cluster");
            self.removed = true;
        }
        self.raw.mut_store().set_conf_state(e.index, cs, members.clone())?;
        *self.shared.members.write() = members;
        Ok(())
    }

    /// Answers the proposals waiting on entries up to `index`, which was
    /// just applied as `applied` in `term`.
    fn resolve(&mut self, index: u64, term: u64, mut applied: Applied) {
        while let Some((&i, _)) = self.pending.first_key_value() {
            if i > index {
                break;
            }
            let Some(p) = self.pending.remove(&i) else { break };
            if i < index {
                // Entries are applied in order, so entry `i` was skipped:
                // it came inside a snapshot, applied or not.
                p.fail(|| Error::OutcomeUnknown("the proposal's entry is inside an installed snapshot".into()));
                continue;
            }
            let replaced = p_term(&p) != term;
            match p {
                Pending::Commands { waiters, .. } => {
                    for (reply, start, len) in waiters {
                        let r = match (&mut applied, replaced) {
                            (_, true) => Err(Error::Unavailable("a new leader replaced the proposal".into())),
                            (Applied::Commands(all), false) if all.len() >= start + len => {
                                Ok(all[start..start + len].iter_mut().map(take_result).collect())
                            }
                            _ => Err(Error::Unavailable("the entry was not applied as proposed".into())),
                        };
                        let _ = reply.send(r);
                    }
                }
                Pending::Change { reply, .. } => {
                    // raft-rs turns a conf change into an empty entry when
                    // another change is still pending.
                    let r = match (&applied, replaced) {
                        (Applied::ConfChange, false) => Ok(()),
                        _ => Err(Error::Unavailable("the configuration change was not applied; retry".into())),
                    };
                    let _ = reply.send(r);
                }
            }
        }
    }

    fn resolve_reads(&mut self) {
        let applied = self.sm.applied();
        let mut i = 0;
        while i < self.read_waiters.len() {
            if self.read_waiters[i].0 <= applied {
                let (index, reply, _) = self.read_waiters.swap_remove(i);
                let _ = reply.send(Ok(index));
            } else {
                i += 1;
            }
        }
    }

    /// Status, leader-change handling and log compaction.
    fn after_step(&mut self) {
        let leader = self.raw.raft.leader_id;
        if leader != self.last_leader {
            self.last_leader = leader;
            self.shared.leader.store(leader, Ordering::Release);
            tracing::info!(id = self.cfg.id, leader, term = self.raw.raft.term, "leader changed");
            // Reads in flight were addressed to the old leader.
            for (_, (reply, _)) in self.reads.drain() {
                let _ = reply.send(Err(Error::Unavailable("leader changed".into())));
            }
        }
        // About once a second.
        if self.ticks >= self.next_compaction_check {
            let per_second = (1_000_000_000 / self.cfg.tick.as_nanos().max(1)).max(1) as u64;
            self.next_compaction_check = self.ticks + per_second;
            self.maybe_compact();
        }
        let conf = self.raw.raft.prs().conf();
        let learners: Vec<u64> = conf.learners().iter().copied().collect();
        let voters: Vec<u64> = conf.voters().ids().iter().collect();
        let role = match self.raw.raft.state {
            _ if learners.contains(&self.cfg.id) => "learner",
            StateRole::Leader => "leader",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        };
        let store = self.raw.store();
        let mut s = self.shared.status.lock();
        s.id = self.cfg.id;
        s.role = role.to_string();
        s.term = self.raw.raft.term;
        s.leader = leader;
        s.commit_index = self.raw.raft.raft_log.committed;
        s.applied_index = self.sm.applied();
        s.first_index = store.first();
        s.last_index = store.last();
        s.voters = voters;
        s.learners = learners;
        s.members = store.members().clone();
        s.pending_proposals = self.pending.len() as u64;
        s.removed = self.removed;
    }

    fn maybe_compact(&mut self) {
        let applied = self.sm.applied();
        let first = self.raw.store().first();
        if applied.saturating_sub(first) <= self.cfg.compact_entries {
            return;
        }
        let durable = self.sm.durable_applied();
        let keep_from = applied.saturating_sub(self.cfg.catch_up_entries);
        if durable < keep_from {
            self.sm.flush_in_background();
        }
        let to = durable.min(keep_from);
        if to >= first {
            if let Err(e) = self.raw.mut_store().compact(to) {
                tracing::error!(error = %e, "raft log compaction failed");
            } else {
                tracing::info!(index = to, "raft log compacted");
            }
        }
    }
}

fn p_term(p: &Pending) -> u64 {
    match p {
        Pending::Commands { term, .. } | Pending::Change { term, .. } => *term,
    }
}

fn take_result(r: &mut CommandResult) -> CommandResult {
    std::mem::replace(r, Err(Error::Unavailable("result taken twice".into())))
}

fn encode_change(change: &MemberChange) -> Vec<u8> {
    let mut out = Vec::new();
    match change {
        MemberChange::AddLearner { id, member } => {
            out.push(1);
            out.extend_from_slice(&id.to_le_bytes());
            command::put_slice(&mut out, member.raft_addr.as_bytes());
            command::put_slice(&mut out, member.client_addr.as_bytes());
        }
        MemberChange::Promote { id } => {
            out.push(2);
            out.extend_from_slice(&id.to_le_bytes());
        }
        MemberChange::Remove { id } => {
            out.push(3);
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

fn decode_change(data: &[u8]) -> Option<MemberChange> {
    let mut r = Reader { data };
    let tag = r.u8().ok()?;
    let id = r.u64().ok()?;
    Some(match tag {
        1 => {
            let raft_addr = String::from_utf8(r.slice().ok()?.to_vec()).ok()?;
            let client_addr = String::from_utf8(r.slice().ok()?.to_vec()).ok()?;
            MemberChange::AddLearner { id, member: Member { raft_addr, client_addr } }
        }
        2 => MemberChange::Promote { id },
        3 => MemberChange::Remove { id },
        _ => return None,
    })
}

/// True for the message that carries a snapshot (the transport streams its
/// files before delivering it).
pub fn is_snapshot(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgSnapshot
}
