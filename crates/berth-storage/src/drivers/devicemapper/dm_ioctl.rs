//! The kernel's device-mapper interface (`/dev/mapper/control` ioctls,
//! `linux/dm-ioctl.h` v4), just what a thin pool needs: create, load a
//! table, resume, suspend, remove, status and target messages. Written
//! directly rather than through the `devicemapper` crate, whose pool type
//! owns its linear sub-devices and cannot adopt an existing pool.

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::error::{Result, StorageError};

const DM_NAME_LEN: usize = 128;
/// `sizeof(struct dm_ioctl)`.
const HEADER_LEN: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC_LEN: usize = 40;

const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_DEV_STATUS: u8 = 7;
const DM_TABLE_LOAD: u8 = 9;
const DM_TABLE_STATUS: u8 = 12;
const DM_TARGET_MSG: u8 = 14;

const DM_SUSPEND_FLAG: u32 = 1 << 1;
const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;
const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;

/// A block device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    fn from_kernel(dev: u64) -> DevNum {
        // The kernel's huge_encode_dev layout.
        DevNum {
            major: ((dev >> 8) & 0xfff) as u32,
            minor: ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32,
        }
    }

    /// `major:minor`, as device-mapper tables name devices.
    pub fn table_name(self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// What `DM_DEV_STATUS` reports about a device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceInfo {
    pub dev: DevNum,
}

/// An open `/dev/mapper/control`.
pub struct Control {
    file: File,
}

/// Builds one ioctl buffer: the header, then the payload at `data_start`.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(name: &str, payload_capacity: usize) -> Result<Request> {
        if name.len() >= DM_NAME_LEN || name.contains('/') {
            return Err(StorageError::InvalidOption(format!(
                "device-mapper name {name:?} is too long or has a '/'"
            )));
        }
        let size = HEADER_LEN + payload_capacity;
        let mut buf = vec![0u8; size];
        put_u32(&mut buf, 0, 4);
        put_u32(&mut buf, 4, 0);
        put_u32(&mut buf, 8, 0);
        put_u32(&mut buf, 12, size as u32);
        put_u32(&mut buf, 16, HEADER_LEN as u32);
        buf[48..48 + name.len()].copy_from_slice(name.as_bytes());
        Ok(Request { buf })
    }

    fn set_flags(&mut self, flags: u32) {
        put_u32(&mut self.buf, 28, flags);
    }

    fn flags(&self) -> u32 {
        get_u32(&self.buf, 28)
    }

    fn set_target_count(&mut self, n: u32) {
        put_u32(&mut self.buf, 20, n);
    }

    fn target_count(&self) -> u32 {
        get_u32(&self.buf, 20)
    }

    fn dev(&self) -> u64 {
        u64::from_ne_bytes(self.buf[40..48].try_into().expect("8 bytes"))
    }

    fn data_start(&self) -> usize {
        get_u32(&self.buf, 16) as usize
    }

    fn payload(&mut self) -> &mut [u8] {
        &mut self.buf[HEADER_LEN..]
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// `_IOWR(0xfd, cmd, struct dm_ioctl)`.
fn request_code(cmd: u8) -> libc::c_ulong {
    const IOC_READ_WRITE: libc::c_ulong = 3;
    (IOC_READ_WRITE << 30)
        | ((HEADER_LEN as libc::c_ulong) << 16)
        | (0xfd << 8)
        | cmd as libc::c_ulong
}

/// One line of a table: `start length target params`, in 512-byte sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub start: u64,
    pub length: u64,
    pub kind: String,
    pub params: String,
}

