//! The daemon's side of the monitor (tokio): spawning it, and its control socket.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;

pub use super::exit::{ExitStatus, read_exit_file};
use super::protocol::{self, Reply, Request};
use super::{MonitorConfig, MonitorError};

/// What a freshly spawned monitor reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// The container init's pid.
    pub pid: i32,
}

/// Writes `config` to `config_path` (mode 0600), runs `<binary> --config <path>` (`binary` is
/// the `strata-monitor` executable), and
/// returns once the monitor reported the created init. The monitor detaches: the process we
/// spawn exits at once (and is waited here), the monitor itself is not our child.
pub async fn spawn_monitor(
    binary: &Path,
    config: &MonitorConfig,
    config_path: &Path,
) -> Result<Created, MonitorError> {
    let json = serde_json::to_vec_pretty(config)
        .map_err(|e| MonitorError::InvalidConfig(e.to_string()))?;
    write_private(config_path, &json)
        .await
        .map_err(|e| MonitorError::io(format!("writing {}", config_path.display()), e))?;
    let args = ["--config".as_ref(), config_path.as_os_str()];
    let line = run_helper(binary, &args, None)
        .await
        .map_err(|e| MonitorError::io(format!("running {} monitor", binary.display()), e))?;
    #[derive(serde::Deserialize)]
    struct Pid {
        pid: i32,
    }
    match parse_report::<Pid>(&line, "created") {
        Ok(Pid { pid }) => Ok(Created { pid }),
        Err(message) => Err(MonitorError::Create(message)),
    }
}

/// Writes a file readable by its owner only, replacing it atomically.
pub(crate) async fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&tmp, path).await
}

/// Runs a detaching helper (`monitor`, `pod-init`) and returns the one line it reports on stdout,
/// after the helper's first process (which exits right after forking) has been waited for.
pub(crate) async fn run_helper(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    stdin: Option<&[u8]>,
) -> io::Result<String> {
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let (Some(mut pipe), Some(data)) = (child.stdin.take(), stdin) {
        pipe.write_all(data).await?;
    }
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    // One line; stop at the newline rather than EOF in case a descendant kept the pipe.
    while !line.contains(&b'\n') {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().await?;
    let line = String::from_utf8_lossy(&line).trim().to_owned();
    if line.is_empty() {
        return Err(io::Error::other(format!(
            "exited with {status} without reporting"
        )));
    }
    Ok(line)
}

/// Parses `{"<key>": T}` or `{"error": "..."}`.
pub(crate) fn parse_report<T: DeserializeOwned>(line: &str, key: &str) -> Result<T, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bad report {line:?}: {e}"))?;
    if let Some(error) = value.get("error") {
        return Err(error.as_str().unwrap_or("unknown error").to_owned());
    }
    let inner = value
        .get_mut(key)
        .map(serde_json::Value::take)
        .ok_or_else(|| format!("bad report {line:?}"))?;
    serde_json::from_value(inner).map_err(|e| format!("bad report {line:?}: {e}"))
}

/// One connection to a monitor's control socket. Requests on it are sequential; open several
/// clients to wait and act at the same time.
pub struct MonitorClient {
    path: PathBuf,
    stream: UnixStream,
    /// Bytes read past the last reply line.
    buf: Vec<u8>,
}

