//! The CRI log writer: `<RFC 3339 nano UTC> <stdout|stderr> <F|P> <content>\n`, one record per
//! line (kubelet's `pkg/kubelet/kuberuntime/logs` reads it).
//!
//! Matches containerd's `internal/cri/io/logger.go`:
//! - a line is split at [`MAX_LINE`] bytes (containerd's default `max_container_log_line_size`):
//!   `P` records of exactly that size, then the rest as `F` (a line of exactly 2 × 16 KiB gives
//!   one `P` and one `F` of 16 KiB each, never an empty `F`);
//! - the newline is not part of the content, nor a `\r` right before it (`\r\n` endings);
//! - an empty line is an `F` record with empty content;
//! - output left without a newline when the stream ends is written as a `P` record (kubelet then
//!   shows it without adding a newline).
//!
//! Timestamps always carry 9 fraction digits (`2016-10-06T00:17:09.669794202Z`): still RFC 3339
//! nano for kubelet's parser, and fixed width so the records sort as text. For a tty both streams
//! are `stdout`. Write errors are reported on the monitor's stderr and never stop the reading of
//! the container's output.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Lines longer than this are split into `P` records.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Stdout => 0,
            Self::Stderr => 1,
        }
    }
}

/// Splits one stream into records. `emit(full, content)` receives each record.
#[derive(Debug)]
pub struct Splitter {
    pending: Vec<u8>,
    max: usize,
}

impl Splitter {
    pub fn new(max: usize) -> Self {
        Self {
            pending: Vec::new(),
            max,
        }
    }

