//! critest's test images, built here from [`super::rootfs::busybox_rootfs`] and pushed to a
//! test [`Registry`] under the names and tags the strata-conformance image specs
//! (`conformance/src/specs/image.rs`) pull: `k8s-staging-cri-tools/test-image-*`. Also
//! `e2e-test-images/busybox:1.29-2`, critest's container image, which no spec pulls yet.
//!
//! Every image is an OCI index with one linux/amd64 manifest, as on the real multi-arch
//! registries. All share one busybox base layer (its tar is made once per process and
//! compresses to the same gzip bytes, so the same digest, in every image); images the specs
//! need to be distinct get a tiny layer of their own (an empty file named after the image, as
//! the `ADD` lines of critest's Dockerfiles), the `USER` images differ by their config.

use std::sync::OnceLock;

use super::image::{
    Compression, Entry, Format, Image, Index, Layer, PushedIndex, Pusher, block_on,
};
use super::registry::Registry;
use super::rootfs::busybox_rootfs;

/// Repository prefix of critest's images (the specs' `CRI_TOOLS_REPO`).
pub const CRI_TOOLS_REPO: &str = "k8s-staging-cri-tools";
/// Repository prefix of the Kubernetes e2e images.
pub const E2E_REPO: &str = "e2e-test-images";

/// The busybox root filesystem as an uncompressed tar, and its `/etc/passwd` and
/// `/etc/group` (for layers that add users or groups on top).
struct Base {
    tar: Vec<u8>,
    passwd: String,
    group: String,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("strata-fixture-rootfs-")
            .tempdir()
            .expect("temp dir for the busybox rootfs");
        busybox_rootfs(dir.path());
        let read = |rel: &str| {
            std::fs::read_to_string(dir.path().join(rel))
                .unwrap_or_else(|e| panic!("reading {rel} of the busybox rootfs: {e}"))
        };
        Base {
            tar: Layer::dir(dir.path()).tar(),
            passwd: read("etc/passwd"),
            group: read("etc/group"),
        }
    })
}

/// The shared busybox layer (gzip; same bytes, so same digest, in every image).
fn busybox_layer() -> Layer {
    Layer::raw_tar(base().tar.clone()).compression(Compression::Gzip)
}

/// busybox with `Cmd ["sh"]` and the given extra layers.
pub fn busybox_image(extra: impl IntoIterator<Item = Layer>) -> Image {
    let mut image = Image::oci().layer(busybox_layer());
    for layer in extra {
        image = image.layer(layer);
    }
    image.cmd(["sh"])
}

/// busybox plus an empty file `/<name>`: a distinct image id per name.
fn busybox_with_file(name: &str) -> Image {
    busybox_image([Layer::entries(vec![Entry::file(name, "")])])
}

/// What `adduser -u 1000 -D default-user && addgroup -g 50000 group-defined-in-image &&
/// addgroup default-user group-defined-in-image` does on top of busybox.
fn predefined_group_layer() -> Layer {
    let base = base();
    Layer::entries(vec![
        Entry::dir("etc"),
        Entry::file(
            "etc/passwd",
            format!(
                "{}default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n",
                base.passwd
            ),
        ),
        Entry::file(
            "etc/group",
            format!(
                "{}default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
                base.group
            ),
        ),
        Entry::dir("home"),
        Entry::dir("home/default-user").owner(1000, 1000),
    ])
}

/// Every fixture: the image and the `repo:tag` names it is pushed under.
fn fixtures() -> Vec<(Image, Vec<String>)> {
    let s = |name: &str| format!("{CRI_TOOLS_REPO}/{name}");
    let user = |u: &str| busybox_image([]).user(u);
    vec![
        (
            busybox_image([]),
            vec![format!("{E2E_REPO}/busybox:1.29-2")],
        ),
        (
            busybox_with_file("test-image-1"),
            vec![s("test-image-1:latest")],
        ),
        (
            busybox_with_file("test-image-2"),
            vec![s("test-image-2:latest")],
        ),
        (
            busybox_with_file("test-image-3"),
            vec![s("test-image-3:latest")],
        ),
        (
            busybox_with_file("test-image-latest"),
            vec![s("test-image-latest:latest")],
        ),
        (busybox_with_file("test"), vec![s("test-image-tag:test")]),
        (busybox_with_file("all"), vec![s("test-image-tag:all")]),
        (
            busybox_with_file("same-image"),
            vec![
                s("test-image-tags:1"),
                s("test-image-tags:2"),
                s("test-image-tags:3"),
            ],
        ),
        (user("1002"), vec![s("test-image-user-uid:latest")]),
        (user("www-data"), vec![s("test-image-user-username:latest")]),
        (
            user("1003:1004"),
            vec![s("test-image-user-uid-group:latest")],
        ),
        (
            user("www-data:1004"),
            vec![s("test-image-user-username-group:latest")],
        ),
        (
            busybox_image([predefined_group_layer()]).user("1000"),
            vec![s("test-image-predefined-group:latest")],
        ),
    ]
}

/// Builds critest's test images and pushes each, as an OCI index over one linux/amd64
/// manifest, under every name the conformance specs pull. Returns what was pushed, one entry
/// per name. Needs no async runtime (and works inside one).
pub fn push_cri_test_images(registry: &Registry) -> Vec<PushedIndex> {
    let fixtures = fixtures();
    block_on(async {
        let mut pushed = Vec::new();
        let pusher = Pusher::new(registry);
        for (image, names) in &fixtures {
            let (first, others) = names.split_first().expect("a fixture has a name");
            let index = Index::new(Format::Oci)
                .image(image.clone())
                .push(registry, first)
                .await;
            pushed.push(index.clone());
            // The same index bytes under the other names: one image, several tags.
            for name in others {
                let (repo, tag) = name.rsplit_once(':').expect("fixture names are repo:tag");
                pusher
                    .put_manifest(repo, tag, &index.index, &index.media_type)
                    .await;
                pushed.push(PushedIndex {
                    reference: registry.reference(name),
                    name: registry.reference(repo),
                    ..index.clone()
                });
            }
        }
        pushed
    })
}
