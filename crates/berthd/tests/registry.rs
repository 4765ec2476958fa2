//! Pull and push against Debian's `docker-registry` (distribution 2.8) on
//! loopback, driven by the real docker CLI: plain HTTP marked insecure,
//! TLS with a CA berthd is given plus htpasswd auth (`docker login`), a
//! hand-built multi-arch index, Docker Hub mirrors, and a registry killed
//! in the middle of a pull. Each test runs its own registry and berthd.

// This suite runs on vfs only: per_driver! is not used here.
#[allow(unused_macros)]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::archive::sha256_digest;
use berth_testkit::{busybox, Daemon};
use serde_json::{json, Value};
use support::{builder, image_ids, inspect, load, load_busybox};

/// One `docker-registry serve` on 127.0.0.1, killed when dropped.
struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Registry {
    /// A registry; with `auth`, TLS from a fresh CA and htpasswd `user`.
    fn start(auth: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "apt-get install docker-registry (scripts/system-packages)"
        );
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let mut extra = String::new();
        if let Some((user, password)) = auth {
            make_certs(dir.path());
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success());
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            extra = format!(
                "  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {d}/htpasswd\n",
                d = dir.path().display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut r = Registry {
            child: None,
            dir,
            port,
            tls: auth.is_some(),
        };
        r.resume();
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Starts (again) on the same port and storage.
    fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// curl against the registry's API (plain HTTP registries only).
    fn curl(&self, args: &[&str]) -> String {
        assert!(!self.tls);
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA and a server certificate for 127.0.0.1/localhost, via openssl.
fn make_certs(dir: &Path) {
    let d = |f: &str| dir.join(f);
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ])
        .arg("-keyout")
        .arg(d("ca.key"))
        .arg("-out")
        .arg(d("ca.crt")));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(d("server.key"))
        .arg("-out")
        .arg(d("server.csr")));
    std::fs::write(
        d("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(d("server.csr"))
        .arg("-CA")
        .arg(d("ca.crt"))
        .arg("-CAkey")
        .arg(d("ca.key"))
        .arg("-out")
        .arg(d("server.crt"))
        .arg("-extfile")
        .arg(d("ext.cnf")));
}

/// berthd on vfs in a scratch data root, with `args`.
fn daemon(args: &[String]) -> Daemon {
    let mut b = builder().storage_driver("vfs");
    for a in args {
        b = b.arg(a);
    }
    b.start()
}

/// The digest `docker push` printed for `tag`.
fn pushed_digest(out: &str, tag: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{tag}: digest: ")))
        .unwrap_or_else(|| panic!("no digest line for {tag} in:\n{out}"));
    line.split_whitespace().nth(2).unwrap().to_string()
}

