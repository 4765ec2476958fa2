//! `docker create`: validating the request in dockerd's words, merging the
//! image's defaults into the container config, making the writable layer,
//! resolving binds, volumes and tmpfs mounts, and writing the files the
//! container gets bind-mounted (/etc/hostname, /etc/hosts, resolv.conf).
//!
//! This file runs a create from request to record (and undoes a half-made
//! one); the steps are beside it: `host_config` (resource and policy
//! checks), `image_defaults` (dockerd's merge of the image config),
//! `mounts` (binds, mounts, tmpfs and image volumes) and `init_files` (the
//! init layer and the first /etc files).

mod host_config;
mod image_defaults;
mod init_files;
mod mounts;

pub use host_config::validate_host_config;
pub use image_defaults::merge_image_config;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_storage::RwLayerOpts;
use bollard_stubs::models::{
    ContainerConfig, ContainerCreateBody, ContainerCreateResponse, HostConfig, VolumeCreateRequest,
};

use super::record::{Container, ContainerPaths, RunState};
use super::store::{generate_name, validate_name, ContainerHandle};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use init_files::{fill_init_layer, hosts_for, resolv_conf_for};
use mounts::requested_mounts;

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

/// Splits a create body into the container config and host config.
fn split_body(body: ContainerCreateBody) -> (ContainerConfig, HostConfig) {
    let host = body.host_config.unwrap_or_default();
    let config = ContainerConfig {
        hostname: body.hostname,
        domainname: body.domainname,
        user: body.user,
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        exposed_ports: body.exposed_ports,
        tty: body.tty,
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        env: body.env,
        cmd: body.cmd,
        healthcheck: body.healthcheck,
        args_escaped: body.args_escaped,
        image: body.image,
        volumes: body.volumes,
        working_dir: body.working_dir,
        entrypoint: body.entrypoint,
        network_disabled: body.network_disabled,
        on_build: body.on_build,
        labels: body.labels,
        stop_signal: body.stop_signal,
        stop_timeout: body.stop_timeout,
        shell: body.shell,
    };
    (config, host)
}

