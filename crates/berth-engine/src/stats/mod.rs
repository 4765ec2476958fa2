//! Container stats: one sampler thread per daemon reads every running
//! container's cgroup (through the v1 or v2 [`cgroup::CgroupReader`]
//! chosen at start) and /proc once per interval into a short rolling
//! window. `/containers/{id}/stats`, the all-containers stream, `/metrics`
//! and the dashboard all read that window; nothing samples twice.

pub mod cgroup;
mod cgroup_v1;
mod cgroup_v2;
pub mod history;
mod host;
pub mod processes;
pub mod response;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::containers::store::ContainerHandle;
use crate::engine::Engine;
use crate::error::Result;
use cgroup::{CgroupReader, CgroupSample, ControllerDirs, ControllerPaths};
use history::{HostPoint, Point, Ring, HISTORY_POINTS};
use processes::ProcessInfo;
pub use response::ContainerStats;
use response::{GoTime, NetworkStats};

/// How often every running container is read, unless configured.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept per container (the newest last).
const WINDOW: usize = 10;
/// Ticks a request waits for a first (or second) sample of a container
/// that has just started before answering with what there is.
const MAX_WAIT_TICKS: u32 = 3;

/// One reading of one container's cgroup, with the host's CPU time read
/// in the same tick.
#[derive(Debug, Clone)]
pub struct Sample {
    pub read: DateTime<Utc>,
    pub cgroup: CgroupSample,
    pub networks: BTreeMap<String, NetworkStats>,
}

/// A running container as the sampler sees it.
#[derive(Debug, Clone)]
struct Target {
    id: String,
    name: String,
    pid: u32,
    /// The cgroupsPath runc was given, for when /proc cannot tell.
    cgroup_fallback: String,
    /// The writable layer's size as the storage cache last measured it.
    fs: Option<u64>,
}

/// Where a container's cgroup is: found once per container process, its
/// directories kept open for the reads of every tick.
struct Location {
    paths: ControllerPaths,
    dirs: ControllerDirs,
    /// Whether the process has a network namespace of its own (none under
    /// `--network host`, as dockerd reports none).
    own_netns: bool,
}

struct Tracked {
    name: String,
    pid: u32,
    location: Arc<Location>,
    samples: VecDeque<Arc<Sample>>,
    /// The dashboard's long history (one compact point per tick).
    history: Ring<Point>,
}

/// A running container's newest sample as `/metrics` and the dashboard
/// read it.
#[derive(Debug, Clone)]
pub struct ContainerSnapshot {
    pub id: String,
    pub name: String,
    /// The container's cgroup path (`/berth/<id>` unless a cgroup parent
    /// moved it): cAdvisor's `id` label.
    pub cgroup: String,
    pub latest: Arc<Sample>,
    /// The newest compact point (with the cached writable-layer size).
    pub point: Point,
}

/// What the last tick did, for the debug dump.
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    pub at: Option<DateTime<Utc>>,
    pub took: Duration,
    pub containers: usize,
    pub ticks: u64,
}

struct Shared {
    reader: Box<dyn CgroupReader>,
    machine_memory: u64,
    windows: RwLock<HashMap<String, Tracked>>,
    /// Bumped after every tick; streams wait on it.
    tick: watch::Sender<u64>,
    interval: Mutex<Duration>,
    stop: Mutex<bool>,
    wake: Condvar,
    closed: AtomicBool,
    report: Mutex<TickReport>,
    /// The host's CPU, memory and load, one point per tick.
    host: RwLock<Ring<HostPoint>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host-wide sampler.
pub struct StatsSampler {
    shared: Arc<Shared>,
}

impl Default for StatsSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsSampler {
    /// A sampler for this host's cgroup version; idle until started.
    pub fn new() -> Self {
        Self::with_reader(cgroup::detect())
    }

    fn with_reader(reader: Box<dyn CgroupReader>) -> Self {
        StatsSampler {
            shared: Arc::new(Shared {
                reader,
                machine_memory: host::machine_memory(),
                windows: RwLock::new(HashMap::new()),
                tick: watch::channel(0).0,
                interval: Mutex::new(DEFAULT_INTERVAL),
                stop: Mutex::new(false),
                wake: Condvar::new(),
                closed: AtomicBool::new(false),
                report: Mutex::new(TickReport::default()),
                host: RwLock::new(Ring::new(HISTORY_POINTS)),
            }),
        }
    }

