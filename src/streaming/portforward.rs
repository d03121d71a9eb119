//! Port-forward sessions: `portforward.k8s.io` over SPDY (also tunnelled in WebSocket). Each
//! forwarded connection is a pair of streams (`error`, `data`) matched by `requestid`; the data
//! stream is connected to `127.0.0.1:<port>` (or `[::1]`) inside the pod's network namespace.
//! A failed connection is reported on its error stream; the session goes on. Legacy WebSocket
//! clients get [`serve_ws_legacy`].

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{RstStatus, ServerSession, SpdyStream, StreamReader, StreamWriter};
use super::ws::{self, ChannelProtocol, Incoming};

/// A stream pair must be complete within this time (kubelet's library uses 30 s).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to the port inside the pod.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where forwarded connections are dialled: a pod's network namespace, or the host's.
#[derive(Clone)]
pub struct Target {
    /// `None`: the host's namespace (host-network pods).
    pub netns: Option<Arc<OwnedFd>>,
}

/// Half of a forwarded connection, waiting for its partner.
struct Half {
    port: u16,
    since: Instant,
    error: Option<StreamWriter>,
    data: Option<(StreamReader, StreamWriter)>,
}

/// Serves one SPDY port-forward connection until the client goes away.
pub async fn serve_spdy<IO>(io: IO, target: Target)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut session = ServerSession::start(io);
    let mut pending: HashMap<String, Half> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            stream = session.accept() => match stream {
                Some(stream) => {
                    if let Some((port, error, data)) = add_stream(&mut pending, stream) {
                        forwards.spawn(forward(target.clone(), port, error, data));
                    }
                }
                None => break,
            },
            _ = tick.tick() => expire(&mut pending, &mut forwards),
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
    // The client is gone: close every forwarded socket.
    forwards.abort_all();
    drop(pending);
    session.close().await;
}

/// Files a new stream; returns a complete pair.
fn add_stream(
    pending: &mut HashMap<String, Half>,
    stream: SpdyStream,
) -> Option<(u16, StreamWriter, (StreamReader, StreamWriter))> {
    let kind = stream.headers.get("streamtype").map(str::to_owned);
    let port = stream
        .headers
        .get("port")
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|p| *p != 0);
    let (Some(kind), Some(port)) = (kind, port) else {
        stream.reset(RstStatus::ProtocolError);
        return None;
    };
    // Clients without `requestid`: the error stream N pairs with the data stream N+2.
    let key = match stream.headers.get("requestid") {
        Some(id) => id.to_owned(),
        None => match kind.as_str() {
            "data" => format!("#{}", stream.id.wrapping_sub(2)),
            _ => format!("#{}", stream.id),
        },
    };
    let half = pending.entry(key.clone()).or_insert_with(|| Half {
        port,
        since: Instant::now(),
        error: None,
        data: None,
    });
    match kind.as_str() {
        "error" if half.error.is_none() => {
            // The client never writes on it (it FINs at once); its reader is simply dropped.
            let (_, writer) = stream.split();
            half.error = Some(writer);
        }
        "data" if half.data.is_none() => half.data = Some(stream.split()),
        _ => {
            stream.reset(RstStatus::ProtocolError);
            return None;
        }
    }
    if half.error.is_some() && half.data.is_some() {
        let half = pending.remove(&key)?;
        return Some((half.port, half.error?, half.data?));
    }
    None
}

/// Pairs not completed in time: a message on the error stream, then both are closed.
fn expire(pending: &mut HashMap<String, Half>, forwards: &mut JoinSet<()>) {
    let now = Instant::now();
    let stale: Vec<String> = pending
        .iter()
        .filter(|(_, h)| now.duration_since(h.since) >= PAIR_TIMEOUT)
        .map(|(k, _)| k.clone())
        .collect();
    for key in stale {
        let Some(half) = pending.remove(&key) else {
            continue;
        };
        if let Some((_, writer)) = &half.data {
            writer.reset(RstStatus::Cancel);
        }
        if let Some(error) = half.error {
            forwards.spawn(report(
                error,
                format!("timed out waiting for the data stream of request {key}"),
                true,
            ));
        }
    }
}

/// Writes kubelet's JSON error message and closes the error stream.
async fn report(mut error: StreamWriter, message: String, close_connection: bool) {
    let mut line = serde_json::json!({
        "closeConnection": close_connection,
        "message": message,
    })
    .to_string();
    line.push('\n');
    let _ = error.write_all(line.as_bytes()).await;
    let _ = error.shutdown().await;
}

