//! A small real root filesystem from Debian's dynamically linked busybox.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BUSYBOX: &str = "/bin/busybox";

/// Applets linked to `/bin/busybox` in [`busybox_rootfs`].
pub const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "id", "true", "false", "env", "wget", "nc", "mkdir",
    "touch", "grep", "hostname", "stat", "head", "wc", "dd", "readlink", "kill", "rm", "unshare",
];

/// Builds a minimal root filesystem in `dir` (which must exist): `/bin/busybox` with hard
/// links for [`APPLETS`], the shared libraries `ldd /bin/busybox` lists at their paths (and
/// the dynamic loader), `/etc/passwd` and `/etc/group` with root (0), nobody (65534) and
/// www-data (33), `/tmp` with mode 1777, and empty `/proc`, `/sys`, `/dev`, `/root`.
///
/// Panics if `/bin/busybox` is missing (`apt-get install busybox`).
pub fn busybox_rootfs(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox"
    );
    let mkdir = |rel: &str, mode: u32| {
        let p = dir.join(rel);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for d in ["bin", "etc", "proc", "sys", "dev", "var", "usr/bin"] {
        mkdir(d, 0o755);
    }
    mkdir("root", 0o700);
    mkdir("tmp", 0o1777);

    let busybox = dir.join("bin/busybox");
    std::fs::copy(BUSYBOX, &busybox).unwrap();
    std::fs::set_permissions(&busybox, std::fs::Permissions::from_mode(0o755)).unwrap();
    for applet in APPLETS {
        let link = dir.join("bin").join(applet);
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&busybox, &link).unwrap();
    }

    for lib in shared_libraries(Path::new(BUSYBOX)) {
        let rel = lib.strip_prefix("/").unwrap();
        let dest = dir.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        // Copies the file a symlink points at, under the symlink's name.
        std::fs::copy(&lib, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", lib.display()));
    }

    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         www-data:x:33:33:www-data:/var/www:/bin/false\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\nnobody:x:65534:\n",
    )
    .unwrap();
}

/// The libraries `ldd` lists for `binary`, loader included, as absolute paths.
pub fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap_or_else(|e| panic!("running ldd: {e}"));
    assert!(out.status.success(), "ldd {}: {out:?}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rhs)) => rhs.trim().split(' ').next()?,
                None => line.split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}
