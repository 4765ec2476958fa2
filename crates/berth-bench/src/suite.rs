//! One storage driver's row set: its pools, berthd and (where it can run)
//! dockerd on them, the test images loaded into both, and A/B alternation —
//! each repetition runs both daemons, in swapped order every other time, so
//! a noisy neighbour on the shared machine hits both alike.

use std::path::Path;
use std::time::Duration;

use berth_testkit::busybox;

use crate::engines::{Engine, EngineSpec, Side};
use crate::fixtures::Fixtures;
use crate::pools::{Driver, Pools};
use crate::registry::Registry;
use crate::report::Row;
use crate::reps::Reps;
use crate::samples::{Samples, Unit};

/// The daemons of one driver and where the rows go.
pub struct Suite<'a> {
    pub driver: Driver,
    pub berth: Engine,
    pub dockerd: Option<Engine>,
    pub fixtures: &'a Fixtures,
    pub reps: &'a Reps,
    pub registry: Option<&'a Registry>,
    /// Outside the suite so rows measured before a failure survive it.
    pub rows: &'a mut Vec<Row>,
    pub notes: &'a mut Vec<String>,
    /// Last: the filesystems go after the daemons on them.
    pools: Pools,
}

/// Binaries and options for both daemons.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub berthd: std::path::PathBuf,
    pub dockerd: std::path::PathBuf,
    /// berthd has `--metrics-addr` (the metrics issue has landed).
    pub berth_metrics: bool,
}

impl<'a> Suite<'a> {
    /// Makes the pools and starts both daemons on them, then loads the
    /// busybox image into each.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        driver: Driver,
        pool_mib: u64,
        binaries: &Binaries,
        fixtures: &'a Fixtures,
        reps: &'a Reps,
        registry: Option<&'a Registry>,
        rows: &'a mut Vec<Row>,
        notes: &'a mut Vec<String>,
    ) -> Suite<'a> {
        let pools = Pools::new(driver, pool_mib)
            .unwrap_or_else(|e| panic!("making {} storage: {e}", driver.name()));
        let metrics_addr = binaries.berth_metrics.then(free_loopback_addr);
        let berth = Engine::start(EngineSpec {
            side: Side::Berth,
            binary: binaries.berthd.clone(),
            driver: driver.name().to_string(),
            data_root: pools.berth_root.clone(),
            metrics_addr,
        });
        let dockerd = pools.dockerd_root.as_ref().map(|root| {
            Engine::start(EngineSpec {
                side: Side::Dockerd,
                binary: binaries.dockerd.clone(),
                driver: driver.name().to_string(),
                data_root: root.clone(),
                metrics_addr: None,
            })
        });
        let suite = Suite {
            driver,
            berth,
            dockerd,
            fixtures,
            reps,
            registry,
            rows,
            notes,
            pools,
        };
        for e in suite.engines() {
            load_archive(e, &fixtures.busybox);
        }
        suite
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// The daemons, berthd first.
    pub fn engines(&self) -> Vec<&Engine> {
        let mut v = vec![&self.berth];
        v.extend(self.dockerd.as_ref());
        v
    }

    /// Runs `f` `n` times on each daemon, alternating which goes first;
    /// the values per side (`[berth, dockerd]`).
    pub fn alternate<T>(&self, n: usize, mut f: impl FnMut(&Engine, usize) -> T) -> [Vec<T>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        for i in 0..n {
            for e in self.in_turn(i) {
                out[e.side.index()].push(f(e, i));
            }
        }
        out
    }

    /// Like [`Suite::alternate`] for work that changes the daemon itself
    /// (restarts).
    pub fn alternate_mut<T>(
        &mut self,
        n: usize,
        mut f: impl FnMut(&mut Engine, usize) -> T,
    ) -> [Vec<T>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        for i in 0..n {
            let berth_first = i % 2 == 0;
            for turn in 0..2 {
                let engine = if (turn == 0) == berth_first {
                    Some(&mut self.berth)
                } else {
                    self.dockerd.as_mut()
                };
                if let Some(e) = engine {
                    out[e.side.index()].push(f(e, i));
                }
            }
        }
        out
    }

    fn in_turn(&self, i: usize) -> Vec<&Engine> {
        let mut v = self.engines();
        if i % 2 == 1 {
            v.reverse();
        }
        v
    }

    /// A row from per-side values (dockerd's column is n/a without it).
    pub fn row(&self, name: impl Into<String>, unit: Unit, values: &[Vec<f64>; 2]) -> Row {
        Row::new(
            name,
            unit,
            samples(&values[0]),
            self.dockerd.as_ref().map(|_| samples(&values[1])),
        )
    }

    /// Records a row and prints it as progress.
    pub fn push(&mut self, row: Row) {
        let dockerd = row
            .dockerd
            .as_ref()
            .map(|s| row.unit.format(s.median()))
            .unwrap_or_else(|| "n/a".into());
        eprintln!(
            "[{}] {}: berthd {} / dockerd {} {}",
            self.driver.name(),
            row.name,
            row.unit.format(row.berth.median()),
            dockerd,
            row.unit.suffix()
        );
        self.rows.push(row);
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Stops both daemons (after killing what runs) and notes leftovers;
    /// the pools go when the suite is dropped.
    pub fn finish(mut self) {
        let mut left = Vec::new();
        for e in [Some(&mut self.berth), self.dockerd.as_mut()]
            .into_iter()
            .flatten()
        {
            let l = e.shutdown();
            if !l.is_empty() {
                left.push(format!("{} left behind (cleaned up):{l}", e.name()));
            }
        }
        for l in left {
            self.note(l);
        }
    }
}

fn samples(values: &[f64]) -> Samples {
    let mut s = Samples::default();
    values.iter().for_each(|v| s.push(*v));
    s
}

/// Milliseconds of a duration, as rows store times.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Megabytes per second for `bytes` moved in `d`.
pub fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// `POST /images/load` of an archive held in memory (set-up, untimed).
pub fn load_archive(e: &Engine, archive: &[u8]) {
    let resp = e.api_raw(
        "POST",
        "/images/load?quiet=1",
        Some(("application/x-tar", archive)),
    );
    let text = resp.text();
    assert!(
        !text.contains("errorDetail"),
        "{}: load failed: {text}",
        e.name()
    );
}

/// syncfs(2) on the filesystem holding `path`: the dirty pages one
/// repetition wrote are flushed before the next starts (untimed), so no
/// repetition pays for another's writeback.
pub fn sync_fs(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(dir) = std::fs::File::open(path) {
        unsafe {
            libc::syncfs(dir.as_raw_fd());
        }
    }
}

/// A `127.0.0.1:port` nothing listens on right now.
fn free_loopback_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("bound address").to_string()
}

/// The image every lifecycle row runs.
pub const IMAGE: &str = busybox::IMAGE;
