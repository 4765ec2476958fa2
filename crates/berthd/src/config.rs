//! berthd's configuration: dockerd's flags and daemon.json keys, merged the
//! way dockerd merges them (a key set both ways, or a key the daemon does
//! not know, refuses the start-up). Each option is one field in [`Flags`]
//! (its clap id is its daemon.json key) and one in [`DaemonConfig`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_engine::distribution::RegistryOptions;
use berth_engine::events::Retention;
use berth_engine::monitoring::LiveSettings;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Where berthd looks for daemon.json unless `--config-file` says otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

/// Flags that only steer the command line and have no daemon.json key.
const CLI_ONLY: [&str; 4] = ["config_file", "validate", "help", "version"];

/// Log levels dockerd accepts (`fatal` and `panic` log as `error`).
const LOG_LEVELS: [&str; 7] = ["trace", "debug", "info", "warn", "error", "fatal", "panic"];

/// The command line. Every daemon option is an `Option` or a list, so
/// "not given" is visible and daemon.json can fill it instead.
#[derive(Debug, Parser)]
#[command(
    name = "berthd",
    version,
    about = "A container engine daemon that speaks the Docker Engine API"
)]
pub struct Flags {
    /// Daemon configuration file
    #[arg(long = "config-file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Validate daemon configuration and exit
    #[arg(long = "validate")]
    pub validate: bool,

    /// Daemon socket(s) to connect to
    #[arg(id = "hosts", short = 'H', long = "host", value_name = "ADDR", action = ArgAction::Append)]
    pub hosts: Vec<String>,

    /// Root directory of persistent state
    #[arg(id = "data-root", long = "data-root", value_name = "PATH")]
    pub data_root: Option<PathBuf>,

    /// Root directory for execution state files
    #[arg(id = "exec-root", long = "exec-root", value_name = "PATH")]
    pub exec_root: Option<PathBuf>,

