//! A Rust client of the `bedrock.v1.KV` service that fails over between
//! the endpoints of a cluster.
//!
//! [`Client`] wraps the generated [`KvClient`] with typed calls (`get`,
//! `put`, `delete`, a collected `scan`, `txn`) and one retry rule, written
//! down in [`Client`]'s documentation: a request is sent again, to the next
//! endpoint, only when it certainly was not applied, or when it is a read.
//! It does not pool connections, balance load or retry a request on the same
//! endpoint; it holds one connection, to the endpoint that answered last.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::v1::kv_client::KvClient;
use crate::v1::{request_op, DeleteRequest, GetRequest, PutRequest, ScanRequest, TxnRequest, TxnResponse};

/// How a [`Client`] connects and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long establishing the connection to one endpoint may take.
    /// Default: 3 s. Minimum: anything above zero.
    pub connect_timeout: Duration,
    /// How long one attempt of a request may take, until the response
    /// headers arrive (for `Scan`, the chunks that follow are not timed). A
    /// write that times out has an unknown outcome: see [`Client`].
    /// Default: 30 s. Minimum: anything above zero.
    pub request_timeout: Duration,
    /// Largest gRPC message sent or received, in bytes. The server's own
    /// limit is 64 MiB, room for the largest key and value (8 KiB and
    /// 8 MiB by default) and for transactions carrying several.
    /// Default: 64 MiB. Minimum: 1 byte.
    pub max_message_bytes: usize,
    /// Pause before the k-th retry of a call is `k × retry_backoff` (each
    /// endpoint is tried at most once per call, so a call sleeps at most
    /// `n(n-1)/2 × retry_backoff` over `n` endpoints). Zero retries at
    /// once. Default: 50 ms.
    pub retry_backoff: Duration,
    /// TLS for every endpoint (the server's `--cert-file`): the CA that
    /// signed the server certificates and, for a server started with
    /// `--client-cert-auth`, this client's certificate and key. With TLS,
    /// `host:port` endpoints mean `https://host:port`, and `http://`
    /// endpoints are refused. Default: none (cleartext HTTP/2).
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Token sent as `authorization: Bearer <token>` with every request,
    /// for a server started with `--auth-token-file`. Default: none.
    pub bearer_token: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 64 << 20,
            retry_backoff: Duration::from_millis(50),
            tls: None,
            bearer_token: None,
        }
    }
}

impl ClientOptions {
    /// Checks the documented minimums.
    ///
    /// # Errors
    /// [`ClientError::InvalidOptions`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |option, reason| Err(ClientError::InvalidOptions { option, reason });
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be above zero");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be above zero");
        }
        if self.max_message_bytes == 0 {
            return bad("max_message_bytes", "must be at least 1");
        }
        if let Some(token) = &self.bearer_token {
            if token.is_empty() || MetadataValue::<Ascii>::try_from(format!("Bearer {token}")).is_err() {
                return bad("bearer_token", "must be non-empty visible ASCII");
            }
        }
        Ok(())
    }
}

/// Why a [`Client`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint list was empty (or held only blanks).
    #[error("no endpoint given")]
    NoEndpoints,
    /// An endpoint is not `host:port` nor `http://host:port`.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A [`ClientOptions`] field is out of range.
    #[error("invalid client option `{option}`: {reason}")]
    InvalidOptions {
        /// The field.
        option: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// No endpoint accepted a connection. Nothing was sent anywhere.
    #[error("cannot connect to any endpoint ({message})")]
    Connect {
        /// The endpoints tried, comma-separated, in the order tried.
        endpoint: String,
        /// Each endpoint's failure, as `endpoint: reason`, joined by `; `.
        message: String,
    },
    /// Every endpoint was tried and none served the request: each answered
    /// `UNAVAILABLE`, could not be reached, or (reads only) failed in
    /// transport. A write that ends here was applied nowhere.
    #[error("no endpoint could serve the request ({message})")]
    Unavailable {
        /// Each endpoint's failure, as `endpoint: reason`, joined by `; `.
        message: String,
    },
    /// The write may or may not have been applied: the server answered
    /// `UNKNOWN`, or the connection failed or the request timed out after
    /// the request may have reached the server. Never retried by the
    /// client; read the key to learn the outcome.
    #[error("outcome unknown: the request may or may not have been applied ({message})")]
    OutcomeUnknown {
        /// The endpoint and what happened.
        message: String,
    },
    /// The server answered with an error status that retrying elsewhere
    /// cannot fix: `INVALID_ARGUMENT`, `ABORTED` (transaction conflict,
    /// nothing applied), `INTERNAL`, `OUT_OF_RANGE`, and so on.
    #[error("server error {:?}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
}

