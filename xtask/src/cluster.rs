//! `cargo xtask cluster up [--nodes N] [--release] | status | down [--wipe]`:
//! a local Bedrock cluster of N processes (default 3) on loopback, for
//! trying things out by hand.
//!
//! Node `i` (1-based) listens on:
//!
//! | node | client API (HTTP + gRPC) | Raft peers       |
//! |------|--------------------------|------------------|
//! | 1    | 127.0.0.1:8080           | 127.0.0.1:9001   |
//! | 2    | 127.0.0.1:8081           | 127.0.0.1:9002   |
//! | i    | 127.0.0.1:(8080 + i - 1) | 127.0.0.1:(9000 + i) |
//!
//! so node 1 answers on the CLI's default endpoint. Data goes to
//! `target/cluster/n<i>/`, each node's stdout and stderr to
//! `target/cluster/n<i>.log`, and `target/cluster/pids` records the
//! binary and each node's id, pid and addresses for `status` and `down`.
//! `up` returns once every node has announced its client address and a
//! leader is elected; the nodes keep running in the background (each in
//! its own process group, so a Ctrl-C in the terminal does not reach
//! them). `down` sends SIGTERM, waits up to 10 s, then SIGKILLs; `--wipe`
//! also deletes `target/cluster/`. The same helpers start the clusters of
//! `cargo xtask bench cluster`.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// Where `up` keeps data, logs and the pid file (under the workspace root).
const DIR: &str = "target/cluster";
/// How long one node may take to announce its address (debug build).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `up` waits for a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `down` waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `cargo xtask cluster ...`.
pub fn run(args: &[String]) -> Result<()> {
    let usage = "usage: cargo xtask cluster <up [--nodes N] [--release] | status | down [--wipe]>";
    match args.first().map(String::as_str) {
        Some("up") => up(&args[1..]),
        Some("status") if args.len() == 1 => status(),
        Some("down") => match &args[1..] {
            [] => down(false),
            [flag] if flag == "--wipe" => down(true),
            _ => bail!("{usage}"),
        },
        _ => bail!("{usage}"),
    }
}

/// The addresses and files of one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id (>= 1).
    pub id: u64,
    /// Client API address, `127.0.0.1:<port>`.
    pub client: String,
    /// Raft peer address, `127.0.0.1:<port>`.
    pub raft: String,
    /// Data directory.
    pub data: PathBuf,
    /// File receiving the node's stdout and stderr (appended to).
    pub log: PathBuf,
    /// Network namespace to run the node in (`ip netns exec`, which execs
    /// the server, so the child's pid is the server's); `None`: this one.
    pub netns: Option<String>,
}

impl NodeSpec {
    /// Node `id` with the given ports, its files under `dir`.
    pub fn new(id: u64, client_port: u16, raft_port: u16, dir: &Path) -> NodeSpec {
        NodeSpec {
            id,
            client: format!("127.0.0.1:{client_port}"),
            raft: format!("127.0.0.1:{raft_port}"),
            data: dir.join(format!("n{id}")),
            log: dir.join(format!("n{id}.log")),
            netns: None,
        }
    }
}

/// `--initial-cluster` for `nodes`.
pub fn initial_cluster(nodes: &[NodeSpec]) -> String {
    nodes.iter().map(|n| format!("{}={}", n.id, n.raft)).collect::<Vec<_>>().join(",")
}

/// How a node enters the cluster.
pub enum Start<'a> {
    /// Bootstraps (or restarts) with this `--initial-cluster`.
    Initial(&'a str),
    /// Joins through this client endpoint.
    Join(&'a str),
}

/// A started node: the process, and where its log was when it started
/// (the log is appended to across restarts).
pub struct Started {
    /// The `bedrock serve` process.
    pub child: Child,
    log_offset: u64,
}

/// Starts `bedrock serve` for `node` in its own process group; `extra`
/// are more `serve` flags. Returns at once; see [`wait_serving`].
pub fn spawn(bin: &Path, node: &NodeSpec, start: &Start<'_>, extra: &[&str]) -> Result<Started> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .with_context(|| format!("open {}", node.log.display()))?;
    let log_offset = log.metadata()?.len();
    let mut cmd = match &node.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["serve", "--id", &node.id.to_string(), "--client-addr", &node.client, "--raft-addr", &node.raft])
        .arg("--data-dir")
        .arg(&node.data);
    match start {
        Start::Initial(ic) => cmd.args(["--initial-cluster", ic]),
        Start::Join(endpoint) => cmd.args(["--join", endpoint]),
    };
    let child = cmd
        .args(extra)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    Ok(Started { child, log_offset })
}

