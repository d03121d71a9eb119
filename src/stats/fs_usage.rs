//! Disk usage of a container's writable layer (its overlay upperdir): bytes allocated and inodes,
//! like `du` counts them. Walking a large layer is the expensive part of stats, so results are
//! cached: a walk is reused for at least [`MIN_TTL`] and for 20 times as long as it took.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StatsError;

pub const MIN_TTL: Duration = Duration::from_secs(2);
/// A walk that took d is reused for `d * COST_FACTOR`, so walking takes at most ~5% of a core.
const COST_FACTOR: u32 = 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Allocated bytes (st_blocks * 512), hard links counted once.
    pub bytes: u64,
    /// Inodes under the directory (not counting itself), hard links counted once.
    pub inodes: u64,
}

/// Walks `dir` without following symlinks and without crossing into other filesystems
/// (mounts inside the upperdir are not the layer's). Entries vanishing during the walk are
/// skipped; a missing `dir` is empty.
pub fn walk(dir: &Path) -> Result<Usage, StatsError> {
    let root = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Usage::default()),
        Err(e) => return Err(StatsError::io("reading", dir, e)),
    };
    let dev = root.dev();
    let mut seen_links: HashSet<u64> = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StatsError::io("listing", &d, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StatsError::io("listing", &d, e))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StatsError::io("reading", &entry.path(), e)),
            };
            if meta.dev() != dev {
                continue;
            }
            if !meta.is_dir() && meta.nlink() > 1 && !seen_links.insert(meta.ino()) {
                continue;
            }
            usage.bytes += meta.blocks() * 512;
            usage.inodes += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    usage: Usage,
    /// When the walk finished (wall clock, ns), reported as the sample's timestamp.
    taken_at_ns: i64,
    expires: Instant,
}

/// Walk results by directory.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<PathBuf, Entry>>,
}

impl Cache {
    /// The usage of `dir` and when it was measured (ns since the epoch): cached when fresh,
    /// else walked now.
    pub fn usage(&self, dir: &Path) -> Result<(Usage, i64), StatsError> {
        if let Some(e) = self.lock().get(dir)
            && e.expires > Instant::now()
        {
            return Ok((e.usage, e.taken_at_ns));
        }
        let started = Instant::now();
        let usage = walk(dir)?;
        let took = started.elapsed();
        let entry = Entry {
            usage,
            taken_at_ns: crate::runtime::now_nanos(),
            expires: Instant::now() + MIN_TTL.max(took * COST_FACTOR),
        };
        self.lock().insert(dir.to_owned(), entry);
        Ok((usage, entry.taken_at_ns))
    }

    /// Forgets directories not in `keep` (containers removed since).
    pub fn retain(&self, keep: &HashSet<PathBuf>) {
        self.lock().retain(|k, _| keep.contains(k));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_dirs_and_hard_links_once() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("upper");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(d.join("a/b/f"), d.join("a/link")).unwrap();
        std::os::unix::fs::symlink("/", d.join("a/sym")).unwrap();
        let u = walk(&d).unwrap();
        // a, a/b, a/b/f (+ its hard link, once), a/sym.
        assert_eq!(u.inodes, 4);
        assert!(u.bytes >= 64 * 1024, "{u:?}");
        // The symlink to / was not followed: far less than the host's usage.
        assert!(u.bytes < 1 << 20, "{u:?}");
        assert_eq!(
            walk(&root.path().join("missing")).unwrap(),
            Usage::default()
        );
    }

    #[test]
    fn cache_reuses_fresh_walks() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::default();
        let (first, t1) = cache.usage(root.path()).unwrap();
        std::fs::write(root.path().join("f"), vec![1u8; 8192]).unwrap();
        let (second, t2) = cache.usage(root.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(t1, t2);
        cache.retain(&HashSet::new());
        let (third, _) = cache.usage(root.path()).unwrap();
        assert_eq!(third.inodes, 1);
    }
}
