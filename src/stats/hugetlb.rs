//! Huge page usage of a cgroup, per page size: v2 `hugetlb.<size>.current`, v1
//! `hugetlb.<size>.usage_in_bytes` and `.max_usage_in_bytes`. The page sizes are those the
//! kernel made files for (`2MB`, `1GB`, `64KB`...), which is also how cadvisor labels them.

use std::path::Path;

use super::StatsError;
use super::cgroup::{gone, read_opt};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hugetlb {
    pub pagesize: String,
    pub usage: u64,
    /// v1 only: v2 keeps no peak (cadvisor reports 0 there too).
    pub max_usage: u64,
}

/// Page sizes that have a `hugetlb.<size>.<suffix>` file in `dir`, sorted. The `rsvd`
/// (reservation) files have one more dot and are not matched.
fn page_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>, StatsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if gone(&e) => return Ok(Vec::new()),
        Err(e) => return Err(StatsError::io("listing", dir, e)),
    };
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            size.strip_suffix('.')
                .filter(|s| !s.is_empty() && !s.contains('.'))
                .map(str::to_owned)
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

fn read_num(path: &Path) -> Result<u64, StatsError> {
    Ok(read_opt(path)?
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0))
}

/// The v2 directory's counters; empty without the hugetlb controller.
pub fn read_v2(dir: &Path) -> Result<Vec<Hugetlb>, StatsError> {
    page_sizes(dir, "current")?
        .into_iter()
        .map(|pagesize| {
            Ok(Hugetlb {
                usage: read_num(&dir.join(format!("hugetlb.{pagesize}.current")))?,
                max_usage: 0,
                pagesize,
            })
        })
        .collect()
}

/// The v1 hugetlb controller directory's counters.
pub fn read_v1(dir: &Path) -> Result<Vec<Hugetlb>, StatsError> {
    page_sizes(dir, "usage_in_bytes")?
        .into_iter()
        .map(|pagesize| {
            let file = |what: &str| dir.join(format!("hugetlb.{pagesize}.{what}"));
            Ok(Hugetlb {
                usage: read_num(&file("usage_in_bytes"))?,
                max_usage: read_num(&file("max_usage_in_bytes"))?,
                pagesize,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn v2_sizes_and_usage() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        write(
            d,
            &[
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.rsvd.current", "4194304\n"),
                ("hugetlb.1GB.current", "0\n"),
                ("memory.current", "1\n"),
            ],
        );
        assert_eq!(
            read_v2(d).unwrap(),
            [
                Hugetlb {
                    pagesize: "1GB".into(),
                    usage: 0,
                    max_usage: 0
                },
                Hugetlb {
                    pagesize: "2MB".into(),
                    usage: 2097152,
                    max_usage: 0
                },
            ]
        );
        assert!(read_v2(&d.join("gone")).unwrap().is_empty());
    }

    #[test]
    fn v1_usage_and_peak() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        write(
            d,
            &[
                ("hugetlb.2MB.usage_in_bytes", "0\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        assert_eq!(
            read_v1(d).unwrap(),
            [Hugetlb {
                pagesize: "2MB".into(),
                usage: 0,
                max_usage: 4194304
            }]
        );
    }
}
