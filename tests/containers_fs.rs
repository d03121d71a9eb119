//! A container's filesystem, checked from inside busybox containers through CRI: CRI bind mounts
//! (read-only, read-write, propagation), the pod's /etc files and /dev/shm, /dev, cgroup limits,
//! and isolation between containers of one image (own upperdir, removed with the container;
//! the shared layer directories never written). Needs root.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata::cri::v1 as cri;
use support::cri::{Env, Pod, Ran, cgroup_dirs, cgroup_file, with_resources};
use support::fixtures::busybox_image;
use support::image::{Entry, Layer};

async fn ok(pod: &Pod, config: cri::ContainerConfig) -> Ran {
    let ran = pod.run(config).await;
    assert_eq!(ran.status.exit_code, 0, "{ran:#?}");
    ran
}

fn bind(host: &Path, container: &str, readonly: bool) -> cri::Mount {
    cri::Mount {
        container_path: container.into(),
        host_path: host.to_string_lossy().into_owned(),
        readonly,
        ..Default::default()
    }
}

/// The mount options (field 6) of the mount at `target` in a mountinfo text.
fn mount_options<'a>(mountinfo: &'a str, target: &str) -> Option<&'a str> {
    mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(target))
        .last()
        .and_then(|l| l.split(' ').nth(5))
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_mounts_readonly_and_readwrite() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("in"), "from the host\n").unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "single file\n").unwrap();

    let mut c = pod.sh(
        "binds",
        &image,
        "cat /ro/in /file; echo written > /rw/out; \
         touch /ro/x 2>&1 || echo ro-refused; \
         grep -E ' /(ro|rw|file) ' /proc/self/mountinfo",
    );
    c.mounts = vec![
        bind(rw.path(), "/rw", false),
        bind(ro.path(), "/ro", true),
        bind(file.path(), "/file", true),
    ];
    let ran = ok(&pod, c).await;
    let out = &ran.stdout;
    assert!(
        out.starts_with("from the host\nsingle file\n"),
        "{ran:#?}"
    );
    assert!(out.contains("Read-only file system"), "{ran:#?}");
    assert!(out.contains("ro-refused\n"), "{ran:#?}");
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).unwrap(),
        "written\n"
    );
    assert!(!ro.path().join("x").exists());
    let opts = |t: &str| mount_options(out, t).unwrap_or_else(|| panic!("{t} in {out}"));
    assert!(opts("/ro").split(',').any(|o| o == "ro"), "{out}");
    assert!(opts("/file").split(',').any(|o| o == "ro"), "{out}");
    assert!(opts("/rw").split(',').any(|o| o == "rw"), "{out}");
    // The status reports the mounts.
    let status = pod.status(&ran.id).await;
    assert_eq!(status.mounts.len(), 3, "{status:?}");
}

/// A directory bind-mounted on itself and made shared, so mounts below it propagate; unmounted
/// (with everything below) on drop.
struct SharedDir(tempfile::TempDir);

impl SharedDir {
    fn new() -> Self {
        use nix::mount::{MsFlags, mount};
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some(dir.path()),
            dir.path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            dir.path(),
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        SharedDir(dir)
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.0.path().to_string_lossy().into_owned();
        let mut targets: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|t| t.starts_with(&prefix))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_propagation() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;

    // HostToContainer (rslave): a mount made on the host after the start shows inside.
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let shared = SharedDir::new();
    std::fs::create_dir(shared.0.path().join("sub")).unwrap();
    let mut c = pod.sh(
        "rslave",
        &image,
        "i=0; while [ ! -e /prop/sub/marker ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
         cat /prop/sub/marker",
    );
    let mut m = bind(shared.0.path(), "/prop", false);
    m.propagation = cri::MountPropagation::PropagationHostToContainer as i32;
    c.mounts = vec![m];
    let id = pod.launch(c).await;
    let sub = shared.0.path().join("sub");
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    std::fs::write(sub.join("marker"), "propagated\n").unwrap();
    let status = pod.wait_exited(&id, Duration::from_secs(20)).await;
    let log = support::cri::stream(&pod.log("rslave"), "stdout");
    assert_eq!((status.exit_code, log.as_str()), (0, "propagated\n"));

