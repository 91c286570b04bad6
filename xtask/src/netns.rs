//! Network namespaces for `cargo xtask jepsen`: one namespace per node,
//! joined by veth pairs to a bridge in the root namespace, and iptables
//! rules in the nodes' namespaces for partitions and packet loss.
//!
//! Layout for nodes 1..=N (everything named with the prefix `bedrockj`):
//!
//! | object | name | address |
//! |---|---|---|
//! | bridge (root namespace) | `bedrockj0` | 10.77.0.1/24 |
//! | node i's namespace | `bedrockj-<i>` | `eth0` 10.77.0.(10+i)/24, `lo` up |
//! | node i's veth, root end (on the bridge) | `bedrockj-v<i>` | — |
//!
//! The clients stay in the root namespace and reach every node through
//! the bridge from 10.77.0.1, which no rule ever drops: a partition cuts
//! only node-to-node traffic, as in Jepsen. A fault is a set of rules per
//! namespace ([`rules`], a pure function), loaded with one
//! `iptables-restore` per namespace, which replaces the namespace's whole
//! filter table at once; healing loads an empty table.
//!
//! One rule goes into the root namespace: `FORWARD -i bedrockj0 -o
//! bedrockj0 -j ACCEPT`, since with `br_netfilter` loaded bridged packets
//! cross that chain, whose policy may be DROP.
//!
//! [`Net::setup`] first removes whatever a crashed earlier run left
//! (processes in the namespaces, links, the bridge, the namespaces, the
//! FORWARD rule) unless another run holds the lock file, then builds the
//! layout and checks that iptables with the `statistic` match works in a
//! namespace. Dropping the [`Net`] tears everything down again. A run
//! killed outright (Ctrl-C, SIGKILL) leaves its objects and its servers
//! (in their own process groups) until the next run removes them.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// The prefix of every namespace, link and bridge this module creates.
const PREFIX: &str = "bedrockj";
/// The bridge in the root namespace.
const BRIDGE: &str = "bedrockj0";
/// Held (flock) while a run owns the namespaces.
const LOCK: &str = "/run/bedrockj.lock";

/// The root namespace's address on the bridge: where the clients come from.
pub const BRIDGE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// Node `id`'s address (on `eth0` in its namespace).
pub fn node_addr(id: u64) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 10 + id as u8)
}

/// Node `id`'s namespace.
pub fn namespace(id: u64) -> String {
    format!("{PREFIX}-{id}")
}

/// The root end of node `id`'s veth pair.
fn veth(id: u64) -> String {
    format!("{PREFIX}-v{id}")
}

/// A network fault between the nodes (never between clients and nodes).
#[derive(Debug, Clone, PartialEq)]
pub enum NetFault {
    /// This node can reach no other node, nor they it.
    Isolate(u64),
    /// No node of one side can reach a node of the other.
    Split(Vec<u64>, Vec<u64>),
    /// `left` and `right` cannot reach each other; both reach `middle`.
    Bridge {
        /// One half.
        left: Vec<u64>,
        /// The node both halves see.
        middle: u64,
        /// The other half.
        right: Vec<u64>,
    },
    /// Every packet from one node to another is dropped with this
    /// probability (once, on the receiver's INPUT chain).
    Loss(f64),
}

impl fmt::Display for NetFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetFault::Isolate(n) => write!(f, "isolate {n}"),
            NetFault::Split(a, b) => write!(f, "split {a:?} | {b:?}"),
            NetFault::Bridge { left, middle, right } => write!(f, "bridge {left:?} - {middle} - {right:?}"),
            NetFault::Loss(p) => write!(f, "loss {:.0}%", p * 100.0),
        }
    }
}

