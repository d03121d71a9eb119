//! The registry client against a real registry (Debian's docker-registry), a token-auth proxy
//! and broken images.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use strata::config::{HostConfig, RegistryConfig};
use strata::error::{Classify, ErrorKind};
use strata::image::digest::Digest;
use strata::image::reference::Reference;
use strata::image::registry::{
    Credentials, RegistryClient, RegistryError, ResolvedImage, Timeouts,
};
use support::image::{
    Compression, Entry, Format, Image, Index, Layer, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
};
use support::proxy::{Fault, Proxy, ProxyOptions};
use support::registry::{Registry, RegistryOptions};

fn client(cfg: &RegistryConfig) -> RegistryClient {
    RegistryClient::new(cfg).unwrap()
}

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

fn two_layer_image(format: Format) -> Image {
    Image::new(format)
        .layer(
            Layer::entries(vec![
                Entry::dir("etc"),
                Entry::file("etc/hello", "hello\n"),
                Entry::executable("bin/tool", b"#!/bin/sh\necho tool\n"),
            ])
            .compression(Compression::Gzip),
        )
        .layer(Layer::files(&[("etc/second", "2\n")]).compression(Compression::Gzip))
        .cmd(["/bin/tool"])
        .env(["A=b"])
}

/// Streams every layer and returns the digests of what arrived.
async fn fetch_all(client: &RegistryClient, image: &ResolvedImage) -> Vec<Digest> {
    let mut out = Vec::new();
    for blob in &image.layers {
        let mut stream = client.fetch_blob(image, blob).await.unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(bytes.len() as u64, blob.size);
        out.push(Digest::of(&bytes));
    }
    out
}

/// Streams one blob to its end; returns the first error.
async fn fetch_error(client: &RegistryClient, image: &ResolvedImage, i: usize) -> RegistryError {
    let mut stream = match client.fetch_blob(image, &image.layers[i]).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    while let Some(chunk) = stream.next().await {
        if let Err(e) = chunk {
            return e;
        }
    }
    panic!("blob {i} streamed without error");
}

fn with_hosts(hosts: &[(&str, HostConfig)]) -> RegistryConfig {
    RegistryConfig {
        hosts: hosts
            .iter()
            .map(|(h, c)| (h.to_string(), c.clone()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

#[tokio::test]
async fn pull_by_tag() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "app/one:v1")
        .await;
    let client = client(&RegistryConfig::default());
    let r = reference(&pushed.reference);
    let image = client.resolve(&r, None).await.unwrap();
    assert_eq!(image.reference, r);
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    assert_eq!(image.platform_manifest_digest, pushed.manifest_digest);
    assert_eq!(image.config_digest, pushed.config_digest);
    assert_eq!(image.config, pushed.image.config);
    assert_eq!(image.endpoint(), registry.url());
    let layers: Vec<_> = image.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(layers, pushed.layer_digests());
    assert_eq!(image.layers[0].size, pushed.layers()[0].size);
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());
    // The config names the diff ids of the layers.
    let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][1].as_str().unwrap(),
        pushed.diff_ids()[1].to_string()
    );
}

#[tokio::test]
async fn pull_by_digest_and_by_tag_at_digest() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Docker)
        .push(&registry, "app/two:v1")
        .await;
    let client = client(&RegistryConfig::default());

    let by_digest = reference(&pushed.digest_reference());
    assert_eq!(by_digest.tag(), None);
    let image = client.resolve(&by_digest, None).await.unwrap();
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    assert_eq!(image.config_digest, pushed.config_digest);
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());

    // tag@digest: the digest is what is pulled, even when the tag has moved on.
    let tag_at_digest = reference(&format!("{}@{}", pushed.reference, pushed.manifest_digest));
    Image::oci()
        .layer(Layer::files(&[("other", "x")]))
        .push(&registry, "app/two:v1")
        .await;
    let image = client.resolve(&tag_at_digest, None).await.unwrap();
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    assert_eq!(image.reference.tag(), Some("v1"));

    // A digest the registry does not have.
    let missing = reference(&format!("{}@{}", pushed.name, Digest::of(b"nothing")));
    let err = client.resolve(&missing, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn multi_arch_index_picks_amd64() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Index::amd64_arm64(Format::Oci, Compression::Gzip)
        .push(&registry, "multi/oci:1")
        .await;
    let client = client(&RegistryConfig::default());
    let image = client
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap();
    let amd64 = pushed.image("amd64");
    assert_eq!(
        image.manifest_digest, pushed.digest,
        "repo digest is the index's"
    );
    assert_eq!(image.platform_manifest_digest, amd64.manifest_digest);
    assert_eq!(image.config_digest, amd64.config_digest);
    assert_eq!(fetch_all(&client, &image).await, amd64.layer_digests());
    assert_ne!(amd64.layer_digests(), pushed.image("arm64").layer_digests());

    // By the index's digest too.
    let by_digest = format!("{}@{}", pushed.name, pushed.digest);
    let image = client.resolve(&reference(&by_digest), None).await.unwrap();
    assert_eq!(image.config_digest, amd64.config_digest);
}

