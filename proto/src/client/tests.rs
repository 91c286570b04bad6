//! Tests of the failover rules against tiny in-process servers on
//! `127.0.0.1:0`, each answering every call with one canned behaviour and
//! counting the calls it received.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::Stream;
use tonic::{Request, Response};

use super::*;
use crate::v1::kv_server::{Kv, KvServer};
use crate::v1::{DeleteResponse, GetResponse, KeyValue, PutResponse, RequestOp, ScanResponse, TxnResponse};

/// How a fake server answers every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Succeeds; values and revisions are the server's `revision`.
    Ok,
    /// `UNAVAILABLE`: not applied.
    Unavailable,
    /// `UNKNOWN`: outcome unknown.
    Unknown,
    /// `INVALID_ARGUMENT`.
    Invalid,
    /// Never answers in time (sleeps a minute).
    Hang,
}

#[derive(Debug, Clone)]
struct Fake {
    behaviour: Behaviour,
    revision: u64,
    calls: Arc<AtomicUsize>,
}

impl Fake {
    async fn answer<T>(&self, ok: T) -> std::result::Result<Response<T>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Ok => Ok(Response::new(ok)),
            Behaviour::Unavailable => Err(Status::unavailable("no leader")),
            Behaviour::Unknown => Err(Status::unknown("commit outcome unknown")),
            Behaviour::Invalid => Err(Status::invalid_argument("key must not be empty")),
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Response::new(ok))
            }
        }
    }

    fn kv(&self, key: &str) -> KeyValue {
        KeyValue { key: key.into(), value: self.revision.to_string().into_bytes() }
    }
}

type ScanStream = Pin<Box<dyn Stream<Item = std::result::Result<ScanResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for Fake {
    async fn get(&self, req: Request<GetRequest>) -> std::result::Result<Response<GetResponse>, Status> {
        let key = String::from_utf8(req.into_inner().key).expect("UTF-8 key");
        self.answer(GetResponse { kv: Some(self.kv(&key)), revision: self.revision }).await
    }

    async fn put(&self, _: Request<PutRequest>) -> std::result::Result<Response<PutResponse>, Status> {
        self.answer(PutResponse { revision: self.revision }).await
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> std::result::Result<Response<DeleteResponse>, Status> {
        self.answer(DeleteResponse { revision: self.revision }).await
    }

    type ScanStream = ScanStream;

    async fn scan(&self, _: Request<ScanRequest>) -> std::result::Result<Response<ScanStream>, Status> {
        let revision = self.revision;
        let chunks = vec![
            Ok(ScanResponse { kvs: vec![self.kv("a"), self.kv("b")], revision }),
            Ok(ScanResponse { kvs: vec![self.kv("c")], revision }),
        ];
        let stream: ScanStream = Box::pin(tokio_stream::iter(chunks));
        self.answer(stream).await
    }

    async fn txn(&self, _: Request<TxnRequest>) -> std::result::Result<Response<TxnResponse>, Status> {
        self.answer(TxnResponse { succeeded: true, responses: vec![], revision: self.revision }).await
    }
}

/// A running fake server.
struct FakeServer {
    addr: std::net::SocketAddr,
    calls: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
}

impl FakeServer {
    async fn start(behaviour: Behaviour, revision: u64) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let calls = Arc::new(AtomicUsize::new(0));
        let fake = Fake { behaviour, revision, calls: calls.clone() };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder().add_service(KvServer::new(fake)).serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            async {
                let _ = stopped.await;
            },
        );
        FakeServer { addr, calls, stop: Some(stop), task: Some(tokio::spawn(server)) }
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Stops gracefully and waits until the listener and connections are closed.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

/// A server that accepts HTTP/2 connections and drops each one as soon as
/// the client has sent the headers of a request: the request reached the
/// server, but no answer ever comes back.
async fn start_breaker() -> String {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The connection preface, then frames of a 9-byte header
                // (length: 3, type: 1, flags: 1, stream: 4) and a payload.
                let mut preface = [0u8; 24];
                if socket.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let mut header = [0u8; 9];
                while socket.read_exact(&mut header).await.is_ok() {
                    // A 24-bit big-endian length (RFC 9113, section 4.1).
                    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
                    let mut payload = vec![0u8; len];
                    if socket.read_exact(&mut payload).await.is_err() || header[3] == 0x1 {
                        return; // HEADERS: a request was sent; drop the connection.
                    }
                }
            });
        }
    });
    addr.to_string()
}

/// Short timeouts and no backoff, so failures are quick.
fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        retry_backoff: Duration::from_millis(1),
        ..ClientOptions::default()
    }
}

async fn client(servers: &[&FakeServer]) -> Client {
    Client::connect_with(servers.iter().map(|s| s.endpoint()), options()).await.expect("connect")
}

/// An address nothing listens on (bound, then released).
async fn dead_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr").to_string()
}

fn put_op() -> RequestOp {
    RequestOp { request: Some(request_op::Request::Put(PutRequest { key: "k".into(), value: "v".into() })) }
}

