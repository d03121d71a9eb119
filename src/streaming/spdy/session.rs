//! SPDY/3.1 connection sessions: a reader task that parses and dispatches frames and a writer
//! task that owns the header compressor and the write half.
//!
//! Queues, all bounded except the one for local resets (at most one per stream):
//! - per stream, inbound DATA chunks; when one is full the reader task waits, so the peer meets
//!   TCP backpressure (no SPDY flow control, see the module doc of [`super`]);
//! - per connection, outbound DATA (and FIN) frames from the stream writers;
//! - per connection, control frames the reader task answers with (SYN_REPLY, PING echo, RST),
//!   written before queued DATA so a reply never waits behind bulk output.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

use super::compress::{Compressor, Decompressor};
use super::frame::{FLAG_FIN, Frame, MAX_DATA_CHUNK};
use super::{GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, Headers, RstStatus};

/// DATA chunks buffered per stream before the connection's reader waits.
const INBOUND_QUEUE: usize = 16;
/// Outbound DATA frames per connection (at most 32 KiB each: 2 MiB).
const OUTBOUND_QUEUE: usize = 64;
/// Control answers queued per connection.
const CONTROL_QUEUE: usize = 64;
/// Streams accepted but not yet taken by `accept()`.
const ACCEPT_QUEUE: usize = 16;
/// How long a closing server keeps reading (and the writer gets to flush).
const LINGER: Duration = Duration::from_secs(2);
/// Bytes of frames gathered into one write.
const WRITE_BATCH: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

enum Out {
    Frame(Frame),
    /// Flush, shut down the write half, acknowledge and stop.
    Shutdown(oneshot::Sender<()>),
}

struct StreamState {
    id: u32,
    /// The peer sent FIN: the reader ends with EOF rather than an error.
    fin_received: AtomicBool,
    /// This side sent FIN.
    local_fin: AtomicBool,
    /// Reset by either side, or the connection is gone: writes fail.
    broken: AtomicBool,
}

struct Entry {
    /// Inbound DATA; `None` once the peer sent FIN or the reader was dropped.
    tx: Option<mpsc::Sender<Bytes>>,
    state: Arc<StreamState>,
}

/// What the tasks and the stream handles share.
struct Conn {
    role: Role,
    streams: Mutex<HashMap<u32, Entry>>,
    replies: Mutex<HashMap<u32, oneshot::Sender<Result<(), u32>>>>,
    pings: Mutex<HashMap<u32, oneshot::Sender<()>>>,
    dead: AtomicBool,
    closing: AtomicBool,
    last_peer_stream: AtomicU32,
    /// Local resets (sync callers): written before everything else.
    urgent: mpsc::UnboundedSender<Out>,
}

/// A poisoned lock only means another thread panicked mid-update of a plain map: keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// The connection ended: every stream's reader sees EOF (after FIN) or an error, every
    /// writer fails, pending opens and pings fail.
    fn die(&self) {
        self.dead.store(true, Ordering::SeqCst);
        let entries: Vec<Entry> = lock(&self.streams).drain().map(|(_, e)| e).collect();
        for e in &entries {
            e.state.broken.store(true, Ordering::SeqCst);
        }
        drop(entries);
        lock(&self.replies).clear();
        lock(&self.pings).clear();
    }

    fn forget(&self, id: u32) {
        lock(&self.streams).remove(&id);
    }

    /// Drops a stream from the table once both sides have sent FIN.
    fn maybe_done(&self, state: &StreamState) {
        if state.fin_received.load(Ordering::SeqCst) && state.local_fin.load(Ordering::SeqCst) {
            self.forget(state.id);
        }
    }

    fn register(
        self: &Arc<Self>,
        id: u32,
        headers: Headers,
        data: &mpsc::Sender<Out>,
    ) -> SpdyStream {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let state = Arc::new(StreamState {
            id,
            fin_received: AtomicBool::new(false),
            local_fin: AtomicBool::new(false),
            broken: AtomicBool::new(false),
        });
        lock(&self.streams).insert(
            id,
            Entry {
                tx: Some(tx),
                state: state.clone(),
            },
        );
        SpdyStream {
            id,
            headers,
            reader: StreamReader {
                rx,
                chunk: Bytes::new(),
                state: state.clone(),
            },
            writer: StreamWriter {
                state,
                conn: self.clone(),
                tx: PollSender::new(data.clone()),
            },
        }
    }

    /// Marks the peer's FIN on `id` and stops delivering to it.
    fn peer_fin(&self, id: u32) {
        let mut streams = lock(&self.streams);
        if let Some(e) = streams.get_mut(&id) {
            // Before the sender goes: the reader checks the flag once the queue ends.
            e.state.fin_received.store(true, Ordering::SeqCst);
            e.tx = None;
            if e.state.local_fin.load(Ordering::SeqCst) {
                streams.remove(&id);
            }
        }
    }

    /// Takes every stream out of the table (teardown).
    fn take_streams(&self) -> Vec<Arc<StreamState>> {
        lock(&self.streams).drain().map(|(_, e)| e.state).collect()
    }
}

