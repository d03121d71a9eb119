//! Tests. Those that create cgroups need root and skip themselves otherwise; each creates
//! `strata-test-<random>` under the root of every hierarchy and removes it even when it fails.

use std::path::Path;
use std::process::{Child, Command};

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimitBuilder, LinuxMemory,
    LinuxPidsBuilder, LinuxResources,
};

use super::*;

fn can_manage_cgroups() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    true
}

fn test_name() -> String {
    format!("strata-test-{:016x}", rand::random::<u64>())
}

/// Kills and removes the cgroup when dropped, whatever happened in the test.
struct Guard(Cgroup);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill_all();
        let _ = self.0.delete();
    }
}

impl std::ops::Deref for Guard {
    type Target = Cgroup;
    fn deref(&self) -> &Cgroup {
        &self.0
    }
}

/// Removes the guard's top-level directory too (for nested test cgroups).
struct TopGuard(String);

impl Drop for TopGuard {
    fn drop(&mut self) {
        if let Ok(cg) = Cgroup::open(&self.0) {
            let _ = cg.kill_all();
            let _ = cg.delete();
        }
    }
}

struct Sleeper(Child);

impl Sleeper {
    fn spawn() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("1000")
                .spawn()
                .expect("spawn sleep"),
        )
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
        .trim()
        .to_owned()
}

fn dir_of(cg: &Cgroup, hierarchy: &str) -> std::path::PathBuf {
    cg.dirs()
        .iter()
        .find(|d| d.starts_with(Path::new("/sys/fs/cgroup").join(hierarchy)))
        .unwrap_or_else(|| panic!("no {hierarchy} hierarchy in {:?}", cg.dirs()))
        .clone()
}

fn resources() -> LinuxResources {
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(512));
    cpu.set_quota(Some(50_000));
    cpu.set_period(Some(100_000));
    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(64 << 20));
    if CgroupLayout::detect().swap_available() {
        mem.set_swap(Some(96 << 20));
    }
    let mut deny = LinuxDeviceCgroup::default();
    deny.set_allow(false);
    deny.set_typ(Some(LinuxDeviceType::A));
    deny.set_access(Some("rwm".into()));
    let mut null = LinuxDeviceCgroup::default();
    null.set_allow(true);
    null.set_typ(Some(LinuxDeviceType::C));
    null.set_major(Some(1));
    null.set_minor(Some(3));
    null.set_access(Some("rwm".into()));
    let mut mknod = LinuxDeviceCgroup::default();
    mknod.set_allow(true);
    mknod.set_typ(Some(LinuxDeviceType::C));
    mknod.set_access(Some("m".into()));
    let mut r = LinuxResources::default();
    r.set_cpu(Some(cpu));
    r.set_memory(Some(mem));
    r.set_pids(Some(
        LinuxPidsBuilder::default().limit(100).build().unwrap(),
    ));
    r.set_devices(Some(vec![deny, null, mknod]));
    r
}

#[test]
fn layout_of_this_host() {
    let layout = CgroupLayout::detect();
    if is_cgroup2(HYBRID_UNIFIED_MOUNT) && !is_cgroup2(CGROUP_ROOT) {
        assert_eq!(layout, CgroupLayout::Hybrid);
    }
    if is_cgroup2(CGROUP_ROOT) {
        assert_eq!(layout, CgroupLayout::V2);
    }
}

#[test]
fn paths_are_relative_and_clean() {
    assert_eq!(clean_path("/kubepods/pod1/c/").unwrap(), "kubepods/pod1/c");
    for bad in ["", "/", "a/../b", "./a"] {
        assert!(
            matches!(clean_path(bad), Err(CgroupError::InvalidPath(_))),
            "{bad}"
        );
    }
    let cg = Cgroup::open("/kubepods/x").unwrap();
    assert!(
        cg.procs_files()
            .iter()
            .all(|f| f.ends_with("kubepods/x/cgroup.procs"))
    );
}

