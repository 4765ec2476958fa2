//! Headless Chromium for tests of berth's web pages (Debian's `chromium`),
//! driven over the DevTools protocol on a websocket: open a page, evaluate
//! JavaScript, wait for the DOM to show something, save a screenshot. The
//! browser gets a fresh profile and is killed (with its profile) on drop.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Debian's browser: the binary itself, not the `/usr/bin/chromium`
/// wrapper script, so the process we start is the browser we kill.
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    _profile: TempDir,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// A plain HTTP/1.1 GET on loopback: the body, with chunked transfer
/// encoding undone; the status must be 2xx. Reads by `Content-Length`
/// (Chromium's DevTools server keeps the connection open regardless).
pub fn http_get(addr: &str, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let mut head_end = None;
    loop {
        if let Some(at) = head_end {
            let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
            let body = &raw[at + 4..];
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            let chunked = head.contains("transfer-encoding: chunked")
                || head.contains("transfer-encoding:chunked");
            if length.is_some_and(|n| body.len() >= n) || (chunked && body.ends_with(b"0\r\n\r\n"))
            {
                break;
            }
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if head_end.is_none() {
            head_end = raw.windows(4).position(|w| w == b"\r\n\r\n");
        }
    }
    let at = head_end.ok_or_else(|| other(format!("GET {path}: no header end")))?;
    let head = String::from_utf8_lossy(&raw[..at]).into_owned();
    let mut body = raw[at + 4..].to_vec();
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked")
    {
        body = dechunk(&body).ok_or_else(|| other(format!("GET {path}: bad chunking")))?;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(other(format!("GET {path}: {head}\n{body}")));
    }
    Ok(body)
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

impl Browser {
    /// Starts Chromium on `url` at `width`x`height` and attaches to its page.
    pub fn launch(url: &str, width: u32, height: u32) -> io::Result<Browser> {
        let profile = crate::scratch::scratch_dir("chromium-")?;
        let binary = if Path::new(CHROMIUM).exists() {
            CHROMIUM
        } else {
            "/usr/bin/chromium"
        };
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: renderers and the GPU process go down
            // with the browser.
            .process_group(0)
            .spawn()
            .map_err(|e| other(format!("start {binary} (apt-get install chromium): {e}")))?;
        // Chromium names its DevTools endpoint on stderr; keep draining
        // stderr afterwards so the browser never blocks on a full pipe.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let browser_ws = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(other("chromium did not announce its DevTools endpoint"));
            }
        };
        let hostport = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        // The page target opened on `url`.
        let deadline = Instant::now() + Duration::from_secs(30);
        let page_ws = loop {
            let list: Value = http_get(&hostport, "/json/list")
                .ok()
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or(Value::Null);
            let found = list.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
            });
            if let Some(u) = found {
                break u;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(other("chromium has no page target"));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let (ws, _) = tungstenite::connect(page_ws.as_str()).map_err(|e| other(e.to_string()))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
        }
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
        };
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        Ok(b)
    }

    /// One DevTools call; its `result`.
    pub fn call(&mut self, method: &str, params: Value) -> io::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| other(format!("{method}: {e}")))?;
        loop {
            let m = self
                .ws
                .read()
                .map_err(|e| other(format!("{method}: {e}")))?;
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
            if v["id"].as_u64() != Some(id) {
                continue; // an event
            }
            if let Some(err) = v.get("error") {
                return Err(other(format!("{method}: {err}")));
            }
            return Ok(v["result"].clone());
        }
    }

    /// Evaluates `expr` in the page (promises awaited); its value.
    pub fn eval(&mut self, expr: &str) -> io::Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(other(format!("{expr}: {ex}")));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits until `expr` is truthy; its value. Fails with `what` after
    /// `timeout`.
    pub fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) -> io::Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.eval(expr) {
                Ok(v) if !(v.is_null() || v == false || v == 0 || v == "") => return Ok(v),
                Ok(v) => last = v,
                Err(e) => last = Value::String(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(other(format!(
            "timed out after {timeout:?} waiting for {what} ({expr}); last: {last}"
        )))
    }

    /// Saves the whole page as a PNG at `path`.
    pub fn screenshot(&mut self, path: &Path) -> io::Result<PathBuf> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )?;
        let data = r["data"]
            .as_str()
            .ok_or_else(|| other("screenshot without data"))?;
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| other(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(path.to_path_buf())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