/// The tasks of one connection; dropping it aborts them (and so closes the connection).
struct Core {
    conn: Arc<Conn>,
    ctrl: mpsc::Sender<Out>,
    data: mpsc::Sender<Out>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        for t in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
        // The table holds the streams' inbound senders: without this, readers of a dropped
        // session would wait forever.
        self.conn.die();
    }
}

impl Core {
    fn start<IO>(io: IO, role: Role) -> (Core, mpsc::Receiver<SpdyStream>)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (urgent_tx, urgent_rx) = mpsc::unbounded_channel();
        let (ctrl_tx, ctrl_rx) = mpsc::channel(CONTROL_QUEUE);
        let (data_tx, data_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
        let conn = Arc::new(Conn {
            role,
            streams: Mutex::new(HashMap::new()),
            replies: Mutex::new(HashMap::new()),
            pings: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            last_peer_stream: AtomicU32::new(0),
            urgent: urgent_tx,
        });
        let writer = tokio::spawn(write_loop(wr, conn.clone(), urgent_rx, ctrl_rx, data_rx));
        let dispatcher = Dispatcher {
            conn: conn.clone(),
            ctrl: ctrl_tx.clone(),
            data: data_tx.clone(),
            accept: (role == Role::Server).then_some(accept_tx),
            last_id: 0,
        };
        let reader = tokio::spawn(read_loop(rd, dispatcher));
        let core = Core {
            conn,
            ctrl: ctrl_tx,
            data: data_tx,
            reader: Some(reader),
            writer: Some(writer),
        };
        (core, accept_rx)
    }

    /// Sends FIN (`fin_open`) or RST(CANCEL) on every stream in the table, then GOAWAY, then
    /// shuts the write half down once all of it is written (bounded by LINGER).
    async fn teardown(&mut self, fin_open: bool, last_good: u32) {
        self.conn.closing.store(true, Ordering::SeqCst);
        for st in self.conn.take_streams() {
            let was_broken = st.broken.swap(true, Ordering::SeqCst);
            if was_broken {
                continue;
            }
            let frame = if fin_open && !st.local_fin.swap(true, Ordering::SeqCst) {
                Frame::Data {
                    stream_id: st.id,
                    flags: FLAG_FIN,
                    data: Bytes::new(),
                }
            } else if !st.fin_received.load(Ordering::SeqCst) || !fin_open {
                Frame::RstStream {
                    stream_id: st.id,
                    status: RstStatus::Cancel as u32,
                }
            } else {
                continue;
            };
            let _ = self.data.send(Out::Frame(frame)).await;
        }
        let _ = self
            .data
            .send(Out::Frame(Frame::GoAway {
                last_good,
                status: GOAWAY_OK,
            }))
            .await;
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.data.send(Out::Shutdown(ack_tx)).await.is_ok() {
            let _ = tokio::time::timeout(LINGER, ack_rx).await;
        }
        self.conn.die();
    }

    async fn ping(&self, id: u32, timeout: Duration) -> io::Result<Duration> {
        if self.conn.dead.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.conn.pings).insert(id, tx);
        let start = Instant::now();
        if self
            .ctrl
            .send(Out::Frame(Frame::Ping { id }))
            .await
            .is_err()
        {
            lock(&self.conn.pings).remove(&id);
            return Err(io::ErrorKind::NotConnected.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "SPDY connection ended before the PING reply",
            )),
            Err(_) => {
                lock(&self.conn.pings).remove(&id);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no SPDY PING reply",
                ))
            }
        }
    }
}

struct Dispatcher {
    conn: Arc<Conn>,
    ctrl: mpsc::Sender<Out>,
    data: mpsc::Sender<Out>,
    accept: Option<mpsc::Sender<SpdyStream>>,
    /// The highest stream id the peer opened.
    last_id: u32,
}

