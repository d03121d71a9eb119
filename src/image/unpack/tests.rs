//! Tests build layers with `tar::Builder` and raw headers (for names `set_path` refuses) and run
//! as root against the real kernel.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::*;
use crate::error::{Classify, ErrorKind};

const MTIME: u64 = 1_600_000_000;

/// A layer under construction.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    /// Appends an entry whose name (and link name) are written as raw bytes into the old header
    /// fields (so `..` and absolute names get through), after `f` has adjusted the header.
    fn raw(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: &[u8],
        data: &[u8],
        f: impl FnOnce(&mut Header),
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        assert!(name.len() <= 100 && link.len() <= 100);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
        f(&mut h);
        h.set_cksum();
        self.0.append(&h, data).expect("append");
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, name.as_bytes(), b"", data, |_| {})
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(EntryType::Directory, name.as_bytes(), b"", b"", |_| {})
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Symlink,
            name.as_bytes(),
            target.as_bytes(),
            b"",
            |_| {},
        )
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Link,
            name.as_bytes(),
            target.as_bytes(),
            b"",
            |_| {},
        )
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.0
            .append_pax_extensions(records.iter().copied())
            .expect("pax");
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        self.0.finish().expect("finish");
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .expect("into_inner")
    }
}

/// A scratch area: `dest` (the layer directory) next to `sentinel`, which must stay empty.
struct Area {
    _tmp: tempfile::TempDir,
    top: PathBuf,
    dest: PathBuf,
    sentinel: PathBuf,
}

impl Area {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let top = tmp.path().to_owned();
        let dest = top.join("dest");
        let sentinel = top.join("sentinel");
        fs::create_dir(&dest).expect("mkdir dest");
        fs::create_dir(&sentinel).expect("mkdir sentinel");
        Self {
            _tmp: tmp,
            top,
            dest,
            sentinel,
        }
    }

    fn unpack(&self, tar: &[u8]) -> Result<UnpackStats, UnpackError> {
        unpack_layer(tar, &self.dest)
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dest.join(rel)
    }

    fn assert_nothing_outside(&self) {
        let inside: Vec<_> = fs::read_dir(&self.sentinel)
            .expect("read sentinel")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(inside.is_empty(), "sentinel got {inside:?}");
        let mut top: Vec<_> = fs::read_dir(&self.top)
            .expect("read top")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        top.sort();
        top.retain(|n| n != "outside");
        assert_eq!(top, ["dest", "sentinel"]);
    }
}

fn lmeta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    sys::lgetxattr(p, name).ok()
}

/// A v2 `security.capability` value granting CAP_NET_BIND_SERVICE (effective + permitted).
fn cap_net_bind_service() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // VFS_CAP_REVISION_2 | EFFECTIVE
    v.extend_from_slice(&(1u32 << 10).to_le_bytes()); // permitted[0]
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable[0]
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted[1]
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable[1]
    v
}

#[test]
fn regular_file_content_mode_owner_mtime() {
    let area = Area::new();
    let tar = Layer::new()
        .raw(
            EntryType::Regular,
            b"etc/hosts",
            b"",
            b"127.0.0.1 localhost\n",
            |h| {
                h.set_mode(0o640);
                h.set_uid(1000);
                h.set_gid(2000);
                h.set_mtime(1_500_000_000);
            },
        )
        .finish();
    let stats = area.unpack(&tar).expect("unpack");
    assert_eq!(
        stats,
        UnpackStats {
            entries: 1,
            bytes: 20
        }
    );
    let p = area.p("etc/hosts");
    assert_eq!(fs::read(&p).expect("read"), b"127.0.0.1 localhost\n");
    let m = lmeta(&p);
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.uid(), m.gid()), (1000, 2000));
    assert_eq!(m.mtime(), 1_500_000_000);
    // The missing parent was created.
    assert!(lmeta(&area.p("etc")).is_dir());
}

#[test]
fn pax_mtime_has_nanoseconds() {
    let area = Area::new();
    let tar = Layer::new()
        .pax(&[("mtime", b"1500000000.25")])
        .file("f", b"x")
        .finish();
    area.unpack(&tar).expect("unpack");
    let m = lmeta(&area.p("f"));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 250_000_000));
}

