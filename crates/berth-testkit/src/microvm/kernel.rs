//! The microVM's kernel: Debian's `linux-image-<abi>-cloud-amd64` (it has
//! dm-thin-pool and XFS quota, which the host kernel lacks), fetched once
//! with `apt-get download`, unpacked with `dpkg -x` into a cache directory
//! shared by every test run, plus module dependency order from `modinfo`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

/// The meta-package whose `Depends:` names the current cloud kernel.
const META_PACKAGE: &str = "linux-image-cloud-amd64";

/// An unpacked kernel package in the cache.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `boot/vmlinuz-<release>`.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
    /// e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
}

/// Where kernels are cached: `$BERTH_MICROVM_CACHE`, else
/// `<cargo target dir>/microvm-cache`. The target dir is found from the
/// running test binary (cargo marks it with `CACHEDIR.TAG`), so every test
/// binary of a workspace shares one download.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_MICROVM_CACHE") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join("CACHEDIR.TAG").is_file() {
                return dir.join("microvm-cache");
            }
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/microvm-cache")
}

/// The cloud kernel, downloaded and unpacked on first use. Concurrent test
/// processes serialize on a lock file; the unpacked tree is renamed into
/// place only when complete, so a killed download never looks finished.
pub fn fetch() -> io::Result<Kernel> {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache)?;
    let lock_file = std::fs::File::create(cache.join(".lock"))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::other(format!("lock {}: {e}", cache.display())))?;

    let package = match current_package() {
        Ok(p) => p,
        Err(e) => {
            // Offline or no apt lists: any kernel already cached will do.
            return newest_cached(&cache)
                .ok_or_else(|| io::Error::other(format!("finding the cloud kernel: {e}")));
        }
    };
    let dir = cache.join(&package);
    if let Some(kernel) = unpacked(&dir) {
        return Ok(kernel);
    }
    let work = cache.join(format!(".tmp-{package}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = download_and_unpack(&package, &work, &dir);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    unpacked(&dir).ok_or_else(|| {
        io::Error::other(format!(
            "{package} has no vmlinuz or modules after unpacking"
        ))
    })
}

fn download_and_unpack(package: &str, work: &Path, dir: &Path) -> io::Result<()> {
    run(Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(work))?;
    let deb = std::fs::read_dir(work)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| io::Error::other(format!("apt-get download {package} left no .deb")))?;
    let tree = work.join("tree");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree))?;
    // Only what the VM uses is kept: the kernel image and the modules.
    let out = work.join("kernel");
    std::fs::create_dir_all(out.join("lib"))?;
    std::fs::rename(tree.join("boot"), out.join("boot"))?;
    std::fs::rename(tree.join("lib/modules"), out.join("lib/modules"))?;
    std::fs::rename(&out, dir)
}

/// The versioned package the meta-package currently depends on.
fn current_package() -> io::Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "--no-recommends", "--no-suggests", META_PACKAGE])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
        .map(str::to_string)
        .ok_or_else(|| {
            io::Error::other(format!(
                "apt-cache depends {META_PACKAGE} names no kernel (run apt-get update?): {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })
}

fn unpacked(dir: &Path) -> Option<Kernel> {
    let modules_root = dir.join("lib/modules");
    let release = std::fs::read_dir(&modules_root)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()?;
    let vmlinuz = dir.join("boot").join(format!("vmlinuz-{release}"));
    vmlinuz.is_file().then(|| Kernel {
        vmlinuz,
        modules: modules_root.join(&release),
        release,
    })
}

fn newest_cached(cache: &Path) -> Option<Kernel> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("linux-image-"))
        .collect();
    names.sort();
    names.iter().rev().find_map(|n| unpacked(&cache.join(n)))
}

impl Kernel {
    /// The `.ko` files for `wanted` and everything they depend on, in an
    /// order `insmod` accepts (dependencies first). Module names match with
    /// `-` and `_` interchangeable, as the kernel treats them.
    pub fn modules_in_load_order(&self, wanted: &[String]) -> io::Result<Vec<PathBuf>> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in wanted {
            self.visit(name, &mut seen, &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<PathBuf>,
        depth: usize,
    ) -> io::Result<()> {
        let key = name.replace('_', "-");
        if depth > 32 {
            return Err(io::Error::other(format!(
                "module dependency loop at {name}"
            )));
        }
        if !seen.insert(key.clone()) {
            return Ok(());
        }
        let Some(path) = self.find_module(&key) else {
            // Built into this kernel (no .ko): nothing to load.
            if self.is_builtin(&key) {
                return Ok(());
            }
            return Err(io::Error::other(format!(
                "kernel {} has no module {name}",
                self.release
            )));
        };
        let out = Command::new("modinfo")
            .args(["-F", "depends"])
            .arg(&path)
            .output()?;
        let deps = String::from_utf8_lossy(&out.stdout).trim().to_string();
        for dep in deps.split(',').filter(|d| !d.is_empty()) {
            self.visit(dep, seen, order, depth + 1)?;
        }
        order.push(path);
        Ok(())
    }

    fn find_module(&self, key: &str) -> Option<PathBuf> {
        let order = std::fs::read_to_string(self.modules.join("modules.order")).ok()?;
        order.lines().find_map(|line| {
            let file = Path::new(line.trim()).file_name()?.to_str()?;
            let stem = file.strip_suffix(".ko")?;
            (stem.replace('_', "-") == key).then(|| self.modules.join(line.trim()))
        })
    }

    fn is_builtin(&self, key: &str) -> bool {
        std::fs::read_to_string(self.modules.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| Path::new(l).file_name()?.to_str()?.strip_suffix(".ko"))
            .any(|stem| stem.replace('_', "-") == key)
    }
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
