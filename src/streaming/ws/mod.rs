//! The Kubernetes WebSocket channel protocols (exec / attach / legacy port-forward) and a byte
//! stream over WebSocket binary messages for the `SPDY/3.1+portforward.k8s.io` tunnel.
//!
//! Channel framing: each message is one channel byte and the payload (0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize). The base64 variants use text messages: the ASCII digit
//! `'0' + channel`, then standard padded base64 of the payload. `v5.channel.k8s.io` adds the
//! half-close signal `[255, channel]`.

mod bytestream;

pub use bytestream::WsByteStream;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use crate::error::{Classify, ErrorKind};

/// The subprotocol of the v5 half-close signal's channel byte.
const CLOSE_SIGNAL: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelProtocol {
    /// `v5.channel.k8s.io`: binary, v4 status, `[255, ch]` half-close.
    V5,
    /// `v4.channel.k8s.io`: binary, JSON Status on the error channel.
    V4,
    /// `channel.k8s.io`, or no subprotocol: binary, plain-text errors.
    V1,
    /// `v4.base64.channel.k8s.io`: text, base64 payloads, JSON Status.
    V4Base64,
    /// `base64.channel.k8s.io`: text, base64 payloads, plain-text errors.
    Base64,
}

impl ChannelProtocol {
    /// The protocol of a `Sec-WebSocket-Protocol` value (`""`: none offered, which is V1).
    pub fn from_subprotocol(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "v5.channel.k8s.io" => Self::V5,
            "v4.channel.k8s.io" => Self::V4,
            "channel.k8s.io" | "" => Self::V1,
            "v4.base64.channel.k8s.io" => Self::V4Base64,
            "base64.channel.k8s.io" => Self::Base64,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::V5 => "v5.channel.k8s.io",
            Self::V4 => "v4.channel.k8s.io",
            Self::V1 => "channel.k8s.io",
            Self::V4Base64 => "v4.base64.channel.k8s.io",
            Self::Base64 => "base64.channel.k8s.io",
        }
    }

    pub fn is_base64(&self) -> bool {
        matches!(self, Self::V4Base64 | Self::Base64)
    }
}

/// A decoded client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Data {
        channel: u8,
        payload: Bytes,
    },
    /// v5 half-close `[255, channel]` (stdin EOF when the channel is 0).
    CloseChannel(u8),
}

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("empty WebSocket message (no channel byte)")]
    Empty,
    #[error("{0} expects {1} messages")]
    WrongMessageType(&'static str, &'static str),
    #[error("invalid base64 channel {0:?}")]
    BadChannel(char),
    #[error("invalid base64 payload: {0}")]
    Base64(#[from] base64::DecodeError),
}

impl Classify for WsError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

/// One message carrying `payload` on `channel`.
pub fn encode(proto: ChannelProtocol, channel: u8, payload: &[u8]) -> Message {
    if proto.is_base64() {
        let mut text = String::with_capacity(1 + payload.len().div_ceil(3) * 4);
        text.push((b'0' + channel) as char);
        STANDARD.encode_string(payload, &mut text);
        Message::text(text)
    } else {
        let mut data = Vec::with_capacity(1 + payload.len());
        data.push(channel);
        data.extend_from_slice(payload);
        Message::binary(data)
    }
}

