//! `docker cp` against hostile container trees: symlinks to the host's
//! `/etc`, `../../..` chains, absolute and relative links out, symlinked
//! parents and mount points, in a stopped container's writable layer (vfs)
//! and in a running one reached through `/proc/<pid>/root`. Nothing
//! outside the container may be read or written.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tar::EntryType;

use super::{go_mode, ArchiveMount, ArchiveSubject, PathStat};
use crate::engine::{Engine, EngineConfig};
use crate::error::{ErrorKind, Result};

/// The fixture container's ID: 64 hex digits, as real ones, so that no
/// cgroup path of the test process can contain it by chance (the recycled
/// pid check looks for the ID in the process's cgroups; a short ID such as
/// `c1` matched a worker's cgroup name).
const ID: &str = "5e1f0c0ffee4b3d2a19c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

struct Fixture {
    dir: tempfile::TempDir,
    engine: Arc<Engine>,
    /// The container's writable layer on the host (vfs: a plain directory).
    rootfs: PathBuf,
    /// A host directory the container must never reach.
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig {
            data_root: dir.path().join("data"),
            exec_root: dir.path().join("exec"),
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
        .unwrap();
        engine
            .layers
            .create_rw(ID, None, &Default::default())
            .unwrap();
        let rootfs = engine.layers.mount_rw(ID).unwrap();
        engine.layers.unmount_rw(ID).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), b"host secret").unwrap();

        let r = &rootfs;
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(r.join("etc/group"), GROUP).unwrap();
        std::fs::create_dir_all(r.join("data/sub")).unwrap();
        std::fs::write(r.join("data/file"), b"hello").unwrap();
        std::fs::write(r.join("data/sub/inner"), b"inner").unwrap();
        std::fs::write(r.join("file.txt"), b"plain").unwrap();
        symlink("/etc", r.join("hostetc")).unwrap();
        symlink("../../../../../../../..", r.join("up")).unwrap();
        symlink("/data", r.join("linkdir")).unwrap();
        symlink(&outside, r.join("secret")).unwrap();
        let climb = format!("../../../../../../../../..{}", outside.display());
        symlink(&climb, r.join("rel_secret")).unwrap();
        Fixture {
            dir,
            engine,
            rootfs,
            outside,
        }
    }

    fn subject(&self) -> ArchiveSubject {
        ArchiveSubject {
            id: ID.into(),
            ..Default::default()
        }
    }

    fn stat(&self, s: &ArchiveSubject, path: &str) -> Result<PathStat> {
        self.engine.archive_stat_blocking(s, ID, path)
    }

    fn get(&self, s: &ArchiveSubject, path: &str) -> Result<(PathStat, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stat = None;
        self.engine
            .archive_get_blocking(s, ID, path, |st| stat = Some(st), &mut out)?;
        Ok((stat.unwrap(), out))
    }

    fn put(&self, s: &ArchiveSubject, path: &str, tar: &[u8]) -> Result<()> {
        self.put_with(s, path, tar, false, false)
    }

    fn put_with(
        &self,
        s: &ArchiveSubject,
        path: &str,
        tar: &[u8],
        no_overwrite: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        let mut input = tar;
        self.engine
            .archive_put_blocking(s, ID, path, &mut input, no_overwrite, copy_uid_gid)
    }

    /// Every entry of the outside directory, to show it never changed.
    fn outside_listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The entry names of a tar, in order.
fn names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

/// The content of entry `name`.
fn content(tar: &[u8], name: &str) -> Vec<u8> {
    let mut archive = tar::Archive::new(tar);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path_bytes().as_ref() == name.as_bytes() {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut out).unwrap();
            return out;
        }
    }
    panic!("no entry {name} in {:?}", names(tar));
}