impl Dispatcher {
    async fn control(&self, frame: Frame) {
        // Fails only once the writer has stopped (closing): nothing to answer then.
        let _ = self.ctrl.send(Out::Frame(frame)).await;
    }

    async fn rst(&self, stream_id: u32, status: RstStatus) {
        self.control(Frame::RstStream {
            stream_id,
            status: status as u32,
        })
        .await;
    }

    /// Handles one frame; false ends the connection.
    async fn dispatch(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => self.syn_stream(stream_id, flags, headers).await,
            Frame::SynReply { stream_id, .. } => {
                if let Some(r) = lock(&self.conn.replies).remove(&stream_id) {
                    let _ = r.send(Ok(()));
                }
            }
            Frame::RstStream { stream_id, status } => {
                if let Some(e) = lock(&self.conn.streams).remove(&stream_id) {
                    e.state.broken.store(true, Ordering::SeqCst);
                }
                if let Some(r) = lock(&self.conn.replies).remove(&stream_id) {
                    let _ = r.send(Err(status));
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => self.data(stream_id, flags, data).await,
            Frame::Ping { id } => {
                // Clients use odd ids, servers even ones: an id of our parity is a reply.
                let ours = (id % 2 == 1) == (self.conn.role == Role::Client);
                if ours {
                    if let Some(p) = lock(&self.conn.pings).remove(&id) {
                        let _ = p.send(());
                    }
                } else {
                    self.control(Frame::Ping { id }).await;
                }
            }
            Frame::GoAway { .. } => return false,
            // No flow control, nothing to negotiate, no trailers: ignored.
            Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::HeadersFrame { .. }
            | Frame::Unknown { .. } => {}
        }
        true
    }

    async fn syn_stream(&mut self, stream_id: u32, flags: u8, headers: Headers) {
        if self.conn.role == Role::Client {
            // The server side of client-go never opens streams; neither does ours.
            self.rst(stream_id, RstStatus::RefusedStream).await;
            return;
        }
        if stream_id.is_multiple_of(2) || stream_id <= self.last_id {
            self.rst(stream_id, RstStatus::ProtocolError).await;
            return;
        }
        self.last_id = stream_id;
        self.conn
            .last_peer_stream
            .store(stream_id, Ordering::SeqCst);
        if self.conn.closing.load(Ordering::SeqCst) {
            self.rst(stream_id, RstStatus::RefusedStream).await;
            return;
        }
        let stream = self.conn.register(stream_id, headers, &self.data);
        if flags & FLAG_FIN != 0 {
            self.conn.peer_fin(stream_id);
        }
        // The reply goes out before the stream is handed over, so it precedes any DATA on it.
        self.control(Frame::SynReply {
            stream_id,
            flags: 0,
            headers: Headers::new(),
        })
        .await;
        if let Some(accept) = &self.accept
            && accept.send(stream).await.is_err()
        {
            self.conn.forget(stream_id);
        }
    }

    async fn data(&mut self, stream_id: u32, flags: u8, data: Bytes) {
        let tx = match lock(&self.conn.streams).get(&stream_id) {
            Some(e) => e.tx.clone(),
            // Unknown, reset or finished stream: spdystream drops such data too.
            None => return,
        };
        if let Some(tx) = tx
            && !data.is_empty()
            && !self.conn.closing.load(Ordering::SeqCst)
            && tx.send(data).await.is_err()
        {
            // The stream's reader is gone: discard what follows.
            if let Some(e) = lock(&self.conn.streams).get_mut(&stream_id) {
                e.tx = None;
            }
        }
        if flags & FLAG_FIN != 0 {
            self.conn.peer_fin(stream_id);
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut rd: R, mut d: Dispatcher) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut dec = Decompressor::new();
    loop {
        match Frame::decode(&mut buf, &mut dec) {
            Ok(Some(frame)) => {
                if !d.dispatch(frame).await {
                    break;
                }
            }
            Ok(None) => {
                if buf.capacity() - buf.len() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "SPDY protocol error: closing the connection");
                d.control(Frame::GoAway {
                    last_good: d.last_id,
                    status: GOAWAY_PROTOCOL_ERROR,
                })
                .await;
                break;
            }
        }
    }
    d.conn.die();
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    conn: Arc<Conn>,
    mut urgent: mpsc::UnboundedReceiver<Out>,
    mut ctrl: mpsc::Receiver<Out>,
    mut data: mpsc::Receiver<Out>,
) {
    let mut comp = Compressor::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            biased;
            Some(o) = urgent.recv() => o,
            Some(o) = ctrl.recv() => o,
            Some(o) = data.recv() => o,
            else => break,
        };
        let mut next = Some(first);
        let mut shutdown = None;
        while let Some(out) = next.take() {
            match out {
                Out::Frame(f) => {
                    if let Err(e) = f.encode(&mut buf, &mut comp) {
                        tracing::warn!(error = %e, "SPDY frame not sent");
                    }
                }
                Out::Shutdown(ack) => {
                    shutdown = Some(ack);
                    break;
                }
            }
            if buf.len() >= WRITE_BATCH {
                break;
            }
            next = urgent
                .try_recv()
                .ok()
                .or_else(|| ctrl.try_recv().ok())
                .or_else(|| data.try_recv().ok());
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                conn.die();
                break;
            }
            buf.clear();
        }
        if let Some(ack) = shutdown {
            let _ = wr.shutdown().await;
            let _ = ack.send(());
            break;
        }
    }
}

