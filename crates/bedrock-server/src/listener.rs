//! The accept loop shared by the client API and the peer (Raft) listener:
//! TCP with `TCP_NODELAY`, optional TLS, then hyper's automatic connection
//! builder (HTTP/1.1, or HTTP/2 on seeing its preface or ALPN `h2`)
//! serving an axum [`Router`], with graceful shutdown.
//!
//! `TCP_NODELAY` matters: without it, small responses written in two
//! pieces wait for the peer's delayed ACK (about 40 ms on Linux), which
//! shows up as a latency floor on scans and streamed responses.
//!
//! A TLS handshake that fails (plaintext on a TLS port, a client
//! certificate not signed by the trusted CA, a timeout) is logged at
//! `warn` with the peer address and the listener's name, and the
//! connection is closed before any request is read.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting and waits for the open connections to finish their in-flight
/// requests (idle keep-alive connections are closed at once). `name`
/// (`client` or `peer`) labels the log lines.
///
/// # Errors
/// None today: failed accepts (e.g. too many open files) are logged and
/// retried after a short pause; the result is kept for future use.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(listener = name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(err) = stream.set_nodelay(true) {
                debug!(listener = name, %peer, error = %err, "cannot set TCP_NODELAY");
            }
            let service = TowerToHyperService::new(app);
            let builder = Builder::new(TokioExecutor::new());
            let result = match tls {
                None => watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service)).await,
                Some(acceptor) => {
                    let Some(stream) = handshake(&acceptor, stream, peer, name).await else { return };
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service)).await
                }
            };
            if let Err(err) = result {
                debug!(listener = name, %peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    name: &'static str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            warn!(listener = name, %peer, error = %err, "TLS handshake failed; connection refused");
            None
        }
        Err(_) => {
            warn!(listener = name, %peer, timeout = ?TLS_HANDSHAKE_TIMEOUT, "TLS handshake timed out");
            None
        }
    }
}
