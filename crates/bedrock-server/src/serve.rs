//! `bedrock serve`: opens the database and serves the client API, HTTP/1.1
//! and gRPC on one port, until SIGINT or SIGTERM.
//!
//! One axum `Router` holds the HTTP routes ([`crate::http`]) merged with
//! the tonic routes of the `bedrock.v1.KV` service (`/bedrock.v1.KV/*`), and
//! `axum::serve` runs it on one listener: hyper's automatic connection
//! builder speaks HTTP/1.1 (curl) and, on seeing the HTTP/2 preface,
//! cleartext HTTP/2 (gRPC clients), as etcd does.
//!
//! Shutdown: the first signal stops accepting connections and lets
//! in-flight requests finish (up to [`DRAIN_TIMEOUT`], or until a second
//! signal); then the memtables are flushed and the process exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use bedrock_txn::{Db, Options};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

use crate::auth::Tokens;
use crate::cli::ServeArgs;
use crate::error::ApiError;
use crate::grpc::KvService;
use crate::http;
use crate::listener;
use crate::store::{Limits, Store};

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened.
    #[error("cannot open the database in {}", dir.display())]
    Open {
        /// The data directory.
        dir: PathBuf,
        /// The storage error.
        source: bedrock_txn::Error,
    },
    /// The client address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// Installing the signal handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The server stopped on an I/O error.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    /// The cluster member could not start (bad flags, `--join` failed,
    /// storage, raft address in use).
    #[error("cannot start the cluster member: {0}")]
    Cluster(String),
    /// A TLS file is unreadable or the TLS flags do not fit together.
    #[error("TLS: {0}")]
    Security(crate::tls::TlsError),
    /// The bearer token file is unreadable or empty.
    #[error("authentication: {0}")]
    Auth(String),
    /// The final flush failed; the data is still safe in the write-ahead log.
    #[error("flush on shutdown failed: {0}")]
    Flush(ApiError),
}

/// The client API of `store`: HTTP routes and gRPC services on one
/// router, with request metrics and, when `tokens` is given, bearer-token
/// authentication (see [`crate::auth`]).
pub fn app(store: Store, tokens: Option<Tokens>) -> Router {
    let mut routes = tonic::service::Routes::new(KvService::new(store.clone()).into_server());
    let (health, health_service) = tonic_health::server::health_reporter();
    routes = routes.add_service(health_service);
    if let Some(replica) = store.replica() {
        routes = routes.add_service(crate::cluster::ClusterService::new(replica.clone()).into_server());
    }
    let scratch = store.scratch_dir().to_path_buf();
    routes = routes.add_service(crate::backup::MaintenanceService::new(store.clone(), scratch).into_server());
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(report_health(health, store.replica().cloned()));
        }
        Err(_) => warn!("no tokio runtime: the gRPC health service reports nothing"),
    }
    match reflection() {
        Ok((v1, v1alpha)) => routes = routes.add_service(v1).add_service(v1alpha),
        Err(err) => warn!(error = %err, "gRPC reflection unavailable"),
    }
    let grpc = routes.prepare().into_axum_router();
    crate::metrics::install();
    let metrics =
        Router::new().route("/metrics", axum::routing::get(crate::metrics::serve_metrics)).with_state(store.clone());
    // tonic's router brings a gRPC `Unimplemented` fallback; ours replaces
    // it and answers plain HTTP requests with a readable 404.
    let router = http::router(store).merge(metrics).merge(grpc).fallback(http::not_found);
    // Layers run outside in: metrics see every request, refused ones too.
    let router = match tokens {
        Some(tokens) => router.layer(axum::middleware::from_fn_with_state(tokens, crate::auth::require_token)),
        None => router,
    };
    router.layer(axum::middleware::from_fn(crate::metrics::track))
}

