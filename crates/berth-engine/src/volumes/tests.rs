//! Volume behaviour against a real engine on a temporary vfs data root:
//! dockerd's answers and events, reference counts that survive a restart,
//! prune's rules, copy-up through hostile image symlinks, and the local
//! driver's tmpfs and bind options.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_stubs::models::{EventMessage, VolumeCreateRequest, VolumeScopeEnum};
use tokio::sync::broadcast;

use super::{local, ANONYMOUS_LABEL};
use crate::engine::{Engine, EngineConfig};
use crate::error::ErrorKind;
use crate::filters::Filters;

fn open_engine(dir: &Path) -> Arc<Engine> {
    Engine::open(EngineConfig {
        data_root: dir.join("data"),
        exec_root: dir.join("exec"),
        storage_driver: Some("vfs".into()),
        storage_opts: Vec::new(),
        debug: false,
        // Nothing here runs a container; the runtime only has to be configured.
        runtimes: [("runc".to_string(), PathBuf::from("/usr/sbin/runc"))].into(),
        default_runtime: "runc".into(),
        shim_binary: PathBuf::from("/nonexistent/berth-shim"),
        init_binary: None,
        registry: Default::default(),
        security: Default::default(),
    })
    .unwrap()
}

fn filters(pairs: &[(&str, &str)]) -> Filters {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        map.entry(k.to_string()).or_default().push(v.to_string());
    }
    Filters(map)
}

fn named(name: &str) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn with_opts(name: &str, opts: &[(&str, &str)]) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(name.into()),
        driver_opts: Some(
            opts.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The events published so far: (action, actor id, attributes).
fn drain(
    rx: &mut broadcast::Receiver<EventMessage>,
) -> Vec<(String, String, HashMap<String, String>)> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        let actor = m.actor.unwrap_or_default();
        out.push((
            m.action.unwrap_or_default(),
            actor.id.unwrap_or_default(),
            actor.attributes.unwrap_or_default(),
        ));
    }
    out
}

async fn names(engine: &Arc<Engine>, f: &[(&str, &str)]) -> Vec<String> {
    engine
        .list_volumes(&filters(f))
        .await
        .unwrap()
        .volumes
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect()
}

#[tokio::test]
async fn create_inspect_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let mut events = engine.events().subscribe();

    let mut req = named("data");
    req.labels = Some(HashMap::from([("tier".to_string(), "db".to_string())]));
    let v = engine.create_volume(req).await.unwrap();
    assert_eq!(v.name, "data");
    assert_eq!(v.driver, "local");
    assert_eq!(v.scope, Some(VolumeScopeEnum::LOCAL));
    assert_eq!(v.labels["tier"], "db");
    assert!(v.usage_data.is_none());
    let mountpoint = dir.path().join("data/volumes/data/_data");
    assert_eq!(v.mountpoint, mountpoint.display().to_string());
    assert!(mountpoint.is_dir());
    assert!(dir.path().join("data/volumes/data/volume.json").is_file());
    let created = v.created_at.clone().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&created).is_ok(),
        "{created}"
    );

    // Creating it again returns it as it is: no new labels, no event.
    let again = engine.create_volume(named("data")).await.unwrap();
    assert_eq!(again, v);
    assert_eq!(engine.inspect_volume("data").await.unwrap(), v);

    let ev = drain(&mut events);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, "create");
    assert_eq!(ev[0].1, "data");
    assert_eq!(ev[0].2["driver"], "local");

    let anon = engine
        .create_volume(VolumeCreateRequest::default())
        .await
        .unwrap();
    assert_eq!(anon.name.len(), 64);
    assert!(anon.name.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        anon.labels.get(ANONYMOUS_LABEL).map(String::as_str),
        Some("")
    );

    let err = engine.inspect_volume("nope").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "get nope: no such volume");
}

