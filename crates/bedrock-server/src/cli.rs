//! Command-line interface of the `bedrock` binary (clap definitions only;
//! each subcommand is carried out by [`crate::serve`], [`crate::client`] or
//! [`crate::bench`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use bedrock_wal::SyncPolicy;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Bedrock: a durable, transactional key-value store.
#[derive(Debug, Parser)]
#[command(name = "bedrock", version, about, propagate_version = true)]
pub struct Cli {
    /// Client API endpoints (host:port or http://host:port), comma-separated;
    /// the client commands try them in order until one connects.
    #[arg(long, global = true, env = "BEDROCK_ENDPOINTS", default_value = "127.0.0.1:8080", value_delimiter = ',')]
    pub endpoints: Vec<String>,

    /// TLS and authentication of the client commands.
    #[command(flatten)]
    pub access: AccessArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How the client commands (`put`, `get`, `member`, `status`, `bench`, ...)
/// reach a server that uses TLS or authentication (etcdctl's flag names).
#[derive(Debug, Clone, Default, Args)]
pub struct AccessArgs {
    /// CA certificate (PEM) that signed the servers' certificates; turns on
    /// TLS (`host:port` endpoints then mean `https://host:port`).
    #[arg(long = "cacert", id = "tls_cacert", global = true, env = "BEDROCK_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for servers started with
    /// `--client-cert-auth`.
    #[arg(
        long = "cert",
        id = "tls_cert",
        global = true,
        env = "BEDROCK_CERT",
        value_name = "FILE",
        requires_all = ["tls_key", "tls_cacert"]
    )]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long = "key",
        id = "tls_key",
        global = true,
        env = "BEDROCK_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub key: Option<PathBuf>,
    /// File whose first line is the bearer token to send, for servers
    /// started with `--auth-token-file`.
    #[arg(long, global = true, env = "BEDROCK_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// The subcommands.
// `Serve` is much larger than the others, but the value is parsed once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a server: single node, or a cluster member with `--initial-cluster` or `--join`.
    Serve(ServeArgs),
    /// Write KEY=VALUE.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Print the value of KEY (exit code 1 if it does not exist).
    Get {
        /// The key.
        key: String,
    },
    /// Delete KEY.
    Del {
        /// The key.
        key: String,
    },
    /// Print the keys in [START, END) as `key<TAB>value` lines.
    Scan {
        /// First key (inclusive); default: the smallest key.
        start: Option<String>,
        /// End key (exclusive); default: no upper bound.
        end: Option<String>,
        /// At most this many entries; 0 means no limit.
        #[arg(long, default_value_t = 0)]
        limit: u64,
    },
    /// Run a transaction given as JSON (the shape of HTTP `POST /txn`) and
    /// print the JSON result.
    Txn {
        /// File holding the JSON; `-` reads standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Stream a consistent backup of the whole key space into DIR (a new
    /// directory); `bedrock serve --data-dir DIR` opens it.
    Backup {
        /// Where to write the backup; must not exist.
        dir: PathBuf,
    },
    /// Load-test a server through the gRPC API.
    Bench(BenchArgs),
    /// List, add, promote or remove cluster members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Print every member's role, term, leader, commit and applied index.
    Status {
        /// `table` (readable) or `json` (one object per line, for scripts).
        #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
}

/// `bedrock member ...`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Print the members with their addresses and roles.
    List,
    /// Add node ID as a learner (it catches up by snapshot; promote it
    /// afterwards). Start it with `bedrock serve --id ID --join ENDPOINT`.
    Add {
        /// The new node's id.
        id: u64,
        /// Its peer (Raft) address, host:port.
        raft_addr: String,
        /// Its client API address, host:port.
        client_addr: String,
    },
    /// Make learner ID a voter (fails until it has caught up).
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Remove node ID (leadership moves away first if ID leads).
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Hand leadership to voter ID.
    TransferLeader {
        /// The voter's id.
        id: u64,
    },
}

