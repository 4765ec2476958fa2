//! The event bus: every engine mutation calls [`EventBus::publish`] once.
//! Each event gets a sequence number, is queued for the on-disk log
//! (`log`), and is offered to every `/events` reader's bounded queue
//! (`listener`) after that reader's filters (`filter`). Publishing never
//! waits on a reader or the disk; a reader that falls behind gets a gap
//! notice in its stream instead of a silent loss.

pub mod filter;
mod listener;
mod log;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bollard_stubs::models::{
    EventActor, EventMessage, EventMessageScopeEnum, EventMessageTypeEnum,
};
use tokio::sync::{broadcast, mpsc};

pub use filter::{EventFilter, TimeWindow};
pub use listener::Gap;
pub use log::Retention;

use crate::error::Result;
use listener::{Item, ListenerQueue, Offer};

/// The action of the notice a reader gets in place of events it missed
/// (type `daemon`, so every client already knows how to print it).
pub const GAP_ACTION: &str = "events-dropped";

/// Default bound of each reader's queue, in events.
pub const DEFAULT_LISTENER_QUEUE: usize = 4096;

/// Capacity of the in-process broadcast channel ([`EventBus::subscribe`]).
const BROADCAST_CAPACITY: usize = 4096;

/// Replayed events buffered between the log reader and the stream.
const REPLAY_BUFFER: usize = 256;

/// A published event and its position in the bus's total order.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub message: EventMessage,
}

/// Counters of the bus, for `/info` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// `/events` readers connected now (`NEventsListener`).
    pub listeners: usize,
    /// Events published since the daemon started.
    pub published: u64,
    /// Events not delivered to some reader because its queue was full
    /// (one per reader per event), since the daemon started.
    pub dropped: u64,
    /// Gap notices that overflow has caused.
    pub gaps: u64,
    /// Events that could not be written to the log.
    pub log_lost: u64,
}

struct State {
    next_seq: u64,
    listeners: Vec<Arc<ListenerQueue>>,
}

struct Inner {
    state: Mutex<State>,
    log: Option<log::EventLog>,
    legacy: broadcast::Sender<EventMessage>,
    published: AtomicU64,
    dropped: AtomicU64,
    gaps: AtomicU64,
    next_listener: AtomicU64,
    listener_queue: AtomicUsize,
    /// The daemon's ID and host name, the actor of `daemon` events.
    daemon: RwLock<(String, String)>,
    closed: AtomicBool,
}

/// Fans events out to the log and to readers.
pub struct EventBus {
    inner: Arc<Inner>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// `seconds.nanoseconds`, the form `/events?since=` takes.
pub fn format_timestamp(time_nano: i64) -> String {
    format!(
        "{}.{:09}",
        time_nano.div_euclid(1_000_000_000),
        time_nano.rem_euclid(1_000_000_000)
    )
}

impl EventBus {
    /// A bus without a log (nothing survives, replay finds nothing).
    pub fn new() -> Self {
        Self::with_log(None, 1)
    }

    /// A bus logging to `dir` (`<data-root>/events`), continuing the
    /// sequence where the log left off.
    pub fn open(dir: &Path, retention: Retention) -> Result<Self> {
        let (log, next_seq) = log::EventLog::open(dir, retention)?;
        Ok(Self::with_log(Some(log), next_seq))
    }

