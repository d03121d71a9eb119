//! The raw system calls the container setup makes, behind the small [`Syscall`] trait: [`RealSys`]
//! makes them, [`fake::FakeSys`] (tests only) records them, so the order of the mount, namespace,
//! user, capability and seccomp steps is unit-tested without root.
//!
//! Paths handed to these methods are what the kernel sees: for targets inside the container's
//! rootfs that is `/proc/self/fd/N` of an `O_PATH` descriptor opened with `RESOLVE_IN_ROOT`
//! (see [`Syscall::resolve`]), so nothing here follows a symlink out of the rootfs.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::rootfs_path;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub(crate) const MOUNT_ATTR__ATIME: u64 = 0x70;
pub(crate) const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_SYMLINKS: libc::c_uint = 0x10;
const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// What [`Syscall::resolve`] creates when the path does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Create {
    /// Nothing: a missing path is `ENOENT`.
    No,
    /// A directory (and missing parents).
    Dir,
    /// An empty regular file (and missing parent directories).
    File,
}

/// A path resolved inside the container's root: the kernel-facing `path` (`/proc/self/fd/N`
/// of `fd` for the real implementation) and whether it is a directory.
#[derive(Debug)]
pub(crate) struct Target {
    /// Keeps `path` valid; `None` in the fake.
    #[allow(dead_code)]
    pub fd: Option<OwnedFd>,
    pub path: PathBuf,
    pub is_dir: bool,
}

/// The capability sets applied after the user switch (bounding is dropped before it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub effective: caps::CapsHashSet,
    pub permitted: caps::CapsHashSet,
    pub inheritable: caps::CapsHashSet,
    pub ambient: caps::CapsHashSet,
}

/// The system calls of the container setup. All methods take `&self`; failures are the
/// kernel's `errno` as [`io::Error`].
pub(crate) trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// Mounts an overlay at `target` through fsopen/fsconfig/fsmount/move_mount, one
    /// `lowerdir+` per layer (topmost first): no page-size limit on the option string.
    fn mount_overlay_fsconfig(
        &self,
        target: &Path,
        lower_top_first: &[PathBuf],
        upper: &Path,
        work: &Path,
    ) -> io::Result<()>;
    /// mount_setattr(2): set/clear `MOUNT_ATTR_*` on the mount at `target` (and below it when
    /// `recursive`).
    fn mount_setattr(&self, target: &Path, recursive: bool, set: u64, clear: u64)
    -> io::Result<()>;
    /// An id-mapped bind mount: `source` cloned as a detached mount (open_tree
    /// `OPEN_TREE_CLONE`, with its submounts when `recursive`), id-mapped through the user
    /// namespace `userns` (mount_setattr `MOUNT_ATTR_IDMAP`), attached at `target` (move_mount).
    /// Files owned by host id H show as the id that `userns` maps to H.
    fn idmap_mount(
        &self,
        source: &Path,
        target: &Path,
        userns: BorrowedFd<'_>,
        recursive: bool,
    ) -> io::Result<()>;
    /// Attaches the detached mount `tree` (from [`open_tree_clone`]) at `target`, id-mapped
    /// through `idmap` first when given (move_mount consumes the detached mount).
    fn attach_tree(
        &self,
        tree: BorrowedFd<'_>,
        target: &Path,
        idmap: Option<BorrowedFd<'_>>,
    ) -> io::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> io::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> io::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> io::Result<()>;
    /// mknod(2); `mode` includes the file type bits (`S_IFCHR`...).
    fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    fn setgroups(&self, gids: &[u32]) -> io::Result<()>;
    fn setresgid(&self, gid: u32) -> io::Result<()>;
    fn setresuid(&self, uid: u32) -> io::Result<()>;
    fn prctl(&self, option: libc::c_int, arg: libc::c_ulong) -> io::Result<()>;
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()>;
    fn setrlimit(&self, resource: libc::c_int, soft: u64, hard: u64) -> io::Result<()>;
    fn umask(&self, mask: u32);
    /// Opens a directory to resolve paths under ([`Syscall::resolve`]).
    fn open_root(&self, path: &Path) -> io::Result<Target>;
    /// Resolves `path` (absolute or not, relative to `root`) inside `root` without leaving it
    /// (symlinks and `..` are scoped to `root`), creating it when missing as `create` says.
    fn resolve(&self, root: &Target, path: &Path, create: Create) -> io::Result<Target>;
    /// Drops every capability not in `keep` from the bounding set.
    fn drop_bounding(&self, keep: &caps::CapsHashSet) -> io::Result<()>;
    /// Sets the inheritable, effective, permitted and ambient sets (in an order the kernel accepts).
    fn set_caps(&self, sets: &CapSets) -> io::Result<()>;
    /// Installs a seccomp BPF filter (SECCOMP_SET_MODE_FILTER).
    fn seccomp(&self, program: &[libc::sock_filter], flags: libc::c_ulong) -> io::Result<()>;
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A detached copy of the mount at `source` (and its submounts when `recursive`):
/// open_tree(OPEN_TREE_CLONE). It can be id-mapped and attached elsewhere, also from another
/// mount namespace, with [`Syscall::attach_tree`].
pub(crate) fn open_tree_clone(source: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let source = cpath(source)?;
    let rec = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: source is NUL-terminated and outlives the call; the result is checked.
    let tree = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | rec,
        )
    })
    .map_err(|e| step_err("open_tree", e))?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as i32) })
}

