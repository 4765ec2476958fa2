//! Images through the real docker CLI on each storage driver: load (docker-save
//! and OCI layouts, plain/gzip/zstd layers), images/inspect/history, save and
//! load into a second daemon, tag/rmi, import, prune, filters, deep layer
//! chains, btrfs subvolumes, hostile archives, and SIGKILL in mid-load.

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use berth_testkit::archive::{compress, decompress, human_size, members, sha256_digest};
use berth_testkit::daemon::layer_state;
use berth_testkit::scratch::unique_name;
use berth_testkit::{
    busybox, BuiltImage, Compression, Daemon, Hostile, ImageBuilder, LayerTar, Layout,
};
use serde_json::json;
use support::{
    assert_no_layers, image_ids, image_refs, inspect, load, load_busybox, mount_points, Backend,
};

per_driver!(
    load_docker_save_three_layers,
    load_oci_layout,
    load_oci_layout_with_manifest_json,
    load_compressed_layers,
    load_untagged_archive,
    images_inspect_and_history,
    save_then_load_into_second_daemon,
    tag_and_rmi,
    import_rootfs_with_changes,
    prune_dangling_and_unused,
    list_filters,
    load_image_with_130_layers,
    bad_input_truncated,
    bad_input_parent_escape,
    bad_input_absolute_path,
    bad_input_symlink_absolute,
    bad_input_symlink_relative,
    bad_input_symlink_in_parent_layer,
    bad_input_diff_id_mismatch,
    sigkill_during_load_then_restart,
);

/// The image is listed once, with its tag, full ID and dockerd's size.
#[track_caller]
fn assert_listed(d: &Daemon, reference: &str, image: &BuiltImage) {
    let out = d
        .docker(&[
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}}|{{.ID}}|{{.Size}}",
        ])
        .ok();
    let want = format!("{reference}|{}|{}", image.id, human_size(image.size()));
    assert!(
        out.lines().contains(&want.as_str()),
        "want {want:?} in\n{out}"
    );
    let exact = d
        .docker(&["image", "inspect", "--format", "{{.Size}}", reference])
        .ok();
    assert_eq!(
        exact.out(),
        image.size().to_string(),
        "exact size of {reference}"
    );
}

fn load_docker_save_three_layers(backend: Backend) {
    let d = backend.daemon();
    let image = load_busybox(&d);
    assert_listed(&d, busybox::IMAGE, &image);
    assert_eq!(image_ids(&d), BTreeSet::from([image.id.clone()]));
    let v = inspect(&d, busybox::IMAGE);
    assert_eq!(v["RootFS"]["Layers"], json!(image.diff_ids));
    // Loading the same archive again is a no-op that still succeeds.
    let again = load(&d, &image, "busybox-again.tar");
    assert!(again.contains(busybox::IMAGE), "{again}");
    assert_eq!(image_ids(&d).len(), 1);
}

fn load_layout(backend: Backend, layout: Layout) {
    let d = backend.daemon();
    let image = busybox::image().unwrap().layout(layout).build();
    let out = load(&d, &image, "busybox-oci.tar");
    assert!(out.contains(busybox::IMAGE), "docker load said: {out}");
    assert_listed(&d, busybox::IMAGE, &image);
    assert_eq!(
        inspect(&d, busybox::IMAGE)["RootFS"]["Layers"],
        json!(image.diff_ids)
    );
}

/// OCI image layout with only `index.json` (tag from the
/// `io.containerd.image.name` annotation).
fn load_oci_layout(backend: Backend) {
    load_layout(
        backend,
        Layout::Oci {
            manifest_json: false,
        },
    );
}

/// OCI image layout plus `manifest.json`, as docker 25+ saves.
fn load_oci_layout_with_manifest_json(backend: Backend) {
    load_layout(
        backend,
        Layout::Oci {
            manifest_json: true,
        },
    );
}

