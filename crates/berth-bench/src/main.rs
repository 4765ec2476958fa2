//! berth-bench: berthd against Debian's dockerd on identical storage,
//! driven by the same docker CLI in alternating A/B runs (`run`), and the
//! clean-up of a killed run (`sweep`). bench/run is the entry point; this
//! binary owns the order of the rows and the results file.

mod api;
mod engines;
mod fixtures;
mod images;
mod lifecycle;
mod machine;
mod monitoring;
mod pools;
mod registry;
mod report;
mod reps;
mod samples;
mod scale;
mod suite;
mod sweep;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

use crate::fixtures::Fixtures;
use crate::pools::Driver;
use crate::registry::Registry;
use crate::report::{Context, DriverReport};
use crate::reps::Reps;
use crate::suite::{Binaries, Suite};

#[derive(Parser)]
#[command(name = "berth-bench", about = "berthd vs dockerd, side by side")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure and write the results file.
    Run(RunArgs),
    /// Remove what a killed run left under DIR (bench/run's trap).
    Sweep { dir: PathBuf },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Storage drivers, in order.
    #[arg(long, value_delimiter = ',', default_value = "btrfs,overlay2,zfs")]
    drivers: Vec<String>,
    /// Tiny counts to check the harness (results file gets a -quick suffix).
    #[arg(long)]
    quick: bool,
    #[arg(long)]
    berthd: PathBuf,
    #[arg(long, default_value = "/usr/sbin/dockerd")]
    dockerd: PathBuf,
    /// Directory for the results file.
    #[arg(long)]
    out: PathBuf,
    /// Size of each storage pool (sparse), MiB.
    #[arg(long, default_value_t = 12288)]
    pool_mib: u64,
    /// How bench/run was invoked, for the results file.
    #[arg(long, default_value = "bench/run")]
    command_line: String,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Sweep { dir } => {
            sweep::sweep(&dir);
            Ok(())
        }
        Cmd::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("berth-bench needs root (loop devices, mounts, daemons)");
    }
    let drivers: Vec<Driver> = args
        .drivers
        .iter()
        .map(|d| Driver::parse(d).with_context(|| format!("unknown driver {d}")))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let load_before = machine::load_average();
    let scratch = berth_testkit::scratch::base_dir();
    std::fs::create_dir_all(&scratch)?;
    let reps = if args.quick {
        Reps::quick()
    } else {
        Reps::full()
    };
    let docker = berth_testkit::docker_cli::docker_path();
    let binaries = Binaries {
        berthd: args.berthd.clone(),
        dockerd: args.dockerd.clone(),
        berth_metrics: has_flag(&args.berthd, "--metrics-addr"),
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut ctx = Context {
        date: chrono::Local::now().format("%Y-%m-%d %H:%M %Z").to_string(),
        machine: machine::describe(),
        versions: machine::versions(&repo, &args.berthd, &args.dockerd, &docker),
        repetitions: reps.describe(),
        command: args.command_line.clone(),
        ..Context::default()
    };
    eprintln!("building test images under {}", scratch.display());
    let fixtures = Fixtures::build(&scratch, reps.large_mib, reps.large_layers, reps.df_images)?;
    let registry = Registry::start(&scratch.join("registry"))?;

    let mut reports = Vec::new();
    for driver in drivers {
        let t0 = Instant::now();
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut s = Suite::start(
                driver,
                args.pool_mib,
                &binaries,
                &fixtures,
                &reps,
                registry.as_ref(),
                &mut rows,
                &mut notes,
            );
            run_rows(&mut s);
            s.finish();
        }));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            let first = msg.lines().next().unwrap_or("").to_string();
            notes.push(format!("the row set stopped early: {first}"));
        }
        reports.push(DriverReport {
            driver: driver.name().to_string(),
            storage: driver.describe(args.pool_mib),
            rows,
            notes,
            minutes: t0.elapsed().as_secs_f64() / 60.0,
        });
    }
    drop(registry);

    ctx.total_minutes = started.elapsed().as_secs_f64() / 60.0;
    ctx.machine.push((
        "load average (1/5/15 min)".into(),
        format!("{load_before} at start, {} at end", machine::load_average()),
    ));
    ctx.method = method_notes(&binaries);
    ctx.not_measured = not_measured(&binaries);
    let md = report::markdown(&ctx, &reports);
    std::fs::create_dir_all(&args.out)?;
    let stem = format!(
        "{}-{}{}",
        chrono::Local::now().format("%Y-%m-%d"),
        machine::hostname(),
        if args.quick { "-quick" } else { "" }
    );
    let path = args.out.join(format!("{stem}.md"));
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    // The plain-text summary goes beside the table as well as to stdout.
    let summary = report::summary(&reports);
    let text = args.out.join(format!("{stem}.txt"));
    std::fs::write(&text, &summary).with_context(|| format!("writing {}", text.display()))?;
    print!("{summary}");
    println!("results: {} and {}", path.display(), text.display());
    Ok(())
}

