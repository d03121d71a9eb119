//! Reading a cgroup's counters from cgroupfs, v1 (one directory per controller, plus the hybrid
//! layout's v2 directory for PSI) and v2 (one directory). Plain functions over directory paths,
//! so the parsers run against fake trees in unit tests.
//!
//! Values follow what cadvisor and containerd report: the v1 memory counters are the
//! hierarchical `total_*` ones; the working set is usage minus inactive file pages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::StatsError;
use super::blkio::{self, IoDevice};
use super::hugetlb::{self, Hugetlb};
use super::psi::{self, Psi};

/// Where a cgroup's files are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirs {
    /// v2: the single directory (everything is read from it).
    pub v2: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
    pub hugetlb: Option<PathBuf>,
    /// The hybrid layout's v2 directory: PSI files and a complete process list.
    pub unified: Option<PathBuf>,
}

impl Dirs {
    /// Sorts the directories of one cgroup (one per hierarchy) by the controller files each
    /// holds. `v2` says the host's only hierarchy is cgroup v2; `unified_mount` is the hybrid
    /// layout's v2 mount.
    pub fn classify(dirs: &[PathBuf], v2: bool, unified_mount: Option<&Path>) -> Dirs {
        if v2 {
            return Dirs {
                v2: dirs.first().cloned(),
                ..Default::default()
            };
        }
        let with = |file: &str| dirs.iter().find(|d| d.join(file).exists()).cloned();
        // Its files are named by page size, which varies by architecture.
        let hugetlb = dirs
            .iter()
            .find(|d| {
                std::fs::read_dir(d).is_ok_and(|mut es| {
                    es.any(|e| {
                        e.is_ok_and(|e| e.file_name().as_encoded_bytes().starts_with(b"hugetlb."))
                    })
                })
            })
            .cloned();
        Dirs {
            v2: None,
            cpuacct: with("cpuacct.usage"),
            cpu: with("cpu.shares"),
            memory: with("memory.usage_in_bytes"),
            pids: with("pids.current"),
            blkio: with("blkio.throttle.io_service_bytes"),
            hugetlb,
            unified: unified_mount.and_then(|m| dirs.iter().find(|d| d.starts_with(m)).cloned()),
        }
    }

