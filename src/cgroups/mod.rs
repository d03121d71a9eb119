//! Container cgroups with the cgroupfs driver, on cgroup v1, v2 and the hybrid layout (v1
//! controllers plus a v2 mount at `/sys/fs/cgroup/unified`).
//!
//! A thin wrapper over `cgroups-rs`: it finds the v1 hierarchies (or the v2 mount), creates the
//! directories (filling a new v1 cpuset's `cpuset.cpus`/`cpuset.mems` from its parents, without
//! which no task can join) and writes `oci_spec::runtime::LinuxResources` (its `FsManager`:
//! cpu shares/quota/period, cpuset, memory and memsw in a valid order, pids, hugetlb, devices).
//! What it cannot express is done here with plain file operations, and why:
//! - the hybrid layout: `cgroups-rs` sees either the v1 hierarchies or a v2 mount at
//!   `/sys/fs/cgroup`, never a v2 mount at `/sys/fs/cgroup/unified`; on such hosts the container
//!   also gets a directory there (joined like the others: it gives `cgroup.kill` and a single
//!   process list), and hugepage limits go there when `hugetlb` is a v2-only controller
//!   (enabled in `cgroup.subtree_control` down the path on demand);
//! - `unified` keys (written as files on v2; refused on v1 and hybrid, like runc);
//! - wildcard device rules (`cgroups-rs` writes an absent major/minor as 0, not `*`); on v2 the
//!   device rules are not applied (that needs an eBPF program; the container only gets the
//!   device nodes it is given);
//! - swap (`memory.memsw.*`) only when the kernel accounts it;
//! - `kill_all` (`cgroup.kill` when there is one, else freeze / SIGKILL / thaw until empty),
//!   `delete` (children first, retried while dying tasks leave, idempotent) and
//!   `oom_kill_count`, which `cgroups-rs` does not offer in this form.
//!
//! Paths are relative to each hierarchy's root (`/kubepods/burstable/pod<uid>/<container id>`
//! -> `/sys/fs/cgroup/memory/kubepods/burstable/pod<uid>/<container id>`, ...).

mod v1;
mod v2;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::hierarchies::{V1, V2};
use cgroups_rs::fs::{Controllers, Hierarchy};
use oci_spec::runtime::LinuxResources;

use crate::error::{Classify, ErrorKind};

/// Where the hybrid layout mounts cgroup v2.
pub const HYBRID_UNIFIED_MOUNT: &str = "/sys/fs/cgroup/unified";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {path}: {message}")]
    Controller { path: String, message: String },
    /// The request asks for something this host's cgroups cannot do.
    #[error("cgroup {path}: {message}")]
    Unsupported { path: String, message: String },
    #[error("invalid cgroup path {0:?}")]
    InvalidPath(String),
    #[error("cgroup {path}: processes still alive after SIGKILL: {pids:?}")]
    StillAlive { path: String, pids: Vec<i32> },
}

impl Classify for CgroupError {
    fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::Unsupported { .. } | CgroupError::InvalidPath(_) => {
                ErrorKind::InvalidArgument
            }
            _ => ErrorKind::Internal,
        }
    }
}

pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_owned();
    move |source| CgroupError::Io { op, path, source }
}

/// How this host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies plus a v2 mount at [`HYBRID_UNIFIED_MOUNT`].
    Hybrid,
    /// cgroup v2 at `/sys/fs/cgroup`.
    V2,
}

fn is_cgroup2(path: &str) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

impl CgroupLayout {
    pub fn detect() -> CgroupLayout {
        if is_cgroup2(CGROUP_ROOT) {
            CgroupLayout::V2
        } else if is_cgroup2(HYBRID_UNIFIED_MOUNT) {
            CgroupLayout::Hybrid
        } else {
            CgroupLayout::V1
        }
    }

