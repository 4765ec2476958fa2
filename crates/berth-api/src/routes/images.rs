//! Image endpoints: load, save, import, list, inspect, history, tag,
//! remove, prune. Image names contain slashes, so `/images/{name}/...`
//! is one catch-all route split by suffix, as dockerd's `{name:.*}` does;
//! the per-version response quirks of this family are at the bottom.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Extension, Router};
use berth_engine::images::{ImportOptions, ListImagesOptions};
use berth_engine::ErrorKind;
use futures_util::TryStreamExt;
use serde_json::{json, Value};

use super::{blocking, json_ok, AppState};
use crate::error::ApiError;
use crate::filters::parse_filters;
use crate::json_stream;
use crate::query::Query;
use crate::upload::upload;
use crate::version::ApiVersion;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(list).merge(delete_literal("json")))
        .route("/images/get", get(save_many).merge(delete_literal("get")))
        .route("/images/load", post(load).merge(delete_literal("load")))
        .route(
            "/images/create",
            post(create).merge(delete_literal("create")),
        )
        .route("/images/prune", post(prune).merge(delete_literal("prune")))
        .route(
            "/images/{*rest}",
            get(get_named).post(post_named).delete(remove),
        )
}

/// `DELETE /images/json` removes an image called "json" in dockerd; the
/// fixed routes above would otherwise shadow such names.
fn delete_literal(name: &'static str) -> MethodRouter<AppState> {
    delete(move |state: State<AppState>, q: Query| async move {
        remove_image(state, name.to_string(), q).await
    })
}

/// `GET /images/{name}/json|history|get`.
async fn get_named(
    state: State<AppState>,
    v: Extension<ApiVersion>,
    Path(rest): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    if let Some(name) = rest.strip_suffix("/json") {
        return inspect(state, v, name.to_string()).await;
    }
    if let Some(name) = rest.strip_suffix("/history") {
        return history(state, name.to_string()).await;
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save(state, vec![name.to_string()]).await;
    }
    let _ = q;
    Err(ApiError::page_not_found())
}

/// `POST /images/{name}/tag` and `/push`.
async fn post_named(
    state: State<AppState>,
    Path(rest): Path<String>,
    q: Query,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(name) = rest.strip_suffix("/tag") {
        return tag(state, name.to_string(), q).await;
    }
    if let Some(name) = rest.strip_suffix("/push") {
        return super::registry::push(&state, name.to_string(), &q, &headers).await;
    }
    Err(ApiError::page_not_found())
}

async fn list(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: Query,
) -> Result<Response, ApiError> {
    let mut filters = parse_filters(q.str("filters"))?;
    // Clients of API 1.24 and older pass a reference glob as `filter`.
    if v.lt("1.25") && !filters.contains("reference") {
        if let Some(glob) = q.non_empty("filter") {
            filters
                .0
                .entry("reference".to_string())
                .or_default()
                .push(glob.to_string());
        }
    }
    let opts = ListImagesOptions {
        all: q.bool("all"),
        filters,
        digests: q.bool("digests"),
        // shared-size arrived in 1.42; older clients never asked for it.
        shared_size: v.ge("1.42") && q.bool("shared-size"),
    };
    let images = blocking(&state, move |e| e.list_images(&opts)).await?;
    let mut value = serde_json::to_value(&images).map_err(internal)?;
    shape_image_list(&mut value, &v);
    Ok(json_ok(&value))
}

async fn inspect(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    name: String,
) -> Result<Response, ApiError> {
    let image = blocking(&state, move |e| e.inspect_image(&name)).await?;
    let mut value = serde_json::to_value(&image).map_err(internal)?;
    shape_image_inspect(&mut value, &v);
    Ok(json_ok(&value))
}

async fn history(State(state): State<AppState>, name: String) -> Result<Response, ApiError> {
    let items = blocking(&state, move |e| e.image_history(&name)).await?;
    Ok(json_ok(&items))
}