#[tokio::test]
async fn docker_manifest_list_picks_amd64() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Index::amd64_arm64(Format::Docker, Compression::Gzip)
        .push(&registry, "multi/docker:1")
        .await;
    assert_eq!(
        pushed.media_type,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let client = client(&RegistryConfig::default());
    let image = client
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap();
    let amd64 = pushed.image("amd64");
    assert_eq!(image.manifest_digest, pushed.digest);
    assert_eq!(image.config_digest, amd64.config_digest);
    assert_eq!(
        image.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(fetch_all(&client, &image).await, amd64.layer_digests());
}

#[tokio::test]
async fn index_without_amd64_is_not_found() {
    let registry = Registry::start(RegistryOptions::default());
    let arm = |arch: &str, variant: Option<&str>| {
        Image::oci()
            .platform("linux", arch, variant)
            .layer(Layer::files(&[("a", arch)]))
    };
    let pushed = Index::new(Format::Oci)
        .image(arm("arm64", Some("v8")))
        .image(arm("s390x", None))
        .push(&registry, "multi/noamd:1")
        .await;
    let err = client(&RegistryConfig::default())
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(
        msg.contains("linux/arm64/v8") && msg.contains("linux/s390x"),
        "{msg}"
    );
}

#[tokio::test]
async fn layer_media_types_are_reported() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Image::oci()
        .layer(Layer::files(&[("gz", "g")]).compression(Compression::Gzip))
        .layer(Layer::files(&[("zst", "z")]).compression(Compression::Zstd))
        .layer(Layer::files(&[("plain", "p")]).compression(Compression::None))
        .push(&registry, "types/oci:1")
        .await;
    let client = client(&RegistryConfig::default());
    let image = client
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap();
    let types: Vec<_> = image.layers.iter().map(|l| l.media_type.as_str()).collect();
    assert_eq!(types, [OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER]);
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());
    // The zstd blob really is zstd.
    let zstd_blob = &pushed.layers()[1];
    assert_eq!(
        zstd::decode_all(&zstd_blob.blob[..]).unwrap(),
        zstd_blob.tar
    );
}

#[tokio::test]
async fn missing_tag_and_repository_are_not_found() {
    let registry = Registry::start(RegistryOptions::default());
    two_layer_image(Format::Oci)
        .push(&registry, "exists/app:1")
        .await;
    let client = client(&RegistryConfig::default());
    for name in ["exists/app:2", "nothing/here:1"] {
        let err = client
            .resolve(&reference(&registry.reference(name)), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(name), "names the reference: {msg}");
        assert!(msg.contains(&registry.url()), "names the endpoint: {msg}");
    }
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    let registry = Registry::start(RegistryOptions::with_htpasswd("alice", "s3cret"));
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "private/app:1")
        .await;
    let r = reference(&pushed.reference);
    let client = client(&RegistryConfig::default());

    let good = Credentials::from_auth_config("alice", "s3cret", "", "", "")
        .unwrap()
        .unwrap();
    let image = client.resolve(&r, Some(&good)).await.unwrap();
    assert_eq!(image.config_digest, pushed.config_digest);
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());

    let err = client.resolve(&r, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.to_string().contains(&registry.addr()), "{err}");

    // `auth` = base64("alice:wrong"); the good credentials used before must not leak into
    // this pull.
    let bad = Credentials::from_auth_config("", "", "YWxpY2U6d3Jvbmc=", "", "")
        .unwrap()
        .unwrap();
    let err = client.resolve(&r, Some(&bad)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
}

