//! CRI `PullImage` through a real `strata serve` against a real registry: image formats,
//! compressions and reference forms, what the layer directories hold, whiteouts under a real
//! overlay mount, and concurrent pulls sharing layers. Registry auth, mirrors and redirects are
//! in `image_pull_registries.rs`.

mod daemon_helpers;
mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use daemon_helpers::{
    assert_stored, layer_dirs, layer_paths, list, noise, pull, pull_counters, status,
};
use support::daemon::Daemon;
use support::image::{Compression, Entry, EntryKind, Format, Image, Index, Layer};
use support::registry::{Registry, RegistryOptions};

/// Layer entries covering what the unpacker must reproduce: modes (setuid included), owners,
/// a private directory, relative and absolute symlinks, a hard link.
fn rich_entries() -> Vec<Entry> {
    vec![
        Entry::dir("etc"),
        Entry::file("etc/hello", "hello\n"),
        Entry::file("etc/shadow", "root:*:0:0\n")
            .mode(0o640)
            .owner(0, 42),
        Entry::symlink("etc/greeting", "hello"),
        Entry::symlink("abs-link", "/etc/hello"),
        Entry::executable("bin/tool", b"#!/bin/sh\necho tool\n"),
        Entry::executable("bin/su", b"not really su").mode(0o4755),
        Entry::hardlink("bin/tool-again", "bin/tool"),
        Entry::dir("home/user").mode(0o700).owner(1000, 1000),
        Entry::file("home/user/notes", "private\n")
            .mode(0o600)
            .owner(1000, 1001),
        Entry::dir("tmp").mode(0o1777),
    ]
}

/// Asserts that layer directory `dir` holds exactly `entries` (and the parent directories they
/// imply), with their content, mode, owner and link targets.
fn assert_layer_matches(dir: &Path, entries: &[Entry]) {
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for e in entries {
        let mut path = Path::new(&e.path);
        expected.insert(e.path.clone());
        while let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            expected.insert(parent.to_string_lossy().into_owned());
            path = parent;
        }
    }
    assert_eq!(tree(dir), expected, "entries of {}", dir.display());
    for e in entries {
        let path = dir.join(&e.path);
        let meta = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let what = format!("{} in {}", e.path, dir.display());
        match &e.kind {
            EntryKind::File(content) => {
                assert!(meta.is_file(), "{what}: not a file");
                assert_eq!(&std::fs::read(&path).unwrap(), content, "{what}: content");
            }
            EntryKind::Dir => assert!(meta.is_dir(), "{what}: not a directory"),
            EntryKind::Symlink(target) => {
                assert!(meta.file_type().is_symlink(), "{what}: not a symlink");
                assert_eq!(
                    std::fs::read_link(&path).unwrap(),
                    PathBuf::from(target),
                    "{what}: target"
                );
                continue; // a symlink's mode is always 0777; its owner is checked below
            }
            EntryKind::Hardlink(target) => {
                let first = std::fs::symlink_metadata(dir.join(target)).unwrap();
                assert_eq!(
                    meta.ino(),
                    first.ino(),
                    "{what}: not a hard link to {target}"
                );
                continue; // shares the target's metadata
            }
            EntryKind::Fifo => assert!(meta.file_type().is_fifo(), "{what}"),
            EntryKind::CharDevice(..) | EntryKind::BlockDevice(..) => {}
        }
        assert_eq!(
            meta.mode() & 0o7777,
            e.mode,
            "{what}: mode {:o}",
            meta.mode()
        );
        assert_eq!(
            (meta.uid() as u64, meta.gid() as u64),
            (e.uid, e.gid),
            "{what}: owner"
        );
    }
}

/// Relative paths of everything below `dir`.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.insert(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

