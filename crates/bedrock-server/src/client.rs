//! The CLI client commands (`put`, `get`, `del`, `scan`, `txn`) over the
//! gRPC API, and the connection logic shared with the benchmark.
//!
//! The commands go through [`bedrock_proto::Client`], so they fail over to
//! the next endpoint when that is safe: always when an endpoint refuses the
//! connection or answers `UNAVAILABLE`, and for reads also when the
//! connection breaks mid-request. A write whose outcome is unknown is
//! reported, not retried.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bedrock_proto::v1 as pb;
use bedrock_proto::ClientOptions;
use pb::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};

use crate::cli::Command;
use crate::convert;
use crate::json::TxnJson;
use crate::store::MAX_REQUEST_BYTES;

/// How long connecting to one endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take (until its response headers arrive).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected gRPC client.
pub type Client = KvClient<Channel>;

/// The options of the CLI's failover client: the timeouts above and the
/// server's message size limit.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        max_message_bytes: MAX_REQUEST_BYTES,
        ..ClientOptions::default()
    }
}

/// Connects to the first endpoint of `endpoints` that accepts a connection
/// and returns the bare generated client (no failover), as the benchmark
/// wants: it measures one server.
pub async fn connect(endpoints: &[String]) -> anyhow::Result<Client> {
    let mut failures = Vec::new();
    for endpoint in endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match connect_one(endpoint).await {
            Ok(channel) => {
                return Ok(KvClient::new(channel)
                    .max_decoding_message_size(MAX_REQUEST_BYTES)
                    .max_encoding_message_size(MAX_REQUEST_BYTES))
            }
            Err(err) => failures.push(format!("{endpoint}: {err:#}")),
        }
    }
    if failures.is_empty() {
        bail!("no endpoint given");
    }
    bail!("cannot connect to any endpoint ({})", failures.join("; "))
}

async fn connect_one(endpoint: &str) -> anyhow::Result<Channel> {
    let uri = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
    let channel =
        Endpoint::from_shared(uri)?.connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT).connect().await?;
    Ok(channel)
}

/// Runs one client command; the exit code is 1 for a missing key on `get`.
pub async fn run(endpoints: &[String], command: Command) -> anyhow::Result<ExitCode> {
    let mut client = bedrock_proto::Client::connect_with(endpoints.iter().cloned(), client_options()).await?;
    let mut out = std::io::stdout().lock();
    match command {
        Command::Put { key, value } => {
            client.put(key, value).await?;
            writeln!(out, "OK")?;
        }
        Command::Get { key } => match client.get(key.as_bytes()).await? {
            Some(value) => {
                out.write_all(&value)?;
                writeln!(out)?;
            }
            None => {
                eprintln!("bedrock: key not found: {key}");
                return Ok(ExitCode::from(1));
            }
        },
        Command::Del { key } => {
            client.delete(key).await?;
            writeln!(out, "OK")?;
        }
        Command::Scan { start, end, limit } => {
            let kvs = client.scan(start.unwrap_or_default(), end.map(String::into_bytes), limit).await?;
            for (key, value) in kvs {
                out.write_all(&key)?;
                out.write_all(b"\t")?;
                out.write_all(&value)?;
                out.write_all(b"\n")?;
            }
        }
        Command::Txn { file } => {
            let req = read_txn(&file)?;
            let resp = client.txn(convert::txn_request_to_proto(req)).await?;
            let json = crate::json::txn_response(convert::txn_response_from_proto(resp)?);
            writeln!(out, "{}", serde_json::to_string(&json)?)?;
        }
        Command::Serve(_) | Command::Bench(_) | Command::Member(_) | Command::Status { .. } => {
            bail!("not a key-value client command")
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a transaction in the JSON shape of HTTP `POST /txn`.
fn read_txn(file: &Path) -> anyhow::Result<crate::txn::TxnRequest> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the transaction from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let json: TxnJson = serde_json::from_str(&text).context("parsing the transaction JSON")?;
    Ok(json.into_request()?)
}
