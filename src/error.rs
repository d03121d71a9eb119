//! Error classification shared by every module. Each module has its own `thiserror` enum and
//! says which [`ErrorKind`] each variant is; `server::status` turns that into a gRPC code in one
//! place, so handlers never pick codes themselves.

/// What went wrong, from the caller's point of view. Maps one-to-one onto gRPC codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed (bad reference, bad field combination).
    InvalidArgument,
    /// The object named does not exist.
    NotFound,
    /// An object with that name already exists.
    AlreadyExists,
    /// The object is in the wrong state for this call (e.g. image in use).
    FailedPrecondition,
    /// The registry refused our credentials.
    PermissionDenied,
    Unauthenticated,
    /// A remote (registry) or local resource is temporarily unavailable.
    Unavailable,
    /// Too many outstanding requests of some kind.
    ResourceExhausted,
    /// The call was cancelled or the daemon is shutting down.
    Cancelled,
    DeadlineExceeded,
    /// Not implemented by this runtime.
    Unimplemented,
    /// A bug or an unexpected failure of the host.
    Internal,
}

/// Implemented by every module's error enum.
pub trait Classify: std::error::Error {
    fn kind(&self) -> ErrorKind;
}
