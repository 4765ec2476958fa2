//! The debug request log (`berthd -D`): one line per API request with
//! method, path, status and duration, plus small JSON request bodies with
//! secret-looking fields masked, as dockerd's debug middleware does.
//! A tower layer, so every route is covered and streaming bodies still stream.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method};
use axum::response::Response;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tower::{Layer, Service};

use crate::limits;

/// Bodies larger than this are never buffered for the log (dockerd: 4 KiB).
const MAX_LOGGED_BODY: u64 = 4096;

/// Field names whose values never reach the log, compared case-insensitively.
/// `data` is the base64 payload of secret and config create requests.
const SECRET_KEYS: [&str; 6] = [
    "data",
    "jointoken",
    "password",
    "secret",
    "signingcakey",
    "unlockkey",
];

/// Adds [`RequestLog`] around a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLogLayer;

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog { inner }
    }
}

/// Logs each request at debug level when debug logging is on.
#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
}

impl<S> Service<Request> for RequestLog<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone is ready only after poll_ready; keep the ready one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return Box::pin(inner.call(req));
        }
        Box::pin(async move {
            let start = Instant::now();
            let method = req.method().clone();
            let uri = req.uri().to_string();
            let (req, form) = capture_json_body(req).await;
            let resp = inner.call(req).await?;
            let status = resp.status().as_u16();
            let duration = start.elapsed();
            match form {
                Some(form) => tracing::debug!(
                    target: "berth_api::request",
                    %method, path = %uri, status, ?duration, form_data = %form, "api request"
                ),
                None => tracing::debug!(
                    target: "berth_api::request",
                    %method, path = %uri, status, ?duration, "api request"
                ),
            }
            Ok(resp)
        })
    }
}

/// Buffers a small JSON POST body so it can be logged, and hands back a
/// request whose body is the same bytes. Anything else passes untouched.
async fn capture_json_body(req: Request) -> (Request, Option<String>) {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    // Only a declared small length: a chunked body may be a long stream
    // that must not be held back for the log.
    let small = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0 && n <= MAX_LOGGED_BODY);
    if req.method() != Method::POST || !is_json || !small {
        return (req, None);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = req.into_parts();
    // Bounded in time as the handler's own read would be: a client that
    // declares a small body and never sends it must not hang here.
    match limits::collect_body(
        declared,
        body,
        MAX_LOGGED_BODY as usize,
        limits::BODY_STALL_TIMEOUT,
    )
    .await
    {
        Ok(bytes) => {
            let form = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(Value::is_object)
                .map(|mut v| {
                    mask_secrets(&mut v);
                    v.to_string()
                });
            (Request::from_parts(parts, Body::from(bytes)), form)
        }
        Err(e) => {
            // Hand the handler the same failure it would have seen.
            let failed = futures_util::stream::once(async move { Err::<bytes::Bytes, _>(e) });
            (Request::from_parts(parts, Body::from_stream(failed)), None)
        }
    }
}

/// Replaces the value of every secret-looking field, at any depth, with
/// `*****`.
pub fn mask_secrets(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_KEYS.iter().any(|s| s.eq_ignore_ascii_case(k)) {
                    *val = Value::String("*****".into());
                } else {
                    mask_secrets(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_secret_fields_at_any_depth_case_insensitively() {
        let mut v = json!({
            "Name": "n",
            "Data": "Zm9v",
            "PASSWORD": "p",
            "Spec": {"JoinToken": "t", "list": [{"secret": "s", "keep": 1}]},
            "UnlockKey": {"nested": "gone"},
            "signingcakey": "k",
        });
        mask_secrets(&mut v);
        assert_eq!(
            v,
            json!({
                "Name": "n",
                "Data": "*****",
                "PASSWORD": "*****",
                "Spec": {"JoinToken": "*****", "list": [{"secret": "*****", "keep": 1}]},
                "UnlockKey": "*****",
                "signingcakey": "*****",
            })
        );
    }

    #[tokio::test]
    async fn captures_small_json_and_keeps_the_body() {
        use http_body_util::BodyExt;
        let sent = r#"{"username":"u","password":"hunter"}"#;
        let req = Request::builder()
            .method(Method::POST)
            .uri("/auth")
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header(header::CONTENT_LENGTH, sent.len().to_string())
            .body(Body::from(sent))
            .unwrap();
        let (req, form) = capture_json_body(req).await;
        let logged: Value = serde_json::from_str(&form.unwrap()).unwrap();
        assert_eq!(logged, json!({"username": "u", "password": "*****"}));
        let body = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"username":"u","password":"hunter"}"#);
    }

    #[tokio::test]
    async fn leaves_streams_alone() {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/images/load")
            .header(header::CONTENT_TYPE, "application/x-tar")
            .body(Body::from("tar bytes"))
            .unwrap();
        let (_, form) = capture_json_body(req).await;
        assert!(form.is_none());
    }
}
