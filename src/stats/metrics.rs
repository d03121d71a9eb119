//! The cadvisor-style metrics of `ListMetricDescriptors` / `ListPodSandboxMetrics` (what
//! kubelet's CRI metrics collector republishes on `/metrics/cadvisor`), with CRI-O's labels:
//! `id`, `name`, `image` (the pod level uses the pod id, `POD` and no image), plus
//! metric-specific ones. Values are integers (CRI carries `UInt64Value`), so seconds are whole
//! seconds. Live values have timestamp 0; cached ones (the writable layer) the time they were
//! measured, as the proto asks.
//!
//! Every descriptor is emitted for every container (the network ones for every pod), with 0
//! where this host has no source for it (no swap accounting, no PSI, no hugetlb controller...):
//! kubelet and critest expect each advertised metric to be present, with one label value per
//! label key. A per-item metric with no items (no block device did I/O, no interface) gets one
//! sample with empty item labels.

use super::blkio::IoDevice;
use super::cgroup::CgroupStats;
use super::fs_info::FsInfo;
use super::netdev::Iface;
use super::psi::Psi;
use super::{ContainerSample, PodSample};
use crate::cri::v1 as cri;

const COUNTER: cri::MetricType = cri::MetricType::Counter;
const GAUGE: cri::MetricType = cri::MetricType::Gauge;

struct Desc {
    name: &'static str,
    help: &'static str,
    /// Label keys after `id`, `name`, `image`.
    extra: &'static [&'static str],
}

const fn d(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        extra: &[],
    }
}

const NET: &[&str] = &["interface"];
const DEVICE: &[&str] = &["device"];
const PAGESIZE: &[&str] = &["pagesize"];

const DESCRIPTORS: &[Desc] = &[
    Desc {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative cpu time consumed in seconds.",
        extra: &["cpu"],
    },
    d(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
    ),
    d(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
    ),
    d(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
    ),
    d(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
    ),
    d(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
    ),
    d(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
    ),
    d(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
    ),
    d("container_memory_rss", "Size of RSS in bytes."),
    d(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
    ),
    d(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
    ),
    d(
        "container_memory_kernel_usage",
        "Size of kernel memory allocated in bytes.",
    ),
    d("container_memory_swap", "Container swap usage in bytes."),
    d(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
    ),
    d(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
    ),
    Desc {
        name: "container_memory_failures_total",
        help: "Cumulative count of memory allocation failures.",
        extra: &["failure_type", "scope"],
    },
    d(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
    ),
    d(
        "container_processes",
        "Number of processes running inside the container.",
    ),
    d(
        "container_threads",
        "Number of threads running inside the container",
    ),
    d(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
    ),
    d(
        "container_file_descriptors",
        "Number of open file descriptors for the container.",
    ),
    d(
        "container_sockets",
        "Number of open sockets for the container.",
    ),
    Desc {
        name: "container_ulimits_soft",
        help: "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice",
        extra: &["ulimit"],
    },
    d(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container in bytes.",
    ),
    d(
        "container_spec_memory_reservation_limit_bytes",
        "Memory reservation limit for the container.",
    ),
    d(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
    ),
    d("container_spec_cpu_shares", "CPU share of the container."),
    d("container_spec_cpu_quota", "CPU quota of the container."),
    d("container_spec_cpu_period", "CPU period of the container."),
    Desc {
        name: "container_fs_usage_bytes",
        help: "Number of bytes that are consumed by the container on this filesystem.",
        extra: DEVICE,
    },
    Desc {
        name: "container_fs_limit_bytes",
        help: "Number of bytes that can be consumed by the container on this filesystem.",
        extra: DEVICE,
    },
    Desc {
        name: "container_fs_inodes_total",
        help: "Number of Inodes",
        extra: DEVICE,
    },
    Desc {
        name: "container_fs_inodes_free",
        help: "Number of available Inodes",
        extra: DEVICE,
    },
    Desc {
        name: "container_fs_reads_bytes_total",
        help: "Cumulative count of bytes read",
        extra: DEVICE,
    },
    Desc {
        name: "container_fs_reads_total",
        help: "Cumulative count of reads completed",
        extra: DEVICE,
    },
    Desc {
        name: "container_fs_writes_bytes_total",
        help: "Cumulative count of bytes written",
        extra: DEVICE,
    },
    Desc {
        name: "container_fs_writes_total",
        help: "Cumulative count of writes completed",
        extra: DEVICE,
    },
    Desc {
        name: "container_blkio_device_usage_total",
        help: "Blkio Device bytes usage",
        extra: &["device", "major", "minor", "operation"],
    },
    Desc {
        name: "container_hugetlb_usage_bytes",
        help: "Current hugepage usage in bytes",
        extra: PAGESIZE,
    },
    Desc {
        name: "container_hugetlb_max_usage_bytes",
        help: "Maximum hugepage usage recorded in bytes",
        extra: PAGESIZE,
    },
    d(
        "container_pressure_cpu_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to CPU congestion.",
    ),
    d(
        "container_pressure_cpu_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to CPU congestion.",
    ),
    d(
        "container_pressure_memory_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to memory congestion.",
    ),
    d(
        "container_pressure_memory_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to memory congestion.",
    ),
    d(
        "container_pressure_io_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to IO congestion.",
    ),
    d(
        "container_pressure_io_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to IO congestion.",
    ),
    d(
        "container_last_seen",
        "Last time a container was seen by the exporter",
    ),
    d(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
    ),
    Desc {
        name: "container_network_receive_bytes_total",
        help: "Cumulative count of bytes received",
        extra: NET,
    },
    Desc {
        name: "container_network_receive_packets_total",
        help: "Cumulative count of packets received",
        extra: NET,
    },
    Desc {
        name: "container_network_receive_packets_dropped_total",
        help: "Cumulative count of packets dropped while receiving",
        extra: NET,
    },
    Desc {
        name: "container_network_receive_errors_total",
        help: "Cumulative count of errors encountered while receiving",
        extra: NET,
    },
    Desc {
        name: "container_network_transmit_bytes_total",
        help: "Cumulative count of bytes transmitted",
        extra: NET,
    },
    Desc {
        name: "container_network_transmit_packets_total",
        help: "Cumulative count of packets transmitted",
        extra: NET,
    },
    Desc {
        name: "container_network_transmit_packets_dropped_total",
        help: "Cumulative count of packets dropped while transmitting",
        extra: NET,
    },
    Desc {
        name: "container_network_transmit_errors_total",
        help: "Cumulative count of errors encountered while transmitting",
        extra: NET,
    },
];

