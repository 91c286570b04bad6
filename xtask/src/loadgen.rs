//! A small closed-loop HTTP/1.1 load generator for `cargo xtask bench
//! cluster`, so Bedrock and etcd are driven by the same client: one OS
//! thread per concurrent client, each with one keep-alive connection to an
//! endpoint (spread round robin), one request at a time. It speaks just
//! enough HTTP/1.1 for the two servers (`Content-Length` and chunked
//! bodies). Also the one-shot requests the recovery measurements poll
//! with.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Which server's put request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Bedrock: `PUT /put?key=K` with the raw value as the body.
    Bedrock,
    /// etcd's v3 JSON gateway: `POST /v3/kv/put` with base64 key and value.
    Etcd,
}

/// The result of [`run_puts`].
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Requests answered 200.
    pub completed: u64,
    /// Requests that failed (another status or an I/O error).
    pub errors: u64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Median latency of successful requests, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `requests` puts of `value_size`-byte values over `clients`
/// connections spread over `endpoints`, stopping early after `limit`.
pub fn run_puts(
    api: Api,
    endpoints: &[String],
    clients: usize,
    requests: u64,
    value_size: usize,
    limit: Duration,
) -> Result<Report> {
    let issued = Arc::new(AtomicU64::new(0));
    let value = Arc::new(vec![b'x'; value_size]);
    let start = Instant::now();
    let deadline = start + limit;
    let mut threads = Vec::new();
    for c in 0..clients {
        let addr: SocketAddr = endpoints[c % endpoints.len()].parse().context("endpoint is IP:PORT")?;
        let (issued, value) = (issued.clone(), value.clone());
        threads.push(std::thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut conn: Option<Conn> = None;
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= requests || Instant::now() > deadline {
                    return (latencies, errors);
                }
                let request = put_request(api, addr, &format!("bench/{i:012}"), &value);
                if conn.is_none() {
                    match Conn::open(addr) {
                        Ok(c) => conn = Some(c),
                        Err(_) => {
                            errors += 1;
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let t = Instant::now();
                match c.send(&request) {
                    Ok((200, _)) => latencies.push(t.elapsed().as_micros() as u64),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = None;
                    }
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().map_err(|_| anyhow::anyhow!("load thread panicked"))?;
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied();
    let ms = |v: Option<u64>| v.map_or(f64::NAN, |us| us as f64 / 1000.0);
    Ok(Report {
        completed: all.len() as u64,
        errors,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_ms: ms(pct(0.50)),
        p99_ms: ms(pct(0.99)),
    })
}

fn put_request(api: Api, addr: SocketAddr, key: &str, value: &[u8]) -> Vec<u8> {
    let (head, body) = match api {
        Api::Bedrock => (format!("PUT /put?key={key} HTTP/1.1\r\n"), value.to_vec()),
        Api::Etcd => {
            let json = format!(r#"{{"key":"{}","value":"{}"}}"#, base64(key.as_bytes()), base64(value));
            ("POST /v3/kv/put HTTP/1.1\r\nContent-Type: application/json\r\n".to_string(), json.into_bytes())
        }
    };
    let mut req = format!("{head}Host: {addr}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(&body);
    req
}

/// Standard base64 with padding (RFC 4648), as etcd's gateway expects.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects (2 s timeout); requests time out after 10 s.
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(Conn { reader: BufReader::new(stream) })
    }

    /// Sends `request` and reads the response: status and body.
    pub fn send(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.reader.get_mut().write_all(request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("HTTP status line")?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.reader.read_exact(&mut body)?;
        }
        Ok((status, body))
    }
}

/// One request on a fresh connection: `(status, body)`.
pub fn request(addr: &str, method: &str, target: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let addr: SocketAddr = addr.parse().context("endpoint is IP:PORT")?;
    let mut conn = Conn::open(addr)?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    if method == "POST" {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    conn.send(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn put_requests_are_well_formed() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let req = String::from_utf8(put_request(Api::Bedrock, addr, "k", b"vv")).unwrap();
        assert_eq!(req, "PUT /put?key=k HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Length: 2\r\n\r\nvv");
        let req = String::from_utf8(put_request(Api::Etcd, addr, "k", b"v")).unwrap();
        assert!(req.starts_with("POST /v3/kv/put HTTP/1.1\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n{\"key\":\"aw==\",\"value\":\"dg==\"}"), "{req}");
    }
}
