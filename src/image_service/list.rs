//! `ListImages`, optionally filtered to one image (by any name or id `ImageStatus` accepts).

use tonic::Status;

use super::to_cri;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub fn list_images(
    ctx: &Context,
    req: cri::ListImagesRequest,
) -> Result<cri::ListImagesResponse, Status> {
    let wanted = req
        .filter
        .and_then(|f| f.image)
        .map(|s| s.image)
        .filter(|s| !s.is_empty());
    let images = match wanted {
        Some(spec) => ctx
            .images
            .find(&spec)
            .map_err(status)?
            .into_iter()
            .collect(),
        None => ctx.images.list().map_err(status)?,
    };
    Ok(cri::ListImagesResponse {
        images: images.iter().map(|i| to_cri(ctx, i)).collect(),
    })
}