/// The result of [`Client`] calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A `bedrock.v1.KV` client over a list of endpoints, with failover.
///
/// # Failover
///
/// A call tries the endpoints round robin, starting with the one that
/// served the previous call, each **at most once per call**, pausing
/// `k × retry_backoff` before the k-th retry. What happens after a failure
/// depends on whether the request can have been applied:
///
/// | failure | reads (`get*`, `scan`) | writes (`put`, `delete`, `txn`) |
/// |---|---|---|
/// | cannot connect, or the transport failed before the request was sent | next endpoint | next endpoint |
/// | server status `UNAVAILABLE` | next endpoint | next endpoint |
/// | transport failed after the request may have been sent (connection broke mid-request, [`ClientOptions::request_timeout`] expired) | next endpoint | [`ClientError::OutcomeUnknown`] |
/// | server status `UNKNOWN` | [`ClientError::OutcomeUnknown`] | [`ClientError::OutcomeUnknown`] |
/// | any other status | [`ClientError::Status`] | [`ClientError::Status`] |
///
/// A server answers `UNAVAILABLE` only when the request was certainly not
/// applied (no leader, node shutting down), so sending it again elsewhere
/// is safe for every request. `UNKNOWN` means the server itself cannot tell
/// whether the write was applied; sending it again could apply it twice,
/// so the client never does. A broken connection or a timeout leaves a
/// write in the same doubt, so only reads move on after one. A `Txn` whose
/// branches hold only `Get` operations is a read.
///
/// When every endpoint has been tried the call fails with
/// [`ClientError::Connect`] if none could be reached, else with
/// [`ClientError::Unavailable`]; both list each endpoint's failure.
///
/// ```no_run
/// # async fn demo() -> Result<(), bedrock_proto::ClientError> {
/// use bedrock_proto::Client;
///
/// let mut client = Client::connect(["10.0.0.1:8080", "http://10.0.0.2:8080"]).await?;
/// let revision = client.put("name", "raft").await?;
/// assert_eq!(client.get("name").await?, Some(b"raft".to_vec()));
/// # let _ = revision;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<Target>,
    options: ClientOptions,
    /// The connection, and the index in `endpoints` it goes to.
    conn: (usize, KvClient<Channel>),
    /// Where the next call starts.
    next: usize,
    /// The `authorization` header value, if any.
    auth: Auth,
}

/// Adds the bearer token (if any) to each request.
#[derive(Debug, Clone, Default)]
struct Auth(Option<MetadataValue<Ascii>>);

impl Auth {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        request
    }
}

/// One endpoint: the normalised URI (used in messages) and how to reach it.
#[derive(Debug, Clone)]
struct Target {
    uri: String,
    endpoint: Endpoint,
}

