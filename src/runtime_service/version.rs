//! `Version`: the runtime's name and version and the CRI API version it serves.

use crate::cri::v1 as cri;

/// The kubelet-facing API version string; "0.1.0" is what the CRI comments ask for in `version`.
const KUBELET_API_VERSION: &str = "0.1.0";

pub fn version(_req: cri::VersionRequest) -> cri::VersionResponse {
    cri::VersionResponse {
        version: KUBELET_API_VERSION.into(),
        runtime_name: crate::RUNTIME_NAME.into(),
        runtime_version: crate::RUNTIME_VERSION.into(),
        runtime_api_version: crate::CRI_API_VERSION.into(),
    }
}
