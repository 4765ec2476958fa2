//! Hostile and corrupt archives for the bad-input tests: a truncated stream,
//! layer entries that climb out with `..` or are absolute, symlinks to
//! outside followed by a write through them, and a config whose diff ID
//! does not match its layer. Each plants (or tries to plant) a unique marker.

use std::io;
use std::path::{Path, PathBuf};

use crate::archive::{BuiltImage, ImageBuilder};
use crate::busybox;
use crate::layer::LayerTar;

/// Deep enough to reach `/` from any data root.
const CLIMB: &str = "../../../../../../../../../../../../../../../..";

/// The kinds of bad archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// Busybox base plus two random-data layers, manifest and config first,
    /// cut halfway through the layer blob that comes last in the archive:
    /// the others arrive whole, that one does not.
    Truncated,
    /// A layer entry `../../…/tmp/<marker>`.
    ParentEscape,
    /// A layer entry `/tmp/<marker>` (absolute).
    AbsolutePath,
    /// `evil -> /` then the entry `evil/tmp/<marker>` in the same layer.
    SymlinkAbsolute,
    /// `evil -> ../../…` then `evil/tmp/<marker>` in the same layer.
    SymlinkRelative,
    /// `evil -> /` in one layer, `evil/tmp/<marker>` in the next.
    SymlinkInParentLayer,
    /// The config's diff ID for layer 2 is not the layer's digest.
    DiffIdMismatch,
}

impl Hostile {
    pub const ALL: [Hostile; 7] = [
        Hostile::Truncated,
        Hostile::ParentEscape,
        Hostile::AbsolutePath,
        Hostile::SymlinkAbsolute,
        Hostile::SymlinkRelative,
        Hostile::SymlinkInParentLayer,
        Hostile::DiffIdMismatch,
    ];

    fn slug(self) -> &'static str {
        match self {
            Hostile::Truncated => "truncated",
            Hostile::ParentEscape => "parent-escape",
            Hostile::AbsolutePath => "absolute-path",
            Hostile::SymlinkAbsolute => "symlink-absolute",
            Hostile::SymlinkRelative => "symlink-relative",
            Hostile::SymlinkInParentLayer => "symlink-in-parent-layer",
            Hostile::DiffIdMismatch => "diff-id-mismatch",
        }
    }

    /// Builds the archive. `marker` names the file it tries to write outside
    /// the layer; use a name unique to the test ([`crate::scratch::unique_name`]).
    /// Every archive starts with the busybox base layer, so a daemon that
    /// already has [`busybox::image`] shares that layer with it.
    pub fn build(self, marker: &str) -> io::Result<HostileArchive> {
        let tag = format!("berth-test/hostile-{}:latest", self.slug());
        let pwned = format!("tmp/{marker}");
        let through = format!("evil/{pwned}");
        let base = || -> io::Result<ImageBuilder> {
            Ok(ImageBuilder::new().tag(&tag).layer(
                busybox::base_layer()?,
                "/bin/sh -c #(nop) ADD file:busybox-static in / ",
            ))
        };
        let with = |layer: LayerTar| -> io::Result<BuiltImage> {
            Ok(base()?.layer(layer, "hostile").build())
        };
        let image = match self {
            Hostile::Truncated => {
                // Two layers of their own after the shared base, so a
                // loader that commits layers as they stream has something
                // to clean up.
                let random = |seed: u64, name: &str| {
                    LayerTar::new().dir("random", 0o755).file(
                        &format!("random/{name}"),
                        0o644,
                        busybox::random_bytes(seed, 512 * 1024),
                    )
                };
                let img = base()?
                    .layer(random(101, "a.bin"), "add a.bin")
                    .layer(random(102, "b.bin"), "add b.bin")
                    .metadata_first(true)
                    .build();
                let bytes = img.truncated_in_last_layer();
                return Ok(HostileArchive {
                    kind: self,
                    tag,
                    marker: marker.to_string(),
                    bytes,
                    image: img,
                });
            }
            Hostile::ParentEscape => with(
                LayerTar::new()
                    .dir("tmp", 0o1777)
                    .raw_file(&format!("{CLIMB}/{pwned}"), "pwned\n"),
            )?,
            Hostile::AbsolutePath => {
                with(LayerTar::new().raw_file(&format!("/{pwned}"), "pwned\n"))?
            }
            Hostile::SymlinkAbsolute => with(
                LayerTar::new()
                    .symlink("evil", "/")
                    .file(&through, 0o644, "pwned\n"),
            )?,
            Hostile::SymlinkRelative => with(
                LayerTar::new()
                    .symlink("evil", CLIMB)
                    .file(&through, 0o644, "pwned\n"),
            )?,
            Hostile::SymlinkInParentLayer => base()?
                .layer(LayerTar::new().symlink("evil", "/"), "ln -s / /evil")
                .layer(LayerTar::new().file(&through, 0o644, "pwned\n"), "hostile")
                .build(),
            Hostile::DiffIdMismatch => base()?
                .layer(
                    busybox::data_layer(),
                    "/bin/sh -c #(nop) ADD dir:data in /data ",
                )
                .corrupt_diff_id(1)
                .build(),
        };
        Ok(HostileArchive {
            kind: self,
            tag,
            marker: marker.to_string(),
            bytes: image.bytes.clone(),
            image,
        })
    }
}

