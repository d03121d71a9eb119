//! Pinning a pod's network namespace to a file (a bind mount of `/proc/PID/ns/net`), so CNI DEL
//! finds it at a stable path even if the process holding it is gone.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Bind-mounts the network namespace of `pid` onto `path` (created empty).
pub fn pin(pid: i32, path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let source = format!("/proc/{pid}/ns/net");
    mount(
        Some(source.as_str()),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(std::io::Error::from)
}

/// Unmounts and deletes the pin; idempotent. The namespace dies with its last user.
pub fn unpin(path: &Path) -> std::io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` is a pinned network namespace (an nsfs mount), not the empty file under it.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}
