//! Client-library compatibility: one scenario (ping, version, info, image
//! load/list/inspect/remove, volumes, container create/start/wait/logs,
//! exec, one stats sample, system df, events with a filter) through
//! docker-py (PyPI `docker`, in a venv under target/) and through bollard,
//! each over the unix socket and over TCP with mutual TLS.

mod remote;
#[allow(unused_macros)] // this file runs on one driver, not per driver
mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_testkit::{busybox, Daemon};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DataUsageOptions, EventsOptions, ImportImageOptions,
    ListContainersOptions, ListImagesOptions, ListVolumesOptions, LogsOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions, StatsOptions,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};
use support::Backend;

/// How the scenario reaches the daemon.
enum Transport {
    Unix,
    MutualTls,
}

/// berthd (vfs) with its socket and, for TLS, a TCP listener requiring
/// client certificates; the certificates' directory is kept alive with it.
struct Target {
    daemon: Daemon,
    tls: Option<(berth::tls::Files, u16)>,
    _certs: Option<tempfile::TempDir>,
}

fn target(transport: Transport) -> Target {
    match transport {
        Transport::Unix => Target {
            daemon: Backend::Vfs.daemon(),
            tls: None,
            _certs: None,
        },
        Transport::MutualTls => {
            let certs = remote::cert_dir();
            let files = remote::pki(certs.path());
            let daemon = remote::with_tls(Backend::Vfs.builder(), &files).start();
            let port = remote::tcp_port(&daemon);
            Target {
                daemon,
                tls: Some((files, port)),
                _certs: Some(certs),
            }
        }
    }
}

/// The busybox test image as a docker-save tarball.
fn image_tar() -> Vec<u8> {
    busybox::image()
        .expect("busybox-static test image (apt-get install busybox-static)")
        .build()
        .bytes
}

#[test]
fn docker_py_over_unix() {
    docker_py(Transport::Unix);
}

#[test]
fn docker_py_over_mutual_tls() {
    docker_py(Transport::MutualTls);
}

#[test]
fn bollard_over_unix() {
    bollard(Transport::Unix);
}

#[test]
fn bollard_over_mutual_tls() {
    bollard(Transport::MutualTls);
}

fn docker_py(transport: Transport) {
    let python = docker_py_venv();
    let t = target(transport);
    let tar = t.daemon.scratch_dir().join("busybox.tar");
    std::fs::write(&tar, image_tar()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/docker_py_scenario.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--image-tar")
        .arg(&tar)
        .args(["--image", busybox::IMAGE]);
    match &t.tls {
        None => {
            cmd.args(["--host", t.daemon.host()]);
        }
        Some((files, port)) => {
            cmd.args(["--host", &format!("https://127.0.0.1:{port}")])
                .arg("--tls-ca")
                .arg(&files.ca_cert)
                .arg("--tls-cert")
                .arg(&files.client_cert)
                .arg("--tls-key")
                .arg(&files.client_key);
        }
    }
    // Nothing from the caller's docker environment. requests lets
    // REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the CA docker-py sets
    // on its session (psf/requests#3829), which would make it distrust the
    // daemon's CA.
    for var in [
        "DOCKER_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("docker-py scenario:\n{text}");
    assert!(out.status.success(), "docker-py scenario failed:\n{text}");
    assert!(text.contains("all steps passed"), "{text}");
}

/// A venv with docker-py under target/, made once and shared by the tests
/// (a lock file orders concurrent tests). `BERTH_TEST_PYTHON` picks the
/// interpreter that makes it (default `python3`).
fn docker_py_venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docker-py-venv");
    let python = dir.join("bin/python");
    let lock_file = std::fs::File::create(dir.with_extension("lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the docker-py venv");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import docker"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && ready(&python) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let base = std::env::var("BERTH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let made = Command::new(&base)
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("{base} -m venv (install python3-venv): {e}"));
    assert!(made.success(), "{base} -m venv {} failed", dir.display());
    let pip = Command::new(dir.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "docker>=7,<8",
        ])
        .status()
        .expect("pip install docker");
    assert!(pip.success(), "pip install docker failed");
    assert!(ready(&python), "docker-py does not import after install");
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
    python
}