/// Whether sending a request again after a transport failure is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl Client {
    /// Connects with [`ClientOptions::default`]; see [`Client::connect_with`].
    ///
    /// # Errors
    /// As for [`Client::connect_with`].
    pub async fn connect(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Result<Client> {
        Client::connect_with(endpoints, ClientOptions::default()).await
    }

    /// Checks every endpoint (`host:port` or `http://host:port`; blank ones
    /// are skipped), then connects to the first that accepts a connection.
    /// Later calls fail over to the others as [`Client`] describes.
    ///
    /// # Errors
    /// [`ClientError::InvalidOptions`], [`ClientError::NoEndpoints`],
    /// [`ClientError::InvalidEndpoint`] (before connecting anywhere), or
    /// [`ClientError::Connect`] when no endpoint accepts a connection.
    pub async fn connect_with(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        options: ClientOptions,
    ) -> Result<Client> {
        options.validate()?;
        let endpoints = endpoints
            .into_iter()
            .map(Into::into)
            .filter(|e| !e.trim().is_empty())
            .map(|e| target(&e, &options))
            .collect::<Result<Vec<_>>>()?;
        // Checked by `validate`.
        let auth = Auth(options.bearer_token.as_ref().and_then(|t| format!("Bearer {t}").try_into().ok()));
        let mut failures = Failures::default();
        for (index, target) in endpoints.iter().enumerate() {
            match connect_one(target, &options).await {
                Ok(client) => return Ok(Client { conn: (index, client), next: index, endpoints, options, auth }),
                Err(reason) => failures.unreachable(&target.uri, reason),
            }
        }
        Err(failures.into_error())
    }

    /// Reads `key`; `None` if it does not exist.
    ///
    /// # Errors
    /// See [`Client`]; `INVALID_ARGUMENT` for an empty or oversized key.
    pub async fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        Ok(self.get_with_revision(key).await?.0)
    }

    /// Reads `key` and returns its value (`None`: missing) with the
    /// revision of the snapshot it was read from.
    ///
    /// # Errors
    /// As for [`Client::get`].
    pub async fn get_with_revision(&mut self, key: impl Into<Vec<u8>>) -> Result<(Option<Vec<u8>>, u64)> {
        self.read_one(GetRequest { key: key.into(), serializable: false }).await
    }

    /// Reads `key` allowing a stale answer (`GetRequest.serializable`): in
    /// a replicated cluster a follower may answer from its own state.
    ///
    /// # Errors
    /// As for [`Client::get`].
    pub async fn get_serializable(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        Ok(self.read_one(GetRequest { key: key.into(), serializable: true }).await?.0)
    }

    async fn read_one(&mut self, req: GetRequest) -> Result<(Option<Vec<u8>>, u64)> {
        let auth = self.auth.clone();
        let resp = self
            .call(Kind::Read, move |mut c| {
                let req = req.clone();
                let auth = auth.clone();
                async move { c.get(auth.request(req)).await }
            })
            .await?;
        Ok((resp.kv.map(|kv| kv.value), resp.revision))
    }

    /// Writes `key` = `value` durably; returns the revision it committed at.
    ///
    /// # Errors
    /// See [`Client`]; `INVALID_ARGUMENT` for an empty or oversized key or
    /// an oversized value.
    pub async fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<u64> {
        let req = PutRequest { key: key.into(), value: value.into() };
        let auth = self.auth.clone();
        let resp = self
            .call(Kind::Write, move |mut c| {
                let req = req.clone();
                let auth = auth.clone();
                async move { c.put(auth.request(req)).await }
            })
            .await?;
        Ok(resp.revision)
    }

    /// Deletes `key` durably (a missing key is no error); returns the
    /// revision of the delete.
    ///
    /// # Errors
    /// As for [`Client::put`].
    pub async fn delete(&mut self, key: impl Into<Vec<u8>>) -> Result<u64> {
        let req = DeleteRequest { key: key.into() };
        let auth = self.auth.clone();
        let resp = self
            .call(Kind::Write, move |mut c| {
                let req = req.clone();
                let auth = auth.clone();
                async move { c.delete(auth.request(req)).await }
            })
            .await?;
        Ok(resp.revision)
    }

    /// Reads the key-values of `[start, end)` in ascending key order, at
    /// most `limit` of them (0: no limit), all from one snapshot. An empty
    /// `start` means the smallest key and `None` means no upper bound. The
    /// whole result is collected in memory; use [`Client::inner`] to
    /// process the stream chunk by chunk. A failure in the middle of the
    /// stream restarts the scan from `start` on the next endpoint.
    ///
    /// # Errors
    /// See [`Client`].
    pub async fn scan(
        &mut self,
        start: impl Into<Vec<u8>>,
        end: Option<Vec<u8>>,
        limit: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let req = ScanRequest { start: start.into(), end: end.unwrap_or_default(), limit, serializable: false };
        let auth = self.auth.clone();
        self.call(Kind::Read, move |mut c| {
            let req = req.clone();
            let auth = auth.clone();
            async move {
                let mut stream = c.scan(auth.request(req)).await?.into_inner();
                let mut kvs = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    kvs.extend(chunk.kvs.into_iter().map(|kv| (kv.key, kv.value)));
                }
                Ok(tonic::Response::new(kvs))
            }
        })
        .await
    }

    /// Runs a transaction. It is retried like a write unless both branches
    /// hold only `Get` operations.
    ///
    /// # Errors
    /// See [`Client`]; `ABORTED` when concurrent transactions kept
    /// conflicting with it (nothing was applied; running it again is safe).
    pub async fn txn(&mut self, req: TxnRequest) -> Result<TxnResponse> {
        let read_only =
            req.success.iter().chain(&req.failure).all(|op| matches!(op.request, Some(request_op::Request::Get(_))));
        let kind = if read_only { Kind::Read } else { Kind::Write };
        let auth = self.auth.clone();
        self.call(kind, move |mut c| {
            let req = req.clone();
            let auth = auth.clone();
            async move { c.txn(auth.request(req)).await }
        })
        .await
    }

    /// The generated client of the endpoint that served the last call, for
    /// everything this type does not wrap. Calls made through it do not
    /// fail over.
    pub fn inner(&mut self) -> &mut KvClient<Channel> {
        &mut self.conn.1
    }

    /// The endpoints, normalised to `http://host:port`, in the order given.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|t| t.uri.as_str())
    }

    /// Sends a request through `attempt`, failing over as [`Client`]
    /// describes. `attempt` gets a handle to one endpoint per try.
    async fn call<T, F, Fut>(&mut self, kind: Kind, mut attempt: F) -> Result<T>
    where
        F: FnMut(KvClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let n = self.endpoints.len();
        let start = self.next;
        let mut failures = Failures::default();
        for k in 0..n {
            let index = (start + k) % n;
            if k > 0 {
                let k = u32::try_from(k).unwrap_or(u32::MAX);
                tokio::time::sleep(self.options.retry_backoff.saturating_mul(k)).await;
            }
            // A failure below means this endpoint is skipped by the next call too.
            self.next = (index + 1) % n;
            let uri = self.endpoints[index].uri.clone();
            let client = match self.client_for(index).await {
                Ok(client) => client,
                Err(reason) => {
                    failures.unreachable(&uri, reason);
                    continue;
                }
            };
            let status = match attempt(client).await {
                Ok(resp) => {
                    self.next = index;
                    return Ok(resp.into_inner());
                }
                Err(status) => status,
            };
            match (classify(&status), kind) {
                (Failure::Unreachable, _) => failures.unreachable(&uri, describe(&status)),
                (Failure::Unavailable, _) | (Failure::MaybeSent, Kind::Read) => {
                    failures.unavailable(&uri, describe(&status));
                }
                (Failure::MaybeSent, Kind::Write) => {
                    return Err(ClientError::OutcomeUnknown { message: format!("{uri}: {}", describe(&status)) });
                }
                (Failure::Unknown, _) => {
                    self.next = index;
                    return Err(ClientError::OutcomeUnknown { message: format!("{uri}: {}", status.message()) });
                }
                (Failure::Final, _) => {
                    self.next = index;
                    return Err(ClientError::Status(status));
                }
            }
        }
        Err(failures.into_error())
    }

    /// A handle to endpoint `index`, connecting first if the current
    /// connection goes elsewhere.
    async fn client_for(&mut self, index: usize) -> std::result::Result<KvClient<Channel>, String> {
        if self.conn.0 != index {
            let client = connect_one(&self.endpoints[index], &self.options).await?;
            self.conn = (index, client);
        }
        Ok(self.conn.1.clone())
    }
}

