//! The small mount namespace containers are cloned from.
//!
//! Every container init unshares a mount namespace, which copies the mount namespace it is in:
//! the cost grows with the number of mounts (measured here: 0.6 ms with 22 mounts, 10 ms with
//! 1000, 27 ms with 3000; a busy node has one tmpfs per secret and projected volume). So the
//! monitor clones the init from a *template* mount namespace holding only what the init reads
//! by host path before its pivot_root, and joins it only for the clone (setns in, clone, setns
//! back: setns does not copy anything):
//! - the root filesystem (`/`, not recursive) and the mounts holding the daemon's root and
//!   state directories (not recursive): layers, upperdirs, workdirs and rootfs targets;
//! - `/proc`, `/sys` (sysfs binds, cgroup directories) and `/dev` (`/dev/null` for masked paths,
//!   device nodes), recursively.
//!
//! Bind mount sources (volumes, pod files, /dev/shm, image volumes) can live anywhere, so the
//! monitor opens each as a detached mount (open_tree(OPEN_TREE_CLONE)) in the host's mount
//! namespace before the clone, and the init attaches it with move_mount.
//!
//! `strata mntns-template --pin FILE --keep DIR...` builds the template and pins it by
//! bind-mounting its nsfs file at FILE (like `ip netns` does), so it outlives the helper: a
//! child unshares and builds it, the parent (still in the host's namespace) pins it and kills
//! the child.

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount};
use nix::sched::CloneFlags;
use nix::unistd::ForkResult;

/// `NSFS_MAGIC`: the filesystem type of a pinned namespace file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Whether `pin` is a pinned namespace file (a template made by an earlier run).
pub fn is_pinned(pin: &Path) -> bool {
    nix::sys::statfs::statfs(pin).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// The `strata mntns-template` entry point (single-threaded, before any runtime).
pub fn template_main(pin: &Path, keep: &[PathBuf]) -> ! {
    match run(pin, keep) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("strata mntns-template: {e}");
            std::process::exit(1)
        }
    }
}

pub(crate) fn run(pin: &Path, keep: &[PathBuf]) -> Result<(), String> {
    // The kernel refuses to pin a mount namespace whose id is not above ours (its guard
    // against namespace loops); on 6.18 ids are not always given in creation order, so a
    // template made from a namespace other than the host's may get a lower one: try again.
    let mut last = String::new();
    for _ in 0..8 {
        match run_once(pin, keep) {
            Err(Pin::Einval(e)) => last = e,
            Err(Pin::Other(e)) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
    Err(last)
}

enum Pin {
    Einval(String),
    Other(String),
}

fn run_once(pin: &Path, keep: &[PathBuf]) -> Result<(), Pin> {
    let root = pin.with_extension("root");
    let other = Pin::Other;
    std::fs::create_dir_all(&root)
        .map_err(|e| other(format!("creating {}: {e}", root.display())))?;
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| other(format!("pipe: {e}")))?;
    // SAFETY: this helper is single-threaded; the child builds the namespace and waits.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(other(format!("fork: {e}"))),
        Ok(ForkResult::Child) => {
            drop(read_end);
            let mut out = std::fs::File::from(write_end);
            match build(&root, keep) {
                Ok(()) => {
                    let _ = out.write_all(b"k");
                }
                Err(e) => {
                    let _ = out.write_all(e.as_bytes());
                }
            }
            drop(out);
            loop {
                // SAFETY: pause(2) has no arguments; the parent kills us.
                unsafe { libc::pause() };
            }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            let result = pin_child(read_end, child.as_raw(), pin);
            let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}

fn pin_child(from_child: OwnedFd, child: i32, pin: &Path) -> Result<(), Pin> {
    let mut answer = String::new();
    std::fs::File::from(from_child)
        .read_to_string(&mut answer)
        .map_err(|e| Pin::Other(format!("reading the builder's answer: {e}")))?;
    if answer != "k" {
        return Err(Pin::Other(format!(
            "building the template mount namespace: {answer}"
        )));
    }
    std::fs::File::create(pin)
        .map_err(|e| Pin::Other(format!("creating {}: {e}", pin.display())))?;
    let ns = PathBuf::from(format!("/proc/{child}/ns/mnt"));
    mount(Some(&ns), pin, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        let wrap = if e == nix::errno::Errno::EINVAL {
            Pin::Einval
        } else {
            Pin::Other
        };
        wrap(format!(
            "pinning {} (id {:?}) at {} (our mount namespace: id {:?}): {e}",
            ns.display(),
            mntns_id(&ns),
            pin.display(),
            mntns_id(Path::new("/proc/self/ns/mnt"))
        ))
    })
}

/// The id of a mount namespace (ioctl NS_GET_MNTNS_ID), for error messages.
fn mntns_id(path: &Path) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    const NS_GET_MNTNS_ID: libc::c_ulong = 0x8008_b705;
    let f = std::fs::File::open(path).ok()?;
    let mut id: u64 = 0;
    // SAFETY: NS_GET_MNTNS_ID writes one u64 into `id`, which outlives the call.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_MNTNS_ID, &mut id as *mut u64) };
    (rc == 0).then_some(id)
}

/// The deepest mount point holding `path`, from /proc/self/mountinfo (mount points are field 5,
/// with spaces and the like octal-escaped).
fn mount_point_of(path: &Path, mountinfo: &str) -> PathBuf {
    let unescape = |s: &str| {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && i + 3 < b.len()
                && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        PathBuf::from(std::ffi::OsString::from(
            String::from_utf8_lossy(&out).into_owned(),
        ))
    };
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape))
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.components().count())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Runs in the child: a new mount namespace whose root is `root` holding the few mounts listed
/// in the module doc at their host paths.
fn build(root: &Path, keep: &[PathBuf]) -> Result<(), String> {
    let bind = |src: &Path, dst: &Path, flags: MsFlags| {
        mount(Some(src), dst, None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("bind {} at {}: {e}", src.display(), dst.display()))
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading mountinfo: {e}"))?;
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    bind(Path::new("/"), root, MsFlags::MS_BIND)?;
    for dir in ["/proc", "/sys", "/dev"] {
        bind(
            Path::new(dir),
            &inside(Path::new(dir)),
            MsFlags::MS_BIND | MsFlags::MS_REC,
        )?;
    }
    let mut done = vec![PathBuf::from("/")];
    for dir in keep {
        let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mp = mount_point_of(&dir, &mountinfo);
        if !done.contains(&mp) {
            bind(&mp, &inside(&mp), MsFlags::MS_BIND)?;
            done.push(mp);
        }
    }
    nix::unistd::chdir(root).map_err(|e| format!("chdir: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("umount old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepest_mount_point_wins_and_escapes_are_decoded() {
        let info = "22 27 0:21 / /proc rw - proc proc rw\n\
                    27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                    40 27 0:40 / /var/lib rw - ext4 /dev/vdb rw\n\
                    41 40 0:41 / /var/lib/my\\040dir rw - tmpfs t rw\n";
        assert_eq!(
            mount_point_of(Path::new("/var/lib/strata/x"), info),
            PathBuf::from("/var/lib")
        );
        assert_eq!(
            mount_point_of(Path::new("/var/lib/my dir/a"), info),
            PathBuf::from("/var/lib/my dir")
        );
        assert_eq!(
            mount_point_of(Path::new("/tmp/x"), info),
            PathBuf::from("/")
        );
    }
}