    /// Starts the sampler thread. It holds the engine weakly and ends when
    /// the engine is gone or [`StatsSampler::close`] is called.
    pub(crate) fn start(&self, engine: Weak<Engine>) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("berth-stats".into())
            .spawn(move || shared.run(engine))
            .map_err(|e| crate::error::EngineError::io("start the stats sampler", e))?;
        Ok(())
    }

    /// Changes the sampling interval (daemon.json, reloadable).
    pub fn set_interval(&self, interval: Duration) {
        *lock(&self.shared.interval) = interval.max(Duration::from_millis(100));
        self.shared.wake.notify_all();
    }

    /// The cgroup version read.
    pub fn cgroup_version(&self) -> u8 {
        self.shared.reader.version()
    }

    /// What the last tick did.
    pub fn report(&self) -> TickReport {
        lock(&self.shared.report).clone()
    }

    /// The machine's memory in bytes, as the sampler caps limits with it.
    pub fn machine_memory(&self) -> u64 {
        self.shared.machine_memory
    }

    /// Ticks so far; bumped after each one (for readers that cache per tick).
    pub fn ticks(&self) -> u64 {
        *self.shared.tick.borrow()
    }

    /// Every running container's newest sample, unordered: what
    /// `/metrics` and the dashboard's table read. Arcs only; no copy of
    /// the samples.
    pub fn snapshot(&self) -> Vec<ContainerSnapshot> {
        let windows = self.shared.read_windows();
        windows
            .iter()
            .filter_map(|(id, t)| {
                Some(ContainerSnapshot {
                    id: id.clone(),
                    name: t.name.clone(),
                    cgroup: cgroup_label(&t.location.paths, id),
                    latest: Arc::clone(t.samples.back()?),
                    point: t.history.last()?,
                })
            })
            .collect()
    }

    /// The long history of `id` after `since` (Unix ms) and the point
    /// before (for rates), oldest first; `None` when the container is not
    /// being sampled.
    pub fn history(&self, id: &str, since: Option<i64>) -> Option<Vec<Point>> {
        let windows = self.shared.read_windows();
        let t = windows.get(id)?;
        Some(match since {
            Some(s) => t.history.newer_with_previous(|p| p.t > s),
            None => t.history.tail(HISTORY_POINTS),
        })
    }

    /// The host's history after `since` (Unix ms) and the point before,
    /// oldest first.
    pub fn host_history(&self, since: Option<i64>) -> Vec<HostPoint> {
        let host = self.shared.host.read().unwrap_or_else(|e| e.into_inner());
        match since {
            Some(s) => host.newer_with_previous(|p| p.t > s),
            None => host.tail(HISTORY_POINTS),
        }
    }

    /// The host's newest point.
    pub fn host_latest(&self) -> Option<HostPoint> {
        self.shared
            .host
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last()
    }

    /// The processes of a sampled container (`None` when it is not
    /// sampled), from the cgroup the sampler found it in.
    pub fn processes(&self, id: &str) -> Option<Vec<ProcessInfo>> {
        let location = Arc::clone(&self.shared.read_windows().get(id)?.location);
        Some(processes::read_processes(
            &self.shared.reader.procs(&location.dirs),
        ))
    }

    /// Stops sampling and ends every stats stream (daemon shutdown).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        self.shared.tick.send_modify(|t| *t += 1);
    }
}

impl Drop for StatsSampler {
    fn drop(&mut self) {
        // Not joined: the thread may be the one dropping the engine.
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
    }
}

/// cAdvisor's `id` label: the container's cgroup path (v2 unified, else
/// the v1 cpu or memory hierarchy's), `/berth/<id>` when not known.
fn cgroup_label(paths: &ControllerPaths, id: &str) -> String {
    ["", "cpu", "memory"]
        .iter()
        .find_map(|c| paths.get(*c).filter(|p| p.len() > 1).cloned())
        .unwrap_or_else(|| format!("/berth/{id}"))
}

