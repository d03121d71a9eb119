//! Deterministic test images: layers as tar archives (from entry lists, a directory or raw
//! bytes), compressed with gzip, zstd or not at all, in OCI or Docker schema2 manifests,
//! optionally under an OCI index / Docker manifest list, pushed to a registry over HTTP.
//!
//! Same input, same bytes: tar headers carry fixed mtimes (0 unless set), and gzip/zstd run at
//! fixed levels without timestamps, so digests are stable across runs.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use strata::image::digest::Digest;

use super::registry::Registry;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker has no uncompressed layer type of its own; containerd knows this one.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// OCI (image manifest / index) or Docker schema2 (manifest / manifest list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

// ---------------------------------------------------------------------------------------------
// Tar entries

#[derive(Debug, Clone)]
pub enum EntryKind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    /// A hard link to an earlier entry's path.
    Hardlink(String),
    Fifo,
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
}

/// One tar entry. The path and link target are written as given when they fit the 100-byte
/// header fields, without normalisation: `../x`, `/abs` or `a/../../b` make hostile layers.
/// Longer paths use GNU long-name records (and are then checked by the `tar` crate).
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Entry {
    fn new(path: impl Into<String>, kind: EntryKind, mode: u32) -> Self {
        Self {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    /// A regular file, mode 0644.
    pub fn file(path: impl Into<String>, contents: impl AsRef<[u8]>) -> Self {
        Self::new(path, EntryKind::File(contents.as_ref().to_vec()), 0o644)
    }

    /// An executable file, mode 0755.
    pub fn executable(path: impl Into<String>, contents: impl AsRef<[u8]>) -> Self {
        Self::new(path, EntryKind::File(contents.as_ref().to_vec()), 0o755)
    }

    /// A directory, mode 0755.
    pub fn dir(path: impl Into<String>) -> Self {
        Self::new(path, EntryKind::Dir, 0o755)
    }

    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(path, EntryKind::Symlink(target.into()), 0o777)
    }

    pub fn hardlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(path, EntryKind::Hardlink(target.into()), 0o644)
    }

    pub fn fifo(path: impl Into<String>) -> Self {
        Self::new(path, EntryKind::Fifo, 0o644)
    }

    pub fn char_device(path: impl Into<String>, major: u32, minor: u32) -> Self {
        Self::new(path, EntryKind::CharDevice(major, minor), 0o666)
    }

    /// An AUFS/OCI whiteout deleting `path` from lower layers: `dir/.wh.name`.
    pub fn whiteout(path: &str) -> Self {
        let path = path.trim_end_matches('/');
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/"), name),
            None => (String::new(), path),
        };
        Self::file(format!("{dir}.wh.{name}"), "")
    }

    /// An opaque whiteout: `dir/.wh..wh..opq` hides everything below `dir` in lower layers.
    pub fn opaque(dir: &str) -> Self {
        Self::file(format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), "")
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }
}

/// Writes `entries`, in order, as a tar archive.
pub fn tar_entries(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        append_entry(&mut builder, e).unwrap_or_else(|err| panic!("tar entry {}: {err}", e.path));
    }
    builder.into_inner().expect("finishing tar")
}

fn append_entry(builder: &mut tar::Builder<Vec<u8>>, e: &Entry) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(e.mode);
    header.set_uid(e.uid);
    header.set_gid(e.gid);
    header.set_mtime(e.mtime);
    header.set_size(0);
    let mut data: &[u8] = &[];
    let link = match &e.kind {
        EntryKind::File(bytes) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            data = bytes;
            None
        }
        EntryKind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            None
        }
        EntryKind::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            Some(target)
        }
        EntryKind::Hardlink(target) => {
            header.set_entry_type(tar::EntryType::Link);
            Some(target)
        }
        EntryKind::Fifo => {
            header.set_entry_type(tar::EntryType::Fifo);
            None
        }
        EntryKind::CharDevice(major, minor) | EntryKind::BlockDevice(major, minor) => {
            header.set_entry_type(if matches!(e.kind, EntryKind::CharDevice(..)) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
            None
        }
    };
    if let Some(target) = link {
        if target.len() <= 100 {
            let field = &mut header.as_old_mut().linkname;
            field.fill(0);
            field[..target.len()].copy_from_slice(target.as_bytes());
        } else {
            header.set_link_name(target)?;
        }
    }
    if e.path.len() <= 100 {
        let field = &mut header.as_old_mut().name;
        field.fill(0);
        field[..e.path.len()].copy_from_slice(e.path.as_bytes());
        header.set_cksum();
        builder.append(&header, data)
    } else {
        builder.append_data(&mut header, &e.path, data)
    }
}

