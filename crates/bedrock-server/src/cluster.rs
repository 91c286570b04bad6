//! Cluster mode: starting a Raft member (`--initial-cluster` or `--join`),
//! the `bedrock.v1.Cluster` admin service on the client port, and the
//! `bedrock member ...` and `bedrock status` commands.
//!
//! The cluster id is derived from the initial cluster (see
//! `bedrock_raft::Members::cluster_id`) and stored in `CLUSTER_ID` in the
//! data directory; a joining node learns it from the endpoint it joins
//! through. Peers present it on every call.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bedrock_proto::v1 as pb;
use bedrock_raft::grpc::{GrpcOptions, GrpcTransport, PeerService};
use bedrock_raft::{Member, MemberChange, Members, Node, NodeConfig, NodeStatus, Replica};
use pb::cluster_client::ClusterClient;
use pb::cluster_server::{Cluster, ClusterServer};
use tonic::{Request, Response, Status};

use crate::cli::{MemberCommand, ServeArgs};
use crate::client::Access;
use crate::error::ApiError;
use crate::{listener, tls};

/// A running cluster member: the Raft node and its peer server task.
#[derive(Debug)]
pub struct ClusterMember {
    /// The node.
    pub node: Node,
    /// The peer gRPC server on the Raft address.
    pub peer_server: tokio::task::JoinHandle<()>,
    /// Send (or drop) to stop the peer server gracefully.
    pub stop_peer_server: tokio::sync::oneshot::Sender<()>,
}

/// Starts the Raft node of `args` and its peer server; returns the node
/// and the replica the client API serves through.
///
/// # Errors
/// Bad flags, an unreachable `--join` endpoint, storage errors, or a Raft
/// address that cannot be bound.
pub async fn start(args: &ServeArgs, lsm: bedrock_txn::Options) -> anyhow::Result<(ClusterMember, Replica)> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("create {}", args.data_dir.display()))?;
    let id_file = args.data_dir.join("CLUSTER_ID");
    let saved: Option<u64> = std::fs::read_to_string(&id_file).ok().and_then(|s| s.trim().parse().ok());
    let mut cfg = NodeConfig::new(args.id, &args.data_dir);
    cfg.raft_addr = args.raft_addr.to_string();
    cfg.client_addr = args.client_addr.to_string();
    cfg.lsm = lsm;
    cfg.compact_entries = args.snapshot_entries.unwrap_or(cfg.compact_entries);
    cfg.catch_up_entries = args.snapshot_catchup_entries.unwrap_or(cfg.catch_up_entries);
    if let Some(initial) = &args.initial_cluster {
        let members = Members::parse_initial_cluster(initial).map_err(|e| anyhow::anyhow!("--initial-cluster: {e}"))?;
        cfg.cluster_id = members.cluster_id();
        cfg.initial_cluster = Some(members);
    } else if let Some(endpoint) = &args.join {
        (cfg.cluster_id, cfg.join_peers) = match saved {
            None => join(endpoint, args).await?,
            // Restarted: never add itself again (it may have been removed
            // meanwhile); the addresses matter only if no snapshot arrived
            // before the restart.
            Some(id) => match member_list(endpoint, args).await {
                Ok(list) => (id, members_of(&list)),
                Err(e) => {
                    tracing::warn!(endpoint, error = %format!("{e:#}"), "cannot list the members to join");
                    (id, Members::default())
                }
            },
        };
    }
    if saved != Some(cfg.cluster_id) {
        write_synced(&id_file, &cfg.cluster_id.to_string())?;
    }
    // Peer mutual TLS: the listener requires a certificate signed by the
    // peer CA, and this node presents its own to the others.
    let (peer_acceptor, peer_client_tls) = match args.peer_tls() {
        None => (None, None),
        Some(files) => {
            let acceptor = tls::acceptor(&files, true).context("peer TLS")?;
            let ca = files.trusted_ca.as_deref().context("--peer-trusted-ca-file is required with --peer-cert-file")?;
            let client = tls::client_config(ca, Some((&files.cert, &files.key))).context("peer TLS")?;
            (Some(acceptor), Some(client))
        }
    };
    let listener = tokio::net::TcpListener::bind(args.raft_addr)
        .await
        .with_context(|| format!("cannot listen on the raft address {}", args.raft_addr))?;
    let runtime = tokio::runtime::Handle::current();
    let cfg_for_node = cfg.clone();
    let options = GrpcOptions { tls: peer_client_tls.clone(), ..GrpcOptions::default() };
    let node = tokio::task::spawn_blocking(move || {
        Node::start(cfg_for_node, move |h| GrpcTransport::new(h, runtime, options))
    })
    .await??;
    let routes = tonic::service::Routes::new(PeerService::new(node.handle()).into_server()).prepare();
    let (stop_peer_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let peer_server = tokio::spawn(async move {
        let app = routes.into_axum_router();
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = listener::serve(listener, peer_acceptor, app, "peer", shutdown).await {
            tracing::error!(error = %e, "peer server failed");
        }
    });
    tracing::info!(
        id = args.id,
        raft_addr = %args.raft_addr,
        peer_tls = peer_client_tls.is_some(),
        cluster_id = format!("{:#x}", cfg.cluster_id),
        "raft node started"
    );
    let replica = Replica::with_peer_tls(node.handle(), peer_client_tls);
    Ok((ClusterMember { node, peer_server, stop_peer_server }, replica))
}

