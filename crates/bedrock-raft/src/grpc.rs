//! The tonic transport between nodes and the peer service
//! (`bedrock.peer.v1.Peer`, on the Raft port).
//!
//! - Raft messages: one bidirectional stream per peer, fed by a queue of
//!   up to [`PEER_QUEUE`] messages; queued messages are sent in batches of
//!   up to [`MAX_BATCH_MESSAGES`]. A broken stream is reopened with
//!   exponential backoff (100 ms doubling to 2 s); messages queued while
//!   the peer is down are dropped and the peer reported unreachable (Raft
//!   retransmits).
//! - Snapshots: a separate client stream per snapshot, files sent in
//!   chunks of [`GrpcOptions::snapshot_chunk_bytes`] and paced to
//!   [`GrpcOptions::snapshot_rate_bytes_per_sec`]; the receiver writes
//!   each chunk to disk as it arrives, so neither side holds more than a
//!   chunk or two in memory whatever the snapshot's size.
//! - Every call carries an [`Origin`]: traffic for another cluster id or
//!   from a node that is not a member is refused with `PERMISSION_DENIED`
//!   and logged.
//! - [`PeerClients`] forwards requests from a follower to the leader.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bedrock_proto::peer::v1 as pb;
use parking_lot::Mutex;
use pb::peer_client::PeerClient;
use pb::peer_server::{Peer, PeerServer};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::command::{self, Command};
use crate::node::{is_snapshot, MemberChange, NodeHandle, NodeStatus};
use crate::state::CommandResult;
use crate::transport::Transport;
use crate::{Error, Member, Result};

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 4096;
/// Most Raft messages in one batch on the wire.
pub const MAX_BATCH_MESSAGES: usize = 256;
/// Largest gRPC message accepted or sent on the peer port, in bytes.
pub const MAX_PEER_MESSAGE_BYTES: usize = 128 << 20;
/// How long connecting to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Options of the gRPC transport.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// Snapshot chunk size in bytes. Default: 1 MiB.
    pub snapshot_chunk_bytes: usize,
    /// Snapshot sending rate limit in bytes per second (0: unlimited).
    /// Default: 100 MiB/s.
    pub snapshot_rate_bytes_per_sec: u64,
    /// TLS toward peers (`https://` to their Raft addresses): the peer CA
    /// and this node's client certificate, for mutual TLS. Default: none
    /// (cleartext HTTP/2).
    pub tls: Option<ClientTlsConfig>,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        GrpcOptions { snapshot_chunk_bytes: 1 << 20, snapshot_rate_bytes_per_sec: 100 << 20, tls: None }
    }
}

/// The peer service of a node, to be served on its Raft address.
#[derive(Debug, Clone)]
pub struct PeerService {
    node: NodeHandle,
}

impl PeerService {
    /// The service for `node`.
    pub fn new(node: NodeHandle) -> PeerService {
        PeerService { node }
    }

    /// The tonic server wrapping it, with peer-sized message limits.
    pub fn into_server(self) -> PeerServer<PeerService> {
        PeerServer::new(self)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
    }

    fn check(&self, origin: Option<&pb::Origin>, what: &str) -> Result<u64, Status> {
        let Some(origin) = origin else {
            tracing::warn!(what, "peer request without origin refused");
            return Err(Status::permission_denied("missing origin"));
        };
        if origin.cluster_id != self.node.cluster_id() {
            tracing::warn!(
                what,
                from = origin.from,
                cluster_id = origin.cluster_id,
                "request from another cluster refused"
            );
            return Err(Status::permission_denied(format!(
                "cluster id {:#x} does not match this cluster ({:#x})",
                origin.cluster_id,
                self.node.cluster_id()
            )));
        }
        let members = self.node.members();
        if !members.0.is_empty() && !members.0.contains_key(&origin.from) {
            tracing::warn!(what, from = origin.from, "request from a node that is not a member refused");
            return Err(Status::permission_denied(format!("node {} is not a member of this cluster", origin.from)));
        }
        Ok(origin.from)
    }
}

type AckStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Ack, Status>> + Send>>;

#[tonic::async_trait]
impl Peer for PeerService {
    type RaftStream = AckStream;

