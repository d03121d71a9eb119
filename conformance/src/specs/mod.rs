//! Behaviour specs: each is an async function over a [`Ctx`] returning
//! `Result<(), String>`. The runner prints one line per spec and removes every
//! image a spec pulled (through [`Ctx::pull`]) whether it passed or not.
//!
//! Where a reference runtime legitimately behaves differently from what a spec
//! checks, the spec accepts that runtime's behaviour through
//! [`Ctx::known_deviation`] (keyed by the runtime name from Version), prints a
//! note, and stays strict for every other runtime (strata included).

pub mod image;
pub mod info;

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Image, ImageFilter, ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest,
    RemoveImageRequest,
};
use tonic::transport::Channel;

use crate::client::Cri;

/// Upper bound for one spec (its pulls are of small local images).
const SPEC_TIMEOUT: Duration = Duration::from_secs(300);
/// Upper bound for one cleanup call.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Repository prefix of critest's test images in the registry.
pub const CRI_TOOLS_REPO: &str = "k8s-staging-cri-tools";
/// Error text that marks a spec as skipped rather than failed (see [`skip`]).
const SKIP_MARKER: &str = "\u{0}skip:";

pub type SpecFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
pub type SpecFn = for<'a> fn(&'a Ctx) -> SpecFuture<'a>;

pub struct Spec {
    pub name: &'static str,
    /// Skipped when no `--registry` was given.
    pub needs_registry: bool,
    pub run: SpecFn,
}

/// `spec!("name", path::to::async_fn)`, `spec!(registry "name", f)` for specs
/// that pull from the test registry.
macro_rules! spec {
    (registry $name:literal, $f:path) => {
        $crate::specs::Spec {
            name: $name,
            needs_registry: true,
            run: |c| Box::pin($f(c)),
        }
    };
    ($name:literal, $f:path) => {
        $crate::specs::Spec {
            name: $name,
            needs_registry: false,
            run: |c| Box::pin($f(c)),
        }
    };
}
pub(crate) use spec;

/// Every spec, in run order.
pub fn all() -> Vec<Spec> {
    let mut specs = info::specs();
    specs.extend(image::specs());
    specs
}

/// Ends a spec as SKIP with `reason`.
pub fn skip<T>(reason: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("{SKIP_MARKER}{reason}"))
}

/// `Err(msg)` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

/// `Err` describing the difference unless `got == want`.
pub fn expect_eq<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: &T,
    want: &T,
) -> Result<(), String> {
    ensure(got == want, || {
        format!("{what}: got {got:?}, want {want:?}")
    })
}

/// Formats a gRPC failure of `what`.
pub fn rpc_err(what: &str, status: &tonic::Status) -> String {
    format!("{what}: {:?}: {}", status.code(), status.message())
}

/// What a spec gets: the runtime's two services and the test environment.
pub struct Ctx {
    pub cri: Cri,
    /// `host:port` of the test registry (`--registry`).
    pub registry: Option<String>,
    /// Unique per spec run: use it in names of anything a spec creates.
    pub prefix: String,
    /// `runtime_name` from Version, used to accept known deviations.
    pub runtime_name: String,
    pulled: Mutex<Vec<String>>,
    notes: Mutex<Vec<String>>,
}

