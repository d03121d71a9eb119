//! Runtime info specs (critest `runtime_info.go`): Version and Status.

use k8s_cri::v1::{StatusRequest, VersionRequest};

use super::{Ctx, Spec, ensure, rpc_err, spec};
use crate::client::KUBELET_API_VERSION;

pub fn specs() -> Vec<Spec> {
    vec![spec!("info/version", version), spec!("info/status", status)]
}

/// Version answers runtime_api_version "v1" (we speak CRI v1) and non-empty
/// version, runtime name and runtime version.
async fn version(ctx: &Ctx) -> Result<(), String> {
    let v = ctx
        .runtime()
        .version(VersionRequest {
            version: KUBELET_API_VERSION.to_owned(),
        })
        .await
        .map_err(|s| rpc_err("Version", &s))?
        .into_inner();
    ensure(v.runtime_api_version == "v1", || {
        format!(
            "runtime_api_version {:?}, want \"v1\"",
            v.runtime_api_version
        )
    })?;
    ensure(!v.version.is_empty(), || "empty version".into())?;
    ensure(!v.runtime_name.is_empty(), || "empty runtime_name".into())?;
    ensure(!v.runtime_version.is_empty(), || {
        "empty runtime_version".into()
    })
}

/// Status has a RuntimeReady condition that is true, and a NetworkReady
/// condition that is either true or false with a reason (critest wants both
/// true; a node without CNI config legitimately reports NetworkReady=false).
async fn status(ctx: &Ctx) -> Result<(), String> {
    let resp = ctx
        .runtime()
        .status(StatusRequest { verbose: false })
        .await
        .map_err(|s| rpc_err("Status", &s))?
        .into_inner();
    let conditions = resp.status.map(|s| s.conditions).unwrap_or_default();
    let find = |t: &str| conditions.iter().find(|c| c.r#type == t);
    match find("RuntimeReady") {
        Some(c) if c.status => {}
        Some(c) => return Err(format!("RuntimeReady is false: {} {}", c.reason, c.message)),
        None => return Err(format!("no RuntimeReady condition in {conditions:?}")),
    }
    match find("NetworkReady") {
        Some(c) if c.status => Ok(()),
        Some(c) if !c.reason.is_empty() => {
            ctx.note(format!("NetworkReady=false: {} {}", c.reason, c.message));
            Ok(())
        }
        Some(_) => Err("NetworkReady is false without a reason".into()),
        None => Err(format!("no NetworkReady condition in {conditions:?}")),
    }
}