/// Names the syscall of a multi-step operation that failed (keeps the errno's kind).
fn step_err(step: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{step}: {e}"))
}

fn caps_err(e: caps::errors::CapsError) -> io::Error {
    io::Error::other(e.to_string())
}

/// The real system calls.
pub(crate) struct RealSys;

impl RealSys {
    fn fsconfig_string(fd: &OwnedFd, key: &str, value: &Path) -> io::Result<()> {
        let key = cstr(key)?;
        let value = cpath(value)?;
        // SAFETY: fd is an open fs context; key and value are NUL-terminated strings that live
        // across the call; aux is unused for FSCONFIG_SET_STRING.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fd.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })?;
        Ok(())
    }
}

impl Syscall for RealSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(io::Error::from)
    }

    fn mount_overlay_fsconfig(
        &self,
        target: &Path,
        lower_top_first: &[PathBuf],
        upper: &Path,
        work: &Path,
    ) -> io::Result<()> {
        let fstype = cstr("overlay")?;
        // SAFETY: fstype is a NUL-terminated string; the returned descriptor is checked.
        let fs =
            check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
        // SAFETY: fsopen returned a new descriptor that nothing else owns.
        let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
        for lower in lower_top_first {
            Self::fsconfig_string(&fs, "lowerdir+", lower)?;
        }
        Self::fsconfig_string(&fs, "upperdir", upper)?;
        Self::fsconfig_string(&fs, "workdir", work)?;
        // SAFETY: plain syscall on an fs context descriptor; no pointers.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        })?;
        // SAFETY: plain syscall on the configured fs context; the result is checked.
        let mnt =
            check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })?;
        // SAFETY: fsmount returned a new descriptor that nothing else owns.
        let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
        let empty = cstr("")?;
        let target = cpath(target)?;
        // SAFETY: mnt is a detached mount; both strings are NUL-terminated and outlive the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        })?;
        Ok(())
    }

    fn mount_setattr(
        &self,
        target: &Path,
        recursive: bool,
        set: u64,
        clear: u64,
    ) -> io::Result<()> {
        let target = cpath(target)?;
        let attr = MountAttr {
            attr_set: set,
            attr_clr: clear,
            ..MountAttr::default()
        };
        let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
        // SAFETY: target is NUL-terminated, attr is a valid mount_attr of the size passed; both
        // outlive the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                target.as_ptr(),
                flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        })?;
        Ok(())
    }

    fn idmap_mount(
        &self,
        source: &Path,
        target: &Path,
        userns: BorrowedFd<'_>,
        recursive: bool,
    ) -> io::Result<()> {
        let tree = open_tree_clone(source, recursive)?;
        self.attach_tree(tree.as_fd(), target, Some(userns))
    }

    fn attach_tree(
        &self,
        tree: BorrowedFd<'_>,
        target: &Path,
        idmap: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        let empty = cstr("")?;
        if let Some(userns) = idmap {
            let attr = MountAttr {
                attr_set: MOUNT_ATTR_IDMAP,
                userns_fd: userns.as_raw_fd() as u64,
                ..MountAttr::default()
            };
            // SAFETY: tree is a detached mount, the empty path is NUL-terminated, attr is a
            // valid mount_attr of the size passed; all outlive the call.
            check(unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    tree.as_raw_fd(),
                    empty.as_ptr(),
                    (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            })
            .map_err(|e| step_err("mount_setattr(MOUNT_ATTR_IDMAP)", e))?;
        }
        let target = cpath(target)?;
        // SAFETY: tree is a detached mount; both strings are NUL-terminated and outlive the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                // Targets inside the rootfs are /proc/self/fd/N magic links: follow them.
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
            )
        })
        .map_err(|e| step_err("move_mount", e))?;
        Ok(())
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        nix::mount::umount2(target, flags).map_err(io::Error::from)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        nix::unistd::pivot_root(new_root, put_old).map_err(io::Error::from)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        nix::unistd::chdir(path).map_err(io::Error::from)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(io::Error::from)
    }

    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> io::Result<()> {
        nix::sched::setns(fd, nstype).map_err(io::Error::from)
    }

    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        nix::sched::unshare(flags).map_err(io::Error::from)
    }

    fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()> {
        let path = cpath(path)?;
        // SAFETY: path is a NUL-terminated string that outlives the call.
        if unsafe { libc::mknod(path.as_ptr(), mode, dev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }

    fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
        // SAFETY: the pointer and length describe a valid slice of gid_t (u32).
        if unsafe { libc::setgroups(gids.len(), gids.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn setresgid(&self, gid: u32) -> io::Result<()> {
        // Raw syscalls: glibc's wrappers broadcast to all threads (we are single-threaded anyway).
        // SAFETY: integer arguments only.
        check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
        Ok(())
    }

    fn setresuid(&self, uid: u32) -> io::Result<()> {
        // SAFETY: integer arguments only.
        check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })?;
        Ok(())
    }

    fn prctl(&self, option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
        // SAFETY: the options used here (DUMPABLE, KEEPCAPS, NO_NEW_PRIVS) take integers only.
        if unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data.as_bytes())
    }

    fn setrlimit(&self, resource: libc::c_int, soft: u64, hard: u64) -> io::Result<()> {
        let lim = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: lim is a valid rlimit64; the old-limit pointer may be null. The cast adapts the
        // resource to glibc's enum type.
        if unsafe { libc::prlimit64(0, resource as _, &lim, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn umask(&self, mask: u32) {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }

    fn open_root(&self, path: &Path) -> io::Result<Target> {
        let fd = rootfs_path::open_dir(path)?;
        Ok(Target {
            path: rootfs_path::fd_path(&fd),
            fd: Some(fd),
            is_dir: true,
        })
    }

    fn resolve(&self, root: &Target, path: &Path, create: Create) -> io::Result<Target> {
        let root_fd = root
            .fd
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let (fd, is_dir) = rootfs_path::resolve_in_root(root_fd, path, create)?;
        Ok(Target {
            path: rootfs_path::fd_path(&fd),
            fd: Some(fd),
            is_dir,
        })
    }

    fn drop_bounding(&self, keep: &caps::CapsHashSet) -> io::Result<()> {
        for cap in caps::runtime::thread_all_supported() {
            if !keep.contains(&cap) {
                caps::drop(None, caps::CapSet::Bounding, cap).map_err(caps_err)?;
            }
        }
        Ok(())
    }

    fn set_caps(&self, sets: &CapSets) -> io::Result<()> {
        // Inheritable first (needs the still-full permitted set), then effective (a subset of
        // the permitted set is required), then permitted, then ambient (needs both P and I).
        caps::set(None, caps::CapSet::Inheritable, &sets.inheritable).map_err(caps_err)?;
        caps::set(None, caps::CapSet::Effective, &sets.effective).map_err(caps_err)?;
        caps::set(None, caps::CapSet::Permitted, &sets.permitted).map_err(caps_err)?;
        if !sets.ambient.is_empty() {
            caps::set(None, caps::CapSet::Ambient, &sets.ambient).map_err(caps_err)?;
        }
        Ok(())
    }

    fn seccomp(&self, program: &[libc::sock_filter], flags: libc::c_ulong) -> io::Result<()> {
        let len = u16::try_from(program.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seccomp program too long"))?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: prog points at `len` valid instructions that outlive the call; the kernel
        // copies the program.
        check(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A recording [`Syscall`]: every call becomes one readable line in `calls`.

    use std::cell::RefCell;
    use std::collections::HashSet;

    use super::*;

    #[derive(Default)]
    pub(crate) struct FakeSys {
        pub calls: RefCell<Vec<String>>,
        /// Container paths (absolute, e.g. `/proc/kcore`) that resolve to regular files;
        /// everything else resolves to a directory.
        pub files: HashSet<PathBuf>,
        /// Container paths that do not exist (`ENOENT` unless created).
        pub missing: HashSet<PathBuf>,
        /// A call whose line starts with this fails with `fail_errno`.
        pub fail_prefix: Option<String>,
        pub fail_errno: i32,
    }

    impl FakeSys {
        fn record(&self, line: String) -> io::Result<()> {
            let fail = self
                .fail_prefix
                .as_deref()
                .is_some_and(|p| line.starts_with(p));
            self.calls.borrow_mut().push(line);
            if fail {
                Err(io::Error::from_raw_os_error(self.fail_errno))
            } else {
                Ok(())
            }
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    /// `MsFlags(MS_BIND | MS_REC)` -> `MS_BIND | MS_REC`; no flag -> `empty`.
    fn bits<T: std::fmt::Debug>(v: T) -> String {
        let s = format!("{v:?}");
        let inner = s
            .split_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .unwrap_or(&s);
        if inner == "0x0" {
            "empty".into()
        } else {
            inner.to_string()
        }
    }

    fn opt<T: std::fmt::Debug>(v: Option<T>) -> String {
        v.map(|v| format!("{v:?}").trim_matches('"').to_string())
            .unwrap_or_else(|| "-".into())
    }

    impl Syscall for FakeSys {
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> io::Result<()> {
            self.record(format!(
                "mount {} {} {} {} {}",
                opt(source),
                target.display(),
                opt(fstype),
                bits(flags),
                opt(data)
            ))
        }
        fn mount_overlay_fsconfig(
            &self,
            target: &Path,
            lower_top_first: &[PathBuf],
            upper: &Path,
            work: &Path,
        ) -> io::Result<()> {
            self.record(format!(
                "fsmount overlay {} lowers={} upper={} work={}",
                target.display(),
                lower_top_first.len(),
                upper.display(),
                work.display()
            ))
        }
        fn mount_setattr(
            &self,
            target: &Path,
            recursive: bool,
            set: u64,
            clear: u64,
        ) -> io::Result<()> {
            self.record(format!(
                "mount_setattr {} recursive={recursive} set={set:#x} clear={clear:#x}",
                target.display()
            ))
        }
        fn idmap_mount(
            &self,
            source: &Path,
            target: &Path,
            _userns: BorrowedFd<'_>,
            recursive: bool,
        ) -> io::Result<()> {
            self.record(format!(
                "idmap_mount {} {} recursive={recursive}",
                source.display(),
                target.display()
            ))
        }
        fn attach_tree(
            &self,
            _tree: BorrowedFd<'_>,
            target: &Path,
            idmap: Option<BorrowedFd<'_>>,
        ) -> io::Result<()> {
            self.record(format!(
                "attach_tree {} idmap={}",
                target.display(),
                idmap.is_some()
            ))
        }
        fn umount2(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
            self.record(format!("umount2 {} {}", target.display(), bits(flags)))
        }
        fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
            self.record(format!(
                "pivot_root {} {}",
                new_root.display(),
                put_old.display()
            ))
        }
        fn chdir(&self, path: &Path) -> io::Result<()> {
            self.record(format!("chdir {}", path.display()))
        }
        fn sethostname(&self, name: &str) -> io::Result<()> {
            self.record(format!("sethostname {name}"))
        }
        fn setns(&self, _fd: BorrowedFd<'_>, nstype: CloneFlags) -> io::Result<()> {
            self.record(format!("setns {}", bits(nstype)))
        }
        fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
            self.record(format!("unshare {}", bits(flags)))
        }
        fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()> {
            self.record(format!("mknod {} {mode:o} {dev}", path.display()))
        }
        fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
            self.record(format!("symlink {} {}", target.display(), link.display()))
        }
        fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
            self.record(format!("chown {} {uid}:{gid}", path.display()))
        }
        fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
            self.record(format!("setgroups {gids:?}"))
        }
        fn setresgid(&self, gid: u32) -> io::Result<()> {
            self.record(format!("setresgid {gid}"))
        }
        fn setresuid(&self, uid: u32) -> io::Result<()> {
            self.record(format!("setresuid {uid}"))
        }
        fn prctl(&self, option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
            let name = match option {
                libc::PR_SET_DUMPABLE => "DUMPABLE",
                libc::PR_SET_KEEPCAPS => "KEEPCAPS",
                libc::PR_SET_NO_NEW_PRIVS => "NO_NEW_PRIVS",
                _ => "?",
            };
            self.record(format!("prctl {name} {arg}"))
        }
        fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
            self.record(format!("write {} {data}", path.display()))
        }
        fn setrlimit(&self, resource: libc::c_int, soft: u64, hard: u64) -> io::Result<()> {
            self.record(format!("setrlimit {resource} {soft} {hard}"))
        }
        fn umask(&self, mask: u32) {
            let _ = self.record(format!("umask {mask:o}"));
        }
        fn open_root(&self, path: &Path) -> io::Result<Target> {
            self.record(format!("open_root {}", path.display()))?;
            Ok(Target {
                fd: None,
                path: path.to_path_buf(),
                is_dir: true,
            })
        }
        fn resolve(&self, root: &Target, path: &Path, create: Create) -> io::Result<Target> {
            let abs = Path::new("/").join(path);
            let rel = abs.strip_prefix("/").unwrap_or(&abs);
            let full = root.path.join(rel);
            if self.missing.contains(&abs) && create == Create::No {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            if self.missing.contains(&abs) {
                self.record(format!("create {create:?} {}", full.display()))?;
            }
            let is_dir = match create {
                Create::File => false,
                Create::Dir => true,
                Create::No => !self.files.contains(&abs),
            };
            Ok(Target {
                fd: None,
                path: full,
                is_dir,
            })
        }
        fn drop_bounding(&self, keep: &caps::CapsHashSet) -> io::Result<()> {
            self.record(format!("drop_bounding keep={}", keep.len()))
        }
        fn set_caps(&self, sets: &CapSets) -> io::Result<()> {
            self.record(format!(
                "set_caps eff={} perm={} inh={} amb={}",
                sets.effective.len(),
                sets.permitted.len(),
                sets.inheritable.len(),
                sets.ambient.len()
            ))
        }
        fn seccomp(&self, program: &[libc::sock_filter], flags: libc::c_ulong) -> io::Result<()> {
            self.record(format!("seccomp len={} flags={flags}", program.len()))
        }
    }
}
