//! The one place where domain errors become gRPC statuses. Handlers call [`to_status`] (or `?`
//! through [`ApiResult`]) and never pick codes themselves.

use tonic::{Code, Status};

use crate::error::{Classify, ErrorKind};

pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    }
}

/// Converts a domain error into a gRPC status whose message is the error and its causes.
pub fn to_status<E: Classify + ?Sized>(err: &E) -> Status {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // thiserror's `#[error("...: {source}")]` already includes the cause; don't repeat it.
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    let code = code_of(err.kind());
    if code == Code::Internal {
        tracing::error!(error = %message, "internal error");
    }
    Status::new(code, message)
}

/// Result type of service internals, converted once at the RPC boundary.
pub type ApiResult<T> = Result<T, Status>;

/// `.map_err(status)`-style helper for use with `?`.
pub fn status<E: Classify>(err: E) -> Status {
    to_status(&err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("image {0} not found")]
    struct Missing(String);
    impl Classify for Missing {
        fn kind(&self) -> ErrorKind {
            ErrorKind::NotFound
        }
    }

    #[test]
    fn kind_becomes_code() {
        let s = to_status(&Missing("x".into()));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "image x not found");
    }
}
