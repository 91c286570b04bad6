//! TLS, mutual TLS between peers, client certificates and bearer tokens,
//! with certificates generated at run time (rcgen): TLS works end to end
//! for gRPC and HTTP/1.1, plaintext to a TLS port fails, a client or a
//! peer whose certificate another CA signed is refused (and logged), and a
//! request without a valid token gets 401 / `UNAUTHENTICATED` and changes
//! nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bedrock_proto::{Client, ClientError, ClientOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::common::{data_dir, http, Server};

/// A certificate authority that writes PEM files into a directory.
struct Pki {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("CA key");
        let ca_pem = params.self_signed(&key).expect("self-signed CA").pem();
        std::fs::write(dir.join(format!("{name}-ca.pem")), &ca_pem).expect("write CA");
        Pki { dir: dir.to_path_buf(), name: name.to_string(), issuer: Issuer::new(params, key), ca_pem }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// Issues a certificate for 127.0.0.1 and localhost; returns the
    /// certificate and key files.
    fn issue(&self, who: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, who);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let cert_file = self.dir.join(format!("{}-{who}.pem", self.name));
        let key_file = self.dir.join(format!("{}-{who}-key.pem", self.name));
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        (cert_file, key_file)
    }

    /// tonic client TLS trusting this CA, optionally presenting `identity`.
    fn client_tls(&self, identity: Option<&(PathBuf, PathBuf)>) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = identity {
            let read = |p: &Path| std::fs::read(p).expect("read PEM");
            tls = tls.identity(Identity::from_pem(read(cert), read(key)));
        }
        tls
    }

    /// rustls client config for HTTPS by hand, trusting this CA.
    fn rustls_client(&self) -> Arc<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls_pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("CA PEM");
        roots.add(ca).expect("trust CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

fn args(pairs: &[(&str, &Path)]) -> Vec<String> {
    pairs.iter().flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()]).collect()
}

async fn client(server: &Server, tls: Option<ClientTlsConfig>, token: Option<&str>) -> Result<Client, ClientError> {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        tls,
        bearer_token: token.map(str::to_string),
        ..ClientOptions::default()
    };
    Client::connect_with([server.endpoint()], options).await
}

