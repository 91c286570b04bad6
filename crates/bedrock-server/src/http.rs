//! The HTTP/1.1 front end (the original Bedrock's curl-friendly API).
//!
//! | route                              | answer                                      |
//! |------------------------------------|---------------------------------------------|
//! | `PUT /put?key=K` (body = value)    | 200, empty body                             |
//! | `GET /get?key=K`                   | 200 with the raw value, 404 if missing      |
//! | `DELETE /delete?key=K`             | 200 (also for a missing key)                |
//! | `GET /scan?start=S&end=E&limit=N`  | 200, `{"kvs":[{"key","value"}],"count":n,"revision":r}` |
//! | `GET /health`                      | 200, `{"status":"ok"}`                      |
//! | `POST /txn` (JSON body)            | 200, JSON result (see [`crate::json`])      |
//!
//! Writes and reads set an `x-bedrock-revision` response header. The `PUT`
//! body is taken raw whatever its `Content-Type` (`curl -d` sends
//! `application/x-www-form-urlencoded` without encoding anything), and the
//! `/txn` body is parsed as JSON whatever its `Content-Type`.
//!
//! Keys given in query strings are text: percent-decoded bytes that are not
//! valid UTF-8 are replaced by U+FFFD, and the JSON of `/scan` and `/txn`
//! shows keys and values as UTF-8 strings, replacing invalid bytes the same
//! way (lossy). The gRPC API is binary-safe; use it for binary data.
//!
//! `/scan` is bounded: `limit` defaults to [`SCAN_DEFAULT_LIMIT`] and must be
//! between 1 and [`SCAN_MAX_LIMIT`]; the gRPC `Scan` stream has no such bound.
//!
//! Errors answer with a 4xx or 5xx status (see [`ApiError`]) and one line of
//! plain text saying why.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::ApiError;
use crate::json::{self, ScanJson, TxnJson, TxnResultJson};
use crate::read::ScanRange;
use crate::store::{Store, MAX_REQUEST_BYTES};

/// Entries returned by `/scan` when no `limit` is given.
pub const SCAN_DEFAULT_LIMIT: usize = 1_000;
/// Largest `limit` `/scan` accepts.
pub const SCAN_MAX_LIMIT: usize = 100_000;

/// Response header carrying the revision of a write or of a read's snapshot.
pub const REVISION_HEADER: HeaderName = HeaderName::from_static("x-bedrock-revision");

/// The HTTP routes, with the body limit and a plain-text 405 answer.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/put", put(put_key))
        .route("/get", get(get_key))
        .route("/delete", delete(delete_key))
        .route("/scan", get(scan))
        .route("/health", get(health))
        .route("/txn", post(txn))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(store)
}

/// Answer for a path no route matches: gRPC's `Unimplemented` for gRPC
/// requests (an unknown service), else a plain-text 404.
pub async fn not_found(method: Method, uri: Uri, headers: axum::http::HeaderMap) -> Response {
    let grpc =
        headers.get(axum::http::header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        let status = tonic::Status::unimplemented(format!("unknown gRPC method {}", uri.path()));
        return status.into_http::<axum::body::Body>().into_response();
    }
    ApiError::NotFound(format!("no route for {method} {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let msg = format!("method {method} is not allowed on {}\n", uri.path());
    (StatusCode::METHOD_NOT_ALLOWED, msg).into_response()
}

/// Query string of the single-key routes.
#[derive(Debug, Deserialize)]
struct KeyParam {
    key: String,
}

/// Query string of `/scan`.
#[derive(Debug, Deserialize)]
struct ScanParams {
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    limit: Option<usize>,
}

/// Unwraps a query string, turning axum's rejection into a 400.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|rej| ApiError::invalid(rej.body_text()))
}

fn with_revision(revision: u64, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    resp.headers_mut().insert(REVISION_HEADER, HeaderValue::from(revision));
    resp
}

async fn put_key(
    State(store): State<Store>,
    q: Result<Query<KeyParam>, QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = query(q)?.key.into_bytes();
    let revision = store.put(key, body.to_vec()).await?;
    Ok(with_revision(revision, StatusCode::OK))
}

async fn get_key(State(store): State<Store>, q: Result<Query<KeyParam>, QueryRejection>) -> Result<Response, ApiError> {
    let key = query(q)?.key;
    let read = store.get(key.clone().into_bytes()).await?;
    match read.value {
        Some(value) => {
            let content_type = [(axum::http::header::CONTENT_TYPE, "application/octet-stream")];
            Ok(with_revision(read.revision, (content_type, value)))
        }
        None => Err(ApiError::NotFound(format!("key not found: {key}"))),
    }
}

async fn delete_key(
    State(store): State<Store>,
    q: Result<Query<KeyParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = query(q)?.key.into_bytes();
    let revision = store.delete(key).await?;
    Ok(with_revision(revision, StatusCode::OK))
}

async fn scan(
    State(store): State<Store>,
    q: Result<Query<ScanParams>, QueryRejection>,
) -> Result<Json<ScanJson>, ApiError> {
    let params = query(q)?;
    let limit = params.limit.unwrap_or(SCAN_DEFAULT_LIMIT);
    if !(1..=SCAN_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidArgument(format!(
            "limit must be between 1 and {SCAN_MAX_LIMIT} (use the gRPC Scan stream for more)"
        )));
    }
    let range = ScanRange {
        start: params.start.into_bytes(),
        end: (!params.end.is_empty()).then(|| params.end.into_bytes()),
        limit,
    };
    let read = store.scan(range).await?;
    Ok(Json(json::scan(read.value, read.revision)))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn txn(State(store): State<Store>, body: Bytes) -> Result<Json<TxnResultJson>, ApiError> {
    let req: TxnJson = serde_json::from_slice(&body)
        .map_err(|err| ApiError::InvalidArgument(format!("bad transaction JSON: {err}")))?;
    let resp = store.txn(req.into_request()?).await?;
    Ok(Json(json::txn_response(resp)))
}
