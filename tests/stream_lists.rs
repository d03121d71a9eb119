//! The `Stream*` list calls return what their unary counterparts return (stats, metrics and
//! images here; pods and containers with every filter in list_filters.rs). Needs root.

mod support;

use std::collections::BTreeSet;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod};

type Ids = BTreeSet<String>;

/// Drains a server stream, each message through `ids`; no message may be empty.
async fn streamed<M>(mut stream: tonic::Streaming<M>, ids: impl Fn(M) -> Vec<String>) -> Ids {
    let mut all = Ids::new();
    while let Some(batch) = stream.message().await.expect("stream") {
        let batch = ids(batch);
        assert!(!batch.is_empty(), "an empty batch");
        all.extend(batch);
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_lists_match_the_unary_lists() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let id = pod.launch(pod.sh("streamed", &image, "sleep 1000")).await;
    let mut rt = pod.rt.clone();

    let filter = cri::ContainerStatsFilter {
        pod_sandbox_id: pod.id.clone(),
        ..Default::default()
    };
    let listed: Ids = rt
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(filter.clone()),
        })
        .await
        .expect("list container stats")
        .into_inner()
        .stats
        .into_iter()
        .filter_map(|s| s.attributes.map(|a| a.id))
        .collect();
    assert_eq!(listed, Ids::from([id.clone()]));
    let stream = rt
        .stream_container_stats(cri::StreamContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .expect("stream container stats")
        .into_inner();
    let got = streamed(stream, |b: cri::StreamContainerStatsResponse| {
        b.container_stats
            .into_iter()
            .filter_map(|s| s.attributes.map(|a| a.id))
            .collect()
    })
    .await;
    assert_eq!(got, listed);

    let filter = cri::PodSandboxStatsFilter {
        id: pod.id.clone(),
        ..Default::default()
    };
    let stream = rt
        .stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest {
            filter: Some(filter),
        })
        .await
        .expect("stream pod stats")
        .into_inner();
    let got = streamed(stream, |b: cri::StreamPodSandboxStatsResponse| {
        b.pod_sandbox_stats
            .into_iter()
            .filter_map(|s| s.attributes.map(|a| a.id))
            .collect()
    })
    .await;
    assert_eq!(got, Ids::from([pod.id.clone()]));

    let stream = rt
        .stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest {})
        .await
        .expect("stream metrics")
        .into_inner();
    let got = streamed(stream, |b: cri::StreamPodSandboxMetricsResponse| {
        b.pod_sandbox_metrics
            .into_iter()
            .map(|m| m.pod_sandbox_id)
            .collect()
    })
    .await;
    assert!(got.contains(&pod.id), "{got:?}");

    let mut images = env.daemon.images().await;
    let listed: Ids = images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .expect("list images")
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect();
    let stream = images
        .stream_images(cri::StreamImagesRequest { filter: None })
        .await
        .expect("stream images")
        .into_inner();
    let got = streamed(stream, |b: cri::StreamImagesResponse| {
        b.images.into_iter().map(|i| i.id).collect()
    })
    .await;
    assert_eq!(got, listed);
    assert!(!got.is_empty());

    // Nothing matches: the stream ends without a message.
    let stream = rt
        .stream_containers(cri::StreamContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: "0".repeat(64),
                ..Default::default()
            }),
        })
        .await
        .expect("stream containers")
        .into_inner();
    let got = streamed(stream, |b: cri::StreamContainersResponse| {
        b.containers.into_iter().map(|c| c.id).collect()
    })
    .await;
    assert!(got.is_empty(), "{got:?}");
}