/// One HTTP/1.1 request over TLS; returns the raw response text.
async fn https(server: &Server, pki: &Pki, request: &str) -> String {
    let connector = tokio_rustls::TlsConnector::from(pki.rustls_client());
    let tcp = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_grpc_and_https_and_refuses_plaintext() {
    let (tmp, dir) = data_dir();
    let pki = Pki::new(tmp.path(), "client-api");
    let (cert, key) = pki.issue("server");
    let server = Server::start_with(&dir, &args(&[("--cert-file", &cert), ("--key-file", &key)]));

    let mut c = client(&server, Some(pki.client_tls(None)), None).await.expect("TLS connect");
    c.put("name", "raft").await.expect("put over TLS");
    assert_eq!(c.get("name").await.expect("get over TLS"), Some(b"raft".to_vec()));

    let text = https(&server, &pki, "GET /get?key=name HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("raft"), "{text}");

    // Plaintext gRPC: the handshake fails, nothing is written.
    let mut plain = client(&server, None, None).await.map(Some).unwrap_or(None);
    if let Some(p) = plain.as_mut() {
        assert!(p.put("plain", "x").await.is_err(), "a plaintext put succeeded on a TLS port");
    }
    // Plaintext HTTP/1.1: no HTTP answer comes back.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(b"PUT /put?key=plain HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx").await.expect("send");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await;
    assert!(!String::from_utf8_lossy(&raw).contains("HTTP/1.1 200"), "plaintext HTTP was served");
    assert_eq!(c.get("plain").await.expect("get"), None, "a plaintext request changed the store");
    let log = server.log();
    assert!(log.contains("TLS handshake failed"), "refusal not logged:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_auth_refuses_missing_and_wrong_ca_certificates() {
    let (tmp, dir) = data_dir();
    let pki = Pki::new(tmp.path(), "good");
    let rogue = Pki::new(tmp.path(), "rogue");
    let (cert, key) = pki.issue("server");
    let ca = pki.ca_file();
    let mut flags = args(&[("--cert-file", &cert), ("--key-file", &key), ("--trusted-ca-file", &ca)]);
    flags.push("--client-cert-auth".into());
    let server = Server::start_with(&dir, &flags);

    let good_id = pki.issue("alice");
    let mut good = client(&server, Some(pki.client_tls(Some(&good_id))), None).await.expect("connect with a cert");
    good.put("k", "v").await.expect("put with a trusted client cert");

    // Signed by another CA (the client still trusts the server's CA).
    let rogue_id = rogue.issue("mallory");
    let mut wrong = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem));
    let read = |p: &Path| std::fs::read(p).expect("read PEM");
    wrong = wrong.identity(Identity::from_pem(read(&rogue_id.0), read(&rogue_id.1)));
    for (what, tls) in [("wrong-CA certificate", wrong), ("no certificate", pki.client_tls(None))] {
        if let Ok(mut c) = client(&server, Some(tls), None).await {
            let err = c.put("k", "changed").await.expect_err(what);
            eprintln!("{what}: refused with {err}");
        }
    }
    assert_eq!(good.get("k").await.expect("get"), Some(b"v".to_vec()), "a refused client changed the store");
    assert!(server.log().contains("TLS handshake failed"), "refusal not logged:\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_and_refused_requests_change_nothing() {
    let (tmp, dir) = data_dir();
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, "# operators\ns3cret-token\n").expect("write tokens");
    let server = Server::start_with(&dir, &args(&[("--auth-token-file", &tokens)]));

    let denied = http(server.addr, "PUT", "/put?key=k", Some(b"v")).await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(http(server.addr, "GET", "/health", None).await.status, 200, "health stays open");

    let mut anonymous = client(&server, None, None).await.expect("connect");
    match anonymous.put("k", "v").await {
        Err(ClientError::Status(s)) => assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}"),
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    let mut wrong = client(&server, None, Some("guess")).await.expect("connect");
    assert!(matches!(wrong.get("k").await, Err(ClientError::Status(s)) if s.code() == tonic::Code::Unauthenticated));

    let mut ok = client(&server, None, Some("s3cret-token")).await.expect("connect");
    assert_eq!(ok.get("k").await.expect("get with the token"), None, "a refused request changed the store");
    ok.put("k", "v").await.expect("put with the token");
    assert_eq!(ok.get("k").await.expect("get"), Some(b"v".to_vec()));

    // The CLI sends the token from --token-file.
    let out = std::process::Command::new(crate::common::BIN)
        .args(["--endpoints", &server.endpoint(), "--token-file"])
        .arg(&tokens)
        .args(["get", "k"])
        .output()
        .expect("run CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
}

/// Three members with peer mutual TLS; node 3's certificates come from
/// another CA. Nodes 1 and 2 form the majority and serve; node 3 cannot
/// exchange a single Raft message, and its attempts are logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_mtls_refuses_a_node_signed_by_another_ca() {
    let (tmp, root) = data_dir();
    std::fs::create_dir_all(&root).expect("mkdir");
    let pki = Pki::new(tmp.path(), "peers");
    let rogue = Pki::new(tmp.path(), "rogue");
    // Raft ports 0..3 and client ports 3..6, chosen together so that no
    // node's client listener can take another's raft port.
    let ports = crate::cluster_harness::free_ports(6);
    let initial = (1..=3).map(|i| format!("{i}=127.0.0.1:{}", ports[i - 1])).collect::<Vec<_>>().join(",");
    let start = |id: usize, ca: &Pki| {
        let (cert, key) = ca.issue(&format!("node{id}"));
        let ca_file = ca.ca_file();
        let mut flags =
            args(&[("--peer-cert-file", &cert), ("--peer-key-file", &key), ("--peer-trusted-ca-file", &ca_file)]);
        let raft = format!("127.0.0.1:{}", ports[id - 1]);
        flags.extend([
            "--id".into(),
            id.to_string(),
            "--raft-addr".into(),
            raft,
            "--initial-cluster".into(),
            initial.clone(),
        ]);
        flags.extend(["--client-addr".into(), format!("127.0.0.1:{}", ports[id + 2])]);
        Server::start_with(&root.join(format!("n{id}")), &flags)
    };
    let n1 = start(1, &pki);
    let n2 = start(2, &pki);
    let n3 = start(3, &rogue);

    let mut c1 = client(&n1, None, None).await.expect("connect node 1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c1.put("replicated", "yes").await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "nodes 1 and 2 never committed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let mut c2 = client(&n2, None, None).await.expect("connect node 2");
    assert_eq!(c2.get("replicated").await.expect("linearizable get on node 2"), Some(b"yes".to_vec()));

    // Node 3 never learns the entry, not even as a stale read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut c3 = client(&n3, None, None).await.expect("connect node 3");
    assert_eq!(c3.get_serializable("replicated").await.expect("serializable get on node 3"), None);
    let refused = [&n1, &n2].iter().any(|n| {
        let log = n.log();
        log.contains("TLS handshake failed") && log.contains("peer")
    });
    assert!(refused, "no node logged the refused peer:\n{}\n{}", n1.log(), n2.log());
}
