//! cgroup v1 specifics done by hand: wildcard device rules and the freezer.

use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxDeviceCgroup;

use super::{CgroupError, io};

/// In OCI an absent major/minor is a wildcard; `cgroups-rs` writes it as 0 unless it is -1.
pub fn wildcard_devices(rules: &mut [LinuxDeviceCgroup]) {
    for r in rules {
        if r.major().is_none() {
            r.set_major(Some(-1));
        }
        if r.minor().is_none() {
            r.set_minor(Some(-1));
        }
    }
}

/// Freezes (or thaws) a v1 freezer cgroup, waiting up to a second for FROZEN.
pub fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let state = dir.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    std::fs::write(&state, want).map_err(io("writing", &state))?;
    if !frozen {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let now = std::fs::read_to_string(&state).map_err(io("reading", &state))?;
        if now.trim() == want || Instant::now() > deadline {
            return Ok(());
        }
        // FREEZING: ask again, as runc does.
        std::thread::sleep(Duration::from_millis(1));
        std::fs::write(&state, want).map_err(io("writing", &state))?;
    }
}
