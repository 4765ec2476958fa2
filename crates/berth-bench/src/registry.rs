//! Debian's docker-registry (distribution 2.8) on 127.0.0.1 for the pull
//! rows: plain HTTP (both daemons treat loopback as insecure), storage in
//! the run's scratch space, killed when dropped. The large image is pushed
//! once per run, by whichever daemon asks first.

use std::cell::Cell;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = "/usr/bin/docker-registry";

pub struct Registry {
    child: Child,
    port: u16,
    pushed: Cell<bool>,
    _dir: PathBuf,
}

impl Registry {
    /// Starts a registry storing under `dir`; `None` if it is not installed.
    pub fn start(dir: &Path) -> std::io::Result<Option<Registry>> {
        if !Path::new(BINARY).exists() {
            return Ok(None);
        }
        std::fs::create_dir_all(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.display()
        );
        std::fs::write(dir.join("config.yml"), config)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut r = Registry {
            child,
            port,
            pushed: Cell::new(false),
            _dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || r.child.try_wait()?.is_some() {
                return Err(std::io::Error::other("docker-registry did not listen"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(r))
    }

    /// Where the large image lives in this registry.
    pub fn reference(&self) -> String {
        format!("127.0.0.1:{}/bench/large:latest", self.port)
    }

    pub fn pushed(&self) -> bool {
        self.pushed.get()
    }

    pub fn mark_pushed(&self) {
        self.pushed.set(true);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