/// gzip and zstd layers in both layouts load to the same image (the ID
/// names uncompressed diff IDs); removing it each time leaves no layers.
fn load_compressed_layers(backend: Backend) {
    let d = backend.daemon();
    let plain = busybox::image().unwrap().build();
    for (layout, compression) in [
        (Layout::DockerSave, Compression::Gzip),
        (Layout::DockerSave, Compression::Zstd),
        (
            Layout::Oci {
                manifest_json: true,
            },
            Compression::Gzip,
        ),
        (
            Layout::Oci {
                manifest_json: false,
            },
            Compression::Zstd,
        ),
    ] {
        let image = busybox::image()
            .unwrap()
            .layout(layout)
            .compression(compression)
            .build();
        assert_eq!(image.id, plain.id);
        let out = load(&d, &image, "compressed.tar");
        assert!(
            out.contains(busybox::IMAGE),
            "{layout:?} {compression:?}: {out}"
        );
        assert_listed(&d, busybox::IMAGE, &image);
        assert_eq!(
            inspect(&d, busybox::IMAGE)["RootFS"]["Layers"],
            json!(image.diff_ids),
            "{layout:?} {compression:?}"
        );
        d.docker(&["rmi", busybox::IMAGE]).ok();
        assert!(image_ids(&d).is_empty());
        assert_no_layers(&d, backend);
    }
}

/// An archive without RepoTags loads as a dangling image, reported by ID.
fn load_untagged_archive(backend: Backend) {
    let d = backend.daemon();
    let image = busybox::image().unwrap().tags(&[]).build();
    let out = load(&d, &image, "untagged.tar");
    assert!(
        out.contains(&format!("Loaded image ID: {}", image.id)),
        "{out}"
    );
    let dangling = d
        .docker(&["images", "-q", "--no-trunc", "--filter", "dangling=true"])
        .ok();
    assert_eq!(dangling.lines(), vec![image.id.as_str()]);
}

fn images_inspect_and_history(backend: Backend) {
    let d = backend.daemon();
    let image = load_busybox(&d);
    let v = inspect(&d, busybox::IMAGE);
    assert_eq!(v["Id"], json!(image.id));
    assert_eq!(v["RepoTags"], json!([busybox::IMAGE]));
    assert_eq!(v["RepoDigests"], json!([]));
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Created"], "2024-01-01T00:00:00Z");
    assert_eq!(v["Config"]["Cmd"], json!(["sh"]));
    assert_eq!(v["Config"]["Env"], image.config["config"]["Env"]);
    assert_eq!(v["Config"]["Labels"], image.config["config"]["Labels"]);
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert_eq!(v["RootFS"]["Layers"], json!(image.diff_ids));
    assert_eq!(v["Size"], json!(image.size()));
    assert_eq!(v["GraphDriver"]["Name"], backend.driver());
    // The same image by full ID, short ID and ID without the prefix.
    let hex = image.id.trim_start_matches("sha256:");
    for name in [image.id.as_str(), hex, &hex[..12]] {
        assert_eq!(inspect(&d, name)["Id"], json!(image.id), "inspect {name}");
    }

    let hist = d
        .docker(&[
            "history",
            "--no-trunc",
            "--human=false",
            "--format",
            "{{.ID}}|{{.CreatedBy}}|{{.Size}}",
            busybox::IMAGE,
        ])
        .ok();
    let rows: Vec<Vec<&str>> = hist
        .lines()
        .iter()
        .map(|l| l.split('|').collect())
        .collect();
    assert_eq!(rows.len(), image.history.len(), "{hist}");
    assert_eq!(rows[0][0], image.id, "newest entry carries the image ID");
    for row in &rows[1..] {
        assert_eq!(row[0], "<missing>", "{hist}");
    }
    // Newest first; empty_layer entries have size 0, layers their own size.
    let mut sizes = image.layer_sizes.iter().rev();
    for (row, h) in rows.iter().zip(image.history.iter().rev()) {
        assert_eq!(row[1], h.created_by, "{hist}");
        let want = if h.empty_layer {
            0
        } else {
            *sizes.next().unwrap()
        };
        assert_eq!(row[2], want.to_string(), "size of {:?}", h.created_by);
    }

    let missing = d
        .docker(&["image", "inspect", "berth-test/nope:latest"])
        .failed();
    assert!(missing.stderr.contains("No such image"), "{missing}");
}

