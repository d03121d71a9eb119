//! A minimal plain-HTTP client for the loopback test registry: just enough to
//! ask which manifest digest a tag points at (Docker-Content-Digest), so specs
//! can check the runtime's repo_digests against the registry's own answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything a registry may serve for a tag; the harness pushes OCI indexes.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

const TIMEOUT: Duration = Duration::from_secs(15);

/// The digest (`sha256:...`) of the manifest that `repo:reference` resolves to
/// on the registry at `addr` (`host:port`, plain HTTP).
pub async fn manifest_digest(addr: &str, repo: &str, reference: &str) -> Result<String, String> {
    let request = format!(
        "HEAD /v2/{repo}/manifests/{reference} HTTP/1.1\r\nHost: {addr}\r\nAccept: {ACCEPT}\r\n\
         User-Agent: strata-conformance\r\nConnection: close\r\n\r\n"
    );
    let response = tokio::time::timeout(TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        // HEAD has no body and we asked for Connection: close, so read to EOF.
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    })
    .await
    .map_err(|_| format!("registry {addr}: HEAD {repo}:{reference} timed out"))?
    .map_err(|e| format!("registry {addr}: HEAD {repo}:{reference}: {e}"))?;
    parse_digest(&String::from_utf8_lossy(&response))
        .map_err(|e| format!("registry {addr}: HEAD {repo}:{reference}: {e}"))
}

fn parse_digest(response: &str) -> Result<String, String> {
    let mut lines = response.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("status {status_line:?}"));
    }
    lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("docker-content-digest"))
        .map(|(_, v)| v.trim().to_owned())
        .filter(|d| d.starts_with("sha256:"))
        .ok_or_else(|| "no Docker-Content-Digest header".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_digest_header() {
        let resp =
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\ndocker-content-digest: sha256:abc\r\n\r\n";
        assert_eq!(parse_digest(resp), Ok("sha256:abc".to_owned()));
        assert!(parse_digest("HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_digest("HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
