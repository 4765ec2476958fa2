//! btrfs set-up: mkfs.btrfs on the device or image file, mounted on the data
//! root (an image file through a loop device that `mount -o loop` sets up
//! and frees itself), and optionally an fstab entry.

use super::{Checked, Step};

/// The summary, steps and notes for btrfs.
pub(super) fn plan(c: &Checked, what: &str) -> (String, Vec<Step>, Vec<String>) {
    let target = c.target_text();
    let data_root = c.data_root_text();
    let mut steps: Vec<Step> = c.create_file_step().into_iter().collect();
    let mut mkfs = vec!["mkfs.btrfs", "-q"];
    if c.overwrite {
        mkfs.push("-f");
    }
    mkfs.extend(["-U", &c.uuid, &target]);
    steps.push(Step::run(&mkfs, None));
    steps.extend(c.make_dir_step());
    let options = if c.is_file() { "loop" } else { "defaults" };
    let mut mount = vec!["mount", "-t", "btrfs"];
    if c.is_file() {
        mount.extend(["-o", "loop"]);
    }
    mount.extend([target.as_str(), data_root.as_str()]);
    steps.push(Step::run(&mount, Some(&["umount", &data_root])));
    if let Some(fstab) = &c.fstab {
        let source = if c.is_file() {
            target.clone()
        } else {
            format!("UUID={}", c.uuid)
        };
        steps.push(Step::AppendFstab {
            fstab: fstab.clone(),
            line: format!("{source} {data_root} btrfs {options} 0 0"),
        });
    }
    let notes = vec![
        "container size limits (--storage-opt size=) turn btrfs quota on when first used; \
         --storage-opt btrfs.size= sets a default for every container"
            .to_string(),
    ];
    (
        format!("btrfs on {what}, mounted on {data_root}"),
        steps,
        notes,
    )
}
