//! Layer store tests on the drivers this host can run without a special
//! filesystem (vfs and overlay2 on the test's temp dir): registering
//! layers, whiteouts, byte-exact tar reassembly, changes, writable layers,
//! hostile archives and crash reconciliation.

use std::collections::HashSet;
use std::io::Cursor;
use std::sync::Arc;

use berth_storage::archive::ChangeKind;
use berth_storage::{open_driver, DriverConfig, LayerStore, RwLayerOpts, StorageError};

struct TarBuilder(tar::Builder<Vec<u8>>);

impl TarBuilder {
    fn new() -> Self {
        TarBuilder(tar::Builder::new(Vec::new()))
    }
    fn dir(mut self, path: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    fn file(mut self, path: &str, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn raw_name_file(mut self, name: &[u8], data: &[u8]) -> Self {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn base_layer() -> Vec<u8> {
    TarBuilder::new()
        .dir("bin/")
        .file("bin/busybox", &vec![7u8; 10_000])
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("bin/ls", "bin/busybox")
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("etc/old", b"old")
        .dir("opq/")
        .file("opq/a", b"a")
        .build()
}

fn child_layer() -> Vec<u8> {
    TarBuilder::new()
        .dir("etc/")
        .file("etc/.wh.old", b"")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/ash\n")
        .dir("opq/")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/b", b"b")
        .build()
}

fn store(driver: &str, dir: &std::path::Path) -> LayerStore {
    let driver = open_driver(&DriverConfig {
        data_root: dir.to_path_buf(),
        name: Some(driver.to_string()),
        options: Vec::new(),
    })
    .unwrap();
    LayerStore::open(dir, Arc::clone(&driver)).unwrap()
}

fn roundtrip(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(driver, dir.path());
    let base = base_layer();
    let l1 = store.register(None, &mut Cursor::new(&base), None).unwrap();
    assert_eq!(l1.size, 10_000 + 26 + 3 + 1);
    assert_eq!(l1.tar_size, base.len() as u64);
    let child = child_layer();
    let l2 = store
        .register(Some(&l1.chain_id), &mut Cursor::new(&child), None)
        .unwrap();

    // The original tars come back byte for byte.
    let mut out = Vec::new();
    store.tar_stream(&l1.chain_id, &mut out).unwrap();
    assert!(out == base, "base layer tar differs after reassembly");
    let mut out = Vec::new();
    store.tar_stream(&l2.chain_id, &mut out).unwrap();
    assert!(out == child, "child layer tar differs after reassembly");

    // A container on top sees the union with whiteouts applied.
    let rw = store
        .create_rw("c1", Some(&l2.chain_id), &RwLayerOpts::default())
        .unwrap();
    let root = store.mount_rw("c1").unwrap();
    assert_eq!(
        std::fs::read(root.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/ash\n"
    );
    assert!(
        !root.join("etc/old").exists(),
        "whiteout did not delete etc/old"
    );
    assert!(
        !root.join("opq/a").exists(),
        "opaque dir kept lower content"
    );
    assert!(root.join("opq/b").exists());
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        std::path::Path::new("/bin/busybox")
    );
    std::fs::write(root.join("new-file"), b"hello").unwrap();
    std::fs::remove_file(root.join("etc/passwd")).unwrap();
    let changes = store.rw_changes("c1").unwrap();
    let find = |p: &str| {
        changes
            .iter()
            .find(|c| c.path == std::path::Path::new(p))
            .map(|c| c.kind)
    };
    assert_eq!(find("/new-file"), Some(ChangeKind::Add));
    assert_eq!(find("/etc/passwd"), Some(ChangeKind::Delete));
    assert_eq!(find("/etc"), Some(ChangeKind::Modify));
    assert_eq!(store.rw_usage("c1").unwrap().size, 5);
    let mut diff = Vec::new();
    store.rw_diff("c1", &mut diff).unwrap();
    let names: Vec<String> = tar::Archive::new(Cursor::new(&diff))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"etc/.wh.passwd".to_string()), "{names:?}");
    assert!(names.contains(&"new-file".to_string()), "{names:?}");
    store.unmount_rw("c1").unwrap();

    // The diff registers as a layer of its own.
    let l3 = store
        .register(Some(&l2.chain_id), &mut Cursor::new(&diff), None)
        .unwrap();
    assert_eq!(l3.size, 5);

    // Releasing removes layers bottom-up once nothing holds them.
    store.remove_rw(&rw.name).unwrap();
    assert_eq!(store.release(&l3.chain_id).unwrap().len(), 1);
    // l2 is held by the registration reference only; l1 by l2 and its own.
    assert_eq!(
        store.release(&l2.chain_id).unwrap(),
        vec![l2.chain_id.clone()]
    );
    assert_eq!(
        store.release(&l1.chain_id).unwrap(),
        vec![l1.chain_id.clone()]
    );
    assert!(store.driver().list().unwrap().is_empty());
}

#[test]
fn vfs_roundtrip() {
    roundtrip("vfs");
}

#[test]
fn overlay2_roundtrip() {
    roundtrip("overlay2");
}

fn hostile(driver: &str, tar: Vec<u8>) -> StorageError {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let root = dir.path().join("root");
    let store = store(driver, &root);
    let err = store
        .register(None, &mut Cursor::new(tar), None)
        .unwrap_err();
    assert!(err.is_invalid_input(), "not an input error: {err}");
    assert!(store.list().is_empty());
    assert!(
        store.driver().list().unwrap().is_empty(),
        "driver layer left behind"
    );
    assert_eq!(
        std::fs::read_dir(root.join("layers/tmp")).unwrap().count(),
        0
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    err
}

#[test]
fn refuses_hostile_archives() {
    for driver in ["vfs", "overlay2"] {
        let e = hostile(
            driver,
            TarBuilder::new()
                .raw_name_file(b"../outside/x", b"x")
                .build(),
        );
        assert!(e.to_string().contains("outside"), "{e}");
        let e = hostile(
            driver,
            TarBuilder::new().raw_name_file(b"/abs/file", b"x").build(),
        );
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = hostile(
            driver,
            TarBuilder::new()
                .symlink("evil", "/")
                .file("evil/tmp/pwned", b"x")
                .build(),
        );
        assert!(e.to_string().contains("symlink"), "{e}");
        let e = hostile(
            driver,
            TarBuilder::new()
                .symlink("up", "../../../../../../..")
                .file("up/tmp/pwned", b"x")
                .build(),
        );
        assert!(e.to_string().contains("symlink"), "{e}");
        let mut truncated = base_layer();
        truncated.truncate(1500);
        let e = hostile(driver, truncated);
        assert!(
            e.to_string().contains("EOF") || e.to_string().contains("truncated"),
            "{e}"
        );
    }
}

#[test]
fn verifies_expected_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = store("vfs", dir.path());
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = store
        .register(None, &mut Cursor::new(base_layer()), Some(&wrong))
        .unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch(_)));
    assert!(store.driver().list().unwrap().is_empty());
}

