//! Error classification shared by every library, so that one function in the
//! service kit maps errors to gRPC codes.

/// What kind of failure an error is, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is malformed: a field is missing, out of range or unparsable.
    InvalidArgument,
    /// The request is well formed but the system is not in a state to accept it.
    FailedPrecondition,
    /// The named thing does not exist.
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// A limit (size, rate, back-pressure) was hit; retry later.
    ResourceExhausted,
    /// The operation was cancelled.
    Cancelled,
    /// A dependency (database, bus, peer) is unreachable; retry later.
    Unavailable,
    /// Not provided by this version or build.
    Unimplemented,
    /// A bug or an invariant broken inside the system.
    Internal,
}

/// Implemented by every library error enum.
pub trait Classify {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}