#[tokio::test]
async fn bad_requests_answer_as_dockerd() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let err = engine.create_volume(named("../../etc")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    assert_eq!(
        err.to_string(),
        "create ../../etc: \"../../etc\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    );
    let err = engine.create_volume(named("x")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "create x: volume name is too short, names should be at least two alphanumeric characters"
    );
    let mut req = named("v1");
    req.driver = Some("flocker".into());
    let err = engine.create_volume(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "create v1: error looking up volume plugin flocker: plugin \"flocker\" not found"
    );
    let err = engine
        .create_volume(with_opts("v1", &[("type", "tmpfs")]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "create v1: missing required option: \"device\""
    );
    let err = engine
        .create_volume(with_opts("v1", &[("colour", "red")]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "create v1: invalid option: \"colour\"");
    // Nothing half-made was left behind.
    assert!(names(&engine, &[]).await.is_empty());
    let volumes_dir = dir.path().join("data/volumes");
    assert_eq!(std::fs::read_dir(volumes_dir).unwrap().count(), 0);
    let err = engine
        .list_volumes(&filters(&[("colour", "red")]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid filter 'colour'");
}

#[tokio::test]
async fn list_filters() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let mut req = named("web-cache");
    req.labels = Some(HashMap::from([
        ("app".to_string(), "web".to_string()),
        ("tmp".to_string(), String::new()),
    ]));
    engine.create_volume(req).await.unwrap();
    engine.create_volume(named("db-data")).await.unwrap();
    engine.volume_acquire("db-data", "c1").unwrap();

    assert_eq!(names(&engine, &[]).await, ["db-data", "web-cache"]);
    assert_eq!(names(&engine, &[("dangling", "true")]).await, ["web-cache"]);
    assert_eq!(names(&engine, &[("dangling", "false")]).await, ["db-data"]);
    assert_eq!(names(&engine, &[("name", "cache")]).await, ["web-cache"]);
    assert_eq!(names(&engine, &[("name", "^db-")]).await, ["db-data"]);
    assert_eq!(names(&engine, &[("label", "app=web")]).await, ["web-cache"]);
    assert_eq!(names(&engine, &[("label", "tmp")]).await, ["web-cache"]);
    assert!(names(&engine, &[("label", "app=db")]).await.is_empty());
    assert_eq!(names(&engine, &[("driver", "local")]).await.len(), 2);
    assert!(names(&engine, &[("driver", "nfs")]).await.is_empty());
    assert!(engine
        .list_volumes(&filters(&[("dangling", "maybe")]))
        .await
        .is_err());
}

#[tokio::test]
async fn references_block_removal_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let path = engine.volume_acquire("shared", "c1").unwrap();
    assert!(path.ends_with("volumes/shared/_data"));
    engine.volume_acquire("shared", "c2").unwrap();
    std::fs::write(path.join("kept"), b"data").unwrap();
    assert_eq!(engine.volume_users("shared"), ["c1", "c2"]);

    let err = engine.remove_volume("shared", false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "remove shared: volume is in use - [c1, c2]"
    );
    // `force` does not take a volume from its containers.
    let err = engine.remove_volume("shared", true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // The daemon restarts: the references are still there.
    drop(engine);
    let engine = open_engine(dir.path());
    let inspected = engine.inspect_volume("shared").await.unwrap();
    assert_eq!(inspected.name, "shared");
    assert_eq!(names(&engine, &[("dangling", "false")]).await, ["shared"]);
    assert!(engine.remove_volume("shared", false).await.is_err());
    assert_eq!(std::fs::read(path.join("kept")).unwrap(), b"data");

    let mut events = engine.events().subscribe();
    engine.volume_release("shared", "c1").unwrap();
    engine.volume_release("shared", "c1").unwrap();
    assert!(engine.remove_volume("shared", false).await.is_err());
    engine.volume_release("shared", "c2").unwrap();
    engine.remove_volume("shared", false).await.unwrap();
    assert!(!dir.path().join("data/volumes/shared").exists());
    let ev = drain(&mut events);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].0.as_str(), ev[0].1.as_str()), ("destroy", "shared"));
    assert_eq!(ev[0].2["driver"], "local");

    let err = engine.remove_volume("shared", false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "get shared: no such volume");
    engine.remove_volume("shared", true).await.unwrap();
    // Releasing what is gone is not an error either.
    engine.volume_release("shared", "c2").unwrap();
}

#[tokio::test]
async fn anonymous_acquire_and_reopen_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let v = engine
        .volume_acquire_new(VolumeCreateRequest::default(), "c9")
        .unwrap();
    assert!(v.labels.contains_key(ANONYMOUS_LABEL));
    assert_eq!(engine.volume_users(&v.name), ["c9"]);
    drop(engine);
    // A crash in the middle of a create leaves a `.tmp-` directory only.
    let half = dir.path().join("data/volumes/.tmp-0123456789abcdef/_data");
    std::fs::create_dir_all(&half).unwrap();
    let engine = open_engine(dir.path());
    assert!(!half.exists());
    assert_eq!(names(&engine, &[]).await, std::slice::from_ref(&v.name));
}