fn bollard(transport: Transport) {
    let t = target(transport);
    // Both rustls providers may be compiled into this test binary (other
    // crates in the graph choose theirs); bollard needs a default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let docker = match &t.tls {
        None => Docker::connect_with_unix(t.daemon.host(), 120, bollard::API_DEFAULT_VERSION),
        Some((files, port)) => Docker::connect_with_ssl(
            &format!("tcp://127.0.0.1:{port}"),
            &files.client_key,
            &files.client_cert,
            &files.ca_cert,
            120,
            bollard::API_DEFAULT_VERSION,
        ),
    }
    .expect("bollard client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // bollard speaks API 1.53 unless told otherwise; berth serves up to
    // 1.47, so negotiate as bollard's documentation says to.
    let docker = runtime
        .block_on(docker.negotiate_version())
        .expect("bollard negotiates the API version");
    let results = runtime.block_on(bollard_scenario(&docker, image_tar()));
    let mut report = String::new();
    for (step, result) in &results {
        match result {
            Ok(()) => report.push_str(&format!("ok {step}\n")),
            Err(e) => report.push_str(&format!("FAIL {step}: {e}\n")),
        }
    }
    eprintln!("bollard scenario:\n{report}");
    assert!(
        results.iter().all(|(_, r)| r.is_ok()),
        "bollard scenario failed:\n{report}"
    );
}

