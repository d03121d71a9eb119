//! A client for strata's streaming server that behaves like client-go: SPDY/3.1 upgrade with
//! `X-Stream-Protocol-Version`, one stream at a time (waiting for each SYN_REPLY), compressed
//! headers, no WINDOW_UPDATE; and WebSocket clients (tokio-tungstenite) for the channel
//! protocols and the `SPDY/3.1+portforward.k8s.io` tunnel.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use strata::streaming::spdy::{ClientSession, StreamReader, StreamWriter, client_upgrade};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// What crictl offers for exec/attach.
pub const EXEC_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a whole session in tests.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// `http(s)://host:port/path` -> (`host:port`, `/path`).
pub fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .expect("an http:// or https:// URL");
    let slash = rest.find('/').expect("a path");
    (rest[..slash].to_owned(), rest[slash..].to_owned())
}

/// The CA certificate (PEM file) that `https://` URLs are verified against: the TLS test's
/// self-signed certificate.
pub static TLS_ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// A connection to the streaming server, plain or TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects to the server of `url`: TLS (verified against [`TLS_ROOT`]) for `https://`.
pub async fn connect(url: &str) -> Box<dyn Io> {
    use rustls::pki_types::pem::PemObject as _;
    let (host, _) = split_url(url);
    let tcp = TcpStream::connect(&host).await.expect("connecting");
    if !url.starts_with("https://") {
        return Box::new(tcp);
    }
    let mut roots = rustls::RootCertStore::empty();
    let ca = TLS_ROOT.get().expect("TLS_ROOT set for https URLs");
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots
            .add(cert.expect("CA certificate"))
            .expect("adding the CA");
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let ip: std::net::IpAddr = host
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']'))
        .expect("host:port")
        .parse()
        .expect("an IP address");
    let name = rustls::pki_types::ServerName::IpAddress(ip.into());
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    Box::new(tls)
}

/// The response of an upgrade attempt.
pub struct Upgraded {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub io: Box<dyn Io>,
}

impl Upgraded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// POSTs a SPDY/3.1 upgrade offering `protocols`.
pub async fn spdy_upgrade(url: &str, protocols: &[&str]) -> Upgraded {
    let (host, path) = split_url(url);
    let conn = connect(url).await;
    let (status, headers, io) = client_upgrade(conn, &host, "POST", &path, protocols)
        .await
        .expect("upgrade request");
    Upgraded {
        status,
        headers,
        io,
    }
}

/// Sends a raw HTTP request; returns the status code and the whole response text.
pub async fn raw_request(url: &str, extra_headers: &str) -> (u16, String) {
    let (host, path) = split_url(url);
    let mut tcp = TcpStream::connect(&host).await.expect("connecting");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra_headers}\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut text = Vec::new();
    tokio::time::timeout(SESSION_TIMEOUT, tcp.read_to_end(&mut text))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&text).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {text:?}"));
    (code, text)
}

/// Which streams to open, as the CRI request asked.
#[derive(Clone, Copy, Default)]
pub struct Want {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// An exec/attach session with its streams open.
pub struct Command {
    pub session: ClientSession,
    pub protocol: String,
    pub error: StreamReader,
    pub stdin: Option<StreamWriter>,
    pub stdout: Option<StreamReader>,
    pub stderr: Option<StreamReader>,
    pub resize: Option<StreamWriter>,
}

/// What a session left.
#[derive(Debug)]
pub struct Finished {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error stream's content (empty: success for v2/v3).
    pub error: Vec<u8>,
}

impl Finished {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// The Status JSON on the error stream.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.error)
            .unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(&self.error)))
    }
}

/// Upgrades and opens the streams in client-go's order: error, stdin, stdout, stderr, resize.
pub async fn open_command(url: &str, want: Want) -> Command {
    let up = spdy_upgrade(url, &EXEC_PROTOCOLS).await;
    assert_eq!(up.status, 101, "{:?}", up.headers);
    assert!(
        up.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("spdy/3.1")),
        "{:?}",
        up.headers
    );
    let protocol = up
        .header("x-stream-protocol-version")
        .expect("negotiated version")
        .to_owned();
    let session = ClientSession::start(up.io);
    let open = |kind: &'static str| {
        let session = &session;
        async move {
            session
                .open(&[("streamtype", kind)], STREAM_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("opening {kind}: {e}"))
                .split()
        }
    };
    let (error, mut error_w) = open("error").await;
    // client-go closes its side of the error stream at once.
    error_w.shutdown().await.unwrap();
    let stdin = if want.stdin {
        Some(open("stdin").await.1)
    } else {
        None
    };
    let stdout = if want.stdout {
        Some(open("stdout").await.0)
    } else {
        None
    };
    let stderr = if want.stderr && !want.tty {
        Some(open("stderr").await.0)
    } else {
        None
    };
    let resize = if want.tty {
        Some(open("resize").await.1)
    } else {
        None
    };
    Command {
        session,
        protocol,
        error,
        stdin,
        stdout,
        stderr,
        resize,
    }
}

async fn read_all(r: Option<StreamReader>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut out).await;
    }
    out
}

