//! The transport between Raft nodes: the [`Transport`] trait, and
//! [`MemTransport`], an in-process implementation with fault injection
//! (drop, partition) for tests and simulations. The gRPC transport is in
//! [`crate::grpc`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;
use raft::eraftpb::Message;

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

/// An in-process network of nodes with partitions and message loss.
#[derive(Debug, Default, Clone)]
pub struct MemNetwork {
    inner: Arc<Mutex<NetState>>,
}

#[derive(Debug, Default)]
struct NetState {
    nodes: BTreeMap<u64, NodeHandle>,
    /// Directed links that drop everything: (from, to).
    cut: BTreeSet<(u64, u64)>,
}

impl MemNetwork {
    /// A new, empty network.
    pub fn new() -> MemNetwork {
        MemNetwork::default()
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
            let (to, sender) = {
                let s = self.net.inner.lock();
                if s.cut.contains(&(self.from, m.to)) {
                    continue;
                }
                (s.nodes.get(&m.to).cloned(), s.nodes.get(&self.from).cloned())
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
            to.step(m);
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