    /// Feeds output; complete lines and overlong prefixes are emitted.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(bool, &[u8])) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let line = &data[..nl];
            data = &data[nl + 1..];
            if self.pending.is_empty() {
                self.emit_line(strip_cr(line), emit);
            } else {
                self.pending.extend_from_slice(line);
                let mut pending = std::mem::take(&mut self.pending);
                let len = strip_cr(&pending).len();
                self.emit_line(&pending[..len], emit);
                pending.clear();
                self.pending = pending;
            }
        }
        if data.is_empty() {
            return;
        }
        self.pending.extend_from_slice(data);
        // Emit full-size prefixes eagerly so the buffer stays bounded, but keep a lone trailing
        // `\r` that may turn out to be part of a `\r\n` ending.
        let mut start = 0;
        while self.pending.len() - start > self.max
            && !(self.pending.len() - start == self.max + 1 && self.pending.last() == Some(&b'\r'))
        {
            emit(false, &self.pending[start..start + self.max]);
            start += self.max;
        }
        self.pending.drain(..start);
        if self.pending.capacity() > 2 * self.max && self.pending.len() <= self.max {
            self.pending.shrink_to(self.max + 1);
        }
    }

    /// The stream ended: what is left is written as `P` records.
    pub fn finish(&mut self, emit: &mut impl FnMut(bool, &[u8])) {
        for chunk in self.pending.chunks(self.max) {
            emit(false, chunk);
        }
        self.pending = Vec::new();
    }

    fn emit_line(&self, mut line: &[u8], emit: &mut impl FnMut(bool, &[u8])) {
        while line.len() > self.max {
            emit(false, &line[..self.max]);
            line = &line[self.max..];
        }
        emit(true, line);
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The current time as used in records.
pub fn timestamp_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Appends one record to `out`.
pub fn format_record(
    out: &mut Vec<u8>,
    timestamp: &str,
    stream: Stream,
    full: bool,
    content: &[u8],
) {
    out.extend_from_slice(timestamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if full { b" F " } else { b" P " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// The log file of one container, both streams.
pub struct CriLog {
    path: Option<PathBuf>,
    file: Option<File>,
    splitters: [Splitter; 2],
    out: Vec<u8>,
    failing: bool,
}

impl CriLog {
    /// Opens (creating with mode 0640, and its parent directories) `path` for append; `None`
    /// discards everything.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let file = path.map(open_log).transpose()?;
        Ok(Self {
            path: path.map(Path::to_owned),
            file,
            splitters: [Splitter::new(MAX_LINE), Splitter::new(MAX_LINE)],
            out: Vec::new(),
            failing: false,
        })
    }

    /// Opens the path again (after a rotation renamed the file); on failure the old file stays.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(path) = &self.path {
            self.file = Some(open_log(path)?);
            self.failing = false;
        }
        Ok(())
    }

    /// Logs output of `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        if self.file.is_none() {
            return;
        }
        let timestamp = timestamp_now();
        let out = &mut self.out;
        self.splitters[stream.index()].feed(data, &mut |full, content| {
            format_record(out, &timestamp, stream, full, content)
        });
        self.flush();
    }

    /// `stream` ended: its unterminated output is written as `P`.
    pub fn finish(&mut self, stream: Stream) {
        if self.file.is_none() {
            return;
        }
        let timestamp = timestamp_now();
        let out = &mut self.out;
        self.splitters[stream.index()]
            .finish(&mut |full, content| format_record(out, &timestamp, stream, full, content));
        self.flush();
    }

    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        if let Some(file) = &mut self.file {
            match file.write_all(&self.out) {
                Ok(()) => self.failing = false,
                Err(e) if !self.failing => {
                    self.failing = true;
                    super::event_loop::diag!("writing the container log: {e}");
                }
                Err(_) => {}
            }
        }
        self.out.clear();
        if self.out.capacity() > 4 * MAX_LINE {
            self.out.shrink_to(MAX_LINE);
        }
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]], eof: bool) -> Vec<(bool, Vec<u8>)> {
        let mut s = Splitter::new(max);
        let mut got = Vec::new();
        let mut emit = |full: bool, c: &[u8]| got.push((full, c.to_vec()));
        for c in chunks {
            s.feed(c, &mut emit);
        }
        if eof {
            s.finish(&mut emit);
        }
        got
    }

    fn rec(full: bool, s: &str) -> (bool, Vec<u8>) {
        (full, s.as_bytes().to_vec())
    }

    #[test]
    fn lines_and_partials() {
        assert_eq!(
            split(8, &[b"a\nbc", b"d\n\n"], false),
            vec![rec(true, "a"), rec(true, "bcd"), rec(true, "")]
        );
        assert_eq!(split(8, &[b"ab\r\n"], true), vec![rec(true, "ab")]);
        assert_eq!(split(8, &[b"ab\r", b"\n"], true), vec![rec(true, "ab")]);
        // A partial line at EOF is a P record, as containerd writes it.
        assert_eq!(
            split(8, &[b"x\nyz"], true),
            vec![rec(true, "x"), rec(false, "yz")]
        );
        assert_eq!(split(8, &[b"ab\r"], true), vec![rec(false, "ab\r")]);
    }

    #[test]
    fn long_lines_split_like_containerd() {
        // Exactly max: one F.
        assert_eq!(split(4, &[b"abcd\n"], false), vec![rec(true, "abcd")]);
        // Exactly 2 x max: P then F of max bytes, no empty F.
        assert_eq!(
            split(4, &[b"abcdefgh\n"], false),
            vec![rec(false, "abcd"), rec(true, "efgh")]
        );
        // Arriving in pieces gives the same records.
        assert_eq!(
            split(4, &[b"ab", b"cdef", b"ghi", b"\n"], false),
            vec![rec(false, "abcd"), rec(false, "efgh"), rec(true, "i")]
        );
        // A max-sized line with \r\n split across reads is still one F.
        assert_eq!(
            split(4, &[b"abcd\r", b"\n"], false),
            vec![rec(true, "abcd")]
        );
        // Long line at EOF: P records only.
        assert_eq!(
            split(4, &[b"abcdefghij"], true),
            vec![rec(false, "abcd"), rec(false, "efgh"), rec(false, "ij")]
        );
    }

    #[test]
    fn record_format() {
        let mut out = Vec::new();
        format_record(
            &mut out,
            "2016-10-06T00:17:09.669794202Z",
            Stream::Stdout,
            true,
            b"hello",
        );
        assert_eq!(out, b"2016-10-06T00:17:09.669794202Z stdout F hello\n");
        let ts = timestamp_now();
        assert_eq!(ts.len(), "2016-10-06T00:17:09.669794202Z".len());
        assert!(chrono::DateTime::parse_from_rfc3339(&ts).is_ok());
    }
}
