//! berthd on the zfs driver through the real docker CLI, on a zfs-fuse pool
//! on a file: `docker info`'s DriverStatus, a clone per child layer and per
//! container in `zfs list -t all` and nothing left after rm/rmi, a
//! `--storage-opt size=20M` container that cannot write 50 MB while one
//! without can (also after a restart), and a refusal off ZFS.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_testkit::{busybox, Daemon, ZfsPool};
use support::{builder, load_busybox};

/// berthd with `-s zfs` on a data root inside the pool's root dataset.
fn daemon_on(pool: &ZfsPool) -> Daemon {
    builder()
        .data_root(pool.path().join("data-root"))
        .storage_driver("zfs")
        .start()
}

/// Datasets of the pool other than its root, with their origins.
fn layer_datasets(pool: &ZfsPool) -> BTreeMap<String, String> {
    pool.origins()
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name != pool.name())
        .collect()
}

fn everything(pool: &ZfsPool) -> Vec<String> {
    pool.datasets().unwrap()
}

#[test]
fn info_clones_and_nothing_left_behind() {
    let pool = ZfsPool::new().unwrap();
    let d = daemon_on(&pool);
    let info = d
        .docker(&["info", "--format", "{{.Driver}}|{{json .DriverStatus}}"])
        .ok();
    let (driver, status) = info.out().split_once('|').unwrap();
    assert_eq!(driver, "zfs");
    let status: Vec<(String, String)> = serde_json::from_str(status).unwrap();
    let status: BTreeMap<String, String> = status.into_iter().collect();
    assert_eq!(status["Zpool"], pool.name());
    assert_eq!(status["Zpool Health"], "ONLINE");
    assert_eq!(status["Parent Dataset"], pool.name());
    assert_eq!(status["Parent Quota"], "no");
    for key in ["Space Used By Parent", "Space Available", "Compression"] {
        assert!(status.contains_key(key), "{key} missing: {status:?}");
    }

    let image = load_busybox(&d);
    let layers = layer_datasets(&pool);
    assert_eq!(layers.len(), image.diff_ids.len(), "{layers:?}");
    // The base layer is a filesystem; every other layer a clone.
    let clones = layers.values().filter(|o| o.as_str() != "-").count();
    assert_eq!(clones, layers.len() - 1, "{layers:?}");

    let id = d.docker(&["create", busybox::IMAGE, "true"]).ok();
    let id = id.out().to_string();
    let inspect = d
        .docker(&["inspect", "--format", "{{json .GraphDriver}}", &id])
        .ok()
        .json();
    assert_eq!(inspect["Name"], "zfs");
    let dataset = inspect["Data"]["Dataset"].as_str().unwrap().to_string();
    let with_container = layer_datasets(&pool);
    assert!(
        with_container[&dataset].contains('@'),
        "the container is a clone: {with_container:?}"
    );

    d.docker(&["rm", &id]).ok();
    assert_eq!(layer_datasets(&pool), layers);
    d.docker(&["rmi", busybox::IMAGE]).ok();
    assert_eq!(
        everything(&pool),
        vec![pool.name().to_string()],
        "datasets or snapshots left behind"
    );
}

#[test]
fn storage_opt_size_limits_writes_and_survives_a_restart() {
    let pool = ZfsPool::new().unwrap();
    let mut d = daemon_on(&pool);
    load_busybox(&d);
    let dd = "dd if=/dev/zero of=/big bs=1M count=50";

    let out = d.docker(&[
        "run",
        "--rm",
        "--storage-opt",
        "size=20M",
        busybox::IMAGE,
        "sh",
        "-c",
        dd,
    ]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.success(), "50 MB written past a 20 MB limit: {out}");
    assert!(
        text.contains("Disk quota exceeded") || text.contains("No space left on device"),
        "{out}"
    );

    d.docker(&["run", "--rm", busybox::IMAGE, "sh", "-c", dd])
        .ok();

    // A container made with the limit keeps it across a daemon restart.
    let id = d
        .docker(&[
            "create",
            "--storage-opt",
            "size=20M",
            busybox::IMAGE,
            "sh",
            "-c",
            dd,
        ])
        .ok()
        .out()
        .to_string();
    d.restart();
    let out = d.docker(&["start", "-a", &id]);
    assert!(!out.success(), "limit lost over a restart: {out}");
    d.docker(&["rm", &id]).ok();
    d.docker(&["rmi", busybox::IMAGE]).ok();
    assert_eq!(everything(&pool), vec![pool.name().to_string()]);
}

#[test]
fn zfs_off_a_dataset_is_refused() {
    let scratch = berth_testkit::scratch::scratch_dir("zfs-off-").unwrap();
    let root: PathBuf = scratch.path().join("data-root");
    let failure = builder()
        .data_root(&root)
        .storage_driver("zfs")
        .try_start()
        .expect_err("berthd started zfs on a data root that is not a dataset");
    assert!(failure.exit.is_some(), "{failure}");
    assert!(failure.log.contains("not on a ZFS dataset"), "{failure}");
}