#[tokio::test]
async fn credentials_file_is_used_and_request_credentials_win() {
    let registry = Registry::start(RegistryOptions::with_htpasswd("bob", "pw"));
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "private/file:1")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    // base64("bob:pw")
    std::fs::write(
        &file,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "Ym9iOnB3"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let cfg = RegistryConfig {
        credentials_file: file,
        ..Default::default()
    };
    let client = client(&cfg);
    let r = reference(&pushed.reference);
    client.resolve(&r, None).await.unwrap();
    let wrong = Credentials::Basic {
        username: "bob".into(),
        password: "nope".into(),
    };
    let err = client.resolve(&r, Some(&wrong)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
}

#[tokio::test]
async fn anonymous_bearer_token_flow() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "tok/app:1")
        .await;
    let proxy = Proxy::start(
        &registry.addr(),
        ProxyOptions {
            bearer: true,
            ..Default::default()
        },
    );
    let client = client(&RegistryConfig::default());
    let r = reference(&format!("{}/tok/app:1", proxy.addr()));
    let image = client.resolve(&r, None).await.unwrap();
    assert_eq!(image.config_digest, pushed.config_digest);
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());
    assert!(proxy.tokens_issued() >= 1);
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /token?")
                && r.contains("scope=repository%3Atok%2Fapp%3Apull")),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/blobs/") && r.ends_with("auth=bearer")),
        "{requests:#?}"
    );
}

#[tokio::test]
async fn bearer_token_endpoint_with_credentials() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "tok/private:1")
        .await;
    let proxy = Proxy::start(
        &registry.addr(),
        ProxyOptions {
            bearer: true,
            token_credentials: Some(("carol".into(), "pw".into())),
            ..Default::default()
        },
    );
    let client = client(&RegistryConfig::default());
    let r = reference(&format!("{}/tok/private:1", proxy.addr()));
    let creds = Credentials::Basic {
        username: "carol".into(),
        password: "pw".into(),
    };
    let image = client.resolve(&r, Some(&creds)).await.unwrap();
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());

    let err = client.resolve(&r, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    let wrong = Credentials::Basic {
        username: "carol".into(),
        password: "bad".into(),
    };
    let err = client.resolve(&r, Some(&wrong)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
}

#[tokio::test]
async fn dead_mirror_falls_back_to_upstream() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "mirrored/app:1")
        .await;
    let cfg = with_hosts(&[(
        &registry.addr(),
        HostConfig {
            mirrors: vec![format!("http://{}", support::dead_endpoint())],
            endpoint: None,
        },
    )]);
    let client = client(&cfg);
    let image = client
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap();
    assert_eq!(image.endpoint(), registry.url());
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());
}

#[tokio::test]
async fn failing_and_working_mirrors() {
    let upstream = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&upstream, "mirrored/app:1")
        .await;
    // The mirror holds the same image (it is pushed there too).
    let mirror_registry = Registry::start(RegistryOptions::default());
    two_layer_image(Format::Oci)
        .push(&mirror_registry, "mirrored/app:1")
        .await;
    let mirror = Proxy::start(&mirror_registry.addr(), ProxyOptions::default());
    let broken = Proxy::start(
        &upstream.addr(),
        ProxyOptions {
            fault: Fault::Status(503),
            ..Default::default()
        },
    );
    let cfg = with_hosts(&[(
        &upstream.addr(),
        HostConfig {
            mirrors: vec![broken.url(), mirror.url()],
            endpoint: None,
        },
    )]);
    let client = client(&cfg);
    let r = reference(&pushed.reference);
    let image = client.resolve(&r, None).await.unwrap();
    assert_eq!(image.endpoint(), mirror.url(), "the working mirror serves");
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());
    assert!(!broken.requests().is_empty());

    // A mirror without the image (404) falls through to the upstream too.
    let missing = reference(&upstream.reference("only/upstream:1"));
    let only = Image::oci()
        .layer(Layer::files(&[("only", "upstream")]))
        .push(&upstream, "only/upstream:1")
        .await;
    let image = client.resolve(&missing, None).await.unwrap();
    assert_eq!(image.endpoint(), upstream.url());
    assert_eq!(image.manifest_digest, only.manifest_digest);
}

