//! A byte stream over WebSocket binary messages (the `SPDY/3.1+portforward.k8s.io` tunnel:
//! the concatenated payloads form the SPDY connection).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsProtoError, Message};

/// Reads concatenate binary (and text) message payloads, EOF at a Close; writes send one binary
/// message each; shutdown sends Close 1000. Pings are answered by the WebSocket layer while the
/// stream is being read, so keep a reader running.
pub struct WsByteStream<S> {
    ws: WebSocketStream<S>,
    chunk: Bytes,
    eof: bool,
    close_sent: bool,
}

impl<S> WsByteStream<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            chunk: Bytes::new(),
            eof: false,
            close_sent: false,
        }
    }
}

fn io_err(e: WsProtoError) -> io::Error {
    match e {
        WsProtoError::Io(e) => e,
        WsProtoError::ConnectionClosed
        | WsProtoError::AlreadyClosed
        | WsProtoError::Protocol(ProtocolError::SendAfterClosing) => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsByteStream<S> {
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
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.chunk = b,
                Some(Ok(Message::Text(t))) => self.chunk = Bytes::from(t),
                Some(Ok(Message::Close(_))) | None => self.eof = true,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(WsProtoError::ConnectionClosed | WsProtoError::AlreadyClosed)) => {
                    self.eof = true
                }
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsByteStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.close_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "WebSocket already closed",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
        Pin::new(&mut self.ws)
            .start_send(Message::binary(Bytes::copy_from_slice(buf)))
            .map_err(io_err)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
            let close = Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }));
            Pin::new(&mut self.ws).start_send(close).map_err(io_err)?;
            self.close_sent = true;
        }
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;
    use crate::streaming::spdy::{ClientSession, ServerSession};

    const T: Duration = Duration::from_secs(5);

    async fn ws_pair() -> (
        WsByteStream<tokio::io::DuplexStream>,
        WsByteStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WsByteStream::new(server), WsByteStream::new(client))
    }

    #[tokio::test]
    async fn carries_a_spdy_session() {
        let (server_io, client_io) = ws_pair().await;
        let mut server = ServerSession::start(server_io);
        let client = ClientSession::start(client_io);
        let handler = tokio::spawn(async move {
            let error = server.accept().await.unwrap();
            let data = server.accept().await.unwrap();
            assert_eq!(error.headers.get("streamtype"), Some("error"));
            assert_eq!(data.headers.get("port"), Some("80"));
            let (mut r, mut w) = data.split();
            let mut req = Vec::new();
            r.read_to_end(&mut req).await.unwrap();
            w.write_all(&req).await.unwrap();
            w.write_all(&vec![7u8; 1 << 20]).await.unwrap();
            w.shutdown().await.unwrap();
            server.close().await;
        });
        let headers = |t| [("streamtype", t), ("port", "80"), ("requestid", "0")];
        let error = client.open(&headers("error"), T).await.unwrap();
        let (_er, mut ew) = error.split();
        ew.shutdown().await.unwrap();
        let data = client.open(&headers("data"), T).await.unwrap();
        client.ping(T).await.unwrap();
        let (mut r, mut w) = data.split();
        w.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..18], b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(got.len(), 18 + (1 << 20));
        handler.await.unwrap();
        client.close().await;
    }

    #[tokio::test]
    async fn bytes_then_close_1000_is_eof() {
        let (mut server, client) = ws_pair().await;
        let mut raw_client = client.ws;
        use futures::{SinkExt, StreamExt};
        raw_client
            .send(Message::Ping(Bytes::from_static(b"p")))
            .await
            .unwrap();
        raw_client.send(Message::binary(vec![1, 2])).await.unwrap();
        raw_client.send(Message::binary(vec![3])).await.unwrap();
        let mut got = [0u8; 3];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [1, 2, 3]);
        server.write_all(b"x").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(
            server.write_all(b"y").await.unwrap_err().kind(),
            std::io::ErrorKind::BrokenPipe
        );
        // The client sees the pong, the data, then Close with code 1000.
        let mut seen = Vec::new();
        while let Some(Ok(m)) = raw_client.next().await {
            let close = m.is_close();
            seen.push(m);
            if close {
                break;
            }
        }
        // Polling again sends the client's answering Close.
        let _ = tokio::time::timeout(Duration::from_millis(100), raw_client.next()).await;
        assert!(
            seen.contains(&Message::Pong(Bytes::from_static(b"p"))),
            "{seen:?}"
        );
        assert!(seen.contains(&Message::binary(vec![b'x'])), "{seen:?}");
        assert!(
            seen.iter()
                .any(|m| matches!(m, Message::Close(Some(f)) if f.code == CloseCode::Normal)),
            "{seen:?}"
        );
        // The client's answering Close is EOF for the server.
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
