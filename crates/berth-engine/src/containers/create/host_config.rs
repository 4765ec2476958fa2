//! The resource and policy settings of a HostConfig checked as dockerd
//! checks them, with its messages: memory and swap, CPUs, cpusets against
//! the host's, shm size, restart policy, storage options.

use bollard_stubs::models::{HostConfig, RestartPolicyNameEnum};

use super::bad;
use crate::error::Result;

/// Checks resource and policy settings as dockerd does, with its messages.
pub fn validate_host_config(host: &HostConfig) -> Result<()> {
    let memory = host.memory.unwrap_or(0);
    if memory > 0 && memory < 6 * 1024 * 1024 {
        return Err(bad("Minimum memory limit allowed is 6MB"));
    }
    if memory < 0 {
        return Err(bad(format!("invalid memory limit: {memory}")));
    }
    if let Some(swap) = host.memory_swap.filter(|s| *s > 0) {
        if memory == 0 {
            return Err(bad(
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ));
        }
        if swap < memory {
            return Err(bad(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
    }
    if let Some(r) = host.memory_reservation.filter(|r| *r > 0) {
        if r < 6 * 1024 * 1024 {
            return Err(bad("Minimum memory reservation allowed is 6MB"));
        }
        if memory > 0 && r > memory {
            return Err(bad(
                "Minimum memory limit can not be less than memory reservation limit, see usage",
            ));
        }
    }
    let nano = host.nano_cpus.unwrap_or(0);
    if nano != 0 {
        if host.cpu_period.unwrap_or(0) > 0 {
            return Err(bad(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        if host.cpu_quota.unwrap_or(0) > 0 {
            return Err(bad(
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ));
        }
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        if nano < 0 || nano > ncpu * 1_000_000_000 {
            return Err(bad(format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )));
        }
    }
    if let Some(p) = host.cpu_period.filter(|p| *p != 0) {
        if !(1000..=1_000_000).contains(&p) {
            return Err(bad(
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
            ));
        }
    }
    if let Some(q) = host.cpu_quota.filter(|q| *q > 0) {
        if q < 1000 {
            return Err(bad("CPU cfs quota can not be less than 1ms (i.e. 1000)"));
        }
    }
    if host.cpu_shares.unwrap_or(0) < 0 {
        return Err(bad(format!(
            "invalid CPU shares ({}): value must be a positive integer",
            host.cpu_shares.unwrap_or(0)
        )));
    }
    if let Some(cpus) = host.cpuset_cpus.as_deref().filter(|c| !c.is_empty()) {
        let available = host_cpuset("cpus");
        if !cpuset_available(cpus, available.as_deref())
            .map_err(|e| bad(format!("Invalid value {cpus} for cpuset cpus: {e}")))?
        {
            return Err(bad(format!(
                "Requested CPUs are not available - requested {cpus}, available: {}",
                available.unwrap_or_default()
            )));
        }
    }
    if let Some(mems) = host.cpuset_mems.as_deref().filter(|m| !m.is_empty()) {
        let available = host_cpuset("mems");
        if !cpuset_available(mems, available.as_deref())
            .map_err(|e| bad(format!("Invalid value {mems} for cpuset mems: {e}")))?
        {
            return Err(bad(format!(
                "Requested memory nodes are not available - requested {mems}, available: {}",
                available.unwrap_or_default()
            )));
        }
    }
    if host.shm_size.unwrap_or(0) < 0 {
        return Err(bad("SHM size can not be less than 0"));
    }
    if let Some(policy) = &host.restart_policy {
        let retries = policy.maximum_retry_count.unwrap_or(0);
        match policy.name {
            Some(RestartPolicyNameEnum::ON_FAILURE) if retries < 0 => {
                return Err(bad("maximum retry count cannot be negative"));
            }
            Some(RestartPolicyNameEnum::ALWAYS) | Some(RestartPolicyNameEnum::UNLESS_STOPPED)
                if retries != 0 =>
            {
                return Err(bad(format!(
                    "maximum retry count cannot be used with restart policy '{}'",
                    policy.name.map(|n| n.to_string()).unwrap_or_default()
                )));
            }
            _ => {}
        }
        let restarts = matches!(
            policy.name,
            Some(RestartPolicyNameEnum::ALWAYS)
                | Some(RestartPolicyNameEnum::UNLESS_STOPPED)
                | Some(RestartPolicyNameEnum::ON_FAILURE)
        );
        if restarts && host.auto_remove.unwrap_or(false) {
            return Err(bad(
                "can't create 'AutoRemove' container with restart policy",
            ));
        }
    }
    // Network modes naming networks are checked by `plan_networks`.
    if let Some(opts) = &host.storage_opt {
        for key in opts.keys() {
            if key != "size" {
                return Err(bad(format!("Unknown option {key}")));
            }
        }
    }
    Ok(())
}

/// The host's `cpuset.cpus` or `cpuset.mems` (`0-3,6`) from the root cpuset
/// cgroup, v1 or v2, as dockerd's sysinfo reads it; `None` when there is no
/// cpuset controller (dockerd then skips the check).
fn host_cpuset(what: &str) -> Option<String> {
    [
        format!("/sys/fs/cgroup/cpuset/cpuset.{what}"),
        format!("/sys/fs/cgroup/cpuset.{what}.effective"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
}

/// Whether every CPU (or memory node) in `requested` is in `available`;
/// `Err` with dockerd's words when `requested` does not parse.
fn cpuset_available(requested: &str, available: Option<&str>) -> std::result::Result<bool, String> {
    let have = available.map(|a| parse_uint_list(a, 0)).transpose()?;
    // dockerd's bound against `0-9223372036854775807` eating all memory.
    let max = have
        .as_ref()
        .and_then(|h| h.iter().max().copied())
        .unwrap_or(0)
        .max(8192);
    let want = parse_uint_list(requested, max)?;
    Ok(have.is_none_or(|have| want.is_subset(&have)))
}

/// dockerd's `parseUintList`: `7`, `1-6`, `0,3-4,7,8-10`; values above
/// `max` (when not 0) are refused.
fn parse_uint_list(
    s: &str,
    max: u64,
) -> std::result::Result<std::collections::BTreeSet<u64>, String> {
    let mut out = std::collections::BTreeSet::new();
    if s.is_empty() {
        return Ok(out);
    }
    let invalid = || format!("invalid format: {s}");
    let too_big = |v: u64| max != 0 && v > max;
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let lo: u64 = lo.parse().map_err(|_| invalid())?;
        let hi: u64 = hi.parse().map_err(|_| invalid())?;
        if hi < lo {
            return Err(invalid());
        }
        if too_big(hi) {
            return Err(format!("value of out range, maximum is {max}"));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_resources_in_dockerd_words() {
        let h = HostConfig {
            memory: Some(1024),
            ..Default::default()
        };
        assert_eq!(
            validate_host_config(&h).unwrap_err().to_string(),
            "Minimum memory limit allowed is 6MB"
        );
        let h = HostConfig {
            nano_cpus: Some(1_000_000_000_000),
            ..Default::default()
        };
        assert!(validate_host_config(&h)
            .unwrap_err()
            .to_string()
            .starts_with("Range of CPUs"));
        assert_eq!(cpuset_available("0-1,3", Some("0-3")), Ok(true));
        assert_eq!(cpuset_available("4", Some("0-3")), Ok(false));
        assert_eq!(cpuset_available("4", None), Ok(true));
        assert_eq!(
            cpuset_available("1-0", Some("0-3")),
            Err("invalid format: 1-0".to_string())
        );
        assert_eq!(
            cpuset_available("0-9223372036854775807", Some("0-3")),
            Err("value of out range, maximum is 8192".to_string())
        );
    }
}
