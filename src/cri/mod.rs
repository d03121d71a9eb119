//! Generated gRPC code: the CRI v1 API (`proto/cri/v1/api.proto`) and strata's admin API.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod admin {
    tonic::include_proto!("strata.admin.v1");
}