    /// The v2 mount, if any.
    pub fn unified_mount(self) -> Option<&'static Path> {
        match self {
            CgroupLayout::V1 => None,
            CgroupLayout::Hybrid => Some(Path::new(HYBRID_UNIFIED_MOUNT)),
            CgroupLayout::V2 => Some(Path::new(CGROUP_ROOT)),
        }
    }

    /// Whether the memory controller accounts swap, so that a swap limit can be set (v1
    /// `memory.memsw.limit_in_bytes`; v2 `memory.swap.max`, which only non-root cgroups have).
    pub fn swap_available(self) -> bool {
        match self {
            CgroupLayout::V1 | CgroupLayout::Hybrid => V1::new()
                .get_mount_point(Controllers::Mem)
                .is_some_and(|(p, _)| p.join("memory.memsw.limit_in_bytes").exists()),
            CgroupLayout::V2 => std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
                })
                .is_some_and(|own| {
                    Path::new(CGROUP_ROOT)
                        .join(own.trim_start_matches('/'))
                        .join("memory.swap.max")
                        .exists()
                }),
        }
    }

    fn hierarchy(self) -> Box<dyn Hierarchy> {
        match self {
            CgroupLayout::V2 => Box::new(V2::new()),
            _ => Box::new(V1::new()),
        }
    }
}

/// One container's (or pod's) cgroup in every hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// Relative to the hierarchy roots, without leading or trailing `/`.
    path: String,
    layout: CgroupLayout,
    /// One directory per hierarchy (v1 ones, or the v2 one), plus the hybrid v2 one last.
    dirs: Vec<PathBuf>,
    /// The v2 directory (v2, or hybrid).
    unified: Option<PathBuf>,
    memory: Option<PathBuf>,
    freezer: Option<PathBuf>,
}

fn clean_path(path: &str) -> Result<String, CgroupError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(CgroupError::InvalidPath(path.to_owned()));
    }
    Ok(parts.join("/"))
}

impl Cgroup {
    /// Creates the cgroup (missing parents too) in every hierarchy and applies `resources`.
    /// On failure nothing created here is left behind.
    pub fn create(path_relative: &str, resources: &LinuxResources) -> Result<Cgroup, CgroupError> {
        let cg = Cgroup::open(path_relative)?;
        let made = cgroups_rs::fs::Cgroup::new(cg.layout.hierarchy(), &cg.path)
            .map_err(|e| cg.controller_err(e))
            .and_then(|_| match (&cg.unified, cg.layout) {
                (Some(u), CgroupLayout::Hybrid) => {
                    std::fs::create_dir_all(u).map_err(io("creating", u))
                }
                _ => Ok(()),
            });
        if let Err(e) = made.and_then(|()| cg.update(resources)) {
            let _ = cg.delete();
            return Err(e);
        }
        Ok(cg)
    }

    /// A handle on an existing (or already deleted) cgroup, e.g. after a daemon restart.
    pub fn open(path_relative: &str) -> Result<Cgroup, CgroupError> {
        Self::open_with(CgroupLayout::detect(), path_relative)
    }

