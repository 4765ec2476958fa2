//! The rest of what can be done to a container: attach, resize, top, diff
//! (changes), export, commit, rename, update and prune.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ChangeType, ContainerPruneResponse, ContainerTopResponse, ContainerUpdateBody,
    ContainerUpdateResponse, EventMessageTypeEnum, FilesystemChange, ImageConfig,
};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::hub::{detach_keys, session_stdin, subscribe};
use super::lifecycle::blocking_err;
use super::record::Status;
use super::store::ContainerHandle;
use super::streams::{AttachOptions, AttachSession, StdStream};
use super::{CommitOptions, LogsOptions};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::filters::Filters;
use crate::images::config::{timestamp, HistoryEntry, ImageConfigFile, RootFs};
use crate::images::store::ImageMeta;
use crate::images::{apply_changes, ImageRef};
use crate::progress::{byte_channel, ByteStream};

fn not_running(id: &str) -> EngineError {
    EngineError::Conflict(format!("Container {id} is not running"))
}

impl Engine {
    /// The body of `attach_container`.
    pub(crate) async fn attach_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        opts: AttachOptions,
    ) -> Result<AttachSession> {
        let c = handle.snapshot();
        let tty = c.config.tty.unwrap_or(false);
        let keys = detach_keys(opts.detach_keys.as_deref(), tty)?;
        let (detach_tx, detach_rx) = watch::channel(false);
        let detach_tx_watch = detach_tx.subscribe();
        let mut parts = Vec::new();
        if opts.logs && (opts.stdout || opts.stderr) {
            let (_, logs) = self
                .logs_handle(
                    handle,
                    LogsOptions {
                        stdout: opts.stdout,
                        stderr: opts.stderr,
                        ..Default::default()
                    },
                )
                .await?;
            parts.push(logs);
        }
        if opts.stream && (opts.stdout || opts.stderr) {
            let watch = handle.watch.subscribe();
            let at = *watch.borrow();
            let state = handle.watch.subscribe();
            // Live output ends with the next exit of the process.
            let until = move || {
                let w = *state.borrow();
                w.exits > at.exits || w.removed
            };
            let (want_out, want_err) = (opts.stdout, opts.stderr);
            let live = subscribe(handle.output.subscribe(), until, watch, Some(detach_rx))
                .filter(move |c| {
                    let keep = match c.stream {
                        StdStream::Stderr => want_err,
                        _ => want_out,
                    };
                    std::future::ready(keep)
                })
                .boxed();
            parts.push(live);
        }
        let output = if parts.is_empty() {
            None
        } else {
            Some(futures_util::stream::iter(parts).flatten().boxed())
        };
        let stdin = if opts.stdin && c.config.open_stdin.unwrap_or(false) && opts.stream {
            let h = Arc::clone(handle);
            Some(session_stdin(
                move || h.hub(),
                handle.watch.subscribe(),
                keys,
                detach_tx,
            ))
        } else {
            None
        };
        if stdin.is_some() {
            // dockerd's `detach` event: the session's detach keys were typed.
            // The wait ends with the session (its sender dropped) otherwise.
            let mut detached = detach_tx_watch;
            let (engine, handle) = (Arc::clone(self), Arc::clone(handle));
            tokio::spawn(async move {
                if detached.wait_for(|d| *d).await.is_ok() {
                    engine.publish_container(&handle.snapshot(), "detach", &[]);
                }
            });
        }
        self.publish_container(&c, "attach", &[]);
        Ok(AttachSession { tty, output, stdin })
    }

    /// The body of `resize_container`.
    pub(crate) async fn resize_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        h: u16,
        w: u16,
    ) -> Result<()> {
        let c = handle.snapshot();
        if !c.state.status.is_alive() {
            return Err(not_running(&c.id));
        }
        self.runtime.resize(&self.init_process(&c.id), h, w).await?;
        self.publish_container(
            &c,
            "resize",
            &[("height", h.to_string()), ("width", w.to_string())],
        );
        Ok(())
    }

    /// The body of `top_container`: `ps` on the host, cut to the
    /// container's processes, as dockerd does.
    pub(crate) async fn top_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        ps_args: Option<String>,
    ) -> Result<ContainerTopResponse> {
        let c = handle.snapshot();
        if !c.state.status.is_alive() {
            return Err(not_running(&c.id));
        }
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let args = ps_args
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "-ef".into());
        let result = tokio::task::spawn_blocking(move || -> Result<ContainerTopResponse> {
            let pids = engine.runtime.pids(&id)?;
            let words = shell_words::split(&args)
                .map_err(|e| EngineError::InvalidParameter(format!("invalid ps arguments: {e}")))?;
            let out = std::process::Command::new("ps")
                .args(&words)
                .output()
                .map_err(|e| EngineError::io("run ps", e))?;
            if !out.status.success() {
                return Err(EngineError::Internal(format!(
                    "ps: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
        })
        .await
        .map_err(blocking_err)??;
        self.publish_container(&c, "top", &[]);
        Ok(result)
    }

    /// The body of `container_changes`.
    pub(crate) async fn changes_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
    ) -> Result<Vec<FilesystemChange>> {
        let engine = Arc::clone(self);
        let id = handle.id.clone();
        let changes = tokio::task::spawn_blocking(move || engine.layers.rw_changes(&id))
            .await
            .map_err(blocking_err)??;
        Ok(changes
            .into_iter()
            .map(|c| FilesystemChange {
                path: c.path.display().to_string(),
                kind: match c.kind {
                    berth_storage::archive::ChangeKind::Modify => ChangeType::_0,
                    berth_storage::archive::ChangeKind::Add => ChangeType::_1,
                    berth_storage::archive::ChangeKind::Delete => ChangeType::_2,
                },
            })
            .collect())
    }

    /// The body of `export_container`.
    pub(crate) async fn export_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
    ) -> Result<ByteStream> {
        let c = handle.snapshot();
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let root = tokio::task::spawn_blocking(move || engine.layers.mount_rw(&id))
            .await
            .map_err(blocking_err)??;
        let (mut writer, stream) = byte_channel();
        let engine = Arc::clone(self);
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || {
            let result = berth_storage::archive::changes_between(None, &root).and_then(|changes| {
                berth_storage::archive::write_changes(
                    &root,
                    &changes,
                    &mut writer,
                    engine.layers.id_map(),
                )
            });
            let _ = engine.layers.unmount_rw(&id);
            if let Err(e) = result {
                writer.fail(std::io::Error::other(e.to_string()));
            }
        });
        self.publish_container(&c, "export", &[]);
        Ok(stream)
    }

    /// The body of `commit_container`.
    pub(crate) async fn commit_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        opts: CommitOptions,
    ) -> Result<String> {
        let c = handle.snapshot();
        let tag = match opts.repo.as_deref().filter(|r| !r.is_empty()) {
            Some(repo) => Some(ImageRef::with_tag(repo, opts.tag.as_deref())?),
            None => None,
        };
        let base = opts.config.clone().unwrap_or_else(|| c.config.clone());
        let mut config = ImageConfig {
            user: base.user.clone().or(c.config.user.clone()),
            exposed_ports: base
                .exposed_ports
                .clone()
                .or(c.config.exposed_ports.clone()),
            env: base.env.clone().or(c.config.env.clone()),
            cmd: base.cmd.clone().or(c.config.cmd.clone()),
            healthcheck: base.healthcheck.clone().or(c.config.healthcheck.clone()),
            args_escaped: base.args_escaped.or(c.config.args_escaped),
            volumes: base.volumes.clone().or(c.config.volumes.clone()),
            working_dir: base.working_dir.clone().or(c.config.working_dir.clone()),
            entrypoint: base.entrypoint.clone().or(c.config.entrypoint.clone()),
            on_build: base.on_build.clone().or(c.config.on_build.clone()),
            labels: base.labels.clone().or(c.config.labels.clone()),
            stop_signal: base.stop_signal.clone().or(c.config.stop_signal.clone()),
            shell: base.shell.clone().or(c.config.shell.clone()),
        };
        apply_changes(&mut config, &opts.changes)?;
        let parent = self
            .images
            .get(&c.image_id)
            .ok_or_else(|| EngineError::NotFound(format!("No such image: {}", c.image_id)))?;
        let paused = opts.pause && c.state.status == Status::Running;
        if paused {
            let engine = Arc::clone(self);
            let id = c.id.clone();
            tokio::task::spawn_blocking(move || engine.runtime.pause(&id))
                .await
                .map_err(blocking_err)??;
        }
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let parent_top = parent.top_layer.clone();
        let layer = tokio::task::spawn_blocking(move || -> Result<berth_storage::LayerInfo> {
            let scratch = crate::scratch::ScratchDir::new(&engine.config.data_root, "commit")?;
            let diff_path = scratch.path().join("layer.tar");
            let mut file = std::fs::File::create(&diff_path)
                .map_err(|e| EngineError::io("create commit diff", e))?;
            engine.layers.rw_diff(&id, &mut file)?;
            drop(file);
            let mut file = std::fs::File::open(&diff_path)
                .map_err(|e| EngineError::io("read commit diff", e))?;
            Ok(engine
                .layers
                .register(parent_top.as_deref(), &mut file, None)?)
        })
        .await
        .map_err(blocking_err);
        if paused {
            let engine = Arc::clone(self);
            let id = c.id.clone();
            let _ = tokio::task::spawn_blocking(move || engine.runtime.resume(&id)).await;
        }
        let layer = layer??;
        let now = timestamp(chrono::Utc::now());
        let mut history = parent.config.history.clone();
        let mut created_by = c.path.clone();
        for a in &c.args {
            created_by.push(' ');
            created_by.push_str(a);
        }
        history.push(HistoryEntry {
            created: Some(now.clone()),
            created_by: Some(created_by),
            author: opts.author.clone().filter(|a| !a.is_empty()),
            comment: opts.comment.clone().filter(|a| !a.is_empty()),
            empty_layer: false,
        });
        let mut diff_ids = parent.config.rootfs.diff_ids.clone();
        diff_ids.push(layer.diff_id.clone());
        let image_config = ImageConfigFile {
            architecture: Some("amd64".into()),
            os: Some("linux".into()),
            created: Some(now),
            author: opts.author.clone().filter(|a| !a.is_empty()),
            comment: opts.comment.clone().filter(|a| !a.is_empty()),
            container: Some(c.id.clone()),
            docker_version: Some(format!("berth {}", crate::VERSION)),
            config: Some(config),
            history,
            rootfs: RootFs {
                typ: "layers".into(),
                diff_ids,
            },
            ..Default::default()
        };
        let raw =
            serde_json::to_vec(&image_config).map_err(|e| EngineError::Internal(e.to_string()))?;
        let image = {
            let _guard = self.image_lock();
            let meta = ImageMeta {
                parent: Some(c.image_id.clone()),
                ..Default::default()
            };
            let (image, is_new) = match self.images.add(raw, image_config, meta) {
                Ok(v) => v,
                Err(e) => {
                    self.release_layers(std::slice::from_ref(&layer.chain_id));
                    return Err(e);
                }
            };
            if !is_new {
                self.release_layers(std::slice::from_ref(&layer.chain_id));
            }
            if let Some(t) = &tag {
                self.images.tag(&image.id, t)?;
                self.touch_tag_time(&image.id)?;
            }
            image
        };
        let image_ref = tag.as_ref().map(ImageRef::familiar).unwrap_or_default();
        self.publish_container(
            &c,
            "commit",
            &[
                ("comment", opts.comment.clone().unwrap_or_default()),
                ("imageID", image.id.clone()),
                ("imageRef", image_ref.clone()),
            ],
        );
        if tag.is_some() {
            self.publish_image(EventMessageTypeEnum::IMAGE, "tag", &image.id, &image_ref);
        }
        Ok(image.id)
    }

    /// The body of `rename_container`.
    pub(crate) async fn rename_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        name: &str,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(EngineError::InvalidParameter(
                "Neither old nor new names may be empty".into(),
            ));
        }
        let new_name = super::store::validate_name(name)?;
        let _op = handle.op.lock().await;
        let old = handle.lock().name.clone();
        if old == new_name {
            return Err(EngineError::InvalidParameter(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        self.containers.rename(&handle.id, &old, &new_name)?;
        let record = {
            let mut r = handle.lock();
            r.name = new_name;
            r.clone()
        };
        handle.persist(&self.config.data_root)?;
        self.publish_container(&record, "rename", &[("oldName", old)]);
        Ok(())
    }

    /// The body of `update_container`: new limits and restart policy are
    /// recorded; a running container gets them through the runtime.
    pub(crate) async fn update_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        body: ContainerUpdateBody,
    ) -> Result<ContainerUpdateResponse> {
        let _op = handle.op.lock().await;
        let mut host = handle.snapshot().host_config;
        macro_rules! take {
            ($($f:ident),*) => { $( if body.$f.is_some() { host.$f = body.$f.clone(); } )* };
        }
        take!(
            cpu_shares,
            memory,
            cgroup_parent,
            blkio_weight,
            cpu_period,
            cpu_quota,
            cpu_realtime_period,
            cpu_realtime_runtime,
            cpuset_cpus,
            cpuset_mems,
            memory_reservation,
            memory_swap,
            memory_swappiness,
            nano_cpus,
            pids_limit,
            ulimits,
            oom_kill_disable,
            restart_policy
        );
        super::create::validate_host_config(&host)?;
        let running = handle.snapshot().state.status.is_alive();
        if running {
            let resources = update_resources(&host)?;
            let engine = Arc::clone(self);
            let id = handle.id.clone();
            tokio::task::spawn_blocking(move || engine.runtime.update(&id, &resources))
                .await
                .map_err(blocking_err)??;
        }
        let record = {
            let mut r = handle.lock();
            r.host_config = host;
            r.clone()
        };
        handle.persist(&self.config.data_root)?;
        self.publish_container(&record, "update", &[]);
        Ok(ContainerUpdateResponse {
            warnings: Some(Vec::new()),
        })
    }

    /// The body of `prune_containers`.
    pub(crate) async fn prune_handles(
        self: &Arc<Self>,
        filters: &Filters,
    ) -> Result<ContainerPruneResponse> {
        filters.validate(&["until", "label", "label!"])?;
        let until = match filters.get("until") {
            [] => None,
            [one] => Some(crate::filters::parse_timestamp(one)?),
            _ => {
                return Err(EngineError::InvalidParameter(
                    "more than one until filter specified".into(),
                ))
            }
        };
        let mut deleted = Vec::new();
        let mut reclaimed: u64 = 0;
        for handle in self.containers.all() {
            let c = handle.snapshot();
            if c.state.status.is_alive() || c.state.status == Status::Restarting {
                continue;
            }
            if until.is_some_and(|u| c.created.timestamp() >= u) {
                continue;
            }
            let labels = c.config.labels.clone().unwrap_or_default();
            let get = |k: &str| labels.get(k).map(String::as_str);
            if !filters.match_labels("label", get) {
                continue;
            }
            if filters
                .get("label!")
                .iter()
                .any(|want| match want.split_once('=') {
                    Some((k, v)) => get(k) == Some(v),
                    None => get(want).is_some(),
                })
            {
                continue;
            }
            let size = self.layers.rw_usage(&c.id).map(|u| u.size).unwrap_or(0);
            match self.remove_handle(&handle, false, false).await {
                Ok(()) => {
                    reclaimed += size;
                    deleted.push(c.id.clone());
                }
                Err(e) => tracing::warn!("pruning {}: {e}", c.id),
            }
        }
        let mut attrs = HashMap::new();
        attrs.insert("reclaimed".to_string(), reclaimed.to_string());
        self.events
            .publish(EventMessageTypeEnum::CONTAINER, "prune", "", attrs);
        Ok(ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed as i64),
        })
    }
}

