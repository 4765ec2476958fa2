//! What a daemon must not leave behind once its containers are removed, seen
//! from outside: cgroups named after a container ID (any controller, cgroup
//! v1 or v2, any parent), shim processes still serving its exec root (and
//! the /proc walk the testkit and the bench's sweep find processes with),
//! and loop devices backed by files under a directory (see also
//! [`crate::loopfs::loops_backed_under`]); and the host CPU counter the
//! stats tests hold a container's cgroup against.

use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted on Linux.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Cgroup directories whose name contains one of `ids`: berth's
/// `<ctrl>/berth/<id>` (v1), `berth/<id>` or `unified/berth/<id>` (v2),
/// dockerd's `<ctrl>/docker/<id>` or a systemd `docker-<id>.scope`. Looks four
/// levels deep, which covers every parent a daemon under test uses.
pub fn cgroups_named(ids: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if ids.is_empty() {
        return found;
    }
    walk(Path::new(CGROUP_ROOT), 4, &mut |dir| {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ids.iter().any(|id| name.contains(id.as_str())) {
            found.push(dir.to_path_buf());
        }
    });
    found.sort();
    found
}

/// The cgroup directories of one container for one controller file, e.g.
/// `freezer.state` (v1) or `cgroup.freeze` (v2): where to read what the
/// kernel enforces for it.
pub fn cgroup_files(id: &str, file: &str) -> Vec<PathBuf> {
    cgroups_named(&[id.to_string()])
        .into_iter()
        .map(|d| d.join(file))
        .filter(|f| f.exists())
        .collect()
}

fn walk(dir: &Path, depth: u32, visit: &mut dyn FnMut(&Path)) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // Cgroup directories are real directories; controller files and
        // the v1 `cpu,cpuacct` style symlinks are skipped.
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let path = entry.path();
        visit(&path);
        walk(&path, depth - 1, visit);
    }
}

/// Every live process but this one (zombies excluded: they serve nothing
/// and cannot be killed further) that `matches(command line, root
/// directory)` accepts, as `(pid, command line)`.
pub fn processes_where(matches: impl Fn(&str, &Path) -> bool) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let cmdline = cmdline.trim();
        let root =
            std::fs::read_link(entry.path().join("root")).unwrap_or_else(|_| PathBuf::from("/"));
        if matches(cmdline, &root) && !is_zombie(&entry.path()) {
            found.push((pid, cmdline.to_string()));
        }
    }
    found
}

/// Live `berth-shim` processes whose command line mentions `exec_root` —
/// the shims one daemon started.
pub fn shims_serving(exec_root: &Path) -> Vec<(i32, String)> {
    let needle = exec_root.display().to_string();
    processes_where(|cmdline, _| {
        let is_shim = cmdline
            .split_whitespace()
            .next()
            .is_some_and(|argv0| argv0.ends_with("berth-shim"));
        is_shim && cmdline.contains(&needle)
    })
}

fn is_zombie(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|s| {
            // The state follows the parenthesised command name, which may
            // itself contain spaces or parentheses.
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(false)
}

/// Host CPU time in nanoseconds as dockerd reads it: the first seven `cpu`
/// fields of /proc/stat, in USER_HZ (100) ticks.
pub fn host_cpu_nanos() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().unwrap_or_default();
    line.split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum::<u64>()
        * 10_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_named_after_an_unknown_id() {
        let id = "f".repeat(64);
        assert!(cgroups_named(std::slice::from_ref(&id)).is_empty());
        assert!(cgroup_files(&id, "tasks").is_empty());
        assert!(cgroups_named(&[]).is_empty());
    }

    #[test]
    fn this_process_is_no_shim() {
        let me = std::env::current_exe().unwrap();
        assert!(shims_serving(me.parent().unwrap()).is_empty());
    }
}
