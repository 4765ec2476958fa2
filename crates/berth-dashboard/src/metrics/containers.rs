//! cAdvisor's per-container metrics, encoded at scrape time from the stats
//! sampler's newest samples: names, units and labels (`id` = the cgroup
//! path, `name`, `image`, `container_label_*`) as cAdvisor writes them, so
//! existing dashboards and alerts work. Labels and specs are built once per
//! container and kept until an event of that container; a scrape reads
//! only memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use berth_engine::stats::ContainerSnapshot;
use berth_engine::Engine;
use bollard_stubs::models::{EventMessage, EventMessageTypeEnum};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use tokio::sync::broadcast;

/// Labels of one container, in cAdvisor's order.
type Labels = Vec<(String, String)>;

/// What a scrape needs of a container besides its sample: labels and the
/// parts of its configuration cAdvisor reports as `container_spec_*`.
#[derive(Debug)]
struct Spec {
    labels: Labels,
    start_time: Option<f64>,
    memory_limit: i64,
    cpu_quota: i64,
    cpu_period: i64,
    cpu_shares: i64,
}

/// cAdvisor's sanitising of a container label's key into a label name:
/// anything but `[a-zA-Z0-9_]` becomes `_`.
pub fn label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.insert_str(0, "container_label_");
    out
}

fn spec_of(engine: &Engine, snap: &ContainerSnapshot) -> Option<Spec> {
    let c = engine.container_record(&snap.id)?;
    let mut labels: Labels = vec![
        ("id".into(), snap.cgroup.clone()),
        ("image".into(), c.config.image.clone().unwrap_or_default()),
        ("name".into(), c.name.trim_start_matches('/').to_string()),
    ];
    let mut user: Vec<(String, String)> = c
        .config
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (label_name(&k), v))
        .collect();
    user.sort();
    // Two keys may sanitise to one name; a label set must not repeat one.
    user.dedup_by(|a, b| a.0 == b.0);
    labels.extend(user);
    let hc = &c.host_config;
    let nano = hc.nano_cpus.unwrap_or(0);
    // --cpus is a quota over dockerd's 100 ms period.
    let (cpu_quota, cpu_period) = if nano > 0 {
        (nano / 10_000, 100_000)
    } else {
        (hc.cpu_quota.unwrap_or(0), hc.cpu_period.unwrap_or(0))
    };
    Some(Spec {
        labels,
        start_time: c
            .state
            .started_at
            .map(|t| t.timestamp_nanos_opt().unwrap_or(0) as f64 / 1e9),
        memory_limit: hc.memory.unwrap_or(0),
        cpu_quota,
        cpu_period: if cpu_period == 0 && cpu_quota > 0 {
            100_000
        } else {
            cpu_period
        },
        cpu_shares: hc.cpu_shares.unwrap_or(0),
    })
}

/// Container specs by ID, forgotten on any event of the container.
struct SpecCache {
    events: broadcast::Receiver<EventMessage>,
    specs: HashMap<String, Arc<Spec>>,
}

/// The cAdvisor-named container families.
pub struct ContainerCollector {
    engine: Arc<Engine>,
    cache: Mutex<SpecCache>,
    /// Block devices by `major:minor`, as cAdvisor names them (`/dev/sda`).
    devices: Mutex<HashMap<(u64, u64), String>>,
}