/// The entries of directory `root`, sorted by path, with relative paths. Keeps modes, owners,
/// symlinks, fifos and devices; a file with several links becomes one file and hard links to
/// it. Modification times are zeroed.
pub fn dir_entries(root: &Path) -> Vec<Entry> {
    fn walk(root: &Path, dir: &Path, seen: &mut HashMap<(u64, u64), String>, out: &mut Vec<Entry>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|d| d.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let mode = meta.mode() & 0o7777;
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_symlink() {
                EntryKind::Symlink(
                    std::fs::read_link(&path)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if ft.is_fifo() {
                EntryKind::Fifo
            } else if ft.is_char_device() || ft.is_block_device() {
                let rdev = meta.rdev();
                let (major, minor) = (libc::major(rdev), libc::minor(rdev));
                if ft.is_char_device() {
                    EntryKind::CharDevice(major, minor)
                } else {
                    EntryKind::BlockDevice(major, minor)
                }
            } else if ft.is_file() {
                let key = (meta.dev(), meta.ino());
                match seen.get(&key) {
                    Some(first) if meta.nlink() > 1 => EntryKind::Hardlink(first.clone()),
                    _ => {
                        if meta.nlink() > 1 {
                            seen.insert(key, rel.clone());
                        }
                        EntryKind::File(std::fs::read(&path).unwrap())
                    }
                }
            } else {
                continue; // sockets
            };
            let is_dir = matches!(kind, EntryKind::Dir);
            out.push(Entry {
                path: rel,
                kind,
                mode,
                uid: meta.uid() as u64,
                gid: meta.gid() as u64,
                mtime: 0,
            });
            if is_dir {
                walk(root, &path, seen, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut HashMap::new(), &mut out);
    out
}

/// Compresses `bytes` deterministically.
pub fn compress(bytes: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => {
            // flate2's GzEncoder writes mtime 0 and no file name.
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(bytes).unwrap();
            enc.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(bytes, 3).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// Layers

#[derive(Debug, Clone)]
enum Source {
    Entries(Vec<Entry>),
    Dir(PathBuf),
    Tar(Vec<u8>),
}

/// A layer to build: its content and compression.
#[derive(Debug, Clone)]
pub struct Layer {
    source: Source,
    compression: Compression,
    media_type: Option<String>,
}

impl Layer {
    /// From tar entries, written in this order. Gzip unless [`Layer::compression`] says
    /// otherwise.
    pub fn entries(entries: Vec<Entry>) -> Self {
        Self {
            source: Source::Entries(entries),
            compression: Compression::Gzip,
            media_type: None,
        }
    }

    /// Regular files (0644), parent directories not included.
    pub fn files<P: AsRef<str>, C: AsRef<[u8]>>(files: &[(P, C)]) -> Self {
        Self::entries(
            files
                .iter()
                .map(|(p, c)| Entry::file(p.as_ref(), c.as_ref()))
                .collect(),
        )
    }

    /// The content of directory `dir` (see [`dir_entries`]), read when the layer is built.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            source: Source::Dir(dir.into()),
            compression: Compression::Gzip,
            media_type: None,
        }
    }

    /// Raw bytes used as the uncompressed layer, e.g. a hand-made hostile tar. They are
    /// compressed like any other layer; the diff id is their sha256.
    pub fn raw_tar(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            source: Source::Tar(bytes.into()),
            compression: Compression::Gzip,
            media_type: None,
        }
    }

    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Overrides the media type written in the manifest (e.g. an unknown one).
    pub fn media_type(mut self, media_type: impl Into<String>) -> Self {
        self.media_type = Some(media_type.into());
        self
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> Vec<u8> {
        match &self.source {
            Source::Entries(entries) => tar_entries(entries),
            Source::Dir(dir) => tar_entries(&dir_entries(dir)),
            Source::Tar(bytes) => bytes.clone(),
        }
    }

    pub fn build(&self, format: Format) -> BuiltLayer {
        let tar = self.tar();
        let blob = compress(&tar, self.compression);
        let media_type = self.media_type.clone().unwrap_or_else(|| {
            match (format, self.compression) {
                (Format::Oci, Compression::None) => OCI_LAYER,
                (Format::Oci, Compression::Gzip) => OCI_LAYER_GZIP,
                (_, Compression::Zstd) => OCI_LAYER_ZSTD,
                (Format::Docker, Compression::None) => DOCKER_LAYER,
                (Format::Docker, Compression::Gzip) => DOCKER_LAYER_GZIP,
            }
            .to_owned()
        });
        BuiltLayer {
            media_type,
            digest: Digest::of(&blob),
            diff_id: Digest::of(&tar),
            size: blob.len() as u64,
            blob,
            tar,
        }
    }
}

/// A built layer: the blob as pushed and the tar it holds.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub media_type: String,
    /// sha256 of `blob`.
    pub digest: Digest,
    /// sha256 of `tar`.
    pub diff_id: Digest,
    /// Length of `blob`.
    pub size: u64,
    pub blob: Vec<u8>,
    pub tar: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// Images

/// An image to build: layers, a runtime config and a platform (linux/amd64 by default).
#[derive(Debug, Clone)]
pub struct Image {
    format: Format,
    layers: Vec<Layer>,
    config: serde_json::Map<String, Value>,
    os: String,
    architecture: String,
    variant: Option<String>,
    size_lies: Vec<(usize, u64)>,
}

impl Image {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            layers: Vec::new(),
            config: serde_json::Map::new(),
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            size_lies: Vec::new(),
        }
    }

    pub fn oci() -> Self {
        Self::new(Format::Oci)
    }

    pub fn docker() -> Self {
        Self::new(Format::Docker)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self.variant = variant.map(Into::into);
        self
    }

    /// Sets a field of the config's `config` object (`Env`, `Cmd`, `Entrypoint`, `User`,
    /// `WorkingDir`, `Labels`, `StopSignal`, `ExposedPorts`, `Volumes`, ...).
    pub fn config_field(mut self, key: &str, value: Value) -> Self {
        self.config.insert(key.into(), value);
        self
    }

    pub fn cmd<S: Into<String>>(self, cmd: impl IntoIterator<Item = S>) -> Self {
        let v: Vec<String> = cmd.into_iter().map(Into::into).collect();
        self.config_field("Cmd", json!(v))
    }

    pub fn entrypoint<S: Into<String>>(self, ep: impl IntoIterator<Item = S>) -> Self {
        let v: Vec<String> = ep.into_iter().map(Into::into).collect();
        self.config_field("Entrypoint", json!(v))
    }

    /// `KEY=value` strings.
    pub fn env<S: Into<String>>(self, env: impl IntoIterator<Item = S>) -> Self {
        let v: Vec<String> = env.into_iter().map(Into::into).collect();
        self.config_field("Env", json!(v))
    }

    pub fn user(self, user: &str) -> Self {
        self.config_field("User", json!(user))
    }

    pub fn working_dir(self, dir: &str) -> Self {
        self.config_field("WorkingDir", json!(dir))
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        let labels = self
            .config
            .entry("Labels")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("Labels is an object");
        labels.insert(key.into(), json!(value));
        self
    }

    /// Broken image: the manifest declares `size` for layer `index` instead of its real size
    /// (the blob itself is intact). A client that checks sizes fails on it.
    pub fn declared_size(mut self, index: usize, size: u64) -> Self {
        self.size_lies.push((index, size));
        self
    }

    /// Builds layers, config and manifest.
    pub fn build(&self) -> BuiltImage {
        let layers: Vec<BuiltLayer> = self.layers.iter().map(|l| l.build(self.format)).collect();
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        let mut config = json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": self.architecture,
            "os": self.os,
            "config": Value::Object(self.config.clone()),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| json!({"created": "1970-01-01T00:00:00Z", "created_by": "strata test"})).collect::<Vec<_>>(),
        });
        if let Some(v) = &self.variant {
            config["variant"] = json!(v);
        }
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = Digest::of(&config);
        let (manifest_type, config_type) = match self.format {
            Format::Oci => (OCI_MANIFEST, OCI_CONFIG),
            Format::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG),
        };
        let layer_descs: Vec<Value> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let size = self
                    .size_lies
                    .iter()
                    .find(|(index, _)| *index == i)
                    .map_or(l.size, |(_, size)| *size);
                json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": size})
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest.to_string(), "size": config.len()},
            "layers": layer_descs,
        });
        let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
        BuiltImage {
            manifest_digest: Digest::of(&manifest),
            manifest_media_type: manifest_type.to_owned(),
            manifest,
            config_digest,
            config,
            layers,
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    /// Builds and pushes to `registry` as `name` (`repo:tag`, or a bare `repo` to push by
    /// digest only).
    pub async fn push(&self, registry: &Registry, name: &str) -> PushedImage {
        let built = self.build();
        let pusher = Pusher::new(registry);
        let (repo, tag) = split_name(name);
        pusher.push_image(repo, &built).await;
        let manifest_ref = tag.map_or(built.manifest_digest.to_string(), str::to_owned);
        pusher
            .put_manifest(
                repo,
                &manifest_ref,
                &built.manifest,
                &built.manifest_media_type,
            )
            .await;
        PushedImage::new(registry, repo, tag, built)
    }

    /// [`Image::push`] without an async runtime (runs one on a helper thread).
    pub fn push_blocking(&self, registry: &Registry, name: &str) -> PushedImage {
        block_on(self.push(registry, name))
    }
}