    fn open_with(layout: CgroupLayout, path_relative: &str) -> Result<Cgroup, CgroupError> {
        let path = clean_path(path_relative)?;
        let handle = cgroups_rs::fs::Cgroup::load(layout.hierarchy(), &path);
        let mut dirs: Vec<PathBuf> = Vec::new();
        let (mut memory, mut freezer) = (None, None);
        for sub in handle.subsystems() {
            let c = sub.to_controller();
            let dir = c.path().to_owned();
            match sub.controller_name().as_str() {
                "memory" => memory = Some(dir.clone()),
                "freezer" => freezer = Some(dir.clone()),
                _ => {}
            }
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let unified = layout.unified_mount().map(|m| m.join(&path));
        if layout == CgroupLayout::V2 {
            dirs = unified.iter().cloned().collect();
        } else if let Some(u) = &unified {
            dirs.push(u.clone());
        }
        Ok(Cgroup {
            path,
            layout,
            dirs,
            unified,
            memory,
            freezer,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn layout(&self) -> CgroupLayout {
        self.layout
    }

    /// The directory of this cgroup in every hierarchy.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every `cgroup.procs` a process must be written to, one per hierarchy.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Moves `pid` (a whole process) into the cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for f in self.procs_files() {
            std::fs::write(&f, pid.to_string()).map_err(io("writing", &f))?;
        }
        Ok(())
    }

    /// Applies new limits (fields left `None` are not touched).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let mut rest = resources.clone();
        if let Some(unified) = rest.unified().clone().filter(|u| !u.is_empty()) {
            match (self.layout, &self.unified) {
                (CgroupLayout::V2, Some(dir)) => v2::write_unified(dir, &unified)?,
                _ => {
                    return Err(self.unsupported(
                        "unified (cgroup v2) resources cannot be set on cgroup v1".into(),
                    ));
                }
            }
        }
        rest.set_unified(None);
        if self.layout == CgroupLayout::V2 {
            rest.set_devices(None);
        } else if let Some(devices) = rest.devices_mut() {
            v1::wildcard_devices(devices);
        }
        if self.layout != CgroupLayout::V2
            && let Some(mem) = rest.memory_mut()
            && mem.swap().is_some()
            && !self
                .memory
                .as_ref()
                .is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists())
        {
            mem.set_swap(None);
        }
        if self.layout == CgroupLayout::Hybrid
            && V1::new().get_mount_point(Controllers::HugeTlb).is_none()
            && let Some(limits) = rest.hugepage_limits_mut().take()
            && let Some(dir) = &self.unified
        {
            v2::hybrid_hugetlb(Path::new(HYBRID_UNIFIED_MOUNT), &self.path, dir, &limits)?;
        }
        let mut manager =
            cgroups_rs::FsManager::new(&self.path).map_err(|e| self.controller_err(e))?;
        cgroups_rs::Manager::set(&mut manager, &rest).map_err(|e| self.controller_err(e))
    }

    /// The processes in the cgroup (in any hierarchy), sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for f in self.procs_files() {
            match std::fs::read_to_string(&f) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("reading", &f)(e)),
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Kills every process in the cgroup and returns once it is empty: `cgroup.kill` when the
    /// kernel has it, else freeze (when a freezer is there), SIGKILL each process, thaw, until
    /// no process is left. Gives up after 10 s.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let kill_file = self
            .unified
            .as_ref()
            .map(|u| u.join("cgroup.kill"))
            .filter(|f| f.exists());
        self.kill_loop(kill_file.as_deref())
    }

    fn kill_loop(&self, kill_file: Option<&Path>) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        // SIGKILLed processes are usually gone within a fraction of a millisecond: poll fast
        // first, then back off.
        let mut pause = Duration::from_micros(200);
        loop {
            // A killed process stays listed until its parent reaps it: it counts as gone.
            let pids: Vec<i32> = self
                .pids()?
                .into_iter()
                .filter(|p| !is_zombie(*p))
                .collect();
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::StillAlive {
                    path: self.path.clone(),
                    pids,
                });
            }
            match kill_file {
                Some(f) => match std::fs::write(f, "1") {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(io("writing", f)(e)),
                },
                None => self.freeze_and_kill(&pids)?,
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    fn freeze_and_kill(&self, pids: &[i32]) -> Result<(), CgroupError> {
        let frozen = match (&self.freezer, &self.unified) {
            (Some(f), _) if self.layout != CgroupLayout::V2 => v1::freeze(f, true).is_ok(),
            (_, Some(u)) => v2::freeze(u, true).is_ok(),
            _ => false,
        };
        // Processes that forked while we listed are frozen now: list again.
        let pids = if frozen { self.pids()? } else { pids.to_vec() };
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if frozen {
            match (&self.freezer, &self.unified) {
                (Some(f), _) if self.layout != CgroupLayout::V2 => v1::freeze(f, false)?,
                (_, Some(u)) => v2::freeze(u, false)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes the cgroup (and any child cgroups, deepest first) from every hierarchy, retrying
    /// for a second while exiting tasks leave. Missing directories are fine.
    pub fn delete(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            remove_tree(dir)?;
        }
        Ok(())
    }

    /// How many times the OOM killer killed a process in this cgroup (v2 `memory.events`,
    /// v1 `memory.oom_control`); 0 when the kernel does not say.
    pub fn oom_kill_count(&self) -> u64 {
        let file = match (self.layout, &self.unified, &self.memory) {
            (CgroupLayout::V2, Some(u), _) => u.join("memory.events"),
            (_, _, Some(m)) => m.join("memory.oom_control"),
            _ => return 0,
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|v| v.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    fn controller_err(&self, e: impl std::error::Error) -> CgroupError {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let s_text = s.to_string();
            if !message.contains(&s_text) {
                message = format!("{message}: {s_text}");
            }
            source = s.source();
        }
        CgroupError::Controller {
            path: self.path.clone(),
            message,
        }
    }

    fn unsupported(&self, message: String) -> CgroupError {
        CgroupError::Unsupported {
            path: self.path.clone(),
            message,
        }
    }
}

/// Whether `pid` is a zombie (or already gone).
fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// rmdir `dir` after its sub-directories, retrying on EBUSY (tasks still leaving).
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(5);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match try_remove_tree(dir) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(io("removing", dir)(e)),
        }
    }
}

