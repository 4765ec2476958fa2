//! Tar-split: while a layer tar is unpacked, everything that is not file
//! content (headers, padding, the end-of-archive blocks) is recorded with
//! references to the files the content went to. Replaying the record over
//! the unpacked layer rebuilds the original tar byte for byte, so `docker
//! save` reproduces the layer's diff ID without keeping a second copy.
//!
//! Record stream (zstd-compressed): `R <u32 len> <bytes>` for raw framing,
//! `F <u64 size> <u32 len> <path>` for a file's content.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{Result, StorageError};

const RAW: u8 = b'R';
const FILE: u8 = b'F';

/// Writes a tar-split record while a layer is applied.
pub struct SplitRecorder {
    out: zstd::Encoder<'static, BufWriter<File>>,
    pending: Vec<u8>,
    total: u64,
}

impl SplitRecorder {
    /// Starts a record at `path`.
    pub fn create(path: &Path) -> Result<SplitRecorder> {
        let file = File::create(path).map_err(|e| StorageError::at(path, "create", e))?;
        let out = zstd::Encoder::new(BufWriter::new(file), 3)
            .map_err(|e| StorageError::io("start tar-split", e))?;
        Ok(SplitRecorder {
            out,
            pending: Vec::new(),
            total: 0,
        })
    }

    /// Appends raw framing bytes.
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.pending.extend_from_slice(bytes);
    }

    fn flush_raw(&mut self) -> Result<()> {
        for chunk in self.pending.chunks(u32::MAX as usize) {
            self.out
                .write_all(&[RAW])
                .and_then(|_| self.out.write_all(&(chunk.len() as u32).to_le_bytes()))
                .and_then(|_| self.out.write_all(chunk))
                .map_err(|e| StorageError::io("write tar-split", e))?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Records that `size` content bytes came from the file at `rel`.
    pub(crate) fn file(&mut self, rel: &Path, size: u64) -> Result<()> {
        self.flush_raw()?;
        let path = rel.as_os_str().as_encoded_bytes();
        self.total += size;
        self.out
            .write_all(&[FILE])
            .and_then(|_| self.out.write_all(&size.to_le_bytes()))
            .and_then(|_| self.out.write_all(&(path.len() as u32).to_le_bytes()))
            .and_then(|_| self.out.write_all(path))
            .map_err(|e| StorageError::io("write tar-split", e))
    }

    /// Completes the record (fsynced) and returns the tar's total length.
    pub fn finish(mut self) -> Result<u64> {
        self.flush_raw()?;
        let writer = self
            .out
            .finish()
            .map_err(|e| StorageError::io("finish tar-split", e))?;
        let file = writer
            .into_inner()
            .map_err(|e| StorageError::io("finish tar-split", e.into_error()))?;
        file.sync_all()
            .map_err(|e| StorageError::io("sync tar-split", e))?;
        Ok(self.total)
    }
}

/// Rebuilds the original tar from the record at `split` and the layer
/// content under `content_root`, writing it to `out`.
pub fn reassemble(split: &Path, content_root: &Path, out: &mut dyn Write) -> Result<()> {
    let file = File::open(split).map_err(|e| StorageError::at(split, "open", e))?;
    let mut input = zstd::Decoder::with_buffer(BufReader::new(file))
        .map_err(|e| StorageError::io("read tar-split", e))?;
    let root = super::beneath::open_root(content_root)?;
    let corrupt = |what: &str| {
        StorageError::io(
            format!("tar-split {}", split.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
        )
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut kind = [0u8; 1];
        match input.read(&mut kind) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(StorageError::io("read tar-split", e)),
        }
        match kind[0] {
            RAW => {
                let mut len = [0u8; 4];
                input
                    .read_exact(&mut len)
                    .map_err(|_| corrupt("truncated"))?;
                let mut left = u32::from_le_bytes(len) as u64;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    input
                        .read_exact(&mut buf[..n])
                        .map_err(|_| corrupt("truncated"))?;
                    out.write_all(&buf[..n])
                        .map_err(|e| StorageError::io("write tar stream", e))?;
                    left -= n as u64;
                }
            }
            FILE => {
                let mut size = [0u8; 8];
                let mut len = [0u8; 4];
                input
                    .read_exact(&mut size)
                    .map_err(|_| corrupt("truncated"))?;
                input
                    .read_exact(&mut len)
                    .map_err(|_| corrupt("truncated"))?;
                let mut path = vec![0u8; u32::from_le_bytes(len) as usize];
                input
                    .read_exact(&mut path)
                    .map_err(|_| corrupt("truncated"))?;
                let rel = Path::new(std::ffi::OsStr::from_bytes(&path));
                copy_content(root.as_fd(), rel, u64::from_le_bytes(size), out, &mut buf)?;
            }
            _ => return Err(corrupt("unknown record")),
        }
    }
}

fn copy_content(
    root: std::os::fd::BorrowedFd<'_>,
    rel: &Path,
    size: u64,
    out: &mut dyn Write,
    buf: &mut [u8],
) -> Result<()> {
    let fd = rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| StorageError::io(format!("open layer file {}", rel.display()), e.into()))?;
    let mut file = File::from(fd);
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file
            .read(&mut buf[..want])
            .map_err(|e| StorageError::io(format!("read layer file {}", rel.display()), e))?;
        if n == 0 {
            return Err(StorageError::io(
                format!("layer file {} changed since it was unpacked", rel.display()),
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ));
        }
        out.write_all(&buf[..n])
            .map_err(|e| StorageError::io("write tar stream", e))?;
        left -= n as u64;
    }
    Ok(())
}
