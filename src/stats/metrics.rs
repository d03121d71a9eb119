//! The cadvisor-style metrics of `ListMetricDescriptors` / `ListPodSandboxMetrics` (what
//! kubelet's CRI metrics collector republishes on `/metrics/cadvisor`), with CRI-O's labels:
//! `id`, `name`, `image` (the pod level uses the pod id, `POD` and no image), plus
//! metric-specific ones. Values are integers (CRI carries `UInt64Value`), so seconds are whole
//! seconds. Live values have timestamp 0; cached ones (the writable layer) the time they were
//! measured, as the proto asks.

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
    d(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
    ),
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
                .any(|d| d.name == name && d.extra.len() == extra.len())
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

    fn opt(&mut self, name: &str, kind: cri::MetricType, value: Option<u64>) {
        if let Some(v) = value {
            self.push(name, kind, &[], v, 0);
        }
    }
}

const NS_PER_S: u64 = 1_000_000_000;

fn pressure(out: &mut Out, resource: &str, p: &Option<Psi>) {
    if let Some(p) = p {
        // µs -> s.
        let waiting = format!("container_pressure_{resource}_waiting_seconds_total");
        let stalled = format!("container_pressure_{resource}_stalled_seconds_total");
        out.push(&waiting, COUNTER, &[], p.some.total_us / 1_000_000, 0);
        out.push(&stalled, COUNTER, &[], p.full.total_us / 1_000_000, 0);
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
    if let Some(cpu) = &cg.cpu {
        out.push(
            "container_cpu_usage_seconds_total",
            COUNTER,
            &["total"],
            cpu.usage_ns / NS_PER_S,
            0,
        );
        let secs = |v: Option<u64>| v.map(|v| v / NS_PER_S);
        out.opt(
            "container_cpu_user_seconds_total",
            COUNTER,
            secs(cpu.user_ns),
        );
        out.opt(
            "container_cpu_system_seconds_total",
            COUNTER,
            secs(cpu.system_ns),
        );
        out.opt("container_cpu_cfs_periods_total", COUNTER, cpu.periods);
        out.opt(
            "container_cpu_cfs_throttled_periods_total",
            COUNTER,
            cpu.throttled_periods,
        );
        out.opt(
            "container_cpu_cfs_throttled_seconds_total",
            COUNTER,
            secs(cpu.throttled_ns),
        );
    }
    if let Some(m) = &cg.memory {
        out.opt("container_memory_usage_bytes", GAUGE, Some(m.usage));
        out.opt(
            "container_memory_working_set_bytes",
            GAUGE,
            Some(m.working_set),
        );
        out.opt("container_memory_rss", GAUGE, Some(m.rss));
        out.opt("container_memory_cache", GAUGE, Some(m.cache));
        out.opt("container_memory_mapped_file", GAUGE, Some(m.mapped_file));
        out.opt("container_memory_max_usage_bytes", GAUGE, m.max_usage);
        out.opt("container_memory_failcnt", COUNTER, m.failcnt);
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
        out.opt("container_oom_events_total", COUNTER, Some(m.oom_kills));
        // cadvisor reports "no limit" as 0.
        out.opt(
            "container_spec_memory_limit_bytes",
            GAUGE,
            Some(m.limit.unwrap_or(0)),
        );
        out.opt(
            "container_spec_memory_reservation_limit_bytes",
            GAUGE,
            Some(m.reservation.unwrap_or(0)),
        );
    }
    if let Some(sw) = &cg.swap {
        out.opt("container_memory_swap", GAUGE, Some(sw.usage));
        out.opt(
            "container_spec_memory_swap_limit_bytes",
            GAUGE,
            Some(sw.limit.unwrap_or(0)),
        );
    }
    out.opt("container_processes", GAUGE, cg.processes);
    out.opt("container_threads", GAUGE, cg.tasks);
    if cg.tasks.is_some() {
        out.opt(
            "container_threads_max",
            GAUGE,
            Some(cg.tasks_limit.unwrap_or(0)),
        );
    }
    out.opt("container_spec_cpu_shares", GAUGE, cg.spec.shares);
    if cg.spec.period_us.is_some() {
        out.opt(
            "container_spec_cpu_quota",
            GAUGE,
            Some(cg.spec.quota_us.unwrap_or(0)),
        );
    }
    out.opt("container_spec_cpu_period", GAUGE, cg.spec.period_us);
    if let Some((u, at)) = s.layer {
        out.push("container_fs_usage_bytes", GAUGE, &[], u.bytes, at);
    }
    pressure(&mut out, "cpu", &cg.cpu_psi);
    pressure(&mut out, "memory", &cg.memory_psi);
    pressure(&mut out, "io", &cg.io_psi);
    out.opt(
        "container_last_seen",
        GAUGE,
        Some((s.at.max(0) as u64) / NS_PER_S),
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
    for i in s.network.iter().flatten() {
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
    use super::*;

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
}
