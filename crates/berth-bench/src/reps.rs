//! How many times each row repeats, and how big the scale rows are. The
//! full set keeps a run of btrfs + overlay2 + zfs within ~35 minutes on a
//! 2-core machine; `--quick` is for checking the harness, not for numbers.

use std::time::Duration;

/// Repetition counts (per daemon) and object counts.
#[derive(Debug, Clone)]
pub struct Reps {
    pub create: usize,
    pub run_rm: usize,
    pub run_stop: usize,
    pub commit: usize,
    pub events: usize,
    pub load: usize,
    pub save: usize,
    pub pull: usize,
    pub df: usize,
    pub ps: usize,
    pub startup: usize,
    pub stats: usize,
    pub memory_samples: usize,
    pub scrapes: usize,
    /// Split into `memory_samples` windows for the collector-CPU row.
    pub cpu_window: Duration,
    /// Size of the random-data image (MiB) and its layer count.
    pub large_mib: u64,
    pub large_layers: usize,
    pub df_images: usize,
    pub df_containers: usize,
    pub ps_containers: usize,
    pub stats_running: usize,
    pub memory_running: usize,
    pub metrics_running: usize,
}

impl Reps {
    /// The counts the results file is made with.
    pub fn full() -> Reps {
        Reps {
            create: 40,
            run_rm: 20,
            run_stop: 20,
            commit: 15,
            events: 40,
            load: 7,
            save: 7,
            pull: 5,
            df: 20,
            ps: 20,
            startup: 5,
            stats: 7,
            memory_samples: 3,
            scrapes: 20,
            cpu_window: Duration::from_secs(30),
            large_mib: 200,
            large_layers: 5,
            df_images: 50,
            df_containers: 100,
            ps_containers: 500,
            stats_running: 10,
            memory_running: 50,
            metrics_running: 100,
        }
    }

    /// Small counts that exercise every row quickly.
    pub fn quick() -> Reps {
        Reps {
            create: 3,
            run_rm: 2,
            run_stop: 2,
            commit: 2,
            events: 3,
            load: 1,
            save: 1,
            pull: 1,
            df: 2,
            ps: 2,
            startup: 1,
            stats: 1,
            memory_samples: 1,
            scrapes: 3,
            cpu_window: Duration::from_secs(3),
            large_mib: 20,
            large_layers: 5,
            df_images: 5,
            df_containers: 10,
            ps_containers: 20,
            stats_running: 2,
            memory_running: 4,
            metrics_running: 6,
        }
    }

    /// `(what, count)` lines for the results file.
    pub fn describe(&self) -> Vec<(String, String)> {
        let per = |n: usize| format!("{n} per daemon");
        vec![
            ("docker create / rm".into(), per(self.create)),
            ("docker run --rm".into(), per(self.run_rm)),
            ("docker run -d + stop".into(), per(self.run_stop)),
            ("docker commit".into(), per(self.commit)),
            ("event latency".into(), per(self.events)),
            (
                "docker load / save".into(),
                format!("{} / {} per daemon", self.load, self.save),
            ),
            ("docker pull".into(), per(self.pull)),
            ("docker system df".into(), per(self.df)),
            ("docker ps -a".into(), per(self.ps)),
            ("daemon start-up".into(), per(self.startup)),
            ("docker stats --no-stream".into(), per(self.stats)),
            (
                "memory".into(),
                format!("{} samples 1 s apart per state", self.memory_samples),
            ),
            ("/metrics scrapes".into(), format!("{}", self.scrapes)),
            (
                "collector CPU".into(),
                format!(
                    "{} windows of {:.0} s",
                    self.memory_samples,
                    self.cpu_window.as_secs_f64() / self.memory_samples as f64
                ),
            ),
        ]
    }
}
