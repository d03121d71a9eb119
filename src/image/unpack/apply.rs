//! Applies tar entries to the layer directory. See the module doc for why path resolution is done
//! here rather than by the `tar` crate.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tar::EntryType;

use super::sys::{self, Times};
use super::{IO_BUFFER, UnpackError, UnpackStats};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// Directory trees deeper than this are not removed when an entry replaces them.
const MAX_REMOVE_DEPTH: usize = 256;

/// Whether a filesystem error was provoked by the layer's content (a path component that is not a
/// directory, a symlink loop, a missing hard-link target, ...) rather than by our side.
pub(super) fn caused_by_content(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOTDIR
                | libc::ELOOP
                | libc::ENOENT
                | libc::EISDIR
                | libc::ENAMETOOLONG
                | libc::EEXIST
                | libc::EXDEV
                | libc::EMLINK
        )
    ) || e.kind() == io::ErrorKind::InvalidData
}

fn errno_is(e: &io::Error, errno: libc::c_int) -> bool {
    e.raw_os_error() == Some(errno)
}

pub(super) fn unpack<R: Read>(tar: R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let root: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dest)
        .map_err(|source| UnpackError::Destination {
            path: dest.to_owned(),
            source,
        })?
        .into();
    let source_failed = Cell::new(false);
    let source = Source {
        inner: BufReader::with_capacity(IO_BUFFER, tar),
        failed: &source_failed,
    };
    let mut archive = tar::Archive::new(source);
    let mut unpacker = Unpacker::new(root);
    let entries = archive
        .entries()
        .map_err(|e| unpacker.stream_error(e, &source_failed))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpacker.stream_error(e, &source_failed))?;
        unpacker.entry(&mut entry, &source_failed)?;
    }
    unpacker.finish()?;
    Ok(unpacker.stats)
}

/// The input stream, remembering whether it (rather than the tar parser) produced an error.
struct Source<'a, R> {
    inner: R,
    failed: &'a Cell<bool>,
}

impl<R: Read> Read for Source<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if r.is_err() {
            self.failed.set(true);
        }
        r
    }
}

/// Metadata applied to a created entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: libc::mode_t,
    times: Times,
}

/// Where xattrs go: an open fd, or a name in a directory (symlinks and device nodes, which must
/// not be opened).
#[derive(Clone, Copy)]
enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a CStr),
}

/// The open layer root and the directory fd last used as a parent. Tar entries come grouped by
/// directory, so most entries reuse the cached fd instead of resolving their parent again.
struct Dirs {
    root: OwnedFd,
    /// Normalised path of `cur` plus a NUL, or empty when nothing is cached.
    cur_path: Vec<u8>,
    cur: Option<OwnedFd>,
    scratch: Vec<u8>,
}

impl Dirs {
    fn invalidate(&mut self) {
        self.cur_path.clear();
        self.cur = None;
    }

    /// Makes `parent` (normalised, no NUL, not empty) the cached directory, opening it beneath the
    /// root and creating missing components (mode 0755, as other runtimes do) if needed.
    fn enter(&mut self, parent: &[u8]) -> io::Result<()> {
        if self.cur.is_some() && self.cur_path.strip_suffix(&[0]) == Some(parent) {
            return Ok(());
        }
        self.invalidate();
        self.cur_path.extend_from_slice(parent);
        self.cur_path.push(0);
        let fd = match self.open_beneath(false) {
            Err(e) if errno_is(&e, libc::ENOENT) => self.create_parents(parent)?,
            other => other?,
        };
        self.cur = Some(fd);
        Ok(())
    }

