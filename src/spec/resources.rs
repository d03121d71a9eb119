//! CRI `LinuxContainerResources` -> OCI `LinuxResources` (containerd's `WithResources`): zero
//! means "not set"; with a memory limit and no swap limit, swap is limited to the memory limit
//! (no swapping) when the kernel accounts swap; hugepage limits and `unified` are passed on.
//! There is no pids limit per container in CRI (kubelet limits the pod's cgroup).

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxHugepageLimitBuilder, LinuxMemory,
    LinuxResources,
};

use super::{SpecError, invalid};
use crate::cri::v1 as cri;

fn non_negative(v: i64, field: &str) -> Result<u64, SpecError> {
    u64::try_from(v).map_err(|_| invalid(format!("{field} {v} is negative")))
}

pub fn resources(
    r: Option<&cri::LinuxContainerResources>,
    swap_available: bool,
    devices: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResources::default();
    out.set_devices(Some(devices));
    let Some(r) = r else {
        return Ok(out);
    };

    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if r.cpu_period != 0 {
        cpu.set_period(Some(non_negative(r.cpu_period, "cpu_period")?));
        any_cpu = true;
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        any_cpu = true;
    }
    if r.cpu_shares != 0 {
        cpu.set_shares(Some(non_negative(r.cpu_shares, "cpu_shares")?));
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        any_cpu = true;
    }
    if any_cpu {
        out.set_cpu(Some(cpu));
    }

    let mut mem = LinuxMemory::default();
    let mut any_mem = false;
    if r.memory_limit_in_bytes != 0 {
        mem.set_limit(Some(r.memory_limit_in_bytes));
        any_mem = true;
        if r.memory_swap_limit_in_bytes == 0 && swap_available {
            mem.set_swap(Some(r.memory_limit_in_bytes));
        }
    }
    if r.memory_swap_limit_in_bytes != 0 && swap_available {
        mem.set_swap(Some(r.memory_swap_limit_in_bytes));
        any_mem = true;
    }
    if any_mem {
        out.set_memory(Some(mem));
    }

    if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|h| {
                let limit = i64::try_from(h.limit).map_err(|_| {
                    invalid(format!(
                        "hugepage limit {} for {} too large",
                        h.limit, h.page_size
                    ))
                })?;
                Ok(LinuxHugepageLimitBuilder::default()
                    .page_size(h.page_size.clone())
                    .limit(limit)
                    .build()?)
            })
            .collect::<Result<Vec<LinuxHugepageLimit>, SpecError>>()?;
        out.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        out.set_unified(Some(r.unified.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::Fixture;

    fn res(f: &Fixture) -> LinuxResources {
        f.ok()
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .clone()
            .unwrap()
    }

    #[test]
    fn none_given_means_only_device_rules() {
        let f = Fixture::new();
        let r = res(&f);
        assert!(r.cpu().is_none() && r.memory().is_none() && r.pids().is_none());
        assert!(r.devices().as_ref().is_some_and(|d| !d.is_empty()));
    }

    #[test]
    fn cpu_memory_hugepages_unified() {
        let mut f = Fixture::new();
        let r = f.resources();
        r.cpu_period = 100_000;
        r.cpu_quota = 50_000;
        r.cpu_shares = 512;
        r.cpuset_cpus = "0".into();
        r.cpuset_mems = "0".into();
        r.memory_limit_in_bytes = 64 << 20;
        r.hugepage_limits = vec![cri::HugepageLimit {
            page_size: "2MB".into(),
            limit: 4 << 20,
        }];
        r.unified.insert("memory.high".into(), "1000000".into());
        let out = res(&f);
        let cpu = out.cpu().as_ref().unwrap();
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = out.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(
            mem.swap(),
            Some(64 << 20),
            "swap defaults to the memory limit"
        );
        let h = &out.hugepage_limits().as_ref().unwrap()[0];
        assert_eq!((h.page_size().as_str(), h.limit()), ("2MB", 4 << 20));
        assert_eq!(
            out.unified()
                .as_ref()
                .unwrap()
                .get("memory.high")
                .map(String::as_str),
            Some("1000000")
        );
    }

    #[test]
    fn swap_rules() {
        let mut f = Fixture::new();
        f.resources().memory_limit_in_bytes = 100;
        f.resources().memory_swap_limit_in_bytes = 300;
        assert_eq!(res(&f).memory().unwrap().swap(), Some(300));
        f.swap_controller_available = false;
        assert_eq!(res(&f).memory().unwrap().swap(), None);
        assert_eq!(res(&f).memory().unwrap().limit(), Some(100));
    }

    #[test]
    fn negative_values_are_invalid() {
        let mut f = Fixture::new();
        f.resources().cpu_shares = -2;
        assert!(f.invalid().contains("cpu_shares"));
    }

    #[test]
    fn cgroups_path_and_root() {
        let mut f = Fixture::new();
        f.sc().readonly_rootfs = true;
        let spec = f.ok();
        assert_eq!(
            spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(std::path::Path::new("/kubepods/pod1/c"))
        );
        let root = spec.root().as_ref().unwrap();
        assert_eq!(
            root.path(),
            std::path::Path::new("/run/strata/containers/c/rootfs")
        );
        assert_eq!(root.readonly(), Some(true));
    }
}
