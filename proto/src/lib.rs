//! Bedrock's protobuf contract and the Rust code generated from it.
//!
//! The `.proto` files under `proto/bedrock/` are the public, language-neutral
//! contract of a Bedrock server; this crate compiles them at build time with
//! [protox](https://docs.rs/protox) (pure Rust: no `protoc` install needed)
//! and exposes the prost messages together with the tonic client
//! ([`v1::kv_client::KvClient`]) and server ([`v1::kv_server::KvServer`]).
//!
//! It does not contain any logic: validation, error mapping and the storage
//! calls live in `bedrock-server`.
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
