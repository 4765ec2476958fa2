//! berthd: the container engine daemon. Reads flags and daemon.json, takes
//! the pidfile and the API sockets, opens the engine on the data root and
//! serves the Engine API until SIGINT/SIGTERM, then shuts down cleanly.
//! Wiring only: behaviour lives in berth-engine and berth-api.

mod config;
mod dump;
mod listeners;
mod logging;
mod metrics_listener;
mod network_flags;
mod pidfile;
mod reload;
mod root_lock;
mod systemd;
mod tcp_security;

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_api::Server;
use berth_engine::{Engine, EngineConfig};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::DaemonConfig;
use crate::listeners::{Bound, ListenOptions};
use crate::pidfile::Pidfile;
use crate::root_lock::RootLock;
use crate::systemd::Activation;
use crate::tcp_security::TcpPolicy;

/// How long in-flight API requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // Before anything else (and before any thread exists): take the sockets
    // systemd passed and clear its variables from the environment.
    let activation = Activation::take();
    raise_open_file_limit();
    // Kept for SIGHUP, which reads flags and daemon.json again.
    let argv: Vec<OsString> = std::env::args_os().collect();
    let startup = match config::load(argv.iter().cloned()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if startup.validate_only {
        eprintln!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let log = logging::init(&startup.config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berthd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::Error::new(e).context("start the async runtime")),
    };
    match runtime.block_on(run(startup.config, argv, log, activation)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Start-up errors end the process with one line saying why.
fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("berthd: {e:#}");
    ExitCode::FAILURE
}

/// Raises the soft limit on open files to the hard limit, as Go programs
/// (dockerd) do at start: every API connection, container log and shim
/// socket is a descriptor, and the usual soft limit of 1024 is too few.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

async fn run(
    config: DaemonConfig,
    argv: Vec<OsString>,
    log: logging::LogControl,
    mut activation: Activation,
) -> Result<()> {
    if config.debug {
        tracing::debug!(?config, "configuration");
    }
    // Order matters: the pidfile, the data-root lock and the sockets keep
    // a second daemon out, so all are taken before the engine touches disk.
    let pidfile = Pidfile::acquire(&config.pidfile)?;
    let root_lock = RootLock::acquire(&config.data_root)?;
    // Runtime state (bundles, shim sockets) is root's business only.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.exec_root)
        .with_context(|| format!("create exec root {}", config.exec_root.display()))?;
    let tcp_policy = TcpPolicy::from_config(&config);
    let bound = listeners::bind_all(
        &config.hosts,
        ListenOptions {
            group: config.group.as_deref(),
            tcp: &tcp_policy,
        },
        &mut activation,
    )
    .await?;
    // Sockets systemd passed that no -H fd:// serves are closed now.
    drop(activation);

    let engine_config = EngineConfig {
        data_root: config.data_root.clone(),
        exec_root: config.exec_root.clone(),
        storage_driver: config.storage_driver.clone(),
        storage_opts: config.storage_opts.clone(),
        debug: config.debug,
        runtimes: runtimes(&config),
        default_runtime: config.default_runtime.clone(),
        shim_binary: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("berth-shim")))
            .unwrap_or_else(|| "berth-shim".into()),
        init_binary: config
            .init_path
            .clone()
            .or_else(|| find_in_path("tini-static")),
        registry: config.registry_options(),
        security: berth_engine::security::SecurityConfig {
            seccomp_profile: config.seccomp_profile.clone(),
            no_new_privileges: config.no_new_privileges,
            userns_remap: config.userns_remap.clone(),
        },
    };
    if !engine_config
        .runtimes
        .contains_key(&engine_config.default_runtime)
    {
        anyhow::bail!(
            "default runtime {} is not installed or configured (known: {})",
            engine_config.default_runtime,
            engine_config
                .runtimes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let network = config.network.engine_config()?;
    let engine = tokio::task::spawn_blocking(move || -> Result<Arc<Engine>> {
        let engine = Engine::open_with_network(engine_config, Some(network))?;
        // Create the persistent ID now rather than racing on the first /info.
        engine.engine_id()?;
        Ok(engine)
    })
    .await
    .context("engine start-up task")??;
    engine.init_settings(config.live_settings());
    engine.restore().await;
    tracing::info!(
        driver = engine.driver().name(),
        data_root = %config.data_root.display(),
        "Daemon has completed initialization"
    );

    let limits = berth_api::Limits {
        max_connections: config.api_max_connections,
        ..berth_api::Limits::default()
    };
    // One set of request counters: the Engine API counts into it,
    // /metrics reads it.
    let api_metrics = Arc::new(berth_api::ApiMetrics::default());
    let server = Server::with_limits(
        berth_api::service_with_metrics(engine.clone(), Arc::clone(&api_metrics)),
        limits,
    );
    let mut socket_files = Vec::new();
    for b in bound {
        match b {
            Bound::Unix(l, addr, file) => {
                server.serve(l, addr);
                socket_files.extend(file);
            }
            Bound::Tcp(l, addr) => server.serve(l, addr),
            Bound::Tls(l, addr) => server.serve(l, addr),
        }
    }
    let metrics = match &config.metrics_addr {
        Some(addr) => Some(
            metrics_listener::MetricsServer::start(
                addr,
                &config.dashboard_hosts,
                Arc::clone(&engine),
                api_metrics,
            )
            .await?,
        ),
        None => None,
    };
    systemd::notify("READY=1");

    let name = serve_signals(&engine, config, &argv, &log).await?;
    tracing::info!("Processing signal '{name}'");
    systemd::notify("STOPPING=1");
    // Endless streams (events, stats) end first, or they would hold the
    // server for the whole grace period.
    engine.events().close_listeners();
    engine.stats().close();
    if let Some(m) = metrics {
        // Its streams (event feeds of remote hosts) hold nothing worth waiting for.
        m.shutdown(Duration::from_secs(1)).await;
    }
    server.shutdown(SHUTDOWN_GRACE).await;
    drop(socket_files);
    tokio::task::spawn_blocking(move || {
        engine.shutdown();
        engine.events().close();
    })
    .await
    .context("engine shutdown task")?;
    drop(root_lock);
    drop(pidfile);
    tracing::info!("Daemon shutdown complete");
    Ok(())
}

/// Handles signals until SIGINT or SIGTERM, whose name it returns: SIGHUP
/// reloads the configuration (see `reload`), SIGUSR1 writes a state dump
/// into the exec root (see `dump`).
async fn serve_signals(
    engine: &Arc<Engine>,
    mut config: DaemonConfig,
    argv: &[OsString],
    log: &logging::LogControl,
) -> Result<&'static str> {
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("install SIGHUP handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("install SIGUSR1 handler")?;
    loop {
        tokio::select! {
            _ = int.recv() => return Ok("interrupt"),
            _ = term.recv() => return Ok("terminated"),
            _ = hup.recv() => {
                tracing::info!("Got signal to reload configuration");
                match reload::reload(argv, &config, engine, log) {
                    Ok(next) => config = next,
                    Err(e) => tracing::error!("Error reloading configuration: {e:#}"),
                }
            }
            _ = usr1.recv() => {
                let engine = Arc::clone(engine);
                let exec_root = config.exec_root.clone();
                let metrics = tokio::runtime::Handle::current().metrics();
                let written = tokio::task::spawn_blocking(move || {
                    dump::write(&exec_root, &engine, &metrics)
                })
                .await;
                match written {
                    Ok(Ok(path)) => tracing::info!("daemon state written to {}", path.display()),
                    Ok(Err(e)) => tracing::error!("writing the state dump: {e:#}"),
                    Err(e) => tracing::error!("state dump task: {e}"),
                }
            }
        }
    }
}

/// The OCI runtimes berthd knows: runc and crun when installed, plus the
/// configured ones (which win on a name clash).
fn runtimes(
    config: &config::DaemonConfig,
) -> std::collections::BTreeMap<String, std::path::PathBuf> {
    let mut out = std::collections::BTreeMap::new();
    for name in ["runc", "crun"] {
        if let Some(p) = find_in_path(name) {
            out.insert(name.to_string(), p);
        }
    }
    for (name, entry) in &config.runtimes {
        out.insert(name.clone(), entry.path.clone());
    }
    out
}

/// `name` found in $PATH (and the sbin directories root has).
fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
