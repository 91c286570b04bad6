//! The server's typed request error and its mapping to HTTP status codes and
//! gRPC statuses. This is the one place where storage errors
//! (`bedrock_txn::Error`) become protocol errors; handlers only use `?`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a client request failed.
///
/// | variant           | HTTP | gRPC              |
/// |-------------------|------|-------------------|
/// | `InvalidArgument` | 400  | `InvalidArgument` |
/// | `NotFound`        | 404  | `NotFound`        |
/// | `Conflict`        | 409  | `Aborted`         |
/// | `Internal`        | 500  | `Internal`        |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong (empty or oversized key, oversized value
    /// or transaction, malformed query string or JSON, bad enum value). Not
    /// worth retrying unchanged.
    #[error("{0}")]
    InvalidArgument(String),
    /// The addressed resource does not exist (a missing key on HTTP `GET
    /// /get`, an unknown route).
    #[error("{0}")]
    NotFound(String),
    /// A transaction kept conflicting with concurrent ones after the
    /// server's bounded retries; nothing was applied. Safe to retry.
    #[error("{0}")]
    Conflict(String),
    /// Not applied and safe to retry: no leader (an election is under
    /// way), or the node is stopping. HTTP 503, gRPC `UNAVAILABLE`.
    #[error("{0}")]
    Unavailable(String),
    /// A write was proposed but its outcome is unknown (it may or may not
    /// be applied): do not retry blindly. HTTP 504, gRPC `UNKNOWN`.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// Storage or server failure; the message says what happened.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Builds an [`ApiError::InvalidArgument`] from anything printable.
    pub fn invalid(msg: impl std::fmt::Display) -> ApiError {
        ApiError::InvalidArgument(msg.to_string())
    }

    /// The HTTP status code for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OutcomeUnknown(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message on a single line (HTTP bodies are one line of plain text).
    fn one_line(&self) -> String {
        self.to_string().replace(['\r', '\n'], " ")
    }
}

impl From<bedrock_txn::Error> for ApiError {
    fn from(err: bedrock_txn::Error) -> ApiError {
        use bedrock_txn::Error;
        // `Error` is non-exhaustive and its storage payload will change with
        // the engine, so only the client-caused variants are named.
        match err {
            e @ (Error::InvalidArgument(_) | Error::TooLarge { .. }) => ApiError::InvalidArgument(e.to_string()),
            // All three mean "nothing was written; retrying may succeed".
            e @ (Error::Conflict { .. } | Error::Deadlock { .. } | Error::LockTimeout { .. }) => {
                ApiError::Conflict(e.to_string())
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<bedrock_raft::Error> for ApiError {
    fn from(err: bedrock_raft::Error) -> ApiError {
        use bedrock_raft::Error;
        match err {
            e @ (Error::Unavailable(_) | Error::NotLeader { .. } | Error::Stopped) => {
                ApiError::Unavailable(e.to_string())
            }
            e @ Error::OutcomeUnknown(_) => ApiError::OutcomeUnknown(e.to_string()),
            e @ Error::Conflict { .. } => ApiError::Conflict(e.to_string()),
            e @ Error::InvalidArgument(_) => ApiError::InvalidArgument(e.to_string()),
            Error::Storage(e) => ApiError::from(e),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> ApiError {
        // A panic inside a blocking storage call is a server bug: report it
        // to this client and keep serving the others.
        ApiError::Internal(format!("storage task failed: {err}"))
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> tonic::Status {
        match err {
            ApiError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            ApiError::NotFound(m) => tonic::Status::not_found(m),
            ApiError::Conflict(m) => tonic::Status::aborted(m),
            ApiError::Unavailable(m) => tonic::Status::unavailable(m),
            ApiError::OutcomeUnknown(m) => tonic::Status::unknown(m),
            ApiError::Internal(m) => {
                tracing::warn!(error = %m, "gRPC request failed");
                tonic::Status::internal(m)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::warn!(error = %self, "request failed");
        }
        (self.http_status(), format!("{}\n", self.one_line())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_protocol_codes() {
        let cases = [
            (bedrock_txn::Error::InvalidArgument("empty key".into()), 400, tonic::Code::InvalidArgument),
            (bedrock_txn::Error::TooLarge { size: 10, max: 5 }, 400, tonic::Code::InvalidArgument),
            (bedrock_txn::Error::Conflict { key: b"k".to_vec() }, 409, tonic::Code::Aborted),
        ];
        for (err, http, grpc) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.http_status().as_u16(), http, "{api:?}");
            assert_eq!(tonic::Status::from(api).code(), grpc);
        }
    }

    #[test]
    fn http_body_is_one_line() {
        let resp = ApiError::invalid("bad\nthing").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::invalid("bad\nthing").one_line(), "bad thing");
    }
}
