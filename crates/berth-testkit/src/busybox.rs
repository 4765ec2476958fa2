//! The test images, built from Debian's busybox-static (`/usr/bin/busybox`,
//! or `$BERTH_TEST_BUSYBOX`) — never pulled. The three-layer image whose
//! final filesystem the tests know exactly ([`FINAL_FILES`], [`FINAL_ABSENT`]),
//! its flattened rootfs for `docker import`, and a large image of random data.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::archive::ImageBuilder;
use crate::layer::LayerTar;

/// The tag the three-layer image carries.
pub const IMAGE: &str = "berth-test/busybox:latest";
/// The tag of [`large_image`].
pub const LARGE_IMAGE: &str = "berth-test/large:latest";

/// Files of the three-layer image's final filesystem and their contents.
/// `data/hello-link` was a hardlink of `data/hello.txt` in layer 2; layer 3
/// replaces `hello.txt`, and the link must keep layer 2's bytes.
pub const FINAL_FILES: &[(&str, &str)] = &[
    ("data/hello.txt", "hello from layer 3\n"),
    ("data/hello-link", "hello from layer 2\n"),
    ("data/keep.txt", "kept\n"),
    ("data/dir/only-this.txt", "the only file left in data/dir\n"),
    ("etc/berth-release", "berth test image\n"),
    ("etc/berth-layer3", "3\n"),
];

/// Paths layers 1–2 created that layer 3 removes: a file whiteout, a
/// directory whiteout, and the old content of an opaque directory.
pub const FINAL_ABSENT: &[&str] = &[
    "data/remove-me.txt",
    "data/old-dir",
    "data/dir/a.txt",
    "data/dir/sub",
];

/// Symlink in the final filesystem: `data/link-to-keep -> keep.txt`.
pub const FINAL_SYMLINK: (&str, &str) = ("data/link-to-keep", "keep.txt");

/// Path of the busybox-static binary.
pub fn busybox_path() -> PathBuf {
    std::env::var_os("BERTH_TEST_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/busybox"))
}

struct Busybox {
    binary: Vec<u8>,
    /// `busybox --list-full`: `bin/sh`, `usr/bin/awk`, ...
    applets: Vec<String>,
}

fn busybox() -> io::Result<&'static Busybox> {
    static CELL: OnceLock<Result<Busybox, String>> = OnceLock::new();
    let result = CELL.get_or_init(|| {
        let path = busybox_path();
        let binary = std::fs::read(&path).map_err(|e| {
            format!(
                "reading {}: {e} (install Debian's busybox-static)",
                path.display()
            )
        })?;
        let out = Command::new(&path)
            .arg("--list-full")
            .output()
            .map_err(|e| format!("{} --list-full: {e}", path.display()))?;
        if !out.status.success() {
            return Err(format!("{} --list-full failed", path.display()));
        }
        let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && l.contains('/') && *l != "bin/busybox")
            .map(str::to_string)
            .collect();
        applets.sort();
        applets.dedup();
        Ok(Busybox { binary, applets })
    });
    result.as_ref().map_err(|e| io::Error::other(e.clone()))
}

/// Layer 1: the base system — directories, `/bin/busybox`, an absolute
/// symlink per applet (`/bin/sh -> /bin/busybox`, ...), passwd and group.
pub fn base_layer() -> io::Result<LayerTar> {
    let bb = busybox()?;
    let mut layer = LayerTar::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ] {
        layer = layer.dir(dir, mode);
    }
    layer = layer
        .file("bin/busybox", 0o755, bb.binary.clone())
        .file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file("etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n");
    for applet in &bb.applets {
        // Only applets under directories layer 1 has (busybox also lists
        // e.g. `linuxrc` at the top).
        if applet.contains('/') {
            layer = layer.symlink(applet, "/bin/busybox");
        }
    }
    Ok(layer)
}