/// The cgroup limits `docker update` can change on a running container.
fn update_resources(
    host: &bollard_stubs::models::HostConfig,
) -> Result<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    let err = |e: oci_spec::OciSpecError| EngineError::Internal(format!("resources: {e}"));
    let mut memory = LinuxMemoryBuilder::default();
    if let Some(m) = host.memory.filter(|m| *m > 0) {
        memory = memory.limit(m);
    }
    if let Some(s) = host.memory_swap.filter(|s| *s != 0) {
        memory = memory.swap(s);
    }
    if let Some(r) = host.memory_reservation.filter(|r| *r > 0) {
        memory = memory.reservation(r);
    }
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(shares) = host.cpu_shares.filter(|s| *s > 0) {
        cpu = cpu.shares(shares as u64);
    }
    match host.nano_cpus.filter(|n| *n > 0) {
        Some(nano) => {
            cpu = cpu.period(100_000u64).quota(nano / 10_000);
        }
        None => {
            if let Some(p) = host.cpu_period.filter(|p| *p > 0) {
                cpu = cpu.period(p as u64);
            }
            if let Some(q) = host.cpu_quota.filter(|q| *q != 0) {
                cpu = cpu.quota(q);
            }
        }
    }
    if let Some(c) = host.cpuset_cpus.clone().filter(|c| !c.is_empty()) {
        cpu = cpu.cpus(c);
    }
    if let Some(m) = host.cpuset_mems.clone().filter(|m| !m.is_empty()) {
        cpu = cpu.mems(m);
    }
    let mut res = LinuxResourcesBuilder::default()
        .memory(memory.build().map_err(err)?)
        .cpu(cpu.build().map_err(err)?);
    if let Some(p) = host.pids_limit.filter(|p| *p != 0) {
        res = res.pids(LinuxPidsBuilder::default().limit(p).build().map_err(err)?);
    }
    res.build().map_err(err)
}

/// Cuts `ps` output to the rows whose PID column is one of `pids`.
fn parse_ps(output: &str, pids: &[u32]) -> Result<ContainerTopResponse> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let pid_col = titles.iter().position(|t| t == "PID").ok_or_else(|| {
        EngineError::InvalidParameter("Couldn't find PID field in ps output".into())
    })?;
    let mut processes = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) may contain spaces.
        let n = titles.len();
        let mut row: Vec<String> = fields.iter().take(n - 1).map(|s| s.to_string()).collect();
        row.push(
            fields
                .iter()
                .skip(n - 1)
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        );
        processes.push(row);
    }
    Ok(ContainerTopResponse {
        titles: Some(titles),
        processes: Some(processes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_ps_output_to_the_container() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\nroot 42 1 0 10:01 ? 00:00:00 sleep 100\n";
        let top = parse_ps(out, &[42]).unwrap();
        assert_eq!(top.titles.unwrap().len(), 8);
        let procs = top.processes.unwrap();
        assert_eq!(procs.len(), 1);
        assert_eq!(procs[0][7], "sleep 100");
    }
}
