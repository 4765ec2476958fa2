//! Container streams: logs (stdcopy-framed unless the container has a
//! TTY), attach (the connection hijacked), and wait, whose 200 goes out at
//! once while the result follows whenever the container gets there — the
//! docker CLI waits before it starts a container.

use std::convert::Infallible;
use std::future::Future;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Extension;
use berth_engine::containers::{AttachOptions, LogsOptions, WaitCondition};
use bollard_stubs::models::ContainerWaitResponse;
use bytes::Bytes;

use crate::error::ApiError;
use crate::hijack::Hijack;
use crate::query::Query;
use crate::routes::{json_ok, AppState};
use crate::stdcopy;
use crate::version::ApiVersion;

/// `GET /containers/{id}/logs`.
pub(super) async fn logs(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    // Checked before the stream starts: once it has, errors cannot change
    // the status any more.
    let stdout = q.bool("stdout");
    let stderr = q.bool("stderr");
    if !stdout && !stderr {
        return Err(ApiError::invalid(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let since = log_time(q.str("since")).map_err(|e| e.context(r#"invalid value for "since""#))?;
    let until = match q.str("until") {
        "0" => None,
        until => log_time(until).map_err(|e| e.context(r#"invalid value for "until""#))?,
    };
    let opts = LogsOptions {
        follow: q.bool("follow"),
        stdout,
        stderr,
        since,
        until,
        timestamps: q.bool("timestamps"),
        tail: tail_lines(q.str("tail")),
    };
    let (tty, output) = state.engine.container_logs(&id, opts).await?;
    let mut resp = Response::new(stdcopy::body(output, !tty));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stdcopy::content_type(!tty, &v)),
    );
    Ok(resp)
}

/// A log `since`/`until` value: Unix seconds with an optional fraction
/// (`1700000000.123456789`), which is how every client sends them (the
/// CLI turns `10m` and dates into this form itself). More than nine
/// fraction digits are cut, as dockerd does.
pub(super) fn log_time(value: &str) -> Result<Option<(i64, u32)>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |why: String| ApiError::invalid(format!("invalid timestamp {value:?}: {why}"));
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, f),
        None => (value, ""),
    };
    let seconds = secs.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        bad(format!("invalid seconds {secs:?}: {why}"))
    })?;
    const MAX_FRACTION_DIGITS: usize = 20;
    if frac.len() > MAX_FRACTION_DIGITS {
        return Err(bad(format!(
            "invalid nanoseconds: length {} exceeds maximum {MAX_FRACTION_DIGITS}",
            frac.len()
        )));
    }
    if let Some((pos, c)) = frac.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(bad(format!(
            "invalid nanoseconds: invalid character {c:?} at position {pos}"
        )));
    }
    let digits = &frac[..frac.len().min(9)];
    let nanos = format!("{digits:0<9}").parse::<u32>().unwrap_or(0);
    Ok(Some((seconds, nanos)))
}

/// `tail`: a line count, or everything for `all`, garbage and negatives.
pub(super) fn tail_lines(value: &str) -> Option<usize> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}

/// `POST /containers/{id}/attach`.
pub(super) async fn attach(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    q: Query,
    hijack: Hijack,
) -> Result<Response, ApiError> {
    let opts = AttachOptions {
        stdin: q.bool("stdin"),
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        stream: q.bool("stream"),
        logs: q.bool("logs"),
        detach_keys: q.non_empty("detachKeys").map(str::to_string),
    };
    let session = state.engine.attach_container(&id, opts).await?;
    Ok(hijack.respond(session, &v))
}

/// `condition` of `POST /containers/{id}/wait`; empty means not-running.
pub(super) fn wait_condition(value: &str) -> Result<WaitCondition, ApiError> {
    match value {
        "" | "not-running" => Ok(WaitCondition::NotRunning),
        "next-exit" => Ok(WaitCondition::NextExit),
        "removed" => Ok(WaitCondition::Removed),
        other => Err(ApiError::invalid(format!("invalid condition: {other:?}"))),
    }
}

/// `POST /containers/{id}/wait`.
pub(super) async fn wait(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    if v.lt("1.30") {
        // No conditions yet, and the whole answer came at the end.
        let done = state
            .engine
            .wait_container(&id, WaitCondition::NotRunning)
            .await?;
        return Ok(json_ok(&done.await));
    }
    let condition = wait_condition(q.str("condition"))?;
    let done = state.engine.wait_container(&id, condition).await?;
    // Before 1.34 a removal that failed was reported as an empty body.
    let silent_failure = condition == WaitCondition::Removed && v.lt("1.34");
    Ok(wait_response(done, silent_failure))
}