impl Shared {
    fn read_windows(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Tracked>> {
        self.windows.read().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, engine: Weak<Engine>) {
        loop {
            let started = Instant::now();
            let Some(e) = engine.upgrade() else { return };
            let targets = e.stats_targets();
            drop(e);
            self.sample(&targets, started);
            let interval = *lock(&self.interval);
            if let Some(e) = engine.upgrade() {
                // Writable-layer sizes and pool use, on the same cadence but
                // within a slice of the interval: some drivers measure by
                // running a command or walking a directory.
                let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
                e.refresh_storage_usage(&ids, interval / 20);
            }
            let deadline = started + interval;
            let mut stop = lock(&self.stop);
            while !*stop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                stop = self
                    .wake
                    .wait_timeout(stop, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if *stop {
                return;
            }
        }
    }

    /// One tick: read every target, update the windows, wake streams.
    fn sample(&self, targets: &[Target], started: Instant) {
        let read = Utc::now();
        // Where each target's cgroup is (reused while its pid is the same)
        // and its newest sample.
        type Known = HashMap<String, (u32, Arc<Location>)>;
        let (known, previous): (Known, HashMap<String, Arc<Sample>>) = {
            let windows = self.read_windows();
            (
                windows
                    .iter()
                    .map(|(id, t)| (id.clone(), (t.pid, Arc::clone(&t.location))))
                    .collect(),
                windows
                    .iter()
                    .filter_map(|(id, t)| Some((id.clone(), Arc::clone(t.samples.back()?))))
                    .collect(),
            )
        };
        let tick = *self.tick.borrow();
        let before = (Instant::now(), host::system_cpu());
        let mut fresh = Vec::with_capacity(targets.len());
        for t in targets {
            let location = match known.get(&t.id) {
                Some((pid, location)) if *pid == t.pid => Arc::clone(location),
                _ => {
                    let paths = cgroup::locate(t.pid, &t.cgroup_fallback);
                    let dirs = self.reader.open(&paths);
                    Arc::new(Location {
                        paths,
                        dirs,
                        own_netns: host::has_own_netns(t.pid),
                    })
                }
            };
            // Limits and the like on one tick in FULL_READ_EVERY (and for
            // a new process); carried over from the last sample otherwise.
            let prev = match known.get(&t.id) {
                Some((pid, _))
                    if *pid == t.pid && !tick.is_multiple_of(cgroup::FULL_READ_EVERY) =>
                {
                    previous.get(&t.id)
                }
                _ => None,
            };
            let Some(cg) =
                self.reader
                    .read_dirs(&location.dirs, self.machine_memory, prev.map(|s| &s.cgroup))
            else {
                continue;
            };
            let at = Instant::now();
            let sample = Sample {
                read,
                cgroup: cg,
                networks: if location.own_netns {
                    host::net_dev(t.pid)
                } else {
                    BTreeMap::new()
                },
            };
            fresh.push((t, location, at, sample));
        }
        let after = (Instant::now(), host::system_cpu());
        let t_ms = read.timestamp_millis();
        self.host
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(history::read_host(t_ms));
        let fresh: Vec<_> = fresh
            .into_iter()
            .map(|(t, location, at, mut sample)| {
                if let Some((usage, cpus)) = system_cpu_at(at, before, after) {
                    sample.cgroup.cpu.system_cpu_usage = usage;
                    sample.cgroup.cpu.online_cpus = cpus;
                }
                (t, location, Arc::new(sample))
            })
            .collect();
        {
            let mut windows = self.windows.write().unwrap_or_else(|e| e.into_inner());
            let mut next = HashMap::with_capacity(fresh.len());
            for (t, location, sample) in fresh {
                let mut tracked = windows.remove(&t.id).unwrap_or_else(|| Tracked {
                    name: String::new(),
                    pid: t.pid,
                    location: Arc::clone(&location),
                    samples: VecDeque::with_capacity(WINDOW),
                    history: Ring::new(HISTORY_POINTS),
                });
                if tracked.pid != t.pid {
                    // A restart: the old process's counters do not carry over.
                    tracked.samples.clear();
                }
                tracked.name = t.name.clone();
                tracked.pid = t.pid;
                tracked.location = location;
                if tracked.samples.len() == WINDOW {
                    tracked.samples.pop_front();
                }
                tracked.history.push(Point::from_sample(
                    t_ms,
                    &sample.cgroup,
                    &sample.networks,
                    t.fs,
                ));
                tracked.samples.push_back(sample);
                next.insert(t.id.clone(), tracked);
            }
            *windows = next;
        }
        {
            let mut r = lock(&self.report);
            r.at = Some(read);
            r.took = started.elapsed();
            r.containers = targets.len();
            r.ticks += 1;
        }
        self.tick.send_modify(|t| *t += 1);
    }

    /// The newest sample of `id` and the one before it.
    fn latest(&self, id: &str) -> (Option<Arc<Sample>>, Option<Arc<Sample>>) {
        let windows = self.windows.read().unwrap_or_else(|e| e.into_inner());
        let Some(t) = windows.get(id) else {
            return (None, None);
        };
        let n = t.samples.len();
        (
            t.samples.back().cloned(),
            n.checked_sub(2).and_then(|i| t.samples.get(i).cloned()),
        )
    }
}

/// The host's CPU time at `at`, interpolated between the /proc/stat reads
/// that bracket a tick: each container's usage is paired with the host's
/// at the moment its cgroup was read, so CPU % does not drift with how
/// many containers a tick reads.
fn system_cpu_at(
    at: Instant,
    before: (Instant, Option<(u64, u32)>),
    after: (Instant, Option<(u64, u32)>),
) -> Option<(u64, u32)> {
    match (before.1, after.1) {
        (Some((u0, n)), Some((u1, _))) => {
            let span = after.0.saturating_duration_since(before.0).as_nanos();
            let into = at.saturating_duration_since(before.0).as_nanos();
            let delta = u1.saturating_sub(u0) as u128;
            let usage = match (delta * into.min(span)).checked_div(span) {
                Some(part) => u0 + part as u64,
                None => u1,
            };
            Some((usage, n))
        }
        (a, b) => b.or(a),
    }
}

/// A response from a sample and (for `precpu_stats`) the one before.
fn build(id: &str, name: &str, sample: &Sample, prev: Option<&Sample>) -> ContainerStats {
    let cg = &sample.cgroup;
    ContainerStats {
        read: GoTime(Some(sample.read)),
        preread: GoTime(prev.map(|p| p.read)),
        pids_stats: cg.pids.clone(),
        blkio_stats: cg.blkio.clone(),
        num_procs: 0,
        storage_stats: Default::default(),
        cpu_stats: cg.cpu.clone(),
        precpu_stats: prev.map(|p| p.cgroup.cpu.clone()).unwrap_or_default(),
        memory_stats: cg.memory.clone(),
        name: name.to_string(),
        id: id.to_string(),
        networks: sample.networks.clone(),
    }
}

/// The empty response dockerd sends for a container that does not run.
fn empty(id: &str, name: &str) -> ContainerStats {
    ContainerStats {
        name: name.to_string(),
        id: id.to_string(),
        ..Default::default()
    }
}

/// `GET /containers/{id}/stats` parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsOptions {
    /// Keep sending a response per interval.
    pub stream: bool,
    /// With `stream=false`: the newest sample alone, no `precpu_stats`.
    pub one_shot: bool,
}

/// The responses of one `/containers/{id}/stats` request.
pub struct StatsStream {
    shared: Arc<Shared>,
    handle: Arc<ContainerHandle>,
    opts: StatsOptions,
    ticks: watch::Receiver<u64>,
    last_sent: Option<DateTime<Utc>>,
    prev: Option<Arc<Sample>>,
    was_running: bool,
    first: bool,
    done: bool,
}

impl StatsStream {
    fn name(&self) -> String {
        self.handle.lock().name.clone()
    }