/// Server side of one SPDY/3.1 connection (after the HTTP 101).
///
/// Answers every valid SYN_STREAM at once with SYN_REPLY, echoes PINGs, ignores SETTINGS,
/// WINDOW_UPDATE and HEADERS, RSTs (PROTOCOL_ERROR) a SYN_STREAM whose id is not odd and greater
/// than the last, and sends nothing before the client's first frame. Dropping it without
/// [`close`](Self::close) aborts the connection.
pub struct ServerSession {
    core: Core,
    accept: mpsc::Receiver<SpdyStream>,
    next_ping: AtomicU32,
}

impl ServerSession {
    pub fn start<IO>(io: IO) -> ServerSession
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (core, accept) = Core::start(io, Role::Server);
        ServerSession {
            core,
            accept,
            next_ping: AtomicU32::new(2),
        }
    }

    /// The next stream the client opened, in order; `None` once the connection ended (GOAWAY,
    /// EOF, protocol error).
    pub async fn accept(&mut self) -> Option<SpdyStream> {
        self.accept.recv().await
    }

    /// A server PING (even id); the round trip.
    pub async fn ping(&self, timeout: Duration) -> io::Result<Duration> {
        let id = self.next_ping.fetch_add(2, Ordering::SeqCst);
        self.core.ping(id, timeout).await
    }

    /// Server teardown: FIN every stream still open for writing, RST(CANCEL) the others,
    /// GOAWAY(last client stream id, OK), shut down the write half, then keep reading (and
    /// discarding) for up to 2 s or until EOF so that unread input does not make the kernel
    /// reset the connection under the tail of the output; then close.
    pub async fn close(mut self) {
        let last = self.core.conn.last_peer_stream.load(Ordering::SeqCst);
        self.core.teardown(true, last).await;
        if let Some(mut reader) = self.core.reader.take()
            && tokio::time::timeout(LINGER, &mut reader).await.is_err()
        {
            reader.abort();
        }
    }
}

/// Client side, for tests and benchmarks; behaves like client-go: one stream opened at a time,
/// each waiting for its SYN_REPLY.
pub struct ClientSession {
    core: Core,
    /// The next stream id; held across an open so opens are serialised.
    next_id: tokio::sync::Mutex<u32>,
    next_ping: AtomicU32,
}

impl ClientSession {
    pub fn start<IO>(io: IO) -> ClientSession
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (core, _) = Core::start(io, Role::Client);
        ClientSession {
            core,
            next_id: tokio::sync::Mutex::new(1),
            next_ping: AtomicU32::new(1),
        }
    }

    /// Opens a stream (SYN_STREAM with these headers, next odd id) and waits up to `timeout`
    /// for its SYN_REPLY.
    pub async fn open(
        &self,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> io::Result<SpdyStream> {
        let mut next = self.next_id.lock().await;
        let conn = &self.core.conn;
        if conn.dead.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "SPDY connection ended",
            ));
        }
        let id = *next;
        *next += 2;
        let mut h = Headers::new();
        for (n, v) in headers {
            h.insert(n, v);
        }
        let (tx, rx) = oneshot::channel();
        lock(&conn.replies).insert(id, tx);
        let stream = conn.register(id, h.clone(), &self.core.data);
        let syn = Frame::SynStream {
            stream_id: id,
            assoc_id: 0,
            priority: 0,
            flags: 0,
            headers: h,
        };
        if self.core.ctrl.send(Out::Frame(syn)).await.is_err() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "SPDY connection ended",
            ));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(stream),
            Ok(Ok(Err(status))) => {
                conn.forget(id);
                Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("stream {id} refused with RST_STREAM status {status}"),
                ))
            }
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "SPDY connection ended before the SYN_REPLY",
            )),
            Err(_) => {
                lock(&conn.replies).remove(&id);
                stream.reset(RstStatus::Cancel);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no SYN_REPLY for stream {id}"),
                ))
            }
        }
    }

    /// A client PING (odd id); the round trip.
    pub async fn ping(&self, timeout: Duration) -> io::Result<Duration> {
        let id = self.next_ping.fetch_add(2, Ordering::SeqCst);
        self.core.ping(id, timeout).await
    }

    /// RST(CANCEL) open streams, GOAWAY(0, OK), close.
    pub async fn close(mut self) {
        self.core.teardown(false, 0).await;
    }
}