/// An image built but not pushed.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<BuiltLayer>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl BuiltImage {
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    pub fn layer_digests(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }
}

/// An image in a registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// `127.0.0.1:PORT/repo:tag`, or `127.0.0.1:PORT/repo@sha256:...` if pushed without tag.
    pub reference: String,
    /// `127.0.0.1:PORT/repo`
    pub name: String,
    pub tag: Option<String>,
    /// What was pushed, with `manifest_digest`, `config_digest`, layers and diff ids.
    pub image: BuiltImage,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
}

impl PushedImage {
    fn new(registry: &Registry, repo: &str, tag: Option<&str>, image: BuiltImage) -> Self {
        let name = registry.reference(repo);
        let reference = match tag {
            Some(tag) => format!("{name}:{tag}"),
            None => format!("{name}@{}", image.manifest_digest),
        };
        Self {
            reference,
            name,
            tag: tag.map(Into::into),
            manifest_digest: image.manifest_digest.clone(),
            config_digest: image.config_digest.clone(),
            image,
        }
    }

    /// `127.0.0.1:PORT/repo@<manifest digest>`
    pub fn digest_reference(&self) -> String {
        format!("{}@{}", self.name, self.manifest_digest)
    }

    pub fn layers(&self) -> &[BuiltLayer] {
        &self.image.layers
    }

