//! The shared layer cache: every layer is unpacked once, keyed by its chain id, into its own
//! directory `<root>/layers/<N>` with a short numeric name (overlay mount options must fit in one
//! page), and shared by every image and container that uses it.
//!
//! Crash safety: a layer is unpacked under `<root>/tmp`, made durable with one `syncfs`, then
//! renamed into place inside the store transaction that records it. A crash leaves at worst a
//! directory in `tmp/` or a numbered directory with no record; [`LayerCache::recover`] deletes
//! both at start-up. Deletion goes the other way: the record is removed first, then the directory
//! is renamed into `tmp/` and deleted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::digest::Digest;
use super::pull::PullError;
use crate::error::{Classify, ErrorKind};
use crate::store::{LayerRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for LayerError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a layer fetch resolves to; errors are shared between coalesced waiters.
pub type LayerResult = Result<LayerRecord, Arc<PullError>>;
type InFlight = Shared<BoxFuture<'static, LayerResult>>;

pub struct LayerCache {
    layers_dir: PathBuf,
    tmp_dir: PathBuf,
    store: Arc<Store>,
    /// Chain ids in use by pulls that have not yet recorded their image: never deleted.
    leases: Mutex<HashMap<Digest, usize>>,
    /// Fetches under way. Each fetch task removes its own entry when it ends, even when every
    /// caller has given up: an entry left behind would hand a later pull the record of a layer
    /// garbage-collected in the meantime.
    in_flight: Arc<Mutex<HashMap<Digest, InFlight>>>,
}

/// Keeps chain ids from being garbage-collected while a pull is between fetching its layers and
/// committing its image record.
pub struct Lease<'a> {
    cache: &'a LayerCache,
    chain_ids: Vec<Digest>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Ok(mut leases) = self.cache.leases.lock() else {
            return;
        };
        for id in &self.chain_ids {
            if let Some(n) = leases.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    leases.remove(id);
                }
            }
        }
    }
}

/// Removes a fetch's entry from `LayerCache::in_flight` when the fetch task ends.
struct Unregister {
    registry: Arc<Mutex<HashMap<Digest, InFlight>>>,
    id: Digest,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.registry.lock() {
            in_flight.remove(&self.id);
        }
    }
}