impl std::fmt::Debug for ContainerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContainerCollector")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ContainerCollector {
    pub fn new(engine: Arc<Engine>) -> Self {
        let events = engine.events().subscribe();
        ContainerCollector {
            engine,
            cache: Mutex::new(SpecCache {
                events,
                specs: HashMap::new(),
            }),
            devices: Mutex::new(HashMap::new()),
        }
    }

    /// The spec of every sampled container, rebuilt only where an event
    /// (rename, update, restart, ...) may have changed it.
    fn specs(&self, snaps: &[ContainerSnapshot]) -> Vec<Option<Arc<Spec>>> {
        let mut cache = lock(&self.cache);
        let mut forget = Vec::new();
        let mut all = false;
        loop {
            match cache.events.try_recv() {
                Ok(ev) => {
                    if ev.typ == Some(EventMessageTypeEnum::CONTAINER) {
                        if let Some(id) = ev.actor.and_then(|a| a.id) {
                            forget.push(id);
                        }
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => all = true,
                Err(_) => break,
            }
        }
        if all {
            cache.specs.clear();
        }
        for id in forget {
            cache.specs.remove(&id);
        }
        cache
            .specs
            .retain(|id, _| snaps.iter().any(|s| &s.id == id));
        snaps
            .iter()
            .map(|s| {
                if let Some(spec) = cache.specs.get(&s.id) {
                    return Some(Arc::clone(spec));
                }
                let spec = Arc::new(spec_of(&self.engine, s)?);
                cache.specs.insert(s.id.clone(), Arc::clone(&spec));
                Some(spec)
            })
            .collect()
    }

    fn device_name(&self, major: u64, minor: u64) -> String {
        lock(&self.devices)
            .entry((major, minor))
            .or_insert_with(|| {
                std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
                    .ok()
                    .and_then(|t| {
                        t.lines()
                            .find_map(|l| l.strip_prefix("DEVNAME=").map(|d| format!("/dev/{d}")))
                    })
                    .unwrap_or_else(|| format!("{major}:{minor}"))
            })
            .clone()
    }
}

/// One family: a descriptor, then a sample per container.
struct Family<'a, 'b> {
    encoder: &'a mut DescriptorEncoder<'b>,
}

impl Family<'_, '_> {
    fn write(
        &mut self,
        name: &str,
        help: &str,
        counter: bool,
        mut each: impl FnMut(&mut MetricEncoder<'_>) -> Result<(), std::fmt::Error>,
    ) -> Result<(), std::fmt::Error> {
        let typ = if counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        let mut m = self.encoder.encode_descriptor(name, help, None, typ)?;
        each(&mut m)
    }
}

fn counter(m: &mut MetricEncoder<'_>, labels: &impl EncodeLabelSet, v: f64) -> std::fmt::Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, f64, f64>(&v, None)
}

fn gauge(m: &mut MetricEncoder<'_>, labels: &impl EncodeLabelSet, v: f64) -> std::fmt::Result {
    m.encode_family(labels)?.encode_gauge(&v)
}

/// A per-container value: what a family reads from a sample and spec.
type Read = fn(&ContainerSnapshot, &Spec) -> Option<f64>;

/// The plain families (one sample per container, no extra labels):
/// name, help, counter or gauge, how to read it.
const PLAIN: &[(&str, &str, bool, Read)] = &[
    (
        "container_cpu_usage_seconds",
        "Cumulative cpu time consumed in seconds.",
        true,
        |s, _| Some(s.point.cpu as f64 / 1e9),
    ),
    (
        "container_cpu_user_seconds",
        "Cumulative user cpu time consumed in seconds.",
        true,
        |s, _| Some(s.point.cpu_user as f64 / 1e9),
    ),
    (
        "container_cpu_system_seconds",
        "Cumulative system cpu time consumed in seconds.",
        true,
        |s, _| Some(s.point.cpu_system as f64 / 1e9),
    ),
    (
        "container_cpu_cfs_periods",
        "Number of elapsed enforcement period intervals.",
        true,
        |s, _| Some(s.latest.cgroup.cpu.throttling_data.periods as f64),
    ),
    (
        "container_cpu_cfs_throttled_periods",
        "Number of throttled period intervals.",
        true,
        |s, _| Some(s.latest.cgroup.cpu.throttling_data.throttled_periods as f64),
    ),
    (
        "container_cpu_cfs_throttled_seconds",
        "Total time duration the container has been throttled.",
        true,
        |s, _| Some(s.point.cpu_throttled as f64 / 1e9),
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        false,
        |s, _| Some(s.point.mem as f64),
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        false,
        |s, _| Some(s.point.working_set as f64),
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes.",
        false,
        |s, _| memory_stat(s, &["total_rss", "anon"]),
    ),
    (
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        false,
        |s, _| memory_stat(s, &["total_cache", "file"]),
    ),
    (
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        false,
        |s, _| Some(s.latest.cgroup.memory.max_usage as f64),
    ),
    // A counter in cAdvisor without the `_total` OpenMetrics would add
    // to a counter: a gauge keeps the name dashboards query.
    (
        "container_memory_failcnt",
        "Number of memory usage hits limits",
        false,
        |s, _| Some(s.latest.cgroup.memory.failcnt as f64),
    ),
    (
        "container_oom_events",
        "Count of out of memory events observed for the container",
        true,
        |s, _| Some(s.latest.cgroup.oom_kills as f64),
    ),
    (
        "container_processes",
        "Number of processes running inside the container.",
        false,
        |s, _| Some(s.point.pids as f64),
    ),
    (
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        false,
        |_, spec| spec.start_time,
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        false,
        |_, spec| Some(spec.memory_limit as f64),
    ),
    (
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        false,
        |_, spec| Some(spec.cpu_quota as f64),
    ),
    (
        "container_spec_cpu_period",
        "CPU period of the container.",
        false,
        |_, spec| Some(spec.cpu_period as f64),
    ),
    (
        "container_spec_cpu_shares",
        "CPU share of the container.",
        false,
        |_, spec| Some(spec.cpu_shares as f64),
    ),
];

fn memory_stat(s: &ContainerSnapshot, keys: &[&str]) -> Option<f64> {
    let stats = &s.latest.cgroup.memory.stats;
    keys.iter().find_map(|k| stats.get(*k)).map(|v| *v as f64)
}

/// Which counter of an interface a network family reports.
type NetRead = fn(&berth_engine::stats::response::NetworkStats) -> u64;

/// Network families: name, help, which counter of an interface.
const NETWORK: &[(&str, &str, NetRead)] = &[
    (
        "container_network_receive_bytes",
        "Cumulative count of bytes received",
        |n| n.rx_bytes,
    ),
    (
        "container_network_receive_packets",
        "Cumulative count of packets received",
        |n| n.rx_packets,
    ),
    (
        "container_network_receive_errors",
        "Cumulative count of errors encountered while receiving",
        |n| n.rx_errors,
    ),
    (
        "container_network_receive_packets_dropped",
        "Cumulative count of packets dropped while receiving",
        |n| n.rx_dropped,
    ),
    (
        "container_network_transmit_bytes",
        "Cumulative count of bytes transmitted",
        |n| n.tx_bytes,
    ),
    (
        "container_network_transmit_packets",
        "Cumulative count of packets transmitted",
        |n| n.tx_packets,
    ),
    (
        "container_network_transmit_errors",
        "Cumulative count of errors encountered while transmitting",
        |n| n.tx_errors,
    ),
    (
        "container_network_transmit_packets_dropped",
        "Cumulative count of packets dropped while transmitting",
        |n| n.tx_dropped,
    ),
];

impl Collector for ContainerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut snaps = self.engine.stats().snapshot();
        snaps.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let specs = self.specs(&snaps);
        let rows: Vec<(&ContainerSnapshot, &Spec)> = snaps
            .iter()
            .zip(&specs)
            .filter_map(|(s, spec)| Some((s, spec.as_deref()?)))
            .collect();
        let mut fam = Family {
            encoder: &mut encoder,
        };
        for (name, help, is_counter, read) in PLAIN {
            fam.write(name, help, *is_counter, |m| {
                for (s, spec) in &rows {
                    if let Some(v) = read(s, spec) {
                        if *is_counter {
                            counter(m, &spec.labels, v)?;
                        } else {
                            gauge(m, &spec.labels, v)?;
                        }
                    }
                }
                Ok(())
            })?;
        }
        for (name, help, read) in NETWORK {
            fam.write(name, help, true, |m| {
                for (s, spec) in &rows {
                    for (iface, n) in &s.latest.networks {
                        let labels = (spec.labels.as_slice(), [("interface", iface.as_str())]);
                        counter(m, &labels, read(n) as f64)?;
                    }
                }
                Ok(())
            })?;
        }
        // Block I/O per device, as cAdvisor labels it.
        let io: Vec<Vec<(String, u64, u64)>> = rows
            .iter()
            .map(|(s, _)| {
                let mut per: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
                for e in s
                    .latest
                    .cgroup
                    .blkio
                    .io_service_bytes_recursive
                    .iter()
                    .flatten()
                {
                    let slot = per.entry((e.major, e.minor)).or_default();
                    if e.op.eq_ignore_ascii_case("read") {
                        slot.0 += e.value;
                    } else if e.op.eq_ignore_ascii_case("write") {
                        slot.1 += e.value;
                    }
                }
                let mut out: Vec<(String, u64, u64)> = per
                    .into_iter()
                    .map(|((ma, mi), (r, w))| (self.device_name(ma, mi), r, w))
                    .collect();
                out.sort();
                out
            })
            .collect();
        for (name, help, read_side) in [
            (
                "container_fs_reads_bytes",
                "Cumulative count of bytes read",
                true,
            ),
            (
                "container_fs_writes_bytes",
                "Cumulative count of bytes written",
                false,
            ),
        ] {
            fam.write(name, help, true, |m| {
                for ((_, spec), devices) in rows.iter().zip(&io) {
                    for (dev, r, w) in devices {
                        let labels = (spec.labels.as_slice(), [("device", dev.as_str())]);
                        counter(m, &labels, if read_side { *r } else { *w } as f64)?;
                    }
                }
                Ok(())
            })?;
        }
        // The writable layer: cached usage (the sampler keeps it fresh) and
        // the storage size limit, labelled with the storage driver.
        let driver = self.engine.driver().name();
        let fs: Vec<(Option<u64>, Option<u64>)> = rows
            .iter()
            .map(|(s, _)| self.engine.container_fs(&s.id))
            .collect();
        fam.write(
            "container_fs_usage_bytes",
            "Number of bytes that are consumed by the container on this filesystem.",
            false,
            |m| {
                for ((_, spec), (usage, _)) in rows.iter().zip(&fs) {
                    if let Some(u) = usage {
                        let labels = (spec.labels.as_slice(), [("device", driver)]);
                        gauge(m, &labels, *u as f64)?;
                    }
                }
                Ok(())
            },
        )?;
        fam.write(
            "container_fs_limit_bytes",
            "Number of bytes that can be consumed by the container on this filesystem.",
            false,
            |m| {
                for ((_, spec), (_, limit)) in rows.iter().zip(&fs) {
                    if let Some(l) = limit {
                        let labels = (spec.labels.as_slice(), [("device", driver)]);
                        gauge(m, &labels, *l as f64)?;
                    }
                }
                Ok(())
            },
        )?;
        let machine = self.engine.stats().machine_memory();
        let cores = self
            .engine
            .stats()
            .host_latest()
            .map(|h| h.cpus)
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        fam.write(
            "machine_cpu_cores",
            "Number of logical CPU cores.",
            false,
            |m| m.encode_gauge(&(cores as f64)),
        )?;
        fam.write(
            "machine_memory_bytes",
            "Amount of memory installed on the machine.",
            false,
            |m| m.encode_gauge(&(machine as f64)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_are_sanitised_like_cadvisor() {
        assert_eq!(
            label_name("com.example.team-name"),
            "container_label_com_example_team_name"
        );
        assert_eq!(label_name("a_b9"), "container_label_a_b9");
    }
}
