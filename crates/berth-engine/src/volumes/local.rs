//! dockerd's `local` volume driver, as far as it differs from "a directory":
//! the rules for names and options, and the `type`/`device`/`o` options
//! that mount something (tmpfs, a bind of a host directory, nfs...) on the
//! volume's `_data` while containers use it.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, StatxAttributes, StatxFlags, CWD};
use rustix::mount::{MountFlags, UnmountFlags};

/// The label dockerd puts on volumes it names itself (`-v /path`).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The only driver berth has.
pub const DRIVER: &str = "local";

/// The characters a local volume name may use, as dockerd spells them.
const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// Checks a volume name the way the local driver does: it becomes a
/// directory name, so nothing that could climb out of `volumes/`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.len() == 1 {
        return Err(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        );
    }
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok {
        return Err(format!(
            "{name:?} includes invalid characters for a local volume name, only {NAME_CHARS:?} are allowed. If you intended to pass a host directory, use absolute path"
        ));
    }
    Ok(())
}

/// Checks `--opt` keys and their dependencies as the local driver does.
pub fn validate_opts(opts: &HashMap<String, String>) -> Result<(), String> {
    for key in opts.keys() {
        if !matches!(key.as_str(), "type" | "o" | "device" | "size") {
            return Err(format!("invalid option: {key:?}"));
        }
    }
    if let Some(size) = opts.get("size") {
        if parse_ram_size(size)? > 0 {
            // dockerd sets an XFS project quota here; berth's volumes live
            // on the data root without one.
            return Err("quota size requested but no quota support".into());
        }
    }
    let required: [(&str, &[&str]); 3] = [
        ("device", &["type"]),
        ("type", &["device"]),
        ("o", &["device", "type"]),
    ];
    for (opt, needs) in required {
        if opts.contains_key(opt) {
            for need in needs {
                if !opts.contains_key(*need) {
                    return Err(format!("missing required option: {need:?}"));
                }
            }
        }
    }
    Ok(())
}

/// Sizes as docker's `RAMInBytes` reads them: `512`, `64k`, `1.5g`,
/// `10MiB`, binary multiples.
fn parse_ram_size(value: &str) -> Result<i64, String> {
    let bad = || format!("invalid size: '{value}'");
    let s = value.trim();
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..digits].parse().map_err(|_| bad())?;
    let unit = s[digits..].trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((number * mult) as i64)
}

/// Whether the volume's options ask for something to be mounted on `_data`.
pub fn needs_mount(opts: &HashMap<String, String>) -> bool {
    opts.get("type").is_some_and(|t| !t.is_empty())
        || opts.get("device").is_some_and(|d| !d.is_empty())
}

/// Mount option words and the flags they set (`true`) or clear (`false`),
/// as `mount(8)` and dockerd's local driver read `o=`.
fn mount_flag(word: &str) -> Option<(MountFlags, bool)> {
    let f = |flag, set| Some((flag, set));
    match word {
        "defaults" => f(MountFlags::empty(), true),
        "ro" => f(MountFlags::RDONLY, true),
        "rw" => f(MountFlags::RDONLY, false),
        "nosuid" => f(MountFlags::NOSUID, true),
        "suid" => f(MountFlags::NOSUID, false),
        "nodev" => f(MountFlags::NODEV, true),
        "dev" => f(MountFlags::NODEV, false),
        "noexec" => f(MountFlags::NOEXEC, true),
        "exec" => f(MountFlags::NOEXEC, false),
        "sync" => f(MountFlags::SYNCHRONOUS, true),
        "async" => f(MountFlags::SYNCHRONOUS, false),
        "dirsync" => f(MountFlags::DIRSYNC, true),
        "noatime" => f(MountFlags::NOATIME, true),
        "atime" => f(MountFlags::NOATIME, false),
        "nodiratime" => f(MountFlags::NODIRATIME, true),
        "diratime" => f(MountFlags::NODIRATIME, false),
        "relatime" => f(MountFlags::RELATIME, true),
        "norelatime" => f(MountFlags::RELATIME, false),
        "strictatime" => f(MountFlags::STRICTATIME, true),
        "nostrictatime" => f(MountFlags::STRICTATIME, false),
        "bind" => f(MountFlags::BIND, true),
        "rbind" => f(MountFlags::BIND | MountFlags::REC, true),
        _ => None,
    }
}

