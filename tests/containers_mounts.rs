//! CRI mounts and the pod's files, checked from inside busybox containers through CRI: bind
//! mounts (read-only, read-write, single files, recursive read-only, propagation), the pod's
//! /etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm, CRI devices and the default /dev.
//! Needs root.

mod support;

use std::path::Path;
use std::time::Duration;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod};

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
        .rfind(|l| l.split(' ').nth(4) == Some(target))
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
    let ran = pod.run_ok(c).await;
    let out = &ran.stdout;
    assert!(out.starts_with("from the host\nsingle file\n"), "{ran:#?}");
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

#[tokio::test(flavor = "multi_thread")]
async fn recursive_read_only_mount() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    // A source with a submount: only a recursive read-only mount makes the submount read-only.
    let src = Unmounting(tempfile::tempdir().unwrap());
    let sub = src.0.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let mut c = pod.sh(
        "rro",
        &image,
        "touch /rro/sub/x 2>&1 || echo rro-sub-refused; touch /rro/y 2>&1 || echo rro-refused; \
         grep ' /rro/sub ' /proc/self/mountinfo",
    );
    let mut m = bind(src.0.path(), "/rro", true);
    m.recursive_read_only = true;
    c.mounts = vec![m];
    let ran = pod.run_ok(c).await;
    assert!(ran.stdout.contains("rro-sub-refused\n"), "{ran:#?}");
    assert!(ran.stdout.contains("rro-refused\n"), "{ran:#?}");
    let opts = mount_options(&ran.stdout, "/rro/sub").unwrap_or_else(|| panic!("{ran:#?}"));
    assert!(opts.split(',').any(|o| o == "ro"), "{ran:#?}");
    assert!(!sub.join("x").exists());
}

/// A temporary directory with everything mounted below it unmounted on drop.
struct Unmounting(tempfile::TempDir);

impl Drop for Unmounting {
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

/// A directory bind-mounted on itself and made shared, so mounts below it propagate.
struct SharedDir(Unmounting);

impl SharedDir {
    fn path(&self) -> &Path {
        self.0.0.path()
    }

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
        SharedDir(Unmounting(dir))
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
    std::fs::create_dir(shared.path().join("sub")).unwrap();
    let mut c = pod.sh(
        "rslave",
        &image,
        "i=0; while [ ! -e /prop/sub/marker ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
         cat /prop/sub/marker",
    );
    let mut m = bind(shared.path(), "/prop", false);
    m.propagation = cri::MountPropagation::PropagationHostToContainer as i32;
    c.mounts = vec![m];
    let id = pod.launch(c).await;
    let sub = shared.path().join("sub");
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
    let ran = pod.run_ok(c).await;
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
    let ran = pod
        .run_ok(pod.sh(
            "etc",
            &image,
            "cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf",
        ))
        .await;
    let parts: Vec<&str> = ran.stdout.split("---\n").collect();
    assert_eq!(parts[0], "fs-pod\n", "{ran:#?}");
    assert!(
        parts[1]
            .lines()
            .any(|l| l.split_whitespace().eq(["127.0.0.1", "localhost"])),
        "{ran:#?}"
    );
    assert!(
        parts[1]
            .lines()
            .any(|l| l.split_whitespace().last() == Some("fs-pod")),
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
    pod.run_ok(pod.sh("shm-writer", &image, "echo shared > /dev/shm/note"))
        .await;
    let ran = pod
        .run_ok(pod.sh("shm-reader", &image, "cat /dev/shm/note"))
        .await;
    assert_eq!(ran.stdout, "shared\n");
    // Another pod has its own /dev/shm.
    let other = Pod::start(&env.daemon, Default::default()).await;
    let ran = other
        .run(other.sh("shm-other", &image, "cat /dev/shm/note"))
        .await;
    assert_ne!(ran.status.exit_code, 0, "{ran:#?}");

    // A CRI device: the host's /dev/null under another name, usable (device cgroup too).
    let mut c = pod.sh(
        "device",
        &image,
        "[ -c /dev/xnull ] && echo data > /dev/xnull && cat /dev/xnull && echo device-ok",
    );
    c.devices = vec![cri::Device {
        container_path: "/dev/xnull".into(),
        host_path: "/dev/null".into(),
        permissions: "rwm".into(),
    }];
    assert_eq!(pod.run_ok(c).await.stdout, "device-ok\n");

    // /dev: the default nodes, usable; /dev/pts, /dev/shm, /dev/mqueue mounted; no host disks.
    let ran = pod.run_ok(pod.sh(
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
    assert!(
        out.contains("zero=4\n") && out.contains("urandom=16\n"),
        "{out}"
    );
    assert!(
        out.contains("fd=/proc/self/fd stdin=/proc/self/fd/0\n"),
        "{out}"
    );
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
