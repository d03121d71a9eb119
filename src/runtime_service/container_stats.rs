//! `ContainerStats`.

use std::sync::Arc;

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;
use crate::stats::{Collector, to_cri};

pub async fn container_stats(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    req: cri::ContainerStatsRequest,
) -> Result<cri::ContainerStatsResponse, Status> {
    record_id(&req.container_id);
    let record = ctx.runtime.container(&req.container_id).map_err(status)?;
    let (ctx, stats) = (ctx.clone(), stats.clone());
    let sample = super::list_container_stats::blocking(move || {
        stats.container(&ctx.runtime, record).map_err(status)
    })
    .await?;
    Ok(cri::ContainerStatsResponse {
        stats: Some(to_cri::container_stats(&sample)),
    })
}
