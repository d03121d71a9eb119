//! What the processes of a container hold, from `/proc`: open file descriptors and sockets
//! (cadvisor's `container_file_descriptors` / `container_sockets`, counted over the cgroup's
//! processes) and the soft open-files limit of its init process (`container_ulimits_soft`).
//!
//! Counting is one `readdir` of `/proc/<pid>/fd` per process plus one `readlink` per
//! descriptor (a socket is only told apart by its link target `socket:[inode]`), as cadvisor
//! does. Processes that exit meanwhile are skipped.

use std::path::Path;

use super::StatsError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fds {
    pub fds: u64,
    pub sockets: u64,
}

/// The process (or the whole `/proc/<pid>` entry) is gone: it exited while we read.
fn exited(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH))
}

/// Descriptors and sockets open in the processes `pids`.
pub fn count_fds(proc_root: &Path, pids: &[u32]) -> Result<Fds, StatsError> {
    let mut n = Fds::default();
    for pid in pids {
        let dir = proc_root.join(pid.to_string()).join("fd");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if exited(&e) => continue,
            Err(e) => return Err(StatsError::io("listing", &dir, e)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if exited(&e) => break,
                Err(e) => return Err(StatsError::io("listing", &dir, e)),
            };
            n.fds += 1;
            // A descriptor closed since the listing is not an error (and still counted: it
            // was open when the directory was read).
            if std::fs::read_link(entry.path())
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:["))
            {
                n.sockets += 1;
            }
        }
    }
    Ok(n)
}

/// The soft `Max open files` of `/proc/<pid>/limits` text; `u64::MAX` for "unlimited" (cadvisor
/// says -1, which an unsigned CRI value cannot carry).
pub fn parse_max_open_files(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        soft => soft.parse().ok(),
    }
}

/// The soft open-files limit of process `pid`; None when it is gone.
pub fn max_open_files(proc_root: &Path, pid: u32) -> Result<Option<u64>, StatsError> {
    let path = proc_root.join(pid.to_string()).join("limits");
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(parse_max_open_files(&t)),
        Err(e) if exited(&e) => Ok(None),
        Err(e) => Err(StatsError::io("reading", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max cpu time              unlimited            unlimited            seconds   \n\
        Max open files            1024                 1048576              files     \n\
        Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn open_files_limit() {
        assert_eq!(parse_max_open_files(LIMITS), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files  unlimited  unlimited  files\n"),
            Some(u64::MAX)
        );
        assert_eq!(parse_max_open_files("Max cpu time 1 1 seconds\n"), None);
    }

    /// A fake /proc: a process with a file and a socket, one that exited.
    #[test]
    fn counts_fds_and_sockets() {
        let root = tempfile::tempdir().unwrap();
        let fd = root.path().join("10/fd");
        std::fs::create_dir_all(&fd).unwrap();
        std::os::unix::fs::symlink("/dev/null", fd.join("0")).unwrap();
        std::os::unix::fs::symlink("socket:[12345]", fd.join("3")).unwrap();
        std::os::unix::fs::symlink("pipe:[7]", fd.join("4")).unwrap();
        std::fs::write(root.path().join("10/limits"), LIMITS).unwrap();
        let n = count_fds(root.path(), &[10, 11]).unwrap();
        assert_eq!(n, Fds { fds: 3, sockets: 1 });
        assert_eq!(max_open_files(root.path(), 10).unwrap(), Some(1024));
        assert_eq!(max_open_files(root.path(), 11).unwrap(), None);
    }

    /// This test's own process has descriptors open.
    #[test]
    fn counts_own_fds() {
        let me = std::process::id();
        let n = count_fds(Path::new("/proc"), &[me]).unwrap();
        assert!(n.fds >= 1, "{n:?}");
        assert!(max_open_files(Path::new("/proc"), me).unwrap().is_some());
    }
}
