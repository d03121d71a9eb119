//! The embedded transactional metadata store (redb). Everything the daemon must remember across
//! restarts goes through one database file, so a crash at any instant leaves either the old or the
//! new state: redb commits are atomic and durable (copy-on-write B-trees, fsync on commit).
//!
//! Why redb: pure Rust (no C toolchain or system library), ACID with a single writer, and fast
//! enough that metadata is never the bottleneck of a CRI call.

mod records;

use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

pub use records::{
    ContainerRecord, ContainerState, ExitInfo, ImageRecord, LayerRecord, PodBuild, PodRecord,
    PodState, ProcessUser,
};

use crate::error::{Classify, ErrorKind};
use crate::image::digest::Digest;

/// Bumped whenever the layout of a table or record changes incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Image id (config digest) -> JSON [`ImageRecord`].
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Repo tag or repo digest (`name:tag`, `name@sha256:..`) -> image id.
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");
/// Layer chain id -> JSON [`LayerRecord`].
const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("layers");
/// Pod sandbox id -> JSON [`PodRecord`].
const PODS: TableDefinition<&str, &[u8]> = TableDefinition::new("pods");
/// Pod sandbox id -> JSON [`PodBuild`]: a RunPodSandbox in progress, so that a daemon that dies
/// halfway can undo on restart what the build had made (CNI ADD, pod-init, the pinned netns).
const POD_BUILDS: TableDefinition<&str, &[u8]> = TableDefinition::new("pod_builds");
/// Container id -> JSON [`ContainerRecord`].
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

const KEY_SCHEMA: &str = "schema_version";
const KEY_NEXT_LAYER_DIR: &str = "next_layer_dir";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error(
        "metadata store {path} has schema version {found}, newer than the {supported} this strata understands; run a newer strata or move the root away"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("metadata store: {0}")]
    Db(#[from] redb::Error),
    #[error("metadata store record {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    db: redb::Database,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and checks its schema version.
    pub fn open(path: &Path) -> Result<Self> {
        let db = redb::Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let store = Self { db };
        let txn = store.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(KEY_SCHEMA)?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew {
                        path: path.to_owned(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)?;
                }
            }
            // Create every table up front so read transactions never meet a missing one.
            txn.open_table(IMAGES)?;
            txn.open_table(NAMES)?;
            txn.open_table(LAYERS)?;
            txn.open_table(PODS)?;
            txn.open_table(POD_BUILDS)?;
            txn.open_table(CONTAINERS)?;
        }
        txn.commit()?;
        Ok(store)
    }

    /// Runs `f` in one write transaction, committed only if `f` succeeds.
    pub fn write<T, E>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        let value = {
            let mut w = WriteTxn { txn: &txn };
            f(&mut w)?
        };
        txn.commit().map_err(StoreError::from)?;
        Ok(value)
    }

    /// A consistent read-only snapshot.
    pub fn read(&self) -> Result<ReadTxn> {
        Ok(ReadTxn {
            txn: self.db.begin_read()?,
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

fn encode<T: serde::Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

/// Every record of a table of JSON records.
fn decode_all<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}

/// One record of a table of JSON records.
fn decode_get<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>> {
    table.get(key)?.map(|v| decode(key, v.value())).transpose()
}

/// Getters shared by read and write transactions.
macro_rules! getters {
    () => {
        pub fn image(&self, id: &str) -> Result<Option<ImageRecord>> {
            decode_get(&self.txn.open_table(IMAGES)?, id)
        }

        pub fn images(&self) -> Result<Vec<ImageRecord>> {
            decode_all(&self.txn.open_table(IMAGES)?)
        }

        /// The image id a repo tag or repo digest points to.
        pub fn name(&self, name: &str) -> Result<Option<String>> {
            let t = self.txn.open_table(NAMES)?;
            Ok(t.get(name)?.map(|v| v.value().to_owned()))
        }

        pub fn layer(&self, chain_id: &str) -> Result<Option<LayerRecord>> {
            decode_get(&self.txn.open_table(LAYERS)?, chain_id)
        }

        pub fn layers(&self) -> Result<Vec<LayerRecord>> {
            decode_all(&self.txn.open_table(LAYERS)?)
        }

        /// Chain ids of the layers an image or a container (whose rootfs stacks them) names:
        /// the layers garbage collection must keep.
        pub fn layers_in_use(&self) -> Result<std::collections::HashSet<Digest>> {
            let mut used: std::collections::HashSet<Digest> = std::collections::HashSet::new();
            for image in self.images()? {
                used.extend(image.layers);
            }
            for container in self.containers()? {
                used.extend(container.layers);
            }
            Ok(used)
        }

        pub fn pod(&self, id: &str) -> Result<Option<PodRecord>> {
            decode_get(&self.txn.open_table(PODS)?, id)
        }

        pub fn pods(&self) -> Result<Vec<PodRecord>> {
            decode_all(&self.txn.open_table(PODS)?)
        }

        pub fn pod_builds(&self) -> Result<Vec<PodBuild>> {
            decode_all(&self.txn.open_table(POD_BUILDS)?)
        }

        pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>> {
            decode_get(&self.txn.open_table(CONTAINERS)?, id)
        }

        pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
            decode_all(&self.txn.open_table(CONTAINERS)?)
        }
    };
}

pub struct ReadTxn {
    txn: redb::ReadTransaction,
}

impl ReadTxn {
    getters!();
}

pub struct WriteTxn<'a> {
    txn: &'a redb::WriteTransaction,
}

