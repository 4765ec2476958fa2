//! `MicroVm`: runs a shell script in a throw-away qemu microVM (TCG; nested
//! KVM fails here) booting Debian's cloud kernel, for the kernel features
//! this host lacks (device-mapper, XFS project quota). The script's output
//! and exit status come back over the serial console; a timeout kills qemu.
//! Test binaries re-run their own guest-side tests inside it ([`run_guest_tests`]).

mod initramfs;
mod kernel;

use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use initramfs::{which, Payload, RESULT_MARKER, START_MARKER};
pub use kernel::{cache_dir, Kernel};

use crate::scratch;

/// Modules every VM loads: dm-thin (and, through its dependencies, dm-mod,
/// dm-bufio, dm-persistent-data, dm-bio-prison), xfs (libcrc32c), loop and
/// overlay.
pub const DEFAULT_MODULES: &[&str] = &["dm-thin-pool", "xfs", "loop", "overlay"];

/// The environment variable `/init` sets in the guest.
pub const GUEST_ENV: &str = "BERTH_MICROVM_GUEST";

/// How a VM is made.
#[derive(Debug, Clone)]
pub struct MicroVm {
    memory_mib: u32,
    timeout: Duration,
    modules: Vec<String>,
    scratch_disk_mib: Option<u64>,
}

impl Default for MicroVm {
    fn default() -> Self {
        MicroVm {
            memory_mib: 1024,
            timeout: Duration::from_secs(600),
            modules: DEFAULT_MODULES.iter().map(|m| m.to_string()).collect(),
            scratch_disk_mib: None,
        }
    }
}

/// What a VM run produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// The script's exit status; `None` if the VM died or timed out first.
    pub exit_code: Option<i32>,
    /// Everything on the serial console (boot messages included).
    pub console: String,
    /// Whether qemu was killed at the timeout.
    pub timed_out: bool,
    /// From qemu's start to its exit.
    pub elapsed: Duration,
}

impl Output {
    /// The script's exit status was 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// What the script printed (between `/init`'s markers).
    pub fn script_output(&self) -> &str {
        let start = self
            .console
            .find(START_MARKER)
            .map(|i| i + START_MARKER.len())
            .unwrap_or(0);
        let rest = &self.console[start..];
        let end = rest.find(RESULT_MARKER).unwrap_or(rest.len());
        rest[..end].trim_matches(['\r', '\n'])
    }

    /// Panics with the console unless the script exited 0.
    #[track_caller]
    pub fn assert_success(&self) {
        if !self.success() {
            panic!(
                "microVM script failed (exit {:?}, timed out: {}, {:.1?}); console:\n{}",
                self.exit_code, self.timed_out, self.elapsed, self.console
            );
        }
    }
}

