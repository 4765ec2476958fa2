//! A container's filesystem over HTTP: `docker cp` (archive HEAD, GET and
//! PUT, with the path's stat as base64 JSON in a header), export, the list
//! of changes, and commit, which makes those changes an image.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_engine::containers::archive::PathStat;
use berth_engine::containers::CommitOptions;
use berth_engine::{ByteStream, ErrorKind};
use bollard_stubs::models::ContainerConfig;
use futures_util::TryStreamExt;
use serde_json::json;

use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::query::Query;
use crate::routes::{json_ok, json_response, AppState};
use crate::upload::upload;

/// The header `docker cp` reads a path's stat from.
pub const PATH_STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// `path`, which every archive request needs. The missing space in the
/// message is dockerd's.
fn archive_path(q: &Query) -> Result<String, ApiError> {
    q.non_empty("path")
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid("bad parameter: pathcannot be empty"))
}

/// The stat header's value: the stat's JSON, base64 (standard, padded).
pub fn path_stat_header(stat: &PathStat) -> Result<HeaderValue, ApiError> {
    let json = serde_json::to_vec(stat)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("encode path stat: {e}")))?;
    HeaderValue::from_str(&base64(&json))
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("path stat header: {e}")))
}

/// Standard base64 with padding. One short header is all this crate
/// encodes, so it is done here rather than with a new dependency.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A tar body. A failure after the first byte cannot become an error
/// response: the body is cut short so the client sees a broken tar.
fn tar_response(tar: ByteStream, what: &'static str) -> Response {
    let tar = tar.inspect_err(move |e| tracing::warn!("{what} stream failed: {e}"));
    let mut resp = Response::new(Body::from_stream(tar));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    resp
}

/// `HEAD /containers/{id}/archive?path=`.
pub(super) async fn archive_stat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let path = archive_path(&q)?;
    let stat = state.engine.archive_stat(&id, &path).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut()
        .insert(PATH_STAT_HEADER, path_stat_header(&stat)?);
    Ok(resp)
}

/// `GET /containers/{id}/archive?path=`.
pub(super) async fn archive_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let path = archive_path(&q)?;
    let (stat, tar) = state.engine.archive_get(&id, &path).await?;
    let header = path_stat_header(&stat)?;
    let mut resp = tar_response(tar, "archive");
    resp.headers_mut().insert(PATH_STAT_HEADER, header);
    Ok(resp)
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`.
pub(super) async fn archive_put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    body: Body,
) -> Result<Response, ApiError> {
    let path = archive_path(&q)?;
    let (reader, rest) = upload(body);
    let result = state
        .engine
        .archive_put(
            &id,
            &path,
            Box::new(reader),
            q.bool("noOverwriteDirNonDir"),
            q.bool("copyUIDGID"),
        )
        .await;
    // Whatever the engine did not read must still be read, or the client
    // gets a broken pipe instead of the answer.
    rest.drain().await;
    result?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /containers/{id}/export`.
pub(super) async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tar = state.engine.export_container(&id).await?;
    Ok(tar_response(tar, "export"))
}

/// `GET /containers/{id}/changes`.
pub(super) async fn changes(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let changes = state.engine.container_changes(&id).await?;
    Ok(json_ok(&changes))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`;
/// the body, if any, is a config overriding the container's.
pub(super) async fn commit(
    State(state): State<AppState>,
    q: Query,
    JsonBody(config): JsonBody<ContainerConfig>,
) -> Result<Response, ApiError> {
    let repo = q.non_empty("repo").map(str::to_string);
    let opts = CommitOptions {
        container: q.str("container").to_string(),
        // Without a repository there is nothing to tag.
        tag: q
            .non_empty("tag")
            .filter(|_| repo.is_some())
            .map(str::to_string),
        repo,
        comment: q.non_empty("comment").map(str::to_string),
        author: q.non_empty("author").map(str::to_string),
        // Pausing is the default; only an explicit false turns it off.
        pause: q.bool_or("pause", true),
        changes: q.all("changes"),
        config,
    };
    let id = state.engine.commit_container(opts).await?;
    Ok(json_response(StatusCode::CREATED, &json!({ "Id": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff, 0xfe]), "+//+");
    }

    #[test]
    fn path_stat_header_is_base64_json_as_docker_cp_decodes_it() {
        let stat = PathStat {
            name: "hosts".into(),
            size: 174,
            mode: 0o644,
            mtime: "2024-01-02T03:04:05.000000006Z".into(),
            link_target: String::new(),
        };
        let header = path_stat_header(&stat).unwrap();
        assert_eq!(
            header.to_str().unwrap(),
            base64(
                br#"{"name":"hosts","size":174,"mode":420,"mtime":"2024-01-02T03:04:05.000000006Z","linkTarget":""}"#
            )
        );
        assert_eq!(
            header.to_str().unwrap(),
            "eyJuYW1lIjoiaG9zdHMiLCJzaXplIjoxNzQsIm1vZGUiOjQyMCwibXRpbWUiOiIyMDI0LTAxLTAyVDAzOjA0OjA1LjAwMDAwMDAwNloiLCJsaW5rVGFyZ2V0IjoiIn0="
        );
    }

    #[test]
    fn archive_requests_need_a_path() {
        let err = archive_path(&Query::parse("path=").unwrap()).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.message(), "bad parameter: pathcannot be empty");
        assert_eq!(
            archive_path(&Query::parse("path=%2Fetc").unwrap()).unwrap(),
            "/etc"
        );
    }
}
