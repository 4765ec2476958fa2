//! The dashboard's JSON and streaming endpoints under `/api/`: hosts and
//! their facts, this host's overview with its history, the merged
//! container table (this daemon and every remote host, with series since
//! the caller's last poll), one container's page (history, processes)
//! and a live event feed (server-sent events) with `docker events` filters.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::events::{EventFilter, TimeWindow};
use berth_engine::Engine;
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::hosts::{client::Lines, Hosts, Kind, RemoteHost};
use crate::view::{ContainerRow, HostInfo, HostSeries, ProcessTable, Series};

/// The dashboard's own host in URLs.
pub const LOCAL: &str = "local";

/// How long this daemon's `/info` is reused (it runs `runc --version`).
const INFO_TTL: Duration = Duration::from_secs(5);

/// What the endpoints share.
#[derive(Clone)]
pub struct DashState {
    pub engine: Arc<Engine>,
    pub hosts: Arc<Hosts>,
    info: Arc<Mutex<Option<(Instant, HostInfo)>>>,
}

impl DashState {
    pub fn new(engine: Arc<Engine>, hosts: Arc<Hosts>) -> DashState {
        DashState {
            engine,
            hosts,
            info: Arc::new(Mutex::new(None)),
        }
    }

    /// This daemon's facts, as a remote host's would be read.
    async fn local_info(&self) -> HostInfo {
        if let Some((at, info)) = self.info.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if at.elapsed() < INFO_TTL {
                return info.clone();
            }
        }
        let engine = Arc::clone(&self.engine);
        let info = tokio::task::spawn_blocking(move || {
            let info = serde_json::to_value(engine.info()).unwrap_or_default();
            let version = serde_json::to_value(engine.version()).unwrap_or_default();
            HostInfo::from_remote(&info, &version)
        })
        .await
        .unwrap_or_default();
        *self.info.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), info.clone()));
        info
    }
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "message": what }))).into_response()
}

#[derive(Debug, Serialize)]
struct HostCard {
    id: String,
    name: String,
    address: String,
    kind: Option<Kind>,
    up: bool,
    error: Option<String>,
    last_ok: Option<String>,
    info: Option<HostInfo>,
}

fn remote_card(h: &RemoteHost) -> HostCard {
    let s = h.read();
    HostCard {
        id: h.id.clone(),
        name: h.spec.name.clone(),
        address: h.spec.address.clone(),
        kind: s.kind,
        up: s.up,
        error: s.error.clone(),
        last_ok: s.last_ok.map(|t| t.to_rfc3339()),
        info: s.info.clone(),
    }
}

/// `GET /api/hosts`: this daemon first, then every remote host.
pub async fn hosts(State(st): State<DashState>) -> Json<Value> {
    let info = st.local_info().await;
    let mut cards = vec![HostCard {
        id: LOCAL.into(),
        name: info.name.clone(),
        address: "this daemon".into(),
        kind: Some(Kind::Berth),
        up: true,
        error: None,
        last_ok: Some(chrono::Utc::now().to_rfc3339()),
        info: Some(info),
    }];
    cards.extend(st.hosts.remotes.iter().map(|h| remote_card(h)));
    Json(json!(cards))
}

#[derive(Debug, Default, Deserialize)]
pub struct Since {
    /// Unix milliseconds: only points newer than this (plus one for rates).
    since: Option<i64>,
}

/// `GET /api/overview`: this host's facts, pools and history.
pub async fn overview(State(st): State<DashState>, Query(q): Query<Since>) -> Json<Value> {
    let info = st.local_info().await;
    let stats = st.engine.stats();
    let points = stats.host_history(q.since);
    let pools: Vec<Value> = st
        .engine
        .storage_space()
        .iter()
        .map(|s| json!({"pool": s.pool, "used": s.used, "total": s.total}))
        .collect();
    let disk = rustix::fs::statvfs(&st.engine.config().data_root)
        .map(|v| {
            let b = v.f_frsize.max(1);
            json!({"used": (v.f_blocks - v.f_bfree) * b, "total": v.f_blocks * b})
        })
        .unwrap_or(Value::Null);
    let tick = stats.report();
    Json(json!({
        "info": info,
        "driver": st.engine.driver().name(),
        "pools": pools,
        "disk": disk,
        "series": HostSeries::from_points(&points, q.since),
        "sampler": {
            "interval_ms": st.engine.settings().stats_interval.as_millis() as u64,
            "last_tick_ms": tick.took.as_secs_f64() * 1000.0,
            "containers": tick.containers,
        },
    }))
}

