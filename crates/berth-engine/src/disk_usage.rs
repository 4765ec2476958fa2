//! `GET /system/df` with dockerd's definitions, computed from what is
//! already recorded: image and layer sizes come from the layer store's
//! immutable sizes (no walk of image layers, ever); writable-layer sizes
//! come from the driver's usage, cached per container and invalidated by
//! that container's events (and re-read after a short time while it runs,
//! since writes publish nothing); concurrent calls share one computation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_storage::SpaceUsage;
use bollard_stubs::models::{
    ContainerSummary, ContainerSummaryStateEnum, EventMessage, EventMessageTypeEnum, ImageSummary,
    Volume,
};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::broadcast;

use crate::containers::ListContainersOptions;
use crate::engine::Engine;
use crate::error::{EngineError, ErrorKind, Result};
use crate::images::ListImagesOptions;

/// How long a running container's writable-layer size (and the volume
/// sizes, while any container runs) is reused before it is measured again.
const RUNNING_TTL: Duration = Duration::from_secs(5);

/// Which parts `type=` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiskUsageOptions {
    pub containers: bool,
    pub images: bool,
    pub volumes: bool,
}

impl DiskUsageOptions {
    pub const ALL: DiskUsageOptions = DiskUsageOptions {
        containers: true,
        images: true,
        volumes: true,
    };
}

/// dockerd's `types.DiskUsage` minus the build cache (the API adds it):
/// `None` parts were not asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskUsage {
    /// Bytes of the distinct layers that tagged (or childless) images use.
    pub layers_size: i64,
    /// Top-level images with `SharedSize` (bytes of their layers that
    /// another image also uses) and `Containers` (how many use each).
    pub images: Option<Vec<ImageSummary>>,
    /// Every container with `SizeRw` and `SizeRootFs`.
    pub containers: Option<Vec<ContainerSummary>>,
    /// Local volumes with `UsageData` (size, reference count).
    pub volumes: Option<Vec<Volume>>,
}

/// What a failed shared computation hands every waiter.
type Flight = Shared<BoxFuture<'static, std::result::Result<Arc<DiskUsage>, (ErrorKind, String)>>>;

#[derive(Debug, Clone, Copy)]
struct RwSize {
    size: i64,
    measured: Instant,
    running: bool,
}

/// How often the stats sampler asks the driver how full its pools are.
const SPACE_TTL: Duration = Duration::from_secs(10);

