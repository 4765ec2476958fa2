//! The append-only event log under `<data-root>/events/`: numbered JSON-lines
//! segments (`<first-seq>.log`), written by one thread with group commit
//! (publishers never touch the disk), fdatasync at most once a second,
//! whole-segment retention by count and age, torn-tail repair at open, and
//! replay by time for `/events?since=`.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bollard_stubs::models::EventMessage;
use serde::{Deserialize, Serialize};

use super::Event;
use crate::error::{EngineError, Result};

/// A segment is closed after this many events...
const SEGMENT_EVENTS: u64 = 10_000;
/// ...or this many bytes, whichever comes first.
const SEGMENT_BYTES: u64 = 8 << 20;
/// Written events reach the disk (fdatasync) at most this late: a crash
/// loses at most this much of the log, and a burst costs one sync.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How often age-based retention is checked when no segment rotates.
const RETENTION_CHECK: Duration = Duration::from_secs(60);
/// Published events waiting for the writer beyond this are not logged
/// (counted and reported): memory must stay bounded if the disk hangs.
const MAX_PENDING: usize = 1 << 20;

/// How much of the log is kept. Whole segments go once the newest
/// `max_events` no longer need them, or once all their events are older
/// than `max_age`, whichever comes first; the segment being written is
/// always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_events: u64,
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_events: 100_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// One line of a segment.
#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    event: EventMessage,
}

/// A segment file and what is known of it without reading it whole.
#[derive(Debug, Clone)]
struct Segment {
    first_seq: u64,
    /// timeNano of its first event (`None` while empty or unreadable).
    first_time: Option<i64>,
    path: PathBuf,
}

/// The segment being appended to.
struct Current {
    out: BufWriter<File>,
    events: u64,
    bytes: u64,
}

/// The writer's state; also locked by replay to flush what is pending.
struct Segments {
    index: VecDeque<Segment>,
    current: Option<Current>,
    /// The seq the next written event must carry (gap-free check).
    next_seq: u64,
    dirty: bool,
    last_sync: Instant,
    last_retention: Instant,
}

struct Pending {
    events: Vec<Arc<Event>>,
    shutdown: bool,
}

struct Shared {
    dir: PathBuf,
    segments: Mutex<Segments>,
    pending: Mutex<Pending>,
    wake: Condvar,
    retention: Mutex<Retention>,
    /// Events that could not be logged (pending overflow, write errors).
    lost: AtomicU64,
}

/// The log. Dropping it writes and syncs everything pending.
pub struct EventLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> EngineError {
    EngineError::io(format!("event log: {what}"), e)
}

