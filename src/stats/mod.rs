//! Resource usage of containers and pods for the CRI stats and metrics calls: cgroup counters
//! (v1, hybrid, v2, including block I/O and huge pages), the writable layer's disk usage and its
//! filesystem, the descriptors the container's processes hold, the pod network's interface
//! counters, and the CPU rate between two samples.
//!
//! [`Collector`] samples; [`to_cri`] turns samples into CRI stats and [`metrics`] into the
//! cadvisor-style metrics of `ListPodSandboxMetrics`. The collector keeps, per container and
//! pod, the previous CPU sample (for `usage_nano_cores`, as containerd does) and recent
//! writable-layer walks.

pub mod blkio;
pub mod cgroup;
pub mod fs_info;
pub mod fs_usage;
pub mod hugetlb;
pub mod metrics;
pub mod netdev;
pub mod procs;
pub mod psi;
pub mod to_cri;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cgroups::{Cgroup, CgroupLayout};
use crate::cri::v1 as cri;
use crate::error::{Classify, ErrorKind};
use crate::runtime::{Runtime, now_nanos};
use crate::store::{ContainerRecord, ContainerState, PodRecord, PodState};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
}

impl StatsError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> StatsError {
        StatsError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

impl Classify for StatsError {
    fn kind(&self) -> ErrorKind {
        match self {
            StatsError::Cgroup(e) => e.kind(),
            StatsError::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// A CPU rate needs two samples at least this far apart; closer calls (two clients polling)
/// get the rate of the last full window instead of a noisy one.
const MIN_RATE_WINDOW_NS: i64 = 1_000_000_000;

/// One container measured at one time.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    pub record: ContainerRecord,
    /// When the cgroup was read, ns since the epoch.
    pub at: i64,
    pub cgroup: cgroup::CgroupStats,
    pub nano_cores: Option<u64>,
    /// Writable layer usage and when it was measured (it may come from the cache).
    pub layer: Option<(fs_usage::Usage, i64)>,
    /// The filesystem identifier of writable layers (the same `ImageFsInfo` reports for
    /// container filesystems).
    pub layer_mountpoint: PathBuf,
    /// The filesystem holding the writable layer; None when neither the layer nor the
    /// containers' directory exists.
    pub layer_fs: Option<fs_info::FsInfo>,
    /// Descriptors open in the container's processes.
    pub fds: procs::Fds,
    /// The soft open-files limit of the container's init process; None when that process is
    /// not (or no longer) in the container's cgroup.
    pub max_open_files: Option<u64>,
}

/// One pod measured at one time.
#[derive(Debug, Clone)]
pub struct PodSample {
    pub record: PodRecord,
    pub at: i64,
    /// The pod cgroup (all of its containers); empty while no container was created.
    pub cgroup: cgroup::CgroupStats,
    pub nano_cores: Option<u64>,
    /// Interfaces of the pod's network namespace (not loopback); None for hostNetwork pods.
    pub network: Option<Vec<netdev::Iface>>,
    pub containers: Vec<ContainerSample>,
}

#[derive(Debug, Clone, Copy)]
struct CpuMark {
    usage_ns: u64,
    at: i64,
    /// The rate over the window that ended at this mark.
    rate: Option<u64>,
}

pub struct Collector {
    cpu: Mutex<HashMap<String, CpuMark>>,
    layers: fs_usage::Cache,
    /// Where each cgroup's controller files are, by cgroup path: finding them (mount table,
    /// probing files) costs as much as reading the counters.
    dirs: Mutex<HashMap<String, cgroup::Dirs>>,
    /// Mount sources of the writable layers' filesystems.
    devices: fs_info::Devices,
    proc_root: PathBuf,
    sys_root: PathBuf,
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            cpu: Mutex::new(HashMap::new()),
            layers: fs_usage::Cache::default(),
            dirs: Mutex::new(HashMap::new()),
            devices: fs_info::Devices::default(),
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }
    }
}

/// Finds a cgroup's directories (relative path) in every hierarchy of this host.
pub fn find_cgroup(path: &str) -> Result<cgroup::Dirs, StatsError> {
    let cg = Cgroup::open(path)?;
    let layout = cg.layout();
    let unified = match layout {
        CgroupLayout::Hybrid => layout.unified_mount(),
        _ => None,
    };
    Ok(cgroup::Dirs::classify(
        cg.dirs(),
        layout == CgroupLayout::V2,
        unified,
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Collector {
    /// Reads a cgroup (relative path), finding its directories once, and names its block
    /// devices.
    fn read_cgroup(&self, path: &str) -> Result<cgroup::CgroupStats, StatsError> {
        let mut s = self.read_cgroup_files(path)?;
        blkio::name_devices(&self.sys_root, &mut s.io)?;
        Ok(s)
    }

    fn read_cgroup_files(&self, path: &str) -> Result<cgroup::CgroupStats, StatsError> {
        let known = lock(&self.dirs).get(path).cloned();
        let dirs = match known {
            Some(d) => d,
            None => {
                let d = find_cgroup(path)?;
                // Only once the cgroup exists (a pod's is made with its first container).
                if d.v2.as_ref().is_some_and(|v| v.exists()) || d.memory.is_some() {
                    lock(&self.dirs).insert(path.to_owned(), d.clone());
                }
                d
            }
        };
        cgroup::read(&dirs)
    }

    /// Samples one container. Only a created or running container has a cgroup to read; the
    /// others get attributes and their writable layer.
    pub fn container(
        &self,
        runtime: &Runtime,
        record: ContainerRecord,
    ) -> Result<ContainerSample, StatsError> {
        let live = matches!(
            record.state,
            ContainerState::Running | ContainerState::Created
        );
        let at = now_nanos();
        let cgroup = if live {
            self.read_cgroup(&record.cgroup_path)?
        } else {
            Default::default()
        };
        let nano_cores = cgroup
            .cpu
            .as_ref()
            .and_then(|c| self.nano_cores(&format!("c/{}", record.id), c.usage_ns, at));
        let upper = runtime.container_upper_dir(&record.id);
        let layer = Some(self.layers.usage(&upper)?);
        let layer_mountpoint = runtime.containers_dir();
        // Before the rootfs is prepared (or after it is gone) the layer's filesystem is still
        // the containers' directory's.
        let layer_fs = match self.devices.info(&upper)? {
            Some(i) => Some(i),
            None => self.devices.info(&layer_mountpoint)?,
        };
        let fds = procs::count_fds(&self.proc_root, &cgroup.pids)?;
        // Only while the recorded pid is still in the cgroup: a pid reused by another process
        // would be elsewhere.
        let max_open_files = match u32::try_from(record.pid) {
            Ok(pid) if pid > 0 && cgroup.pids.contains(&pid) => {
                procs::max_open_files(&self.proc_root, pid)?
            }
            _ => None,
        };
        Ok(ContainerSample {
            record,
            at,
            cgroup,
            nano_cores,
            layer,
            layer_mountpoint,
            layer_fs,
            fds,
            max_open_files,
        })
    }

    /// Samples a pod: its cgroup, its network namespace, and `containers` (its running ones).
    pub fn pod(
        &self,
        runtime: &Runtime,
        record: PodRecord,
        containers: Vec<ContainerRecord>,
    ) -> Result<PodSample, StatsError> {
        let at = now_nanos();
        let cgroup = self.read_cgroup(&runtime.pod_cgroup_parent(&record))?;
        let nano_cores = cgroup
            .cpu
            .as_ref()
            .and_then(|c| self.nano_cores(&format!("p/{}", record.id), c.usage_ns, at));
        let network = if host_network(&record) {
            None
        } else {
            Some(self.pod_network(&record)?)
        };
        let containers = containers
            .into_iter()
            .map(|c| self.container(runtime, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PodSample {
            record,
            at,
            cgroup,
            nano_cores,
            network,
            containers,
        })
    }

    /// The pod's interfaces, read through its pod-init (which lives in the pod's network
    /// namespace); none when the pod-init is gone (the pod is stopped).
    fn pod_network(&self, pod: &PodRecord) -> Result<Vec<netdev::Iface>, StatsError> {
        if pod.state != PodState::Ready
            || pod.init_pid <= 0
            || netdev::start_time(&self.proc_root, pod.init_pid) != Some(pod.init_start_time)
        {
            return Ok(Vec::new());
        }
        netdev::read_pid(&self.proc_root, pod.init_pid)
    }

    /// CPU cores used since the previous sample of `key`, in nano-cores; None for the first.
    fn nano_cores(&self, key: &str, usage_ns: u64, at: i64) -> Option<u64> {
        let mut marks = lock(&self.cpu);
        let Some(prev) = marks.get(key).copied() else {
            marks.insert(
                key.to_owned(),
                CpuMark {
                    usage_ns,
                    at,
                    rate: None,
                },
            );
            return None;
        };
        if usage_ns < prev.usage_ns {
            // A new cgroup under the same name (counter reset): start over.
            marks.remove(key);
            return None;
        }
        let window = at - prev.at;
        if window < MIN_RATE_WINDOW_NS {
            return prev.rate;
        }
        let rate = ((usage_ns - prev.usage_ns) as u128 * 1_000_000_000 / window as u128) as u64;
        marks.insert(
            key.to_owned(),
            CpuMark {
                usage_ns,
                at,
                rate: Some(rate),
            },
        );
        Some(rate)
    }

    /// Drops what is kept for containers and pods that no longer exist.
    pub fn forget_others(
        &self,
        runtime: &Runtime,
        containers: &[ContainerRecord],
        pods: &[PodRecord],
    ) {
        let keys: HashSet<String> = containers
            .iter()
            .map(|c| format!("c/{}", c.id))
            .chain(pods.iter().map(|p| format!("p/{}", p.id)))
            .collect();
        lock(&self.cpu).retain(|k, _| keys.contains(k));
        let uppers: HashSet<PathBuf> = containers
            .iter()
            .map(|c| runtime.container_upper_dir(&c.id))
            .collect();
        self.layers.retain(&uppers);
        let paths: HashSet<String> = containers
            .iter()
            .map(|c| c.cgroup_path.clone())
            .chain(pods.iter().map(|p| runtime.pod_cgroup_parent(p)))
            .collect();
        lock(&self.dirs).retain(|k, _| paths.contains(k));
    }
}

fn host_network(pod: &PodRecord) -> bool {
    pod.sandbox_config()
        .linux
        .and_then(|l| l.security_context)
        .and_then(|s| s.namespace_options)
        .is_some_and(|o| o.network == cri::NamespaceMode::Node as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_from_previous_sample() {
        let c = Collector::default();
        let s = 1_000_000_000;
        let u = 1_000_000_000u64;
        assert_eq!(c.nano_cores("c/x", 0, 10 * s), None);
        // Half a core over 2 s.
        assert_eq!(c.nano_cores("c/x", u, 12 * s), Some(500_000_000));
        // Too close to the previous sample: the last full window's rate.
        assert_eq!(
            c.nano_cores("c/x", u + 10, 12 * s + 1000),
            Some(500_000_000)
        );
        // Two cores over 1 s.
        assert_eq!(c.nano_cores("c/x", 3 * u, 13 * s), Some(2_000_000_000));
        // Counter reset.
        assert_eq!(c.nano_cores("c/x", 5, 14 * s), None);
        assert_eq!(c.nano_cores("c/x", 5, 15 * s), None);
        assert_eq!(c.nano_cores("c/x", 5 + u / 4, 16 * s), Some(250_000_000));
        // Another key is independent.
        assert_eq!(c.nano_cores("p/x", 0, 16 * s), None);
    }
}