/// Cached sizes and the computations in flight.
pub(crate) struct DiskUsageCache {
    flights: Mutex<HashMap<DiskUsageOptions, Flight>>,
    rw: Mutex<HashMap<String, RwSize>>,
    /// The driver's pools, refreshed by the stats sampler.
    space: Mutex<Option<(Instant, Arc<Vec<SpaceUsage>>)>>,
    volumes: Mutex<Option<(Instant, bool, Vec<Volume>)>>,
    /// Events since the last computation: what to forget.
    events: Mutex<broadcast::Receiver<EventMessage>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DiskUsageCache {
    pub(crate) fn new(events: broadcast::Receiver<EventMessage>) -> Self {
        DiskUsageCache {
            flights: Mutex::new(HashMap::new()),
            rw: Mutex::new(HashMap::new()),
            space: Mutex::new(None),
            volumes: Mutex::new(None),
            events: Mutex::new(events),
        }
    }

    /// Forgets what events since the last call may have changed: a
    /// container's size on any event of that container, volume sizes on
    /// any volume or container event; everything when events were missed.
    fn apply_events(&self) {
        let mut rx = lock(&self.events);
        let mut containers = HashSet::new();
        let mut volumes = false;
        let mut all = false;
        loop {
            match rx.try_recv() {
                Ok(ev) => match ev.typ {
                    Some(EventMessageTypeEnum::CONTAINER) => {
                        if let Some(id) = ev.actor.and_then(|a| a.id) {
                            containers.insert(id);
                        }
                        volumes = true;
                    }
                    Some(EventMessageTypeEnum::VOLUME) => volumes = true,
                    _ => {}
                },
                Err(broadcast::error::TryRecvError::Lagged(_)) => all = true,
                Err(_) => break,
            }
        }
        drop(rx);
        if all {
            lock(&self.rw).clear();
        } else if !containers.is_empty() {
            lock(&self.rw).retain(|id, _| !containers.contains(id));
        }
        if all || volumes {
            *lock(&self.volumes) = None;
        }
    }
}

/// The same class of error for every waiter of a shared computation.
fn rebuild_error(kind: ErrorKind, message: String) -> EngineError {
    match kind {
        ErrorKind::NotFound => EngineError::NotFound(message),
        ErrorKind::Conflict => EngineError::Conflict(message),
        ErrorKind::InvalidParameter => EngineError::InvalidParameter(message),
        ErrorKind::Forbidden => EngineError::Forbidden(message),
        ErrorKind::NotImplemented => EngineError::NotImplemented(message),
        ErrorKind::NotModified => EngineError::NotModified(message),
        ErrorKind::Internal => EngineError::Internal(message),
    }
}

impl Engine {
    /// `GET /system/df`: the parts `opts` asks for. Calls made while the
    /// same computation runs wait for it and share its answer.
    pub async fn disk_usage(self: &Arc<Self>, opts: DiskUsageOptions) -> Result<Arc<DiskUsage>> {
        let flight = {
            let mut flights = lock(&self.df_cache.flights);
            match flights.get(&opts) {
                Some(f) => f.clone(),
                None => {
                    let engine = Arc::clone(self);
                    let f = async move {
                        engine
                            .compute_disk_usage(opts)
                            .await
                            .map(Arc::new)
                            .map_err(|e| (e.kind(), e.to_string()))
                    }
                    .boxed()
                    .shared();
                    flights.insert(opts, f.clone());
                    f
                }
            }
        };
        let result = flight.clone().await;
        {
            let mut flights = lock(&self.df_cache.flights);
            if flights.get(&opts).is_some_and(|f| f.ptr_eq(&flight)) {
                flights.remove(&opts);
            }
        }
        result.map_err(|(kind, message)| rebuild_error(kind, message))
    }

    async fn compute_disk_usage(self: &Arc<Self>, opts: DiskUsageOptions) -> Result<DiskUsage> {
        self.df_cache.apply_events();
        let mut du = DiskUsage::default();
        if opts.images {
            let engine = Arc::clone(self);
            let (images, layers_size) =
                tokio::task::spawn_blocking(move || engine.images_disk_usage())
                    .await
                    .map_err(|e| EngineError::Internal(format!("df task: {e}")))??;
            du.images = Some(images);
            du.layers_size = layers_size;
        }
        if opts.containers {
            du.containers = Some(self.containers_disk_usage().await?);
        }
        if opts.volumes {
            du.volumes = Some(self.cached_volumes_disk_usage().await?);
        }
        Ok(du)
    }

    /// Top-level images with SharedSize and Containers, and LayersSize:
    /// all from recorded layer sizes.
    fn images_disk_usage(&self) -> Result<(Vec<ImageSummary>, i64)> {
        let mut summaries = self.list_images(&ListImagesOptions::default())?;
        let all = self.images.all();
        // How many images (intermediate ones included) use each layer.
        let mut refs: HashMap<String, usize> = HashMap::new();
        for image in &all {
            for chain in image.chain() {
                *refs.entry(chain).or_default() += 1;
            }
        }
        let size_of = |chain: &str| self.layers.get(chain).map_or(0, |l| l.size as i64);
        // LayersSize counts each layer once, over images that are not
        // untagged intermediates (dockerd's getLayerRefs).
        let mut counted: HashSet<String> = HashSet::new();
        for image in &all {
            let intermediate = self.images.references(&image.id).is_empty()
                && !self.images.children(&image.id).is_empty();
            if !intermediate {
                counted.extend(image.chain());
            }
        }
        let layers_size = counted.iter().map(|c| size_of(c)).sum();
        let mut users: HashMap<String, i64> = HashMap::new();
        for h in self.containers.all() {
            *users.entry(h.lock().image_id.clone()).or_default() += 1;
        }
        let by_id: HashMap<&str, _> = all.iter().map(|i| (i.id.as_str(), i)).collect();
        for s in &mut summaries {
            s.containers = users.get(&s.id).copied().unwrap_or(0);
            s.shared_size = by_id.get(s.id.as_str()).map_or(0, |image| {
                image
                    .chain()
                    .iter()
                    .filter(|c| refs.get(*c).copied().unwrap_or(0) > 1)
                    .map(|c| size_of(c))
                    .sum()
            });
        }
        Ok((summaries, layers_size))
    }

