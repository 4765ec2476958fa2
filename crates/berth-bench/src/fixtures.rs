//! The images both daemons get, built once per run with berth-testkit from
//! Debian's busybox-static: the busybox image every container runs, the
//! ~200 MB random-data image with 5+ layers for load/save/pull (written to a
//! file, since `docker load -i` reads one), and the small distinct images
//! that make `docker system df` see 50 images.

use std::io;
use std::path::{Path, PathBuf};

use berth_testkit::{busybox, ImageBuilder, LayerTar};

/// Prefix of the df images' tags.
pub const DF_REPO: &str = "bench/df";

pub struct Fixtures {
    /// docker-save archive of [`busybox::IMAGE`].
    pub busybox: Vec<u8>,
    /// docker-save archive of [`busybox::LARGE_IMAGE`], on disk.
    pub large: PathBuf,
    pub large_bytes: u64,
    pub large_layers: usize,
    /// One archive per df image: the busybox base plus a one-file layer.
    pub df: Vec<Vec<u8>>,
}

impl Fixtures {
    /// Builds the images; the large archive goes to `dir`.
    pub fn build(
        dir: &Path,
        large_mib: u64,
        large_layers: usize,
        df_images: usize,
    ) -> io::Result<Fixtures> {
        let busybox = busybox::image()?.build().bytes;
        let large_image = busybox::large_image(large_mib, large_layers)?.build();
        let large = dir.join("large.tar");
        large_image.write_to(&large)?;
        let large_bytes = large_image.bytes.len() as u64;
        // Base layer included.
        let layers = large_image.diff_ids.len();
        drop(large_image);
        let mut df = Vec::with_capacity(df_images);
        for i in 0..df_images {
            let image = ImageBuilder::new()
                .tag(&format!("{DF_REPO}:{i}"))
                .layer(
                    busybox::base_layer()?,
                    "/bin/sh -c #(nop) ADD file:busybox-static in / ",
                )
                .layer(
                    LayerTar::new().file("bench-df.txt", 0o644, format!("image {i}\n")),
                    &format!("/bin/sh -c echo image {i} > /bench-df.txt"),
                )
                .build();
            df.push(image.bytes);
        }
        Ok(Fixtures {
            busybox,
            large,
            large_bytes,
            large_layers: layers,
            df,
        })
    }
}
