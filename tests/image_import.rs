//! `strata image import`: OCI archives (oci-layout tar) and `docker save` tarballs, imported
//! through the running daemon's admin API and, with the daemon stopped, straight into the
//! store. Imported images share the layer cache with pulled ones.

mod daemon_helpers;
mod support;

use std::path::Path;
use std::process::{Command, Output};

use daemon_helpers::{
    assert_tmp_empty, layer_dirs, layer_paths, list, pull, pull_counters, status,
};
use serde_json::json;
use support::daemon::Daemon;
use support::image::{BuiltImage, Compression, Entry, Image, Layer, OCI_INDEX};
use support::registry::{Registry, RegistryOptions};

/// A tar of regular files, in order.
fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// An OCI image layout in a tar. `refs` are the index entries' annotations, each entry naming
/// the image's manifest.
fn oci_archive(image: &BuiltImage, refs: &[serde_json::Value]) -> Vec<u8> {
    let manifests: Vec<_> = refs
        .iter()
        .map(|annotations| {
            json!({
                "mediaType": image.manifest_media_type,
                "digest": image.manifest_digest.to_string(),
                "size": image.manifest.len(),
                "annotations": annotations,
            })
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let blob = |bytes: &[u8]| {
        let digest = strata::image::digest::Digest::of(bytes);
        (format!("blobs/sha256/{}", digest.hex()), bytes.to_vec())
    };
    let mut files = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        blob(&image.config),
    ];
    files.extend(image.layers.iter().map(|l| blob(&l.blob)));
    files.push(blob(&image.manifest));
    // The index last: an importer must not depend on reading it first.
    files.push(("index.json".to_owned(), index.to_string().into_bytes()));
    tar_of(&files)
}

/// A `docker save` tarball: uncompressed layers as `<diff id>/layer.tar`, the config as
/// `<id>.json`, and `manifest.json`.
fn docker_archive(image: &BuiltImage, repo_tags: &[&str]) -> Vec<u8> {
    let config_name = format!("{}.json", image.config_digest.hex());
    let layer_names: Vec<String> = image
        .layers
        .iter()
        .map(|l| format!("{}/layer.tar", l.diff_id.hex()))
        .collect();
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    let mut files = vec![(
        "manifest.json".to_owned(),
        manifest.to_string().into_bytes(),
    )];
    files.push((config_name, image.config.clone()));
    for (name, layer) in layer_names.iter().zip(&image.layers) {
        files.push((name.clone(), layer.tar.clone()));
    }
    tar_of(&files)
}

/// `strata image import FILE --config CONFIG`, run in `cwd`.
fn import(daemon: &Daemon, cwd: &Path, file: &str) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["image", "import", file, "--config"])
        .arg(&daemon.config_path)
        .current_dir(cwd)
        .output()
        .expect("running strata image import");
    assert!(
        out.status.success(),
        "strata image import {file}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn two_layer_image() -> Image {
    Image::oci()
        .layer(Layer::entries(vec![
            Entry::dir("etc"),
            Entry::file("etc/release", "import test\n"),
            Entry::executable("bin/app", b"#!/bin/sh\n"),
        ]))
        .layer(Layer::files(&[("data/payload", vec![7u8; 100_000])]).compression(Compression::Zstd))
        .cmd(["/bin/app"])
}

