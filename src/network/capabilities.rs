//! `runtimeConfig` capability arguments (CNI conventions): what a plugin receives when its
//! config declares the capability (`"capabilities": {"portMappings": true}`).

use serde_json::{Map, Value, json};

use crate::cri::v1 as cri;

/// The capability arguments of a pod: `portMappings` (the host ports of its config, as
/// portmap reads them), `ipRanges` (the node's pod CIDRs), `dns`.
pub fn of_pod(config: &cri::PodSandboxConfig, pod_cidr: &str) -> Map<String, Value> {
    let mut caps = Map::new();
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        // Like containerd: a mapping without a host port publishes nothing.
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": protocol,
                "hostIP": p.host_ip,
            })
        })
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), Value::Array(ports));
    }
    // Dual-stack nodes get one range set per CIDR.
    let ranges: Vec<Value> = pod_cidr
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| json!([{ "subnet": c }]))
        .collect();
    if !ranges.is_empty() {
        caps.insert("ipRanges".into(), Value::Array(ranges));
    }
    if let Some(dns) = &config.dns_config {
        caps.insert(
            "dns".into(),
            json!({"servers": dns.servers, "searches": dns.searches, "options": dns.options}),
        );
    }
    caps
}

/// The part of `caps` that `plugin` declares in its `capabilities`.
pub fn for_plugin(plugin: &Map<String, Value>, caps: &Map<String, Value>) -> Map<String, Value> {
    let Some(declared) = plugin.get("capabilities").and_then(Value::as_object) else {
        return Map::new();
    };
    declared
        .iter()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(name, _)| caps.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mappings_ip_ranges_and_declared_capabilities() {
        let config = cri::PodSandboxConfig {
            port_mappings: vec![
                cri::PortMapping {
                    protocol: cri::Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".into(),
                },
                cri::PortMapping {
                    protocol: cri::Protocol::Tcp as i32,
                    container_port: 80,
                    host_port: 0,
                    host_ip: String::new(),
                },
            ],
            ..Default::default()
        };
        let caps = of_pod(&config, "10.1.0.0/24, fd00::/64");
        assert_eq!(
            Value::Object(caps.clone()),
            json!({
                "portMappings": [{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}],
                "ipRanges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]],
            })
        );
        let plugin =
            json!({"type": "portmap", "capabilities": {"portMappings": true, "ipRanges": false}});
        let got = for_plugin(plugin.as_object().unwrap(), &caps);
        assert_eq!(got.keys().collect::<Vec<_>>(), vec!["portMappings"]);
        let plain = json!({"type": "bridge"});
        assert!(for_plugin(plain.as_object().unwrap(), &caps).is_empty());
        assert!(of_pod(&cri::PodSandboxConfig::default(), "").is_empty());
    }
}
