//! [`Replica`]: what a server calls. Any node serves any request: writes
//! and membership changes go to the local node when it leads and are
//! forwarded to the leader otherwise; reads confirm the read index first.
//! While no leader is known, requests wait (polling every 50 ms) up to the
//! request timeout, then fail with the retryable [`Error::Unavailable`].
//! A write whose proposal may have been made is never retried: if its fate
//! is unknown the caller gets [`Error::OutcomeUnknown`].

use std::time::{Duration, Instant};

use crate::command::Command;
use crate::grpc::PeerClients;
use crate::node::{MemberChange, NodeHandle, NodeStatus};
use crate::state::CommandResult;
use crate::transport::MemNetwork;
use crate::{Error, Result};

/// How long a request may wait for a leader and its outcome. Default of
/// [`Replica::new`]: 5 s (etcd's request timeout).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How requests reach the leader.
#[derive(Debug, Clone)]
enum Peers {
    Grpc(PeerClients),
    /// On a [`MemNetwork`], as node `from`: forwarding respects partitions.
    Mem {
        net: MemNetwork,
        from: u64,
    },
}

impl Peers {
    fn mem_node(net: &MemNetwork, from: u64, to: u64) -> Result<NodeHandle> {
        if from != to && !net.reachable(from, to) {
            return Err(Error::Unavailable(format!("node {to} is unreachable from node {from}")));
        }
        net.handle(to).ok_or_else(|| Error::Unavailable(format!("node {to} is down")))
    }

    async fn propose(&self, to: u64, commands: &[Command]) -> Result<Vec<CommandResult>> {
        match self {
            Peers::Grpc(p) => p.propose(to, commands).await,
            Peers::Mem { net, from } => Self::mem_node(net, *from, to)?.propose(commands.to_vec()).await,
        }
    }

    async fn change_membership(&self, to: u64, change: &MemberChange) -> Result<()> {
        match self {
            Peers::Grpc(p) => p.change_membership(to, change).await,
            Peers::Mem { net, from } => Self::mem_node(net, *from, to)?.change_membership(change.clone()).await,
        }
    }

    async fn transfer_leader(&self, to: u64, target: u64) -> Result<()> {
        match self {
            Peers::Grpc(p) => p.transfer_leader(to, target).await,
            Peers::Mem { net, from } => Self::mem_node(net, *from, to)?.transfer_leader(target).await,
        }
    }

    async fn status(&self, to: u64) -> Result<NodeStatus> {
        match self {
            Peers::Grpc(p) => p.status(to).await,
            Peers::Mem { net, from } => Ok(Self::mem_node(net, *from, to)?.status()),
        }
    }
}

/// A node plus the means to reach its peers.
#[derive(Debug, Clone)]
pub struct Replica {
    node: NodeHandle,
    peers: Peers,
    timeout: Duration,
}

impl Replica {
    /// The replica of `node`, reaching peers over gRPC, with the default
    /// request timeout.
    pub fn new(node: NodeHandle) -> Replica {
        Replica { peers: Peers::Grpc(PeerClients::new(node.clone())), node, timeout: DEFAULT_REQUEST_TIMEOUT }
    }

    /// Like [`Replica::new`], reaching peers over TLS (see
    /// [`crate::grpc::GrpcOptions::tls`]).
    pub fn with_peer_tls(node: NodeHandle, tls: Option<tonic::transport::ClientTlsConfig>) -> Replica {
        Replica { peers: Peers::Grpc(PeerClients::with_tls(node.clone(), tls)), node, timeout: DEFAULT_REQUEST_TIMEOUT }
    }

    /// The replica of `node` on an in-memory network (tests, simulation).
    pub fn in_memory(node: NodeHandle, net: MemNetwork) -> Replica {
        Replica { peers: Peers::Mem { net, from: node.id() }, node, timeout: DEFAULT_REQUEST_TIMEOUT }
    }

    /// The local node.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// Replicates `commands` (on the leader, wherever it is) and returns
    /// one result per command once applied.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if no leader could take it within the
    /// timeout (not applied); [`Error::OutcomeUnknown`] if it was proposed
    /// but its outcome could not be learned in time.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Vec<CommandResult>> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = async {
                match self.node.leader() {
                    Some(l) if l == self.node.id() => self.node.propose(commands.clone()).await,
                    Some(l) => self.peers.propose(l, &commands).await,
                    None => Err(Error::Unavailable("no leader".into())),
                }
            };
            let result = match tokio::time::timeout(remaining, attempt).await {
                Ok(r) => r,
                Err(_) => Err(Error::OutcomeUnknown(format!("no outcome within {:?}", self.timeout))),
            };
            match result {
                Err(e) if e.is_retryable() && Instant::now() + RETRY_PAUSE < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) if e.is_retryable() => {
                    return Err(Error::Unavailable(format!(
                        "no leader accepted the request within {:?}: {e}",
                        self.timeout
                    )))
                }
                other => return other,
            }
        }
    }

    /// Waits until a local read is linearizable (ReadIndex, retried while
    /// the leader is unknown or changes); returns the read index.
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the timeout.
    pub async fn read_index(&self) -> Result<u64> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(remaining, self.node.read_index()).await {
                Ok(r) => r,
                Err(_) => Err(Error::Unavailable("read index timed out".into())),
            };
            match result {
                Err(e) if e.is_retryable() && Instant::now() + RETRY_PAUSE < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a membership change on the leader. Removing the leader itself
    /// first hands leadership to another voter (raft-rs lets a removed
    /// leader lead on otherwise).
    ///
    /// # Errors
    /// As for [`NodeHandle::change_membership`], plus the timeout.
    pub async fn change_membership(&self, change: MemberChange) -> Result<()> {
        if let MemberChange::Remove { id } = change {
            if self.leader_within(self.timeout).await? == id {
                let status = self.node.status();
                let target = status
                    .voters
                    .iter()
                    .copied()
                    .find(|&v| v != id)
                    .ok_or_else(|| Error::InvalidArgument("cannot remove the last voter".into()))?;
                self.transfer_leader(target).await?;
                let deadline = Instant::now() + self.timeout;
                while self.node.leader() == Some(id) && Instant::now() < deadline {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let leader = self.leader_within(deadline.saturating_duration_since(Instant::now())).await?;
            let result = if leader == self.node.id() {
                self.node.change_membership(change.clone()).await
            } else {
                self.peers.change_membership(leader, &change).await
            };
            match result {
                Err(e) if e.is_retryable() && Instant::now() + RETRY_PAUSE < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// Asks the leader to transfer leadership to `to`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] with no leader.
    pub async fn transfer_leader(&self, to: u64) -> Result<()> {
        let leader = self.leader_within(self.timeout).await?;
        if leader == self.node.id() {
            self.node.transfer_leader(to).await
        } else {
            self.peers.transfer_leader(leader, to).await
        }
    }

    /// The status of every member (this node's directly, the others' over
    /// the peer port); an unreachable member gives its error.
    pub async fn cluster_status(&self) -> Vec<(u64, Result<NodeStatus>)> {
        let me = self.node.status();
        let mut ids: Vec<u64> = me.members.0.keys().copied().collect();
        if !ids.contains(&me.id) {
            ids.push(me.id);
        }
        let mut out = Vec::new();
        for id in ids {
            if id == me.id {
                out.push((id, Ok(me.clone())));
            } else {
                out.push((id, self.peers.status(id).await));
            }
        }
        out
    }

    async fn leader_within(&self, wait: Duration) -> Result<u64> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(l) = self.node.leader() {
                return Ok(l);
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(Error::Unavailable("no leader".into()));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