    fn alive(&self) -> bool {
        !self.handle.watch.borrow().removed && self.handle.lock().state.status.is_alive()
    }

    /// Waits for the sampler's next tick; false when it has stopped.
    async fn tick(&mut self) -> bool {
        !self.shared.closed.load(Ordering::SeqCst)
            && self.ticks.changed().await.is_ok()
            && !self.shared.closed.load(Ordering::SeqCst)
    }

    /// The next response; `None` when the stream is over.
    pub async fn next(&mut self) -> Option<ContainerStats> {
        if self.done {
            return None;
        }
        let id = self.handle.id.clone();
        let mut waited = 0;
        loop {
            let (latest, before) = self.shared.latest(&id);
            if !self.opts.stream {
                if !self.alive() {
                    self.done = true;
                    return Some(empty(&id, &self.name()));
                }
                let ready = latest.is_some() && (self.opts.one_shot || before.is_some());
                if ready || waited >= MAX_WAIT_TICKS {
                    self.done = true;
                    let prev = if self.opts.one_shot { None } else { before };
                    return Some(match latest {
                        Some(s) => build(&id, &self.name(), &s, prev.as_deref()),
                        None => empty(&id, &self.name()),
                    });
                }
            } else if let Some(s) = latest.filter(|s| self.last_sent.is_none_or(|t| s.read > t)) {
                // The first response already has a real precpu_stats when
                // the window holds an earlier sample.
                let prev = self.prev.take().or(before);
                let out = build(&id, &self.name(), &s, prev.as_deref());
                self.last_sent = Some(s.read);
                self.prev = Some(s);
                self.was_running = true;
                self.first = false;
                return Some(out);
            } else if !self.alive() {
                if self.was_running || self.handle.watch.borrow().removed {
                    // dockerd ends the stream when the container stops.
                    self.done = true;
                    return None;
                }
                if self.first {
                    self.first = false;
                    return Some(empty(&id, &self.name()));
                }
                if !self.tick().await {
                    return None;
                }
                return Some(empty(&id, &self.name()));
            }
            if !self.tick().await {
                self.done = true;
                return None;
            }
            waited += 1;
        }
    }
}

/// One all-containers response: every running container's newest sample
/// (with `precpu_stats` from the one before), ordered by name.
pub type StatsBatch = Vec<ContainerStats>;

/// The responses of one all-containers stats request.
pub struct AllStatsStream {
    shared: Arc<Shared>,
    ticks: watch::Receiver<u64>,
    stream: bool,
    sent: bool,
}

impl AllStatsStream {
    /// The next batch; `None` when over.
    pub async fn next(&mut self) -> Option<StatsBatch> {
        if self.sent
            && (!self.stream
                || self.shared.closed.load(Ordering::SeqCst)
                || self.ticks.changed().await.is_err()
                || self.shared.closed.load(Ordering::SeqCst))
        {
            return None;
        }
        self.sent = true;
        self.ticks.borrow_and_update();
        let windows = self
            .shared
            .windows
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut batch: StatsBatch = windows
            .iter()
            .filter_map(|(id, t)| {
                let latest = t.samples.back()?;
                let prev = t
                    .samples
                    .len()
                    .checked_sub(2)
                    .and_then(|i| t.samples.get(i));
                Some(build(id, &t.name, latest, prev.map(|p| &**p)))
            })
            .collect();
        batch.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Some(batch)
    }
}

impl Engine {
    /// The stats sampler.
    pub fn stats(&self) -> &StatsSampler {
        &self.stats
    }