    /// Storage driver to use
    #[arg(
        id = "storage-driver",
        short = 's',
        long = "storage-driver",
        value_name = "NAME"
    )]
    pub storage_driver: Option<String>,

    /// Storage driver options
    #[arg(id = "storage-opts", long = "storage-opt", value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub storage_opts: Vec<String>,

    /// Enable debug mode
    #[arg(
        id = "debug",
        short = 'D',
        long = "debug",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub debug: Option<bool>,

    /// Set the logging level ("debug"|"info"|"warn"|"error"|"fatal")
    #[arg(
        id = "log-level",
        short = 'l',
        long = "log-level",
        value_name = "LEVEL"
    )]
    pub log_level: Option<String>,

    /// Path to use for daemon PID file
    #[arg(id = "pidfile", short = 'p', long = "pidfile", value_name = "PATH")]
    pub pidfile: Option<PathBuf>,

    /// Group for the unix socket
    #[arg(id = "group", short = 'G', long = "group", value_name = "GROUP")]
    pub group: Option<String>,

    /// Register an additional OCI compatible runtime
    #[arg(id = "runtimes", long = "add-runtime", value_name = "NAME=PATH", action = ArgAction::Append)]
    pub runtimes: Vec<String>,

    /// Default OCI runtime for containers
    #[arg(id = "default-runtime", long = "default-runtime", value_name = "NAME")]
    pub default_runtime: Option<String>,

    /// Path to the docker-init binary
    #[arg(id = "init-path", long = "init-path", value_name = "PATH")]
    pub init_path: Option<PathBuf>,

    /// Set key=value labels to the daemon
    #[arg(id = "labels", long = "label", value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub labels: Vec<String>,

    /// Keep at least this many events in the event log (unless older than the max age)
    #[arg(
        id = "events-log-max-events",
        long = "events-log-max-events",
        value_name = "N"
    )]
    pub events_log_max_events: Option<u64>,

    /// Drop events older than this from the event log (e.g. 168h)
    #[arg(
        id = "events-log-max-age",
        long = "events-log-max-age",
        value_name = "DURATION"
    )]
    pub events_log_max_age: Option<String>,

    /// Enable insecure registry communication
    #[arg(id = "insecure-registries", long = "insecure-registry", value_name = "REGISTRY", action = ArgAction::Append)]
    pub insecure_registries: Vec<String>,

    /// Preferred Docker registry mirror
    #[arg(id = "registry-mirrors", long = "registry-mirror", value_name = "URL", action = ArgAction::Append)]
    pub registry_mirrors: Vec<String>,

    /// Directory of per-registry certificates (<host:port>/ca.crt, client.cert, client.key)
    #[arg(
        id = "registry-certs-dir",
        long = "registry-certs-dir",
        value_name = "PATH"
    )]
    pub registry_certs_dir: Option<PathBuf>,

    /// How often container stats are sampled (e.g. 1s)
    #[arg(
        id = "stats-interval",
        long = "stats-interval",
        value_name = "DURATION"
    )]
    pub stats_interval: Option<String>,

    /// Use TLS; implied by --tlsverify
    #[arg(
        id = "tls",
        long = "tls",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub tls: Option<bool>,

    /// Use TLS and verify the remote
    #[arg(
        id = "tlsverify",
        long = "tlsverify",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub tlsverify: Option<bool>,

    /// Trust certs signed only by this CA
    #[arg(id = "tlscacert", long = "tlscacert", value_name = "PATH")]
    pub tlscacert: Option<PathBuf>,

    /// Path to TLS certificate file
    #[arg(id = "tlscert", long = "tlscert", value_name = "PATH")]
    pub tlscert: Option<PathBuf>,

    /// Path to TLS key file
    #[arg(id = "tlskey", long = "tlskey", value_name = "PATH")]
    pub tlskey: Option<PathBuf>,

    /// Serve TCP without TLS client verification on non-loopback addresses
    #[arg(
        id = "insecure-tcp",
        long = "insecure-tcp",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub insecure_tcp: Option<bool>,

    /// Most API connections open at once (over all -H addresses)
    #[arg(
        id = "api-max-connections",
        long = "api-max-connections",
        value_name = "N"
    )]
    pub api_max_connections: Option<usize>,

    /// Serve Prometheus metrics and the dashboard on this address (e.g. 127.0.0.1:9323)
    #[arg(id = "metrics-addr", long = "metrics-addr", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,

    /// Another Engine API the dashboard watches: unix:///PATH or tcp://HOST:PORT,
    /// then ,name=NAME and for TLS ,tlsdir=DIR or ,tlscacert=,tlscert=,tlskey=
    #[arg(id = "dashboard-hosts", long = "dashboard-host", value_name = "ADDR[,OPTS]", action = ArgAction::Append)]
    pub dashboard_hosts: Vec<String>,

    /// Bridge networking (`--bridge`, `--bip`, ...).
    #[command(flatten)]
    pub network: crate::network_flags::NetworkFlags,
    /// User/Group setting for user namespaces
    #[arg(
        id = "userns-remap",
        long = "userns-remap",
        value_name = "USER[:GROUP]"
    )]
    pub userns_remap: Option<String>,

    /// Set no-new-privileges by default for new containers
    #[arg(
        id = "no-new-privileges",
        long = "no-new-privileges",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub no_new_privileges: Option<bool>,

    /// Path to seccomp profile. Use "unconfined" to disable the default seccomp profile
    #[arg(id = "seccomp-profile", long = "seccomp-profile", value_name = "PATH")]
    pub seccomp_profile: Option<String>,
}

/// A runtime of daemon.json's `runtimes` map.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeEntry {
    pub path: PathBuf,
    #[serde(default)]
    pub runtime_args: Vec<String>,
}