/// A 200 whose head is sent now and whose JSON body follows when `done`
/// resolves. A client that hangs up drops the body, and with it the wait.
fn wait_response<F>(done: F, silent_failure: bool) -> Response
where
    F: Future<Output = ContainerWaitResponse> + Send + 'static,
{
    let body = futures_util::stream::once(async move {
        let result = done.await;
        if silent_failure && result.error.is_some() {
            return Ok::<_, Infallible>(Bytes::new());
        }
        let mut line = serde_json::to_vec(&result).unwrap_or_default();
        line.push(b'\n');
        Ok(Bytes::from(line))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use axum::Router;
    use bollard_stubs::models::ContainerWaitExitError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::test_server;

    #[test]
    fn wait_conditions() {
        assert_eq!(wait_condition("").unwrap(), WaitCondition::NotRunning);
        assert_eq!(
            wait_condition("not-running").unwrap(),
            WaitCondition::NotRunning
        );
        assert_eq!(
            wait_condition("next-exit").unwrap(),
            WaitCondition::NextExit
        );
        assert_eq!(wait_condition("removed").unwrap(), WaitCondition::Removed);
        let err = wait_condition("stopped").unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(err.message(), r#"invalid condition: "stopped""#);
    }

    #[test]
    fn log_times_are_seconds_with_a_fraction() {
        assert_eq!(log_time("").unwrap(), None);
        assert_eq!(log_time("1700000000").unwrap(), Some((1_700_000_000, 0)));
        assert_eq!(
            log_time("1700000000.5").unwrap(),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(
            log_time("1700000000.123456789123").unwrap(),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(log_time("-1.000000001").unwrap(), Some((-1, 1)));
        assert_eq!(log_time("5.").unwrap(), Some((5, 0)));
        assert_eq!(
            log_time("10m").unwrap_err().message(),
            r#"invalid timestamp "10m": invalid seconds "10m": invalid syntax"#
        );
        assert_eq!(
            log_time("1.+5").unwrap_err().message(),
            r#"invalid timestamp "1.+5": invalid nanoseconds: invalid character '+' at position 0"#
        );
        assert!(log_time("1.000000000000000000001").is_err());
    }

    #[test]
    fn tail_counts() {
        assert_eq!(tail_lines("5"), Some(5));
        assert_eq!(tail_lines("0"), Some(0));
        assert_eq!(tail_lines("all"), None);
        assert_eq!(tail_lines(""), None);
        assert_eq!(tail_lines("-1"), None);
    }

    #[tokio::test]
    async fn wait_sends_its_head_before_the_result() {
        let (tx, rx) = tokio::sync::oneshot::channel::<i64>();
        let rx = std::sync::Mutex::new(Some(rx));
        let done = async move {
            let code = rx.lock().unwrap().take().unwrap();
            ContainerWaitResponse {
                status_code: code.await.unwrap(),
                error: None,
            }
        };
        let done = std::sync::Arc::new(std::sync::Mutex::new(Some(done)));
        let router = Router::new().route(
            "/wait",
            post(move || {
                let done = done.lock().unwrap().take().unwrap();
                async move { wait_response(done, false) }
            }),
        );
        let mut client = test_server::connect(router);
        client
            .write_all(b"POST /wait HTTP/1.1\r\nHost: berth\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        // The container has not exited, yet the client already has a 200.
        let head = test_server::read_head(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: application/json\r\n"));
        tx.send(3).unwrap();
        let mut rest = vec![0u8; 256];
        let mut got = String::new();
        while !got.contains("\r\n0\r\n\r\n") {
            let n = client.read(&mut rest).await.unwrap();
            assert!(n > 0, "connection closed early: {got}");
            got.push_str(std::str::from_utf8(&rest[..n]).unwrap());
        }
        assert!(got.contains("{\"StatusCode\":3}\n"), "{got}");
    }

    #[tokio::test]
    async fn old_removal_waits_report_failure_as_an_empty_body() {
        let failed = ContainerWaitResponse {
            status_code: 0,
            error: Some(ContainerWaitExitError {
                message: Some("removal failed".into()),
            }),
        };
        let resp = wait_response(std::future::ready(failed.clone()), true);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body.is_empty());
        let resp = wait_response(std::future::ready(failed), false);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            &body[..],
            b"{\"StatusCode\":0,\"Error\":{\"Message\":\"removal failed\"}}\n"
        );
    }
}