#[test]
fn push_rmi_pull_over_insecure_http() {
    let reg = Registry::start(None);
    let host = reg.host();
    let d = daemon(&[
        "--insecure-registry".into(),
        host.clone(),
        "--registry-mirror".into(),
        format!("http://{host}"),
    ]);
    let image = load_busybox(&d);
    let repo = format!("{host}/busybox");
    let tagged = format!("{repo}:v1");
    d.docker(&["tag", busybox::IMAGE, &tagged]).ok();

    let out = d.docker(&["push", &tagged]).ok();
    assert!(
        out.stdout
            .contains(&format!("The push refers to repository [{repo}]")),
        "{out}"
    );
    assert!(out.stdout.contains(": Pushed"), "{out}");
    let digest = pushed_digest(&out.stdout, "v1");
    let by_digest = format!("{repo}@{digest}");
    let repo_digests = inspect(&d, &tagged)["RepoDigests"].clone();
    assert_eq!(repo_digests, json!([by_digest]));

    // Pushing again uploads nothing; the manifest is the same.
    let again = d.docker(&["push", &tagged]).ok();
    assert!(again.stdout.contains("Layer already exists"), "{again}");
    assert!(!again.stdout.contains(": Pushed"), "{again}");
    assert_eq!(pushed_digest(&again.stdout, "v1"), digest);
    // Another repository on the same registry mounts the blobs.
    let other = format!("{host}/other:v1");
    d.docker(&["tag", busybox::IMAGE, &other]).ok();
    let mounted = d.docker(&["push", &other]).ok();
    assert!(mounted.stdout.contains("Mounted from busybox"), "{mounted}");

    // What the registry holds is what berth sent.
    let manifest = reg.curl(&[
        "-H",
        "Accept: application/vnd.docker.distribution.manifest.v2+json",
        &format!("http://{host}/v2/busybox/manifests/v1"),
    ]);
    assert_eq!(sha256_digest(manifest.as_bytes()), digest);

    let since = chrono_now(&d);
    d.docker(&["rmi", "-f", &image.id]).ok();
    assert!(image_ids(&d).is_empty());
    let pulled = d.docker(&["pull", &tagged]).ok();
    for want in [
        "v1: Pulling from busybox",
        "Pulling fs layer",
        "Download complete",
        "Pull complete",
        &format!("Digest: {digest}"),
        &format!("Status: Downloaded newer image for {tagged}"),
    ] {
        assert!(pulled.stdout.contains(want), "no {want:?} in {pulled}");
    }
    assert_eq!(
        image_ids(&d).into_iter().collect::<Vec<_>>(),
        vec![image.id.clone()]
    );
    let info = inspect(&d, &tagged);
    assert_eq!(info["RepoDigests"], json!([by_digest]));
    let up_to_date = d.docker(&["pull", &tagged]).ok();
    assert!(
        up_to_date
            .stdout
            .contains(&format!("Status: Image is up to date for {tagged}")),
        "{up_to_date}"
    );

    // rmi of the repository's last tag takes its digest reference along
    // (dockerd's rule), so the image and its layers go with it.
    let removed = d.docker(&["rmi", &tagged]).ok();
    assert!(
        removed.stdout.contains(&format!("Untagged: {by_digest}")),
        "{removed}"
    );
    assert!(image_ids(&d).is_empty(), "{removed}");
    let pinned = d.docker(&["pull", &by_digest]).ok();
    assert!(
        pinned.stdout.contains(&format!("Digest: {digest}")),
        "{pinned}"
    );
    assert_eq!(inspect(&d, &by_digest)["Id"], json!(image.id));

    // docker events shows the pulls.
    let events = d
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &chrono_now(&d),
            "--filter",
            "event=pull",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"name\"}}",
        ])
        .ok();
    assert!(
        events
            .stdout
            .contains(&format!("image pull {tagged} {repo}")),
        "{events}"
    );
    assert!(
        events.stdout.contains(&format!("image pull {by_digest}")),
        "{events}"
    );

    // GET /distribution/{name}/json.
    let resp = d.api("GET", &format!("/distribution/{tagged}/json"), None);
    assert_eq!(resp.status, 200, "{resp:?}");
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(v["Descriptor"]["digest"], json!(digest));
    assert_eq!(v["Platforms"][0]["architecture"], json!("amd64"));

    // A Docker Hub name goes to the mirror first.
    d.docker(&["tag", &image.id, &format!("{host}/library/mirrored:v1")])
        .ok();
    d.docker(&["push", &format!("{host}/library/mirrored:v1")])
        .ok();
    d.docker(&["rmi", "-f", &image.id]).ok();
    let mirrored = d.docker(&["pull", "mirrored:v1"]).ok();
    assert!(
        mirrored
            .stdout
            .contains("Status: Downloaded newer image for mirrored:v1"),
        "{mirrored}"
    );
    assert_eq!(inspect(&d, "mirrored:v1")["Id"], json!(image.id));

    // Unknown tags are 404s in dockerd's words.
    let missing = d.docker(&["pull", &format!("{repo}:nope")]).failed();
    assert!(
        missing.stderr.contains(&format!(
            "manifest for {repo}:nope not found: manifest unknown"
        )),
        "{missing}"
    );
}

/// The daemon's clock as `docker events` wants it.
fn chrono_now(_d: &Daemon) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

#[test]
fn tls_registry_with_login() {
    let reg = Registry::start(Some(("berth", "s3cret")));
    let host = reg.host();
    let certs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(certs.path().join(&host)).unwrap();
    std::fs::copy(reg.ca(), certs.path().join(&host).join("ca.crt")).unwrap();
    let d = daemon(&[
        "--registry-certs-dir".into(),
        certs.path().display().to_string(),
    ]);
    let image = load_busybox(&d);
    let tagged = format!("{host}/secure/busybox:v1");
    d.docker(&["tag", busybox::IMAGE, &tagged]).ok();

    let denied = d.docker(&["push", &tagged]).failed();
    assert!(
        denied.to_string().contains("no basic auth credentials"),
        "{denied}"
    );
    let wrong = d
        .docker_stdin(
            &["login", &host, "-u", "berth", "--password-stdin"],
            b"wrong\n",
        )
        .failed();
    assert!(
        wrong.stderr.contains(&format!(
            "login attempt to https://{host}/v2/ failed with status: 401 Unauthorized"
        )),
        "{wrong}"
    );
    let ok = d
        .docker_stdin(
            &["login", &host, "-u", "berth", "--password-stdin"],
            b"s3cret\n",
        )
        .ok();
    assert!(ok.stdout.contains("Login Succeeded"), "{ok}");

    let out = d.docker(&["push", &tagged]).ok();
    let digest = pushed_digest(&out.stdout, "v1");
    d.docker(&["rmi", "-f", &image.id]).ok();
    let pulled = d.docker(&["pull", &tagged]).ok();
    assert!(
        pulled.stdout.contains(&format!("Digest: {digest}")),
        "{pulled}"
    );
    assert_eq!(inspect(&d, &tagged)["Id"], json!(image.id));

    d.docker(&["logout", &host]).ok();
    d.docker(&["rmi", "-f", &image.id]).ok();
    let anonymous = d.docker(&["pull", &tagged]).failed();
    assert!(
        anonymous.stderr.contains("no basic auth credentials"),
        "{anonymous}"
    );
}

