//! The `/containers/{id}/stats` body exactly as dockerd (API 1.47) writes
//! it: field names, which fields are omitted when zero, `null` blkio lists
//! on cgroup v2, Go's time format (zero time `0001-01-01T00:00:00Z`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// A timestamp as Go's `time.Time` marshals it: RFC 3339, trailing zeros
/// of the fraction cut, the zero value when unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GoTime(pub Option<DateTime<Utc>>);

impl GoTime {
    pub fn format(&self) -> String {
        let Some(t) = self.0 else {
            return "0001-01-01T00:00:00Z".to_string();
        };
        let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
        let nanos = t.timestamp_subsec_nanos();
        if nanos == 0 {
            return base + "Z";
        }
        let frac = format!("{nanos:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.format())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    pub total_usage: u64,
    /// Per CPU, cgroup v1 only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_usage: Vec<u64>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    /// The host's CPU time (all CPUs, /proc/stat) at the same instant.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub system_cpu_usage: u64,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub online_cpus: u32,
    pub throttling_data: ThrottlingData,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub max_usage: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub failcnt: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioStatEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// `None` lists are `null`, as Go's nil slices are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_serviced_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_queue_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_service_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_wait_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_merged_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub sectors_recursive: Option<Vec<BlkioStatEntry>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub limit: u64,
}

/// Windows-only in dockerd; always `{}` on Linux.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StorageStats {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One stats response; field order as dockerd's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerStats {
    pub read: GoTime,
    pub preread: GoTime,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub storage_stats: StorageStats,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    /// `/name`, with dockerd's leading slash.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Per interface of the container's network namespace; omitted when
    /// it has none (host or no networking).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkStats>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn go_time_format() {
        assert_eq!(GoTime(None).format(), "0001-01-01T00:00:00Z");
        let t = Utc.timestamp_opt(1_700_000_000, 120_000_000).unwrap();
        assert_eq!(GoTime(Some(t)).format(), "2023-11-14T22:13:20.12Z");
        let t = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        assert_eq!(GoTime(Some(t)).format(), "2023-11-14T22:13:20Z");
        let t = Utc.timestamp_opt(1_700_000_000, 1).unwrap();
        assert_eq!(GoTime(Some(t)).format(), "2023-11-14T22:13:20.000000001Z");
    }

    #[test]
    fn empty_stats_match_dockerd_for_a_stopped_container() {
        let s = ContainerStats {
            name: "/web".into(),
            id: "abc".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["read"], "0001-01-01T00:00:00Z");
        assert_eq!(v["preread"], "0001-01-01T00:00:00Z");
        assert_eq!(v["pids_stats"], serde_json::json!({}));
        assert!(v["blkio_stats"]["io_service_bytes_recursive"].is_null());
        assert_eq!(v["num_procs"], 0);
        assert_eq!(v["storage_stats"], serde_json::json!({}));
        assert_eq!(
            v["cpu_stats"],
            serde_json::json!({
                "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
            })
        );
        assert_eq!(v["memory_stats"], serde_json::json!({}));
        assert_eq!(v["name"], "/web");
        assert!(v.get("networks").is_none());
    }
}
