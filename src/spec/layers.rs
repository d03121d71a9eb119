//! Reading a file from an image's layer directories as overlayfs would show it, without mounting
//! anything: the topmost layer holding a name wins; a whiteout (a 0/0 character device) hides the
//! name in lower layers; a directory marked opaque (`trusted.overlay.opaque=y`) hides the lower
//! layers' contents of that directory; symlinks are followed inside the image (an absolute target
//! starts again at the image root, `..` never climbs above it).

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind as IoKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{SpecError, io_err};

/// Linux's limit on symlinks followed while resolving one path.
const MAX_SYMLINKS: usize = 40;

enum Walk {
    Missing,
    Dir,
    File(PathBuf),
    /// The first `consumed` components lead to a symlink with this target.
    Symlink {
        target: PathBuf,
        consumed: usize,
    },
}

/// The content of `path` (relative to the image root) in the union of `layers` (bottom first);
/// `None` when the union has no regular file there.
pub fn read_file(layers: &[PathBuf], path: &str) -> Result<Option<Vec<u8>>, SpecError> {
    let mut comps = normalize(path.split('/'));
    for _ in 0..=MAX_SYMLINKS {
        match walk(layers, &comps)? {
            Walk::Missing | Walk::Dir => return Ok(None),
            Walk::File(host) => {
                return match fs::read(&host) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == IoKind::NotFound => Ok(None),
                    Err(e) => Err(io_err(&host)(e)),
                };
            }
            Walk::Symlink { target, consumed } => {
                let base: Vec<String> = if target.is_absolute() {
                    Vec::new()
                } else {
                    comps[..consumed - 1].to_vec()
                };
                let target = target.to_string_lossy().into_owned();
                let rest = comps[consumed..].to_vec();
                comps = normalize(
                    base.iter()
                        .map(String::as_str)
                        .chain(target.split('/'))
                        .chain(rest.iter().map(String::as_str)),
                );
            }
        }
    }
    Ok(None)
}

/// Lexical clean-up: drops empty and `.` components, applies `..` (never above the root).
fn normalize<'a>(parts: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        match p {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p.to_owned()),
        }
    }
    out
}

fn walk(layers: &[PathBuf], comps: &[String]) -> Result<Walk, SpecError> {
    // Layers (indices, top first) in which the directory reached so far is visible.
    let mut visible: Vec<usize> = (0..layers.len()).rev().collect();
    let mut rel = PathBuf::new();
    for (i, name) in comps.iter().enumerate() {
        rel.push(name);
        let mut dirs = Vec::new();
        for &layer in &visible {
            let host = layers[layer].join(&rel);
            let meta = match fs::symlink_metadata(&host) {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), IoKind::NotFound | IoKind::NotADirectory) => {
                    continue;
                }
                Err(e) => return Err(io_err(&host)(e)),
            };
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                break; // whiteout: hides this name in the layers below
            }
            if ft.is_dir() {
                dirs.push(layer);
                if is_opaque(&host) {
                    break;
                }
                continue;
            }
            if !dirs.is_empty() {
                break; // a non-directory below a directory is hidden, and so is all beneath
            }
            if ft.is_symlink() {
                let target = fs::read_link(&host).map_err(io_err(&host))?;
                return Ok(Walk::Symlink {
                    target,
                    consumed: i + 1,
                });
            }
            return Ok(if i + 1 == comps.len() {
                Walk::File(host)
            } else {
                Walk::Missing
            });
        }
        if dirs.is_empty() {
            return Ok(Walk::Missing);
        }
        visible = dirs;
    }
    Ok(Walk::Dir)
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 8];
    // SAFETY: both pointers are valid for the given lengths; the kernel writes at most
    // `value.len()` bytes.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{Layers, can_set_trusted_xattr};

    #[test]
    fn top_layer_wins() {
        let l = Layers::new(2);
        l.write(0, "etc/passwd", "bottom");
        l.write(1, "etc/passwd", "top");
        assert_eq!(
            read_file(&l.dirs(), "etc/passwd").unwrap().unwrap(),
            b"top".to_vec()
        );
        assert_eq!(
            read_file(&l.dirs(), "/etc/passwd").unwrap().unwrap(),
            b"top".to_vec()
        );
    }

    #[test]
    fn lower_layer_file_visible_through_upper_dir() {
        let l = Layers::new(2);
        l.write(0, "etc/group", "g");
        l.write(1, "etc/passwd", "p");
        assert_eq!(read_file(&l.dirs(), "etc/group").unwrap().unwrap(), b"g");
        assert_eq!(read_file(&l.dirs(), "etc/nothing").unwrap(), None);
        assert_eq!(read_file(&l.dirs(), "etc").unwrap(), None);
    }

    #[test]
    fn whiteout_hides_lower_file_and_dir() {
        let l = Layers::new(3);
        l.write(0, "etc/passwd", "old");
        l.write(0, "var/x/f", "old");
        l.whiteout(1, "etc/passwd");
        l.whiteout(1, "var/x");
        assert_eq!(read_file(&l.dirs(), "etc/passwd").unwrap(), None);
        assert_eq!(read_file(&l.dirs(), "var/x/f").unwrap(), None);
        // A still higher layer can bring the file back.
        l.write(2, "etc/passwd", "new");
        assert_eq!(read_file(&l.dirs(), "etc/passwd").unwrap().unwrap(), b"new");
    }

    #[test]
    fn file_replacing_dir_hides_lower_contents() {
        let l = Layers::new(2);
        l.write(0, "etc/passwd", "old");
        l.write(1, "etc", "not a dir");
        assert_eq!(read_file(&l.dirs(), "etc/passwd").unwrap(), None);
    }

    #[test]
    fn opaque_dir_hides_lower_contents() {
        if !can_set_trusted_xattr() {
            eprintln!("skipped: setting trusted.* xattrs needs CAP_SYS_ADMIN");
            return;
        }
        let l = Layers::new(2);
        l.write(0, "etc/passwd", "old");
        l.write(0, "etc/group", "old");
        l.write(1, "etc/group", "new");
        l.opaque(1, "etc");
        assert_eq!(read_file(&l.dirs(), "etc/passwd").unwrap(), None);
        assert_eq!(read_file(&l.dirs(), "etc/group").unwrap().unwrap(), b"new");
    }

    #[test]
    fn symlinks_resolve_inside_the_image() {
        let l = Layers::new(2);
        l.write(0, "usr/lib/passwd", "real");
        l.symlink(1, "etc/passwd", "/usr/lib/passwd");
        l.symlink(1, "etc/group", "../usr/lib/passwd");
        l.symlink(1, "etc/escape", "../../../../usr/lib/passwd");
        l.symlink(1, "cfg", "etc");
        l.symlink(1, "loop", "loop");
        let d = l.dirs();
        assert_eq!(read_file(&d, "etc/passwd").unwrap().unwrap(), b"real");
        assert_eq!(read_file(&d, "etc/group").unwrap().unwrap(), b"real");
        assert_eq!(read_file(&d, "etc/escape").unwrap().unwrap(), b"real");
        assert_eq!(read_file(&d, "cfg/passwd").unwrap().unwrap(), b"real");
        assert_eq!(read_file(&d, "loop").unwrap(), None);
    }

    #[test]
    fn no_layers_no_file() {
        assert_eq!(read_file(&[], "etc/passwd").unwrap(), None);
    }
}