/// `docker save` from one daemon, `docker load` into another on its own
/// filesystem: same ID, tag, size, layers, history. The saved archive is
/// also checked on its own (a manifest.json dockerd can load).
fn save_then_load_into_second_daemon(backend: Backend) {
    let a = backend.daemon();
    let image = load_busybox(&a);
    let saved = a.scratch_dir().join("saved.tar");
    a.docker(&["save", "-o", saved.to_str().unwrap(), busybox::IMAGE])
        .ok();
    check_saved_archive(&std::fs::read(&saved).unwrap(), &image);
    // Saving by ID works too (no tags in the archive then).
    let by_id = a.scratch_dir().join("by-id.tar");
    a.docker(&["save", "-o", by_id.to_str().unwrap(), &image.id])
        .ok();

    let b = backend.daemon();
    let out = b.docker(&["load", "-i", saved.to_str().unwrap()]).ok();
    assert!(
        out.stdout
            .contains(&format!("Loaded image: {}", busybox::IMAGE)),
        "{out}"
    );
    assert_listed(&b, busybox::IMAGE, &image);
    let (va, vb) = (inspect(&a, busybox::IMAGE), inspect(&b, busybox::IMAGE));
    for key in ["Id", "RepoTags", "RootFS", "Size", "Config", "Created"] {
        assert_eq!(va[key], vb[key], "{key} differs after save/load");
    }
    let history = |d: &Daemon| {
        d.docker(&["history", "--no-trunc", busybox::IMAGE])
            .ok()
            .stdout
    };
    assert_eq!(history(&a), history(&b));

    // Stdout form (`docker save IMG > file`) gives a loadable archive too.
    let streamed = a.docker(&["save", busybox::IMAGE]).ok();
    assert!(!streamed.stdout.is_empty());
}