    /// The cached directory, or the root for an empty parent path.
    fn get(&self, parent: &[u8]) -> BorrowedFd<'_> {
        match (&self.cur, parent.is_empty()) {
            (Some(fd), false) => fd.as_fd(),
            _ => self.root.as_fd(),
        }
    }

    /// Caches `fd` (an open directory) as `path`.
    fn remember(&mut self, path: &[u8], fd: OwnedFd) {
        self.invalidate();
        self.cur_path.extend_from_slice(path);
        self.cur_path.push(0);
        self.cur = Some(fd);
    }

    fn open_beneath(&self, in_scratch: bool) -> io::Result<OwnedFd> {
        let path = if in_scratch {
            &self.scratch
        } else {
            &self.cur_path
        };
        let path = CStr::from_bytes_with_nul(path).map_err(|_| invalid_name())?;
        sys::openat2(
            self.root.as_fd(),
            path,
            sys::O_RDONLY | sys::O_DIRECTORY,
            sys::RESOLVE_CONFINED,
        )
    }

    /// Walks `parent` one prefix at a time from the root, creating what is missing. Every prefix
    /// is opened with `openat2` beneath the root; `mkdirat` only ever gets a single component and
    /// does not follow a (dangling) symlink in it.
    fn create_parents(&mut self, parent: &[u8]) -> io::Result<OwnedFd> {
        let mut prev: Option<OwnedFd> = None;
        let mut start = 0;
        loop {
            let end = parent[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(parent.len(), |i| start + i);
            self.scratch.clear();
            self.scratch.extend_from_slice(&parent[..end]);
            self.scratch.push(0);
            let fd = match self.open_beneath(true) {
                Err(e) if errno_is(&e, libc::ENOENT) => {
                    let at = prev.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
                    let mut component = parent[start..end].to_vec();
                    component.push(0);
                    let component =
                        CStr::from_bytes_with_nul(&component).map_err(|_| invalid_name())?;
                    match sys::mkdirat(at, component, 0o755) {
                        Err(e) if !errno_is(&e, libc::EEXIST) => return Err(e),
                        _ => {}
                    }
                    let fd = self.open_beneath(true)?;
                    sys::fchmod(fd.as_fd(), 0o755)?;
                    fd
                }
                other => other?,
            };
            if end == parent.len() {
                return Ok(fd);
            }
            prev = Some(fd);
            start = end + 1;
        }
    }
}

fn invalid_name() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "name contains a NUL byte")
}

/// Lexically normalises a tar entry name into `out` (components joined by `/`, then a NUL):
/// leading `/`, empty and `.` components are dropped, `..` removes the previous component.
/// Returns `false` if a `..` would climb above the root.
pub(super) fn normalise(raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => match out.iter().rposition(|&b| b == b'/') {
                Some(i) => out.truncate(i),
                None if out.is_empty() => return false,
                None => out.clear(),
            },
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(component);
            }
        }
    }
    out.push(0);
    true
}

/// Splits a normalised, NUL-terminated path into (parent without NUL, name with NUL).
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Parses a PAX time (`[-]seconds[.fraction]`).
fn parse_pax_time(v: &[u8]) -> Option<libc::timespec> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    let (sec, nsec) = match (negative, nanos) {
        (false, _) => (secs, nanos),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    };
    Some(libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    })
}

pub(super) struct Unpacker {
    dirs: Dirs,
    /// The current entry's name as stored in the archive, for messages.
    raw: Vec<u8>,
    /// The current entry's normalised path plus a NUL.
    path: Vec<u8>,
    /// Symlink target or normalised hard-link target, plus a NUL.
    link: Vec<u8>,
    /// Xattrs of the current entry: names (each with a NUL) and values, back to back.
    xattr_data: Vec<u8>,
    /// (name start, name end incl. NUL, value end) into `xattr_data`.
    xattrs: Vec<(usize, usize, usize)>,
    buf: Box<[u8]>,
    /// Directory mtimes, applied at the end: paths back to back in `dir_paths`.
    dir_paths: Vec<u8>,
    dir_times: Vec<(usize, usize, Times)>,
    pub(super) stats: UnpackStats,
    warned_xattr: Cell<bool>,
}

/// What handling one entry changed, for the bookkeeping done after it.
#[derive(Default)]
struct Outcome {
    /// Something already at the path was removed: the cached directory may be stale.
    removed: bool,
    /// The entry was a directory, opened: entries inside it usually follow.
    new_dir: Option<OwnedFd>,
    /// Regular file bytes written.
    bytes: u64,
}

impl Unpacker {
    fn new(root: OwnedFd) -> Self {
        Self {
            dirs: Dirs {
                root,
                cur_path: Vec::with_capacity(256),
                cur: None,
                scratch: Vec::with_capacity(256),
            },
            raw: Vec::with_capacity(256),
            path: Vec::with_capacity(256),
            link: Vec::with_capacity(256),
            xattr_data: Vec::new(),
            xattrs: Vec::new(),
            buf: vec![0u8; IO_BUFFER].into_boxed_slice(),
            dir_paths: Vec::new(),
            dir_times: Vec::new(),
            stats: UnpackStats::default(),
            warned_xattr: Cell::new(false),
        }
    }

