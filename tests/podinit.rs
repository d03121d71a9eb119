//! `strata pod-init`, for real (root): namespaces, loopback, hostname, reaping, SIGTERM. The
//! pod-init process is not our child after its double fork: every test kills it on drop.

use std::process::Command;
use std::time::{Duration, Instant};

use strata::podinit::{PodInitConfig, spawn};

// pod-init runs from the small strata-monitor executable, as the daemon starts it.
const STRATA: &str = env!("CARGO_BIN_EXE_strata-monitor");

/// The pod directory a pod-init is named by: unique per test, never created.
fn pod_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::path::PathBuf::from(format!(
        "/nonexistent/strata-podinit-test-{}-{n}",
        std::process::id()
    ))
}

/// A pod-init process, SIGKILLed on drop.
struct PodInit(i32);

impl Drop for PodInit {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid this test started (ESRCH when already gone).
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

fn ns(pid: &str, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn stat_field(pid: i32, index: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split(' ')
        .nth(index)
        .map(str::to_owned)
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    stat_field(pid, 0).is_some_and(|state| state != "Z" && state != "X")
}

fn gone_within(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn nsenter(pid: i32, flags: &[&str], cmd: &[&str]) -> String {
    let target = pid.to_string();
    let out = Command::new("nsenter")
        .args(["-t", &target])
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .expect("nsenter");
    assert!(out.status.success(), "nsenter {flags:?} {cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn new_namespaces_loopback_hostname_reaping_and_sigterm() {
    let config = PodInitConfig {
        new_net: true,
        new_ipc: true,
        new_uts: true,
        new_pid: true,
        hostname: Some("strata-test-pod".to_owned()),
        userns: None,
    };
    let dir = pod_dir();
    let pid = spawn(STRATA.as_ref(), &config, &dir)
        .await
        .expect("pod-init");
    let guard = PodInit(pid);
    // A daemon that died before recording the pid finds it by the pod's directory.
    // (The parent that forked it may not have exited yet.)
    assert!(strata::podinit::find_by_pod_dir(&dir).contains(&pid));
    assert!(strata::podinit::find_by_pod_dir(&pod_dir()).is_empty());
    let me = std::process::id().to_string();
    assert_ne!(stat_field(pid, 1), Some(me.clone()), "not our child");
    for name in ["net", "ipc", "uts", "pid"] {
        assert_ne!(
            ns(&pid.to_string(), name),
            ns(&me, name),
            "{name} namespace"
        );
    }
    // Same mount namespace: pod-init does not need its own.
    assert_eq!(ns(&pid.to_string(), "mnt"), ns(&me, "mnt"));
    // PID 1 of the pod's pid namespace.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");

    let link = nsenter(pid, &["--net"], &["ip", "-o", "link", "show", "lo"]);
    assert!(link.contains("<LOOPBACK,UP,LOWER_UP>"), "{link}");
    let hostname = nsenter(pid, &["--uts"], &["hostname"]);
    assert_eq!(hostname.trim(), "strata-test-pod");

    // An orphan in the pod's pid namespace is re-parented to pod-init, which reaps it.
    nsenter(pid, &["--pid"], &["sh", "-c", "sleep 0.2 & exit 0"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let zombies: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_field(p, 1) == Some(pid.to_string()))
        .filter(|&p| stat_field(p, 0).as_deref() == Some("Z"))
        .collect();
    assert!(zombies.is_empty(), "unreaped children: {zombies:?}");

    // SAFETY: kill(2) on the pod-init we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "SIGTERM ends pod-init"
    );
    drop(guard);
}

#[tokio::test]
async fn host_namespaces() {
    let pid = spawn(STRATA.as_ref(), &PodInitConfig::default(), &pod_dir())
        .await
        .expect("pod-init");
    let _guard = PodInit(pid);
    let me = std::process::id().to_string();
    for name in ["net", "ipc", "uts", "pid"] {
        assert_eq!(
            ns(&pid.to_string(), name),
            ns(&me, name),
            "{name} namespace"
        );
    }
    // SAFETY: kill(2) on the pod-init we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "SIGINT ends pod-init"
    );
}

#[tokio::test]
async fn net_only_without_hostname() {
    let config = PodInitConfig {
        new_net: true,
        ..PodInitConfig::default()
    };
    let pid = spawn(STRATA.as_ref(), &config, &pod_dir())
        .await
        .expect("pod-init");
    let _guard = PodInit(pid);
    let me = std::process::id().to_string();
    assert_ne!(ns(&pid.to_string(), "net"), ns(&me, "net"));
    assert_eq!(ns(&pid.to_string(), "uts"), ns(&me, "uts"));
    assert_eq!(ns(&pid.to_string(), "pid"), ns(&me, "pid"));
    // (/sys/class/net would show the host's: sysfs follows the mounter's namespace.)
    let link = nsenter(pid, &["--net"], &["ip", "-o", "link", "show", "lo"]);
    assert!(link.contains(",UP"), "{link}");
    let addr = nsenter(pid, &["--net"], &["ip", "-o", "addr", "show", "lo"]);
    assert!(addr.contains("127.0.0.1/8"), "{addr}");
}

#[tokio::test]
async fn bad_config_is_reported() {
    // A hostname the kernel refuses (longer than 64 bytes) fails before reporting ready.
    let config = PodInitConfig {
        new_uts: true,
        hostname: Some("x".repeat(100)),
        ..PodInitConfig::default()
    };
    let err = spawn(STRATA.as_ref(), &config, &pod_dir())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sethostname"), "{err}");
}

/// The inode of the user namespace owning namespace file `path` (ioctl NS_GET_USERNS).
fn owner_userns(path: &str) -> u64 {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    use std::os::unix::fs::MetadataExt as _;
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor (checked).
    let fd = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_USERNS) };
    assert!(
        fd >= 0,
        "NS_GET_USERNS {path}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel just returned this descriptor; we own it.
    let owner = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    owner.metadata().unwrap().ino()
}

#[tokio::test]
async fn user_namespace_first_and_owning_the_others() {
    use std::os::unix::fs::MetadataExt as _;
    let config = PodInitConfig {
        new_net: true,
        new_ipc: true,
        new_uts: true,
        new_pid: true,
        hostname: Some("userns-pod".to_owned()),
        userns: Some(strata::podinit::UsernsMaps {
            uids: vec![(0, 100_000, 65_536)],
            gids: vec![(0, 100_000, 65_536), (65_536, 300_000, 10)],
        }),
    };
    let pid = spawn(STRATA.as_ref(), &config, &pod_dir())
        .await
        .expect("pod-init");
    let _guard = PodInit(pid);
    let words = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(words(uid_map), "0 100000 65536");
    let gid_map = std::fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap();
    assert_eq!(words(gid_map), "0 100000 65536 65536 300000 10");
    // setgroups stays allowed (containers call setgroups(2)), and pod-init is the ns's root.
    let setgroups = std::fs::read_to_string(format!("/proc/{pid}/setgroups")).unwrap();
    assert_eq!(setgroups.trim(), "allow");
    let meta = std::fs::metadata(format!("/proc/{pid}")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (100_000, 100_000));
    let userns = std::fs::metadata(format!("/proc/{pid}/ns/user"))
        .unwrap()
        .ino();
    let me = std::fs::metadata("/proc/self/ns/user").unwrap().ino();
    assert_ne!(userns, me);
    for name in ["net", "ipc", "uts", "pid"] {
        assert_eq!(
            owner_userns(&format!("/proc/{pid}/ns/{name}")),
            userns,
            "{name} namespace owned by the pod's user namespace"
        );
    }
    let link = nsenter(pid, &["--net"], &["ip", "-o", "link", "show", "lo"]);
    assert!(link.contains(",UP"), "{link}");
}