#[test]
fn directory_mtime_survives_later_writes() {
    let area = Area::new();
    let tar = Layer::new()
        .raw(EntryType::Directory, b"d/", b"", b"", |h| {
            h.set_mtime(1_000_000_000);
            h.set_mode(0o750);
        })
        .file("d/f", b"data")
        .raw(EntryType::Directory, b"d/sub/", b"", b"", |h| {
            h.set_mtime(1_100_000_000)
        })
        .file("d/sub/g", b"data")
        .file("d/.wh.gone", b"")
        .finish();
    area.unpack(&tar).expect("unpack");
    let d = lmeta(&area.p("d"));
    assert_eq!(d.mtime(), 1_000_000_000);
    assert_eq!(d.mode() & 0o7777, 0o750);
    assert_eq!(lmeta(&area.p("d/sub")).mtime(), 1_100_000_000);
}

#[test]
fn setuid_setgid_sticky_kept_with_non_root_owner() {
    let area = Area::new();
    let tar = Layer::new()
        .raw(EntryType::Regular, b"bin/su", b"", b"#!", |h| {
            h.set_mode(0o4755);
            h.set_uid(1000);
            h.set_gid(1000);
        })
        .raw(EntryType::Regular, b"bin/wall", b"", b"#!", |h| {
            h.set_mode(0o2755);
            h.set_uid(0);
            h.set_gid(5);
        })
        .raw(EntryType::Directory, b"tmp/", b"", b"", |h| {
            h.set_mode(0o1777)
        })
        .finish();
    area.unpack(&tar).expect("unpack");
    let su = lmeta(&area.p("bin/su"));
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!(su.uid(), 1000);
    assert_eq!(lmeta(&area.p("bin/wall")).mode() & 0o7777, 0o2755);
    assert_eq!(lmeta(&area.p("tmp")).mode() & 0o7777, 0o1777);
}

#[test]
fn symlink_target_verbatim_owner_and_mtime_not_followed() {
    let area = Area::new();
    let tar = Layer::new()
        .file("target", b"t")
        .raw(
            EntryType::Symlink,
            b"abs",
            b"/no/such/../target",
            b"",
            |h| {
                h.set_uid(123);
                h.set_gid(456);
                h.set_mtime(1_234_567_890);
            },
        )
        .raw(EntryType::Symlink, b"rel", b"target", b"", |h| {
            h.set_uid(7);
            h.set_mtime(1_000_000_001);
        })
        .finish();
    area.unpack(&tar).expect("unpack");
    let abs = area.p("abs");
    assert_eq!(
        fs::read_link(&abs).expect("readlink"),
        Path::new("/no/such/../target")
    );
    let m = lmeta(&abs);
    assert!(m.file_type().is_symlink());
    assert_eq!((m.uid(), m.gid(), m.mtime()), (123, 456, 1_234_567_890));
    let rel = lmeta(&area.p("rel"));
    assert_eq!((rel.uid(), rel.mtime()), (7, 1_000_000_001));
    // The target's own metadata is untouched.
    let target = lmeta(&area.p("target"));
    assert_eq!((target.uid(), target.mtime()), (0, MTIME as i64));
}

#[test]
fn hard_link_shares_inode() {
    let area = Area::new();
    let tar = Layer::new()
        .file("usr/bin/a", b"binary")
        .hardlink("usr/bin/b", "usr/bin/a")
        .hardlink("c", "/usr/bin/a")
        .finish();
    area.unpack(&tar).expect("unpack");
    let a = lmeta(&area.p("usr/bin/a"));
    let b = lmeta(&area.p("usr/bin/b"));
    let c = lmeta(&area.p("c"));
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.ino(), c.ino());
    assert_eq!(a.nlink(), 3);
    assert_eq!(fs::read(area.p("usr/bin/b")).expect("read"), b"binary");
}

#[test]
fn hard_link_to_missing_target_is_invalid() {
    let area = Area::new();
    let tar = Layer::new().hardlink("b", "nope").finish();
    let err = area.unpack(&tar).expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("`b`"), "{err}");
}

