//! Cgroup limits, devices and rlimits from a HostConfig, with dockerd's
//! conversions: NanoCpus to a CFS quota over a 100 ms period, MemorySwap
//! defaulting to twice Memory (where swap is accounted), PidsLimit <= 0
//! meaning unlimited, the default device allow-list (everything for
//! `--privileged`), `--device` and `--device-cgroup-rule`, and Ulimits.

use std::path::Path;

use bollard_stubs::models::{HostConfig, ThrottleDevice};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxBlockIoBuilder, LinuxCpu, LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemory, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, LinuxThrottleDevice,
    LinuxThrottleDeviceBuilder, LinuxWeightDevice, LinuxWeightDeviceBuilder, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType,
};
use rustix::fs::FileType;

use super::spec_err;
use crate::error::{EngineError, Result};

/// The CFS period dockerd uses for `--cpus`, in microseconds.
const NANO_CPUS_PERIOD: u64 = 100_000;

/// Whether the kernel accounts swap (dockerd drops swap limits, with a
/// warning, where it does not).
fn swap_accounted() -> bool {
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes");
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
    v1.exists() || v2.exists()
}

fn memory(hc: &HostConfig) -> Result<Option<LinuxMemory>> {
    let mut b = LinuxMemoryBuilder::default();
    let mut any = false;
    let limit = hc.memory.unwrap_or(0);
    if limit > 0 {
        b = b.limit(limit);
        any = true;
    }
    if let Some(r) = hc.memory_reservation.filter(|r| *r > 0) {
        b = b.reservation(r);
        any = true;
    }
    let swap = match hc.memory_swap.unwrap_or(0) {
        0 if limit > 0 => limit * 2,
        s => s,
    };
    if swap > 0 && swap_accounted() {
        b = b.swap(swap);
        any = true;
    }
    // -1 is "the kernel's default"; dockerd validates the 0-100 range.
    if let Some(s) = hc.memory_swappiness.filter(|s| *s >= 0) {
        b = b.swappiness(s as u64);
        any = true;
    }
    if let Some(d) = hc.oom_kill_disable {
        b = b.disable_oom_killer(d);
        any = true;
    }
    if !any {
        return Ok(None);
    }
    b.build().map(Some).map_err(spec_err)
}

fn cpu(hc: &HostConfig) -> Result<Option<LinuxCpu>> {
    let mut b = LinuxCpuBuilder::default();
    let mut any = false;
    match hc.cpu_shares.unwrap_or(0) {
        0 => {}
        s if s < 0 => {
            return Err(EngineError::InvalidParameter(format!(
                "invalid CPU shares ({s}): value must be a positive integer"
            )))
        }
        s => {
            b = b.shares(s as u64);
            any = true;
        }
    }
    if let Some(c) = hc.cpuset_cpus.as_deref().filter(|c| !c.is_empty()) {
        b = b.cpus(c.to_string());
        any = true;
    }
    if let Some(m) = hc.cpuset_mems.as_deref().filter(|m| !m.is_empty()) {
        b = b.mems(m.to_string());
        any = true;
    }
    let nano = hc.nano_cpus.unwrap_or(0);
    if nano > 0 {
        b = b
            .period(NANO_CPUS_PERIOD)
            .quota(nano * NANO_CPUS_PERIOD as i64 / 1_000_000_000);
        any = true;
    }
    if let Some(p) = hc.cpu_period.filter(|p| *p != 0) {
        b = b.period(p as u64);
        any = true;
    }
    if let Some(q) = hc.cpu_quota.filter(|q| *q != 0) {
        b = b.quota(q);
        any = true;
    }
    if let Some(p) = hc.cpu_realtime_period.filter(|p| *p != 0) {
        b = b.realtime_period(p as u64);
        any = true;
    }
    if let Some(r) = hc.cpu_realtime_runtime.filter(|r| *r != 0) {
        b = b.realtime_runtime(r);
        any = true;
    }
    if !any {
        return Ok(None);
    }
    b.build().map(Some).map_err(spec_err)
}

