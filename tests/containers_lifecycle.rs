//! Container lifecycle through CRI with busybox containers: the create/start split, states and
//! timestamps, exit reasons (Completed, Error, OOMKilled, StartError) and the ListContainers
//! filters. Stop and remove: `containers_stop.rs`. Needs root.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, labels, unique, with_resources};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

const CREATED: i32 = cri::ContainerState::ContainerCreated as i32;
const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const EXITED: i32 = cri::ContainerState::ContainerExited as i32;

#[tokio::test(flavor = "multi_thread")]
async fn create_runs_no_user_code_and_states_have_timestamps() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let out = tempfile::tempdir().unwrap();
    let mut c = pod.sh("marker", &image, "touch /out/ran; exit 0");
    c.mounts = vec![cri::Mount {
        container_path: "/out".into(),
        host_path: out.path().to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let before = now();
    let id = pod.create(c).await.expect("create");
    let s = pod.status(&id).await;
    assert_eq!(s.state, CREATED, "{s:?}");
    assert!(s.created_at >= before && s.created_at <= now(), "{s:?}");
    assert_eq!(
        (s.started_at, s.finished_at, s.exit_code),
        (0, 0, 0),
        "{s:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !out.path().join("ran").exists(),
        "user code ran before StartContainer"
    );
    assert_eq!(pod.status(&id).await.state, CREATED);

    let start = now();
    pod.start_container(&id).await.expect("start");
    let s = pod.wait_exited(&id, Duration::from_secs(20)).await;
    assert!(out.path().join("ran").exists());
    assert!(
        s.started_at >= start && s.started_at >= s.created_at,
        "{s:?}"
    );
    assert!(
        s.finished_at >= s.started_at && s.finished_at <= now(),
        "{s:?}"
    );
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"), "{s:?}");
    // Start twice: refused, and the status does not change.
    let err = pod.start_container(&id).await.expect_err("second start");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(pod.status(&id).await.finished_at, s.finished_at);

    // Exit codes and reasons.
    let ran = pod
        .run(pod.sh("fails", &image, "echo oops >&2; exit 3"))
        .await;
    assert_eq!(
        (
            ran.status.exit_code,
            ran.status.reason.as_str(),
            ran.stderr.as_str()
        ),
        (3, "Error", "oops\n")
    );

    // An executable that is not there: create works (no user code yet), start fails clearly.
    let id = pod
        .create(pod.container("missing", &image, &["/no/such/binary"]))
        .await
        .expect("create");
    let err = pod.start_container(&id).await.expect_err("start");
    assert!(err.message().contains("/no/such/binary"), "{err:?}");
    let s = pod.status(&id).await;
    assert_eq!(s.state, EXITED, "{s:?}");
    assert_ne!(s.exit_code, 0, "{s:?}");
    assert!(!s.reason.is_empty() && s.reason != "Completed", "{s:?}");
}

async fn list(pod: &Pod, filter: cri::ContainerFilter) -> BTreeSet<String> {
    pod.rt
        .clone()
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_containers_filters() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let a = Pod::start(&env.daemon, Default::default()).await;
    let b = Pod::start(&env.daemon, Default::default()).await;
    let app = unique("app");
    let with_labels = |mut c: cri::ContainerConfig, l: &[(&str, &str)]| {
        c.labels = labels(l);
        c
    };
    let running = a
        .launch(with_labels(
            a.sh("running", &image, "sleep 1000"),
            &[("app", &app), ("tier", "front")],
        ))
        .await;
    let exited = a
        .launch(with_labels(
            a.sh("exited", &image, "true"),
            &[("app", &app)],
        ))
        .await;
    a.wait_exited(&exited, Duration::from_secs(20)).await;
    let created = a
        .create(with_labels(
            a.sh("created", &image, "true"),
            &[("app", "other")],
        ))
        .await
        .unwrap();
    let elsewhere = b
        .launch(with_labels(
            b.sh("elsewhere", &image, "sleep 1000"),
            &[("app", &app)],
        ))
        .await;
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let state = |s: i32| Some(cri::ContainerStateValue { state: s });
    let in_a = |f: cri::ContainerFilter| cri::ContainerFilter {
        pod_sandbox_id: a.id.clone(),
        ..f
    };
    let cases = [
        (
            "pod a",
            in_a(Default::default()),
            set(&[&running, &exited, &created]),
        ),
        (
            "pod b",
            cri::ContainerFilter {
                pod_sandbox_id: b.id.clone(),
                ..Default::default()
            },
            set(&[&elsewhere]),
        ),
        (
            "running in a",
            in_a(cri::ContainerFilter {
                state: state(RUNNING),
                ..Default::default()
            }),
            set(&[&running]),
        ),
        (
            "exited in a",
            in_a(cri::ContainerFilter {
                state: state(EXITED),
                ..Default::default()
            }),
            set(&[&exited]),
        ),
        (
            "created in a",
            in_a(cri::ContainerFilter {
                state: state(CREATED),
                ..Default::default()
            }),
            set(&[&created]),
        ),
        (
            "label",
            cri::ContainerFilter {
                label_selector: labels(&[("app", &app)]),
                ..Default::default()
            },
            set(&[&running, &exited, &elsewhere]),
        ),
        (
            "labels",
            cri::ContainerFilter {
                label_selector: labels(&[("app", &app), ("tier", "front")]),
                ..Default::default()
            },
            set(&[&running]),
        ),
        (
            "label in a",
            in_a(cri::ContainerFilter {
                label_selector: labels(&[("app", &app)]),
                ..Default::default()
            }),
            set(&[&exited, &running]),
        ),
        (
            "running with label",
            cri::ContainerFilter {
                state: state(RUNNING),
                label_selector: labels(&[("app", &app)]),
                ..Default::default()
            },
            set(&[&running, &elsewhere]),
        ),
        (
            "id prefix",
            cri::ContainerFilter {
                id: running[..12].to_owned(),
                ..Default::default()
            },
            set(&[&running]),
        ),
        (
            "full id",
            cri::ContainerFilter {
                id: elsewhere.clone(),
                ..Default::default()
            },
            set(&[&elsewhere]),
        ),
        (
            "id in the wrong pod",
            in_a(cri::ContainerFilter {
                id: elsewhere.clone(),
                ..Default::default()
            }),
            set(&[]),
        ),
        (
            "unknown label value",
            cri::ContainerFilter {
                label_selector: labels(&[("app", "nope-nope")]),
                ..Default::default()
            },
            set(&[]),
        ),
    ];
    let mut failures = Vec::new();
    for (what, filter, want) in cases {
        let got = list(&a, filter).await;
        if got != want {
            failures.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    // The entries carry what kubelet reads.
    let all =
        a.rt.clone()
            .list_containers(cri::ListContainersRequest {
                filter: Some(in_a(Default::default())),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
    let r = all.iter().find(|c| c.id == running).unwrap();
    assert_eq!(r.pod_sandbox_id, a.id);
    assert_eq!(r.metadata.as_ref().unwrap().name, "running");
    assert_eq!(r.state, RUNNING);
    assert!(r.created_at > 0);
    assert_eq!(r.labels.get("tier").map(String::as_str), Some("front"));
    assert_eq!(r.image.as_ref().unwrap().image, image);
    assert!(!r.image_ref.is_empty());
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_memory_is_reported_as_oomkilled() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    // dd allocates its 64 MiB block and fills it from /dev/zero: far over the 16 MiB limit.
    let c = with_resources(
        pod.container(
            "hog",
            &image,
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        ),
        cri::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        },
    );
    let ran = pod.run(c).await;
    assert_eq!(
        (ran.status.exit_code, ran.status.reason.as_str()),
        (137, "OOMKilled"),
        "{ran:#?}"
    );
    // The same program within its limit completes.
    let c = with_resources(
        pod.container(
            "fits",
            &image,
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=1"],
        ),
        cri::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        },
    );
    let ran = pod.run(c).await;
    assert_eq!(
        (ran.status.exit_code, ran.status.reason.as_str()),
        (0, "Completed"),
        "{ran:#?}"
    );
}
