//! The shim's socket: one thread per connection, each opening with one
//! JSON request line — `attach` (output frames out, stdin frames in),
//! `resize`, `wait` (the exit record once there is one) and `close_stdin`.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};

use berth_shim::protocol::{
    parse_frame_header, ExitRecord, Reply, Request, FRAME_HEADER_LEN, MAX_REQUEST_LINE,
    STREAM_STDIN,
};

use crate::fanout::Fanout;
use crate::stdio::Input;

/// The exit record, once the process has exited and its output drained.
#[derive(Default)]
pub struct ExitCell {
    record: Mutex<Option<ExitRecord>>,
    set: Condvar,
}

impl ExitCell {
    pub fn set(&self, record: ExitRecord) {
        *self.record.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
        self.set.notify_all();
    }

    fn wait(&self) -> ExitRecord {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(rec) = r.as_ref() {
                return rec.clone();
            }
            r = self.set.wait(r).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// What connections act on.
pub struct Shared {
    pub input: Input,
    pub fanout: Arc<Fanout>,
    pub exit: ExitCell,
}

/// Accepts connections for as long as the shim lives.
pub fn serve(listener: UnixListener, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let shared = shared.clone();
            std::thread::spawn(move || {
                if let Err(e) = handle(conn, &shared) {
                    // A client going away mid-conversation is routine.
                    if e.kind() != io::ErrorKind::BrokenPipe {
                        eprintln!("berth-shim: connection: {e}");
                    }
                }
            });
        }
    });
}

/// Reads the request line byte by byte: after an attach request the
/// client's stdin frames follow, and none of them may be swallowed here.
fn read_request(conn: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if conn.read(&mut b)? == 0 {
            return Ok(None);
        }
        if b[0] == b'\n' {
            return Ok(Some(line));
        }
        if line.len() >= MAX_REQUEST_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request line too long",
            ));
        }
        line.push(b[0]);
    }
}

fn reply_line(reply: &Reply) -> Vec<u8> {
    let mut v = serde_json::to_vec(reply).unwrap_or_default();
    v.push(b'\n');
    v
}

fn handle(mut conn: UnixStream, shared: &Arc<Shared>) -> io::Result<()> {
    let Some(line) = read_request(&mut conn)? else {
        return Ok(());
    };
    let req: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => return conn.write_all(&reply_line(&Reply::error(format!("bad request: {e}")))),
    };
    match req {
        Request::Wait => {
            let mut v = serde_json::to_vec(&shared.exit.wait()).map_err(io::Error::other)?;
            v.push(b'\n');
            conn.write_all(&v)
        }
        Request::Resize { height, width } => {
            let reply = match shared.input.resize(height, width) {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::error(e),
            };
            conn.write_all(&reply_line(&reply))
        }
        Request::CloseStdin => {
            shared.input.close_stdin();
            conn.write_all(&reply_line(&Reply::ok()))
        }
        Request::Attach {
            stdin,
            stdout,
            stderr,
        } => {
            // The reply goes first through the client's own queue, so no
            // frame can overtake it and no output published after the
            // client saw it is missed.
            shared
                .fanout
                .subscribe(stdout, stderr, conn.try_clone()?, reply_line(&Reply::ok()));
            if stdin {
                copy_stdin(&mut conn, shared);
            }
            Ok(())
        }
    }
}

/// Copies the client's stdin frames to the process. Only an explicit end
/// (an empty frame) counts as the client closing its input; a connection
/// that just ends is a client gone (berthd died), and the process's stdin
/// stays open for whoever attaches next.
fn copy_stdin(conn: &mut UnixStream, shared: &Shared) {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut buf = Vec::new();
    let mut open = true;
    loop {
        if conn.read_exact(&mut header).is_err() {
            return;
        }
        let len = match parse_frame_header(&header) {
            Ok((STREAM_STDIN, len)) => len,
            _ => {
                eprintln!("berth-shim: bad stdin frame {header:?}");
                return;
            }
        };
        if len == 0 {
            break;
        }
        buf.resize(len, 0);
        if conn.read_exact(&mut buf).is_err() {
            return;
        }
        // Once the process's stdin is gone the client's bytes are
        // dropped, but still read, so the client is not stalled.
        if open && shared.input.write_stdin(&buf).is_err() {
            open = false;
        }
    }
    if shared.input.stdin_once {
        shared.input.close_stdin();
    }
}
