//! Block I/O a cgroup did, per device: v2 `io.stat`, v1 `blkio.throttle.io_service_bytes` and
//! `blkio.throttle.io_serviced`. v1 has the throttle files under every I/O scheduler, while
//! CFQ's `blkio.io_*` files went with CFQ (kernel 5.0); runc and cadvisor fall back to the same
//! ones. Devices are named as cadvisor names them: `/dev/` + the kernel's name from sysfs.

use std::path::Path;

use super::StatsError;
use super::cgroup::read_opt;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoDevice {
    pub major: u32,
    pub minor: u32,
    /// `/dev/<name>`; empty until [`name_devices`] found it (and when sysfs does not know it).
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

fn maj_min(s: &str) -> Option<(u32, u32)> {
    let (maj, min) = s.split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// The entry of `major:minor` in `devs`, added (in the order the kernel listed them) if new.
fn entry(devs: &mut Vec<IoDevice>, (major, minor): (u32, u32)) -> &mut IoDevice {
    let i = match devs
        .iter()
        .position(|d| d.major == major && d.minor == minor)
    {
        Some(i) => i,
        None => {
            devs.push(IoDevice {
                major,
                minor,
                ..Default::default()
            });
            devs.len() - 1
        }
    };
    &mut devs[i]
}

/// Parses v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..` (newer
/// kernels add more keys, older ones fewer: unknown keys are ignored, missing ones read 0).
pub fn parse_io_stat(text: &str) -> Vec<IoDevice> {
    let mut devs = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(id) = fields.next().and_then(maj_min) else {
            continue;
        };
        let d = entry(&mut devs, id);
        for kv in fields {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else {
                continue;
            };
            match k {
                "rbytes" => d.read_bytes = v,
                "wbytes" => d.write_bytes = v,
                "rios" => d.reads = v,
                "wios" => d.writes = v,
                _ => {}
            }
        }
    }
    devs
}

/// Parses v1 `blkio.throttle.io_service_bytes` (`bytes`) and `blkio.throttle.io_serviced`
/// (`ios`): `MAJ:MIN Read|Write|Sync|Async|Discard|Total N` lines and a final `Total N`. Only
/// Read and Write are kept (Sync/Async/Total are the same I/O counted again).
pub fn parse_v1(bytes: &str, ios: &str) -> Vec<IoDevice> {
    let mut devs = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ios, false)] {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [id, op, v] = f[..] else {
                continue;
            };
            let (Some(id), Ok(v)) = (maj_min(id), v.parse::<u64>()) else {
                continue;
            };
            let d = entry(&mut devs, id);
            match (op, is_bytes) {
                ("Read", true) => d.read_bytes = v,
                ("Write", true) => d.write_bytes = v,
                ("Read", false) => d.reads = v,
                ("Write", false) => d.writes = v,
                _ => {}
            }
        }
    }
    devs
}

/// Reads the v2 counters of the cgroup directory `dir`; empty without the io controller.
pub fn read_v2(dir: &Path) -> Result<Vec<IoDevice>, StatsError> {
    Ok(read_opt(&dir.join("io.stat"))?
        .map(|t| parse_io_stat(&t))
        .unwrap_or_default())
}

/// Reads the v1 counters of the blkio controller's directory `dir`: the `_recursive` files
/// where the kernel has them (the cgroup and its descendants, like v2), else the plain ones.
pub fn read_v1(dir: &Path) -> Result<Vec<IoDevice>, StatsError> {
    let read = |name: &str| -> Result<String, StatsError> {
        let recursive = read_opt(&dir.join(format!("{name}_recursive")))?;
        match recursive {
            Some(t) => Ok(t),
            None => Ok(read_opt(&dir.join(name))?.unwrap_or_default()),
        }
    };
    Ok(parse_v1(
        &read("blkio.throttle.io_service_bytes")?,
        &read("blkio.throttle.io_serviced")?,
    ))
}

/// `DEVNAME=` of a sysfs `uevent` file.
pub fn uevent_devname(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// Names each device from `<sys>/dev/block/MAJ:MIN/uevent`; a device sysfs does not know
/// (removed since) keeps an empty name, as cadvisor reports it.
pub fn name_devices(sys: &Path, devs: &mut [IoDevice]) -> Result<(), StatsError> {
    for d in devs {
        let uevent = sys
            .join("dev/block")
            .join(format!("{}:{}", d.major, d.minor))
            .join("uevent");
        if let Some(text) = read_opt(&uevent)?
            && let Some(name) = uevent_devname(&text)
        {
            d.device = format!("/dev/{name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_io_stat() {
        let text = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                    253:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0 cost.usage=5\n\
                    bogus line\n";
        let devs = parse_io_stat(text);
        assert_eq!(
            devs,
            [
                IoDevice {
                    major: 8,
                    minor: 16,
                    device: String::new(),
                    read_bytes: 1459200,
                    write_bytes: 314773504,
                    reads: 192,
                    writes: 353,
                },
                IoDevice {
                    major: 253,
                    minor: 0,
                    read_bytes: 4096,
                    reads: 1,
                    ..Default::default()
                },
            ]
        );
        assert!(parse_io_stat("").is_empty());
    }

    #[test]
    fn v1_throttle_files() {
        let bytes = "8:0 Read 8192\n8:0 Write 40960\n8:0 Sync 49152\n8:0 Async 0\n\
                     8:0 Discard 0\n8:0 Total 49152\n7:1 Read 512\n7:1 Write 0\nTotal 49664\n";
        let ios = "8:0 Read 2\n8:0 Write 10\n8:0 Sync 12\n8:0 Async 0\n8:0 Total 12\n\
                   7:1 Read 1\nTotal 13\n";
        let devs = parse_v1(bytes, ios);
        assert_eq!(devs.len(), 2);
        assert_eq!((devs[0].major, devs[0].minor), (8, 0));
        assert_eq!(devs[0].read_bytes, 8192);
        assert_eq!(devs[0].write_bytes, 40960);
        assert_eq!(devs[0].reads, 2);
        assert_eq!(devs[0].writes, 10);
        assert_eq!((devs[1].major, devs[1].minor), (7, 1));
        assert_eq!((devs[1].read_bytes, devs[1].reads), (512, 1));
        // An empty cgroup: just the total.
        assert!(parse_v1("Total 0\n", "Total 0\n").is_empty());
    }

    #[test]
    fn v1_prefers_recursive_files() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        std::fs::write(d.join("blkio.throttle.io_service_bytes"), "8:0 Read 1\n").unwrap();
        std::fs::write(
            d.join("blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 5\n",
        )
        .unwrap();
        std::fs::write(d.join("blkio.throttle.io_serviced"), "8:0 Read 1\n").unwrap();
        let devs = read_v1(d).unwrap();
        assert_eq!((devs[0].read_bytes, devs[0].reads), (5, 1));
        assert!(read_v2(d).unwrap().is_empty());
    }

    #[test]
    fn device_names_from_sysfs() {
        let sys = tempfile::tempdir().unwrap();
        let dev = sys.path().join("dev/block/8:16");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            dev.join("uevent"),
            "MAJOR=8\nMINOR=16\nDEVNAME=sdb\nDEVTYPE=disk\n",
        )
        .unwrap();
        let mut devs = parse_io_stat("8:16 rbytes=1\n9:9 rbytes=2\n");
        name_devices(sys.path(), &mut devs).unwrap();
        assert_eq!(devs[0].device, "/dev/sdb");
        assert_eq!(devs[1].device, "");
        assert_eq!(uevent_devname("DEVNAME=\n"), None);
    }
}