#[test]
fn char_device_and_fifo() {
    let area = Area::new();
    let tar = Layer::new()
        .raw(EntryType::Char, b"dev/null", b"", b"", |h| {
            h.set_device_major(1).expect("major");
            h.set_device_minor(3).expect("minor");
            h.set_mode(0o666);
            h.set_uid(5);
        })
        .raw(EntryType::Block, b"dev/loop0", b"", b"", |h| {
            h.set_device_major(7).expect("major");
            h.set_device_minor(0).expect("minor");
            h.set_mode(0o660);
        })
        .raw(EntryType::Fifo, b"run/fifo", b"", b"", |h| {
            h.set_mode(0o620)
        })
        .finish();
    area.unpack(&tar).expect("unpack");
    let null = lmeta(&area.p("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    assert_eq!(null.uid(), 5);
    assert_eq!(null.mtime(), MTIME as i64);
    let lp = lmeta(&area.p("dev/loop0"));
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), libc::makedev(7, 0));
    let fifo = lmeta(&area.p("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);
}

#[test]
fn pax_xattrs_round_trip() {
    let area = Area::new();
    let cap = cap_net_bind_service();
    let tar = Layer::new()
        .pax(&[
            ("SCHILY.xattr.user.foo", b"bar"),
            ("SCHILY.xattr.security.capability", &cap),
        ])
        .raw(EntryType::Regular, b"bin/ping", b"", b"ELF", |h| {
            h.set_mode(0o4755);
            h.set_uid(1000);
            h.set_gid(1000);
        })
        .pax(&[("SCHILY.xattr.user.dir", b"d")])
        .dir("etc/")
        .pax(&[("SCHILY.xattr.trusted.sym", b"s")])
        .symlink("link", "bin/ping")
        .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere")])
        .dir("sneaky/")
        .finish();
    area.unpack(&tar).expect("unpack");
    let ping = area.p("bin/ping");
    assert_eq!(xattr(&ping, "user.foo").as_deref(), Some(&b"bar"[..]));
    assert_eq!(xattr(&ping, "security.capability"), Some(cap));
    let m = lmeta(&ping);
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o4755, 1000));
    assert_eq!(
        xattr(&area.p("etc"), "user.dir").as_deref(),
        Some(&b"d"[..])
    );
    // Set on the symlink itself (setxattrat), not on what it points to.
    assert_eq!(
        xattr(&area.p("link"), "trusted.sym").as_deref(),
        Some(&b"s"[..])
    );
    assert_eq!(xattr(&ping, "trusted.sym"), None);
    // Overlayfs metadata never comes from layer content.
    assert_eq!(xattr(&area.p("sneaky"), "trusted.overlay.redirect"), None);
}

#[test]
fn whiteout_becomes_char_device_0_0() {
    let area = Area::new();
    let tar = Layer::new()
        .dir("etc/")
        .raw(EntryType::Regular, b"etc/.wh.shadow", b"", b"", |h| {
            h.set_uid(0);
        })
        .file(".wh.top", b"")
        .finish();
    let stats = area.unpack(&tar).expect("unpack");
    assert_eq!(stats.entries, 3);
    for p in ["etc/shadow", "top"] {
        let m = lmeta(&area.p(p));
        assert!(m.file_type().is_char_device(), "{p}");
        assert_eq!(m.rdev(), 0, "{p}");
    }
    assert!(fs::symlink_metadata(area.p("etc/.wh.shadow")).is_err());
    assert!(fs::symlink_metadata(area.p(".wh.top")).is_err());
}