/// Options of `bedrock serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML file with any of these flags as keys (`data-dir = "..."`);
    /// precedence: flag > `BEDROCK_*` variable > file > default. See
    /// `docs/operations.md`.
    #[arg(long, env = "BEDROCK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the database (created if missing).
    #[arg(long, env = "BEDROCK_DATA_DIR", default_value = "bedrock-data")]
    pub data_dir: PathBuf,
    /// Address of the client API (HTTP/1.1 and gRPC on one port); port 0
    /// picks a free port, printed on standard output.
    #[arg(long, env = "BEDROCK_CLIENT_ADDR", default_value = "127.0.0.1:8080")]
    pub client_addr: SocketAddr,
    /// Address for Raft peer traffic (used in cluster mode, with
    /// `--initial-cluster` or `--join`).
    #[arg(long, env = "BEDROCK_RAFT_ADDR", default_value = "127.0.0.1:9000")]
    pub raft_addr: SocketAddr,
    /// Bootstrap a new cluster with these voters: `ID=RAFT_ADDR,...`, e.g.
    /// `1=127.0.0.1:9001,2=127.0.0.1:9002,3=127.0.0.1:9003` (same value on
    /// every initial node; ignored once the node has state). Without this
    /// or `--join` the server runs single-node, without Raft.
    #[arg(long, env = "BEDROCK_INITIAL_CLUSTER", conflicts_with = "join")]
    pub initial_cluster: Option<String>,
    /// Join the existing cluster that serves this client endpoint
    /// (host:port): the node asks to be added as a learner and catches up
    /// through a snapshot.
    #[arg(long, env = "BEDROCK_JOIN")]
    pub join: Option<String>,
    /// This node's id in the cluster.
    #[arg(long, env = "BEDROCK_ID", default_value_t = 1)]
    pub id: u64,
    /// When the write-ahead log is fsynced: `always` (before every
    /// acknowledgement, with group commit), `every-ms=N` (in the
    /// background every N ms: a power cut loses up to N ms of acknowledged
    /// writes) or `never` (the OS decides; a process crash loses nothing, a
    /// power cut may lose much).
    #[arg(long, env = "BEDROCK_SYNC", default_value = "always", value_parser = parse_sync)]
    pub sync: SyncPolicy,
    /// Cluster mode: compact the Raft log (and snapshot the state machine)
    /// once it holds more than this many applied entries. Default: 50,000.
    #[arg(long, value_name = "ENTRIES")]
    pub snapshot_entries: Option<u64>,
    /// Cluster mode: entries kept in the log behind the applied index at
    /// compaction, so a follower that lags by less catches up from the log
    /// instead of a snapshot. Default: 5,000.
    #[arg(long, value_name = "ENTRIES")]
    pub snapshot_catchup_entries: Option<u64>,
    /// Server certificate chain (PEM) of the client API; with `--key-file`
    /// the client port speaks only TLS (HTTP/1.1 and gRPC).
    #[arg(long, env = "BEDROCK_CERT_FILE", value_name = "FILE", requires = "key_file", help_heading = "Security")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of `--cert-file`.
    #[arg(long, env = "BEDROCK_KEY_FILE", value_name = "FILE", requires = "cert_file", help_heading = "Security")]
    pub key_file: Option<PathBuf>,
    /// CA certificate (PEM) trusted to sign client certificates (with
    /// `--client-cert-auth`) and, for `--join` over TLS, the cluster's
    /// client API certificates.
    #[arg(long, env = "BEDROCK_TRUSTED_CA_FILE", value_name = "FILE", help_heading = "Security")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse client connections without a certificate signed by
    /// `--trusted-ca-file` (needs `--cert-file`).
    #[arg(long, env = "BEDROCK_CLIENT_CERT_AUTH", requires_all = ["cert_file", "trusted_ca_file"], help_heading = "Security")]
    pub client_cert_auth: bool,
    /// File of accepted bearer tokens, one per line: client requests
    /// without `Authorization: Bearer <token>` get 401 / `UNAUTHENTICATED`
    /// (`/health`, `/metrics` and gRPC health stay open).
    #[arg(long, env = "BEDROCK_AUTH_TOKEN_FILE", value_name = "FILE", help_heading = "Security")]
    pub auth_token_file: Option<PathBuf>,
    /// Certificate chain (PEM) for peer traffic: the Raft listener serves
    /// it and the node presents it to the other members (mutual TLS; needs
    /// `--peer-key-file` and `--peer-trusted-ca-file`).
    #[arg(long, env = "BEDROCK_PEER_CERT_FILE", value_name = "FILE", requires_all = ["peer_key_file", "peer_trusted_ca_file"], help_heading = "Security")]
    pub peer_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `--peer-cert-file`.
    #[arg(
        long,
        env = "BEDROCK_PEER_KEY_FILE",
        value_name = "FILE",
        requires = "peer_cert_file",
        help_heading = "Security"
    )]
    pub peer_key_file: Option<PathBuf>,
    /// CA certificate (PEM) that must have signed every peer's certificate;
    /// a peer presenting any other is refused in the TLS handshake.
    #[arg(
        long,
        env = "BEDROCK_PEER_TRUSTED_CA_FILE",
        value_name = "FILE",
        requires = "peer_cert_file",
        help_heading = "Security"
    )]
    pub peer_trusted_ca_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The client API's TLS files, if `--cert-file` is given.
    pub fn client_tls(&self) -> Option<crate::tls::TlsFiles> {
        crate::tls::TlsFiles::from_flags(&self.cert_file, &self.key_file, &self.trusted_ca_file)
    }

    /// The peer TLS files, if `--peer-cert-file` is given.
    pub fn peer_tls(&self) -> Option<crate::tls::TlsFiles> {
        crate::tls::TlsFiles::from_flags(&self.peer_cert_file, &self.peer_key_file, &self.peer_trusted_ca_file)
    }
}