    // A private mount of a private source: nothing propagates.
    let private = tempfile::tempdir().unwrap();
    let mut c = pod.sh("private", &image, "grep -c ' /priv' /proc/self/mountinfo");
    let mut m = bind(private.path(), "/priv", false);
    m.propagation = cri::MountPropagation::PropagationPrivate as i32;
    c.mounts = vec![m.clone()];
    let ran = ok(&pod, c).await;
    assert_eq!(ran.stdout, "1\n");

    // HostToContainer on a private source is refused (as containerd does).
    m.propagation = cri::MountPropagation::PropagationHostToContainer as i32;
    let mut c = pod.sh("rslave-private", &image, "true");
    c.mounts = vec![m];
    let err = pod.create(c).await.expect_err("rslave of a private mount");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_files_shm_and_devices() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            hostname: "fs-pod".into(),
            dns_config: Some(cri::DnsConfig {
                servers: vec!["10.0.0.10".into(), "10.0.0.11".into()],
                searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            ..Default::default()
        },
    )
    .await;
    let ran = ok(
        &pod,
        pod.sh(
            "etc",
            &image,
            "cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf",
        ),
    )
    .await;
    let parts: Vec<&str> = ran.stdout.split("---\n").collect();
    assert_eq!(parts[0], "fs-pod\n", "{ran:#?}");
    assert!(
        parts[1].lines().any(|l| l.split_whitespace().eq(["127.0.0.1", "localhost"])),
        "{ran:#?}"
    );
    assert!(
        parts[1].lines().any(|l| l.split_whitespace().last() == Some("fs-pod")),
        "{ran:#?}"
    );
    let resolv = parts[2];
    for want in [
        "nameserver 10.0.0.10",
        "nameserver 10.0.0.11",
        "search ns.svc.cluster.local cluster.local",
        "options ndots:5",
    ] {
        assert!(resolv.lines().any(|l| l == want), "{want}: {resolv}");
    }

    // /dev/shm is the pod's: what one container writes, a later one reads.
    ok(
        &pod,
        pod.sh("shm-writer", &image, "echo shared > /dev/shm/note"),
    )
    .await;
    let ran = ok(&pod, pod.sh("shm-reader", &image, "cat /dev/shm/note")).await;
    assert_eq!(ran.stdout, "shared\n");
    // Another pod has its own /dev/shm.
    let other = Pod::start(&env.daemon, Default::default()).await;
    let ran = other
        .run(other.sh("shm-other", &image, "cat /dev/shm/note"))
        .await;
    assert_ne!(ran.status.exit_code, 0, "{ran:#?}");