const BASE_LABELS: [&str; 3] = ["id", "name", "image"];

/// Every metric `ListPodSandboxMetrics` may return; static, as the proto requires.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .map(|d| cri::MetricDescriptor {
            name: d.name.to_owned(),
            help: d.help.to_owned(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.extra)
                .map(|k| k.to_string())
                .collect(),
        })
        .collect()
}

/// Builds the metrics of one object (its base label values fixed).
struct Out {
    base: Vec<String>,
    metrics: Vec<cri::Metric>,
}

impl Out {
    fn push(&mut self, name: &str, kind: cri::MetricType, extra: &[&str], value: u64, ts: i64) {
        debug_assert!(
            DESCRIPTORS
                .iter()
                .any(|d| d.name == name && d.extra.len() == extra.len()),
            "{name} {extra:?}"
        );
        let mut label_values = self.base.clone();
        label_values.extend(extra.iter().map(|v| v.to_string()));
        self.metrics.push(cri::Metric {
            name: name.to_owned(),
            timestamp: ts,
            metric_type: kind as i32,
            label_values,
            value: Some(cri::UInt64Value { value }),
        });
    }

    /// A live metric without labels of its own.
    fn one(&mut self, name: &str, kind: cri::MetricType, value: u64) {
        self.push(name, kind, &[], value, 0);
    }
}

const NS_PER_S: u64 = 1_000_000_000;

fn pressure(out: &mut Out, resource: &str, p: &Option<Psi>) {
    let p = p.unwrap_or_default();
    // µs -> s.
    let waiting = format!("container_pressure_{resource}_waiting_seconds_total");
    let stalled = format!("container_pressure_{resource}_stalled_seconds_total");
    out.one(&waiting, COUNTER, p.some.total_us / 1_000_000);
    out.one(&stalled, COUNTER, p.full.total_us / 1_000_000);
}

