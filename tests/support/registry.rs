//! A real registry process for tests: Debian's `docker-registry` (distribution 2.8).
//!
//! Plain HTTP on 127.0.0.1 (clients treat loopback registries as insecure, as Docker does).
//! With [`RegistryOptions::htpasswd`] it demands HTTP basic auth: distribution accepts
//! htpasswd without TLS (it only logs a warning), so no certificate is involved, and a client
//! sees `401` with `WWW-Authenticate: Basic realm="strata-test"`. For the bearer-token flow put
//! a [`super::proxy::Proxy`] in front of it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata::image::digest::Digest;

const BINARY: &str = "/usr/bin/docker-registry";

/// How to start a [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Require HTTP basic auth with this user and password (htpasswd file made with
    /// `htpasswd -Bbn`, from apache2-utils).
    pub htpasswd: Option<(String, String)>,
}

impl RegistryOptions {
    pub fn with_htpasswd(user: &str, password: &str) -> Self {
        Self {
            htpasswd: Some((user.to_owned(), password.to_owned())),
        }
    }
}

/// A running registry; killed (and its storage removed) on drop.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addr: String,
    credentials: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry on a free port and waits until `/v2/` answers. Panics (with the
    /// registry's log) if it cannot.
    pub fn start(opts: RegistryOptions) -> Self {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: apt-get install docker-registry"
        );
        let htpasswd = opts.htpasswd.as_ref().map(|(user, password)| {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap_or_else(|e| {
                    panic!("running htpasswd ({e}): apt-get install apache2-utils")
                });
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            out.stdout
        });
        // The port is found free and then handed over, so another process may take it in
        // between: retry a few times.
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("strata-registry-")
                .tempdir()
                .expect("creating the registry's temporary directory");
            let auth = match &htpasswd {
                None => String::new(),
                Some(content) => {
                    let file = dir.path().join("htpasswd");
                    std::fs::write(&file, content).unwrap();
                    format!(
                        "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                        file.display()
                    )
                }
            };
            let port = super::free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: strata-test-secret\n\
                 {auth}",
                storage = dir.path().join("storage").display(),
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(BINARY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {BINARY}: {e}"));
            let mut registry = Registry {
                child: Some(child),
                dir,
                addr,
                credentials: opts.htpasswd.clone(),
            };
            match registry.wait_ready() {
                Ok(()) => return registry,
                Err(log) => last_log = log, // dropping `registry` kills it and removes its dir
            }
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// Polls `/v2/` until it answers 200 or 401; on failure returns the log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            if let Ok(status) = http_status(&self.addr, "/v2/")
                && (status == 200 || status == 401)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("/v2/ did not answer within 20 s\n{}", self.log()))
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT/<name>`, e.g. `reference("app:1")`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// The htpasswd user and password, if the registry requires them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's temporary directory (config, log, `storage/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the registry logged so far (startup, access log, errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry keeps the bytes of blob `digest`.
    pub fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .join("data")
    }

    /// Replaces the stored bytes of blob `digest` (which must have been pushed): the registry
    /// then serves `bytes` under that digest, with their length as `Content-Length`. Bytes
    /// of the same length give a digest mismatch at the end of the stream; fewer give a short
    /// blob (a size mismatch).
    pub fn corrupt_blob(&self, digest: &Digest, bytes: &[u8]) {
        let path = self.blob_data_path(digest);
        assert!(
            path.exists(),
            "blob {digest} was not pushed ({})",
            path.display()
        );
        std::fs::write(&path, bytes).unwrap();
    }

    /// Kills the registry (and waits for it). Its address then refuses connections: a
    /// "registry that is down". Idempotent; drop does it too.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bare HTTP/1.0 GET; returns the status code.
pub fn http_status(addr: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = stream.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))
}