#[tokio::test]
async fn prune_follows_dockerd_23() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let anon = engine
        .create_volume(VolumeCreateRequest::default())
        .await
        .unwrap();
    std::fs::write(Path::new(&anon.mountpoint).join("f"), vec![7u8; 3000]).unwrap();
    let used_anon = engine
        .volume_acquire_new(VolumeCreateRequest::default(), "c1")
        .unwrap();
    let mut labelled = named("labelled");
    labelled.labels = Some(HashMap::from([("keep".to_string(), "no".to_string())]));
    engine.create_volume(labelled).await.unwrap();
    let named_v = engine.create_volume(named("named")).await.unwrap();
    std::fs::write(Path::new(&named_v.mountpoint).join("g"), vec![1u8; 500]).unwrap();

    let mut events = engine.events().subscribe();
    let report = engine.prune_volumes(&Filters::default()).await.unwrap();
    assert_eq!(
        report.volumes_deleted.unwrap(),
        std::slice::from_ref(&anon.name)
    );
    assert_eq!(report.space_reclaimed, Some(3000));
    let ev = drain(&mut events);
    assert_eq!(ev.len(), 2);
    assert_eq!(
        (ev[0].0.as_str(), ev[0].1.as_str()),
        ("destroy", anon.name.as_str())
    );
    assert_eq!((ev[1].0.as_str(), ev[1].1.as_str()), ("prune", ""));
    assert_eq!(ev[1].2["reclaimed"], "3000");

    let report = engine
        .prune_volumes(&filters(&[("all", "true"), ("label", "keep=no")]))
        .await
        .unwrap();
    assert_eq!(report.volumes_deleted.unwrap(), ["labelled"]);
    let report = engine
        .prune_volumes(&filters(&[("all", "1"), ("label!", "keep")]))
        .await
        .unwrap();
    assert_eq!(report.volumes_deleted.unwrap(), ["named"]);
    assert_eq!(report.space_reclaimed, Some(500));
    // The used one stays whatever the filters.
    assert_eq!(
        names(&engine, &[]).await,
        std::slice::from_ref(&used_anon.name)
    );

    let err = engine
        .prune_volumes(&filters(&[("all", "yes please")]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    let err = engine
        .prune_volumes(&filters(&[("dangling", "true")]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid filter 'dangling'");
}

#[tokio::test]
async fn disk_usage_counts_sizes_and_references() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let p = engine.volume_acquire("sized", "c1").unwrap();
    std::fs::write(p.join("a"), vec![0u8; 1234]).unwrap();
    engine
        .create_volume(with_opts(
            "mounted",
            &[("type", "tmpfs"), ("device", "tmpfs")],
        ))
        .await
        .unwrap();
    let usage = engine.volumes_disk_usage().await.unwrap();
    // Volumes with mount options are not local disk usage, as with dockerd.
    assert_eq!(usage.len(), 1);
    let u = usage[0].usage_data.clone().unwrap();
    assert_eq!(
        (usage[0].name.as_str(), u.size, u.ref_count),
        ("sized", 1234, 1)
    );
}

#[tokio::test]
async fn copy_up_fills_only_empty_volumes_from_inside_the_rootfs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("srv/app/sub")).unwrap();
    std::fs::write(rootfs.join("srv/app/config"), b"image content").unwrap();
    std::fs::write(rootfs.join("srv/app/sub/deep"), b"deeper").unwrap();
    std::os::unix::fs::symlink("/srv/app/config", rootfs.join("srv/app/link")).unwrap();
    std::fs::set_permissions(
        rootfs.join("srv/app"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::chown(rootfs.join("srv/app"), Some(1234), Some(4321)).unwrap();
    // The image pretends its mount point is the host's /etc and /root.
    std::os::unix::fs::symlink("/etc", rootfs.join("hostetc")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../root", rootfs.join("hostroot")).unwrap();

    let data = engine.volume_acquire("appdata", "c1").unwrap();
    engine
        .volume_copy_up("appdata", &rootfs, "/srv/app")
        .unwrap();
    assert_eq!(
        std::fs::read(data.join("config")).unwrap(),
        b"image content"
    );
    assert_eq!(std::fs::read(data.join("sub/deep")).unwrap(), b"deeper");
    assert_eq!(
        std::fs::read_link(data.join("link")).unwrap(),
        Path::new("/srv/app/config")
    );
    // The volume's root takes the image directory's owner and mode.
    let meta = std::fs::metadata(&data).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1234, 4321, 0o750)
    );

    // Not empty any more: a second copy changes nothing.
    std::fs::write(rootfs.join("srv/app/new"), b"x").unwrap();
    engine
        .volume_copy_up("appdata", &rootfs, "/srv/app")
        .unwrap();
    assert!(!data.join("new").exists());

    // Symlinks resolve inside the rootfs, which has no etc or root.
    engine.volume_acquire("etcvol", "c1").unwrap();
    engine
        .volume_copy_up("etcvol", &rootfs, "/hostetc")
        .unwrap();
    engine
        .volume_copy_up("etcvol", &rootfs, "/hostroot")
        .unwrap();
    engine
        .volume_copy_up("etcvol", &rootfs, "/srv/app/config")
        .unwrap();
    let etcvol = engine.volumes.data_path("etcvol");
    assert_eq!(std::fs::read_dir(etcvol).unwrap().count(), 0);
}

#[tokio::test]
async fn tmpfs_volume_is_mounted_while_used() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    engine
        .create_volume(with_opts(
            "scratch",
            &[
                ("type", "tmpfs"),
                ("device", "tmpfs"),
                ("o", "size=1m,uid=1000"),
            ],
        ))
        .await
        .unwrap();
    engine.volume_acquire("scratch", "c1").unwrap();
    engine.volume_acquire("scratch", "c2").unwrap();
    let data = engine.volumes.data_path("scratch");
    let mut events = engine.events().subscribe();

    let p = engine
        .volume_mount("scratch", "c1", "/scratch", true, "rprivate")
        .unwrap();
    assert_eq!(p, data);
    assert!(local::is_mount_root(&data));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), 1000);
    std::fs::write(data.join("f"), b"in memory").unwrap();
    engine
        .volume_mount("scratch", "c2", "/other", false, "")
        .unwrap();
    engine.volume_unmount("scratch", "c1").unwrap();
    // Still used by c2.
    assert!(data.join("f").exists());

    // A restart keeps the mount and its holder.
    drop(engine);
    let engine = open_engine(dir.path());
    assert!(engine.volumes.is_mounted("scratch"));
    let mut events2 = engine.events().subscribe();
    engine.volume_unmount("scratch", "c2").unwrap();
    assert!(!local::is_mount_root(&data));
    assert!(!data.join("f").exists());

    let ev = drain(&mut events);
    assert_eq!(ev[0].0, "mount");
    assert_eq!(ev[0].2["container"], "c1");
    assert_eq!(ev[0].2["destination"], "/scratch");
    assert_eq!(ev[0].2["read/write"], "true");
    assert_eq!(ev[0].2["propagation"], "rprivate");
    assert_eq!(ev[0].2["driver"], "local");
    assert_eq!(ev[1].2["read/write"], "false");
    assert_eq!(ev[2].0, "unmount");
    assert_eq!(ev[2].2["container"], "c1");
    let ev2 = drain(&mut events2);
    assert_eq!(ev2[0].0, "unmount");
    assert_eq!(ev2[0].2["container"], "c2");
}