/// Asks the cluster at `endpoint` to add this node as a learner (unless
/// it is a member already); returns the cluster id and the members'
/// addresses (the node answers the leader there until its snapshot
/// arrives).
async fn join(endpoint: &str, args: &ServeArgs) -> anyhow::Result<(u64, Members)> {
    let access = join_access(args)?;
    let mut client = connect(&[endpoint.to_string()], &access).await?;
    let mut list =
        client.member_list(access.request(pb::MemberListRequest {})).await.context("member list")?.into_inner();
    if !list.members.iter().any(|m| m.id == args.id) {
        list = client
            .member_add(access.request(pb::MemberAddRequest {
                id: args.id,
                raft_addr: args.raft_addr.to_string(),
                client_addr: args.client_addr.to_string(),
            }))
            .await
            .with_context(|| format!("adding node {} through {endpoint}", args.id))?
            .into_inner();
        tracing::info!(id = args.id, endpoint, "added to the cluster as a learner");
    }
    Ok((list.cluster_id, members_of(&list)))
}

async fn member_list(endpoint: &str, args: &ServeArgs) -> anyhow::Result<pb::MemberListResponse> {
    let access = join_access(args)?;
    let mut client = connect(&[endpoint.to_string()], &access).await?;
    Ok(client.member_list(access.request(pb::MemberListRequest {})).await.context("member list")?.into_inner())
}

fn members_of(list: &pb::MemberListResponse) -> Members {
    let member = |m: &pb::ClusterMember| Member { raft_addr: m.raft_addr.clone(), client_addr: m.client_addr.clone() };
    Members(list.members.iter().map(|m| (m.id, member(m))).collect())
}

/// How a joining node reaches the cluster's client API: with the cluster's
/// client TLS settings when this node has them (`--cert-file` means the
/// cluster speaks TLS; `--trusted-ca-file` verifies it, and the node's
/// certificate doubles as its client certificate), and the first token of
/// `--auth-token-file`.
fn join_access(args: &ServeArgs) -> anyhow::Result<Access> {
    let tls = match (&args.cert_file, &args.key_file) {
        (Some(cert), Some(key)) => {
            let ca = args.trusted_ca_file.as_deref().context("--join over TLS needs --trusted-ca-file")?;
            Some(tls::client_config(ca, Some((cert, key)))?)
        }
        _ => None,
    };
    let token = args.auth_token_file.as_deref().map(crate::client::first_token).transpose()?;
    Ok(Access { tls, token })
}

fn write_synced(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The `bedrock.v1.Cluster` service.
#[derive(Debug, Clone)]
pub struct ClusterService {
    replica: Replica,
}

impl ClusterService {
    /// The service of `replica`'s node.
    pub fn new(replica: Replica) -> ClusterService {
        ClusterService { replica }
    }

    /// The tonic server.
    pub fn into_server(self) -> ClusterServer<ClusterService> {
        ClusterServer::new(self)
    }

    fn list(&self) -> pb::MemberListResponse {
        let node = self.replica.node();
        let s = node.status();
        pb::MemberListResponse {
            members: s
                .members
                .0
                .iter()
                .map(|(id, m)| pb::ClusterMember {
                    id: *id,
                    raft_addr: m.raft_addr.clone(),
                    client_addr: m.client_addr.clone(),
                    learner: s.learners.contains(id),
                })
                .collect(),
            leader: s.leader,
            cluster_id: node.cluster_id(),
        }
    }

    async fn change(&self, change: MemberChange) -> Result<Response<pb::MemberListResponse>, Status> {
        self.replica.change_membership(change.clone()).await.map_err(|e| Status::from(ApiError::from(e)))?;
        // Applied on the leader; a follower answers once it has applied the
        // change too (bounded), so the list it returns shows it.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !shows(&self.replica.node().status(), &change) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Response::new(self.list()))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, _: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(self.list()))
    }

    async fn member_add(&self, req: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        let r = req.into_inner();
        if r.id == 0 || r.raft_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument("expected an id >= 1 and a raft address IP:PORT"));
        }
        if self.replica.node().members().0.contains_key(&r.id) {
            return Err(Status::already_exists(format!("node {} is already a member", r.id)));
        }
        let member = Member { raft_addr: r.raft_addr, client_addr: r.client_addr };
        self.change(MemberChange::AddLearner { id: r.id, member }).await
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberIdRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        self.change(MemberChange::Promote { id: req.into_inner().id }).await
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberIdRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        self.change(MemberChange::Remove { id: req.into_inner().id }).await
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::MemberIdRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let to = req.into_inner().id;
        self.replica.transfer_leader(to).await.map_err(|e| Status::from(ApiError::from(e)))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.replica.node().leader() != Some(to) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Response::new(self.list()))
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let members = self
            .replica
            .cluster_status()
            .await
            .into_iter()
            .map(|(id, s)| match s {
                Ok(s) => {
                    // The member's own answer knows its addresses; this
                    // node's list may not (initial members' client addresses
                    // are learned only from themselves).
                    let known = self.replica.node().members();
                    let own = s.members.0.get(&id).filter(|m| !m.client_addr.is_empty());
                    status_to_pb(&s, own.or_else(|| known.0.get(&id)))
                }
                Err(e) => pb::MemberStatus { id, error: e.to_string(), ..Default::default() },
            })
            .collect();
        Ok(Response::new(pb::StatusResponse { members }))
    }
}