    // /dev: the default nodes, usable; /dev/pts, /dev/shm, /dev/mqueue mounted; no host disks.
    let ran = ok(
        &pod,
        pod.sh(
            "devices",
            &image,
            "for d in null zero full random urandom tty; do [ -c /dev/$d ] || echo missing $d; done; \
             echo x > /dev/null || echo null-broken; \
             echo zero=$(head -c 4 /dev/zero | wc -c); \
             echo urandom=$(head -c 16 /dev/urandom | wc -c); \
             echo fd=$(readlink /dev/fd) stdin=$(readlink /dev/stdin); \
             [ -c /dev/pts/ptmx ] || echo missing ptmx; \
             ls /dev/vda 2>/dev/null && echo host-disk-visible; \
             echo ---; grep -E ' /dev(/pts|/shm|/mqueue)? ' /proc/self/mountinfo",
        ),
    )
    .await;
    let (out, mountinfo) = ran.stdout.split_once("---\n").unwrap();
    assert!(!out.contains("missing"), "{out}");
    assert!(!out.contains("broken"), "{out}");
    assert!(!out.contains("host-disk-visible"), "{out}");
    assert!(out.contains("zero=4\n") && out.contains("urandom=16\n"), "{out}");
    assert!(out.contains("fd=/proc/self/fd stdin=/proc/self/fd/0\n"), "{out}");
    // "<target> <fstype>" from mountinfo lines (the type follows the " - " separator).
    let mounts: Vec<String> = mountinfo
        .lines()
        .map(|l| {
            let target = l.split(' ').nth(4).unwrap();
            let fstype = l.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
            format!("{target} {fstype}")
        })
        .collect();
    for want in [
        "/dev tmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/dev/mqueue mqueue",
    ] {
        assert!(mounts.iter().any(|l| l == want), "{want}: {mountinfo}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cgroup_limits() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let script = if v2 {
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; sleep 30"
    } else {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
         /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares; sleep 30"
    };
    let c = with_resources(
        pod.sh("limits", &image, script),
        cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            cpu_shares: 512,
            ..Default::default()
        },
    );
    let id = pod.launch(c).await;
    let (_, info) = pod.status_verbose(&id).await;
    let cgroup_path = info["cgroupPath"].as_str().expect("cgroupPath").to_owned();
    let want_inside: &[&str] = if v2 {
        &["67108864", "50000 100000"]
    } else {
        &["67108864", "50000", "100000", "512"]
    };
    let mut out = String::new();
    for _ in 0..100 {
        out = support::cri::stream(&pod.log("limits"), "stdout");
        if out.lines().count() >= want_inside.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(out.lines().collect::<Vec<_>>(), want_inside, "inside: {out}");

    // The same from the host, in the container's own cgroup.
    let read = |controller: &str, file: &str| {
        std::fs::read_to_string(cgroup_file(&cgroup_path, controller, file))
            .unwrap_or_else(|e| panic!("{cgroup_path} {file}: {e}"))
            .trim()
            .to_owned()
    };
    if v2 {
        assert_eq!(read("", "memory.max"), "67108864");
        assert_eq!(read("", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(read("cpu", "cpu.shares"), "512");
    }
    // The init is in it.
    let pid = info["pid"].as_i64().expect("pid");
    let procs = read("pids", "cgroup.procs");
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "{pid} not in {procs}"
    );
    pod.stop(&id, 0).await.unwrap();
    pod.remove(&id).await.unwrap();
    assert!(
        cgroup_dirs(&cgroup_path).is_empty(),
        "cgroup {cgroup_path} left after RemoveContainer: {:?}",
        cgroup_dirs(&cgroup_path)
    );
}

/// CRI has no per-container pids limit: kubelet limits the pod's cgroup (`cgroup_parent`).
/// Containers must live below it, so the limit holds for them.
#[tokio::test(flavor = "multi_thread")]
async fn pod_cgroup_parent_pids_limit() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    // What kubelet does: the pod cgroup exists, with its limits, before RunPodSandbox.
    let parent = format!("{}/{}", env.daemon.cgroup_parent, support::cri::unique("kubepod"));
    let pids_max = cgroup_file(&parent, "pids", "pids.max");
    std::fs::create_dir_all(pids_max.parent().unwrap()).unwrap();
    std::fs::write(&pids_max, "6").unwrap();
    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: parent.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let c = pod.sh(
        "forks",
        &image,
        "i=0; while [ $i -lt 12 ]; do sleep 2 & i=$((i+1)); done; echo done",
    );
    let id = pod.launch(c).await;
    let (_, info) = pod.status_verbose(&id).await;
    let cgroup_path = info["cgroupPath"].as_str().unwrap().to_owned();
    assert!(
        cgroup_path.starts_with(&format!("{parent}/")),
        "{cgroup_path} not below {parent}"
    );
    let status = pod.wait_exited(&id, Duration::from_secs(20)).await;
    let log = pod.log("forks");
    let stderr = support::cri::stream(&log, "stderr");
    assert!(
        stderr.contains("can't fork"),
        "12 children under pids.max=6: {status:?} {log:?}"
    );
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
            format!("file {}", hex::encode(Sha256::digest(std::fs::read(&path).unwrap())))
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
    assert!(!before.is_empty(), "no layer directories in {}", layers_root.display());

    let pod = Pod::start(&env.daemon, Default::default()).await;
    let writer = ok(
        &pod,
        pod.sh(
            "writer",
            &image,
            "echo mine > /written; echo changed > /data/original; rm /bin/wc; \
             mkdir -p /etc/new; chmod 700 /data; touch /data; cat /data/original",
        ),
    )
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

    let reader = ok(
        &pod,
        pod.sh(
            "reader",
            &image,
            "[ -e /written ] && echo sees-written; cat /data/original; ls /bin/wc; \
             [ -d /etc/new ] && echo sees-new; stat -c %a /data",
        ),
    )
    .await;
    assert_eq!(
        reader.stdout, "from the image\n/bin/wc\n755\n",
        "{reader:#?}"
    );

    pod.remove(&writer.id).await.unwrap();
    assert!(!data_dir.exists(), "{} left after RemoveContainer", data_dir.display());
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
    assert!(leaked.is_empty(), "mount targets escaped the rootfs: {leaked:?} {ran:#?}");
    assert_eq!(ran.status.exit_code, 0, "{ran:#?}");
    assert_eq!(ran.stdout, "bound\nbound\n");
}
