//! SPDY/3.1 as spoken by moby/spdystream (client-go's `remotecommand` and `portforward`), the
//! protocol of `crictl exec/attach/port-forward`, critest and every kubectl path through kubelet.
//!
//! Hand-written: no well-kept SPDY crate exists (SPDY was superseded by HTTP/2 in 2015; the only
//! candidate, `spdystream-rs`, is young and single-maintainer), and the subset needed here is
//! small: the [`frame`] codec, the [`compress`] header-block contexts (zlib with the SPDY/3
//! [`dictionary`]) and the connection [`session`].
//!
//! Deliberate choices, all to match the Go peer:
//! - No flow control. spdystream neither sends nor honours WINDOW_UPDATE, so a peer that waited
//!   for window credit would stall after 64 KiB. Backpressure is TCP's: one bounded inbound queue
//!   per stream, and the connection's reader task blocks while a queue is full (stalling every
//!   stream of the connection, as the Go side does); outbound data goes through one bounded queue.
//! - Lenient when reading (unknown control types, SETTINGS, WINDOW_UPDATE and HEADERS are
//!   ignored; short GOAWAY accepted), strict when writing (only SYN_STREAM from the client role,
//!   SYN_REPLY, RST_STREAM, PING, GOAWAY and DATA; RST and GOAWAY always 8 bytes long).

pub mod compress;
pub mod dictionary;
pub mod frame;
pub mod session;
pub mod upgrade;

pub use session::{ClientSession, ServerSession, SpdyStream, StreamReader, StreamWriter};
pub use upgrade::client_upgrade;

use crate::error::{Classify, ErrorKind};

/// A SPDY header block: ordered (name, value) pairs, names lower-cased (SPDY/3 requires lower-case
/// names on the wire; the Go peer rejects others).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends a pair (a name may repeat: the values are joined with NUL on the wire).
    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// The first value of `name`, matched case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// RST_STREAM status codes (SPDY/3 §2.6.2; 0 is invalid, 10 was CREDENTIALS-related).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstStatus {
    ProtocolError = 1,
    InvalidStream = 2,
    RefusedStream = 3,
    UnsupportedVersion = 4,
    Cancel = 5,
    InternalError = 6,
    FlowControlError = 7,
    StreamInUse = 8,
    StreamAlreadyClosed = 9,
    FrameTooLarge = 11,
}

impl RstStatus {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::ProtocolError,
            2 => Self::InvalidStream,
            3 => Self::RefusedStream,
            4 => Self::UnsupportedVersion,
            5 => Self::Cancel,
            6 => Self::InternalError,
            7 => Self::FlowControlError,
            8 => Self::StreamInUse,
            9 => Self::StreamAlreadyClosed,
            11 => Self::FrameTooLarge,
            _ => return None,
        })
    }
}

/// GOAWAY status codes.
pub const GOAWAY_OK: u32 = 0;
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;
pub const GOAWAY_INTERNAL_ERROR: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("truncated SPDY {what} frame (length {len})")]
    Truncated { what: &'static str, len: usize },
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed SPDY header block: {0}")]
    HeaderBlock(&'static str),
    #[error("SPDY header compression: {0}")]
    Compression(String),
    #[error("SPDY frame too large: {0} bytes")]
    TooLarge(usize),
    #[error("refusing to send SPDY control frame type {0}")]
    Unsendable(u16),
}

impl Classify for SpdyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Truncated { .. }
            | Self::Version(_)
            | Self::HeaderBlock(_)
            | Self::TooLarge(_) => ErrorKind::InvalidArgument,
            Self::Compression(_) | Self::Unsendable(_) => ErrorKind::Internal,
        }
    }
}

impl From<SpdyError> for std::io::Error {
    fn from(e: SpdyError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_lowercased_and_matched_case_insensitively() {
        let mut h = Headers::new();
        h.insert("streamType", "error");
        h.insert("Port", "80");
        assert_eq!(h.get("STREAMTYPE"), Some("error"));
        assert_eq!(h.get("port"), Some("80"));
        assert_eq!(h.get("requestid"), None);
        assert_eq!(h.iter().next(), Some(("streamtype", "error")));
    }

    #[test]
    fn rst_status_codes() {
        for s in [
            RstStatus::ProtocolError,
            RstStatus::Cancel,
            RstStatus::FrameTooLarge,
        ] {
            assert_eq!(RstStatus::from_u32(s as u32), Some(s));
        }
        assert_eq!(RstStatus::from_u32(0), None);
        assert_eq!(RstStatus::from_u32(10), None);
    }
}

#[cfg(test)]
mod session_tests;