impl Engine {
    /// The body of `create_container`.
    pub(crate) async fn create_container_impl(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        let networking = body.networking_config.clone();
        let (mut config, host) = split_body(body);
        let image_name = config.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(bad("Config cannot be empty in order to create a container"));
        }
        let image = self.images.resolve(&image_name)?;
        validate_host_config(&host)?;
        crate::containers::health::validate(config.healthcheck.as_ref())?;
        let networks = self.plan_networks(&host, networking.as_ref())?;
        crate::runtime::spec::check_isolation(&host, &self.security)?;
        let id = berth_storage::random_id();
        // The name is held from here on: two racing creates cannot both get
        // it (a generated one is drawn again).
        let (name, _reserved) = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let name = validate_name(&n)?;
                let reserved = self.containers.reserve_name(&name, &id)?;
                (name, reserved)
            }
            None => loop {
                let name = format!("/{}", generate_name(&self.containers));
                if let Ok(reserved) = self.containers.reserve_name(&name, &id) {
                    break (name, reserved);
                }
            },
        };
        if let Some(img_cfg) = &image.config.config {
            merge_image_config(&mut config, img_cfg);
        }
        let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.cmd.clone().unwrap_or_default());
        if argv.is_empty() {
            return Err(bad("No command specified"));
        }
        let runtime = host
            .runtime
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| self.config.default_runtime.clone());
        if !self.config.runtimes.contains_key(&runtime) {
            return Err(bad(format!("unknown or invalid runtime name: {runtime}")));
        }
        if config.hostname.as_deref().unwrap_or("").is_empty() {
            config.hostname = Some(if host.network_mode.as_deref() == Some("host") {
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned()
            } else {
                id[..12].to_string()
            });
        }
        let mounts = requested_mounts(&config, &host)?;
        let size = match host.storage_opt.as_ref().and_then(|o| o.get("size")) {
            Some(s) => Some(berth_storage::drivers::parse_size(s)?),
            None => None,
        };
        let paths = ContainerPaths::new(&self.config.data_root, &id);
        std::fs::create_dir_all(&paths.dir)
            .map_err(|e| EngineError::io(format!("create {}", paths.dir.display()), e))?;
        let engine = Arc::clone(self);
        let top = image.top_layer.clone();
        let layer_id = id.clone();
        let made = tokio::task::spawn_blocking(move || {
            let owner = engine.layers.id_map().root();
            engine.layers.create_rw_with_init(
                &layer_id,
                top.as_deref(),
                &RwLayerOpts { size },
                Some(&|root: &Path| fill_init_layer(root, owner)),
            )
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&paths.dir);
            return Err(e.into());
        }
        let container = Container {
            id: id.clone(),
            name,
            created: chrono::Utc::now(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config: host,
            image_id: image.id.clone(),
            state: RunState::default(),
            restart_count: 0,
            mounts,
            manually_stopped: false,
            has_been_started: false,
            runtime,
        };
        let engine = Arc::clone(self);
        let (result, container) = tokio::task::spawn_blocking(move || {
            let mut container = container;
            let result = engine.finish_create(&mut container, &paths);
            (result, container)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Err(e) = result {
            self.discard_container(&container).await;
            return Err(e);
        }
        if let Err(e) = self.adopt_networks(&container.id, networks) {
            self.discard_container(&container).await;
            return Err(e);
        }
        let handle = ContainerHandle::new(container.clone());
        if let Err(e) = self.containers.insert(handle) {
            self.discard_container(&container).await;
            return Err(e);
        }
        self.publish_container(&container, "create", &[]);
        Ok(ContainerCreateResponse {
            id,
            warnings: Vec::new(),
        })
    }

    /// Volumes, bind checks, the /etc files, and the record on disk.
    fn finish_create(&self, c: &mut Container, paths: &ContainerPaths) -> Result<()> {
        for m in c.mounts.iter_mut() {
            match m.kind.as_str() {
                "volume" => match m.name.clone() {
                    Some(name) => m.source = self.volume_acquire(&name, &c.id)?,
                    None => {
                        let v = self.volume_acquire_new(VolumeCreateRequest::default(), &c.id)?;
                        m.source = PathBuf::from(&v.mountpoint);
                        m.name = Some(v.name);
                    }
                },
                // `-v /host/path:/dst` creates a missing source, as dockerd does.
                "bind" if !m.source.exists() => {
                    std::fs::create_dir_all(&m.source).map_err(|e| {
                        bad(format!(
                            "error while creating mount source path '{}': {e}",
                            m.source.display()
                        ))
                    })?;
                }
                _ => {}
            }
        }
        let host_net = c.host_config.network_mode.as_deref() == Some("host");
        let hostname = c.config.hostname.clone().unwrap_or_default();
        let write = |p: PathBuf, data: String| {
            std::fs::write(&p, data)
                .map_err(|e| EngineError::io(format!("write {}", p.display()), e))
        };
        write(paths.hostname(), format!("{hostname}\n"))?;
        write(paths.hosts(), hosts_for(host_net, &hostname))?;
        write(paths.resolv_conf(), resolv_conf_for(host_net))?;
        write(paths.log(&c.id), String::new())?;
        self.copy_up_volumes(c)?;
        c.save(&self.config.data_root)
    }

    /// dockerd fills a new, empty volume with what the image has at its
    /// mount point when the container is created.
    fn copy_up_volumes(&self, c: &Container) -> Result<()> {
        let wanted: Vec<_> = c
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && !m.mode.split(',').any(|o| o == "nocopy"))
            .filter_map(|m| m.name.as_ref().map(|n| (n, &m.destination)))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rootfs = self.layers.mount_rw(&c.id)?;
        let result = wanted
            .iter()
            .try_for_each(|(name, dest)| self.volume_copy_up(name, &rootfs, dest));
        self.layers.unmount_rw(&c.id)?;
        result
    }

    /// Undoes a half-made container: volumes, layer, files.
    pub(crate) async fn discard_container(self: &Arc<Self>, c: &Container) {
        self.forget_networks(&c.id).await;
        for m in &c.mounts {
            if let (Some(name), "volume") = (&m.name, m.kind.as_str()) {
                if !m.source.as_os_str().is_empty() {
                    let _ = self.volume_release(name, &c.id);
                    if m.anonymous {
                        let _ = self.remove_volume(name, true).await;
                    }
                }
            }
        }
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let _ = tokio::task::spawn_blocking(move || engine.layers.remove_rw(&id)).await;
        let _ = std::fs::remove_dir_all(ContainerPaths::new(&self.config.data_root, &c.id).dir);
    }
}
