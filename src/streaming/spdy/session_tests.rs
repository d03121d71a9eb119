//! Server and client sessions against each other (and against a raw frame peer) over
//! in-memory pipes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::compress::{Compressor, Decompressor};
use super::frame::{FLAG_FIN, Frame};
use super::{ClientSession, Headers, RstStatus, ServerSession};

const T: Duration = Duration::from_secs(5);

/// Records every byte written through it.
struct Tap<IO> {
    io: IO,
    written: Arc<Mutex<Vec<u8>>>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tap<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tap<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.written.lock().unwrap().extend_from_slice(&buf[..*n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn tap(io: DuplexStream) -> (Tap<DuplexStream>, Arc<Mutex<Vec<u8>>>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    (
        Tap {
            io,
            written: written.clone(),
        },
        written,
    )
}

fn frames_of(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut d = Decompressor::new();
    let mut out = Vec::new();
    while let Some(f) = Frame::decode(&mut buf, &mut d).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty(), "trailing partial frame");
    out
}

fn pair() -> (ServerSession, ClientSession) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (ServerSession::start(a), ClientSession::start(b))
}

/// A hand-driven client: writes frames, reads the server's.
struct Raw {
    io: DuplexStream,
    comp: Compressor,
    decomp: Decompressor,
    buf: BytesMut,
}

impl Raw {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            comp: Compressor::new(),
            decomp: Decompressor::new(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        f.encode(&mut out, &mut self.comp).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn syn(&mut self, id: u32, kind: &str) {
        let mut headers = Headers::new();
        headers.insert("streamtype", kind);
        self.send(Frame::SynStream {
            stream_id: id,
            assoc_id: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await;
    }

    /// The next frame, or None at EOF.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = Frame::decode(&mut self.buf, &mut self.decomp).unwrap() {
                return Some(f);
            }
            let n = tokio::time::timeout(T, self.io.read_buf(&mut self.buf))
                .await
                .expect("frame within 5 s")
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[tokio::test]
async fn streams_open_one_at_a_time_in_order() {
    let (mut server, client) = pair();
    for (i, kind) in ["error", "stdin", "stdout", "stderr"].iter().enumerate() {
        let s = client
            .open(&[("streamType", kind), ("requestID", "7")], T)
            .await
            .unwrap();
        assert_eq!(s.id, 2 * i as u32 + 1);
        let got = server.accept().await.unwrap();
        assert_eq!(got.id, s.id);
        assert_eq!(got.headers.get("streamtype"), Some(*kind));
        assert_eq!(got.headers.get("RequestId"), Some("7"));
    }
    let rtt = client.ping(T).await.unwrap();
    assert!(rtt < T);
    // Server pings (even ids) are echoed by the client.
    server.ping(T).await.unwrap();
    client.close().await;
    assert!(server.accept().await.is_none(), "GOAWAY ends accept()");
    server.close().await;
}

#[tokio::test]
async fn eight_mib_both_ways_without_window_updates() {
    const N: usize = 8 << 20;
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (a, server_wrote) = tap(a);
    let (b, client_wrote) = tap(b);
    let mut server = ServerSession::start(a);
    let client = ClientSession::start(b);
    let echo = tokio::spawn(async move {
        let s = server.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        // Write our 8 MiB while reading theirs: neither side may wait for window credit.
        let writer = tokio::spawn(async move {
            w.write_all(&pattern(N, 0x5a)).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(got == pattern(N, 0xa5), "server received corrupt data");
        server.close().await;
    });
    let s = client.open(&[("streamtype", "data")], T).await.unwrap();
    let (mut r, mut w) = s.split();
    let writer = tokio::spawn(async move {
        w.write_all(&pattern(N, 0xa5)).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got))
        .await
        .expect("no stall")
        .unwrap();
    assert!(got == pattern(N, 0x5a), "client received corrupt data");
    writer.await.unwrap();
    echo.await.unwrap();
    client.close().await;
    for (who, wrote) in [("server", server_wrote), ("client", client_wrote)] {
        let frames = frames_of(&wrote.lock().unwrap());
        assert!(
            !frames
                .iter()
                .any(|f| matches!(f, Frame::WindowUpdate { .. } | Frame::Settings { .. })),
            "{who} sent flow-control frames"
        );
        let max = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Data { data, .. } => Some(data.len()),
                _ => None,
            })
            .max();
        assert_eq!(max, Some(32 * 1024), "{who}");
    }
}

#[tokio::test]
async fn fin_and_rst_semantics() {
    let (mut server, client) = pair();
    let c1 = client.open(&[("streamtype", "stdin")], T).await.unwrap();
    let s1 = server.accept().await.unwrap();
    let (mut cr, mut cw) = c1.split();
    let (mut sr, mut sw) = s1.split();
    // FIN each way: EOF after the data.
    cw.write_all(b"ping").await.unwrap();
    cw.shutdown().await.unwrap();
    let mut got = Vec::new();
    sr.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping");
    assert!(cw.write_all(b"x").await.is_err(), "write after FIN");
    sw.write_all(b"pong").await.unwrap();
    sw.shutdown().await.unwrap();
    got.clear();
    cr.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"pong");

    // Peer RST: the reader errs with ConnectionReset, writes fail with BrokenPipe.
    let c3 = client.open(&[("streamtype", "stdout")], T).await.unwrap();
    let s3 = server.accept().await.unwrap();
    let (mut sr, mut sw) = s3.split();
    c3.reset(RstStatus::Cancel);
    let err = sr.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(
        sw.write_all(b"late").await.unwrap_err().kind(),
        io::ErrorKind::BrokenPipe
    );

    // Server RST toward the client.
    let c5 = client.open(&[("streamtype", "stderr")], T).await.unwrap();
    let s5 = server.accept().await.unwrap();
    let (mut cr, _cw) = c5.split();
    s5.reset(RstStatus::InternalError);
    let err = cr.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

    // A connection that dies breaks open streams the same way.
    let c7 = client.open(&[("streamtype", "x")], T).await.unwrap();
    let s7 = server.accept().await.unwrap();
    let (mut cr, _cw) = c7.split();
    let (mut sr, mut sw) = s7.split();
    drop(server);
    let err = sr.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    let err = cr.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(sw.write_all(b"x").await.is_err());
    assert!(client.open(&[("streamtype", "y")], T).await.is_err());
}

#[tokio::test]
async fn dropped_reader_does_not_stall_the_connection() {
    let (mut server, client) = pair();
    let c1 = client.open(&[("streamtype", "stdin")], T).await.unwrap();
    let s1 = server.accept().await.unwrap();
    let (sr, _sw) = s1.split();
    drop(sr);
    let (_cr, mut cw) = c1.split();
    cw.write_all(&vec![1u8; 4 << 20]).await.unwrap();
    let c3 = client.open(&[("streamtype", "stdout")], T).await.unwrap();
    let s3 = server.accept().await.unwrap();
    assert_eq!((c3.id, s3.id), (3, 3));
    client.ping(T).await.unwrap();
}

#[tokio::test]
async fn server_is_silent_until_the_first_frame_and_checks_ids() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut server = ServerSession::start(a);
    let mut raw = Raw::new(b);
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), raw.io.read(&mut byte))
            .await
            .is_err(),
        "the server spoke first"
    );
    raw.syn(1, "error").await;
    assert_eq!(
        raw.recv().await,
        Some(Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Headers::new()
        })
    );
    // Not greater than the last, and even: PROTOCOL_ERROR.
    for bad in [1, 4] {
        raw.syn(bad, "stdout").await;
        assert_eq!(
            raw.recv().await,
            Some(Frame::RstStream {
                stream_id: bad,
                status: RstStatus::ProtocolError as u32
            })
        );
    }
    // Ignored frames, then an echoed ping.
    raw.send(Frame::Settings {
        flags: 0,
        entries: vec![(0, 7, 1 << 20)],
    })
    .await;
    raw.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 1000,
    })
    .await;
    raw.send(Frame::Ping { id: 9 }).await;
    assert_eq!(raw.recv().await, Some(Frame::Ping { id: 9 }));
    raw.syn(5, "stdout").await;
    assert!(matches!(
        raw.recv().await,
        Some(Frame::SynReply { stream_id: 5, .. })
    ));
    let s1 = server.accept().await.unwrap();
    let s5 = server.accept().await.unwrap();
    assert_eq!((s1.id, s5.id), (1, 5));
    // s5 is FINed by the server's handler; s1 stays open: close() FINs it, then GOAWAY(5).
    let (_r5, mut w5) = s5.split();
    w5.write_all(b"out").await.unwrap();
    w5.shutdown().await.unwrap();
    let (_r1, _w1) = s1.split();
    let closing = tokio::spawn(server.close());
    let mut seen = Vec::new();
    while let Some(f) = raw.recv().await {
        seen.push(f);
    }
    closing.await.unwrap();
    let fin = |id| Frame::Data {
        stream_id: id,
        flags: FLAG_FIN,
        data: bytes::Bytes::new(),
    };
    let pos = |f: &Frame| {
        seen.iter()
            .position(|x| x == f)
            .unwrap_or_else(|| panic!("{f:?} not in {seen:?}"))
    };
    let out5 = Frame::Data {
        stream_id: 5,
        flags: 0,
        data: bytes::Bytes::from_static(b"out"),
    };
    assert!(pos(&out5) < pos(&fin(5)));
    // Stream 5: the server FINed it, the client did not: reset at teardown. Stream 1: FINed.
    let rst5 = Frame::RstStream {
        stream_id: 5,
        status: RstStatus::Cancel as u32,
    };
    assert!(pos(&fin(5)) < pos(&rst5));
    pos(&fin(1));
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(
        seen.last(),
        Some(&Frame::GoAway {
            last_good: 5,
            status: 0
        })
    );
}

#[tokio::test]
async fn client_refused_and_timed_out_opens() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = ClientSession::start(b);
    let mut raw = Raw::new(a);
    let opening = tokio::spawn(async move {
        let r = client
            .open(&[("streamtype", "error")], Duration::from_millis(300))
            .await;
        (client, r)
    });
    assert!(matches!(
        raw.recv().await,
        Some(Frame::SynStream { stream_id: 1, .. })
    ));
    // Not answered: TimedOut, and the client cancels the stream.
    let (client, r) = opening.await.unwrap();
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert_eq!(
        raw.recv().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Cancel as u32
        })
    );
    let opening = tokio::spawn(async move {
        let r = client.open(&[("streamtype", "stdout")], T).await;
        (client, r)
    });
    assert!(matches!(
        raw.recv().await,
        Some(Frame::SynStream { stream_id: 3, .. })
    ));
    raw.send(Frame::RstStream {
        stream_id: 3,
        status: RstStatus::Cancel as u32,
    })
    .await;
    let (client, r) = opening.await.unwrap();
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    client.close().await;
    assert_eq!(
        raw.recv().await,
        Some(Frame::GoAway {
            last_good: 0,
            status: 0
        })
    );
    assert_eq!(raw.recv().await, None);
}