#[test]
fn opaque_directory_gets_xattr() {
    let area = Area::new();
    let tar = Layer::new()
        .dir("var/cache/")
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/kept", b"k")
        .file("var/.wh..wh.plnk", b"")
        .finish();
    area.unpack(&tar).expect("unpack");
    let cache = area.p("var/cache");
    assert!(lmeta(&cache).is_dir());
    assert_eq!(
        xattr(&cache, "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(fs::symlink_metadata(cache.join(".wh..wh..opq")).is_err());
    assert!(fs::symlink_metadata(area.p("var/.wh..wh.plnk")).is_err());
    assert_eq!(fs::read(cache.join("kept")).expect("read"), b"k");
    assert_eq!(xattr(&area.p("var"), "trusted.overlay.opaque"), None);
}

#[test]
fn long_names_and_pax_path() {
    let area = Area::new();
    let long_dir = format!("{}/{}", "d".repeat(90), "e".repeat(90));
    let long_file = format!("{long_dir}/{}", "f".repeat(120));
    let long_target = format!("../{}", "t".repeat(150));
    let mut layer = Layer::new();
    // uid/gid are left empty: they read as 0, as in Go's archive/tar.
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(4);
    h.set_mtime(MTIME);
    layer
        .0
        .append_data(&mut h, &long_file, &b"long"[..])
        .expect("append");
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_mtime(MTIME);
    layer
        .0
        .append_link(&mut h, format!("{long_dir}/link"), &long_target)
        .expect("append link");
    let pax_path = format!("pax/{}", "p".repeat(200));
    layer
        .pax(&[("path", pax_path.as_bytes())])
        .file("short-name", b"pax");
    let tar = layer.finish();
    area.unpack(&tar).expect("unpack");
    assert_eq!(fs::read(area.p(&long_file)).expect("read"), b"long");
    assert_eq!(
        fs::read_link(area.p(&format!("{long_dir}/link"))).expect("readlink"),
        Path::new(&long_target)
    );
    assert_eq!(fs::read(area.p(&pax_path)).expect("read"), b"pax");
    assert!(fs::symlink_metadata(area.p("short-name")).is_err());
}

#[test]
fn same_path_twice_second_wins() {
    let area = Area::new();
    let tar = Layer::new()
        .file("f", b"one")
        .raw(EntryType::Regular, b"f", b"", b"two", |h| h.set_mode(0o600))
        .dir("d/")
        .raw(EntryType::Directory, b"d/", b"", b"", |h| h.set_mode(0o700))
        .file("d/inner", b"i")
        .dir("gone/")
        .file("gone/x", b"x")
        .symlink("gone", "f")
        .finish();
    area.unpack(&tar).expect("unpack");
    assert_eq!(fs::read(area.p("f")).expect("read"), b"two");
    assert_eq!(lmeta(&area.p("f")).mode() & 0o7777, 0o600);
    // A directory over a directory keeps its contents and takes the new metadata.
    assert_eq!(lmeta(&area.p("d")).mode() & 0o7777, 0o700);
    assert!(area.p("d/inner").exists());
    // A symlink replaces a whole directory.
    assert_eq!(
        fs::read_link(area.p("gone")).expect("readlink"),
        Path::new("f")
    );
}

#[test]
fn file_replacing_symlink_does_not_write_through_it() {
    let area = Area::new();
    let outside = area.sentinel.join("f");
    let tar = Layer::new()
        .file("target", b"original")
        .symlink("inner", "target")
        .symlink("out", outside.to_str().expect("utf8"))
        .symlink("out-rel", "../sentinel/f")
        .file("inner", b"replaced")
        .file("out", b"replaced")
        .file("out-rel", b"replaced")
        .finish();
    area.unpack(&tar).expect("unpack");
    assert_eq!(fs::read(area.p("target")).expect("read"), b"original");
    for p in ["inner", "out", "out-rel"] {
        let m = lmeta(&area.p(p));
        assert!(m.is_file(), "{p}");
        assert_eq!(fs::read(area.p(p)).expect("read"), b"replaced");
    }
    area.assert_nothing_outside();
}

#[test]
fn absolute_names_are_rooted_in_the_layer() {
    let area = Area::new();
    let tar = Layer::new()
        .file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("./a/./b/../c", b"c")
        .dir("/")
        .dir("./")
        .finish();
    area.unpack(&tar).expect("unpack");
    assert!(area.p("etc/passwd").is_file());
    assert_eq!(fs::read(area.p("a/c")).expect("read"), b"c");
    area.assert_nothing_outside();
}

#[test]
fn old_style_directory_with_trailing_slash() {
    let area = Area::new();
    let tar = Layer::new()
        .raw(EntryType::Regular, b"olddir/", b"", b"", |h| {
            h.as_old_mut().linkflag = [0];
            h.set_mode(0o711);
        })
        .file("olddir/f", b"f")
        .finish();
    area.unpack(&tar).expect("unpack");
    let m = lmeta(&area.p("olddir"));
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o711);
}

#[test]
fn symlink_inside_the_layer_can_be_a_parent() {
    let area = Area::new();
    let tar = Layer::new()
        .dir("usr/")
        .dir("usr/lib/")
        .symlink("lib", "usr/lib")
        .file("lib/libc.so", b"libc")
        .dir("a/")
        .symlink("a/up", "../usr")
        .file("a/up/lib/x", b"x")
        .hardlink("y", "lib/libc.so")
        .finish();
    area.unpack(&tar).expect("unpack");
    assert_eq!(fs::read(area.p("usr/lib/libc.so")).expect("read"), b"libc");
    assert_eq!(fs::read(area.p("usr/lib/x")).expect("read"), b"x");
    assert_eq!(
        lmeta(&area.p("y")).ino(),
        lmeta(&area.p("usr/lib/libc.so")).ino()
    );
    assert!(lmeta(&area.p("lib")).file_type().is_symlink());
}

/// Runs a hostile layer: it must fail with an error naming `entry`, and nothing may appear
/// outside `dest`.
fn assert_hostile(area: &Area, tar: &[u8], entry: &str) -> UnpackError {
    let err = area.unpack(tar).expect_err("hostile layer must fail");
    assert!(
        matches!(err, UnpackError::Escape { .. }),
        "expected an escape error, got {err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains(&format!("`{entry}`")), "{err}");
    area.assert_nothing_outside();
    err
}

#[test]
fn hostile_dotdot_names() {
    for name in [
        "../escape",
        "a/../../escape",
        "/../../sentinel/x",
        "./a/b/../../../sentinel",
    ] {
        let area = Area::new();
        let tar = Layer::new()
            .file("ok", b"fine")
            .raw(EntryType::Regular, name.as_bytes(), b"", b"evil", |_| {})
            .finish();
        assert_hostile(&area, &tar, name);
        assert!(!area.top.join("escape").exists());
    }
}

#[test]
fn hostile_symlink_parent_absolute() {
    let area = Area::new();
    let sentinel = area.sentinel.to_str().expect("utf8").to_owned();
    let tar = Layer::new()
        .symlink("evil", &sentinel)
        .file("evil/pwned", b"evil")
        .finish();
    assert_hostile(&area, &tar, "evil/pwned");

    // The literal case from the field: a link to /tmp.
    let area = Area::new();
    let name = format!("strata-unpack-test-{}", std::process::id());
    let tar = Layer::new()
        .symlink("evil", "/tmp")
        .file(&format!("evil/{name}"), b"evil")
        .finish();
    assert_hostile(&area, &tar, &format!("evil/{name}"));
    assert!(!Path::new("/tmp").join(&name).exists());
}

#[test]
fn hostile_symlink_parent_relative() {
    for (link, target, entry) in [
        ("evil", "../sentinel", "evil/pwned"),
        ("evil", "../../../../../../..", "evil/pwned"),
        ("a/evil", "../../sentinel", "a/evil/pwned"),
        ("evil", "../sentinel", "evil/deeper/pwned"),
    ] {
        let area = Area::new();
        let tar = Layer::new()
            .dir("a/")
            .symlink(link, target)
            .file(entry, b"evil")
            .finish();
        assert_hostile(&area, &tar, entry);
    }
    // Directories, devices and further symlinks through the escaping link fail the same way.
    for kind in [EntryType::Directory, EntryType::Fifo, EntryType::Symlink] {
        let area = Area::new();
        let tar = Layer::new()
            .symlink("evil", "../sentinel")
            .raw(kind, b"evil/x", b"/etc", b"", |_| {})
            .finish();
        assert_hostile(&area, &tar, "evil/x");
    }
}

#[test]
fn hostile_hard_links() {
    let area = Area::new();
    let tar = Layer::new().hardlink("x", "../../etc/passwd").finish();
    assert_hostile(&area, &tar, "x");

    // Through a symlink that leaves the layer: nothing outside gains a link.
    let area = Area::new();
    let outside = area.top.join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("secret"), b"secret").expect("write");
    let tar = Layer::new()
        .symlink("evil", "../outside")
        .hardlink("x", "evil/secret")
        .finish();
    assert_hostile(&area, &tar, "x");
    assert!(fs::symlink_metadata(area.p("x")).is_err());
    assert_eq!(lmeta(&outside.join("secret")).nlink(), 1);

    // A hard link to a symlink links the symlink itself, never what it points to.
    let area = Area::new();
    let tar = Layer::new()
        .symlink("passwd", "/etc/passwd")
        .hardlink("x", "passwd")
        .finish();
    area.unpack(&tar).expect("unpack");
    assert!(lmeta(&area.p("x")).file_type().is_symlink());
    assert_eq!(lmeta(&area.p("x")).ino(), lmeta(&area.p("passwd")).ino());
}

#[test]
fn malformed_archives_are_invalid_arguments() {
    // A member whose data is cut short.
    let mut tar = Layer::new().file("big", &[7u8; 4096]).finish();
    tar.truncate(512 + 1000);
    let area = Area::new();
    let err = area.unpack(&tar).expect_err("truncated");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err:?}");
    assert!(err.to_string().contains("big"), "{err}");

    // A corrupt header checksum.
    let mut tar = Layer::new().file("a", b"a").file("b", b"b").finish();
    tar[1024] ^= 0xff;
    let area = Area::new();
    let err = area.unpack(&tar).expect_err("checksum");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err:?}");

    // A path component that is a file.
    let tar = Layer::new().file("f", b"f").file("f/g", b"g").finish();
    let area = Area::new();
    let err = area.unpack(&tar).expect_err("not a directory");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err:?}");
    assert!(err.to_string().contains("`f/g`"), "{err}");

    // A symlink loop as a parent.
    let tar = Layer::new()
        .symlink("loop", "loop")
        .file("loop/x", b"x")
        .finish();
    let area = Area::new();
    let err = area.unpack(&tar).expect_err("loop");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err:?}");
}

