//! `PullImage` from registries that need more than a plain GET: htpasswd basic auth (CRI
//! `AuthConfig` and the credentials file), a dead mirror in front of the registry, and
//! `docker.io` redirected to a local registry.

mod daemon_helpers;
mod support;

use base64::Engine as _;
use daemon_helpers::{assert_stored, layer_dirs, list, pull, pull_with, status};
use strata::cri::v1 as cri;
use support::daemon::Daemon;
use support::image::{Image, Layer, PushedImage};
use support::registry::{Registry, RegistryOptions};
use tonic::Code;

fn auth(username: &str, password: &str, auth: &str) -> Option<cri::AuthConfig> {
    Some(cri::AuthConfig {
        username: username.into(),
        password: password.into(),
        auth: auth.into(),
        ..Default::default()
    })
}

async fn small_image(registry: &Registry, name: &str) -> PushedImage {
    Image::oci()
        .layer(Layer::files(&[(format!("{name}.txt"), name)]))
        .push(registry, name)
        .await
}

#[tokio::test]
async fn htpasswd_registry_with_auth_config() {
    let registry = Registry::start(RegistryOptions::with_htpasswd("alice", "s3cret"));
    let pushed = small_image(&registry, "private/app:1").await;
    let daemon = Daemon::start("");

    let err = pull(&daemon, &pushed.reference).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains(&registry.addr()), "{err:?}");
    let err = pull_with(&daemon, &pushed.reference, auth("alice", "wrong", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(list(&daemon).await.is_empty());
    assert!(layer_dirs(&daemon).is_empty());

    let id = pull_with(&daemon, &pushed.reference, auth("alice", "s3cret", ""))
        .await
        .expect("username + password");
    assert_eq!(id, pushed.config_digest.to_string());

    daemon_helpers::remove(&daemon, &id).await.unwrap();
    assert!(layer_dirs(&daemon).is_empty());
    let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let id = pull_with(&daemon, &pushed.reference, auth("", "", &b64))
        .await
        .expect("auth field");
    assert_eq!(id, pushed.config_digest.to_string());
    assert_eq!(layer_dirs(&daemon).len(), 1);

    let err = pull_with(&daemon, &pushed.reference, auth("", "", "not base64!"))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
}

#[tokio::test]
async fn htpasswd_registry_with_credentials_file() {
    let registry = Registry::start(RegistryOptions::with_htpasswd("bob", "hunter2"));
    let pushed = small_image(&registry, "private/file:1").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.json");
    let b64 = base64::engine::general_purpose::STANDARD.encode("bob:hunter2");
    let doc = serde_json::json!({"auths": {registry.addr(): {"auth": b64}}});
    std::fs::write(&file, doc.to_string()).unwrap();
    let daemon = Daemon::start(&format!(
        "[registry]\ncredentials_file = \"{}\"\n",
        file.display()
    ));
    let id = pull(&daemon, &pushed.reference)
        .await
        .expect("credentials from the file");
    assert_eq!(id, pushed.config_digest.to_string());
    // Request credentials take precedence over the file.
    let err = pull_with(&daemon, &pushed.reference, auth("bob", "wrong", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

#[tokio::test]
async fn dead_mirror_falls_back_to_the_registry() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = small_image(&registry, "mirrored/app:1").await;
    let daemon = Daemon::start(&format!(
        "[registry.hosts.\"{}\"]\nmirrors = [\"http://{}\"]\n",
        registry.addr(),
        support::dead_endpoint()
    ));
    let id = pull(&daemon, &pushed.reference).await.expect("fallback");
    assert_eq!(id, pushed.config_digest.to_string());
    assert_stored(
        &daemon,
        &id,
        &[pushed.reference.as_str()],
        &[pushed.digest_reference().as_str()],
    )
    .await;
}

#[tokio::test]
async fn docker_io_redirected_to_a_local_registry() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Image::docker()
        .layer(Layer::files(&[("bin/busybox", "fake busybox")]))
        .push(&registry, "library/busybox:1.0")
        .await;
    let daemon = Daemon::start(&format!(
        "[registry.hosts.\"docker.io\"]\nendpoint = \"{}\"\n",
        registry.url()
    ));
    let id = pull(&daemon, "busybox:1.0").await.expect("redirected pull");
    assert_eq!(id, pushed.config_digest.to_string());
    let digest = format!("docker.io/library/busybox@{}", pushed.manifest_digest);
    assert_stored(
        &daemon,
        &id,
        &["docker.io/library/busybox:1.0"],
        &[digest.as_str()],
    )
    .await;
    assert_eq!(status(&daemon, "busybox:1.0").await.unwrap().id, id);
}
