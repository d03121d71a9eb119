//! Exec and attach sessions over each transport: collecting the SPDY streams or WebSocket
//! channels into [`Streams`], running the command, and reporting its [`Outcome`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::remotecommand::{
    self, BoxRead, BoxWrite, Outcome, RESIZE_QUEUE, Streams, Version, status_bytes,
};
use super::spdy::{RstStatus, ServerSession, StreamReader, StreamWriter};
use super::tokens::Pending;
use super::ws::{self, ChannelProtocol, Incoming};
use super::{attach, exec};
use crate::runtime::Runtime;

/// All expected streams must arrive within this time (kubelet's library: 30 s).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Buffering between a WebSocket and the command, per direction and channel.
const WS_PIPE: usize = 64 * 1024;
/// Messages queued toward a WebSocket client.
const WS_OUT_QUEUE: usize = 64;

/// Which streams a command session has.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Wanted {
    pub fn of(pending: &Pending) -> Option<Self> {
        Some(match pending {
            Pending::Exec(r) => Wanted {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            },
            Pending::Attach(r) => Wanted {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            },
            Pending::PortForward(_) => return None,
        })
    }
}

/// Runs the exec or attach of `pending`.
async fn run(runtime: &Arc<Runtime>, pending: &Pending, streams: Streams) -> Outcome {
    match pending {
        Pending::Exec(req) => exec::run(runtime, req, streams).await,
        Pending::Attach(req) => attach::run(runtime, req, streams).await,
        Pending::PortForward(_) => Outcome::Failure("not an exec or attach request".into()),
    }
}

#[derive(Default)]
struct Collected {
    error: Option<StreamWriter>,
    stdin: Option<StreamReader>,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
    resize: Option<StreamReader>,
    count: usize,
}

/// Accepts the session's streams until the expected number arrived.
async fn collect(session: &mut ServerSession, expected: usize) -> Option<Collected> {
    let mut got = Collected::default();
    while got.count < expected {
        let stream = session.accept().await?;
        let kind = stream.headers.get("streamtype").unwrap_or("").to_owned();
        let taken = match kind.as_str() {
            "error" => got.error.is_some(),
            "stdin" => got.stdin.is_some(),
            "stdout" => got.stdout.is_some(),
            "stderr" => got.stderr.is_some(),
            "resize" => got.resize.is_some(),
            _ => true,
        };
        if taken {
            stream.reset(RstStatus::ProtocolError);
            continue;
        }
        // Unused halves are dropped: the server never writes on stdin/resize, and the client
        // never writes on error/stdout/stderr.
        let (reader, writer) = stream.split();
        match kind.as_str() {
            "error" => got.error = Some(writer),
            "stdin" => got.stdin = Some(reader),
            "stdout" => got.stdout = Some(writer),
            "stderr" => got.stderr = Some(writer),
            _ => got.resize = Some(reader),
        }
        got.count += 1;
    }
    Some(got)
}

/// Serves an exec/attach over SPDY.
pub async fn serve_spdy<IO>(io: IO, version: Version, pending: Pending, runtime: Arc<Runtime>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Some(wanted) = Wanted::of(&pending) else {
        return;
    };
    let mut session = ServerSession::start(io);
    let expected = 1
        + usize::from(wanted.stdin)
        + usize::from(wanted.stdout)
        + usize::from(wanted.stderr)
        + usize::from(wanted.tty && version.has_resize());
    let collected = match tokio::time::timeout(
        STREAM_CREATION_TIMEOUT,
        collect(&mut session, expected),
    )
    .await
    {
        Ok(Some(c)) => c,
        Ok(None) => return, // the client went away
        Err(_) => {
            tracing::debug!("streaming: streams not created in time");
            session.close().await;
            return;
        }
    };
    let streams = Streams {
        stdin: collected.stdin.map(|r| Box::new(r) as BoxRead),
        stdout: collected.stdout.map(|w| Box::new(w) as BoxWrite),
        stderr: collected.stderr.map(|w| Box::new(w) as BoxWrite),
        resize: collected
            .resize
            .map(|r| remotecommand::spawn_resize_reader(Box::new(r))),
    };
    let command = run(&runtime, &pending, streams);
    tokio::pin!(command);
    let outcome = loop {
        tokio::select! {
            outcome = &mut command => break Some(outcome),
            stream = session.accept() => match stream {
                // No stream is expected anymore.
                Some(stream) => stream.reset(RstStatus::RefusedStream),
                // The client is gone; dropping the command kills an exec'd process.
                None => break None,
            },
        }
    };
    if let (Some(outcome), Some(mut error)) = (outcome, collected.error) {
        if let Some(bytes) = status_bytes(version, &outcome) {
            let _ = error.write_all(&bytes).await;
        }
        let _ = error.shutdown().await;
    }
    session.close().await;
}

