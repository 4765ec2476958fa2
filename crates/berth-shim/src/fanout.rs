//! Output fan-out to attached clients. Every client has its own bounded
//! queue drained by its own writer thread, so a slow client can only lose
//! itself (it is cut off when its queue overflows) and never stalls the
//! container. In exec mode the output produced before the first attach is
//! held (bounded) and replayed to that client, because berthd can attach
//! only after the exec has started.

use std::collections::VecDeque;
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_shim::protocol::{encode_frame, STREAM_STDERR, STREAM_STDOUT};

/// Queued output a client may fall behind by before it is dropped.
const CLIENT_QUEUE_LIMIT: usize = 4 << 20;
/// Output an exec holds for its first attach.
const BACKLOG_LIMIT: usize = 1 << 20;

type Frame = Arc<Vec<u8>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct QueueState {
    frames: VecDeque<Frame>,
    bytes: usize,
    closed: bool,
}

/// One client's pending frames.
#[derive(Default)]
pub struct ClientQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

impl ClientQueue {
    /// False when the client is too far behind (the frame is not queued).
    fn push(&self, frame: Frame) -> bool {
        let mut s = lock(&self.state);
        if s.closed {
            return true;
        }
        if s.bytes + frame.len() > CLIENT_QUEUE_LIMIT {
            return false;
        }
        s.bytes += frame.len();
        s.frames.push_back(frame);
        self.ready.notify_one();
        true
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }

    /// The next frame; `None` once the queue is closed and empty.
    fn pop(&self) -> Option<Frame> {
        let mut s = lock(&self.state);
        loop {
            if let Some(f) = s.frames.pop_front() {
                s.bytes -= f.len();
                return Some(f);
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

struct Subscriber {
    stdout: bool,
    stderr: bool,
    queue: Arc<ClientQueue>,
    socket: UnixStream,
}

impl Subscriber {
    fn wants(&self, stream: u8) -> bool {
        (stream == STREAM_STDOUT && self.stdout) || (stream == STREAM_STDERR && self.stderr)
    }
}

struct Backlog {
    frames: Vec<(u8, Frame)>,
    bytes: usize,
}

struct State {
    subscribers: Vec<Subscriber>,
    backlog: Option<Backlog>,
    /// The process's output is drained: no more frames will come.
    ended: bool,
    /// Writer threads still sending.
    writers: usize,
}

/// The set of attached clients of one process.
pub struct Fanout {
    state: Mutex<State>,
    writers_done: Condvar,
}

impl Fanout {
    /// `hold_until_attach`: keep early output for the first client (exec).
    pub fn new(hold_until_attach: bool) -> Fanout {
        Fanout {
            state: Mutex::new(State {
                subscribers: Vec::new(),
                backlog: hold_until_attach.then(|| Backlog {
                    frames: Vec::new(),
                    bytes: 0,
                }),
                ended: false,
                writers: 0,
            }),
            writers_done: Condvar::new(),
        }
    }

    /// Sends output to every client that asked for its stream; clients
    /// that fell too far behind are disconnected.
    pub fn publish(&self, stream: u8, data: &[u8]) {
        let frame: Frame = Arc::new(encode_frame(stream, data));
        let mut s = lock(&self.state);
        if let Some(b) = s.backlog.as_mut() {
            // Past the bound the exec's early output is dropped rather
            // than held: the process must never wait for an attach.
            if b.bytes + frame.len() <= BACKLOG_LIMIT {
                b.bytes += frame.len();
                b.frames.push((stream, frame));
            }
            return;
        }
        s.subscribers.retain(|sub| {
            if !sub.wants(stream) || sub.queue.push(frame.clone()) {
                return true;
            }
            sub.queue.close();
            let _ = sub.socket.shutdown(Shutdown::Both);
            false
        });
    }

    /// Registers a client and starts its writer thread, which sends
    /// `preface` (the attach reply) before any frame. The first client of
    /// an exec gets the held output next.
    pub fn subscribe(
        self: &Arc<Self>,
        stdout: bool,
        stderr: bool,
        socket: UnixStream,
        preface: Vec<u8>,
    ) {
        let queue = Arc::new(ClientQueue::default());
        if !preface.is_empty() {
            queue.push(Arc::new(preface));
        }
        let writer_socket = match socket.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        };
        {
            let mut s = lock(&self.state);
            if let Some(backlog) = s.backlog.take() {
                for (stream, frame) in backlog.frames {
                    if (stream == STREAM_STDOUT && stdout) || (stream == STREAM_STDERR && stderr) {
                        queue.push(frame);
                    }
                }
            }
            if s.ended {
                queue.close();
            } else {
                s.subscribers.push(Subscriber {
                    stdout,
                    stderr,
                    queue: queue.clone(),
                    socket,
                });
            }
            s.writers += 1;
        }
        let fanout = self.clone();
        std::thread::spawn(move || {
            let mut sock = writer_socket;
            while let Some(frame) = queue.pop() {
                if sock.write_all(&frame).is_err() {
                    break;
                }
            }
            // The end of the frames is the end of the output for the
            // client; its stdin half stays readable.
            let _ = sock.shutdown(Shutdown::Write);
            let mut s = lock(&fanout.state);
            s.writers -= 1;
            fanout.writers_done.notify_all();
        });
    }

    /// No more output: every client's frames end after what is queued.
    pub fn end(&self) {
        let mut s = lock(&self.state);
        s.ended = true;
        for sub in s.subscribers.drain(..) {
            sub.queue.close();
        }
    }

    /// Whether an exec's first client has yet to come. Even an exec that
    /// printed nothing waits for it: that client (berthd's hub) must still
    /// find the shim to learn the exit.
    pub fn awaits_first_client(&self) -> bool {
        lock(&self.state).backlog.is_some()
    }

    /// Waits (bounded) for the writers to deliver what is queued.
    pub fn wait_writers(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.state);
        while s.writers > 0 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            s = self
                .writers_done
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_all(mut s: UnixStream) -> Vec<u8> {
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn clients_get_only_their_streams_and_eof_at_end() {
        let f = Arc::new(Fanout::new(false));
        let (a, a_peer) = UnixStream::pair().unwrap();
        let (b, b_peer) = UnixStream::pair().unwrap();
        f.subscribe(true, false, a, b"hi\n".to_vec());
        f.subscribe(false, true, b, Vec::new());
        f.publish(STREAM_STDOUT, b"out");
        f.publish(STREAM_STDERR, b"err");
        f.end();
        let mut want = b"hi\n".to_vec();
        want.extend(encode_frame(1, b"out"));
        assert_eq!(read_all(a_peer), want);
        assert_eq!(read_all(b_peer), encode_frame(2, b"err"));
        f.wait_writers(Duration::from_secs(5));
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped_not_waited_for() {
        let f = Arc::new(Fanout::new(false));
        let (slow, slow_peer) = UnixStream::pair().unwrap();
        let (fast, mut fast_peer) = UnixStream::pair().unwrap();
        f.subscribe(true, true, slow, Vec::new());
        f.subscribe(true, true, fast, Vec::new());
        let chunk = vec![b'x'; 64 * 1024];
        let mut frame = vec![0u8; chunk.len() + 8];
        // Far more than the socket buffer and the queue limit together;
        // the fast client keeps up frame by frame, the slow one never reads.
        for _ in 0..200 {
            f.publish(STREAM_STDOUT, &chunk);
            fast_peer.read_exact(&mut frame).unwrap();
        }
        f.end();
        assert_eq!(read_all(fast_peer).len(), 0);
        let got = read_all(slow_peer).len();
        assert!(got < 200 * chunk.len(), "slow client got everything: {got}");
        f.wait_writers(Duration::from_secs(5));
    }

    #[test]
    fn exec_output_before_the_first_attach_is_replayed() {
        let f = Arc::new(Fanout::new(true));
        f.publish(STREAM_STDOUT, b"early");
        assert!(f.awaits_first_client());
        let (a, a_peer) = UnixStream::pair().unwrap();
        f.subscribe(true, true, a, Vec::new());
        assert!(!f.awaits_first_client());
        f.publish(STREAM_STDERR, b"late");
        f.end();
        let mut want = encode_frame(1, b"early");
        want.extend(encode_frame(2, b"late"));
        assert_eq!(read_all(a_peer), want);
    }
}