    /// Every container with a process, as the sampler reads them.
    fn stats_targets(&self) -> Vec<Target> {
        self.containers
            .all()
            .iter()
            .filter_map(|h| {
                let c = h.lock();
                if !c.state.status.is_alive() || c.state.pid == 0 {
                    return None;
                }
                let parent = c
                    .host_config
                    .cgroup_parent
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("/berth");
                Some(Target {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    pid: c.state.pid,
                    cgroup_fallback: format!("{}/{}", parent.trim_end_matches('/'), c.id),
                    fs: self.cached_rw_size(&c.id).map(|s| s.max(0) as u64),
                })
            })
            .collect()
    }

    /// A copy of every container's record (any state), for the metrics
    /// labels and the dashboard's table.
    pub fn container_records(&self) -> Vec<crate::containers::record::Container> {
        self.containers.all().iter().map(|h| h.snapshot()).collect()
    }

    /// Every container's ID and status, without copying records.
    pub fn container_statuses(&self) -> Vec<(String, crate::containers::record::Status)> {
        self.containers
            .all()
            .iter()
            .map(|h| {
                let c = h.lock();
                (c.id.clone(), c.state.status)
            })
            .collect()
    }

    /// A copy of container `id`'s record (full ID or name).
    pub fn container_record(&self, id: &str) -> Option<crate::containers::record::Container> {
        self.containers.resolve(id).ok().map(|h| h.snapshot())
    }

