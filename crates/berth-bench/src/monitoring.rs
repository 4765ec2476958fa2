//! Monitoring rows: event latency (an image tag sent on the API socket to
//! its line on a running `docker events`), `docker stats --no-stream` with
//! 10 running containers, and berthd's `/metrics` scrape time and collector
//! CPU with 100 running (berth only: dockerd has no per-container metrics).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::api;
use crate::engines::Engine;
use crate::samples::{Samples, Unit};
use crate::scale::run_until;
use crate::suite::{ms, Suite, IMAGE};

/// A line `docker events` printed, stamped when the bench read it (on the
/// monotonic clock for latency, on the wall clock to compare with the
/// event's own `timeNano`).
struct Seen {
    at: Instant,
    wall_nanos: i64,
    line: String,
}

/// A `docker events` process and the lines it printed.
struct EventWatch {
    child: Child,
    lines: Receiver<Seen>,
}

impl EventWatch {
    fn start(e: &Engine) -> EventWatch {
        let mut child = e
            .command(&[
                "events",
                "--filter",
                "type=image",
                "--filter",
                "event=tag",
                "--format",
                "{{json .}}",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning docker events");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let seen = Seen {
                    at: Instant::now(),
                    wall_nanos: wall_nanos(),
                    line,
                };
                if tx.send(seen).is_err() {
                    break;
                }
            }
        });
        EventWatch { child, lines }
    }

    /// The line naming `needle`, waiting at most `timeout`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let seen = self.lines.recv_timeout(left).ok()?;
            if seen.line.contains(needle) {
                return Some(seen);
            }
        }
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tags the busybox image `bench/ev:<tag>` through the API.
fn tag(e: &Engine, image_id: &str, tag: &str) {
    e.api(
        "POST",
        &format!("/images/{image_id}/tag?repo=bench/ev&tag={tag}"),
        None,
    );
}

/// Two rows from one set of tags. Latency: from just before the tag
/// request is written to the moment its event line is read from `docker
/// events` — the tag's own work (metadata written and fsynced) included.
/// Delivery: from the event's `timeNano` (stamped by the daemon when it
/// publishes) to the same moment — the bus, the stream and the CLI alone.
pub fn event_latency(s: &mut Suite) {
    let mut watches = Vec::new();
    let mut ids = Vec::new();
    for e in s.engines() {
        let id = e.docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
        let watch = EventWatch::start(e);
        // The subscription is live once a warm-up tag shows up.
        let mut live = false;
        for k in 0..20 {
            let name = format!("warm{k}");
            tag(e, &id, &name);
            if watch
                .wait_for(&format!("bench/ev:{name}\""), Duration::from_millis(500))
                .is_some()
            {
                live = true;
                break;
            }
        }
        assert!(live, "{}: docker events never showed a tag", e.name());
        ids.push(id);
        watches.push(watch);
    }
    let pairs = s.alternate(s.reps.events, |e, i| {
        let k = e.side.index();
        let name = format!("t{i}");
        let start = Instant::now();
        tag(e, &ids[k], &name);
        let seen = watches[k]
            .wait_for(&format!("bench/ev:{name}\""), Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{}: no event for tag {name}", e.name()));
        let published = serde_json::from_str::<serde_json::Value>(&seen.line)
            .ok()
            .and_then(|v| v["timeNano"].as_i64())
            .unwrap_or(seen.wall_nanos);
        (
            ms(seen.at - start),
            (seen.wall_nanos - published) as f64 / 1e6,
        )
    });
    let latency = pairs.clone().map(|v| v.iter().map(|p| p.0).collect());
    let delivery = pairs.map(|v| v.iter().map(|p| p.1).collect());
    drop(watches);
    for e in s.engines() {
        let tags = e.docker(&[
            "image",
            "ls",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "bench/ev",
        ]);
        for t in tags.lines() {
            e.docker(&["rmi", t]);
        }
    }
    let row = s.row(
        "event latency (tag request → docker events line)",
        Unit::Millis,
        &latency,
    );
    s.push(row);
    let row = s.row(
        "event delivery (event timeNano → docker events line)",
        Unit::Millis,
        &delivery,
    );
    s.push(row);
}

/// Nanoseconds since the Unix epoch, the unit of an event's `timeNano`.
fn wall_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// `docker stats --no-stream` with `stats_running` containers running
/// (they stay running for the memory row).
pub fn stats(s: &mut Suite) {
    let n = s.reps.stats_running;
    for e in s.engines() {
        run_until(e, n);
    }
    // Two sampler ticks, so berth has a previous sample for precpu.
    std::thread::sleep(Duration::from_secs(3));
    let times = s.alternate(s.reps.stats, |e, _| ms(e.time(&["stats", "--no-stream"])));
    let row = s.row(
        format!("docker stats --no-stream ({n} running)"),
        Unit::Millis,
        &times,
    );
    s.push(row);
}

/// berthd's `/metrics` with `metrics_running` containers running: scrape
/// time, and the daemon's CPU (sampler at 1 s plus a scrape every 5 s).
pub fn metrics(s: &mut Suite) {
    let Some(addr) = s.berth.metrics_addr().map(str::to_string) else {
        s.note("/metrics rows skipped: this berthd has no --metrics-addr");
        return;
    };
    let n = s.reps.metrics_running;
    run_until(&s.berth, n);
    std::thread::sleep(Duration::from_secs(5));
    let mut scrape = Samples::default();
    let mut size = 0;
    for _ in 0..s.reps.scrapes {
        let start = Instant::now();
        let resp = api::tcp_get(&addr, "/metrics").expect("scraping /metrics");
        scrape.push(ms(start.elapsed()));
        assert!(resp.is_success(), "/metrics answered {}", resp.status);
        size = resp.body.len();
        std::thread::sleep(Duration::from_millis(200));
    }
    let row = crate::report::Row::new(
        format!("/metrics scrape ({n} running)"),
        Unit::Millis,
        scrape,
        None,
    )
    .with_note(format!("{} kB, berth only", size / 1000));
    s.push(row);

    let windows = s.reps.memory_samples.max(1);
    let window = s.reps.cpu_window / windows as u32;
    let mut cpu = Samples::default();
    for _ in 0..windows {
        let (cpu0, t0) = (s.berth.daemon_cpu_seconds(), Instant::now());
        let mut next_scrape = t0;
        while t0.elapsed() < window {
            if Instant::now() >= next_scrape {
                let _ = api::tcp_get(&addr, "/metrics");
                next_scrape += Duration::from_secs(5);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let used = s.berth.daemon_cpu_seconds() - cpu0;
        cpu.push(100.0 * used / t0.elapsed().as_secs_f64());
    }
    let row = crate::report::Row::new(
        format!("berthd CPU, {n} running (1 s sampler + scrape every 5 s)"),
        Unit::PercentOfCore,
        cpu,
        None,
    )
    .with_note("berth only");
    s.push(row);
}