#[tokio::test]
async fn http_statuses_are_classified() {
    let registry = Registry::start(RegistryOptions::default());
    two_layer_image(Format::Oci)
        .push(&registry, "status/app:1")
        .await;
    let proxy = Proxy::start(&registry.addr(), ProxyOptions::default());
    let client = client(&RegistryConfig::default());
    let r = reference(&format!("{}/status/app:1", proxy.addr()));
    for (status, kind) in [
        (401, ErrorKind::Unauthenticated),
        (403, ErrorKind::PermissionDenied),
        (404, ErrorKind::NotFound),
        (429, ErrorKind::Unavailable),
        (500, ErrorKind::Unavailable),
        (503, ErrorKind::Unavailable),
    ] {
        proxy.set_fault(Fault::Status(status));
        let err = client.resolve(&r, None).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{status}: {err}");
        assert!(err.to_string().contains(&proxy.url()), "{err}");
    }
}

#[tokio::test]
async fn hanging_mirror_times_out_and_falls_back() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "slow/app:1")
        .await;
    let hang = Proxy::start(
        &registry.addr(),
        ProxyOptions {
            fault: Fault::Hang,
            ..Default::default()
        },
    );
    let cfg = with_hosts(&[(
        &registry.addr(),
        HostConfig {
            mirrors: vec![hang.url()],
            endpoint: None,
        },
    )]);
    let timeouts = Timeouts {
        request: Duration::from_secs(2),
        ..Default::default()
    };
    let client = RegistryClient::with_timeouts(&cfg, timeouts).unwrap();
    let image = client
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap();
    assert_eq!(image.endpoint(), registry.url());
}

#[tokio::test]
async fn endpoint_redirect_for_docker_hub() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Docker)
        .push(&registry, "library/foo:tag")
        .await;
    let cfg = with_hosts(&[(
        "docker.io",
        HostConfig {
            mirrors: vec![],
            endpoint: Some(registry.url()),
        },
    )]);
    let client = client(&cfg);
    for name in ["docker.io/library/foo:tag", "foo:tag"] {
        let r = reference(name);
        let image = client.resolve(&r, None).await.unwrap();
        assert_eq!(image.reference.to_string(), "docker.io/library/foo:tag");
        assert_eq!(image.manifest_digest, pushed.manifest_digest);
        assert_eq!(image.endpoint(), registry.url());
        assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());
    }

    // The redirect is the only endpoint: when it is down there is no fallback.
    let dead = format!("http://{}", support::dead_endpoint());
    let cfg = with_hosts(&[(
        "docker.io",
        HostConfig {
            mirrors: vec![],
            endpoint: Some(dead.clone()),
        },
    )]);
    let err = RegistryClient::new(&cfg)
        .unwrap()
        .resolve(&reference("foo:tag"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&dead), "{err}");
}

#[tokio::test]
async fn endpoints_with_a_path_prefix() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "team/app:1")
        .await;
    let proxy = Proxy::start(
        &registry.addr(),
        ProxyOptions {
            bearer: true,
            path_prefix: Some("/mirror/docker".into()),
            ..Default::default()
        },
    );
    // A redirect for a host that does not exist, to a prefixed endpoint (trailing slash too).
    for (host, url) in [
        (
            "registry.invalid",
            format!("{}/mirror/docker/", proxy.url()),
        ),
        (
            "other.invalid:5000",
            format!("{}/mirror/docker", proxy.url()),
        ),
    ] {
        let cfg = with_hosts(&[(
            host,
            HostConfig {
                mirrors: vec![],
                endpoint: Some(url),
            },
        )]);
        let client = client(&cfg);
        let image = client
            .resolve(&reference(&format!("{host}/team/app:1")), None)
            .await
            .unwrap();
        assert_eq!(image.manifest_digest, pushed.manifest_digest);
        assert_eq!(image.endpoint(), format!("{}/mirror/docker", proxy.url()));
        assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());
    }
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.contains(" /mirror/docker/v2/") || r.contains(" /token?")),
        "{requests:#?}"
    );
}

#[tokio::test]
async fn corrupted_and_short_blobs_fail() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "broken/blob:1")
        .await;
    let client = client(&RegistryConfig::default());
    let image = client
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap();

    // Same length, other bytes: the stream ends with a digest error.
    let layer = &pushed.layers()[0];
    let mut evil = layer.blob.clone();
    evil[0] ^= 0xff;
    registry.corrupt_blob(&layer.digest, &evil);
    let err = fetch_error(&client, &image, 0).await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&layer.digest.to_string()), "{err}");

    // Shorter: refused before streaming.
    let layer = &pushed.layers()[1];
    registry.corrupt_blob(&layer.digest, &layer.blob[..layer.blob.len() / 2]);
    let err = fetch_error(&client, &image, 1).await;
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn manifest_lying_about_a_layer_size_fails() {
    let registry = Registry::start(RegistryOptions::default());
    let image = two_layer_image(Format::Oci);
    let real = image.build().layers[0].size;
    let pushed = image
        .declared_size(0, real + 10)
        .push(&registry, "broken/size:1")
        .await;
    let client = client(&RegistryConfig::default());
    let resolved = client
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap();
    assert_eq!(resolved.layers[0].size, real + 10);
    let err = fetch_error(&client, &resolved, 0).await;
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
}

