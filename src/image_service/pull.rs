//! `PullImage`: pulls the image (or returns it at once when the registry says nothing changed)
//! and answers with the image id, which kubelet passes back in `CreateContainer`.

use tonic::Status;

use super::{image_name, record_id};
use crate::cri::v1 as cri;
use crate::image::registry::Credentials;
use crate::server::Context;
use crate::server::status::status;

pub async fn pull_image(
    ctx: &Context,
    req: cri::PullImageRequest,
) -> Result<cri::PullImageResponse, Status> {
    let name = image_name(req.image.as_ref())?;
    record_id(name);
    let creds = match &req.auth {
        Some(a) => Credentials::from_auth_config(
            &a.username,
            &a.password,
            &a.auth,
            &a.identity_token,
            &a.registry_token,
        )
        .map_err(status)?,
        None => None,
    };
    let image = ctx
        .images
        .pull(name, creds.as_ref())
        .await
        .map_err(status)?;
    Ok(cri::PullImageResponse {
        image_ref: image.id.to_string(),
    })
}
