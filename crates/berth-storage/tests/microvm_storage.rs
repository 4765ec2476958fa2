//! Size limits that need kernel features this host lacks, checked inside a
//! qemu microVM (berth-testkit's `microvm`): devicemapper (dm-thin) and
//! overlay2/vfs on xfs with project quota. Each `*_in_microvm` host test
//! boots one VM that re-runs this binary's `guest_*` tests (ignored on the
//! host); the refusal tests at the bottom run on the host itself.

use std::collections::HashSet;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use berth_storage::{open_driver, DriverConfig, LayerStore, RwLayerOpts};
use berth_testkit::microvm::{self, MicroVm, Payload};

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------- host side

fn vm_payload() -> Payload {
    Payload::new()
        .tool("mkfs.xfs")
        .tool("xfs_growfs")
        .tool("mkfs.ext4")
        .tool("resize2fs")
        .tool("dmsetup")
}

#[test]
fn devicemapper_in_microvm() {
    berth_testkit::require_root();
    microvm::run_guest_tests(&MicroVm::new(), "guest_devicemapper_", vm_payload());
}

#[test]
fn xfs_project_quota_in_microvm() {
    berth_testkit::require_root();
    microvm::run_guest_tests(&MicroVm::new(), "guest_xfs_quota_", vm_payload());
}

// --------------------------------------------------------------- guest side

/// A one-file base layer.
fn small_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "etc", std::io::empty()).unwrap();
    let data = b"microvm\n";
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, "etc/hostname", &data[..]).unwrap();
    b.into_inner().unwrap()
}

fn open_store(root: &Path, driver: &str, options: &[&str]) -> berth_storage::Result<LayerStore> {
    let driver = open_driver(&DriverConfig {
        data_root: root.to_path_buf(),
        name: Some(driver.to_string()),
        options: options.iter().map(|s| s.to_string()).collect(),
    })?;
    LayerStore::open(root, driver)
}

fn reconcile(store: &LayerStore, image_top: &[String], containers: &[&str]) {
    let live: HashSet<String> = containers.iter().map(|s| s.to_string()).collect();
    store.reconcile(image_top, &live).unwrap();
}

/// Writes up to `mib` MiB of zeros to `path` as `dd` would and returns how
/// many bytes went in and the error that stopped it, if any.
fn fill(path: &Path, mib: u64) -> (u64, Option<std::io::Error>) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; MIB as usize];
    let mut written = 0;
    for _ in 0..mib {
        if let Err(e) = f.write_all(&chunk) {
            return (written, Some(e));
        }
        written += MIB;
    }
    match f.sync_all() {
        Ok(()) => (written, None),
        Err(e) => (written, Some(e)),
    }
}

fn assert_out_of_space(what: &str, result: (u64, Option<std::io::Error>), limit: u64) {
    let (written, err) = result;
    let err = err.unwrap_or_else(|| panic!("{what}: wrote {written} bytes past a {limit} limit"));
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)),
        "{what}: failed with {err}, not ENOSPC/EDQUOT"
    );
    assert!(
        written <= limit + MIB && written >= limit / 2,
        "{what}: stopped after {written} bytes, not near {limit}"
    );
    println!("{what}: stopped after {} MiB: {err}", written / MIB);
}

fn statvfs_total(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    st.blocks() * st.fragment_size()
}

fn status_value(store: &LayerStore, key: &str) -> String {
    store
        .driver()
        .status()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {:?}", store.driver().status()))
}

/// No device-mapper device and no loop device is left.
fn assert_no_devices_left() {
    let dm: Vec<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dm-"))
        .collect();
    assert!(dm.is_empty(), "device-mapper devices left: {dm:?}");
    let loops = berth_testkit::loopfs::attached_loops().unwrap();
    assert!(loops.is_empty(), "loop devices left: {loops:?}");
}

