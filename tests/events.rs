//! `GetContainerEvents`: a full pod lifecycle produces, in order, the pod's CREATED and STARTED,
//! the container's CREATED, STARTED, STOPPED and DELETED, then the pod's STOPPED and DELETED;
//! every subscriber gets all of them; each event carries the pod's status and its containers'.
//! Needs root.

mod support;

use std::time::Duration;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, labels};
use tonic::codec::Streaming;

use cri::ContainerEventType as Ev;

async fn subscribe(env: &Env) -> Streaming<cri::ContainerEventResponse> {
    env.daemon
        .runtime()
        .await
        .get_container_events(cri::GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner()
}

/// Reads events until the DELETED event of `pod_id` itself; keeps those about that pod (other
/// tests share the daemon).
async fn events_of_pod(
    stream: &mut Streaming<cri::ContainerEventResponse>,
    pod_id: &str,
) -> Vec<cri::ContainerEventResponse> {
    let mut out = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("no more events; got {out:#?}"))
            .expect("event stream")
            .expect("event stream ended");
        let about_pod = event.container_id == pod_id
            || event
                .pod_sandbox_status
                .as_ref()
                .is_some_and(|s| s.id == pod_id);
        if !about_pod {
            continue;
        }
        let done = event.container_id == pod_id
            && event.container_event_type == Ev::ContainerDeletedEvent as i32;
        out.push(event);
        if done {
            return out;
        }
    }
}

fn container_state(event: &cri::ContainerEventResponse, id: &str) -> Option<i32> {
    event
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.state)
}