/// Major and minor of the block device at `path`.
fn block_device(path: &str) -> Result<(i64, i64)> {
    let st = rustix::fs::stat(path)
        .map_err(|e| EngineError::InvalidParameter(format!("stat {path}: {e}")))?;
    Ok((
        rustix::fs::major(st.st_rdev) as i64,
        rustix::fs::minor(st.st_rdev) as i64,
    ))
}

fn throttle(devs: Option<&Vec<ThrottleDevice>>) -> Result<Option<Vec<LinuxThrottleDevice>>> {
    let Some(devs) = devs.filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    devs.iter()
        .map(|d| {
            let (major, minor) = block_device(d.path.as_deref().unwrap_or(""))?;
            LinuxThrottleDeviceBuilder::default()
                .major(major)
                .minor(minor)
                .rate(d.rate.unwrap_or(0).max(0) as u64)
                .build()
                .map_err(spec_err)
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn block_io(hc: &HostConfig) -> Result<Option<LinuxBlockIo>> {
    let mut b = LinuxBlockIoBuilder::default();
    let mut any = false;
    if let Some(w) = hc.blkio_weight.filter(|w| *w != 0) {
        b = b.weight(w);
        any = true;
    }
    if let Some(devs) = hc.blkio_weight_device.as_ref().filter(|d| !d.is_empty()) {
        let wd = devs
            .iter()
            .map(|d| {
                let (major, minor) = block_device(d.path.as_deref().unwrap_or(""))?;
                let mut w = LinuxWeightDeviceBuilder::default()
                    .major(major)
                    .minor(minor);
                if let Some(weight) = d.weight {
                    w = w.weight(weight as u16);
                }
                w.build().map_err(spec_err)
            })
            .collect::<Result<Vec<LinuxWeightDevice>>>()?;
        b = b.weight_device(wd);
        any = true;
    }
    let throttles = [
        throttle(hc.blkio_device_read_bps.as_ref())?,
        throttle(hc.blkio_device_write_bps.as_ref())?,
        throttle(hc.blkio_device_read_iops.as_ref())?,
        throttle(hc.blkio_device_write_iops.as_ref())?,
    ];
    let [rb, wb, ri, wi] = throttles;
    if let Some(v) = rb {
        b = b.throttle_read_bps_device(v);
        any = true;
    }
    if let Some(v) = wb {
        b = b.throttle_write_bps_device(v);
        any = true;
    }
    if let Some(v) = ri {
        b = b.throttle_read_iops_device(v);
        any = true;
    }
    if let Some(v) = wi {
        b = b.throttle_write_iops_device(v);
        any = true;
    }
    if !any {
        return Ok(None);
    }
    b.build().map(Some).map_err(spec_err)
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access);
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().map_err(spec_err)
}

/// dockerd's device allow-list: nothing but null, zero, full, random,
/// urandom, tty and the console (the runtime adds ptys and tun), and
/// never /dev/fuse.
fn default_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    let c = Some(LinuxDeviceType::C);
    let mut rules = vec![rule(false, None, None, None, "rwm")?];
    for (major, minor) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        rules.push(rule(true, c, Some(major), Some(minor), "rwm")?);
    }
    rules.push(rule(false, c, Some(10), Some(229), "rwm")?);
    Ok(rules)
}

/// `--device-cgroup-rule`: `TYPE MAJOR:MINOR ACCESS`, `*` for any number.
fn parse_cgroup_rule(text: &str) -> Result<LinuxDeviceCgroup> {
    let bad = || EngineError::InvalidParameter(format!("invalid device cgroup rule: {text:?}"));
    let mut parts = text.split_whitespace();
    let typ = match parts.next().ok_or_else(bad)? {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let (major, minor) = parts
        .next()
        .ok_or_else(bad)?
        .split_once(':')
        .ok_or_else(bad)?;
    let num = |s: &str| -> Result<Option<i64>> {
        if s == "*" {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| bad())
        }
    };
    let access = parts.next().ok_or_else(bad)?;
    if parts.next().is_some() || access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(bad());
    }
    rule(true, Some(typ), num(major)?, num(minor)?, access)
}

