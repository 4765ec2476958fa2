//! Container size limits on the btrfs driver, on a real btrfs loop image:
//! quota turned on only when a size is first asked for, a 20 MiB limit that
//! stops a 50 MiB write while an unlimited container takes it, dockerd's
//! `btrfs.min_space` rules and words, the `btrfs.size` default, usage from
//! qgroup exclusive bytes, limits that survive a reopen, and removal that
//! drops the qgroup without a rescan.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use berth_storage::{open_driver, DriverConfig, LayerStore, RwLayerOpts};
use berth_testkit::{require_root, LayerTar, LoopFs};

const MIB: u64 = 1024 * 1024;

fn open_store(root: &Path, options: &[&str]) -> berth_storage::Result<LayerStore> {
    let driver = open_driver(&DriverConfig {
        data_root: root.to_path_buf(),
        name: Some("btrfs".into()),
        options: options.iter().map(|s| s.to_string()).collect(),
    })?;
    let store = LayerStore::open(root, Arc::clone(&driver))?;
    Ok(store)
}

fn image_layer(store: &LayerStore) -> String {
    let tar = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/tool", 0o755, vec![3u8; 100_000])
        .to_tar();
    store
        .register(None, &mut Cursor::new(tar), None)
        .unwrap()
        .chain_id
}

fn sized(bytes: u64) -> RwLayerOpts {
    RwLayerOpts { size: Some(bytes) }
}

fn write_mib(path: &Path, mib: usize) -> (usize, Option<std::io::Error>) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; MIB as usize];
    for i in 0..mib {
        if let Err(e) = file.write_all(&chunk) {
            return (i, Some(e));
        }
    }
    match file.sync_all() {
        Ok(()) => (mib, None),
        Err(e) => (mib, Some(e)),
    }
}

#[track_caller]
fn assert_refused_near(dir: &Path, limit_mib: usize) {
    let (written, err) = write_mib(&dir.join("big"), 50);
    let err = err.unwrap_or_else(|| panic!("wrote 50 MiB past a {limit_mib} MiB limit"));
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)),
        "{err}"
    );
    assert!(
        written + 5 >= limit_mib && written <= limit_mib,
        "stopped after {written} MiB under a {limit_mib} MiB limit"
    );
}

fn status(store: &LayerStore) -> HashMap<String, String> {
    store.driver().status().into_iter().collect()
}

fn btrfs(args: &[&str], path: &Path) -> String {
    let out = Command::new("btrfs").args(args).arg(path).output().unwrap();
    assert!(out.status.success(), "btrfs {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Level-0 qgroups `btrfs qgroup show` lists, as subvolume ids.
fn qgroups(path: &Path) -> HashSet<u64> {
    btrfs(&["qgroup", "show", "--raw"], path)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .strip_prefix("0/")?
                .parse()
                .ok()
        })
        .collect()
}

