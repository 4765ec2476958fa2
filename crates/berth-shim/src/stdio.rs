//! The process's standard streams on the shim's side: pipes (or the PTY
//! master) created before the runtime runs, the copier threads that move
//! output into the json-file log and to attached clients, and the stdin
//! writer that attached clients share.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use berth_shim::protocol::{STREAM_STDERR, STREAM_STDOUT};
use chrono::Utc;
use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use crate::fanout::Fanout;
use crate::jsonlog::{JsonLog, LineSplitter};
use crate::oci::ProcessIo;

/// How the process's streams are wired (the shim's `--tty`, `--stdin`,
/// `--stdin-once`).
#[derive(Debug, Clone, Copy)]
pub struct StdioConfig {
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
}

/// The shim's ends of the pipes, kept while the runtime starts the process.
pub enum ShimEnds {
    Pipes {
        stdin: Option<File>,
        stdout: File,
        stderr: File,
    },
    Console,
}

fn pipe() -> io::Result<(File, File)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// Creates the process's stdio: the ends the runtime passes on, and the
/// ends the shim keeps.
pub fn prepare(cfg: StdioConfig, console_socket: PathBuf) -> io::Result<(ProcessIo, ShimEnds)> {
    if cfg.tty {
        return Ok((
            ProcessIo::Console {
                socket: console_socket,
            },
            ShimEnds::Console,
        ));
    }
    // Without OpenStdin the process reads /dev/null, as under dockerd.
    let (child_stdin, shim_stdin) = if cfg.stdin {
        let (r, w) = pipe()?;
        (std::process::Stdio::from(r), Some(w))
    } else {
        (std::process::Stdio::null(), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok((
        ProcessIo::Pipes {
            stdin: child_stdin,
            stdout: out_w.into(),
            stderr: err_w.into(),
        },
        ShimEnds::Pipes {
            stdin: shim_stdin,
            stdout: out_r,
            stderr: err_r,
        },
    ))
}

/// The running process's input side, shared by all connections.
pub struct Input {
    /// Writes go through an `Arc` held only for one write, so closing
    /// (dropping the slot's `Arc`) closes the descriptor once no write is
    /// in flight.
    stdin: Mutex<Option<Arc<File>>>,
    /// The PTY master, for window size changes.
    pty: Option<File>,
    pub stdin_once: bool,
}

impl Input {
    pub fn write_stdin(&self, data: &[u8]) -> io::Result<()> {
        let f = self
            .stdin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        (&*f).write_all(data)
    }

    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    pub fn resize(&self, height: u16, width: u16) -> Result<(), String> {
        let pty = self
            .pty
            .as_ref()
            .ok_or_else(|| "the process has no TTY".to_string())?;
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which
        // is valid for the duration of the call.
        let rc = unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(format!("resize: {}", io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Counts running copiers, so the shim can wait (bounded) for the output
/// to drain after the process exits.
#[derive(Default)]
pub struct Draining {
    running: Mutex<usize>,
    done: Condvar,
}

impl Draining {
    /// True if every copier finished before the timeout.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            n = self
                .done
                .wait_timeout(n, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// Starts copying the process's output and returns its input side.
pub fn run(
    cfg: StdioConfig,
    ends: ShimEnds,
    console: Option<OwnedFd>,
    log: Option<Arc<JsonLog>>,
    fanout: Arc<Fanout>,
) -> io::Result<(Input, Arc<Draining>)> {
    let draining = Arc::new(Draining::default());
    let input = match ends {
        ShimEnds::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            copy(
                stdout,
                STREAM_STDOUT,
                log.clone(),
                fanout.clone(),
                &draining,
            );
            copy(stderr, STREAM_STDERR, log, fanout, &draining);
            Input {
                stdin: Mutex::new(stdin.map(Arc::new)),
                pty: None,
                stdin_once: cfg.stdin_once,
            }
        }
        ShimEnds::Console => {
            let master = File::from(console.ok_or_else(|| io::Error::other("no console"))?);
            copy(master.try_clone()?, STREAM_STDOUT, log, fanout, &draining);
            let stdin = if cfg.stdin {
                Some(Arc::new(master.try_clone()?))
            } else {
                None
            };
            Input {
                stdin: Mutex::new(stdin),
                pty: Some(master),
                stdin_once: cfg.stdin_once,
            }
        }
    };
    Ok((input, draining))
}

fn copy(
    mut source: File,
    stream: u8,
    log: Option<Arc<JsonLog>>,
    fanout: Arc<Fanout>,
    draining: &Arc<Draining>,
) {
    *draining.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    let draining = draining.clone();
    std::thread::spawn(move || {
        let name = if stream == STREAM_STDERR {
            "stderr"
        } else {
            "stdout"
        };
        let mut splitter = LineSplitter::default();
        let mut write_log = |e: crate::jsonlog::Entry<'_>| {
            if let Some(log) = &log {
                if let Err(err) = log.write_entry(name, &e) {
                    eprintln!("berth-shim: writing the log: {err}");
                }
            }
        };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    splitter.feed(&buf[..n], Utc::now(), &mut write_log);
                    fanout.publish(stream, &buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EIO is how a PTY master reports that every slave is closed.
                Err(_) => break,
            }
        }
        splitter.finish(Utc::now(), &mut write_log);
        let mut n = draining.running.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        draining.done.notify_all();
    });
}