    /// Every container with SizeRw (cached driver usage) and SizeRootFs
    /// (that plus the image's recorded size).
    async fn containers_disk_usage(self: &Arc<Self>) -> Result<Vec<ContainerSummary>> {
        let mut list = self
            .list_containers(&ListContainersOptions {
                all: true,
                ..Default::default()
            })
            .await?;
        let engine = Arc::clone(self);
        let ids: Vec<(String, String, bool)> = list
            .iter()
            .map(|c| {
                let running = matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING
                            | ContainerSummaryStateEnum::PAUSED
                            | ContainerSummaryStateEnum::RESTARTING
                    )
                );
                (
                    c.id.clone().unwrap_or_default(),
                    c.image_id.clone().unwrap_or_default(),
                    running,
                )
            })
            .collect();
        let sizes = tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .map(|(id, image, running)| {
                    let rw = engine.rw_size(&id, running);
                    let image_size = engine
                        .images
                        .get(&image)
                        .map(|img| {
                            img.chain()
                                .iter()
                                .filter_map(|c| engine.layers.get(c))
                                .map(|l| l.size as i64)
                                .sum::<i64>()
                        })
                        .unwrap_or(0);
                    (rw, image_size + rw)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| EngineError::Internal(format!("df task: {e}")))?;
        for (c, (rw, root)) in list.iter_mut().zip(sizes) {
            c.size_rw = Some(rw);
            c.size_root_fs = Some(root);
        }
        Ok(list)
    }

    /// A container's writable-layer size, measured by the driver unless a
    /// valid cached value exists. Blocking.
    fn rw_size(&self, id: &str, running: bool) -> i64 {
        if let Some(c) = lock(&self.df_cache.rw).get(id) {
            let fresh = !c.running || c.measured.elapsed() < RUNNING_TTL;
            if fresh && c.running == running {
                return c.size;
            }
        }
        let size = self.layers.rw_usage(id).map(|u| u.size as i64).unwrap_or(0);
        lock(&self.df_cache.rw).insert(
            id.to_string(),
            RwSize {
                size,
                measured: Instant::now(),
                running,
            },
        );
        size
    }

    /// The cached writable-layer size of container `id`, however old;
    /// `None` when never measured (or forgotten after an event of it).
    pub(crate) fn cached_rw_size(&self, id: &str) -> Option<i64> {
        lock(&self.df_cache.rw).get(id).map(|c| c.size)
    }

