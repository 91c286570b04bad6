//! What the cluster tests share: a [`Cluster`] of real `bedrock serve`
//! processes on loopback (members by id, killed and restarted at will, new
//! members joining), leader detection through `MemberList`, per-node
//! status, full scans and bounded polling.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bedrock_proto::v1 as pb;
use pb::cluster_client::ClusterClient;
use tonic::transport::Channel;

use crate::common::{data_dir, Server, BIN};

/// Loopback ports that were free a moment ago (for the raft addresses,
/// which every member must know up front).
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    listeners.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

/// Real server processes forming one cluster. Node `id` is
/// `nodes[id - 1]` (`None` while it is down); its data directory is
/// `root/n<id>` and its stderr `root/n<id>.<test pid>.log`.
pub(crate) struct Cluster {
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    initial: String,
    raft_ports: Vec<u16>,
    /// Client API ports of the initial members, chosen with the raft ports
    /// so that no node's client listener can take another's raft port.
    client_ports: Vec<u16>,
    /// Extra `serve` arguments given to every node.
    extra: Vec<String>,
    pub(crate) nodes: Vec<Option<Server>>,
}

impl Cluster {
    /// Bootstraps an `n`-node cluster with default settings.
    pub(crate) fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Bootstraps an `n`-node cluster; every node gets `extra` arguments.
    pub(crate) fn start_with(n: usize, extra: &[&str]) -> Cluster {
        let (dir, root) = data_dir();
        std::fs::create_dir_all(&root).expect("create cluster dir");
        let mut raft_ports = free_ports(2 * n);
        let client_ports = raft_ports.split_off(n);
        let initial = raft_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut c = Cluster { _dir: dir, root, initial, raft_ports, client_ports, extra, nodes: Vec::new() };
        for id in 1..=n as u64 {
            let s = c.spawn(id);
            c.nodes.push(Some(s));
        }
        c
    }

    /// Starts initial member `id` (first start or restart).
    pub(crate) fn spawn(&self, id: u64) -> Server {
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--raft-addr".to_string(),
            self.raft_addr(id),
            "--initial-cluster".to_string(),
            self.initial.clone(),
            "--client-addr".to_string(),
            format!("127.0.0.1:{}", self.client_ports[id as usize - 1]),
        ];
        args.extend(self.extra.iter().cloned());
        Server::start_with(&self.data_dir(id), &args)
    }

    /// Starts node `id` (the next id after the current ones) with
    /// `--join join` on a new raft port and the given client address;
    /// returns its raft address.
    pub(crate) fn spawn_joining(&mut self, id: u64, raft_port: u16, client_addr: &str, join: &str) -> String {
        assert_eq!(id as usize, self.nodes.len() + 1, "joining ids are allocated in order");
        self.raft_ports.push(raft_port);
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--raft-addr".to_string(),
            self.raft_addr(id),
            "--client-addr".to_string(),
            client_addr.to_string(),
            "--join".to_string(),
            join.to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        let server = Server::start_with(&self.data_dir(id), &args);
        self.nodes.push(Some(server));
        self.raft_addr(id)
    }

    /// `127.0.0.1:<port>` of node `id`'s peer traffic.
    pub(crate) fn raft_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.raft_ports[id as usize - 1])
    }

    /// Node `id`'s data directory.
    pub(crate) fn data_dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("n{id}"))
    }

    /// Running node `id`.
    pub(crate) fn node(&self, id: u64) -> &Server {
        self.nodes[id as usize - 1].as_ref().unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// The ids of the running nodes.
    pub(crate) fn running(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).filter(|&id| self.nodes[id as usize - 1].is_some()).collect()
    }

    /// SIGKILLs node `id` and marks it down.
    pub(crate) fn kill(&mut self, id: u64) {
        let mut s = self.nodes[id as usize - 1].take().unwrap_or_else(|| panic!("node {id} is not running"));
        s.kill9();
    }

    /// Restarts initial member `id` on its data directory.
    pub(crate) fn restart(&mut self, id: u64) {
        assert!(self.nodes[id as usize - 1].is_none(), "node {id} is running");
        let s = self.spawn(id);
        self.nodes[id as usize - 1] = Some(s);
    }

    /// The client endpoints of `ids`.
    pub(crate) fn endpoints(&self, ids: &[u64]) -> Vec<String> {
        ids.iter().map(|&id| self.node(id).endpoint()).collect()
    }

    /// The leader as a running node reports it, once that leader is a
    /// running node too.
    pub(crate) async fn leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            for s in self.nodes.iter().flatten() {
                let Ok(mut c) = admin(s).await else { continue };
                if let Ok(r) = c.member_list(pb::MemberListRequest {}).await {
                    let leader = r.into_inner().leader;
                    if leader != 0 && self.nodes.get(leader as usize - 1).is_some_and(Option::is_some) {
                        return leader;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `id`'s own view of itself (term, commit, applied, log bounds).
    pub(crate) async fn status(&self, id: u64) -> pb::MemberStatus {
        let mut c = admin(self.node(id)).await.expect("connect admin client");
        let all = c.status(pb::StatusRequest {}).await.expect("status").into_inner();
        all.members.into_iter().find(|m| m.id == id).expect("a node reports its own status")
    }

    /// Runs the `bedrock` CLI against `endpoints`; returns its stdout, or
    /// panics with its stderr if it fails.
    pub(crate) fn cli(&self, endpoints: &[String], args: &[&str]) -> String {
        let out = std::process::Command::new(BIN)
            .arg("--endpoints")
            .arg(endpoints.join(","))
            .args(args)
            .output()
            .expect("run bedrock CLI");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "bedrock {args:?} failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
        stdout
    }
}

/// A `bedrock.v1.Cluster` client for `s`.
pub(crate) async fn admin(s: &Server) -> Result<ClusterClient<Channel>, tonic::transport::Error> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", s.endpoint()))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(ClusterClient::new(ch))
}

/// Every key-value pair `s` holds (a linearizable scan).
pub(crate) async fn scan_all(s: &Server) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = s.grpc().await;
    let mut stream = c.scan(pb::ScanRequest::default()).await.expect("scan").into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.expect("scan chunk") {
        out.extend(chunk.kvs.into_iter().map(|kv| (kv.key, kv.value)));
    }
    out
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with
/// `what` after `timeout`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Cluster {
    /// When a test fails, shows the end of every node's log (the temporary
    /// directory holding them is about to be removed).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for id in 1..=self.nodes.len() as u64 {
            let path = self.data_dir(id).with_extension(format!("{}.log", std::process::id()));
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- last lines of node {id}'s log ---");
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}
