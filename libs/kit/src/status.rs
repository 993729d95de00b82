//! The one mapping from error kinds to gRPC status codes.

use std::fmt::Display;

use grodt_core::error::{Classify, ErrorKind};
use tonic::{Code, Status};

/// The gRPC code for an error kind. Every service answers errors through this.
pub fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A `Status` carrying the error's message and the code of its kind.
pub fn to_status<E: Classify + Display + ?Sized>(err: &E) -> Status {
    Status::new(code_for(err.kind()), err.to_string())
}

/// UNIMPLEMENTED for an RPC this build does not provide, saying why.
pub fn unimplemented(rpc: &str, why: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented: {why}"))
}

/// The label value used for a code in metrics: `OK` or the code's name (`InvalidArgument`).
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("order 7: quantity must be > 0")]
    struct BadQty;

    impl Classify for BadQty {
        fn kind(&self) -> ErrorKind {
            ErrorKind::InvalidArgument
        }
    }

    #[test]
    fn every_kind_maps_to_its_own_code() {
        let kinds = [
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::FailedPrecondition, Code::FailedPrecondition),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
            (ErrorKind::ResourceExhausted, Code::ResourceExhausted),
            (ErrorKind::Cancelled, Code::Cancelled),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Unimplemented, Code::Unimplemented),
            (ErrorKind::Internal, Code::Internal),
        ];
        for (kind, code) in kinds {
            assert_eq!(code_for(kind), code, "{kind:?}");
        }
    }

    #[test]
    fn to_status_keeps_the_message() {
        let status = to_status(&BadQty);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "order 7: quantity must be > 0");
    }

    #[test]
    fn unimplemented_says_which_rpc_and_why() {
        let status = unimplemented("RiskService/Halt", "manual halt arrives in issue 9");
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(
            status.message(),
            "RiskService/Halt is not implemented: manual halt arrives in issue 9"
        );
    }

    #[test]
    fn code_labels_follow_the_conventions() {
        assert_eq!(code_label(Code::Ok), "OK");
        assert_eq!(code_label(Code::InvalidArgument), "InvalidArgument");
        assert_eq!(code_label(Code::from_i32(5)), "NotFound");
    }
}