#[tokio::test]
async fn oci_image_with_gzip_zstd_and_plain_layers() {
    let registry = Registry::start(RegistryOptions::default());
    let zstd = vec![Entry::file("data/z.txt", "zstd layer\n").owner(7, 8)];
    let plain = vec![
        Entry::dir("data").mode(0o750),
        Entry::file("data/plain.bin", [0u8, 1, 2, 255]).mode(0o444),
    ];
    let pushed = Image::oci()
        .layer(Layer::entries(rich_entries()).compression(Compression::Gzip))
        .layer(Layer::entries(zstd.clone()).compression(Compression::Zstd))
        .layer(Layer::entries(plain.clone()).compression(Compression::None))
        .cmd(["/bin/tool"])
        .push(&registry, "formats/oci:v1")
        .await;
    let daemon = Daemon::start("");

    let id = pull(&daemon, &pushed.reference).await.expect("PullImage");
    assert_eq!(
        id,
        pushed.config_digest.to_string(),
        "image_ref is the image id"
    );
    assert_stored(
        &daemon,
        &id,
        &[pushed.reference.as_str()],
        &[pushed.digest_reference().as_str()],
    )
    .await;

    let paths = layer_paths(&daemon, &id).await;
    assert_eq!(paths.len(), 3);
    assert_layer_matches(&paths[0], &rich_entries());
    assert_layer_matches(&paths[1], &zstd);
    assert_layer_matches(&paths[2], &plain);
    let info = daemon_helpers::status_info(&daemon, &id).await;
    let diff_ids: Vec<String> = pushed.diff_ids().iter().map(|d| d.to_string()).collect();
    let reported: Vec<&str> = info["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diffID"].as_str().unwrap())
        .collect();
    assert_eq!(reported, diff_ids);
    assert_eq!(layer_dirs(&daemon).len(), 3);
    daemon_helpers::assert_tmp_empty(&daemon);

    // Pulling again fetches nothing.
    let (fetched, _) = pull_counters(&daemon).await;
    assert_eq!(pull(&daemon, &pushed.reference).await.unwrap(), id);
    assert_eq!(pull_counters(&daemon).await.0, fetched);
    assert_eq!(list(&daemon).await.len(), 1);
}

#[tokio::test]
async fn docker_image_by_digest_then_by_tag_at_digest() {
    let registry = Registry::start(RegistryOptions::default());
    let entries = vec![Entry::file("etc/os-release", "ID=strata\n")];
    let pushed = Image::docker()
        .layer(Layer::entries(entries.clone()))
        .layer(Layer::entries(rich_entries()).compression(Compression::None))
        .push(&registry, "formats/docker:1.0")
        .await;
    let daemon = Daemon::start("");

    let by_digest = pushed.digest_reference();
    let id = pull(&daemon, &by_digest).await.expect("pull by digest");
    assert_eq!(id, pushed.config_digest.to_string());
    assert_stored(&daemon, &id, &[], &[by_digest.as_str()]).await;

    let tag_at_digest = format!("{}@{}", pushed.reference, pushed.manifest_digest);
    assert_eq!(pull(&daemon, &tag_at_digest).await.unwrap(), id);
    assert_stored(
        &daemon,
        &id,
        &[pushed.reference.as_str()],
        &[by_digest.as_str()],
    )
    .await;

    let paths = layer_paths(&daemon, &id).await;
    assert_layer_matches(&paths[0], &entries);
    assert_layer_matches(&paths[1], &rich_entries());
    // tag@digest looks up the digest.
    assert_eq!(status(&daemon, &tag_at_digest).await.unwrap().id, id);
}

async fn pull_index(format: Format, compression: Compression) {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Index::amd64_arm64(format, compression)
        .push(&registry, "multi/arch:2")
        .await;
    let amd64 = pushed.image("amd64");
    let daemon = Daemon::start("");

    let id = pull(&daemon, &pushed.reference).await.expect("PullImage");
    assert_eq!(id, amd64.config_digest.to_string(), "the amd64 image");
    let repo_digest = format!("{}@{}", pushed.name, pushed.digest);
    assert_stored(
        &daemon,
        &id,
        &[pushed.reference.as_str()],
        &[repo_digest.as_str()],
    )
    .await;
    let paths = layer_paths(&daemon, &id).await;
    assert_eq!(paths.len(), 1);
    assert_eq!(std::fs::read(paths[0].join("arch")).unwrap(), b"amd64\n");

    // By the index digest: the same image, nothing new fetched.
    let (fetched, _) = pull_counters(&daemon).await;
    assert_eq!(pull(&daemon, &repo_digest).await.unwrap(), id);
    assert_eq!(pull_counters(&daemon).await.0, fetched);
    assert_eq!(list(&daemon).await.len(), 1);
    assert_eq!(layer_dirs(&daemon).len(), 1, "arm64 layers are not fetched");
}

#[tokio::test]
async fn oci_index_pulls_the_amd64_image() {
    pull_index(Format::Oci, Compression::Zstd).await;
}

#[tokio::test]
async fn docker_manifest_list_pulls_the_amd64_image() {
    pull_index(Format::Docker, Compression::Gzip).await;
}

