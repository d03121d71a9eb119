//! `ImageStatus`: a missing image is not an error (CRI says: `image` unset), so kubelet can ask
//! before it pulls. `verbose` adds the config and layers as JSON under `info`.

use std::collections::HashMap;

use tonic::Status;

use super::{image_name, record_id, to_cri};
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub fn image_status(
    ctx: &Context,
    req: cri::ImageStatusRequest,
) -> Result<cri::ImageStatusResponse, Status> {
    let name = image_name(req.image.as_ref())?;
    record_id(name);
    let Some(image) = ctx.images.find(name).map_err(status)? else {
        return Ok(cri::ImageStatusResponse::default());
    };
    let mut info = HashMap::new();
    if req.verbose {
        let read = ctx.store.read().map_err(status)?;
        let mut layers = Vec::new();
        for chain_id in &image.layers {
            if let Some(layer) = read.layer(&chain_id.to_string()).map_err(status)? {
                layers.push(serde_json::json!({
                    "chainID": layer.chain_id,
                    "diffID": layer.diff_id,
                    "path": ctx.images.layer_cache().dir_of(&layer),
                    "size": layer.unpacked_bytes,
                }));
            }
        }
        let config: serde_json::Value =
            serde_json::from_str(&image.config).unwrap_or(serde_json::Value::Null);
        let doc = serde_json::json!({
            "id": image.id,
            "repoTags": image.repo_tags,
            "repoDigests": image.repo_digests,
            "size": image.size,
            "layers": layers,
            "imageSpec": config,
        });
        info.insert("info".to_owned(), doc.to_string());
    }
    Ok(cri::ImageStatusResponse {
        image: Some(to_cri(ctx, &image)),
        info,
    })
}