impl MonitorClient {
    /// Connects; [`MonitorError::Gone`] when no monitor listens (it exited: read the exit file).
    pub async fn connect(socket: &Path) -> Result<Self, MonitorError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| MonitorError::Gone {
                path: socket.to_owned(),
                source,
            })?;
        Ok(Self {
            path: socket.to_owned(),
            stream,
            buf: Vec::new(),
        })
    }

    /// Releases the created init; `Err(Start)` with the exec error when it could not run.
    pub async fn start(&mut self) -> Result<(), MonitorError> {
        match self.simple(Request::Start).await {
            Err(MonitorError::Remote(message)) => Err(MonitorError::Start(message)),
            other => other,
        }
    }

    /// Sends `signal` to the init (only the init: the daemon kills the rest through the
    /// cgroup). [`MonitorError::Exited`] when it has already exited.
    pub async fn signal(&mut self, signal: i32) -> Result<(), MonitorError> {
        self.simple(Request::Signal { signal }).await
    }

    /// Reopens the log file (`ReopenContainerLog`, after a rotation renamed it).
    pub async fn reopen_log(&mut self) -> Result<(), MonitorError> {
        self.simple(Request::ReopenLog).await
    }

    /// Sets the tty's window size.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<(), MonitorError> {
        self.simple(Request::Resize { width, height }).await
    }

    /// Waits until the init has exited and the monitor recorded it.
    pub async fn wait(&mut self) -> Result<ExitStatus, MonitorError> {
        let line = self.request(Request::Wait).await?;
        if let Ok(reply) = serde_json::from_str::<Reply>(&line)
            && let Some(error) = reply.error
        {
            return Err(MonitorError::Remote(error));
        }
        serde_json::from_str(&line)
            .map_err(|e| MonitorError::Protocol(format!("bad wait reply {line:?}: {e}")))
    }

    /// Attaches to the container's stdio. Returns the stdin writer (each write becomes a stdin
    /// frame; shutdown closes the client's stdin) and the stream of `(stream id, bytes)` output
    /// frames ([`protocol::STDOUT`], [`protocol::STDERR`]), which ends when the monitor exits.
    pub async fn attach(
        mut self,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(AttachInput, BoxStream<'static, io::Result<(u8, Bytes)>>), MonitorError> {
        let request = Request::Attach {
            stdin,
            stdout,
            stderr,
        };
        let line = self.request(request).await?;
        check_reply(&line)?;
        let (read, write) = self.stream.into_split();
        let output = futures::stream::unfold((read, self.buf), |(mut read, mut buf)| async move {
            match read_frame(&mut read, &mut buf).await {
                Ok(Some(frame)) => Some((Ok(frame), (read, buf))),
                Ok(None) => None,
                Err(e) => Some((Err(e), (read, Vec::new()))),
            }
        });
        let input = AttachInput {
            write,
            pending: Vec::new(),
            closed: false,
        };
        Ok((input, Box::pin(output)))
    }

    async fn simple(&mut self, request: Request) -> Result<(), MonitorError> {
        let line = self.request(request).await?;
        check_reply(&line)
    }

    /// Sends one request line and reads one reply line.
    async fn request(&mut self, request: Request) -> Result<String, MonitorError> {
        let mut line =
            serde_json::to_vec(&request).map_err(|e| MonitorError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let gone = |source| MonitorError::Gone {
            path: self.path.clone(),
            source,
        };
        self.stream.write_all(&line).await.map_err(gone)?;
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let reply: Vec<u8> = self.buf.drain(..=nl).collect();
                return Ok(String::from_utf8_lossy(&reply).trim().to_owned());
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|source| MonitorError::Gone {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(MonitorError::Gone {
                    path: self.path.clone(),
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn check_reply(line: &str) -> Result<(), MonitorError> {
    let reply: Reply = serde_json::from_str(line)
        .map_err(|e| MonitorError::Protocol(format!("bad reply {line:?}: {e}")))?;
    match reply {
        Reply { ok: true, .. } => Ok(()),
        Reply { exited: true, .. } => Err(MonitorError::Exited),
        Reply { error, .. } => Err(MonitorError::Remote(
            error.unwrap_or_else(|| "unknown error".to_owned()),
        )),
    }
}

/// Reads one frame; `None` at a clean end of the connection.
async fn read_frame<R: AsyncRead + Unpin>(
    read: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(u8, Bytes)>> {
    let mut chunk = [0u8; 8192];
    loop {
        match protocol::parse_frame(buf) {
            Ok(Some((stream, range))) => {
                let payload = Bytes::copy_from_slice(&buf[range.clone()]);
                buf.drain(..range.end);
                return Ok(Some((stream, payload)));
            }
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The stdin side of an attach: bytes written become stdin frames. `shutdown` sends the
/// zero-length frame that closes this client's stdin.
pub struct AttachInput {
    write: OwnedWriteHalf,
    /// Frame bytes accepted but not yet written.
    pending: Vec<u8>,
    closed: bool,
}

impl AttachInput {
    /// Sends a window size change.
    pub async fn resize(&mut self, width: u16, height: u16) -> io::Result<()> {
        let mut payload = [0u8; 4];
        payload[..2].copy_from_slice(&width.to_be_bytes());
        payload[2..].copy_from_slice(&height.to_be_bytes());
        protocol::put_frame(&mut self.pending, protocol::RESIZE, &payload);
        self.flush().await
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.write).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for AttachInput {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if this.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0)); // a zero-length frame would close stdin
        }
        let n = buf.len().min(32 * 1024);
        protocol::put_frame(&mut this.pending, protocol::STDIN, &buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closed {
            ready!(this.poll_pending(cx))?;
            protocol::put_frame(&mut this.pending, protocol::STDIN, &[]);
            this.closed = true;
        }
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.write).poll_shutdown(cx)
    }
}