    pub fn diff_ids(&self) -> Vec<Digest> {
        self.image.diff_ids()
    }

    pub fn layer_digests(&self) -> Vec<Digest> {
        self.image.layer_digests()
    }
}

// ---------------------------------------------------------------------------------------------
// Indexes

/// A multi-platform image: an OCI index or a Docker manifest list over [`Image`]s (each with
/// its own [`Image::platform`]).
#[derive(Debug, Clone)]
pub struct Index {
    format: Format,
    images: Vec<Image>,
}

impl Index {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            images: Vec::new(),
        }
    }

    /// linux/amd64 and linux/arm64 images with distinct layers (`/arch` holds the
    /// architecture's name) and `Cmd` `["/bin/sh"]`.
    pub fn amd64_arm64(format: Format, compression: Compression) -> Self {
        let image = |arch: &str| {
            Image::new(format)
                .platform("linux", arch, (arch == "arm64").then_some("v8"))
                .layer(
                    Layer::entries(vec![Entry::file("arch", format!("{arch}\n"))])
                        .compression(compression),
                )
                .cmd(["/bin/sh"])
        };
        Self::new(format)
            .image(image("amd64"))
            .image(image("arm64"))
    }

    pub fn image(mut self, image: Image) -> Self {
        assert_eq!(
            image.format, self.format,
            "index and image formats must agree"
        );
        self.images.push(image);
        self
    }

    /// Pushes every image by digest, then the index as `name` (`repo:tag`, or `repo`).
    pub async fn push(&self, registry: &Registry, name: &str) -> PushedIndex {
        let (repo, tag) = split_name(name);
        let pusher = Pusher::new(registry);
        let mut images = Vec::new();
        let mut entries = Vec::new();
        for image in &self.images {
            let built = image.build();
            pusher.push_image(repo, &built).await;
            pusher
                .put_manifest(
                    repo,
                    &built.manifest_digest.to_string(),
                    &built.manifest,
                    &built.manifest_media_type,
                )
                .await;
            let mut platform = json!({"architecture": built.architecture, "os": built.os});
            if let Some(v) = &built.variant {
                platform["variant"] = json!(v);
            }
            entries.push(json!({
                "mediaType": built.manifest_media_type,
                "digest": built.manifest_digest.to_string(),
                "size": built.manifest.len(),
                "platform": platform,
            }));
            images.push(PushedImage::new(registry, repo, None, built));
        }
        let media_type = match self.format {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_MANIFEST_LIST,
        };
        let index = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": entries,
        }))
        .unwrap();
        let digest = Digest::of(&index);
        let manifest_ref = tag.map_or(digest.to_string(), str::to_owned);
        pusher
            .put_manifest(repo, &manifest_ref, &index, media_type)
            .await;
        let name_ref = registry.reference(repo);
        PushedIndex {
            reference: match tag {
                Some(tag) => format!("{name_ref}:{tag}"),
                None => format!("{name_ref}@{digest}"),
            },
            name: name_ref,
            digest,
            index,
            media_type: media_type.to_owned(),
            images,
        }
    }

    pub fn push_blocking(&self, registry: &Registry, name: &str) -> PushedIndex {
        block_on(self.push(registry, name))
    }
}