/// The channel data (or v5 half-close) a client message carries; `None` for ping, pong and
/// close frames.
pub fn decode(proto: ChannelProtocol, msg: Message) -> Result<Option<Incoming>, WsError> {
    match msg {
        Message::Binary(data) if !proto.is_base64() => {
            let Some(&channel) = data.first() else {
                return Err(WsError::Empty);
            };
            if proto == ChannelProtocol::V5 && channel == CLOSE_SIGNAL && data.len() == 2 {
                return Ok(Some(Incoming::CloseChannel(data[1])));
            }
            Ok(Some(Incoming::Data {
                channel,
                payload: data.slice(1..),
            }))
        }
        Message::Text(text) if proto.is_base64() => {
            let mut chars = text.as_str().chars();
            let Some(c) = chars.next() else {
                return Err(WsError::Empty);
            };
            let channel = match c.to_digit(10) {
                Some(d) => d as u8,
                None => return Err(WsError::BadChannel(c)),
            };
            let payload = STANDARD.decode(chars.as_str())?;
            Ok(Some(Incoming::Data {
                channel,
                payload: Bytes::from(payload),
            }))
        }
        Message::Binary(_) => Err(WsError::WrongMessageType(proto.name(), "text")),
        Message::Text(_) => Err(WsError::WrongMessageType(proto.name(), "binary")),
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ChannelProtocol; 5] = [
        ChannelProtocol::V5,
        ChannelProtocol::V4,
        ChannelProtocol::V1,
        ChannelProtocol::V4Base64,
        ChannelProtocol::Base64,
    ];

    #[test]
    fn names_round_trip() {
        for p in ALL {
            assert_eq!(ChannelProtocol::from_subprotocol(p.name()), Some(p));
        }
        assert_eq!(
            ChannelProtocol::from_subprotocol(""),
            Some(ChannelProtocol::V1)
        );
        assert_eq!(ChannelProtocol::from_subprotocol("v6.channel.k8s.io"), None);
        assert_eq!(
            ChannelProtocol::from_subprotocol("SPDY/3.1+portforward.k8s.io"),
            None
        );
    }

    #[test]
    fn encode_decode_every_protocol() {
        for p in ALL {
            for (ch, payload) in [
                (0u8, &b"hello\n"[..]),
                (3, b"{\"status\":\"Success\"}"),
                (1, b""),
            ] {
                let msg = encode(p, ch, payload);
                assert_eq!(msg.is_text(), p.is_base64(), "{p:?}");
                assert_eq!(
                    decode(p, msg).unwrap(),
                    Some(Incoming::Data {
                        channel: ch,
                        payload: Bytes::copy_from_slice(payload)
                    }),
                    "{p:?}"
                );
            }
        }
    }

    #[test]
    fn wire_forms() {
        assert_eq!(
            encode(ChannelProtocol::V4, 1, b"hi"),
            Message::binary(vec![1, b'h', b'i'])
        );
        assert_eq!(
            encode(ChannelProtocol::Base64, 2, b"hi"),
            Message::text("2aGk=")
        );
        assert_eq!(
            decode(ChannelProtocol::V4Base64, Message::text("0aGk=")).unwrap(),
            Some(Incoming::Data {
                channel: 0,
                payload: Bytes::from_static(b"hi")
            })
        );
    }

    #[test]
    fn v5_close_signal() {
        let msg = Message::binary(vec![255, 0]);
        assert_eq!(
            decode(ChannelProtocol::V5, msg.clone()).unwrap(),
            Some(Incoming::CloseChannel(0))
        );
        // Only v5 has the signal; elsewhere 255 is just a channel byte.
        assert_eq!(
            decode(ChannelProtocol::V4, msg).unwrap(),
            Some(Incoming::Data {
                channel: 255,
                payload: Bytes::from_static(&[0])
            })
        );
    }

    #[test]
    fn rejections_and_control_frames() {
        assert!(matches!(
            decode(ChannelProtocol::V5, Message::binary(Vec::new())),
            Err(WsError::Empty)
        ));
        assert!(decode(ChannelProtocol::V5, Message::text("1aGk=")).is_err());
        assert!(decode(ChannelProtocol::Base64, Message::binary(vec![1])).is_err());
        assert!(decode(ChannelProtocol::Base64, Message::text("x")).is_err());
        assert!(decode(ChannelProtocol::Base64, Message::text("1!!")).is_err());
        assert_eq!(
            decode(ChannelProtocol::V5, Message::Ping(Bytes::new())).unwrap(),
            None
        );
        assert_eq!(
            decode(ChannelProtocol::V4, Message::Close(None)).unwrap(),
            None
        );
    }
}
