//! Header blocks (SPDY/3 §2.6.10): the uncompressed layout and the per-direction zlib contexts.
//!
//! Each direction of a connection has one zlib stream covering every header block in order,
//! preset with the SPDY/3 dictionary and SYNC-flushed after each block, so a block decodes
//! completely from its own frame's bytes while back-referencing earlier ones.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::dictionary::{DICTIONARY, DICTIONARY_ID};
use super::{Headers, SpdyError};

/// Largest decompressed header block accepted (spdystream's own limit is 32 KiB per name or
/// value; the blocks real clients send are tens of bytes).
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

/// The sending side's zlib stream: level 9 with the dictionary, as Go writes it.
pub struct Compressor {
    z: Compress,
}

impl Default for Compressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Compressor {
    pub fn new() -> Self {
        Self {
            z: Compress::new(Compression::best(), true),
        }
    }

    /// Compresses `block` (one header block) and SYNC-flushes, appending to `out`.
    pub fn compress(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), SpdyError> {
        if self.z.total_in() == 0 && self.z.total_out() == 0 {
            self.z
                .set_dictionary(DICTIONARY)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
        }
        let start = self.z.total_in();
        loop {
            out.reserve(64 + block.len());
            let done = (self.z.total_in() - start) as usize;
            self.z
                .compress_vec(&block[done..], out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let done = (self.z.total_in() - start) as usize;
            // The flush is complete once all input is in and zlib left output space unused.
            if done == block.len() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

/// The receiving side's zlib stream; the dictionary is supplied when the stream asks for it.
pub struct Decompressor {
    z: Decompress,
}

impl Default for Decompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Decompressor {
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Inflates one frame's compressed header bytes, appending to `out`.
    pub fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let start_in = self.z.total_in();
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve((input.len() * 4).max(1024));
            }
            let (in_before, out_before) = (self.z.total_in(), out.len());
            let done = (in_before - start_in) as usize;
            if let Err(e) = self
                .z
                .decompress_vec(&input[done..], out, FlushDecompress::Sync)
            {
                match e.needs_dictionary() {
                    Some(DICTIONARY_ID) => {
                        self.z
                            .set_dictionary(DICTIONARY)
                            .map_err(|e| SpdyError::Compression(e.to_string()))?;
                        continue;
                    }
                    Some(id) => {
                        return Err(SpdyError::Compression(format!(
                            "unknown dictionary id {id:#010x}"
                        )));
                    }
                    None => return Err(SpdyError::Compression(e.to_string())),
                }
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::TooLarge(out.len()));
            }
            let done = (self.z.total_in() - start_in) as usize;
            if done == input.len() && out.len() < out.capacity() {
                return Ok(());
            }
            if self.z.total_in() == in_before && out.len() == out_before {
                // No progress with input left and output space: the block is cut short.
                return Err(SpdyError::Compression("truncated header block".into()));
            }
        }
    }
}

/// The uncompressed block: `u32 count`, then per name `u32 len, name, u32 len, value`, the values
/// of a repeated name joined with NUL.
pub fn encode_block(headers: &Headers) -> Vec<u8> {
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in headers.iter() {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&(names.len() as u32).to_be_bytes());
    for name in names {
        let values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .collect();
        let value = values.join("\0");
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Parses an uncompressed block (names lower-cased, NUL-joined values split).
pub fn decode_block(block: &[u8]) -> Result<Headers, SpdyError> {
    let mut rest = block;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        if rest.len() < n {
            return Err(SpdyError::HeaderBlock("entry runs past the block"));
        }
        let (a, b) = rest.split_at(n);
        rest = b;
        Ok(a)
    };
    let u32_of = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = u32_of(take(4)?);
    let mut headers = Headers::new();
    for _ in 0..count {
        let len = u32_of(take(4)?);
        let name = std::str::from_utf8(take(len)?)
            .map_err(|_| SpdyError::HeaderBlock("name is not UTF-8"))?;
        if name.is_empty() {
            return Err(SpdyError::HeaderBlock("empty name"));
        }
        let len = u32_of(take(4)?);
        let value = String::from_utf8_lossy(take(len)?).into_owned();
        for v in value.split('\0') {
            headers.insert(name, v);
        }
    }
    if !rest.is_empty() {
        return Err(SpdyError::HeaderBlock(
            "trailing bytes after the last entry",
        ));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_length_and_adler32() {
        assert_eq!(DICTIONARY.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in DICTIONARY {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, DICTIONARY_ID);
        assert_eq!(DICTIONARY_ID, 0xE3C6_A7C2);
    }

    #[test]
    fn empty_block_vector() {
        let mut c = Compressor::new();
        let mut out = Vec::new();
        c.compress(&[0, 0, 0, 0], &mut out).unwrap();
        assert_eq!(
            out,
            [
                0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xa6, 0x23, 0x06, 0x00, 0x00, 0x00, 0x00,
                0xff, 0xff
            ]
        );
        let mut d = Decompressor::new();
        let mut plain = Vec::new();
        d.decompress(&out, &mut plain).unwrap();
        assert_eq!(plain, [0, 0, 0, 0]);
    }

    #[test]
    fn shared_context_across_blocks() {
        let (mut c, mut d) = (Compressor::new(), Decompressor::new());
        let mut sizes = Vec::new();
        for (i, kind) in ["error", "stdout", "stderr", "stdout"].iter().enumerate() {
            let mut h = Headers::new();
            h.insert("streamtype", kind);
            h.insert("requestid", &i.to_string());
            h.insert("port", "8080");
            h.insert("port", "8081");
            let mut wire = Vec::new();
            c.compress(&encode_block(&h), &mut wire).unwrap();
            assert!(wire.ends_with(&[0, 0, 0xff, 0xff]));
            sizes.push(wire.len());
            let mut plain = Vec::new();
            d.decompress(&wire, &mut plain).unwrap();
            assert_eq!(decode_block(&plain).unwrap(), h, "block {i}");
        }
        // Only the first block carries the zlib header; later ones reuse the window.
        assert!(sizes[3] < sizes[0], "{sizes:?}");
        // A fresh inflater cannot read a later block alone: the context really is shared.
        let mut later = Vec::new();
        c.compress(&encode_block(&Headers::new()), &mut later)
            .unwrap();
        assert!(
            Decompressor::new()
                .decompress(&later, &mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn block_layout_and_rejections() {
        let mut h = Headers::new();
        h.insert("a", "1");
        h.insert("a", "2");
        h.insert("b", "");
        let raw = encode_block(&h);
        assert_eq!(&raw[..4], &[0, 0, 0, 2]);
        assert_eq!(decode_block(&raw).unwrap(), h);
        assert!(decode_block(&raw[..raw.len() - 1]).is_err());
        assert!(decode_block(&[0, 0, 0]).is_err());
        assert!(decode_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'x']).is_err());
        let mut extra = raw.clone();
        extra.push(0);
        assert!(decode_block(&extra).is_err());
    }
}
