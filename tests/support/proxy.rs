//! An HTTP proxy in front of a [`super::registry::Registry`] that speaks the Docker Hub token
//! flow and injects faults.
//!
//! With [`ProxyOptions::bearer`] every `/v2/...` request must carry `Authorization: Bearer
//! <token>` with a token from the proxy's own `/token` endpoint; otherwise it answers `401` with
//! `WWW-Authenticate: Bearer realm="http://ADDR/token",service="strata-test",
//! scope="repository:<repo>:pull"`. The token endpoint hands out tokens anonymously, or only
//! for HTTP basic credentials when [`ProxyOptions::token_credentials`] is set.
//!
//! Everything else is forwarded to the registry as is (bodies are buffered: test images are
//! small). The proxy runs on its own thread and runtime; drop stops it.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};

/// What the proxy does to `/v2/...` requests (the token endpoint is never affected).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Answer every request with this status (and a distribution-style JSON error).
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// Send blob responses with their full `Content-Length` but only the first `n` bytes,
    /// then drop the connection.
    TruncateBlobs(usize),
}

#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Demand bearer tokens from the proxy's token endpoint.
    pub bearer: bool,
    /// The token endpoint demands these basic credentials (else tokens are anonymous).
    pub token_credentials: Option<(String, String)>,
    pub fault: Fault,
    /// Serve the registry under this path prefix (`/mirror`): requests must start with it, and
    /// it is removed before forwarding. For endpoints configured with a path.
    pub path_prefix: Option<String>,
}

struct State {
    addr: String,
    upstream: String,
    opts: ProxyOptions,
    fault: Mutex<Fault>,
    tokens: Mutex<HashSet<String>>,
    counter: AtomicU64,
    requests: Mutex<Vec<String>>,
    http: reqwest::Client,
}

/// A running proxy; stopped on drop.
pub struct Proxy {
    addr: String,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str, opts: ProxyOptions) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding proxy port");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            addr: addr.clone(),
            upstream: upstream.to_owned(),
            fault: Mutex::new(opts.fault.clone()),
            opts,
            tokens: Mutex::default(),
            counter: AtomicU64::new(0),
            requests: Mutex::default(),
            http: reqwest::Client::new(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{addr}"))
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(serve(listener, thread_state, rx));
            })
            .unwrap();
        Self {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the fault from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// Requests seen so far, as `METHOD /path?query auth=<none|basic|bearer>`.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.tokens.lock().unwrap().len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    // Returning drops the runtime, which cancels connections still open (and hung ones).
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_error(status: u16, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(full(body))
        .unwrap()
}

/// `repo` of `/v2/<repo>/(manifests|blobs|tags)/...`.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .find_map(|marker| rest.find(marker).map(|i| &rest[..i]))
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let mut path = req.uri().path().to_owned();
    let mut path_and_query = req
        .uri()
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    let authorization = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let auth_kind = match authorization.split(' ').next() {
        Some("Bearer") => "bearer",
        Some("Basic") => "basic",
        _ => "none",
    };
    state.requests.lock().unwrap().push(format!(
        "{} {path_and_query} auth={auth_kind}",
        req.method()
    ));

    if path == "/token" {
        return Ok(issue_token(&state, &authorization));
    }
    if let Some(prefix) = &state.opts.path_prefix {
        match (
            path.strip_prefix(prefix.as_str()),
            path_and_query.strip_prefix(prefix.as_str()),
        ) {
            (Some(p), Some(pq)) if p.starts_with('/') => {
                path = p.to_owned();
                path_and_query = pq.to_owned();
            }
            _ => return Ok(json_error(404, "NOT_FOUND", "outside the path prefix")),
        }
    }

    let fault = state.fault.lock().unwrap().clone();
    match fault {
        Fault::Status(code) => {
            let error_code = match code {
                401 => "UNAUTHORIZED",
                403 => "DENIED",
                404 => "NAME_UNKNOWN",
                429 => "TOOMANYREQUESTS",
                _ => "UNKNOWN",
            };
            return Ok(json_error(code, error_code, "injected fault"));
        }
        Fault::Hang => std::future::pending::<()>().await,
        Fault::None | Fault::TruncateBlobs(_) => {}
    }

    if state.opts.bearer {
        let ok = authorization
            .strip_prefix("Bearer ")
            .is_some_and(|t| state.tokens.lock().unwrap().contains(t));
        if !ok {
            let mut challenge = format!(
                "Bearer realm=\"http://{}/token\",service=\"strata-test\"",
                state.addr
            );
            if let Some(repo) = repository_of(&path) {
                challenge.push_str(&format!(",scope=\"repository:{repo}:pull\""));
            }
            let mut res = json_error(401, "UNAUTHORIZED", "authentication required");
            res.headers_mut()
                .insert("WWW-Authenticate", challenge.parse().unwrap());
            return Ok(res);
        }
    }

    Ok(forward(req, &state, &path_and_query, fault).await)
}

fn issue_token(state: &State, authorization: &str) -> Response<Body> {
    if let Some((user, password)) = &state.opts.token_credentials {
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if authorization.strip_prefix("Basic ") != Some(expected.as_str()) {
            return json_error(
                401,
                "UNAUTHORIZED",
                "bad credentials for the token endpoint",
            );
        }
    }
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    let token = format!("strata-test-token-{n}");
    state.tokens.lock().unwrap().insert(token.clone());
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300});
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(full(body.to_string()))
        .unwrap()
}

async fn forward(
    req: Request<Incoming>,
    state: &State,
    path_and_query: &str,
    fault: Fault,
) -> Response<Body> {
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let url = format!("http://{}{path_and_query}", state.upstream);
    let mut upstream = state.http.request(method, &url);
    for name in ["Accept", "Content-Type", "Range"] {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            upstream = upstream.header(name, v);
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return json_error(400, "BAD_REQUEST", &e.to_string()),
    };
    let res = match upstream.body(body).send().await {
        Ok(res) => res,
        Err(e) => return json_error(502, "BAD_GATEWAY", &e.to_string()),
    };
    let status = res.status().as_u16();
    let mut builder = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for name in [
        "Content-Type",
        "Content-Length",
        "Docker-Content-Digest",
        "Docker-Distribution-Api-Version",
        "Location",
        "Range",
    ] {
        if let Some(v) = res.headers().get(name).and_then(|v| v.to_str().ok()) {
            builder = builder.header(name, v);
        }
    }
    let bytes = res.bytes().await.unwrap_or_default();
    match fault {
        Fault::TruncateBlobs(n) if status == 200 && path_and_query.contains("/blobs/") => {
            let head = bytes.slice(..n.min(bytes.len()));
            let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
                Ok(Frame::data(head)),
                Err(std::io::Error::other("injected truncation")),
            ];
            builder
                .body(BodyExt::boxed(StreamBody::new(futures::stream::iter(
                    frames,
                ))))
                .unwrap()
        }
        _ => builder.body(full(bytes)).unwrap(),
    }
}
