//! Graceful shutdown: SIGTERM (and SIGINT) while clients are writing lets
//! the in-flight requests finish, flushes, and exits 0; everything
//! acknowledged is readable after a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bedrock_proto::v1 as pb;

use crate::common::{data_dir, http, Server};

async fn shutdown_under_load(signal: libc::c_int) {
    let (_tmp, dir) = data_dir();
    let mut server = Server::start(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut c = server.grpc().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("w{w}/{i:06}").into_bytes();
                let put = c.put(pb::PutRequest { key: key.clone(), value: key.clone() });
                match tokio::time::timeout(Duration::from_secs(10), put).await {
                    Ok(Ok(_)) => acked.push(key),
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::block_in_place(|| server.signal_and_wait(signal, Duration::from_secs(40)));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(status.code(), Some(0), "graceful exit; log:\n{}", server.log());
    let log = server.log();
    assert!(log.contains("shutdown complete"), "flush ran; log:\n{log}");

    let mut acked = Vec::new();
    for w in writers {
        acked.extend(tokio::time::timeout(Duration::from_secs(20), w).await.unwrap().unwrap());
    }
    assert!(acked.len() > 10, "writers made progress before the signal ({})", acked.len());

    let server = Server::start(&dir);
    let mut c = server.grpc().await;
    for key in &acked {
        let got = c.get(pb::GetRequest { key: key.clone(), serializable: false }).await.unwrap();
        assert_eq!(got.into_inner().kv.map(|kv| kv.value).as_ref(), Some(key), "acknowledged {key:?} readable");
    }
    assert_eq!(http(server.addr, "GET", "/health", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_flushes_and_exits_zero() {
    shutdown_under_load(libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_flushes_and_exits_zero() {
    shutdown_under_load(libc::SIGINT).await;
}
