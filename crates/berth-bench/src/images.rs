//! Image transfer rows: `docker load` and `docker save` of the ~200 MB
//! random-data image, and `docker pull` of the same image from the local
//! docker-registry. Throughput is the archive's size over the command's
//! wall time; each repetition's writes are synced (untimed) before the next.

use std::io::Read;

use berth_testkit::busybox::LARGE_IMAGE;

use crate::samples::Unit;
use crate::suite::{mb_per_s, sync_fs, Suite};

/// `docker load -i` of the large archive (page-cached, so the daemon's
/// side is measured, not the source disk), then `docker save` of it to
/// /dev/null. The image stays loaded after the last load, for save.
pub fn load_and_save(s: &mut Suite) {
    let path = s.fixtures.large.clone();
    let bytes = s.fixtures.large_bytes;
    warm_page_cache(&path);
    let path_text = path.to_str().expect("UTF-8 path").to_string();
    let n = s.reps.load;
    let loads = s.alternate(n, |e, i| {
        let t = e.time(&["load", "-i", &path_text]);
        if i + 1 < n {
            e.docker(&["rmi", LARGE_IMAGE]);
        }
        sync_fs(e.data_root());
        mb_per_s(bytes, t)
    });
    let name = format!(
        "docker load, {:.0} MB / {} layers",
        bytes as f64 / 1e6,
        s.fixtures.large_layers
    );
    let row = s.row(name, Unit::MegabytesPerSecond, &loads);
    s.push(row);
    let saves = s.alternate(s.reps.save, |e, _| {
        mb_per_s(bytes, e.time(&["save", LARGE_IMAGE]))
    });
    let row = s
        .row(
            "docker save (to /dev/null)",
            Unit::MegabytesPerSecond,
            &saves,
        )
        .with_note("MB of the load archive per second");
    s.push(row);
}

/// `docker pull` of the large image from 127.0.0.1. It is pushed once per
/// run (by dockerd where there is one), then removed from both daemons so
/// every pull downloads every layer but the busybox base they share.
pub fn pull(s: &mut Suite) {
    let Some(registry) = s.registry else {
        s.note("docker pull: no /usr/bin/docker-registry, row skipped");
        return;
    };
    let reference = registry.reference();
    if !registry.pushed() {
        let pusher = s.dockerd.as_ref().unwrap_or(&s.berth);
        pusher.docker(&["tag", LARGE_IMAGE, &reference]);
        pusher.docker(&["push", "-q", &reference]);
        registry.mark_pushed();
    }
    for e in s.engines() {
        // Untag the pushed name where it exists, then the image itself.
        let listed = e.docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        if listed.lines().any(|l| l == reference) {
            e.docker(&["rmi", &reference]);
        }
        e.docker(&["rmi", LARGE_IMAGE]);
        sync_fs(e.data_root());
    }
    let bytes = s.fixtures.large_bytes;
    // Only the busybox base may already exist; a pull that finds more
    // would measure nothing (an rmi that left the image behind).
    let mut skipped: [usize; 2] = [0, 0];
    let pulls = s.alternate(s.reps.pull, |e, _| {
        let (t, out) = e.time_output(&["pull", &reference]);
        if out.matches("Already exists").count() > 1 {
            skipped[e.side.index()] += 1;
        }
        e.docker(&["rmi", &reference]);
        sync_fs(e.data_root());
        mb_per_s(bytes, t)
    });
    let mut row = s
        .row(
            "docker pull from 127.0.0.1 registry",
            Unit::MegabytesPerSecond,
            &pulls,
        )
        .with_note("same image, gzip layers");
    for e in s.engines() {
        let n = skipped[e.side.index()];
        if n > 0 {
            row = row.with_note(format!(
                "INVALID: {n} {} pulls found the layers still present",
                e.name()
            ));
        }
    }
    s.push(row);
}

fn warm_page_cache(path: &std::path::Path) {
    if let Ok(mut f) = std::fs::File::open(path) {
        let mut buf = vec![0u8; 1 << 20];
        while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
    }
}
