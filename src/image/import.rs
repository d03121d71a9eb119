//! `strata image import`: OCI archives (an oci-layout directory in a tar) and `docker save`
//! tarballs go into the same store and layer cache as pulled images, for air-gapped nodes.
//!
//! The archive is first extracted (regular files only, names checked) into a scratch directory
//! next to the cache, because its index and manifests may come after the blobs they name. Every
//! blob is then verified as it is read: manifests and configs against their digests, layers while
//! they are unpacked, exactly as in a pull.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::Images;
use super::catalog::{NewImage, record_image};
use super::digest::{Digest, DigestError, chain_ids};
use super::pull::{LayerToInstall, PullError, install_layer};
use super::reference::Reference;
use super::registry::BlobDescriptor;
use super::unpack::Compression;
use crate::error::{Classify, ErrorKind};
use crate::store::{ImageRecord, StoreError};

const PLATFORM_OS: &str = "linux";
const PLATFORM_ARCH: &str = "amd64";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading archive {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("archive entry `{entry}` is not allowed: {reason}")]
    BadEntry { entry: String, reason: &'static str },
    #[error(
        "{path} is neither an OCI archive (oci-layout + index.json) nor a docker save tarball (manifest.json)"
    )]
    UnknownFormat { path: PathBuf },
    #[error("archive: {0}")]
    Malformed(String),
    #[error("archive blob {name}: {source}")]
    Verify { name: String, source: DigestError },
    #[error(transparent)]
    Layer(#[from] PullError),
    #[error(transparent)]
    Cache(#[from] super::layers::LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for ImportError {
    fn kind(&self) -> ErrorKind {
        match self {
            ImportError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            ImportError::BadEntry { .. }
            | ImportError::UnknownFormat { .. }
            | ImportError::Malformed(_)
            | ImportError::Verify { .. } => ErrorKind::InvalidArgument,
            ImportError::Layer(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }
}

fn malformed(message: impl Into<String>) -> ImportError {
    ImportError::Malformed(message.into())
}

/// Imports every image of the archive at `path`. Blocking: run it off the async threads.
pub fn import_archive(images: &Images, path: &Path) -> Result<Vec<ImageRecord>, ImportError> {
    let scratch = images.layer_cache().scratch_dir("import")?;
    let result = extract(path, &scratch).and_then(|()| import_extracted(images, path, &scratch));
    if let Err(e) = super::layers::remove_any(&scratch) {
        tracing::warn!(error = %e, "removing import scratch directory");
    }
    result
}

/// Extracts the regular files of the archive. Nothing but files and directories is created, so
/// no entry can redirect a later one outside `dest`.
fn extract(archive: &Path, dest: &Path) -> Result<(), ImportError> {
    let read_err = |source| ImportError::Read {
        path: archive.to_owned(),
        source,
    };
    let file = std::fs::File::open(archive).map_err(read_err)?;
    let mut tar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let name = entry.path().map_err(read_err)?.into_owned();
        let shown = name.display().to_string();
        let mut relative = PathBuf::new();
        for component in name.components() {
            match component {
                Component::Normal(c) => relative.push(c),
                Component::CurDir => {}
                _ => {
                    return Err(ImportError::BadEntry {
                        entry: shown,
                        reason: "names must stay inside the archive",
                    });
                }
            }
        }
        let kind = entry.header().entry_type();
        if relative.as_os_str().is_empty() || kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            // Links and devices have no place in an image archive's layout; skip, don't follow.
            tracing::debug!(entry = %shown, "skipping non-file archive entry");
            continue;
        }
        let target = dest.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(read_err)?;
        }
        let mut out = std::fs::File::create(&target).map_err(read_err)?;
        std::io::copy(&mut entry, &mut out).map_err(read_err)?;
    }
    Ok(())
}

/// One image found in the archive.
struct ArchiveImage {
    names: Vec<String>,
    /// Digest of the index/manifest the archive's index points at (the repo digest).
    target_digest: Option<Digest>,
    config: Vec<u8>,
    layers: Vec<(PathBuf, BlobDescriptor)>,
}

