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
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::cli::{AccessArgs, Command};
use crate::convert;
use crate::json::TxnJson;
use crate::store::MAX_REQUEST_BYTES;

/// How long connecting to one endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take (until its response headers arrive).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected gRPC client.
pub type Client = KvClient<Channel>;

/// How the client commands reach servers: TLS and a bearer token, from
/// the global `--cacert --cert --key --token-file` flags.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// TLS settings; `None` is cleartext.
    pub tls: Option<ClientTlsConfig>,
    /// Bearer token sent with every request.
    pub token: Option<String>,
}

impl Access {
    /// Reads the files the flags name.
    ///
    /// # Errors
    /// An unreadable or malformed certificate, key or token file.
    pub fn from_args(args: &AccessArgs) -> anyhow::Result<Access> {
        let tls = match &args.cacert {
            None => None,
            Some(ca) => {
                let identity = args.cert.as_deref().zip(args.key.as_deref());
                Some(crate::tls::client_config(ca, identity)?)
            }
        };
        let token = args.token_file.as_deref().map(first_token).transpose()?;
        Ok(Access { tls, token })
    }

    /// The tonic endpoint for `given` (`host:port`, `http://` or
    /// `https://`), with the CLI's timeouts and, if configured, TLS.
    ///
    /// # Errors
    /// A malformed endpoint, or a scheme that does not match the TLS setting.
    pub fn endpoint(&self, given: &str) -> anyhow::Result<Endpoint> {
        let given = given.trim();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let uri = match given.split_once("://") {
            None => format!("{scheme}://{given}"),
            Some((s, _)) if s.eq_ignore_ascii_case(scheme) => given.to_string(),
            Some((s, _)) => bail!("endpoint {given}: scheme {s} does not match the TLS setting (use {scheme}://)"),
        };
        let mut endpoint = Endpoint::from_shared(uri)?.connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        Ok(endpoint)
    }

    /// Wraps `message` in a request carrying the bearer token, if any.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            if let Ok(value) = format!("Bearer {token}").parse() {
                request.metadata_mut().insert("authorization", value);
            }
        }
        request
    }

    /// The options of the CLI's failover client: the timeouts above, the
    /// server's message size limit, TLS and the token.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_message_bytes: MAX_REQUEST_BYTES,
            tls: self.tls.clone(),
            bearer_token: self.token.clone(),
            ..ClientOptions::default()
        }
    }
}

/// The first token of a token file (one per line; blank lines and `#`
/// comments skipped).
///
/// # Errors
/// The file cannot be read or holds no token.
pub fn first_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("token file {}", path.display()))?;
    let token = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
    Ok(token.with_context(|| format!("token file {} holds no token", path.display()))?.to_string())
}

/// Connects to the first endpoint of `endpoints` that accepts a connection
/// and returns the bare generated client (no failover), as the benchmark
/// wants: it measures one server. TLS comes from `access`; the bearer
/// token is not sent (the benchmark measures servers without tokens).
pub async fn connect(endpoints: &[String], access: &Access) -> anyhow::Result<Client> {
    let mut failures = Vec::new();
    for endpoint in endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match connect_one(endpoint, access).await {
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

async fn connect_one(endpoint: &str, access: &Access) -> anyhow::Result<Channel> {
    Ok(access.endpoint(endpoint)?.connect().await?)
}

/// Runs one client command; the exit code is 1 for a missing key on `get`.
pub async fn run(endpoints: &[String], access: &Access, command: Command) -> anyhow::Result<ExitCode> {
    let mut client = bedrock_proto::Client::connect_with(endpoints.iter().cloned(), access.client_options()).await?;
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
        Command::Serve(_)
        | Command::Bench(_)
        | Command::Member(_)
        | Command::Status { .. }
        | Command::Backup { .. } => {
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
