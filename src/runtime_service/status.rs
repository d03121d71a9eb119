//! `Status`: the RuntimeReady and NetworkReady conditions kubelet gates pods on, the runtime
//! handlers with the features they really support, and (verbose) diagnostics.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;

pub const RUNTIME_READY: &str = "RuntimeReady";
pub const NETWORK_READY: &str = "NetworkReady";

pub fn status(ctx: &Context, req: cri::StatusRequest) -> Result<cri::StatusResponse, Status> {
    let conditions = vec![
        cri::RuntimeCondition {
            r#type: RUNTIME_READY.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        network_condition(ctx),
    ];
    let mut info = HashMap::new();
    if req.verbose {
        let counters = ctx.images.counters();
        let doc = serde_json::json!({
            "config": {
                "root": ctx.config.root,
                "state": ctx.config.state,
                "socket": ctx.config.socket,
            },
            "pulls": {
                "layersFetched": counters.layers_fetched.load(Ordering::Relaxed),
                "bytesFetched": counters.bytes_fetched.load(Ordering::Relaxed),
            },
            "rpcDurations": ctx.metrics.snapshot(),
        });
        info.insert("info".to_owned(), doc.to_string());
    }
    Ok(cri::StatusResponse {
        status: Some(cri::RuntimeStatus { conditions }),
        info,
        runtime_handlers: runtime_handlers(ctx),
        // `supplemental_groups_policy: Strict` is honoured by the spec generator.
        features: Some(cri::RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    })
}

/// NetworkReady: a valid CNI config whose plugins are installed (hostNetwork pods need none,
/// but kubelet only starts other pods when this is true).
fn network_condition(ctx: &Context) -> cri::RuntimeCondition {
    let (status, reason, message) = match ctx.runtime.network().ready() {
        Ok(_) => (true, String::new(), String::new()),
        Err(e) => (false, "NetworkPluginNotReady".to_owned(), e.to_string()),
    };
    cri::RuntimeCondition {
        r#type: NETWORK_READY.into(),
        status,
        reason,
        message,
    }
}

/// The default handler (the built-in launcher) and every configured OCI runtime handler.
fn runtime_handlers(ctx: &Context) -> Vec<cri::RuntimeHandler> {
    // The launcher applies `rro` with mount_setattr(AT_RECURSIVE), and runs pods with their own
    // user namespace (pod-init creates it; containers join it with id-mapped layers/volumes).
    let mut handlers = vec![cri::RuntimeHandler {
        name: String::new(),
        features: Some(cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: true,
            user_namespaces: true,
        }),
    }];
    // An OCI runtime: `rro` when its `features` lists it. User namespaces are not claimed: the
    // rootfs strata prepares for it is a plain overlay (not id-mapped), untested there.
    handlers.extend(ctx.runtime.oci_handlers().map(|h| cri::RuntimeHandler {
        name: h.name.clone(),
        features: Some(cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: h.recursive_read_only_mounts(),
            user_namespaces: false,
        }),
    }));
    handlers
}