impl WriteTxn<'_> {
    getters!();

    /// Inserts or replaces the JSON record under `key`.
    fn put<T: serde::Serialize>(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let bytes = encode(key, value)?;
        self.txn.open_table(table)?.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// Inserts or replaces an image record. Names are maintained separately ([`Self::set_name`]).
    pub fn put_image(&mut self, image: &ImageRecord) -> Result<()> {
        self.put(IMAGES, &image.id.to_string(), image)
    }

    pub fn delete_image(&mut self, id: &str) -> Result<()> {
        self.txn.open_table(IMAGES)?.remove(id)?;
        Ok(())
    }

    pub fn set_name(&mut self, name: &str, id: &str) -> Result<()> {
        self.txn.open_table(NAMES)?.insert(name, id)?;
        Ok(())
    }

    pub fn delete_name(&mut self, name: &str) -> Result<()> {
        self.txn.open_table(NAMES)?.remove(name)?;
        Ok(())
    }

    pub fn put_layer(&mut self, layer: &LayerRecord) -> Result<()> {
        self.put(LAYERS, &layer.chain_id.to_string(), layer)
    }

    pub fn delete_layer(&mut self, chain_id: &str) -> Result<()> {
        self.txn.open_table(LAYERS)?.remove(chain_id)?;
        Ok(())
    }

    pub fn put_pod(&mut self, pod: &PodRecord) -> Result<()> {
        self.put(PODS, &pod.id, pod)
    }

    pub fn delete_pod(&mut self, id: &str) -> Result<()> {
        self.txn.open_table(PODS)?.remove(id)?;
        Ok(())
    }

    pub fn put_pod_build(&mut self, build: &PodBuild) -> Result<()> {
        self.put(POD_BUILDS, &build.id, build)
    }

    pub fn delete_pod_build(&mut self, id: &str) -> Result<()> {
        self.txn.open_table(POD_BUILDS)?.remove(id)?;
        Ok(())
    }

    pub fn put_container(&mut self, container: &ContainerRecord) -> Result<()> {
        self.put(CONTAINERS, &container.id, container)
    }

    pub fn delete_container(&mut self, id: &str) -> Result<()> {
        self.txn.open_table(CONTAINERS)?.remove(id)?;
        Ok(())
    }

    /// Allocates the next short numeric layer directory name. Never reused, so a directory left
    /// by a crash can never be mistaken for a newer layer.
    pub fn allocate_layer_dir(&mut self) -> Result<u64> {
        let mut meta = self.txn.open_table(META)?;
        let next = meta
            .get(KEY_NEXT_LAYER_DIR)?
            .map(|v| v.value())
            .unwrap_or(1);
        meta.insert(KEY_NEXT_LAYER_DIR, next + 1)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;

    fn image(id: &[u8]) -> ImageRecord {
        ImageRecord {
            id: Digest::of(id),
            repo_tags: vec!["docker.io/library/a:1".into()],
            repo_digests: vec![],
            size: 10,
            layers: vec![Digest::of(b"l1")],
            config: "{}".into(),
            created_unix_nanos: 0,
        }
    }

    #[test]
    fn write_commits_and_failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.db")).unwrap();
        let img = image(b"a");
        store
            .write(|t| -> Result<()> {
                t.put_image(&img)?;
                t.set_name("docker.io/library/a:1", &img.id.to_string())
            })
            .unwrap();
        let err: Result<()> = store.write(|t| {
            t.delete_image(&img.id.to_string())?;
            Err(StoreError::Db(redb::Error::Corrupted("test abort".into())))
        });
        assert!(err.is_err());
        let r = store.read().unwrap();
        assert_eq!(r.image(&img.id.to_string()).unwrap(), Some(img.clone()));
        assert_eq!(
            r.name("docker.io/library/a:1").unwrap(),
            Some(img.id.to_string())
        );
    }

    #[test]
    fn layer_dirs_are_never_reused_and_schema_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let store = Store::open(&path).unwrap();
            let a = store.write(|t| t.allocate_layer_dir()).unwrap();
            let b = store.write(|t| t.allocate_layer_dir()).unwrap();
            assert_eq!((a, b), (1, 2));
        }
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.write(|t| t.allocate_layer_dir()).unwrap(), 3);
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(KEY_SCHEMA, SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    }
}