impl NetFault {
    /// The nemesis name of the fault (`nemesis.jsonl`'s `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            NetFault::Isolate(_) => "partition-isolate",
            NetFault::Split(..) => "partition-split",
            NetFault::Bridge { .. } => "partition-bridge",
            NetFault::Loss(_) => "loss",
        }
    }

    /// Whether `a` and `b` (two different nodes) are cut off from each
    /// other for good (packet loss cuts nobody).
    pub fn cuts(&self, a: u64, b: u64) -> bool {
        let across = |x: &[u64], y: &[u64]| (x.contains(&a) && y.contains(&b)) || (x.contains(&b) && y.contains(&a));
        match self {
            NetFault::Isolate(n) => a != b && (a == *n || b == *n),
            NetFault::Split(x, y) => across(x, y),
            NetFault::Bridge { left, right, .. } => across(left, right),
            NetFault::Loss(_) => false,
        }
    }

    /// The nodes that cannot reach a majority of `nodes` (themselves
    /// included): the ones that must not acknowledge anything while cut off.
    pub fn cut_off(&self, nodes: &[u64]) -> Vec<u64> {
        let majority = nodes.len() / 2 + 1;
        nodes
            .iter()
            .copied()
            .filter(|&a| nodes.iter().filter(|&&b| a == b || !self.cuts(a, b)).count() < majority)
            .collect()
    }

    /// A random fault of shape `shape % 4`: 0 isolates `leader` (or a
    /// random node when it is unknown), 1 a random majority/minority
    /// split, 2 a random bridge, 3 drops 10–40 % of the packets between
    /// nodes. `below(n)` draws from `0..n`.
    pub fn random(shape: u64, nodes: &[u64], leader: Option<u64>, below: &mut dyn FnMut(u64) -> u64) -> NetFault {
        let mut order = nodes.to_vec();
        for i in (1..order.len()).rev() {
            order.swap(i, below(i as u64 + 1) as usize);
        }
        match shape % 4 {
            0 => NetFault::Isolate(leader.filter(|l| nodes.contains(l)).unwrap_or(order[0])),
            1 => {
                let (minority, majority) = order.split_at(order.len() / 2);
                NetFault::Split(sorted(minority), sorted(majority))
            }
            2 => {
                let (middle, rest) = (order[0], &order[1..]);
                let (left, right) = rest.split_at(rest.len() / 2);
                NetFault::Bridge { left: sorted(left), middle, right: sorted(right) }
            }
            _ => NetFault::Loss((10 + below(31)) as f64 / 100.0),
        }
    }
}

fn sorted(nodes: &[u64]) -> Vec<u64> {
    let mut v = nodes.to_vec();
    v.sort_unstable();
    v
}

/// The iptables rules (argument vectors, as `iptables` and
/// `iptables-restore` take them) that make `fault` in each node's
/// namespace; every node of `nodes` has an entry, empty when nothing of
/// its traffic is dropped. A cut pair gets DROP rules on both sides, on
/// INPUT (`-s` peer) and OUTPUT (`-d` peer); loss is one `statistic`
/// rule per peer on INPUT. Only node addresses appear, so the clients
/// (from [`BRIDGE_ADDR`]) always get through.
pub fn rules(fault: &NetFault, nodes: &[u64], addr: &dyn Fn(u64) -> Ipv4Addr) -> BTreeMap<u64, Vec<Vec<String>>> {
    let rule = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let mut out = BTreeMap::new();
    for &a in nodes {
        let mut list = Vec::new();
        for &b in nodes.iter().filter(|&&b| b != a) {
            let peer = format!("{}/32", addr(b));
            match fault {
                NetFault::Loss(p) => list.push(rule(&[
                    "-A",
                    "INPUT",
                    "-s",
                    &peer,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &format!("{p:.4}"),
                    "-j",
                    "DROP",
                ])),
                _ if fault.cuts(a, b) => {
                    list.push(rule(&["-A", "INPUT", "-s", &peer, "-j", "DROP"]));
                    list.push(rule(&["-A", "OUTPUT", "-d", &peer, "-j", "DROP"]));
                }
                _ => {}
            }
        }
        out.insert(a, list);
    }
    out
}

/// `iptables-restore` input replacing the filter table with `rules`.
fn restore_input(rules: &[Vec<String>]) -> String {
    let mut text = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for r in rules {
        text.push_str(&r.join(" "));
        text.push('\n');
    }
    text.push_str("COMMIT\n");
    text
}

