//! The pod's user namespace: pod-init unshares it and becomes its root.
//!
//! A process cannot write the full maps of its own new user namespace (it has no capability in
//! the parent one), so pod-init forks a child first, while both are still in the host's user
//! namespace; the child waits until the parent has unshared, writes `/proc/<parent>/uid_map`
//! and `gid_map` (as host root, so `setgroups` stays `allow` and the containers may call
//! setgroups(2)), and exits. The parent then switches to uid/gid 0 of the new namespace.

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;

use super::UsernsMaps;

fn map_text(map: &[(u32, u32, u32)]) -> String {
    map.iter()
        .map(|(inside, outside, len)| format!("{inside} {outside} {len}\n"))
        .collect()
}

/// Unshares a new user namespace with `maps` and becomes its root.
pub(super) fn enter_new(maps: &UsernsMaps) -> Result<(), String> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let parent = std::process::id();
    // SAFETY: pod-init is single-threaded; the child only writes two files and exits.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(write_end);
            let code = match write_maps(read_end, parent, maps) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(read_end);
            let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER);
            // One byte: go (maps can be written); EOF without it: give up.
            let mut pipe = std::fs::File::from(write_end);
            if unshared.is_ok() {
                let _ = pipe.write_all(b"g");
            }
            drop(pipe);
            let status = waitpid(child, None).map_err(|e| format!("waitpid: {e}"))?;
            unshared.map_err(|e| format!("unshare user namespace: {e}"))?;
            if status != WaitStatus::Exited(child, 0) {
                return Err(format!(
                    "writing the user namespace maps failed ({status:?})"
                ));
            }
            nix::unistd::setresgid(0.into(), 0.into(), 0.into())
                .map_err(|e| format!("setresgid 0 in the pod user namespace: {e}"))?;
            nix::unistd::setresuid(0.into(), 0.into(), 0.into())
                .map_err(|e| format!("setresuid 0 in the pod user namespace: {e}"))?;
            Ok(())
        }
    }
}

fn write_maps(go: OwnedFd, parent: u32, maps: &UsernsMaps) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    if std::fs::File::from(go).read(&mut byte)? != 1 {
        return Err(std::io::Error::other("the parent did not unshare"));
    }
    for (file, map) in [("uid_map", &maps.uids), ("gid_map", &maps.gids)] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{parent}/{file}"))?
            .write_all(map_text(map).as_bytes())?;
    }
    Ok(())
}
