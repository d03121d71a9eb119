//! Image volumes (`Mount.image`): a pulled image shown read-only inside a container. Each is a
//! read-only overlay of the image's cached layer directories (a plain read-only bind for a
//! one-layer image, as overlay needs two lowers without an upper), mounted on the host under the
//! container's state directory and unmounted when the container is removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::{ContainerError, Runtime};
use crate::cri::v1 as cri;
use crate::image::digest::Digest;

/// The mounts' parent, under the container's state directory.
fn volumes_dir(state: &Path) -> PathBuf {
    state.join("iv")
}

pub(super) struct ImageVolumes {
    /// Image reference as the CRI mount names it -> the host directory showing it.
    pub paths: HashMap<String, PathBuf>,
    /// Layers the volumes use: recorded with the container so they are not collected.
    pub layers: Vec<Digest>,
}

impl Runtime {
    pub(super) fn mount_image_volumes(
        &self,
        config: &cri::ContainerConfig,
        state: &Path,
    ) -> Result<ImageVolumes, ContainerError> {
        let mut volumes = ImageVolumes {
            paths: HashMap::new(),
            layers: Vec::new(),
        };
        let wanted = config
            .mounts
            .iter()
            .filter_map(|m| m.image.as_ref().map(|i| i.image.clone()))
            .filter(|i| !i.is_empty());
        for (n, name) in wanted.enumerate() {
            if volumes.paths.contains_key(&name) {
                continue;
            }
            let image = self.images.find(&name)?.ok_or_else(|| {
                ContainerError::NotFoundDependency(format!("image volume {name} is not pulled"))
            })?;
            let read = self.store.read()?;
            let mut lowers = Vec::new();
            for chain_id in image.layers.iter().rev() {
                let layer = read.layer(&chain_id.to_string())?.ok_or_else(|| {
                    ContainerError::NotFoundDependency(format!(
                        "layer {chain_id} of image volume {name} is missing; pull it again"
                    ))
                })?;
                lowers.push(self.images.layer_cache().dir_of(&layer));
            }
            let target = volumes_dir(state).join(n.to_string());
            std::fs::create_dir_all(&target).map_err(|source| ContainerError::Io {
                context: format!("creating {}", target.display()),
                source,
            })?;
            mount_read_only(&lowers, &target).map_err(|e| ContainerError::Io {
                context: format!("mounting image volume {name} at {}", target.display()),
                source: e.into(),
            })?;
            volumes.layers.extend(image.layers.iter().cloned());
            volumes.paths.insert(name, target);
        }
        Ok(volumes)
    }
}

/// `lowers` topmost first.
fn mount_read_only(lowers: &[PathBuf], target: &Path) -> nix::Result<()> {
    match lowers {
        [] => Err(nix::Error::EINVAL),
        [only] => {
            mount(
                Some(only.as_path()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
        }
        many => {
            let lowerdir = many
                .iter()
                .map(|p| p.to_string_lossy())
                .collect::<Vec<_>>()
                .join(":");
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::MS_RDONLY,
                Some(format!("lowerdir={lowerdir}").as_str()),
            )
        }
    }
}

/// Unmounts every image volume of a container; idempotent.
pub(super) fn unmount_image_volumes(state: &Path) {
    let Ok(entries) = std::fs::read_dir(volumes_dir(state)) else {
        return;
    };
    for entry in entries.flatten() {
        match umount2(&entry.path(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), error = %e, "unmounting image volume");
            }
        }
    }
}