#[test]
fn stream_errors_are_classified() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        }
    }
    let area = Area::new();
    let err = unpack_layer(Failing, &area.dest).expect_err("fails");
    assert!(matches!(err, UnpackError::Read { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Internal);

    // Corrupt gzip data is the layer's fault.
    let area = Area::new();
    let garbage = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff];
    let err = unpack_layer(
        decompress(Compression::Gzip, &garbage[..]).expect("decoder"),
        &area.dest,
    )
    .expect_err("corrupt");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err:?}");
}

fn sample_layer() -> Vec<u8> {
    Layer::new()
        .dir("etc/")
        .file("etc/os-release", b"ID=strata\n")
        .file("big", &vec![0xa5u8; 300 * 1024])
        .finish()
}

fn check_sample(area: &Area, stats: UnpackStats) {
    assert_eq!(stats.entries, 3);
    assert_eq!(stats.bytes, 10 + 300 * 1024);
    assert_eq!(
        fs::read(area.p("etc/os-release")).expect("read"),
        b"ID=strata\n"
    );
    assert_eq!(
        fs::read(area.p("big")).expect("read"),
        vec![0xa5u8; 300 * 1024]
    );
}

#[test]
fn gzip_round_trip_including_multiple_members() {
    let tar = sample_layer();
    let (first, second) = tar.split_at(700);
    let mut gz = Vec::new();
    for part in [first, second] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(part).expect("gzip");
        gz.extend_from_slice(&enc.finish().expect("gzip"));
    }
    let area = Area::new();
    let c = Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip")
        .expect("media type");
    let stats = unpack_layer(decompress(c, &gz[..]).expect("decoder"), &area.dest).expect("unpack");
    check_sample(&area, stats);
}

