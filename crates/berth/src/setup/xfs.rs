//! overlay2 set-up with size limits: xfs on the device or image file,
//! mounted on the data root with project quota (`pquota`), which overlay2's
//! `size` and `overlay2.size` need; optionally an fstab entry.

use super::{Checked, Step};

/// The summary, steps and notes for overlay2 on xfs.
pub(super) fn plan(c: &Checked, what: &str) -> (String, Vec<Step>, Vec<String>) {
    let target = c.target_text();
    let data_root = c.data_root_text();
    let mut steps: Vec<Step> = c.create_file_step().into_iter().collect();
    let uuid = format!("uuid={}", c.uuid);
    let mut mkfs = vec!["mkfs.xfs", "-q"];
    if c.overwrite {
        mkfs.push("-f");
    }
    // ftype=1 (d_type) is what overlayfs needs; it is mkfs.xfs's default,
    // stated so an old mkfs cannot make an unusable filesystem.
    mkfs.extend(["-n", "ftype=1", "-m", &uuid, &target]);
    steps.push(Step::run(&mkfs, None));
    steps.extend(c.make_dir_step());
    let options = if c.is_file() { "loop,pquota" } else { "pquota" };
    steps.push(
        Step::run(
            &["mount", "-t", "xfs", "-o", options, &target, &data_root],
            Some(&["umount", &data_root]),
        )
        .with_hint(
            "mounting with pquota needs a kernel with XFS quota support (CONFIG_XFS_QUOTA); \
             without it overlay2 cannot limit container sizes",
        ),
    );
    if let Some(fstab) = &c.fstab {
        let source = if c.is_file() {
            target.clone()
        } else {
            format!("UUID={}", c.uuid)
        };
        steps.push(Step::AppendFstab {
            fstab: fstab.clone(),
            line: format!("{source} {data_root} xfs {options} 0 0"),
        });
    }
    let notes = vec![
        "project quota needs a kernel with XFS quota support; --storage-opt overlay2.size= \
         sets a default limit for every container"
            .to_string(),
    ];
    (
        format!("overlay2 on xfs with project quota on {what}, mounted on {data_root}"),
        steps,
        notes,
    )
}