fn try_remove_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            try_remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// How a single-threaded process joins a cgroup from the inside, split from `procs` files.
///
/// Writing a pid to a v1 `cgroup.procs` takes the kernel's cgroup threadgroup lock for writing,
/// which waits for an RCU grace period: 5-25 ms per container on a quiet 2-core host. A thread
/// that writes `0` to a v1 `tasks` file moves only itself and skips that lock (kernel 5.19+,
/// `cgroup_procs_write_start`), 0.6-0.9 ms here for ten hierarchies. For a single-threaded
/// process (the launcher's init child, the exec helper) that is the whole process. v2
/// directories have no `tasks` file; they stay in the second list, to be written with a pid.
pub fn self_join_split(procs: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut tasks = Vec::new();
    let mut rest = Vec::new();
    for p in procs {
        match p.parent().map(|d| d.join("tasks")) {
            Some(t) if p.ends_with("cgroup.procs") && t.exists() => tasks.push(t),
            _ => rest.push(p.clone()),
        }
    }
    (tasks, rest)
}

/// Takes the cgroup v2 `cgroup.procs` file out of `procs` and opens its directory, for a clone
/// straight into it (`CLONE_INTO_CGROUP`, kernel 5.7+). A child born in its cgroup costs no
/// migration: writing a pid to a v2 `cgroup.procs` takes the threadgroup lock for writing and
/// waits for an RCU grace period (5-15 ms here), and v2 has no thread-level shortcut like v1's
/// `tasks`. `None` when there is no v2 directory or it cannot be opened (the caller then writes
/// the pid as before, which reports the error).
pub fn take_v2_dir(procs: &mut Vec<PathBuf>) -> Option<(std::os::fd::OwnedFd, PathBuf)> {
    let at = procs.iter().position(|p| {
        p.ends_with("cgroup.procs") && p.parent().and_then(|d| d.to_str()).is_some_and(is_cgroup2)
    })?;
    let dir = procs[at].parent()?.to_path_buf();
    let fd = std::fs::File::open(&dir).ok()?;
    Some((fd.into(), procs.remove(at)))
}

/// Moves the calling thread into the cgroups of [`self_join_split`]: `0` to every `tasks` file,
/// the caller's pid to the rest. Only correct for single-threaded callers.
pub fn join_self(procs: &[PathBuf]) -> std::io::Result<()> {
    let (tasks, rest) = self_join_split(procs);
    let me = std::process::id().to_string();
    for (files, text) in [(&tasks, "0"), (&rest, me.as_str())] {
        for f in files {
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("joining cgroup {}: {e}", f.display()))
                })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
