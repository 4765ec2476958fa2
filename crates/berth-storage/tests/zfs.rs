//! The layer store on the zfs driver, on a real pool (zfs-fuse on a sparse
//! file): base and child layers as datasets and clones, whiteouts, the
//! byte-exact tar round trip, changes, container layers with and without a
//! quota, usage and status, crash leftovers, and that releasing everything
//! leaves no dataset or snapshot in `zfs list -t all`.

use std::collections::HashSet;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_storage::archive::ChangeKind;
use berth_storage::{open_driver, DriverConfig, LayerStore, RwLayerOpts, StorageError};
use berth_testkit::{require_root, LayerTar, ZfsPool};

fn base_layer() -> Vec<u8> {
    LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, vec![7u8; 10_000])
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("bin/ls", "bin/busybox")
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n".to_vec())
        .file("etc/old", 0o644, b"old".to_vec())
        .dir("opq", 0o755)
        .file("opq/a", 0o644, b"a".to_vec())
        .to_tar()
}

fn child_layer() -> Vec<u8> {
    LayerTar::new()
        .dir("etc", 0o755)
        .whiteout("etc/old")
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0::/root:/bin/ash\n".to_vec(),
        )
        .dir("opq", 0o755)
        .opaque("opq")
        .file("opq/b", 0o644, b"b".to_vec())
        .to_tar()
}

fn data_root(pool: &ZfsPool) -> PathBuf {
    let root = pool.path().join("data-root");
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn open_store(root: &Path, driver: Option<&str>, options: &[&str]) -> LayerStore {
    let driver = open_driver(&DriverConfig {
        data_root: root.to_path_buf(),
        name: driver.map(str::to_string),
        options: options.iter().map(|s| s.to_string()).collect(),
    })
    .unwrap_or_else(|e| panic!("opening zfs on {}: {e}", root.display()));
    let store = LayerStore::open(root, Arc::clone(&driver)).unwrap();
    store.reconcile(&[], &HashSet::new()).unwrap();
    store
}

/// Writes `mib` MiB of zeros to `path`; returns how far it got and the
/// error that stopped it, if any.
fn write_mib(path: &Path, mib: usize) -> (usize, Option<std::io::Error>) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1024 * 1024];
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

fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

