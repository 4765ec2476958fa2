//! Engine API versions as dockerd handles them: every route is served bare
//! and under `/v{version}`, a request is served at the version it names (or
//! the newest), versions outside `MIN_API_VERSION..=API_VERSION` are refused,
//! and every response says which version and server answered.

use std::cmp::Ordering;

use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_engine::{API_VERSION, MIN_API_VERSION, VERSION};

use crate::error::ApiError;

/// The API version a request is served at. Handlers use it to reproduce
/// dockerd's per-version response shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersion(String);

impl ApiVersion {
    /// A version from its `major.minor` text.
    pub fn new(v: impl Into<String>) -> Self {
        ApiVersion(v.into())
    }

    /// The newest version berth speaks.
    pub fn newest() -> Self {
        ApiVersion(API_VERSION.to_string())
    }

    /// The version as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this version is older than `other`.
    pub fn lt(&self, other: &str) -> bool {
        compare(&self.0, other) == Ordering::Less
    }

    /// Whether this version is `other` or newer.
    pub fn ge(&self, other: &str) -> bool {
        !self.lt(other)
    }
}

/// Compares dotted versions the way dockerd does: numerically part by part,
/// a missing or non-numeric part counting as 0 (so "1.4" < "1.24").
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (l, r) => {
                let l: u64 = l.and_then(|p| p.parse().ok()).unwrap_or(0);
                let r: u64 = r.and_then(|p| p.parse().ok()).unwrap_or(0);
                match l.cmp(&r) {
                    Ordering::Equal => continue,
                    other => return other,
                }
            }
        }
    }
}

/// Splits `/v1.47/images/json` into `("1.47", "/images/json")`. Only
/// `[0-9.]+` counts as a version, as in dockerd's route pattern.
pub fn split_version_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/')?;
    let (version, tail) = rest.split_at(end);
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((version, tail))
}

/// The version named in the request path, if any; set before routing.
#[derive(Debug, Clone)]
pub(crate) struct RequestedVersion(Option<String>);

/// Rewrites `/v{version}/rest` to `/rest` so one route table serves both,
/// remembering the version for [`check_version`].
pub(crate) fn strip_version_prefix(mut req: Request) -> Request {
    let mut requested = None;
    if let Some((version, tail)) = split_version_prefix(req.uri().path()) {
        let path_and_query = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                requested = Some(version.to_string());
                *req.uri_mut() = uri;
            }
        }
    }
    req.extensions_mut().insert(RequestedVersion(requested));
    req
}

/// Why a requested version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("client version {0} is too old. Minimum supported API version is {1}, please upgrade your client to a newer version")]
    TooOld(String, &'static str),
    #[error("client version {0} is too new. Maximum supported API version is {1}")]
    TooNew(String, &'static str),
}

/// The version a request is served at: the one it asked for, or the newest.
pub fn negotiate(requested: Option<&str>) -> Result<ApiVersion, VersionError> {
    let v = requested.unwrap_or(API_VERSION);
    if compare(v, MIN_API_VERSION) == Ordering::Less {
        return Err(VersionError::TooOld(v.to_string(), MIN_API_VERSION));
    }
    if compare(v, API_VERSION) == Ordering::Greater {
        return Err(VersionError::TooNew(v.to_string(), API_VERSION));
    }
    Ok(ApiVersion::new(v))
}

/// Route middleware (matched routes only, so unknown paths stay 404):
/// refuses unsupported versions and hands the version to the handler.
pub(crate) async fn check_version(mut req: Request, next: Next) -> Response {
    let requested = req
        .extensions()
        .get::<RequestedVersion>()
        .and_then(|r| r.0.clone());
    match negotiate(requested.as_deref()) {
        Ok(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        Err(e) => {
            let err = ApiError::invalid(e.to_string());
            // Clients older than 1.24 cannot read a JSON error.
            if matches!(e, VersionError::TooOld(..)) {
                err.into_plain_text().into_response()
            } else {
                err.into_response()
            }
        }
    }
}

/// The headers dockerd puts on its responses; clients negotiate their API
/// version from `Api-Version`.
pub(crate) fn stamp_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    if let Ok(server) = HeaderValue::from_str(&format!("Docker/{VERSION} (linux)")) {
        h.insert("Server", server);
    }
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_numerically_part_by_part() {
        assert_eq!(compare("1.24", "1.24"), Ordering::Equal);
        assert_eq!(compare("1.4", "1.24"), Ordering::Less);
        assert_eq!(compare("1.47", "1.100"), Ordering::Less);
        assert_eq!(compare("2.0", "1.99"), Ordering::Greater);
        assert_eq!(compare("1.24.0", "1.24"), Ordering::Equal);
        assert_eq!(compare("1.x", "1.0"), Ordering::Equal);
    }

    #[test]
    fn splits_only_numeric_version_prefixes() {
        assert_eq!(
            split_version_prefix("/v1.47/images/json"),
            Some(("1.47", "/images/json"))
        );
        assert_eq!(split_version_prefix("/v1.47"), None);
        assert_eq!(split_version_prefix("/version"), None);
        assert_eq!(split_version_prefix("/v/version"), None);
        assert_eq!(split_version_prefix("/vx.1/version"), None);
        assert_eq!(split_version_prefix("/images/json"), None);
    }

    #[test]
    fn negotiates_within_range() {
        assert_eq!(negotiate(None).unwrap().as_str(), API_VERSION);
        assert_eq!(negotiate(Some("1.24")).unwrap().as_str(), "1.24");
        assert_eq!(negotiate(Some("1.41")).unwrap().as_str(), "1.41");
    }

    #[test]
    fn refuses_out_of_range_with_dockerd_wording() {
        assert_eq!(
            negotiate(Some("1.99")).unwrap_err().to_string(),
            "client version 1.99 is too new. Maximum supported API version is 1.47"
        );
        assert_eq!(
            negotiate(Some("1.12")).unwrap_err().to_string(),
            "client version 1.12 is too old. Minimum supported API version is 1.24, \
             please upgrade your client to a newer version"
        );
    }

    #[test]
    fn version_helpers_compare_against_constants() {
        let v = ApiVersion::new("1.43");
        assert!(v.lt("1.44"));
        assert!(v.ge("1.43"));
        assert!(v.ge("1.25"));
    }

    #[test]
    fn rewrite_keeps_query() {
        let req = Request::builder()
            .uri("/v1.41/images/json?all=1")
            .body(axum::body::Body::empty())
            .unwrap();
        let req = strip_version_prefix(req);
        assert_eq!(req.uri().path(), "/images/json");
        assert_eq!(req.uri().query(), Some("all=1"));
        assert_eq!(
            req.extensions()
                .get::<RequestedVersion>()
                .unwrap()
                .0
                .as_deref(),
            Some("1.41")
        );
    }
}
