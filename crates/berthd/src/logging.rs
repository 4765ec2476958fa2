//! berthd's log subscriber: the level from `-l`/`-D` (or `RUST_LOG`, which
//! wins for per-module control), behind a reload handle so SIGHUP can
//! switch debug logging — and with it the API request log — without a
//! restart.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::DaemonConfig;

/// Changes the log level of the running daemon.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it stays in force across reloads.
    from_env: bool,
}

fn filter_for(config: &DaemonConfig) -> EnvFilter {
    EnvFilter::new(config.tracing_level().as_str().to_ascii_lowercase())
}

/// Installs the subscriber (once, at start-up).
pub fn init(config: &DaemonConfig) -> LogControl {
    let env = EnvFilter::try_from_default_env().ok();
    let from_env = env.is_some();
    let (filter, handle) = reload::Layer::new(env.unwrap_or_else(|| filter_for(config)));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    LogControl { handle, from_env }
}

impl LogControl {
    /// Applies `config`'s `debug`/`log-level`.
    pub fn apply(&self, config: &DaemonConfig) -> Result<()> {
        if self.from_env {
            tracing::info!("RUST_LOG is set; keeping its log filter");
            return Ok(());
        }
        self.handle
            .reload(filter_for(config))
            .context("switch the log level")
    }
}
