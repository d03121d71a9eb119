//! Pulls: resolve a reference at the registry, fetch every missing layer concurrently (bounded),
//! decompress and unpack each while it downloads, verify digests as the bytes stream, and record
//! the image. Concurrent pulls of one image or one layer share the work.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};

use super::digest::{Digest, DigestError, HashingReader, chain_ids};
use super::layers::{LayerCache, LayerError};
use super::reference::{Reference, ReferenceError};
use super::registry::{BlobDescriptor, Credentials, RegistryClient, RegistryError, ResolvedImage};
use super::unpack::{self, Compression, UnpackError, UnpackStats};
use crate::error::{Classify, ErrorKind};
use crate::store::{LayerRecord, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("image config of {reference}: {message}")]
    BadConfig { reference: String, message: String },
    #[error("layer {digest}: {source}")]
    Unpack { digest: Digest, source: UnpackError },
    #[error("layer {digest}: {source}")]
    Verify { digest: Digest, source: DigestError },
    #[error("layer {digest} is truncated: got {got} of {expected} bytes")]
    Truncated {
        digest: Digest,
        expected: u64,
        got: u64,
    },
    #[error("layer {digest} download: {source}")]
    Download {
        digest: Digest,
        source: std::io::Error,
    },
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Shared(Arc<PullError>),
}

impl Classify for PullError {
    fn kind(&self) -> ErrorKind {
        match self {
            PullError::Reference(e) => e.kind(),
            PullError::Registry(e) => e.kind(),
            PullError::BadConfig { .. } => ErrorKind::InvalidArgument,
            PullError::Unpack { source, .. } => source.kind(),
            PullError::Verify { source, .. } => source.kind(),
            PullError::Truncated { .. } | PullError::Download { .. } => ErrorKind::Unavailable,
            PullError::Layer(e) => e.kind(),
            PullError::Store(e) => e.kind(),
            PullError::Internal(_) => ErrorKind::Internal,
            PullError::Shared(e) => e.kind(),
        }
    }
}

impl From<Arc<PullError>> for PullError {
    fn from(e: Arc<PullError>) -> Self {
        match Arc::try_unwrap(e) {
            Ok(e) => e,
            Err(shared) => PullError::Shared(shared),
        }
    }
}

/// What a pull produced: everything the image record needs.
pub struct Pulled {
    pub resolved: ResolvedImage,
    pub layers: Vec<LayerRecord>,
}

/// Counters reported in `Status(verbose)`, so benchmarks can tell what a pull really fetched.
#[derive(Default)]
pub struct PullCounters {
    pub layers_fetched: AtomicU64,
    pub bytes_fetched: AtomicU64,
}

pub struct Puller {
    registry: RegistryClient,
    cache: Arc<LayerCache>,
    downloads: Arc<Semaphore>,
    pub counters: Arc<PullCounters>,
}

impl Puller {
    pub fn new(registry: RegistryClient, cache: Arc<LayerCache>, max_downloads: usize) -> Self {
        Self {
            registry,
            cache,
            downloads: Arc::new(Semaphore::new(max_downloads)),
            counters: Arc::default(),
        }
    }

    /// Resolves and fetches `reference`; the layers are cached and leased until `then` (which
    /// records the image) returns, so garbage collection cannot take them in between.
    pub async fn pull<T>(
        &self,
        reference: &Reference,
        creds: Option<&Credentials>,
        then: impl FnOnce(Pulled) -> Result<T, PullError>,
    ) -> Result<T, PullError> {
        let resolved = self.registry.resolve(reference, creds).await?;
        let diff_ids = diff_ids_of(&resolved)?;
        let chain = chain_ids(&diff_ids);
        let _lease = self.cache.lease(&chain);
        let fetches = resolved
            .layers
            .iter()
            .zip(diff_ids.iter().zip(chain.iter()))
            .map(|(blob, (diff_id, chain_id))| {
                let job = LayerJob {
                    registry: self.registry.clone(),
                    image: resolved.clone(),
                    blob: blob.clone(),
                    diff_id: diff_id.clone(),
                    chain_id: chain_id.clone(),
                    cache: self.cache.clone(),
                    downloads: self.downloads.clone(),
                    counters: self.counters.clone(),
                };
                let cache = self.cache.clone();
                async move {
                    cache
                        .get_or_fetch(&job.chain_id.clone(), move || {
                            job.run().map(|r| r.map_err(Arc::new)).boxed()
                        })
                        .await
                }
            });
        // All fetches settle before a failure is reported, so that the clean-up below sees every
        // layer this pull committed.
        let settled = futures::future::join_all(fetches).await;
        let layers = match settled.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(layers) => layers,
            Err(e) => {
                // Layers this pull committed before another one failed belong to no image: drop
                // them now rather than keep unreferenced space (other pulls lease theirs).
                drop(_lease);
                if let Err(gc) = self.cache.collect_garbage(&chain) {
                    tracing::warn!(error = %gc, "removing layers of a failed pull");
                }
                return Err(e.into());
            }
        };
        then(Pulled { resolved, layers })
    }
}