impl LayerCache {
    pub fn new(root: &Path, store: Arc<Store>) -> Result<Self, LayerError> {
        let layers_dir = root.join("layers");
        let tmp_dir = root.join("tmp");
        for dir in [&layers_dir, &tmp_dir] {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        Ok(Self {
            layers_dir,
            tmp_dir,
            store,
            leases: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn dir_of(&self, layer: &LayerRecord) -> PathBuf {
        self.layers_dir.join(layer.dir.to_string())
    }

    pub fn layers_dir(&self) -> &Path {
        &self.layers_dir
    }

    /// A fresh scratch directory under `<root>/tmp` (same filesystem as the cache, so the final
    /// rename is atomic).
    pub fn scratch_dir(&self, purpose: &str) -> Result<PathBuf, LayerError> {
        let name = format!("{purpose}-{:016x}", rand::random::<u64>());
        let path = self.tmp_dir.join(name);
        std::fs::create_dir(&path).map_err(io_err(&path))?;
        Ok(path)
    }

    /// Deletes leftovers of a crash: everything under `tmp/`, and numbered directories that no
    /// record names. Records whose directory vanished are dropped, returning their chain ids so
    /// the caller can forget the images that used them.
    pub fn recover(&self) -> Result<Vec<Digest>, LayerError> {
        for entry in std::fs::read_dir(&self.tmp_dir).map_err(io_err(&self.tmp_dir))? {
            let path = entry.map_err(io_err(&self.tmp_dir))?.path();
            tracing::info!(path = %path.display(), "removing leftover of an interrupted operation");
            remove_any(&path)?;
        }
        let records = self.store.read()?.layers()?;
        let known: std::collections::HashSet<String> =
            records.iter().map(|l| l.dir.to_string()).collect();
        for entry in std::fs::read_dir(&self.layers_dir).map_err(io_err(&self.layers_dir))? {
            let entry = entry.map_err(io_err(&self.layers_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                tracing::warn!(dir = %entry.path().display(), "removing unrecorded layer directory");
                remove_any(&entry.path())?;
            }
        }
        let mut lost = Vec::new();
        for layer in records {
            if !self.dir_of(&layer).is_dir() {
                tracing::warn!(chain_id = %layer.chain_id, "layer directory missing; forgetting the layer");
                self.store
                    .write(|t| t.delete_layer(&layer.chain_id.to_string()))?;
                lost.push(layer.chain_id);
            }
        }
        Ok(lost)
    }

    pub fn lease(&self, chain_ids: &[Digest]) -> Lease<'_> {
        if let Ok(mut leases) = self.leases.lock() {
            for id in chain_ids {
                *leases.entry(id.clone()).or_default() += 1;
            }
        }
        Lease {
            cache: self,
            chain_ids: chain_ids.to_vec(),
        }
    }

    /// Returns the cached layer, or runs `fetch` to produce it. Concurrent callers for the same
    /// chain id share one fetch, which runs as its own task so that a caller giving up (kubelet
    /// cancels, a client disconnects) neither aborts it half-way nor wastes the work.
    pub async fn get_or_fetch<F>(&self, chain_id: &Digest, fetch: F) -> LayerResult
    where
        F: FnOnce() -> BoxFuture<'static, LayerResult>,
    {
        let shared = {
            let Ok(mut in_flight) = self.in_flight.lock() else {
                return Err(Arc::new(PullError::Internal(
                    "layer cache lock poisoned".into(),
                )));
            };
            // Checked under the lock: a fetch commits its record before leaving `in_flight`.
            let existing = self
                .store
                .read()
                .and_then(|r| r.layer(&chain_id.to_string()))
                .map_err(|e| Arc::new(PullError::from(e)))?;
            if let Some(layer) = existing {
                return Ok(layer);
            }
            in_flight
                .entry(chain_id.clone())
                .or_insert_with(|| {
                    let fetching = fetch();
                    let registry = Arc::clone(&self.in_flight);
                    let id = chain_id.clone();
                    let task = tokio::spawn(async move {
                        // Also on a panic. A success is in the store by the time this runs,
                        // so a caller arriving after it finds the layer there.
                        let _unregister = Unregister { registry, id };
                        fetching.await
                    });
                    async move {
                        match task.await {
                            Ok(result) => result,
                            Err(join) => Err(Arc::new(PullError::Internal(format!(
                                "layer fetch task failed: {join}"
                            )))),
                        }
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        shared.await
    }

    /// Moves an unpacked, verified scratch directory into the cache and records it, atomically
    /// with respect to crashes (see the module comment).
    pub fn commit(
        &self,
        scratch: &Path,
        chain_id: &Digest,
        diff_id: &Digest,
        unpacked_bytes: u64,
        entries: u64,
    ) -> Result<LayerRecord, LayerError> {
        sync_filesystem(scratch)?;
        let record = self.store.write(|t| -> Result<LayerRecord, LayerError> {
            if let Some(existing) = t.layer(&chain_id.to_string())? {
                return Ok(existing);
            }
            let record = LayerRecord {
                chain_id: chain_id.clone(),
                diff_id: diff_id.clone(),
                dir: t.allocate_layer_dir()?,
                unpacked_bytes,
                entries,
            };
            let target = self.dir_of(&record);
            std::fs::rename(scratch, &target).map_err(io_err(&target))?;
            t.put_layer(&record)?;
            Ok(record)
        })?;
        if scratch.exists() {
            // Someone else recorded this chain id first; ours is surplus.
            remove_any(scratch)?;
        }
        fsync_dir(&self.layers_dir)?;
        Ok(record)
    }

    /// Deletes the layers among `candidates` that no image or container uses and no pull holds,
    /// returning how many were deleted. Use is decided inside the store transaction.
    pub fn collect_garbage(&self, candidates: &[Digest]) -> Result<usize, LayerError> {
        let Ok(leases) = self.leases.lock() else {
            return Ok(0);
        };
        let doomed = self
            .store
            .write(|t| -> Result<Vec<LayerRecord>, LayerError> {
                let mut doomed = Vec::new();
                let in_use = t.layers_in_use()?;
                for id in candidates {
                    if leases.contains_key(id) || in_use.contains(id) {
                        continue;
                    }
                    if let Some(layer) = t.layer(&id.to_string())? {
                        t.delete_layer(&id.to_string())?;
                        doomed.push(layer);
                    }
                }
                Ok(doomed)
            })?;
        drop(leases);
        for layer in &doomed {
            let dir = self.dir_of(layer);
            let trash = self.tmp_dir.join(format!("deleted-{}", layer.dir));
            std::fs::rename(&dir, &trash).map_err(io_err(&dir))?;
            remove_any(&trash)?;
        }
        Ok(doomed.len())
    }
}

/// Removes a file or a whole tree.
pub fn remove_any(path: &Path) -> Result<(), LayerError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(io_err(path))
}

/// One `syncfs` for a whole unpacked layer instead of an fsync per file.
fn sync_filesystem(path: &Path) -> Result<(), LayerError> {
    let dir = std::fs::File::open(path).map_err(io_err(path))?;
    nix::unistd::syncfs(&dir).map_err(|e| LayerError::Io {
        path: path.to_owned(),
        source: e.into(),
    })
}

fn fsync_dir(path: &Path) -> Result<(), LayerError> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, LayerCache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("meta.db")).expect("store"));
        let cache = LayerCache::new(dir.path(), store).expect("cache");
        (dir, cache)
    }

    #[tokio::test]
    async fn a_fetch_whose_callers_gave_up_still_leaves_in_flight() {
        let (_dir, cache) = cache();
        let chain_id = Digest::from_sha256([7; 32]);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            cache.get_or_fetch(&chain_id, move || {
                async move {
                    let _ = released.await;
                    Err(Arc::new(PullError::Internal("test fetch".into())))
                }
                .boxed()
            }),
        )
        .await;
        assert!(gave_up.is_err(), "the caller timed out");
        assert_eq!(cache.in_flight.lock().expect("lock").len(), 1);
        release.send(()).expect("fetch still running");
        for _ in 0..200 {
            if cache.in_flight.lock().expect("lock").is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the finished fetch is still registered as in flight");
    }
}
