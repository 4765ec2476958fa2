//! The wire and disk contract between berthd and a berth-shim: the launch
//! report the shim prints once, the one-line JSON requests a client opens a
//! socket connection with, the multiplexed frames of an attach (output to
//! the client, stdin from it), and the exit record the shim leaves in its
//! state directory.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The exit record's file name in a shim's state directory.
pub const EXIT_FILE: &str = "exit.json";
/// The shim writes its own pid here, so an operator (or a test harness)
/// can find the process that owns a container's stdio.
pub const SHIM_PID_FILE: &str = "shim.pid";
/// Longest request line a shim accepts; requests are tiny, and a bound
/// keeps a confused client from growing the shim's memory.
pub const MAX_REQUEST_LINE: usize = 4096;

/// Stream numbers of Docker's multiplexed stream format.
pub const STREAM_STDIN: u8 = 0;
pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;

/// Size of a frame header: `[stream, 0, 0, 0, len as big-endian u32]`.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload a shim puts in one frame (a client rejects more).
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// What the launching `berth-shim` process prints on stdout, once:
/// `{"pid":N}` when the runtime created the process, or
/// `{"error":"..."}` with the runtime's own message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LaunchReport {
    Pid { pid: u32 },
    Error { error: String },
}

/// The first line of every client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Stream the chosen outputs as frames; read stdin frames (stream 0)
    /// from the client. An empty stdin frame is the client's end of input
    /// (StdinOnce closes the process's stdin); a connection that just ends
    /// — berthd died — leaves stdin open for the next client.
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdout: bool,
        #[serde(default)]
        stderr: bool,
    },
    /// Set the PTY's window size.
    Resize { height: u16, width: u16 },
    /// One [`ExitRecord`] line once the process has exited.
    Wait,
    /// Close the process's stdin.
    CloseStdin,
}

/// The shim's answer to `attach`, `resize` and `close_stdin`: `{"ok":true}`
/// or `{"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
        }
    }
}

/// How a process ended, as the shim records it and answers `wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code; 128+N for death by signal N.
    pub code: i32,
    pub finished_at: DateTime<Utc>,
    /// The container's cgroup saw an OOM kill (read before the cgroup goes).
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitRecord {
    /// The record in `state_dir`, `None` if the process has not exited (or
    /// never ran under a shim).
    pub fn load(state_dir: &Path) -> io::Result<Option<ExitRecord>> {
        match fs::read(state_dir.join(EXIT_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the record atomically (temp file, fsync, rename, fsync dir),
    /// so a reader after a crash sees the whole record or none.
    pub fn store(&self, state_dir: &Path) -> io::Result<()> {
        let tmp = state_dir.join(format!(".{EXIT_FILE}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(io::Error::other)?)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, state_dir.join(EXIT_FILE))?;
        fs::File::open(state_dir)?.sync_all()
    }
}

/// A frame header for `len` bytes of `stream`.
pub fn frame_header(stream: u8, len: usize) -> [u8; FRAME_HEADER_LEN] {
    let l = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// One whole frame (header and payload).
pub fn encode_frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(FRAME_HEADER_LEN + data.len());
    v.extend_from_slice(&frame_header(stream, data.len()));
    v.extend_from_slice(data);
    v
}

/// The stream and payload length a header announces (stdin, stdout or
/// stderr; the receiver checks it is a stream it expects).
pub fn parse_frame_header(h: &[u8; FRAME_HEADER_LEN]) -> Result<(u8, usize), String> {
    let stream = h[0];
    if stream > STREAM_STDERR || h[1..4] != [0, 0, 0] {
        return Err(format!("bad frame header {h:?}"));
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(format!(
            "frame of {len} bytes is larger than {MAX_FRAME_LEN}"
        ));
    }
    Ok((stream, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_documented_json() {
        let attach: Request =
            serde_json::from_str(r#"{"op":"attach","stdin":true,"stdout":true,"stderr":false}"#)
                .unwrap();
        assert_eq!(
            attach,
            Request::Attach {
                stdin: true,
                stdout: true,
                stderr: false
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Resize {
                height: 24,
                width: 80
            })
            .unwrap(),
            r#"{"op":"resize","height":24,"width":80}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"wait"}"#).unwrap(),
            Request::Wait
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"close_stdin"}"#).unwrap(),
            Request::CloseStdin
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"exec"}"#).is_err());
    }

    #[test]
    fn launch_report_shapes() {
        assert_eq!(
            serde_json::to_string(&LaunchReport::Pid { pid: 42 }).unwrap(),
            r#"{"pid":42}"#
        );
        assert_eq!(
            serde_json::from_str::<LaunchReport>(r#"{"error":"boom"}"#).unwrap(),
            LaunchReport::Error {
                error: "boom".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&Reply::ok()).unwrap(),
            r#"{"ok":true}"#
        );
    }

    #[test]
    fn frames_round_trip() {
        let f = encode_frame(STREAM_STDERR, b"oops\n");
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 0, 0, 5]);
        let h: [u8; 8] = f[..8].try_into().unwrap();
        assert_eq!(parse_frame_header(&h).unwrap(), (2, 5));
        assert_eq!(&f[8..], b"oops\n");
        assert!(parse_frame_header(&[3, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(parse_frame_header(&[1, 0, 0, 0, 0xff, 0, 0, 0]).is_err());
    }

    #[test]
    fn exit_record_is_stored_atomically_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExitRecord::load(dir.path()).unwrap(), None);
        let rec = ExitRecord {
            code: 137,
            finished_at: Utc::now(),
            oom_killed: true,
        };
        rec.store(dir.path()).unwrap();
        assert_eq!(ExitRecord::load(dir.path()).unwrap(), Some(rec));
        assert!(!dir.path().join(format!(".{EXIT_FILE}.tmp")).exists());
    }
}
