//! The CLI client commands (`put`, `get`, `del`, `scan`, `txn`) over the
//! gRPC API, and the connection logic shared with the benchmark.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bedrock_proto::v1 as pb;
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

/// Connects to the first endpoint of `endpoints` that accepts a connection.
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
    let mut client = connect(endpoints).await?;
    let mut out = std::io::stdout().lock();
    match command {
        Command::Put { key, value } => {
            let req = pb::PutRequest { key: key.into_bytes(), value: value.into_bytes() };
            client.put(req).await?;
            writeln!(out, "OK")?;
        }
        Command::Get { key } => {
            let req = pb::GetRequest { key: key.clone().into_bytes(), serializable: false };
            match client.get(req).await?.into_inner().kv {
                Some(kv) => {
                    out.write_all(&kv.value)?;
                    writeln!(out)?;
                }
                None => {
                    eprintln!("bedrock: key not found: {key}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::Del { key } => {
            client.delete(pb::DeleteRequest { key: key.into_bytes() }).await?;
            writeln!(out, "OK")?;
        }
        Command::Scan { start, end, limit } => {
            let req = pb::ScanRequest {
                start: start.unwrap_or_default().into_bytes(),
                end: end.unwrap_or_default().into_bytes(),
                limit,
                serializable: false,
            };
            let mut stream = client.scan(req).await?.into_inner();
            while let Some(chunk) = stream.message().await? {
                for kv in chunk.kvs {
                    out.write_all(&kv.key)?;
                    out.write_all(b"\t")?;
                    out.write_all(&kv.value)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        Command::Txn { file } => {
            let req = read_txn(&file)?;
            let resp = client.txn(convert::txn_request_to_proto(req)).await?.into_inner();
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