/// How often the gRPC health status is refreshed in cluster mode.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// Keeps the gRPC health service up to date: `""` and `bedrock.v1.KV` are
/// SERVING on a single node; in a cluster they (and `bedrock.v1.Cluster`)
/// are SERVING while the node knows a leader and has not been removed, and
/// NOT_SERVING otherwise (requests would fail with `UNAVAILABLE`). Ends
/// when the health service is dropped.
async fn report_health(health: tonic_health::server::HealthReporter, replica: Option<bedrock_raft::Replica>) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    let Some(replica) = replica else {
        health.set_service_status("", Serving).await;
        health.set_service_status("bedrock.v1.KV", Serving).await;
        return;
    };
    let mut last = None;
    loop {
        let status = replica.node().status();
        let serving = if status.leader != 0 && !status.removed { Serving } else { NotServing };
        if last != Some(serving) {
            for service in ["", "bedrock.v1.KV", "bedrock.v1.Cluster"] {
                health.set_service_status(service, serving).await;
            }
            last = Some(serving);
        }
        if replica.node().is_stopped() {
            return;
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

/// The reflection services (v1 and v1alpha, which grpcurl and older tools
/// still ask for) over the crate's descriptors.
fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(bedrock_proto::FILE_DESCRIPTOR_SET)
            .with_service_name("bedrock.v1.KV")
            .with_service_name("bedrock.v1.Cluster")
            .with_service_name("bedrock.v1.Maintenance")
            .with_service_name("grpc.health.v1.Health")
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// Runs `bedrock serve` until a shutdown signal; returns after the flush.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    // Security settings first, so a bad file fails before anything opens.
    let acceptor = match args.client_tls() {
        Some(files) => Some(crate::tls::acceptor(&files, args.client_cert_auth).map_err(ServeError::Security)?),
        None => None,
    };
    let tokens = match &args.auth_token_file {
        Some(path) => Some(Tokens::load(path).map_err(ServeError::Auth)?),
        None => None,
    };
    info!(id = args.id, data_dir = %args.data_dir.display(), sync = ?args.sync, "opening database");
    let mut options = Options::with_dir(&args.data_dir);
    options.wal.sync = args.sync;
    // Bound first, so a cluster member advertises the address it really
    // serves on (with `--client-addr 127.0.0.1:0` the port is chosen here).
    let listener = TcpListener::bind(args.client_addr)
        .await
        .map_err(|source| ServeError::Bind { addr: args.client_addr, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: args.client_addr, source })?;
    let mut args = args;
    args.client_addr = addr;
    let clustered = args.initial_cluster.is_some() || args.join.is_some();
    let (store, member) = if clustered {
        let limits = Limits { max_key_bytes: options.max_key_bytes };
        let (member, replica) =
            crate::cluster::start(&args, options).await.map_err(|e| ServeError::Cluster(format!("{e:#}")))?;
        (Store::replicated(replica, limits), Some(member))
    } else {
        (open(options).await?, None)
    };
    let store = store.with_scratch_dir(args.data_dir.join("backups"));
    // Handlers are installed before the address is announced, so a signal
    // sent as soon as the line is read is already a graceful shutdown.
    let mut signals = Signals::new().map_err(ServeError::Signals)?;
    if member.is_none() {
        info!("single-node mode (no --initial-cluster or --join): the raft address is not used");
    }
    info!(
        %addr,
        tls = acceptor.is_some(),
        client_cert_auth = args.client_cert_auth,
        token_auth = tokens.is_some(),
        "serving client API (HTTP/1.1 and gRPC)"
    );
    println!("bedrock: serving client API on {addr}");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        // A dropped sender also means stop.
        let _ = stop_rx.await;
    };
    let server = listener::serve(listener, acceptor, app(store.clone(), tokens), "client", shutdown);
    let mut server = tokio::spawn(server);

    tokio::select! {
        // Without a signal the server only stops on an error.
        result = &mut server => return server_result(result),
        name = signals.next() => info!(signal = name, "shutting down: draining in-flight requests"),
    }
    let _ = stop_tx.send(());
    tokio::select! {
        result = &mut server => server_result(result)?,
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            warn!(timeout = ?DRAIN_TIMEOUT, "requests still in flight after the drain timeout");
            server.abort();
        }
        name = signals.next() => {
            warn!(signal = name, "second signal: not waiting for in-flight requests");
            server.abort();
        }
    }
    if let Some(member) = member {
        info!("stopping the raft node");
        // Stop accepting peer connections; open peer streams never end on
        // their own, so they are not waited for.
        let _ = member.stop_peer_server.send(());
        member.peer_server.abort();
        let _ = tokio::task::spawn_blocking(move || member.node.stop()).await;
    }
    info!("flushing memtables");
    store.flush().await.map_err(ServeError::Flush)?;
    info!("shutdown complete");
    Ok(())
}

/// Opens the database on the blocking pool.
async fn open(options: Options) -> Result<Store, ServeError> {
    let dir = options.dir.clone();
    let limits = Limits { max_key_bytes: options.max_key_bytes };
    let opened = tokio::task::spawn_blocking(move || Db::open(options))
        .await
        .map_err(|join| ServeError::Serve(std::io::Error::other(join)))?;
    let db = opened.map_err(|source| ServeError::Open { dir, source })?;
    Ok(Store::new(db, limits))
}

fn server_result(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(ServeError::Serve(err)),
        Err(join) => Err(ServeError::Serve(std::io::Error::other(join))),
    }
}

/// SIGINT and SIGTERM, installed once.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    /// Waits for the next signal and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