    /// A directory whose `cgroup.procs` (and children's) list every process of the cgroup.
    pub fn procs_dir(&self) -> Option<&Path> {
        self.v2
            .as_deref()
            .or(self.unified.as_deref())
            .or(self.pids.as_deref())
            .or(self.memory.as_deref())
            .or(self.cpuacct.as_deref())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuStats {
    /// Cumulative CPU time, ns.
    pub usage_ns: u64,
    pub user_ns: Option<u64>,
    pub system_ns: Option<u64>,
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_ns: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStats {
    pub usage: u64,
    /// None: unlimited.
    pub limit: Option<u64>,
    pub working_set: u64,
    pub rss: u64,
    pub cache: u64,
    pub mapped_file: u64,
    /// Hierarchical (the cgroup and its descendants).
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Of the cgroup's own tasks only (v1); v2 only has the hierarchical counters.
    pub local_page_faults: Option<u64>,
    pub local_major_page_faults: Option<u64>,
    pub max_usage: Option<u64>,
    pub failcnt: Option<u64>,
    /// v1 soft limit / v2 `memory.low`; None when unset.
    pub reservation: Option<u64>,
    pub oom_kills: u64,
    /// Kernel memory charged to the cgroup (slab, stacks, socket buffers...); v1 only has it
    /// with kmem accounting (`memory.kmem.usage_in_bytes`), else 0.
    pub kernel: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwapStats {
    pub usage: u64,
    /// None: unlimited.
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSpec {
    pub shares: Option<u64>,
    /// None: no quota.
    pub quota_us: Option<u64>,
    pub period_us: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub swap: Option<SwapStats>,
    /// Tasks (threads) counted by the pids controller.
    pub tasks: Option<u64>,
    pub tasks_limit: Option<u64>,
    /// Processes in the cgroup and its descendants.
    pub processes: Option<u64>,
    pub cpu_psi: Option<Psi>,
    pub memory_psi: Option<Psi>,
    pub io_psi: Option<Psi>,
    pub spec: CpuSpec,
    /// Block I/O per device (unnamed: [`blkio::name_devices`] names them).
    pub io: Vec<IoDevice>,
    pub hugetlb: Vec<Hugetlb>,
    /// The processes (pids in our pid namespace) of the cgroup and its descendants.
    pub pids: Vec<u32>,
}

/// v1 writes "unlimited" as a huge page-aligned number (`PAGE_COUNTER_MAX` pages).
const V1_UNLIMITED: u64 = 1 << 62;

/// Reads every counter the directories have. A missing file (or a cgroup removed meanwhile)
/// leaves the value out; other read errors fail.
pub fn read(dirs: &Dirs) -> Result<CgroupStats, StatsError> {
    let mut s = match &dirs.v2 {
        Some(dir) => read_v2(dir)?,
        None => read_v1(dirs)?,
    };
    let psi_dir = dirs.v2.as_ref().or(dirs.unified.as_ref());
    if let Some(dir) = psi_dir {
        s.cpu_psi = read_opt(&dir.join("cpu.pressure"))?.and_then(|t| psi::parse(&t));
        s.memory_psi = read_opt(&dir.join("memory.pressure"))?.and_then(|t| psi::parse(&t));
        s.io_psi = read_opt(&dir.join("io.pressure"))?.and_then(|t| psi::parse(&t));
    }
    if let Some(dir) = dirs.procs_dir()
        && let Some(pids) = list_procs(dir)?
    {
        s.processes = Some(pids.len() as u64);
        s.pids = pids;
    }
    Ok(s)
}

fn read_v1(dirs: &Dirs) -> Result<CgroupStats, StatsError> {
    let mut s = CgroupStats::default();
    if let Some(dir) = &dirs.cpuacct
        && let Some(usage_ns) = read_u64(&dir.join("cpuacct.usage"))?
    {
        let mut cpu = CpuStats {
            usage_ns,
            ..Default::default()
        };
        if let Some(text) = read_opt(&dir.join("cpuacct.stat"))? {
            let kv = key_values(&text);
            let tick_ns = 1_000_000_000 / clock_ticks();
            cpu.user_ns = kv.get("user").map(|t| t * tick_ns);
            cpu.system_ns = kv.get("system").map(|t| t * tick_ns);
        }
        s.cpu = Some(cpu);
    }
    if let Some(dir) = &dirs.cpu {
        if let (Some(cpu), Some(text)) = (s.cpu.as_mut(), read_opt(&dir.join("cpu.stat"))?) {
            let kv = key_values(&text);
            cpu.periods = kv.get("nr_periods").copied();
            cpu.throttled_periods = kv.get("nr_throttled").copied();
            cpu.throttled_ns = kv.get("throttled_time").copied();
        }
        s.spec.shares = read_u64(&dir.join("cpu.shares"))?;
        s.spec.period_us = read_u64(&dir.join("cpu.cfs_period_us"))?;
        // -1: no quota.
        s.spec.quota_us = read_opt(&dir.join("cpu.cfs_quota_us"))?
            .and_then(|t| t.trim().parse::<i64>().ok())
            .and_then(|q| u64::try_from(q).ok());
    }
    if let Some(dir) = &dirs.memory {
        s.memory = read_v1_memory(dir)?;
        if let Some(mem) = &s.memory
            && let Some(memsw_usage) = read_u64(&dir.join("memory.memsw.usage_in_bytes"))?
        {
            let memsw_limit =
                read_u64(&dir.join("memory.memsw.limit_in_bytes"))?.filter(|l| *l < V1_UNLIMITED);
            s.swap = Some(SwapStats {
                usage: memsw_usage.saturating_sub(mem.usage),
                limit: match (memsw_limit, mem.limit) {
                    (Some(sw), Some(m)) => Some(sw.saturating_sub(m)),
                    _ => None,
                },
            });
        }
    }
    if let Some(dir) = &dirs.pids {
        s.tasks = read_u64(&dir.join("pids.current"))?;
        s.tasks_limit = read_u64(&dir.join("pids.max"))?;
    }
    if let Some(dir) = &dirs.blkio {
        s.io = blkio::read_v1(dir)?;
    }
    if let Some(dir) = &dirs.hugetlb {
        s.hugetlb = hugetlb::read_v1(dir)?;
    }
    Ok(s)
}

fn read_v1_memory(dir: &Path) -> Result<Option<MemoryStats>, StatsError> {
    let Some(usage) = read_u64(&dir.join("memory.usage_in_bytes"))? else {
        return Ok(None);
    };
    let stat = read_opt(&dir.join("memory.stat"))?.unwrap_or_default();
    let kv = key_values(&stat);
    let get = |k: &str| kv.get(k).copied().unwrap_or(0);
    let oom = read_opt(&dir.join("memory.oom_control"))?.unwrap_or_default();
    Ok(Some(MemoryStats {
        usage,
        limit: read_u64(&dir.join("memory.limit_in_bytes"))?.filter(|l| *l < V1_UNLIMITED),
        working_set: usage.saturating_sub(get("total_inactive_file")),
        rss: get("total_rss"),
        cache: get("total_cache"),
        mapped_file: get("total_mapped_file"),
        page_faults: get("total_pgfault"),
        major_page_faults: get("total_pgmajfault"),
        local_page_faults: kv.get("pgfault").copied(),
        local_major_page_faults: kv.get("pgmajfault").copied(),
        max_usage: read_u64(&dir.join("memory.max_usage_in_bytes"))?,
        failcnt: read_u64(&dir.join("memory.failcnt"))?,
        reservation: read_u64(&dir.join("memory.soft_limit_in_bytes"))?
            .filter(|l| *l < V1_UNLIMITED),
        oom_kills: key_values(&oom).get("oom_kill").copied().unwrap_or(0),
        kernel: read_u64(&dir.join("memory.kmem.usage_in_bytes"))?.unwrap_or(0),
    }))
}

fn read_v2(dir: &Path) -> Result<CgroupStats, StatsError> {
    let mut s = CgroupStats::default();
    if let Some(text) = read_opt(&dir.join("cpu.stat"))? {
        let kv = key_values(&text);
        if let Some(usage) = kv.get("usage_usec") {
            let ns = |k: &str| kv.get(k).map(|v| v * 1000);
            s.cpu = Some(CpuStats {
                usage_ns: usage * 1000,
                user_ns: ns("user_usec"),
                system_ns: ns("system_usec"),
                periods: kv.get("nr_periods").copied(),
                throttled_periods: kv.get("nr_throttled").copied(),
                throttled_ns: ns("throttled_usec"),
            });
        }
    }
    if let Some(weight) = read_u64(&dir.join("cpu.weight"))? {
        s.spec.shares = Some(weight_to_shares(weight));
    }
    if let Some(text) = read_opt(&dir.join("cpu.max"))? {
        let mut parts = text.split_whitespace();
        s.spec.quota_us = parts.next().and_then(|q| q.parse().ok());
        s.spec.period_us = parts.next().and_then(|p| p.parse().ok());
    }
    if let Some(usage) = read_u64(&dir.join("memory.current"))? {
        let stat = read_opt(&dir.join("memory.stat"))?.unwrap_or_default();
        let kv = key_values(&stat);
        let get = |k: &str| kv.get(k).copied().unwrap_or(0);
        let events = read_opt(&dir.join("memory.events"))?.unwrap_or_default();
        let events = key_values(&events);
        s.memory = Some(MemoryStats {
            usage,
            limit: read_u64(&dir.join("memory.max"))?,
            working_set: usage.saturating_sub(get("inactive_file")),
            rss: get("anon"),
            cache: get("file"),
            mapped_file: get("file_mapped"),
            page_faults: get("pgfault"),
            major_page_faults: get("pgmajfault"),
            local_page_faults: None,
            local_major_page_faults: None,
            max_usage: read_u64(&dir.join("memory.peak"))?,
            failcnt: events.get("max").copied(),
            reservation: read_u64(&dir.join("memory.low"))?.filter(|l| *l > 0),
            oom_kills: events.get("oom_kill").copied().unwrap_or(0),
            kernel: v2_kernel(&kv),
        });
    }
    if let Some(usage) = read_u64(&dir.join("memory.swap.current"))? {
        s.swap = Some(SwapStats {
            usage,
            limit: read_u64(&dir.join("memory.swap.max"))?,
        });
    }
    s.tasks = read_u64(&dir.join("pids.current"))?;
    s.tasks_limit = read_u64(&dir.join("pids.max"))?;
    s.io = blkio::read_v2(dir)?;
    s.hugetlb = hugetlb::read_v2(dir)?;
    Ok(s)
}

/// v2 kernel memory: `kernel` of memory.stat (kernel 5.18+), else the sum of the kernel parts
/// older kernels list separately.
fn v2_kernel(stat: &HashMap<&str, u64>) -> u64 {
    stat.get("kernel").copied().unwrap_or_else(|| {
        ["kernel_stack", "slab", "sock"]
            .iter()
            .filter_map(|k| stat.get(k))
            .sum()
    })
}

/// cgroup v2 `cpu.weight` (1..10000) back to v1 shares (2..262144), as cadvisor and runc map
/// them.
fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    2 + ((weight - 1) * 262_142) / 9_999
}

/// Processes in `dir`'s `cgroup.procs` and in those of its descendants. None when the cgroup
/// does not exist.
pub fn list_procs(dir: &Path) -> Result<Option<Vec<u32>>, StatsError> {
    let Some(text) = read_opt(&dir.join("cgroup.procs"))? else {
        return Ok(None);
    };
    let mut pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if gone(&e) => return Ok(Some(pids)),
        Err(e) => return Err(StatsError::io("listing", dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(list_procs(&entry.path())?.unwrap_or_default());
        }
    }
    Ok(Some(pids))
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events...).
pub fn key_values(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k, v))
        })
        .collect()
}

