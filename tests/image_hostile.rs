//! Hostile and broken layers through `PullImage`: path traversal, symlink escapes, corrupt,
//! short and cut-off blobs. Each is refused with a clear gRPC error and leaves the store, the
//! layer cache, the scratch space and the rest of the filesystem as they were.

mod daemon_helpers;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use daemon_helpers::{
    assert_tmp_empty, entries, layer_dirs, list, noise, pull, pull_counters, wait_until,
};
use strata::cri::v1 as cri;
use support::daemon::Daemon;
use support::image::{Compression, Entry, Image, Layer, PushedImage};
use support::proxy::{Fault, Proxy, ProxyOptions};
use support::registry::{Registry, RegistryOptions};
use tonic::Code;

fn base_layer() -> Layer {
    Layer::entries(vec![Entry::dir("etc"), Entry::file("etc/base", "base\n")])
}

/// What a failed pull must not change.
struct Snapshot {
    images: Vec<cri::Image>,
    layers: BTreeSet<String>,
    root: BTreeSet<String>,
}

impl Snapshot {
    async fn take(daemon: &Daemon) -> Self {
        Self {
            images: list(daemon).await,
            layers: layer_dirs(daemon),
            root: entries(daemon, ""),
        }
    }

    async fn assert_unchanged(&self, daemon: &Daemon, case: &str) {
        assert_eq!(list(daemon).await, self.images, "{case}: images changed");
        assert_eq!(
            layer_dirs(daemon),
            self.layers,
            "{case}: <root>/layers changed"
        );
        assert_eq!(entries(daemon, ""), self.root, "{case}: <root> changed");
        assert_tmp_empty(daemon);
    }
}

/// Pulls `reference`, expecting `code` and a message containing `needle`; then checks that
/// nothing changed.
async fn assert_pull_fails(
    daemon: &Daemon,
    before: &Snapshot,
    reference: &str,
    code: Code,
    needle: &str,
) {
    let err = pull(daemon, reference)
        .await
        .expect_err(&format!("pulling {reference} must fail"));
    assert_eq!(err.code(), code, "{reference}: {err:?}");
    assert!(
        err.message().contains(needle),
        "{reference}: message should name `{needle}`: {}",
        err.message()
    );
    before.assert_unchanged(daemon, reference).await;
}

#[tokio::test]
async fn hostile_layers_are_refused_and_change_nothing() {
    let registry = Registry::start(RegistryOptions::default());
    let good = Image::oci()
        .layer(base_layer())
        .push(&registry, "good/app:1")
        .await;
    let daemon = Daemon::start("");
    pull(&daemon, &good.reference).await.expect("good image");
    let before = Snapshot::take(&daemon).await;
    assert_eq!(before.layers.len(), 1);

    // `..` climbing out of the layer (and, from <root>/tmp/layer-*, out of <root>/tmp).
    let traversal = Image::oci()
        .layer(base_layer())
        .layer(Layer::entries(vec![
            Entry::file("ok", "fine"),
            Entry::file("../../escape", "out"),
        ]))
        .push(&registry, "hostile/traversal:1")
        .await;
    assert_pull_fails(
        &daemon,
        &before,
        &traversal.reference,
        Code::InvalidArgument,
        "../../escape",
    )
    .await;

    // A symlink to a directory outside, then a file through it: absolute and relative forms.
    let outside = tempfile::Builder::new()
        .prefix("strata-outside-")
        .tempdir()
        .unwrap();
    let target = outside.path().display().to_string();
    let relative = format!("{}{}", "../".repeat(16), target.trim_start_matches('/'));
    for (name, link) in [("absolute", target.clone()), ("relative", relative)] {
        let pushed = Image::oci()
            .layer(base_layer())
            .layer(Layer::entries(vec![
                Entry::symlink("evil", link),
                Entry::file("evil/pwned", "pwned"),
            ]))
            .push(&registry, &format!("hostile/symlink-{name}:1"))
            .await;
        assert_pull_fails(
            &daemon,
            &before,
            &pushed.reference,
            Code::InvalidArgument,
            "evil/pwned",
        )
        .await;
        assert!(
            !outside.path().join("pwned").exists(),
            "{name}: written outside"
        );
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

/// A pull that fails on one layer must not leave the image's other, new layers behind: no image
/// names them, so no `RemoveImage` would ever collect them, yet they count in `ImageFsInfo`.
#[tokio::test]
async fn failed_pull_leaves_no_unreferenced_layers() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Image::oci()
        .layer(Layer::files(&[("good", noise(3, 1 << 20))]))
        .layer(Layer::entries(vec![Entry::file("../../escape", "out")]))
        .push(&registry, "hostile/mixed:1")
        .await;
    let mut daemon = Daemon::start("");
    let err = pull(&daemon, &pushed.reference).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // The good layer's fetch runs on as its own task: wait until it is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pull_counters(&daemon).await.0 == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until("scratch removal", Duration::from_secs(10), || {
        entries(&daemon, "tmp").is_empty()
    })
    .await;
    assert!(list(&daemon).await.is_empty());
    assert_eq!(
        layer_dirs(&daemon),
        BTreeSet::new(),
        "after the failed pull"
    );
    daemon.restart();
    assert_eq!(layer_dirs(&daemon), BTreeSet::new(), "after a restart");
}