impl EventLog {
    /// Opens (creating) the log in `dir`, repairs a torn last line, and
    /// starts the writer. Returns the log and the seq of the next event.
    pub fn open(dir: &Path, retention: Retention) -> Result<(EventLog, u64)> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(format!("create {}", dir.display()), e))?;
        let mut index = list_segments(dir)?;
        let mut next_seq = 1;
        if let Some(last) = index.back_mut() {
            next_seq = repair_tail(last)?;
        }
        for seg in index.iter_mut() {
            if seg.first_time.is_none() {
                seg.first_time = first_time(&seg.path);
            }
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            segments: Mutex::new(Segments {
                index,
                current: None,
                next_seq,
                dirty: false,
                last_sync: Instant::now(),
                last_retention: Instant::now(),
            }),
            pending: Mutex::new(Pending {
                events: Vec::new(),
                shutdown: false,
            }),
            wake: Condvar::new(),
            retention: Mutex::new(retention),
            lost: AtomicU64::new(0),
        });
        {
            let mut segs = lock(&shared.segments);
            shared.trim(&mut segs);
            segs.reopen_last()?;
        }
        let thread_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("berth-eventlog".into())
            .spawn(move || thread_shared.run())
            .map_err(|e| io_err("start writer thread", e))?;
        Ok((
            EventLog {
                shared,
                writer: Mutex::new(Some(writer)),
            },
            next_seq,
        ))
    }

    /// Queues an event for the writer; never blocks on I/O. Events must
    /// arrive in seq order (the bus calls this under its lock).
    pub fn append(&self, event: Arc<Event>) {
        let mut p = lock(&self.shared.pending);
        if p.events.len() >= MAX_PENDING {
            let lost = self.shared.lost.fetch_add(1, Ordering::Relaxed) + 1;
            if lost == 1 || lost.is_multiple_of(10_000) {
                tracing::error!(
                    lost,
                    "event log writer is stuck; events are not being logged"
                );
            }
            return;
        }
        p.events.push(event);
        drop(p);
        self.shared.wake.notify_one();
    }

    /// Changes retention; applied at the next rotation or check.
    pub fn set_retention(&self, retention: Retention) {
        *lock(&self.shared.retention) = retention;
        lock(&self.shared.segments).last_retention = Instant::now() - RETENTION_CHECK;
        self.shared.wake.notify_one();
    }

    /// The retention in force.
    pub fn retention(&self) -> Retention {
        *lock(&self.shared.retention)
    }

    /// Events that were published but could not be logged.
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::Relaxed)
    }

    /// The seq of the oldest event still on disk, if any.
    #[cfg(test)]
    pub fn oldest_seq(&self) -> Option<u64> {
        lock(&self.shared.segments)
            .index
            .front()
            .map(|s| s.first_seq)
    }

    /// Every logged event with `seq < before_seq` and `timeNano >= since`,
    /// oldest first, fed to `each` until it returns false. Blocking: call
    /// from a blocking task. Events still pending are written first, so
    /// everything published before `before_seq` was taken is seen.
    pub fn replay(
        &self,
        since: Option<i64>,
        before_seq: u64,
        mut each: impl FnMut(Event) -> bool,
    ) -> Result<()> {
        let index: Vec<Segment> = {
            let mut segs = lock(&self.shared.segments);
            self.shared.write_pending(&mut segs);
            if let Some(cur) = segs.current.as_mut() {
                cur.out
                    .flush()
                    .map_err(|e| io_err("flush before replay", e))?;
            }
            segs.index.iter().cloned().collect()
        };
        // Skip segments whose successor starts before `since`: every event
        // they hold is older (events are logged in time order, barring a
        // wall-clock step back, which can only make replay start earlier).
        let start = match since {
            None => 0,
            Some(since) => index
                .iter()
                .rposition(|s| s.first_time.is_some_and(|t| t <= since))
                .unwrap_or(0),
        };
        let mut warned = false;
        for seg in &index[start..] {
            if seg.first_seq >= before_seq {
                break;
            }
            let file = match File::open(&seg.path) {
                Ok(f) => f,
                // Removed by retention since the index was taken.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("open {}", seg.path.display()), e)),
            };
            for line in BufReader::new(file).split(b'\n') {
                let line = line.map_err(|e| io_err(format!("read {}", seg.path.display()), e))?;
                let parsed: Line = match serde_json::from_slice(&line) {
                    Ok(l) => l,
                    Err(e) => {
                        if !warned {
                            tracing::warn!(
                                "event log {}: skipping bad line: {e}",
                                seg.path.display()
                            );
                            warned = true;
                        }
                        continue;
                    }
                };
                if parsed.seq >= before_seq {
                    return Ok(());
                }
                if since.is_some_and(|s| parsed.event.time_nano.unwrap_or(0) < s) {
                    continue;
                }
                if !each(Event {
                    seq: parsed.seq,
                    message: parsed.event,
                }) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Writes and syncs everything pending, then stops the writer.
    pub fn close(&self) {
        lock(&self.shared.pending).shutdown = true;
        self.shared.wake.notify_one();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// The writer thread: waits for events, writes them in batches, syncs
    /// on the interval, applies retention.
    fn run(&self) {
        loop {
            let shutdown = {
                let mut p = lock(&self.pending);
                if p.events.is_empty() && !p.shutdown {
                    p = self
                        .wake
                        .wait_timeout(p, SYNC_INTERVAL)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                p.shutdown
            };
            let mut segs = lock(&self.segments);
            self.write_pending(&mut segs);
            if segs.dirty && (shutdown || segs.last_sync.elapsed() >= SYNC_INTERVAL) {
                segs.sync();
            }
            if segs.last_retention.elapsed() >= RETENTION_CHECK {
                self.trim(&mut segs);
            }
            if shutdown {
                return;
            }
        }
    }

    /// Takes the pending events (under the segments lock, so batches are
    /// written in order) and appends them.
    fn write_pending(&self, segs: &mut Segments) {
        let batch = std::mem::take(&mut lock(&self.pending).events);
        if batch.is_empty() {
            return;
        }
        for event in batch {
            if let Err(e) = self.write_one(segs, &event) {
                self.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!("event log: event {} not logged: {e}", event.seq);
                // Start a fresh segment next time rather than append after
                // a partial write.
                segs.current = None;
            }
        }
        if let Some(cur) = segs.current.as_mut() {
            if let Err(e) = cur.out.flush() {
                tracing::error!("event log: flush: {e}");
                segs.current = None;
            }
        }
        segs.dirty = true;
    }

    fn write_one(&self, segs: &mut Segments, event: &Event) -> Result<()> {
        let needs_new = segs
            .current
            .as_ref()
            .is_none_or(|c| c.events >= SEGMENT_EVENTS || c.bytes >= SEGMENT_BYTES);
        if needs_new {
            self.rotate(segs, event)?;
        }
        let mut line = serde_json::to_vec(&LineRef {
            seq: event.seq,
            event: &event.message,
        })
        .map_err(|e| EngineError::Internal(format!("encode event: {e}")))?;
        line.push(b'\n');
        let cur = segs
            .current
            .as_mut()
            .ok_or_else(|| EngineError::Internal("no current segment".into()))?;
        cur.out.write_all(&line).map_err(|e| io_err("append", e))?;
        cur.events += 1;
        cur.bytes += line.len() as u64;
        segs.next_seq = event.seq + 1;
        if let Some(seg) = segs.index.back_mut() {
            if seg.first_time.is_none() {
                seg.first_time = event.message.time_nano;
            }
        }
        Ok(())
    }

    /// Closes the current segment (synced) and starts one named after
    /// `first`; then applies retention.
    fn rotate(&self, segs: &mut Segments, first: &Event) -> Result<()> {
        if let Some(mut cur) = segs.current.take() {
            let _ = cur.out.flush();
            if let Err(e) = cur.out.get_ref().sync_data() {
                tracing::warn!("event log: sync closed segment: {e}");
            }
        }
        let path = self.dir.join(segment_name(first.seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(format!("create {}", path.display()), e))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        sync_dir(&self.dir);
        if segs.index.back().is_none_or(|s| s.path != path) {
            segs.index.push_back(Segment {
                first_seq: first.seq,
                first_time: first.message.time_nano,
                path,
            });
        }
        segs.current = Some(Current {
            out: BufWriter::with_capacity(64 << 10, file),
            events: 0,
            bytes,
        });
        self.trim(segs);
        Ok(())
    }

    /// Deletes the oldest segments that retention no longer needs.
    fn trim(&self, segs: &mut Segments) {
        segs.last_retention = Instant::now();
        let retention = *lock(&self.retention);
        let oldest_allowed = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
            - retention.max_age.as_nanos().min(i64::MAX as u128) as i64;
        let mut removed = false;
        while segs.index.len() > 1 {
            let second = &segs.index[1];
            // Events left if the oldest segment goes.
            let kept = segs.next_seq.saturating_sub(second.first_seq);
            let too_many = kept >= retention.max_events;
            // Everything in the oldest segment predates its successor.
            let too_old = second.first_time.is_some_and(|t| t < oldest_allowed);
            if !too_many && !too_old {
                break;
            }
            let Some(old) = segs.index.pop_front() else {
                break;
            };
            match std::fs::remove_file(&old.path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("event log: remove {}: {e}", old.path.display()),
            }
        }
        if removed {
            sync_dir(&self.dir);
        }
    }
}

impl Segments {
    /// Continues appending to the newest segment after a restart.
    fn reopen_last(&mut self) -> Result<()> {
        let Some(last) = self.index.back() else {
            return Ok(());
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&last.path)
            .map_err(|e| io_err(format!("open {}", last.path.display()), e))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.current = Some(Current {
            out: BufWriter::with_capacity(64 << 10, file),
            events: self.next_seq.saturating_sub(last.first_seq),
            bytes,
        });
        Ok(())
    }

    fn sync(&mut self) {
        if let Some(cur) = self.current.as_mut() {
            let _ = cur.out.flush();
            if let Err(e) = cur.out.get_ref().sync_data() {
                tracing::warn!("event log: sync: {e}");
            }
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }
}

/// Serializes a [`Line`] without cloning the event.
#[derive(Serialize)]
struct LineRef<'a> {
    seq: u64,
    event: &'a EventMessage,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

/// The segments in `dir`, oldest first. Stray files are ignored.
fn list_segments(dir: &Path) -> Result<VecDeque<Segment>> {
    let mut found = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| io_err(format!("list {}", dir.display()), e))?;
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        let Ok(first_seq) = stem.parse::<u64>() else {
            continue;
        };
        found.push(Segment {
            first_seq,
            first_time: None,
            path: entry.path(),
        });
    }
    found.sort_by_key(|s| s.first_seq);
    Ok(found.into())
}

/// timeNano of a segment's first event.
fn first_time(path: &Path) -> Option<i64> {
    let file = File::open(path).ok()?;
    let mut first = Vec::new();
    BufReader::new(file).read_until(b'\n', &mut first).ok()?;
    serde_json::from_slice::<Line>(&first)
        .ok()
        .and_then(|l| l.event.time_nano)
}

/// Cuts a segment after its last whole, parseable line (a crash can leave
/// half a line) and returns the seq that follows its last event.
fn repair_tail(seg: &mut Segment) -> Result<u64> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg.path)
        .map_err(|e| io_err(format!("open {}", seg.path.display()), e))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| io_err(format!("read {}", seg.path.display()), e))?;
    let mut good_len = 0usize;
    let mut next_seq = seg.first_seq;
    let mut pos = 0usize;
    while let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') {
        let line = &data[pos..pos + nl];
        match serde_json::from_slice::<Line>(line) {
            Ok(l) => {
                if seg.first_time.is_none() {
                    seg.first_time = l.event.time_nano;
                }
                next_seq = l.seq + 1;
                good_len = pos + nl + 1;
            }
            Err(_) => break,
        }
        pos += nl + 1;
    }
    if good_len < data.len() {
        tracing::warn!(
            "event log {}: dropping {} bytes of a torn tail",
            seg.path.display(),
            data.len() - good_len
        );
        file.set_len(good_len as u64)
            .map_err(|e| io_err(format!("truncate {}", seg.path.display()), e))?;
        file.seek(SeekFrom::End(0)).map_err(|e| io_err("seek", e))?;
        file.sync_all()
            .map_err(|e| io_err(format!("sync {}", seg.path.display()), e))?;
    }
    Ok(next_seq)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{EventActor, EventMessageTypeEnum};

    fn event(seq: u64, time_nano: i64) -> Arc<Event> {
        Arc::new(Event {
            seq,
            message: EventMessage {
                typ: Some(EventMessageTypeEnum::IMAGE),
                action: Some("tag".into()),
                actor: Some(EventActor {
                    id: Some(format!("sha256:{seq}")),
                    attributes: Some(Default::default()),
                }),
                scope: None,
                time: Some(time_nano / 1_000_000_000),
                time_nano: Some(time_nano),
            },
        })
    }

    fn replay_all(log: &EventLog, since: Option<i64>, before: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        log.replay(since, before, |e| {
            seqs.push(e.seq);
            true
        })
        .unwrap();
        seqs
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp_nanos_opt().unwrap()
    }

    #[test]
    fn appends_replays_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = now();
        {
            let (log, next) = EventLog::open(dir.path(), Retention::default()).unwrap();
            assert_eq!(next, 1);
            for seq in 1..=5 {
                log.append(event(seq, t0 + seq as i64));
            }
            // Pending events are seen by replay without waiting for the writer.
            assert_eq!(replay_all(&log, None, 6), vec![1, 2, 3, 4, 5]);
            assert_eq!(replay_all(&log, None, 4), vec![1, 2, 3]);
            assert_eq!(replay_all(&log, Some(t0 + 3), 6), vec![3, 4, 5]);
        }
        let (log, next) = EventLog::open(dir.path(), Retention::default()).unwrap();
        assert_eq!(next, 6);
        log.append(event(6, t0 + 6));
        assert_eq!(replay_all(&log, None, 7), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn torn_tail_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = now();
        {
            let (log, _) = EventLog::open(dir.path(), Retention::default()).unwrap();
            for seq in 1..=3 {
                log.append(event(seq, t0));
            }
        }
        let seg = dir.path().join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(br#"{"seq":4,"event":{"Type":"ima"#).unwrap();
        drop(f);
        let (log, next) = EventLog::open(dir.path(), Retention::default()).unwrap();
        assert_eq!(next, 4);
        log.append(event(4, t0));
        assert_eq!(replay_all(&log, None, 5), vec![1, 2, 3, 4]);
        drop(log);
        let text = std::fs::read_to_string(&seg).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<Line>(l).is_ok()));
    }

    #[test]
    fn retention_by_count_drops_whole_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_events: SEGMENT_EVENTS + 10,
            max_age: Duration::from_secs(3600),
        };
        let t0 = now();
        let (log, _) = EventLog::open(dir.path(), retention).unwrap();
        let total = SEGMENT_EVENTS * 3 + 5;
        for seq in 1..=total {
            log.append(event(seq, t0 + seq as i64));
        }
        let seqs = replay_all(&log, None, total + 1);
        // At least max_events kept, and only whole segments dropped.
        assert!(seqs.len() as u64 >= retention.max_events, "{}", seqs.len());
        assert_eq!(*seqs.last().unwrap(), total);
        assert_eq!((seqs[0] - 1) % SEGMENT_EVENTS, 0);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(log.oldest_seq().unwrap() > 1);
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files <= 3, "{files} segments left");
    }

    #[test]
    fn retention_by_age_drops_segments_older_than_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let hour = 3_600_000_000_000i64;
        let old = now() - 48 * hour;
        {
            let (log, _) = EventLog::open(dir.path(), Retention::default()).unwrap();
            for seq in 1..=SEGMENT_EVENTS {
                log.append(event(seq, old));
            }
            // The next event opens a second segment.
            log.append(event(SEGMENT_EVENTS + 1, old + hour));
            log.append(event(SEGMENT_EVENTS + 2, now()));
        }
        let (log, next) = EventLog::open(
            dir.path(),
            Retention {
                max_events: 1_000_000,
                max_age: Duration::from_secs(24 * 3600),
            },
        )
        .unwrap();
        assert_eq!(next, SEGMENT_EVENTS + 3);
        // The first segment's events all predate the second's first event
        // (47 h ago): older than a day, so it is gone.
        assert_eq!(log.oldest_seq(), Some(SEGMENT_EVENTS + 1));
        assert_eq!(
            replay_all(&log, None, next),
            vec![SEGMENT_EVENTS + 1, SEGMENT_EVENTS + 2]
        );
    }

    #[test]
    fn replay_by_time_skips_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = now();
        let (log, _) = EventLog::open(dir.path(), Retention::default()).unwrap();
        let total = SEGMENT_EVENTS * 2 + 3;
        for seq in 1..=total {
            log.append(event(seq, t0 + seq as i64));
        }
        let since = t0 + (SEGMENT_EVENTS * 2) as i64;
        let seqs = replay_all(&log, Some(since), total + 1);
        assert_eq!(seqs, ((SEGMENT_EVENTS * 2)..=total).collect::<Vec<_>>());
        let mut n = 0;
        log.replay(None, total + 1, |_| {
            n += 1;
            n < 10
        })
        .unwrap();
        assert_eq!(n, 10);
    }
}
