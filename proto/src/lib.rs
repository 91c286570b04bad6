//! Bedrock's protobuf contract, the Rust code generated from it, and a Rust
//! client with endpoint failover.
//!
//! The `.proto` files under `proto/bedrock/` are the public, language-neutral
//! contract of a Bedrock server (clients in other languages generate their
//! stubs from them); this crate compiles them at build time with
//! [protox](https://docs.rs/protox) (pure Rust: no `protoc` install needed)
//! and exposes the prost messages together with the tonic client
//! ([`v1::kv_client::KvClient`]) and server ([`v1::kv_server::KvServer`]).
//!
//! [`Client`] ([`client`] module) wraps the generated client for Rust
//! callers: typed `get`/`put`/`delete`/`scan`/`txn` over a list of
//! endpoints, failing over to the next endpoint only when that is safe. A
//! request is sent again only if it certainly was not applied (connection
//! refused, server status `UNAVAILABLE`) or if it is a read; a write whose
//! outcome is in doubt (server status `UNKNOWN`, a connection broken or a
//! timeout after sending) fails with [`ClientError::OutcomeUnknown`] and is
//! never retried. [`Client`]'s documentation has the full table.
//!
//! It is not the server: validation, error mapping and the storage calls
//! live in `bedrock-server`. The client does no load balancing, connection
//! pooling or TLS.
//!
//! Packages:
//! - [`v1`]: `bedrock.v1`, the client API (`KV` service: Get, Put, Delete,
//!   streaming Scan, and etcd-style Txn). Keys and values are bytes; every
//!   write response carries the revision (commit sequence number) it
//!   committed at.
//!
//! ```
//! use bedrock_proto::v1::{PutRequest, RequestOp, TxnRequest, request_op};
//!
//! let put = PutRequest { key: b"name".to_vec(), value: b"raft".to_vec() };
//! let txn = TxnRequest {
//!     compare: vec![],
//!     success: vec![RequestOp { request: Some(request_op::Request::Put(put)) }],
//!     failure: vec![],
//! };
//! assert_eq!(txn.success.len(), 1);
//! ```
//!
//! With the failover client (needs a running server):
//!
//! ```no_run
//! # async fn demo() -> Result<(), bedrock_proto::ClientError> {
//! let mut client = bedrock_proto::Client::connect(["127.0.0.1:8080", "127.0.0.2:8080"]).await?;
//! let revision = client.put("name", "raft").await?;
//! let (value, read_at) = client.get_with_revision("name").await?;
//! assert_eq!(value.as_deref(), Some(&b"raft"[..]));
//! assert!(read_at >= revision);
//! # Ok(())
//! # }
//! ```

pub mod client;

pub use client::{Client, ClientError, ClientOptions};

/// The `bedrock.v1` package: the client API (`KV` service), its messages,
/// and the generated tonic client and server. Documentation of each item is
/// taken from the comments in `proto/bedrock/v1/kv.proto`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("bedrock.v1");
}

/// The `bedrock.peer.v1` package: traffic between the servers of a cluster
/// (Raft messages, snapshots, forwarded requests, status). Served on the
/// Raft port; see `proto/bedrock/peer/v1/peer.proto`.
pub mod peer {
    /// Version 1 of the peer protocol.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("bedrock.peer.v1");
    }
}

/// The encoded `google.protobuf.FileDescriptorSet` of every `.proto` file
/// in this crate (client API and peer protocol), for gRPC server
/// reflection: `tonic_reflection::server::Builder::configure()
/// .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bedrock_descriptor.bin"));
