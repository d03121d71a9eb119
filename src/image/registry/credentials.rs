//! Registry credentials: from a CRI `AuthConfig`, and from a Docker `config.json`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;

use super::RegistryError;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An identity or registry token, sent as `Authorization: Bearer <token>`.
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
        }
    }
}

impl Credentials {
    /// From CRI AuthConfig fields: username/password, or `auth` = base64("user:pass"), or
    /// identity_token / registry_token. None if all empty.
    ///
    /// The tokens are sent as they are as bearer tokens; an identity token is not exchanged for
    /// an access token at the registry's token endpoint first.
    pub fn from_auth_config(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Option<Self>, RegistryError> {
        if !username.is_empty() {
            return Ok(Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        if !auth.is_empty() {
            return decode_auth(auth)
                .map(Some)
                .map_err(|message| RegistryError::BadCredentials(format!("`auth`: {message}")));
        }
        if !registry_token.is_empty() {
            return Ok(Some(Credentials::Bearer(registry_token.to_owned())));
        }
        if !identity_token.is_empty() {
            return Ok(Some(Credentials::Bearer(identity_token.to_owned())));
        }
        Ok(None)
    }

    pub(crate) fn to_oci(c: Option<&Credentials>) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match c {
            None => RegistryAuth::Anonymous,
            Some(Credentials::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(Credentials::Bearer(token)) => RegistryAuth::Bearer(token.clone()),
        }
    }
}

/// `base64("user:password")`, as in Docker's config.json and CRI's `auth`.
fn decode_auth(auth: &str) -> Result<Credentials, String> {
    let auth = auth.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth))
        .map_err(|e| format!("not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 once decoded".to_owned())?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| "expected base64 of `username:password`".to_owned())?;
    if username.is_empty() {
        return Err("empty username".into());
    }
    Ok(Credentials::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// Docker's `ConvertToHostname`: `https://index.docker.io/v1/` -> `index.docker.io`.
fn key_to_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or_default().to_owned()
}

/// The credentials of a Docker `config.json` (`{"auths": {"host": {"auth": "..."}}}`), by
/// host.
#[derive(Debug, Default)]
pub(crate) struct CredentialsFile {
    by_host: HashMap<String, Credentials>,
}

impl CredentialsFile {
    pub(crate) fn load(path: &Path) -> Result<Self, RegistryError> {
        let bad = |message: String| RegistryError::CredentialsFile {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Self::parse(&text).map_err(bad)
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: HashMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            auth: String,
            #[serde(default)]
            username: String,
            #[serde(default)]
            password: String,
            #[serde(default)]
            identitytoken: String,
            #[serde(default)]
            registrytoken: String,
        }
        let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut by_host = HashMap::new();
        for (key, e) in file.auths {
            let creds = Credentials::from_auth_config(
                &e.username,
                &e.password,
                &e.auth,
                &e.identitytoken,
                &e.registrytoken,
            )
            .map_err(|err| format!("auths.\"{key}\": {err}"))?;
            if let Some(creds) = creds {
                by_host.insert(key_to_host(&key), creds);
            }
        }
        Ok(Self { by_host })
    }

    /// The credentials for registry `host` (`host[:port]`); Docker Hub's are also found under
    /// `index.docker.io` (the `https://index.docker.io/v1/` key Docker writes) and
    /// `registry-1.docker.io`.
    pub(crate) fn get(&self, host: &str) -> Option<&Credentials> {
        if let Some(c) = self.by_host.get(host) {
            return Some(c);
        }
        if matches!(
            host,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        ) {
            return ["docker.io", "index.docker.io", "registry-1.docker.io"]
                .iter()
                .find_map(|h| self.by_host.get(*h));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn auth_config() {
        assert_eq!(
            Credentials::from_auth_config("", "", "", "", "").unwrap(),
            None
        );
        assert_eq!(
            Credentials::from_auth_config("u", "p", "", "", "").unwrap(),
            Some(basic("u", "p"))
        );
        // base64("user:pa:ss")
        assert_eq!(
            Credentials::from_auth_config("", "", "dXNlcjpwYTpzcw==", "", "").unwrap(),
            Some(basic("user", "pa:ss"))
        );
        assert_eq!(
            Credentials::from_auth_config("", "", "", "idtok", "").unwrap(),
            Some(Credentials::Bearer("idtok".into()))
        );
        assert_eq!(
            Credentials::from_auth_config("", "", "", "", "regtok").unwrap(),
            Some(Credentials::Bearer("regtok".into()))
        );
        let err = Credentials::from_auth_config("", "", "!!", "", "").unwrap_err();
        assert_eq!(
            crate::error::Classify::kind(&err),
            crate::error::ErrorKind::InvalidArgument
        );
        // base64("nocolon")
        assert!(Credentials::from_auth_config("", "", "bm9jb2xvbg==", "", "").is_err());
        assert!(!format!("{:?}", basic("u", "secret")).contains("secret"));
    }

    #[test]
    fn docker_config_json() {
        let f = CredentialsFile::parse(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOmh1YnBhc3M="},
                "127.0.0.1:5000": {"username": "a", "password": "b"},
                "http://reg.example.com/v2/": {"auth": "cjpz"},
                "empty.example.com": {}
            }, "credsStore": "desktop"}"#,
        )
        .unwrap();
        assert_eq!(f.get("docker.io"), Some(&basic("hub", "hubpass")));
        assert_eq!(f.get("127.0.0.1:5000"), Some(&basic("a", "b")));
        assert_eq!(f.get("reg.example.com"), Some(&basic("r", "s")));
        assert_eq!(f.get("empty.example.com"), None);
        assert_eq!(f.get("127.0.0.1:5001"), None);
        let err = CredentialsFile::parse(r#"{"auths": {"h": {"auth": "%%"}}}"#).unwrap_err();
        assert!(err.contains("auths.\"h\""), "{err}");
    }
}