/// The archive `docker save` produced names the image's config and layers
/// by the right digests.
fn check_saved_archive(bytes: &[u8], image: &BuiltImage) {
    let members = members(bytes).expect("saved archive is a tar");
    let manifest: serde_json::Value =
        serde_json::from_slice(members.get("manifest.json").expect("manifest.json in save"))
            .expect("manifest.json parses");
    let entry = &manifest[0];
    assert_eq!(entry["RepoTags"], json!([busybox::IMAGE]));
    let config = &members[entry["Config"].as_str().unwrap()];
    assert_eq!(sha256_digest(config), image.id, "saved config digest");
    let layers = entry["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), image.diff_ids.len());
    for (l, diff_id) in layers.iter().zip(&image.diff_ids) {
        let blob = &members[l.as_str().unwrap()];
        let tar = decompress(blob).expect("layer decompresses");
        assert_eq!(&sha256_digest(&tar), diff_id, "saved layer {l}");
    }
}

fn tag_and_rmi(backend: Backend) {
    let d = backend.daemon();
    let image = load_busybox(&d);
    d.docker(&["tag", busybox::IMAGE, "berth-test/busybox:v2"])
        .ok();
    d.docker(&["tag", &image.id, "localhost:5000/other/name:t"])
        .ok();
    assert_eq!(
        image_refs(&d),
        BTreeSet::from([
            busybox::IMAGE.to_string(),
            "berth-test/busybox:v2".to_string(),
            "localhost:5000/other/name:t".to_string(),
        ])
    );
    assert_eq!(image_ids(&d), BTreeSet::from([image.id.clone()]));

    let untag = d.docker(&["rmi", "berth-test/busybox:v2"]).ok();
    assert!(
        untag.stdout.contains("Untagged: berth-test/busybox:v2"),
        "{untag}"
    );
    assert!(!untag.stdout.contains("Deleted"), "{untag}");
    // By ID while several names point at it: refused without -f (409).
    let by_id = d.docker(&["rmi", &image.id]).failed();
    assert!(by_id.stderr.contains("must be forced"), "{by_id}");
    assert_eq!(image_ids(&d).len(), 1);

    d.docker(&["rmi", "localhost:5000/other/name:t"]).ok();
    let last = d.docker(&["rmi", busybox::IMAGE]).ok();
    assert!(
        last.stdout
            .contains(&format!("Untagged: {}", busybox::IMAGE)),
        "{last}"
    );
    assert!(
        last.stdout.contains(&format!("Deleted: {}", image.id)),
        "{last}"
    );
    assert!(image_ids(&d).is_empty());
    assert_no_layers(&d, backend);

    let gone = d.docker(&["rmi", busybox::IMAGE]).failed();
    assert!(gone.stderr.contains("No such image"), "{gone}");
    let bad_tag = d.docker(&["tag", "berth-test/nope", "x:y"]).failed();
    assert!(bad_tag.stderr.contains("No such image"), "{bad_tag}");

    // -f removes an image with several tags in one go.
    load_busybox(&d);
    d.docker(&["tag", busybox::IMAGE, "berth-test/busybox:v3"])
        .ok();
    d.docker(&["rmi", "-f", &image.id]).ok();
    assert!(image_ids(&d).is_empty());
    assert_no_layers(&d, backend);
}

/// `docker import` of a flat rootfs (plain, then gzipped) with `--change`.
fn import_rootfs_with_changes(backend: Backend) {
    let d = backend.daemon();
    let rootfs = busybox::rootfs_tar().unwrap();
    let out = d
        .docker_stdin(
            &[
                "import",
                "--change",
                "CMD [\"/bin/sh\", \"-c\", \"cat /data/hello.txt\"]",
                "--change",
                "ENV FOO=bar",
                "--change",
                "LABEL org.berth.test=imported",
                "--message",
                "imported by test",
                "-",
                "berth-test/imported:v1",
            ],
            &rootfs,
        )
        .ok();
    let id = out.out().lines().last().unwrap_or("").to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import printed {out}"
    );
    let v = inspect(&d, "berth-test/imported:v1");
    assert_eq!(v["Id"], json!(id));
    assert_eq!(v["RepoTags"], json!(["berth-test/imported:v1"]));
    assert_eq!(
        v["Config"]["Cmd"],
        json!(["/bin/sh", "-c", "cat /data/hello.txt"])
    );
    let env = v["Config"]["Env"].as_array().cloned().unwrap_or_default();
    assert!(env.contains(&json!("FOO=bar")), "{env:?}");
    assert_eq!(v["Config"]["Labels"]["org.berth.test"], "imported");
    assert_eq!(v["Comment"], "imported by test");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Architecture"], "amd64");
    // The layer's diff ID is the digest of the tar exactly as sent.
    assert_eq!(v["RootFS"]["Layers"], json!([sha256_digest(&rootfs)]));
    let hist = d
        .docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.Comment}}",
            "berth-test/imported:v1",
        ])
        .ok();
    assert_eq!(hist.lines(), vec!["imported by test"], "{hist}");

    // Compressed input is decompressed first; the diff ID is still the
    // uncompressed tar's.
    let gz = compress(&rootfs, Compression::Gzip);
    d.docker_stdin(&["import", "-", "berth-test/imported:gz"], &gz)
        .ok();
    let v = inspect(&d, "berth-test/imported:gz");
    assert_eq!(v["RootFS"]["Layers"], json!([sha256_digest(&rootfs)]));

    // Junk is refused and leaves nothing.
    let junk = d
        .docker_stdin(
            &["import", "-", "berth-test/imported:junk"],
            b"this is not a tar file at all",
        )
        .failed();
    assert!(!junk.stderr.trim().is_empty(), "{junk}");
    assert!(!image_refs(&d).contains("berth-test/imported:junk"));
}

