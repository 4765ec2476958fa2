//! `GET /system/df?type=`: which parts to compute (dockerd's `type`
//! rules, ignored before API 1.42), then the engine's disk usage in
//! dockerd's body, with this endpoint's per-version quirks: `VirtualSize`
//! on images before 1.44, and an empty `BuildCache` (berth has no
//! builder, so it reports the empty cache dockerd reports without builds).

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use berth_engine::disk_usage::{DiskUsage, DiskUsageOptions};
use serde_json::{json, Value};

use super::{json_ok, AppState};
use crate::error::ApiError;
use crate::query::Query;
use crate::version::ApiVersion;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/system/df", get(disk_usage))
}

/// What `type=` asked for, build cache included.
fn parts(q: &Query, v: &ApiVersion) -> Result<(DiskUsageOptions, bool), ApiError> {
    let types = q.all("type");
    if v.lt("1.42") || !q.contains("type") {
        return Ok((DiskUsageOptions::ALL, true));
    }
    let mut opts = DiskUsageOptions {
        containers: false,
        images: false,
        volumes: false,
    };
    let mut build_cache = false;
    for t in types {
        match t.as_str() {
            "container" => opts.containers = true,
            "image" => opts.images = true,
            "volume" => opts.volumes = true,
            "build-cache" => build_cache = true,
            other => return Err(ApiError::invalid(format!("unknown object type: {other}"))),
        }
    }
    Ok((opts, build_cache))
}

async fn disk_usage(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: Query,
) -> Result<Response, ApiError> {
    let (opts, build_cache) = parts(&q, &v)?;
    let du = if opts.containers || opts.images || opts.volumes {
        Some(state.engine.disk_usage(opts).await?)
    } else {
        None
    };
    Ok(json_ok(&body(du.as_deref(), build_cache, &v)))
}

fn to_value<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap_or(Value::Null)
}

/// dockerd's `types.DiskUsage` for a client at `v`.
fn body(du: Option<&DiskUsage>, build_cache: bool, v: &ApiVersion) -> Value {
    let mut images = du.and_then(|d| d.images.as_ref()).map(to_value);
    if v.lt("1.44") {
        if let Some(Value::Array(list)) = images.as_mut() {
            for img in list {
                if let Some(obj) = img.as_object_mut() {
                    let size = obj.get("Size").cloned().unwrap_or(json!(0));
                    obj.insert("VirtualSize".into(), size);
                }
            }
        }
    }
    json!({
        "LayersSize": du.map_or(0, |d| d.layers_size),
        "Images": images,
        "Containers": du.and_then(|d| d.containers.as_ref()).map(to_value),
        "Volumes": du.and_then(|d| d.volumes.as_ref()).map(to_value),
        "BuildCache": build_cache.then(|| json!([])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::ImageSummary;

    #[test]
    fn type_selects_parts_from_1_42() {
        let q = Query::parse("type=image&type=volume").unwrap();
        let (o, bc) = parts(&q, &ApiVersion::new("1.47")).unwrap();
        assert!(o.images && o.volumes && !o.containers && !bc);
        let (o, bc) = parts(&q, &ApiVersion::new("1.41")).unwrap();
        assert_eq!(o, DiskUsageOptions::ALL);
        assert!(bc);
        let (o, bc) = parts(&Query::parse("").unwrap(), &ApiVersion::new("1.47")).unwrap();
        assert_eq!(o, DiskUsageOptions::ALL);
        assert!(bc);
        let err = parts(
            &Query::parse("type=layers").unwrap(),
            &ApiVersion::new("1.47"),
        )
        .unwrap_err();
        assert_eq!(err.message(), "unknown object type: layers");
    }

    #[test]
    fn body_has_nulls_for_parts_not_asked_and_virtual_size_before_1_44() {
        let du = DiskUsage {
            layers_size: 10,
            images: Some(vec![ImageSummary {
                id: "sha256:a".into(),
                size: 10,
                ..Default::default()
            }]),
            containers: None,
            volumes: None,
        };
        let b = body(Some(&du), false, &ApiVersion::new("1.43"));
        assert_eq!(b["LayersSize"], 10);
        assert_eq!(b["Images"][0]["VirtualSize"], 10);
        assert!(b["Containers"].is_null() && b["Volumes"].is_null() && b["BuildCache"].is_null());
        let b = body(Some(&du), true, &ApiVersion::new("1.47"));
        assert!(b["Images"][0].get("VirtualSize").is_none());
        assert_eq!(b["BuildCache"], json!([]));
        let b = body(None, true, &ApiVersion::new("1.47"));
        assert_eq!(b["LayersSize"], 0);
        assert!(b["Images"].is_null());
    }
}