/// Forwards one connection: dial, then copy both ways; the error stream is closed at the end.
async fn forward(
    target: Target,
    port: u16,
    mut error: StreamWriter,
    (mut from_client, mut to_client): (StreamReader, StreamWriter),
) {
    let socket = match dial(&target, port).await {
        Ok(s) => s,
        Err(e) => {
            let _ = to_client.shutdown().await;
            drop(from_client);
            let close = !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            );
            report(error, format!("error forwarding port {port}: {e}"), close).await;
            return;
        }
    };
    let (mut from_socket, mut to_socket) = socket.into_split();
    // Client FIN: shut down the socket's write side. Client RST: drop the socket.
    let up = async {
        match tokio::io::copy(&mut from_client, &mut to_socket).await {
            Ok(_) => {
                let _ = to_socket.shutdown().await;
                true
            }
            Err(_) => false,
        }
    };
    // Socket EOF: FIN the data stream.
    let down = async {
        match tokio::io::copy(&mut from_socket, &mut to_client).await {
            Ok(_) => {
                let _ = to_client.shutdown().await;
                true
            }
            Err(_) => {
                to_client.reset(RstStatus::Cancel);
                false
            }
        }
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            ok = &mut up, if !up_done => {
                up_done = true;
                if !ok {
                    break;
                }
            }
            ok = &mut down, if !down_done => {
                down_done = true;
                if !ok {
                    break;
                }
            }
        }
    }
    let _ = error.shutdown().await;
}

/// Connects to `port` on loopback in the target's network namespace. The namespace is joined on
/// a short-lived thread of its own: a tokio worker must never change namespace.
pub async fn dial(target: &Target, port: u16) -> io::Result<TcpStream> {
    let netns = target.netns.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("strata-pf-dial".into())
        .spawn(move || {
            let _ = tx.send(dial_blocking(netns.as_deref(), port));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the dialer thread died"))??;
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}

fn dial_blocking(netns: Option<&OwnedFd>, port: u16) -> io::Result<std::net::TcpStream> {
    if let Some(ns) = netns {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("joining the pod's network namespace: {e}")))?;
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match std::net::TcpStream::connect_timeout(&v4, DIAL_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => std::net::TcpStream::connect_timeout(&v6, DIAL_TIMEOUT).map_err(|e6| {
            io::Error::new(
                e4.kind(),
                format!("connecting to {v4}: {e4}; to {v6}: {e6}"),
            )
        }),
    }
}

/// Legacy WebSocket port-forward (`v4.channel.k8s.io`, `v4.base64.channel.k8s.io` or no
/// subprotocol): the ports come from the CRI request; the i-th port's data is channel 2i and its
/// errors channel 2i+1. Each channel pair first carries the port (2 bytes, little-endian), then
/// one TCP connection is forwarded per port. The session ends when the client closes.
pub async fn serve_ws_legacy<S>(
    ws: WebSocketStream<S>,
    proto: ChannelProtocol,
    ports: Vec<u16>,
    target: Target,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(WS_OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut forwards = JoinSet::new();
    let mut inbound = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let data = (2 * i) as u8;
        for channel in [data, data + 1] {
            let _ = out_tx
                .send(ws::encode(proto, channel, &port.to_le_bytes()))
                .await;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(WS_IN_QUEUE);
        inbound.push(tx);
        forwards.spawn(forward_channel(
            target.clone(),
            port,
            data,
            rx,
            out_tx.clone(),
            proto,
        ));
    }
    while let Some(Ok(message)) = source.next().await {
        match ws::decode(proto, message) {
            Ok(Some(Incoming::Data { channel, payload })) if channel.is_multiple_of(2) => {
                if let Some(tx) = inbound.get(usize::from(channel / 2)) {
                    let _ = tx.send(payload).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = ?e, "port-forward websocket: bad message");
                break;
            }
        }
    }
    forwards.abort_all();
    drop(out_tx);
    writer.abort();
}

const WS_OUT_QUEUE: usize = 64;
const WS_IN_QUEUE: usize = 16;

async fn forward_channel(
    target: Target,
    port: u16,
    data: u8,
    mut inbound: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Message>,
    proto: ChannelProtocol,
) {
    let socket = match dial(&target, port).await {
        Ok(s) => s,
        Err(e) => {
            let message = format!("error forwarding port {port}: {e}");
            let _ = out
                .send(ws::encode(proto, data + 1, message.as_bytes()))
                .await;
            return;
        }
    };
    let (mut from_socket, mut to_socket) = socket.into_split();
    let up = async {
        while let Some(bytes) = inbound.recv().await {
            if to_socket.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to_socket.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.send(ws::encode(proto, data, &buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(up, down);
}
