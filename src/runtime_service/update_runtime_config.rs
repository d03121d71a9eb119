//! `UpdateRuntimeConfig`: kubelet hands over the node's pod CIDR, which strata stores and passes
//! to CNI plugins declaring the `ipRanges` capability.

use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub fn update_runtime_config(
    ctx: &Context,
    req: cri::UpdateRuntimeConfigRequest,
) -> Result<cri::UpdateRuntimeConfigResponse, Status> {
    let cidr = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    // Kubelet sends an empty CIDR when it has none: keep what we have.
    if !cidr.is_empty() {
        ctx.runtime.network().set_pod_cidr(&cidr).map_err(status)?;
    }
    Ok(cri::UpdateRuntimeConfigResponse {})
}