fn diff_ids_of(resolved: &ResolvedImage) -> Result<Vec<Digest>, PullError> {
    let bad = |message: String| PullError::BadConfig {
        reference: resolved.reference.to_string(),
        message,
    };
    let config: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&resolved.config).map_err(|e| bad(e.to_string()))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse::<Digest>().map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != resolved.layers.len() {
        return Err(bad(format!(
            "{} diff ids for {} layers",
            diff_ids.len(),
            resolved.layers.len()
        )));
    }
    Ok(diff_ids)
}

/// One layer download + unpack, run as its own task.
struct LayerJob {
    registry: RegistryClient,
    image: ResolvedImage,
    blob: BlobDescriptor,
    diff_id: Digest,
    chain_id: Digest,
    cache: Arc<LayerCache>,
    downloads: Arc<Semaphore>,
    counters: Arc<PullCounters>,
}

impl LayerJob {
    async fn run(self) -> Result<LayerRecord, PullError> {
        let _permit = self
            .downloads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PullError::Internal("download limiter closed".into()))?;
        let compression =
            Compression::from_media_type(&self.blob.media_type).map_err(|source| {
                PullError::Unpack {
                    digest: self.blob.digest.clone(),
                    source,
                }
            })?;
        let mut stream = self.registry.fetch_blob(&self.image, &self.blob).await?;
        // Bytes flow from the network task to a blocking unpacker through a small bounded
        // channel: back-pressure keeps memory flat, and decompression overlaps the download.
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(32);
        let (cache, blob) = (self.cache.clone(), self.blob.clone());
        let (diff_id, chain_id) = (self.diff_id.clone(), self.chain_id.clone());
        let unpacker = tokio::task::spawn_blocking(move || {
            let layer = LayerToInstall {
                blob: &blob,
                diff_id: &diff_id,
                chain_id: &chain_id,
                compression,
            };
            install_layer(&cache, ChannelReader::new(rx), &layer)
        });
        let counters = self.counters.clone();
        let forward = async move {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                if let Ok(bytes) = &chunk {
                    counters
                        .bytes_fetched
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break; // the unpacker stopped (it reports why) or the download failed
                }
            }
        };
        let ((), unpacked) = tokio::join!(forward, unpacker);
        let record = unpacked.map_err(|e| PullError::Internal(format!("unpack task: {e}")))??;
        self.counters.layers_fetched.fetch_add(1, Ordering::Relaxed);
        tracing::info!(digest = %self.blob.digest, dir = record.dir, bytes = self.blob.size, "layer unpacked");
        Ok(record)
    }
}

/// A layer blob to verify, unpack and add to the cache.
pub struct LayerToInstall<'a> {
    pub blob: &'a BlobDescriptor,
    pub diff_id: &'a Digest,
    pub chain_id: &'a Digest,
    pub compression: Compression,
}

