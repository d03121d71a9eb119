//! The client's HTTP/1.1 upgrade to SPDY/3.1, as client-go sends it (for tests and benchmarks;
//! the server side is the streaming server's HTTP layer).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Writes the upgrade request (`method path`, `Connection: Upgrade`, `Upgrade: SPDY/3.1`, one
/// `X-Stream-Protocol-Version` line per offered protocol, in order), reads the response head and
/// returns its status code, its headers and `io` with no byte after the head consumed (the head
/// is read a byte at a time: the server may start SPDY right behind it).
pub async fn client_upgrade<IO: AsyncRead + AsyncWrite + Unpin>(
    mut io: IO,
    host: &str,
    method: &str,
    path: &str,
    protocols: &[&str],
) -> io::Result<(u16, Vec<(String, String)>, IO)> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: strata-spdy-client\r\n\
         Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for p in protocols {
        req.push_str("X-Stream-Protocol-Version: ");
        req.push_str(p);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes()).await?;
    io.flush().await?;

    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(invalid("response head too large"));
        }
        if io.read(&mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the response head",
            ));
        }
        head.push(byte[0]);
    }
    let (status, headers) = parse_head(&head)?;
    Ok((status, headers, io))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Status code and headers of an HTTP/1.1 response head (ending in CRLFCRLF).
fn parse_head(head: &[u8]) -> io::Result<(u16, Vec<(String, String)>)> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(invalid("malformed status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not an HTTP/1.x response"));
    }
    let status = code
        .parse::<u16>()
        .map_err(|_| invalid("malformed status code"))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("malformed header line"));
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((status, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_the_go_request_and_leaves_the_rest_unread() {
        let (client, mut server) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move {
            client_upgrade(
                client,
                "127.0.0.1:1",
                "POST",
                "/exec/abc",
                &["v4.channel.k8s.io", "v3.channel.k8s.io"],
            )
            .await
        });
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") {
            server.read_exact(&mut b).await.unwrap();
            req.push(b[0]);
        }
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("POST /exec/abc HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nConnection: Upgrade\r\n"));
        assert!(req.contains("\r\nUpgrade: SPDY/3.1\r\n"));
        assert!(req.contains(
            "X-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\n"
        ));
        server
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
                  X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n\x80\x03",
            )
            .await
            .unwrap();
        let (status, headers, mut io) = task.await.unwrap().unwrap();
        assert_eq!(status, 101);
        assert!(headers.contains(&(
            "X-Stream-Protocol-Version".to_owned(),
            "v4.channel.k8s.io".to_owned()
        )));
        let mut rest = [0u8; 2];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, [0x80, 0x03]);
    }

    #[test]
    fn parses_heads() {
        let (s, h) = parse_head(b"HTTP/1.1 403 Forbidden\r\nA: b\r\nC:d \r\n\r\n").unwrap();
        assert_eq!(s, 403);
        assert_eq!(h, vec![("A".into(), "b".into()), ("C".into(), "d".into())]);
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n").is_err());
    }
}
