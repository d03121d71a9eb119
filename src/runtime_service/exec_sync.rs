//! `ExecSync`: a command in a running container, with a timeout and capped output.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn exec_sync(
    ctx: &Context,
    req: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse, Status> {
    record_id(&req.container_id);
    let timeout = (req.timeout > 0).then(|| std::time::Duration::from_secs(req.timeout as u64));
    let out = ctx
        .runtime
        .exec_sync(&req.container_id, req.cmd, timeout)
        .await
        .map_err(status)?;
    Ok(cri::ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.exit_code,
    })
}