/// A device node at `path` on the host, to appear at `in_container`.
fn device_at(path: &Path, in_container: &Path) -> Option<LinuxDevice> {
    let st = rustix::fs::lstat(path).ok()?;
    let typ = match FileType::from_raw_mode(st.st_mode) {
        FileType::CharacterDevice => LinuxDeviceType::C,
        FileType::BlockDevice => LinuxDeviceType::B,
        _ => return None,
    };
    LinuxDeviceBuilder::default()
        .path(in_container)
        .typ(typ)
        .major(rustix::fs::major(st.st_rdev) as i64)
        .minor(rustix::fs::minor(st.st_rdev) as i64)
        .file_mode(st.st_mode & 0o7777)
        .uid(st.st_uid)
        .gid(st.st_gid)
        .build()
        .ok()
}

/// Device nodes under `dir` (recursively), mapped below `in_container`.
/// `skip_special` leaves out what a privileged container must not get a
/// copy of (its own /dev/pts, shm, mqueue, the console...).
fn devices_under(dir: &Path, in_container: &Path, skip_special: bool, out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name_s = name.to_string_lossy();
        let path = e.path();
        let target = in_container.join(&name);
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                let special = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
                if !(skip_special && special.contains(&name_s.as_ref())) {
                    devices_under(&path, &target, skip_special, out);
                }
            }
            _ if skip_special && name_s == "console" => {}
            _ => out.extend(device_at(&path, &target)),
        }
    }
}

/// The devices to create in the container and the cgroup rules for them.
pub fn devices(hc: &HostConfig) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let privileged = hc.privileged.unwrap_or(false);
    let mut devs = Vec::new();
    let mut rules = if privileged {
        devices_under(Path::new("/dev"), Path::new("/dev"), true, &mut devs);
        vec![rule(true, None, None, None, "rwm")?]
    } else {
        default_rules()?
    };
    for m in hc.devices.iter().flatten() {
        let host = m.path_on_host.as_deref().unwrap_or("");
        let inside = m
            .path_in_container
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(host);
        let perms = m
            .cgroup_permissions
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("rwm");
        if privileged && host == inside {
            // Already there with every other host device.
            continue;
        }
        let resolved = std::fs::canonicalize(host).unwrap_or_else(|_| host.into());
        let mut found = Vec::new();
        match device_at(&resolved, Path::new(inside)) {
            Some(d) => found.push(d),
            None if resolved.is_dir() => {
                devices_under(&resolved, Path::new(inside), false, &mut found)
            }
            None => {}
        }
        if found.is_empty() {
            return Err(EngineError::InvalidParameter(format!(
                "error gathering device information while adding custom device {host:?}: not a device node"
            )));
        }
        if !privileged {
            for d in &found {
                rules.push(rule(
                    true,
                    Some(d.typ()),
                    Some(d.major()),
                    Some(d.minor()),
                    perms,
                )?);
            }
        }
        devs.extend(found);
    }
    if !privileged {
        for r in hc.device_cgroup_rules.iter().flatten() {
            rules.push(parse_cgroup_rule(r)?);
        }
    }
    Ok((devs, rules))
}

/// The cgroup resources of the container (devices included).
pub fn resources(hc: &HostConfig, device_rules: Vec<LinuxDeviceCgroup>) -> Result<LinuxResources> {
    let mut b = LinuxResourcesBuilder::default().devices(device_rules);
    if let Some(m) = memory(hc)? {
        b = b.memory(m);
    }
    if let Some(c) = cpu(hc)? {
        b = b.cpu(c);
    }
    if let Some(limit) = hc.pids_limit {
        // Zero and negative mean unlimited, which the runtime spells -1.
        let limit = if limit <= 0 { -1 } else { limit };
        b = b.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(spec_err)?,
        );
    }
    if let Some(io) = block_io(hc)? {
        b = b.block_io(io);
    }
    b.build().map_err(spec_err)
}