/// The merged configuration berthd runs with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DaemonConfig {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub storage_driver: Option<String>,
    pub storage_opts: Vec<String>,
    pub debug: bool,
    pub log_level: String,
    pub pidfile: PathBuf,
    /// `None`: the `docker` group when it exists, else the daemon's own.
    pub group: Option<String>,
    /// OCI runtimes besides the built-in runc and crun.
    pub runtimes: std::collections::BTreeMap<String, RuntimeEntry>,
    pub default_runtime: String,
    pub init_path: Option<PathBuf>,
    /// The engine's labels (`docker info`), reloadable.
    pub labels: Vec<String>,
    /// Event log retention, reloadable: whole segments go once the newest
    /// this-many events do not need them or they are older than the age.
    pub events_log_max_events: u64,
    pub events_log_max_age: String,
    /// The stats sampler's interval, reloadable.
    pub stats_interval: String,
    /// Registries reached over plain HTTP or unverified TLS.
    pub insecure_registries: Vec<String>,
    /// Docker Hub mirrors.
    pub registry_mirrors: Vec<String>,
    /// Where per-registry CAs and client certificates live.
    pub registry_certs_dir: PathBuf,
    /// `--tls`/`--tlsverify` as given (`None`: not set), resolved with
    /// dockerd's rules by `tcp_security`.
    pub tls: Option<bool>,
    pub tlsverify: Option<bool>,
    /// TLS files; `None` means dockerd's default in `~/.docker`.
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
    /// Serve TCP without client verification beyond loopback.
    pub insecure_tcp: bool,
    /// The cap on open API connections.
    pub api_max_connections: usize,
    /// `/metrics` and the dashboard (`None`: not served).
    pub metrics_addr: Option<String>,
    /// Other Engine APIs the dashboard shows (see `berth_dashboard::HostSpec`).
    pub dashboard_hosts: Vec<String>,
    /// Bridge networking, read by `network_flags` (not by this struct's serde).
    #[serde(skip)]
    pub network: crate::network_flags::NetworkSettings,
    /// `--userns-remap` (empty: off).
    pub userns_remap: String,
    /// `--no-new-privileges` for every new container.
    pub no_new_privileges: bool,
    /// `--seccomp-profile`: `builtin` (also when empty), `unconfined` or a path.
    pub seccomp_profile: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            hosts: Vec::new(),
            data_root: PathBuf::from("/var/lib/berth"),
            exec_root: PathBuf::from("/run/berth"),
            storage_driver: None,
            storage_opts: Vec::new(),
            debug: false,
            log_level: "info".to_string(),
            pidfile: PathBuf::from("/run/berth.pid"),
            group: None,
            runtimes: Default::default(),
            default_runtime: "runc".to_string(),
            init_path: None,
            labels: Vec::new(),
            events_log_max_events: 100_000,
            events_log_max_age: "168h".to_string(),
            stats_interval: "1s".to_string(),
            insecure_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            registry_certs_dir: PathBuf::from(
                berth_engine::distribution::registries::DEFAULT_CERTS_DIR,
            ),
            tls: None,
            tlsverify: None,
            tlscacert: None,
            tlscert: None,
            tlskey: None,
            insecure_tcp: false,
            api_max_connections: berth_api::Limits::default().max_connections,
            metrics_addr: None,
            dashboard_hosts: Vec::new(),
            network: Default::default(),
            userns_remap: String::new(),
            no_new_privileges: false,
            seccomp_profile: String::new(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub struct Startup {
    pub config: DaemonConfig,
    /// `--validate`: check the configuration and exit.
    pub validate_only: bool,
}

/// Parses `args` (clap exits on `--help` and usage errors) and merges
/// daemon.json.
pub fn load<I, T>(args: I) -> Result<Startup>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Flags::command().get_matches_from(args);
    let flags = Flags::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (path, explicit) = match &flags.config_file {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let file = read_config_file(&path, explicit).with_context(|| {
        format!(
            "unable to configure the daemon with file {}",
            path.display()
        )
    })?;
    let config = merge(&flags, &matches, file).with_context(|| {
        format!(
            "unable to configure the daemon with file {}",
            path.display()
        )
    })?;
    validate(&config)?;
    Ok(Startup {
        config,
        validate_only: flags.validate,
    })
}

/// The JSON object of daemon.json; `None` when the default file is absent.
fn read_config_file(path: &Path, explicit: bool) -> Result<Option<Map<String, Value>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    // Editors on some systems write a UTF-8 byte order mark; dockerd accepts it.
    let text = std::str::from_utf8(&bytes).context("daemon.json is not valid UTF-8")?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_str::<Value>(text).context("invalid JSON")? {
        Value::Object(map) => Ok(Some(map)),
        _ => bail!("invalid JSON: the configuration must be a JSON object"),
    }
}