#[test]
fn multi_arch_index_picks_amd64() {
    let reg = Registry::start(None);
    let host = reg.host();
    let d = daemon(&[]);
    let image = load_busybox(&d);
    let amd64 = format!("{host}/multi:amd64");
    d.docker(&["tag", busybox::IMAGE, &amd64]).ok();
    let out = d.docker(&["push", &amd64]).ok();
    let amd64_digest = pushed_digest(&out.stdout, "amd64");
    let amd64_manifest = reg.curl(&[
        "-H",
        "Accept: application/vnd.docker.distribution.manifest.v2+json",
        &format!("http://{host}/v2/multi/manifests/amd64"),
    ]);
    let m: Value = serde_json::from_str(&amd64_manifest).unwrap();

    // An arm64 image made by hand from the amd64 one's first layer.
    let diff_ids = inspect(&d, &amd64)["RootFS"]["Layers"].clone();
    let config = json!({
        "architecture": "arm64", "os": "linux", "variant": "v8",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_ids[0]]},
    })
    .to_string();
    let config_digest = sha256_digest(config.as_bytes());
    let location = reg
        .curl(&[
            "-X",
            "POST",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("http://{host}/v2/multi/blobs/uploads/"),
        ])
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .expect("upload location")
        .trim()
        .to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let location = if location.starts_with('/') {
        format!("http://{host}{location}")
    } else {
        location
    };
    reg.curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &config,
        &format!("{location}{sep}digest={config_digest}"),
    ]);
    let arm_manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": config.len(), "digest": config_digest},
        "layers": [m["layers"][0]],
    })
    .to_string();
    let arm_digest = sha256_digest(arm_manifest.as_bytes());
    reg.curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.docker.distribution.manifest.v2+json",
        "--data-binary",
        &arm_manifest,
        &format!("http://{host}/v2/multi/manifests/{arm_digest}"),
    ]);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "size": arm_manifest.len(), "digest": arm_digest,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "size": amd64_manifest.len(), "digest": amd64_digest,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    })
    .to_string();
    let index_digest = sha256_digest(index.as_bytes());
    reg.curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.docker.distribution.manifest.list.v2+json",
        "--data-binary",
        &index,
        &format!("http://{host}/v2/multi/manifests/latest"),
    ]);

    d.docker(&["rmi", "-f", &image.id]).ok();
    let latest = format!("{host}/multi:latest");
    let pulled = d.docker(&["pull", &latest]).ok();
    assert!(
        pulled.stdout.contains(&format!("Digest: {index_digest}")),
        "{pulled}"
    );
    assert_eq!(inspect(&d, &latest)["Id"], json!(image.id));
    assert_eq!(inspect(&d, &latest)["Architecture"], json!("amd64"));

    let arm = d
        .docker(&["pull", "--platform", "linux/arm64", &latest])
        .ok();
    assert!(arm.stdout.contains("Already exists"), "{arm}");
    assert_eq!(inspect(&d, &latest)["Id"], json!(config_digest));

    let resp = d.api("GET", &format!("/distribution/{latest}/json"), None);
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(v["Descriptor"]["digest"], json!(index_digest));
    assert_eq!(v["Platforms"].as_array().map(Vec::len), Some(2));
}

#[test]
fn registry_killed_mid_pull_leaves_nothing_and_retry_works() {
    let mut reg = Registry::start(None);
    let host = reg.host();
    let d = daemon(&[]);
    let image = busybox::large_image(96, 3)
        .expect("busybox-static test image")
        .build();
    load(&d, &image, "large.tar");
    let tagged = format!("{host}/large:v1");
    d.docker(&["tag", busybox::LARGE_IMAGE, &tagged]).ok();
    d.docker(&["push", &tagged]).ok();
    d.docker(&["rmi", "-f", &image.id]).ok();
    assert!(image_ids(&d).is_empty());

    // Read the raw progress stream and kill the registry at the first
    // "Downloading" line.
    let mut curl = Command::new("curl")
        .args(["-sS", "-N", "-X", "POST", "--unix-socket"])
        .arg(d.socket())
        .arg(format!(
            "http://localhost/images/create?fromImage={host}/large&tag=v1"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut lines = BufReader::new(curl.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let downloading = line.contains("\"Downloading\"");
        seen.push(line);
        if downloading {
            reg.kill();
            break;
        }
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = curl.wait();
    let last = rest.last().or(seen.last()).cloned().unwrap_or_default();
    assert!(
        last.contains("\"error\""),
        "the pull must end with an error, got:\n{}\n{}",
        seen.join("\n"),
        rest.join("\n")
    );
    assert!(!last.contains("Downloaded newer image"), "{last}");
    assert!(image_ids(&d).is_empty(), "no partial image");
    let layers: Vec<_> = std::fs::read_dir(d.data_root().join("layers/sha256"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(layers.is_empty(), "layers left behind: {layers:?}");
    let tmp: Vec<_> = std::fs::read_dir(d.data_root().join("tmp"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "downloads left behind: {tmp:?}");

    reg.resume();
    let pulled = d.docker(&["pull", &tagged]).ok();
    assert!(pulled.stdout.contains("Pull complete"), "{pulled}");
    assert_eq!(inspect(&d, &tagged)["Id"], json!(image.id));
    let _ = std::io::stdout().flush();
}
