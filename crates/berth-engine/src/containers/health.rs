//! Health checks (`HEALTHCHECK`, `docker run --health-*`): one monitor task
//! per running container whose config has a probe. A probe is an exec of
//! the container (with dockerd's `exec_create`/`exec_start`/`exec_die`
//! events), its output capped at 4 KiB and its run at the probe timeout;
//! results go to `State.Health` (status, failing streak, the last five
//! results) and a change of status publishes `health_status: <status>`.
//! Intervals, defaults, the start period and the streak rule are dockerd's
//! (`daemon/health.go`).

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{
    ContainerConfig, ExecConfig, ExecStartConfig, Health, HealthConfig, HealthStatusEnum,
    HealthcheckResult,
};
use chrono::Utc;
use futures_util::StreamExt;

use super::record::Status;
use super::store::ContainerHandle;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::images::config::timestamp;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Output kept per result, as dockerd.
const MAX_OUTPUT: usize = 4096;
/// Results kept in `Health.Log`, as dockerd.
const MAX_LOG: usize = 5;

/// The probe's command line: `CMD` as given, `CMD-SHELL` through the
/// container's shell; `None` for `NONE`, an empty test or an unknown kind.
fn probe_command(config: &ContainerConfig) -> Option<Vec<String>> {
    let test = config.healthcheck.as_ref()?.test.as_ref()?;
    let (kind, args) = test.split_first()?;
    if args.is_empty() {
        return None;
    }
    match kind.as_str() {
        "CMD" => Some(args.to_vec()),
        "CMD-SHELL" => {
            let mut cmd = config
                .shell
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            cmd.extend(args.iter().cloned());
            Some(cmd)
        }
        _ => None,
    }
}

/// A duration field of `HealthConfig` (nanoseconds; 0 or unset: default).
fn duration_or(nanos: Option<i64>, default: Duration) -> Duration {
    match nanos {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// A duration as Go prints it in dockerd's timeout message (`30s`,
/// `1m30s`, `500ms`).
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, rest) = (d.as_secs() / 60, d.as_secs_f64() % 60.0);
    let seconds = format!("{rest}s");
    match minutes {
        0 => seconds,
        m if m < 60 => format!("{m}m{seconds}"),
        m => format!("{}h{}m{seconds}", m / 60, m % 60),
    }
}

/// `docker ps`'s suffix for a running container's health.
pub fn status_suffix(health: Option<&Health>) -> String {
    match health.and_then(|h| h.status) {
        Some(HealthStatusEnum::STARTING) => " (health: starting)".into(),
        Some(HealthStatusEnum::HEALTHY) => " (healthy)".into(),
        Some(HealthStatusEnum::UNHEALTHY) => " (unhealthy)".into(),
        _ => String::new(),
    }
}

/// `health=` of `docker ps --filter`: `none` when no check is configured.
pub fn filter_value(health: Option<&Health>) -> &'static str {
    status_name(health.and_then(|h| h.status))
}

fn status_name(status: Option<HealthStatusEnum>) -> &'static str {
    match status {
        Some(HealthStatusEnum::STARTING) => "starting",
        Some(HealthStatusEnum::HEALTHY) => "healthy",
        Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
        _ => "none",
    }
}