/// Merges flags over daemon.json after dockerd's checks: unknown keys
/// first, then keys also given as flags.
fn merge(
    flags: &Flags,
    matches: &ArgMatches,
    file: Option<Map<String, Value>>,
) -> Result<DaemonConfig> {
    let mut file = file.unwrap_or_default();
    check_directives(&file, matches)?;
    let network = crate::network_flags::take_from_file(&mut file)?;
    let mut config: DaemonConfig =
        serde_json::from_value(Value::Object(file)).context("invalid JSON")?;
    flags.apply(&mut config);
    config.network = network;
    flags.network.apply(&mut config.network)?;
    Ok(config)
}

/// dockerd's `findConfigurationConflicts`, with its wording.
fn check_directives(file: &Map<String, Value>, matches: &ArgMatches) -> Result<()> {
    let cmd = Flags::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| !CLI_ONLY.contains(&id.as_str()))
        .collect();
    let unknown: Vec<&str> = file
        .keys()
        .filter(|k| !known.contains(k))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        bail!(
            "the following directives don't match any configuration option: {}",
            unknown.join(", ")
        );
    }
    let mut conflicts = Vec::new();
    for arg in cmd.get_arguments() {
        let key = arg.get_id().as_str();
        let Some(file_value) = file.get(key) else {
            continue;
        };
        if matches.value_source(key) != Some(ValueSource::CommandLine) {
            continue;
        }
        let given: Vec<String> = matches
            .get_raw(key)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let flag_value = if matches!(arg.get_action(), ArgAction::Append) {
            format!("[{}]", given.join(" "))
        } else {
            given.join(" ")
        };
        conflicts.push(format!(
            "{key}: (from flag: {flag_value}, from file: {})",
            go_format(file_value)
        ));
    }
    if !conflicts.is_empty() {
        bail!(
            "the following directives are specified both as a flag and in the configuration file: {}",
            conflicts.join(", ")
        );
    }
    Ok(())
}

