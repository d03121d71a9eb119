//! Image references, parsed and normalised exactly like Docker and containerd do
//! (`distribution/reference.ParseNormalizedNamed` followed by `TagNameOnly`):
//!
//! | input                           | normalised                                   |
//! |---------------------------------|----------------------------------------------|
//! | `busybox`                       | `docker.io/library/busybox:latest`           |
//! | `user/img`                      | `docker.io/user/img:latest`                  |
//! | `docker.io/busybox`             | `docker.io/library/busybox:latest`           |
//! | `index.docker.io/user/img:1`    | `docker.io/user/img:1`                       |
//! | `localhost:5000/x`              | `localhost:5000/x:latest`                    |
//! | `registry.k8s.io/pause:3.10`    | unchanged                                    |
//! | `name@sha256:…`                 | `docker.io/library/name@sha256:…` (no tag)   |
//! | `name:tag@sha256:…`             | keeps both; the digest is what is pulled     |
//!
//! The first path component is a registry domain when it contains `.` or `:`, is `localhost`,
//! or has an upper-case letter (which a repository path may not); otherwise the reference is on
//! Docker Hub.

use std::fmt;
use std::str::FromStr;

use super::digest::Digest;
use crate::error::{Classify, ErrorKind};

/// Docker Hub's canonical domain.
pub const DOCKER_HUB_DOMAIN: &str = "docker.io";
const LEGACY_DOCKER_HUB_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// distribution/reference's `NameTotalLengthMax`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

#[derive(Debug, thiserror::Error)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Classify for ReferenceError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

