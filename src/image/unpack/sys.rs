//! The raw syscalls the unpacker uses, each wrapped once. Every call takes a directory fd and a
//! single path component (or a path that `openat2` confines), never a joined host path.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use libc::{AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, O_DIRECTORY, O_NOFOLLOW, O_PATH, O_RDONLY};

/// Confine resolution to the directory fd (refusing absolute symlinks and `..` that climb out)
/// and refuse procfs-style magic links.
pub const RESOLVE_CONFINED: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// `setxattrat(2)` (Linux 6.13); the number is the same on every architecture (unified table).
const SYS_SETXATTRAT: libc::c_long = 463;

/// `struct open_how` from `linux/openat2.h` (libc's is `non_exhaustive`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `struct xattr_args` from `linux/xattr.h`.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn new_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns or closes it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// `openat2(dir, path, flags | O_CLOEXEC, resolve)`. Retries `EAGAIN`, which the kernel returns
/// when a concurrent rename or mount (anywhere on the host: a busy node mounts all the time)
/// made it unable to vouch for a `..` step.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: u64::from((flags | libc::O_CLOEXEC).cast_unsigned()),
        mode: 0,
        resolve,
    };
    let mut again = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is an initialised `open_how` whose exact size
        // we pass; both outlive the call. `dir` is an open fd for the call's duration.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &raw const how,
                size_of::<OpenHow>(),
            )
        };
        match new_fd(ret) {
            Err(e) if is_interrupted(&e) => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && again < 128 => again += 1,
            other => return other,
        }
    }
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is open. The mode is
        // passed as the variadic `unsigned int` openat expects.
        let ret = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        match new_fd(libc::c_long::from(ret)) {
            Err(e) if is_interrupted(&e) => {}
            other => return other,
        }
    }
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is open.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

pub fn mknodat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is open.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) })
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and outlive the call; `dir` is open.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

/// `linkat` without `AT_SYMLINK_FOLLOW`: a symlink target is linked itself, not followed.
pub fn linkat(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated and outlive the call; both fds are open.
    check(unsafe {
        libc::linkat(
            old_dir.as_raw_fd(),
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            0,
        )
    })
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is open.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })
}

/// `st_mode` of `dir/name`, not following a symlink.
pub fn lstat_mode(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::mode_t> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated; `st` points to writable memory of the right type that the
    // kernel fills on success.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so it initialised `st`.
    Ok(unsafe { st.assume_init() }.st_mode)
}

pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
}

/// `lchown` of `dir/name`.
pub fn lchownat(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is open.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            AT_SYMLINK_NOFOLLOW,
        )
    })
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

/// `fchmodat(dir, name, mode, 0)`. It follows a symlink in `name`, so callers only use it on a
/// node they have just created themselves (devices and FIFOs, which cannot be opened safely).
pub fn fchmodat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is open.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) })
}

/// `[atime, mtime]`.
pub type Times = [libc::timespec; 2];

pub fn futimens(fd: BorrowedFd<'_>, times: &Times) -> io::Result<()> {
    // SAFETY: `times` points to two initialised timespecs; `fd` is open.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
}

/// `utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW)`.
pub fn lutimensat(dir: BorrowedFd<'_>, name: &CStr, times: &Times) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated, `times` points to two initialised timespecs; both outlive
    // the call and `dir` is open.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            AT_SYMLINK_NOFOLLOW,
        )
    })
}

pub fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and `value` is valid for `value.len()` bytes; both outlive
    // the call and `fd` is open.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `setxattrat(dir, path, AT_SYMLINK_NOFOLLOW, name, value)`: sets an xattr on a symlink or a
/// device node without opening it. Fails with `ENOSYS` before Linux 6.13.
pub fn lsetxattrat(dir: BorrowedFd<'_>, path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    let size = u32::try_from(value.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let args = XattrArgs {
        value: value.as_ptr() as u64,
        size,
        flags: 0,
    };
    // SAFETY: `path` and `name` are NUL-terminated; `args` is an initialised `xattr_args` whose
    // exact size we pass and whose `value` pointer is valid for `size` bytes. All outlive the
    // call and `dir` is open.
    let ret = unsafe {
        libc::syscall(
            SYS_SETXATTRAT,
            dir.as_raw_fd(),
            path.as_ptr(),
            AT_SYMLINK_NOFOLLOW.cast_unsigned(),
            name.as_ptr(),
            &raw const args,
            size_of::<XattrArgs>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `lgetxattr` on a host path, for tests.
#[cfg(test)]
pub fn lgetxattr(path: &std::path::Path, name: &str) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let name = std::ffi::CString::new(name)?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: both strings are NUL-terminated; `buf` is writable for `buf.len()` bytes.
    let ret = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let len = usize::try_from(ret).map_err(|_| io::Error::last_os_error())?;
    buf.truncate(len);
    Ok(buf)
}