/// `Ulimits` as POSIX rlimits (`nofile` → `RLIMIT_NOFILE`; -1 is
/// unlimited).
pub fn rlimits(hc: &HostConfig) -> Result<Vec<PosixRlimit>> {
    hc.ulimits
        .iter()
        .flatten()
        .map(|u| {
            let name = u.name.as_deref().unwrap_or("");
            let typ: PosixRlimitType = serde_json::from_value(serde_json::Value::String(format!(
                "RLIMIT_{}",
                name.to_uppercase()
            )))
            .map_err(|_| EngineError::InvalidParameter(format!("invalid ulimit type: {name}")))?;
            // Go's uint64(int64) conversion: -1 is RLIM_INFINITY.
            let soft = u.soft.unwrap_or(0) as u64;
            let hard = u.hard.unwrap_or(0) as u64;
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()
                .map_err(spec_err)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::ResourcesUlimits;

    #[test]
    fn cpu_and_memory_conversions() {
        let hc = HostConfig {
            memory: Some(32 << 20),
            nano_cpus: Some(1_500_000_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(0),
            ..Default::default()
        };
        let r = resources(&hc, vec![]).unwrap();
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(32 << 20));
        if swap_accounted() {
            assert_eq!(m.swap(), Some(64 << 20));
        }
        let c = r.cpu().as_ref().unwrap();
        assert_eq!(
            (c.quota(), c.period(), c.shares()),
            (Some(150_000), Some(100_000), Some(512))
        );
        assert_eq!(c.cpus().as_deref(), Some("0"));
        assert_eq!(r.pids().unwrap().limit(), -1);

        let hc = HostConfig {
            cpu_quota: Some(50_000),
            cpu_period: Some(200_000),
            pids_limit: Some(10),
            memory_swap: Some(-1),
            ..Default::default()
        };
        let r = resources(&hc, vec![]).unwrap();
        let c = r.cpu().as_ref().unwrap();
        assert_eq!((c.quota(), c.period()), (Some(50_000), Some(200_000)));
        assert_eq!(r.pids().unwrap().limit(), 10);
        assert!(r.memory().is_none());
        assert!(resources(
            &HostConfig {
                cpu_shares: Some(-2),
                ..Default::default()
            },
            vec![]
        )
        .is_err());
    }

    #[test]
    fn device_rules() {
        let (devs, rules) = devices(&HostConfig::default()).unwrap();
        assert!(devs.is_empty());
        assert_eq!(rules.len(), 8);
        assert!(!rules[0].allow() && rules[0].typ().is_none());
        let hc = HostConfig {
            device_cgroup_rules: Some(vec!["c 42:* rmw".into()]),
            devices: Some(vec![bollard_stubs::models::DeviceMapping {
                path_on_host: Some("/dev/null".into()),
                path_in_container: Some("/dev/mynull".into()),
                cgroup_permissions: Some("r".into()),
            }]),
            ..Default::default()
        };
        let (devs, rules) = devices(&hc).unwrap();
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
        assert_eq!((devs[0].major(), devs[0].minor()), (1, 3));
        let last = rules.last().unwrap();
        assert_eq!(
            (last.major(), last.minor(), last.access().as_deref()),
            (Some(42), None, Some("rmw"))
        );
        assert!(parse_cgroup_rule("x 1:2 r").is_err());
        let (devs, rules) = devices(&HostConfig {
            privileged: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert!(devs.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!devs.iter().any(|d| d.path().starts_with("/dev/pts")));
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
    }

    #[test]
    fn ulimits() {
        let hc = HostConfig {
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(1024),
                hard: Some(-1),
            }]),
            ..Default::default()
        };
        let r = rlimits(&hc).unwrap();
        assert_eq!(r[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((r[0].soft(), r[0].hard()), (1024, u64::MAX));
        let bad = HostConfig {
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("bogus".into()),
                soft: Some(1),
                hard: Some(1),
            }]),
            ..Default::default()
        };
        assert!(rlimits(&bad).is_err());
    }
}
