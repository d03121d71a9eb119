//! `RemoveImage`: idempotent; an image that is not there is already removed.

use tonic::Status;

use super::{image_name, record_id};
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub fn remove_image(
    ctx: &Context,
    req: cri::RemoveImageRequest,
) -> Result<cri::RemoveImageResponse, Status> {
    let name = image_name(req.image.as_ref())?;
    record_id(name);
    ctx.images.remove(name).map_err(status)?;
    Ok(cri::RemoveImageResponse {})
}