impl Control {
    /// Opens the control device; its absence means the kernel has no
    /// device-mapper (or the `dm-mod` module is not loaded).
    pub fn open() -> Result<Control> {
        let path = "/dev/mapper/control";
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                StorageError::Unsupported(format!(
                    "devicemapper: cannot open {path} ({e}): the kernel has no device-mapper \
                     support, or the dm_mod module is not loaded"
                ))
            })?;
        Ok(Control { file })
    }

    fn ioctl(&self, cmd: u8, req: &mut Request, what: &str) -> Result<()> {
        // SAFETY: the buffer is at least `data_size` bytes long, as the
        // header says; the kernel reads and writes only within it.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                request_code(cmd),
                req.buf.as_mut_ptr(),
            )
        };
        if rc < 0 {
            return Err(StorageError::io(
                format!("device-mapper {what}"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Creates an empty device `name` (no table yet).
    pub fn create(&self, name: &str) -> Result<DevNum> {
        let mut req = Request::new(name, 0)?;
        self.ioctl(DM_DEV_CREATE, &mut req, &format!("create {name}"))?;
        Ok(DevNum::from_kernel(req.dev()))
    }

    /// Loads `targets` as the inactive table of `name`.
    pub fn load(&self, name: &str, targets: &[Target]) -> Result<()> {
        let mut payload = Vec::new();
        for t in targets {
            let mut spec = vec![0u8; SPEC_LEN];
            spec[0..8].copy_from_slice(&t.start.to_ne_bytes());
            spec[8..16].copy_from_slice(&t.length.to_ne_bytes());
            if t.kind.len() >= 16 {
                return Err(StorageError::InvalidOption(format!(
                    "device-mapper target type {:?} is too long",
                    t.kind
                )));
            }
            spec[24..24 + t.kind.len()].copy_from_slice(t.kind.as_bytes());
            spec.extend_from_slice(t.params.as_bytes());
            spec.push(0);
            spec.resize(spec.len().next_multiple_of(8), 0);
            // `next`: from this spec to the following one.
            let next = spec.len() as u32;
            spec[20..24].copy_from_slice(&next.to_ne_bytes());
            payload.extend_from_slice(&spec);
        }
        let mut req = Request::new(name, payload.len())?;
        req.payload().copy_from_slice(&payload);
        req.set_target_count(targets.len() as u32);
        self.ioctl(DM_TABLE_LOAD, &mut req, &format!("load table of {name}"))
    }

    /// Makes the loaded table live (and resumes I/O).
    pub fn resume(&self, name: &str) -> Result<()> {
        let mut req = Request::new(name, 0)?;
        self.ioctl(DM_DEV_SUSPEND, &mut req, &format!("resume {name}"))
    }

    /// Suspends I/O, flushing what is in flight.
    pub fn suspend(&self, name: &str) -> Result<()> {
        let mut req = Request::new(name, 0)?;
        req.set_flags(DM_SUSPEND_FLAG);
        self.ioctl(DM_DEV_SUSPEND, &mut req, &format!("suspend {name}"))
    }

    /// Removes device `name`.
    pub fn remove(&self, name: &str) -> Result<()> {
        let mut req = Request::new(name, 0)?;
        self.ioctl(DM_DEV_REMOVE, &mut req, &format!("remove {name}"))
    }

    /// The device's number and state, or `None` when it does not exist.
    pub fn info(&self, name: &str) -> Result<Option<DeviceInfo>> {
        let mut req = Request::new(name, 0)?;
        match self.ioctl(DM_DEV_STATUS, &mut req, &format!("status of {name}")) {
            Ok(()) => Ok(Some(DeviceInfo {
                dev: DevNum::from_kernel(req.dev()),
            })),
            Err(StorageError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENXIO) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The live table's status lines (`dmsetup status`).
    pub fn status(&self, name: &str) -> Result<Vec<Target>> {
        self.table_status(name, 0)
    }

    /// The live table itself (`dmsetup table`).
    pub fn table(&self, name: &str) -> Result<Vec<Target>> {
        self.table_status(name, DM_STATUS_TABLE_FLAG)
    }

    fn table_status(&self, name: &str, flags: u32) -> Result<Vec<Target>> {
        let mut capacity = 16 * 1024;
        loop {
            let mut req = Request::new(name, capacity)?;
            req.set_flags(flags);
            self.ioctl(DM_TABLE_STATUS, &mut req, &format!("status of {name}"))?;
            if req.flags() & DM_BUFFER_FULL_FLAG != 0 {
                capacity *= 4;
                continue;
            }
            return Ok(parse_specs(&req));
        }
    }

    /// Sends a message to the target at sector 0 of `name` (thin-pool
    /// `create_thin`, `create_snap`, `delete`...).
    pub fn message(&self, name: &str, message: &str) -> Result<()> {
        let mut payload = vec![0u8; 8];
        payload.extend_from_slice(message.as_bytes());
        payload.push(0);
        let mut req = Request::new(name, payload.len())?;
        req.payload().copy_from_slice(&payload);
        self.ioctl(
            DM_TARGET_MSG,
            &mut req,
            &format!("message {message:?} to {name}"),
        )
    }
}

fn parse_specs(req: &Request) -> Vec<Target> {
    let mut out = Vec::new();
    let mut at = req.data_start();
    for _ in 0..req.target_count() {
        if at + SPEC_LEN > req.buf.len() {
            break;
        }
        let spec = &req.buf[at..];
        let start = u64::from_ne_bytes(spec[0..8].try_into().expect("8 bytes"));
        let length = u64::from_ne_bytes(spec[8..16].try_into().expect("8 bytes"));
        let next = get_u32(spec, 20) as usize;
        let kind = c_string(&spec[24..40]);
        let params = c_string(&spec[SPEC_LEN..]);
        out.push(Target {
            start,
            length,
            kind,
            params,
        });
        if next == 0 {
            break;
        }
        // In status output `next` counts from the start of the data area.
        at = req.data_start() + next;
    }
    out
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `/dev/dm-<minor>`: devtmpfs creates it as soon as the device exists,
/// with or without udev (which the daemon does not wait for).
pub fn device_path(dev: DevNum) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/dm-{}", dev.minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        // DM_DEV_CREATE = _IOWR(0xfd, 3, struct dm_ioctl) = 0xc138fd03.
        assert_eq!(request_code(DM_DEV_CREATE), 0xc138_fd03);
        assert_eq!(request_code(DM_TARGET_MSG), 0xc138_fd0e);
    }

    #[test]
    fn device_numbers_decode_like_the_kernel() {
        let d = DevNum::from_kernel((253 << 8) | 5);
        assert_eq!((d.major, d.minor), (253, 5));
        let big = DevNum::from_kernel((253 << 8) | 0x34 | (0x12 << 20));
        assert_eq!((big.major, big.minor), (253, 0x1234));
    }
}
