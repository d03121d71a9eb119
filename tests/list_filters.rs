//! Every filter of `ListPodSandbox` and `ListContainers`: id (full, unique prefix, ambiguous
//! prefix, unknown), state, label selector, pod id (full and prefix) and their combinations.
//! An ambiguous prefix matches nothing, as with containerd's and CRI-O's id indexes. Every
//! filter is also checked through `StreamPodSandboxes` / `StreamContainers`. Needs root.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, labels, unique};

type Ids = BTreeSet<String>;

fn ids(list: &[&String]) -> Ids {
    list.iter().map(|s| s.to_string()).collect()
}

/// The ids `ListPodSandbox` returns for `filter`; `StreamPodSandboxes` must return the same.
async fn pods(env: &Env, filter: cri::PodSandboxFilter) -> Ids {
    let mut rt = env.daemon.runtime().await;
    let listed: Ids = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(filter.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .map(|p| p.id)
        .collect();
    let mut stream = rt
        .stream_pod_sandboxes(cri::StreamPodSandboxesRequest {
            filter: Some(filter.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Ids::new();
    while let Some(batch) = stream.message().await.unwrap() {
        assert!(!batch.pod_sandboxes.is_empty(), "an empty batch");
        streamed.extend(batch.pod_sandboxes.into_iter().map(|p| p.id));
    }
    assert_eq!(
        streamed, listed,
        "StreamPodSandboxes vs ListPodSandbox, {filter:?}"
    );
    listed
}

/// The ids `ListContainers` returns for `filter`; `StreamContainers` must return the same.
async fn containers(env: &Env, filter: cri::ContainerFilter) -> Ids {
    let mut rt = env.daemon.runtime().await;
    let listed: Ids = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect();
    let mut stream = rt
        .stream_containers(cri::StreamContainersRequest {
            filter: Some(filter.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Ids::new();
    while let Some(batch) = stream.message().await.unwrap() {
        assert!(!batch.containers.is_empty(), "an empty batch");
        streamed.extend(batch.containers.into_iter().map(|c| c.id));
    }
    assert_eq!(
        streamed, listed,
        "StreamContainers vs ListContainers, {filter:?}"
    );
    listed
}

/// Two ids of `ids` sharing their first character (None when all differ).
fn same_first_char(ids: &[String]) -> Option<(String, String)> {
    let mut seen: HashMap<char, &String> = HashMap::new();
    for id in ids {
        let c = id.chars().next()?;
        if let Some(other) = seen.insert(c, id) {
            return Some((other.clone(), id.clone()));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn list_pod_sandbox_filters() {
    let env = Env::shared();
    let run = unique("run");
    let start = |app: &'static str| {
        let l = labels(&[("run", &run), ("app", app)]);
        let daemon = &env.daemon;
        async move {
            Pod::start(
                daemon,
                cri::PodSandboxConfig {
                    labels: l,
                    ..Default::default()
                },
            )
            .await
        }
    };
    let a = start("a").await;
    let b = start("b").await;
    // More pods until two ids share a first character (at most 17 are needed).
    let mut extra = Vec::new();
    let (p, q) = loop {
        let all: Vec<String> = [&a, &b]
            .into_iter()
            .chain(&extra)
            .map(|p| p.id.clone())
            .collect();
        if let Some(pair) = same_first_char(&all) {
            break pair;
        }
        extra.push(start("extra").await);
    };
    let mut rt = env.daemon.runtime().await;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: b.id.clone(),
    })
    .await
    .unwrap();

    let mine = |f: cri::PodSandboxFilter| {
        let mut f = f;
        f.label_selector.insert("run".into(), run.clone());
        f
    };
    let state = |s: cri::PodSandboxState| Some(cri::PodSandboxStateValue { state: s as i32 });
    let all_mine: Ids = [&a, &b]
        .into_iter()
        .chain(&extra)
        .map(|p| p.id.clone())
        .collect();
    let cases: Vec<(&str, cri::PodSandboxFilter, Ids)> = vec![
        (
            "no filter but mine",
            mine(Default::default()),
            all_mine.clone(),
        ),
        (
            "full id",
            cri::PodSandboxFilter {
                id: a.id.clone(),
                ..Default::default()
            },
            ids(&[&a.id]),
        ),
        (
            "unique prefix",
            cri::PodSandboxFilter {
                id: a.id[..a.id.len() - 1].to_owned(),
                ..Default::default()
            },
            ids(&[&a.id]),
        ),
        (
            "ambiguous prefix",
            cri::PodSandboxFilter {
                id: p[..1].to_owned(),
                ..Default::default()
            },
            ids(&[]),
        ),
        (
            "unknown id",
            cri::PodSandboxFilter {
                id: "nope".into(),
                ..Default::default()
            },
            ids(&[]),
        ),
        (
            "ready",
            mine(cri::PodSandboxFilter {
                state: state(cri::PodSandboxState::SandboxReady),
                ..Default::default()
            }),
            all_mine.iter().filter(|id| **id != b.id).cloned().collect(),
        ),
        (
            "not ready",
            mine(cri::PodSandboxFilter {
                state: state(cri::PodSandboxState::SandboxNotready),
                ..Default::default()
            }),
            ids(&[&b.id]),
        ),
        (
            "label",
            mine(cri::PodSandboxFilter {
                label_selector: labels(&[("app", "a")]),
                ..Default::default()
            }),
            ids(&[&a.id]),
        ),
        (
            "label of another value",
            mine(cri::PodSandboxFilter {
                label_selector: labels(&[("app", "zzz")]),
                ..Default::default()
            }),
            ids(&[]),
        ),
        (
            "id and state that disagree",
            cri::PodSandboxFilter {
                id: b.id.clone(),
                state: state(cri::PodSandboxState::SandboxReady),
                ..Default::default()
            },
            ids(&[]),
        ),
        (
            "id, state and label",
            mine(cri::PodSandboxFilter {
                id: b.id[..20].to_owned(),
                state: state(cri::PodSandboxState::SandboxNotready),
                label_selector: labels(&[("app", "b")]),
            }),
            ids(&[&b.id]),
        ),
    ];
    let mut failures = Vec::new();
    for (what, filter, want) in cases {
        let got = pods(&env, filter).await;
        if got != want {
            failures.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?} (ambiguous: {p} {q})");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_containers_filters() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let run = unique("run");
    let a = Pod::start(&env.daemon, Default::default()).await;
    let b = Pod::start(&env.daemon, Default::default()).await;
    let config = |pod: &Pod, name: &str, script: &str, tier: &str| {
        let mut c = pod.sh(name, &image, script);
        c.labels = labels(&[("run", &run), ("tier", tier)]);
        c
    };
    let running = a.launch(config(&a, "running", "sleep 1000", "front")).await;
    let exited = a.launch(config(&a, "exited", "true", "back")).await;
    a.wait_exited(&exited, Duration::from_secs(20)).await;
    let elsewhere = b
        .launch(config(&b, "elsewhere", "sleep 1000", "front"))
        .await;
    // Created containers in b until two of all ids share a first character.
    let mut created = Vec::new();
    let (p, q) = loop {
        let all: Vec<String> = [&running, &exited, &elsewhere]
            .into_iter()
            .chain(&created)
            .cloned()
            .collect();
        if let Some(pair) = same_first_char(&all) {
            break pair;
        }
        let name = format!("idle{}", created.len());
        created.push(b.create(config(&b, &name, "true", "idle")).await.unwrap());
    };

    let mine = |f: cri::ContainerFilter| {
        let mut f = f;
        f.label_selector.insert("run".into(), run.clone());
        f
    };
    let state = |s: cri::ContainerState| Some(cri::ContainerStateValue { state: s as i32 });
    let in_b: Ids = [&elsewhere].into_iter().chain(&created).cloned().collect();
    let cases: Vec<(&str, cri::ContainerFilter, Ids)> = vec![
        (
            "full id",
            cri::ContainerFilter {
                id: running.clone(),
                ..Default::default()
            },
            ids(&[&running]),
        ),
        (
            "unique id prefix",
            cri::ContainerFilter {
                id: exited[..exited.len() - 1].to_owned(),
                ..Default::default()
            },
            ids(&[&exited]),
        ),
        (
            "ambiguous id prefix",
            cri::ContainerFilter {
                id: p[..1].to_owned(),
                ..Default::default()
            },
            ids(&[]),
        ),
        (
            "unknown id",
            cri::ContainerFilter {
                id: "nope".into(),
                ..Default::default()
            },
            ids(&[]),
        ),
        (
            "pod id",
            cri::ContainerFilter {
                pod_sandbox_id: a.id.clone(),
                ..Default::default()
            },
            ids(&[&running, &exited]),
        ),
        (
            "pod id prefix",
            cri::ContainerFilter {
                pod_sandbox_id: b.id[..b.id.len() - 1].to_owned(),
                ..Default::default()
            },
            in_b.clone(),
        ),
        (
            "unknown pod id",
            cri::ContainerFilter {
                pod_sandbox_id: "nope".into(),
                ..Default::default()
            },
            ids(&[]),
        ),
        (
            "running",
            mine(cri::ContainerFilter {
                state: state(cri::ContainerState::ContainerRunning),
                ..Default::default()
            }),
            ids(&[&running, &elsewhere]),
        ),
        (
            "exited",
            mine(cri::ContainerFilter {
                state: state(cri::ContainerState::ContainerExited),
                ..Default::default()
            }),
            ids(&[&exited]),
        ),
        (
            "created",
            mine(cri::ContainerFilter {
                state: state(cri::ContainerState::ContainerCreated),
                ..Default::default()
            }),
            created.iter().cloned().collect(),
        ),
        (
            "label",
            mine(cri::ContainerFilter {
                label_selector: labels(&[("tier", "front")]),
                ..Default::default()
            }),
            ids(&[&running, &elsewhere]),
        ),
        (
            "pod prefix, state and label",
            mine(cri::ContainerFilter {
                pod_sandbox_id: a.id[..16].to_owned(),
                state: state(cri::ContainerState::ContainerRunning),
                label_selector: labels(&[("tier", "front")]),
                ..Default::default()
            }),
            ids(&[&running]),
        ),
        (
            "id in another pod",
            cri::ContainerFilter {
                id: elsewhere.clone(),
                pod_sandbox_id: a.id.clone(),
                ..Default::default()
            },
            ids(&[]),
        ),
    ];
    let mut failures = Vec::new();
    for (what, filter, want) in cases {
        let got = containers(&env, filter).await;
        if got != want {
            failures.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?} (ambiguous: {p} {q})");
}