    fn with_log(log: Option<log::EventLog>, next_seq: u64) -> Self {
        EventBus {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_seq,
                    listeners: Vec::new(),
                }),
                log,
                legacy: broadcast::channel(BROADCAST_CAPACITY).0,
                published: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                gaps: AtomicU64::new(0),
                next_listener: AtomicU64::new(1),
                listener_queue: AtomicUsize::new(DEFAULT_LISTENER_QUEUE),
                daemon: RwLock::new((String::new(), String::new())),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Publishes one event about `id` of type `typ`, stamped now, with
    /// scope `local`.
    pub fn publish(
        &self,
        typ: EventMessageTypeEnum,
        action: &str,
        id: &str,
        attributes: HashMap<String, String>,
    ) {
        let mut message = EventMessage {
            typ: Some(typ),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some(id.to_string()),
                attributes: Some(attributes),
            }),
            scope: Some(EventMessageScopeEnum::LOCAL),
            time: None,
            time_nano: None,
        };
        let inner = &self.inner;
        let event = {
            let mut state = inner.lock_state();
            // Stamped under the lock so log order, seq order and time order
            // agree (replay by time relies on it).
            let now = now_nanos();
            message.time = Some(now.div_euclid(1_000_000_000));
            message.time_nano = Some(now);
            let event = Arc::new(Event {
                seq: state.next_seq,
                message,
            });
            state.next_seq += 1;
            if let Some(log) = &inner.log {
                log.append(Arc::clone(&event));
            }
            for listener in &state.listeners {
                if let Offer::Dropped { opened } = listener.offer(&event) {
                    inner.dropped.fetch_add(1, Ordering::Relaxed);
                    if opened {
                        inner.gaps.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            listener = listener.id,
                            "events reader is not keeping up; dropping its events until it catches up"
                        );
                    }
                }
            }
            event
        };
        inner.published.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(seq = event.seq, msg = ?event.message, "event");
        let _ = inner.legacy.send(event.message.clone());
    }

    /// In-process subscribers (tests, caches): every event from now on, on
    /// a broadcast channel that reports `Lagged(n)` rather than blocking.
    pub fn subscribe(&self) -> broadcast::Receiver<EventMessage> {
        self.inner.legacy.subscribe()
    }

    /// An `/events` stream: events of the log in `window` that `filter`
    /// takes, then (unless `until` is already past) live ones until
    /// `until`. Nothing falls between replay and live: the reader's queue
    /// is registered before the log is read up to that point.
    pub fn listen(&self, filter: EventFilter, window: TimeWindow) -> EventStream {
        let inner = Arc::clone(&self.inner);
        let now = now_nanos();
        let only_past = window.until.is_some_and(|u| u < now);
        let filter = Arc::new(filter);
        let (before_seq, live) = {
            let mut state = inner.lock_state();
            let live = if only_past || inner.closed.load(Ordering::SeqCst) {
                None
            } else {
                let queue = Arc::new(ListenerQueue::new(
                    inner.next_listener.fetch_add(1, Ordering::Relaxed),
                    (*filter).clone(),
                    window,
                    inner.listener_queue.load(Ordering::Relaxed),
                ));
                state.listeners.push(Arc::clone(&queue));
                Some(LiveGuard {
                    queue,
                    inner: Arc::clone(&inner),
                })
            };
            (state.next_seq, live)
        };
        // dockerd replays only when a time bound is given.
        let wants_replay = window.since.is_some() || window.until.is_some();
        let replay = (wants_replay && inner.log.is_some()).then(|| {
            let (tx, rx) = mpsc::channel(REPLAY_BUFFER);
            let inner = Arc::clone(&inner);
            tokio::task::spawn_blocking(move || {
                let Some(log) = &inner.log else { return };
                let result = log.replay(window.since, before_seq, |event| {
                    let time = event.message.time_nano.unwrap_or(0);
                    if !window.contains(time) || !filter.includes(&event.message) {
                        return true;
                    }
                    tx.blocking_send(event).is_ok()
                });
                if let Err(e) = result {
                    tracing::warn!("events replay: {e}");
                }
            });
            rx
        });
        let deadline = window.until.filter(|_| live.is_some()).map(|u| {
            let wait = u.saturating_sub(now).max(0) as u64;
            tokio::time::Instant::now() + std::time::Duration::from_nanos(wait)
        });
        EventStream {
            replay,
            live,
            deadline,
        }
    }

    /// Counters for `/info` and metrics.
    pub fn stats(&self) -> BusStats {
        let inner = &self.inner;
        BusStats {
            listeners: inner.lock_state().listeners.len(),
            published: inner.published.load(Ordering::Relaxed),
            dropped: inner.dropped.load(Ordering::Relaxed),
            gaps: inner.gaps.load(Ordering::Relaxed),
            log_lost: inner.log.as_ref().map_or(0, |l| l.lost()),
        }
    }

    /// `/events` readers connected now.
    pub fn listener_count(&self) -> usize {
        self.inner.lock_state().listeners.len()
    }

    /// Sets how much of the log is kept (daemon.json, reloadable).
    pub fn set_retention(&self, retention: Retention) {
        if let Some(log) = &self.inner.log {
            log.set_retention(retention);
        }
    }

    /// The retention in force (`None` without a log).
    pub fn retention(&self) -> Option<Retention> {
        self.inner.log.as_ref().map(|l| l.retention())
    }

    /// Sets the bound of each new reader's queue.
    pub fn set_listener_queue(&self, events: usize) {
        self.inner
            .listener_queue
            .store(events.max(1), Ordering::Relaxed);
    }

    /// Names the daemon in `daemon` events: its ID and host name.
    pub fn set_daemon_actor(&self, id: &str, name: &str) {
        *self.inner.daemon.write().unwrap_or_else(|e| e.into_inner()) =
            (id.to_string(), name.to_string());
    }

    /// Publishes a `daemon` event (e.g. `reload`): actor is the daemon's
    /// ID, and `name` its host name, as dockerd does.
    pub fn publish_daemon(&self, action: &str, mut attributes: HashMap<String, String>) {
        let (id, name) = self.inner.daemon_actor();
        if !name.is_empty() {
            attributes.insert("name".into(), name);
        }
        self.publish(EventMessageTypeEnum::DAEMON, action, &id, attributes);
    }

    /// Ends every live stream after what it has queued (daemon shutdown:
    /// open `/events` connections must not hold the server up).
    pub fn close_listeners(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let listeners = std::mem::take(&mut self.inner.lock_state().listeners);
        for l in listeners {
            l.close();
        }
    }
}

