//! The Kubernetes remote-command protocol shared by exec and attach: protocol versions and their
//! negotiation, the end-of-command status, and [`Streams`], the transport-neutral view of a
//! session (SPDY streams or WebSocket channels) that [`super::exec`] and [`super::attach`] use.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Exec/attach protocols over SPDY, in the server's order of preference. v5 is v4 over SPDY (it
/// only adds the stdin close signal of WebSocket). `channel.k8s.io` (v1) is refused.
pub const SPDY_PROTOCOLS: [&str; 4] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// A remote-command protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "channel.k8s.io" | "base64.channel.k8s.io" | "" => Version::V1,
            "v2.channel.k8s.io" => Version::V2,
            "v3.channel.k8s.io" => Version::V3,
            "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => Version::V4,
            "v5.channel.k8s.io" => Version::V5,
            _ => return None,
        })
    }

    /// Whether a tty session has a resize stream (v3 and later).
    pub fn has_resize(self) -> bool {
        self >= Version::V3
    }

    /// Whether the status is the JSON `Status` object (v4 and later) rather than plain text.
    fn json_status(self) -> bool {
        self >= Version::V4
    }
}

/// Picks the first protocol the client offered that the server supports. Each offered value may
/// itself be a comma-separated list.
pub fn negotiate<'a, S: AsRef<str>>(offered: &[S], supported: &[&'a str]) -> Option<&'a str> {
    offered
        .iter()
        .flat_map(|v| v.as_ref().split(','))
        .map(str::trim)
        .find_map(|p| supported.iter().find(|s| **s == p).copied())
}

/// How an exec or attach ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0 (or an attach that ended normally).
    Success,
    /// The process exited with this non-zero code (128+signal when killed).
    Exit(i32),
    /// The command could not run, or the attach failed.
    Failure(String),
}

/// The bytes written on the error stream/channel for `outcome`, if any.
pub fn status_bytes(version: Version, outcome: &Outcome) -> Option<Vec<u8>> {
    if !version.json_status() {
        return match outcome {
            Outcome::Success => None,
            Outcome::Exit(code) => {
                Some(format!("command terminated with non-zero exit code: {code}").into_bytes())
            }
            Outcome::Failure(text) => Some(text.clone().into_bytes()),
        };
    }
    let value = match outcome {
        Outcome::Success => serde_json::json!({"metadata": {}, "status": "Success"}),
        Outcome::Exit(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command, exit status {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failure(text) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {text}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": text}]},
            "code": 500,
        }),
    };
    Some(value.to_string().into_bytes())
}

/// A terminal size from a resize message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSize {
    pub width: u16,
    pub height: u16,
}

/// Parses one resize JSON object (`{"Width":W,"Height":H}`, keys in any case).
pub fn parse_resize(bytes: &[u8]) -> Option<TermSize> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes).ok()?;
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_u64())
            .and_then(|v| u16::try_from(v).ok())
    };
    Some(TermSize {
        width: field("width")?,
        height: field("height")?,
    })
}

/// Incremental decoder for a byte stream of JSON resize objects, which may be split across or
/// packed into reads.
#[derive(Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

/// A resize stream that never ends in a valid object is dropped past this size.
const MAX_RESIZE_BUFFER: usize = 64 * 1024;

impl ResizeDecoder {
    /// Feeds bytes; returns the complete sizes decoded so far.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<TermSize> {
        self.buf.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        {
            let mut values = serde_json::Deserializer::from_slice(&self.buf)
                .into_iter::<serde::de::IgnoredAny>();
            loop {
                let start = values.byte_offset();
                match values.next() {
                    Some(Ok(_)) => {
                        let end = values.byte_offset();
                        if let Some(size) = parse_resize(&self.buf[start..end]) {
                            sizes.push(size);
                        }
                        consumed = end;
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(_)) => {
                        // Garbage: drop everything received so far.
                        consumed = self.buf.len();
                        break;
                    }
                    None => {
                        consumed = self.buf.len();
                        break;
                    }
                }
            }
        }
        self.buf.drain(..consumed);
        if self.buf.len() > MAX_RESIZE_BUFFER {
            self.buf.clear();
        }
        sizes
    }
}

/// The client's side of an exec or attach, whatever the transport.
pub struct Streams {
    /// The client's stdin; EOF when the client closed it.
    pub stdin: Option<BoxRead>,
    pub stdout: Option<BoxWrite>,
    pub stderr: Option<BoxWrite>,
    /// Terminal size changes (tty sessions).
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

/// Bounded: a client flooding resizes loses some, never blocks anything.
pub const RESIZE_QUEUE: usize = 16;

/// Reads a byte stream of resize objects into a channel until EOF or error.
pub fn spawn_resize_reader(mut reader: BoxRead) -> mpsc::Receiver<TermSize> {
    use tokio::io::AsyncReadExt as _;
    let (tx, rx) = mpsc::channel(RESIZE_QUEUE);
    tokio::spawn(async move {
        let mut decoder = ResizeDecoder::default();
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    for size in decoder.feed(&buf[..n]) {
                        // Full: this size is dropped (a later one supersedes it anyway).
                        if tx.try_send(size).is_err() && tx.is_closed() {
                            return;
                        }
                    }
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_client_order() {
        let offered = ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];
        assert_eq!(
            negotiate(&offered, &SPDY_PROTOCOLS),
            Some("v5.channel.k8s.io")
        );
        let offered = ["channel.k8s.io", "v2.channel.k8s.io, v4.channel.k8s.io"];
        assert_eq!(
            negotiate(&offered, &SPDY_PROTOCOLS),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(negotiate(&["channel.k8s.io"], &SPDY_PROTOCOLS), None);
        assert_eq!(negotiate::<&str>(&[], &SPDY_PROTOCOLS), None);
        assert_eq!(
            negotiate(&["portforward.k8s.io"], &[PORT_FORWARD_PROTOCOL]),
            Some("portforward.k8s.io")
        );
    }

    #[test]
    fn status_json() {
        let ok = status_bytes(Version::V4, &Outcome::Success).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v, serde_json::json!({"metadata": {}, "status": "Success"}));
        let exit = status_bytes(Version::V5, &Outcome::Exit(3)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&exit).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(
            v["details"]["causes"][0],
            serde_json::json!({"reason": "ExitCode", "message": "3"})
        );
        let fail = status_bytes(Version::V4, &Outcome::Failure("boom".into())).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fail).unwrap();
        assert_eq!(v["code"], 500);
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["message"], "Internal error occurred: boom");
        assert_eq!(status_bytes(Version::V3, &Outcome::Success), None);
        assert_eq!(
            status_bytes(Version::V2, &Outcome::Failure("boom".into())).unwrap(),
            b"boom"
        );
    }

    #[test]
    fn resize_decoding_is_incremental() {
        let mut d = ResizeDecoder::default();
        assert_eq!(d.feed(br#"{"Width":100,"#), vec![]);
        assert_eq!(
            d.feed(b"\"Height\":40}\n{\"width\":1,\"height\":2}\n"),
            vec![
                TermSize {
                    width: 100,
                    height: 40
                },
                TermSize {
                    width: 1,
                    height: 2
                }
            ]
        );
        assert_eq!(d.feed(b"garbage"), vec![]);
        assert_eq!(
            d.feed(b"{\"Width\":3,\"Height\":4}"),
            vec![TermSize {
                width: 3,
                height: 4
            }]
        );
    }
}
