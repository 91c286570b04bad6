//! Test harness: starts the real `bedrock` binary on a loopback port chosen
//! by the OS, learns the port from the line it prints on stdout, and kills
//! it when the guard is dropped. Also a minimal HTTP/1.1 client that sends
//! exactly what curl sends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bedrock_server::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bedrock");

/// How long a server may take to start listening (debug build, busy CI).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `bedrock serve`; killed (SIGKILL) on drop.
pub struct Server {
    child: Option<Child>,
    /// Address of the client API.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts a server on `data_dir`; its stderr goes to `<data_dir>.log`.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    /// Starts a server on `data_dir` with extra `serve` arguments (the
    /// client API listens on `127.0.0.1:0` unless they give `--client-addr`).
    pub fn start_with(data_dir: &Path, extra: &[String]) -> Server {
        let log = data_dir.with_extension(format!("{}.log", std::process::id()));
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("create server log");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        if !extra.iter().any(|a| a == "--client-addr") {
            cmd.args(["--client-addr", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn bedrock serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("bedrock: serving client API on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let mut server = Server { child: Some(child), addr: ([0, 0, 0, 0], 0).into(), log };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => server.addr = addr.parse().expect("printed address parses"),
            Err(err) => panic!("server did not announce its address ({err}); log:\n{}", server.log()),
        }
        assert!(server.addr.ip().is_loopback(), "server must listen on loopback only");
        server
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `host:port` of the client API, as the CLI takes it.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The process id, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (no chance to flush) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: libc::c_int, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet (so
        // it cannot have been reused) and a valid signal number.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not exit within {timeout:?} of signal {signal}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A gRPC client connected to this server.
    pub async fn grpc(&self) -> Client {
        bedrock_server::client::connect(&[self.endpoint()], &Default::default()).await.expect("connect gRPC client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A fresh temporary directory plus the data directory inside it.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    (tmp, data)
}

/// An HTTP response: status code, headers (lower-cased names) and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request the way curl does (`-d` adds the form
/// content type) and reads the response until the server closes.
pub async fn http(addr: SocketAddr, method: &str, target: &str, body: Option<&[u8]>) -> HttpResponse {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect HTTP");
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nConnection: close\r\n"
        );
        if let Some(body) = body {
            req.push_str(&format!(
                "Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        stream.write_all(&bytes).await.expect("send HTTP request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read HTTP response");
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(30), fut).await.expect("HTTP request timed out")
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of HTTP headers");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    assert!(
        !headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
        "this tiny client does not decode chunked bodies"
    );
    HttpResponse { status, headers, body: raw[split + 4..].to_vec() }
}