impl EventBus {
    /// Ends live streams, then writes and syncs what the log has pending
    /// and stops its writer (daemon exit: nothing published is lost).
    pub fn close(&self) {
        self.close_listeners();
        if let Some(log) = &self.inner.log {
            log.close();
        }
    }
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn daemon_actor(&self) -> (String, String) {
        self.daemon
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The `daemon events-dropped` notice standing for `gap` in a
    /// reader's stream. `since`/`until` bound the missed events in the
    /// form `/events?since=&until=` takes, so the reader can fetch them
    /// again from the log.
    fn gap_notice(&self, listener: u64, gap: &Gap) -> EventMessage {
        tracing::warn!(
            listener,
            dropped = gap.dropped,
            first_seq = gap.first_seq,
            last_seq = gap.last_seq,
            "events reader missed {} events; sent it an {GAP_ACTION} notice",
            gap.dropped
        );
        let (id, name) = self.daemon_actor();
        let mut attrs = HashMap::from([
            ("dropped".to_string(), gap.dropped.to_string()),
            ("since".to_string(), format_timestamp(gap.first_time)),
            ("until".to_string(), format_timestamp(gap.last_time)),
            (
                "reason".to_string(),
                "reader too slow: its queue was full".to_string(),
            ),
        ]);
        if !name.is_empty() {
            attrs.insert("name".into(), name);
        }
        let now = now_nanos();
        EventMessage {
            typ: Some(EventMessageTypeEnum::DAEMON),
            action: Some(GAP_ACTION.to_string()),
            actor: Some(EventActor {
                id: Some(id),
                attributes: Some(attrs),
            }),
            scope: Some(EventMessageScopeEnum::LOCAL),
            time: Some(now.div_euclid(1_000_000_000)),
            time_nano: Some(now),
        }
    }
}

/// Unregisters a reader's queue when its stream goes away.
struct LiveGuard {
    queue: Arc<ListenerQueue>,
    inner: Arc<Inner>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let id = self.queue.id;
        self.inner.lock_state().listeners.retain(|l| l.id != id);
    }
}

/// One `/events` reader: replayed events first, then live ones.
pub struct EventStream {
    replay: Option<mpsc::Receiver<Event>>,
    live: Option<LiveGuard>,
    deadline: Option<tokio::time::Instant>,
}

impl EventStream {
    /// The next event (or gap notice); `None` when the stream is over:
    /// replay done and no live part, `until` reached, or daemon shutdown.
    pub async fn next(&mut self) -> Option<EventMessage> {
        if let Some(rx) = self.replay.as_mut() {
            match rx.recv().await {
                Some(event) => return Some(event.message),
                None => self.replay = None,
            }
        }
        let live = self.live.as_ref()?;
        let item = match self.deadline {
            Some(deadline) => tokio::select! {
                item = live.queue.recv() => item,
                _ = tokio::time::sleep_until(deadline) => None,
            },
            None => live.queue.recv().await,
        };
        match item? {
            Item::Event(event) => Some(event.message.clone()),
            Item::Gap(gap) => Some(live.inner.gap_notice(live.queue.id, &gap)),
        }
    }
}

#[cfg(test)]
mod tests;
