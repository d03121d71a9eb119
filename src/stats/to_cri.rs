//! Samples as CRI `ContainerStats` / `PodSandboxStats`.

use super::cgroup::CgroupStats;
use super::psi::{Psi, PsiLine};
use super::{ContainerSample, PodSample};
use crate::cri::v1 as cri;

fn u64v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

fn psi_data(l: &PsiLine) -> cri::PsiData {
    cri::PsiData {
        // The kernel counts µs; CRI wants ns.
        total: l.total_us.saturating_mul(1000),
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    }
}

fn psi(p: &Option<Psi>) -> Option<cri::PsiStats> {
    p.as_ref().map(|p| cri::PsiStats {
        full: Some(psi_data(&p.full)),
        some: Some(psi_data(&p.some)),
    })
}

fn cpu(cg: &CgroupStats, nano_cores: Option<u64>, at: i64) -> Option<cri::CpuUsage> {
    cg.cpu.as_ref().map(|c| cri::CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: u64v(c.usage_ns),
        usage_nano_cores: nano_cores.and_then(u64v),
        psi: psi(&cg.cpu_psi),
    })
}

fn memory(cg: &CgroupStats, at: i64) -> Option<cri::MemoryUsage> {
    cg.memory.as_ref().map(|m| cri::MemoryUsage {
        timestamp: at,
        working_set_bytes: u64v(m.working_set),
        // Defined as limit - working set: absent without a limit.
        available_bytes: m.limit.and_then(|l| u64v(l.saturating_sub(m.working_set))),
        usage_bytes: u64v(m.usage),
        rss_bytes: u64v(m.rss),
        page_faults: u64v(m.page_faults),
        major_page_faults: u64v(m.major_page_faults),
        psi: psi(&cg.memory_psi),
    })
}

fn io(cg: &CgroupStats, at: i64) -> Option<cri::IoUsage> {
    cg.io_psi.as_ref().map(|_| cri::IoUsage {
        timestamp: at,
        psi: psi(&cg.io_psi),
    })
}

pub fn container_stats(s: &ContainerSample) -> cri::ContainerStats {
    let config = s.record.container_config();
    let cg = &s.cgroup;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: s.record.id.clone(),
            metadata: config.metadata,
            labels: config.labels,
            annotations: config.annotations,
        }),
        cpu: cpu(cg, s.nano_cores, s.at),
        memory: memory(cg, s.at),
        writable_layer: s.layer.map(|(u, at)| cri::FilesystemUsage {
            timestamp: at,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: s.layer_mountpoint.to_string_lossy().into_owned(),
            }),
            used_bytes: u64v(u.bytes),
            inodes_used: u64v(u.inodes),
        }),
        swap: cg.swap.as_ref().map(|sw| cri::SwapUsage {
            timestamp: s.at,
            swap_available_bytes: sw.limit.and_then(|l| u64v(l.saturating_sub(sw.usage))),
            swap_usage_bytes: u64v(sw.usage),
        }),
        io: io(cg, s.at),
    }
}

fn interface(i: &super::netdev::Iface) -> cri::NetworkInterfaceUsage {
    cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: u64v(i.rx_bytes),
        rx_errors: u64v(i.rx_errors),
        tx_bytes: u64v(i.tx_bytes),
        tx_errors: u64v(i.tx_errors),
    }
}

/// The default interface is `eth0` (what CNI plugins name the pod's interface), else the first;
/// `interfaces` lists the others, as the proto defines it.
fn network(ifaces: &[super::netdev::Iface], at: i64) -> cri::NetworkUsage {
    let default = ifaces
        .iter()
        .position(|i| i.name == "eth0")
        .or((!ifaces.is_empty()).then_some(0));
    cri::NetworkUsage {
        timestamp: at,
        default_interface: default.map(|d| interface(&ifaces[d])),
        interfaces: ifaces
            .iter()
            .enumerate()
            .filter(|(n, _)| Some(*n) != default)
            .map(|(_, i)| interface(i))
            .collect(),
    }
}

pub fn pod_stats(s: &PodSample) -> cri::PodSandboxStats {
    let config = s.record.sandbox_config();
    let cg = &s.cgroup;
    let processes = cg
        .processes
        .unwrap_or_else(|| s.containers.iter().filter_map(|c| c.cgroup.processes).sum());
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: s.record.id.clone(),
            metadata: config.metadata,
            labels: config.labels,
            annotations: config.annotations,
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: cpu(cg, s.nano_cores, s.at),
            memory: memory(cg, s.at),
            network: s.network.as_ref().map(|n| network(n, s.at)),
            process: Some(cri::ProcessUsage {
                timestamp: s.at,
                process_count: u64v(processes),
            }),
            containers: s.containers.iter().map(container_stats).collect(),
            io: io(cg, s.at),
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::netdev::Iface;
    use super::*;

    fn iface(name: &str, rx: u64) -> Iface {
        Iface {
            name: name.into(),
            rx_bytes: rx,
            ..Default::default()
        }
    }

    #[test]
    fn default_interface_is_eth0_else_first() {
        let n = network(&[iface("a0", 1), iface("eth0", 2), iface("z9", 3)], 5);
        assert_eq!(n.default_interface.unwrap().name, "eth0");
        let names: Vec<_> = n.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a0", "z9"]);
        let n = network(&[iface("a0", 1), iface("b0", 2)], 5);
        assert_eq!(n.default_interface.unwrap().rx_bytes.unwrap().value, 1);
        assert_eq!(n.interfaces.len(), 1);
        let n = network(&[], 5);
        assert!(n.default_interface.is_none() && n.interfaces.is_empty());
    }

    #[test]
    fn memory_available_needs_a_limit_and_psi_is_in_ns() {
        let mut cg = CgroupStats {
            memory: Some(super::super::cgroup::MemoryStats {
                usage: 100,
                working_set: 60,
                limit: Some(1000),
                ..Default::default()
            }),
            memory_psi: Some(Psi {
                some: PsiLine {
                    total_us: 7,
                    avg10: 1.5,
                    ..Default::default()
                },
                full: PsiLine::default(),
            }),
            ..Default::default()
        };
        let m = memory(&cg, 1).unwrap();
        assert_eq!(m.available_bytes.unwrap().value, 940);
        let p = m.psi.unwrap().some.unwrap();
        assert_eq!(p.total, 7000);
        assert_eq!(p.avg10, 1.5);
        cg.memory.as_mut().unwrap().limit = None;
        assert!(memory(&cg, 1).unwrap().available_bytes.is_none());
        assert!(io(&cg, 1).is_none());
    }
}
