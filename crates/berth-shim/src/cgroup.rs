//! Whether the kernel OOM killer struck in a container's cgroup, read when
//! its init exits (the cgroup lives until the runtime deletes the
//! container): `oom_kill` of v1 `memory.oom_control` or v2 `memory.events`.
//! The shim records it in the exit record, so the answer survives berthd
//! being down and the cgroup being deleted later.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The OOM verdict for the container of the bundle; false when it cannot
/// be told (no memory controller, systemd-style path).
pub fn oom_killed(bundle: &Path) -> bool {
    let Some(path) = cgroups_path(bundle) else {
        return false;
    };
    let (file, key) = if is_unified() {
        (
            Path::new(CGROUP_ROOT).join(&path).join("memory.events"),
            "oom_kill",
        )
    } else {
        let Some(mount) = v1_memory_mount() else {
            return false;
        };
        (mount.join(&path).join("memory.oom_control"), "oom_kill")
    };
    counter(&file, key).is_some_and(|n| n > 0)
}

/// `linux.cgroupsPath` of the bundle's spec, relative to a hierarchy root.
fn cgroups_path(bundle: &Path) -> Option<PathBuf> {
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).ok()?).ok()?;
    let p = spec.get("linux")?.get("cgroupsPath")?.as_str()?;
    // "slice:prefix:name" belongs to the systemd driver, which berth does
    // not use.
    if p.contains(':') {
        return None;
    }
    Some(PathBuf::from(p.trim_start_matches('/')))
}

fn is_unified() -> bool {
    statfs(CGROUP_ROOT).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// Where the v1 memory controller is mounted.
fn v1_memory_mount() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let mount_point = pre.split(' ').nth(4)?;
        let mut post = post.split(' ');
        let fstype = post.next()?;
        let super_opts = post.nth(1)?;
        (fstype == "cgroup" && super_opts.split(',').any(|o| o == "memory"))
            .then(|| PathBuf::from(mount_point))
    })
}

fn counter(file: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counter_and_the_spec_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(
            counter(&dir.path().join("memory.oom_control"), "oom_kill"),
            Some(2)
        );
        assert_eq!(
            counter(&dir.path().join("memory.oom_control"), "nope"),
            None
        );
        fs::write(
            dir.path().join("config.json"),
            r#"{"linux":{"cgroupsPath":"/berth/abc"}}"#,
        )
        .unwrap();
        assert_eq!(cgroups_path(dir.path()), Some(PathBuf::from("berth/abc")));
    }
}