/// Connects eagerly to one endpoint; the error is a readable reason.
async fn connect_one(target: &Target, options: &ClientOptions) -> std::result::Result<KvClient<Channel>, String> {
    let channel = target.endpoint.connect().await.map_err(|e| chain(&e))?;
    Ok(KvClient::new(channel)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes))
}

/// Parses one endpoint and applies the timeouts of `options`.
fn target(given: &str, options: &ClientOptions) -> Result<Target> {
    let invalid = |reason: String| ClientError::InvalidEndpoint { endpoint: given.to_string(), reason };
    let uri = normalise(given, options.tls.is_some()).map_err(|r| invalid(r.to_string()))?;
    let mut endpoint = Endpoint::from_shared(uri.clone()).map_err(|e| invalid(chain(&e)))?;
    if let Some(tls) = &options.tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| invalid(chain(&e)))?;
    }
    let parsed = endpoint.uri();
    if parsed.host().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_string()));
    }
    if parsed.port_u16().is_none() {
        return Err(invalid("no port number (expected host:port)".to_string()));
    }
    if parsed.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(invalid("an endpoint has no path".to_string()));
    }
    let endpoint = endpoint.connect_timeout(options.connect_timeout).timeout(options.request_timeout);
    Ok(Target { uri, endpoint })
}

