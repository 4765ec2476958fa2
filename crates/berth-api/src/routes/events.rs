//! `GET /events`: since/until and filters parsed as dockerd parses them,
//! then the engine's event stream written as one JSON object per line,
//! with the legacy `status`/`id`/`from` fields and the per-version
//! quirks of this endpoint family kept here.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use berth_engine::events::{EventFilter, EventStream, TimeWindow};
use bollard_stubs::models::{EventMessage, EventMessageTypeEnum};
use bytes::Bytes;
use serde::Serialize;

use super::AppState;
use crate::error::ApiError;
use crate::filters::parse_filters;
use crate::query::Query;
use crate::version::ApiVersion;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

async fn events(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: Query,
) -> Result<Response, ApiError> {
    let since = parse_event_time("since", q.str("since"))?;
    let until = parse_event_time("until", q.str("until"))?;
    if let Some(u) = until {
        if u < since.unwrap_or(0) {
            return Err(ApiError::invalid(format!(
                "`since` time ({}) cannot be after `until` time ({})",
                q.str("since"),
                q.str("until")
            )));
        }
    }
    let filters = parse_filters(q.str("filters"))?;
    let stream = state
        .engine
        .events()
        .listen(EventFilter::new(&filters), TimeWindow { since, until });
    Ok(stream_response(stream, v))
}

/// dockerd's `ParseUnixTimestamp`: empty is unset; otherwise `seconds`
/// or `seconds.fraction` (the CLI turns `10m` or RFC 3339 into this form
/// before sending). Returns Unix nanoseconds.
fn parse_event_time(name: &str, value: &str) -> Result<Option<i64>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        ApiError::invalid(format!(
            "invalid value for '{name}': invalid timestamp {value:?}: {why}"
        ))
    };
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs
        .parse()
        .map_err(|_| bad(&format!("invalid seconds {secs:?}: invalid syntax")))?;
    if frac.len() > 20 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("invalid nanoseconds"));
    }
    let mut digits = frac.chars().take(9).collect::<String>();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().unwrap_or(0);
    Ok(Some(
        secs.saturating_mul(1_000_000_000).saturating_add(nanos),
    ))
}

/// An event as dockerd writes it: the message plus the deprecated
/// `status`, `id` and `from` fields that clients of every version below
/// 1.52 still receive for container and image events.
#[derive(Serialize)]
struct Wire<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    from: &'a str,
    #[serde(flatten)]
    message: &'a EventMessage,
}

fn encode(m: &EventMessage) -> Bytes {
    let actor = m.actor.as_ref();
    let id = actor.and_then(|a| a.id.as_deref()).unwrap_or("");
    let attr = |k: &str| {
        actor
            .and_then(|a| a.attributes.as_ref())
            .and_then(|a| a.get(k))
            .map(String::as_str)
            .unwrap_or("")
    };
    let action = m.action.as_deref().unwrap_or("");
    let wire = match m.typ {
        Some(EventMessageTypeEnum::CONTAINER) => Wire {
            status: action,
            id,
            from: attr("image"),
            message: m,
        },
        Some(EventMessageTypeEnum::IMAGE) => Wire {
            status: action,
            id,
            from: "",
            message: m,
        },
        _ => Wire {
            status: "",
            id: "",
            from: "",
            message: m,
        },
    };
    let mut line = serde_json::to_vec(&wire).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Events a client at `v` must not see: image `create` arrived in 1.46.
fn hidden_from(v: &ApiVersion, m: &EventMessage) -> bool {
    v.lt("1.46")
        && m.typ == Some(EventMessageTypeEnum::IMAGE)
        && m.action.as_deref() == Some("create")
}

/// Headers go out at once (clients wait for them before reading), then
/// one line per event until the stream ends or the client leaves.
fn stream_response(stream: EventStream, v: ApiVersion) -> Response {
    let body = futures_util::stream::unfold((stream, v), |(mut stream, v)| async move {
        loop {
            let m = stream.next().await?;
            if !hidden_from(&v, &m) {
                return Some((Ok::<_, Infallible>(encode(&m)), (stream, v)));
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(body));
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
    use bollard_stubs::models::{EventActor, EventMessageScopeEnum};
    use std::collections::HashMap;

    fn message(typ: EventMessageTypeEnum, action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<HashMap<_, _>>(),
                ),
            }),
            scope: Some(EventMessageScopeEnum::LOCAL),
            time: Some(1),
            time_nano: Some(1_000_000_001),
        }
    }

    fn json(m: &EventMessage) -> serde_json::Value {
        let line = encode(m);
        assert!(line.ends_with(b"\n"));
        serde_json::from_slice(&line).unwrap()
    }

    #[test]
    fn container_events_carry_legacy_fields() {
        let v = json(&message(
            EventMessageTypeEnum::CONTAINER,
            "die",
            &[("image", "busybox"), ("exitCode", "3")],
        ));
        assert_eq!(v["status"], "die");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "die");
        assert_eq!(v["Actor"]["ID"], "abc");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["scope"], "local");
        assert_eq!(v["time"], 1);
        assert_eq!(v["timeNano"], 1_000_000_001i64);
    }

    #[test]
    fn image_events_have_no_from_and_others_no_legacy() {
        let v = json(&message(
            EventMessageTypeEnum::IMAGE,
            "tag",
            &[("name", "a:b")],
        ));
        assert_eq!(v["status"], "tag");
        assert_eq!(v["id"], "abc");
        assert!(v.get("from").is_none());
        let v = json(&message(EventMessageTypeEnum::VOLUME, "create", &[]));
        assert!(v.get("status").is_none() && v.get("id").is_none());
    }

    #[test]
    fn timestamps_parse_like_dockerd() {
        assert_eq!(parse_event_time("since", "").unwrap(), None);
        assert_eq!(
            parse_event_time("since", "1700000000").unwrap(),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_event_time("since", "1700000000.5").unwrap(),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_event_time("until", "1700000000.123456789999").unwrap(),
            Some(1_700_000_000_123_456_789)
        );
        let err = parse_event_time("since", "10m").unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().starts_with("invalid value for 'since'"));
        assert!(parse_event_time("until", "1.-5").is_err());
    }

    #[test]
    fn image_create_is_hidden_before_1_46() {
        let m = message(EventMessageTypeEnum::IMAGE, "create", &[]);
        assert!(hidden_from(&ApiVersion::new("1.45"), &m));
        assert!(!hidden_from(&ApiVersion::new("1.46"), &m));
        let m = message(EventMessageTypeEnum::IMAGE, "tag", &[]);
        assert!(!hidden_from(&ApiVersion::new("1.24"), &m));
    }
}