/// A reloaded tag leaves the old image dangling; `image prune` removes only
/// that, `image prune -a` everything unused — and then no layer remains.
fn prune_dangling_and_unused(backend: Backend) {
    let d = backend.daemon();
    let old = load_busybox(&d);
    let new = busybox::image()
        .unwrap()
        .label("org.berth.variant", "2")
        .build();
    assert_ne!(old.id, new.id);
    load(&d, &new, "variant.tar");
    let dangling = d
        .docker(&["images", "-q", "--no-trunc", "--filter", "dangling=true"])
        .ok();
    assert_eq!(dangling.lines(), vec![old.id.as_str()]);

    let pruned = d.docker(&["image", "prune", "-f"]).ok();
    assert!(
        pruned.stdout.contains(&format!("deleted: {}", old.id)),
        "{pruned}"
    );
    assert!(pruned.stdout.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(image_ids(&d), BTreeSet::from([new.id.clone()]));
    // The layers were shared with the surviving image: still there.
    assert_eq!(
        inspect(&d, busybox::IMAGE)["RootFS"]["Layers"],
        json!(new.diff_ids)
    );
    assert_eq!(backend.layer_dirs(d.data_root()).len(), 3);

    let nothing = d.docker(&["image", "prune", "-f"]).ok();
    assert!(!nothing.stdout.contains("deleted:"), "{nothing}");

    let all = d.docker(&["image", "prune", "-a", "-f"]).ok();
    assert!(
        all.stdout.contains(&format!("deleted: {}", new.id)),
        "{all}"
    );
    assert!(image_ids(&d).is_empty());
    assert_no_layers(&d, backend);
}

/// `docker images --filter` for reference, label, dangling, before, since.
fn list_filters(backend: Backend) {
    let d = backend.daemon();
    let bb = load_busybox(&d);
    let large = busybox::large_image(1, 1).unwrap().build();
    load(&d, &large, "large.tar");
    // Imported now, so created after both loaded images (2024-01-01).
    let rootfs = busybox::rootfs_tar().unwrap();
    d.docker_stdin(&["import", "-", "berth-test/imported:v1"], &rootfs)
        .ok();
    let imported = inspect(&d, "berth-test/imported:v1")["Id"]
        .as_str()
        .unwrap()
        .to_string();

    let filtered = |filter: &str| -> BTreeSet<String> {
        d.docker(&["images", "-q", "--no-trunc", "--filter", filter])
            .ok()
            .lines()
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(filtered("reference=berth-test/busy*"), set(&[&bb.id]));
    assert_eq!(
        filtered("reference=berth-test/*:latest"),
        set(&[&bb.id, &large.id])
    );
    assert_eq!(filtered("label=org.berth.test=large"), set(&[&large.id]));
    assert_eq!(filtered("label=org.berth.test"), set(&[&bb.id, &large.id]));
    assert_eq!(filtered("dangling=true"), BTreeSet::new());
    assert_eq!(
        filtered("dangling=false"),
        set(&[&bb.id, &large.id, &imported])
    );
    assert_eq!(
        filtered("since=berth-test/busybox:latest"),
        set(&[&imported])
    );
    assert_eq!(
        filtered("before=berth-test/imported:v1"),
        set(&[&bb.id, &large.id])
    );
    let bad = d.docker(&["images", "--filter", "nonsense=1"]).failed();
    assert!(bad.stderr.contains("nonsense"), "{bad}");
}

/// Deep layer chains: 130 layers (overlay2 must keep its mount options
/// within one page, btrfs snapshots 130 deep).
fn load_image_with_130_layers(backend: Backend) {
    let d = backend.daemon();
    let mut builder = ImageBuilder::new().tag("berth-test/deep:latest");
    for i in 0..130 {
        let layer = LayerTar::new().dir("layers", 0o755).file(
            &format!("layers/{i:03}"),
            0o644,
            format!("{i}\n"),
        );
        builder = builder.layer(layer, &format!("layer {i}"));
    }
    let image = builder.build();
    load(&d, &image, "deep.tar");
    assert_listed(&d, "berth-test/deep:latest", &image);
    assert_eq!(
        inspect(&d, "berth-test/deep:latest")["RootFS"]["Layers"]
            .as_array()
            .map(Vec::len),
        Some(130)
    );
    d.docker(&["rmi", "berth-test/deep:latest"]).ok();
    assert_no_layers(&d, backend);
}

/// On btrfs every layer is a subvolume, the base a plain one and each child
/// a snapshot of its parent; the top one holds the image's final files.
#[test]
fn btrfs_layers_are_subvolumes_and_snapshots() {
    let d = Backend::Btrfs.daemon();
    let image = load_busybox(&d);
    let mount = d.loopfs().unwrap().path().to_path_buf();
    let rel_root = d.data_root().strip_prefix(&mount).unwrap().to_path_buf();
    let subvols: Vec<berth_testkit::btrfs::Subvolume> = berth_testkit::btrfs::subvolumes(&mount)
        .unwrap()
        .into_iter()
        .filter(|s| s.path.starts_with(&rel_root))
        .collect();
    assert_eq!(
        subvols.len(),
        image.diff_ids.len(),
        "one subvolume per layer: {subvols:?}"
    );

    // Walk the chain from the one subvolume that is not a snapshot.
    let bases: Vec<_> = subvols.iter().filter(|s| s.parent_uuid.is_none()).collect();
    assert_eq!(bases.len(), 1, "exactly one base layer: {subvols:?}");
    let mut chain = vec![bases[0]];
    while let Some(child) = subvols
        .iter()
        .find(|s| s.parent_uuid.as_deref() == Some(chain.last().unwrap().uuid.as_str()))
    {
        chain.push(child);
    }
    assert_eq!(
        chain.len(),
        subvols.len(),
        "layers form one snapshot chain: {subvols:?}"
    );
    for pair in chain.windows(2) {
        let show = berth_testkit::btrfs::subvolume_show(&mount.join(&pair[1].path)).unwrap();
        assert_eq!(show.parent_uuid.as_deref(), Some(pair[0].uuid.as_str()));
    }

    let base = mount.join(&chain[0].path);
    assert!(base.join("bin/busybox").is_file());
    assert!(!base.join("data").exists());
    let top = mount.join(&chain.last().unwrap().path);
    check_final_view(&top);

    d.docker(&["rmi", busybox::IMAGE]).ok();
    let left: Vec<_> = berth_testkit::btrfs::subvolumes(&mount)
        .unwrap()
        .into_iter()
        .filter(|s| s.path.starts_with(&rel_root))
        .collect();
    assert!(left.is_empty(), "subvolumes left after rmi: {left:?}");
}

/// Docker's own daemon, for interoperability checks: Debian's `docker.io`
/// (`/usr/sbin/dockerd`, or `$BERTH_TEST_DOCKERD`). `None` when absent.
fn reference_dockerd() -> Option<PathBuf> {
    let path = std::env::var_os("BERTH_TEST_DOCKERD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/dockerd"));
    path.exists().then_some(path)
}

/// What berthd saves, dockerd loads to the same image — and the other way
/// round (dockerd 20.10 writes the legacy docker-save layout). Skipped, with
/// a message, where Debian's docker.io is not installed (.ci/run installs it).
#[test]
fn save_interoperates_with_dockerd() {
    let Some(dockerd) = reference_dockerd() else {
        eprintln!("skipped: no dockerd (apt-get install docker.io, or set BERTH_TEST_DOCKERD)");
        return;
    };
    let berth = Backend::Vfs.daemon();
    let image = load_busybox(&berth);
    let from_berth = berth.scratch_dir().join("from-berth.tar");
    berth
        .docker(&["save", "-o", from_berth.to_str().unwrap(), busybox::IMAGE])
        .ok();

    // dockerd on its own ext4 loop filesystem and its own pre-created
    // bridge: `--bridge=none` would delete a shared docker0.
    let bridge = TestBridge::new();
    let docker = Daemon::builder(dockerd)
        .on_loopfs(Backend::Vfs.loopfs())
        .storage_driver("vfs")
        .arg(format!("--bridge={}", bridge.name))
        .arg("--iptables=false")
        .arg("--ip-masq=false")
        .start();
    docker
        .docker(&["load", "-i", from_berth.to_str().unwrap()])
        .ok();
    let theirs = inspect(&docker, busybox::IMAGE);
    assert_eq!(
        theirs["Id"],
        json!(image.id),
        "dockerd loaded another image"
    );
    assert_eq!(theirs["RootFS"]["Layers"], json!(image.diff_ids));

    docker
        .docker(&["tag", busybox::IMAGE, "berth-test/from-dockerd:v1"])
        .ok();
    let from_docker = docker.scratch_dir().join("from-dockerd.tar");
    docker
        .docker(&[
            "save",
            "-o",
            from_docker.to_str().unwrap(),
            "berth-test/from-dockerd:v1",
        ])
        .ok();
    let out = berth
        .docker(&["load", "-i", from_docker.to_str().unwrap()])
        .ok();
    assert!(out.stdout.contains("berth-test/from-dockerd:v1"), "{out}");
    assert_eq!(
        inspect(&berth, "berth-test/from-dockerd:v1")["Id"],
        json!(image.id)
    );
}

/// A bridge made for a reference dockerd and deleted when dropped.
struct TestBridge {
    name: String,
}

impl TestBridge {
    fn new() -> TestBridge {
        // Interface names are at most 15 bytes.
        let digits: String = unique_name("")
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        let name = format!("bt{}", &digits[digits.len().saturating_sub(12)..]);
        let status = std::process::Command::new("ip")
            .args(["link", "add", "name", &name, "type", "bridge"])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip link add {name} failed");
        TestBridge { name }
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
    }
}

/// The three-layer image's final filesystem, as its top layer must show it.
fn check_final_view(root: &Path) {
    for (path, contents) in busybox::FINAL_FILES {
        let got = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|e| panic!("{path} in {}: {e}", root.display()));
        assert_eq!(got, *contents, "{path}");
    }
    for path in busybox::FINAL_ABSENT {
        assert!(
            root.join(path).symlink_metadata().is_err(),
            "{path} should be gone"
        );
    }
    let (link, target) = busybox::FINAL_SYMLINK;
    assert_eq!(
        std::fs::read_link(root.join(link)).unwrap(),
        PathBuf::from(target)
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
    // Whiteout markers are consumed, never stored as files.
    assert!(root
        .join("data/.wh.remove-me.txt")
        .symlink_metadata()
        .is_err());
    assert!(root
        .join("data/dir/.wh..wh..opq")
        .symlink_metadata()
        .is_err());
}

/// Loads `kind`'s archive into a daemon that already has the busybox image:
/// the load fails with a message, and nothing changes — no new image, no
/// layer or layer metadata, nothing written outside the data root, no mount.
fn bad_input(backend: Backend, kind: Hostile) {
    let d = backend.daemon();
    let good = load_busybox(&d);
    let before = layer_state(d.data_root(), backend.driver());
    let mounts_before = mount_points(&d);
    let marker = unique_name("berth-pwned");
    let archive = kind.build(&marker).unwrap();
    let path = support::archive_file(&d, "hostile.tar", &archive.bytes);

    let out = d.docker(&["load", "-i", path.to_str().unwrap()]).failed();
    assert!(
        out.stderr.trim().len() > 10,
        "{kind:?}: the error should say what is wrong: {out}"
    );
    assert_eq!(image_ids(&d), BTreeSet::from([good.id.clone()]), "{kind:?}");
    assert!(!image_refs(&d).contains(&archive.tag), "{kind:?}");
    assert_eq!(
        layer_state(d.data_root(), backend.driver()),
        before,
        "{kind:?}: layers changed"
    );
    let mount = d.loopfs().unwrap().path().to_path_buf();
    let planted = archive.planted_outside(d.data_root(), &[&mount, d.scratch_dir()]);
    assert!(
        planted.is_empty(),
        "{kind:?} wrote outside the data root: {planted:?}"
    );
    assert_eq!(mount_points(&d), mounts_before, "{kind:?}: mounts changed");

    // The daemon is fine and the good image intact.
    assert_eq!(
        inspect(&d, busybox::IMAGE)["RootFS"]["Layers"],
        json!(good.diff_ids)
    );
    load(&d, &good, "busybox-again.tar");
    assert_eq!(image_ids(&d).len(), 1);
}

fn bad_input_truncated(backend: Backend) {
    bad_input(backend, Hostile::Truncated);
}
fn bad_input_parent_escape(backend: Backend) {
    bad_input(backend, Hostile::ParentEscape);
}
fn bad_input_absolute_path(backend: Backend) {
    bad_input(backend, Hostile::AbsolutePath);
}
fn bad_input_symlink_absolute(backend: Backend) {
    bad_input(backend, Hostile::SymlinkAbsolute);
}
fn bad_input_symlink_relative(backend: Backend) {
    bad_input(backend, Hostile::SymlinkRelative);
}
fn bad_input_symlink_in_parent_layer(backend: Backend) {
    bad_input(backend, Hostile::SymlinkInParentLayer);
}
fn bad_input_diff_id_mismatch(backend: Backend) {
    bad_input(backend, Hostile::DiffIdMismatch);
}

/// Size of the payload for the SIGKILL test (MiB): large enough that the
/// load is still streaming when the daemon dies.
fn large_mib() -> u64 {
    std::env::var("BERTH_TEST_LARGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// SIGKILL while `docker load` streams an archive (metadata first, so a
/// streaming loader has already committed some layers), then restart: the
/// image store is exactly as before the load, and the load can be repeated.
fn sigkill_during_load_then_restart(backend: Backend) {
    let mut d = backend.daemon();
    let good = load_busybox(&d);
    let before = layer_state(d.data_root(), backend.driver());
    let mounts_before = mount_points(&d);
    let large = busybox::large_image(large_mib(), 4)
        .unwrap()
        .metadata_first(true)
        .build();

    // Feed docker load only the first 60% of the archive: the rest is held
    // back, so the load is guaranteed to be in progress when we kill.
    let mut load = d
        .docker_command(&["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning docker load");
    let mut stdin = load.stdin.take().unwrap();
    let cut = large.bytes.len() * 6 / 10;
    let head = large.bytes[..cut].to_vec();
    let (tx, rx) = mpsc::channel();
    let writer = std::thread::spawn(move || {
        let r = stdin.write_all(&head);
        let _ = tx.send(r.is_ok());
        stdin // keep the pipe open until the daemon is dead
    });
    let written = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("docker load stopped reading its input");
    assert!(written, "docker load closed its input early");

    d.kill9();
    let stdin = writer.join().unwrap();
    drop(stdin);
    let status = load.wait().unwrap();
    let mut stderr = String::new();
    load.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !status.success(),
        "docker load succeeded against a killed daemon"
    );

    d.start();
    assert_eq!(
        image_ids(&d),
        BTreeSet::from([good.id.clone()]),
        "after restart"
    );
    assert_eq!(
        layer_state(d.data_root(), backend.driver()),
        before,
        "orphaned layers or metadata after restart"
    );
    assert_eq!(mount_points(&d), mounts_before, "mounts after restart");

    // The same load now completes.
    load_large(&d, &large);
    assert_eq!(inspect(&d, busybox::LARGE_IMAGE)["Id"], json!(large.id));
    assert_eq!(inspect(&d, busybox::IMAGE)["Id"], json!(good.id));
    d.docker(&["rmi", busybox::LARGE_IMAGE]).ok();
    assert_eq!(layer_state(d.data_root(), backend.driver()), before);
}

fn load_large(d: &Daemon, image: &BuiltImage) {
    let out = load(d, image, "large.tar");
    assert!(out.contains(busybox::LARGE_IMAGE), "{out}");
}