/// dockerd's checks of a `HealthConfig` at create: durations of at least
/// 1 ms (or 0 for the default), retries not negative.
pub fn validate(config: Option<&HealthConfig>) -> Result<()> {
    let Some(h) = config else { return Ok(()) };
    const MIN: i64 = 1_000_000;
    for (name, value) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if value.is_some_and(|v| v != 0 && v < MIN) {
            return Err(EngineError::InvalidParameter(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if h.retries.is_some_and(|r| r < 0) {
        return Err(EngineError::InvalidParameter(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    Ok(())
}

/// Timing of one container's checks.
struct Schedule {
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    start_interval: Duration,
    retries: i64,
}

impl Schedule {
    fn of(h: &HealthConfig) -> Schedule {
        Schedule {
            interval: duration_or(h.interval, DEFAULT_INTERVAL),
            timeout: duration_or(h.timeout, DEFAULT_TIMEOUT),
            start_period: duration_or(h.start_period, Duration::ZERO),
            start_interval: duration_or(h.start_interval, DEFAULT_START_INTERVAL),
            retries: h.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
        }
    }
}

impl Engine {
    /// Starts the health monitor of a container that just started (or was
    /// re-adopted at start-up), if its config has a probe: status
    /// `starting`, failing streak 0 (in memory, as every health update). It
    /// ends with this run of the process.
    pub(crate) fn spawn_health(self: &Arc<Self>, handle: &Arc<ContainerHandle>) {
        let (cmd, schedule) = {
            let mut r = handle.lock();
            let Some(cmd) = probe_command(&r.config) else {
                return;
            };
            let schedule = Schedule::of(r.config.healthcheck.as_ref().expect("probe"));
            let h = r.state.health.get_or_insert_with(Health::default);
            h.status = Some(HealthStatusEnum::STARTING);
            h.failing_streak = Some(0);
            (cmd, schedule)
        };
        let run = handle.watch.borrow().exits;
        let engine = Arc::clone(self);
        let handle = Arc::clone(handle);
        tokio::spawn(async move { engine.monitor_health(handle, cmd, schedule, run).await });
    }

    async fn monitor_health(
        self: Arc<Self>,
        handle: Arc<ContainerHandle>,
        cmd: Vec<String>,
        schedule: Schedule,
        run: u64,
    ) {
        let mut watch = handle.watch.subscribe();
        let ended = |w: &super::store::Watched| w.exits != run || w.removed;
        let started = tokio::time::Instant::now();
        loop {
            let starting = handle.lock().state.health.as_ref().and_then(|h| h.status)
                == Some(HealthStatusEnum::STARTING);
            let interval = if starting && started.elapsed() < schedule.start_period {
                schedule.start_interval
            } else {
                schedule.interval
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = watch.wait_for(ended) => return,
            }
            if ended(&watch.borrow()) {
                return;
            }
            // A paused container is not probed (its execs could not run).
            if handle.lock().state.status != Status::Running {
                continue;
            }
            let start = Utc::now();
            let (exit_code, output) = self.probe(&handle, &cmd, schedule.timeout).await;
            let result = HealthcheckResult {
                start: Some(timestamp(start)),
                end: Some(timestamp(Utc::now())),
                exit_code: Some(exit_code),
                output: Some(output),
            };
            self.record_probe(&handle, run, result, start, &schedule);
        }
    }

    /// Runs the probe as an exec; `(-1, why)` when it could not run or ran
    /// past `timeout` (then it is killed).
    async fn probe(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        cmd: &[String],
        timeout: Duration,
    ) -> (i64, String) {
        let config = {
            let r = handle.lock();
            ExecConfig {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                user: r.config.user.clone(),
                working_dir: r.config.working_dir.clone(),
                ..Default::default()
            }
        };
        let exec_id = match self.create_exec(&handle.id, config).await {
            Ok(id) => id,
            Err(e) => return (-1, e.to_string()),
        };
        let start = ExecStartConfig {
            detach: Some(false),
            tty: Some(false),
            ..Default::default()
        };
        let result = match self.start_exec(&exec_id, start).await {
            Ok(Some(session)) => {
                let mut output = Vec::new();
                let read = async {
                    if let Some(mut chunks) = session.output {
                        while let Some(chunk) = chunks.next().await {
                            let room = MAX_OUTPUT.saturating_sub(output.len());
                            output.extend_from_slice(&chunk.data[..chunk.data.len().min(room)]);
                        }
                    }
                };
                let finished = tokio::time::timeout(timeout, read).await.is_ok();
                let text = String::from_utf8_lossy(&output).into_owned();
                if finished {
                    let code = self
                        .inspect_exec(&exec_id)
                        .await
                        .ok()
                        .and_then(|i| i.exit_code)
                        .unwrap_or(-1);
                    (code, text)
                } else {
                    self.execs.kill(&exec_id);
                    let mut msg =
                        format!("Health check exceeded timeout ({})", go_duration(timeout));
                    if !text.is_empty() {
                        msg = format!("{msg}: {text}");
                    }
                    (-1, msg)
                }
            }
            Ok(None) => (-1, "health check exec started detached".into()),
            Err(e) => (-1, e.to_string()),
        };
        // Probes run every few seconds for the container's life; their
        // exec records are not kept for inspection.
        self.execs.forget(&exec_id);
        result
    }

    /// dockerd's `handleProbeResult`: log the result, update the streak and
    /// status, publish a change of status. In memory only, as in dockerd:
    /// the record on disk takes the health state with the container's next
    /// save (a write per probe would cost a sync each few seconds and race
    /// the lifecycle's own saves).
    fn record_probe(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        run: u64,
        result: HealthcheckResult,
        start: chrono::DateTime<Utc>,
        schedule: &Schedule,
    ) {
        let (record, old, new) = {
            let mut r = handle.lock();
            if handle.watch.borrow().exits != run || r.state.status != Status::Running {
                return;
            }
            let started_at = r.state.started_at;
            let h = r.state.health.get_or_insert_with(Health::default);
            let old = h.status;
            let log = h.log.get_or_insert_with(Vec::new);
            let healthy = result.exit_code == Some(0);
            log.push(result);
            if log.len() > MAX_LOG {
                log.drain(..log.len() - MAX_LOG);
            }
            if healthy {
                h.failing_streak = Some(0);
                h.status = Some(HealthStatusEnum::HEALTHY);
            } else {
                let in_start_period = old == Some(HealthStatusEnum::STARTING)
                    && started_at.is_some_and(|s| {
                        (start - s).to_std().unwrap_or_default() < schedule.start_period
                    });
                if !in_start_period {
                    let streak = h.failing_streak.unwrap_or(0) + 1;
                    h.failing_streak = Some(streak);
                    if streak >= schedule.retries {
                        h.status = Some(HealthStatusEnum::UNHEALTHY);
                    }
                }
            }
            let new = h.status;
            (r.clone(), old, new)
        };
        if old != new {
            let action = format!("health_status: {}", status_name(new));
            self.publish_container(&record, &action, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(test: &[&str], shell: Option<&[&str]>) -> ContainerConfig {
        ContainerConfig {
            healthcheck: Some(HealthConfig {
                test: Some(test.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            shell: shell.map(|s| s.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn probe_kinds_like_dockerd() {
        assert_eq!(
            probe_command(&config(&["CMD", "true", "x"], None)),
            Some(vec!["true".into(), "x".into()])
        );
        assert_eq!(
            probe_command(&config(&["CMD-SHELL", "exit 1"], None)),
            Some(vec!["/bin/sh".into(), "-c".into(), "exit 1".into()])
        );
        assert_eq!(
            probe_command(&config(
                &["CMD-SHELL", "exit 1"],
                Some(&["/bin/ash", "-ec"])
            )),
            Some(vec!["/bin/ash".into(), "-ec".into(), "exit 1".into()])
        );
        assert_eq!(probe_command(&config(&["NONE"], None)), None);
        assert_eq!(probe_command(&config(&["CMD"], None)), None);
        assert_eq!(probe_command(&config(&["WHAT", "x"], None)), None);
        assert_eq!(probe_command(&ContainerConfig::default()), None);
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn defaults_and_zero_mean_dockerds_defaults() {
        let s = Schedule::of(&HealthConfig {
            interval: Some(0),
            retries: Some(0),
            timeout: Some(2_000_000_000),
            ..Default::default()
        });
        assert_eq!(s.interval, DEFAULT_INTERVAL);
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.retries, DEFAULT_RETRIES);
        assert_eq!(s.start_period, Duration::ZERO);
    }
}
