//! Resolving mount targets inside the container's rootfs without ever leaving it.
//!
//! Every lookup is `openat2(root, path, O_PATH, RESOLVE_IN_ROOT)`: the kernel treats `root` as
//! `/` for absolute symlinks and `..`, so an image that plants `/proc -> /etc` or
//! `etc/x -> ../../../host` cannot redirect a mount onto the host. Missing targets are created
//! one component at a time relative to the already-resolved parent (`mkdirat`, or
//! `openat(O_CREAT|O_EXCL)` for files, neither of which follows a symlink in the last
//! component), then re-resolved the same way. The caller mounts onto `/proc/self/fd/N` of the
//! returned descriptor, as runc does.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::sys::Create;

/// `/proc/self/fd/N` for `fd`.
pub(crate) fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens a directory as an `O_PATH` descriptor (following symlinks: `path` is trusted).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: c is NUL-terminated and outlives the call; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Lexically cleans `path` to components below the root: `.` dropped, `..` pops (never above
/// the root), a leading `/` ignored.
pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn openat2(dirfd: &OwnedFd, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    // An empty relative path means the root itself.
    let rel_bytes = if rel.as_os_str().is_empty() {
        b".".as_slice()
    } else {
        rel.as_os_str().as_bytes()
    };
    let c = cstring(rel_bytes)?;
    // The image unpacker's wrapper: it retries EAGAIN, which RESOLVE_IN_ROOT returns when a
    // mount or rename anywhere on the host raced with a `..` step.
    crate::image::unpack::sys::openat2(
        dirfd.as_fd(),
        &c,
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

fn is_dir(fd: &OwnedFd) -> io::Result<bool> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Resolves `path` inside `root` (see the module doc), creating it as `create` says. Returns an
/// `O_PATH` descriptor and whether it is a directory.
pub(crate) fn resolve_in_root(
    root: &OwnedFd,
    path: &Path,
    create: Create,
) -> io::Result<(OwnedFd, bool)> {
    let rel = clean(path);
    match openat2(root, &rel, libc::O_PATH) {
        Ok(fd) => {
            let dir = is_dir(&fd)?;
            Ok((fd, dir))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create != Create::No => {
            create_in_root(root, &rel, create)?;
            let fd = openat2(root, &rel, libc::O_PATH)?;
            let dir = is_dir(&fd)?;
            Ok((fd, dir))
        }
        Err(e) => Err(e),
    }
}

/// Creates the missing components of `rel` (already cleaned): directories, and the last one as
/// `create` says. A component that is a symlink whose target does not exist (yet) is followed
/// by rewriting the path inside the root, as runc's `MkdirAllInRoot` does: the target is
/// created inside the rootfs, never outside it (every lookup stays `RESOLVE_IN_ROOT`).
fn create_in_root(root: &OwnedFd, rel: &Path, create: Create) -> io::Result<()> {
    let mut rel = rel.to_owned();
    let mut symlinks_followed = 0;
    'walk: loop {
        let comps: Vec<std::ffi::OsString> = rel.iter().map(|c| c.to_owned()).collect();
        let Some((last, parents)) = comps.split_last() else {
            return Ok(()); // the root itself exists
        };
        // Every component walked so far is a real directory (symlinks restart the walk), so
        // `prefix` is its true path and a relative symlink target can be joined lexically.
        let mut prefix = PathBuf::new();
        let mut parent: Option<OwnedFd> = None;
        for (i, comp) in comps.iter().enumerate() {
            let dir = parent.as_ref().unwrap_or(root);
            if let Some(target) = symlink_target(dir, comp)? {
                symlinks_followed += 1;
                if symlinks_followed > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let base = if target.is_absolute() {
                    PathBuf::new()
                } else {
                    prefix.clone()
                };
                let rest: PathBuf = comps[i + 1..].iter().collect();
                rel = clean(&base.join(target).join(rest));
                continue 'walk;
            }
            if i == parents.len() {
                break;
            }
            prefix.push(comp);
            let fd = match openat2(root, &prefix, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    mkdirat(dir, comp)?;
                    openat2(root, &prefix, libc::O_PATH | libc::O_DIRECTORY)?
                }
                Err(e) => return Err(e),
            };
            parent = Some(fd);
        }
        let dir = parent.as_ref().unwrap_or(root);
        return match create {
            Create::Dir => mkdirat(dir, last),
            Create::File => create_file(dir, last),
            Create::No => Ok(()),
        };
    }
}

/// The target of `name` in `dir` if it is a symlink (`None`: missing or not a symlink).
fn symlink_target(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<Option<PathBuf>> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: stat is plain old data; dir is open and c NUL-terminated; both outlive the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see above; AT_SYMLINK_NOFOLLOW stats the link itself.
    if unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } < 0
    {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
        return Ok(None);
    }
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: dir is open, c NUL-terminated, buf writable for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(Some(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf),
    )))
}