/// One stream: its id and the headers of its SYN_STREAM.
pub struct SpdyStream {
    pub id: u32,
    pub headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl std::fmt::Debug for SpdyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpdyStream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl SpdyStream {
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    pub fn reset(self, status: RstStatus) {
        self.writer.reset(status);
    }
}

/// The data the peer sent on a stream: EOF at its FIN; `ConnectionReset` after its RST, after a
/// local reset, or when the connection died.
pub struct StreamReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
    state: Arc<StreamState>,
}

impl StreamReader {
    pub fn id(&self) -> u32 {
        self.state.id
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.remaining());
                let part = self.chunk.split_to(n);
                buf.put_slice(&part);
                return Poll::Ready(Ok(()));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(b) => self.chunk = b,
                None if self.state.fin_received.load(Ordering::SeqCst) => {
                    return Poll::Ready(Ok(()));
                }
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        format!("SPDY stream {} reset", self.state.id),
                    )));
                }
            }
        }
    }
}

/// Writes to a stream: DATA frames of at most 32 KiB through the connection's bounded outbound
/// queue; shutdown sends FIN. Writes after a reset or the connection's end fail with
/// `BrokenPipe`. Dropping it without shutdown sends nothing.
pub struct StreamWriter {
    state: Arc<StreamState>,
    conn: Arc<Conn>,
    tx: PollSender<Out>,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// RST_STREAM with `status` (nothing if the stream is already reset or finished); the
    /// stream's reader ends with `ConnectionReset`.
    pub fn reset(&self, status: RstStatus) {
        let st = &self.state;
        if st.broken.swap(true, Ordering::SeqCst)
            || (st.local_fin.load(Ordering::SeqCst) && st.fin_received.load(Ordering::SeqCst))
        {
            return;
        }
        self.conn.forget(st.id);
        if !self.conn.dead.load(Ordering::SeqCst) {
            let _ = self.conn.urgent.send(Out::Frame(Frame::RstStream {
                stream_id: st.id,
                status: status as u32,
            }));
        }
    }

    fn broken(&self) -> bool {
        self.state.broken.load(Ordering::SeqCst) || self.conn.dead.load(Ordering::SeqCst)
    }
}

fn broken_pipe(id: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("SPDY stream {id} is reset or its connection ended"),
    )
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.state.id;
        if self.broken() || self.state.local_fin.load(Ordering::SeqCst) {
            return Poll::Ready(Err(broken_pipe(id)));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if ready!(self.tx.poll_reserve(cx)).is_err() || self.broken() {
            return Poll::Ready(Err(broken_pipe(id)));
        }
        let n = buf.len().min(MAX_DATA_CHUNK);
        let frame = Frame::Data {
            stream_id: id,
            flags: 0,
            data: Bytes::copy_from_slice(&buf[..n]),
        };
        if self.tx.send_item(Out::Frame(frame)).is_err() {
            return Poll::Ready(Err(broken_pipe(id)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued frames are the writer task's; nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.state.id;
        if self.state.local_fin.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        if self.broken() {
            return Poll::Ready(Err(broken_pipe(id)));
        }
        if ready!(self.tx.poll_reserve(cx)).is_err() || self.broken() {
            return Poll::Ready(Err(broken_pipe(id)));
        }
        let fin = Frame::Data {
            stream_id: id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        };
        if self.tx.send_item(Out::Frame(fin)).is_err() {
            return Poll::Ready(Err(broken_pipe(id)));
        }
        self.state.local_fin.store(true, Ordering::SeqCst);
        self.conn.maybe_done(&self.state);
        Poll::Ready(Ok(()))
    }
}