/// The namespaces, links and bridge of one run; torn down on drop.
pub struct Net {
    nodes: Vec<u64>,
    _lock: std::fs::File,
}

impl Net {
    /// Builds the layout for `nodes` after removing a crashed run's
    /// leftovers. Fails (leaving nothing behind) when not root, when `ip`,
    /// `iptables` or `iptables-restore` is missing, when another run holds
    /// the namespaces, or when a step or the iptables check fails.
    pub fn setup(nodes: &[u64]) -> Result<Net> {
        ensure!(effective_uid() == Some(0), "not running as root");
        for tool in ["ip", "iptables", "iptables-restore"] {
            ensure!(crate::bench_cluster::which(tool).is_some(), "`{tool}` is not installed");
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .with_context(|| format!("open {LOCK}"))?;
        if lock.try_lock().is_err() {
            bail!("another jepsen run holds the namespaces ({LOCK} is locked)");
        }
        remove_leftovers();
        let net = Net { nodes: nodes.to_vec(), _lock: lock };
        net.build().context("set up the network namespaces")?;
        Ok(net)
    }

    fn build(&self) -> Result<()> {
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{BRIDGE_ADDR}/24"), "dev", BRIDGE])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        for &id in &self.nodes {
            let (ns, host, inner) = (namespace(id), veth(id), format!("{PREFIX}-p{id}"));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["-n", &ns, "link", "set", &inner, "name", "eth0"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", node_addr(id)), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["link", "set", &host, "master", BRIDGE])?;
            ip(&["link", "set", &host, "up"])?;
        }
        // With br_netfilter loaded, bridged packets cross the root
        // namespace's FORWARD chain, whose policy may be DROP.
        run("iptables", &["-w", "-I", "FORWARD", "1"].iter().chain(&FORWARD_RULE).copied().collect::<Vec<_>>())?;
        // The iptables check: a statistic rule loads in a namespace.
        let &first = self.nodes.first().context("no nodes")?;
        let probe = rules(&NetFault::Loss(0.5), &self.nodes, &node_addr);
        restore(first, probe.get(&first).map(Vec::as_slice).unwrap_or_default())
            .context("iptables with the statistic match does not work in a namespace")?;
        restore(first, &[])
    }

    /// Loads the rules of `fault` into every node's namespace.
    pub fn apply(&self, fault: &NetFault) -> Result<()> {
        for (id, list) in rules(fault, &self.nodes, &node_addr) {
            restore(id, &list).with_context(|| format!("apply {fault} in {}", namespace(id)))?;
        }
        Ok(())
    }

    /// Removes every rule from every node's namespace.
    pub fn heal(&self) -> Result<()> {
        for &id in &self.nodes {
            restore(id, &[]).with_context(|| format!("heal {}", namespace(id)))?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        remove_leftovers();
    }
}

/// The rule letting bridged packets between the nodes through the root
/// namespace's FORWARD chain.
const FORWARD_RULE: [&str; 6] = ["-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"];

/// Loads `rules` as node `id`'s whole filter table.
fn restore(id: u64, rules: &[Vec<String>]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &namespace(id), "iptables-restore", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start iptables-restore")?;
    child.stdin.take().context("iptables-restore stdin")?.write_all(restore_input(rules).as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "iptables-restore: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// Removes every `bedrockj` object: kills the processes left in the
/// namespaces (waiting up to 5 s for them to go), then deletes the veth
/// pairs, the bridge, the namespaces and the FORWARD rules. Errors are
/// ignored: what is missing is already gone.
fn remove_leftovers() {
    let names: Vec<String> = output("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(str::to_string)
        .collect();
    let mut pids = Vec::new();
    for ns in &names {
        pids.extend(output("ip", &["netns", "pids", ns]).split_whitespace().map(str::to_string));
    }
    for pid in &pids {
        let _ = run("kill", &["-KILL", pid]);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let links: Vec<String> = output("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    for link in links.iter().filter(|l| l.as_str() != BRIDGE) {
        let _ = ip(&["link", "del", link]);
    }
    if links.iter().any(|l| l == BRIDGE) {
        let _ = ip(&["link", "del", BRIDGE]);
    }
    for ns in &names {
        let _ = ip(&["netns", "del", ns]);
    }
    let delete: Vec<&str> = ["-w", "-D", "FORWARD"].iter().chain(&FORWARD_RULE).copied().collect();
    for _ in 0..100 {
        if run("iptables", &delete).is_err() {
            break;
        }
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd).args(args).stdin(Stdio::null()).output().with_context(|| format!("run {cmd}"))?;
    ensure!(out.status.success(), "{cmd} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// Standard output of a command, empty if it fails.
fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const NODES: [u64; 5] = [1, 2, 3, 4, 5];

    /// The pairs of `nodes` that can still exchange packets under `rules`:
    /// `a` reaches `b` unless `a`'s OUTPUT drops `b` or `b`'s INPUT drops
    /// `a` for certain (a `statistic` rule drops only some packets).
    fn connected(rules: &BTreeMap<u64, Vec<Vec<String>>>, addr: &dyn Fn(u64) -> Ipv4Addr) -> BTreeSet<(u64, u64)> {
        let drops = |id: u64, chain: &str, flag: &str, peer: u64| {
            let peer = format!("{}/32", addr(peer));
            rules.get(&id).into_iter().flatten().any(|r| {
                r.get(1).map(String::as_str) == Some(chain)
                    && r.windows(2).any(|w| w[0] == flag && w[1] == peer)
                    && !r.iter().any(|s| s == "statistic")
                    && r.last().map(String::as_str) == Some("DROP")
            })
        };
        let nodes: Vec<u64> = rules.keys().copied().collect();
        let mut out = BTreeSet::new();
        for &a in &nodes {
            for &b in nodes.iter().filter(|&&b| b != a) {
                if !drops(a, "OUTPUT", "-d", b) && !drops(b, "INPUT", "-s", a) {
                    out.insert((a, b));
                }
            }
        }
        out
    }

    fn talk(fault: &NetFault) -> BTreeSet<(u64, u64)> {
        connected(&rules(fault, &NODES, &node_addr), &node_addr)
    }

    fn both_ways(links: &BTreeSet<(u64, u64)>, a: u64, b: u64) -> bool {
        links.contains(&(a, b)) && links.contains(&(b, a))
    }

    #[test]
    fn names_and_addresses() {
        assert_eq!(namespace(3), "bedrockj-3");
        assert_eq!(node_addr(3), Ipv4Addr::new(10, 77, 0, 13));
        assert!(veth(9).len() <= 15, "interface names have at most 15 bytes");
    }

    #[test]
    fn isolating_a_node_cuts_exactly_its_links() {
        let links = talk(&NetFault::Isolate(2));
        for a in NODES {
            for b in NODES.iter().copied().filter(|&b| b != a) {
                assert_eq!(both_ways(&links, a, b), a != 2 && b != 2, "{a} <-> {b}");
                assert!(links.contains(&(a, b)) == links.contains(&(b, a)), "cuts are symmetric");
            }
        }
        assert_eq!(NetFault::Isolate(2).cut_off(&NODES), vec![2]);
        let r = rules(&NetFault::Isolate(2), &NODES, &node_addr);
        assert_eq!(r[&2].len(), 8, "INPUT and OUTPUT for each of 4 peers");
        assert_eq!(
            r[&1],
            vec![
                vec!["-A", "INPUT", "-s", "10.77.0.12/32", "-j", "DROP"],
                vec!["-A", "OUTPUT", "-d", "10.77.0.12/32", "-j", "DROP"],
            ]
        );
    }

    #[test]
    fn a_split_cuts_across_and_keeps_each_side_whole() {
        let fault = NetFault::Split(vec![1, 4], vec![2, 3, 5]);
        let links = talk(&fault);
        let side = |n: u64| [1, 4].contains(&n);
        for a in NODES {
            for b in NODES.iter().copied().filter(|&b| b != a) {
                assert!(!links.contains(&(a, b)) || side(a) == side(b), "{a} -> {b} crosses the split");
                assert!(side(a) != side(b) || both_ways(&links, a, b), "{a} <-> {b} inside a side");
            }
        }
        assert_eq!(fault.cut_off(&NODES), vec![1, 4]);
    }

    #[test]
    fn a_bridge_node_talks_to_everyone_and_the_halves_not_to_each_other() {
        let fault = NetFault::Bridge { left: vec![1, 2], middle: 3, right: vec![4, 5] };
        let links = talk(&fault);
        for n in [1, 2, 4, 5] {
            assert!(both_ways(&links, 3, n), "middle <-> {n}");
        }
        for (a, b) in [(1, 4), (1, 5), (2, 4), (2, 5)] {
            assert!(!links.contains(&(a, b)) && !links.contains(&(b, a)), "{a} <-> {b}");
        }
        assert!(both_ways(&links, 1, 2) && both_ways(&links, 4, 5));
        assert!(fault.cut_off(&NODES).is_empty(), "every node still reaches a majority");
    }

    #[test]
    fn loss_drops_some_packets_of_every_pair_and_cuts_none() {
        let fault = NetFault::Loss(0.25);
        let r = rules(&fault, &NODES, &node_addr);
        assert_eq!(talk(&fault).len(), 20, "every ordered pair still connected");
        for (id, list) in &r {
            assert_eq!(list.len(), 4, "one rule per peer on {id}");
            assert!(list.iter().all(|x| x.join(" ").contains("-m statistic --mode random --probability 0.2500")));
            assert!(!list.iter().any(|x| x.join(" ").contains(&format!("{}/32", node_addr(*id)))));
        }
        assert!(fault.cut_off(&NODES).is_empty());
    }

    #[test]
    fn clients_are_never_dropped() {
        let peers: Vec<String> = NODES.iter().map(|&n| format!("{}/32", node_addr(n))).collect();
        for fault in [NetFault::Isolate(1), NetFault::Split(vec![1, 2], vec![3, 4, 5]), NetFault::Loss(0.3)] {
            for rule in rules(&fault, &NODES, &node_addr).values().flatten() {
                let addr = rule.windows(2).find(|w| w[0] == "-s" || w[0] == "-d").map(|w| w[1].clone());
                assert!(addr.is_some_and(|a| peers.contains(&a)), "{fault}: {rule:?} matches a node address");
            }
        }
    }

    #[test]
    fn random_faults_have_the_right_shapes() {
        let mut seed = 12345u64;
        let mut below = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut seen = BTreeSet::new();
        for shape in 0..200 {
            let fault = NetFault::random(shape, &NODES, Some(4), &mut below);
            seen.insert(fault.kind());
            match &fault {
                NetFault::Isolate(n) => assert_eq!(*n, 4, "the leader is isolated"),
                NetFault::Split(minority, majority) => {
                    assert_eq!((minority.len(), majority.len()), (2, 3));
                    assert_eq!(fault.cut_off(&NODES), *minority);
                }
                NetFault::Bridge { left, middle, right } => {
                    assert_eq!((left.len(), right.len()), (2, 2));
                    assert!(!left.contains(middle) && !right.contains(middle));
                }
                NetFault::Loss(p) => assert!((0.1..=0.4).contains(p), "{p}"),
            }
        }
        assert_eq!(seen.len(), 4, "all four shapes drawn: {seen:?}");
        assert_eq!(NetFault::random(4, &[1, 2, 3], None, &mut |_| 0), NetFault::Isolate(2));
    }

    #[test]
    fn restore_input_replaces_the_filter_table() {
        let text = restore_input(&rules(&NetFault::Isolate(1), &[1, 2], &node_addr)[&2]);
        assert_eq!(
            text,
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -s 10.77.0.11/32 -j DROP\n-A OUTPUT -d 10.77.0.11/32 -j DROP\nCOMMIT\n"
        );
    }
}
