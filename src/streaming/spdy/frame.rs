//! SPDY/3 frames (§2.2, §2.6): an 8-byte header, then the payload. Control frames start with
//! `0x80 0x03` (C bit, version 3), then the type; DATA frames with a 31-bit stream id.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::compress::{Compressor, Decompressor, decode_block, encode_block};
use super::{Headers, SpdyError};

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Largest DATA payload this side sends (the Go client writes at most 32 KiB at a time too).
pub const MAX_DATA_CHUNK: usize = 32 * 1024;
/// The 24-bit length field's limit.
pub const MAX_FRAME_LEN: usize = (1 << 24) - 1;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// Stream ids, delta windows and last-good ids are 31 bits; the top bit is reserved.
const ID_MASK: u32 = 0x7fff_ffff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        assoc_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value)
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    HeadersFrame {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type not listed above (ignored when read, never written).
    Unknown {
        kind: u16,
    },
}

fn control_header(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32(((flags as u32) << 24) | len as u32);
}

impl Frame {
    /// Appends the frame's wire form to `out`; header blocks go through `comp`, which must see
    /// the blocks in the order they are sent.
    pub fn encode(&self, out: &mut BytesMut, comp: &mut Compressor) -> Result<(), SpdyError> {
        let mut block = Vec::new();
        let mut compressed = |headers: &Headers| -> Result<Vec<u8>, SpdyError> {
            block.clear();
            comp.compress(&encode_block(headers), &mut block)?;
            Ok(std::mem::take(&mut block))
        };
        match self {
            Self::SynStream {
                stream_id,
                assoc_id,
                priority,
                flags,
                headers,
            } => {
                let hb = compressed(headers)?;
                check_len(10 + hb.len())?;
                control_header(out, SYN_STREAM, *flags, 10 + hb.len());
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(assoc_id & ID_MASK);
                out.put_u8((priority & 7) << 5);
                out.put_u8(0);
                out.put_slice(&hb);
            }
            Self::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Self::HeadersFrame {
                stream_id,
                flags,
                headers,
            } => {
                let kind = if matches!(self, Self::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                let hb = compressed(headers)?;
                check_len(4 + hb.len())?;
                control_header(out, kind, *flags, 4 + hb.len());
                out.put_u32(stream_id & ID_MASK);
                out.put_slice(&hb);
            }
            Self::RstStream { stream_id, status } => {
                control_header(out, RST_STREAM, 0, 8);
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(*status);
            }
            Self::Settings { flags, entries } => {
                check_len(4 + 8 * entries.len())?;
                control_header(out, SETTINGS, *flags, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (f, id, value) in entries {
                    out.put_u32(((*f as u32) << 24) | (id & 0x00ff_ffff));
                    out.put_u32(*value);
                }
            }
            Self::Ping { id } => {
                control_header(out, PING, 0, 4);
                out.put_u32(*id);
            }
            Self::GoAway { last_good, status } => {
                control_header(out, GOAWAY, 0, 8);
                out.put_u32(last_good & ID_MASK);
                out.put_u32(*status);
            }
            Self::WindowUpdate { stream_id, delta } => {
                control_header(out, WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(delta & ID_MASK);
            }
            Self::Data {
                stream_id,
                flags,
                data,
            } => {
                check_len(data.len())?;
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(((*flags as u32) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Self::Unknown { kind } => {
                // Never sent: the Go peer drops the connection on unknown control types.
                return Err(SpdyError::Unsendable(*kind));
            }
        }
        Ok(())
    }

    /// Takes one complete frame off the front of `buf`; `None` when more bytes are needed.
    /// Header blocks go through `decomp`, which must see every block of the direction in order.
    pub fn decode(
        buf: &mut BytesMut,
        decomp: &mut Decompressor,
    ) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        let mut head = buf.split_to(8);
        let mut body = buf.split_to(len);
        let word = head.get_u32();
        let flags = head.get_u8();
        if word & 0x8000_0000 == 0 {
            return Ok(Some(Self::Data {
                stream_id: word & ID_MASK,
                flags,
                data: body.freeze(),
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = (word & 0xffff) as u16;
        let need = |what: &'static str, n: usize| {
            if len < n {
                Err(SpdyError::Truncated { what, len })
            } else {
                Ok(())
            }
        };
        let mut headers_of = |bytes: &[u8]| -> Result<Headers, SpdyError> {
            if bytes.is_empty() {
                return Ok(Headers::new());
            }
            let mut plain = Vec::new();
            decomp.decompress(bytes, &mut plain)?;
            decode_block(&plain)
        };
        Ok(Some(match kind {
            SYN_STREAM => {
                need("SYN_STREAM", 10)?;
                let stream_id = body.get_u32() & ID_MASK;
                let assoc_id = body.get_u32() & ID_MASK;
                let priority = body.get_u8() >> 5;
                body.advance(1);
                Self::SynStream {
                    stream_id,
                    assoc_id,
                    priority,
                    flags,
                    headers: headers_of(&body)?,
                }
            }
            SYN_REPLY | HEADERS => {
                need(
                    if kind == SYN_REPLY {
                        "SYN_REPLY"
                    } else {
                        "HEADERS"
                    },
                    4,
                )?;
                let stream_id = body.get_u32() & ID_MASK;
                let headers = headers_of(&body)?;
                if kind == SYN_REPLY {
                    Self::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Self::HeadersFrame {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need("RST_STREAM", 8)?;
                Self::RstStream {
                    stream_id: body.get_u32() & ID_MASK,
                    status: body.get_u32(),
                }
            }
            SETTINGS => {
                need("SETTINGS", 4)?;
                let count = body.get_u32() as usize;
                if count > (len - 4) / 8 {
                    return Err(SpdyError::Truncated {
                        what: "SETTINGS",
                        len,
                    });
                }
                let entries = (0..count)
                    .map(|_| {
                        let w = body.get_u32();
                        ((w >> 24) as u8, w & 0x00ff_ffff, body.get_u32())
                    })
                    .collect();
                Self::Settings { flags, entries }
            }
            PING => {
                need("PING", 4)?;
                Self::Ping { id: body.get_u32() }
            }
            GOAWAY => {
                // SPDY/3 GOAWAY is 8 bytes; a SPDY/2-style 4-byte one is read as status OK.
                need("GOAWAY", 4)?;
                let last_good = body.get_u32() & ID_MASK;
                let status = if body.len() >= 4 { body.get_u32() } else { 0 };
                Self::GoAway { last_good, status }
            }
            WINDOW_UPDATE => {
                need("WINDOW_UPDATE", 8)?;
                Self::WindowUpdate {
                    stream_id: body.get_u32() & ID_MASK,
                    delta: body.get_u32() & ID_MASK,
                }
            }
            other => Self::Unknown { kind: other },
        }))
    }
}

fn check_len(len: usize) -> Result<(), SpdyError> {
    if len > MAX_FRAME_LEN {
        Err(SpdyError::TooLarge(len))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.insert(n, v);
        }
        h
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                assoc_id: 0,
                priority: 0,
                flags: 0,
                headers: headers(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                assoc_id: 0,
                priority: 7,
                flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
                headers: headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: Headers::new(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: 5,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![(0, 4, 100), (1, 7, 65536)],
            },
            Frame::Ping { id: 0xffff_fffe },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::HeadersFrame {
                stream_id: 5,
                flags: FLAG_FIN,
                headers: headers(&[("x", "y")]),
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 65536,
            },
            Frame::Data {
                stream_id: 5,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            Frame::Data {
                stream_id: 0x7fff_ffff,
                flags: 0,
                data: Bytes::from(vec![7u8; MAX_DATA_CHUNK]),
            },
        ]
    }

    #[test]
    fn round_trip_every_frame_type() {
        let (mut c, mut d) = (Compressor::new(), Decompressor::new());
        let mut wire = BytesMut::new();
        let frames = all_frames();
        for f in &frames {
            f.encode(&mut wire, &mut c).unwrap();
        }
        // Fed a byte at a time, the decoder waits for whole frames.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = Frame::decode(&mut buf, &mut d).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn wire_forms() {
        let mut c = Compressor::new();
        let mut out = BytesMut::new();
        Frame::GoAway {
            last_good: 7,
            status: 0,
        }
        .encode(&mut out, &mut c)
        .unwrap();
        assert_eq!(
            &out[..],
            &[0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0]
        );
        out.clear();
        Frame::RstStream {
            stream_id: 1,
            status: 5,
        }
        .encode(&mut out, &mut c)
        .unwrap();
        assert_eq!(
            &out[..],
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 5]
        );
        out.clear();
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Headers::new(),
        }
        .encode(&mut out, &mut c)
        .unwrap();
        let mut expect = vec![0x80, 3, 0, 2, 0, 0, 0, 20, 0, 0, 0, 1];
        expect.extend_from_slice(&[
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xa6, 0x23, 0x06, 0x00, 0x00, 0x00, 0x00,
            0xff, 0xff,
        ]);
        assert_eq!(&out[..], &expect[..]);
        out.clear();
        Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hi"),
        }
        .encode(&mut out, &mut c)
        .unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 3, 1, 0, 0, 2, b'h', b'i']);
        assert!(Frame::Unknown { kind: 5 }.encode(&mut out, &mut c).is_err());
    }

    #[test]
    fn truncated_frames_are_rejected() {
        let mut d = Decompressor::new();
        // (type, declared length) below each type's fixed part.
        for (kind, len) in [
            (1u8, 9u8),
            (2, 3),
            (3, 7),
            (4, 3),
            (6, 3),
            (7, 3),
            (8, 3),
            (9, 7),
        ] {
            let mut buf = BytesMut::from(&[0x80, 3, 0, kind, 0, 0, 0, len][..]);
            buf.extend_from_slice(&vec![0u8; len as usize]);
            assert!(
                matches!(
                    Frame::decode(&mut buf, &mut d),
                    Err(SpdyError::Truncated { .. })
                ),
                "type {kind} length {len}"
            );
        }
        // SETTINGS announcing more entries than it holds.
        let mut buf = BytesMut::from(
            &[
                0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 1,
            ][..],
        );
        assert!(Frame::decode(&mut buf, &mut d).is_err());
        // A wrong version, and a header block that is not zlib.
        let mut buf = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(
            Frame::decode(&mut buf, &mut d),
            Err(SpdyError::Version(2))
        ));
        let mut buf = BytesMut::from(&[0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4][..]);
        assert!(Frame::decode(&mut buf, &mut d).is_err());
        // Incomplete frames wait for more bytes.
        let mut buf = BytesMut::from(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0][..]);
        assert!(Frame::decode(&mut buf, &mut d).unwrap().is_none());
        // Unknown control types are read (and skipped).
        let mut buf = BytesMut::from(&[0x80, 3, 0, 10, 0, 0, 0, 2, 9, 9][..]);
        assert_eq!(
            Frame::decode(&mut buf, &mut d).unwrap(),
            Some(Frame::Unknown { kind: 10 })
        );
    }
}
