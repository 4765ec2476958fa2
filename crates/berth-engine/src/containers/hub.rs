//! The stream hub of a running process: the engine's one connection to the
//! process's shim, fanned out to every `attach`, and the shared stdin they
//! write to. Attach sessions read the hub, watch their stdin for the detach
//! keys, and end when the process does.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch, Mutex};
use tokio_util::sync::PollSender;

use super::streams::{OutputChunk, OutputStream};
use crate::error::{EngineError, Result};
use crate::runtime::{ProcessRef, Runtime};

type Stdin = Box<dyn AsyncWrite + Send + Unpin>;

/// The shim connection of one running process: its output is pumped into
/// the owner's broadcast channel, its stdin shared by attach sessions.
pub struct StreamHub {
    stdin: Mutex<Option<Stdin>>,
    /// Close stdin when the first attached stdin ends.
    pub stdin_once: bool,
    ended: watch::Sender<bool>,
}

impl StreamHub {
    /// Connects to the process's shim and starts pumping its output into
    /// `out` (which outlives the process, so attaches made before a start
    /// see everything from the first byte).
    pub async fn connect(
        runtime: &Runtime,
        process: &ProcessRef,
        stdin: bool,
        stdin_once: bool,
        out: broadcast::Sender<OutputChunk>,
    ) -> Result<Arc<StreamHub>> {
        let (output, stdin_writer) = runtime.attach(process, stdin, true, true).await?;
        let hub = Arc::new(StreamHub {
            stdin: Mutex::new(stdin_writer),
            stdin_once,
            ended: watch::channel(false).0,
        });
        let pump = Arc::clone(&hub);
        tokio::spawn(async move {
            if let Some(mut output) = output {
                while let Some(chunk) = output.next().await {
                    // No subscriber is fine: the shim already logged it.
                    let _ = out.send(chunk);
                }
            }
            pump.ended.send_replace(true);
        });
        Ok(hub)
    }

    /// Waits (bounded) until the shim's output has all been pumped.
    pub async fn drained(&self, limit: Duration) {
        let mut rx = self.ended.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|v| *v)).await;
    }

    /// Writes to the process's stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        let mut guard = self.stdin.lock().await;
        match guard.as_mut() {
            Some(w) => {
                w.write_all(data).await?;
                w.flush().await
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "stdin is closed",
            )),
        }
    }

    /// Closes the process's stdin (EOF for the program).
    pub async fn close_stdin(&self) {
        if let Some(mut w) = self.stdin.lock().await.take() {
            let _ = w.shutdown().await;
        }
    }
}