fn get_op() -> RequestOp {
    RequestOp { request: Some(request_op::Request::Get(GetRequest { key: "k".into(), serializable: false })) }
}

#[test]
fn option_defaults_are_the_documented_ones() {
    let o = ClientOptions::default();
    assert_eq!(o.connect_timeout, Duration::from_secs(3));
    assert_eq!(o.request_timeout, Duration::from_secs(30));
    assert_eq!(o.max_message_bytes, 64 * 1024 * 1024);
    assert_eq!(o.retry_backoff, Duration::from_millis(50));
    assert!(o.validate().is_ok());
    let zero = ClientOptions { request_timeout: Duration::ZERO, ..ClientOptions::default() };
    assert!(matches!(zero.validate(), Err(ClientError::InvalidOptions { option: "request_timeout", .. })));
    let zero = ClientOptions { max_message_bytes: 0, ..ClientOptions::default() };
    assert!(matches!(zero.validate(), Err(ClientError::InvalidOptions { option: "max_message_bytes", .. })));
}

#[test]
fn endpoints_are_normalised_to_http_uris() {
    assert_eq!(normalise("127.0.0.1:8080", false), Ok("http://127.0.0.1:8080".to_string()));
    assert_eq!(normalise(" node-1:8080 ", false), Ok("http://node-1:8080".to_string()));
    assert_eq!(normalise("http://node-1:8080/", false), Ok("http://node-1:8080".to_string()));
    assert_eq!(normalise("HTTP://node-1:8080", false), Ok("HTTP://node-1:8080".to_string()));
    assert_eq!(normalise("[::1]:8080", false), Ok("http://[::1]:8080".to_string()));
    assert!(normalise("https://node-1:8080", false).is_err());
    assert_eq!(normalise("node-1:8080", true), Ok("https://node-1:8080".to_string()));
    assert_eq!(normalise("https://node-1:8080", true), Ok("https://node-1:8080".to_string()));
    assert!(normalise("http://node-1:8080", true).is_err());
    assert!(normalise("unix:///tmp/sock", false).is_err());
}

