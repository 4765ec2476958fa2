//! The [`Engine`]: opened once by berthd on its data root, shared by every
//! API handler. It wires the storage driver, the layer store, the image
//! store and the event bus together; the operations live in the modules
//! named after what they act on (`images`, `system`, ...).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_storage::{Driver, DriverConfig, LayerStore};

use crate::containers::exec::ExecStore;
use crate::containers::store::ContainerStore;
use crate::error::{EngineError, Result};
use crate::events::EventBus;
use crate::images::ImageStore;
use crate::runtime::{Runtime, RuntimeConfig};

/// How berthd configured the engine (flags and daemon.json, merged).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `--data-root`: where everything persistent lives.
    pub data_root: PathBuf,
    /// `--exec-root`: runtime state (sockets, bundles).
    pub exec_root: PathBuf,
    /// `-s/--storage-driver`; `None` picks one as dockerd does.
    pub storage_driver: Option<String>,
    /// `--storage-opt key=value`, in the order given.
    pub storage_opts: Vec<String>,
    /// `-D/--debug`.
    pub debug: bool,
    /// OCI runtimes by name (`--add-runtime name=path`; runc and crun
    /// are known by default when installed).
    pub runtimes: std::collections::BTreeMap<String, PathBuf>,
    /// `--default-runtime` (default `runc`).
    pub default_runtime: String,
    /// The `berth-shim` binary (default: next to berthd).
    pub shim_binary: PathBuf,
    /// The init binary for `--init` (`--init-path`; default: tini if installed).
    pub init_binary: Option<PathBuf>,
    /// Insecure registries, mirrors and the registry certificates directory.
    pub registry: crate::distribution::RegistryOptions,
    /// Seccomp, no-new-privileges and user namespace remapping defaults.
    pub security: crate::security::SecurityConfig,
}

/// The engine. Cheap to share behind an `Arc`.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) layers: LayerStore,
    pub(crate) images: ImageStore,
    pub(crate) events: EventBus,
    pub(crate) volumes: crate::volumes::VolumeStore,
    pub(crate) networks: crate::networks::Networking,
    pub(crate) containers: ContainerStore,
    pub(crate) execs: ExecStore,
    pub(crate) runtime: Runtime,
    /// The isolation policy containers get (resolved at open).
    pub(crate) security: crate::security::SecurityPolicy,
    pub(crate) stats: crate::stats::StatsSampler,
    pub(crate) settings: crate::monitoring::SettingsCell,
    pub(crate) df_cache: crate::disk_usage::DiskUsageCache,
    pub(crate) distribution: crate::distribution::Distribution,
    /// Held while images are stored, tagged or deleted.
    pub(crate) image_ops: Mutex<()>,
    /// Set by `shutdown`: exits seen from now on are not restarted.
    shutting_down: AtomicBool,
    /// Held (write) by `restore`; restarts by policy wait for it (read),
    /// so none brings up a sandbox while restore still sweeps stale ones.
    pub(crate) restoring: tokio::sync::RwLock<()>,
}

impl Engine {
    /// Opens (creating when new) the engine state under `config.data_root`:
    /// picks or checks the storage driver, reconciles half-made layers and
    /// loads the image store. Blocking; call before serving.
    pub fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        Self::open_with_network(config, None)
    }

    /// [`Engine::open`] with bridge networking configured (berthd); without
    /// it containers get a namespace with loopback only.
    pub fn open_with_network(
        mut config: EngineConfig,
        network: Option<crate::networks::NetworkConfig>,
    ) -> Result<Arc<Engine>> {
        let security = crate::security::SecurityPolicy::probe(&config.security)?;
        if let Some(remap) = &security.userns {
            // Everything lives under a root of this mapping's own, so a
            // change of --userns-remap never mixes ownerships (dockerd's
            // `<data-root>/<uid>.<gid>`).
            config.data_root = remap.prepare_data_root(&config.data_root)?;
        }
        std::fs::create_dir_all(&config.data_root)
            .map_err(|e| EngineError::io(format!("create {}", config.data_root.display()), e))?;
        std::fs::create_dir_all(&config.exec_root)
            .map_err(|e| EngineError::io(format!("create {}", config.exec_root.display()), e))?;
        let driver = berth_storage::open_driver(&DriverConfig {
            data_root: config.data_root.clone(),
            name: config.storage_driver.clone(),
            options: config.storage_opts.clone(),
        })?;
        crate::scratch::clear(&config.data_root)?;
        let layers =
            LayerStore::open(&config.data_root, driver.clone())?.with_id_map(security.id_map());
        let images = ImageStore::open(&config.data_root)?;
        let volumes = crate::volumes::VolumeStore::open(&config.data_root)?
            .with_data_owner(security.id_map().root());
        let networks =
            crate::networks::Networking::open(&config.data_root, &config.exec_root, network)?;
        let distribution =
            crate::distribution::Distribution::open(&config.data_root, &config.registry)?;
        let runtime = Runtime::new(RuntimeConfig {
            runtimes: config.runtimes.clone(),
            default_runtime: config.default_runtime.clone(),
            shim: config.shim_binary.clone(),
            exec_root: config.exec_root.clone(),
        })?;
        let debug = config.debug;
        let events = EventBus::open(
            &config.data_root.join("events"),
            crate::events::Retention::default(),
        )?;
        let df_cache = crate::disk_usage::DiskUsageCache::new(events.subscribe());
        let engine = Engine {
            config,
            driver,
            layers,
            images,
            events,
            volumes,
            networks,
            containers: ContainerStore::default(),
            execs: ExecStore::default(),
            runtime,
            security,
            stats: crate::stats::StatsSampler::new(),
            settings: crate::monitoring::SettingsCell::new(debug),
            df_cache,
            distribution,
            image_ops: Mutex::new(()),
            shutting_down: AtomicBool::new(false),
            restoring: tokio::sync::RwLock::new(()),
        };
        engine.reconcile()?;
        let engine = Arc::new(engine);
        engine.start_monitoring()?;
        Ok(engine)
    }

    /// Brings containers, layers and images back in step after a crash:
    /// every image's layers and every container's writable layer are held,
    /// and layers nothing holds are removed. Running containers are
    /// re-adopted later, by [`Engine::restore`].
    fn reconcile(&self) -> Result<()> {
        let containers = self.load_containers()?;
        let chains = self.images.all_top_layers();
        self.layers.reconcile(&chains, &containers)?;
        Ok(())
    }

    /// Whether the daemon is shutting down.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The storage driver in use.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Unmounts everything the engine mounted (daemon shutdown). Running
    /// containers keep running under their shims (live restore).
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.networks.shutdown();
        if let Err(e) = self.driver.cleanup() {
            tracing::warn!("storage driver cleanup: {e}");
        }
    }
}
