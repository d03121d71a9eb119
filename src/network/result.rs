//! The pod's IPs from a CNI ADD result: `ips` (CNI 0.3.0 and later, 1.0.0 included) or
//! `ip4`/`ip6` (0.1.0, 0.2.0), without prefix lengths, IPv4 first (as containerd orders them).

use std::net::IpAddr;

use serde_json::Value;

pub fn pod_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(list) = result.get("ips").and_then(Value::as_array) {
        let interfaces = result.get("interfaces").and_then(Value::as_array);
        for ip in list {
            // An address on a host-side interface (a bridge's gateway) is not the pod's.
            let in_sandbox = match (ip.get("interface").and_then(Value::as_u64), interfaces) {
                (Some(i), Some(ifs)) => ifs
                    .get(i as usize)
                    .and_then(|iface| iface.get("sandbox"))
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty()),
                _ => true,
            };
            if in_sandbox && let Some(addr) = ip.get("address").and_then(Value::as_str) {
                ips.extend(parse_addr(addr));
            }
        }
    } else {
        for key in ["ip4", "ip6"] {
            if let Some(addr) = result
                .get(key)
                .and_then(|v| v.get("ip"))
                .and_then(Value::as_str)
            {
                ips.extend(parse_addr(addr));
            }
        }
    }
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips.dedup();
    ips.into_iter().map(|ip| ip.to_string()).collect()
}

fn parse_addr(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_result_with_sandbox_interface() {
        let r: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"x"},{"name":"veth1"},
            {"name":"eth0","sandbox":"/run/netns/x"}],
            "ips":[{"address":"fd00::5/64","interface":2},{"address":"10.88.0.5/16","gateway":"10.88.0.1","interface":2},
            {"address":"10.88.0.1/16","interface":0}]}"#,
        )
        .unwrap();
        assert_eq!(pod_ips(&r), vec!["10.88.0.5", "fd00::5"]);
    }

    #[test]
    fn results_without_interfaces_and_old_versions() {
        let r: Value = serde_json::from_str(
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.2.3/24"}]}"#,
        )
        .unwrap();
        assert_eq!(pod_ips(&r), vec!["10.1.2.3"]);
        let r: Value =
            serde_json::from_str(r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.2.4/24"}}"#).unwrap();
        assert_eq!(pod_ips(&r), vec!["10.1.2.4"]);
        assert!(pod_ips(&Value::Null).is_empty());
    }
}