    fn name(&self) -> String {
        if self.stats.entries == 0 {
            "(start of archive)".to_owned()
        } else {
            String::from_utf8_lossy(&self.raw).into_owned()
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> UnpackError {
        UnpackError::InvalidEntry {
            entry: self.name(),
            reason: reason.into(),
        }
    }

    fn escape(&self, reason: &'static str) -> UnpackError {
        UnpackError::Escape {
            entry: self.name(),
            reason,
        }
    }

    fn fs(&self, op: &'static str, source: io::Error) -> UnpackError {
        UnpackError::Fs {
            entry: self.name(),
            op,
            source,
        }
    }

    /// An error from the tar reader: the input stream's own failure, or a malformed archive.
    fn stream_error(&self, source: io::Error, source_failed: &Cell<bool>) -> UnpackError {
        let entry = self.name();
        if source_failed.get() {
            UnpackError::Read { entry, source }
        } else {
            UnpackError::Archive { entry, source }
        }
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        source_failed: &Cell<bool>,
    ) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.stats.entries += 1;
        self.raw.clear();
        self.raw.extend_from_slice(&entry.path_bytes());
        if self.raw.contains(&0) {
            return Err(self.invalid("name contains a NUL byte"));
        }
        if !normalise(&self.raw, &mut self.path) {
            return Err(self.escape("its name climbs above the root with `..`"));
        }
        let meta = self.meta(entry, source_failed)?;
        // Pre-POSIX archives mark directories only by a trailing slash on a type '\0' member.
        let kind = if entry.header().as_old().linkflag[0] == 0 && self.raw.ends_with(b"/") {
            EntryType::Directory
        } else {
            kind
        };

        let (parent, name) = split(&self.path);
        if name == [0] {
            // The root itself (`./`): the layer directory belongs to the caller.
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(self.invalid("a non-directory entry names the layer root")),
            };
        }
        let is_whiteout = name.starts_with(WHITEOUT_PREFIX);
        if !parent.is_empty() {
            match self.dirs.enter(parent) {
                Ok(()) => {}
                Err(e) if errno_is(&e, libc::EXDEV) => {
                    return Err(self.escape(
                        "its parent directory resolves outside the root (through a symlink)",
                    ));
                }
                Err(e) => return Err(self.fs("open parent directory", e)),
            }
        }

        let outcome = if is_whiteout {
            self.whiteout(&meta)?
        } else {
            match kind {
                EntryType::Directory => self.directory(&meta)?,
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    self.file(entry, &meta, source_failed)?
                }
                EntryType::Symlink => {
                    let target = entry.link_name_bytes();
                    let target = target.as_deref().unwrap_or_default();
                    if target.is_empty() || target.contains(&0) {
                        return Err(self.invalid("symlink target is empty or contains a NUL byte"));
                    }
                    self.link.clear();
                    self.link.extend_from_slice(target);
                    self.link.push(0);
                    self.symlink(&meta)?
                }
                EntryType::Link => {
                    let target = entry.link_name_bytes();
                    let target = target.as_deref().unwrap_or_default();
                    if target.contains(&0) {
                        return Err(self.invalid("hard link target contains a NUL byte"));
                    }
                    if !normalise(target, &mut self.link) {
                        return Err(
                            self.escape("its hard link target climbs above the root with `..`")
                        );
                    }
                    self.hardlink()?
                }
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    let file_type = match kind {
                        EntryType::Char => libc::S_IFCHR,
                        EntryType::Block => libc::S_IFBLK,
                        _ => libc::S_IFIFO,
                    };
                    let header = entry.header();
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    self.node(file_type, libc::makedev(major, minor), &meta)?
                }
                other => {
                    return Err(self.invalid(format!(
                        "unsupported entry type `{}`",
                        other.as_byte().escape_ascii()
                    )));
                }
            }
        };

        self.stats.bytes += outcome.bytes;
        if outcome.removed {
            self.dirs.invalidate();
        }
        if let Some(fd) = outcome.new_dir {
            self.dirs.remember(&self.path[..self.path.len() - 1], fd);
        }
        Ok(())
    }

    /// Reads owner, mode and times from the header and xattrs / precise times from PAX records.
    fn meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        source_failed: &Cell<bool>,
    ) -> Result<Meta, UnpackError> {
        let header = entry.header();
        let old = header.as_old();
        // An empty numeric field reads as 0, as in Go's archive/tar (and so containerd).
        let field = |r: io::Result<u64>, raw: &[u8], what: &str| -> Result<u64, UnpackError> {
            match r {
                Ok(v) => Ok(v),
                Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
                Err(e) => Err(self.invalid(format!("bad {what} field: {e}"))),
            }
        };
        let uid = field(header.uid(), &old.uid, "uid")?;
        let gid = field(header.gid(), &old.gid, "gid")?;
        let mode = field(header.mode().map(u64::from), &old.mode, "mode")?;
        let mtime = field(header.mtime(), &old.mtime, "mtime")?;
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(self.invalid("uid or gid out of range"));
        };
        let mtime = libc::timespec {
            tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut meta = Meta {
            uid,
            gid,
            // Truncation is intended: the permission and setuid/setgid/sticky bits.
            mode: (mode & 0o7777) as libc::mode_t,
            times: [mtime, mtime],
        };

        self.xattr_data.clear();
        self.xattrs.clear();
        let mut atime = None;
        let extensions = match entry.pax_extensions() {
            Ok(e) => e,
            Err(e) => return Err(self.stream_error(e, source_failed)),
        };
        for ext in extensions.into_iter().flatten() {
            let ext = match ext {
                Ok(ext) => ext,
                Err(e) => {
                    return Err(UnpackError::Archive {
                        entry: String::from_utf8_lossy(&self.raw).into_owned(),
                        source: io::Error::new(io::ErrorKind::InvalidData, e),
                    });
                }
            };
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                if name.is_empty() || name.contains(&0) {
                    return Err(self.invalid("empty xattr name or one containing a NUL byte"));
                }
                if name.starts_with(b"trusted.overlay.") {
                    // Overlayfs' own metadata (redirects, opacity, ...) must only come from our
                    // whiteout translation, never from layer content.
                    tracing::debug!(entry = %self.name(), "ignoring an overlayfs xattr in a layer");
                    continue;
                }
                let start = self.xattr_data.len();
                self.xattr_data.extend_from_slice(name);
                self.xattr_data.push(0);
                let name_end = self.xattr_data.len();
                self.xattr_data.extend_from_slice(ext.value_bytes());
                self.xattrs.push((start, name_end, self.xattr_data.len()));
            } else if key == b"mtime" {
                if let Some(t) = parse_pax_time(ext.value_bytes()) {
                    meta.times[1] = t;
                }
            } else if key == b"atime" {
                atime = parse_pax_time(ext.value_bytes());
            }
        }
        meta.times[0] = atime.unwrap_or(meta.times[1]);
        Ok(meta)
    }

    /// The current entry's parent fd (cached or the root) and its name.
    fn at(&self) -> Result<(BorrowedFd<'_>, &CStr), UnpackError> {
        let (parent, name) = split(&self.path);
        let name = CStr::from_bytes_with_nul(name).map_err(|_| self.invalid("bad name"))?;
        Ok((self.dirs.get(parent), name))
    }

    /// Sets the current entry's xattrs. Like other runtimes, a filesystem that does not support an
    /// xattr (or a kernel too old to set one on a symlink or device) only earns a warning.
    fn apply_xattrs(&self, target: Target<'_>) -> Result<(), UnpackError> {
        for &(start, name_end, value_end) in &self.xattrs {
            let name = CStr::from_bytes_with_nul(&self.xattr_data[start..name_end])
                .map_err(|_| self.invalid("bad xattr name"))?;
            let value = &self.xattr_data[name_end..value_end];
            let result = match target {
                Target::Fd(fd) => sys::fsetxattr(fd, name, value),
                Target::At(dir, file) => sys::lsetxattrat(dir, file, name, value),
            };
            let Err(e) = result else { continue };
            let skippable = match e.raw_os_error() {
                Some(libc::EOPNOTSUPP | libc::ENOSYS) => true,
                // user.* xattrs are only allowed on regular files and directories.
                Some(libc::EPERM) => {
                    matches!(target, Target::At(..)) && name.to_bytes().starts_with(b"user.")
                }
                _ => false,
            };
            if !skippable {
                return Err(
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::E2BIG | libc::ERANGE | libc::EINVAL)
                    ) {
                        self.invalid(format!("xattr {}: {e}", name.to_string_lossy()))
                    } else {
                        self.fs("set xattr", e)
                    },
                );
            }
            if !self.warned_xattr.replace(true) {
                tracing::warn!(
                    entry = %self.name(),
                    xattr = %name.to_string_lossy(),
                    error = %e,
                    "xattr not preserved (further ones are not reported)"
                );
            }
        }
        Ok(())
    }

    /// Removes `dir/name` whatever it is (recursively for a directory).
    fn remove(&self, dir: BorrowedFd<'_>, name: &CStr) -> Result<(), UnpackError> {
        match sys::unlinkat(dir, name, 0) {
            Err(e) if errno_is(&e, libc::EISDIR) => remove_contents(dir, name, 0)
                .and_then(|()| sys::unlinkat(dir, name, sys::AT_REMOVEDIR))
                .map_err(|e| self.fs("remove existing directory", e)),
            other => other.map_err(|e| self.fs("remove existing entry", e)),
        }
    }

    /// Runs `create` on the current entry's name in its parent; if something is already there,
    /// removes it and runs `create` again. Returns whether something was removed.
    fn create(
        &self,
        op: &'static str,
        mut create: impl FnMut(BorrowedFd<'_>, &CStr) -> io::Result<()>,
    ) -> Result<bool, UnpackError> {
        let (dir, name) = self.at()?;
        match create(dir, name) {
            Ok(()) => Ok(false),
            Err(e) if errno_is(&e, libc::EEXIST) => {
                self.remove(dir, name)?;
                create(dir, name).map_err(|e| self.fs(op, e))?;
                Ok(true)
            }
            Err(e) => Err(self.fs(op, e)),
        }
    }

    fn directory(&mut self, meta: &Meta) -> Result<Outcome, UnpackError> {
        let (dir, name) = self.at()?;
        let mut removed = false;
        match sys::mkdirat(dir, name, 0o700) {
            Ok(()) => {}
            // A directory over a directory only updates its metadata.
            Err(e) if errno_is(&e, libc::EEXIST) => {
                let existing =
                    sys::lstat_mode(dir, name).map_err(|e| self.fs("stat existing entry", e))?;
                if existing & libc::S_IFMT != libc::S_IFDIR {
                    self.remove(dir, name)?;
                    removed = true;
                    sys::mkdirat(dir, name, 0o700).map_err(|e| self.fs("mkdir", e))?;
                }
            }
            Err(e) => return Err(self.fs("mkdir", e)),
        }
        let fd = sys::openat(
            dir,
            name,
            sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW,
            0,
        )
        .map_err(|e| self.fs("open directory", e))?;
        sys::fchown(fd.as_fd(), meta.uid, meta.gid).map_err(|e| self.fs("chown", e))?;
        sys::fchmod(fd.as_fd(), meta.mode).map_err(|e| self.fs("chmod", e))?;
        self.apply_xattrs(Target::Fd(fd.as_fd()))?;
        // The mtime is set at the end: writing the directory's contents would change it.
        let start = self.dir_paths.len();
        self.dir_paths
            .extend_from_slice(&self.path[..self.path.len() - 1]);
        self.dir_times
            .push((start, self.dir_paths.len(), meta.times));
        Ok(Outcome {
            removed,
            new_dir: Some(fd),
            bytes: 0,
        })
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        source_failed: &Cell<bool>,
    ) -> Result<Outcome, UnpackError> {
        let mut fd = None;
        let removed = self.create("create file", |dir, name| {
            fd = Some(sys::openat(
                dir,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | sys::O_NOFOLLOW,
                0o600,
            )?);
            Ok(())
        })?;
        let Some(fd) = fd else {
            return Err(self.fs("create file", io::Error::other("no descriptor returned")));
        };
        let mut file = File::from(fd);
        let mut written: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_error(e, source_failed)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| self.fs("write", e))?;
            written += n as u64;
        }
        if written != entry.size() {
            return Err(UnpackError::Archive {
                entry: self.name(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file data truncated: {written} of {} bytes", entry.size()),
                ),
            });
        }
        // chown clears setuid/setgid and security.capability, so mode and xattrs come after it.
        sys::fchown(file.as_fd(), meta.uid, meta.gid).map_err(|e| self.fs("chown", e))?;
        sys::fchmod(file.as_fd(), meta.mode).map_err(|e| self.fs("chmod", e))?;
        self.apply_xattrs(Target::Fd(file.as_fd()))?;
        sys::futimens(file.as_fd(), &meta.times).map_err(|e| self.fs("set times", e))?;
        Ok(Outcome {
            removed,
            new_dir: None,
            bytes: written,
        })
    }

    fn symlink(&self, meta: &Meta) -> Result<Outcome, UnpackError> {
        let target = CStr::from_bytes_with_nul(&self.link)
            .map_err(|_| self.invalid("bad symlink target"))?;
        let removed = self.create("symlink", |dir, name| sys::symlinkat(target, dir, name))?;
        // Symlinks have no mode of their own.
        self.metadata_at(meta, false)?;
        Ok(Outcome {
            removed,
            ..Outcome::default()
        })
    }

    fn node(
        &self,
        file_type: libc::mode_t,
        dev: libc::dev_t,
        meta: &Meta,
    ) -> Result<Outcome, UnpackError> {
        let removed = self.create("mknod", |dir, name| {
            sys::mknodat(dir, name, file_type | 0o600, dev)
        })?;
        self.metadata_at(meta, true)?;
        Ok(Outcome {
            removed,
            ..Outcome::default()
        })
    }

    /// Owner, mode, xattrs and times of a symlink or node just created, without opening it.
    fn metadata_at(&self, meta: &Meta, chmod: bool) -> Result<(), UnpackError> {
        let (dir, name) = self.at()?;
        sys::lchownat(dir, name, meta.uid, meta.gid).map_err(|e| self.fs("chown", e))?;
        if chmod {
            // A device node or FIFO we just created, not a symlink: see `sys::fchmodat`.
            sys::fchmodat(dir, name, meta.mode).map_err(|e| self.fs("chmod", e))?;
        }
        self.apply_xattrs(Target::At(dir, name))?;
        sys::lutimensat(dir, name, &meta.times).map_err(|e| self.fs("set times", e))
    }

    /// Hard links are made to the earlier entry inside the layer; the target's parent is resolved
    /// beneath the root like any entry's. The link shares the target's inode, so the link entry's
    /// own metadata is not applied (re-chowning would also drop the target's capabilities).
    fn hardlink(&self) -> Result<Outcome, UnpackError> {
        if self.link == [0] {
            return Err(self.invalid("hard link to the layer root"));
        }
        if self.link == self.path {
            return Ok(Outcome::default()); // a link to itself: nothing to do
        }
        let (target_parent, target_name) = split(&self.link);
        let target_name = CStr::from_bytes_with_nul(target_name)
            .map_err(|_| self.invalid("bad hard link target"))?;
        let target_dir = if target_parent.is_empty() {
            None
        } else {
            let mut path = Vec::with_capacity(target_parent.len() + 1);
            path.extend_from_slice(target_parent);
            path.push(0);
            let path = CStr::from_bytes_with_nul(&path)
                .map_err(|_| self.invalid("bad hard link target"))?;
            match sys::openat2(
                self.dirs.root.as_fd(),
                path,
                sys::O_PATH | sys::O_DIRECTORY,
                sys::RESOLVE_CONFINED,
            ) {
                Ok(fd) => Some(fd),
                Err(e) if errno_is(&e, libc::EXDEV) => {
                    return Err(self.escape(
                        "its hard link target resolves outside the root (through a symlink)",
                    ));
                }
                Err(e) => return Err(self.fs("open hard link target directory", e)),
            }
        };
        let old_dir = target_dir
            .as_ref()
            .map_or(self.dirs.root.as_fd(), |fd| fd.as_fd());
        match self.create("hard link", |dir, name| {
            sys::linkat(old_dir, target_name, dir, name)
        }) {
            Ok(removed) => Ok(Outcome {
                removed,
                ..Outcome::default()
            }),
            Err(UnpackError::Fs { source, .. }) if errno_is(&source, libc::EPERM) => {
                Err(self.invalid("hard link target is a directory"))
            }
            Err(UnpackError::Fs { source, .. }) if errno_is(&source, libc::ENOENT) => {
                Err(self.invalid("hard link target does not exist in the layer"))
            }
            Err(e) => Err(e),
        }
    }

    /// `dir/.wh.NAME` -> char device 0/0 `dir/NAME`; `dir/.wh..wh..opq` -> `dir` made opaque.
    fn whiteout(&self, meta: &Meta) -> Result<Outcome, UnpackError> {
        let (dir, name) = self.at()?;
        let name = name.to_bytes();
        if name == WHITEOUT_OPAQUE {
            sys::fsetxattr(dir, OPAQUE_XATTR, b"y").map_err(|e| self.fs("set opaque xattr", e))?;
            return Ok(Outcome::default());
        }
        if name.starts_with(WHITEOUT_META_PREFIX) {
            // Other AUFS metadata (e.g. `.wh..wh.plnk`): nothing for overlayfs.
            return Ok(Outcome::default());
        }
        let hidden = &self.path[self.path.len() - 1 - (name.len() - WHITEOUT_PREFIX.len())..];
        if matches!(hidden, b"\0" | b".\0" | b"..\0") {
            return Err(self.invalid("whiteout of an invalid name"));
        }
        let hidden = CStr::from_bytes_with_nul(hidden).map_err(|_| self.invalid("bad name"))?;
        match sys::mknodat(dir, hidden, libc::S_IFCHR, libc::makedev(0, 0)) {
            Ok(()) => {}
            // The same layer also has NAME. A whiteout only hides lower layers, which an existing
            // non-directory already does; an existing directory must become opaque instead.
            Err(e) if errno_is(&e, libc::EEXIST) => {
                let mode =
                    sys::lstat_mode(dir, hidden).map_err(|e| self.fs("stat existing entry", e))?;
                if mode & libc::S_IFMT == libc::S_IFDIR {
                    let fd = sys::openat(
                        dir,
                        hidden,
                        sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW,
                        0,
                    )
                    .map_err(|e| self.fs("open directory", e))?;
                    sys::fsetxattr(fd.as_fd(), OPAQUE_XATTR, b"y")
                        .map_err(|e| self.fs("set opaque xattr", e))?;
                }
                return Ok(Outcome::default());
            }
            Err(e) => return Err(self.fs("mknod whiteout", e)),
        }
        // The whiteout's owner is kept, as other runtimes do; its mode stays 0.
        sys::lchownat(dir, hidden, meta.uid, meta.gid).map_err(|e| self.fs("chown", e))?;
        Ok(Outcome::default())
    }

    /// Applies the deferred directory mtimes. A directory replaced or removed later in the layer
    /// is skipped; each is reopened beneath the root without following a final symlink.
    fn finish(&mut self) -> Result<(), UnpackError> {
        self.dirs.invalidate();
        let mut path = Vec::new();
        for &(start, end, ref times) in &self.dir_times {
            let entry = || String::from_utf8_lossy(&self.dir_paths[start..end]).into_owned();
            path.clear();
            path.extend_from_slice(&self.dir_paths[start..end]);
            path.push(0);
            let Ok(cpath) = CStr::from_bytes_with_nul(&path) else {
                continue;
            };
            match sys::openat2(
                self.dirs.root.as_fd(),
                cpath,
                sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW,
                sys::RESOLVE_CONFINED,
            ) {
                Ok(fd) => {
                    sys::futimens(fd.as_fd(), times).map_err(|source| UnpackError::Fs {
                        entry: entry(),
                        op: "set directory times",
                        source,
                    })?;
                }
                Err(e) if caused_by_content(&e) => {}
                Err(source) => {
                    return Err(UnpackError::Fs {
                        entry: entry(),
                        op: "open directory",
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Empties the directory `dir/name` (not following symlinks), depth-first.
fn remove_contents(dir: BorrowedFd<'_>, name: &CStr, depth: usize) -> io::Result<()> {
    if depth > MAX_REMOVE_DEPTH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "directory tree too deep to replace",
        ));
    }
    let fd = sys::openat(
        dir,
        name,
        sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW,
        0,
    )?;
    let names: Vec<CString> = {
        let mut listing = nix::dir::Dir::from_fd(fd.try_clone()?)?;
        listing
            .iter()
            .filter_map(|e| match e {
                Ok(e) if matches!(e.file_name().to_bytes(), b"." | b"..") => None,
                Ok(e) => Some(Ok(e.file_name().to_owned())),
                Err(e) => Some(Err(io::Error::from(e))),
            })
            .collect::<io::Result<_>>()?
    };
    for child in &names {
        match sys::unlinkat(fd.as_fd(), child, 0) {
            Err(e) if errno_is(&e, libc::EISDIR) => {
                remove_contents(fd.as_fd(), child, depth + 1)?;
                sys::unlinkat(fd.as_fd(), child, sys::AT_REMOVEDIR)?;
            }
            other => other?,
        }
    }
    Ok(())
}
