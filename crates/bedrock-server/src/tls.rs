//! TLS configuration from PEM files: the client API's server side
//! (`--cert-file --key-file`, with `--client-cert-auth` requiring client
//! certificates signed by `--trusted-ca-file`), mutual TLS between peers
//! (`--peer-cert-file --peer-key-file --peer-trusted-ca-file`, always
//! mutual), and the client side used by `--join`, the CLI and the peers.
//!
//! rustls with the ring provider; TLS 1.2 and 1.3. Certificates are
//! verified with webpki: a server certificate must name the host the client
//! dials (an IP address SAN for `127.0.0.1:9001`), a client certificate
//! must chain to the trusted CA. The flag names are etcd's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{what} {}: {reason}", path.display())]
    File {
        /// Which file (`certificate`, `private key`, `CA certificate`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the combination (e.g. the key does not match the
    /// certificate, or the CA is not a valid trust anchor).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
    /// A flag needs another one (e.g. `--client-cert-auth` without
    /// `--trusted-ca-file`).
    #[error("{0}")]
    Flags(String),
}

/// PEM files of one side of a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates trusted to sign the other side's certificates.
    pub trusted_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The files of a certificate, key and CA flag triple; `None` unless
    /// both the certificate and the key are given.
    pub fn from_flags(cert: &Option<PathBuf>, key: &Option<PathBuf>, ca: &Option<PathBuf>) -> Option<TlsFiles> {
        Some(TlsFiles { cert: cert.clone()?, key: key.clone()?, trusted_ca: ca.clone() })
    }
}

/// Reads a PEM file.
fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File { what, path: path.to_path_buf(), reason: e.to_string() })
}

/// Every certificate in `pem` (read from `path`); at least one.
fn parse_certs(pem: &[u8], path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::File { what, path: path.to_path_buf(), reason };
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The private key in `pem` (read from `path`).
fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::File {
        what: "private key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads every certificate of a PEM file.
///
/// # Errors
/// [`TlsError::File`] if the file cannot be read or holds no certificate.
pub fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(&read_pem(path, what)?, path, what)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_key(&read_pem(path, "private key")?, path)
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "CA certificate")? {
        roots.add(cert).map_err(|e| TlsError::Config(format!("CA certificate {}: {e}", path.display())))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS acceptor for a server: its certificate and key from `files`, and,
/// when `require_client_cert`, client certificates verified against
/// `files.trusted_ca` (connections without one are refused). ALPN offers
/// `h2` and `http/1.1`, so one port serves gRPC and curl.
///
/// # Errors
/// [`TlsError`] for unreadable files, a key that does not match, or
/// `require_client_cert` without a trusted CA.
pub fn acceptor(files: &TlsFiles, require_client_cert: bool) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(&files.cert, "certificate")?;
    let key = load_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if require_client_cert {
        let ca = files
            .trusted_ca
            .as_deref()
            .ok_or_else(|| TlsError::Flags("client certificate authentication needs a trusted CA file".into()))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// tonic's client TLS configuration: trust `ca` and, if given, present
/// `identity` (certificate and key files) as the client certificate.
///
/// # Errors
/// [`TlsError::File`] for an unreadable file.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    // Each file is parsed once here, so a bad one fails at start-up rather
    // than at the first connection.
    let ca_pem = read_pem(ca, "CA certificate")?;
    parse_certs(&ca_pem, ca, "CA certificate")?;
    let mut config =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca_pem));
    if let Some((cert, key)) = identity {
        let (cert_pem, key_pem) = (read_pem(cert, "certificate")?, read_pem(key, "private key")?);
        parse_certs(&cert_pem, cert, "certificate")?;
        parse_key(&key_pem, key)?;
        config = config.identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
    }
    Ok(config)
}