fn cpu(out: &mut Out, cg: &CgroupStats) {
    let cpu = cg.cpu.clone().unwrap_or_default();
    let secs = |v: Option<u64>| v.unwrap_or(0) / NS_PER_S;
    out.push(
        "container_cpu_usage_seconds_total",
        COUNTER,
        &["total"],
        cpu.usage_ns / NS_PER_S,
        0,
    );
    out.one(
        "container_cpu_user_seconds_total",
        COUNTER,
        secs(cpu.user_ns),
    );
    out.one(
        "container_cpu_system_seconds_total",
        COUNTER,
        secs(cpu.system_ns),
    );
    out.one(
        "container_cpu_cfs_periods_total",
        COUNTER,
        cpu.periods.unwrap_or(0),
    );
    out.one(
        "container_cpu_cfs_throttled_periods_total",
        COUNTER,
        cpu.throttled_periods.unwrap_or(0),
    );
    out.one(
        "container_cpu_cfs_throttled_seconds_total",
        COUNTER,
        secs(cpu.throttled_ns),
    );
    // cadvisor reports "no quota" (and no share/period) as 0.
    out.one(
        "container_spec_cpu_shares",
        GAUGE,
        cg.spec.shares.unwrap_or(0),
    );
    out.one(
        "container_spec_cpu_quota",
        GAUGE,
        cg.spec.quota_us.unwrap_or(0),
    );
    out.one(
        "container_spec_cpu_period",
        GAUGE,
        cg.spec.period_us.unwrap_or(0),
    );
}

fn memory(out: &mut Out, cg: &CgroupStats) {
    let m = cg.memory.clone().unwrap_or_default();
    out.one("container_memory_usage_bytes", GAUGE, m.usage);
    out.one("container_memory_working_set_bytes", GAUGE, m.working_set);
    out.one("container_memory_rss", GAUGE, m.rss);
    out.one("container_memory_cache", GAUGE, m.cache);
    out.one("container_memory_mapped_file", GAUGE, m.mapped_file);
    out.one("container_memory_kernel_usage", GAUGE, m.kernel);
    out.one(
        "container_memory_max_usage_bytes",
        GAUGE,
        m.max_usage.unwrap_or(0),
    );
    out.one("container_memory_failcnt", COUNTER, m.failcnt.unwrap_or(0));
    let f = "container_memory_failures_total";
    out.push(f, COUNTER, &["pgfault", "hierarchy"], m.page_faults, 0);
    out.push(
        f,
        COUNTER,
        &["pgmajfault", "hierarchy"],
        m.major_page_faults,
        0,
    );
    let local = m.local_page_faults.unwrap_or(m.page_faults);
    let local_major = m.local_major_page_faults.unwrap_or(m.major_page_faults);
    out.push(f, COUNTER, &["pgfault", "container"], local, 0);
    out.push(f, COUNTER, &["pgmajfault", "container"], local_major, 0);
    out.one("container_oom_events_total", COUNTER, m.oom_kills);
    // cadvisor reports "no limit" as 0.
    out.one(
        "container_spec_memory_limit_bytes",
        GAUGE,
        m.limit.unwrap_or(0),
    );
    out.one(
        "container_spec_memory_reservation_limit_bytes",
        GAUGE,
        m.reservation.unwrap_or(0),
    );
    // No swap accounting on this host (v1 without memsw, v2 without memory.swap.*): 0.
    let sw = cg.swap.clone().unwrap_or_default();
    out.one("container_memory_swap", GAUGE, sw.usage);
    out.one(
        "container_spec_memory_swap_limit_bytes",
        GAUGE,
        sw.limit.unwrap_or(0),
    );
    let huge = "container_hugetlb_usage_bytes";
    let huge_max = "container_hugetlb_max_usage_bytes";
    if cg.hugetlb.is_empty() {
        out.push(huge, GAUGE, &[""], 0, 0);
        out.push(huge_max, GAUGE, &[""], 0, 0);
    }
    for h in &cg.hugetlb {
        out.push(huge, GAUGE, &[&h.pagesize], h.usage, 0);
        out.push(huge_max, GAUGE, &[&h.pagesize], h.max_usage, 0);
    }
}

fn processes(out: &mut Out, s: &ContainerSample) {
    let cg = &s.cgroup;
    out.one("container_processes", GAUGE, cg.processes.unwrap_or(0));
    // No pids controller (or a kernel without pids.current at this level): 0.
    out.one("container_threads", GAUGE, cg.tasks.unwrap_or(0));
    out.one("container_threads_max", GAUGE, cg.tasks_limit.unwrap_or(0));
    out.one("container_file_descriptors", GAUGE, s.fds.fds);
    out.one("container_sockets", GAUGE, s.fds.sockets);
    // cadvisor reports only this limit.
    out.push(
        "container_ulimits_soft",
        GAUGE,
        &["max_open_files"],
        s.max_open_files.unwrap_or(0),
        0,
    );
}

