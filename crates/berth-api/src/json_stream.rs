//! Docker's JSON message stream (load, import, pull): the engine's
//! [`Progress`] values written as one JSON object per line, with the
//! pre-rendered `progress` bar text dockerd still sends for old clients.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use berth_engine::Progress;
use bytes::Bytes;
use serde::Serialize;
use std::future::Future;
use tokio::sync::mpsc;

/// One message of the stream; field order and omissions as dockerd's.
#[derive(Debug, Default, Serialize)]
struct Message<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    progress_detail: Option<ProgressDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    error_detail: Option<ErrorDetail<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aux: Option<&'a serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct ProgressDetail {
    #[serde(skip_serializing_if = "is_zero")]
    current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    total: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
}

/// Encodes one progress value as a stream line (dockerd ends lines `\r\n`).
pub fn encode(p: &Progress) -> Bytes {
    let msg = match p {
        Progress::Status {
            id,
            status,
            current,
            total,
        } => {
            let counted = current.is_some() || total.is_some();
            let (current, total) = (current.unwrap_or(0), total.unwrap_or(0));
            Message {
                status: Some(status),
                progress_detail: counted.then_some(ProgressDetail { current, total }),
                progress: counted
                    .then(|| progress_bar(current, total))
                    .filter(|s| !s.is_empty()),
                id: id.as_deref(),
                ..Default::default()
            }
        }
        Progress::Stream(text) => Message {
            stream: Some(text),
            ..Default::default()
        },
        Progress::Error(message) => Message {
            error_detail: Some(ErrorDetail { message }),
            error: Some(message),
            ..Default::default()
        },
        // dockerd sends an empty progressDetail with its aux messages.
        Progress::Aux(value) => Message {
            progress_detail: Some(ProgressDetail {
                current: 0,
                total: 0,
            }),
            aux: Some(value),
            ..Default::default()
        },
    };
    let mut line =
        serde_json::to_vec(&msg).unwrap_or_else(|_| br#"{"error":"format error"}"#.to_vec());
    line.extend_from_slice(b"\r\n");
    Bytes::from(line)
}

/// The text bar of a progress message, as dockerd renders it for a
/// 200-column terminal: `[=====>     ]  1.049MB/2.097MB`.
pub fn progress_bar(current: u64, total: u64) -> String {
    if current == 0 && total == 0 {
        return String::new();
    }
    if total == 0 {
        return format!("{:>8}", human_size(current));
    }
    let percent = ((current as f64 / total as f64 * 100.0) as u64 / 2).min(50) as usize;
    let bar = format!("[{}>{}] ", "=".repeat(percent), " ".repeat(50 - percent));
    let numbers = if current > total {
        format!("{:>8}", human_size(current))
    } else {
        format!("{:>8}/{}", human_size(current), human_size(total))
    };
    bar + &numbers
}

/// Sizes in decimal units with four significant digits (`1.049MB`, `512B`),
/// the way Docker prints them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", four_significant(size), UNITS[unit])
}

/// `%.4g` for 0 <= v < 1000: four significant digits, trailing zeros cut.
fn four_significant(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let int_digits = if v >= 1.0 {
        v.log10().floor() as i32 + 1
    } else {
        0
    };
    let decimals = (4 - int_digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A 200 response streaming `rx` as JSON messages; the body ends once the
/// channel closes and `finish` (e.g. draining the upload) is done.
pub fn response<F>(rx: mpsc::Receiver<Progress>, finish: F) -> Response
where
    F: Future<Output = ()> + Send + 'static,
{
    use futures_util::StreamExt;
    let messages = futures_util::stream::unfold(rx, |mut rx| async move {
        let p = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(encode(&p)), rx))
    });
    let end = futures_util::stream::once(finish).filter_map(|()| async { None });
    with_body(Body::from_stream(messages.chain(end)))
}

/// A 200 response whose whole stream is the one error `message` (dockerd
/// reports some failures inside the stream even before any progress).
pub fn error_response(message: &str) -> Response {
    with_body(Body::from(encode(&Progress::Error(message.to_string()))))
}

fn with_body(body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: Progress) -> String {
        String::from_utf8(encode(&p).to_vec()).unwrap()
    }

    #[test]
    fn human_sizes_match_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_048_576), "1.049MB");
        assert_eq!(human_size(2_097_152), "2.097MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
        assert_eq!(human_size(4_400_000_000), "4.4GB");
    }

    #[test]
    fn bar_has_fifty_cells() {
        assert_eq!(
            progress_bar(1_048_576, 2_097_152),
            format!("[{}>{}]  1.049MB/2.097MB", "=".repeat(25), " ".repeat(25))
        );
        assert_eq!(progress_bar(5, 0), "      5B");
        assert_eq!(progress_bar(0, 0), "");
        assert!(progress_bar(10, 5).ends_with("]      10B"));
    }

    #[test]
    fn encodes_status_progress_stream_and_error() {
        assert_eq!(
            line(Progress::Status {
                id: None,
                status: "sha256:abc".into(),
                current: None,
                total: None
            }),
            "{\"status\":\"sha256:abc\"}\r\n"
        );
        let l = line(Progress::Status {
            id: Some("a1b2".into()),
            status: "Loading layer".into(),
            current: Some(512),
            total: Some(1024),
        });
        assert!(l.starts_with(
            r#"{"status":"Loading layer","progressDetail":{"current":512,"total":1024},"progress":"[="#
        ));
        assert!(l.ends_with("512B/1.024kB\",\"id\":\"a1b2\"}\r\n"));
        assert_eq!(
            line(Progress::Stream("Loaded image: busybox:latest\n".into())),
            "{\"stream\":\"Loaded image: busybox:latest\\n\"}\r\n"
        );
        assert_eq!(
            line(Progress::Error("unexpected EOF".into())),
            "{\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\r\n"
        );
    }
}
