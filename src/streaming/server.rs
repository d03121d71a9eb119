//! The streaming server: an HTTP/1.1 listener (hyper) serving `/{exec,attach,portforward}/TOKEN`.
//! A request takes its token (single use), then upgrades to SPDY/3.1 (`Upgrade: SPDY/3.1` with
//! `X-Stream-Protocol-Version` negotiation) or to WebSocket (`Upgrade: websocket` with a
//! Kubernetes channel subprotocol, or `SPDY/3.1+portforward.k8s.io`, the SPDY port-forward
//! tunnelled in WebSocket). Unknown or used tokens answer 404, non-upgrade requests 400, and an
//! unsupported protocol 403.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::idle::{Activity, IDLE_TIMEOUT, Tracked};
use super::portforward::{self, Target};
use super::remotecommand::{self, PORT_FORWARD_PROTOCOL, SPDY_PROTOCOLS, Version};
use super::session;
use super::tokens::{Pending, Tokens, TooManyTokens};
use super::ws::{ChannelProtocol, WsByteStream};
use crate::config::StreamingConfig;
use crate::error::{Classify, ErrorKind};
use crate::runtime::Runtime;

/// The WebSocket subprotocol of the SPDY port-forward tunnel.
pub const SPDY_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("binding the streaming server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    TooManyTokens(#[from] TooManyTokens),
    #[error("the streaming server is not running")]
    NotRunning,
    #[error("streaming server TLS: {path}: {message}")]
    Tls { path: String, message: String },
}

impl Classify for StreamingError {
    fn kind(&self) -> ErrorKind {
        match self {
            StreamingError::Bind { .. } => ErrorKind::Internal,
            StreamingError::TooManyTokens(_) => ErrorKind::ResourceExhausted,
            StreamingError::NotRunning => ErrorKind::Unavailable,
            StreamingError::Tls { .. } => ErrorKind::Internal,
        }
    }
}

