//! [`RegistryError`] and how oci-client's errors map onto it.

use std::path::PathBuf;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::error::{Classify, ErrorKind};
use crate::image::digest::Digest;

/// Everything that can go wrong talking to a registry. `what` names the object and the
/// reference (`manifest of docker.io/library/busybox:latest`), `endpoint` the URL asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry credentials file {path}: {message}")]
    CredentialsFile { path: PathBuf, message: String },
    #[error("bad registry credentials: {0}")]
    BadCredentials(String),
    #[error("registry.hosts.\"{host}\": bad endpoint `{url}`: {message}")]
    BadEndpoint {
        host: String,
        url: String,
        message: String,
    },
    #[error("{what}: not found at {endpoint}: {message}")]
    NotFound {
        what: String,
        endpoint: String,
        message: String,
    },
    #[error("{what}: {endpoint} requires authentication or rejected the credentials: {message}")]
    Unauthenticated {
        what: String,
        endpoint: String,
        message: String,
    },
    #[error("{what}: access denied by {endpoint}: {message}")]
    PermissionDenied {
        what: String,
        endpoint: String,
        message: String,
    },
    #[error("{what}: registry {endpoint} unavailable: {message}")]
    Unavailable {
        what: String,
        endpoint: String,
        message: String,
    },
    #[error("{what}: bad manifest from {endpoint}: {message}")]
    BadManifest {
        what: String,
        endpoint: String,
        message: String,
    },
    #[error(
        "{reference}: schema1 manifests are not supported (served by {endpoint}); \
         push the image again with a current tool"
    )]
    Schema1 { reference: String, endpoint: String },
    #[error(
        "{reference}: no linux/{arch} image in the index from {endpoint}; it has: {platforms}",
        arch = super::manifest::native_arch()
    )]
    NoPlatform {
        reference: String,
        endpoint: String,
        platforms: String,
    },
    #[error("{what} from {endpoint}: content digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        endpoint: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} from {endpoint}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        endpoint: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what}: no answer from {endpoint} within {seconds} s")]
    TimedOut {
        what: String,
        endpoint: String,
        seconds: u64,
    },
}

impl Classify for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::CredentialsFile { .. } => ErrorKind::FailedPrecondition,
            RegistryError::BadCredentials(_) | RegistryError::BadEndpoint { .. } => {
                ErrorKind::InvalidArgument
            }
            RegistryError::NotFound { .. } | RegistryError::NoPlatform { .. } => {
                ErrorKind::NotFound
            }
            RegistryError::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            RegistryError::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            RegistryError::BadManifest { .. } | RegistryError::Schema1 { .. } => {
                ErrorKind::InvalidArgument
            }
            // Bad or short content and silence may be a passing fault: retrying may help.
            RegistryError::Unavailable { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::SizeMismatch { .. }
            | RegistryError::TimedOut { .. } => ErrorKind::Unavailable,
        }
    }
}

/// An error with its whole `source()` chain, which is where reqwest keeps the useful part
/// ("connection refused").
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Classifies an oci-client error for `what` at `endpoint`.
pub(crate) fn from_oci(err: OciDistributionError, what: &str, endpoint: &str) -> RegistryError {
    use OciDistributionError as E;
    let what = what.to_owned();
    let endpoint = endpoint.to_owned();
    let message = chain(&err);
    match &err {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => {
            RegistryError::Unauthenticated {
                what,
                endpoint,
                message,
            }
        }
        E::RegistryError { envelope, .. } => {
            let code = envelope.errors.first().map(|e| &e.code);
            match code {
                Some(
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound,
                ) => RegistryError::NotFound {
                    what,
                    endpoint,
                    message,
                },
                Some(OciErrorCode::Unauthorized) => RegistryError::Unauthenticated {
                    what,
                    endpoint,
                    message,
                },
                Some(OciErrorCode::Denied) => RegistryError::PermissionDenied {
                    what,
                    endpoint,
                    message,
                },
                Some(OciErrorCode::NameInvalid | OciErrorCode::TagInvalid) => {
                    RegistryError::BadManifest {
                        what,
                        endpoint,
                        message,
                    }
                }
                _ => RegistryError::Unavailable {
                    what,
                    endpoint,
                    message,
                },
            }
        }
        E::ServerError { code, .. } => match code {
            404 => RegistryError::NotFound {
                what,
                endpoint,
                message,
            },
            401 => RegistryError::Unauthenticated {
                what,
                endpoint,
                message,
            },
            403 => RegistryError::PermissionDenied {
                what,
                endpoint,
                message,
            },
            _ => RegistryError::Unavailable {
                what,
                endpoint,
                message,
            },
        },
        E::ManifestParsingError(_)
        | E::VersionedParsingError(_)
        | E::UnsupportedMediaTypeError(_)
        | E::UnsupportedSchemaVersionError(_)
        | E::ManifestEncodingError(_) => RegistryError::BadManifest {
            what,
            endpoint,
            message,
        },
        // Connection failures, TLS errors, digest mismatches, spec violations: the registry
        // (or the way to it) misbehaved.
        _ => RegistryError::Unavailable {
            what,
            endpoint,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let e = from_oci(
            OciDistributionError::UnauthorizedError { url: "u".into() },
            "manifest of x",
            "http://h",
        );
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert!(e.to_string().contains("manifest of x"), "{e}");
        assert!(e.to_string().contains("http://h"), "{e}");
        let e = from_oci(
            OciDistributionError::ServerError {
                code: 503,
                url: "u".into(),
                message: "m".into(),
            },
            "w",
            "e",
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let envelope: oci_client::errors::OciEnvelope =
            serde_json::from_str(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}"#)
                .unwrap();
        let e = from_oci(
            OciDistributionError::RegistryError {
                envelope,
                url: "u".into(),
            },
            "w",
            "e",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
