//! Shared helpers for integration tests. Include with `mod support;` in a file under `tests/`.
//!
//! - [`registry::Registry`]: a real Debian `docker-registry` (distribution 2.8) on
//!   `127.0.0.1:<free port>`, plain HTTP, storage in a temporary directory, optional htpasswd
//!   basic auth. Killed and removed on drop.
//! - [`proxy::Proxy`]: an HTTP proxy in front of a registry that demands bearer tokens from its
//!   own token endpoint (the Docker Hub flow), logs requests, and injects faults (an error
//!   status, a hang, truncated blobs).
//! - [`image`]: deterministic layers (from entry lists, a directory or raw tar bytes; gzip,
//!   zstd or none), OCI or Docker schema2 images, indexes / manifest lists, pushed over HTTP.
//!   Also broken images: a manifest that lies about a layer's size, and
//!   [`registry::Registry::corrupt_blob`] to make the registry serve other bytes under a digest.
//! - [`rootfs::busybox_rootfs`]: a small real root filesystem from Debian's busybox.
//!
//! Packages the helpers need (Debian): `docker-registry`, `apache2-utils` (htpasswd for auth
//! only), `busybox` (for `busybox_rootfs` only).
//!
//! ```ignore
//! mod support;
//! use support::{image::{Image, Layer, Entry, Compression}, registry::{Registry, RegistryOptions}};
//!
//! #[tokio::test]
//! async fn pulls() {
//!     let registry = Registry::start(RegistryOptions::default());
//!     let pushed = Image::oci()
//!         .layer(Layer::entries(vec![Entry::file("etc/hello", "hi\n")]).compression(Compression::Zstd))
//!         .cmd(["/bin/sh"])
//!         .push(&registry, "demo/hello:1")
//!         .await;
//!     // pushed.reference == "127.0.0.1:PORT/demo/hello:1"; pushed.manifest_digest, .config_digest,
//!     // .layers[i].digest / .diff_id ...
//! }
//! ```
//!
//! Every helper cleans up on drop, also when the test panics. The registry and proxy run as
//! separate processes or on their own threads, so they work from `#[test]` and from
//! `#[tokio::test]` alike (the async push helpers need a Tokio runtime; the `*_blocking`
//! variants need none).

#![allow(dead_code)]

pub mod cri;
pub mod daemon;
pub mod fixtures;
pub mod image;
pub mod proxy;
pub mod registry;
pub mod rootfs;
pub mod streaming;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// `127.0.0.1:PORT` where nothing listens: connections are refused. For "the mirror is down".
pub fn dead_endpoint() -> String {
    format!("127.0.0.1:{}", free_port())
}
