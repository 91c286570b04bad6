//! The transport between Raft nodes: the [`Transport`] trait, and
//! [`MemTransport`], an in-process implementation with fault injection for
//! tests and simulations: partitions ([`MemNetwork::partition`],
//! [`MemNetwork::isolate`], one-way [`MemNetwork::cut`]) and, with
//! [`MemNetwork::set_faults`], random loss, duplication and delay of
//! messages (random delays reorder them). The random decisions come from a
//! generator seeded with [`MemNetwork::with_seed`], so a seed gives the same
//! sequence of decisions; the nodes' threads still run in real time, so the
//! interleaving is not reproduced. The gRPC transport is in [`crate::grpc`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use raft::eraftpb::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::node::{is_snapshot, NodeHandle};

/// Sends Raft messages to peers. Sending never blocks the driver for long:
/// a message that cannot be delivered is dropped (Raft retransmits) and
/// the peer reported unreachable. A `MsgSnapshot` is delivered only after
/// the snapshot's files have been copied to the receiver, and its outcome
/// is reported with [`NodeHandle::report_snapshot`].
pub trait Transport: Send + Sync {
    /// Queues `msgs` for their recipients (`msg.to`).
    fn send(&self, msgs: Vec<Message>);
}

/// Random message faults of a [`MemNetwork`]. Each message (except a
/// snapshot, which is only ever dropped) is dropped with probability
/// `drop`, else delivered, and then delivered a second time with
/// probability `duplicate`; each delivery waits a uniformly random delay
/// in `0..=max_delay`, so messages overtake each other.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Probability (0.0..=1.0) that a message is lost.
    pub drop: f64,
    /// Probability (0.0..=1.0) that a delivered message is delivered twice.
    pub duplicate: f64,
    /// Largest delivery delay; zero delivers at once, in order.
    pub max_delay: Duration,
}

/// An in-process network of nodes with partitions and message faults.
#[derive(Debug, Clone)]
pub struct MemNetwork {
    inner: Arc<Mutex<NetState>>,
}

impl Default for MemNetwork {
    fn default() -> MemNetwork {
        MemNetwork::with_seed(0)
    }
}

#[derive(Debug)]
struct NetState {
    nodes: BTreeMap<u64, NodeHandle>,
    /// Directed links that drop everything: (from, to).
    cut: BTreeSet<(u64, u64)>,
    faults: Faults,
    rng: SmallRng,
    /// Messages waiting for their delivery time; `None` until a delay is
    /// first configured (then a delivery thread serves it).
    delayed: Option<Arc<DelayQueue>>,
    /// Tie-breaker keeping equal delivery times in send order.
    sequence: u64,
}

/// Messages in flight, by delivery time.
#[derive(Debug, Default)]
struct DelayQueue {
    heap: Mutex<BinaryHeap<Reverse<Delayed>>>,
    changed: Condvar,
}

#[derive(Debug)]
struct Delayed {
    at: Instant,
    sequence: u64,
    to: u64,
    msg: Message,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

impl MemNetwork {
    /// A new, empty network without faults, seeded with 0.
    pub fn new() -> MemNetwork {
        MemNetwork::default()
    }

    /// A new, empty network whose random faults are drawn from a generator
    /// seeded with `seed`.
    pub fn with_seed(seed: u64) -> MemNetwork {
        let state = NetState {
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            faults: Faults::default(),
            rng: SmallRng::seed_from_u64(seed),
            delayed: None,
            sequence: 0,
        };
        MemNetwork { inner: Arc::new(Mutex::new(state)) }
    }

    /// Sets the random message faults (see [`Faults`]); `Faults::default()`
    /// turns them off. Messages already delayed are still delivered.
    ///
    /// # Errors
    /// The thread that delivers delayed messages could not be started (the
    /// first time a delay is set); the faults are then left as they were.
    pub fn set_faults(&self, faults: Faults) -> std::io::Result<()> {
        let mut s = self.inner.lock();
        if !faults.max_delay.is_zero() && s.delayed.is_none() {
            let queue = Arc::new(DelayQueue::default());
            let (for_thread, net) = (queue.clone(), Arc::downgrade(&self.inner));
            std::thread::Builder::new()
                .name("mem-network-delay".into())
                .spawn(move || deliver_delayed(&for_thread, &net))?;
            s.delayed = Some(queue);
        }
        s.faults = faults;
        Ok(())
    }

    /// Cuts the directed link `from` → `to`: its messages are dropped.
    pub fn cut(&self, from: u64, to: u64) {
        self.inner.lock().cut.insert((from, to));
    }

    /// Whether `from` can reach `to` (no cut and `to` is on the network).
    pub fn reachable(&self, from: u64, to: u64) -> bool {
        let s = self.inner.lock();
        !s.cut.contains(&(from, to)) && s.nodes.contains_key(&to)
    }

