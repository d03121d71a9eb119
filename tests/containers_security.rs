//! The process a container runs, checked from inside busybox containers through CRI:
//! capabilities, seccomp mode and effect, no_new_privs, privileged, masked and read-only paths,
//! read-only rootfs, hostname, env, cwd, oom_score_adj and sysctls. Users and groups:
//! `containers_users.rs`. Needs root.

mod support;

use std::collections::BTreeSet;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, status_field, with_resources, with_security};
use support::fixtures::busybox_image;

/// containerd's default capability set (CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID
/// SETUID SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE).
const DEFAULT_CAPS: u64 = 0xa80425fb;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_SYS_ADMIN: u64 = 1 << 21;

fn hex(text: &str, key: &str) -> u64 {
    let v = status_field(text, key).unwrap_or_else(|| panic!("no {key} in {text}"));
    u64::from_str_radix(v, 16).unwrap()
}

/// Our own bounding set: what "ALL" and privileged mean on this host (root here lacks
/// CAP_SYS_RESOURCE, so it is not the full set).
fn host_caps() -> u64 {
    hex(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "CapBnd",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn default_capabilities_seccomp_and_no_new_privs() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;

    let ran = pod
        .run_ok(pod.sh("default", &image, "cat /proc/self/status"))
        .await;
    let s = &ran.stdout;
    for key in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(hex(s, key), DEFAULT_CAPS, "{key}: {s}");
    }
    assert_eq!(hex(s, "CapInh"), 0, "{s}");
    assert_eq!(hex(s, "CapAmb"), 0, "{s}");
    // Unset seccomp is unconfined, as in containerd.
    assert_eq!(status_field(s, "Seccomp"), Some("0"), "{s}");
    assert_eq!(status_field(s, "NoNewPrivs"), Some("0"), "{s}");

    let c = with_security(pod.sh("nnp", &image, "cat /proc/self/status"), |sc| {
        sc.no_new_privs = true;
    });
    let s = pod.run_ok(c).await.stdout;
    assert_eq!(status_field(&s, "NoNewPrivs"), Some("1"), "{s}");

    let profile = |t: cri::security_profile::ProfileType| cri::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: String::new(),
    };
    let c = with_security(pod.sh("rtdefault", &image, "cat /proc/self/status"), |sc| {
        sc.seccomp = Some(profile(cri::security_profile::ProfileType::RuntimeDefault));
    });
    let s = pod.run_ok(c).await.stdout;
    assert_eq!(status_field(&s, "Seccomp"), Some("2"), "{s}");
    assert_eq!(status_field(&s, "Seccomp_filters"), Some("1"), "{s}");
    let c = with_security(
        pod.sh("unconfined", &image, "cat /proc/self/status"),
        |sc| {
            sc.seccomp = Some(profile(cri::security_profile::ProfileType::Unconfined));
        },
    );
    let s = pod.run_ok(c).await.stdout;
    assert_eq!(status_field(&s, "Seccomp"), Some("0"), "{s}");

    // The default profile has an effect: unshare(2) needs CAP_SYS_ADMIN under it (as in
    // containerd's), while a user namespace needs no capability at all without it.
    let unshare = "unshare -U true && echo allowed";
    let c = with_security(pod.sh("unshare-default", &image, unshare), |sc| {
        sc.seccomp = Some(profile(cri::security_profile::ProfileType::RuntimeDefault));
    });
    let ran = pod.run(c).await;
    assert_ne!(ran.status.exit_code, 0, "{ran:#?}");
    assert!(ran.stderr.contains("Operation not permitted"), "{ran:#?}");
    let c = with_security(pod.sh("unshare-unconfined", &image, unshare), |sc| {
        sc.seccomp = Some(profile(cri::security_profile::ProfileType::Unconfined));
    });
    assert_eq!(pod.run_ok(c).await.stdout, "allowed\n");

    // A non-root user keeps the bounding set but has no effective capabilities.
    let c = with_security(pod.sh("nonroot", &image, "cat /proc/self/status"), |sc| {
        sc.run_as_user = Some(cri::Int64Value { value: 1234 });
    });
    let s = pod.run_ok(c).await.stdout;
    assert_eq!(hex(&s, "CapEff"), 0, "{s}");
    assert_eq!(hex(&s, "CapBnd"), DEFAULT_CAPS, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn capabilities_add_and_drop() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let all = host_caps();
    let cases: [(&str, &[&str], &[&str], u64); 6] = [
        (
            "add-sys-admin",
            &["SYS_ADMIN"],
            &[],
            DEFAULT_CAPS | CAP_SYS_ADMIN,
        ),
        (
            "add-prefixed",
            &["CAP_SYS_ADMIN"],
            &[],
            DEFAULT_CAPS | CAP_SYS_ADMIN,
        ),
        (
            "drop-net-raw",
            &[],
            &["NET_RAW"],
            DEFAULT_CAPS & !CAP_NET_RAW,
        ),
        ("drop-all", &[], &["ALL"], 0),
        (
            "drop-all-add-one",
            &["NET_BIND_SERVICE"],
            &["ALL"],
            CAP_NET_BIND_SERVICE,
        ),
        ("add-all", &["ALL"], &[], all),
    ];
    let mut failures = Vec::new();
    for (name, add, drop, want) in cases {
        let c = with_security(pod.sh(name, &image, "cat /proc/self/status"), |sc| {
            sc.capabilities = Some(cri::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: Vec::new(),
            });
        });
        let s = pod.run_ok(c).await.stdout;
        for key in ["CapEff", "CapPrm", "CapBnd"] {
            let got = hex(&s, key);
            if got != want {
                failures.push(format!("{name}: {key} {got:#x}, want {want:#x}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn privileged_container() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod_config = cri::PodSandboxConfig {
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = Pod::start(&env.daemon, pod_config).await;
    let script = "cat /proc/self/status; echo ---; cat /proc/self/mountinfo";
    let c = with_security(pod.sh("priv", &image, script), |sc| {
        sc.privileged = true;
        sc.seccomp = Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
    });
    let out = pod.run_ok(c).await.stdout;
    let (status, mountinfo) = out.split_once("---\n").unwrap();
    assert_eq!(hex(status, "CapEff"), host_caps(), "{status}");
    assert_eq!(hex(status, "CapBnd"), host_caps(), "{status}");
    // Privileged means no seccomp even when a profile is asked for.
    assert_eq!(status_field(status, "Seccomp"), Some("0"), "{status}");
    let sys = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/sys"))
        .unwrap_or_else(|| panic!("no /sys in {mountinfo}"));
    assert!(
        sys.split(' ').nth(5).unwrap().split(',').any(|o| o == "rw"),
        "/sys must be read-write in a privileged container: {sys}"
    );
    assert!(
        !mountinfo.contains(" /proc/kcore "),
        "no masked paths when privileged: {mountinfo}"
    );

    // Not privileged: /sys is read-only.
    let c = pod.sh("unpriv", &image, "cat /proc/self/mountinfo");
    let mountinfo = pod.run_ok(c).await.stdout;
    let sys = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/sys"))
        .unwrap_or_else(|| panic!("no /sys in {mountinfo}"));
    assert!(
        sys.split(' ').nth(5).unwrap().split(',').any(|o| o == "ro"),
        "{sys}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn masked_readonly_paths_and_readonly_rootfs() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;

    // Masked files are /dev/null (this kernel has no /proc/kcore; /proc/timer_list has
    // content on the host), masked directories an empty read-only tmpfs.
    assert!(std::fs::metadata("/proc/timer_list").is_ok());
    let ran = pod
        .run_ok(pod.sh(
            "masked",
            &image,
            "[ -c /proc/timer_list ] && echo timer-list-is-chardev; \
             echo timer-list-bytes=$(cat /proc/timer_list | wc -c); \
             echo keys-bytes=$(cat /proc/keys | wc -c); \
             echo firmware-entries=$(ls -A /sys/firmware | wc -l); \
             touch /sys/firmware/x 2>&1 || echo firmware-not-writable",
        ))
        .await;
    for want in [
        "timer-list-is-chardev\n",
        "timer-list-bytes=0\n",
        "keys-bytes=0\n",
        "firmware-entries=0\n",
        "firmware-not-writable\n",
    ] {
        assert!(ran.stdout.contains(want), "{want}: {ran:#?}");
    }

    // /proc/sys is read-only: the error is EROFS, not a permission error.
    let ran = pod
        .run(pod.sh(
            "ro-proc-sys",
            &image,
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ))
        .await;
    assert_ne!(ran.status.exit_code, 0, "{ran:#?}");
    assert!(ran.stderr.contains("Read-only file system"), "{ran:#?}");
    let ran = pod
        .run(pod.sh(
            "ro-proc-irq",
            &image,
            "cat /proc/irq/default_smp_affinity > /proc/irq/default_smp_affinity",
        ))
        .await;
    assert_ne!(ran.status.exit_code, 0, "{ran:#?}");
    assert!(ran.stderr.contains("Read-only file system"), "{ran:#?}");

    // readonly_rootfs: no write to the root filesystem; the mounted /dev/shm stays writable.
    let c = with_security(
        pod.sh("ro-rootfs", &image, "touch /dev/shm/ok && touch /x"),
        |sc| sc.readonly_rootfs = true,
    );
    let ran = pod.run(c).await;
    assert_ne!(ran.status.exit_code, 0, "{ran:#?}");
    assert!(ran.stderr.contains("Read-only file system"), "{ran:#?}");
    assert!(ran.stderr.contains("/x"), "{ran:#?}");
    // Without it the same write works.
    pod.run_ok(pod.sh("rw-rootfs", &image, "touch /x")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostname_env_and_working_dir() {
    let env = Env::shared();
    let image = env.image("strata-test/env-image:1");
    busybox_image([])
        .env(["PATH=/usr/bin:/bin", "FROM_IMAGE=image", "OVERRIDE=image"])
        .working_dir("/image/wd")
        .push(&env.registry, "strata-test/env-image:1")
        .await;
    env.pull(&image).await;
    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            hostname: "sec-host".into(),
            ..Default::default()
        },
    )
    .await;
    let mut c = pod.sh(
        "envs",
        &image,
        "hostname; cat /etc/hostname; pwd; env | grep -E '^(PATH|FROM_|OVERRIDE)'",
    );
    c.envs = vec![
        cri::KeyValue {
            key: "OVERRIDE".into(),
            value: "cri".into(),
        },
        cri::KeyValue {
            key: "FROM_CRI".into(),
            value: "a b=c".into(),
        },
    ];
    let out = pod.run_ok(c).await.stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["sec-host", "sec-host", "/image/wd"], "{out}");
    let envs: BTreeSet<&str> = lines[3..].iter().copied().collect();
    let want: BTreeSet<&str> = [
        "PATH=/usr/bin:/bin",
        "FROM_IMAGE=image",
        "OVERRIDE=cri",
        "FROM_CRI=a b=c",
    ]
    .into();
    assert_eq!(envs, want, "{out}");

    // CRI working_dir wins and is created when missing.
    let mut c = pod.sh("cwd", &image, "pwd; ls -ld .");
    c.working_dir = "/not/yet/there".into();
    let out = pod.run_ok(c).await.stdout;
    assert!(out.starts_with("/not/yet/there\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oom_score_adj_is_clamped_and_sysctls_apply() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let mut sysctls = std::collections::HashMap::new();
    sysctls.insert(
        "net.ipv4.ip_unprivileged_port_start".to_owned(),
        "81".to_owned(),
    );
    sysctls.insert("kernel.shm_rmid_forced".to_owned(), "1".to_owned());
    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                sysctls,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let daemon_adj: i32 =
        std::fs::read_to_string(format!("/proc/{}/oom_score_adj", env.daemon.pid().unwrap()))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let adj = |name: &str, value: i64| {
        with_resources(
            pod.sh(name, &image, "cat /proc/self/oom_score_adj"),
            cri::LinuxContainerResources {
                oom_score_adj: value,
                ..Default::default()
            },
        )
    };
    // Root here lacks CAP_SYS_RESOURCE: a lower value cannot be set; the container still runs,
    // with the daemon's own value (or higher).
    let out = pod.run_ok(adj("negative", -999)).await.stdout;
    let got: i32 = out.trim().parse().unwrap();
    assert!(
        got >= daemon_adj && got >= -999,
        "got {got}, daemon {daemon_adj}"
    );
    assert_eq!(got, daemon_adj.max(-999));
    let out = pod.run_ok(adj("positive", 777)).await.stdout;
    assert_eq!(out.trim(), "777");

    let out = pod
        .run_ok(pod.sh(
            "sysctls",
            &image,
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced",
        ))
        .await
        .stdout;
    assert_eq!(out, "81\n1\n");
    // The host's values are untouched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .unwrap()
            .trim(),
        "81"
    );
}