/// Parses `always`, `never` or `every-ms=N` (N >= 1).
pub fn parse_sync(s: &str) -> Result<SyncPolicy, String> {
    match s {
        "always" => Ok(SyncPolicy::Always),
        "never" => Ok(SyncPolicy::Never),
        _ => match s.strip_prefix("every-ms=").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => Ok(SyncPolicy::EveryMs(ms)),
            _ => Err(format!("expected always, never or every-ms=N (N >= 1), got {s:?}")),
        },
    }
}

/// Operation measured by `bedrock bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchOp {
    /// Durable single-key writes.
    Put,
    /// Single-key reads of preloaded keys.
    Get,
}

/// A YCSB core workload run by `bedrock bench --workload` (the mixes are
/// defined in [`crate::ycsb::workload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YcsbWorkload {
    /// Update heavy: 50% read, 50% update, zipfian.
    A,
    /// Read mostly: 95% read, 5% update, zipfian.
    B,
    /// Read only: 100% read, zipfian.
    C,
    /// Read latest: 95% read, 5% insert, reads skewed to recent inserts.
    D,
    /// Short ranges: 95% scan (1..=100 records), 5% insert, zipfian.
    E,
    /// Read-modify-write: 50% read, 50% read-modify-write, zipfian.
    F,
}

/// Options of `bedrock bench`: either one operation (`--op`, the default
/// mode) or a YCSB workload (`--workload`); the two exclude each other.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The operation to measure (excludes `--workload`).
    #[arg(long, value_enum, default_value_t = BenchOp::Put)]
    pub op: BenchOp,
    /// Concurrent gRPC clients, each with its own connection (`--threads`
    /// is the same flag under its YCSB name).
    #[arg(long, visible_alias = "threads", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Total number of requests over all clients.
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Keys are drawn uniformly from this many distinct keys (and `get`
    /// preloads all of them).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Stop after this many seconds even if requests remain (with
    /// `--workload`: bounds the run phase).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run a YCSB core workload instead of a single operation.
    #[arg(long, value_enum, help_heading = "YCSB", conflicts_with_all = ["op", "requests", "key_space", "value_size"])]
    pub workload: Option<YcsbWorkload>,
    /// Records inserted by the load phase (keys `user<fnv hash of 0..N>`).
    #[arg(long, help_heading = "YCSB", requires = "workload", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    /// Operations of the run phase, over all threads.
    #[arg(long, help_heading = "YCSB", requires = "workload", default_value_t = 100_000)]
    pub operations: u64,
    /// Size of the one value field of each record, in bytes.
    #[arg(long, help_heading = "YCSB", requires = "workload", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub field_length: u32,
    /// Whether to run the load phase first (`false` when the records are
    /// already there from an earlier run with the same `--records`).
    #[arg(long, help_heading = "YCSB", requires = "workload", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub load: bool,
    /// Skip the load phase (the same as `--load false`).
    #[arg(long, help_heading = "YCSB", requires = "workload", conflicts_with = "load")]
    pub skip_load: bool,
    /// Seed of the random generators; the same seed repeats each thread's
    /// sequence of operations and keys.
    #[arg(long, help_heading = "YCSB", requires = "workload", default_value_t = 1)]
    pub seed: u64,
    /// Also write the JSON report and the chart into this directory
    /// (created if missing) as `ycsb-<workload>.json` and `.svg`.
    #[arg(long, help_heading = "YCSB", requires = "workload", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Write an SVG chart (throughput over time, latency percentiles per
    /// operation type) to this file.
    #[arg(long, help_heading = "YCSB", requires = "workload", value_name = "PATH")]
    pub chart: Option<PathBuf>,
}

