//! End-to-end tests of the `bedrock` binary: each test starts real server
//! processes on loopback ports chosen by the OS, with their own temporary
//! data directories.

mod backup;
mod cli;
mod cluster;
mod cluster_faults;
mod cluster_harness;
mod common;
mod config;
mod crash;
mod grpc_api;
mod grpc_tools;
mod http_api;
mod metrics;
mod python_client;
mod shutdown;
mod tls;