/// A bad archive and what to look for after loading it.
#[derive(Debug, Clone)]
pub struct HostileArchive {
    pub kind: Hostile,
    /// The tag the archive's manifest names; it must not exist afterwards.
    pub tag: String,
    /// The file name the archive tries to plant.
    pub marker: String,
    /// The archive as `docker load` gets it.
    pub bytes: Vec<u8>,
    /// The image it was built from (before truncation).
    pub image: BuiltImage,
}

impl HostileArchive {
    /// Files named after the marker found outside `data_root`: the host's
    /// `/tmp` and `/`, and everywhere under `search_roots` except inside
    /// `data_root` (where a rejected layer may be mid-cleanup, and which the
    /// layer-state checks cover).
    pub fn planted_outside(&self, data_root: &Path, search_roots: &[&Path]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for p in [
            PathBuf::from("/tmp").join(&self.marker),
            PathBuf::from("/").join(&self.marker),
        ] {
            if p.symlink_metadata().is_ok() {
                found.push(p);
            }
        }
        for root in search_roots {
            find_named(root, &self.marker, data_root, &mut found);
        }
        found
    }
}

fn find_named(dir: &Path, name: &str, skip: &Path, found: &mut Vec<PathBuf>) {
    if dir == skip {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        // Do not follow symlinks: the search must not escape either.
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            find_named(&path, name, skip, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn layer_names(layer_tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(layer_tar);
        a.entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    fn last_layer(archive: &HostileArchive) -> Vec<u8> {
        let last = archive.image.layer_paths.last().unwrap();
        let mut a = tar::Archive::new(archive.bytes.as_slice());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == *last {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                return data;
            }
        }
        panic!("no layer {last}");
    }

    #[test]
    fn hostile_layers_carry_the_bad_entries() {
        if !busybox::busybox_path().exists() {
            eprintln!("skipped: busybox-static missing");
            return;
        }
        let m = "marker-x";
        let names = |k: Hostile| layer_names(&last_layer(&k.build(m).unwrap()));
        assert!(names(Hostile::ParentEscape)
            .iter()
            .any(|n| n.starts_with("../") && n.ends_with("/tmp/marker-x")));
        assert_eq!(names(Hostile::AbsolutePath), vec!["/tmp/marker-x"]);
        assert_eq!(
            names(Hostile::SymlinkAbsolute),
            vec!["evil", "evil/tmp/marker-x"]
        );
        assert_eq!(
            names(Hostile::SymlinkInParentLayer),
            vec!["evil/tmp/marker-x"]
        );
        let mismatch = Hostile::DiffIdMismatch.build(m).unwrap();
        assert_ne!(
            mismatch.image.config["rootfs"]["diff_ids"][1],
            serde_json::json!(mismatch.image.diff_ids[1])
        );
        let truncated = Hostile::Truncated.build(m).unwrap();
        assert!(truncated.bytes.len() < truncated.image.bytes.len());
    }

    #[test]
    fn finds_planted_markers_but_not_inside_the_data_root() {
        let dir = tempfile::tempdir().unwrap();
        let data_root = dir.path().join("data-root");
        std::fs::create_dir_all(data_root.join("x")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        std::fs::write(data_root.join("x/mark-1"), "").unwrap();
        std::fs::write(dir.path().join("elsewhere/mark-1"), "").unwrap();
        let archive = HostileArchive {
            kind: Hostile::AbsolutePath,
            tag: String::new(),
            marker: "mark-1".into(),
            bytes: Vec::new(),
            image: ImageBuilder::new().build(),
        };
        let found = archive.planted_outside(&data_root, &[dir.path()]);
        assert_eq!(found, vec![dir.path().join("elsewhere/mark-1")]);
    }
}