/// Every row, in an order where each leaves what the next needs: single
/// operations on a near-empty daemon first, then the scale rows, which
/// only add objects.
fn run_rows(s: &mut Suite) {
    scale::memory_idle(s);
    lifecycle::create_and_rm(s);
    lifecycle::run_rm(s);
    lifecycle::run_detached_and_stop(s);
    lifecycle::commit(s);
    monitoring::event_latency(s);
    images::load_and_save(s);
    images::pull(s);
    scale::system_df(s);
    scale::ps_all(s);
    scale::startup(s);
    monitoring::stats(s);
    scale::memory_running(s);
    monitoring::metrics(s);
}

/// Whether `binary --help` mentions `flag`.
fn has_flag(binary: &Path, flag: &str) -> bool {
    Command::new(binary)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(false)
}

fn method_notes(b: &Binaries) -> Vec<String> {
    let mut m = vec![
        "Both daemons run at once, each on its own data root, exec root, unix socket and bridge (dockerd: a pre-created bridge with --iptables=false --ip-masq=false), debug logging off; dockerd starts its own containerd.".to_string(),
        "Every row is the /usr/local/bin/docker CLI (same binary, own DOCKER_CONFIG per daemon), timed from spawn to exit; repetitions alternate A/B with the order swapped every other time.".to_string(),
        "Throughput rows divide the docker-save archive's size by the command's time; loads read a page-cached file; each load/pull repetition is followed by an untimed rmi and syncfs.".to_string(),
        "Memory is the sum of VmRSS (and PSS from smaps_rollup) of berthd and its berth-shims vs dockerd, containerd and containerd-shim-runc-v2 (every process naming the daemon's exec root).".to_string(),
        "Event latency: the bench writes POST /images/{id}/tag on the daemon's socket and stamps the matching line read from a running `docker events --filter event=tag --format '{{json .}}'`.".to_string(),
        "Start-up: SIGTERM, wait for the daemon's helpers to exit, spawn, then poll /_ping (testkit, 20 ms polls); all containers are checked to be listed again afterwards.".to_string(),
        "Scale objects (df images, containers for df/ps/memory) are made through the Engine API, untimed; containers for memory and stats run `sh -c 'trap exit TERM; sleep & wait'`.".to_string(),
    ];
    if b.berth_metrics {
        m.push("/metrics: berthd started with --metrics-addr on 127.0.0.1; scrape time is a plain HTTP GET; collector CPU is berthd's utime+stime over the windows while a scrape runs every 5 s.".into());
    }
    m
}

fn not_measured(b: &Binaries) -> Vec<String> {
    let mut n = vec![
        "dockerd on zfs: its zfs driver needs /dev/zfs (kernel ZFS); zfs-fuse has none, so the zfs section is berthd only.".to_string(),
        "dockerd's /metrics: dockerd 20.10 serves engine metrics only behind --experimental and has no per-container metrics to compare.".to_string(),
    ];
    if !b.berth_metrics {
        n.push(
            "berth /metrics scrape and collector CPU: this berthd has no --metrics-addr yet."
                .into(),
        );
    }
    n
}
