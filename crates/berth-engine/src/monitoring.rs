//! The daemon-level controls of monitoring: start-up of the event actor
//! and the stats sampler, the settings berthd may change while running
//! (SIGHUP: debug, labels, event log retention, stats interval; announced
//! as `daemon reload`), and the state report berthd's SIGUSR1 dump includes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::engine::Engine;
use crate::error::Result;
use crate::events::Retention;

/// The reloadable part of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSettings {
    /// `-D`/`debug`: reported by `/info`; berthd switches its log level.
    pub debug: bool,
    /// `log-level` (informational here; berthd owns logging).
    pub log_level: String,
    /// `--label`/`labels`: the engine's labels in `/info`.
    pub labels: Vec<String>,
    /// How much of the event log is kept.
    pub events_retention: Retention,
    /// How often the stats sampler reads every running container.
    pub stats_interval: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            debug: false,
            log_level: "info".to_string(),
            labels: Vec::new(),
            events_retention: Retention::default(),
            stats_interval: crate::stats::DEFAULT_INTERVAL,
        }
    }
}

/// The settings in force, behind a lock readers hold only to copy.
#[derive(Debug, Default)]
pub(crate) struct SettingsCell(RwLock<LiveSettings>);

impl SettingsCell {
    pub(crate) fn new(debug: bool) -> Self {
        SettingsCell(RwLock::new(LiveSettings {
            debug,
            ..Default::default()
        }))
    }

    pub(crate) fn get(&self) -> LiveSettings {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, s: LiveSettings) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = s;
    }
}

/// Go's `%v`-free JSON list, as dockerd puts lists in reload attributes.
fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
}

impl Engine {
    /// Starts what watches the engine once it is shared: names the daemon
    /// in `daemon` events and starts the stats sampler.
    pub(crate) fn start_monitoring(self: &Arc<Self>) -> Result<()> {
        let id = self.engine_id()?;
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        self.events.set_daemon_actor(&id, &host);
        self.stats.start(Arc::downgrade(self))
    }

    /// The settings in force.
    pub fn settings(&self) -> LiveSettings {
        self.settings.get()
    }

    /// Whether debug mode is on (`/info` Debug).
    pub fn debug(&self) -> bool {
        self.settings.get().debug
    }

    /// Applies settings at start-up, without an event.
    pub fn init_settings(&self, s: LiveSettings) {
        self.events.set_retention(s.events_retention);
        self.stats.set_interval(s.stats_interval);
        self.settings.set(s);
    }

    /// Applies reloaded settings and publishes `daemon reload` with the
    /// values now in force, as dockerd does after SIGHUP.
    pub fn reload_settings(&self, s: LiveSettings) {
        let attrs = HashMap::from([
            ("debug".to_string(), s.debug.to_string()),
            ("labels".to_string(), json_list(&s.labels)),
            ("log-level".to_string(), s.log_level.clone()),
            (
                "events-log-max-events".to_string(),
                s.events_retention.max_events.to_string(),
            ),
            (
                "events-log-max-age".to_string(),
                format!("{}s", s.events_retention.max_age.as_secs()),
            ),
            (
                "stats-interval".to_string(),
                format!("{}ms", s.stats_interval.as_millis()),
            ),
        ]);
        self.init_settings(s);
        self.events.publish_daemon("reload", attrs);
    }
}

impl Engine {
    /// A plain-text account of the monitoring machinery (event bus, log,
    /// sampler, settings) and of the containers, for the SIGUSR1 dump.
    pub fn state_report(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let s = self.settings();
        let bus = self.events.stats();
        let _ = writeln!(out, "settings: {s:?}");
        let _ = writeln!(
            out,
            "events: listeners={} published={} dropped={} gaps={} log_lost={} retention={:?}",
            bus.listeners,
            bus.published,
            bus.dropped,
            bus.gaps,
            bus.log_lost,
            self.events.retention()
        );
        let r = self.stats.report();
        let _ = writeln!(
            out,
            "stats: cgroup v{} ticks={} last_tick={:?} took={:?} containers={}",
            self.stats.cgroup_version(),
            r.ticks,
            r.at,
            r.took,
            r.containers
        );
        let mut by_status: std::collections::BTreeMap<&str, usize> = Default::default();
        let handles = self.containers.all();
        for h in &handles {
            *by_status.entry(h.lock().state.status.as_str()).or_default() += 1;
        }
        let _ = writeln!(out, "containers: {} {by_status:?}", handles.len());
        for h in &handles {
            let c = h.lock();
            let _ = writeln!(
                out,
                "  {} {} {} pid={}",
                &c.id[..c.id.len().min(12)],
                c.name,
                c.state.status.as_str(),
                c.state.pid
            );
        }
        let _ = writeln!(out, "images: {}", self.images.len());
        out
    }
}
