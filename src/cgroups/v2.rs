//! cgroup v2 specifics done by hand: `unified` keys, hugetlb on the hybrid layout's v2 mount,
//! and the v2 freezer.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use super::{CgroupError, io};

/// Writes each `unified` key as a file of the cgroup (keys are file names like
/// `memory.high`; the file must exist, i.e. the controller must be enabled).
pub fn write_unified(dir: &Path, unified: &HashMap<String, String>) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in keys {
        if key.contains('/') || !key.contains('.') || key.starts_with('.') {
            return Err(CgroupError::Unsupported {
                path: dir.display().to_string(),
                message: format!("invalid unified key {key:?}"),
            });
        }
        let file = dir.join(key);
        if !file.exists() {
            return Err(CgroupError::Unsupported {
                path: dir.display().to_string(),
                message: format!(
                    "unified key {key:?}: no such cgroup file (controller not enabled?)"
                ),
            });
        }
        std::fs::write(&file, &unified[key]).map_err(io("writing", &file))?;
    }
    Ok(())
}

/// Enables `controller` in `dir`'s `cgroup.subtree_control` unless it already is.
fn enable(dir: &Path, controller: &str) -> Result<(), CgroupError> {
    let f = dir.join("cgroup.subtree_control");
    let now = std::fs::read_to_string(&f).map_err(io("reading", &f))?;
    if now.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    std::fs::write(&f, format!("+{controller}")).map_err(io("writing", &f))
}

/// Hugepage limits on the hybrid layout, where `hugetlb` is only a v2 controller: enables it
/// from the v2 root down to the cgroup's parent, then writes `hugetlb.<size>.max`. Page sizes
/// the kernel does not have are skipped (as `cgroups-rs` does on v1 and v2).
pub fn hybrid_hugetlb(
    root: &Path,
    rel: &str,
    dir: &Path,
    limits: &[LinuxHugepageLimit],
) -> Result<(), CgroupError> {
    if limits.is_empty() {
        return Ok(());
    }
    let mut parent = root.to_owned();
    enable(&parent, "hugetlb")?;
    let comps: Vec<&str> = rel.split('/').collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        parent.push(c);
        enable(&parent, "hugetlb")?;
    }
    for l in limits {
        let file = dir.join(format!("hugetlb.{}.max", l.page_size()));
        if !file.exists() {
            tracing::warn!(page_size = %l.page_size(), "hugepage size not supported here, limit skipped");
            continue;
        }
        std::fs::write(&file, l.limit().to_string()).map_err(io("writing", &file))?;
    }
    Ok(())
}

/// Freezes (or thaws) a v2 cgroup, waiting up to a second for `frozen 1` in cgroup.events.
pub fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let f = dir.join("cgroup.freeze");
    std::fs::write(&f, if frozen { "1" } else { "0" }).map_err(io("writing", &f))?;
    if !frozen {
        return Ok(());
    }
    let events = dir.join("cgroup.events");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        let text = std::fs::read_to_string(&events).map_err(io("reading", &events))?;
        if text.lines().any(|l| l.trim() == "frozen 1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}
