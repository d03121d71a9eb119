//! CRI client helpers shared by the daemon-level integration tests (`image_pull.rs`,
//! `image_store.rs`, `daemon.rs`): thin wrappers over the daemon's gRPC clients, and views of
//! the on-disk layout (`<root>/layers`, `<root>/tmp`).
//!
//! Include with `mod support; mod daemon_helpers;` in a file under `tests/`.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata::cri::v1 as cri;
use tonic::Status;

use crate::support::daemon::Daemon;

/// `PullImage`; returns `image_ref`.
pub async fn pull(daemon: &Daemon, image: &str) -> Result<String, Status> {
    pull_with(daemon, image, None).await
}

/// `PullImage` with an `AuthConfig`.
pub async fn pull_with(
    daemon: &Daemon,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, Status> {
    daemon
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: Some(spec(image)),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

pub fn spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// `ListImages` without a filter, sorted by id.
pub async fn list(daemon: &Daemon) -> Vec<cri::Image> {
    let mut images = daemon
        .images()
        .await
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images;
    images.sort_by(|a, b| a.id.cmp(&b.id));
    images
}

/// `ImageStatus` (not verbose); `None` when the daemon does not have the image.
pub async fn status(daemon: &Daemon, image: &str) -> Option<cri::Image> {
    daemon
        .images()
        .await
        .image_status(cri::ImageStatusRequest {
            image: Some(spec(image)),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
}

/// `ImageStatus(verbose)`: the `info["info"]` document. Panics if the image is missing.
pub async fn status_info(daemon: &Daemon, image: &str) -> serde_json::Value {
    let reply = daemon
        .images()
        .await
        .image_status(cri::ImageStatusRequest {
            image: Some(spec(image)),
            verbose: true,
        })
        .await
        .expect("ImageStatus(verbose)")
        .into_inner();
    assert!(reply.image.is_some(), "ImageStatus: no image {image}");
    let info = reply.info.get("info").expect("verbose info[\"info\"]");
    serde_json::from_str(info).expect("info is JSON")
}

/// The image's layer directories, bottom to top (`layers[].path` of the verbose status).
pub async fn layer_paths(daemon: &Daemon, image: &str) -> Vec<PathBuf> {
    let info = status_info(daemon, image).await;
    info["layers"]
        .as_array()
        .expect("layers array")
        .iter()
        .map(|l| PathBuf::from(l["path"].as_str().expect("layer path")))
        .collect()
}

/// `RemoveImage`.
pub async fn remove(daemon: &Daemon, image: &str) -> Result<(), Status> {
    daemon
        .images()
        .await
        .remove_image(cri::RemoveImageRequest {
            image: Some(spec(image)),
        })
        .await
        .map(|_| ())
}

/// `Status(verbose)`'s `pulls` counters: (layersFetched, bytesFetched).
pub async fn pull_counters(daemon: &Daemon) -> (u64, u64) {
    let reply = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("Status(verbose)")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(reply.info.get("info").expect("info[\"info\"]")).unwrap();
    (
        info["pulls"]["layersFetched"]
            .as_u64()
            .expect("layersFetched"),
        info["pulls"]["bytesFetched"]
            .as_u64()
            .expect("bytesFetched"),
    )
}

/// Names of the entries of `<root>/<sub>` (empty when it does not exist).
pub fn entries(daemon: &Daemon, sub: &str) -> BTreeSet<String> {
    match std::fs::read_dir(daemon.root().join(sub)) {
        Ok(dir) => dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("reading <root>/{sub}: {e}"),
    }
}

/// The layer directories: names of `<root>/layers/*`.
pub fn layer_dirs(daemon: &Daemon) -> BTreeSet<String> {
    entries(daemon, "layers")
}

/// Asserts `<root>/tmp` holds nothing (no scratch left behind).
pub fn assert_tmp_empty(daemon: &Daemon) {
    let tmp = entries(daemon, "tmp");
    assert!(tmp.is_empty(), "<root>/tmp is not empty: {tmp:?}");
}

/// Every layer directory any image names (by verbose `ImageStatus`), as `<root>/layers` names.
pub async fn referenced_layer_dirs(daemon: &Daemon) -> BTreeSet<String> {
    let layers = daemon.root().join("layers");
    let mut out = BTreeSet::new();
    for image in list(daemon).await {
        for path in layer_paths(daemon, &image.id).await {
            assert_eq!(path.parent(), Some(layers.as_path()), "{}", path.display());
            out.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    out
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pseudo-random bytes that do not compress.
pub fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Asserts how image `id` is stored: its repo tags and digests as `ImageStatus` shows them, each
/// name finding it, and `ListImages` listing it.
pub async fn assert_stored(daemon: &Daemon, id: &str, tags: &[&str], digests: &[&str]) {
    let image = status(daemon, id).await.expect("image stored");
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, tags, "repo tags");
    assert_eq!(image.repo_digests, digests, "repo digests");
    for name in tags.iter().chain(digests).copied() {
        let found = status(daemon, name).await;
        assert_eq!(
            found.map(|i| i.id).as_deref(),
            Some(id),
            "ImageStatus({name})"
        );
    }
    let listed = list(daemon).await;
    assert!(
        listed.iter().any(|i| i.id == id && i.repo_tags == tags),
        "{listed:#?}"
    );
}
