//! Which endpoints serve a registry host, in which order, and over which scheme.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::RegistryError;
use crate::config::RegistryConfig;
use crate::image::reference::DOCKER_HUB_DOMAIN;

/// Where Docker Hub's registry API really lives.
const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// A `mirrors` entry: on failure the next endpoint is tried.
    Mirror,
    /// The registry host itself.
    Upstream,
    /// The configured `endpoint`: the only one used.
    Redirect,
}

/// One place to send registry API requests to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    pub(crate) plain_http: bool,
    /// `host[:port]`
    pub(crate) authority: String,
    /// Empty, or a path prefix starting with `/` (no trailing `/`).
    pub(crate) prefix: String,
    pub(crate) role: Role,
}

impl Endpoint {
    /// `scheme://host[:port][/prefix]`, for messages.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}{}", self.authority, self.prefix)
    }

    /// What oci-client calls the registry: it builds `scheme://{registry}/v2/...`, so a path
    /// prefix rides along here.
    pub(crate) fn oci_registry(&self) -> String {
        format!("{}{}", self.authority, self.prefix)
    }

    fn parse(host: &str, url: &str, role: Role) -> Result<Self, RegistryError> {
        let bad = |message: &str| RegistryError::BadEndpoint {
            host: host.to_owned(),
            url: url.to_owned(),
            message: message.to_owned(),
        };
        let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (false, rest)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains(['@', '?', '#', ' ']) || path.contains(['?', '#', ' ']) {
            return Err(bad(
                "expected scheme://host[:port][/path], without user, query or fragment",
            ));
        }
        let prefix = path.trim_end_matches('/');
        Ok(Self {
            plain_http,
            authority: authority.to_owned(),
            prefix: prefix.to_owned(),
            role,
        })
    }
}

/// The endpoints to try for registry `domain`, in order: the configured `endpoint` alone if
/// set; else the `mirrors` in order, then the host itself.
pub(crate) fn endpoints_for(
    cfg: &RegistryConfig,
    domain: &str,
) -> Result<Vec<Endpoint>, RegistryError> {
    let host_cfg = cfg.hosts.get(domain);
    if let Some(url) = host_cfg.and_then(|h| h.endpoint.as_deref()) {
        return Ok(vec![Endpoint::parse(domain, url, Role::Redirect)?]);
    }
    let mut out = Vec::new();
    for url in host_cfg.map(|h| h.mirrors.as_slice()).unwrap_or_default() {
        out.push(Endpoint::parse(domain, url, Role::Mirror)?);
    }
    let authority = if domain == DOCKER_HUB_DOMAIN {
        DOCKER_HUB_REGISTRY
    } else {
        domain
    };
    out.push(Endpoint {
        plain_http: is_insecure(cfg, authority),
        authority: authority.to_owned(),
        prefix: String::new(),
        role: Role::Upstream,
    });
    Ok(out)
}

/// Plain HTTP for a registry host: listed in `insecure_hosts` (as `host:port`, or `host` for
/// any port), or loopback (`localhost`, 127.0.0.0/8, `[::1]`) as Docker does.
fn is_insecure(cfg: &RegistryConfig, authority: &str) -> bool {
    let host = host_of(authority);
    is_loopback(host)
        || cfg
            .insecure_hosts
            .iter()
            .any(|h| h == authority || h == host)
}

/// `host` of `host[:port]`, brackets kept for IPv6.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(i) => &authority[..=i],
            None => authority,
        };
    }
    authority.split(':').next().unwrap_or(authority)
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostConfig;

    fn cfg(hosts: &[(&str, HostConfig)], insecure: &[&str]) -> RegistryConfig {
        RegistryConfig {
            insecure_hosts: insecure.iter().map(|s| s.to_string()).collect(),
            hosts: hosts
                .iter()
                .map(|(h, c)| (h.to_string(), c.clone()))
                .collect(),
            ..Default::default()
        }
    }

    fn urls(cfg: &RegistryConfig, domain: &str) -> Vec<String> {
        endpoints_for(cfg, domain)
            .unwrap()
            .iter()
            .map(Endpoint::url)
            .collect()
    }

    #[test]
    fn order_and_schemes() {
        let c = cfg(
            &[
                (
                    "docker.io",
                    HostConfig {
                        mirrors: vec!["http://127.0.0.1:1".into(), "https://m.example/p/".into()],
                        endpoint: None,
                    },
                ),
                (
                    "quay.io",
                    HostConfig {
                        mirrors: vec![],
                        endpoint: Some("http://127.0.0.1:5000".into()),
                    },
                ),
            ],
            &["reg.internal", "other:5000"],
        );
        assert_eq!(
            urls(&c, "docker.io"),
            [
                "http://127.0.0.1:1",
                "https://m.example/p",
                "https://registry-1.docker.io"
            ]
        );
        assert_eq!(urls(&c, "quay.io"), ["http://127.0.0.1:5000"]);
        assert_eq!(urls(&c, "reg.internal:443"), ["http://reg.internal:443"]);
        assert_eq!(urls(&c, "other:5000"), ["http://other:5000"]);
        assert_eq!(urls(&c, "other:5001"), ["https://other:5001"]);
        assert_eq!(urls(&c, "localhost:5000"), ["http://localhost:5000"]);
        assert_eq!(urls(&c, "127.1.2.3:80"), ["http://127.1.2.3:80"]);
        assert_eq!(urls(&c, "[::1]:5000"), ["http://[::1]:5000"]);
        assert_eq!(urls(&c, "registry.k8s.io"), ["https://registry.k8s.io"]);
        let e = endpoints_for(&c, "docker.io").unwrap();
        assert_eq!(e[1].oci_registry(), "m.example/p");
        assert_eq!(e[0].role, Role::Mirror);
        assert_eq!(e[2].role, Role::Upstream);
    }

    #[test]
    fn bad_endpoint_is_named() {
        let c = cfg(
            &[(
                "x.io",
                HostConfig {
                    mirrors: vec!["http://u:p@h".into()],
                    endpoint: None,
                },
            )],
            &[],
        );
        let err = endpoints_for(&c, "x.io").unwrap_err();
        assert!(err.to_string().contains("http://u:p@h"), "{err}");
    }
}
