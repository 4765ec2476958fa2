//! `docker logs`: reading the json-file log the shim writes
//! (`{"log":..,"stream":..,"time":..}` per line) with stream, since/until
//! and tail filters, timestamps, and follow until the container stops.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::record::ContainerPaths;
use super::store::ContainerHandle;
use super::streams::{OutputChunk, OutputStream, StdStream};
use super::LogsOptions;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

#[derive(Deserialize)]
struct Entry {
    log: String,
    #[serde(default)]
    stream: String,
    time: DateTime<Utc>,
}

fn to_pair(t: DateTime<Utc>) -> (i64, u32) {
    (t.timestamp(), t.timestamp_subsec_nanos())
}

/// A parsed log line turned into an output chunk, if the filters keep it.
fn select(line: &str, opts: &LogsOptions) -> Option<OutputChunk> {
    let entry: Entry = serde_json::from_str(line).ok()?;
    let stream = if entry.stream == "stderr" {
        StdStream::Stderr
    } else {
        StdStream::Stdout
    };
    if (stream == StdStream::Stdout && !opts.stdout)
        || (stream == StdStream::Stderr && !opts.stderr)
    {
        return None;
    }
    let at = to_pair(entry.time);
    if opts.since.is_some_and(|s| at < s) || opts.until.is_some_and(|u| at >= u) {
        return None;
    }
    let data = if opts.timestamps {
        format!(
            "{} {}",
            entry.time.format("%Y-%m-%dT%H:%M:%S%.9fZ"),
            entry.log
        )
    } else {
        entry.log
    };
    Some(OutputChunk {
        stream,
        data: Bytes::from(data),
    })
}

impl Engine {
    /// The body of `container_logs`.
    pub(crate) async fn logs_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        opts: LogsOptions,
    ) -> Result<(bool, OutputStream)> {
        let c = handle.snapshot();
        let tty = c.config.tty.unwrap_or(false);
        let path = ContainerPaths::new(&self.config.data_root, &c.id).log(&c.id);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| EngineError::io(format!("open {}", path.display()), e))?;
        let mut reader = BufReader::new(file);
        // The backlog: everything up to now, cut to the tail.
        let mut backlog: VecDeque<OutputChunk> = VecDeque::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .await
                .map_err(|e| EngineError::io("read log", e))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            if let Some(chunk) = select(&line, &opts) {
                backlog.push_back(chunk);
                if opts.tail.is_some_and(|t| backlog.len() > t) {
                    backlog.pop_front();
                }
            }
        }
        if opts.tail == Some(0) {
            backlog.clear();
        }
        let follow = opts.follow && c.state.status.is_alive();
        let watch = handle.watch.subscribe();
        let stream = futures_util::stream::unfold(
            (backlog, reader, line, watch, opts, follow),
            |(mut backlog, mut reader, mut partial, mut watch, opts, follow)| async move {
                if let Some(chunk) = backlog.pop_front() {
                    return Some((chunk, (backlog, reader, partial, watch, opts, follow)));
                }
                if !follow {
                    return None;
                }
                loop {
                    // `partial` may hold the start of a line the shim is still writing.
                    let n = reader.read_line(&mut partial).await.ok()?;
                    if n > 0 && partial.ends_with('\n') {
                        let chunk = select(&partial, &opts);
                        partial.clear();
                        if let Some(chunk) = chunk {
                            return Some((chunk, (backlog, reader, partial, watch, opts, follow)));
                        }
                        continue;
                    }
                    let state = *watch.borrow();
                    if !(state.status.is_alive()) || state.removed {
                        // One last read catches lines written just before the exit.
                        let n = reader.read_line(&mut partial).await.ok()?;
                        if n > 0 && partial.ends_with('\n') {
                            continue;
                        }
                        return None;
                    }
                    if opts.until.is_some_and(|u| to_pair(Utc::now()) >= u) {
                        return None;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(100), watch.changed()).await;
                }
            },
        );
        Ok((tty, Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LogsOptions {
        LogsOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        }
    }

    #[test]
    fn selects_and_formats_entries() {
        let line = r#"{"log":"hi\n","stream":"stderr","time":"2024-01-02T03:04:05.5Z"}"#;
        let c = select(line, &opts()).unwrap();
        assert_eq!(c.stream, StdStream::Stderr);
        assert_eq!(c.data, Bytes::from("hi\n"));
        let mut o = opts();
        o.timestamps = true;
        let c = select(line, &o).unwrap();
        assert_eq!(c.data, Bytes::from("2024-01-02T03:04:05.500000000Z hi\n"));
        o.stderr = false;
        assert!(select(line, &o).is_none());
        let mut o = opts();
        o.since = Some((1704164646, 0));
        assert!(select(line, &o).is_none());
    }
}
