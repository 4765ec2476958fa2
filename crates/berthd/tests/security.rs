//! Container isolation through the real docker CLI: what a default
//! container may not do (mount, reboot, read masked /proc files, write
//! /proc/sys, make userns, use devices), what `--privileged` gives back,
//! `--cap-drop ALL`, seccomp profiles (unconfined, custom, daemon-wide),
//! no-new-privileges, `docker info` SecurityOptions, and `--userns-remap`
//! owning image and container files by the remapped ids on btrfs and
//! overlay2.

#[allow(unused_macros)]
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_testkit::{busybox, Daemon};
use support::Backend;

const IMG: &str = busybox::IMAGE;

/// A daemon on `backend` with the busybox test image loaded.
#[track_caller]
fn with_image(daemon: Daemon) -> Daemon {
    let image = busybox::image().expect("busybox test image").build();
    support::load(&daemon, &image, "busybox.tar");
    daemon
}

/// `docker run --rm ARGS... IMG sh -c SCRIPT`: stdout and stderr
/// together, and whether it succeeded.
#[track_caller]
fn sh(d: &Daemon, opts: &[&str], script: &str) -> (bool, String) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[IMG, "sh", "-c", script]);
    let out = d.docker(&args);
    (out.success(), format!("{}{}", out.stdout, out.stderr))
}

