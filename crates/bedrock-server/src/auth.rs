//! Bearer-token authentication of the client API (`--auth-token-file`).
//!
//! The token file holds one accepted token per line (blank lines and lines
//! starting with `#` are ignored). Every request must then carry
//! `authorization: Bearer <token>` (gRPC: the same metadata key). A request
//! without a valid token is refused before it reaches any handler, so it
//! changes nothing: HTTP answers `401 Unauthorized` with
//! `WWW-Authenticate: Bearer`, gRPC answers `UNAUTHENTICATED`.
//!
//! Not guarded, so probes and scrapers need no secret: `GET /health`,
//! `GET /metrics` and the gRPC health service. Client certificates
//! (`--client-cert-auth`) are checked earlier, in the TLS handshake.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The accepted tokens. Cheap to clone.
#[derive(Clone)]
pub struct Tokens(Arc<Vec<Vec<u8>>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets.
        write!(f, "Tokens({} accepted)", self.0.len())
    }
}

impl Tokens {
    /// Reads the token file.
    ///
    /// # Errors
    /// A message naming the file if it cannot be read, holds no token, or
    /// holds a token with characters a header cannot carry.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
        let mut tokens = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let token = line.trim();
            if token.is_empty() || token.starts_with('#') {
                continue;
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("token file {} line {}: a token is visible ASCII only", path.display(), n + 1));
            }
            tokens.push(token.as_bytes().to_vec());
        }
        if tokens.is_empty() {
            return Err(format!("token file {} holds no token", path.display()));
        }
        Ok(Tokens(Arc::new(tokens)))
    }

    /// Whether `authorization` (a header value) presents an accepted token.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(given) = authorization.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")) else {
            return false;
        };
        // Compare every token in constant time, so the answer's timing
        // does not tell how much of a guess was right.
        self.0.iter().fold(false, |ok, token| ok | constant_time_eq(token, given))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Paths that need no token.
fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/metrics") || path.starts_with("/grpc.health.v1.Health/")
}

/// Middleware: refuses requests without an accepted token (see the module
/// docs).
pub async fn require_token(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    if is_public(request.uri().path()) || tokens.accepts(request.headers().get(header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    let grpc =
        request.headers().get(header::CONTENT_TYPE).is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"));
    tracing::debug!(path = request.uri().path(), "request without a valid bearer token refused");
    if grpc {
        return tonic::Status::unauthenticated("missing or invalid bearer token").into_http::<axum::body::Body>();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or invalid bearer token (send `Authorization: Bearer <token>`)\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_tokens_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# operators\ns3cret\n\n  other-token  \n").unwrap();
        let tokens = Tokens::load(&path).unwrap();
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(tokens.accepts(Some(&header("Bearer s3cret"))));
        assert!(tokens.accepts(Some(&header("Bearer other-token"))));
        assert!(!tokens.accepts(Some(&header("Bearer s3cre"))));
        assert!(!tokens.accepts(Some(&header("Bearer s3cret2"))));
        assert!(!tokens.accepts(Some(&header("s3cret"))));
        assert!(!tokens.accepts(Some(&header("Basic s3cret"))));
        assert!(!tokens.accepts(None));
        assert_eq!(format!("{tokens:?}"), "Tokens(2 accepted)");
    }

    #[test]
    fn empty_or_unreadable_token_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# nothing\n\n").unwrap();
        assert!(Tokens::load(&path).unwrap_err().contains("holds no token"));
        assert!(Tokens::load(&dir.path().join("missing")).unwrap_err().contains("missing"));
    }
}