#[tokio::test]
async fn imports_through_the_running_daemon_share_pulled_layers() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = two_layer_image().push(&registry, "import/app:pulled").await;
    let daemon = Daemon::start("");
    let id = pull(&daemon, &pushed.reference).await.unwrap();
    let paths = layer_paths(&daemon, &id).await;
    let dirs = layer_dirs(&daemon);
    assert_eq!(dirs.len(), 2);
    let work = tempfile::tempdir().unwrap();

    // (a) OCI archive, named by both annotations containerd and other tools write.
    let archive = oci_archive(
        &pushed.image,
        &[
            json!({"org.opencontainers.image.ref.name": "registry.test/imp/app:full-ref"}),
            json!({
                "io.containerd.image.name": "registry.test/imp/app:containerd",
                "org.opencontainers.image.ref.name": "containerd",
            }),
        ],
    );
    std::fs::write(work.path().join("oci.tar"), archive).unwrap();
    // A relative path: the CLI resolves it before asking the daemon.
    let out = import(&daemon, work.path(), "oci.tar");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&id), "{stdout}");
    assert!(
        daemon.log().contains("image imported"),
        "the daemon did the import"
    );

    let oci_tags = [
        "registry.test/imp/app:full-ref",
        "registry.test/imp/app:containerd",
    ];
    let image = status(&daemon, &id).await.unwrap();
    for tag in oci_tags.iter().copied().chain([pushed.reference.as_str()]) {
        assert!(image.repo_tags.iter().any(|t| t == tag), "{tag}: {image:?}");
        assert_eq!(status(&daemon, tag).await.unwrap().id, id, "{tag}");
    }
    let repo_digest = format!("registry.test/imp/app@{}", pushed.manifest_digest);
    assert!(image.repo_digests.contains(&repo_digest), "{image:?}");
    assert_eq!(layer_paths(&daemon, &id).await, paths, "no second unpack");
    assert_eq!(layer_dirs(&daemon), dirs);

    // (b) docker save: short names are normalised as a pull would.
    let archive = docker_archive(&pushed.image, &["strata-import/app:docker"]);
    let path = work.path().join("docker.tar");
    std::fs::write(&path, archive).unwrap();
    import(&daemon, work.path(), path.to_str().unwrap());
    let image = status(&daemon, "strata-import/app:docker").await.unwrap();
    assert_eq!(image.id, id);
    assert!(
        image
            .repo_tags
            .contains(&"docker.io/strata-import/app:docker".to_owned()),
        "{image:?}"
    );
    assert_eq!(layer_paths(&daemon, &id).await, paths, "no second unpack");
    assert_eq!(layer_dirs(&daemon), dirs);
    assert_eq!(list(&daemon).await.len(), 1);
    assert_eq!(pull_counters(&daemon).await.0, 2, "imports are not fetches");
    assert_tmp_empty(&daemon);
}

// Multi-threaded: `Daemon::terminate` blocks its thread, and the daemon's graceful shutdown
// waits for this test's gRPC connections to acknowledge it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_into_the_store_while_the_daemon_is_stopped() {
    let registry = Registry::start(RegistryOptions::default());
    let base = || Layer::files(&[("base/file", "shared base\n")]);
    let pulled = Image::oci()
        .layer(base())
        .layer(Layer::files(&[("pulled", "p")]))
        .push(&registry, "stopped/pulled:1")
        .await;
    let mut daemon = Daemon::start("");
    pull(&daemon, &pulled.reference).await.unwrap();
    let base_dir = layer_paths(&daemon, &pulled.reference).await[0].clone();
    assert_eq!(layer_dirs(&daemon).len(), 2);
    assert!(daemon.terminate(), "the daemon stops cleanly");

    // Another image on the same base, never pushed anywhere: docker save and OCI archives.
    let work = tempfile::tempdir().unwrap();
    let saved = Image::docker()
        .layer(base())
        .layer(Layer::entries(vec![
            Entry::file("saved", "from docker save\n")
                .mode(0o600)
                .owner(33, 33),
        ]))
        .build();
    let path = work.path().join("saved.tar");
    std::fs::write(&path, docker_archive(&saved, &["registry.test/saved:1"])).unwrap();
    let out = import(&daemon, work.path(), path.to_str().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&saved.config_digest.to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("registry.test/saved:1"), "{stdout}");

    let archived = Image::oci()
        .layer(base())
        .layer(
            Layer::files(&[("archived", "from an OCI archive\n")]).compression(Compression::None),
        )
        .build();
    let path = work.path().join("archived.tar");
    let refs = [json!({"org.opencontainers.image.ref.name": "registry.test/archived:2"})];
    std::fs::write(&path, oci_archive(&archived, &refs)).unwrap();
    import(&daemon, work.path(), path.to_str().unwrap());
    assert_tmp_empty(&daemon);
    assert_eq!(
        layer_dirs(&daemon).len(),
        4,
        "the base is not unpacked again"
    );

    daemon.restart();
    for (built, name) in [
        (&saved, "registry.test/saved:1"),
        (&archived, "registry.test/archived:2"),
    ] {
        let id = built.config_digest.to_string();
        let image = status(&daemon, name)
            .await
            .expect("imported image is listed");
        assert_eq!(image.id, id);
        assert_eq!(image.repo_tags, [name]);
        let paths = layer_paths(&daemon, &id).await;
        assert_eq!(paths[0], base_dir, "{name} uses the pulled base layer");
    }
    let saved_dir = &layer_paths(&daemon, "registry.test/saved:1").await[1];
    let meta = std::fs::metadata(saved_dir.join("saved")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o600, 33, 33)
    );
    assert_eq!(list(&daemon).await.len(), 3);
    assert_eq!(
        daemon_helpers::referenced_layer_dirs(&daemon).await,
        layer_dirs(&daemon)
    );
}