/// Turns `host:port` into `http://host:port` (`https://` when `tls`);
/// keeps an explicit scheme when it matches: `http://` without TLS,
/// `https://` with it. Other schemes are refused.
fn normalise(endpoint: &str, tls: bool) -> std::result::Result<String, &'static str> {
    let endpoint = endpoint.trim();
    let default = if tls { "https" } else { "http" };
    let (scheme, rest) = match endpoint.split_once("://") {
        None => (default, endpoint),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(default) => (scheme, rest),
        Some((scheme, _)) if tls && scheme.eq_ignore_ascii_case("http") => {
            return Err("an http:// endpoint with TLS configured (use https:// or host:port)")
        }
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err("an https:// endpoint needs TLS options (a CA certificate)")
        }
        Some(_) => return Err("only http:// and https:// endpoints are supported"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err("no host");
    }
    Ok(format!("{scheme}://{rest}"))
}

/// What a failed attempt tells about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Certainly not applied: the connection could not be (re)established.
    Unreachable,
    /// Certainly not applied: the server said `UNAVAILABLE`.
    Unavailable,
    /// The transport failed after the request may have been sent.
    MaybeSent,
    /// The server said `UNKNOWN`.
    Unknown,
    /// Any other status from the server.
    Final,
}

/// Tells a server's answer from a local transport failure: tonic attaches
/// the underlying error as the source of a status it makes up itself (a
/// failed connection, a reset stream, an expired timeout), while a status
/// read from the server's `grpc-status` has no source.
fn classify(status: &Status) -> Failure {
    let Some(source) = StdError::source(status) else {
        return match status.code() {
            Code::Unavailable => Failure::Unavailable,
            Code::Unknown => Failure::Unknown,
            _ => Failure::Final,
        };
    };
    // A failed (re)connection means no byte of the request left this process.
    if causes(source).any(|e| e.is::<tonic::ConnectError>()) {
        Failure::Unreachable
    } else {
        Failure::MaybeSent
    }
}

/// `err` and its sources, outermost first.
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// `err` and its sources on one line, skipping repeated messages.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in causes(err) {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A status on one line: its code, message and (for local failures) cause.
fn describe(status: &Status) -> String {
    let mut text = status.message().to_string();
    if let Some(source) = StdError::source(status) {
        let cause = chain(source);
        if cause.contains(&text) {
            text = cause;
        } else if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    if text.is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {text}", status.code())
    }
}

/// The failures of one call, to report when every endpoint failed.
#[derive(Debug, Default)]
struct Failures {
    tried: Vec<String>,
    reasons: Vec<String>,
    /// Whether some endpoint was reached (so this is not a connect error).
    reached: bool,
}

impl Failures {
    fn unreachable(&mut self, uri: &str, reason: String) {
        self.tried.push(uri.to_string());
        self.reasons.push(format!("{uri}: {reason}"));
    }

    fn unavailable(&mut self, uri: &str, reason: String) {
        self.reached = true;
        self.unreachable(uri, reason);
    }

    fn into_error(self) -> ClientError {
        let message = self.reasons.join("; ");
        if self.tried.is_empty() {
            ClientError::NoEndpoints
        } else if self.reached {
            ClientError::Unavailable { message }
        } else {
            ClientError::Connect { endpoint: self.tried.join(","), message }
        }
    }
}

#[cfg(test)]
mod tests;
