//! Replication for Bedrock with tikv's `raft` crate (raft-rs `RawNode`).
//!
//! One Raft group covers the whole key space. The pieces:
//!
//! - [`node`]: the driver thread that owns the `RawNode` and handles each
//!   `Ready` in the documented order; proposals batched into few entries
//!   and one fsync; ReadIndex for linearizable reads; membership changes
//!   (learner, promote, remove) through `ConfChangeV2`; leadership
//!   transfer.
//! - [`storage`]: `raft::Storage` on `bedrock-wal`: entries, hard state and
//!   conf state survive a crash; compaction deletes old segments.
//! - [`state`]: the state machine, a `bedrock-txn` database without a WAL
//!   of its own (the Raft log is the write-ahead log). Entry *i* is applied
//!   with sequence number *i*, so every replica holds the same versions and
//!   the LSM's flushed sequence number is the durable applied index.
//!   Snapshots are LSM checkpoints (hard-linked SSTables).
//! - [`command`]: what an entry carries: writes, and transactions as
//!   (reads observed, writes), validated at apply time on every replica.
//! - [`transport`]: the [`transport::Transport`] trait and an in-memory
//!   network with partitions; [`grpc`]: the tonic transport (a
//!   bidirectional stream per peer, snapshots streamed in chunks) and the
//!   peer service, plus forwarding of requests from followers to the leader.
//!
//! It does not shard (one group) and does not use raft-rs's asynchronous
//! ready. Timing defaults follow etcd: 100 ms ticks, heartbeats every
//! tick, elections after 1–2 s of silence.

pub mod command;
pub mod error;
pub mod grpc;
pub mod members;
pub mod node;
pub mod replica;
#[cfg(test)]
mod sim;
pub mod state;
pub mod storage;
pub mod transport;

pub use bedrock_txn as txn;
pub use error::{Error, Result};
pub use members::{Member, Members};
pub use node::{MemberChange, Node, NodeConfig, NodeHandle, NodeStatus};
pub use replica::Replica;
pub use state::{CommandResult, StateMachine};
