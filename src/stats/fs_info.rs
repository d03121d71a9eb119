//! The filesystem holding a container's writable layer, for cadvisor's `container_fs_limit_bytes`
//! and `container_fs_inodes_*`: its size and inodes (`statvfs`), and the device it is mounted
//! from, the metrics' `device` label. cadvisor finds the device by the filesystem's
//! `major:minor` in the mount table; so does this, from `/proc/self/mountinfo`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use super::StatsError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsInfo {
    /// The mount source (`/dev/sda1`, `overlay`, `tmpfs`...), or the path asked about when the
    /// mount table does not list the filesystem (btrfs subvolumes have anonymous devices).
    pub device: String,
    /// Size, bytes.
    pub capacity: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// `major:minor` of a `st_dev`, as the kernel encodes it (glibc's `gnu_dev_major/minor`).
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// The mount source of the filesystem `major:minor`, from mountinfo text: field 3 is
/// `major:minor`, and after the ` - ` separator come the type and the source (octal-escaped,
/// as mount points are).
pub fn mount_source(mountinfo: &str, major: u64, minor: u64) -> Option<String> {
    let want = format!("{major}:{minor}");
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if left.split(' ').nth(2)? != want {
            return None;
        }
        right.split(' ').nth(1).map(unescape)
    })
}

/// Undoes mountinfo's `\NNN` octal escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Devices by `st_dev`: every writable layer lives on the same one or two filesystems, and the
/// mount table of a busy node is long, so it is read once per filesystem.
#[derive(Default)]
pub struct Devices {
    names: Mutex<HashMap<u64, String>>,
}

impl Devices {
    /// The filesystem holding `path`; None when `path` does not exist.
    pub fn info(&self, path: &Path) -> Result<Option<FsInfo>, StatsError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StatsError::io("reading", path, e)),
        };
        let vfs = match nix::sys::statvfs::statvfs(path) {
            Ok(v) => v,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(StatsError::io("statvfs", path, e.into())),
        };
        Ok(Some(FsInfo {
            device: self.name(meta.dev(), path)?,
            capacity: (vfs.blocks() as u64).saturating_mul(vfs.fragment_size() as u64),
            inodes: vfs.files() as u64,
            inodes_free: vfs.files_free() as u64,
        }))
    }

    fn name(&self, dev: u64, path: &Path) -> Result<String, StatsError> {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = names.get(&dev) {
            return Ok(n.clone());
        }
        let info_path = Path::new("/proc/self/mountinfo");
        let info = std::fs::read_to_string(info_path)
            .map_err(|e| StatsError::io("reading", info_path, e))?;
        let (major, minor) = split_dev(dev);
        let name = mount_source(&info, major, minor)
            .unwrap_or_else(|| path.to_string_lossy().into_owned());
        names.insert(dev, name.clone());
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
25 22 0:23 / /proc rw,nosuid - proc proc rw\n\
40 22 259:3 / /var/lib/strata rw,relatime shared:20 - xfs /dev/nvme0n1p3 rw,prjquota\n\
41 22 259:3 /x /mnt/bind rw,relatime - xfs /dev/nvme0n1p3 rw\n\
50 22 0:52 / /mnt/my\\040disk rw - fuse.sshfs host:/a\\040b rw\n";

    #[test]
    fn source_by_device_number() {
        assert_eq!(
            mount_source(MOUNTINFO, 259, 3).as_deref(),
            Some("/dev/nvme0n1p3")
        );
        assert_eq!(mount_source(MOUNTINFO, 8, 1).as_deref(), Some("/dev/sda1"));
        assert_eq!(mount_source(MOUNTINFO, 0, 52).as_deref(), Some("host:/a b"));
        assert_eq!(mount_source(MOUNTINFO, 8, 2), None);
    }

    #[test]
    fn device_numbers() {
        // makedev(259, 3) and makedev(8, 1); a minor above 255 too.
        assert_eq!(split_dev(0x10303), (259, 3));
        assert_eq!(split_dev(0x801), (8, 1));
        assert_eq!(split_dev((1 << 20) | (7 << 8) | 0x34), (7, 0x100 | 0x34));
    }

    /// The real filesystem of a temporary directory.
    #[test]
    fn info_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let devices = Devices::default();
        let i = devices.info(dir.path()).unwrap().unwrap();
        assert!(i.capacity > 0 || i.inodes == 0, "{i:?}");
        assert!(i.inodes_free <= i.inodes, "{i:?}");
        assert!(!i.device.is_empty());
        assert_eq!(devices.info(&dir.path().join("missing")).unwrap(), None);
    }
}
