//! `bedrock backup DIR` against a live server (single node and a one-member
//! cluster): the backup holds every write acknowledged before it, none
//! after, and `bedrock serve --data-dir DIR` serves it.

use std::process::Command;

use crate::common::{data_dir, Server, BIN};

async fn backup_and_restore(extra: &[String]) {
    let (tmp, dir) = data_dir();
    let server = Server::start_with(&dir, extra);
    let mut c = server.grpc().await;
    for i in 0..2_000u32 {
        let req = bedrock_proto::v1::PutRequest { key: format!("k{i:05}").into_bytes(), value: vec![b'v'; 64] };
        c.put(req).await.expect("put");
    }
    let del = bedrock_proto::v1::DeleteRequest { key: b"k00007".to_vec() };
    c.delete(del).await.expect("delete");

    let backup = tmp.path().join("backup");
    let out = Command::new(BIN).args(["--endpoints", &server.endpoint(), "backup"]).arg(&backup).output().expect("run");
    assert!(out.status.success(), "backup failed: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("backup of revision "), "{said}");

    // Written after the backup: must not be in it.
    let late = bedrock_proto::v1::PutRequest { key: b"late".to_vec(), value: b"x".to_vec() };
    c.put(late).await.expect("put after backup");
    // The server cleaned up its checkpoint.
    let scratch = dir.join("backups");
    assert!(scratch.read_dir().map_or(true, |mut d| d.next().is_none()), "checkpoint left in {}", scratch.display());

    let again =
        Command::new(BIN).args(["--endpoints", &server.endpoint(), "backup"]).arg(&backup).output().expect("run");
    assert!(!again.status.success(), "a backup must not overwrite an existing directory");
    drop(server);

    let restored = Server::start(&backup);
    let mut r = restored.grpc().await;
    let scan = bedrock_proto::v1::ScanRequest::default();
    let mut stream = r.scan(scan).await.expect("scan").into_inner();
    let mut keys = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        keys.extend(chunk.kvs.into_iter().map(|kv| String::from_utf8(kv.key).expect("utf-8")));
    }
    let expected: Vec<String> = (0..2_000u32).filter(|i| *i != 7).map(|i| format!("k{i:05}")).collect();
    assert_eq!(keys, expected, "the restored store differs from the store at backup time");
}

#[tokio::test]
async fn single_node_backup_restores_exactly() {
    backup_and_restore(&[]).await;
}

#[tokio::test]
async fn cluster_member_backup_restores_as_a_single_node() {
    // Both ports chosen up front, so the client listener cannot take the raft port.
    let ports = crate::cluster_harness::free_ports(2);
    let (raft, client) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let args = [
        "--raft-addr".into(),
        raft.clone(),
        "--initial-cluster".into(),
        format!("1={raft}"),
        "--client-addr".into(),
        client,
    ];
    backup_and_restore(&args).await;
}