#[tokio::test]
async fn bad_endpoint_lists_are_rejected_before_connecting() {
    let none: [&str; 0] = [];
    assert!(matches!(Client::connect(none).await, Err(ClientError::NoEndpoints)));
    assert!(matches!(Client::connect(["", "  "]).await, Err(ClientError::NoEndpoints)));
    for bad in ["https://h:1", "http://", "h:1/some/path", "h:port", "h"] {
        match Client::connect(["127.0.0.1:1", bad]).await {
            Err(ClientError::InvalidEndpoint { endpoint, .. }) => assert_eq!(endpoint, bad),
            other => panic!("{bad}: expected InvalidEndpoint, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn connect_skips_endpoints_that_refuse() {
    let up = FakeServer::start(Behaviour::Ok, 1).await;
    let dead = dead_endpoint().await;
    let mut c = Client::connect_with([dead.clone(), up.endpoint()], options()).await.expect("connect");
    assert_eq!(c.put("k", "v").await.expect("put"), 1);
    assert_eq!(c.endpoints().collect::<Vec<_>>(), [format!("http://{dead}"), format!("http://{}", up.endpoint())]);

    let other = dead_endpoint().await;
    match Client::connect_with([dead.clone(), other.clone()], options()).await {
        Err(ClientError::Connect { endpoint, message }) => {
            assert_eq!(endpoint, format!("http://{dead},http://{other}"));
            assert!(message.contains(&dead) && message.contains(&other), "{message}");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[tokio::test]
async fn unavailable_fails_over_for_writes_and_reads() {
    let s1 = FakeServer::start(Behaviour::Unavailable, 1).await;
    let s2 = FakeServer::start(Behaviour::Ok, 2).await;
    let mut c = client(&[&s1, &s2]).await;
    assert_eq!(c.put("k", "v").await.expect("put fails over"), 2);
    assert_eq!((s1.calls(), s2.calls()), (1, 1));
    // The next call starts at the endpoint that answered.
    assert_eq!(c.get("k").await.expect("get"), Some(b"2".to_vec()));
    assert_eq!(c.delete("k").await.expect("delete"), 2);
    assert_eq!((s1.calls(), s2.calls()), (1, 3));
}

#[tokio::test]
async fn every_endpoint_is_tried_at_most_once_per_call() {
    let s1 = FakeServer::start(Behaviour::Unavailable, 1).await;
    let s2 = FakeServer::start(Behaviour::Unavailable, 2).await;
    let mut c = client(&[&s1, &s2]).await;
    match c.put("k", "v").await {
        Err(ClientError::Unavailable { message }) => {
            assert!(message.contains(&s1.endpoint()) && message.contains(&s2.endpoint()), "{message}");
            assert!(message.contains("no leader"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!((s1.calls(), s2.calls()), (1, 1));
}

#[tokio::test]
async fn unknown_outcome_is_never_retried() {
    let s1 = FakeServer::start(Behaviour::Unknown, 1).await;
    let s2 = FakeServer::start(Behaviour::Ok, 2).await;
    let mut c = client(&[&s1, &s2]).await;
    match c.put("k", "v").await {
        Err(ClientError::OutcomeUnknown { message }) => {
            assert!(message.contains("commit outcome unknown"), "{message}")
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    assert_eq!((s1.calls(), s2.calls()), (1, 0));
    let txn = TxnRequest { compare: vec![], success: vec![put_op()], failure: vec![] };
    assert!(matches!(c.txn(txn).await, Err(ClientError::OutcomeUnknown { .. })));
    assert!(matches!(c.get("k").await, Err(ClientError::OutcomeUnknown { .. })));
    assert_eq!((s1.calls(), s2.calls()), (3, 0));
}

#[tokio::test]
async fn other_statuses_are_returned_as_is() {
    let s1 = FakeServer::start(Behaviour::Invalid, 1).await;
    let s2 = FakeServer::start(Behaviour::Ok, 2).await;
    let mut c = client(&[&s1, &s2]).await;
    match c.put("", "v").await {
        Err(ClientError::Status(status)) => assert_eq!(status.code(), Code::InvalidArgument),
        other => panic!("expected Status, got {other:?}"),
    }
    let err = c.get("").await.expect_err("invalid");
    assert_eq!(err.to_string(), "server error InvalidArgument: key must not be empty");
    assert_eq!((s1.calls(), s2.calls()), (2, 0));
}

#[tokio::test]
async fn a_timeout_after_sending_fails_writes_and_retries_reads() {
    let slow = FakeServer::start(Behaviour::Hang, 1).await;
    let ok = FakeServer::start(Behaviour::Ok, 2).await;

    let mut c = client(&[&slow, &ok]).await;
    assert!(matches!(c.put("k", "v").await, Err(ClientError::OutcomeUnknown { .. })));
    assert_eq!((slow.calls(), ok.calls()), (1, 0));

    let mut c = client(&[&slow, &ok]).await;
    let txn = TxnRequest { compare: vec![], success: vec![get_op()], failure: vec![put_op()] };
    assert!(matches!(c.txn(txn).await, Err(ClientError::OutcomeUnknown { .. })));
    assert_eq!((slow.calls(), ok.calls()), (2, 0));

    // Reads, including a transaction of gets only, move on.
    let mut c = client(&[&slow, &ok]).await;
    assert_eq!(c.get_serializable("k").await.expect("get"), Some(b"2".to_vec()));
    assert_eq!((slow.calls(), ok.calls()), (3, 1));
    let mut c = client(&[&slow, &ok]).await;
    let txn = TxnRequest { compare: vec![], success: vec![get_op()], failure: vec![get_op()] };
    assert_eq!(c.txn(txn).await.expect("read-only txn").revision, 2);
    let mut c = client(&[&slow, &ok]).await;
    assert_eq!(c.scan("", None, 0).await.expect("scan").len(), 3);
    assert_eq!((slow.calls(), ok.calls()), (5, 3));
}

#[tokio::test]
async fn a_connection_broken_mid_request_fails_writes_and_retries_reads() {
    let breaker = start_breaker().await;
    let ok = FakeServer::start(Behaviour::Ok, 2).await;
    let endpoints = [breaker, ok.endpoint()];

    let mut c = Client::connect_with(endpoints.clone(), options()).await.expect("connect");
    match c.delete("k").await {
        // The request timeout is not what ended it.
        Err(ClientError::OutcomeUnknown { message }) => assert!(!message.contains("Timeout"), "{message}"),
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    assert_eq!(ok.calls(), 0);

    let mut c = Client::connect_with(endpoints, options()).await.expect("connect");
    assert_eq!(c.get("k").await.expect("get moves on"), Some(b"2".to_vec()));
    assert_eq!(ok.calls(), 1);
}

#[tokio::test]
async fn a_stopped_server_is_left_for_the_next_even_by_writes() {
    let mut s1 = FakeServer::start(Behaviour::Ok, 1).await;
    let s2 = FakeServer::start(Behaviour::Ok, 2).await;
    let mut c = client(&[&s1, &s2]).await;
    assert_eq!(c.put("k", "v").await.expect("put"), 1);
    s1.stop().await;
    // The connection to s1 is closed: reconnecting fails, so nothing was
    // sent and the write may go to s2.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.put("k", "v").await.expect("put after failover"), 2);
    assert_eq!((s1.calls(), s2.calls()), (1, 1));
}

#[tokio::test]
async fn scan_collects_every_chunk_in_order() {
    let s = FakeServer::start(Behaviour::Ok, 7).await;
    let mut c = client(&[&s]).await;
    let kvs = c.scan("a", Some(b"z".to_vec()), 0).await.expect("scan");
    let keys: Vec<_> = kvs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    assert_eq!(keys, [(&b"a"[..], &b"7"[..]), (b"b", b"7"), (b"c", b"7")]);
    assert_eq!(c.get_with_revision("k").await.expect("get"), (Some(b"7".to_vec()), 7));
    // The inner client reaches the same server.
    let resp = c.inner().get(GetRequest { key: "x".into(), serializable: false }).await.expect("inner get");
    assert_eq!(resp.into_inner().revision, 7);
}