#[test]
fn compressed_layers_have_the_uncompressed_diff_id() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let store = store("vfs", dir.path());
    let plain = base_layer();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(Cursor::new(&plain), 3).unwrap();
    let a = store
        .register(None, &mut Cursor::new(&plain), None)
        .unwrap();
    let b = store.register(None, &mut Cursor::new(&gz), None).unwrap();
    let c = store.register(None, &mut Cursor::new(&zst), None).unwrap();
    assert_eq!(a.chain_id, b.chain_id);
    assert_eq!(a.chain_id, c.chain_id);
    assert_eq!(store.list().len(), 1, "a shared layer is stored once");
}

#[test]
fn reconcile_removes_unheld_and_half_made_layers() {
    let dir = tempfile::tempdir().unwrap();
    let kept;
    {
        let store = store("vfs", dir.path());
        kept = store
            .register(None, &mut Cursor::new(base_layer()), None)
            .unwrap();
        let dropped = store
            .register(Some(&kept.chain_id), &mut Cursor::new(child_layer()), None)
            .unwrap();
        assert_ne!(kept.chain_id, dropped.chain_id);
        // A registration interrupted by a crash: tmp dir and driver layer.
        std::fs::create_dir(dir.path().join("layers/tmp/deadbeef")).unwrap();
        store.driver().create("deadbeef", None).unwrap();
        // And a driver layer no record names.
        store.driver().create("stray", None).unwrap();
    }
    let store = store("vfs", dir.path());
    store
        .reconcile(std::slice::from_ref(&kept.chain_id), &HashSet::new())
        .unwrap();
    let layers = store.list();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].chain_id, kept.chain_id);
    assert_eq!(store.driver().list().unwrap(), vec![kept.cache_id.clone()]);
}

#[test]
fn refuses_writing_through_a_parent_layers_symlink() {
    for driver in ["vfs", "overlay2"] {
        let dir = tempfile::tempdir().unwrap();
        let store = store(driver, dir.path());
        let parent = TarBuilder::new().symlink("evil", "/").build();
        let l1 = store
            .register(None, &mut Cursor::new(parent), None)
            .unwrap();
        let child = TarBuilder::new().file("evil/tmp/pwned", b"x").build();
        let err = store
            .register(Some(&l1.chain_id), &mut Cursor::new(child), None)
            .unwrap_err();
        assert!(err.is_invalid_input(), "{driver}: {err}");
        assert!(err.to_string().contains("symlink"), "{driver}: {err}");
        assert_eq!(store.list().len(), 1, "{driver}: only the parent remains");
        assert!(!std::path::Path::new("/tmp/pwned").exists());
    }
}
