//! The daemon's own metrics: dockerd's names where dockerd has one
//! (`engine_daemon_engine_info`, `engine_daemon_container_states_containers`,
//! `engine_daemon_events_total`, ...), `berth_*` for the rest: event bus
//! drops and gap notices, storage pool space, image and layer counts, the
//! sampler's own cost, and build info. All read from counters and caches.

use std::sync::Arc;

use berth_engine::containers::record::Status;
use berth_engine::Engine;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Facts fixed for the daemon's life, read once.
struct Identity {
    info: Vec<(&'static str, String)>,
    build: Vec<(&'static str, String)>,
}

/// The engine-level families.
pub struct EngineCollector {
    engine: Arc<Engine>,
    identity: Identity,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineCollector")
    }
}

impl EngineCollector {
    /// Reads the daemon's identity (version, kernel, engine ID). Blocking.
    pub fn new(engine: Arc<Engine>) -> Self {
        let v = engine.version();
        let id = engine.engine_id().unwrap_or_default();
        let commit = v.git_commit.clone().unwrap_or_default();
        let version = v.version.clone().unwrap_or_default();
        let identity = Identity {
            info: vec![
                ("architecture", v.arch.clone().unwrap_or_default()),
                ("commit", commit.clone()),
                ("daemon_id", id),
                ("graphdriver", engine.driver().name().to_string()),
                ("kernel", v.kernel_version.clone().unwrap_or_default()),
                ("os_type", "linux".to_string()),
                ("version", version.clone()),
            ],
            build: vec![
                ("version", version),
                ("api_version", v.api_version.clone().unwrap_or_default()),
                ("git_commit", commit),
                ("build_time", v.build_time.clone().unwrap_or_default()),
            ],
        };
        EngineCollector { engine, identity }
    }
}

fn family<'a>(
    enc: &'a mut DescriptorEncoder<'_>,
    name: &'a str,
    help: &str,
    typ: MetricType,
) -> Result<MetricEncoder<'a>, std::fmt::Error> {
    enc.encode_descriptor(name, help, None, typ)
}

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64) -> std::fmt::Result {
    family(enc, name, help, MetricType::Gauge)?.encode_gauge(&v)
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    family(enc, name, help, MetricType::Counter)?.encode_counter::<NoLabelSet, u64, f64>(&v, None)
}

fn labelled_gauge(
    m: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    v: f64,
) -> std::fmt::Result {
    m.encode_family(labels)?.encode_gauge(&v)
}

impl Collector for EngineCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &self.engine;
        let mut m = family(
            &mut enc,
            "engine_daemon_engine_info",
            "The information related to the engine and the OS it is running on",
            MetricType::Gauge,
        )?;
        labelled_gauge(&mut m, &self.identity.info, 1.0)?;
        let mut m = family(
            &mut enc,
            "berth_build_info",
            "berth's version, API version and git commit",
            MetricType::Gauge,
        )?;
        labelled_gauge(&mut m, &self.identity.build, 1.0)?;

        let (mut running, mut paused, mut stopped) = (0, 0, 0);
        for (_, status) in e.container_statuses() {
            match status {
                Status::Running | Status::Restarting => running += 1,
                Status::Paused => paused += 1,
                _ => stopped += 1,
            }
        }
        let mut m = family(
            &mut enc,
            "engine_daemon_container_states_containers",
            "The count of containers in various states",
            MetricType::Gauge,
        )?;
        for (state, n) in [
            ("running", running),
            ("paused", paused),
            ("stopped", stopped),
        ] {
            labelled_gauge(&mut m, &[("state", state)], n as f64)?;
        }
        gauge(
            &mut enc,
            "berth_images",
            "Images in the image store",
            e.image_count() as f64,
        )?;
        gauge(
            &mut enc,
            "berth_layers",
            "Image layers in the layer store",
            e.layer_count() as f64,
        )?;

        let bus = e.events().stats();
        counter(
            &mut enc,
            "engine_daemon_events",
            "The number of events logged",
            bus.published,
        )?;
        gauge(
            &mut enc,
            "engine_daemon_events_subscribers",
            "The number of current subscribers to events",
            bus.listeners as f64,
        )?;
        counter(
            &mut enc,
            "berth_events_dropped",
            "Events not delivered to an /events reader whose queue was full (one per reader per event)",
            bus.dropped,
        )?;
        counter(
            &mut enc,
            "berth_events_gap_notices",
            "events-dropped notices sent to readers in place of what they missed",
            bus.gaps,
        )?;
        counter(
            &mut enc,
            "berth_events_log_lost",
            "Events that could not be written to the event log",
            bus.log_lost,
        )?;

        let driver = e.driver().name();
        let space = e.storage_space();
        for (name, help, used) in [
            (
                "berth_storage_pool_used_bytes",
                "Bytes used in the storage driver's pool (thin pool data/metadata, zpool, btrfs or backing filesystem)",
                true,
            ),
            (
                "berth_storage_pool_size_bytes",
                "Size in bytes of the storage driver's pool",
                false,
            ),
        ] {
            let mut m = family(&mut enc, name, help, MetricType::Gauge)?;
            for s in space.iter() {
                let labels = [("driver", driver), ("pool", s.pool.as_str())];
                labelled_gauge(&mut m, &labels, if used { s.used } else { s.total } as f64)?;
            }
        }

        let tick = e.stats().report();
        gauge(
            &mut enc,
            "berth_stats_tick_seconds",
            "Time the stats sampler's last tick took to read every running container",
            tick.took.as_secs_f64(),
        )?;
        gauge(
            &mut enc,
            "berth_stats_containers",
            "Containers the stats sampler read in its last tick",
            tick.containers as f64,
        )?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        gauge(
            &mut enc,
            "engine_daemon_engine_cpus_cpus",
            "The number of cpus that the host system of the engine has",
            cpus as f64,
        )?;
        gauge(
            &mut enc,
            "engine_daemon_engine_memory_bytes",
            "The number of bytes of memory that the host system of the engine has",
            e.stats().machine_memory() as f64,
        )?;
        Ok(())
    }
}
