//! The `bedrock` binary's library: the server (HTTP/1.1 and gRPC client API
//! on one port), the CLI client and the benchmark.
//!
//! Without cluster flags the server is single-node: requests go straight to
//! a `bedrock_txn::Db`. With `--initial-cluster` or `--join` it is a
//! member of a Raft cluster (`bedrock-raft`): [`store::Store`] sends writes
//! through Raft (forwarded to the leader from any node) and reads after a
//! ReadIndex. What it does:
//!
//! - [`http`]: curl-friendly routes (`PUT /put?key=K`, `GET /get?key=K`, …).
//! - [`grpc`]: the `bedrock.v1.KV` service from `bedrock-proto`.
//! - [`serve`]: one listener for both (HTTP/1.1 and h2c), graceful shutdown.
//! - [`store`]: the async face of the database; every storage call runs on
//!   tokio's blocking pool because writes fsync.
//! - [`txn`]: etcd-style compare-and-swap transactions, retried on conflict.
//! - [`cluster`]: cluster mode: start-up, the `bedrock.v1.Cluster` admin
//!   service, and the `member` and `status` commands.
//! - [`error`]: the one mapping of storage errors to HTTP and gRPC codes.
//! - [`ycsb`]: the YCSB core workloads A–F for `bedrock bench --workload`.
//!
//! What it does not do: authentication, TLS, or any request path that
//! panics on client input (every decode is checked).
//!
//! Limits: keys are 1..=8 KiB and values at most 8 MiB by default (the
//! storage layer's options); a request may not exceed
//! [`store::MAX_REQUEST_BYTES`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use bedrock_server::cli::ServeArgs;
//! let args = ServeArgs {
//!     data_dir: "bedrock-data".into(),
//!     client_addr: "127.0.0.1:8080".parse()?,
//!     raft_addr: "127.0.0.1:9000".parse()?,
//!     id: 1,
//!     sync: bedrock_wal::SyncPolicy::Always,
//!     initial_cluster: None, // or Some("1=127.0.0.1:9001,...".into())
//!     join: None,
//!     snapshot_entries: None, snapshot_catchup_entries: None, // NodeConfig's defaults
//! };
//! bedrock_server::serve::run(args).await?; // until SIGINT or SIGTERM
//! # Ok(()) }
//! ```

pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod http;
pub mod json;
pub mod read;
pub mod serve;
pub mod store;
pub mod txn;
pub mod ycsb;