/// Whether status `s` reflects `change`.
fn shows(s: &NodeStatus, change: &MemberChange) -> bool {
    match change {
        MemberChange::AddLearner { id, .. } => s.learners.contains(id) || s.voters.contains(id),
        MemberChange::Promote { id } => s.voters.contains(id),
        MemberChange::Remove { id } => !s.voters.contains(id) && !s.learners.contains(id),
    }
}

fn status_to_pb(s: &NodeStatus, member: Option<&Member>) -> pb::MemberStatus {
    pb::MemberStatus {
        id: s.id,
        role: s.role.clone(),
        term: s.term,
        leader: s.leader,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        first_index: s.first_index,
        last_index: s.last_index,
        raft_addr: member.map(|m| m.raft_addr.clone()).unwrap_or_default(),
        client_addr: member.map(|m| m.client_addr.clone()).unwrap_or_default(),
        error: String::new(),
    }
}

async fn connect(endpoints: &[String], access: &Access) -> anyhow::Result<ClusterClient<tonic::transport::Channel>> {
    let mut failures = Vec::new();
    for e in endpoints {
        match access.endpoint(e)?.connect().await {
            Ok(ch) => return Ok(ClusterClient::new(ch)),
            Err(err) => failures.push(format!("{e}: {err}")),
        }
    }
    bail!("cannot connect to any endpoint: {}", failures.join("; "))
}

/// Runs `bedrock member ...`.
///
/// # Errors
/// Connection failures and server errors.
pub async fn run_member(endpoints: &[String], access: &Access, cmd: MemberCommand) -> anyhow::Result<ExitCode> {
    let mut client = connect(endpoints, access).await?;
    let list = match cmd {
        MemberCommand::List => client.member_list(access.request(pb::MemberListRequest {})).await,
        MemberCommand::Add { id, raft_addr, client_addr } => {
            client.member_add(access.request(pb::MemberAddRequest { id, raft_addr, client_addr })).await
        }
        MemberCommand::Promote { id } => client.member_promote(access.request(pb::MemberIdRequest { id })).await,
        MemberCommand::Remove { id } => client.member_remove(access.request(pb::MemberIdRequest { id })).await,
        MemberCommand::TransferLeader { id } => {
            client.transfer_leader(access.request(pb::MemberIdRequest { id })).await
        }
    }
    .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
    .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<4} {:<8} {:<22} {:<22} LEADER", "ID", "ROLE", "RAFT ADDRESS", "CLIENT ADDRESS")?;
    for m in list.members {
        let role = if m.learner { "learner" } else { "voter" };
        let leader = if m.id == list.leader { "*" } else { "" };
        writeln!(out, "{:<4} {:<8} {:<22} {:<22} {leader}", m.id, role, m.raft_addr, m.client_addr)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `bedrock status`.
///
/// # Errors
/// Connection failures and server errors.
pub async fn run_status(endpoints: &[String], access: &Access, output: &str) -> anyhow::Result<ExitCode> {
    let mut client = connect(endpoints, access).await?;
    let status = client
        .status(access.request(pb::StatusRequest {}))
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if output == "json" {
        for m in &status.members {
            let v = serde_json::json!({
                "id": m.id, "role": m.role, "term": m.term, "leader": m.leader,
                "commit_index": m.commit_index, "applied_index": m.applied_index,
                "first_index": m.first_index, "last_index": m.last_index,
                "raft_addr": m.raft_addr, "client_addr": m.client_addr,
                "error": if m.error.is_empty() { None } else { Some(&m.error) },
            });
            writeln!(out, "{v}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<4} {:<13} {:>6} {:>6} {:>10} {:>10} {:<22} ERROR",
        "ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "CLIENT ADDRESS"
    )?;
    for m in &status.members {
        writeln!(
            out,
            "{:<4} {:<13} {:>6} {:>6} {:>10} {:>10} {:<22} {}",
            m.id, m.role, m.term, m.leader, m.commit_index, m.applied_index, m.client_addr, m.error
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