#[test]
fn layers_are_datasets_and_clones_and_leave_nothing_behind() {
    require_root();
    let pool = ZfsPool::new().unwrap();
    let root = data_root(&pool);
    // No -s: a data root on a ZFS dataset selects zfs, as on btrfs.
    let store = open_store(&root, None, &[]);
    assert_eq!(store.driver().name(), "zfs");

    let base = base_layer();
    let l1 = store.register(None, &mut Cursor::new(&base), None).unwrap();
    assert_eq!(l1.size, 10_000 + 26 + 3 + 1);
    let child = child_layer();
    let l2 = store
        .register(Some(&l1.chain_id), &mut Cursor::new(&child), None)
        .unwrap();

    // A clone per child layer, from a snapshot of its parent.
    let ds = |id: &str| format!("{}/{id}", pool.name());
    let origins: Vec<(String, String)> = pool.origins().unwrap();
    assert!(
        origins.contains(&(ds(&l1.cache_id), "-".into())),
        "{origins:?}"
    );
    assert!(
        origins.contains(&(
            ds(&l2.cache_id),
            format!("{}@{}", ds(&l1.cache_id), l2.cache_id)
        )),
        "{origins:?}"
    );
    assert_eq!(pool.get(&ds(&l1.cache_id), "mountpoint").unwrap(), "legacy");

    // The original tars come back byte for byte.
    let mut out = Vec::new();
    store.tar_stream(&l1.chain_id, &mut out).unwrap();
    assert!(out == base, "base layer tar differs after reassembly");
    let mut out = Vec::new();
    store.tar_stream(&l2.chain_id, &mut out).unwrap();
    assert!(out == child, "child layer tar differs after reassembly");

    // A container is a clone of the top layer's snapshot.
    let rw = store
        .create_rw("c1", Some(&l2.chain_id), &RwLayerOpts::default())
        .unwrap();
    let origins = pool.origins().unwrap();
    assert!(
        origins.contains(&(
            ds(&rw.mount_id),
            format!("{}@{}", ds(&l2.cache_id), rw.mount_id)
        )),
        "{origins:?}"
    );
    let mounted = store.mount_rw("c1").unwrap();
    assert_eq!(mounted, root.join("zfs/graph").join(&rw.mount_id));
    // Mounts are counted: a second mount is the same directory.
    assert_eq!(store.mount_rw("c1").unwrap(), mounted);
    store.unmount_rw("c1").unwrap();
    assert_eq!(
        std::fs::read(mounted.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/ash\n"
    );
    assert!(!mounted.join("etc/old").exists(), "whiteout kept etc/old");
    assert!(
        !mounted.join("opq/a").exists(),
        "opaque dir kept lower content"
    );
    assert!(mounted.join("opq/b").exists());
    assert_eq!(
        std::fs::read_link(mounted.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    std::fs::write(mounted.join("new-file"), vec![1u8; 300_000]).unwrap();
    std::fs::remove_file(mounted.join("etc/passwd")).unwrap();
    store.unmount_rw("c1").unwrap();
    assert!(
        !mounted.exists(),
        "the mount directory goes with the last unmount"
    );

    let changes = store.rw_changes("c1").unwrap();
    let find = |p: &str| {
        changes
            .iter()
            .find(|c| c.path == Path::new(p))
            .map(|c| c.kind)
    };
    assert_eq!(find("/new-file"), Some(ChangeKind::Add));
    assert_eq!(find("/etc/passwd"), Some(ChangeKind::Delete));
    let mut diff = Vec::new();
    store.rw_diff("c1", &mut diff).unwrap();
    let names: Vec<String> = tar::Archive::new(Cursor::new(&diff))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"etc/.wh.passwd".to_string()), "{names:?}");
    assert!(names.contains(&"new-file".to_string()), "{names:?}");

    // Usage is the dataset's own bytes, which ZFS counts when the
    // transaction group commits.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let used = store.rw_usage("c1").unwrap().size;
        if used >= 300_000 {
            break;
        }
        assert!(Instant::now() < deadline, "usage stayed at {used}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A commit: the diff registers as a layer of its own, a clone again.
    let l3 = store
        .register(Some(&l2.chain_id), &mut Cursor::new(&diff), None)
        .unwrap();
    assert_eq!(l3.size, 300_000);

    let status: std::collections::HashMap<String, String> =
        store.driver().status().into_iter().collect();
    assert_eq!(status["Zpool"], pool.name());
    assert_eq!(status["Zpool Health"], "ONLINE");
    assert_eq!(status["Parent Dataset"], pool.name());
    assert_eq!(status["Parent Quota"], "no");
    assert!(status["Space Used By Parent"].parse::<u64>().unwrap() > 0);
    assert!(status["Space Available"].parse::<u64>().unwrap() > 0);
    assert!(status.contains_key("Compression"));
    let meta = store.driver().metadata(&rw.mount_id).unwrap();
    assert_eq!(meta["Dataset"], ds(&rw.mount_id));

    // Releasing everything leaves the pool as it was: no dataset, no
    // snapshot, no clone, nothing mounted.
    store.remove_rw("c1").unwrap();
    store.release(&l3.chain_id).unwrap();
    store.release(&l2.chain_id).unwrap();
    store.release(&l1.chain_id).unwrap();
    assert!(store.driver().list().unwrap().is_empty());
    assert_eq!(pool.datasets().unwrap(), vec![pool.name().to_string()]);
    let graph: Vec<_> = std::fs::read_dir(root.join("zfs/graph")).unwrap().collect();
    assert!(graph.is_empty(), "{graph:?}");
}

#[test]
fn container_quota_holds_and_is_optional() {
    require_root();
    let pool = ZfsPool::new().unwrap();
    let root = data_root(&pool);
    let store = open_store(&root, Some("zfs"), &[]);
    let l1 = store
        .register(None, &mut Cursor::new(base_layer()), None)
        .unwrap();

    let limited = store
        .create_rw(
            "limited",
            Some(&l1.chain_id),
            &RwLayerOpts {
                size: Some(20 * 1024 * 1024),
            },
        )
        .unwrap();
    assert_eq!(
        pool.get(&format!("{}/{}", pool.name(), limited.mount_id), "quota")
            .unwrap(),
        (20 * 1024 * 1024).to_string()
    );
    let dir = store.mount_rw("limited").unwrap();
    let (written, err) = write_mib(&dir.join("big"), 50);
    let err = err.unwrap_or_else(|| panic!("wrote all 50 MiB past a 20 MiB quota"));
    assert!(is_out_of_space(&err), "{err}");
    assert!((15..=25).contains(&written), "stopped after {written} MiB");
    store.unmount_rw("limited").unwrap();

    let free = store
        .create_rw("free", Some(&l1.chain_id), &RwLayerOpts::default())
        .unwrap();
    assert_eq!(
        pool.get(&format!("{}/{}", pool.name(), free.mount_id), "quota")
            .unwrap(),
        "0"
    );
    let dir = store.mount_rw("free").unwrap();
    let (written, err) = write_mib(&dir.join("big"), 50);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(written, 50);
    store.unmount_rw("free").unwrap();

    store.remove_rw("limited").unwrap();
    store.remove_rw("free").unwrap();
    store.release(&l1.chain_id).unwrap();
    assert_eq!(pool.datasets().unwrap(), vec![pool.name().to_string()]);
}

#[test]
fn daemon_wide_default_size_and_a_named_parent_dataset() {
    require_root();
    let pool = ZfsPool::new().unwrap();
    // The data root is a plain directory; layers go to the named dataset.
    let root = tempfile::tempdir_in(berth_testkit::scratch::base_dir()).unwrap();
    let parent = pool.create_dataset("layers", &[]).unwrap();
    let fsname = format!("zfs.fsname={parent}");
    let store = open_store(root.path(), Some("zfs"), &[&fsname, "zfs.size=30M"]);
    let rw = store.create_rw("c", None, &RwLayerOpts::default()).unwrap();
    let dataset = format!("{parent}/{}", rw.mount_id);
    assert_eq!(pool.get(&dataset, "quota").unwrap(), (30 << 20).to_string());
    // An explicit size wins over the default.
    let rw2 = store
        .create_rw(
            "d",
            None,
            &RwLayerOpts {
                size: Some(40 << 20),
            },
        )
        .unwrap();
    assert_eq!(
        pool.get(&format!("{parent}/{}", rw2.mount_id), "quota")
            .unwrap(),
        (40 << 20).to_string()
    );
    let status: std::collections::HashMap<String, String> =
        store.driver().status().into_iter().collect();
    assert_eq!(status["Parent Dataset"], parent);
    store.remove_rw("c").unwrap();
    store.remove_rw("d").unwrap();
    assert_eq!(
        pool.datasets().unwrap(),
        vec![pool.name().to_string(), parent.clone()]
    );
}

#[test]
fn refuses_a_data_root_that_is_not_a_dataset() {
    require_root();
    let dir = tempfile::tempdir_in(berth_testkit::scratch::base_dir()).unwrap();
    let err = open_driver(&DriverConfig {
        data_root: dir.path().to_path_buf(),
        name: Some("zfs".into()),
        options: Vec::new(),
    })
    .err()
    .expect("zfs opened on a non-ZFS data root");
    assert!(matches!(err, StorageError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("not on a ZFS dataset"), "{err}");

    let pool = ZfsPool::with_size_mib(256).unwrap();
    let err = open_driver(&DriverConfig {
        data_root: dir.path().to_path_buf(),
        name: Some("zfs".into()),
        options: vec![format!("zfs.fsname={}/missing", pool.name())],
    })
    .err()
    .expect("zfs opened on a missing dataset");
    assert!(
        err.to_string().contains("cannot find root filesystem"),
        "{err}"
    );
    let err = open_driver(&DriverConfig {
        data_root: dir.path().to_path_buf(),
        name: Some("zfs".into()),
        options: vec!["zfs.bogus=1".into()],
    })
    .err()
    .expect("unknown option accepted");
    assert!(err.is_invalid_input(), "{err}");
}

#[test]
fn crash_leftovers_are_removed_clones_before_origins() {
    require_root();
    let pool = ZfsPool::new().unwrap();
    let root = data_root(&pool);
    {
        let store = open_store(&root, Some("zfs"), &[]);
        let driver = store.driver();
        // Layers no record names, a clone of a clone of a base: any order
        // but clones-first would meet "dependent clones".
        driver.create("stray-a", None).unwrap();
        driver.create("stray-b", Some("stray-a")).unwrap();
        driver.create("stray-c", Some("stray-b")).unwrap();
        assert_eq!(
            driver.list().unwrap(),
            vec!["stray-c", "stray-b", "stray-a"]
        );
        // A crash between `zfs snapshot` and `zfs clone`.
        let status = std::process::Command::new("zfs")
            .args(["snapshot", &format!("{}/stray-a@lost", pool.name())])
            .status()
            .unwrap();
        assert!(status.success());
        // A dataset that is not berth's is never touched.
        pool.create_dataset("operator-data", &[]).unwrap();
    }
    let store = open_store(&root, Some("zfs"), &[]);
    assert!(store.driver().list().unwrap().is_empty());
    assert_eq!(
        pool.datasets().unwrap(),
        vec![
            pool.name().to_string(),
            format!("{}/operator-data", pool.name())
        ]
    );
}

#[test]
fn snapshots_no_clone_came_from_never_block_a_create_and_are_swept() {
    require_root();
    let pool = ZfsPool::new().unwrap();
    let root = data_root(&pool);
    let snapshot = |name: String| {
        let status = std::process::Command::new("zfs")
            .args(["snapshot", &name])
            .status()
            .unwrap();
        assert!(status.success(), "zfs snapshot {name}");
    };
    let snapshots = || -> Vec<String> {
        let out = std::process::Command::new("zfs")
            .args(["list", "-H", "-o", "name", "-t", "snapshot", "-r"])
            .arg(pool.name())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let store = open_store(&root, Some("zfs"), &[]);
    let l1 = store
        .register(None, &mut Cursor::new(base_layer()), None)
        .unwrap();
    let base = format!("{}/{}", pool.name(), l1.cache_id);
    // A create that died between `zfs snapshot` and `zfs clone`: the same
    // layer created again does not trip over its snapshot.
    snapshot(format!("{base}@again"));
    let driver = store.driver();
    driver.create("again", Some(&l1.cache_id)).unwrap();
    assert_eq!(
        pool.get(&format!("{}/again", pool.name()), "origin")
            .unwrap(),
        format!("{base}@again")
    );
    driver.remove("again").unwrap();
    // One whose layer is never created again: the next open sweeps it
    // (on a thread of its own), and keeps the layer.
    snapshot(format!("{base}@lost"));
    assert_eq!(snapshots(), vec![format!("{base}@lost")]);
    drop(store);
    let driver = open_driver(&DriverConfig {
        data_root: root.clone(),
        name: Some("zfs".into()),
        options: Vec::new(),
    })
    .unwrap();
    let store = LayerStore::open(&root, Arc::clone(&driver)).unwrap();
    store
        .reconcile(std::slice::from_ref(&l1.chain_id), &HashSet::new())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !snapshots().is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", snapshots());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(driver.list().unwrap(), vec![l1.cache_id.clone()]);
    store.release(&l1.chain_id).unwrap();
    assert_eq!(pool.datasets().unwrap(), vec![pool.name().to_string()]);
}
