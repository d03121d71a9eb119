//! Bad CreateContainer requests get a clear gRPC error and leave nothing behind: no container
//! directory (`<root>/containers`, `<state>/c`), no cgroup, no mount, no monitor process, no
//! record. Needs root.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, with_security};
use tonic::Code;

/// Everything a container leaves on the host while it exists.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    data_dirs: BTreeSet<String>,
    state_dirs: BTreeSet<String>,
    cgroups: BTreeSet<String>,
    mounts: BTreeSet<String>,
    processes: BTreeSet<i32>,
    records: BTreeSet<String>,
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every cgroup directory below `parent`, in every hierarchy.
fn cgroups_below(parent: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    for h in hierarchies.flatten() {
        let mut stack = vec![h.path().join(parent.trim_start_matches('/'))];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            out.insert(d.display().to_string());
            stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    out
}

/// Processes started for this daemon (they inherit the test daemon's marker variable), except
/// the daemon itself.
fn marked_processes(env: &Env) -> BTreeSet<i32> {
    let needle = format!("STRATA_TEST_INSTANCE={}", env.daemon.dir().display());
    let daemon = env.daemon.pid().map(|p| p as i32);
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| Some(*pid) != daemon)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

async fn footprint(env: &Env, pod: &Pod) -> Footprint {
    let dir = env.daemon.dir().display().to_string();
    let records = pod
        .rt
        .clone()
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect();
    Footprint {
        data_dirs: entries(&env.daemon.root().join("containers")),
        state_dirs: entries(&env.daemon.dir().join("state").join("c")),
        cgroups: cgroups_below(&env.daemon.cgroup_parent),
        mounts: std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|t| t.starts_with(&dir))
            .map(str::to_owned)
            .collect(),
        processes: marked_processes(env),
        records,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_leaves_nothing_behind() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    // A first container, so that duplicate names have something to collide with.
    let first = pod.launch(pod.sh("taken", &image, "sleep 1000")).await;

    let missing_dir = tempfile::tempdir().unwrap().path().join("gone");
    let missing_profile = "/nonexistent/strata/seccomp/profile.json";
    let bad_profile = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad_profile.path(), "{ not json").unwrap();
    let never_pulled = env.image("e2e-test-images/never-pulled:1");

    let localhost = |path: &str| {
        let path = path.to_owned();
        move |sc: &mut cri::LinuxContainerSecurityContext| {
            sc.seccomp = Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Localhost as i32,
                localhost_ref: path.clone(),
            })
        }
    };
    let mount = |host: &Path, container: &str| cri::Mount {
        container_path: container.into(),
        host_path: host.display().to_string(),
        ..Default::default()
    };
    let with_mounts = |mut c: cri::ContainerConfig, m: Vec<cri::Mount>| {
        c.mounts = m;
        c
    };

    // (what, pod id, config, expected code (None: any error), text the message must name)
    let cases: Vec<(&str, String, cri::ContainerConfig, Option<Code>, String)> = vec![
        (
            "unknown image",
            pod.id.clone(),
            pod.sh("c", &never_pulled, "true"),
            Some(Code::NotFound),
            never_pulled.clone(),
        ),
        (
            "unknown pod",
            "0".repeat(64),
            pod.sh("c", &image, "true"),
            Some(Code::NotFound),
            "0".repeat(64),
        ),
        (
            "duplicate name",
            pod.id.clone(),
            pod.sh("taken", &image, "true"),
            Some(Code::AlreadyExists),
            "taken".into(),
        ),
        (
            "missing mount source",
            pod.id.clone(),
            with_mounts(
                pod.sh("c", &image, "true"),
                vec![mount(&missing_dir, "/data")],
            ),
            Some(Code::InvalidArgument),
            missing_dir.display().to_string(),
        ),
        (
            "missing Localhost seccomp profile",
            pod.id.clone(),
            with_security(pod.sh("c", &image, "true"), localhost(missing_profile)),
            Some(Code::InvalidArgument),
            missing_profile.into(),
        ),
        (
            "unparsable Localhost seccomp profile",
            pod.id.clone(),
            with_security(
                pod.sh("c", &image, "true"),
                localhost(&bad_profile.path().display().to_string()),
            ),
            Some(Code::InvalidArgument),
            bad_profile.path().display().to_string(),
        ),
        (
            // This host has no AppArmor (a host with it would say the profile is not loaded).
            "Localhost AppArmor profile",
            pod.id.clone(),
            with_security(pod.sh("c", &image, "true"), |sc| {
                sc.apparmor = Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: "localhost/strata-no-such-profile".into(),
                })
            }),
            Some(Code::InvalidArgument),
            "strata-no-such-profile".into(),
        ),
        (
            "unknown user name",
            pod.id.clone(),
            with_security(pod.sh("c", &image, "true"), |sc| {
                sc.run_as_username = "nosuchuser".into()
            }),
            Some(Code::InvalidArgument),
            "nosuchuser".into(),
        ),
        (
            "unknown capability",
            pod.id.clone(),
            with_security(pod.sh("c", &image, "true"), |sc| {
                sc.capabilities = Some(cri::Capability {
                    add_capabilities: vec!["CAP_FLYING".into()],
                    ..Default::default()
                })
            }),
            Some(Code::InvalidArgument),
            "FLYING".into(),
        ),
        (
            "privileged container in an unprivileged pod",
            pod.id.clone(),
            with_security(pod.sh("c", &image, "true"), |sc| sc.privileged = true),
            Some(Code::InvalidArgument),
            "privileged".into(),
        ),
        (
            "no image",
            pod.id.clone(),
            pod.sh("c", "", "true"),
            Some(Code::InvalidArgument),
            "image".into(),
        ),
        // Failures only the container init meets, after the monitor and the cgroup exist.
        (
            "mount target below a file",
            pod.id.clone(),
            with_mounts(
                pod.sh("c", &image, "true"),
                vec![mount(
                    std::env::temp_dir().as_path(),
                    "/bin/sh/under-a-file",
                )],
            ),
            None,
            "/bin/sh/under-a-file".into(),
        ),
        (
            "working dir below a file",
            pod.id.clone(),
            {
                let mut c = pod.sh("c", &image, "true");
                c.working_dir = "/bin/sh/wd".into();
                c
            },
            None,
            "/bin/sh/wd".into(),
        ),
    ];

    let baseline = footprint(&env, &pod).await;
    assert!(baseline.records.contains(&first));
    let mut failures = Vec::new();
    for (what, pod_id, config, code, names) in cases {
        let result = pod
            .rt
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id,
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await;
        match result {
            Ok(r) => failures.push(format!("{what}: created {}", r.into_inner().container_id)),
            Err(status) => {
                if code.is_some_and(|c| c != status.code()) || status.code() == Code::Ok {
                    failures.push(format!(
                        "{what}: code {:?}, want {code:?}: {status:?}",
                        status.code()
                    ));
                }
                if !status.message().contains(&names) {
                    failures.push(format!(
                        "{what}: message does not name {names:?}: {}",
                        status.message()
                    ));
                }
                println!("{what}: {:?} {}", status.code(), status.message());
            }
        }
        let now = footprint(&env, &pod).await;
        if now != baseline {
            failures.push(format!("{what}: left {now:#?}\nwas {baseline:#?}"));
        }
    }
    // The pod still works.
    let ran = pod.run(pod.sh("fine", &image, "echo fine")).await;
    assert_eq!(
        (ran.status.exit_code, ran.stdout.as_str()),
        (0, "fine\n"),
        "{ran:#?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
