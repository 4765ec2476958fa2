//! Container size limits on btrfs through the real docker CLI: a
//! `--storage-opt size=20M` container cannot write 50 MB while one without
//! the option can, the limit survives a daemon restart, `btrfs.min_space`
//! refuses small sizes in dockerd's words, and `docker info` reports quota.

#[macro_use]
mod support;

use std::collections::BTreeMap;

use berth_testkit::{busybox, Daemon, LoopFs};
use support::{builder, load_busybox};

const DD: &str = "dd if=/dev/zero of=/big bs=1M count=50";

fn driver_status(d: &Daemon) -> BTreeMap<String, String> {
    let out = d
        .docker(&["info", "--format", "{{json .DriverStatus}}"])
        .ok();
    let pairs: Vec<(String, String)> = serde_json::from_str(out.out()).unwrap();
    pairs.into_iter().collect()
}

#[track_caller]
fn assert_out_of_space(out: &berth_testkit::DockerOutput) {
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.success(), "50 MB written past a 20 MB limit: {out}");
    assert!(
        text.contains("Disk quota exceeded") || text.contains("No space left on device"),
        "{out}"
    );
}

#[test]
fn size_limits_writes_and_survives_a_restart() {
    let mut d = builder()
        .on_loopfs(LoopFs::btrfs().unwrap())
        .storage_driver("btrfs")
        .start();
    load_busybox(&d);
    assert_eq!(driver_status(&d)["Quota Enabled"], "false");

    let out = d.docker(&[
        "run",
        "--rm",
        "--storage-opt",
        "size=20M",
        busybox::IMAGE,
        "sh",
        "-c",
        DD,
    ]);
    assert_out_of_space(&out);
    assert_eq!(driver_status(&d)["Quota Enabled"], "true");
    d.docker(&["run", "--rm", busybox::IMAGE, "sh", "-c", DD])
        .ok();

    let id = d
        .docker(&[
            "create",
            "--storage-opt",
            "size=20M",
            busybox::IMAGE,
            "sh",
            "-c",
            DD,
        ])
        .ok()
        .out()
        .to_string();
    let limit = d
        .docker(&[
            "inspect",
            "--format",
            "{{.GraphDriver.Data.SizeLimit}}",
            &id,
        ])
        .ok();
    assert_eq!(limit.out(), (20u64 << 20).to_string());
    d.restart();
    assert_out_of_space(&d.docker(&["start", "-a", &id]));
    d.docker(&["rm", &id]).ok();
}

#[test]
fn min_space_and_default_size() {
    let d = builder()
        .on_loopfs(LoopFs::btrfs().unwrap())
        .storage_driver("btrfs")
        .storage_opt("btrfs.min_space=30M")
        .storage_opt("btrfs.size=40M")
        .start();
    load_busybox(&d);
    let status = driver_status(&d);
    assert_eq!(status["Quota Enabled"], "true");
    assert_eq!(status["Minimum Size Limit"], "31.46MB");
    assert_eq!(status["Default Size Limit"], "41.94MB");
    let out = d
        .docker(&[
            "create",
            "--storage-opt",
            "size=20M",
            busybox::IMAGE,
            "true",
        ])
        .failed();
    assert!(
        out.stderr
            .contains("btrfs: storage size cannot be less than 31.46MB"),
        "{out}"
    );
    // Without a size the daemon-wide default applies.
    assert_out_of_space(&d.docker(&["run", "--rm", busybox::IMAGE, "sh", "-c", DD]));
}