fn guest_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from("/var/tmp").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
#[ignore = "runs inside the microVM (devicemapper_in_microvm)"]
fn guest_devicemapper_base_size_status_and_growth() {
    microvm::require_guest();
    let root = guest_dir("dm-xfs");
    let store = open_store(&root, "devicemapper", &["dm.loopdatasize=4G"]).unwrap();
    reconcile(&store, &[], &[]);
    assert_eq!(status_value(&store, "Base Device Size"), "10.74GB");
    assert_eq!(status_value(&store, "Pool Blocksize"), "65.54kB");
    assert_eq!(status_value(&store, "Backing Filesystem"), "xfs");
    assert_eq!(status_value(&store, "Data Space Total"), "4.295GB");
    assert_eq!(
        status_value(&store, "Thin Pool Minimum Free Space"),
        "429.5MB"
    );
    assert!(status_value(&store, "Data loop file").ends_with("devicemapper/data"));
    assert!(status_value(&store, "Data file").starts_with("/dev/loop"));
    assert!(store
        .driver()
        .warnings()
        .iter()
        .any(|w| w.contains("loopback devices is strongly discouraged")));
    println!("docker info DriverStatus: {:?}", store.driver().status());

    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    let top = vec![image.chain_id.clone()];

    // Without a size: the base size, and 50 MB fit.
    store
        .create_rw("plain", Some(&image.chain_id), &RwLayerOpts::default())
        .unwrap();
    let rootfs = store.mount_rw("plain").unwrap();
    assert_eq!(
        std::fs::read(rootfs.join("etc/hostname")).unwrap(),
        b"microvm\n"
    );
    let total = statvfs_total(&rootfs);
    assert!(
        total > 10 * 1000 * MIB && total <= 10 * 1024 * MIB,
        "df shows {total} bytes for a 10G base"
    );
    let (written, err) = fill(&rootfs.join("big"), 50);
    assert!(err.is_none(), "50 MB into a 10G container: {err:?}");
    assert_eq!(written, 50 * MIB);
    let usage = store.rw_usage("plain").unwrap();
    assert!(usage.size >= 50 * MIB, "usage {usage:?} misses the 50 MB");
    store.unmount_rw("plain").unwrap();

    // Below the base size: dockerd's refusal, nothing made.
    let err = store
        .create_rw(
            "small",
            Some(&image.chain_id),
            &RwLayerOpts {
                size: Some(20 * MIB),
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "devmapper: Container size cannot be smaller than 10.74GB"
    );
    assert!(store.get_rw("small").is_err());

    // Above it: the filesystem grows to the size.
    store
        .create_rw(
            "grown",
            Some(&image.chain_id),
            &RwLayerOpts {
                size: Some(12 * 1024 * MIB),
            },
        )
        .unwrap();
    let rootfs = store.mount_rw("grown").unwrap();
    let total = statvfs_total(&rootfs);
    assert!(
        total > 11 * 1024 * MIB && total <= 12 * 1024 * MIB,
        "df shows {total} bytes for size=12G"
    );
    let meta = store
        .driver()
        .metadata(&store.get_rw("grown").unwrap().mount_id)
        .unwrap();
    assert_eq!(meta["DeviceSize"], (12 * 1024 * MIB).to_string());
    store.unmount_rw("grown").unwrap();
    store.remove_rw("grown").unwrap();
    store.driver().cleanup().unwrap();
    drop(store);
    assert_no_devices_left();

    // A smaller dm.basesize on restart is refused in dockerd's words.
    let err = open_store(
        &root,
        "devicemapper",
        &["dm.loopdatasize=4G", "dm.basesize=5G"],
    )
    .err()
    .expect("a smaller base size is refused");
    assert_eq!(
        err.to_string(),
        "devmapper: Base device size cannot be smaller than 10.74GB"
    );
    assert_no_devices_left();

    // A bigger one grows the base; new containers get it, old ones keep theirs.
    let store = open_store(
        &root,
        "devicemapper",
        &["dm.loopdatasize=4G", "dm.basesize=20G"],
    )
    .unwrap();
    reconcile(&store, &top, &["plain"]);
    assert_eq!(status_value(&store, "Base Device Size"), "21.47GB");
    store
        .create_rw("after", Some(&image.chain_id), &RwLayerOpts::default())
        .unwrap();
    let rootfs = store.mount_rw("after").unwrap();
    let total = statvfs_total(&rootfs);
    assert!(
        total > 19 * 1024 * MIB && total <= 20 * 1024 * MIB,
        "df shows {total} bytes after dm.basesize=20G"
    );
    store.unmount_rw("after").unwrap();
    let rootfs = store.mount_rw("plain").unwrap();
    assert_eq!(
        std::fs::metadata(rootfs.join("big")).unwrap().len(),
        50 * MIB
    );
    store.unmount_rw("plain").unwrap();
    store.remove_rw("after").unwrap();
    store.remove_rw("plain").unwrap();
    store.release(&image.chain_id).unwrap();
    assert!(store.driver().list().unwrap().is_empty());
    store.driver().cleanup().unwrap();
    drop(store);
    assert_no_devices_left();
}

#[test]
#[ignore = "runs inside the microVM (devicemapper_in_microvm)"]
fn guest_devicemapper_size_limit_holds_across_restart() {
    microvm::require_guest();
    let root = guest_dir("dm-ext4");
    let opts = ["dm.loopdatasize=1G", "dm.fs=ext4", "dm.basesize=16M"];
    let store = open_store(&root, "devicemapper", &opts).unwrap();
    reconcile(&store, &[], &[]);
    assert_eq!(status_value(&store, "Backing Filesystem"), "ext4");
    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    let top = vec![image.chain_id.clone()];
    let limit = 20 * MIB;
    store
        .create_rw(
            "limited",
            Some(&image.chain_id),
            &RwLayerOpts { size: Some(limit) },
        )
        .unwrap();
    store
        .create_rw(
            "roomy",
            Some(&image.chain_id),
            &RwLayerOpts {
                size: Some(100 * MIB),
            },
        )
        .unwrap();
    let rootfs = store.mount_rw("limited").unwrap();
    assert_out_of_space("size=20M", fill(&rootfs.join("big"), 50), limit);
    std::fs::remove_file(rootfs.join("big")).unwrap();
    store.unmount_rw("limited").unwrap();
    let rootfs = store.mount_rw("roomy").unwrap();
    let (written, err) = fill(&rootfs.join("big"), 50);
    assert!(err.is_none() && written == 50 * MIB, "size=100M: {err:?}");
    store.unmount_rw("roomy").unwrap();
    store.driver().cleanup().unwrap();
    drop(store);
    assert_no_devices_left();

    // Restart: the limit is the device's size, and still holds.
    let store = open_store(&root, "devicemapper", &opts).unwrap();
    reconcile(&store, &top, &["limited", "roomy"]);
    let rootfs = store.mount_rw("limited").unwrap();
    assert_out_of_space(
        "size=20M after restart",
        fill(&rootfs.join("big"), 50),
        limit,
    );
    store.unmount_rw("limited").unwrap();
    store.remove_rw("limited").unwrap();
    store.remove_rw("roomy").unwrap();
    store.release(&image.chain_id).unwrap();
    store.driver().cleanup().unwrap();
    drop(store);
    assert_no_devices_left();
}

#[test]
#[ignore = "runs inside the microVM (devicemapper_in_microvm)"]
fn guest_devicemapper_min_free_space_refuses_instead_of_hanging() {
    microvm::require_guest();
    let root = guest_dir("dm-full");
    let opts = [
        "dm.loopdatasize=128M",
        "dm.fs=ext4",
        "dm.basesize=100M",
        "dm.min_free_space=50%",
    ];
    let store = open_store(&root, "devicemapper", &opts).unwrap();
    reconcile(&store, &[], &[]);
    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    store
        .create_rw("filler", Some(&image.chain_id), &RwLayerOpts::default())
        .unwrap();
    let rootfs = store.mount_rw("filler").unwrap();
    let (_, err) = fill(&rootfs.join("big"), 80);
    assert!(err.is_none(), "80 MB into a 100M container: {err:?}");
    store.unmount_rw("filler").unwrap();
    let err = store
        .create_rw("one-more", Some(&image.chain_id), &RwLayerOpts::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("devmapper: Thin Pool has ")
            && err.contains("free data blocks which is less than minimum required"),
        "{err}"
    );
    assert!(store.get_rw("one-more").is_err());
    store.remove_rw("filler").unwrap();
    store.release(&image.chain_id).unwrap();
    store.driver().cleanup().unwrap();
    drop(store);
    assert_no_devices_left();
}

fn dmsetup(args: &[&str]) -> std::process::Output {
    Command::new("dmsetup").args(args).output().unwrap()
}

#[test]
#[ignore = "runs inside the microVM (devicemapper_in_microvm)"]
fn guest_devicemapper_interrupted_creation_frees_its_device_id() {
    microvm::require_guest();
    let root = guest_dir("dm-crash");
    let opts = ["dm.loopdatasize=256M", "dm.fs=ext4", "dm.basesize=16M"];
    let store = open_store(&root, "devicemapper", &opts).unwrap();
    reconcile(&store, &[], &[]);
    let pool = status_value(&store, "Pool Name");
    let meta_path = root.join("devicemapper/metadata.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let id = meta["next_device_id"].as_u64().unwrap();
    // A daemon that died right after the pool made the device: the id is
    // reserved in the file (pending) and taken in the pool.
    let made = dmsetup(&["message", &pool, "0", &format!("create_thin {id}")]);
    assert!(made.status.success(), "{made:?}");
    store.driver().cleanup().unwrap();
    drop(store);
    meta["pending"] = serde_json::json!({"device_id": id, "layer": "crashed"});
    meta["next_device_id"] = serde_json::json!(id + 1);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let store = open_store(&root, "devicemapper", &opts).unwrap();
    reconcile(&store, &[], &[]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert!(meta["pending"].is_null(), "{meta}");
    // The pool's id is free again: creating it succeeds.
    let again = dmsetup(&["message", &pool, "0", &format!("create_thin {id}")]);
    assert!(again.status.success(), "id {id} still taken: {again:?}");
    let _ = dmsetup(&["message", &pool, "0", &format!("delete {id}")]);
    // And new layers do not collide with it.
    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    store.release(&image.chain_id).unwrap();
    store.driver().cleanup().unwrap();
    drop(store);
    assert_no_devices_left();
}

/// Attaches `file` to a free loop device with busybox's losetup.
fn losetup(file: &Path) -> String {
    let free = Command::new("losetup").arg("-f").output().unwrap();
    let dev = String::from_utf8_lossy(&free.stdout).trim().to_string();
    let ok = Command::new("losetup")
        .arg(&dev)
        .arg(file)
        .status()
        .unwrap();
    assert!(ok.success(), "losetup {dev} {}", file.display());
    dev
}

#[test]
#[ignore = "runs inside the microVM (devicemapper_in_microvm)"]
fn guest_devicemapper_uses_an_existing_thin_pool() {
    microvm::require_guest();
    let dir = guest_dir("dm-existing");
    let data = dir.join("data");
    let metadata = dir.join("metadata");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(512 * MIB)
        .unwrap();
    std::fs::File::create(&metadata)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let data_dev = losetup(&data);
    let meta_dev = losetup(&metadata);
    // What an operator's direct-lvm set-up amounts to: a thin pool of their own.
    let table = format!(
        "0 {} thin-pool {meta_dev} {data_dev} 128 1024",
        512 * MIB / 512
    );
    let made = dmsetup(&["create", "--noudevsync", "optpool", "--table", &table]);
    assert!(made.status.success(), "{made:?}");

    let root = dir.join("root");
    let opts = [
        "dm.thinpooldev=/dev/mapper/optpool",
        "dm.fs=ext4",
        "dm.basesize=32M",
    ];
    let store = open_store(&root, "devicemapper", &opts).unwrap();
    reconcile(&store, &[], &[]);
    assert_eq!(status_value(&store, "Pool Name"), "optpool");
    assert_eq!(status_value(&store, "Data Space Total"), "536.9MB");
    assert!(!store
        .driver()
        .status()
        .iter()
        .any(|(k, _)| k == "Data loop file"));
    assert!(store
        .driver()
        .warnings()
        .iter()
        .all(|w| !w.contains("loopback")));
    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    store
        .create_rw("c", Some(&image.chain_id), &RwLayerOpts::default())
        .unwrap();
    let rootfs = store.mount_rw("c").unwrap();
    assert_eq!(
        std::fs::read(rootfs.join("etc/hostname")).unwrap(),
        b"microvm\n"
    );
    store.unmount_rw("c").unwrap();
    store.remove_rw("c").unwrap();
    store.release(&image.chain_id).unwrap();
    store.driver().cleanup().unwrap();
    drop(store);
    // The operator's pool is theirs: berth leaves it in place.
    let status = dmsetup(&["status", "optpool"]);
    assert!(status.status.success(), "the pool went away: {status:?}");
    let removed = dmsetup(&["remove", "--noudevsync", "optpool"]);
    assert!(removed.status.success(), "{removed:?}");
    for dev in [data_dev, meta_dev] {
        let _ = Command::new("losetup").args(["-d", &dev]).status();
    }
    assert_no_devices_left();
}

/// An xfs filesystem on a loop device, mounted with `options`.
struct XfsMount {
    dir: PathBuf,
}

impl XfsMount {
    fn new(name: &str, options: &str) -> XfsMount {
        let dir = guest_dir(name);
        let image = dir.join("image");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(320 * MIB)
            .unwrap();
        let ok = Command::new("mkfs.xfs")
            .arg("-q")
            .arg(&image)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfs.xfs");
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "xfs", "-o", &format!("loop,{options}")])
            .arg(&image)
            .arg(&mnt)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount xfs -o {options}");
        XfsMount { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("mnt")
    }
}

impl Drop for XfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn quota_limit_holds(driver: &str, default_opt: &str) {
    let fs = XfsMount::new(&format!("{driver}-pquota"), "pquota");
    let root = fs.path().join("data-root");
    let store = Arc::new(open_store(&root, driver, &[]).unwrap());
    reconcile(&store, &[], &[]);
    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    let top = vec![image.chain_id.clone()];
    let limit = 20 * MIB;
    store
        .create_rw(
            "limited",
            Some(&image.chain_id),
            &RwLayerOpts { size: Some(limit) },
        )
        .unwrap();
    store
        .create_rw("free", Some(&image.chain_id), &RwLayerOpts::default())
        .unwrap();
    let rootfs = store.mount_rw("limited").unwrap();
    if driver == "overlay2" {
        // df inside the container shows the project's limit.
        let total = statvfs_total(&rootfs);
        assert!(
            total <= limit + MIB,
            "{driver}: df shows {total} for size=20M"
        );
    }
    assert_out_of_space(
        &format!("{driver} size=20M"),
        fill(&rootfs.join("big"), 50),
        limit,
    );
    std::fs::remove_file(rootfs.join("big")).unwrap();
    store.unmount_rw("limited").unwrap();
    let rootfs = store.mount_rw("free").unwrap();
    let (written, err) = fill(&rootfs.join("big"), 50);
    assert!(
        err.is_none() && written == 50 * MIB,
        "{driver} without size: {err:?}"
    );
    store.unmount_rw("free").unwrap();
    store.driver().cleanup().unwrap();
    drop(store);

    // Restart: the project and its limit live in the filesystem.
    let store = open_store(&root, driver, &[]).unwrap();
    reconcile(&store, &top, &["limited", "free"]);
    let rootfs = store.mount_rw("limited").unwrap();
    assert_out_of_space(
        &format!("{driver} size=20M after restart"),
        fill(&rootfs.join("big"), 50),
        limit,
    );
    store.unmount_rw("limited").unwrap();
    store.remove_rw("limited").unwrap();
    store.remove_rw("free").unwrap();
    store.driver().cleanup().unwrap();
    drop(store);

    // The daemon-wide default applies to layers without their own size.
    let store = open_store(&root, driver, &[default_opt]).unwrap();
    reconcile(&store, &top, &[]);
    store
        .create_rw("defaulted", Some(&image.chain_id), &RwLayerOpts::default())
        .unwrap();
    let rootfs = store.mount_rw("defaulted").unwrap();
    assert_out_of_space(
        &format!("{driver} {default_opt}"),
        fill(&rootfs.join("big"), 50),
        limit,
    );
    store.unmount_rw("defaulted").unwrap();
    store.remove_rw("defaulted").unwrap();
    store.release(&image.chain_id).unwrap();
    store.driver().cleanup().unwrap();
    drop(store);

    // Without pquota: refused, nothing made.
    let plain = XfsMount::new(&format!("{driver}-noquota"), "noquota");
    let root = plain.path().join("data-root");
    let store = open_store(&root, driver, &[]).unwrap();
    reconcile(&store, &[], &[]);
    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    let before = store.driver().list().unwrap().len();
    let err = store
        .create_rw(
            "limited",
            Some(&image.chain_id),
            &RwLayerOpts { size: Some(limit) },
        )
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(store.driver().list().unwrap().len(), before);
    let err = open_store(&root, driver, &[default_opt])
        .err()
        .expect("refused");
    println!("{driver} {default_opt} without pquota: {err}");
    store.release(&image.chain_id).unwrap();
    drop(store);
    drop(fs);
}

#[test]
#[ignore = "runs inside the microVM (xfs_project_quota_in_microvm)"]
fn guest_xfs_quota_overlay2() {
    microvm::require_guest();
    quota_limit_holds("overlay2", "overlay2.size=20M");
}

#[test]
#[ignore = "runs inside the microVM (xfs_project_quota_in_microvm)"]
fn guest_xfs_quota_vfs() {
    microvm::require_guest();
    quota_limit_holds("vfs", "vfs.size=20M");
}

// ------------------------------------------------------ host-side refusals

#[test]
fn overlay2_size_without_project_quota_is_refused_with_dockerds_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = open_store(&root, "overlay2", &[]).unwrap();
    reconcile(&store, &[], &[]);
    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    let before = store.driver().list().unwrap();
    let err = store
        .create_rw(
            "c",
            Some(&image.chain_id),
            &RwLayerOpts {
                size: Some(20 * MIB),
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
    );
    assert_eq!(store.driver().list().unwrap(), before);
    assert!(store.get_rw("c").is_err());
    let err = open_store(&root, "overlay2", &["overlay2.size=20M"])
        .err()
        .expect("overlay2.size without quota is refused");
    assert!(
        err.to_string().contains("overlay2.size"),
        "does not say which option: {err}"
    );
}

#[test]
fn vfs_size_without_project_quota_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = open_store(&root, "vfs", &[]).unwrap();
    reconcile(&store, &[], &[]);
    let image = store
        .register(None, &mut Cursor::new(small_layer()), None)
        .unwrap();
    let before = store.driver().list().unwrap();
    let err = store
        .create_rw(
            "c",
            Some(&image.chain_id),
            &RwLayerOpts {
                size: Some(20 * MIB),
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Filesystem does not support, or has not enabled quotas"
    );
    assert_eq!(store.driver().list().unwrap(), before);
}

#[test]
fn devicemapper_without_kernel_support_is_refused_clearly() {
    if Path::new("/dev/mapper/control").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let err = open_store(&dir.path().join("root"), "devicemapper", &[])
        .err()
        .expect("no device-mapper here");
    assert!(err.to_string().contains("device-mapper"), "{err}");
}