fn import_extracted(
    images: &Images,
    archive: &Path,
    root: &Path,
) -> Result<Vec<ImageRecord>, ImportError> {
    let found = if root.join("index.json").is_file() && root.join("oci-layout").is_file() {
        read_oci(root)?
    } else if root.join("manifest.json").is_file() {
        read_docker(root)?
    } else {
        return Err(ImportError::UnknownFormat {
            path: archive.to_owned(),
        });
    };
    if found.is_empty() {
        return Err(malformed("the archive holds no linux/amd64 image"));
    }
    found
        .into_iter()
        .map(|image| install(images, image))
        .collect()
}

fn install(images: &Images, image: ArchiveImage) -> Result<ImageRecord, ImportError> {
    let config: Value = serde_json::from_slice(&image.config)
        .map_err(|e| malformed(format!("image config: {e}")))?;
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("image config has no rootfs.diff_ids"))?
        .iter()
        .map(|d| {
            d.as_str()
                .unwrap_or_default()
                .parse::<Digest>()
                .map_err(|e| malformed(format!("image config diff id: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != image.layers.len() {
        return Err(malformed(format!(
            "{} diff ids for {} layers",
            diff_ids.len(),
            image.layers.len()
        )));
    }
    let chain = chain_ids(&diff_ids);
    let cache = images.layer_cache();
    let _lease = cache.lease(&chain);
    for (((path, blob), diff_id), chain_id) in image.layers.iter().zip(&diff_ids).zip(&chain) {
        if images
            .store()
            .read()?
            .layer(&chain_id.to_string())?
            .is_some()
        {
            continue;
        }
        let file = std::fs::File::open(path).map_err(|source| ImportError::Read {
            path: path.clone(),
            source,
        })?;
        let compression = if blob.media_type.is_empty() {
            sniff_compression(path)?
        } else {
            Compression::from_media_type(&blob.media_type).map_err(|source| PullError::Unpack {
                digest: blob.digest.clone(),
                source,
            })?
        };
        let layer = LayerToInstall {
            blob,
            diff_id,
            chain_id,
            compression,
        };
        install_layer(
            cache,
            std::io::BufReader::with_capacity(1 << 20, file),
            &layer,
        )?;
    }
    let names: Vec<Reference> = image
        .names
        .iter()
        .filter_map(|n| match n.parse::<Reference>() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(name = %n, error = %e, "ignoring unusable image name in archive");
                None
            }
        })
        .collect();
    let new = NewImage {
        id: Digest::of(&image.config),
        tags: names.iter().filter_map(Reference::tagged_name).collect(),
        digests: match &image.target_digest {
            Some(d) => names.iter().map(|r| r.digested_name(d)).collect(),
            None => Vec::new(),
        },
        size: image.config.len() as u64 + image.layers.iter().map(|(_, b)| b.size).sum::<u64>(),
        layers: chain,
        config: String::from_utf8_lossy(&image.config).into_owned(),
    };
    let record = record_image(images.store(), new)?;
    tracing::info!(image = %record.id, tags = ?record.repo_tags, "image imported");
    Ok(record)
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join("sha256").join(digest.hex())
}

/// Reads a blob named by digest, verifying it.
fn read_blob(root: &Path, digest: &Digest) -> Result<Vec<u8>, ImportError> {
    let path = blob_path(root, digest);
    let bytes = std::fs::read(&path).map_err(|source| ImportError::Read { path, source })?;
    digest
        .verify(&bytes)
        .map_err(|source| ImportError::Verify {
            name: digest.to_string(),
            source,
        })?;
    Ok(bytes)
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, ImportError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(format!("{what}: {e}")))
}

fn descriptor_digest(desc: &Value) -> Result<Digest, ImportError> {
    desc.get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .parse()
        .map_err(|e: DigestError| malformed(e.to_string()))
}