#[tokio::test]
async fn bind_option_volume_shows_and_keeps_the_host_directory() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let host = dir.path().join("host-dir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("precious"), b"keep me").unwrap();
    engine
        .create_volume(with_opts(
            "bound",
            &[
                ("type", "none"),
                ("device", host.to_str().unwrap()),
                ("o", "bind"),
            ],
        ))
        .await
        .unwrap();
    let data = engine.volume_mount("bound", "c1", "/b", true, "").unwrap();
    assert_eq!(std::fs::read(data.join("precious")).unwrap(), b"keep me");
    // While mounted, removal must not delete through the bind.
    let err = engine.remove_volume("bound", true).await.unwrap_err();
    assert_eq!(err.to_string(), "remove bound: volume has active mounts");
    assert_eq!(std::fs::read(host.join("precious")).unwrap(), b"keep me");
    engine.volume_unmount("bound", "c1").unwrap();
    engine.remove_volume("bound", false).await.unwrap();
    assert_eq!(std::fs::read(host.join("precious")).unwrap(), b"keep me");

    // A read-only bind is read-only.
    engine
        .create_volume(with_opts(
            "robound",
            &[
                ("type", "none"),
                ("device", host.to_str().unwrap()),
                ("o", "bind,ro"),
            ],
        ))
        .await
        .unwrap();
    let data = engine
        .volume_mount("robound", "c1", "/b", false, "")
        .unwrap();
    assert!(std::fs::write(data.join("new"), b"x").is_err());
    engine.volume_unmount("robound", "c1").unwrap();
    assert!(!local::is_mount_root(&data));
}
