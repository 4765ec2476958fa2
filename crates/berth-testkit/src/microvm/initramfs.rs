//! The microVM's initramfs, built per run in a scratch directory: busybox
//! with its applet links, the kernel modules, host tools and the test's own
//! binaries (debug info stripped, the libraries `ldd` names copied along),
//! payload files, and an `/init` that loads modules, runs the test script
//! and reports its exit status on the serial console.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The line `/init` prints after the script, then `exit=<status>`.
pub const RESULT_MARKER: &str = "BERTH-MICROVM-RESULT";
/// The line `/init` prints right before the script starts.
pub const START_MARKER: &str = "BERTH-MICROVM-START";

/// What goes into the VM besides busybox and the modules.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    pub(crate) entries: Vec<Entry>,
    pub(crate) env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A host executable, stripped, with its shared libraries.
    Binary { host: PathBuf, guest: String },
    /// A host command found on `PATH`, into `/bin`, with its libraries.
    Tool(String),
    /// A file copied as is.
    File { host: PathBuf, guest: String },
    /// Bytes written to a file.
    Bytes { data: Vec<u8>, guest: String },
}

impl Payload {
    pub fn new() -> Payload {
        Payload::default()
    }

    /// A host executable as `/payload/bin/<name>` (on the guest's `PATH`),
    /// debug info stripped to keep the initramfs small.
    pub fn binary(mut self, host: impl Into<PathBuf>, name: &str) -> Payload {
        self.entries.push(Entry::Binary {
            host: host.into(),
            guest: format!("/payload/bin/{name}"),
        });
        self
    }

    /// A host command (`mkfs.xfs`, `runc`...) found on `PATH` or in the sbin
    /// directories, copied to the guest's `/bin` with its libraries.
    pub fn tool(mut self, name: &str) -> Payload {
        self.entries.push(Entry::Tool(name.to_string()));
        self
    }

    /// A host file at an absolute guest path.
    pub fn file(mut self, host: impl Into<PathBuf>, guest: &str) -> Payload {
        self.entries.push(Entry::File {
            host: host.into(),
            guest: guest.to_string(),
        });
        self
    }

    /// Bytes as a file at an absolute guest path.
    pub fn bytes(mut self, data: impl Into<Vec<u8>>, guest: &str) -> Payload {
        self.entries.push(Entry::Bytes {
            data: data.into(),
            guest: guest.to_string(),
        });
        self
    }

    /// An environment variable for the test script.
    pub fn env(mut self, key: &str, value: &str) -> Payload {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// Lays out the initramfs tree under `root` and packs it into `out`
/// (uncompressed newc cpio: nothing to decompress under emulation).
pub fn build(
    root: &Path,
    out: &Path,
    modules: &[PathBuf],
    payload: &Payload,
    script: &str,
) -> io::Result<()> {
    for dir in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "mnt",
        "etc",
        "root",
        "var/tmp",
        "lib/modules",
        "payload/bin",
    ] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let busybox = which("busybox")?;
    std::fs::copy(&busybox, root.join("bin/busybox"))?;
    copy_libraries(&busybox, root)?;

    let mut load_order = String::new();
    for module in modules {
        let name = module
            .file_name()
            .ok_or_else(|| io::Error::other("module without a file name"))?;
        std::fs::copy(module, root.join("lib/modules").join(name))?;
        load_order.push_str(&format!("{}\n", name.to_string_lossy()));
    }
    write(
        &root.join("lib/modules/load-order"),
        load_order.as_bytes(),
        0o644,
    )?;

    for entry in &payload.entries {
        match entry {
            Entry::Binary { host, guest } => {
                let dest = guest_path(root, guest)?;
                strip_copy(host, &dest)?;
                copy_libraries(host, root)?;
            }
            Entry::Tool(name) => {
                let host = which(name)?;
                let dest = root.join("bin").join(name);
                std::fs::copy(&host, &dest)?;
                copy_libraries(&host, root)?;
            }
            Entry::File { host, guest } => {
                let dest = guest_path(root, guest)?;
                std::fs::copy(host, &dest)?;
            }
            Entry::Bytes { data, guest } => {
                let dest = guest_path(root, guest)?;
                write(&dest, data, 0o755)?;
            }
        }
    }
    // Tools that dlopen or exec by absolute path expect these.
    write(
        &root.join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    )?;
    write(&root.join("etc/group"), b"root:x:0:\n", 0o644)?;
    write(&root.join("test.sh"), script.as_bytes(), 0o755)?;
    write(
        &root.join("init"),
        init_script(&payload.env).as_bytes(),
        0o755,
    )?;
    pack(root, out)
}

/// `/init`: mounts the kernel filesystems, loads modules in dependency
/// order, runs `/test.sh` and prints its status, then powers off at once
/// (`-no-reboot` turns the power-off into qemu exiting).
fn init_script(env: &[(String, String)]) -> String {
    let mut exports = String::new();
    for (k, v) in env {
        exports.push_str(&format!("export {k}='{}'\n", v.replace('\'', r"'\''")));
    }
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/payload/bin:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp
export BERTH_MICROVM_GUEST=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
for m in $(cat /lib/modules/load-order); do
    insmod /lib/modules/$m || echo "microvm: insmod $m failed"
done
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/mounts /etc/mtab
hostname microvm
{exports}cd /tmp
echo {START_MARKER}
/bin/sh /test.sh
status=$?
if [ $status -ne 0 ]; then
    echo "microvm: the script failed; kernel messages:"
    dmesg | tail -n 40
fi
sync
echo "{RESULT_MARKER} exit=$status"
poweroff -f
"#
    )
}

fn guest_path(root: &Path, guest: &str) -> io::Result<PathBuf> {
    let rel = guest
        .strip_prefix('/')
        .ok_or_else(|| io::Error::other(format!("guest path {guest:?} must be absolute")))?;
    let dest = root.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(dest)
}

fn write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    std::fs::write(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Finds a command on `PATH` or in the sbin directories (tests may run with
/// a `PATH` that lacks them).
pub fn which(name: &str) -> io::Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found.ok_or_else(|| io::Error::other(format!("{name} is not installed on this host")))
}

/// Copies `host` to `dest` without debug info (test binaries are mostly
/// DWARF); falls back to a plain copy when objcopy is missing or declines.
fn strip_copy(host: &Path, dest: &Path) -> io::Result<()> {
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(host)
        .arg(dest)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !stripped {
        std::fs::copy(host, dest)?;
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
}

/// Copies the shared libraries `ldd` names for `host` to the same paths
/// under `root` (statically linked programs have none).
fn copy_libraries(host: &Path, root: &Path) -> io::Result<()> {
    let out = Command::new("ldd").arg(host).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = BTreeSet::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)".
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.insert(PathBuf::from(p));
        }
    }
    for lib in libs {
        let dest = guest_path(root, &lib.to_string_lossy())?;
        if !dest.exists() {
            std::fs::copy(&lib, &dest)?;
        }
    }
    Ok(())
}

/// `find . | cpio -o -H newc -R 0:0` in `root`, into `out`.
fn pack(root: &Path, out: &Path) -> io::Result<()> {
    let mut find = Command::new("find")
        .arg(".")
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()?;
    let list = find
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("find has no stdout"))?;
    let status = Command::new("cpio")
        .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(root)
        .stdin(list)
        .stdout(std::fs::File::create(out)?)
        .status()?;
    let found = find.wait()?;
    if !status.success() || !found.success() {
        return Err(io::Error::other(format!(
            "packing the initramfs: find {found}, cpio {status}"
        )));
    }
    Ok(())
}