async fn tag(State(state): State<AppState>, name: String, q: Query) -> Result<Response, ApiError> {
    let repo = q.str("repo").to_string();
    let tag = q.non_empty("tag").map(str::to_string);
    blocking(&state, move |e| e.tag_image(&name, &repo, tag.as_deref())).await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn remove(
    state: State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    remove_image(state, name, q).await
}

async fn remove_image(
    State(state): State<AppState>,
    name: String,
    q: Query,
) -> Result<Response, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid("image name cannot be blank"));
    }
    let force = q.bool("force");
    let noprune = q.bool("noprune");
    let items = blocking(&state, move |e| e.remove_image(&name, force, noprune)).await?;
    Ok(json_ok(&items))
}

async fn prune(State(state): State<AppState>, q: Query) -> Result<Response, ApiError> {
    let filters = parse_filters(q.str("filters"))?;
    let report = blocking(&state, move |e| e.prune_images(&filters)).await?;
    // dockerd always sends both fields, `null` when nothing was deleted.
    Ok(json_ok(&json!({
        "ImagesDeleted": report.images_deleted,
        "SpaceReclaimed": report.space_reclaimed.unwrap_or(0),
    })))
}

async fn save_many(state: State<AppState>, q: Query) -> Result<Response, ApiError> {
    save(state, q.all("names")).await
}

async fn save(State(state): State<AppState>, names: Vec<String>) -> Result<Response, ApiError> {
    let stream = state.engine.save_images(names).await?;
    // A failure after the first byte cannot become an error response: the
    // body is cut short so the client sees a broken tar, never a complete one.
    let stream = stream.inspect_err(|e| tracing::warn!("image save stream failed: {e}"));
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(resp)
}

async fn load(State(state): State<AppState>, q: Query, body: Body) -> Response {
    // dockerd defaults to quiet when the parameter is absent.
    let quiet = q.bool_or("quiet", true);
    let (body, rest) = upload(body);
    match state.engine.load_images(Box::new(body), quiet).await {
        Ok(rx) => json_stream::response(rx, rest.drain()),
        // dockerd reports every load failure inside the 200 stream.
        Err(e) => {
            rest.drain().await;
            json_stream::error_response(&e.to_string())
        }
    }
}

/// `POST /images/create`: `fromImage` pulls from a registry; `fromSrc=-`
/// imports the request body as a rootfs.
async fn create(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: Query,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if q.non_empty("fromImage").is_some() {
        return super::registry::pull(&state, &v, &q, &headers).await;
    }
    let src = q.str("fromSrc");
    match src {
        "-" => {}
        "" => return Err(ApiError::invalid("one of fromImage or fromSrc is required")),
        url => {
            return Err(ApiError::new(
                ErrorKind::NotImplemented,
                format!("importing from a URL is not supported by berth yet (fromSrc={url})"),
            ))
        }
    }
    let opts = ImportOptions {
        repo: q.non_empty("repo").map(str::to_string),
        tag: q.non_empty("tag").map(str::to_string),
        changes: q.all("changes"),
        message: Some(
            q.non_empty("message")
                .map(str::to_string)
                .unwrap_or_else(|| format!("Imported from {src}")),
        ),
        // platform arrived in 1.32.
        platform: q
            .non_empty("platform")
            .filter(|_| v.ge("1.32"))
            .map(str::to_string),
    };
    let (body, rest) = upload(body);
    match state.engine.import_image(Box::new(body), opts).await {
        Ok(rx) => Ok(json_stream::response(rx, rest.drain())),
        Err(e) => {
            rest.drain().await;
            Err(e.into())
        }
    }
}

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::new(ErrorKind::Internal, format!("encode response: {e}"))
}

/// dockerd's `/images/json` shape for a client at `v`.
fn shape_image_list(images: &mut Value, v: &ApiVersion) {
    let Some(list) = images.as_array_mut() else {
        return;
    };
    for img in list.iter_mut().filter_map(Value::as_object_mut) {
        if v.lt("1.43") {
            let untagged = |k: &str| {
                img.get(k)
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
            };
            if untagged("RepoTags") && untagged("RepoDigests") {
                img.insert("RepoTags".into(), json!(["<none>:<none>"]));
                img.insert("RepoDigests".into(), json!(["<none>@<none>"]));
            }
        }
        if v.lt("1.44") {
            let size = img.get("Size").cloned().unwrap_or(json!(0));
            img.insert("VirtualSize".into(), size);
        }
        // Before 1.51 the per-image container count is never computed here.
        img.insert("Containers".into(), json!(-1));
        img.remove("Descriptor");
        img.remove("Manifests");
    }
}