#[test]
fn zstd_round_trip() {
    let tar = sample_layer();
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    let area = Area::new();
    let c = Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd")
        .expect("media type");
    let stats =
        unpack_layer(decompress(c, &zst[..]).expect("decoder"), &area.dest).expect("unpack");
    check_sample(&area, stats);

    let area = Area::new();
    let stats = unpack_layer(
        decompress(Compression::None, &tar[..]).expect("decoder"),
        &area.dest,
    )
    .expect("unpack");
    check_sample(&area, stats);
}

#[test]
fn media_types() {
    use Compression::*;
    for (mt, c) in [
        ("application/vnd.oci.image.layer.v1.tar", None),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Gzip,
        ),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Gzip,
        ),
        ("Application/VND.OCI.image.layer.v1.tar+GZIP", Gzip),
    ] {
        assert_eq!(Compression::from_media_type(mt).expect(mt), c, "{mt}");
    }
    for mt in [
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        "application/vnd.oci.image.manifest.v1+json",
        "",
    ] {
        let err = Compression::from_media_type(mt).expect_err(mt);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains(mt));
    }
}

#[test]
fn normalise_paths() {
    let mut out = Vec::new();
    for (raw, want) in [
        ("a/b/c", Some("a/b/c")),
        ("/a//b/./c/", Some("a/b/c")),
        ("a/../b", Some("b")),
        ("./", Some("")),
        ("..", None),
        ("a/../..", None),
    ] {
        let ok = apply::normalise(raw.as_bytes(), &mut out);
        let got = ok.then(|| String::from_utf8(out[..out.len() - 1].to_vec()).expect("utf8"));
        assert_eq!(got.as_deref(), want, "{raw}");
    }
}