#[tokio::test]
async fn corrupted_config_fails_resolve() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci)
        .push(&registry, "broken/config:1")
        .await;
    let mut evil = pushed.image.config.clone();
    let last = evil.len() - 1;
    evil[last] = b' ';
    registry.corrupt_blob(&pushed.config_digest, &evil);
    let err = client(&RegistryConfig::default())
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("config"), "{err}");
}

#[tokio::test]
async fn truncated_blob_stream_fails() {
    let registry = Registry::start(RegistryOptions::default());
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let pushed = Image::oci()
        .layer(Layer::files(&[("big", &big)]).compression(Compression::None))
        .push(&registry, "broken/trunc:1")
        .await;
    let proxy = Proxy::start(&registry.addr(), ProxyOptions::default());
    let client = client(&RegistryConfig::default());
    let r = reference(&format!("{}/broken/trunc:1", proxy.addr()));
    let image = client.resolve(&r, None).await.unwrap();
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    proxy.set_fault(Fault::TruncateBlobs(1000));
    let err = fetch_error(&client, &image, 0).await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn hostile_and_directory_layers_round_trip() {
    let registry = Registry::start(RegistryOptions::default());
    let hostile = support::image::tar_entries(&[
        Entry::file("../../escape", "x"),
        Entry::symlink("link", "/etc/passwd"),
        Entry::hardlink("hl", "../../outside"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    support::rootfs::busybox_rootfs(dir.path());
    let pushed = Image::oci()
        .layer(Layer::dir(dir.path()).compression(Compression::Zstd))
        .layer(Layer::raw_tar(hostile.clone()))
        .push(&registry, "hostile/app:1")
        .await;
    // The tar holds the paths exactly as written.
    let mut archive = tar::Archive::new(&hostile[..]);
    let paths: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .map(|p| String::from_utf8(p).unwrap())
        .collect();
    assert_eq!(paths, ["../../escape", "link", "hl"]);
    // The busybox applets are hard links in the layer, not copies.
    let rootfs_tar = &pushed.layers()[0].tar;
    let mut archive = tar::Archive::new(&rootfs_tar[..]);
    let links = archive
        .entries()
        .unwrap()
        .filter(|e| e.as_ref().unwrap().header().entry_type() == tar::EntryType::Link)
        .count();
    assert!(links >= 13, "{links} hard links");
    let client = client(&RegistryConfig::default());
    let image = client
        .resolve(&reference(&pushed.reference), None)
        .await
        .unwrap();
    assert_eq!(fetch_all(&client, &image).await, pushed.layer_digests());
    assert_eq!(pushed.layers()[1].diff_id, Digest::of(&hostile));
}

#[test]
fn builds_are_deterministic() {
    let a = two_layer_image(Format::Oci).build();
    let b = two_layer_image(Format::Oci).build();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.config_digest, b.config_digest);
    let zstd_a = Layer::files(&[("f", "x")])
        .compression(Compression::Zstd)
        .build(Format::Oci);
    let zstd_b = Layer::files(&[("f", "x")])
        .compression(Compression::Zstd)
        .build(Format::Oci);
    assert_eq!(zstd_a.digest, zstd_b.digest);
}

#[test]
fn registry_helpers_work_without_a_runtime() {
    let mut registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image(Format::Oci).push_blocking(&registry, "sync/app:1");
    assert!(pushed.reference.starts_with(&registry.addr()));
    assert_eq!(
        support::registry::http_status(&registry.addr(), "/v2/").unwrap(),
        200
    );
    let dir = registry.dir().to_owned();
    registry.stop();
    assert!(!registry.is_running());
    assert!(support::registry::http_status(&registry.addr(), "/v2/").is_err());
    drop(registry);
    assert!(!dir.exists(), "the registry's directory is removed on drop");
}