/// A tar with names and link targets written byte for byte.
fn raw_tar(entries: &[(&str, EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(77);
        h.set_gid(88);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn mountinfo_mentions(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&path.display().to_string())
}

#[test]
fn stat_resolves_inside_the_container() {
    let f = Fixture::new();
    let s = f.subject();
    let passwd = f.stat(&s, "/hostetc/passwd").unwrap();
    assert_eq!(passwd.size, PASSWD.len() as i64);
    assert_eq!(passwd.name, "passwd");
    assert_eq!(passwd.mode, 0o644);
    assert_eq!(
        f.stat(&s, "/up/etc/passwd").unwrap().size,
        PASSWD.len() as i64
    );
    assert_eq!(
        f.stat(&s, "../../../etc/passwd").unwrap().size,
        PASSWD.len() as i64
    );

    let link = f.stat(&s, "/hostetc").unwrap();
    assert_eq!(link.mode & go_mode::SYMLINK, go_mode::SYMLINK);
    assert_eq!(link.link_target, "/etc");
    assert_eq!(link.name, "hostetc");
    assert_eq!(f.stat(&s, "/up").unwrap().link_target, "/");
    // Trailing slash: the directory the link leads to.
    let followed = f.stat(&s, "/linkdir/").unwrap();
    assert_eq!(followed.mode & go_mode::DIR, go_mode::DIR);
    assert_eq!(followed.name, "linkdir");

    let data = f.stat(&s, "/data").unwrap();
    assert_eq!(data.mode, go_mode::DIR | 0o755);
    assert_eq!(f.stat(&s, "/data/.").unwrap().name, ".");
    assert_eq!(f.stat(&s, "/").unwrap().name, "/");
    assert!(chrono::DateTime::parse_from_rfc3339(&data.mtime).is_ok());

    for path in ["/secret/secret.txt", "/rel_secret/secret.txt", "/nope"] {
        let err = f.stat(&s, path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{path}");
        assert_eq!(
            err.to_string(),
            format!("Could not find the file {path} in container {ID}")
        );
    }
    // The link itself is there; where it points is the container's business.
    let secret = f.stat(&s, "/secret").unwrap();
    assert_eq!(secret.link_target, f.outside.display().to_string());
    assert_eq!(
        f.stat(&s, "/file.txt/x").unwrap_err().kind(),
        ErrorKind::Internal
    );
}

#[test]
fn get_names_entries_as_dockerd_does() {
    let f = Fixture::new();
    let s = f.subject();
    let (stat, tar) = f.get(&s, "/data").unwrap();
    assert_eq!(stat.name, "data");
    assert_eq!(
        names(&tar),
        ["data/", "data/file", "data/sub/", "data/sub/inner"]
    );
    let (_, tar) = f.get(&s, "/data/.").unwrap();
    assert_eq!(names(&tar), ["./", "./file", "./sub/", "./sub/inner"]);
    let (_, tar) = f.get(&s, "/linkdir/").unwrap();
    assert_eq!(
        names(&tar),
        [
            "linkdir/",
            "linkdir/file",
            "linkdir/sub/",
            "linkdir/sub/inner"
        ]
    );
    let (stat, tar) = f.get(&s, "/linkdir").unwrap();
    assert_eq!(stat.link_target, "/data");
    assert_eq!(names(&tar), ["linkdir"]);
    let (_, tar) = f.get(&s, "/data/file").unwrap();
    assert_eq!(names(&tar), ["file"]);
    assert_eq!(content(&tar, "file"), b"hello");
    let (_, tar) = f.get(&s, "/hostetc/passwd").unwrap();
    assert_eq!(content(&tar, "passwd"), PASSWD.as_bytes());

    let (_, tar) = f.get(&s, "/").unwrap();
    let all = names(&tar);
    assert_eq!(all[0], "/");
    assert!(all.contains(&"/etc/passwd".to_string()));
    assert!(all.iter().all(|n| !n.contains("secret.txt")));

    let err = f.get(&s, "/secret/secret.txt").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn put_never_writes_outside() {
    let f = Fixture::new();
    let s = f.subject();
    let before = f.outside_listing();
    let r = &f.rootfs;

    // Into a symlink to a directory: into that directory.
    f.put(
        &s,
        "/linkdir",
        &raw_tar(&[("new", EntryType::Regular, "", b"1")]),
    )
    .unwrap();
    assert_eq!(std::fs::read(r.join("data/new")).unwrap(), b"1");
    // Into the container's /etc through its link named like the host's.
    let marker = format!("berth-test-{}", std::process::id());
    f.put(
        &s,
        "/hostetc",
        &raw_tar(&[(&marker, EntryType::Regular, "", b"x")]),
    )
    .unwrap();
    assert!(r.join("etc").join(&marker).exists());
    assert!(!Path::new("/etc").join(&marker).exists());

    // Climbing names are refused.
    let err = f
        .put(
            &s,
            "/data",
            &raw_tar(&[("../../../../escape", EntryType::Regular, "", b"x")]),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    // Absolute names land below the destination.
    f.put(
        &s,
        "/data",
        &raw_tar(&[("/abs", EntryType::Regular, "", b"x")]),
    )
    .unwrap();
    assert!(r.join("data/abs").exists());
    // Symlinks the archive makes, absolute or climbing, re-root at the
    // destination when written through.
    let outside = f.outside.display().to_string();
    let climb = format!("../../../../../../..{outside}");
    f.put(
        &s,
        "/data",
        &raw_tar(&[
            ("l1", EntryType::Symlink, &outside, b""),
            ("l1/pwn1", EntryType::Regular, "", b"x"),
            ("l2", EntryType::Symlink, &climb, b""),
            ("l2/pwn2", EntryType::Regular, "", b"x"),
            ("l3", EntryType::Symlink, "/", b""),
            ("l3/pwn3", EntryType::Regular, "", b"x"),
        ]),
    )
    .unwrap();
    let rerooted = r.join("data").join(outside.trim_start_matches('/'));
    assert!(rerooted.join("pwn1").exists());
    assert!(rerooted.join("pwn2").exists());
    assert!(r.join("data/pwn3").exists());
    // Hardlinks to files outside the destination cannot be made.
    let err = f
        .put(
            &s,
            "/data",
            &raw_tar(&[("h", EntryType::Link, "../etc/passwd", b"")]),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);

    // Destinations that lead outside do not exist in the container.
    for dest in ["/secret", "/rel_secret", "/secret/."] {
        let err = f
            .put(&s, dest, &raw_tar(&[("pwn", EntryType::Regular, "", b"x")]))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{dest}");
        assert_eq!(
            err.to_string(),
            format!("Could not find the file {dest} in container {ID}")
        );
    }
    let err = f
        .put(
            &s,
            "/file.txt",
            &raw_tar(&[("x", EntryType::Regular, "", b"x")]),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    assert_eq!(err.to_string(), "extraction point is not a directory");
    assert_eq!(f.outside_listing(), before);
}

#[test]
fn put_takes_compressed_archives_and_honours_no_overwrite() {
    let f = Fixture::new();
    let s = f.subject();
    let tar = raw_tar(&[("gz", EntryType::Regular, "", b"zipped")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    f.put(&s, "/data", &gz.finish().unwrap()).unwrap();
    assert_eq!(std::fs::read(f.rootfs.join("data/gz")).unwrap(), b"zipped");

    let swap = raw_tar(&[("sub", EntryType::Regular, "", b"x")]);
    let err = f.put_with(&s, "/data", &swap, true, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    assert_eq!(
        err.to_string(),
        "cannot overwrite directory \"sub\" with non-directory \"/data\""
    );
    assert!(f.rootfs.join("data/sub").is_dir());
    f.put_with(&s, "/data", &swap, false, false).unwrap();
    assert!(f.rootfs.join("data/sub").is_file());
}

#[test]
fn read_only_rootfs_and_volumes_refuse_writes() {
    let f = Fixture::new();
    let rw_src = f.dir.path().join("rw-bind");
    let ro_src = f.dir.path().join("ro-bind");
    std::fs::create_dir(&rw_src).unwrap();
    std::fs::create_dir(&ro_src).unwrap();
    std::fs::write(ro_src.join("readable"), b"ro content").unwrap();
    let mut s = f.subject();
    s.readonly_rootfs = true;
    s.mounts = vec![
        ArchiveMount {
            destination: "/data/rw".into(),
            source: rw_src.clone(),
            writable: true,
            ..Default::default()
        },
        ArchiveMount {
            destination: "/ro".into(),
            source: ro_src.clone(),
            writable: false,
            ..Default::default()
        },
    ];
    let one = raw_tar(&[("f", EntryType::Regular, "", b"x")]);
    let err = f.put(&s, "/data", &one).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    assert_eq!(err.to_string(), "container rootfs is marked read-only");
    let err = f.put(&s, "/ro", &one).unwrap_err();
    assert_eq!(err.to_string(), "mounted volume is marked read-only");
    // The writable bind inside the read-only rootfs takes files.
    f.put(&s, "/data/rw", &one).unwrap();
    assert!(rw_src.join("f").exists());
    assert!(!f.rootfs.join("data/rw/f").exists());
    // Reading the read-only one is fine.
    let (_, tar) = f.get(&s, "/ro/readable").unwrap();
    assert_eq!(content(&tar, "readable"), b"ro content");

    // Below a writable destination, the read-only bind stays read-only:
    // the view mounted it so.
    s.readonly_rootfs = false;
    let sneaky = raw_tar(&[("ro/x", EntryType::Regular, "", b"x")]);
    let err = f.put(&s, "/", &sneaky).unwrap_err();
    assert!(err.to_string().contains("Read-only file system"), "{err}");
    assert!(!ro_src.join("x").exists());
}

#[test]
fn stopped_view_mounts_volumes_and_binds_where_the_container_has_them() {
    let f = Fixture::new();
    let bind_src = f.dir.path().join("bind-src");
    std::fs::create_dir(&bind_src).unwrap();
    std::fs::write(bind_src.join("from-host"), b"bound").unwrap();
    let vol_path = f.engine.volume_acquire("vol", ID).unwrap();
    // The image points the mount point out of the container.
    symlink(&f.outside, f.rootfs.join("evilmnt")).unwrap();
    let mut s = f.subject();
    s.mounts = vec![
        ArchiveMount {
            destination: "/mnt/bind".into(),
            source: bind_src.clone(),
            writable: true,
            ..Default::default()
        },
        ArchiveMount {
            destination: "/vol".into(),
            source: vol_path.clone(),
            writable: true,
            volume: Some("vol".into()),
            propagation: "rprivate".into(),
        },
        ArchiveMount {
            destination: "/evilmnt".into(),
            source: bind_src.clone(),
            writable: true,
            ..Default::default()
        },
    ];
    let mut events = f.engine.events().subscribe();
    let (_, tar) = f.get(&s, "/mnt/bind/from-host").unwrap();
    assert_eq!(content(&tar, "from-host"), b"bound");
    f.put(
        &s,
        "/vol",
        &raw_tar(&[("in-vol", EntryType::Regular, "", b"v")]),
    )
    .unwrap();
    assert_eq!(std::fs::read(vol_path.join("in-vol")).unwrap(), b"v");
    // The hostile mount point was made inside the container.
    let (_, tar) = f.get(&s, "/evilmnt/from-host").unwrap();
    assert_eq!(content(&tar, "from-host"), b"bound");
    assert_eq!(f.outside_listing(), ["secret.txt"]);
    assert!(f.rootfs.join(f.outside.strip_prefix("/").unwrap()).is_dir());
    // The view's mounts went with it.
    assert!(!mountinfo_mentions(&f.rootfs));
    assert!(!mountinfo_mentions(&f.outside));

    let mut actions = Vec::new();
    while let Ok(m) = events.try_recv() {
        let attrs = m.actor.clone().unwrap().attributes.unwrap();
        actions.push((m.action.unwrap(), attrs.get("container").cloned()));
    }
    let c1 = Some(ID.to_string());
    assert_eq!(
        actions,
        [
            ("mount".to_string(), c1.clone()),
            ("unmount".to_string(), c1.clone()),
            ("mount".to_string(), c1.clone()),
            ("unmount".to_string(), c1.clone()),
            ("mount".to_string(), c1.clone()),
            ("unmount".to_string(), c1),
        ]
    );
}

#[test]
fn round_trip_keeps_modes_owners_links_and_times() {
    let f = Fixture::new();
    let s = f.subject();
    let t = f.rootfs.join("tree");
    std::fs::create_dir_all(t.join("private")).unwrap();
    std::fs::create_dir_all(t.join("shared")).unwrap();
    std::fs::write(t.join("setuid"), b"#!/bin/sh\n").unwrap();
    std::fs::write(t.join("private/data"), vec![9u8; 70_000]).unwrap();
    std::fs::hard_link(t.join("private/data"), t.join("hard")).unwrap();
    let long = "l".repeat(140);
    std::fs::write(t.join(&long), b"long name").unwrap();
    symlink("private/data", t.join("rel")).unwrap();
    symlink(format!("/{}", "t".repeat(150)), t.join("longlink")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    std::os::unix::fs::chown(t.join("private"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(t.join("setuid"), Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(t.join("setuid"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(t.join("private"), PermissionsExt::from_mode(0o750)).unwrap();
    std::fs::set_permissions(t.join("shared"), PermissionsExt::from_mode(0o1777)).unwrap();
    let old = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 0,
        },
    };
    for p in ["private/data", "private", "setuid"] {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            t.join(p),
            &old,
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
    }

    let (_, tar) = f.get(&s, "/tree").unwrap();
    std::fs::create_dir(f.rootfs.join("restore")).unwrap();
    f.put(&s, "/restore", &tar).unwrap();
    let back = f.rootfs.join("restore/tree");
    let walk = |root: &Path| -> BTreeMap<PathBuf, std::fs::Metadata> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    stack.push(p.clone());
                }
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), m);
            }
        }
        out
    };
    let (a, b) = (walk(&t), walk(&back));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (rel, ma) in &a {
        let mb = &b[rel];
        assert_eq!(ma.mode(), mb.mode(), "mode of {rel:?}");
        assert_eq!(
            (ma.uid(), ma.gid()),
            (mb.uid(), mb.gid()),
            "owner of {rel:?}"
        );
        if !ma.is_dir() {
            assert_eq!(ma.len(), mb.len(), "size of {rel:?}");
        }
        if !ma.file_type().is_symlink() {
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of {rel:?}");
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(t.join(rel)).unwrap(),
                std::fs::read_link(back.join(rel)).unwrap()
            );
        }
    }
    assert_eq!(
        b[Path::new("hard")].ino(),
        b[Path::new("private/data")].ino()
    );
    assert_eq!(std::fs::read(back.join(&long)).unwrap(), b"long name");
}

#[test]
fn copy_uid_gid_uses_the_containers_own_users() {
    let f = Fixture::new();
    let one = raw_tar(&[("owned", EntryType::Regular, "", b"x")]);
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(f.rootfs.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    let mut s = f.subject();
    f.put_with(&s, "/data", &one, false, true).unwrap();
    assert_eq!(owner("data/owned"), (77, 88), "no user: the archive's IDs");
    for (user, want) in [
        ("app", (1000, 1001)),
        ("app:staff", (1000, 50)),
        ("4242", (4242, 0)),
        ("1000:7", (1000, 7)),
    ] {
        s.user = Some(user.into());
        f.put_with(&s, "/data", &one, false, true).unwrap();
        assert_eq!(owner("data/owned"), want, "user {user}");
        f.put_with(&s, "/data", &one, false, false).unwrap();
        assert_eq!(
            owner("data/owned"),
            (77, 88),
            "user {user} without copyUIDGID"
        );
    }
    s.user = Some("ghost".into());
    let err = f.put_with(&s, "/data", &one, false, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    assert_eq!(
        err.to_string(),
        "failed to look up user \"ghost\" in container: no matching entries in passwd file"
    );
    // A FIFO planted as /etc/passwd is not read (it would never end).
    std::fs::remove_file(f.rootfs.join("etc/passwd")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        f.rootfs.join("etc/passwd"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    s.user = Some("app".into());
    let err = f.put_with(&s, "/data", &one, false, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
}

/// A process chrooted into the fixture's rootfs in a mount namespace of
/// its own, with a tmpfs only it can see, in a cgroup named after the
/// container as the runtime names it; killed (and the cgroup removed) on
/// drop.
struct Chrooted {
    child: std::process::Child,
    cgroup: PathBuf,
}

impl Drop for Chrooted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

impl Chrooted {
    fn start(rootfs: &Path, id: &str) -> Chrooted {
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("tmpvol")).unwrap();
        std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        let script = format!(
            "mount -t tmpfs none {r}/tmpvol && echo inside > {r}/tmpvol/seen && exec chroot {r} /bin/busybox sleep 600",
            r = rootfs.display()
        );
        // cgroup v2 where it is the whole tree, else v1's pids hierarchy.
        let base = if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/pids")
        };
        let cgroup = base.join(format!("berth-test-{id}"));
        std::fs::create_dir(&cgroup).unwrap();
        let child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .spawn()
            .unwrap();
        let pid = child.id();
        let me = Chrooted { child, cgroup };
        std::fs::write(me.cgroup.join("cgroup.procs"), pid.to_string()).unwrap();
        // Wait until the process runs chrooted (its root is no longer ours).
        let proc_root = format!("/proc/{pid}/root");
        let started = (0..2000).any(|_| {
            let done = std::fs::read_link(&proc_root).is_ok_and(|p| p != Path::new("/"));
            if !done {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            done
        });
        assert!(started, "the chrooted process did not start");
        me
    }
}

#[test]
fn running_container_is_seen_through_its_own_mounts() {
    let f = Fixture::new();
    let r = &f.rootfs;
    let id = berth_storage::random_id();
    let running = Chrooted::start(r, &id);
    let mut s = f.subject();
    s.id = id;
    s.pid = Some(running.child.id());

    let seen = f.stat(&s, "/tmpvol/seen").unwrap();
    assert_eq!(seen.size, 7);
    assert!(
        !r.join("tmpvol/seen").exists(),
        "the tmpfs is the container's only"
    );
    assert_eq!(
        f.stat(&s, "/hostetc/passwd").unwrap().size,
        PASSWD.len() as i64
    );
    assert_eq!(
        f.stat(&s, "/secret/secret.txt").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    f.put(
        &s,
        "/tmpvol",
        &raw_tar(&[("put", EntryType::Regular, "", b"p")]),
    )
    .unwrap();
    let (_, tar) = f.get(&s, "/tmpvol/put").unwrap();
    assert_eq!(content(&tar, "put"), b"p");
    assert!(!r.join("tmpvol/put").exists());
    let before = f.outside_listing();
    let l = f.outside.display().to_string();
    f.put(
        &s,
        "/tmpvol",
        &raw_tar(&[
            ("out", EntryType::Symlink, &l, b""),
            ("out/pwn", EntryType::Regular, "", b"x"),
        ]),
    )
    .unwrap();
    assert_eq!(f.outside_listing(), before);
}

#[test]
fn a_recycled_pid_never_gives_the_hosts_root() {
    let f = Fixture::new();
    let mut s = f.subject();
    // Our own pid: a live process whose root is the host's, outside the
    // container's cgroup — as a recycled pid would be.
    s.pid = Some(std::process::id());
    let passwd = f.stat(&s, "/etc/passwd").unwrap();
    assert_eq!(
        passwd.size,
        PASSWD.len() as i64,
        "read the writable layer, not the host"
    );
    let err = f.stat(&s, "/proc/self/status").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_works_on_a_created_container_with_dockerd_events() {
    use bollard_stubs::models::ContainerCreateBody;
    use futures_util::StreamExt;

    let f = Fixture::new();
    let image = raw_tar(&[
        ("etc/", EntryType::Directory, "", b""),
        ("etc/hostname", EntryType::Regular, "", b"img"),
    ]);
    let mut progress = f
        .engine
        .import_image(
            Box::new(std::io::Cursor::new(image)),
            crate::images::ImportOptions {
                repo: Some("cp-test".into()),
                tag: Some("v1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    while let Some(p) = progress.recv().await {
        assert!(!matches!(p, crate::progress::Progress::Error(_)), "{p:?}");
    }
    f.engine
        .create_container(
            Some("web".into()),
            ContainerCreateBody {
                image: Some("cp-test:v1".into()),
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut events = f.engine.events().subscribe();

    let upload = raw_tar(&[("new", EntryType::Regular, "", b"uploaded")]);
    f.engine
        .archive_put(
            "web",
            "/etc",
            Box::new(std::io::Cursor::new(upload)),
            false,
            false,
        )
        .await
        .unwrap();
    let stat = f.engine.archive_stat("web", "/etc/new").await.unwrap();
    assert_eq!((stat.name.as_str(), stat.size), ("new", 8));
    let (stat, mut stream) = f.engine.archive_get("web", "/etc").await.unwrap();
    assert_eq!(stat.mode & go_mode::DIR, go_mode::DIR);
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.unwrap());
    }
    // Besides the image's and ours, create may add its own mount points
    // (/etc/hosts, /etc/resolv.conf...), as dockerd's init layer does.
    let all = names(&tar);
    assert_eq!(all[0], "etc/");
    for want in ["etc/hostname", "etc/new"] {
        assert!(all.iter().any(|n| n == want), "{want} in {all:?}");
    }
    assert_eq!(content(&tar, "etc/new"), b"uploaded");

    let err = f.engine.archive_stat("web", "/nope").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Could not find the file /nope in container web"
    );
    let err = f.engine.archive_get("web", "/nope").await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = f.engine.archive_stat("ghost", "/").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let mut seen = Vec::new();
    while let Ok(m) = events.try_recv() {
        let attrs = m.actor.clone().unwrap().attributes.unwrap();
        seen.push((
            m.action.unwrap(),
            attrs["name"].clone(),
            attrs["image"].clone(),
        ));
    }
    let want = |a: &str| (a.to_string(), "web".to_string(), "cp-test:v1".to_string());
    assert_eq!(seen, [want("extract-to-dir"), want("archive-path")]);
}