/// A normalised image reference: `domain/repository[:tag][@digest]`. A reference without tag
/// and digest gets the tag `latest`; one with a digest keeps its tag only if it was given.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry host, with its port if any (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path without the domain (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `domain/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest pinned by the reference; when set it, not the tag, is what is pulled.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `name:tag`, if the reference has a tag (a repo tag in CRI terms).
    pub fn tagged_name(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{tag}", self.name()))
    }

    /// `name@digest` (a repo digest in CRI terms).
    pub fn digested_name(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }

    /// The same repository pinned to `digest`, keeping the tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// What to ask the registry's manifests endpoint for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ReferenceError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                "a 64-character hexadecimal string is an image id, not a repository name",
            ));
        }

        // name [":" tag] ["@" digest]
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .parse::<Digest>()
                    .map_err(|e| err(&format!("bad digest: {e}")))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (&rest[..split], Some(&rest[split + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(err(&format!(
                "bad tag `{tag}`: expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
            )));
        }
        if name.is_empty() {
            return Err(err("empty repository name"));
        }

        let (mut domain, mut repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DOCKER_HUB_DOMAIN.to_owned(), name.to_owned()),
        };
        if domain == LEGACY_DOCKER_HUB_DOMAIN {
            domain = DOCKER_HUB_DOMAIN.to_owned();
        }
        if domain == DOCKER_HUB_DOMAIN && !repository.contains('/') {
            repository = format!("{OFFICIAL_REPO_PREFIX}{repository}");
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err(&format!(
                "repository name `{repository}` must be lowercase"
            )));
        }
        validate_domain(&domain).map_err(|reason| err(&reason))?;
        for component in repository.split('/') {
            if !valid_path_component(component) {
                return Err(err(&format!(
                    "bad repository path component `{component}`: expected lowercase letters and \
                     digits, separated by `.`, `_`, `__` or dashes"
                )));
            }
        }
        if domain.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(err(&format!(
                "repository name is longer than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }

        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Self {
            domain,
            repository,
            tag,
            digest,
        })
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_LENGTH_MAX
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // one run of alphanumerics
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // one separator
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn validate_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad registry host `{domain}`: unclosed `[`"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("bad registry host `{domain}`: bad IPv6 address"));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("bad registry host `{domain}`")),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("bad port in registry host `{domain}`"));
    }
    if let Some(host) = host {
        let component_ok = |c: &str| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        };
        if !host.split('.').all(component_ok) {
            return Err(format!("bad registry host `{domain}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        s.parse::<Reference>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn normalises_like_docker() {
        let d = format!("sha256:{HEX}");
        let cases = [
            ("busybox", "docker.io/library/busybox:latest".to_owned()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_owned()),
            ("user/img", "docker.io/user/img:latest".to_owned()),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "index.docker.io/user/img:1",
                "docker.io/user/img:1".to_owned(),
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            ("localhost/x", "localhost/x:latest".to_owned()),
            ("localhost:5000/x", "localhost:5000/x:latest".to_owned()),
            (
                "127.0.0.1:5000/a/b:tag",
                "127.0.0.1:5000/a/b:tag".to_owned(),
            ),
            ("[::1]:5000/a:t", "[::1]:5000/a:t".to_owned()),
            (
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.10".to_owned(),
            ),
            ("a/b/c/d", "docker.io/a/b/c/d:latest".to_owned()),
            (
                "foo_bar.com:8080",
                "docker.io/library/foo_bar.com:8080".to_owned(),
            ),
            (
                "localhost:5000",
                "docker.io/library/localhost:5000".to_owned(),
            ),
            (
                "a-b__c.d---e",
                "docker.io/library/a-b__c.d---e:latest".to_owned(),
            ),
            (
                &format!("busybox@{d}"),
                format!("docker.io/library/busybox@{d}"),
            ),
            (
                &format!("busybox:1@{d}"),
                format!("docker.io/library/busybox:1@{d}"),
            ),
            (
                &format!("localhost:5000/x@{d}"),
                format!("localhost:5000/x@{d}"),
            ),
            ("x:Tag_1.2-b", "docker.io/library/x:Tag_1.2-b".to_owned()),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), want, "{input}");
        }
    }

    #[test]
    fn accessors() {
        let d: Digest = format!("sha256:{HEX}").parse().unwrap();
        let r: Reference = format!("127.0.0.1:5000/a/b:tag@{d}").parse().unwrap();
        assert_eq!(r.domain(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.name(), "127.0.0.1:5000/a/b");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest(), Some(&d));
        assert_eq!(r.tagged_name().unwrap(), "127.0.0.1:5000/a/b:tag");
        assert_eq!(r.digested_name(&d), format!("127.0.0.1:5000/a/b@{d}"));
        assert_eq!(r.manifest_reference(), d.to_string());

        let r: Reference = format!("busybox@{d}").parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.tagged_name(), None);
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.with_digest(d.clone()).digest(), Some(&d));
        // Round trip.
        assert_eq!(r.to_string().parse::<Reference>().unwrap(), r);
    }

    #[test]
    fn rejects_bad_references() {
        let bad = [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-tag",
            "busybox:.tag",
            "busybox:tag!",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "/busybox",
            "busybox/",
            "a//b",
            "a/-b",
            "a/b-",
            "a/b..c",
            "a/b___c",
            "localhost:x/b",
            "-bad.com/b",
            "[::1/b",
            "[zz]:5000/b",
            "héllo",
            HEX,
        ];
        for input in bad {
            let err = input.parse::<Reference>().unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{input}`")),
                "{input}: {err}"
            );
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(long_tag.parse::<Reference>().is_err());
        assert!(
            format!("a:{}", "t".repeat(128))
                .parse::<Reference>()
                .is_ok()
        );
        let long_name = format!("r.io/{}", "a".repeat(251));
        assert!(long_name.parse::<Reference>().is_err());
    }

    #[test]
    fn upper_case_first_component_is_a_domain() {
        // Like distribution/reference: `Foo/bar` is domain `Foo`, which is a valid host.
        let r: Reference = "Foo/bar".parse().unwrap();
        assert_eq!(r.domain(), "Foo");
        assert_eq!(r.repository(), "bar");
    }

    #[test]
    fn serde_round_trip() {
        let r: Reference = "busybox:1".parse().unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/busybox:1\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    }
}
