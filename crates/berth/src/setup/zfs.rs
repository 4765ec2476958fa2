//! zfs set-up: `zpool create` on the device or image file (the pool's root
//! dataset left unmounted), then a dataset whose mountpoint is the data
//! root. ZFS mounts it itself whenever the pool is imported, so there is no
//! fstab entry to write.

use std::process::Command;

use super::{Checked, SetupError, Step};

/// Pool names: a letter first, then letters, digits and `_-.:`; a few
/// names are reserved.
fn check_pool_name(pool: &str) -> Result<(), SetupError> {
    let ok = pool.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && pool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
        && !["mirror", "raidz", "spare", "log"]
            .iter()
            .any(|r| pool.starts_with(r));
    if ok {
        Ok(())
    } else {
        Err(SetupError::Invalid(format!(
            "invalid pool name {pool:?}: a letter first, then letters, digits, '_', '-', '.', ':'"
        )))
    }
}

/// The summary, steps and notes for zfs; refuses a pool name in use.
pub(super) fn plan(
    c: &Checked,
    what: &str,
    pool: &str,
) -> Result<(String, Vec<Step>, Vec<String>), SetupError> {
    check_pool_name(pool)?;
    let exists = Command::new("zpool")
        .args(["list", "-H", "-o", "name", pool])
        .output()
        .is_ok_and(|o| o.status.success());
    if exists {
        return Err(SetupError::Refused(format!(
            "a zfs pool named {pool} exists already; choose another with --pool"
        )));
    }
    let target = c.target_text();
    let data_root = c.data_root_text();
    let dataset = format!("{pool}/berth");
    let mountpoint = format!("mountpoint={data_root}");
    let mut steps: Vec<Step> = c.create_file_step().into_iter().collect();
    let mut create = vec!["zpool", "create"];
    if c.overwrite {
        create.push("-f");
    }
    create.extend(["-m", "none", pool, &target]);
    // Made here rather than by `zfs create`, so undoing removes it too.
    steps.extend(c.make_dir_step());
    steps.push(
        Step::run(&create, Some(&["zpool", "destroy", pool])).with_hint(
            "ZFS must be running: the kernel module loaded (modprobe zfs) or the zfs-fuse \
             daemon started (zfs-fuse --pidfile /run/zfs-fuse.pid)",
        ),
    );
    steps.push(Step::run(
        &["zfs", "create", "-o", &mountpoint, &dataset],
        None,
    ));
    let mut notes = vec![format!(
        "berth makes one dataset per layer under {dataset}; --storage-opt zfs.size= sets a \
         default quota for every container"
    )];
    if c.fstab.is_some() {
        notes.push(format!(
            "no fstab entry: ZFS mounts {dataset} on {data_root} whenever pool {pool} is \
             imported"
        ));
    }
    Ok((
        format!("zfs pool {pool} on {what}, dataset {dataset} mounted on {data_root}"),
        steps,
        notes,
    ))
}