/// Kills qemu if the run is abandoned (timeout, or a panic in between).
struct QemuGuard(Option<Child>);

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl MicroVm {
    /// A VM with the defaults: 1024 MiB, [`DEFAULT_MODULES`], 10 min timeout.
    pub fn new() -> MicroVm {
        MicroVm::default()
    }

    /// Runs `script` (busybox sh) in a VM with the default settings.
    pub fn run(script: &str, payload: &Payload) -> io::Result<Output> {
        MicroVm::new().run_script(script, payload)
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Loads another kernel module (with its dependencies).
    pub fn module(mut self, name: &str) -> Self {
        self.modules.push(name.to_string());
        self
    }

    /// Attaches a sparse scratch disk as `/dev/vda` (for data that should
    /// not live in the guest's memory).
    pub fn scratch_disk_mib(mut self, mib: u64) -> Self {
        self.scratch_disk_mib = Some(mib);
        self.modules.push("virtio_pci".into());
        self.modules.push("virtio_blk".into());
        self
    }

    /// Whether this host can run a VM at all; `Err` says what is missing.
    pub fn check_host() -> Result<(), String> {
        let missing: Vec<&str> = ["qemu-system-x86_64", "cpio", "busybox", "apt-get", "dpkg"]
            .into_iter()
            .filter(|t| which(t).is_err())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the microVM harness needs {} (apt-get install qemu-system-x86 cpio busybox-static)",
                missing.join(", ")
            ))
        }
    }

    /// Builds the initramfs, boots, runs `script`, and returns what the
    /// console showed. `Err` only for harness failures (no qemu, no kernel);
    /// a failing script or a timeout is an [`Output`].
    pub fn run_script(&self, script: &str, payload: &Payload) -> io::Result<Output> {
        Self::check_host().map_err(io::Error::other)?;
        let kernel = kernel::fetch()?;
        let modules = kernel.modules_in_load_order(&self.modules)?;
        let dir = scratch::scratch_dir("microvm-")?;
        let initrd = dir.path().join("initrd.cpio");
        initramfs::build(&dir.path().join("root"), &initrd, &modules, payload, script)?;
        // The tree is in the cpio now; free the space before booting.
        let _ = std::fs::remove_dir_all(dir.path().join("root"));

        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-cpu", "max", "-smp", "1"])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(&kernel.vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            // loglevel=1 keeps kernel chatter (the XFS mount banner, quota
            // warnings) off the console the results are read from; /init
            // prints dmesg when the script fails.
            .args(["-append", "console=ttyS0 quiet loglevel=1 panic=-1"]);
        if let Some(mib) = self.scratch_disk_mib {
            let disk = dir.path().join("scratch.img");
            std::fs::File::create(&disk)?.set_len(mib * 1024 * 1024)?;
            cmd.arg("-drive").arg(format!(
                "file={},format=raw,if=virtio,cache=unsafe",
                disk.display()
            ));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting qemu: {e}")))?;
        let console = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            child.stdout.take().map(|s| collect(s, console.clone())),
            child.stderr.take().map(|s| collect(s, console.clone())),
        ];
        let mut guard = QemuGuard(Some(child));
        let mut timed_out = false;
        loop {
            let child = guard.0.as_mut().expect("qemu is held until it exits");
            if child.try_wait()?.is_some() {
                break;
            }
            if start.elapsed() > self.timeout {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        guard.0 = None;
        for reader in readers.into_iter().flatten() {
            let _ = reader.join();
        }
        let elapsed = start.elapsed();
        let bytes = console.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let console = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
        let exit_code = console
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(RESULT_MARKER))
            .and_then(|rest| rest.trim().strip_prefix("exit="))
            .and_then(|code| code.trim().parse().ok());
        Ok(Output {
            exit_code,
            console,
            timed_out,
            elapsed,
        })
    }
}

fn collect(
    mut stream: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    let echo = std::env::var_os("BERTH_MICROVM_ECHO").is_some();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if echo {
                        eprint!("{}", String::from_utf8_lossy(&buf[..n]));
                    }
                    into.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            }
        }
    })
}

/// Whether this process runs inside a microVM made by [`MicroVm`].
pub fn in_guest() -> bool {
    std::env::var_os(GUEST_ENV).is_some()
}

/// Guest-side tests call this first: they are `#[ignore]`d on the host
/// and only make sense in the VM ([`run_guest_tests`] runs them there).
#[track_caller]
pub fn require_guest() {
    if !in_guest() {
        panic!(
            "this test needs kernel features the host lacks and runs only inside the microVM; \
             the matching host test boots it"
        );
    }
}

/// Boots a VM with the running test binary in it and runs the binary's
/// tests whose names contain `filter` (they are `#[ignore]`d on the host,
/// so `--ignored` selects them), one at a time, in one boot. Returns the
/// VM's output after checking that the script passed and that libtest ran
/// at least one test; panics with the console otherwise.
#[track_caller]
pub fn run_guest_tests(vm: &MicroVm, filter: &str, payload: Payload) -> Output {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let payload = payload.binary(exe, "guest-tests");
    let script = format!(
        "RUST_BACKTRACE=1 guest-tests --ignored --test-threads=1 --nocapture '{}'\n",
        filter.replace('\'', "")
    );
    let output = vm
        .run_script(&script, &payload)
        .unwrap_or_else(|e| panic!("microVM harness: {e}"));
    eprintln!(
        "microVM ran '{filter}' in {:.1?}:\n{}",
        output.elapsed,
        output.script_output()
    );
    output.assert_success();
    let ran = output
        .console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u32>().ok())
        .sum::<u32>();
    assert!(
        ran > 0,
        "no guest test matched '{filter}'; console:\n{}",
        output.console
    );
    output
}