#[tokio::test(flavor = "multi_thread")]
async fn full_pod_lifecycle_in_order_to_every_subscriber() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let mut first = subscribe(&env).await;
    let mut second = subscribe(&env).await;

    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            labels: labels(&[("suite", "events")]),
            ..Default::default()
        },
    )
    .await;
    let mut c = pod.sh("c1", &image, "sleep 0.2; exit 3");
    c.labels = labels(&[("role", "worker")]);
    let id = pod.create(c).await.expect("create");
    pod.start_container(&id).await.expect("start");
    let exited = pod.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!(exited.exit_code, 3);
    pod.remove(&id).await.expect("remove container");
    let mut rt = env.daemon.runtime().await;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .expect("stop pod");
    // Stopping again changes nothing and sends nothing.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .expect("stop pod again");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .expect("remove pod");

    let events = events_of_pod(&mut first, &pod.id).await;
    let kinds: Vec<(String, i32)> = events
        .iter()
        .map(|e| (e.container_id.clone(), e.container_event_type))
        .collect();
    let want: Vec<(String, i32)> = [
        (&pod.id, Ev::ContainerCreatedEvent),
        (&pod.id, Ev::ContainerStartedEvent),
        (&id, Ev::ContainerCreatedEvent),
        (&id, Ev::ContainerStartedEvent),
        (&id, Ev::ContainerStoppedEvent),
        (&id, Ev::ContainerDeletedEvent),
        (&pod.id, Ev::ContainerStoppedEvent),
        (&pod.id, Ev::ContainerDeletedEvent),
    ]
    .into_iter()
    .map(|(id, kind)| (id.clone(), kind as i32))
    .collect();
    assert_eq!(kinds, want, "{events:#?}");

    let second_events = events_of_pod(&mut second, &pod.id).await;
    assert_eq!(
        second_events, events,
        "both subscribers get the same events"
    );

    // Timestamps in ns, in order.
    assert!(events[0].created_at > 1_000_000_000_000_000_000);
    assert!(
        events
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );

    // Every event has the pod's status (kubelet drops events without one).
    for e in &events {
        let s = e.pod_sandbox_status.as_ref().expect("pod status");
        assert_eq!(s.id, pod.id);
        assert_eq!(s.metadata, pod.config.metadata);
        assert_eq!(s.labels.get("suite").map(String::as_str), Some("events"));
    }
    let ready = cri::PodSandboxState::SandboxReady as i32;
    let not_ready = cri::PodSandboxState::SandboxNotready as i32;
    let pod_states: Vec<i32> = events
        .iter()
        .map(|e| e.pod_sandbox_status.as_ref().unwrap().state)
        .collect();
    assert_eq!(
        pod_states,
        [
            ready, ready, ready, ready, ready, ready, not_ready, not_ready
        ]
    );

    // The containers' statuses as they were at each step.
    assert!(events[0].containers_statuses.is_empty());
    assert!(events[1].containers_statuses.is_empty());
    assert_eq!(
        container_state(&events[2], &id),
        Some(cri::ContainerState::ContainerCreated as i32)
    );
    assert_eq!(
        container_state(&events[3], &id),
        Some(cri::ContainerState::ContainerRunning as i32)
    );
    let stopped = events[4]
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .expect("container in its STOPPED event");
    assert_eq!(stopped.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!((stopped.exit_code, stopped.reason.as_str()), (3, "Error"));
    assert!(stopped.finished_at >= stopped.started_at && stopped.started_at > 0);
    assert_eq!(
        stopped.labels.get("role").map(String::as_str),
        Some("worker")
    );
    assert_eq!(container_state(&events[5], &id), None, "deleted container");
    assert!(events[6].containers_statuses.is_empty());
    assert!(events[7].containers_statuses.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_a_pod_stops_its_running_containers_first() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let mut events = subscribe(&env).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let id = pod.launch(pod.sh("sleeper", &image, "sleep 1000")).await;
    let mut rt = env.daemon.runtime().await;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .expect("stop pod");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .expect("remove pod");
    let got: Vec<(String, i32)> = events_of_pod(&mut events, &pod.id)
        .await
        .into_iter()
        .map(|e| (e.container_id, e.container_event_type))
        .collect();
    let want: Vec<(String, i32)> = [
        (&pod.id, Ev::ContainerCreatedEvent),
        (&pod.id, Ev::ContainerStartedEvent),
        (&id, Ev::ContainerCreatedEvent),
        (&id, Ev::ContainerStartedEvent),
        (&id, Ev::ContainerStoppedEvent),
        (&pod.id, Ev::ContainerStoppedEvent),
        (&id, Ev::ContainerDeletedEvent),
        (&pod.id, Ev::ContainerDeletedEvent),
    ]
    .into_iter()
    .map(|(id, kind)| (id.clone(), kind as i32))
    .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_after_a_daemon_restart_is_an_event() {
    let mut env = Env::new("");
    let image = env.busybox();
    env.pull(&image).await;
    let ctl = tempfile::tempdir().unwrap();
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let mut c = pod.sh(
        "waiter",
        &image,
        "while [ ! -e /ctl/go ]; do sleep 0.05; done; exit 7",
    );
    c.mounts = vec![cri::Mount {
        container_path: "/ctl".into(),
        host_path: ctl.path().to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let id = pod.launch(c).await;

    env.daemon.restart();
    let mut events = subscribe(&env).await;
    std::fs::write(ctl.path().join("go"), "").unwrap();
    let stopped = loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.message())
            .await
            .expect("no STOPPED event after the restart")
            .expect("event stream")
            .expect("event stream ended");
        if event.container_id == id {
            break event;
        }
    };
    assert_eq!(
        stopped.container_event_type,
        Ev::ContainerStoppedEvent as i32
    );
    let status = stopped
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .expect("the container's status");
    assert_eq!((status.exit_code, status.reason.as_str()), (7, "Error"));
    assert_eq!(stopped.pod_sandbox_status.as_ref().unwrap().id, pod.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_event_stream_does_not_hold_up_shutdown() {
    let mut daemon = support::daemon::Daemon::start("");
    let mut events = daemon
        .runtime()
        .await
        .get_container_events(cri::GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner();
    let started = std::time::Instant::now();
    assert!(daemon.terminate(), "graceful exit\n{}", daemon.log());
    // The server's grace period for open calls is 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("the stream ends");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_changes_never_send_an_older_snapshot_after_a_newer_one() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let mut stream = subscribe(&env).await;
    let pods =
        futures::future::join_all((0..3).map(|_| Pod::start(&env.daemon, Default::default())))
            .await;
    let launches = pods.iter().flat_map(|pod| {
        let image = image.clone();
        (0..4).map(move |n| {
            let config = pod.sh(&format!("c{n}"), &image, &format!("sleep 0.{n}"));
            async move { (pod, pod.launch(config).await) }
        })
    });
    let launched = futures::future::join_all(launches).await;
    futures::future::join_all(
        launched
            .iter()
            .map(|(pod, id)| pod.wait_exited(id, Duration::from_secs(30))),
    )
    .await;
    futures::future::join_all(pods.iter().map(|pod| async {
        let mut rt = env.daemon.runtime().await;
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    }))
    .await;

    // Everything until the last of the pods is deleted.
    let pod_ids: Vec<&String> = pods.iter().map(|p| &p.id).collect();
    let mut pending = pod_ids.len();
    let mut events = Vec::new();
    while pending > 0 {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("events")
            .unwrap()
            .unwrap();
        let Some(pod_id) = event.pod_sandbox_status.as_ref().map(|s| s.id.clone()) else {
            continue;
        };
        if !pod_ids.contains(&&pod_id) {
            continue;
        }
        if event.container_id == pod_id
            && event.container_event_type == Ev::ContainerDeletedEvent as i32
        {
            pending -= 1;
        }
        events.push(event);
    }
    assert!(
        events
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );
    let mut seen: std::collections::HashMap<String, (Vec<i32>, i32, bool)> = Default::default();
    for e in &events {
        for s in &e.containers_statuses {
            let (_, last_state, deleted) = seen.entry(s.id.clone()).or_default();
            assert!(!*deleted, "{} reappeared after its DELETED event", s.id);
            assert!(s.state >= *last_state, "{}: state went back", s.id);
            *last_state = s.state;
        }
        if e.container_id != e.pod_sandbox_status.as_ref().unwrap().id {
            let entry = seen.entry(e.container_id.clone()).or_default();
            entry.0.push(e.container_event_type);
            if e.container_event_type == Ev::ContainerDeletedEvent as i32 {
                entry.2 = true;
            }
        }
    }
    for (_, id) in &launched {
        let kinds = &seen.get(id).expect("events of every container").0;
        assert_eq!(
            kinds,
            &[
                Ev::ContainerCreatedEvent as i32,
                Ev::ContainerStartedEvent as i32,
                Ev::ContainerStoppedEvent as i32,
                Ev::ContainerDeletedEvent as i32
            ],
            "{id}"
        );
    }
}