fn read_oci(root: &Path) -> Result<Vec<ArchiveImage>, ImportError> {
    let index_bytes =
        std::fs::read(root.join("index.json")).map_err(|source| ImportError::Read {
            path: root.join("index.json"),
            source,
        })?;
    let index = parse_json(&index_bytes, "index.json")?;
    let mut out = Vec::new();
    for desc in index
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let annotations = desc.get("annotations");
        let annotation = |key: &str| {
            annotations
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        // containerd writes the full name here; `ref.name` is often only a tag.
        let name = annotation("io.containerd.image.name").or_else(|| {
            annotation("org.opencontainers.image.ref.name").filter(|n| n.contains(['/', ':']))
        });
        let target = descriptor_digest(desc)?;
        let Some(manifest) = platform_manifest(root, &target)? else {
            continue;
        };
        let config_digest = descriptor_digest(manifest.get("config").unwrap_or(&Value::Null))?;
        let config = read_blob(root, &config_digest)?;
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|l| {
                let digest = descriptor_digest(l)?;
                let blob = BlobDescriptor {
                    media_type: l
                        .get("mediaType")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    size: l.get("size").and_then(Value::as_u64).unwrap_or_default(),
                    digest: digest.clone(),
                };
                Ok((blob_path(root, &digest), blob))
            })
            .collect::<Result<Vec<_>, ImportError>>()?;
        out.push(ArchiveImage {
            names: name.into_iter().collect(),
            target_digest: Some(target),
            config,
            layers,
        });
    }
    Ok(out)
}

/// Follows an index / manifest list to its linux/amd64 manifest; `None` when it has none.
fn platform_manifest(root: &Path, digest: &Digest) -> Result<Option<Value>, ImportError> {
    let doc = parse_json(&read_blob(root, digest)?, "manifest")?;
    let Some(entries) = doc.get("manifests").and_then(Value::as_array) else {
        return Ok(Some(doc));
    };
    for entry in entries {
        let platform = entry.get("platform");
        let field = |k: &str| platform.and_then(|p| p.get(k)).and_then(Value::as_str);
        if field("os") == Some(PLATFORM_OS) && field("architecture") == Some(PLATFORM_ARCH) {
            return platform_manifest(root, &descriptor_digest(entry)?);
        }
    }
    Ok(None)
}

fn read_docker(root: &Path) -> Result<Vec<ArchiveImage>, ImportError> {
    let path = root.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|source| ImportError::Read { path, source })?;
    let manifest = parse_json(&bytes, "manifest.json")?;
    let entries = manifest
        .as_array()
        .ok_or_else(|| malformed("manifest.json is not a list"))?;
    let mut out = Vec::new();
    for entry in entries {
        let field = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_owned);
        let config_name =
            field("Config").ok_or_else(|| malformed("manifest.json entry without Config"))?;
        let config_path = archive_path(root, &config_name)?;
        let config = std::fs::read(&config_path).map_err(|source| ImportError::Read {
            path: config_path,
            source,
        })?;
        let mut layers = Vec::new();
        for layer in entry
            .get("Layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let path = archive_path(root, layer.as_str().unwrap_or_default())?;
            // docker save does not record compressed digests: hash the file to verify the rest
            // of the pipeline the same way as for a pulled blob.
            let (digest, size) = hash_file(&path)?;
            let blob = BlobDescriptor {
                media_type: String::new(),
                digest,
                size,
            };
            layers.push((path, blob));
        }
        let names = entry
            .get("RepoTags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        out.push(ArchiveImage {
            names,
            target_digest: None,
            config,
            layers,
        });
    }
    Ok(out)
}

/// A path named inside manifest.json, which must stay inside the extracted archive.
fn archive_path(root: &Path, name: &str) -> Result<PathBuf, ImportError> {
    let relative = Path::new(name);
    if name.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ImportError::BadEntry {
            entry: name.to_owned(),
            reason: "manifest.json names must stay inside the archive",
        });
    }
    Ok(root.join(relative))
}

fn hash_file(path: &Path) -> Result<(Digest, u64), ImportError> {
    let read_err = |source| ImportError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    super::digest::HashingReader::new(std::io::BufReader::with_capacity(1 << 20, file))
        .finish()
        .map_err(read_err)
}

/// Docker save layers are usually plain tar, sometimes compressed: tell by the magic bytes.
fn sniff_compression(path: &Path) -> Result<Compression, ImportError> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let n = file.read(&mut magic).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}