    /// Splits the network: nodes in different groups cannot talk, both
    /// ways. Nodes in no group keep their links. `heal` undoes it.
    pub fn partition(&self, groups: &[&[u64]]) {
        let mut s = self.inner.lock();
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for &x in a.iter() {
                    for &y in b.iter() {
                        s.cut.insert((x, y));
                        s.cut.insert((y, x));
                    }
                }
            }
        }
    }

    /// The transport of node `handle.id()`, registering it.
    pub fn transport(&self, handle: NodeHandle) -> Arc<dyn Transport> {
        let id = handle.id();
        self.inner.lock().nodes.insert(id, handle);
        Arc::new(MemTransport { from: id, net: self.clone() })
    }

    /// The handle of node `id`, if it is on the network.
    pub fn handle(&self, id: u64) -> Option<NodeHandle> {
        self.inner.lock().nodes.get(&id).cloned()
    }

    /// Removes node `id` (a crashed node): messages to it are dropped.
    pub fn remove(&self, id: u64) {
        self.inner.lock().nodes.remove(&id);
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn isolate(&self, id: u64) {
        let mut s = self.inner.lock();
        let others: Vec<u64> = s.nodes.keys().copied().filter(|&o| o != id).collect();
        for o in others {
            s.cut.insert((id, o));
            s.cut.insert((o, id));
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.inner.lock().cut.clear();
    }
}

/// The [`Transport`] of one node on a [`MemNetwork`].
#[derive(Debug)]
pub struct MemTransport {
    from: u64,
    net: MemNetwork,
}

impl Transport for MemTransport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let (to, sender, deliveries) = {
                let mut s = self.net.inner.lock();
                if s.cut.contains(&(self.from, m.to)) {
                    continue;
                }
                let faults = s.faults;
                if faults.drop > 0.0 && s.rng.gen_bool(faults.drop.clamp(0.0, 1.0)) {
                    continue;
                }
                let twice =
                    !is_snapshot(&m) && faults.duplicate > 0.0 && s.rng.gen_bool(faults.duplicate.clamp(0.0, 1.0));
                let mut deliveries = Vec::new();
                for _ in 0..if twice { 2 } else { 1 } {
                    let delay = if faults.max_delay.is_zero() || is_snapshot(&m) {
                        Duration::ZERO
                    } else {
                        faults.max_delay.mul_f64(s.rng.gen::<f64>())
                    };
                    deliveries.push(delay);
                }
                (s.nodes.get(&m.to).cloned(), s.nodes.get(&self.from).cloned(), deliveries)
            };
            let Some(to) = to else { continue };
            if is_snapshot(&m) {
                let Some(sender) = sender else { continue };
                let ok = copy_snapshot(&sender, &to, &m);
                sender.report_snapshot(m.to, ok);
                if !ok {
                    continue;
                }
            }
            for delay in deliveries {
                if delay.is_zero() {
                    to.step(m.clone());
                } else {
                    self.net.delay(m.to, m.clone(), delay);
                }
            }
        }
    }
}

impl MemNetwork {
    fn delay(&self, to: u64, msg: Message, delay: Duration) {
        let queue = {
            let mut s = self.inner.lock();
            s.sequence += 1;
            let sequence = s.sequence;
            let Some(queue) = s.delayed.clone() else { return };
            queue.heap.lock().push(Reverse(Delayed { at: Instant::now() + delay, sequence, to, msg }));
            queue
        };
        queue.changed.notify_one();
    }
}

/// The delivery thread of delayed messages; ends when the network is gone.
fn deliver_delayed(queue: &DelayQueue, net: &Weak<Mutex<NetState>>) {
    const IDLE: Duration = Duration::from_millis(50);
    loop {
        let due = {
            let mut heap = queue.heap.lock();
            match heap.peek().map(|d| d.0.at) {
                Some(at) if at <= Instant::now() => heap.pop().map(|d| d.0),
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now()).min(IDLE);
                    queue.changed.wait_for(&mut heap, wait);
                    None
                }
                None => {
                    queue.changed.wait_for(&mut heap, IDLE);
                    None
                }
            }
        };
        let Some(net) = net.upgrade() else { return };
        if let Some(d) = due {
            let to = net.lock().nodes.get(&d.to).cloned();
            if let Some(to) = to {
                to.step(d.msg);
            }
        }
    }
}

/// Copies the snapshot files from the sender's checkpoint to the
/// receiver's receive directory, as the gRPC transport streams them.
fn copy_snapshot(from: &NodeHandle, to: &NodeHandle, m: &Message) -> bool {
    let meta = m.get_snapshot().get_metadata();
    let Some(src) = from.state_machine().snapshot_dir(meta.index) else { return false };
    let dst = to.state_machine().receive_dir(meta.index, meta.term);
    let copy = || -> std::io::Result<()> {
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::create_dir_all(&dst)?;
        for e in std::fs::read_dir(&src)? {
            let e = e?;
            std::fs::copy(e.path(), dst.join(e.file_name()))?;
        }
        std::fs::write(dst.join("COMPLETE"), b"")?;
        Ok(())
    };
    copy().is_ok()
}