/// A file's contents; None when it (or its cgroup) does not exist.
pub fn read_opt(path: &Path) -> Result<Option<String>, StatsError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(StatsError::io("reading", path, e)),
    }
}

/// A single-number file; None when missing or "max" (v2 for unlimited).
fn read_u64(path: &Path) -> Result<Option<u64>, StatsError> {
    Ok(read_opt(path)?.and_then(|t| t.trim().parse().ok()))
}

/// Errors that mean "the cgroup (or this controller's file) is not there": the container
/// ended and its cgroup was removed while we read, or the kernel lacks the file.
pub(super) fn gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::EOPNOTSUPP)
    )
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    const V1_MEMORY_STAT: &str = "cache 100\nrss 50\npgfault 7\npgmajfault 1\n\
        total_cache 4096000\ntotal_rss 2048000\ntotal_mapped_file 1000\n\
        total_inactive_file 1096000\ntotal_pgfault 700\ntotal_pgmajfault 3\n";

    #[test]
    fn v1_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            &r.join("cpuacct/pod/c"),
            &[
                ("cpuacct.usage", "123456789\n"),
                ("cpuacct.stat", "user 10\nsystem 5\n"),
            ],
        );
        write(
            &r.join("cpu/pod/c"),
            &[
                ("cpu.shares", "512\n"),
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.cfs_period_us", "100000\n"),
                (
                    "cpu.stat",
                    "nr_periods 9\nnr_throttled 2\nthrottled_time 3000\n",
                ),
            ],
        );
        write(
            &r.join("memory/pod/c"),
            &[
                ("memory.usage_in_bytes", "6144000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.max_usage_in_bytes", "7000000\n"),
                ("memory.failcnt", "0\n"),
                ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
                ("memory.stat", V1_MEMORY_STAT),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
                ("memory.memsw.usage_in_bytes", "6150000\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.kmem.usage_in_bytes", "327680\n"),
                ("cgroup.procs", "10\n11\n"),
            ],
        );
        write(
            &r.join("blkio/pod/c"),
            &[
                (
                    "blkio.throttle.io_service_bytes",
                    "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n",
                ),
                (
                    "blkio.throttle.io_serviced",
                    "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
                ),
            ],
        );
        write(
            &r.join("hugetlb/pod/c"),
            &[
                ("hugetlb.2MB.usage_in_bytes", "2097152\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "4194304\n"),
            ],
        );
        write(&r.join("memory/pod/c/sub"), &[("cgroup.procs", "12\n")]);
        write(
            &r.join("pids/pod/c"),
            &[("pids.current", "4\n"), ("pids.max", "max\n")],
        );
        let dirs: Vec<PathBuf> = ["cpuacct", "cpu", "memory", "pids", "blkio", "hugetlb"]
            .iter()
            .map(|c| r.join(c).join("pod/c"))
            .collect();
        let d = Dirs::classify(&dirs, false, None);
        assert_eq!(d.memory, Some(r.join("memory/pod/c")));
        assert_eq!(d.cpu, Some(r.join("cpu/pod/c")));
        assert_eq!(d.blkio, Some(r.join("blkio/pod/c")));
        assert_eq!(d.hugetlb, Some(r.join("hugetlb/pod/c")));
        let s = read(&d).unwrap();
        let cpu = s.cpu.unwrap();
        assert_eq!(cpu.usage_ns, 123456789);
        assert_eq!(cpu.user_ns, Some(10 * (1_000_000_000 / clock_ticks())));
        assert_eq!(cpu.throttled_periods, Some(2));
        assert_eq!(cpu.throttled_ns, Some(3000));
        assert_eq!(s.spec.shares, Some(512));
        assert_eq!(s.spec.quota_us, None);
        assert_eq!(s.spec.period_us, Some(100000));
        let mem = s.memory.unwrap();
        assert_eq!(mem.usage, 6144000);
        assert_eq!(mem.limit, None);
        assert_eq!(mem.working_set, 6144000 - 1096000);
        assert_eq!(mem.rss, 2048000);
        assert_eq!(mem.page_faults, 700);
        assert_eq!(mem.major_page_faults, 3);
        assert_eq!(mem.local_page_faults, Some(7));
        assert_eq!(mem.oom_kills, 2);
        assert_eq!(mem.reservation, None);
        assert_eq!(mem.kernel, 327680);
        let swap = s.swap.unwrap();
        assert_eq!(swap.usage, 6000);
        assert_eq!(swap.limit, None);
        assert_eq!(s.tasks, Some(4));
        assert_eq!(s.tasks_limit, None);
        assert_eq!(s.io.len(), 1);
        assert_eq!((s.io[0].major, s.io[0].minor), (8, 0));
        assert_eq!((s.io[0].read_bytes, s.io[0].write_bytes), (4096, 8192));
        assert_eq!((s.io[0].reads, s.io[0].writes), (1, 2));
        assert_eq!(s.hugetlb.len(), 1);
        assert_eq!(s.hugetlb[0].pagesize, "2MB");
        assert_eq!(
            (s.hugetlb[0].usage, s.hugetlb[0].max_usage),
            (2097152, 4194304)
        );
        // pids has no cgroup.procs in this fake tree; memory's (and its child's) count.
        assert_eq!(s.processes, None);
        assert!(s.pids.is_empty());
        assert_eq!(
            list_procs(&r.join("memory/pod/c")).unwrap(),
            Some(vec![10, 11, 12])
        );
        assert!(s.cpu_psi.is_none());
    }

    #[test]
    fn v1_limits_and_working_set_floor() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("memory/c");
        write(
            &dir,
            &[
                ("memory.usage_in_bytes", "1000\n"),
                ("memory.limit_in_bytes", "67108864\n"),
                ("memory.stat", "total_inactive_file 5000\n"),
                ("memory.memsw.usage_in_bytes", "1000\n"),
                ("memory.memsw.limit_in_bytes", "134217728\n"),
            ],
        );
        let s = read(&Dirs {
            memory: Some(dir),
            ..Default::default()
        })
        .unwrap();
        let mem = s.memory.unwrap();
        assert_eq!(mem.limit, Some(67108864));
        // More inactive file pages than usage (they are counted at different times): 0.
        assert_eq!(mem.working_set, 0);
        assert_eq!(s.swap.unwrap().limit, Some(67108864));
    }

    #[test]
    fn v2_tree() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pod/c");
        write(
            &dir,
            &[
                (
                    "cpu.stat",
                    "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\n\
                     nr_throttled 1\nthrottled_usec 20\n",
                ),
                ("cpu.weight", "100\n"),
                ("cpu.max", "50000 100000\n"),
                ("memory.current", "8192000\n"),
                ("memory.max", "max\n"),
                ("memory.low", "0\n"),
                ("memory.peak", "9000000\n"),
                (
                    "memory.stat",
                    "anon 4096000\nfile 3000000\nkernel 81920\nkernel_stack 16384\n\
                     file_mapped 12\ninactive_file 2000000\npgfault 42\npgmajfault 2\n",
                ),
                ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
                ("memory.swap.current", "4096\n"),
                ("memory.swap.max", "1048576\n"),
                ("pids.current", "3\n"),
                ("pids.max", "100\n"),
                ("cgroup.procs", "1\n2\n"),
                (
                    "io.stat",
                    "8:16 rbytes=1024 wbytes=2048 rios=3 wios=4 dbytes=0 dios=0\n",
                ),
                ("hugetlb.2MB.current", "0\n"),
                (
                    "cpu.pressure",
                    "some avg10=1.50 avg60=0.25 avg300=0.00 total=1234\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=10\n",
                ),
                (
                    "memory.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
            ],
        );
        let d = Dirs::classify(std::slice::from_ref(&dir), true, None);
        let s = read(&d).unwrap();
        let cpu = s.cpu.unwrap();
        assert_eq!(cpu.usage_ns, 2_000_000);
        assert_eq!(cpu.user_ns, Some(1_500_000));
        assert_eq!(cpu.throttled_ns, Some(20_000));
        assert_eq!(s.spec.shares, Some(weight_to_shares(100)));
        assert_eq!(weight_to_shares(100), 2597);
        assert_eq!(s.spec.quota_us, Some(50000));
        assert_eq!(s.spec.period_us, Some(100000));
        let mem = s.memory.unwrap();
        assert_eq!(mem.usage, 8192000);
        assert_eq!(mem.limit, None);
        assert_eq!(mem.working_set, 6192000);
        assert_eq!(mem.rss, 4096000);
        assert_eq!(mem.page_faults, 42);
        assert_eq!(mem.major_page_faults, 2);
        assert_eq!(mem.max_usage, Some(9000000));
        assert_eq!(mem.failcnt, Some(3));
        assert_eq!(mem.oom_kills, 1);
        assert_eq!(mem.reservation, None);
        assert_eq!(mem.kernel, 81920);
        assert_eq!(
            s.swap,
            Some(SwapStats {
                usage: 4096,
                limit: Some(1048576)
            })
        );
        assert_eq!(s.tasks, Some(3));
        assert_eq!(s.tasks_limit, Some(100));
        assert_eq!(s.processes, Some(2));
        assert_eq!(s.pids, [1, 2]);
        assert_eq!(s.io.len(), 1);
        assert_eq!(
            (s.io[0].read_bytes, s.io[0].write_bytes, s.io[0].writes),
            (1024, 2048, 4)
        );
        assert_eq!(s.hugetlb.len(), 1);
        let cpu_psi = s.cpu_psi.unwrap();
        assert_eq!(cpu_psi.some.total_us, 1234);
        assert_eq!(cpu_psi.some.avg10, 1.5);
        assert!(s.memory_psi.is_some());
        // No io.pressure in this tree.
        assert!(s.io_psi.is_none());
    }

    /// The hybrid layout: counters from the v1 controllers, PSI and the process list from the
    /// v2 directory.
    #[test]
    fn hybrid_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let mem = r.join("memory/p/c");
        let unified = r.join("unified/p/c");
        write(
            &mem,
            &[
                ("memory.usage_in_bytes", "4096\n"),
                ("memory.stat", "total_inactive_file 96\n"),
            ],
        );
        write(
            &unified,
            &[
                ("cgroup.procs", "5\n6\n7\n"),
                (
                    "io.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=3000000\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n",
                ),
            ],
        );
        let d = Dirs::classify(
            &[mem.clone(), unified.clone()],
            false,
            Some(&r.join("unified")),
        );
        assert_eq!(d.unified.as_deref(), Some(unified.as_path()));
        assert_eq!(d.procs_dir(), Some(unified.as_path()));
        let s = read(&d).unwrap();
        assert_eq!(s.memory.unwrap().working_set, 4000);
        assert_eq!(s.processes, Some(3));
        assert_eq!(s.io_psi.unwrap().full.total_us, 1_000_000);
        assert!(s.cpu.is_none() && s.cpu_psi.is_none());
    }

    /// Kernels before 5.18 have no `kernel` line: its parts are summed.
    #[test]
    fn v2_kernel_memory_from_parts() {
        let stat = "anon 1\nkernel_stack 16384\nslab 40960\nsock 4096\npercpu 8\n";
        assert_eq!(v2_kernel(&key_values(stat)), 16384 + 40960 + 4096);
        assert_eq!(v2_kernel(&key_values("kernel 7\nslab 40960\n")), 7);
        assert_eq!(v2_kernel(&key_values("")), 0);
    }

    #[test]
    fn removed_cgroup_reads_as_empty() {
        let root = tempfile::tempdir().unwrap();
        let gone_dir = root.path().join("gone");
        let s = read(&Dirs {
            v2: Some(gone_dir),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s, CgroupStats::default());
    }
}