fn subvolume_id(path: &Path) -> u64 {
    btrfs(&["inspect-internal", "rootid"], path)
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn size_limits_a_container_and_no_size_does_not() {
    require_root();
    let fs = LoopFs::btrfs().unwrap();
    let root = fs.path().join("data-root");
    std::fs::create_dir(&root).unwrap();
    let store = open_store(&root, &[]).unwrap();
    let image = image_layer(&store);

    // Without a size, quota stays off.
    store
        .create_rw("free", Some(&image), &RwLayerOpts::default())
        .unwrap();
    assert_eq!(status(&store)["Quota Enabled"], "false");

    let limited = store
        .create_rw("limited", Some(&image), &sized(20 * MIB))
        .unwrap();
    assert_eq!(status(&store)["Quota Enabled"], "true");
    assert_eq!(
        store.driver().metadata(&limited.mount_id).unwrap()["SizeLimit"],
        (20 * MIB).to_string()
    );
    let dir = store.mount_rw("limited").unwrap();
    assert_refused_near(&dir, 20);
    store.unmount_rw("limited").unwrap();

    let dir = store.mount_rw("free").unwrap();
    let (written, err) = write_mib(&dir.join("big"), 50);
    assert!(err.is_none(), "unlimited container: {err:?}");
    assert_eq!(written, 50);
    store.unmount_rw("free").unwrap();

    // Usage is the qgroup's exclusive bytes once the transaction commits.
    btrfs(&["filesystem", "sync"], &root);
    let used = store.rw_usage("free").unwrap();
    assert!(
        (50 * MIB..52 * MIB).contains(&used.size),
        "usage {}",
        used.size
    );
    assert_eq!(used.inodes, None);

    // Removal drops each qgroup and starts no rescan.
    let ids = [
        subvolume_id(&root.join("btrfs/subvolumes").join(&limited.mount_id)),
        subvolume_id(
            &root
                .join("btrfs/subvolumes")
                .join(store.get_rw("free").unwrap().mount_id),
        ),
    ];
    store.remove_rw("limited").unwrap();
    store.remove_rw("free").unwrap();
    let rescan = btrfs(&["quota", "rescan", "-s"], &root);
    assert!(rescan.contains("no rescan"), "{rescan}");
    btrfs(&["subvolume", "sync"], &root);
    // Reopening collects any qgroup the kernel was still freeing.
    drop(store);
    let store = open_store(&root, &[]).unwrap();
    let left = qgroups(&root);
    for id in ids {
        assert!(!left.contains(&id), "qgroup 0/{id} left in {left:?}");
    }
    store.reconcile(&[], &HashSet::new()).unwrap();
    assert!(store.driver().list().unwrap().is_empty());
}

#[test]
fn min_space_and_zero_are_refused_in_dockerds_words() {
    require_root();
    let fs = LoopFs::btrfs().unwrap();
    let root = fs.path().join("data-root");
    std::fs::create_dir(&root).unwrap();
    let store = open_store(&root, &["btrfs.min_space=30M"]).unwrap();
    // dockerd turns quota on at start when min_space is set.
    assert_eq!(status(&store)["Quota Enabled"], "true");
    assert_eq!(status(&store)["Minimum Size Limit"], "31.46MB");
    let image = image_layer(&store);
    let err = store
        .create_rw("small", Some(&image), &sized(20 * MIB))
        .unwrap_err();
    assert!(err.is_invalid_input());
    assert_eq!(
        err.to_string(),
        "btrfs: storage size cannot be less than 31.46MB"
    );
    let err = store
        .create_rw("zero", Some(&image), &sized(0))
        .unwrap_err();
    assert_eq!(err.to_string(), "btrfs: invalid storage size: 0B");
    assert!(store.list_rw().is_empty());
    let layers = store.driver().list().unwrap();
    assert_eq!(layers.len(), 1, "only the image layer: {layers:?}");

    let ok = store
        .create_rw("big-enough", Some(&image), &sized(40 * MIB))
        .unwrap();
    assert_eq!(
        store.driver().metadata(&ok.mount_id).unwrap()["SizeLimit"],
        (40 * MIB).to_string()
    );

    // A default below the minimum is refused at start.
    drop(store);
    let err = open_store(&root, &["btrfs.min_space=30M", "btrfs.size=10M"])
        .err()
        .expect("btrfs.size below btrfs.min_space accepted");
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("cannot be less than"), "{err}");
}

#[test]
fn daemon_wide_default_size_and_limits_survive_a_reopen() {
    require_root();
    let fs = LoopFs::btrfs().unwrap();
    let root = fs.path().join("data-root");
    std::fs::create_dir(&root).unwrap();
    let id;
    {
        let store = open_store(&root, &["btrfs.size=20M"]).unwrap();
        assert_eq!(status(&store)["Default Size Limit"], "20.97MB");
        let image = image_layer(&store);
        let rw = store
            .create_rw("c", Some(&image), &RwLayerOpts::default())
            .unwrap();
        id = rw.mount_id;
        // An explicit size wins over the default.
        let big = store
            .create_rw("d", Some(&image), &sized(60 * MIB))
            .unwrap();
        assert_eq!(
            store.driver().metadata(&big.mount_id).unwrap()["SizeLimit"],
            (60 * MIB).to_string()
        );
    }
    // A new daemon without the option: the limit is the filesystem's.
    let store = open_store(&root, &[]).unwrap();
    assert_eq!(
        store.driver().metadata(&id).unwrap()["SizeLimit"],
        (20 * MIB).to_string()
    );
    let dir = store.driver().mount(&id).unwrap();
    assert_refused_near(&dir, 20);
    store.driver().unmount(&id).unwrap();
}
