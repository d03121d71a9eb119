//! One control-socket connection of the monitor: request lines, then (after `attach`) frames.
//! Non-blocking; output to a client is buffered up to [`ATTACH_BACKLOG`], beyond which the
//! client is disconnected so it can never hold up the container or the log.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::net::UnixStream;

use super::event_loop::diag;
use super::exit::ExitStatus;
use super::protocol::{self, MAX_FRAME, MAX_LINE, Reply, Request};

/// Output queued for one attached client before it is dropped as too slow.
const ATTACH_BACKLOG: usize = 256 * 1024;
/// Bytes read from one connection per wakeup.
const READ_BUDGET: usize = 64 * 1024;

/// What a connection asks of the monitor.
pub(super) enum Effect {
    Request(Request),
    Stdin(Vec<u8>),
    /// A zero-length stdin frame.
    CloseStdin,
    Resize {
        width: u16,
        height: u16,
    },
}

enum Mode {
    Control,
    /// A `wait` is parked until the exit; nothing more is read.
    Waiting,
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        stdin_done: bool,
    },
}

pub(super) struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    mode: Mode,
    eof: bool,
    /// Close once `out` is delivered.
    closing: bool,
    dead: bool,
}

impl Conn {
    pub(super) fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            mode: Mode::Control,
            eof: false,
            closing: false,
            dead: false,
        })
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub(super) fn is_dead(&self) -> bool {
        self.dead
    }

    /// An attached client that still held the container's stdin went away.
    pub(super) fn releases_stdin(&self) -> bool {
        self.dead
            && matches!(
                self.mode,
                Mode::Attach {
                    stdin: true,
                    stdin_done: false,
                    ..
                }
            )
    }

    pub(super) fn wants_read(&self, stdin_room: bool) -> bool {
        if self.dead || self.closing || self.eof {
            return false;
        }
        match self.mode {
            Mode::Control => true,
            Mode::Waiting => false,
            Mode::Attach { stdin, .. } => {
                (!stdin || stdin_room) && self.inbuf.len() < MAX_FRAME + protocol::FRAME_HEADER
            }
        }
    }

    pub(super) fn wants_write(&self) -> bool {
        !self.dead && !self.out.is_empty()
    }

    /// Handles readiness: delivers queued output and reads what the client sent.
    pub(super) fn on_ready(&mut self, revents: i16, stdin_room: bool) {
        if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            self.dead = true;
            return;
        }
        if revents & libc::POLLOUT != 0 {
            self.flush();
        }
        if revents & (libc::POLLIN | libc::POLLHUP) != 0 && self.wants_read(stdin_room) {
            self.read();
        } else if revents & libc::POLLHUP != 0 {
            // The peer is gone and we were not reading (a parked wait).
            self.dead = true;
        }
    }

    fn read(&mut self) {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < READ_BUDGET {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
    }

    /// The next thing the client asks for, given the current mode. Call until `None`.
    pub(super) fn next_effect(&mut self, stdin_room: bool) -> Option<Effect> {
        if self.dead {
            return None;
        }
        let effect = match self.mode {
            Mode::Control => self.next_request(),
            Mode::Waiting => None,
            Mode::Attach { .. } => self.next_frame(stdin_room),
        };
        if effect.is_some() || !self.eof {
            return effect;
        }
        match &mut self.mode {
            // Half-closed after its requests: answer, then close.
            Mode::Control => {
                self.closing = true;
                if self.out.is_empty() {
                    self.dead = true;
                }
            }
            Mode::Waiting => {}
            // The client closed its sending side: that ends its stdin; it may still read output
            // until it closes the connection.
            Mode::Attach { stdin_done, .. } if !*stdin_done => {
                *stdin_done = true;
                return Some(Effect::CloseStdin);
            }
            Mode::Attach { .. } => {}
        }
        None
    }

    fn next_request(&mut self) -> Option<Effect> {
        loop {
            let Some(nl) = self.inbuf.iter().position(|&b| b == b'\n') else {
                if self.inbuf.len() > MAX_LINE {
                    self.reply(&Reply::error("request line too long"));
                    self.inbuf = Vec::new();
                    self.closing = true;
                }
                return None;
            };
            let line: Vec<u8> = self.inbuf.drain(..=nl).collect();
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Request>(line) {
                Ok(request) => return Some(Effect::Request(request)),
                Err(e) => self.reply(&Reply::error(format!("bad request: {e}"))),
            }
        }
    }

    fn next_frame(&mut self, stdin_room: bool) -> Option<Effect> {
        loop {
            let (stream, range) = match protocol::parse_frame(&self.inbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(e) => {
                    diag!("attach client: {e}");
                    self.dead = true;
                    return None;
                }
            };
            let Mode::Attach {
                stdin, stdin_done, ..
            } = &mut self.mode
            else {
                return None;
            };
            let len = range.len();
            if stream == protocol::STDIN && *stdin && !*stdin_done && len > 0 && !stdin_room {
                return None; // back-pressure: leave the frame until stdin drains
            }
            let payload = self.inbuf[range.clone()].to_vec();
            self.inbuf.drain(..range.end);
            match stream {
                protocol::STDIN if *stdin && !*stdin_done => {
                    if len == 0 {
                        *stdin_done = true;
                        return Some(Effect::CloseStdin);
                    }
                    return Some(Effect::Stdin(payload));
                }
                protocol::RESIZE if len == 4 => {
                    return Some(Effect::Resize {
                        width: u16::from_be_bytes([payload[0], payload[1]]),
                        height: u16::from_be_bytes([payload[2], payload[3]]),
                    });
                }
                _ => {} // ignored: stdin not requested, or unknown
            }
        }
    }

    pub(super) fn reply(&mut self, reply: &Reply) {
        self.queue_json(reply);
    }

    fn queue_json(&mut self, value: &impl serde::Serialize) {
        if serde_json::to_writer(&mut self.out, value).is_ok() {
            self.out.push(b'\n');
        }
    }

    pub(super) fn park_wait(&mut self) {
        self.mode = Mode::Waiting;
    }

    pub(super) fn start_attach(&mut self, stdin: bool, stdout: bool, stderr: bool) {
        self.mode = Mode::Attach {
            stdin,
            stdout,
            stderr,
            stdin_done: !stdin,
        };
    }

    /// Copies container output to an attached client that asked for `stream`.
    pub(super) fn send_output(&mut self, stream: u8, data: &[u8]) {
        let wanted = match self.mode {
            Mode::Attach { stdout, stderr, .. } => match stream {
                protocol::STDOUT => stdout,
                protocol::STDERR => stderr,
                _ => false,
            },
            _ => false,
        };
        if !wanted || self.dead || data.is_empty() {
            return;
        }
        if self.out.len() + data.len() > ATTACH_BACKLOG {
            diag!("attach client too slow: disconnected");
            self.dead = true;
            return;
        }
        protocol::put_frame(&mut self.out, stream, data);
        self.flush();
    }

    /// Writes queued output without blocking.
    pub(super) fn flush(&mut self) {
        let mut written = 0;
        while written < self.out.len() && !self.dead {
            match self.stream.write(&self.out[written..]) {
                Ok(0) => self.dead = true,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
        }
        self.out.drain(..written);
        if self.out.is_empty() {
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            }
            if self.closing {
                self.dead = true;
            }
        }
    }

    /// The monitor is about to exit: answer a parked wait, close after delivery. A control
    /// connection is left alone until its request is read (closing it with an unread request
    /// would reset it instead of answering).
    pub(super) fn finish(&mut self, status: &ExitStatus) {
        match self.mode {
            Mode::Control => return,
            Mode::Waiting => self.queue_json(status),
            Mode::Attach { .. } => {}
        }
        self.closing = true;
        if self.out.is_empty() {
            self.dead = true;
        }
    }
}