    /// Keeps the storage figures of `/metrics` and the dashboard fresh
    /// without a scrape ever measuring: called by the stats sampler each
    /// tick with the running containers. Measures the writable layers
    /// whose size is unknown or older than the running TTL, stalest
    /// first, until `budget` is spent (at least one per tick), and the
    /// driver's pools every few seconds. Blocking.
    pub(crate) fn refresh_storage_usage(&self, running: &[&str], budget: Duration) {
        let started = Instant::now();
        self.df_cache.apply_events();
        let due = {
            let rw = lock(&self.df_cache.rw);
            let mut due: Vec<(Option<Instant>, &str)> = running
                .iter()
                .filter_map(|id| match rw.get(*id) {
                    None => Some((None, *id)),
                    Some(c) if !c.running || c.measured.elapsed() >= RUNNING_TTL => {
                        Some((Some(c.measured), *id))
                    }
                    Some(_) => None,
                })
                .collect();
            due.sort();
            due
        };
        for (i, (_, id)) in due.into_iter().enumerate() {
            if i > 0 && started.elapsed() >= budget {
                break;
            }
            self.rw_size(id, true);
        }
        let stale = lock(&self.df_cache.space)
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= SPACE_TTL);
        if stale {
            let space = Arc::new(self.driver.space());
            *lock(&self.df_cache.space) = Some((Instant::now(), space));
        }
    }

    /// Image layers in the layer store.
    pub fn layer_count(&self) -> usize {
        self.layers.list().len()
    }

    /// The storage driver's pools as last measured (empty before the
    /// sampler's first tick).
    pub fn storage_space(&self) -> Arc<Vec<SpaceUsage>> {
        lock(&self.df_cache.space)
            .as_ref()
            .map(|(_, s)| Arc::clone(s))
            .unwrap_or_default()
    }

    /// Container `id`'s writable-layer size as last measured and its
    /// storage size limit (`--storage-opt size=`), for cAdvisor's
    /// `container_fs_usage_bytes`/`container_fs_limit_bytes`. Never
    /// measures.
    pub fn container_fs(&self, id: &str) -> (Option<u64>, Option<u64>) {
        let usage = self.cached_rw_size(id).map(|s| s.max(0) as u64);
        let limit = self.layers.get_rw(id).ok().and_then(|l| l.size_limit);
        (usage, limit)
    }

    /// The volumes with UsageData; reused until a volume or container
    /// event, or, while any container runs, for a short time.
    async fn cached_volumes_disk_usage(self: &Arc<Self>) -> Result<Vec<Volume>> {
        if let Some((at, any_running, v)) = lock(&self.df_cache.volumes).as_ref() {
            if !*any_running || at.elapsed() < RUNNING_TTL {
                return Ok(v.clone());
            }
        }
        let any_running = self
            .containers
            .all()
            .iter()
            .any(|h| h.lock().state.status.is_alive());
        let volumes = self.volumes_disk_usage().await?;
        *lock(&self.df_cache.volumes) = Some((Instant::now(), any_running, volumes.clone()));
        Ok(volumes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    fn publish(bus: &crate::events::EventBus, typ: EventMessageTypeEnum, id: &str) {
        bus.publish(typ, "start", id, Map::new());
    }

    #[test]
    fn events_invalidate_what_they_touch() {
        let bus = crate::events::EventBus::new();
        let cache = DiskUsageCache::new(bus.subscribe());
        let entry = RwSize {
            size: 1,
            measured: Instant::now(),
            running: false,
        };
        lock(&cache.rw).insert("a".into(), entry);
        lock(&cache.rw).insert("b".into(), entry);
        *lock(&cache.volumes) = Some((Instant::now(), false, Vec::new()));
        publish(&bus, EventMessageTypeEnum::IMAGE, "a");
        cache.apply_events();
        assert_eq!(lock(&cache.rw).len(), 2);
        assert!(lock(&cache.volumes).is_some());
        publish(&bus, EventMessageTypeEnum::CONTAINER, "a");
        cache.apply_events();
        assert!(!lock(&cache.rw).contains_key("a"));
        assert!(lock(&cache.rw).contains_key("b"));
        assert!(lock(&cache.volumes).is_none());
    }

    #[test]
    fn missed_events_forget_everything() {
        let bus = crate::events::EventBus::new();
        let cache = DiskUsageCache::new(bus.subscribe());
        lock(&cache.rw).insert(
            "b".into(),
            RwSize {
                size: 1,
                measured: Instant::now(),
                running: false,
            },
        );
        for _ in 0..5000 {
            publish(&bus, EventMessageTypeEnum::VOLUME, "v");
        }
        cache.apply_events();
        assert!(lock(&cache.rw).is_empty());
    }
}