type Step = Result<(), String>;

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Step {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn err(e: bollard::errors::Error) -> String {
    e.to_string()
}

/// The scenario; every step runs (as far as it can) and reports.
async fn bollard_scenario(docker: &Docker, tar: Vec<u8>) -> Vec<(&'static str, Step)> {
    let mut results: Vec<(&'static str, Step)> = Vec::new();
    let image = busybox::IMAGE;
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;

    let step = async {
        let pong = docker.ping().await.map_err(err)?;
        ensure(pong == "OK", || format!("ping answered {pong:?}"))
    };
    results.push(("ping", step.await));

    let step = async {
        let v = docker.version().await.map_err(err)?;
        ensure(v.api_version.is_some(), || format!("no ApiVersion: {v:?}"))?;
        ensure(v.os.as_deref() == Some("linux"), || {
            format!("Os {:?}", v.os)
        })
    };
    results.push(("version", step.await));

    let step = async {
        let i = docker.info().await.map_err(err)?;
        ensure(i.driver.as_deref() == Some("vfs"), || {
            format!("Driver {:?}", i.driver)
        })
    };
    results.push(("info", step.await));

    let step = async {
        let progress: Vec<_> = docker
            .import_image(
                ImportImageOptions::default(),
                bollard::body_full(tar.into()),
                None,
            )
            .try_collect()
            .await
            .map_err(err)?;
        let text = format!("{progress:?}");
        ensure(text.contains(&format!("Loaded image: {image}")), || text)
    };
    results.push(("image load", step.await));

    let step = async {
        let listed = docker
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(err)?;
        ensure(
            listed
                .iter()
                .any(|i| i.repo_tags.iter().any(|t| t == image)),
            || format!("image list {listed:?}"),
        )?;
        let inspect = docker.inspect_image(image).await.map_err(err)?;
        ensure(
            inspect
                .id
                .as_deref()
                .is_some_and(|id| id.starts_with("sha256:")),
            || format!("image id {:?}", inspect.id),
        )?;
        let cmd = inspect.config.and_then(|c| c.cmd);
        ensure(cmd == Some(vec!["sh".to_string()]), || {
            format!("Cmd {cmd:?}")
        })
    };
    results.push(("images list and inspect", step.await));

    let step = async {
        let v = docker
            .create_volume(VolumeCreateRequest {
                name: Some("compat-vol".into()),
                labels: Some(HashMap::from([("suite".into(), "bollard".into())])),
                ..Default::default()
            })
            .await
            .map_err(err)?;
        ensure(v.name == "compat-vol", || v.name.clone())?;
        let listed = docker
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .map_err(err)?;
        ensure(
            listed
                .volumes
                .unwrap_or_default()
                .iter()
                .any(|v| v.name == "compat-vol"),
            || "volume not listed".into(),
        )?;
        let inspected = docker.inspect_volume("compat-vol").await.map_err(err)?;
        ensure(
            inspected.labels.get("suite").map(String::as_str) == Some("bollard"),
            || format!("labels {:?}", inspected.labels),
        )
    };
    results.push(("volume create, list, inspect", step.await));

    let step = async {
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some("compat-once".into()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(image.into()),
                    cmd: Some(
                        [
                            "sh",
                            "-c",
                            "echo hello from bollard; echo to stderr >&2; echo kept > /v/f",
                        ]
                        .map(String::from)
                        .to_vec(),
                    ),
                    host_config: Some(HostConfig {
                        binds: Some(vec!["compat-vol:/v".into()]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        docker
            .start_container("compat-once", None)
            .await
            .map_err(err)?;
        let waited: Vec<_> = docker
            .wait_container("compat-once", None)
            .try_collect()
            .await
            .map_err(err)?;
        ensure(waited.first().is_some_and(|w| w.status_code == 0), || {
            format!("wait {waited:?}")
        })?;
        let logs: Vec<_> = docker
            .logs(
                "compat-once",
                Some(LogsOptions {
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .try_collect()
            .await
            .map_err(err)?;
        let (mut out, mut errs) = (String::new(), String::new());
        for l in logs {
            match l {
                bollard::container::LogOutput::StdOut { message } => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                bollard::container::LogOutput::StdErr { message } => {
                    errs.push_str(&String::from_utf8_lossy(&message))
                }
                other => return Err(format!("unexpected log frame {other:?}")),
            }
        }
        ensure(out == "hello from bollard\n", || format!("stdout {out:?}"))?;
        ensure(errs == "to stderr\n", || format!("stderr {errs:?}"))
    };
    results.push(("container create, start, wait, logs", step.await));

    let step = async {
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some("compat-sleeper".into()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(image.into()),
                    cmd: Some(vec!["sleep".into(), "300".into()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        docker
            .start_container("compat-sleeper", None)
            .await
            .map_err(err)?;
        let exec = docker
            .create_exec(
                "compat-sleeper",
                ExecConfig {
                    cmd: Some(vec!["sh".into(), "-c".into(), "echo exec says hi".into()]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        let started = docker.start_exec(&exec.id, None).await.map_err(err)?;
        let bollard::exec::StartExecResults::Attached { output, .. } = started else {
            return Err("exec started detached".into());
        };
        let frames: Vec<_> = output.try_collect().await.map_err(err)?;
        let text: String = frames.iter().map(ToString::to_string).collect();
        ensure(text == "exec says hi\n", || format!("exec output {text:?}"))?;
        let inspected = docker.inspect_exec(&exec.id).await.map_err(err)?;
        ensure(inspected.exit_code == Some(0), || {
            format!("exec exit {:?}", inspected.exit_code)
        })
    };
    results.push(("exec", step.await));

    let step = async {
        let sample = docker
            .stats(
                "compat-sleeper",
                Some(StatsOptions {
                    stream: false,
                    one_shot: false,
                }),
            )
            .next()
            .await
            .ok_or("no stats sample")?
            .map_err(err)?;
        let usage = sample.memory_stats.as_ref().and_then(|m| m.usage);
        ensure(usage.is_some_and(|u| u > 0), || format!("memory {usage:?}"))?;
        ensure(sample.cpu_stats.is_some(), || "no cpu_stats".into())
    };
    results.push(("stats one sample", step.await));

    let step = async {
        // bollard's model has only the API 1.52 shape (ImageUsage, ...);
        // at the negotiated 1.47 berth answers with dockerd's 1.47 shape
        // (LayersSize, Images, ...), which that model cannot show. What a
        // bollard user gets: a successful call with those fields empty.
        let df = docker.df(None::<DataUsageOptions>).await.map_err(err)?;
        ensure(df.image_usage.is_none(), || {
            format!("1.52 fields at API 1.47: {df:?}")
        })
    };
    results.push(("system df", step.await));

    let step = async {
        for name in ["compat-sleeper", "compat-once"] {
            docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await
                .map_err(err)?;
        }
        docker
            .remove_volume("compat-vol", None::<RemoveVolumeOptions>)
            .await
            .map_err(err)?;
        let left = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(err)?;
        ensure(left.is_empty(), || format!("containers left: {left:?}"))
    };
    results.push(("container and volume remove", step.await));

    let step = async {
        let until = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1;
        let seen: Vec<_> = docker
            .events(Some(EventsOptions {
                since: Some(t0.to_string()),
                until: Some(until.to_string()),
                filters: Some(HashMap::from([
                    ("type".to_string(), vec!["container".to_string()]),
                    ("event".to_string(), vec!["start".to_string()]),
                ])),
            }))
            .try_collect()
            .await
            .map_err(err)?;
        let mut names: Vec<String> = seen
            .iter()
            .filter_map(|e| e.actor.as_ref()?.attributes.as_ref()?.get("name").cloned())
            .collect();
        names.sort();
        ensure(names == ["compat-once", "compat-sleeper"], || {
            format!("start events for {names:?}")
        })?;
        ensure(
            seen.iter().all(|e| e.action.as_deref() == Some("start")),
            || "other actions passed the filter".into(),
        )
    };
    results.push(("events with a filter", step.await));

    let step = async {
        docker
            .remove_image(image, None::<RemoveImageOptions>, None)
            .await
            .map_err(err)?;
        let listed = docker
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(err)?;
        ensure(
            !listed
                .iter()
                .any(|i| i.repo_tags.iter().any(|t| t == image)),
            || format!("still listed: {listed:?}"),
        )
    };
    results.push(("image remove", step.await));

    results
}