/// The fields of Go's `container.Config` without `omitempty`: dockerd
/// sends them, empty, in image inspect (before 1.50) and container inspect.
pub(super) const LEGACY_CONFIG_FIELDS: [(&str, Value); 17] = [
    ("AttachStderr", Value::Bool(false)),
    ("AttachStdin", Value::Bool(false)),
    ("AttachStdout", Value::Bool(false)),
    ("Cmd", Value::Null),
    ("Domainname", Value::String(String::new())),
    ("Entrypoint", Value::Null),
    ("Env", Value::Null),
    ("Hostname", Value::String(String::new())),
    ("Image", Value::String(String::new())),
    ("Labels", Value::Null),
    ("OnBuild", Value::Null),
    ("OpenStdin", Value::Bool(false)),
    ("StdinOnce", Value::Bool(false)),
    ("Tty", Value::Bool(false)),
    ("User", Value::String(String::new())),
    ("Volumes", Value::Null),
    ("WorkingDir", Value::String(String::new())),
];

/// dockerd's `/images/{name}/json` shape for a client at `v`.
fn shape_image_inspect(image: &mut Value, v: &ApiVersion) {
    let Some(img) = image.as_object_mut() else {
        return;
    };
    for key in ["RepoTags", "RepoDigests"] {
        if img.get(key).is_none_or(Value::is_null) {
            img.insert(key.into(), json!([]));
        }
    }
    // Before 1.52 these were sent even when empty.
    for key in ["Parent", "Comment", "DockerVersion", "Author"] {
        img.entry(key).or_insert(json!(""));
    }
    if let Some(Value::Object(config)) = img.get_mut("Config") {
        for (key, empty) in LEGACY_CONFIG_FIELDS.iter() {
            config.entry(*key).or_insert_with(|| empty.clone());
        }
    }
    if v.lt("1.44") {
        let size = img.get("Size").cloned().unwrap_or(json!(0));
        img.insert("VirtualSize".into(), size);
        img.entry("Created")
            .or_insert(json!("0001-01-01T00:00:00Z"));
    }
    if v.lt("1.45") {
        img.entry("Container").or_insert(json!(""));
        img.entry("ContainerConfig").or_insert(Value::Null);
    }
    img.remove("Descriptor");
    img.remove("Manifests");
    img.remove("Identity");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_list_clients_get_none_tags_and_virtual_size() {
        let mut list = json!([{"Id": "sha256:a", "RepoTags": [], "RepoDigests": [], "Size": 5,
                               "Descriptor": {"x": 1}, "Containers": 0}]);
        shape_image_list(&mut list, &ApiVersion::new("1.41"));
        let img = &list[0];
        assert_eq!(img["RepoTags"], json!(["<none>:<none>"]));
        assert_eq!(img["RepoDigests"], json!(["<none>@<none>"]));
        assert_eq!(img["VirtualSize"], 5);
        assert_eq!(img["Containers"], -1);
        assert!(img.get("Descriptor").is_none());
    }

    #[test]
    fn current_list_clients_get_empty_arrays() {
        let mut list = json!([{"Id": "sha256:a", "RepoTags": [], "RepoDigests": [], "Size": 5}]);
        shape_image_list(&mut list, &ApiVersion::newest());
        assert_eq!(list[0]["RepoTags"], json!([]));
        assert!(list[0].get("VirtualSize").is_none());
    }

    #[test]
    fn inspect_carries_legacy_fields() {
        let mut img = json!({"Id": "sha256:a", "Size": 7, "Config": {"Cmd": ["sh"]}});
        shape_image_inspect(&mut img, &ApiVersion::new("1.43"));
        assert_eq!(img["RepoTags"], json!([]));
        assert_eq!(img["Comment"], "");
        assert_eq!(img["VirtualSize"], 7);
        assert_eq!(img["Container"], "");
        assert_eq!(img["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(img["Config"]["Hostname"], "");
        assert_eq!(img["Config"]["Env"], Value::Null);
    }
}