    /// `GET /containers/{id}/stats?stream=&one-shot=`: answered from the
    /// sampler's window (404 for an unknown container).
    pub fn container_stats(&self, id: &str, opts: StatsOptions) -> Result<StatsStream> {
        let handle = self.containers.resolve(id)?;
        let shared = Arc::clone(&self.stats.shared);
        let mut ticks = shared.tick.subscribe();
        ticks.borrow_and_update();
        Ok(StatsStream {
            shared,
            handle,
            opts,
            ticks,
            last_sent: None,
            prev: None,
            was_running: false,
            first: true,
            done: false,
        })
    }

    /// `GET /containers/stats?stream=`: every running container on one
    /// connection, one JSON array per interval.
    pub fn all_container_stats(&self, stream: bool) -> AllStatsStream {
        let shared = Arc::clone(&self.stats.shared);
        let ticks = shared.tick.subscribe();
        AllStatsStream {
            shared,
            ticks,
            stream,
            sent: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader over a fixture v2 tree.
    fn sampler(root: &std::path::Path) -> StatsSampler {
        StatsSampler::with_reader(Box::new(cgroup_v2::V2Reader::new(root.to_path_buf())))
    }

    fn set_usage(root: &std::path::Path, id: &str, usec: u64) {
        let d = root.join("berth").join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cpu.stat"), format!("usage_usec {usec}\n")).unwrap();
        std::fs::write(d.join("memory.current"), "1000\n").unwrap();
    }

    fn target(id: &str) -> Target {
        Target {
            id: id.into(),
            name: format!("/{id}"),
            pid: 0,
            cgroup_fallback: format!("/berth/{id}"),
            fs: None,
        }
    }

    #[test]
    fn window_keeps_recent_samples_and_forgets_stopped_containers() {
        let root = tempfile::tempdir().unwrap();
        let s = sampler(root.path());
        set_usage(root.path(), "a", 1);
        set_usage(root.path(), "b", 1);
        for i in 0..(WINDOW as u64 + 3) {
            set_usage(root.path(), "a", 100 * i);
            s.shared.sample(&[target("a"), target("b")], Instant::now());
        }
        let (latest, before) = s.shared.latest("a");
        assert_eq!(
            latest.unwrap().cgroup.cpu.cpu_usage.total_usage,
            100_000 * (WINDOW as u64 + 2)
        );
        assert_eq!(
            before.unwrap().cgroup.cpu.cpu_usage.total_usage,
            100_000 * (WINDOW as u64 + 1)
        );
        assert_eq!(s.shared.windows.read().unwrap()["a"].samples.len(), WINDOW);
        // b stops: gone from the window at the next tick.
        s.shared.sample(&[target("a")], Instant::now());
        assert!(s.shared.latest("b").0.is_none());
        // A container whose cgroup vanished is skipped, not reported as zero.
        s.shared
            .sample(&[target("a"), target("gone")], Instant::now());
        assert!(s.shared.latest("gone").0.is_none());
        assert_eq!(s.report().containers, 2);
    }

    #[test]
    fn host_cpu_is_interpolated_to_each_read() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        let mid = t0 + Duration::from_millis(5);
        let before = (t0, Some((1_000, 2)));
        let after = (t1, Some((2_000, 2)));
        assert_eq!(system_cpu_at(mid, before, after), Some((1_500, 2)));
        assert_eq!(system_cpu_at(t0, before, after), Some((1_000, 2)));
        assert_eq!(system_cpu_at(t1, before, after), Some((2_000, 2)));
        assert_eq!(system_cpu_at(mid, (t0, None), after), Some((2_000, 2)));
        assert_eq!(system_cpu_at(mid, (t0, None), (t1, None)), None);
    }

    #[tokio::test]
    async fn all_containers_batch_has_precpu() {
        let root = tempfile::tempdir().unwrap();
        let s = sampler(root.path());
        set_usage(root.path(), "a", 10);
        s.shared.sample(&[target("a")], Instant::now());
        set_usage(root.path(), "a", 30);
        s.shared.sample(&[target("a")], Instant::now());
        let mut all = AllStatsStream {
            shared: Arc::clone(&s.shared),
            ticks: s.shared.tick.subscribe(),
            stream: false,
            sent: false,
        };
        let batch = all.next().await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].name, "/a");
        assert_eq!(batch[0].cpu_stats.cpu_usage.total_usage, 30_000);
        assert_eq!(batch[0].precpu_stats.cpu_usage.total_usage, 10_000);
        assert!(batch[0].cpu_stats.system_cpu_usage > 0);
        assert!(all.next().await.is_none());
    }
}
