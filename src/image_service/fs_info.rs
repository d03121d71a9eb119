//! `ImageFsInfo`: the image filesystem (shared layer cache) and the container filesystem
//! (writable layers), which kubelet uses for eviction and image garbage collection.

use tonic::Status;

use crate::cri::v1 as cri;
use crate::image::catalog::FsUsage;
use crate::server::Context;
use crate::server::status::status;

pub fn image_fs_info(
    ctx: &Context,
    _req: cri::ImageFsInfoRequest,
) -> Result<cri::ImageFsInfoResponse, Status> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default();
    let to_cri = |u: FsUsage| cri::FilesystemUsage {
        timestamp: now,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: u.mountpoint.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(cri::UInt64Value {
            value: u.used_bytes,
        }),
        inodes_used: Some(cri::UInt64Value {
            value: u.inodes_used,
        }),
    };
    Ok(cri::ImageFsInfoResponse {
        image_filesystems: vec![to_cri(ctx.images.image_fs_usage().map_err(status)?)],
        container_filesystems: vec![to_cri(ctx.images.container_fs_usage().map_err(status)?)],
    })
}