/// The value of a `/proc/self/status` field inside a container.
#[track_caller]
fn status_field(d: &Daemon, opts: &[&str], field: &str) -> String {
    let (ok, out) = sh(d, opts, &format!("grep '^{field}:' /proc/self/status"));
    assert!(ok, "{out}");
    out.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[track_caller]
fn security_options(d: &Daemon) -> Vec<String> {
    let out = d
        .docker(&["info", "--format", "{{json .SecurityOptions}}"])
        .ok();
    serde_json::from_str(out.stdout.trim()).expect("SecurityOptions as JSON")
}

/// What a default container cannot do, and `--privileged` can.
#[test]
fn default_isolation_and_privileged() {
    let d = with_image(Backend::Overlay2.daemon());
    let opts = security_options(&d);
    assert!(
        opts.contains(&"name=seccomp,profile=builtin".to_string()),
        "{opts:?}"
    );
    assert!(!opts
        .iter()
        .any(|o| o == "name=userns" || o == "name=no-new-privileges"));

    // Seccomp filter on, no NNP, dockerd's 14 capabilities.
    assert_eq!(status_field(&d, &[], "Seccomp"), "2");
    assert_eq!(status_field(&d, &[], "NoNewPrivs"), "0");
    assert_eq!(status_field(&d, &[], "CapEff"), "00000000a80425fb");

    // mount(2): no CAP_SYS_ADMIN, and the filter refuses it anyway.
    let (ok, out) = sh(&d, &[], "mkdir -p /mnt && mount -t tmpfs x /mnt");
    assert!(!ok, "{out}");
    let (ok, out) = sh(
        &d,
        &["--privileged"],
        "mkdir -p /mnt && mount -t tmpfs x /mnt && echo mounted",
    );
    assert!(ok && out.contains("mounted"), "{out}");

    // reboot(2) is refused; a privileged reboot only ends the container's
    // own PID namespace (its init dies of SIGHUP: 129) — checked to be its
    // own first.
    let (ok, out) = sh(&d, &[], "reboot -f; echo rc=$?");
    assert!(
        ok && out.contains("rc=1") && out.contains("Operation not permitted"),
        "{out}"
    );
    let (ok, out) = sh(&d, &["--privileged"], "echo pid=$$");
    assert!(ok && out.contains("pid=1"), "{out}");
    let out = d.docker(&["run", "--rm", "--privileged", IMG, "reboot", "-f"]);
    assert_eq!(out.status.code(), Some(129), "{out}");

    // Masked /proc files read empty (this kernel may lack /proc/kcore; when
    // it has one it is masked the same way).
    for file in ["/proc/kcore", "/proc/timer_list", "/proc/keys"] {
        let (_, out) = sh(&d, &[], &format!("head -c 16 {file} 2>/dev/null | wc -c"));
        assert_eq!(out.trim(), "0", "{file} is readable by default");
    }
    let (_, out) = sh(&d, &["--privileged"], "head -c 16 /proc/timer_list | wc -c");
    assert_eq!(out.trim(), "16", "privileged /proc/timer_list");

    // /proc/sys is read-only; privileged may write (kernel.hostname is the
    // container's own UTS namespace).
    let (ok, out) = sh(&d, &[], "echo berth-test > /proc/sys/kernel/hostname");
    assert!(!ok && out.contains("Read-only file system"), "{out}");
    let (ok, out) = sh(
        &d,
        &["--privileged"],
        "echo berth-test > /proc/sys/kernel/hostname && hostname",
    );
    assert!(ok && out.contains("berth-test"), "{out}");

    // Devices: a node may be made (CAP_MKNOD) but not opened (device
    // cgroup); /dev holds only the defaults unless privileged.
    let (ok, out) = sh(&d, &[], "mknod /tmp/loop b 7 0 && head -c 1 /tmp/loop");
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    let (_, out) = sh(&d, &[], "ls /dev");
    assert!(
        !out.contains("loop-control") && out.contains("null"),
        "{out}"
    );
    let (_, out) = sh(&d, &["--privileged"], "ls /dev");
    assert!(out.contains("loop-control"), "{out}");
    assert_eq!(status_field(&d, &["--privileged"], "Seccomp"), "0");

    // /dev/shm: 64 MiB unless --shm-size.
    let (_, out) = sh(&d, &[], "df -k /dev/shm | tail -1");
    assert!(out.contains(" 65536 "), "{out}");
    let (_, out) = sh(&d, &["--shm-size", "128m"], "df -k /dev/shm | tail -1");
    assert!(out.contains(" 131072 "), "{out}");
}

/// Capabilities and seccomp options per container.
#[test]
fn caps_and_seccomp_options() {
    let d = with_image(Backend::Overlay2.daemon());

    // --cap-drop ALL: even root's chown is refused.
    let (ok, out) = sh(&d, &[], "touch /f && chown 1:1 /f && echo chowned");
    assert!(ok && out.contains("chowned"), "{out}");
    let (ok, out) = sh(&d, &["--cap-drop", "ALL"], "touch /f && chown 1:1 /f");
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    assert_eq!(
        status_field(&d, &["--cap-drop", "ALL"], "CapEff"),
        "0000000000000000"
    );

    // unshare(CLONE_NEWUSER) needs no capability but the default filter
    // refuses it; seccomp=unconfined lifts the filter.
    let (ok, out) = sh(&d, &[], "unshare -r id -u");
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    let (ok, out) = sh(
        &d,
        &["--security-opt", "seccomp=unconfined"],
        "unshare -r id -u",
    );
    assert!(ok && out.trim() == "0", "{out}");
    assert_eq!(
        status_field(&d, &["--security-opt", "seccomp=unconfined"], "Seccomp"),
        "0"
    );
    // The profile's rules depend on the capabilities: with CAP_SYS_ADMIN
    // the same filter lets unshare through.
    let (ok, out) = sh(&d, &["--cap-add", "SYS_ADMIN"], "unshare -r id -u");
    assert!(ok && out.trim() == "0", "{out}");
    assert_eq!(
        status_field(&d, &["--cap-add", "SYS_ADMIN"], "Seccomp"),
        "2"
    );

    // A profile file: the docker CLI reads it and sends its content.
    let profile = d.scratch_dir().join("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let (ok, out) = sh(&d, &["--security-opt", &opt], "mkdir /x");
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    let (ok, out) = sh(&d, &["--security-opt", &opt], "unshare -r id -u");
    assert!(ok && out.trim() == "0", "{out}");

    // no-new-privileges per container.
    assert_eq!(
        status_field(&d, &["--security-opt", "no-new-privileges"], "NoNewPrivs"),
        "1"
    );
    assert_eq!(
        status_field(
            &d,
            &["--security-opt", "no-new-privileges=false"],
            "NoNewPrivs"
        ),
        "0"
    );

    // Bad options are refused at create, in dockerd's words.
    let out = d
        .docker(&["create", "--security-opt", "bogus=1", IMG, "true"])
        .failed();
    assert!(
        out.stderr.contains("invalid --security-opt 2: \"bogus=1\""),
        "{out}"
    );
    let out = d
        .docker(&[
            "run",
            "--rm",
            "--security-opt",
            "seccomp={not json",
            IMG,
            "true",
        ])
        .failed();
    assert!(out.stderr.contains("seccomp"), "{out}");
}

/// Daemon-wide `--no-new-privileges` and `--seccomp-profile`.
#[test]
fn daemon_wide_settings() {
    let d = with_image(
        Backend::Overlay2
            .builder()
            .arg("--no-new-privileges")
            .arg("--seccomp-profile=unconfined")
            .start(),
    );
    let opts = security_options(&d);
    assert!(
        opts.contains(&"name=seccomp,profile=unconfined".to_string()),
        "{opts:?}"
    );
    assert!(
        opts.contains(&"name=no-new-privileges".to_string()),
        "{opts:?}"
    );
    let warnings = d.docker(&["info", "--format", "{{json .Warnings}}"]).ok();
    assert!(
        warnings
            .stdout
            .contains("daemon is not using the default seccomp profile"),
        "{warnings}"
    );
    assert_eq!(status_field(&d, &[], "NoNewPrivs"), "1");
    assert_eq!(status_field(&d, &[], "Seccomp"), "0");
    // A container may still ask for the builtin profile, or drop NNP.
    assert_eq!(
        status_field(&d, &["--security-opt", "seccomp=builtin"], "Seccomp"),
        "2"
    );
    assert_eq!(
        status_field(
            &d,
            &["--security-opt", "no-new-privileges=false"],
            "NoNewPrivs"
        ),
        "0"
    );
}

/// A daemon-wide custom profile file applies to every container.
#[test]
fn daemon_wide_profile_file() {
    let fs = Backend::Overlay2.loopfs();
    let profile = fs.path().join("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let d = with_image(
        support::builder()
            .on_loopfs(fs)
            .storage_driver("overlay2")
            .arg(format!("--seccomp-profile={}", profile.display()))
            .start(),
    );
    let opts = security_options(&d);
    assert!(
        opts.contains(&format!("name=seccomp,profile={}", profile.display())),
        "{opts:?}"
    );
    let (ok, out) = sh(&d, &[], "mkdir /x");
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    let (ok, out) = sh(
        &d,
        &["--security-opt", "seccomp=builtin"],
        "mkdir /x && echo made",
    );
    assert!(ok && out.contains("made"), "{out}");
}

/// Removes `berthremap` and its subordinate ranges at the end of the test
/// when this test made it.
struct RemapUserGuard {
    made: bool,
}

fn remap_user_exists() -> bool {
    Command::new("id")
        .arg("berthremap")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Drop for RemapUserGuard {
    fn drop(&mut self) {
        if !self.made || !remap_user_exists() {
            return;
        }
        let _ = Command::new("userdel").arg("berthremap").status();
        let _ = Command::new("groupdel").arg("berthremap").status();
        for file in ["/etc/subuid", "/etc/subgid"] {
            if let Ok(text) = std::fs::read_to_string(file) {
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with("berthremap:"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                if kept != text {
                    let _ = std::fs::write(file, kept);
                }
            }
        }
    }
}

/// The host ids `berthremap`'s first ranges start at.
fn remap_root() -> (u32, u32) {
    let first = |file: &str| -> u32 {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("berthremap:"))
            .and_then(|r| r.split(':').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no berthremap range in {file}"))
    };
    (first("/etc/subuid"), first("/etc/subgid"))
}

/// Lets the remapped root through the directories the test harness made
/// private (dockerd refuses to start on a data root it cannot reach, and
/// so does berthd).
fn open_ancestors(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut dir = path.to_path_buf();
    while let Some(parent) = dir.parent().map(Path::to_path_buf) {
        if parent == Path::new("/") {
            break;
        }
        if let Ok(meta) = std::fs::metadata(&parent) {
            let mode = meta.mode() & 0o7777;
            if mode & 0o001 == 0 {
                let _ = std::fs::set_permissions(
                    &parent,
                    std::fs::Permissions::from_mode(mode | 0o001),
                );
            }
        }
        dir = parent;
    }
}

fn remapped_daemon(backend: Backend) -> Daemon {
    let fs = backend.loopfs();
    open_ancestors(&fs.path().join("data-root"));
    with_image(
        support::builder()
            .on_loopfs(fs)
            .storage_driver(backend.driver())
            .arg("--userns-remap=default")
            .start(),
    )
}

/// The pid of a running container's init on the host.
#[track_caller]
fn host_pid(d: &Daemon, name: &str) -> u32 {
    let out = d
        .docker(&["inspect", "--format", "{{.State.Pid}}", name])
        .ok();
    out.stdout.trim().parse().expect("a pid")
}

fn owner(path: &Path) -> (u32, u32) {
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.uid(), m.gid())
}

/// Finds `name` anywhere below `dir` (the layer a container wrote it to).
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let ft = entry.file_type().ok()?;
        if ft.is_symlink() {
            continue;
        }
        if entry.file_name() == name {
            return Some(path);
        }
        if ft.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        }
    }
    None
}

