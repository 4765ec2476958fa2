//! berthd as a process, driven by the real docker CLI and curl: start-up on
//! each storage driver (`docker version`, `docker info`), the Engine API's
//! ping/headers/version negotiation, daemon.json and flag handling, refusal
//! to start on bad configuration, driver auto-selection and clean shutdown.

#[macro_use]
mod support;

use berth_testkit::{Daemon, LoopFs};
use serde_json::json;
use support::Backend;

per_driver!(version_and_info, sigterm_stops_cleanly);

/// `docker version` and `docker info` against berthd on `backend`.
fn version_and_info(backend: Backend) {
    let d = backend.daemon();
    check_version_and_info(&d, backend.driver());
    let info = d.docker(&["info", "--format", "{{json .}}"]).ok().json();
    if backend == Backend::Overlay2 {
        // dockerd's keys for overlay2; the backing filesystem is the loop's.
        let status = info["DriverStatus"].as_array().expect("DriverStatus array");
        let has = |k: &str, v: &str| status.iter().any(|p| p[0] == k && p[1] == v);
        assert!(has("Backing Filesystem", "xfs"), "{status:?}");
        assert!(has("Supports d_type", "true"), "{status:?}");
    }
}

fn check_version_and_info(d: &Daemon, driver: &str) {
    let plain = d.docker(&["version"]).ok();
    assert!(plain.stdout.contains("Server:"), "{plain}");
    let v = d.docker(&["version", "--format", "{{json .}}"]).ok().json();
    let server = &v["Server"];
    assert!(
        server["Version"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert_eq!(server["Os"], "linux", "{v}");
    assert_eq!(server["Arch"], "amd64", "{v}");
    let api = server["ApiVersion"].as_str().expect("ApiVersion");
    assert!(api_at_least(api, 1, 44), "API {api} too old for docker 28");
    assert_eq!(server["MinAPIVersion"], "1.24", "{v}");

    let text = d.docker(&["info"]).ok();
    let root_line = format!("Docker Root Dir: {}", d.data_root().display());
    for want in [
        format!("Storage Driver: {driver}").as_str(),
        root_line.as_str(),
        "Debug Mode: true",
    ] {
        assert!(text.stdout.contains(want), "missing {want:?} in\n{text}");
    }
    let info = d.docker(&["info", "--format", "{{json .}}"]).ok().json();
    assert_eq!(info["Driver"], driver);
    assert_eq!(
        info["DockerRootDir"],
        json!(d.data_root().display().to_string())
    );
    assert_eq!(info["OSType"], "linux");
    assert_eq!(info["Architecture"], "x86_64");
    assert_eq!(info["Debug"], true);
    assert_eq!(info["Images"], 0);
    assert_eq!(info["Containers"], 0);
    assert!(info["NCPU"].as_u64().unwrap_or(0) >= 1, "{info}");
    assert!(info["MemTotal"].as_u64().unwrap_or(0) > 0, "{info}");
    assert!(info["KernelVersion"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(info["LoggingDriver"], "json-file");
    assert!(
        ["1", "2"].contains(&info["CgroupVersion"].as_str().unwrap_or("")),
        "{info}"
    );
    assert!(
        ["cgroupfs", "systemd"].contains(&info["CgroupDriver"].as_str().unwrap_or("")),
        "{info}"
    );
}

fn api_at_least(v: &str, major: u32, minor: u32) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The first test to run on a new machine: berthd with vfs on a plain
/// scratch directory, no loop device.
#[test]
fn vfs_in_scratch_dir_version_and_info() {
    let d = support::builder().storage_driver("vfs").start();
    check_version_and_info(&d, "vfs");
}

/// SIGTERM: exit 0, pidfile gone, nothing left mounted (Drop checks mounts).
fn sigterm_stops_cleanly(backend: Backend) {
    let mut d = backend.daemon();
    let pid = d.pid().expect("running");
    let recorded = std::fs::read_to_string(d.pidfile()).expect("pidfile written");
    assert_eq!(recorded.trim(), pid.to_string());
    support::load_busybox(&d);
    let status = d.stop().expect("was running");
    assert!(status.success(), "berthd exited {status} on SIGTERM");
    assert!(!d.pidfile().exists(), "pidfile left after clean exit");
    assert!(d.mounts().is_empty(), "left mounted: {:?}", d.mounts());
    // And it comes back with its images.
    d.start();
    assert!(support::image_refs(&d).contains(berth_testkit::busybox::IMAGE));
}

#[test]
fn ping_headers_and_version_negotiation() {
    let d = support::builder().storage_driver("vfs").start();
    let ping = d.api("GET", "/_ping", None);
    assert_eq!(ping.status, 200, "{ping:?}");
    assert_eq!(ping.body, "OK");
    for h in ["api-version", "server", "ostype", "docker-experimental"] {
        assert!(ping.header(h).is_some(), "/_ping lacks {h}: {ping:?}");
    }
    assert_eq!(ping.header("ostype"), Some("linux"));
    let head = d.api("HEAD", "/_ping", None);
    assert_eq!(head.status, 200, "{head:?}");

    let bare = d.api("GET", "/version", None);
    assert_eq!(bare.status, 200);
    let versioned = d.api("GET", "/v1.24/version", None);
    assert_eq!(versioned.status, 200, "{versioned:?}");

    // dockerd answers requests for API versions up to 1.23 with plain-text
    // errors, later ones with `{"message": ...}`.
    let old = d.api("GET", "/v1.12/version", None);
    assert_eq!(old.status, 400, "{old:?}");
    let msg = old.body.trim().to_string();
    assert!(
        msg.contains("client version 1.12 is too old. Minimum supported API version is 1.24"),
        "{msg}"
    );
    let new = d.api("GET", "/v9.99/version", None);
    assert_eq!(new.status, 400, "{new:?}");
    let msg = new.json()["message"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("client version 9.99 is too new"), "{msg}");

    let missing = d.api("GET", "/no/such/route", None);
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.json()["message"], "page not found");

    let no_image = d.api("GET", "/images/berth-test/nope:latest/json", None);
    assert_eq!(no_image.status, 404, "{no_image:?}");
    assert!(no_image.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("No such image"));
}

/// With `-D`, every request is logged with method, path and status.
#[test]
fn debug_mode_logs_requests() {
    let d = support::builder().storage_driver("vfs").start();
    d.docker(&["version"]).ok();
    d.docker(&["image", "inspect", "berth-test/nope"]).failed();
    let log = d.log();
    let line_with = |needles: &[&str]| log.lines().any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(
        line_with(&["GET", "/version", "200"]),
        "no request line for /version in:\n{log}"
    );
    assert!(
        line_with(&["GET", "/images/berth-test/nope/json", "404"]),
        "no request line for the 404 in:\n{log}"
    );
}

/// Settings from daemon.json apply when no flag sets them.
#[test]
fn daemon_json_settings_apply() {
    let d = support::builder()
        .debug(false)
        .config_json(json!({"debug": true, "storage-driver": "vfs"}))
        .start();
    let info = d.docker(&["info", "--format", "{{json .}}"]).ok().json();
    assert_eq!(info["Driver"], "vfs");
    assert_eq!(info["Debug"], true);
}

#[test]
fn refuses_unknown_storage_opt() {
    let err = support::builder()
        .storage_driver("vfs")
        .storage_opt("bogus.option=1")
        .try_start()
        .expect_err("berthd started with an unknown --storage-opt");
    assert!(err.exit.is_some_and(|s| !s.success()), "{err}");
    assert!(err.log.contains("bogus.option"), "does not say why:\n{err}");
}

#[test]
fn refuses_invalid_daemon_json() {
    let err = support::builder()
        .storage_driver("vfs")
        .config_raw("{ \"debug\": tru")
        .try_start()
        .expect_err("berthd started with a broken daemon.json");
    assert!(err.exit.is_some_and(|s| !s.success()), "{err}");
    assert!(
        err.log.contains("daemon.json"),
        "does not name the file:\n{err}"
    );
}

/// dockerd refuses keys it does not know ("the following directives don't
/// match any configuration option").
#[test]
fn refuses_unknown_daemon_json_key() {
    let err = support::builder()
        .storage_driver("vfs")
        .config_json(json!({"bogus-key": 1}))
        .try_start()
        .expect_err("berthd started with an unknown daemon.json key");
    assert!(err.log.contains("bogus-key"), "does not say why:\n{err}");
}

/// A setting given both as a flag and in daemon.json is an error, as in
/// dockerd, even when the values agree.
#[test]
fn refuses_flag_also_set_in_daemon_json() {
    let err = support::builder()
        .storage_driver("vfs")
        .config_json(json!({"storage-driver": "vfs"}))
        .try_start()
        .expect_err("berthd accepted storage-driver from both flag and file");
    assert!(
        err.log.contains("storage-driver"),
        "does not say why:\n{err}"
    );
}

#[test]
fn btrfs_driver_refuses_a_data_root_not_on_btrfs() {
    let err = support::builder()
        .on_loopfs(Backend::Vfs.loopfs()) // ext4
        .storage_driver("btrfs")
        .try_start()
        .expect_err("btrfs driver started on ext4");
    assert!(err.exit.is_some_and(|s| !s.success()), "{err}");
    assert!(err.log.contains("btrfs"), "does not say why:\n{err}");
}

#[test]
fn btrfs_is_chosen_on_btrfs() {
    let d = support::builder()
        .on_loopfs(Backend::Btrfs.loopfs())
        .start();
    let info = d.docker(&["info", "--format", "{{.Driver}}"]).ok();
    assert_eq!(info.out(), "btrfs");
}

#[test]
fn overlay2_is_chosen_on_xfs() {
    let d = support::builder()
        .on_loopfs(Backend::Overlay2.loopfs())
        .start();
    let info = d.docker(&["info", "--format", "{{.Driver}}"]).ok();
    assert_eq!(info.out(), "overlay2");
}

/// An existing driver's data wins over auto-selection, and asking for
/// another driver over it is refused with a clear message.
#[test]
fn existing_driver_data_wins_and_switching_is_refused() {
    let fs = LoopFs::xfs().expect("xfs loop fs");
    let mut d = support::builder()
        .on_loopfs(fs)
        .storage_driver("vfs")
        .start();
    let image = support::load_busybox(&d);
    d.stop();

    d.settings_mut().storage_driver = None;
    d.start();
    assert_eq!(
        d.docker(&["info", "--format", "{{.Driver}}"]).ok().out(),
        "vfs"
    );
    assert!(support::image_ids(&d).contains(&image.id));
    d.stop();

    d.settings_mut().storage_driver = Some("overlay2".into());
    let err = d
        .try_start()
        .expect_err("switched drivers over existing data");
    assert!(
        err.log.contains("vfs"),
        "does not name the existing driver:\n{err}"
    );

    d.settings_mut().storage_driver = Some("vfs".into());
    d.start();
    assert!(support::image_ids(&d).contains(&image.id));
}
