//! The daemon's image store and layer cache: a crash in the middle of a pull is recovered
//! from, `RemoveImage` semantics and layer garbage collection, and `ImageFsInfo`.

mod daemon_helpers;
mod support;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use daemon_helpers::{
    assert_tmp_empty, entries, layer_dirs, layer_paths, list, noise, pull, pull_counters,
    referenced_layer_dirs, remove, status, wait_until,
};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use strata::cri::v1 as cri;
use support::daemon::Daemon;
use support::image::{Compression, Entry, Image, Layer, PushedImage};
use support::registry::{Registry, RegistryOptions};
use tonic::Code;

fn base_layer() -> Layer {
    Layer::entries(vec![Entry::dir("etc"), Entry::file("etc/base", "base\n")])
}

// ---------------------------------------------------------------------------------------------
// Crash during a pull

/// A proxy in front of a registry that answers the request for one blob with its headers and
/// the first half of its bytes, then stalls (until [`StallProxy::release`]).
struct StallProxy {
    addr: String,
    state: Arc<StallState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct StallState {
    upstream: String,
    /// `/blobs/<digest>` to stall; `None` forwards everything.
    stall: Mutex<Option<String>>,
    stalled: AtomicBool,
    http: reqwest::Client,
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

impl StallProxy {
    fn start(upstream: &str, digest: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(StallState {
            upstream: upstream.to_owned(),
            stall: Mutex::new(Some(format!("/blobs/{digest}"))),
            stalled: AtomicBool::new(false),
            http: reqwest::Client::new(),
        });
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread_state = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = thread_state.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| {
                                    stall_handle(req, state.clone())
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
            // Dropping the runtime cancels the stalled connections.
        });
        Self {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    fn stalled(&self) -> bool {
        self.state.stalled.load(Ordering::SeqCst)
    }

    fn release(&self) {
        *self.state.stall.lock().unwrap() = None;
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn stall_handle(
    req: hyper::Request<Incoming>,
    state: Arc<StallState>,
) -> Result<hyper::Response<ProxyBody>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let stall = state
        .stall
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|suffix| path.ends_with(suffix.as_str()));
    let mut upstream = state.http.get(format!("http://{}{path}", state.upstream));
    if let Some(accept) = req.headers().get("Accept").and_then(|v| v.to_str().ok()) {
        upstream = upstream.header("Accept", accept);
    }
    let res = upstream.send().await.expect("forwarding to the registry");
    let mut builder = hyper::Response::builder().status(res.status().as_u16());
    for name in ["Content-Type", "Content-Length", "Docker-Content-Digest"] {
        if let Some(v) = res.headers().get(name) {
            builder = builder.header(name, v.as_bytes());
        }
    }
    let bytes = res.bytes().await.expect("reading the registry's answer");
    let body = if stall {
        let head = bytes.slice(..bytes.len() / 2);
        let frames = futures::stream::iter([Ok(Frame::data(head))]);
        let forever = futures::stream::pending();
        state.stalled.store(true, Ordering::SeqCst);
        BodyExt::boxed(StreamBody::new(futures::StreamExt::chain(frames, forever)))
    } else {
        Full::new(bytes).map_err(|never| match never {}).boxed()
    };
    Ok(builder.body(body).unwrap())
}

#[tokio::test]
async fn crash_during_pull_is_recovered() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Image::oci()
        .layer(Layer::files(&[("small/a", "a\n")]))
        .layer(Layer::files(&[("big", noise(7, 8 << 20))]).compression(Compression::None))
        .layer(Layer::files(&[("small/c", "c\n")]).compression(Compression::Zstd))
        .push(&registry, "crash/app:1")
        .await;
    let big = pushed.layers()[1].digest.to_string();
    let proxy = StallProxy::start(&registry.addr(), &big);
    let reference = pushed.reference.replace(&registry.addr(), &proxy.addr);
    let mut daemon = Daemon::start("");

    let client = daemon.images().await;
    let in_flight = tokio::spawn({
        let mut client = client.clone();
        let reference = reference.clone();
        async move {
            client
                .pull_image(cri::PullImageRequest {
                    image: Some(daemon_helpers::spec(&reference)),
                    ..Default::default()
                })
                .await
        }
    });
    // The big layer is half unpacked in its scratch directory; the small ones are committed.
    wait_until("the stalled pull", Duration::from_secs(30), || {
        proxy.stalled() && entries(&daemon, "tmp").len() == 1 && layer_dirs(&daemon).len() == 2
    })
    .await;
    let committed = layer_dirs(&daemon);
    daemon.kill();
    let err = in_flight.await.unwrap().expect_err("the daemon died");
    assert_ne!(err.code(), Code::Ok);
    assert_eq!(
        entries(&daemon, "tmp").len(),
        1,
        "the crash leaves its scratch"
    );
    assert!(daemon.socket.exists(), "SIGKILL leaves the socket file");

    proxy.release();
    daemon.restart();
    assert_tmp_empty(&daemon);
    assert!(
        list(&daemon).await.is_empty(),
        "the image was never recorded"
    );
    // Layers committed before the crash may be kept (and reused) or collected, nothing else.
    let kept = layer_dirs(&daemon);
    assert!(kept.is_subset(&committed), "{kept:?} after {committed:?}");

    let id = pull(&daemon, &reference)
        .await
        .expect("pull after the crash");
    assert_eq!(id, pushed.config_digest.to_string());
    let refetched = 3 - kept.len() as u64;
    assert_eq!(
        pull_counters(&daemon).await.0,
        refetched,
        "kept layers are reused"
    );
    assert_tmp_empty(&daemon);
    let dirs = layer_dirs(&daemon);
    assert_eq!(dirs.len(), 3);
    assert_eq!(referenced_layer_dirs(&daemon).await, dirs);
    let big_dir = &layer_paths(&daemon, &id).await[1];
    assert_eq!(
        std::fs::read(big_dir.join("big")).unwrap(),
        noise(7, 8 << 20)
    );
}

// ---------------------------------------------------------------------------------------------
// RemoveImage

async fn app(registry: &Registry, name: &str) -> PushedImage {
    Image::oci()
        .layer(base_layer())
        .layer(Layer::files(&[(name, name)]))
        .push(registry, name)
        .await
}

/// The image's layer directory names.
async fn dirs_of(daemon: &Daemon, image: &str) -> BTreeSet<String> {
    layer_paths(daemon, image)
        .await
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn remove_by_id_tag_and_digest_is_idempotent() {
    let registry = Registry::start(RegistryOptions::default());
    let (x, y, z) = (
        app(&registry, "rm/x:1").await,
        app(&registry, "rm/y:1").await,
        app(&registry, "rm/z:1").await,
    );
    let daemon = Daemon::start("");
    for image in [&x, &y, &z] {
        pull(&daemon, &image.reference).await.unwrap();
    }
    assert_eq!(layer_dirs(&daemon).len(), 4, "base + one layer each");
    let y_dirs = dirs_of(&daemon, &y.reference).await;

    let ways = [
        (&x, x.config_digest.to_string()),
        (&y, y.reference.clone()),
        (&z, z.digest_reference()),
    ];
    for (i, (image, spec)) in ways.iter().enumerate() {
        remove(&daemon, spec)
            .await
            .unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        assert!(
            status(&daemon, &image.config_digest.to_string())
                .await
                .is_none(),
            "{spec}"
        );
        assert!(status(&daemon, &image.reference).await.is_none(), "{spec}");
        assert_eq!(list(&daemon).await.len(), 2 - i);
        remove(&daemon, spec).await.expect("removing again is fine");
    }
    assert!(layer_dirs(&daemon).is_empty(), "every layer was collected");
    assert!(!y_dirs.is_empty());
    assert_tmp_empty(&daemon);

    for missing in [
        "127.0.0.1:1/never/pulled:1".to_owned(),
        "sha256:".to_owned() + &"0".repeat(64),
        "busybox".to_owned(),
    ] {
        remove(&daemon, &missing)
            .await
            .expect("a missing image is removed");
    }
    let err = remove(&daemon, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn removing_one_of_three_tags_only_untags() {
    let registry = Registry::start(RegistryOptions::default());
    let image = Image::oci().layer(base_layer());
    let mut tags = Vec::new();
    for t in ["t1", "t2", "t3"] {
        tags.push(image.push(&registry, &format!("tags/app:{t}")).await);
    }
    let daemon = Daemon::start("");
    for t in &tags {
        pull(&daemon, &t.reference).await.unwrap();
    }
    let id = tags[0].config_digest.to_string();
    let names: Vec<String> = tags.iter().map(|t| t.reference.clone()).collect();
    let stored = status(&daemon, &id).await.unwrap();
    assert_eq!(stored.repo_tags, names);
    assert_eq!(stored.repo_digests, [tags[0].digest_reference()]);
    let dirs = layer_dirs(&daemon);

    remove(&daemon, &names[1]).await.unwrap();
    let stored = status(&daemon, &id).await.expect("still there");
    assert_eq!(stored.repo_tags, [names[0].clone(), names[2].clone()]);
    assert_eq!(stored.repo_digests, [tags[0].digest_reference()]);
    assert!(status(&daemon, &names[1]).await.is_none());
    assert_eq!(layer_dirs(&daemon), dirs);

    remove(&daemon, &names[0]).await.unwrap();
    assert_eq!(
        status(&daemon, &id).await.unwrap().repo_tags,
        [names[2].clone()]
    );
    // The last name removes the image.
    remove(&daemon, &names[2]).await.unwrap();
    assert!(status(&daemon, &id).await.is_none());
    assert!(list(&daemon).await.is_empty());
    assert!(layer_dirs(&daemon).is_empty());
}

#[tokio::test]
async fn shared_layer_lives_until_its_last_image_goes() {
    let registry = Registry::start(RegistryOptions::default());
    let (p, q) = (
        app(&registry, "share/p:1").await,
        app(&registry, "share/q:1").await,
    );
    let daemon = Daemon::start("");
    pull(&daemon, &p.reference).await.unwrap();
    pull(&daemon, &q.reference).await.unwrap();
    let (p_paths, q_paths) = (
        layer_paths(&daemon, &p.reference).await,
        layer_paths(&daemon, &q.reference).await,
    );
    assert_eq!(p_paths[0], q_paths[0], "the base layer is shared");
    assert_eq!(layer_dirs(&daemon).len(), 3);

    remove(&daemon, &p.reference).await.unwrap();
    assert!(p_paths[0].is_dir(), "the shared base survives");
    assert!(!p_paths[1].exists(), "p's own layer is deleted");
    assert_eq!(layer_dirs(&daemon), dirs_of(&daemon, &q.reference).await);
    assert_eq!(
        std::fs::read(q_paths[0].join("etc/base")).unwrap(),
        b"base\n"
    );

    remove(&daemon, &q.reference).await.unwrap();
    assert!(layer_dirs(&daemon).is_empty());
    assert_tmp_empty(&daemon);
}

// ---------------------------------------------------------------------------------------------
// ImageFsInfo

/// `ImageFsInfo`: the image filesystem's (mountpoint, used bytes, inodes used), after checking
/// the shape of the whole answer.
async fn fs_usage(daemon: &Daemon) -> (String, u64, u64) {
    let reply = daemon
        .images()
        .await
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    assert_eq!(reply.image_filesystems.len(), 1);
    assert!(
        !reply.container_filesystems.is_empty(),
        "container filesystems"
    );
    for fs in &reply.container_filesystems {
        assert!(!fs.fs_id.as_ref().unwrap().mountpoint.is_empty());
        assert!(fs.used_bytes.is_some() && fs.inodes_used.is_some());
        assert!(fs.timestamp > 0);
    }
    let fs = reply.image_filesystems[0].clone();
    assert!(fs.timestamp > 0);
    (
        fs.fs_id.unwrap().mountpoint,
        fs.used_bytes.unwrap().value,
        fs.inodes_used.unwrap().value,
    )
}

#[tokio::test]
async fn image_fs_info_reports_the_layer_cache() {
    let registry = Registry::start(RegistryOptions::default());
    let pushed = Image::oci()
        .layer(Layer::entries(vec![
            Entry::dir("data"),
            Entry::file("data/one", noise(1, 300_000)),
            Entry::file("data/two", noise(2, 5000)),
        ]))
        .push(&registry, "fs/info:1")
        .await;
    let daemon = Daemon::start("");
    let (mountpoint, bytes0, inodes0) = fs_usage(&daemon).await;
    assert_eq!(
        mountpoint,
        daemon.root().join("layers").display().to_string()
    );

    pull(&daemon, &pushed.reference).await.unwrap();
    let (_, bytes1, inodes1) = fs_usage(&daemon).await;
    assert!(
        bytes1 >= bytes0 + 305_000,
        "used bytes {bytes0} -> {bytes1}"
    );
    assert!(inodes1 >= inodes0 + 3, "inodes {inodes0} -> {inodes1}");

    remove(&daemon, &pushed.reference).await.unwrap();
    let (_, bytes2, inodes2) = fs_usage(&daemon).await;
    assert_eq!((bytes2, inodes2), (bytes0, inodes0));
}
