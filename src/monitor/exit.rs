//! The exit record: [`ExitStatus`], its atomic file, and OOM kill detection.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How the container init ended, as the monitor saw it (`exit.json`, and the `wait` reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The init's pid (host pid namespace).
    pub pid: i32,
    /// Unix time in ns when `start` released the init; 0 when it never started.
    pub started_at: i64,
    /// Unix time in ns when the monitor reaped the init.
    pub exited_at: i64,
    /// The exit code, or 128 + signal when a signal killed the init (what kubelet expects).
    pub exit_code: i32,
    /// The signal that killed the init.
    pub signal: Option<i32>,
    /// The container's memory cgroup recorded an OOM kill while the container lived.
    pub oom_killed: bool,
}

impl ExitStatus {
    /// The CRI `reason` for a container in this state.
    pub fn reason(&self) -> &'static str {
        if self.oom_killed {
            "OOMKilled"
        } else if self.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// The current unix time in ns.
pub fn now_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
}

/// Writes `status` to `path` so that readers see the old state or the whole new file: a
/// temporary file in the same directory, fsync, rename, fsync of the directory.
pub fn write_exit_file(path: &Path, status: &ExitStatus) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut json = serde_json::to_vec(status).map_err(io::Error::other)?;
    json.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&json)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Reads an exit file: `None` when it does not exist (the container has not exited, or its
/// monitor died without recording it) or cannot be read.
pub fn read_exit_file(path: &Path) -> Option<ExitStatus> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The number of OOM kills recorded in a memory cgroup directory: `oom_kill` of
/// `memory.events` (cgroup v2), else of `memory.oom_control` (v1). 0 when neither is readable.
pub fn oom_kill_count(memory_dir: &Path) -> u64 {
    ["memory.events", "memory.oom_control"]
        .iter()
        .find_map(|name| std::fs::read_to_string(memory_dir.join(name)).ok())
        .and_then(|text| parse_oom_kill(&text))
        .unwrap_or(0)
}

/// The sum of [`oom_kill_count`] over several directories (v1 may list more than one).
pub fn oom_kill_total(dirs: &[std::path::PathBuf]) -> u64 {
    dirs.iter().map(|d| oom_kill_count(d)).sum()
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counts_from_v1_and_v2_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(oom_kill_count(dir.path()), 0);
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        assert_eq!(oom_kill_count(dir.path()), 3);
        // v2 wins when both exist; oom_group_kill is not oom_kill.
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 7\noom 2\noom_group_kill 9\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kill_count(dir.path()), 1);
        assert_eq!(
            oom_kill_total(&[dir.path().to_owned(), dir.path().to_owned()]),
            2
        );
    }

    #[test]
    fn exit_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        assert_eq!(read_exit_file(&path), None);
        let status = ExitStatus {
            pid: 42,
            started_at: 1,
            exited_at: 2,
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
        };
        write_exit_file(&path, &status).unwrap();
        assert_eq!(read_exit_file(&path), Some(status));
        assert_eq!(status.reason(), "OOMKilled");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""signal":9"#), "{text}");
    }
}
