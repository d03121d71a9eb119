//! `UpdatePodSandboxResources`: kubelet tells the runtime the pod-level resources after it
//! resized the pod (in-place pod resize). The pod's cgroup gets the limits the pod may use in
//! total, `resources` (the sum of its containers') plus `overhead`, as kubelet itself sizes pod
//! cgroups (swap untouched); both are kept in the pod's config. Without `resources` nothing is
//! applied: an overhead alone is no limit.

use std::sync::Arc;

use prost::Message;
use tonic::Status;

use super::record_id;
use crate::cgroups::Cgroup;
use crate::cri::v1 as cri;
use crate::runtime::PodError;
use crate::server::Context;
use crate::server::status::status;
use crate::store::{PodState, StoreError};

/// CFS period the kernel uses when none is set.
const DEFAULT_CPU_PERIOD: i64 = 100_000;

fn validate(r: &cri::LinuxContainerResources, what: &str) -> Result<(), Status> {
    let bad = |field: &str, v: i64| {
        Err(Status::invalid_argument(format!(
            "{what}.{field} {v} is out of range"
        )))
    };
    for (field, v) in [
        ("cpu_period", r.cpu_period),
        ("cpu_shares", r.cpu_shares),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes),
    ] {
        if v < 0 {
            return bad(field, v);
        }
    }
    if r.cpu_quota < -1 {
        return bad("cpu_quota", r.cpu_quota);
    }
    if r.memory_swap_limit_in_bytes < -1 {
        return bad("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes);
    }
    Ok(())
}

/// The pod cgroup's limits: `resources` plus `overhead` for every limit `resources` sets
/// (unset or unlimited stays so); cpusets, hugepages and `unified` from `resources`, with the
/// overhead's hugepages added.
pub(super) fn pod_limits(
    r: &cri::LinuxContainerResources,
    o: Option<&cri::LinuxContainerResources>,
) -> cri::LinuxContainerResources {
    let zero = cri::LinuxContainerResources::default();
    let o = o.unwrap_or(&zero);
    let mut out = cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r.hugepage_limits.clone(),
        unified: r.unified.clone(),
        ..Default::default()
    };
    if r.cpu_quota > 0 && o.cpu_quota > 0 {
        // The overhead's quota over the pod's period.
        let period = |p: i64| if p > 0 { p } else { DEFAULT_CPU_PERIOD };
        let extra = (o.cpu_quota as i128 * period(r.cpu_period) as i128
            / period(o.cpu_period) as i128) as i64;
        out.cpu_quota = r.cpu_quota.saturating_add(extra);
    }
    if r.cpu_shares > 0 {
        out.cpu_shares = r.cpu_shares.saturating_add(o.cpu_shares);
    }
    if r.memory_limit_in_bytes > 0 {
        out.memory_limit_in_bytes = r
            .memory_limit_in_bytes
            .saturating_add(o.memory_limit_in_bytes);
    }
    for h in &mut out.hugepage_limits {
        if let Some(extra) = o
            .hugepage_limits
            .iter()
            .find(|x| x.page_size == h.page_size)
        {
            h.limit = h.limit.saturating_add(extra.limit);
        }
    }
    out
}

pub async fn update_pod_sandbox_resources(
    ctx: &Arc<Context>,
    req: cri::UpdatePodSandboxResourcesRequest,
) -> Result<cri::UpdatePodSandboxResourcesResponse, Status> {
    record_id(&req.pod_sandbox_id);
    let pod = ctx.runtime.pod(&req.pod_sandbox_id).map_err(status)?;
    if req.overhead.is_none() && req.resources.is_none() {
        return Err(Status::invalid_argument(
            "overhead or resources is required",
        ));
    }
    if let Some(o) = &req.overhead {
        validate(o, "overhead")?;
    }
    if let Some(r) = &req.resources {
        validate(r, "resources")?;
    }
    if pod.state != PodState::Ready {
        return Err(status(PodError::NotReady { id: pod.id }));
    }
    if let Some(r) = &req.resources {
        let limits = pod_limits(r, req.overhead.as_ref());
        // Swap is left alone: kubelet does not limit it at the pod level (its swap behaviour
        // is set per container).
        let oci = crate::spec::linux_resources(&limits, false).map_err(status)?;
        let path = ctx.runtime.pod_cgroup_parent(&pod);
        tokio::task::spawn_blocking(move || {
            let cg = Cgroup::open(&path)?;
            if cg.dirs().iter().any(|d| d.exists()) {
                cg.update(&oci)
            } else {
                // No container was created yet, so no pod cgroup either.
                Cgroup::create(&path, &oci).map(drop)
            }
        })
        .await
        .map_err(|e| Status::internal(format!("cgroup update task: {e}")))?
        .map_err(status)?;
    }
    ctx.store
        .write(|t| {
            if let Some(mut p) = t.pod(&pod.id)? {
                let mut config = p.sandbox_config();
                let linux = config.linux.get_or_insert_with(Default::default);
                if req.overhead.is_some() {
                    linux.overhead = req.overhead.clone();
                }
                if req.resources.is_some() {
                    linux.resources = req.resources.clone();
                }
                p.config = config.encode_to_vec();
                t.put_pod(&p)?;
            }
            Ok::<_, StoreError>(())
        })
        .map_err(status)?;
    Ok(cri::UpdatePodSandboxResourcesResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_added_to_set_limits_only() {
        let r = cri::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 200_000,
            cpu_shares: 1024,
            memory_limit_in_bytes: 256 << 20,
            cpuset_cpus: "0-1".into(),
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 2 << 20,
            }],
            ..Default::default()
        };
        let o = cri::LinuxContainerResources {
            cpu_period: 50_000,
            cpu_quota: 10_000,
            cpu_shares: 102,
            memory_limit_in_bytes: 32 << 20,
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            ..Default::default()
        };
        let l = pod_limits(&r, Some(&o));
        assert_eq!(l.cpu_period, 100_000);
        assert_eq!(l.cpu_quota, 220_000);
        assert_eq!(l.cpu_shares, 1126);
        assert_eq!(l.memory_limit_in_bytes, 288 << 20);
        assert_eq!(l.cpuset_cpus, "0-1");
        assert_eq!(l.hugepage_limits[0].limit, 6 << 20);

        // Unlimited stays unlimited.
        let unlimited = cri::LinuxContainerResources {
            cpu_quota: -1,
            ..Default::default()
        };
        let l = pod_limits(&unlimited, Some(&o));
        assert_eq!(l.cpu_quota, -1);
        assert_eq!(l.memory_limit_in_bytes, 0);
        assert_eq!(l.cpu_shares, 0);
        assert_eq!(pod_limits(&r, None).memory_limit_in_bytes, 256 << 20);
    }

    #[test]
    fn validation() {
        let ok = cri::LinuxContainerResources {
            cpu_quota: -1,
            memory_swap_limit_in_bytes: -1,
            ..Default::default()
        };
        assert!(validate(&ok, "resources").is_ok());
        for bad in [
            cri::LinuxContainerResources {
                memory_limit_in_bytes: -5,
                ..Default::default()
            },
            cri::LinuxContainerResources {
                cpu_quota: -2,
                ..Default::default()
            },
            cri::LinuxContainerResources {
                cpu_shares: -1,
                ..Default::default()
            },
        ] {
            let e = validate(&bad, "resources").unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
    }
}