fn create_file(dir: &OwnedFd, last: &std::ffi::OsStr) -> io::Result<()> {
    let name = cstring(last.as_bytes())?;
    // SAFETY: dir is open, name is a NUL-terminated single component; O_EXCL makes the
    // kernel refuse (not follow) an existing symlink.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EEXIST) {
            Ok(())
        } else {
            Err(e)
        };
    }
    // SAFETY: openat returned a new descriptor that nothing else owns; dropping closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

fn mkdirat(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<()> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: dir is open and c a NUL-terminated single component; mkdirat never follows a
    // symlink in the last component.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_never_climbs_above_root() {
        assert_eq!(clean(Path::new("/a/../../b/./c")), PathBuf::from("b/c"));
        assert_eq!(clean(Path::new("../../etc")), PathBuf::from("etc"));
        assert_eq!(clean(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn symlinks_stay_inside_root_and_targets_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute symlink and a climbing one: both must resolve inside the root.
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc", root.join("climb")).unwrap();
        let root_fd = open_dir(&root).unwrap();

        for link in ["abs/newdir", "climb/newdir2"] {
            let (fd, is_dir) = resolve_in_root(&root_fd, Path::new(link), Create::Dir).unwrap();
            assert!(is_dir);
            drop(fd);
        }
        assert!(root.join("etc/newdir").is_dir());
        assert!(root.join("etc/newdir2").is_dir());

        let (_, is_dir) = resolve_in_root(&root_fd, Path::new("/a/b/file"), Create::File).unwrap();
        assert!(!is_dir);
        assert!(root.join("a/b/file").is_file());

        let err = resolve_in_root(&root_fd, Path::new("/nope"), Create::No).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));

        // Dangling symlinks (absolute, climbing) are followed inside the root: the missing
        // targets are created there.
        std::os::unix::fs::symlink("/made/by/link", root.join("dangling-abs")).unwrap();
        std::os::unix::fs::symlink("../../../../x/y", root.join("dangling-climb")).unwrap();
        let (_, is_dir) =
            resolve_in_root(&root_fd, Path::new("/dangling-abs/m"), Create::Dir).unwrap();
        assert!(is_dir);
        assert!(root.join("made/by/link/m").is_dir());
        let (_, is_dir) =
            resolve_in_root(&root_fd, Path::new("/dangling-climb"), Create::File).unwrap();
        assert!(!is_dir);
        assert!(root.join("x/y").is_file());
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        assert!(resolve_in_root(&root_fd, Path::new("/loop1/z"), Create::Dir).is_err());

        // A dangling symlink to an absolute path is not followed to the host.
        std::os::unix::fs::symlink("/tmp-strata-should-not-exist", root.join("dangling")).unwrap();
        let _ = resolve_in_root(&root_fd, Path::new("/dangling"), Create::File);
        assert!(!Path::new("/tmp-strata-should-not-exist").exists());
    }
}
