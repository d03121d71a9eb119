//! Termination messages: the file a container writes at `terminationMessagePath` before it ends
//! (kubelet passes the path as the `io.kubernetes.container.terminationMessagePath` annotation).
//!
//! Neither containerd nor CRI-O read it: kubelet does, from the host path of the mount whose
//! `container_path` is the termination path (which kubelet itself creates and mounts), and
//! *appends* it to `ContainerStatus.message` (`<message>: <termination message>`). So strata
//! puts the termination message into `message` only when kubelet cannot find it that way:
//! when no mount is exactly at the termination path (a client other than kubelet, or the path
//! under a volume), the file is read from the mount that holds it or from the container's
//! writable layer. A file that kubelet reads itself is only shown in the verbose `info`.
//!
//! Like kubelet, at most the last 4096 bytes are read. Lookups inside a directory (a volume or
//! the writable layer) use `openat2(RESOLVE_IN_ROOT)`, so a symlink in the container can never
//! point the read outside of it.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::cri::v1 as cri;
use crate::image::unpack::sys;

pub const ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
/// kubelet's `MaxContainerTerminationMessageLength`.
pub const MAX_BYTES: u64 = 4096;

/// Where a termination message was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The mount at exactly the termination path: kubelet reads this one itself.
    Mount,
    /// Under a mount, or in the container's writable layer.
    Container,
}

#[derive(Debug)]
pub struct Termination {
    pub message: String,
    pub source: Source,
}

/// The container's termination message, if its termination path names a readable file.
pub fn read(config: &cri::ContainerConfig, upper: &Path) -> Option<Termination> {
    let path = config.annotations.get(ANNOTATION)?;
    let path = clean(Path::new(path))?;
    if let Some(m) = config
        .mounts
        .iter()
        .find(|m| clean(Path::new(&m.container_path)).as_ref() == Some(&path))
    {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&m.host_path)
            .ok()?;
        return Some(Termination {
            message: tail(file)?,
            source: Source::Mount,
        });
    }
    // The deepest mount holding the path, else the writable layer.
    let (root, rel) = config
        .mounts
        .iter()
        .filter_map(|m| {
            let dest = clean(Path::new(&m.container_path))?;
            let rel = path.strip_prefix(&dest).ok()?.to_owned();
            Some((dest.components().count(), PathBuf::from(&m.host_path), rel))
        })
        .max_by_key(|(depth, ..)| *depth)
        .map(|(_, root, rel)| (root, rel))
        .unwrap_or_else(|| {
            (
                upper.to_owned(),
                path.strip_prefix("/").unwrap_or(&path).to_owned(),
            )
        });
    let dir = std::fs::File::open(&root).ok()?;
    let rel = CString::new(rel.as_os_str().as_bytes()).ok()?;
    let fd = sys::openat2(
        dir.as_fd(),
        &rel,
        libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    Some(Termination {
        message: tail(std::fs::File::from(fd))?,
        source: Source::Container,
    })
}

/// `/a/./b/` -> `/a/b`; `None` for a relative path or one with `..`.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return None;
    }
    for c in components {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The last [`MAX_BYTES`] of a regular file, as (lossy) UTF-8.
fn tail(mut file: std::fs::File) -> Option<String> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let start = meta.len().saturating_sub(MAX_BYTES);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::with_capacity(MAX_BYTES as usize);
    file.take(MAX_BYTES).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &str, mounts: Vec<cri::Mount>) -> cri::ContainerConfig {
        cri::ContainerConfig {
            annotations: [(ANNOTATION.to_owned(), path.to_owned())].into(),
            mounts,
            ..Default::default()
        }
    }

    #[test]
    fn reads_from_the_writable_layer_without_escaping() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("tmp")).unwrap();
        std::fs::write(upper.join("tmp/msg"), "bye").unwrap();
        let t = read(&config("/tmp/msg", vec![]), &upper).unwrap();
        assert_eq!((t.message.as_str(), t.source), ("bye", Source::Container));

        // A symlink to a host file resolves inside the layer, where there is none.
        std::fs::write(dir.path().join("secret"), "host").unwrap();
        std::os::unix::fs::symlink("../../secret", upper.join("tmp/evil")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), upper.join("tmp/abs")).unwrap();
        assert!(read(&config("/tmp/evil", vec![]), &upper).is_none());
        assert!(read(&config("/tmp/abs", vec![]), &upper).is_none());
    }

    #[test]
    fn exact_mount_and_mount_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let host_file = dir.path().join("termination-log");
        std::fs::write(&host_file, "x".repeat(5000) + "END").unwrap();
        let exact = cri::Mount {
            container_path: "/dev/termination-log".into(),
            host_path: host_file.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let t = read(&config("/dev/termination-log", vec![exact]), dir.path()).unwrap();
        assert_eq!(t.source, Source::Mount);
        assert_eq!(t.message.len(), MAX_BYTES as usize);
        assert!(t.message.ends_with("END"));

        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("m"), "in volume").unwrap();
        let volume = cri::Mount {
            container_path: "/data".into(),
            host_path: vol.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let t = read(&config("/data/m", vec![volume]), dir.path()).unwrap();
        assert_eq!(
            (t.message.as_str(), t.source),
            ("in volume", Source::Container)
        );
    }

    #[test]
    fn no_annotation_or_relative_path_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&cri::ContainerConfig::default(), dir.path()).is_none());
        assert!(read(&config("tmp/msg", vec![]), dir.path()).is_none());
    }
}