/// An index in a registry.
#[derive(Debug, Clone)]
pub struct PushedIndex {
    pub reference: String,
    pub name: String,
    /// The index's digest: what the reference resolves to (the repo digest).
    pub digest: Digest,
    pub index: Vec<u8>,
    pub media_type: String,
    /// The platform images, in index order.
    pub images: Vec<PushedImage>,
}

impl PushedIndex {
    /// The image for `architecture` (linux).
    pub fn image(&self, architecture: &str) -> &PushedImage {
        self.images
            .iter()
            .find(|i| i.image.architecture == architecture)
            .unwrap_or_else(|| panic!("no {architecture} image in the index"))
    }
}

// ---------------------------------------------------------------------------------------------
// Pushing

fn split_name(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    }
}

/// Runs `fut` to completion on a fresh runtime on a helper thread, so it works whether or not
/// the caller is inside a runtime.
pub fn block_on<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Raw distribution-API uploads (monolithic blob uploads, manifest PUTs).
pub struct Pusher {
    http: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
}

impl Pusher {
    pub fn new(registry: &Registry) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: registry.url(),
            credentials: registry
                .credentials()
                .map(|(u, p)| (u.to_owned(), p.to_owned())),
        }
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }

    /// Pushes config and layer blobs.
    pub async fn push_image(&self, repo: &str, image: &BuiltImage) {
        self.push_blob(repo, &image.config).await;
        for layer in &image.layers {
            self.push_blob(repo, &layer.blob).await;
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/` then `PUT <location>?digest=`. Returns the digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let res = self
            .auth(self.http.post(&url))
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert_eq!(res.status().as_u16(), 202, "POST {url}: {res:?}");
        let location = res
            .headers()
            .get("Location")
            .expect("upload Location")
            .to_str()
            .unwrap()
            .to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let res = self
            .auth(self.http.put(&put))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {put}: {e}"));
        let status = res.status().as_u16();
        assert_eq!(
            status,
            201,
            "PUT blob {digest}: {}",
            res.text().await.unwrap_or_default()
        );
        digest
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `media_type` as Content-Type.
    pub async fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8], media_type: &str) {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let res = self
            .auth(self.http.put(&url))
            .header("Content-Type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        let status = res.status().as_u16();
        assert_eq!(
            status,
            201,
            "PUT {url}: {}",
            res.text().await.unwrap_or_default()
        );
    }

    /// `DELETE /v2/<repo>/manifests/<digest>` (deletes are enabled on test registries).
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) {
        let url = format!("{}/v2/{repo}/manifests/{digest}", self.base);
        let res = self
            .auth(self.http.delete(&url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
        assert_eq!(res.status().as_u16(), 202, "DELETE {url}: {res:?}");
    }
}