/// Layer 2: adds files, a hardlink, a relative symlink, and content that
/// layer 3 deletes or hides.
pub fn data_layer() -> LayerTar {
    LayerTar::new()
        .dir("data", 0o755)
        .file("data/hello.txt", 0o644, "hello from layer 2\n")
        .hardlink("data/hello-link", "data/hello.txt")
        .file("data/keep.txt", 0o644, "kept\n")
        .symlink(FINAL_SYMLINK.0, FINAL_SYMLINK.1)
        .file(
            "data/remove-me.txt",
            0o644,
            "this file is deleted by layer 3\n",
        )
        .dir("data/old-dir", 0o755)
        .file("data/old-dir/file.txt", 0o644, "gone in layer 3\n")
        .dir("data/dir", 0o755)
        .file(
            "data/dir/a.txt",
            0o644,
            "hidden by the opaque dir in layer 3\n",
        )
        .dir("data/dir/sub", 0o755)
        .file("data/dir/sub/b.txt", 0o644, "hidden too\n")
        .file("etc/berth-release", 0o644, "berth test image\n")
}

/// Layer 3: modifies `data/hello.txt`, deletes a file and a directory with
/// whiteouts, makes `data/dir` opaque, adds a file.
pub fn change_layer() -> LayerTar {
    LayerTar::new()
        .dir("data", 0o755)
        .file("data/hello.txt", 0o644, "hello from layer 3\n")
        .whiteout("data/remove-me.txt")
        .whiteout("data/old-dir")
        .dir("data/dir", 0o755)
        .opaque("data/dir")
        .file(
            "data/dir/only-this.txt",
            0o644,
            "the only file left in data/dir\n",
        )
        .dir("etc", 0o755)
        .file("etc/berth-layer3", 0o644, "3\n")
}

/// The three-layer image tagged [`IMAGE`], as a docker-save archive
/// (change layout/compression on the returned builder). History has five
/// entries, two of them `empty_layer`; Cmd `["sh"]`, Env PATH, two labels.
pub fn image() -> io::Result<ImageBuilder> {
    Ok(ImageBuilder::new()
        .tag(IMAGE)
        .layer(
            base_layer()?,
            "/bin/sh -c #(nop) ADD file:busybox-static in / ",
        )
        .empty_layer_history("/bin/sh -c #(nop)  LABEL org.berth.test=busybox")
        .layer(data_layer(), "/bin/sh -c #(nop) ADD dir:data in /data ")
        .layer(
            change_layer(),
            "/bin/sh -c echo changed > /data/hello.txt && rm -rf /data/remove-me.txt /data/old-dir /data/dir/*",
        )
        .empty_layer_history("/bin/sh -c #(nop)  CMD [\"sh\"]")
        .label("org.berth.test", "busybox")
        .label("org.opencontainers.image.title", "berth-test-busybox"))
}

/// The final filesystem of [`image`] as one flat tar, for `docker import`.
pub fn rootfs_tar() -> io::Result<Vec<u8>> {
    let mut layer = base_layer()?.dir("data", 0o755).dir("data/dir", 0o755);
    for (path, contents) in FINAL_FILES {
        layer = layer.file(path, 0o644, *contents);
    }
    layer = layer.symlink(FINAL_SYMLINK.0, FINAL_SYMLINK.1);
    Ok(layer.to_tar())
}

/// An image of the busybox base layer plus `layers` layers holding
/// `random_mib` MiB of incompressible data in all, tagged [`LARGE_IMAGE`].
/// Shares its base layer with [`image`].
pub fn large_image(random_mib: u64, layers: usize) -> io::Result<ImageBuilder> {
    let layers = layers.max(1);
    let per_layer = (random_mib * 1024 * 1024) / layers as u64;
    let mut builder = ImageBuilder::new()
        .tag(LARGE_IMAGE)
        .layer(
            base_layer()?,
            "/bin/sh -c #(nop) ADD file:busybox-static in / ",
        )
        .label("org.berth.test", "large");
    for i in 0..layers {
        let data = random_bytes(i as u64 + 1, per_layer as usize);
        let layer =
            LayerTar::new()
                .dir("random", 0o755)
                .file(&format!("random/{i}.bin"), 0o644, data);
        builder = builder.layer(
            layer,
            &format!("/bin/sh -c head -c {per_layer} /dev/urandom > /random/{i}.bin"),
        );
    }
    Ok(builder)
}

