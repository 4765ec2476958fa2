//! Rows that need many objects: `docker system df` with 50 images and 100
//! containers, `docker ps -a` with 500, daemon start-up with 500 on disk,
//! and daemon memory idle and with 50 running. Objects are made through
//! the API (the CLI would spend minutes spawning); only the rows are CLI.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::engines::Engine;
use crate::fixtures::DF_REPO;
use crate::lifecycle::STOPPABLE;
use crate::samples::Unit;
use crate::suite::{load_archive, ms, Suite, IMAGE};

/// RSS and PSS of the daemon and its helpers, sampled a few times 1 s
/// apart. `what` names the state ("idle", "50 running").
pub fn memory(s: &mut Suite, what: &str) {
    let n = s.reps.memory_samples;
    let mut rss: [Vec<f64>; 2] = Default::default();
    let mut pss: [Vec<f64>; 2] = Default::default();
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        for e in s.engines() {
            let m = e.memory();
            rss[e.side.index()].push(m.rss_kib as f64 / 1024.0);
            pss[e.side.index()].push(m.pss_kib as f64 / 1024.0);
        }
    }
    let row = s
        .row(format!("memory RSS, {what}"), Unit::Mebibytes, &rss)
        .with_note("berthd + shims vs dockerd + containerd + shims");
    s.push(row);
    let row = s.row(format!("memory PSS, {what}"), Unit::Mebibytes, &pss);
    s.push(row);
}

/// Idle memory: both daemons freshly started with the busybox image.
pub fn memory_idle(s: &mut Suite) {
    std::thread::sleep(Duration::from_secs(3));
    memory(s, "idle");
}

/// Loads the df images and creates containers (two per df image, then
/// busybox) until each daemon holds `df_containers`; times `system df`.
/// One untimed call first on each daemon: the CLI's first call is the one
/// an operator waits for once, the repeated calls are what dashboards do.
pub fn system_df(s: &mut Suite) {
    let reps = s.reps;
    for e in s.engines() {
        for archive in &s.fixtures.df {
            load_archive(e, archive);
        }
        let have = e.container_ids(true).len();
        for i in have..reps.df_containers {
            let image = if i / 2 < s.fixtures.df.len() {
                format!("{DF_REPO}:{}", i / 2)
            } else {
                IMAGE.to_string()
            };
            e.create(&image, &["true"]);
        }
    }
    let (images, containers) = counts(&s.berth);
    let first = s.alternate(1, |e, _| ms(e.time(&["system", "df"])));
    let times = s.alternate(s.reps.df, |e, _| ms(e.time(&["system", "df"])));
    let row = s.row(
        format!("docker system df ({images} images, {containers} containers)"),
        Unit::Millis,
        &times,
    );
    s.push(row);
    let row = s.row(
        "docker system df, first call after the creates",
        Unit::Millis,
        &first,
    );
    s.push(row);
}

/// Creates containers up to `ps_containers`; times `docker ps -a`.
pub fn ps_all(s: &mut Suite) {
    let target = s.reps.ps_containers;
    for e in s.engines() {
        let have = e.container_ids(true).len();
        for _ in have..target {
            e.create(IMAGE, &["true"]);
        }
    }
    let (_, containers) = counts(&s.berth);
    let times = s.alternate(s.reps.ps, |e, _| ms(e.time(&["ps", "-a"])));
    let row = s.row(
        format!("docker ps -a ({containers} containers)"),
        Unit::Millis,
        &times,
    );
    s.push(row);
}

/// SIGTERM, then start again and wait for `/_ping`, with every container
/// of the ps row on disk (none running).
pub fn startup(s: &mut Suite) {
    let (_, containers) = counts(&s.berth);
    let times = s.alternate_mut(s.reps.startup, |e, _| ms(e.restart_timed()));
    let row = s
        .row(
            format!("daemon start-up to /_ping ({containers} containers on disk)"),
            Unit::Millis,
            &times,
        )
        .with_note("dockerd includes starting its containerd");
    s.push(row);
    if let Some(pool) = s.pools().zpool().map(str::to_string) {
        zfs_listing_note(s, &pool);
    }
    // Every container must have come back, or the time is of less work.
    for e in s.engines() {
        let after = e.container_ids(true).len();
        assert_eq!(
            after,
            containers,
            "{} lists {after} containers after restart",
            e.name()
        );
    }
}

/// On zfs, start-up lists the pool (`zfs list`, as dockerd's driver does
/// too); how long one listing of every dataset and snapshot takes on this
/// zfs-fuse says how much of the start-up time is the pool's.
fn zfs_listing_note(s: &mut Suite, pool: &str) {
    let start = Instant::now();
    let out = Command::new("zfs")
        .args(["list", "-H", "-o", "name", "-t", "all", "-r", pool])
        .output();
    let took = start.elapsed();
    if let Ok(out) = out {
        let n = String::from_utf8_lossy(&out.stdout).lines().count();
        s.note(format!(
            "zfs start-up: one `zfs list -t all -r` of the pool ({n} datasets and snapshots) took {:.0} ms on zfs-fuse; berthd lists the pool's filesystems once while it starts and walks the snapshots (the crash-leftover sweep) in the background afterwards",
            ms(took)
        ));
    }
}

/// Starts long-running containers until `n` run on `e`.
pub fn run_until(e: &Engine, n: usize) {
    let running = e.container_ids(false).len();
    for _ in running..n {
        e.run_detached(IMAGE, STOPPABLE);
    }
}

/// Memory with `memory_running` containers running.
pub fn memory_running(s: &mut Suite) {
    let n = s.reps.memory_running;
    for e in s.engines() {
        run_until(e, n);
    }
    std::thread::sleep(Duration::from_secs(5));
    memory(s, &format!("{n} running"));
}

/// Images and containers on berthd, for row names.
fn counts(e: &Engine) -> (usize, usize) {
    (e.image_count(), e.container_ids(true).len())
}
