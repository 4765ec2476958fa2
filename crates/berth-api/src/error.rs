//! The one place engine errors become HTTP: `{"message": ...}` bodies with
//! the status Docker uses for each error class (404, 409, 400, 403, 501, 500).
//! Handlers return [`ApiError`] and never pick a status code themselves.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_engine::{EngineError, ErrorKind};

/// An error response of the Engine API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    plain_text: bool,
}

impl ApiError {
    /// An error of Docker class `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            status: status_of(kind),
            message: message.into(),
            plain_text: false,
        }
    }

    /// 400: a bad parameter.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }

    /// 503: a feature that needs a swarm manager (cluster volumes), which
    /// berth never is; dockerd answers a node outside a swarm the same way.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            plain_text: false,
        }
    }

    /// 413: a buffered (JSON) request body over the limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: message.into(),
            plain_text: false,
        }
    }

    /// 408: a client that stopped sending its request body.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: message.into(),
            plain_text: false,
        }
    }

    /// 404 for unknown routes and methods, worded like dockerd.
    pub fn page_not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: "page not found".to_string(),
            plain_text: false,
        }
    }

    /// The same error sent as `text/plain`: dockerd answers clients older
    /// than API 1.24 this way because they cannot parse the JSON form.
    pub fn into_plain_text(mut self) -> Self {
        self.plain_text = true;
        self
    }

    /// The same error with `context` in front of its message, as dockerd's
    /// handlers wrap some backend errors (`cannot kill container: x: ...`).
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message clients see.
    pub fn message(&self) -> &str {
        &self.message
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidParameter => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            // Client errors are the client's business; server errors are ours
            // and must reach the operator's log even without -D.
            tracing::error!(
                status = self.status.as_u16(),
                "handler error: {}",
                self.message
            );
        }
        if self.status == StatusCode::NOT_MODIFIED {
            // A 304 carries no body (Go's net/http drops the one dockerd
            // writes); start/stop of a container already in that state.
            return self.status.into_response();
        }
        if self.plain_text {
            let mut resp = (self.status, format!("{}\n", self.message)).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            return resp;
        }
        let body = serde_json::json!({ "message": self.message });
        crate::routes::json_response(self.status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_docker_statuses() {
        let cases = [
            (EngineError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (EngineError::Conflict("x".into()), StatusCode::CONFLICT),
            (
                EngineError::InvalidParameter("x".into()),
                StatusCode::BAD_REQUEST,
            ),
            (EngineError::Forbidden("x".into()), StatusCode::FORBIDDEN),
            (
                EngineError::NotImplemented("x".into()),
                StatusCode::NOT_IMPLEMENTED,
            ),
            (
                EngineError::Internal("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(ApiError::from(err).status(), status);
        }
    }

    #[test]
    fn not_modified_has_no_body() {
        let resp =
            ApiError::from(EngineError::NotModified("already started".into())).into_response();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert!(resp.headers().get(header::CONTENT_TYPE).is_none());
    }
}