/// The writable layer's filesystem, and block I/O by device.
fn disk(out: &mut Out, s: &ContainerSample) {
    let fs = s.layer_fs.clone().unwrap_or_else(|| FsInfo {
        device: s.layer_mountpoint.to_string_lossy().into_owned(),
        ..Default::default()
    });
    let dev = [fs.device.as_str()];
    let (usage, at) = s.layer.unwrap_or_default();
    out.push("container_fs_usage_bytes", GAUGE, &dev, usage.bytes, at);
    out.push("container_fs_limit_bytes", GAUGE, &dev, fs.capacity, 0);
    out.push("container_fs_inodes_total", GAUGE, &dev, fs.inodes, 0);
    out.push("container_fs_inodes_free", GAUGE, &dev, fs.inodes_free, 0);

    // No block device did I/O (or no io/blkio controller): one placeholder, unnamed and
    // without a device number.
    let placeholder = s.cgroup.io.is_empty();
    let no_io = [IoDevice::default()];
    let devices: &[IoDevice] = if placeholder { &no_io } else { &s.cgroup.io };
    for d in devices {
        let dev = [d.device.as_str()];
        for (name, v) in [
            ("container_fs_reads_bytes_total", d.read_bytes),
            ("container_fs_reads_total", d.reads),
            ("container_fs_writes_bytes_total", d.write_bytes),
            ("container_fs_writes_total", d.writes),
        ] {
            out.push(name, COUNTER, &dev, v, 0);
        }
        let (major, minor) = if placeholder {
            (String::new(), String::new())
        } else {
            (d.major.to_string(), d.minor.to_string())
        };
        for (op, v) in [("Read", d.read_bytes), ("Write", d.write_bytes)] {
            let labels = [d.device.as_str(), &major, &minor, op];
            out.push("container_blkio_device_usage_total", COUNTER, &labels, v, 0);
        }
    }
}

fn container(s: &ContainerSample) -> cri::ContainerMetrics {
    let config = s.record.container_config();
    let name = config.metadata.map(|m| m.name).unwrap_or_default();
    let mut out = Out {
        base: vec![s.record.id.clone(), name, s.record.image_ref.clone()],
        metrics: Vec::new(),
    };
    let cg = &s.cgroup;
    cpu(&mut out, cg);
    memory(&mut out, cg);
    processes(&mut out, s);
    disk(&mut out, s);
    pressure(&mut out, "cpu", &cg.cpu_psi);
    pressure(&mut out, "memory", &cg.memory_psi);
    pressure(&mut out, "io", &cg.io_psi);
    out.one(
        "container_last_seen",
        GAUGE,
        (s.at.max(0) as u64) / NS_PER_S,
    );
    // A created container that has not started yet: when it was created (cadvisor's start
    // time is its cgroup's creation).
    let started = if s.record.started_at > 0 {
        s.record.started_at
    } else {
        s.record.created_at
    };
    out.one(
        "container_start_time_seconds",
        GAUGE,
        (started.max(0) as u64) / NS_PER_S,
    );
    cri::ContainerMetrics {
        container_id: s.record.id.clone(),
        metrics: out.metrics,
    }
}

