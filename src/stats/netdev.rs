//! Network counters of a network namespace, from `/proc/<pid>/net/dev` of a process inside it
//! (the pod's pod-init): no namespace switch, no netlink socket.

use std::path::Path;

use super::StatsError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx(8 fields) tx(8 fields)`.
pub fn parse(text: &str) -> Vec<Iface> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            if v.len() < 16 {
                return None;
            }
            Some(Iface {
                name: name.trim().to_owned(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// The interfaces of `pid`'s network namespace except loopback (as containerd and cadvisor
/// report pod networks), sorted by name.
pub fn read_pid(proc_root: &Path, pid: i32) -> Result<Vec<Iface>, StatsError> {
    let path = proc_root.join(pid.to_string()).join("net/dev");
    let text = std::fs::read_to_string(&path).map_err(|e| StatsError::io("reading", &path, e))?;
    let mut ifaces: Vec<Iface> = parse(&text)
        .into_iter()
        .filter(|i| i.name != "lo")
        .collect();
    ifaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ifaces)
}

/// Start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`) of a process: tells a
/// recycled pid from the pod-init we recorded.
pub fn start_time(proc_root: &Path, pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    6384      64    0    0    0     0          0         0     6384      64    0    0    0     0       0          0
  eth0: 1234567    890    1    2    0     0          0         5   765432    321    3    4    0     0       0          0
";

    #[test]
    fn parses_proc_net_dev() {
        let ifs = parse(NET_DEV);
        assert_eq!(ifs.len(), 2);
        assert_eq!(
            ifs[1],
            Iface {
                name: "eth0".into(),
                rx_bytes: 1234567,
                rx_packets: 890,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 765432,
                tx_packets: 321,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
        assert_eq!(ifs[0].name, "lo");
    }

    #[test]
    fn reads_a_fake_proc_without_loopback() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("42/net")).unwrap();
        std::fs::write(root.path().join("42/net/dev"), NET_DEV).unwrap();
        let ifs = read_pid(root.path(), 42).unwrap();
        assert_eq!(ifs.len(), 1);
        assert_eq!(ifs[0].name, "eth0");
        assert!(read_pid(root.path(), 43).is_err());
    }

    #[test]
    fn own_start_time() {
        assert!(start_time(Path::new("/proc"), std::process::id() as i32).is_some());
    }
}
