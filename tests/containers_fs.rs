//! Containers of one image are isolated from each other: each has its own upperdir, removed with
//! the container, and the shared layer directories are never written. Mount targets stay inside
//! the rootfs; image volumes. Needs root.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata::cri::v1 as cri;
use support::cri::{Env, Pod};
use support::fixtures::busybox_image;
use support::image::{Entry, Layer};

fn bind(host: &Path, container: &str, readonly: bool) -> cri::Mount {
    cri::Mount {
        container_path: container.into(),
        host_path: host.to_string_lossy().into_owned(),
        readonly,
        ..Default::default()
    }
}
/// Everything about a directory tree that a write could change: per path, the type, mode,
/// owner, size, mtime, ctime, link target or content hash, and extended attributes.
fn tree_digest(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let md = std::fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let what = if ft.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            stack.extend(entries);
            "dir".to_owned()
        } else if ft.is_symlink() {
            format!("link {}", std::fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            format!(
                "file {}",
                hex::encode(Sha256::digest(std::fs::read(&path).unwrap()))
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {}", md.rdev())
        } else {
            "other".to_owned()
        };
        out.insert(
            path.strip_prefix(root).unwrap().to_owned(),
            format!(
                "{what} mode={:o} uid={} gid={} size={} nlink={} mtime={}.{} ctime={}.{} xattrs={:?}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.size(),
                md.nlink(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec(),
                xattrs(&path)
            ),
        );
    }
    out
}

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer of the given size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let cname = std::ffi::CString::new(name).unwrap();
            let mut value = vec![0u8; 65536];
            // SAFETY: valid strings and buffer.
            let len = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    cname.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            value.truncate(len.max(0) as usize);
            (String::from_utf8_lossy(name).into_owned(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_one_image_are_isolated_and_layers_untouched() {
    let env = Env::shared();
    // An image of its own, so that no other test's pull changes its layer directories.
    let name = "strata-test/isolation:1";
    busybox_image([Layer::entries(vec![
        Entry::dir("data"),
        Entry::file("data/original", "from the image\n"),
    ])])
    .push(&env.registry, name)
    .await;
    let image = env.image(name);
    env.pull(&image).await;
    let layers_root = env.daemon.root().join("layers");
    let before: BTreeMap<PathBuf, BTreeMap<PathBuf, String>> = std::fs::read_dir(&layers_root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| (p.clone(), tree_digest(&p)))
        .collect();
    assert!(
        !before.is_empty(),
        "no layer directories in {}",
        layers_root.display()
    );

    let pod = Pod::start(&env.daemon, Default::default()).await;
    let writer = pod
        .run_ok(pod.sh(
            "writer",
            &image,
            "echo mine > /written; echo changed > /data/original; rm /bin/wc; \
             mkdir -p /etc/new; chmod 700 /data; touch /data; cat /data/original",
        ))
        .await;
    assert_eq!(writer.stdout, "changed\n");
    let (_, info) = pod.status_verbose(&writer.id).await;
    let upper = PathBuf::from(info["upperDir"].as_str().expect("upperDir"));
    assert!(upper.join("written").exists(), "{}", upper.display());
    let data_dir = upper.parent().unwrap().to_owned();
    assert_eq!(
        data_dir,
        env.daemon.root().join("containers").join(&writer.id)
    );

    let reader = pod
        .run_ok(pod.sh(
            "reader",
            &image,
            "[ -e /written ] && echo sees-written; cat /data/original; ls /bin/wc; \
             [ -d /etc/new ] && echo sees-new; stat -c %a /data",
        ))
        .await;
    assert_eq!(
        reader.stdout, "from the image\n/bin/wc\n755\n",
        "{reader:#?}"
    );

    pod.remove(&writer.id).await.unwrap();
    assert!(
        !data_dir.exists(),
        "{} left after RemoveContainer",
        data_dir.display()
    );
    let state_dir = env.daemon.dir().join("state").join("c").join(&writer.id);
    assert!(!state_dir.exists(), "{} left", state_dir.display());
    pod.remove(&reader.id).await.unwrap();

    for (dir, digest) in before {
        let after = tree_digest(&dir);
        if after != digest {
            let changed: Vec<_> = after
                .iter()
                .filter(|(p, v)| digest.get(*p) != Some(v))
                .map(|(p, v)| format!("{}: {v} (was {:?})", p.display(), digest.get(p)))
                .chain(
                    digest
                        .keys()
                        .filter(|p| !after.contains_key(*p))
                        .map(|p| format!("{}: removed", p.display())),
                )
                .collect();
            panic!("layer {} changed: {changed:#?}", dir.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_targets_stay_inside_the_rootfs() {
    let env = Env::shared();
    let outside = tempfile::tempdir().unwrap();
    let escape = format!("../../../../../../../..{}", outside.path().display());
    let name = "strata-test/symlink-escape:1";
    busybox_image([Layer::entries(vec![
        Entry::symlink("escape", escape),
        Entry::symlink("abs-escape", outside.path().to_string_lossy()),
    ])])
    .push(&env.registry, name)
    .await;
    let image = env.image(name);
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), "bound\n").unwrap();
    let mut c = pod.sh("escape", &image, "cat /escape/m/f /abs-escape/n/f");
    c.mounts = vec![
        bind(src.path(), "/escape/m", true),
        bind(src.path(), "/abs-escape/n", true),
    ];
    let ran = pod.run(c).await;
    // Whatever the runtime makes of the symlinks, nothing may appear outside the rootfs.
    let leaked: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        leaked.is_empty(),
        "mount targets escaped the rootfs: {leaked:?} {ran:#?}"
    );
    assert_eq!(ran.status.exit_code, 0, "{ran:#?}");
    assert_eq!(ran.stdout, "bound\nbound\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_volume_mounts_a_pulled_image_read_only() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let name = "strata-test/volume-content:1";
    busybox_image([Layer::entries(vec![
        Entry::dir("data"),
        Entry::dir("data/sub"),
        Entry::file("data/sub/f", "in the image\n"),
    ])])
    .push(&env.registry, name)
    .await;
    let volume = env.image(name);
    let volume_ref = env.pull(&volume).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let mut c = pod.sh(
        "image-volume",
        &image,
        "cat /vol/sub/f /whole/data/sub/f; touch /vol/x 2>&1 || echo refused",
    );
    let image_mount = |path: &str, sub: &str| cri::Mount {
        container_path: path.into(),
        image: Some(cri::ImageSpec {
            image: volume.clone(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        readonly: true,
        ..Default::default()
    };
    c.mounts = vec![image_mount("/vol", "data"), image_mount("/whole", "")];
    let id = pod.create(c).await;
    let id = id.unwrap_or_else(|e| panic!("image volume: {e:?}"));
    pod.start_container(&id).await.unwrap();
    let status = pod.wait_exited(&id, Duration::from_secs(20)).await;
    let out = support::cri::stream(&pod.log("image-volume"), "stdout");
    assert_eq!(status.exit_code, 0, "{out}");
    assert!(out.starts_with("in the image\nin the image\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // ContainerStatus names the image each volume shows by the ref PullImage returned.
    let refs: Vec<_> = status
        .mounts
        .iter()
        .map(|m| m.image.as_ref().map(|i| i.image_ref.as_str()))
        .collect();
    assert_eq!(
        refs,
        vec![Some(volume_ref.as_str()); 2],
        "{:?}",
        status.mounts
    );
}