/// Pushes a one-layer image whose layer is its own (not shared with anything else).
async fn own_layer_image(
    registry: &Registry,
    name: &str,
    compression: Compression,
    size: usize,
) -> PushedImage {
    Image::oci()
        .layer(base_layer())
        .layer(Layer::files(&[(name, noise(name.len() as u32, size))]).compression(compression))
        .push(registry, name)
        .await
}

#[tokio::test]
async fn corrupt_and_truncated_blobs_are_refused_and_change_nothing() {
    let registry = Registry::start(RegistryOptions::default());
    let good = Image::oci()
        .layer(base_layer())
        .push(&registry, "good/app:1")
        .await;
    let proxy = Proxy::start(&registry.addr(), ProxyOptions::default());
    let daemon = Daemon::start("");
    pull(&daemon, &good.reference).await.expect("good image");
    let before = Snapshot::take(&daemon).await;

    // Same length, other bytes: a plain tar whose file content changed (the tar stays valid, so
    // only the digest can tell), and a gzip blob whose stream is broken.
    for (name, compression) in [
        ("corrupt/plain:1", Compression::None),
        ("corrupt/gzip:1", Compression::Gzip),
    ] {
        let pushed = own_layer_image(&registry, name, compression, 64 << 10).await;
        let layer = &pushed.layers()[1];
        let mut evil = layer.blob.clone();
        let at = evil.len() / 2;
        evil[at] ^= 0xff;
        registry.corrupt_blob(&layer.digest, &evil);
        assert_pull_fails(
            &daemon,
            &before,
            &pushed.reference,
            Code::Unavailable,
            &layer.digest.to_string(),
        )
        .await;
    }

    // Shorter than the manifest says.
    let pushed = own_layer_image(&registry, "short/blob:1", Compression::Gzip, 64 << 10).await;
    let layer = &pushed.layers()[1];
    registry.corrupt_blob(&layer.digest, &layer.blob[..layer.blob.len() / 2]);
    assert_pull_fails(
        &daemon,
        &before,
        &pushed.reference,
        Code::Unavailable,
        &layer.digest.to_string(),
    )
    .await;

    // The connection drops in the middle of the blob.
    let pushed = own_layer_image(&registry, "cut/blob:1", Compression::Zstd, 4 << 20).await;
    proxy.set_fault(Fault::TruncateBlobs(1 << 20));
    let through_proxy = pushed.reference.replace(&registry.addr(), &proxy.addr());
    let digest = pushed.layers()[1].digest.to_string();
    assert_pull_fails(&daemon, &before, &through_proxy, Code::Unavailable, &digest).await;

    // Without the fault the same pull works.
    proxy.set_fault(Fault::None);
    let id = pull(&daemon, &through_proxy)
        .await
        .expect("pull without fault");
    assert_eq!(id, pushed.config_digest.to_string());
    assert_tmp_empty(&daemon);
}
