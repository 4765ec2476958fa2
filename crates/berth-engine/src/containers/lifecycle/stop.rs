//! Stopping and killing: dockerd's signal names, the signal sent with its
//! `kill` event, and stop's grace period before SIGKILL.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::blocking_err;
use crate::containers::record::{Container, Status};
use crate::containers::store::{ContainerHandle, Watched};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// Parses a signal as dockerd does: `9`, `KILL`, `SIGKILL`, `sigkill`.
pub fn parse_signal(s: &str) -> Result<i32> {
    let bad = || EngineError::InvalidParameter(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name)
        .map(|sig| sig as i32)
        .map_err(|_| bad())
}

impl Engine {
    /// The body of `stop_container`; the caller holds the op lock.
    pub(crate) async fn stop_locked(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let c = handle.snapshot();
        if c.state.status == Status::Restarting {
            let record = {
                let mut r = handle.lock();
                r.manually_stopped = true;
                r.state.status = Status::Exited;
                r.clone()
            };
            handle.persist(&self.config.data_root)?;
            handle.notify(false);
            self.publish_container(&record, "stop", &[]);
            return Ok(());
        }
        if !c.state.status.is_alive() {
            return Err(EngineError::NotModified("container already stopped".into()));
        }
        handle.lock().manually_stopped = true;
        handle.persist(&self.config.data_root)?;
        let signal = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => match c.config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => parse_signal(s)?,
                None => libc::SIGTERM,
            },
        };
        let timeout = timeout.or(c.config.stop_timeout).unwrap_or(10);
        if c.state.status == Status::Paused {
            self.unpause_locked(handle, false).await?;
        }
        let mut rx = handle.watch.subscribe();
        let exits = rx.borrow().exits;
        self.signal(&c, signal).await?;
        let exited = async {
            let _ = rx.wait_for(|w| ended_since(w, exits)).await;
        };
        let in_time = if timeout < 0 {
            exited.await;
            true
        } else {
            tokio::time::timeout(Duration::from_secs(timeout as u64), exited)
                .await
                .is_ok()
        };
        if !in_time {
            let mut rx = handle.watch.subscribe();
            self.signal(&c, libc::SIGKILL).await?;
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|w| ended_since(w, exits)),
            )
            .await;
        }
        self.publish_container(&handle.snapshot(), "stop", &[]);
        Ok(())
    }

    /// Sends a signal and publishes the `kill` event.
    pub(super) async fn signal(self: &Arc<Self>, c: &Container, signal: i32) -> Result<()> {
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let sent = tokio::task::spawn_blocking(move || engine.runtime.kill(&id, signal, false))
            .await
            .map_err(blocking_err)?;
        match sent {
            Ok(()) => {}
            // The process ended after the caller saw it running: the
            // runtime has deleted it (NotFound) or calls it stopped. Its
            // exit monitor records the exit; as in dockerd, signalling a
            // process that just finished is no error (it was a 404 for a
            // container that exists).
            Err(EngineError::NotFound(_)) | Err(EngineError::Conflict(_)) => {
                tracing::debug!("signal {signal} to {}: the process had already ended", c.id);
            }
            Err(e) => return Err(e),
        }
        self.publish_container(c, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    /// The body of `kill_container`.
    pub(crate) async fn kill_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        signal: Option<String>,
    ) -> Result<()> {
        let signal = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => libc::SIGKILL,
        };
        let _op = handle.op.lock().await;
        let c = handle.snapshot();
        if !c.state.status.is_alive() {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        handle.lock().manually_stopped = true;
        handle.persist(&self.config.data_root)?;
        self.signal(&c, signal).await
    }
}

/// Whether the process a stop or forced removal signalled has ended: an
/// exit after `exits`, or (when it ended before the caller read `exits`) a
/// record that is no longer running.
pub(super) fn ended_since(w: &Watched, exits: u64) -> bool {
    w.exits > exits || w.removed || !w.status.is_alive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals_like_dockerd() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
