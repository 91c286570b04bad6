//! Replication for Bedrock — not yet implemented.
//!
//! This crate will drive tikv's `raft` crate (`RawNode`) over tonic gRPC,
//! with the Raft log on `bedrock-wal` and the state machine on
//! `bedrock-txn` (see `docs/ARCHITECTURE.md`). Until then it only fixes
//! the crate's place in the dependency order (wal ← sstable ← lsm ← txn ←
//! raft ← server) and exposes nothing: the server runs single-node on the
//! transaction layer directly.

/// The crate this one will replicate.
pub use bedrock_txn as txn;