/// Unpacks a layer blob into a scratch directory, verifies it, and commits it to the cache;
/// nothing of a failed layer stays behind. Blocking: run it off the async threads.
pub fn install_layer(
    cache: &LayerCache,
    input: impl Read,
    layer: &LayerToInstall<'_>,
) -> Result<LayerRecord, PullError> {
    let scratch = cache.scratch_dir("layer")?;
    let result = unpack_verified(
        input,
        layer.blob,
        layer.diff_id,
        layer.compression,
        &scratch,
    )
    .and_then(|stats| {
        Ok(cache.commit(
            &scratch,
            layer.chain_id,
            layer.diff_id,
            stats.bytes,
            stats.entries,
        )?)
    });
    if result.is_err()
        && let Err(e) = super::layers::remove_any(&scratch)
    {
        tracing::warn!(error = %e, "removing scratch directory");
    }
    result
}

/// Decompresses and unpacks one blob, verifying its size and digest and the uncompressed diff id.
fn unpack_verified(
    input: impl Read,
    blob: &BlobDescriptor,
    diff_id: &Digest,
    compression: Compression,
    dest: &Path,
) -> Result<UnpackStats, PullError> {
    let digest = &blob.digest;
    // One byte more than promised lets an oversized blob be detected instead of cut silently.
    let mut compressed = HashingReader::new(input.take(blob.size.saturating_add(1)));
    let outcome = (|| -> Result<(UnpackStats, Digest), PullError> {
        let decoder = unpack::decompress(compression, &mut compressed).map_err(|source| {
            PullError::Unpack {
                digest: digest.clone(),
                source,
            }
        })?;
        let mut plain = HashingReader::new(decoder);
        let stats = unpack::unpack_layer(&mut plain, dest).map_err(|source| PullError::Unpack {
            digest: digest.clone(),
            source,
        })?;
        let (actual_diff_id, _) = plain.finish().map_err(|source| PullError::Download {
            digest: digest.clone(),
            source,
        })?;
        Ok((stats, actual_diff_id))
    })();
    // Whatever the unpacker made of the bytes, a short or corrupt blob is the root cause: check
    // the blob first, also when the unpacker failed on what it was fed.
    let drained = compressed.finish().map_err(|source| PullError::Download {
        digest: digest.clone(),
        source,
    });
    drained.and_then(|(actual, size)| check_blob(blob, actual, size))?;
    let (stats, actual_diff_id) = outcome?;
    if &actual_diff_id != diff_id {
        return Err(PullError::Verify {
            digest: digest.clone(),
            source: DigestError::Mismatch {
                expected: diff_id.clone(),
                actual: actual_diff_id,
            },
        });
    }
    Ok(stats)
}

/// Checks a whole blob's size and digest against its descriptor.
fn check_blob(blob: &BlobDescriptor, actual: Digest, size: u64) -> Result<(), PullError> {
    let digest = &blob.digest;
    if size < blob.size {
        return Err(PullError::Truncated {
            digest: digest.clone(),
            expected: blob.size,
            got: size,
        });
    }
    if size > blob.size {
        return Err(PullError::Verify {
            digest: digest.clone(),
            source: DigestError::SizeMismatch {
                digest: digest.clone(),
                expected: blob.size,
                actual: size,
            },
        });
    }
    if &actual != digest {
        return Err(PullError::Verify {
            digest: digest.clone(),
            source: DigestError::Mismatch {
                expected: digest.clone(),
                actual,
            },
        });
    }
    Ok(())
}

/// A blocking `Read` over chunks sent by an async task. An error is sticky: every later read
/// returns it again, so a reader that drains the rest after a failure sees it too.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
    failed: Option<(std::io::ErrorKind, String)>,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            failed: None,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if let Some((kind, message)) = &self.failed {
                return Err(std::io::Error::new(*kind, message.clone()));
            }
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_reader_concatenates_chunks_and_passes_errors() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(b"hel"))).unwrap();
        tx.try_send(Ok(Bytes::from_static(b"lo"))).unwrap();
        tx.try_send(Err(std::io::Error::other("boom"))).unwrap();
        drop(tx);
        let mut r = ChannelReader::new(rx);
        let mut out = [0u8; 5];
        r.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"hello");
        assert!(r.read(&mut out).is_err());
        // The error is sticky: it is not mistaken for the end of the stream.
        let again = r.read(&mut out).unwrap_err();
        assert_eq!(again.to_string(), "boom");
    }
}