/// Output from the owner's channel until `until` says the process is done
/// (then what is queued is drained) or `stop` fires (detach).
pub fn subscribe(
    rx: broadcast::Receiver<OutputChunk>,
    until: impl Fn() -> bool + Send + 'static,
    changes: watch::Receiver<super::store::Watched>,
    stop: Option<watch::Receiver<bool>>,
) -> OutputStream {
    Box::pin(futures_util::stream::unfold(
        (rx, changes, stop, until),
        |(mut rx, mut changes, mut stop, until)| async move {
            loop {
                if until() {
                    return match rx.try_recv() {
                        Ok(chunk) => Some((chunk, (rx, changes, stop, until))),
                        Err(_) => None,
                    };
                }
                let stop_fired = async {
                    match stop.as_mut() {
                        // A dropped sender (no stdin in this session) never detaches.
                        Some(s) => {
                            if s.wait_for(|v| *v).await.is_err() {
                                std::future::pending::<()>().await
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    biased;
                    _ = stop_fired => return None,
                    msg = rx.recv() => match msg {
                        Ok(chunk) => return Some((chunk, (rx, changes, stop, until))),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("attach client fell behind; {n} output chunks skipped");
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = changes.changed() => {}
                }
            }
        },
    ))
}

/// A stdin for one attach session: bytes go to whatever stream hub the
/// process has (waiting for a start if need be) until the detach keys are
/// typed, which fire `detached`. When the client's stdin ends, `on_end`
/// runs (StdinOnce closes the program's stdin).
pub fn session_stdin(
    hub_of: impl Fn() -> Option<Arc<StreamHub>> + Send + Sync + 'static,
    mut changes: watch::Receiver<super::store::Watched>,
    keys: Vec<u8>,
    detached: watch::Sender<bool>,
) -> Stdin {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let was_detached = detached.subscribe();
    tokio::spawn(async move {
        let hub = loop {
            if let Some(h) = hub_of() {
                break Some(h);
            }
            if changes.changed().await.is_err() {
                break None;
            }
        };
        let Some(hub) = hub else { return };
        while let Some(data) = rx.recv().await {
            if hub.write_stdin(&data).await.is_err() {
                break;
            }
        }
        // The client closed its stdin (not a detach): with StdinOnce that
        // is the program's EOF.
        if hub.stdin_once && !*was_detached.borrow() {
            hub.close_stdin().await;
        }
    });
    Box::new(DetachingWriter {
        tx: PollSender::new(tx),
        keys,
        matched: 0,
        detached_tx: Some(detached),
        done: false,
    })
}

/// The detach sequence an attach session watches its stdin for: the
/// parsed `--detach-keys` with a TTY, none without. As in dockerd, a
/// non-TTY stdin is data and is copied as is: a file piped into `docker
/// exec -i` must not end at the first ctrl-p ctrl-q bytes it contains.
/// The spec is checked either way.
pub fn detach_keys(spec: Option<&str>, tty: bool) -> Result<Vec<u8>> {
    let keys = parse_detach_keys(spec)?;
    Ok(if tty { keys } else { Vec::new() })
}

/// Parses `--detach-keys` (`ctrl-p,ctrl-q`, `a`, `ctrl-@`...).
pub fn parse_detach_keys(spec: Option<&str>) -> Result<Vec<u8>> {
    let spec = match spec {
        Some(s) if !s.is_empty() => s,
        _ => "ctrl-p,ctrl-q",
    };
    let bad = || EngineError::InvalidParameter(format!("Invalid detach keys ({spec}) provided"));
    spec.split(',')
        .map(|k| {
            if let Some(c) = k.strip_prefix("ctrl-") {
                let c = c
                    .chars()
                    .next()
                    .filter(|_| c.chars().count() == 1)
                    .ok_or_else(bad)?;
                match c {
                    'a'..='z' => Ok(c as u8 - b'a' + 1),
                    '@' => Ok(0),
                    '[' => Ok(27),
                    '\\' => Ok(28),
                    ']' => Ok(29),
                    '^' => Ok(30),
                    '_' => Ok(31),
                    _ => Err(bad()),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(bad())
            }
        })
        .collect()
}

/// Forwards bytes to the hub, holding back a partial detach sequence and
/// firing the detach signal when the whole sequence arrives.
struct DetachingWriter {
    tx: PollSender<Bytes>,
    keys: Vec<u8>,
    matched: usize,
    detached_tx: Option<watch::Sender<bool>>,
    done: bool,
}

impl AsyncWrite for DetachingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.done {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        match self.tx.poll_reserve(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Poll::Ready(Ok(())) => {}
        }
        let mut out = Vec::with_capacity(buf.len());
        for &b in buf {
            if !self.keys.is_empty() && b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.done = true;
                    if let Some(tx) = self.detached_tx.take() {
                        tx.send_replace(true);
                    }
                    break;
                }
                continue;
            }
            if self.matched > 0 {
                let held = self.keys[..self.matched].to_vec();
                out.extend_from_slice(&held);
                self.matched = 0;
            }
            out.push(b);
        }
        if !out.is_empty() {
            let _ = self.tx.send_item(Bytes::from(out));
        } else {
            self.tx.abort_send();
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_detach_keys() {
        assert_eq!(parse_detach_keys(None).unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys(Some("ctrl-a,x")).unwrap(), vec![1, b'x']);
        assert!(parse_detach_keys(Some("ctrl-ab")).is_err());
        assert!(parse_detach_keys(Some("foo")).is_err());
        assert_eq!(detach_keys(None, true).unwrap(), vec![16, 17]);
        assert!(detach_keys(None, false).unwrap().is_empty());
        assert!(detach_keys(Some("foo"), false).is_err());
    }
}