impl Ctx {
    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.cri.runtime.clone()
    }

    pub fn images(&self) -> ImageServiceClient<Channel> {
        self.cri.images.clone()
    }

    pub fn registry(&self) -> Result<&str, String> {
        match &self.registry {
            Some(r) => Ok(r),
            None => skip("needs --registry"),
        }
    }

    /// `registry/k8s-staging-cri-tools/<name>`: a critest image reference.
    pub fn test_image(&self, name: &str) -> Result<String, String> {
        Ok(format!("{}/{CRI_TOOLS_REPO}/{name}", self.registry()?))
    }

    /// The registry's digest for `k8s-staging-cri-tools/<name>:<tag>`.
    pub async fn registry_digest(&self, name: &str, tag: &str) -> Result<String, String> {
        let repo = format!("{CRI_TOOLS_REPO}/{name}");
        crate::registry::manifest_digest(self.registry()?, &repo, tag).await
    }

    /// Prints `msg` under the spec's result line.
    pub fn note(&self, msg: impl Into<String>) {
        lock(&self.notes).push(msg.into());
    }

    /// True (and notes `what`) if the runtime under test is `runtime`, whose
    /// documented deviation `what` the calling spec then accepts.
    pub fn known_deviation(&self, runtime: &str, what: &str) -> bool {
        if self.runtime_name == runtime {
            self.note(format!("known {runtime} deviation: {what}"));
            true
        } else {
            false
        }
    }

    /// PullImage, remembering `image` for cleanup; returns the image_ref.
    pub async fn pull(&self, image: &str) -> Result<String, String> {
        self.try_pull(image)
            .await
            .map_err(|s| rpc_err(&format!("PullImage {image}"), &s))
    }

    /// PullImage, returning the gRPC status on failure (for specs that expect
    /// one); also remembers `image` for cleanup.
    pub async fn try_pull(&self, image: &str) -> Result<String, tonic::Status> {
        lock(&self.pulled).push(image.to_owned());
        self.pull_untracked(image).await
    }

    /// PullImage without cleanup (for references that cannot be pulled).
    pub async fn pull_untracked(&self, image: &str) -> Result<String, tonic::Status> {
        let resp = self
            .images()
            .pull_image(PullImageRequest {
                image: Some(image_spec(image)),
                auth: None,
                sandbox_config: None,
            })
            .await?;
        Ok(resp.into_inner().image_ref)
    }

    /// ImageStatus (not verbose); `None` if the runtime has no such image.
    pub async fn status(&self, image: &str) -> Result<Option<Image>, String> {
        let resp = self
            .images()
            .image_status(ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await
            .map_err(|s| rpc_err(&format!("ImageStatus {image}"), &s))?;
        Ok(resp.into_inner().image)
    }

    /// ImageStatus that must find the image.
    pub async fn status_found(&self, image: &str) -> Result<Image, String> {
        self.status(image)
            .await?
            .ok_or_else(|| format!("ImageStatus {image}: no image"))
    }

    /// RemoveImage of exactly `image` (a tag, digest or id).
    pub async fn remove(&self, image: &str) -> Result<(), String> {
        self.images()
            .remove_image(RemoveImageRequest {
                image: Some(image_spec(image)),
            })
            .await
            .map_err(|s| rpc_err(&format!("RemoveImage {image}"), &s))?;
        Ok(())
    }

    /// Removes the whole image `image` refers to, as kubelet and critest do:
    /// ImageStatus, then RemoveImage by id. No-op if it is not there.
    pub async fn remove_image(&self, image: &str) -> Result<(), String> {
        match self.status(image).await? {
            Some(img) => self.remove(&img.id).await,
            None => Ok(()),
        }
    }

    /// ListImages, with an image filter if `filter` is given.
    pub async fn list(&self, filter: Option<&str>) -> Result<Vec<Image>, String> {
        let resp = self
            .images()
            .list_images(ListImagesRequest {
                filter: filter.map(|f| ImageFilter {
                    image: Some(image_spec(f)),
                }),
            })
            .await
            .map_err(|s| rpc_err("ListImages", &s))?;
        Ok(resp.into_inner().images)
    }

    /// Removes every image this spec pulled (by id, so all its names go).
    async fn cleanup(&self) -> Result<(), String> {
        let mut pulled = std::mem::take(&mut *lock(&self.pulled));
        pulled.dedup();
        let mut errors = Vec::new();
        for image in pulled.iter().rev() {
            match tokio::time::timeout(CLEANUP_TIMEOUT, self.remove_image(image)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(format!("removing {image} timed out")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default, Debug)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}

/// Runs every spec whose name contains `filter`, printing one line each.
pub async fn run(cri: Cri, registry: Option<String>, filter: Option<&str>) -> Summary {
    let runtime_name = match cri.version().await {
        Ok(v) => v.runtime_name,
        Err(e) => {
            println!("note: Version failed ({e:#}); no known deviations apply");
            String::new()
        }
    };
    let run_id = format!(
        "sc{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    );
    let mut summary = Summary::default();
    for (i, spec) in all().into_iter().enumerate() {
        if filter.is_some_and(|f| !spec.name.contains(f)) {
            continue;
        }
        if spec.needs_registry && registry.is_none() {
            println!("SKIP {}: needs --registry", spec.name);
            summary.skipped += 1;
            continue;
        }
        let ctx = Ctx {
            cri: cri.clone(),
            registry: registry.clone(),
            prefix: format!("{run_id}-{i}"),
            runtime_name: runtime_name.clone(),
            pulled: Mutex::default(),
            notes: Mutex::default(),
        };
        let start = Instant::now();
        let mut result = match tokio::time::timeout(SPEC_TIMEOUT, (spec.run)(&ctx)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {SPEC_TIMEOUT:?}")),
        };
        let elapsed = start.elapsed();
        if let Err(e) = ctx.cleanup().await {
            result = match result {
                Ok(()) => Err(format!("cleanup: {e}")),
                Err(r) if r.starts_with(SKIP_MARKER) => Err(format!("cleanup: {e}")),
                Err(r) => Err(format!("{r} (and cleanup: {e})")),
            };
        }
        match result {
            Ok(()) => {
                println!("PASS {} ({} ms)", spec.name, elapsed.as_millis());
                summary.passed += 1;
            }
            Err(r) => match r.strip_prefix(SKIP_MARKER) {
                Some(reason) => {
                    println!("SKIP {}: {reason}", spec.name);
                    summary.skipped += 1;
                }
                None => {
                    println!("FAIL {}: {r}", spec.name);
                    summary.failed += 1;
                }
            },
        }
        for note in lock(&ctx.notes).iter() {
            println!("  note: {note}");
        }
    }
    summary
}