/// The pod's own metrics (its network) and each container's.
pub fn pod_metrics(s: &PodSample) -> cri::PodSandboxMetrics {
    let mut out = Out {
        base: vec![s.record.id.clone(), "POD".into(), String::new()],
        metrics: Vec::new(),
    };
    // A hostNetwork pod, or one whose namespace has only loopback: zeros (see the module doc).
    let none = [Iface::default()];
    let ifaces = match s.network.as_deref() {
        Some(i) if !i.is_empty() => i,
        _ => &none,
    };
    for i in ifaces {
        let name = [i.name.as_str()];
        let rx = "container_network_receive_";
        let tx = "container_network_transmit_";
        for (dir, bytes, packets, dropped, errors) in [
            (rx, i.rx_bytes, i.rx_packets, i.rx_dropped, i.rx_errors),
            (tx, i.tx_bytes, i.tx_packets, i.tx_dropped, i.tx_errors),
        ] {
            out.push(&format!("{dir}bytes_total"), COUNTER, &name, bytes, 0);
            out.push(&format!("{dir}packets_total"), COUNTER, &name, packets, 0);
            out.push(
                &format!("{dir}packets_dropped_total"),
                COUNTER,
                &name,
                dropped,
                0,
            );
            out.push(&format!("{dir}errors_total"), COUNTER, &name, errors, 0);
        }
    }
    cri::PodSandboxMetrics {
        pod_sandbox_id: s.record.id.clone(),
        metrics: out.metrics,
        container_metrics: s.containers.iter().map(container).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use prost::Message;

    use super::super::cgroup::{MemoryStats, SwapStats};
    use super::super::fs_usage;
    use super::super::hugetlb::Hugetlb;
    use super::super::procs::Fds;
    use super::*;
    use crate::store::{ContainerRecord, ContainerState, PodRecord, PodState};

    #[test]
    fn descriptors_are_unique_and_labelled() {
        let ds = descriptors();
        let mut names: Vec<_> = ds.iter().map(|d| d.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ds.len());
        let cpu = ds
            .iter()
            .find(|d| d.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(cpu.label_keys, ["id", "name", "image", "cpu"]);
    }

    fn record(id: &str) -> ContainerRecord {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            ..Default::default()
        };
        ContainerRecord {
            id: id.into(),
            pod_id: "p".into(),
            config: config.encode_to_vec(),
            image_id: String::new(),
            image_ref: "busybox".into(),
            layers: vec![],
            state: ContainerState::Running,
            created_at: 5 * NS_PER_S as i64,
            started_at: 0,
            pid: 0,
            exit: None,
            log_path: String::new(),
            cgroup_path: String::new(),
            user: None,
        }
    }

    /// A container sample with every source absent: no cgroup files, no layer, no processes.
    fn bare(id: &str) -> ContainerSample {
        ContainerSample {
            record: record(id),
            at: 0,
            cgroup: CgroupStats::default(),
            nano_cores: None,
            layer: None,
            layer_mountpoint: PathBuf::from("/var/lib/strata/containers"),
            layer_fs: None,
            fds: Fds::default(),
            max_open_files: None,
        }
    }

    fn pod(network: Option<Vec<Iface>>, containers: Vec<ContainerSample>) -> PodSample {
        PodSample {
            record: PodRecord {
                id: "p".into(),
                config: vec![],
                state: PodState::Ready,
                created_at: 0,
                runtime_handler: String::new(),
                init_pid: 0,
                init_start_time: 0,
                netns_path: String::new(),
                ips: vec![],
                cgroup_parent: String::new(),
                network: None,
            },
            at: 0,
            cgroup: CgroupStats::default(),
            nano_cores: None,
            network,
            containers,
        }
    }

    /// Asserts critest's invariant: every descriptor appears among the pod's and its
    /// containers' metrics, and every metric has one label value per label key.
    fn assert_complete(m: &cri::PodSandboxMetrics) {
        let ds = descriptors();
        let all: Vec<&cri::Metric> = m
            .metrics
            .iter()
            .chain(m.container_metrics.iter().flat_map(|c| &c.metrics))
            .collect();
        for d in &ds {
            assert!(all.iter().any(|x| x.name == d.name), "{} missing", d.name);
        }
        for x in &all {
            let d = ds.iter().find(|d| d.name == x.name).unwrap();
            assert_eq!(x.label_values.len(), d.label_keys.len(), "{x:?}");
        }
    }

    /// Every advertised descriptor is emitted even when the host has none of its sources:
    /// a hostNetwork pod (no interfaces) with a container whose cgroup reads as empty.
    #[test]
    fn every_descriptor_is_emitted_with_nothing_measured() {
        for network in [None, Some(vec![])] {
            let m = pod_metrics(&pod(network, vec![bare("c1")]));
            assert_complete(&m);
            let c = &m.container_metrics[0];
            // The container's own metrics carry every non-network descriptor.
            for d in DESCRIPTORS.iter().filter(|d| d.extra != NET) {
                assert!(c.metrics.iter().any(|x| x.name == d.name), "{}", d.name);
            }
            let get = |name: &str| c.metrics.iter().find(|x| x.name == name).unwrap();
            assert_eq!(get("container_memory_swap").value.unwrap().value, 0);
            assert_eq!(get("container_threads").value.unwrap().value, 0);
            // Not started yet: its creation time.
            assert_eq!(get("container_start_time_seconds").value.unwrap().value, 5);
            let fs = get("container_fs_limit_bytes");
            assert_eq!(fs.label_values[3], "/var/lib/strata/containers");
            let blk = get("container_blkio_device_usage_total");
            assert_eq!(blk.label_values[3..], ["", "", "", "Read"]);
            let rx = m
                .metrics
                .iter()
                .find(|x| x.name == "container_network_receive_bytes_total")
                .unwrap();
            assert_eq!(rx.label_values, ["p", "POD", "", ""]);
        }
    }

    #[test]
    fn measured_values_and_labels() {
        let mut c = bare("c1");
        c.record.started_at = 1_700_000_000 * NS_PER_S as i64 + 5;
        c.cgroup.memory = Some(MemoryStats {
            kernel: 4096,
            ..Default::default()
        });
        c.cgroup.swap = Some(SwapStats {
            usage: 10,
            limit: None,
        });
        c.cgroup.io = vec![
            IoDevice {
                major: 8,
                minor: 0,
                device: "/dev/sda".into(),
                read_bytes: 100,
                write_bytes: 200,
                reads: 1,
                writes: 2,
            },
            IoDevice {
                major: 253,
                minor: 1,
                device: "/dev/dm-1".into(),
                ..Default::default()
            },
        ];
        c.cgroup.hugetlb = vec![Hugetlb {
            pagesize: "2MB".into(),
            usage: 2097152,
            max_usage: 0,
        }];
        c.layer_fs = Some(FsInfo {
            device: "/dev/nvme0n1p3".into(),
            capacity: 1 << 30,
            inodes: 1000,
            inodes_free: 400,
        });
        c.layer = Some((
            fs_usage::Usage {
                bytes: 8192,
                inodes: 3,
            },
            77,
        ));
        c.fds = Fds { fds: 7, sockets: 2 };
        c.max_open_files = Some(1024);
        let m = pod_metrics(&pod(
            Some(vec![Iface {
                name: "eth0".into(),
                rx_bytes: 9,
                ..Default::default()
            }]),
            vec![c],
        ));
        assert_complete(&m);
        let cm = &m.container_metrics[0].metrics;
        let find = |name: &str, extra: &[&str]| -> u64 {
            cm.iter()
                .find(|x| x.name == name && x.label_values[3..] == *extra)
                .unwrap_or_else(|| panic!("{name} {extra:?}"))
                .value
                .unwrap()
                .value
        };
        assert_eq!(find("container_memory_kernel_usage", &[]), 4096);
        assert_eq!(find("container_memory_swap", &[]), 10);
        assert_eq!(find("container_start_time_seconds", &[]), 1_700_000_000);
        assert_eq!(find("container_fs_reads_bytes_total", &["/dev/sda"]), 100);
        assert_eq!(find("container_fs_writes_total", &["/dev/sda"]), 2);
        assert_eq!(find("container_fs_reads_total", &["/dev/dm-1"]), 0);
        let blk = "container_blkio_device_usage_total";
        assert_eq!(find(blk, &["/dev/sda", "8", "0", "Write"]), 200);
        assert_eq!(find(blk, &["/dev/dm-1", "253", "1", "Read"]), 0);
        assert_eq!(find("container_hugetlb_usage_bytes", &["2MB"]), 2097152);
        let dev = ["/dev/nvme0n1p3"];
        assert_eq!(find("container_fs_limit_bytes", &dev), 1 << 30);
        assert_eq!(find("container_fs_inodes_free", &dev), 400);
        assert_eq!(find("container_fs_inodes_total", &dev), 1000);
        assert_eq!(find("container_fs_usage_bytes", &dev), 8192);
        assert_eq!(find("container_file_descriptors", &[]), 7);
        assert_eq!(find("container_sockets", &[]), 2);
        assert_eq!(find("container_ulimits_soft", &["max_open_files"]), 1024);
        let usage = cm
            .iter()
            .find(|x| x.name == "container_fs_usage_bytes")
            .unwrap();
        assert_eq!(usage.timestamp, 77, "measured earlier");
        // One interface: no placeholder.
        let rx: Vec<_> = m
            .metrics
            .iter()
            .filter(|x| x.name == "container_network_receive_bytes_total")
            .collect();
        assert_eq!(rx.len(), 1);
        assert_eq!(rx[0].label_values[3], "eth0");
    }
}