fn remapped_container_files(backend: Backend) {
    let mut d = remapped_daemon(backend);
    let (uid, gid) = remap_root();
    let opts = security_options(&d);
    assert!(opts.contains(&"name=userns".to_string()), "{opts:?}");
    let root_dir = d.docker(&["info", "--format", "{{.DockerRootDir}}"]).ok();
    assert!(
        root_dir.stdout.trim().ends_with(&format!("/{uid}.{gid}")),
        "{root_dir}"
    );

    // Container root is the remapped uid on the host.
    let (ok, out) = sh(&d, &[], "id -u; cat /proc/self/uid_map");
    assert!(ok, "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(map, ["0", &uid.to_string(), "65536"], "{out}");

    let marker = format!("made-by-root-{}", backend.driver());
    d.docker(&[
        "run",
        "-d",
        "--name",
        "writer",
        IMG,
        "sh",
        "-c",
        &format!("echo hi > /{marker} && mkdir /dir-{marker} && sleep 1000"),
    ])
    .ok();
    let pid = host_pid(&d, "writer");
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut made = None;
    for _ in 0..100 {
        if root.join(&marker).exists() {
            made = Some(root.join(&marker));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let made = made.unwrap_or_else(|| panic!("{marker} never appeared"));
    assert_eq!(owner(&made), (uid, gid), "file created by container root");
    assert_eq!(owner(&root.join(format!("dir-{marker}"))), (uid, gid));
    // Image layer content and the rootfs itself are the remapped root's.
    assert_eq!(owner(&root.join("bin/busybox")), (uid, gid), "image file");
    assert_eq!(owner(&root), (uid, gid), "rootfs");
    assert_eq!(owner(&root.join("etc/berth-release")), (uid, gid));
    // docker exec runs as the same remapped root.
    let out = d
        .docker(&["exec", "writer", "sh", "-c", "id -u && touch /exec-made"])
        .ok();
    assert_eq!(out.stdout.trim(), "0");
    assert_eq!(owner(&root.join("exec-made")), (uid, gid), "made by exec");
    // docker cp: in, owners become the remapped ids; out, the
    // container's ids.
    let local = d.scratch_dir().join("copied.txt");
    std::fs::write(&local, "copied\n").unwrap();
    d.docker(&["cp", local.to_str().unwrap(), "writer:/copied.txt"])
        .ok();
    assert_eq!(owner(&root.join("copied.txt")), (uid, gid), "docker cp in");
    let tar_out = d
        .docker_command(&["cp", "writer:/bin/busybox", "-"])
        .output()
        .unwrap();
    assert!(tar_out.status.success());
    let mut listing = Command::new("tar")
        .args(["-tv", "--numeric-owner", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = listing.stdin.take().unwrap();
        stdin.write_all(&tar_out.stdout).unwrap();
    }
    let listing = listing.wait_with_output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains(" 0/0 "), "docker cp out: {listing}");
    // A restarted daemon finds the running container again (live
    // restore), in the same mapping's data root.
    d.restart();
    let out = d.docker(&["exec", "writer", "id", "-u"]).ok();
    assert_eq!(out.stdout.trim(), "0");
    d.docker(&["rm", "-f", "writer"]).ok();

    // Stopped: the file sits in the container's layer on the driver, with
    // the same owner.
    d.docker(&[
        "run",
        "--name",
        "stopped",
        IMG,
        "sh",
        "-c",
        &format!("echo hi > /kept-{marker}"),
    ])
    .ok();
    let in_layer = find_file(d.data_root(), &format!("kept-{marker}"))
        .unwrap_or_else(|| panic!("kept-{marker} not under the data root"));
    assert!(
        in_layer.starts_with(root_dir.stdout.trim()),
        "{}",
        in_layer.display()
    );
    assert_eq!(owner(&in_layer), (uid, gid));
    d.docker(&["rm", "stopped"]).ok();

    // Binds keep host ownership (read-only remount inside the namespace
    // included).
    let host_dir = d.scratch_dir().join(format!("bind-{marker}"));
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("seen.txt"), "from the host\n").unwrap();
    open_ancestors(&host_dir.join("seen.txt"));
    let bind = format!("{}:/bound:ro", host_dir.display());
    let (ok, out) = sh(&d, &["-v", &bind], "cat /bound/seen.txt; touch /bound/x");
    assert!(!ok && out.contains("from the host"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // Named volumes belong to container root too.
    let (ok, out) = sh(
        &d,
        &["-v", "remapvol:/data"],
        "echo x > /data/x && echo wrote",
    );
    assert!(ok && out.contains("wrote"), "{out}");
    // The bridge network works, in a namespace the container's user
    // namespace owns (sysfs mounted, not bound from the host).
    let (ok, out) = sh(&d, &[], "ip -4 addr show eth0; mount | grep ' /sys '");
    assert!(
        ok && out.contains("inet ") && out.contains("sysfs on /sys type sysfs"),
        "{out}"
    );
    // A container sharing another's network namespace shares its user
    // namespace too, as in dockerd; exec reaches both.
    d.docker(&["run", "-d", "--name", "netowner", IMG, "sleep", "1000"])
        .ok();
    let owner_pid = host_pid(&d, "netowner");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "netsharer",
        "--network",
        "container:netowner",
        IMG,
        "sleep",
        "1000",
    ])
    .ok();
    let sharer_pid = host_pid(&d, "netsharer");
    let ns = |pid: u32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    assert_eq!(ns(owner_pid, "user"), ns(sharer_pid, "user"));
    assert_eq!(ns(owner_pid, "net"), ns(sharer_pid, "net"));
    let out = d.docker(&["exec", "netsharer", "id", "-u"]).ok();
    assert_eq!(out.stdout.trim(), "0");
    d.docker(&["rm", "-f", "netsharer", "netowner"]).ok();
    // Privileged needs --userns=host, as in dockerd.
    let out = d
        .docker(&["run", "--rm", "--privileged", IMG, "true"])
        .failed();
    assert!(
        out.stderr
            .contains("privileged mode is incompatible with user namespaces"),
        "{out}"
    );
    let (ok, out) = sh(&d, &["--userns=host"], "cat /proc/self/uid_map");
    assert!(ok, "{out}");
    let map: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(map, ["0", "0", "4294967295"], "{out}");
    // A commit writes the container's ids, not the host's, so the image
    // runs again under the same mapping.
    d.docker(&[
        "run",
        "--name",
        "tocommit",
        IMG,
        "sh",
        "-c",
        "echo c > /committed",
    ])
    .ok();
    d.docker(&["commit", "tocommit", "remapped:committed"]).ok();
    let (ok, out) = sh_image(&d, "remapped:committed", "stat -c %u:%g /committed");
    assert!(ok && out.trim() == "0:0", "{out}");
    d.docker(&["rm", "tocommit"]).ok();
}

#[track_caller]
fn sh_image(d: &Daemon, image: &str, script: &str) -> (bool, String) {
    let out = d.docker(&["run", "--rm", image, "sh", "-c", script]);
    (out.success(), format!("{}{}", out.stdout, out.stderr))
}

/// Turning `--userns-remap` off and on again switches between data roots:
/// the remapped images are not seen unremapped, and are back afterwards.
fn switching_remap_keeps_data_roots_apart(backend: Backend) {
    let mut d = remapped_daemon(backend);
    let (uid, gid) = remap_root();
    let images = |d: &Daemon| d.docker(&["images", "-q"]).ok().stdout;
    assert!(!images(&d).trim().is_empty());
    d.stop();
    d.settings_mut()
        .extra_args
        .retain(|a| a != "--userns-remap=default");
    d.start();
    assert!(
        images(&d).trim().is_empty(),
        "remapped images seen unremapped"
    );
    let info = d
        .docker(&["info", "--format", "{{json .SecurityOptions}}"])
        .ok();
    assert!(!info.stdout.contains("userns"), "{info}");
    d.stop();
    d.settings_mut()
        .extra_args
        .push("--userns-remap=default".into());
    d.start();
    assert!(!images(&d).trim().is_empty(), "remapped images gone");
    let top = std::fs::metadata(d.data_root()).unwrap();
    assert_eq!(top.mode() & 0o7777, 0o711);
    let mapped = std::fs::metadata(d.data_root().join(format!("{uid}.{gid}"))).unwrap();
    assert_eq!(
        (mapped.mode() & 0o7777, mapped.uid(), mapped.gid()),
        (0o710, 0, gid)
    );
}

/// The same on zfs (zfs-fuse here): image files and what container root
/// writes are the remapped ids'.
fn remapped_on_zfs() {
    let pool = berth_testkit::ZfsPool::new().expect("a zfs-fuse pool");
    let data_root = pool.path().join("data-root");
    open_ancestors(&data_root);
    let d = with_image(
        support::builder()
            .data_root(&data_root)
            .storage_driver("zfs")
            .arg("--userns-remap=default")
            .start(),
    );
    let (uid, gid) = remap_root();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "zwriter",
        IMG,
        "sh",
        "-c",
        "echo hi > /made-on-zfs && sleep 1000",
    ])
    .ok();
    let root = PathBuf::from(format!("/proc/{}/root", host_pid(&d, "zwriter")));
    for _ in 0..100 {
        if root.join("made-on-zfs").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(owner(&root.join("made-on-zfs")), (uid, gid));
    assert_eq!(owner(&root.join("bin/busybox")), (uid, gid));
    d.docker(&["rm", "-f", "zwriter"]).ok();
}

/// `--userns-remap default` on btrfs, overlay2, vfs and zfs, one after the
/// other: each starts `berthremap`, which this test removes again if it
/// made it.
#[test]
fn userns_remap_on_every_driver() {
    berth_testkit::require_root();
    let _guard = RemapUserGuard {
        made: !remap_user_exists(),
    };
    remapped_container_files(Backend::Btrfs);
    remapped_container_files(Backend::Overlay2);
    remapped_container_files(Backend::Vfs);
    remapped_on_zfs();
    switching_remap_keeps_data_roots_apart(Backend::Overlay2);
}