    async fn raft(&self, request: Request<Streaming<pb::RaftBatch>>) -> Result<Response<Self::RaftStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let service = self.clone();
        tokio::spawn(async move {
            let mut accepted = 0u64;
            while let Some(batch) = inbound.next().await {
                let batch = match batch {
                    Ok(b) => b,
                    Err(_) => break,
                };
                let from = match service.check(batch.origin.as_ref(), "raft") {
                    Ok(f) => f,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                for bytes in &batch.messages {
                    match Message::parse_from_bytes(bytes) {
                        Ok(m) if m.from == from && m.to == service.node.id() => service.node.step(m),
                        Ok(m) => {
                            tracing::warn!(from, msg_from = m.from, to = m.to, "misaddressed raft message dropped");
                        }
                        Err(e) => {
                            let _ =
                                tx.send(Err(Status::invalid_argument(format!("undecodable raft message: {e}")))).await;
                            return;
                        }
                    }
                    accepted += 1;
                }
                let _ = tx.try_send(Ok(pb::Ack { accepted }));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotAck>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let header = first.header.clone().ok_or_else(|| Status::invalid_argument("first chunk has no header"))?;
        let from = self.check(header.origin.as_ref(), "install_snapshot")?;
        let msg = Message::parse_from_bytes(&header.message)
            .map_err(|e| Status::invalid_argument(format!("undecodable snapshot message: {e}")))?;
        if !is_snapshot(&msg) || msg.from != from || msg.to != self.node.id() {
            return Err(Status::invalid_argument("the header is not a snapshot message for this node"));
        }
        let meta = msg.get_snapshot().get_metadata();
        let dir = self.node.state_machine().receive_dir(meta.index, meta.term);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let mut writer = ChunkWriter { dir: dir.clone(), current: None, bytes: 0 };
        writer.write(&first)?;
        while let Some(chunk) = inbound.next().await {
            writer.write(&chunk?)?;
        }
        writer.finish()?;
        std::fs::write(dir.join("COMPLETE"), b"").map_err(internal)?;
        crate::state::sync_dir(&dir).map_err(internal)?;
        tracing::info!(from, index = meta.index, term = meta.term, bytes = writer.bytes, "snapshot received");
        self.node.step(msg);
        Ok(Response::new(pb::SnapshotAck { bytes: writer.bytes }))
    }

    async fn forward(&self, request: Request<pb::ForwardRequest>) -> Result<Response<pb::ForwardResponse>, Status> {
        let req = request.into_inner();
        self.check(req.origin.as_ref(), "forward")?;
        use pb::forward_request::Request as R;
        let response = match req.request {
            Some(R::Commands(bytes)) => {
                let commands = command::decode(&bytes).map_err(Status::invalid_argument)?;
                match self.node.propose(commands).await {
                    Ok(results) => {
                        pb::ForwardResponse { results: results.into_iter().map(result_to_pb).collect(), failure: None }
                    }
                    Err(e) => failed(&e),
                }
            }
            Some(R::MemberChange(c)) => match self.node.change_membership(change_from_pb(&c)?).await {
                Ok(()) => pb::ForwardResponse::default(),
                Err(e) => failed(&e),
            },
            Some(R::TransferLeader(to)) => match self.node.transfer_leader(to).await {
                Ok(()) => pb::ForwardResponse::default(),
                Err(e) => failed(&e),
            },
            None => return Err(Status::invalid_argument("empty forward request")),
        };
        Ok(Response::new(response))
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::NodeStatus>, Status> {
        self.check(request.get_ref().origin.as_ref(), "status")?;
        Ok(Response::new(status_to_pb(&self.node)))
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// Writes received chunks to files, one at a time.
struct ChunkWriter {
    dir: std::path::PathBuf,
    current: Option<(String, std::fs::File, u64)>,
    bytes: u64,
}

impl ChunkWriter {
    fn write(&mut self, chunk: &pb::SnapshotChunk) -> Result<(), Status> {
        if chunk.file.is_empty() && chunk.data.is_empty() {
            return Ok(());
        }
        let name = &chunk.file;
        if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') || name == "COMPLETE" {
            return Err(Status::invalid_argument(format!("bad snapshot file name {name:?}")));
        }
        if self.current.as_ref().is_none_or(|(n, _, _)| n != name) {
            self.close()?;
            let path = self.dir.join(name);
            let file = std::fs::File::create(&path).map_err(internal)?;
            self.current = Some((name.clone(), file, 0));
        }
        let Some((_, file, written)) = self.current.as_mut() else { return Ok(()) };
        if chunk.offset != *written {
            return Err(Status::invalid_argument(format!(
                "chunk of {name} at offset {} expected {written}",
                chunk.offset
            )));
        }
        file.write_all(&chunk.data).map_err(internal)?;
        *written += chunk.data.len() as u64;
        self.bytes += chunk.data.len() as u64;
        if chunk.last_of_file {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), Status> {
        if let Some((_, file, _)) = self.current.take() {
            file.sync_all().map_err(internal)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Status> {
        self.close()
    }
}

fn failed(e: &Error) -> pb::ForwardResponse {
    pb::ForwardResponse { results: Vec::new(), failure: Some(failure_to_pb(e)) }
}

fn failure_to_pb(e: &Error) -> pb::Failure {
    use pb::failure::Kind;
    let (kind, key) = match e {
        Error::Unavailable(_) | Error::NotLeader { .. } | Error::Stopped => (Kind::Unavailable, Vec::new()),
        Error::OutcomeUnknown(_) => (Kind::OutcomeUnknown, Vec::new()),
        Error::Conflict { key } => (Kind::Conflict, key.clone()),
        Error::InvalidArgument(_) => (Kind::InvalidArgument, Vec::new()),
        _ => (Kind::Internal, Vec::new()),
    };
    pb::Failure { kind: kind as i32, message: e.to_string(), key }
}

fn failure_from_pb(f: pb::Failure) -> Error {
    use pb::failure::Kind;
    match Kind::try_from(f.kind).unwrap_or(Kind::Internal) {
        Kind::Unavailable => Error::Unavailable(f.message),
        Kind::OutcomeUnknown => Error::OutcomeUnknown(f.message),
        Kind::Conflict => Error::Conflict { key: f.key },
        Kind::InvalidArgument => Error::InvalidArgument(f.message),
        Kind::Internal => Error::Transport(f.message),
    }
}

fn result_to_pb(r: CommandResult) -> pb::CommandResult {
    match r {
        Ok(revision) => pb::CommandResult { revision, failure: None },
        Err(e) => pb::CommandResult { revision: 0, failure: Some(failure_to_pb(&e)) },
    }
}

fn change_to_pb(c: &MemberChange) -> pb::MemberChange {
    use pb::member_change::Kind;
    match c {
        MemberChange::AddLearner { id, member } => pb::MemberChange {
            kind: Kind::AddLearner as i32,
            id: *id,
            raft_addr: member.raft_addr.clone(),
            client_addr: member.client_addr.clone(),
        },
        MemberChange::Promote { id } => pb::MemberChange { kind: Kind::Promote as i32, id: *id, ..Default::default() },
        MemberChange::Remove { id } => pb::MemberChange { kind: Kind::Remove as i32, id: *id, ..Default::default() },
    }
}

fn change_from_pb(c: &pb::MemberChange) -> Result<MemberChange, Status> {
    use pb::member_change::Kind;
    Ok(match Kind::try_from(c.kind).map_err(|_| Status::invalid_argument("unknown member change kind"))? {
        Kind::AddLearner => MemberChange::AddLearner {
            id: c.id,
            member: Member { raft_addr: c.raft_addr.clone(), client_addr: c.client_addr.clone() },
        },
        Kind::Promote => MemberChange::Promote { id: c.id },
        Kind::Remove => MemberChange::Remove { id: c.id },
    })
}

/// A node's status as the peer protocol carries it.
pub fn status_to_pb(node: &NodeHandle) -> pb::NodeStatus {
    let s = node.status();
    let (raft_addr, client_addr) = node.addresses();
    pb::NodeStatus {
        id: s.id,
        role: s.role.clone(),
        term: s.term,
        leader: s.leader,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        first_index: s.first_index,
        last_index: s.last_index,
        members: members_to_pb(&s),
        client_addr: client_addr.to_string(),
        raft_addr: raft_addr.to_string(),
        pending_proposals: s.pending_proposals,
        snapshots_sent: s.snapshots_sent,
        snapshots_installed: s.snapshots_installed,
    }
}

fn members_to_pb(s: &NodeStatus) -> Vec<pb::Member> {
    s.members
        .0
        .iter()
        .map(|(id, m)| pb::Member {
            id: *id,
            raft_addr: m.raft_addr.clone(),
            client_addr: m.client_addr.clone(),
            learner: s.learners.contains(id),
        })
        .collect()
}

/// Converts a peer status message back.
pub fn status_from_pb(p: pb::NodeStatus) -> NodeStatus {
    let mut members = crate::Members::default();
    let mut voters = Vec::new();
    let mut learners = Vec::new();
    for m in p.members {
        members.0.insert(m.id, Member { raft_addr: m.raft_addr, client_addr: m.client_addr });
        if m.learner {
            learners.push(m.id);
        } else {
            voters.push(m.id);
        }
    }
    // The node's own client address, which its member list may lack.
    if let Some(me) = members.0.get_mut(&p.id) {
        if !p.client_addr.is_empty() {
            me.client_addr.clone_from(&p.client_addr);
        }
    }
    NodeStatus {
        id: p.id,
        role: p.role,
        term: p.term,
        leader: p.leader,
        commit_index: p.commit_index,
        applied_index: p.applied_index,
        first_index: p.first_index,
        last_index: p.last_index,
        voters,
        learners,
        members,
        pending_proposals: p.pending_proposals,
        snapshots_sent: p.snapshots_sent,
        snapshots_installed: p.snapshots_installed,
        removed: false,
    }
}

/// The gRPC [`Transport`] of a node. Needs a tokio runtime (`runtime`).
#[derive(Debug)]
pub struct GrpcTransport {
    node: NodeHandle,
    runtime: tokio::runtime::Handle,
    options: GrpcOptions,
    peers: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
}

impl GrpcTransport {
    /// A transport for `node`, running its tasks on `runtime`.
    pub fn new(node: NodeHandle, runtime: tokio::runtime::Handle, options: GrpcOptions) -> Arc<GrpcTransport> {
        Arc::new(GrpcTransport { node, runtime, options, peers: Mutex::new(HashMap::new()) })
    }

    fn queue(&self, to: u64) -> mpsc::Sender<Message> {
        let mut peers = self.peers.lock();
        if let Some(tx) = peers.get(&to).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        peers.insert(to, tx.clone());
        self.runtime.spawn(peer_loop(self.node.clone(), to, rx, self.options.tls.clone()));
        tx
    }
}

impl Transport for GrpcTransport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            if is_snapshot(&m) {
                let node = self.node.clone();
                let options = self.options.clone();
                self.runtime.spawn(async move {
                    let index = m.get_snapshot().get_metadata().index;
                    match send_snapshot(&node, m, options).await {
                        Ok(bytes) => {
                            tracing::info!(to, index, bytes, "snapshot sent");
                            node.report_snapshot(to, true);
                        }
                        Err(e) => {
                            tracing::warn!(to, index, error = %e, "snapshot send failed");
                            node.report_snapshot(to, false);
                        }
                    }
                });
                continue;
            }
            if self.queue(to).try_send(m).is_err() {
                self.node.report_unreachable(to);
            }
        }
    }
}

fn origin(node: &NodeHandle) -> Option<pb::Origin> {
    Some(pb::Origin { cluster_id: node.cluster_id(), from: node.id() })
}

async fn connect(node: &NodeHandle, to: u64, tls: Option<&ClientTlsConfig>) -> Result<PeerClient<Channel>> {
    let addr = node
        .members()
        .0
        .get(&to)
        .map(|m| m.raft_addr.clone())
        .ok_or_else(|| Error::Transport(format!("no address for node {to}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| Error::Transport(format!("bad address {addr}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| Error::Transport(format!("TLS for {addr}: {e}")))?;
    }
    let channel =
        endpoint.connect().await.map_err(|e| Error::Transport(format!("connect to node {to} at {addr}: {e}")))?;
    Ok(PeerClient::new(channel)
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES))
}

/// Keeps a stream open to `to` and sends queued messages in batches.
async fn peer_loop(node: NodeHandle, to: u64, mut rx: mpsc::Receiver<Message>, tls: Option<ClientTlsConfig>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if node.is_stopped() {
            return;
        }
        let mut client = match connect(&node, to, tls.as_ref()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(to, error = %e, "peer unreachable");
                node.report_unreachable(to);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                // Drop what queued up meanwhile; Raft will resend.
                while rx.try_recv().is_ok() {}
                continue;
            }
        };
        let (btx, brx) = mpsc::channel::<pb::RaftBatch>(64);
        let (dead_tx, mut dead_rx) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn(async move {
            let reason = match client.raft(ReceiverStream::new(brx)).await {
                Ok(resp) => {
                    let mut acks = resp.into_inner();
                    loop {
                        match acks.next().await {
                            Some(Ok(_)) => {}
                            Some(Err(s)) => break format!("peer ended the stream: {s}"),
                            None => break "stream closed".to_string(),
                        }
                    }
                }
                Err(s) => format!("cannot open stream: {s}"),
            };
            let _ = dead_tx.send(reason);
        });
        let connected_at = Instant::now();
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => return },
                reason = &mut dead_rx => {
                    tracing::debug!(to, reason = reason.unwrap_or_default(), "peer stream broke");
                    break;
                }
            };
            let mut messages = Vec::with_capacity(8);
            messages.push(first.write_to_bytes().unwrap_or_default());
            while messages.len() < MAX_BATCH_MESSAGES {
                match rx.try_recv() {
                    Ok(m) => messages.push(m.write_to_bytes().unwrap_or_default()),
                    Err(_) => break,
                }
            }
            if btx.send(pb::RaftBatch { origin: origin(&node), messages }).await.is_err() {
                break;
            }
        }
        node.report_unreachable(to);
        if connected_at.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Streams the checkpoint of a `MsgSnapshot` to its recipient; returns
/// the bytes sent.
async fn send_snapshot(node: &NodeHandle, msg: Message, options: GrpcOptions) -> Result<u64> {
    let to = msg.to;
    let index = msg.get_snapshot().get_metadata().index;
    let dir = node
        .state_machine()
        .snapshot_dir(index)
        .ok_or_else(|| Error::Transport(format!("checkpoint {index} is gone")))?;
    let mut client = connect(node, to, options.tls.as_ref()).await?;
    let header = pb::SnapshotHeader {
        origin: origin(node),
        message: msg.write_to_bytes().map_err(|e| Error::Transport(e.to_string()))?,
    };
    let (tx, rx) = mpsc::channel::<pb::SnapshotChunk>(2);
    let producer = tokio::spawn(produce_chunks(dir, header, tx, options));
    let ack = client.install_snapshot(ReceiverStream::new(rx)).await;
    let sent = producer.await.map_err(|e| Error::Transport(e.to_string()))??;
    let ack = ack.map_err(|s| Error::Transport(format!("snapshot refused: {s}")))?;
    if ack.get_ref().bytes != sent {
        return Err(Error::Transport(format!("peer received {} of {sent} bytes", ack.get_ref().bytes)));
    }
    Ok(sent)
}

async fn produce_chunks(
    dir: std::path::PathBuf,
    header: pb::SnapshotHeader,
    tx: mpsc::Sender<pb::SnapshotChunk>,
    options: GrpcOptions,
) -> Result<u64> {
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io("read_dir", &dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let closed = || Error::Transport("the peer closed the snapshot stream".into());
    tx.send(pb::SnapshotChunk { header: Some(header), ..Default::default() }).await.map_err(|_| closed())?;
    let start = Instant::now();
    let mut sent = 0u64;
    let chunk_bytes = options.snapshot_chunk_bytes.max(4096);
    for name in names {
        let path = dir.join(&name);
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| Error::io("open", &path, e))?;
        let mut offset = 0u64;
        loop {
            let data = read_chunk(&mut file, chunk_bytes, &path).await?;
            let last = data.len() < chunk_bytes;
            let len = data.len() as u64;
            tx.send(pb::SnapshotChunk { header: None, file: name.clone(), offset, data, last_of_file: last })
                .await
                .map_err(|_| closed())?;
            offset += len;
            sent += len;
            pace(start, sent, options.snapshot_rate_bytes_per_sec).await;
            if last {
                break;
            }
        }
    }
    Ok(sent)
}

async fn read_chunk(file: &mut tokio::fs::File, n: usize, path: &Path) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0; n];
    let mut filled = 0;
    while filled < n {
        let got = file.read(&mut buf[filled..]).await.map_err(|e| Error::io("read", path, e))?;
        if got == 0 {
            break;
        }
        filled += got;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Sleeps so that `sent` bytes since `start` stay within `rate` bytes/s.
async fn pace(start: Instant, sent: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
    let elapsed = start.elapsed();
    if due > elapsed {
        tokio::time::sleep(due - elapsed).await;
    }
}

/// Clients of the other nodes' peer services, for forwarding requests to
/// the leader and collecting status.
#[derive(Debug, Clone)]
pub struct PeerClients {
    node: NodeHandle,
    clients: Arc<Mutex<HashMap<u64, PeerClient<Channel>>>>,
    tls: Option<Arc<ClientTlsConfig>>,
}

impl PeerClients {
    /// Clients on behalf of `node`.
    pub fn new(node: NodeHandle) -> PeerClients {
        PeerClients::with_tls(node, None)
    }

    /// Clients on behalf of `node`, over TLS when `tls` is given (see
    /// [`GrpcOptions::tls`]).
    pub fn with_tls(node: NodeHandle, tls: Option<ClientTlsConfig>) -> PeerClients {
        PeerClients { node, clients: Arc::default(), tls: tls.map(Arc::new) }
    }

    async fn client(&self, to: u64) -> Result<PeerClient<Channel>> {
        if let Some(c) = self.clients.lock().get(&to) {
            return Ok(c.clone());
        }
        // A failed connect means nothing was sent: retryable.
        let c = connect(&self.node, to, self.tls.as_deref()).await.map_err(|e| Error::Unavailable(e.to_string()))?;
        self.clients.lock().insert(to, c.clone());
        Ok(c)
    }

    async fn forward(&self, to: u64, request: pb::forward_request::Request) -> Result<pb::ForwardResponse> {
        let mut client = self.client(to).await?;
        let req = pb::ForwardRequest { origin: origin(&self.node), request: Some(request) };
        match client.forward(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => {
                self.clients.lock().remove(&to);
                if never_sent(&s) {
                    // E.g. the leader just died: retryable, the caller
                    // waits for the next one.
                    Err(Error::Unavailable(format!("cannot reach node {to}: {s}")))
                } else {
                    Err(Error::OutcomeUnknown(format!("forwarding to node {to} failed: {s}")))
                }
            }
        }
    }

    /// Proposes `commands` on leader `to`.
    ///
    /// # Errors
    /// As for [`NodeHandle::propose`]; [`Error::Unavailable`] if the leader
    /// cannot be reached; [`Error::OutcomeUnknown`] if the call broke after
    /// it was sent.
    pub async fn propose(&self, to: u64, commands: &[Command]) -> Result<Vec<CommandResult>> {
        let resp = self.forward(to, pb::forward_request::Request::Commands(command::encode(commands))).await?;
        if let Some(f) = resp.failure {
            return Err(failure_from_pb(f));
        }
        if resp.results.len() != commands.len() {
            return Err(Error::OutcomeUnknown(format!(
                "leader returned {} results for {} commands",
                resp.results.len(),
                commands.len()
            )));
        }
        Ok(resp
            .results
            .into_iter()
            .map(|r| match r.failure {
                Some(f) => Err(failure_from_pb(f)),
                None => Ok(r.revision),
            })
            .collect())
    }

    /// Runs a membership change on leader `to`.
    ///
    /// # Errors
    /// As for [`NodeHandle::change_membership`].
    pub async fn change_membership(&self, to: u64, change: &MemberChange) -> Result<()> {
        let resp = self.forward(to, pb::forward_request::Request::MemberChange(change_to_pb(change))).await?;
        resp.failure.map_or(Ok(()), |f| Err(failure_from_pb(f)))
    }

    /// Asks leader `to` to hand leadership to `target`.
    ///
    /// # Errors
    /// As for [`NodeHandle::transfer_leader`].
    pub async fn transfer_leader(&self, to: u64, target: u64) -> Result<()> {
        let resp = self.forward(to, pb::forward_request::Request::TransferLeader(target)).await?;
        resp.failure.map_or(Ok(()), |f| Err(failure_from_pb(f)))
    }

    /// The status of node `to`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if it cannot be reached.
    pub async fn status(&self, to: u64) -> Result<NodeStatus> {
        let mut client = self.client(to).await?;
        let req = pb::StatusRequest { origin: origin(&self.node) };
        match tokio::time::timeout(Duration::from_secs(2), client.status(req)).await {
            Ok(Ok(r)) => Ok(status_from_pb(r.into_inner())),
            Ok(Err(s)) => {
                self.clients.lock().remove(&to);
                Err(Error::Unavailable(s.message().to_string()))
            }
            Err(_) => {
                self.clients.lock().remove(&to);
                Err(Error::Unavailable("status timed out".into()))
            }
        }
    }
}

/// Whether a failed call certainly never reached the peer: tonic makes up
/// the status of a failed (re)connection with a `ConnectError` among its
/// sources, so no byte of the request left this process.
fn never_sent(status: &Status) -> bool {
    std::iter::successors(std::error::Error::source(status), |e| e.source()).any(|e| e.is::<tonic::ConnectError>())
}
