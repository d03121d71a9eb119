//! The monitor's control socket protocol (unix stream, mode 0600).
//!
//! Newline-delimited JSON requests, one JSON reply line each:
//! - `{"op":"start"}` -> `{"ok":true}` | `{"error":"..."}`
//! - `{"op":"signal","signal":15}` -> `{"ok":true}` | `{"error":"...","exited":true}`
//! - `{"op":"reopen_log"}` -> `{"ok":true}` | `{"error":"..."}`
//! - `{"op":"wait"}` -> the [`ExitStatus`](super::ExitStatus) object once the init has exited
//! - `{"op":"resize","width":W,"height":H}` -> `{"ok":true}` | `{"error":"..."}`
//! - `{"op":"attach","stdin":b,"stdout":b,"stderr":b}` -> `{"ok":true}`, then the connection
//!   carries frames `[stream u8][len u32 BE][bytes]` both ways: stream 0 stdin (client to
//!   monitor; a zero length closes the client's stdin), 1 stdout and 2 stderr (monitor to client),
//!   3 resize (client to monitor, payload `[width u16 BE][height u16 BE]`). With a tty all output
//!   is stream 1.
//!
//! A request on a connection is answered before the next one is read; a `wait` parks its
//! connection until the exit.

use serde::{Deserialize, Serialize};

/// Frame stream ids.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 3;

/// Header size of an attach frame.
pub const FRAME_HEADER: usize = 5;
/// Largest frame payload either side accepts.
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest request line the monitor accepts.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Start,
    Signal {
        signal: i32,
    },
    ReopenLog,
    Wait,
    Resize {
        width: u16,
        height: u16,
    },
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdout: bool,
        #[serde(default)]
        stderr: bool,
    },
}

/// A reply to everything but `wait`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set with `error` when the request failed because the init has exited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exited: bool,
}

impl Reply {
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            ..Self::default()
        }
    }

    pub fn exited() -> Self {
        Self {
            error: Some("the container has exited".to_owned()),
            exited: true,
            ..Self::default()
        }
    }
}

/// Appends one frame to `out`.
pub fn put_frame(out: &mut Vec<u8>, stream: u8, payload: &[u8]) {
    out.push(stream);
    // Callers never pass more than MAX_FRAME bytes.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Parses the frame at the start of `buf`: `Ok(None)` when incomplete, else the stream, the
/// payload range and the frame's total length.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(u8, std::ops::Range<usize>)>, String> {
    if buf.len() < FRAME_HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes is too large"));
    }
    if buf.len() < FRAME_HEADER + len {
        return Ok(None);
    }
    Ok(Some((buf[0], FRAME_HEADER..FRAME_HEADER + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r: Request = serde_json::from_str(r#"{"op":"signal","signal":15}"#).unwrap();
        assert_eq!(r, Request::Signal { signal: 15 });
        let r: Request = serde_json::from_str(r#"{"op":"attach","stdout":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Attach {
                stdin: false,
                stdout: true,
                stderr: false
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::ReopenLog).unwrap(),
            r#"{"op":"reopen_log"}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::ok()).unwrap(),
            r#"{"ok":true}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"nope"}"#).is_err());
    }

    #[test]
    fn frames() {
        let mut out = Vec::new();
        put_frame(&mut out, STDOUT, b"hello");
        assert_eq!(parse_frame(&out[..4]).unwrap(), None);
        assert_eq!(parse_frame(&out[..9]).unwrap(), None);
        assert_eq!(parse_frame(&out).unwrap(), Some((STDOUT, 5..10)));
        let huge = [0u8, 0xff, 0xff, 0xff, 0xff];
        assert!(parse_frame(&huge).is_err());
    }
}
