//! JSON request bodies read the way dockerd's `ReadJSON` reads them: the
//! Content-Type must be `application/json` whenever there is a body, an
//! empty body means "all defaults", `null` is the same as no body, and a
//! malformed one is a 400 whose text follows dockerd's ("invalid JSON: ...",
//! "unexpected content after JSON").

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::limits::{self, BODY_STALL_TIMEOUT, MAX_JSON_BODY};

/// A decoded JSON body; `None` when the request had none (or sent `null`).
#[derive(Debug)]
pub struct JsonBody<T>(pub Option<T>);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        if !has_body(&parts.headers) {
            check_content_type(&parts.headers, false)?;
            return Ok(JsonBody(None));
        }
        let bytes = read(&parts.headers, body).await?;
        decode::<Option<T>>(&bytes).map(JsonBody)
    }
}

/// Whether the request declares a body: a non-zero Content-Length or a
/// chunked one (Go's `ContentLength != 0`).
pub fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// dockerd's `CheckForJSON`: no Content-Type is fine only without a body;
/// otherwise it must name `application/json` (parameters allowed).
pub fn check_content_type(headers: &HeaderMap, body: bool) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if ct.is_empty() && !body {
        return Ok(());
    }
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let malformed =
        |why: &str| ApiError::invalid(format!("malformed Content-Type header ({ct}): mime: {why}"));
    if mime.is_empty() {
        return Err(malformed("no media type"));
    }
    match mime.split_once('/') {
        Some((kind, sub)) if !kind.is_empty() && !sub.is_empty() => {}
        Some(_) => return Err(malformed("expected token after slash")),
        None => return Err(malformed("expected slash after first token")),
    }
    if mime != "application/json" {
        return Err(ApiError::invalid(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )));
    }
    Ok(())
}

/// Checks the Content-Type and reads the whole body, for handlers that
/// need the raw JSON as well as a typed value (container create). Bodies
/// over [`MAX_JSON_BODY`] are a 413 and stalled ones a 408 (see `limits`).
pub async fn read(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    check_content_type(headers, has_body(headers))?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    Ok(limits::collect_body(declared, body, MAX_JSON_BODY, BODY_STALL_TIMEOUT).await?)
}

/// Decodes one JSON value from `bytes`, worded like dockerd's decoder.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "invalid JSON: got EOF while reading request body",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(&mut de).map_err(|e| invalid_json(&e, bytes))?;
    // Go's decoder reads one value and then asks whether more follows.
    de.end()
        .map_err(|_| ApiError::invalid("unexpected content after JSON"))?;
    Ok(value)
}

/// Turns a decode error into dockerd's message. Go's syntax errors name
/// the offending character, which serde's do not, so the commonest one
/// (garbage where a value should start) is rebuilt; others keep serde's
/// wording without its position suffix.
pub fn invalid_json(e: &serde_json::Error, bytes: &[u8]) -> ApiError {
    use serde_json::error::Category;
    let text = e.to_string();
    let reason = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(r, _)| r);
    let message = match e.classify() {
        Category::Eof => "unexpected EOF".to_string(),
        Category::Syntax if reason == "expected value" => match offending_char(e, bytes) {
            Some(c) => format!("invalid character {c:?} looking for beginning of value"),
            None => reason.to_string(),
        },
        _ => reason.to_string(),
    };
    ApiError::invalid(format!("invalid JSON: {message}"))
}

/// The character at the line and column a serde error points to.
fn offending_char(e: &serde_json::Error, bytes: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(bytes).ok()?;
    let line = text.lines().nth(e.line().checked_sub(1)?)?;
    line.chars().nth(e.column().checked_sub(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    struct Cfg {
        #[serde(rename = "Detach")]
        detach: Option<bool>,
    }

    fn headers(ct: Option<&str>, len: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        if let Some(len) = len {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_str(len).unwrap());
        }
        h
    }

    async fn extract(ct: Option<&str>, body: &'static str) -> Result<Option<Cfg>, ApiError> {
        let mut req = Request::builder().method("POST").uri("/x");
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req
            .header(header::CONTENT_LENGTH, body.len().to_string())
            .body(Body::from(body))
            .unwrap();
        JsonBody::<Cfg>::from_request(req, &()).await.map(|b| b.0)
    }

    #[tokio::test]
    async fn empty_and_null_bodies_mean_defaults() {
        assert_eq!(extract(None, "").await.unwrap(), None);
        assert_eq!(
            extract(Some("application/json"), "null").await.unwrap(),
            None
        );
        assert_eq!(
            extract(
                Some("application/json; charset=utf-8"),
                r#"{"Detach":true}"#
            )
            .await
            .unwrap(),
            Some(Cfg { detach: Some(true) })
        );
    }

    #[tokio::test]
    async fn a_body_needs_the_json_content_type() {
        let err = extract(Some("text/plain"), "{}").await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message(),
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        );
        // Go checks a Content-Type that is present even without a body.
        let err = extract(Some("text/plain"), "").await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err = extract(None, "{}").await.unwrap_err();
        assert_eq!(
            err.message(),
            "malformed Content-Type header (): mime: no media type"
        );
        let err = extract(Some("json"), "{}").await.unwrap_err();
        assert_eq!(
            err.message(),
            "malformed Content-Type header (json): mime: expected slash after first token"
        );
    }

    #[test]
    fn malformed_json_is_worded_like_dockerd() {
        let msg = |b: &str| {
            decode::<Cfg>(b.as_bytes())
                .unwrap_err()
                .message()
                .to_string()
        };
        assert_eq!(msg(""), "invalid JSON: got EOF while reading request body");
        assert_eq!(
            msg("  \n"),
            "invalid JSON: got EOF while reading request body"
        );
        assert_eq!(msg(r#"{"Detach":"#), "invalid JSON: unexpected EOF");
        assert_eq!(
            msg("x{}"),
            "invalid JSON: invalid character 'x' looking for beginning of value"
        );
        assert_eq!(msg("{} {}"), "unexpected content after JSON");
        assert!(msg(r#"{"Detach":"yes"}"#).starts_with("invalid JSON: invalid type: string"));
    }

    #[test]
    fn declared_bodies() {
        assert!(!has_body(&headers(None, None)));
        assert!(!has_body(&headers(None, Some("0"))));
        assert!(has_body(&headers(None, Some("2"))));
        let mut chunked = HeaderMap::new();
        chunked.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(has_body(&chunked));
    }
}