/// Serves an exec/attach over a WebSocket with the Kubernetes channel protocol `proto`.
pub async fn serve_ws<S>(
    ws: WebSocketStream<S>,
    proto: ChannelProtocol,
    pending: Pending,
    runtime: Arc<Runtime>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Some(wanted) = Wanted::of(&pending) else {
        return;
    };
    let version = match proto {
        ChannelProtocol::V5 => Version::V5,
        ChannelProtocol::V4 | ChannelProtocol::V4Base64 => Version::V4,
        ChannelProtocol::V1 | ChannelProtocol::Base64 => Version::V1,
    };
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(WS_OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let close = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || close {
                break;
            }
        }
        sink
    });
    if proto != ChannelProtocol::V5 {
        // The kubelet library announces the session with one empty message on the lowest
        // channel the server writes.
        let channel = if wanted.stdout {
            1
        } else if wanted.stderr {
            2
        } else {
            3
        };
        let _ = out_tx.send(ws::encode(proto, channel, &[])).await;
    }
    let (stdin_writer, stdin) = if wanted.stdin {
        let (w, r) = tokio::io::duplex(WS_PIPE);
        (Some(w), Some(Box::new(r) as BoxRead))
    } else {
        (None, None)
    };
    let (resize_tx, resize) = if wanted.tty && version.has_resize() {
        let (tx, rx) = mpsc::channel(RESIZE_QUEUE);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    // Reads client messages (keeping pongs flowing) until the client closes.
    let reader = tokio::spawn(async move {
        let mut stdin_writer = stdin_writer;
        while let Some(Ok(message)) = source.next().await {
            let incoming = match ws::decode(proto, message) {
                Ok(Some(incoming)) => incoming,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(error = ?e, "websocket: bad message");
                    break;
                }
            };
            match incoming {
                Incoming::Data {
                    channel: 0,
                    payload,
                } => {
                    if let Some(w) = stdin_writer.as_mut()
                        && w.write_all(&payload).await.is_err()
                    {
                        stdin_writer = None;
                    }
                }
                Incoming::Data {
                    channel: 4,
                    payload,
                } => {
                    if let (Some(tx), Some(size)) =
                        (&resize_tx, remotecommand::parse_resize(&payload))
                    {
                        let _ = tx.try_send(size);
                    }
                }
                Incoming::Data { .. } => {}
                Incoming::CloseChannel(0) => {
                    if let Some(mut w) = stdin_writer.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Incoming::CloseChannel(_) => {}
            }
        }
    });
    let mut pumps = Vec::new();
    let mut output = |channel: u8, wanted: bool| -> Option<BoxWrite> {
        if !wanted {
            return None;
        }
        let (w, r) = tokio::io::duplex(WS_PIPE);
        pumps.push(tokio::spawn(pump(r, channel, proto, out_tx.clone())));
        Some(Box::new(w))
    };
    let stdout = output(1, wanted.stdout);
    let stderr = output(2, wanted.stderr && !wanted.tty);
    let streams = Streams {
        stdin,
        stdout,
        stderr,
        resize,
    };
    let mut reader = reader;
    let command = run(&runtime, &pending, streams);
    tokio::pin!(command);
    let outcome = tokio::select! {
        outcome = &mut command => outcome,
        // The client closed or broke the connection: dropping the command kills an exec'd
        // process (an attach just detaches).
        _ = &mut reader => {
            writer.abort();
            for pump in pumps {
                pump.abort();
            }
            return;
        }
    };
    for pump in pumps {
        let _ = pump.await;
    }
    if let Some(bytes) = status_bytes(version, &outcome) {
        let message = ws::encode(proto, 3, &bytes);
        let _ = out_tx.send(message).await;
    }
    let _ = out_tx
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    drop(out_tx);
    let sink = writer.await;
    // Give the client a moment to answer the close, then drop the connection.
    let stop_reader = reader.abort_handle();
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    stop_reader.abort();
    drop(sink);
}

/// Copies one output channel into WebSocket messages. Once the client is gone the output is
/// still read (and discarded), so the command never blocks on it.
async fn pump(
    mut from: tokio::io::DuplexStream,
    channel: u8,
    proto: ChannelProtocol,
    out: mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut open = true;
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if open {
                    let message = ws::encode(proto, channel, &Bytes::copy_from_slice(&buf[..n]));
                    open = out.send(message).await.is_ok();
                }
            }
        }
    }
}