/// This daemon's containers as table rows.
fn local_rows(st: &DashState, host_name: &str, since: Option<i64>) -> Vec<ContainerRow> {
    let now = chrono::Utc::now();
    let stats = st.engine.stats();
    st.engine
        .container_records()
        .into_iter()
        .map(|c| {
            let series = stats
                .history(&c.id, since)
                .map(|p| Series::from_points(&p, since))
                .unwrap_or_default();
            ContainerRow {
                host: LOCAL.into(),
                host_name: host_name.to_string(),
                name: c.name.trim_start_matches('/').to_string(),
                image: c.config.image.clone().unwrap_or_default(),
                state: c.state.status.as_str().to_string(),
                status: c.status_text(now),
                fs_limit: st.engine.container_fs(&c.id).1,
                id: c.id,
                series,
                stale: false,
            }
        })
        .collect()
}

/// A remote host's containers as table rows.
fn remote_rows(h: &RemoteHost, since: Option<i64>) -> Vec<ContainerRow> {
    let s = h.read();
    // The name the operator gave (`name=`), else the host's own.
    let host_name = if h.spec.name != h.spec.address {
        h.spec.name.clone()
    } else {
        s.info
            .as_ref()
            .map(|i| i.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| h.spec.name.clone())
    };
    s.containers
        .iter()
        .map(|c| ContainerRow {
            host: h.id.clone(),
            host_name: host_name.clone(),
            id: c.id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            state: c.state.clone(),
            status: c.status.clone(),
            fs_limit: None,
            series: s
                .history
                .get(&c.id)
                .map(|r| {
                    let pts = match since {
                        Some(t) => r.newer_with_previous(|p| p.t > t),
                        None => r.tail(usize::MAX),
                    };
                    Series::from_points(&pts, since)
                })
                .unwrap_or_default(),
            stale: !s.up,
        })
        .collect()
}

/// `GET /api/containers?since=`: every host's containers in one table.
pub async fn containers(State(st): State<DashState>, Query(q): Query<Since>) -> Json<Value> {
    let name = st.local_info().await.name;
    let st2 = st.clone();
    let mut rows = tokio::task::spawn_blocking(move || local_rows(&st2, &name, q.since))
        .await
        .unwrap_or_default();
    for h in &st.hosts.remotes {
        rows.extend(remote_rows(h, q.since));
    }
    Json(json!({
        "now": chrono::Utc::now().timestamp_millis(),
        "containers": rows,
    }))
}

/// `GET /api/containers/{host}/{id}?since=`: one container's row with
/// its full history (or what is newer than `since`) and its details.
pub async fn container(
    State(st): State<DashState>,
    Path((host, id)): Path<(String, String)>,
    Query(q): Query<Since>,
) -> Response {
    if host == LOCAL {
        let Some(c) = st.engine.container_record(&id) else {
            return not_found("no such container");
        };
        let stats = st.engine.stats();
        let series = stats
            .history(&c.id, q.since)
            .map(|p| Series::from_points(&p, q.since))
            .unwrap_or_default();
        let (fs_usage, fs_limit) = st.engine.container_fs(&c.id);
        let hc = &c.host_config;
        let details = json!({
            "created": c.created.to_rfc3339(),
            "started": c.state.started_at.map(|t| t.to_rfc3339()),
            "finished": c.state.finished_at.map(|t| t.to_rfc3339()),
            "exit_code": c.state.exit_code,
            "pid": c.state.pid,
            "command": std::iter::once(c.path.clone()).chain(c.args.clone()).collect::<Vec<_>>().join(" "),
            "labels": c.config.labels.clone().unwrap_or_default(),
            "memory_limit": hc.memory.unwrap_or(0),
            "nano_cpus": hc.nano_cpus.unwrap_or(0),
            "cpu_quota": hc.cpu_quota.unwrap_or(0),
            "cpu_period": hc.cpu_period.unwrap_or(0),
            "storage_opt": hc.storage_opt.clone().unwrap_or_default(),
            "fs_usage": fs_usage,
            "fs_limit": fs_limit,
            "driver": st.engine.driver().name(),
        });
        let row = ContainerRow {
            host: LOCAL.into(),
            host_name: st.local_info().await.name,
            name: c.name.trim_start_matches('/').to_string(),
            image: c.config.image.clone().unwrap_or_default(),
            state: c.state.status.as_str().to_string(),
            status: c.status_text(chrono::Utc::now()),
            fs_limit,
            id: c.id.clone(),
            series,
            stale: false,
        };
        return Json(json!({"row": row, "details": details})).into_response();
    }
    let Some(h) = st.hosts.get(&host) else {
        return not_found("no such host");
    };
    let row = remote_rows(h, q.since)
        .into_iter()
        .find(|r| r.id == id || r.id.starts_with(&id) || r.name == id);
    match row {
        Some(row) => Json(json!({"row": row, "details": {}})).into_response(),
        None => not_found("no such container"),
    }
}