/// Deterministic incompressible bytes (splitmix64), so large images have
/// stable IDs and compression cannot shrink them.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{sha256_digest, Compression, Layout};
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::io::Read;

    fn have_busybox() -> bool {
        if busybox_path().exists() {
            true
        } else {
            eprintln!("skipped: {} missing", busybox_path().display());
            false
        }
    }

    fn members(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(bytes);
        let mut out = BTreeMap::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.insert(name, data);
        }
        out
    }

    #[test]
    fn three_layer_image_is_complete() {
        if !have_busybox() {
            return;
        }
        let img = image().unwrap().build();
        assert_eq!(img.diff_ids.len(), 3);
        assert_eq!(img.history.len(), 5);
        let m = members(&img.bytes);
        let manifest: Value = serde_json::from_slice(&m["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"], json!([IMAGE]));
        let layers: Vec<&str> = manifest[0]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let base = members(&m[layers[0]]);
        assert_eq!(
            base["bin/busybox"].len() as u64,
            busybox_path().metadata().unwrap().len()
        );
        assert!(base.contains_key("bin/sh"));
        assert!(base.contains_key("tmp/"));
        let l3 = members(&m[layers[2]]);
        assert!(l3.contains_key("data/.wh.remove-me.txt"));
        assert!(l3.contains_key("data/.wh.old-dir"));
        assert!(l3.contains_key("data/dir/.wh..wh..opq"));
        for (i, l) in layers.iter().enumerate() {
            assert_eq!(sha256_digest(&m[*l]), img.diff_ids[i]);
        }
        let config: Value = serde_json::from_slice(&m[&format!("{}.json", &img.id[7..])]).unwrap();
        assert_eq!(config["config"]["Labels"]["org.berth.test"], "busybox");
        assert!(config["config"]["Env"][0]
            .as_str()
            .unwrap()
            .starts_with("PATH="));
        let empties = config["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["empty_layer"] == json!(true))
            .count();
        assert_eq!(empties, 2);
    }

    #[test]
    fn image_id_is_stable_across_layouts_and_compression() {
        if !have_busybox() {
            return;
        }
        let plain = image().unwrap().build();
        for (layout, compression) in [
            (Layout::DockerSave, Compression::Gzip),
            (Layout::DockerSave, Compression::Zstd),
            (
                Layout::Oci {
                    manifest_json: true,
                },
                Compression::None,
            ),
            (
                Layout::Oci {
                    manifest_json: false,
                },
                Compression::Gzip,
            ),
        ] {
            let other = image()
                .unwrap()
                .layout(layout)
                .compression(compression)
                .build();
            // The config names uncompressed diff IDs, so the ID does not move.
            assert_eq!(other.id, plain.id, "{layout:?} {compression:?}");
        }
        assert_eq!(image().unwrap().build().bytes, plain.bytes);
    }

    #[test]
    fn rootfs_tar_holds_the_final_view() {
        if !have_busybox() {
            return;
        }
        let m = members(&rootfs_tar().unwrap());
        for (path, contents) in FINAL_FILES {
            assert_eq!(m[*path], contents.as_bytes());
        }
        for path in FINAL_ABSENT {
            assert!(!m.contains_key(*path));
        }
    }

    #[test]
    fn large_image_has_the_requested_payload() {
        if !have_busybox() {
            return;
        }
        let img = large_image(4, 2).unwrap().build();
        assert_eq!(img.diff_ids.len(), 3);
        let base = image().unwrap().build();
        assert_eq!(img.diff_ids[0], base.diff_ids[0]);
        let payload: u64 = img.layer_sizes[1..].iter().sum();
        assert_eq!(payload, 4 * 1024 * 1024);
        assert_ne!(random_bytes(1, 64), random_bytes(2, 64));
    }
}