pub struct StreamingServer {
    tokens: Tokens,
    /// `http://host:port`, the prefix of every URL handed out.
    base_url: String,
    addr: SocketAddr,
    runtime: Arc<Runtime>,
    accept: tokio::task::AbortHandle,
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl StreamingServer {
    /// Binds the listener and serves in the background.
    pub async fn start(
        config: &StreamingConfig,
        runtime: Arc<Runtime>,
    ) -> Result<Arc<Self>, StreamingError> {
        Self::start_with(config, runtime, Tokens::default()).await
    }

    /// [`Self::start`] with a given token cache (tests use a short TTL).
    pub async fn start_with(
        config: &StreamingConfig,
        runtime: Arc<Runtime>,
        tokens: Tokens,
    ) -> Result<Arc<Self>, StreamingError> {
        let tls = (!config.tls_cert.as_os_str().is_empty())
            .then(|| tls_acceptor(&config.tls_cert, &config.tls_key))
            .transpose()?;
        let addr = SocketAddr::new(config.address, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StreamingError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StreamingError::Bind { addr, source })?;
        // An unspecified address serves loopback too; hand out the loopback URL.
        let host = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            ip if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{host}:{}", addr.port());
        let server = Arc::new_cyclic(|weak: &std::sync::Weak<Self>| {
            let weak = weak.clone();
            let task = tokio::spawn(accept_loop(listener, tls, weak));
            Self {
                tokens,
                base_url,
                addr,
                runtime,
                accept: task.abort_handle(),
            }
        });
        tracing::info!(url = %server.base_url, "streaming server listening");
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Caches `request` under a new token; its URL.
    pub fn url(&self, request: Pending) -> Result<String, StreamingError> {
        let kind = request.kind();
        let token = self.tokens.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }

    async fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<String> {
        if req.method() != Method::GET && req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
        }
        let mut parts = req.uri().path().trim_matches('/').split('/');
        let (Some(kind), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        let Some(pending) = self.tokens.take(token) else {
            return text(StatusCode::NOT_FOUND, "unknown or expired token");
        };
        if pending.kind() != kind {
            return text(StatusCode::NOT_FOUND, "unknown or expired token");
        }
        let upgrade = header_values(req.headers(), header::UPGRADE).join(",");
        let upgrade = upgrade.to_ascii_lowercase();
        let connection_upgrade = header_values(req.headers(), header::CONNECTION)
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("upgrade"));
        if !connection_upgrade {
            return text(StatusCode::BAD_REQUEST, "an upgrade request is required");
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        let headers = req.headers();
        if upgrade.split(',').any(|p| p.trim() == "websocket") {
            self.websocket(headers, pending, on_upgrade)
        } else if upgrade.contains("spdy/3.1") {
            self.spdy(headers, pending, on_upgrade)
        } else {
            text(
                StatusCode::BAD_REQUEST,
                "unsupported upgrade: use SPDY/3.1 or websocket",
            )
        }
    }

    fn spdy(
        self: &Arc<Self>,
        headers: &HeaderMap,
        pending: Pending,
        on_upgrade: hyper::upgrade::OnUpgrade,
    ) -> Response<String> {
        let offered = header_values(headers, "x-stream-protocol-version");
        if offered.is_empty() {
            return text(StatusCode::BAD_REQUEST, "missing X-Stream-Protocol-Version");
        }
        let supported: &[&str] = match pending {
            Pending::PortForward(_) => &[PORT_FORWARD_PROTOCOL],
            _ => &SPDY_PROTOCOLS,
        };
        let Some(chosen) = remotecommand::negotiate(&offered, supported) else {
            let mut response = text(
                StatusCode::FORBIDDEN,
                &format!(
                    "no common stream protocol: offered {}, supported {}",
                    offered.join(", "),
                    supported.join(", ")
                ),
            );
            for version in supported {
                if let Ok(value) = http::HeaderValue::from_str(version) {
                    response
                        .headers_mut()
                        .append("x-accepted-stream-protocol-versions", value);
                }
            }
            return response;
        };
        let target = match self.target(&pending) {
            Ok(t) => t,
            Err(response) => return *response,
        };
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            let activity = Activity::new();
            let io = match on_upgrade.await {
                Ok(upgraded) => Tracked::new(TokioIo::new(upgraded), activity.clone()),
                Err(e) => {
                    tracing::debug!(error = %e, "streaming: SPDY upgrade failed");
                    return;
                }
            };
            let serve = async move {
                match (target, Version::from_name(chosen)) {
                    (Some(target), _) => portforward::serve_spdy(io, target).await,
                    (None, Some(version)) => {
                        session::serve_spdy(io, version, pending, runtime).await;
                    }
                    (None, None) => {}
                }
            };
            tokio::select! {
                () = serve => {}
                () = activity.idle(IDLE_TIMEOUT) => tracing::debug!("streaming: idle SPDY session dropped"),
            }
        });
        let mut response = switching("SPDY/3.1");
        response.headers_mut().insert(
            "x-stream-protocol-version",
            http::HeaderValue::from_static(chosen),
        );
        response
    }