/// A JSON value printed the way Go's `%v` prints it, as in dockerd's
/// conflict messages (`[a b]`, `map[k:v]`).
fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => format!(
            "map[{}]",
            map.iter()
                .map(|(k, v)| format!("{k}:{}", go_format(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

impl Flags {
    /// Puts every option given on the command line over `config`.
    fn apply(&self, config: &mut DaemonConfig) {
        if !self.hosts.is_empty() {
            config.hosts = self.hosts.clone();
        }
        if let Some(p) = &self.data_root {
            config.data_root = p.clone();
        }
        if let Some(p) = &self.exec_root {
            config.exec_root = p.clone();
        }
        if self.storage_driver.is_some() {
            config.storage_driver = self.storage_driver.clone();
        }
        if !self.storage_opts.is_empty() {
            config.storage_opts = self.storage_opts.clone();
        }
        if let Some(d) = self.debug {
            config.debug = d;
        }
        if let Some(l) = &self.log_level {
            config.log_level = l.clone();
        }
        if let Some(p) = &self.pidfile {
            config.pidfile = p.clone();
        }
        if self.group.is_some() {
            config.group = self.group.clone();
        }
        for r in &self.runtimes {
            if let Some((name, path)) = r.split_once('=') {
                config.runtimes.insert(
                    name.to_string(),
                    RuntimeEntry {
                        path: PathBuf::from(path),
                        runtime_args: Vec::new(),
                    },
                );
            }
        }
        if let Some(r) = &self.default_runtime {
            config.default_runtime = r.clone();
        }
        if self.init_path.is_some() {
            config.init_path = self.init_path.clone();
        }
        if !self.labels.is_empty() {
            config.labels = self.labels.clone();
        }
        if let Some(n) = self.events_log_max_events {
            config.events_log_max_events = n;
        }
        if let Some(d) = &self.events_log_max_age {
            config.events_log_max_age = d.clone();
        }
        if let Some(d) = &self.stats_interval {
            config.stats_interval = d.clone();
        }
        if !self.insecure_registries.is_empty() {
            config.insecure_registries = self.insecure_registries.clone();
        }
        if !self.registry_mirrors.is_empty() {
            config.registry_mirrors = self.registry_mirrors.clone();
        }
        if let Some(p) = &self.registry_certs_dir {
            config.registry_certs_dir = p.clone();
        }
        if self.tls.is_some() {
            config.tls = self.tls;
        }
        if self.tlsverify.is_some() {
            config.tlsverify = self.tlsverify;
        }
        for (flag, field) in [
            (&self.tlscacert, &mut config.tlscacert),
            (&self.tlscert, &mut config.tlscert),
            (&self.tlskey, &mut config.tlskey),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        if let Some(b) = self.insecure_tcp {
            config.insecure_tcp = b;
        }
        if let Some(n) = self.api_max_connections {
            config.api_max_connections = n;
        }
        if self.metrics_addr.is_some() {
            config.metrics_addr.clone_from(&self.metrics_addr);
        }
        if !self.dashboard_hosts.is_empty() {
            config.dashboard_hosts = self.dashboard_hosts.clone();
        }
        if let Some(r) = &self.userns_remap {
            config.userns_remap = r.clone();
        }
        if let Some(b) = self.no_new_privileges {
            config.no_new_privileges = b;
        }
        if let Some(p) = &self.seccomp_profile {
            config.seccomp_profile = p.clone();
        }
    }
}

fn validate(config: &DaemonConfig) -> Result<()> {
    config.network.engine_config()?;
    for (name, entry) in &config.runtimes {
        if name.is_empty() || entry.path.as_os_str().is_empty() {
            bail!("runtime name and path must not be empty: {name:?}");
        }
    }
    if !LOG_LEVELS.contains(&config.log_level.to_ascii_lowercase().as_str()) {
        bail!("invalid logging level: {}", config.log_level);
    }
    for label in &config.labels {
        if !label.contains('=') {
            bail!("bad attribute format: {label}");
        }
    }
    if config.api_max_connections == 0 {
        bail!("api-max-connections must be at least 1");
    }
    if let Some(addr) = &config.metrics_addr {
        crate::metrics_listener::parse_metrics_addr(addr)?;
    }
    for host in &config.dashboard_hosts {
        berth_dashboard::parse_host_spec(host).map_err(|e| anyhow::anyhow!(e))?;
    }
    if !config.dashboard_hosts.is_empty() && config.metrics_addr.is_none() {
        bail!("dashboard-host needs metrics-addr: the dashboard is served there");
    }
    if config.events_log_max_events == 0 {
        bail!("events-log-max-events must be at least 1");
    }
    for (what, value) in [
        ("events-log-max-age", &config.events_log_max_age),
        ("stats-interval", &config.stats_interval),
    ] {
        if parse_duration(value).is_none() {
            bail!("invalid {what}: {value:?} is not a duration such as 1s, 30m or 168h");
        }
    }
    berth_engine::distribution::Registries::new(&config.registry_options())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (what, p) in [
        ("data-root", &config.data_root),
        ("exec-root", &config.exec_root),
        ("pidfile", &config.pidfile),
    ] {
        if !p.is_absolute() {
            bail!("{what} must be an absolute path: {}", p.display());
        }
    }
    Ok(())
}

/// A Go duration (`1h30m`, `500ms`, `168h`), as dockerd's duration flags.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..n_len].parse().ok()?;
        rest = &rest[n_len..];
        let u_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[u_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

impl DaemonConfig {
    /// The settings the engine can change while running.
    pub fn live_settings(&self) -> LiveSettings {
        LiveSettings {
            debug: self.debug,
            log_level: self.log_level.clone(),
            labels: self.labels.clone(),
            events_retention: Retention {
                max_events: self.events_log_max_events,
                max_age: parse_duration(&self.events_log_max_age).unwrap_or(Duration::ZERO),
            },
            stats_interval: parse_duration(&self.stats_interval)
                .unwrap_or(berth_engine::stats::DEFAULT_INTERVAL),
        }
    }

    /// The registry options the engine takes.
    pub fn registry_options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            mirrors: self.registry_mirrors.clone(),
            certs_dir: self.registry_certs_dir.clone(),
        }
    }

    /// The configuration with the reloadable keys taken from `newer`.
    pub fn with_reloadable(&self, newer: &DaemonConfig) -> DaemonConfig {
        DaemonConfig {
            debug: newer.debug,
            log_level: newer.log_level.clone(),
            labels: newer.labels.clone(),
            events_log_max_events: newer.events_log_max_events,
            events_log_max_age: newer.events_log_max_age.clone(),
            stats_interval: newer.stats_interval.clone(),
            ..self.clone()
        }
    }

    /// The `tracing` level for `log-level`, raised to debug by `-D`.
    pub fn tracing_level(&self) -> tracing::Level {
        if self.debug {
            return tracing::Level::DEBUG;
        }
        match self.log_level.to_ascii_lowercase().as_str() {
            "trace" => tracing::Level::TRACE,
            "debug" => tracing::Level::DEBUG,
            "info" => tracing::Level::INFO,
            "warn" => tracing::Level::WARN,
            _ => tracing::Level::ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse(args: &[&str], file: Option<&str>) -> Result<DaemonConfig> {
        let mut argv = vec!["berthd"];
        argv.extend_from_slice(args);
        let matches = Flags::command().try_get_matches_from(argv).unwrap();
        let flags = Flags::from_arg_matches(&matches).unwrap();
        let file = file.map(|f| match serde_json::from_str(f).unwrap() {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        });
        let config = merge(&flags, &matches, file)?;
        validate(&config)?;
        Ok(config)
    }

    #[test]
    fn defaults_match_the_design() {
        let c = parse(&[], None).unwrap();
        assert_eq!(c, DaemonConfig::default());
        assert_eq!(c.data_root, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.pidfile, PathBuf::from("/run/berth.pid"));
    }

    #[test]
    fn flags_and_file_merge_when_disjoint() {
        let c = parse(
            &[
                "-H",
                "unix:///a.sock",
                "-H",
                "unix:///b.sock",
                "-D",
                "--storage-opt",
                "size=1G",
            ],
            Some(r#"{"data-root": "/srv/berth", "storage-driver": "vfs", "log-level": "warn"}"#),
        )
        .unwrap();
        assert_eq!(c.hosts, vec!["unix:///a.sock", "unix:///b.sock"]);
        assert!(c.debug);
        assert_eq!(c.storage_opts, vec!["size=1G"]);
        assert_eq!(c.data_root, PathBuf::from("/srv/berth"));
        assert_eq!(c.storage_driver.as_deref(), Some("vfs"));
        assert_eq!(c.tracing_level(), tracing::Level::DEBUG);
    }

    #[test]
    fn file_sets_every_key() {
        let c = parse(
            &[],
            Some(
                r#"{"hosts": ["unix:///x.sock"], "data-root": "/d", "exec-root": "/e",
                    "storage-driver": "btrfs", "storage-opts": ["a=b"], "debug": true,
                    "log-level": "error", "pidfile": "/p.pid", "group": "adm"}"#,
            ),
        )
        .unwrap();
        assert_eq!(c.hosts, vec!["unix:///x.sock"]);
        assert_eq!(c.exec_root, PathBuf::from("/e"));
        assert_eq!(c.storage_opts, vec!["a=b"]);
        assert!(c.debug);
        assert_eq!(c.group.as_deref(), Some("adm"));
    }

    #[test]
    fn security_keys_come_from_flags_or_file() {
        let c = parse(
            &["--no-new-privileges", "--seccomp-profile", "unconfined"],
            Some(r#"{"userns-remap": "default"}"#),
        )
        .unwrap();
        assert!(c.no_new_privileges);
        assert_eq!(c.seccomp_profile, "unconfined");
        assert_eq!(c.userns_remap, "default");
        let c = parse(
            &["--userns-remap=berthremap:berthremap"],
            Some(r#"{"no-new-privileges": true, "seccomp-profile": "/p.json"}"#),
        )
        .unwrap();
        assert_eq!(c.userns_remap, "berthremap:berthremap");
        assert!(c.no_new_privileges);
        assert_eq!(c.seccomp_profile, "/p.json");
        assert!(parse(&["--userns-remap", "a"], Some(r#"{"userns-remap": "b"}"#)).is_err());
        assert!(!DaemonConfig::default().no_new_privileges);
    }

    #[test]
    fn conflicts_are_refused_with_dockerd_wording() {
        let err = parse(
            &["-D", "-H", "unix:///a.sock", "--data-root", "/x"],
            Some(r#"{"debug": false, "hosts": ["unix:///b.sock"], "exec-root": "/e"}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "the following directives are specified both as a flag and in the configuration file: "
            ),
            "{err}"
        );
        assert!(err.contains("hosts: (from flag: [unix:///a.sock], from file: [unix:///b.sock])"));
        assert!(err.contains("debug: (from flag: true, from file: false)"));
        assert!(!err.contains("exec-root"));
    }

    #[test]
    fn unknown_keys_are_refused_with_dockerd_wording() {
        let err = parse(
            &[],
            Some(r#"{"debug": true, "storage-opt": ["x"], "bogus": 1}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("the following directives don't match any configuration option: "),
            "{err}"
        );
        assert!(err.contains("bogus") && err.contains("storage-opt"));
        // Command-line-only flags are not daemon.json keys.
        assert!(parse(&[], Some(r#"{"validate": true}"#)).is_err());
    }

    #[test]
    fn wrong_types_and_bad_levels_are_refused() {
        let err = parse(&[], Some(r#"{"debug": "yes"}"#)).unwrap_err();
        assert!(format!("{err:#}").starts_with("invalid JSON"), "{err:#}");
        let err = parse(&["-l", "loud"], None).unwrap_err();
        assert_eq!(err.to_string(), "invalid logging level: loud");
        let err = parse(&["--data-root", "relative"], None).unwrap_err();
        assert!(err.to_string().contains("absolute"));
    }

    #[test]
    fn debug_accepts_an_explicit_value() {
        assert!(!parse(&["--debug=false"], None).unwrap().debug);
        assert!(parse(&["--debug"], None).unwrap().debug);
    }

    #[test]
    fn config_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert!(read_config_file(&missing, false).unwrap().is_none());
        assert!(read_config_file(&missing, true).is_err());

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{ not json").unwrap();
        let err = read_config_file(&bad, true).unwrap_err();
        assert!(format!("{err:#}").starts_with("invalid JSON"));

        let bom = dir.path().join("bom.json");
        let mut f = std::fs::File::create(&bom).unwrap();
        f.write_all("\u{feff}{\"debug\": true}\n".as_bytes())
            .unwrap();
        assert_eq!(
            read_config_file(&bom, true).unwrap().unwrap()["debug"],
            Value::Bool(true)
        );

        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, "  \n").unwrap();
        assert!(read_config_file(&empty, true).unwrap().unwrap().is_empty());
    }

    #[test]
    fn monitoring_keys_merge_validate_and_reload() {
        let c = parse(
            &["--label", "a=b", "--stats-interval", "500ms"],
            Some(r#"{"events-log-max-events": 5000, "events-log-max-age": "24h"}"#),
        )
        .unwrap();
        let live = c.live_settings();
        assert_eq!(live.labels, vec!["a=b"]);
        assert_eq!(live.stats_interval, Duration::from_millis(500));
        assert_eq!(live.events_retention.max_events, 5000);
        assert_eq!(live.events_retention.max_age, Duration::from_secs(86400));
        let d = DaemonConfig::default().live_settings();
        assert_eq!(d.events_retention, Retention::default());
        assert!(parse(&["--label", "novalue"], None)
            .unwrap_err()
            .to_string()
            .contains("bad attribute format"));
        assert!(parse(&[], Some(r#"{"events-log-max-age": "a week"}"#)).is_err());
        assert!(parse(&[], Some(r#"{"labels": ["x=1"], "stats-interval": "2s"}"#)).is_ok());

        let newer = DaemonConfig {
            debug: true,
            labels: vec!["z=1".into()],
            data_root: PathBuf::from("/elsewhere"),
            ..DaemonConfig::default()
        };
        let merged = DaemonConfig::default().with_reloadable(&newer);
        assert!(merged.debug);
        assert_eq!(merged.labels, vec!["z=1"]);
        assert_eq!(merged.data_root, PathBuf::from("/var/lib/berth"));
    }

    #[test]
    fn metrics_addr_and_dashboard_hosts() {
        let c = parse(
            &["--metrics-addr", "127.0.0.1:9323"],
            Some(r#"{"dashboard-hosts": ["unix:///run/docker.sock,name=old"]}"#),
        )
        .unwrap();
        assert_eq!(c.metrics_addr.as_deref(), Some("127.0.0.1:9323"));
        assert_eq!(c.dashboard_hosts, ["unix:///run/docker.sock,name=old"]);
        assert!(parse(&["--metrics-addr", "9323"], None).is_err());
        assert!(parse(&["--dashboard-host", "unix:///x.sock"], None).is_err());
        assert!(parse(
            &[
                "--metrics-addr",
                "127.0.0.1:1",
                "--dashboard-host",
                "http://x"
            ],
            None
        )
        .is_err());
    }

    #[test]
    fn tls_keys_come_from_flags_or_file() {
        let c = parse(
            &[
                "--tlsverify",
                "--tlscacert",
                "/c/ca.pem",
                "--api-max-connections",
                "10",
            ],
            Some(r#"{"tlscert": "/c/s.pem", "tlskey": "/c/k.pem", "insecure-tcp": true}"#),
        )
        .unwrap();
        assert_eq!(c.tlsverify, Some(true));
        assert_eq!(c.tls, None);
        assert_eq!(c.tlscacert, Some(PathBuf::from("/c/ca.pem")));
        assert_eq!(c.tlscert, Some(PathBuf::from("/c/s.pem")));
        assert_eq!(c.tlskey, Some(PathBuf::from("/c/k.pem")));
        assert!(c.insecure_tcp);
        assert_eq!(c.api_max_connections, 10);
        let c = parse(&["--tls=false", "--tlsverify=false"], None).unwrap();
        assert_eq!((c.tls, c.tlsverify), (Some(false), Some(false)));
        let c = parse(&[], Some(r#"{"tls": true}"#)).unwrap();
        assert_eq!((c.tls, c.tlsverify), (Some(true), None));

        let err = parse(&["--tlsverify"], Some(r#"{"tlsverify": true}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tlsverify: (from flag: true, from file: true)"),
            "{err}"
        );
        assert!(parse(&["--api-max-connections", "0"], None).is_err());
    }

    #[test]
    fn registry_options_merge_and_validate() {
        let c = parse(
            &[
                "--insecure-registry",
                "reg.test:5000",
                "--registry-certs-dir",
                "/c",
            ],
            Some(r#"{"registry-mirrors": ["https://mirror.test"]}"#),
        )
        .unwrap();
        let r = c.registry_options();
        assert_eq!(r.insecure_registries, vec!["reg.test:5000"]);
        assert_eq!(r.mirrors, vec!["https://mirror.test"]);
        assert_eq!(r.certs_dir, PathBuf::from("/c"));
        let err = parse(&["--registry-mirror", "mirror.test"], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid mirror: no scheme specified"),
            "{err}"
        );
        let err = parse(&[], Some(r#"{"insecure-registries": ["ftp://x"]}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "insecure registry ftp://x should not contain '://'");
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_duration("168h"),
            Some(Duration::from_secs(168 * 3600))
        );
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("7d"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn go_formatting_of_file_values() {
        assert_eq!(go_format(&serde_json::json!(["a", "b"])), "[a b]");
        assert_eq!(go_format(&serde_json::json!(true)), "true");
        assert_eq!(go_format(&serde_json::json!("x")), "x");
        assert_eq!(go_format(&serde_json::json!({"k": "v"})), "map[k:v]");
    }
}
