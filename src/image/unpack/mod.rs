//! OCI layer unpacking: turns one layer's tar stream into a directory that overlayfs can use as a
//! lower layer.
//!
//! Every layer is unpacked on its own into an empty directory; stacking happens later, when the
//! layer directories are handed to overlayfs. OCI whiteouts are therefore translated into the
//! overlayfs form instead of being applied: `dir/.wh.NAME` becomes a 0/0 character device
//! `dir/NAME`, and `dir/.wh..wh..opq` becomes the `trusted.overlay.opaque=y` xattr on `dir`.
//!
//! Layers come from registries and archives we do not control, so their content is hostile. The
//! `tar` crate can read every archive dialect we meet (ustar, GNU long names, PAX), but its
//! `Entry::unpack` resolves each entry's parent with plain `open(2)`-family calls on a joined
//! path, which follows a symlink planted by an earlier entry (`evil -> /etc`, then
//! `evil/passwd`) straight out of the layer. So this module reads entries with `tar::Archive`
//! and does every filesystem operation itself: the parent directory of each entry is opened
//! with `openat2(2)` and `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` relative to a directory fd of
//! the layer root (the kernel refuses any resolution that would leave it, with `EXDEV`), and the
//! entry itself is then created with the `*at` syscalls on a single path component, never
//! following a symlink in that last component. Entry names are also normalised lexically first,
//! so a `..` that climbs above the root is refused before the kernel sees it. Any such escape
//! fails the whole unpack with [`UnpackError::Escape`] naming the entry.
//!
//! `RESOLVE_BENEATH` (rather than `RESOLVE_IN_ROOT`) means an absolute symlink inside the layer
//! cannot serve as a parent of a later entry in the same layer, even one that would stay inside
//! under chroot semantics (`lib -> /usr/lib`, then `lib/x`): such layers are refused. A filesystem
//! walk never produces them (it does not descend through symlinks), and relative in-layer links
//! (`lib -> usr/lib`) work.
//!
//! Nothing is fsynced here: the caller syncs the finished layer once (`syncfs`) before it
//! commits it.

mod apply;
pub(crate) mod sys;
#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorKind};

/// Buffer used both to read the tar stream and to copy file data into files.
const IO_BUFFER: usize = 128 * 1024;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From an OCI / Docker layer media type (`application/vnd.oci.image.layer.v1.tar`, `+gzip`,
    /// `+zstd`, their `nondistributable` variants, `application/vnd.docker.image.rootfs.diff.tar.gzip`,
    /// ...). Unknown types (including encrypted layers) are an error.
    pub fn from_media_type(media_type: &str) -> Result<Self, UnpackError> {
        // Media types are case-insensitive and may carry parameters we do not use.
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        let known: &[(&str, Compression)] = &[
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                Compression::None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Compression::None,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
        ];
        known
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(essence))
            .map(|&(_, c)| c)
            .ok_or_else(|| UnpackError::UnsupportedMediaType(media_type.to_owned()))
    }
}

/// Wraps a compressed stream in the right streaming decoder. Concatenated gzip members and zstd
/// frames are all decoded.
pub fn decompress<'a, R: Read + 'a>(
    c: Compression,
    r: R,
) -> Result<Box<dyn Read + 'a>, UnpackError> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(r).map_err(UnpackError::Decoder)?)
        }
    })
}

/// What an unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Archive members processed (PAX global headers and the extension records that describe a
    /// member are not counted on their own).
    pub entries: u64,
    /// Sum of the sizes of the regular files written.
    pub bytes: u64,
}

/// Unpacks an uncompressed layer tar into `dest`, an existing empty directory.
///
/// The stream is read through a buffer, so bytes after the end-of-archive marker may be consumed
/// from `tar` (callers hashing the stream should hash on read, as `HashingReader` does). On
/// error `dest` is left partly written; the caller removes it.
pub fn unpack_layer<R: Read>(tar: R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    apply::unpack(tar, dest)
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("unsupported layer media type `{0}`")]
    UnsupportedMediaType(String),
    #[error("starting the layer decompressor: {0}")]
    Decoder(#[source] io::Error),
    #[error("opening unpack destination {}: {source}", path.display())]
    Destination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The entry (or the path its parent or hard-link target resolves to) leaves the layer root.
    #[error("layer entry `{entry}` escapes the layer root: {reason}")]
    Escape { entry: String, reason: &'static str },
    /// The entry is malformed or cannot exist in a layer.
    #[error("layer entry `{entry}` is invalid: {reason}")]
    InvalidEntry { entry: String, reason: String },
    /// The tar stream itself is malformed (bad header, truncated member, ...). `entry` is the
    /// member being read, or the last one read before the problem.
    #[error("malformed layer archive at `{entry}`: {source}")]
    Archive {
        entry: String,
        #[source]
        source: io::Error,
    },
    /// Reading the (decompressed) layer stream failed.
    #[error("reading the layer stream at `{entry}`: {source}")]
    Read {
        entry: String,
        #[source]
        source: io::Error,
    },
    /// A filesystem operation on the entry failed.
    #[error("layer entry `{entry}`: {op}: {source}")]
    Fs {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Classify for UnpackError {
    fn kind(&self) -> ErrorKind {
        match self {
            UnpackError::UnsupportedMediaType(_)
            | UnpackError::Escape { .. }
            | UnpackError::InvalidEntry { .. }
            | UnpackError::Archive { .. } => ErrorKind::InvalidArgument,
            UnpackError::Decoder(_) | UnpackError::Destination { .. } => ErrorKind::Internal,
            // Corrupt compressed data surfaces as these kinds; anything else is our I/O.
            UnpackError::Read { source, .. } => match source.kind() {
                io::ErrorKind::InvalidData
                | io::ErrorKind::InvalidInput
                | io::ErrorKind::UnexpectedEof => ErrorKind::InvalidArgument,
                _ => ErrorKind::Internal,
            },
            UnpackError::Fs { source, .. } => {
                if apply::caused_by_content(source) {
                    ErrorKind::InvalidArgument
                } else {
                    ErrorKind::Internal
                }
            }
        }
    }
}