impl Command {
    /// Reads stdout, stderr and the error stream to their ends (as client-go does), then closes
    /// the session. Whatever remains of stdin is left open.
    pub async fn finish(self) -> Finished {
        let Command {
            session,
            mut error,
            stdout,
            stderr,
            stdin,
            resize,
            ..
        } = self;
        let run = async {
            let (stdout, stderr) = tokio::join!(read_all(stdout), read_all(stderr));
            let mut err = Vec::new();
            let _ = error.read_to_end(&mut err).await;
            Finished {
                stdout,
                stderr,
                error: err,
            }
        };
        let finished = tokio::time::timeout(SESSION_TIMEOUT, run)
            .await
            .expect("the session ended in time");
        drop((stdin, resize));
        session.close().await;
        finished
    }
}

/// A port-forward session over SPDY (or the WebSocket tunnel).
pub struct PortForward {
    pub session: ClientSession,
    next_request: std::sync::atomic::AtomicU32,
}

/// What one forwarded connection got back.
pub struct Forwarded {
    pub data: Vec<u8>,
    pub error: Vec<u8>,
}

impl PortForward {
    pub async fn spdy(url: &str) -> PortForward {
        let up = spdy_upgrade(url, &["portforward.k8s.io"]).await;
        assert_eq!(up.status, 101, "{:?}", up.headers);
        assert_eq!(
            up.header("x-stream-protocol-version"),
            Some("portforward.k8s.io")
        );
        Self::over(ClientSession::start(up.io))
    }

    /// The `SPDY/3.1+portforward.k8s.io` tunnel.
    pub async fn websocket(url: &str) -> PortForward {
        let (ws, protocol) = ws_connect(url, &["SPDY/3.1+portforward.k8s.io"]).await;
        assert_eq!(protocol.as_deref(), Some("SPDY/3.1+portforward.k8s.io"));
        let io = strata::streaming::ws::WsByteStream::new(ws);
        Self::over(ClientSession::start(io))
    }

    fn over(session: ClientSession) -> PortForward {
        PortForward {
            session,
            next_request: Default::default(),
        }
    }

    /// Opens one forwarded connection (error then data stream, like client-go), sends `request`,
    /// half-closes, and reads the response and the error stream to their ends.
    pub async fn request(&self, port: u16, request: &[u8]) -> Forwarded {
        let id = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .to_string();
        let port = port.to_string();
        let headers = |kind| {
            [
                ("streamtype", kind),
                ("port", port.as_str()),
                ("requestid", id.as_str()),
            ]
        };
        let (mut error, mut error_w) = self
            .session
            .open(&headers("error"), STREAM_TIMEOUT)
            .await
            .expect("error stream")
            .split();
        error_w.shutdown().await.unwrap();
        let (mut data, mut data_w) = self
            .session
            .open(&headers("data"), STREAM_TIMEOUT)
            .await
            .expect("data stream")
            .split();
        let run = async {
            let write = async {
                let _ = data_w.write_all(request).await;
                let _ = data_w.shutdown().await;
            };
            let mut out = Vec::new();
            let read = data.read_to_end(&mut out);
            let (_, _) = tokio::join!(write, read);
            let mut err = Vec::new();
            let _ = error.read_to_end(&mut err).await;
            Forwarded {
                data: out,
                error: err,
            }
        };
        tokio::time::timeout(SESSION_TIMEOUT, run)
            .await
            .expect("forwarded connection finished in time")
    }
}

/// A WebSocket connection offering `protocols`; the chosen subprotocol.
pub async fn ws_connect(
    url: &str,
    protocols: &[&str],
) -> (WebSocketStream<TcpStream>, Option<String>) {
    let (host, _) = split_url(url);
    let mut request = url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    let tcp = TcpStream::connect(&host).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("websocket handshake");
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, protocol)
}

/// Everything a channel-protocol WebSocket session delivered, until the server's Close.
#[derive(Debug, Default)]
pub struct WsFinished {
    /// Payloads per channel, concatenated.
    pub channels: std::collections::BTreeMap<u8, Vec<u8>>,
    /// How many messages arrived per channel (empty ones included).
    pub messages: std::collections::BTreeMap<u8, usize>,
    pub close_code: Option<u16>,
}

/// Reads channel messages (base64 or binary) until the server closes.
pub async fn ws_collect(ws: &mut WebSocketStream<TcpStream>, base64: bool) -> WsFinished {
    use base64::Engine as _;
    let mut done = WsFinished::default();
    let run = async {
        while let Some(message) = ws.next().await {
            let (channel, payload) = match message.expect("websocket message") {
                Message::Binary(data) => {
                    assert!(!base64, "binary message in a base64 protocol");
                    (data[0], data[1..].to_vec())
                }
                Message::Text(text) => {
                    assert!(base64, "text message in a binary protocol");
                    let text = text.as_str();
                    let channel = text.as_bytes()[0] - b'0';
                    let payload = base64::engine::general_purpose::STANDARD
                        .decode(&text[1..])
                        .unwrap();
                    (channel, payload)
                }
                Message::Close(frame) => {
                    done.close_code = frame.map(|f| u16::from(f.code));
                    break;
                }
                _ => continue,
            };
            *done.messages.entry(channel).or_default() += 1;
            done.channels.entry(channel).or_default().extend(payload);
        }
    };
    tokio::time::timeout(SESSION_TIMEOUT, run)
        .await
        .expect("websocket session ended in time");
    done
}

/// Sends a binary channel message.
pub async fn ws_send(ws: &mut WebSocketStream<TcpStream>, data: Vec<u8>) {
    ws.send(Message::binary(data)).await.unwrap();
}