    fn websocket(
        self: &Arc<Self>,
        headers: &HeaderMap,
        pending: Pending,
        on_upgrade: hyper::upgrade::OnUpgrade,
    ) -> Response<String> {
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        };
        let accept = derive_accept_key(key.as_bytes());
        let offered: Vec<String> = header_values(headers, header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        enum Mode {
            Channels(ChannelProtocol),
            Tunnel,
            LegacyPortForward(ChannelProtocol),
        }
        let chosen = match &pending {
            Pending::PortForward(_) if offered.is_empty() => {
                Some((None, Mode::LegacyPortForward(ChannelProtocol::V1)))
            }
            Pending::PortForward(_) => offered.iter().find_map(|p| match p.as_str() {
                SPDY_TUNNEL_PROTOCOL => Some((Some(p.clone()), Mode::Tunnel)),
                "v4.channel.k8s.io" => Some((
                    Some(p.clone()),
                    Mode::LegacyPortForward(ChannelProtocol::V4),
                )),
                "v4.base64.channel.k8s.io" => Some((
                    Some(p.clone()),
                    Mode::LegacyPortForward(ChannelProtocol::V4Base64),
                )),
                _ => None,
            }),
            _ if offered.is_empty() => Some((None, Mode::Channels(ChannelProtocol::V1))),
            _ => offered.iter().find_map(|p| {
                ChannelProtocol::from_subprotocol(p).map(|c| (Some(p.clone()), Mode::Channels(c)))
            }),
        };
        let Some((subprotocol, mode)) = chosen else {
            let supported = match pending {
                Pending::PortForward(_) => {
                    format!("{SPDY_TUNNEL_PROTOCOL}, v4.channel.k8s.io, v4.base64.channel.k8s.io")
                }
                _ => "v5.channel.k8s.io, v4.channel.k8s.io, v4.base64.channel.k8s.io, \
                      base64.channel.k8s.io, channel.k8s.io"
                    .to_owned(),
            };
            return text(
                StatusCode::FORBIDDEN,
                &format!("no supported WebSocket subprotocol; supported: {supported}"),
            );
        };
        let target = match self.target(&pending) {
            Ok(t) => t,
            Err(response) => return *response,
        };
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            let activity = Activity::new();
            let io = match on_upgrade.await {
                Ok(upgraded) => Tracked::new(TokioIo::new(upgraded), activity.clone()),
                Err(e) => {
                    tracing::debug!(error = %e, "streaming: WebSocket upgrade failed");
                    return;
                }
            };
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            let serve = async move {
                match (mode, target) {
                    (Mode::Tunnel, Some(target)) => {
                        portforward::serve_spdy(WsByteStream::new(ws), target).await;
                    }
                    (Mode::Channels(proto), None) => {
                        session::serve_ws(ws, proto, pending, runtime).await;
                    }
                    (Mode::LegacyPortForward(proto), Some(target)) => {
                        let ports = match &pending {
                            Pending::PortForward(req) => req
                                .port
                                .iter()
                                .filter_map(|p| u16::try_from(*p).ok())
                                .collect(),
                            _ => Vec::new(),
                        };
                        portforward::serve_ws_legacy(ws, proto, ports, target).await;
                    }
                    _ => {}
                }
            };
            tokio::select! {
                () = serve => {}
                () = activity.idle(IDLE_TIMEOUT) => tracing::debug!("streaming: idle WebSocket session dropped"),
            }
        });
        let mut response = switching("websocket");
        let headers = response.headers_mut();
        if let Ok(value) = http::HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
        }
        if let Some(value) = subprotocol.and_then(|p| http::HeaderValue::from_str(&p).ok()) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        response
    }

    /// For a port-forward, where to dial (the pod must still be ready); `None` otherwise.
    fn target(&self, pending: &Pending) -> Result<Option<Target>, Box<Response<String>>> {
        let Pending::PortForward(req) = pending else {
            return Ok(None);
        };
        match self.runtime.pod_netns(&req.pod_sandbox_id) {
            Ok(netns) => Ok(Some(Target {
                netns: netns.map(Arc::new),
            })),
            Err(e) => Err(Box::new(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
            ))),
        }
    }
}

/// How long a client has for the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TLS acceptor for the PEM certificate chain `cert` and PEM private key `key`.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, StreamingError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |path: &std::path::Path, message: String| StreamingError::Tls {
        path: path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(cert, format!("reading the certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(err(cert, "no certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err(key, format!("reading the private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| {
            err(
                cert,
                format!("the certificate and key do not make a TLS config: {e}"),
            )
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    server: std::sync::Weak<StreamingServer>,
) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "streaming server: accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(server) = server.upgrade() else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(tcp, server).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, server).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "streaming server: TLS"),
                        Err(_) => tracing::debug!("streaming server: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 requests (and their upgrades) on one connection, plain or TLS.
async fn serve_connection<IO>(io: IO, server: Arc<StreamingServer>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.handle(req).await) }
    });
    // The timer enables hyper's 30 s limit on reading the request head.
    if let Err(e) = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(error = %e, "streaming server: connection");
    }
}

/// Every value of a header (several lines and/or comma-separated), as strings.
fn header_values(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

fn text(status: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(format!("{body}\n"));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn switching(protocol: &'static str) -> Response<String> {
    let mut response = Response::new(String::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(header::UPGRADE, http::HeaderValue::from_static(protocol));
    response
}