/// An overlay mount, unmounted on drop (lazily if busy).
struct OverlayMount(PathBuf);

impl OverlayMount {
    fn read_only(lower_top_first: &[PathBuf], target: &Path) -> Self {
        let lower: Vec<String> = lower_top_first
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let options = format!("lowerdir={}", lower.join(":"));
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(options.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {options} on {}: {e}", target.display()));
        Self(target.to_owned())
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if nix::mount::umount(&self.0).is_err() {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[tokio::test]
async fn whiteouts_apply_under_overlay() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Image::oci()
        .layer(Layer::entries(vec![
            Entry::dir("a"),
            Entry::file("a/keep", "keep\n"),
            Entry::file("a/gone", "gone\n"),
            Entry::dir("b"),
            Entry::file("b/x", "x\n"),
            Entry::file("b/y", "y\n"),
        ]))
        .layer(Layer::entries(vec![
            Entry::whiteout("a/gone"),
            Entry::dir("b"),
            Entry::opaque("b"),
            Entry::file("b/z", "z\n"),
        ]))
        .layer(Layer::files(&[("c", "c\n")]).compression(Compression::Zstd))
        .push(&registry, "whiteouts/app:1")
        .await;
    let daemon = Daemon::start("");
    let id = pull(&daemon, &pushed.reference).await.expect("PullImage");
    let mut lower = layer_paths(&daemon, &id).await;
    assert_eq!(lower.len(), 3);
    lower.reverse(); // overlay wants the topmost first

    let mountpoint = tempfile::Builder::new()
        .prefix("strata-overlay-")
        .tempdir()
        .unwrap();
    let mount = OverlayMount::read_only(&lower, mountpoint.path());
    let merged = tree(mountpoint.path());
    let expected: BTreeSet<String> = ["a", "a/keep", "b", "b/z", "c"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(merged, expected);
    assert_eq!(
        std::fs::read(mountpoint.path().join("b/z")).unwrap(),
        b"z\n"
    );
    assert_eq!(
        std::fs::read(mountpoint.path().join("a/keep")).unwrap(),
        b"keep\n"
    );
    drop(mount);

    // The whiteout is stored the overlayfs way: a 0/0 character device.
    let whiteout = std::fs::symlink_metadata(lower[1].join("a/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
}

/// 4 images over 2 shared base layers, each pulled twice at once: every distinct layer is
/// fetched and unpacked exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_share_layers() {
    let registry = Registry::start(RegistryOptions::default());
    // Incompressible data so the downloads overlap in time.
    let base1 = Layer::files(&[("base/one", noise(1, 1 << 20))]);
    let base2 = Layer::files(&[("base/two", noise(2, 1 << 20))]).compression(Compression::Zstd);
    let mut images = Vec::new();
    for i in 0..4u32 {
        let pushed = Image::oci()
            .layer(base1.clone())
            .layer(base2.clone())
            .layer(Layer::files(&[(
                format!("app{i}"),
                noise(10 + i, 256 << 10),
            )]))
            .push(&registry, &format!("shared/app{i}:1"))
            .await;
        images.push(pushed);
    }
    let daemon = std::sync::Arc::new(Daemon::start(""));

    let pulls = images.iter().chain(images.iter()).map(|image| {
        let daemon = daemon.clone();
        let reference = image.reference.clone();
        let want = image.config_digest.to_string();
        tokio::spawn(async move {
            let id = pull(&daemon, &reference).await;
            (reference, want, id)
        })
    });
    for done in futures::future::join_all(pulls).await {
        let (reference, want, id) = done.unwrap();
        assert_eq!(id.unwrap_or_else(|e| panic!("{reference}: {e:?}")), want);
    }

    let distinct = 2 + images.len();
    assert_eq!(
        pull_counters(&daemon).await.0,
        distinct as u64,
        "layers fetched"
    );
    assert_eq!(layer_dirs(&daemon).len(), distinct);
    assert_eq!(list(&daemon).await.len(), images.len());
    let bases: BTreeSet<Vec<PathBuf>> = {
        let mut out = BTreeSet::new();
        for image in &images {
            out.insert(layer_paths(&daemon, &image.reference).await[..2].to_vec());
        }
        out
    };
    assert_eq!(bases.len(), 1, "all images use the same base directories");
    daemon_helpers::assert_tmp_empty(&daemon);
}
