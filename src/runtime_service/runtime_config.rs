//! `RuntimeConfig`: kubelet adopts the runtime's cgroup driver from here. strata manages cgroups
//! through cgroupfs (no systemd is required on the node).

use crate::cri::v1 as cri;

pub fn runtime_config(_req: cri::RuntimeConfigRequest) -> cri::RuntimeConfigResponse {
    cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
        }),
    }
}
