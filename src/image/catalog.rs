//! The image catalog: what `ImageService` sees. It owns the layer cache and the puller, names
//! images (repo tags and repo digests), resolves the many ways CRI clients name an image, and
//! removes images and the layers nobody uses any more.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::digest::Digest;
use super::layers::LayerCache;
use super::pull::{PullCounters, PullError, Pulled, Puller};
use super::reference::Reference;
use super::registry::{Credentials, RegistryClient};
use crate::config::Config;
use crate::error::{Classify, ErrorKind};
use crate::store::{ImageRecord, Store, StoreError, WriteTxn};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] super::layers::LayerError),
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryError),
    #[error("measuring {path}: {source}")]
    Usage {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Classify for CatalogError {
    fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::Registry(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }
}

/// Disk usage of a filesystem CRI reports in `ImageFsInfo`.
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// The user an image runs as by default, from its config's `User` (`uid`, `name`, `uid:gid`...).
#[derive(Debug, PartialEq, Eq)]
pub enum ImageUser {
    None,
    Uid(i64),
    Name(String),
}

pub struct Images {
    store: Arc<Store>,
    cache: Arc<LayerCache>,
    puller: Puller,
    pinned: Vec<String>,
    containers_dir: PathBuf,
}

impl Images {
    pub fn new(config: &Config, store: Arc<Store>) -> Result<Self, CatalogError> {
        let cache = Arc::new(LayerCache::new(&config.root, store.clone())?);
        let registry = RegistryClient::new(&config.registry)?;
        let pinned = config
            .images
            .pinned
            .iter()
            .map(|p| match p.parse::<Reference>() {
                Ok(r) => r.to_string(),
                Err(_) => p.clone(),
            })
            .collect();
        Ok(Self {
            puller: Puller::new(
                registry,
                cache.clone(),
                config.images.max_concurrent_downloads,
            ),
            store,
            cache,
            pinned,
            containers_dir: config.root.join("containers"),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn layer_cache(&self) -> &Arc<LayerCache> {
        &self.cache
    }

    pub fn counters(&self) -> &Arc<PullCounters> {
        &self.puller.counters
    }

    /// Start-up reconciliation after a crash: drops leftovers, and forgets images whose layers
    /// are gone (a later pull fetches them again).
    pub fn recover(&self) -> Result<(), CatalogError> {
        let lost = self.cache.recover()?;
        if lost.is_empty() {
            return Ok(());
        }
        let images = self.store.read()?.images()?;
        for image in images
            .iter()
            .filter(|i| i.layers.iter().any(|l| lost.contains(l)))
        {
            tracing::warn!(image = %image.id, "forgetting image with missing layers");
            self.store.write(|t| delete_image_and_names(t, image))?;
        }
        Ok(())
    }

    pub async fn pull(
        &self,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<ImageRecord, PullError> {
        let reference: Reference = reference.parse()?;
        let store = self.store.clone();
        self.puller
            .pull(&reference, creds, |pulled| {
                record_pulled(&store, &reference, pulled)
            })
            .await
    }

    /// Finds an image by id (`sha256:..`, or its 64 hex digits), repo tag or repo digest, in any
    /// form a user may type (`busybox` means `docker.io/library/busybox:latest`).
    pub fn find(&self, spec: &str) -> Result<Option<ImageRecord>, CatalogError> {
        Ok(self.resolve(spec)?.map(|(image, _)| image))
    }

    /// The image and, when `spec` was a name, the stored name it matched.
    fn resolve(&self, spec: &str) -> Result<Option<(ImageRecord, Option<String>)>, CatalogError> {
        let read = self.store.read()?;
        let as_id = if spec.starts_with("sha256:") {
            Some(spec.to_owned())
        } else if spec.len() == 64 && spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(format!("sha256:{spec}"))
        } else {
            None
        };
        if let Some(id) = as_id
            && let Some(image) = read.image(&id)?
        {
            return Ok(Some((image, None)));
        }
        let Ok(reference) = spec.parse::<Reference>() else {
            return Ok(None);
        };
        // `name:tag@digest` names the digest; the tag is informational.
        let name = match reference.digest() {
            Some(d) => reference.digested_name(d),
            None => reference.to_string(),
        };
        let Some(id) = read.name(&name)? else {
            return Ok(None);
        };
        Ok(read.image(&id)?.map(|image| (image, Some(name))))
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, CatalogError> {
        Ok(self.store.read()?.images()?)
    }

    pub fn is_pinned(&self, image: &ImageRecord) -> bool {
        self.pinned.iter().any(|p| {
            *p == image.id.to_string()
                || image.repo_tags.contains(p)
                || image.repo_digests.contains(p)
        })
    }

    /// Removes an image; idempotent. Naming one of several tags only removes that tag, as
    /// `docker rmi` does; an id or digest removes the image with all its names. Layers no other
    /// image uses are deleted.
    pub fn remove(&self, spec: &str) -> Result<(), CatalogError> {
        let Some((image, matched)) = self.resolve(spec)? else {
            return Ok(());
        };
        let untag_only = matches!(&matched, Some(name) if image.repo_tags.contains(name) && image.repo_tags.len() > 1);
        let removed = self.store.write(|t| -> Result<bool, CatalogError> {
            let Some(mut current) = t.image(&image.id.to_string())? else {
                return Ok(false);
            };
            if untag_only && let Some(name) = &matched {
                current.repo_tags.retain(|n| n != name);
                t.delete_name(name)?;
                t.put_image(&current)?;
                return Ok(false);
            }
            delete_image_and_names(t, &current)?;
            Ok(true)
        })?;
        if removed {
            let deleted = self.cache.collect_garbage(&image.layers)?;
            tracing::info!(image = %image.id, layers_deleted = deleted, "image removed");
        }
        Ok(())
    }

    /// Usage of the image filesystem (the layer cache), from the counts recorded at unpack time.
    pub fn image_fs_usage(&self) -> Result<FsUsage, CatalogError> {
        let layers = self.store.read()?.layers()?;
        Ok(FsUsage {
            mountpoint: self.cache.layers_dir().to_owned(),
            used_bytes: layers.iter().map(|l| l.unpacked_bytes).sum(),
            inodes_used: layers.iter().map(|l| l.entries).sum(),
        })
    }

    /// Usage of the container filesystem (writable layers), measured by walking it.
    pub fn container_fs_usage(&self) -> Result<FsUsage, CatalogError> {
        let dir = &self.containers_dir;
        std::fs::create_dir_all(dir).map_err(|source| CatalogError::Usage {
            path: dir.clone(),
            source,
        })?;
        let (used_bytes, inodes_used) = dir_usage(dir).map_err(|source| CatalogError::Usage {
            path: dir.clone(),
            source,
        })?;
        Ok(FsUsage {
            mountpoint: dir.clone(),
            used_bytes,
            inodes_used,
        })
    }
}

fn record_pulled(
    store: &Store,
    reference: &Reference,
    pulled: Pulled,
) -> Result<ImageRecord, PullError> {
    let resolved = &pulled.resolved;
    let image = NewImage {
        id: resolved.config_digest.clone(),
        tags: reference.tagged_name().into_iter().collect(),
        digests: vec![reference.digested_name(&resolved.manifest_digest)],
        size: resolved.config.len() as u64 + resolved.layers.iter().map(|l| l.size).sum::<u64>(),
        layers: pulled.layers.iter().map(|l| l.chain_id.clone()).collect(),
        config: String::from_utf8_lossy(&resolved.config).into_owned(),
    };
    let record = record_image(store, image)?;
    tracing::info!(reference = %reference, image = %record.id, "image pulled");
    Ok(record)
}

/// An image whose layers are in the cache, ready to be recorded under its names.
pub struct NewImage {
    pub id: Digest,
    pub tags: Vec<String>,
    pub digests: Vec<String>,
    pub size: u64,
    pub layers: Vec<Digest>,
    pub config: String,
}

/// Records an image (or adds names to an existing one), moving names away from other images.
pub fn record_image(store: &Store, new: NewImage) -> Result<ImageRecord, StoreError> {
    store.write(|t| -> Result<ImageRecord, StoreError> {
        let mut image = t
            .image(&new.id.to_string())?
            .unwrap_or_else(|| ImageRecord {
                id: new.id.clone(),
                repo_tags: Vec::new(),
                repo_digests: Vec::new(),
                size: new.size,
                layers: new.layers.clone(),
                config: new.config.clone(),
                created_unix_nanos: now_nanos(),
            });
        for (names, list) in [
            (&new.tags, &mut image.repo_tags),
            (&new.digests, &mut image.repo_digests),
        ] {
            for name in names {
                move_name(t, name, &new.id)?;
                if !list.contains(name) {
                    list.push(name.clone());
                }
            }
        }
        t.put_image(&image)?;
        Ok(image)
    })
}

/// Points `name` at `id`, taking it away from the image it named before (a tag that moved).
fn move_name(t: &mut WriteTxn<'_>, name: &str, id: &Digest) -> Result<(), StoreError> {
    if let Some(old) = t.name(name)?
        && old != id.to_string()
        && let Some(mut previous) = t.image(&old)?
    {
        previous.repo_tags.retain(|n| n != name);
        previous.repo_digests.retain(|n| n != name);
        t.put_image(&previous)?;
    }
    t.set_name(name, &id.to_string())
}

fn delete_image_and_names(t: &mut WriteTxn<'_>, image: &ImageRecord) -> Result<(), StoreError> {
    for name in image.repo_tags.iter().chain(&image.repo_digests) {
        if t.name(name)?.as_deref() == Some(&image.id.to_string()) {
            t.delete_name(name)?;
        }
    }
    t.delete_image(&image.id.to_string())
}

impl ImageRecord {
    /// The default user from the image config's `User`.
    pub fn user(&self) -> ImageUser {
        let config: serde_json::Value = serde_json::from_str(&self.config).unwrap_or_default();
        let user = config
            .pointer("/config/User")
            .and_then(|u| u.as_str())
            .unwrap_or_default();
        let name = user.split(':').next().unwrap_or_default();
        if name.is_empty() {
            ImageUser::None
        } else if let Ok(uid) = name.parse::<i64>() {
            ImageUser::Uid(uid)
        } else {
            ImageUser::Name(name.to_owned())
        }
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Bytes (allocated blocks) and inodes below `dir`, not following symlinks or mounts.
fn dir_usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let root_dev = std::fs::symlink_metadata(dir)?.dev();
    let mut stack = vec![dir.to_owned()];
    let (mut bytes, mut inodes) = (0u64, 0u64);
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = match entry.path().symlink_metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            bytes += meta.blocks() * 512;
            inodes += 1;
            if meta.is_dir() && meta.dev() == root_dev {
                stack.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_user(user: &str) -> ImageRecord {
        ImageRecord {
            id: Digest::of(b"x"),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 0,
            layers: vec![],
            config: serde_json::json!({"config": {"User": user}}).to_string(),
            created_unix_nanos: 0,
        }
    }

    #[test]
    fn image_user_forms() {
        assert_eq!(with_user("").user(), ImageUser::None);
        assert_eq!(with_user("1002").user(), ImageUser::Uid(1002));
        assert_eq!(with_user("1003:1004").user(), ImageUser::Uid(1003));
        assert_eq!(
            with_user("www-data").user(),
            ImageUser::Name("www-data".into())
        );
        assert_eq!(
            with_user("www-data:1004").user(),
            ImageUser::Name("www-data".into())
        );
        assert_eq!(with_user("0").user(), ImageUser::Uid(0));
    }
}