#[test]
fn create_limits_join_kill_delete() {
    if !can_manage_cgroups() {
        return;
    }
    let name = test_name();
    let cg = Guard(Cgroup::create(&format!("/{name}"), &resources()).unwrap());
    assert!(cg.dirs().iter().all(|d| d.is_dir()));
    assert!(cg.dirs().iter().all(|d| d.ends_with(&name)));

    match cg.layout() {
        CgroupLayout::V1 | CgroupLayout::Hybrid => {
            let cpu = dir_of(&cg, "cpu");
            assert_eq!(read(&cpu, "cpu.shares"), "512");
            assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
            assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
            let mem = dir_of(&cg, "memory");
            assert_eq!(
                read(&mem, "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            if CgroupLayout::detect().swap_available() {
                assert_eq!(
                    read(&mem, "memory.memsw.limit_in_bytes"),
                    (96u64 << 20).to_string()
                );
            }
            assert_eq!(read(&dir_of(&cg, "pids"), "pids.max"), "100");
            let cpuset = dir_of(&cg, "cpuset");
            assert!(!read(&cpuset, "cpuset.cpus").is_empty());
            assert_eq!(
                read(&cpuset, "cpuset.mems"),
                read(cpuset.parent().unwrap(), "cpuset.mems")
            );
            let devices = read(&dir_of(&cg, "devices"), "devices.list");
            let mut lines: Vec<&str> = devices.lines().collect();
            lines.sort_unstable();
            assert_eq!(lines, ["c *:* m", "c 1:3 rwm"]);
        }
        CgroupLayout::V2 => {
            let dir = &cg.dirs()[0];
            assert_eq!(read(dir, "cpu.max"), "50000 100000");
            assert_eq!(read(dir, "memory.max"), (64u64 << 20).to_string());
            assert_eq!(read(dir, "pids.max"), "100");
        }
    }

    let a = Sleeper::spawn();
    let b = Sleeper::spawn();
    cg.add_process(a.pid()).unwrap();
    cg.add_process(b.pid()).unwrap();
    let pids = cg.pids().unwrap();
    assert!(
        pids.contains(&a.pid()) && pids.contains(&b.pid()),
        "{pids:?}"
    );
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", a.pid())).unwrap();
    assert!(own.contains(&name), "{own}");
    assert_eq!(cg.oom_kill_count(), 0);

    cg.kill_all().unwrap();
    let (mut a, mut b) = (a, b);
    for s in [&mut a, &mut b] {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(s.0.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
    assert!(cg.pids().unwrap().is_empty());

    cg.delete().unwrap();
    assert!(cg.dirs().iter().all(|d| !d.exists()));
    cg.delete().unwrap();
    cg.kill_all().unwrap();
}

#[test]
fn kill_without_cgroup_kill_freezes_and_signals() {
    if !can_manage_cgroups() {
        return;
    }
    let cg = Guard(Cgroup::create(&test_name(), &LinuxResources::default()).unwrap());
    let sleepers: Vec<Sleeper> = (0..3).map(|_| Sleeper::spawn()).collect();
    for s in &sleepers {
        cg.add_process(s.pid()).unwrap();
    }
    cg.kill_loop(None).unwrap();
    assert!(cg.pids().unwrap().iter().all(|p| is_zombie(*p)));
    if let Some(f) = &cg.freezer {
        assert_eq!(read(f, "freezer.state"), "THAWED");
    }
}

#[test]
fn nested_paths_get_parents_and_inherited_cpuset() {
    if !can_manage_cgroups() {
        return;
    }
    let top = test_name();
    let _top = TopGuard(top.clone());
    let cg = Guard(Cgroup::create(&format!("{top}/pod1/ctr"), &LinuxResources::default()).unwrap());
    if cg.layout() != CgroupLayout::V2 {
        let cpuset = dir_of(&cg, "cpuset");
        let root_cpus = read(
            cpuset.parent().unwrap().parent().unwrap().parent().unwrap(),
            "cpuset.cpus",
        );
        assert_eq!(read(&cpuset, "cpuset.cpus"), root_cpus);
        let s = Sleeper::spawn();
        cg.add_process(s.pid()).unwrap();
        cg.kill_all().unwrap();
    }
    // Deleting the pod level removes the container level below it.
    let pod = Cgroup::open(&format!("{top}/pod1")).unwrap();
    pod.delete().unwrap();
    assert!(cg.dirs().iter().all(|d| !d.exists()));
    assert!(pod.dirs().iter().all(|d| !d.exists()));
}

#[test]
fn unified_keys_refused_on_v1_and_nothing_left_behind() {
    if !can_manage_cgroups() || CgroupLayout::detect() == CgroupLayout::V2 {
        return;
    }
    let name = test_name();
    let mut r = LinuxResources::default();
    r.set_unified(Some(
        [("memory.high".to_string(), "1000000".to_string())].into(),
    ));
    let err = Cgroup::create(&name, &r).unwrap_err();
    assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let cg = Cgroup::open(&name).unwrap();
    let _guard = Guard(cg.clone());
    assert!(cg.dirs().iter().all(|d| !d.exists()));
}

#[test]
fn hugepage_limits() {
    if !can_manage_cgroups() {
        return;
    }
    let layout = CgroupLayout::detect();
    let v1_hugetlb = V1::new().get_mount_point(Controllers::HugeTlb);
    let mut r = LinuxResources::default();
    r.set_hugepage_limits(Some(vec![
        LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4i64 << 20)
            .build()
            .unwrap(),
    ]));
    let cg = Guard(Cgroup::create(&test_name(), &r).unwrap());
    let (dir, file) = match (layout, v1_hugetlb) {
        (CgroupLayout::V2, _) => (cg.dirs()[0].clone(), "hugetlb.2MB.max"),
        (_, Some(_)) => (dir_of(&cg, "hugetlb"), "hugetlb.2MB.limit_in_bytes"),
        (CgroupLayout::Hybrid, None) => (cg.unified.clone().unwrap(), "hugetlb.2MB.max"),
        (CgroupLayout::V1, None) => return,
    };
    if dir.join(file).exists() {
        assert_eq!(read(&dir, file), (4u64 << 20).to_string());
    } else {
        eprintln!("no 2MB hugepages here; {} has no {file}", dir.display());
    }
}

#[test]
fn errors_classify() {
    assert_eq!(
        CgroupError::InvalidPath("..".into()).kind(),
        ErrorKind::InvalidArgument
    );
    let e = io("writing", Path::new("/x/cgroup.procs"))(std::io::ErrorKind::Other.into());
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(e.to_string().contains("/x/cgroup.procs"));
}