/// Waits until the node started as `started` prints its serving line.
///
/// # Errors
/// The process exited or stayed silent for `timeout`; the message ends
/// with the tail of its log.
pub fn wait_serving(node: &NodeSpec, started: &mut Started, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read(&node.log).unwrap_or_default();
        let new = String::from_utf8_lossy(text.get(started.log_offset as usize..).unwrap_or_default());
        if new.contains("bedrock: serving client API on") {
            return Ok(());
        }
        if let Some(status) = started.child.try_wait()? {
            bail!("node {} exited ({status}); end of {}:\n{}", node.id, node.log.display(), tail(&new, 20));
        }
        if Instant::now() > deadline {
            bail!("node {} did not start within {timeout:?}; end of its log:\n{}", node.id, tail(&new, 20));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The leader as `bedrock status -o json` through `endpoints` reports it,
/// if a member says it leads.
pub fn leader(bin: &Path, endpoints: &[String]) -> Option<u64> {
    let out = Command::new(bin)
        .args(["--endpoints", &endpoints.join(","), "status", "-o", "json"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["role"] == "leader")
        .and_then(|m| m["id"].as_u64())
}

/// Polls [`leader`] (every 20 ms) until a member other than `not` leads.
pub fn wait_leader(bin: &Path, endpoints: &[String], not: Option<u64>, timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        match leader(bin, endpoints) {
            Some(id) if Some(id) != not => return Ok(id),
            _ if Instant::now() > deadline => bail!("no leader within {timeout:?}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Builds `bedrock` (`cargo build -p bedrock-server`) and returns its path.
pub fn build_bedrock(release: bool) -> Result<PathBuf> {
    let mut args = vec!["build", "--quiet", "--package", "bedrock-server", "--bin", "bedrock"];
    if release {
        args.push("--release");
    }
    crate::run("cargo", &args)?;
    let target = crate::metadata()?["target_directory"].as_str().map(PathBuf::from).context("target_directory")?;
    Ok(target.join(if release { "release" } else { "debug" }).join("bedrock"))
}

/// The nodes of the `up` cluster: ports by the documented scheme.
fn specs(n: u64, dir: &Path) -> Vec<NodeSpec> {
    (1..=n).map(|i| NodeSpec::new(i, 8080 + i as u16 - 1, 9000 + i as u16, dir)).collect()
}

fn up(args: &[String]) -> Result<()> {
    let (mut nodes, mut release) = (3u64, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nodes" => nodes = it.next().and_then(|n| n.parse().ok()).context("--nodes takes a number")?,
            "--release" => release = true,
            other => bail!("cluster up: unknown flag {other}"),
        }
    }
    ensure!((1..=9).contains(&nodes), "--nodes must be between 1 and 9");
    let dir = PathBuf::from(DIR);
    if let Ok(state) = State::load(&dir) {
        if state.nodes.iter().any(|n| alive(n.pid)) {
            bail!("a cluster is already running (see {DIR}/pids); run `cargo xtask cluster down` first");
        }
    }
    let existing = (1..=9).filter(|i| dir.join(format!("n{i}")).exists()).count() as u64;
    ensure!(
        existing == 0 || existing == nodes,
        "{DIR} holds the data of a {existing}-node cluster; run `cargo xtask cluster down --wipe` to start afresh"
    );
    let bin = build_bedrock(release)?;
    std::fs::create_dir_all(&dir)?;
    let specs = specs(nodes, &dir);
    for s in &specs {
        for addr in [&s.client, &s.raft] {
            std::net::TcpListener::bind(addr.as_str())
                .with_context(|| format!("{addr} is taken; is another server running there?"))?;
        }
    }
    let ic = initial_cluster(&specs);
    let mut state = State { bin: bin.clone(), nodes: Vec::new() };
    let mut started = Vec::new();
    for s in &specs {
        let st = spawn(&bin, s, &Start::Initial(&ic), &[])?;
        state.nodes.push(NodeState { id: s.id, pid: st.child.id(), client: s.client.clone(), raft: s.raft.clone() });
        started.push(st);
    }
    state.save(&dir)?;
    let endpoints: Vec<String> = specs.iter().map(|s| s.client.clone()).collect();
    let ready = specs
        .iter()
        .zip(&mut started)
        .try_for_each(|(s, st)| wait_serving(s, st, START_TIMEOUT))
        .and_then(|()| wait_leader(&bin, &endpoints, None, LEADER_TIMEOUT));
    match ready {
        Ok(leader) => {
            print_table(&state, leader);
            Ok(())
        }
        Err(e) => {
            for st in &mut started {
                let _ = st.child.kill();
                let _ = st.child.wait();
            }
            let _ = std::fs::remove_file(dir.join("pids"));
            Err(e.context("the cluster did not come up; its nodes were stopped"))
        }
    }
}

fn print_table(state: &State, leader: u64) {
    println!("| node | client API | raft | pid | data | log |");
    println!("|---|---|---|---|---|---|");
    for n in &state.nodes {
        let mark = if n.id == leader { " (leader)" } else { "" };
        println!("| {}{mark} | {} | {} | {} | {DIR}/n{} | {DIR}/n{}.log |", n.id, n.client, n.raft, n.pid, n.id, n.id);
    }
    let endpoints: Vec<&str> = state.nodes.iter().map(|n| n.client.as_str()).collect();
    let (first, last) = (endpoints[0], endpoints[endpoints.len() - 1]);
    println!();
    println!("curl -X PUT '{first}/put?key=name' -d raft");
    println!("curl '{last}/get?key=name'");
    println!("{} --endpoints {} status", state.bin.display(), endpoints.join(","));
    println!("cargo xtask cluster status | cargo xtask cluster down [--wipe]");
}

fn status() -> Result<()> {
    let state = State::load(Path::new(DIR)).context("no cluster started by `cargo xtask cluster up`")?;
    let endpoints: Vec<&str> = state.nodes.iter().map(|n| n.client.as_str()).collect();
    for n in &state.nodes {
        println!("node {} pid {}: {}", n.id, n.pid, if alive(n.pid) { "running" } else { "not running" });
    }
    let code = Command::new(&state.bin)
        .args(["--endpoints", &endpoints.join(","), "status"])
        .status()
        .with_context(|| format!("run {}", state.bin.display()))?;
    ensure!(code.success(), "bedrock status failed ({code})");
    Ok(())
}

fn down(wipe: bool) -> Result<()> {
    let dir = PathBuf::from(DIR);
    match State::load(&dir) {
        Ok(state) => {
            let running: Vec<u32> = state.nodes.iter().map(|n| n.pid).filter(|&p| alive(p)).collect();
            for &pid in &running {
                signal(pid, "TERM");
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            while running.iter().any(|&p| alive(p)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            for &pid in running.iter().filter(|&&p| alive(p)) {
                eprintln!("pid {pid} ignored SIGTERM for {STOP_TIMEOUT:?}: SIGKILL");
                signal(pid, "KILL");
            }
            println!("stopped {} node(s)", running.len());
            std::fs::remove_file(dir.join("pids"))?;
        }
        Err(_) => println!("no cluster running"),
    }
    if wipe && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {DIR}"))?;
        println!("removed {DIR}");
    }
    Ok(())
}

/// Whether `pid` is a running `bedrock serve` (not a reused pid).
fn alive(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_bedrock = args.first().is_some_and(|a| a.ends_with(b"bedrock")) && args.get(1) == Some(&&b"serve"[..]);
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')));
    is_bedrock && !zombie
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
}

/// What `up` records in `target/cluster/pids`: a `bin PATH` line, then
/// one `node ID PID CLIENT RAFT` line per node.
struct State {
    bin: PathBuf,
    nodes: Vec<NodeState>,
}

struct NodeState {
    id: u64,
    pid: u32,
    client: String,
    raft: String,
}

impl State {
    fn save(&self, dir: &Path) -> Result<()> {
        let mut f = std::fs::File::create(dir.join("pids"))?;
        writeln!(f, "bin {}", self.bin.display())?;
        for n in &self.nodes {
            writeln!(f, "node {} {} {} {}", n.id, n.pid, n.client, n.raft)?;
        }
        Ok(())
    }

    fn load(dir: &Path) -> Result<State> {
        let text = std::fs::read_to_string(dir.join("pids"))?;
        let mut state = State { bin: PathBuf::new(), nodes: Vec::new() };
        for line in text.lines() {
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["bin", ..] => state.bin = PathBuf::from(line["bin ".len()..].trim()),
                ["node", id, pid, client, raft] => state.nodes.push(NodeState {
                    id: id.parse()?,
                    pid: pid.parse()?,
                    client: client.to_string(),
                    raft: raft.to_string(),
                }),
                _ => bail!("unexpected line in {}/pids: {line:?}", dir.display()),
            }
        }
        ensure!(!state.nodes.is_empty(), "no node in {}/pids", dir.display());
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_documented_scheme() {
        let s = specs(3, Path::new("d"));
        assert_eq!((s[0].client.as_str(), s[0].raft.as_str()), ("127.0.0.1:8080", "127.0.0.1:9001"));
        assert_eq!((s[2].client.as_str(), s[2].raft.as_str()), ("127.0.0.1:8082", "127.0.0.1:9003"));
        assert_eq!(s[1].data, Path::new("d/n2"));
        assert_eq!(initial_cluster(&s), "1=127.0.0.1:9001,2=127.0.0.1:9002,3=127.0.0.1:9003");
    }

    #[test]
    fn state_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("xtask-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let node = NodeState { id: 2, pid: 42, client: "127.0.0.1:8081".into(), raft: "127.0.0.1:9002".into() };
        State { bin: "/a b/bedrock".into(), nodes: vec![node] }.save(&dir).unwrap();
        let back = State::load(&dir).unwrap();
        assert_eq!(back.bin, Path::new("/a b/bedrock"));
        assert_eq!((back.nodes[0].id, back.nodes[0].pid, back.nodes[0].raft.as_str()), (2, 42, "127.0.0.1:9002"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn our_own_pid_is_not_a_bedrock_server() {
        assert!(!alive(std::process::id()));
    }
}
