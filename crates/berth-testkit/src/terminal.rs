//! A command under a real pseudo-terminal, as a user at a shell runs
//! `docker run -it`, `docker exec -it` or `docker attach`: util-linux
//! `script` gives it a pty; the test types into it and reads what the
//! terminal shows, waiting for text to appear rather than for time to pass.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ctrl-P Ctrl-Q, Docker's default detach sequence.
pub const DETACH_KEYS: &[u8] = b"\x10\x11";

/// A command running on its own pty.
pub struct Terminal {
    child: Child,
    input: Option<ChildStdin>,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    label: String,
    /// How long [`Terminal::expect`] and [`Terminal::wait`] wait before
    /// failing the test (a safety net against hangs, not a time limit).
    pub deadline: Duration,
}

impl Terminal {
    /// Runs `cmd` (program, arguments and environment are taken from it)
    /// on a new pty through `script -qefc`.
    pub fn spawn(cmd: &Command) -> Terminal {
        let mut line = quote(cmd.get_program());
        for arg in cmd.get_args() {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        let mut script = Command::new("script");
        // -q: no banner; -e: the command's exit status; -f: flush each
        // write, so the test sees output as soon as it is shown.
        script.args(["-qefc", &line, "/dev/null"]);
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => script.env(key, v),
                None => script.env_remove(key),
            };
        }
        let mut child = script
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning script (util-linux) for `{line}`: {e}"));
        let input = child.stdin.take();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&screen);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
            // script's own complaints, if any, after what the pty showed.
            let mut rest = Vec::new();
            let _ = err.read_to_end(&mut rest);
            sink.lock().unwrap().extend_from_slice(&rest);
        });
        Terminal {
            child,
            input,
            screen,
            reader: Some(reader),
            label: line,
            deadline: Duration::from_secs(120),
        }
    }

    /// Types `keys` (sent as they are: `\r` or `\n` for Enter, raw control
    /// bytes for Ctrl-combinations).
    #[track_caller]
    pub fn send(&mut self, keys: &[u8]) {
        let input = self.input.as_mut().expect("terminal input is open");
        if let Err(e) = input.write_all(keys).and_then(|()| input.flush()) {
            panic!("typing into `{}`: {e}\n{}", self.label, self.screen());
        }
    }

    /// Everything the terminal has shown so far (lossy UTF-8, carriage
    /// returns removed).
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).replace('\r', "")
    }

    /// Waits until the terminal has shown `needle`; returns the screen.
    #[track_caller]
    pub fn expect(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            if start.elapsed() > self.deadline {
                panic!(
                    "`{}` never showed {needle:?} (waited {:?}); screen:\n{screen}",
                    self.label, self.deadline
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the command to end; returns its exit status and the
    /// whole screen. The input stays open until then, so the command sees
    /// no end-of-file it was not sent.
    #[track_caller]
    pub fn wait(mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for script") {
                break status;
            }
            if start.elapsed() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` still running after {:?}; killed. Screen:\n{}",
                    self.label,
                    self.deadline,
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.input.take();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.screen())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Single-quotes `s` for `sh -c` (script runs the command through $SHELL).
fn quote(s: &OsStr) -> String {
    let text = String::from_utf8_lossy(s.as_bytes());
    format!("'{}'", text.replace('\'', r"'\''"))
}