/// `GET /api/containers/{host}/{id}/processes`: this daemon's from the
/// cgroup; a remote host's through `/containers/{id}/top`.
pub async fn processes(
    State(st): State<DashState>,
    Path((host, id)): Path<(String, String)>,
) -> Response {
    if host == LOCAL {
        let engine = Arc::clone(&st.engine);
        let list = tokio::task::spawn_blocking(move || {
            let full = engine.container_record(&id)?.id;
            engine.stats().processes(&full)
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        return Json(ProcessTable::from_local(&list)).into_response();
    }
    let Some(h) = st.hosts.get(&host) else {
        return not_found("no such host");
    };
    // The ID goes into another host's URL: a name or ID, nothing else.
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return not_found("no such container");
    }
    match h.endpoint.get_json(&format!("/containers/{id}/top")).await {
        Ok(v) => Json(ProcessTable::from_top(&v)).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"message": e.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    host: Option<String>,
    /// `docker events --filter`, in the API's JSON form.
    filters: Option<String>,
    /// Unix seconds: replay from the log since then first.
    since: Option<String>,
}

type SseResult = Result<SseEvent, Infallible>;

/// `GET /api/events?host=&filters=&since=`: the event feed as server-sent
/// events, one JSON event per message; this daemon's from the bus, a
/// remote host's through its `/events`. Errors arrive as an `error` event.
pub async fn events(State(st): State<DashState>, Query(q): Query<EventsQuery>) -> Response {
    let host = q.host.clone().unwrap_or_else(|| LOCAL.to_string());
    let raw_filters = q.filters.clone().unwrap_or_default();
    let stream: std::pin::Pin<Box<dyn Stream<Item = SseResult> + Send>> = if host == LOCAL {
        match local_events(&st, &raw_filters, q.since.as_deref()) {
            Ok(s) => Box::pin(s),
            Err(message) => Box::pin(stream::once(async move {
                Ok(SseEvent::default().event("error").data(message))
            })),
        }
    } else {
        match st.hosts.get(&host) {
            Some(h) => Box::pin(remote_events(Arc::clone(h), raw_filters, q.since.clone())),
            None => Box::pin(stream::once(async {
                Ok(SseEvent::default().event("error").data("no such host"))
            })),
        }
    };
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn local_events(
    st: &DashState,
    raw_filters: &str,
    since: Option<&str>,
) -> Result<impl Stream<Item = SseResult> + Send + 'static, String> {
    let filters =
        berth_api::filters::parse_filters(raw_filters).map_err(|e| e.message().to_string())?;
    let since = match since.filter(|s| !s.is_empty()) {
        Some(s) => Some(
            berth_engine::filters::parse_timestamp(s)
                .map_err(|e| e.to_string())?
                .saturating_mul(1_000_000_000),
        ),
        None => None,
    };
    let events = st.engine.events().listen(
        EventFilter::new(&filters),
        TimeWindow { since, until: None },
    );
    Ok(stream::unfold(events, |mut events| async move {
        let m = events.next().await?;
        let data = serde_json::to_string(&m).unwrap_or_default();
        Some((Ok(SseEvent::default().data(data)), events))
    }))
}

fn remote_events(
    h: Arc<RemoteHost>,
    raw_filters: String,
    since: Option<String>,
) -> impl Stream<Item = SseResult> + Send + 'static {
    let mut query = vec![("filters", raw_filters)];
    if let Some(s) = since.filter(|s| !s.is_empty()) {
        query.push(("since", s));
    }
    let path = format!(
        "/events?{}",
        serde_urlencoded::to_string(&query).unwrap_or_default()
    );
    stream::once(async move { h.endpoint.open(&path).await }).flat_map(|opened| match opened {
        Ok(resp) => {
            let lines = Lines::new(resp.into_body());
            stream::unfold(lines, |mut lines| async move {
                let line = lines.next().await?;
                Some(match line {
                    Ok(bytes) => (
                        Ok(SseEvent::default().data(String::from_utf8_lossy(&bytes))),
                        lines,
                    ),
                    Err(e) => (
                        Ok(SseEvent::default().event("error").data(e.to_string())),
                        lines,
                    ),
                })
            })
            .boxed()
        }
        Err(e) => {
            stream::once(async move { Ok(SseEvent::default().event("error").data(e.to_string())) })
                .boxed()
        }
    })
}