/// Mounts what the options describe on `target` (the volume's `_data`).
/// A read-only bind needs a second, remounting call: the kernel ignores
/// `MS_RDONLY` on the bind itself.
pub fn mount(opts: &HashMap<String, String>, target: &Path) -> Result<(), String> {
    let device = opts.get("device").map(String::as_str).unwrap_or_default();
    let fstype = opts.get("type").map(String::as_str).unwrap_or_default();
    if device.is_empty() {
        return Err("failed to mount local volume: missing device in volume options".into());
    }
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    for word in opts
        .get("o")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
    {
        match mount_flag(word) {
            Some((flag, true)) => flags |= flag,
            Some((flag, false)) => flags &= !flag,
            None if word.is_empty() => {}
            None => data.push(word),
        }
    }
    let data = data.join(",");
    let fail = |e: rustix::io::Errno| {
        format!(
            "failed to mount local volume: mount {device}:{}, flags: {:#x}, data: {data}: {}",
            target.display(),
            flags.bits(),
            std::io::Error::from(e)
        )
    };
    let data_c = CString::new(data.clone()).map_err(|_| "mount data contains NUL".to_string())?;
    rustix::mount::mount(device, target, fstype, flags, data_c.as_c_str()).map_err(fail)?;
    if flags.contains(MountFlags::BIND) && flags.contains(MountFlags::RDONLY) {
        if let Err(e) = rustix::mount::mount_remount(target, flags, "") {
            let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
            return Err(fail(e));
        }
    }
    Ok(())
}

/// Unmounts `_data`; already unmounted is fine.
pub fn unmount(target: &Path) -> Result<(), String> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(_) if !is_mount_root(target) => Ok(()),
        Err(e) => Err(format!(
            "error while unmounting volume path '{}': {}",
            target.display(),
            std::io::Error::from(e)
        )),
    }
}

/// Whether something is mounted on `path` itself.
pub fn is_mount_root(path: &Path) -> bool {
    match rustix::fs::statx(
        CWD,
        path,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    ) {
        Ok(st) => st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
        Err(_) => false,
    }
}

/// Bytes the files under `dir` take as dockerd counts them for `system df`
/// and prune: the sizes of everything that is not a directory, each
/// hardlinked inode once. Symlinks are never followed.
pub fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                // Removed while we walked: it no longer takes space.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_follow_dockerd() {
        assert!(validate_name("data").is_ok());
        assert!(validate_name("my_vol.1-x").is_ok());
        assert_eq!(
            validate_name("a").unwrap_err(),
            "volume name is too short, names should be at least two alphanumeric characters"
        );
        let err = validate_name("../etc").unwrap_err();
        assert!(err.starts_with("\"../etc\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed."), "{err}");
        assert!(validate_name("_x").is_err());
        assert!(validate_name("a/b").is_err());
    }

    #[test]
    fn options_follow_dockerd() {
        assert!(validate_opts(&opts(&[])).is_ok());
        assert!(validate_opts(&opts(&[("type", "tmpfs"), ("device", "tmpfs")])).is_ok());
        assert_eq!(
            validate_opts(&opts(&[("colour", "red")])).unwrap_err(),
            "invalid option: \"colour\""
        );
        assert_eq!(
            validate_opts(&opts(&[("type", "tmpfs")])).unwrap_err(),
            "missing required option: \"device\""
        );
        assert_eq!(
            validate_opts(&opts(&[("o", "bind")])).unwrap_err(),
            "missing required option: \"device\""
        );
        assert_eq!(
            validate_opts(&opts(&[("size", "10m")])).unwrap_err(),
            "quota size requested but no quota support"
        );
        assert!(validate_opts(&opts(&[("size", "0")])).is_ok());
        assert!(validate_opts(&opts(&[("size", "lots")])).is_err());
        assert_eq!(parse_ram_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_ram_size("10MiB").unwrap(), 10 << 20);
    }

    #[test]
    fn size_counts_hardlinks_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c"), vec![0u8; 24]).unwrap();
        assert_eq!(dir_size(dir.path()).unwrap(), 1024);
    }
}