impl BenchArgs {
    /// Whether the YCSB load phase runs (`--load`, unless `--skip-load`).
    pub fn load_phase(&self) -> bool {
        self.load && !self.skip_load
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["bedrock", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.data_dir, PathBuf::from("bedrock-data"));
        assert_eq!(args.client_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(args.raft_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(args.id, 1);
        assert_eq!(args.sync, SyncPolicy::Always);
        assert_eq!(args.initial_cluster, None);
        assert_eq!(args.join, None);
        assert_eq!((args.snapshot_entries, args.snapshot_catchup_entries), (None, None));
    }

    #[test]
    fn sync_policies() {
        assert_eq!(parse_sync("never"), Ok(SyncPolicy::Never));
        assert_eq!(parse_sync("every-ms=5"), Ok(SyncPolicy::EveryMs(5)));
        assert!(parse_sync("every-ms=0").is_err());
        assert!(parse_sync("every-ms=").is_err());
        assert!(parse_sync("sometimes").is_err());
    }

    #[test]
    fn endpoints_are_comma_separated() {
        let cli = Cli::try_parse_from(["bedrock", "--endpoints", "a:1,b:2", "get", "k"]).unwrap();
        assert_eq!(cli.endpoints, vec!["a:1", "b:2"]);
        let cli = Cli::try_parse_from(["bedrock", "scan", "a", "--limit", "3"]).unwrap();
        assert!(matches!(cli.command, Command::Scan { limit: 3, end: None, .. }));
    }

    fn bench(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let cli = Cli::try_parse_from(["bedrock", "bench"].iter().chain(args))?;
        let Command::Bench(args) = cli.command else { panic!("not bench") };
        Ok(args)
    }

    #[test]
    fn bench_defaults() {
        let args = bench(&[]).unwrap();
        assert_eq!((args.op, args.clients, args.requests, args.key_space), (BenchOp::Put, 16, 100_000, 100_000));
        assert_eq!((args.value_size, args.duration, args.json), (100, None, false));
        assert_eq!(args.workload, None);
        assert_eq!((args.records, args.operations, args.field_length, args.seed), (100_000, 100_000, 100, 1));
        assert!(args.load_phase());
        assert_eq!((args.output_dir, args.chart), (None, None));
    }

    #[test]
    fn bench_ycsb_flags() {
        let args = bench(&["--workload", "e", "--threads", "8", "--records", "10", "--operations", "20"]).unwrap();
        assert_eq!((args.workload, args.clients, args.records, args.operations), (Some(YcsbWorkload::E), 8, 10, 20));
        assert!(!bench(&["--workload", "a", "--skip-load"]).unwrap().load_phase());
        assert!(!bench(&["--workload", "a", "--load", "false"]).unwrap().load_phase());
        assert!(bench(&["--workload", "a", "--load", "true"]).unwrap().load_phase());
        let args = bench(&["--workload", "f", "--chart", "c.svg", "--output-dir", "out", "--duration", "5"]).unwrap();
        assert_eq!((args.chart, args.output_dir), (Some("c.svg".into()), Some("out".into())));
        assert_eq!(args.duration, Some(5));
    }

    #[test]
    fn bench_modes_exclude_each_other() {
        assert!(bench(&["--workload", "a", "--op", "get"]).is_err());
        assert!(bench(&["--workload", "a", "--requests", "5"]).is_err());
        assert!(bench(&["--workload", "a", "--skip-load", "--load", "true"]).is_err());
        assert!(bench(&["--records", "5"]).is_err(), "YCSB flags need --workload");
        assert!(bench(&["--chart", "c.svg"]).is_err(), "YCSB flags need --workload");
        assert!(bench(&["--workload", "g"]).is_err());
        assert!(bench(&["--workload", "a", "--field-length", "0"]).is_err());
        assert_eq!(bench(&["--op", "get", "--clients", "64"]).unwrap().op, BenchOp::Get);
    }
}
