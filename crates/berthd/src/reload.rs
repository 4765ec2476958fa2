//! SIGHUP: reads the flags and daemon.json again with the same checks as
//! at start-up, then applies only the reloadable keys (`debug`,
//! `log-level`, `labels`, event log retention, stats interval) — the log
//! level switches at once and the engine publishes `daemon reload`. A
//! configuration that does not load changes nothing.

use std::ffi::OsString;

use anyhow::Result;
use berth_engine::Engine;

use crate::config::{self, DaemonConfig};
use crate::logging::LogControl;

/// Reloads; returns the configuration now in force.
pub fn reload(
    argv: &[OsString],
    current: &DaemonConfig,
    engine: &Engine,
    log: &LogControl,
) -> Result<DaemonConfig> {
    let loaded = config::load(argv.iter().cloned())?.config;
    let next = current.with_reloadable(&loaded);
    let fixed = restart_only_changes(current, &loaded);
    if !fixed.is_empty() {
        tracing::warn!(
            "configuration reload: {} changed but only take effect at the next start",
            fixed.join(", ")
        );
    }
    log.apply(&next)?;
    engine.reload_settings(next.live_settings());
    tracing::info!(
        debug = next.debug,
        log_level = %next.log_level,
        labels = ?next.labels,
        events_log_max_events = next.events_log_max_events,
        events_log_max_age = %next.events_log_max_age,
        stats_interval = %next.stats_interval,
        "Reloaded configuration"
    );
    Ok(next)
}

/// Keys that differ between `a` and `b` but cannot change while running.
fn restart_only_changes(a: &DaemonConfig, b: &DaemonConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name, same: bool| {
        if !same {
            out.push(name);
        }
    };
    check("hosts", a.hosts == b.hosts);
    check("data-root", a.data_root == b.data_root);
    check("exec-root", a.exec_root == b.exec_root);
    check("storage-driver", a.storage_driver == b.storage_driver);
    check("storage-opts", a.storage_opts == b.storage_opts);
    check("pidfile", a.pidfile == b.pidfile);
    check("group", a.group == b.group);
    check("runtimes", a.runtimes == b.runtimes);
    check("default-runtime", a.default_runtime == b.default_runtime);
    check("init-path", a.init_path == b.init_path);
    check("metrics-addr", a.metrics_addr == b.metrics_addr);
    check("dashboard-hosts", a.dashboard_hosts == b.dashboard_hosts);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn names_the_keys_that_need_a_restart() {
        let a = DaemonConfig::default();
        let b = DaemonConfig {
            debug: true,
            data_root: PathBuf::from("/x"),
            storage_driver: Some("vfs".into()),
            ..DaemonConfig::default()
        };
        assert_eq!(
            restart_only_changes(&a, &b),
            vec!["data-root", "storage-driver"]
        );
        assert!(restart_only_changes(&a, &a.with_reloadable(&b)).is_empty());
    }
}
