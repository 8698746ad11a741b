//! Rill's error type: a gRPC-style status [`Code`], a message, and where known the node and
//! op the error is about. Library crates return [`Result`]; only binaries use `anyhow`.
//!
//! Invariant: the codes are exactly gRPC's canonical codes, so an [`Error`] maps one to one
//! onto a gRPC status.

use std::fmt;

/// gRPC's canonical status codes (the subset TensorFlow uses, with gRPC's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A failure with a status code, a message and, where there is one, the node and op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub code: Code,
    pub message: String,
    pub node: Option<String>,
    pub op: Option<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        match (&self.node, &self.op) {
            (Some(node), Some(op)) => write!(f, " (node '{node}', op {op})"),
            (Some(node), None) => write!(f, " (node '{node}')"),
            (None, Some(op)) => write!(f, " (op {op})"),
            (None, None) => Ok(()),
        }
    }
}

/// `Result` with Rill's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            node: None,
            op: None,
        }
    }

    /// Attaches a node name and op, unless the error already names a node.
    pub fn at_node(mut self, node: &str, op: &str) -> Self {
        if self.node.is_none() {
            self.node = Some(node.to_string());
            self.op = Some(op.to_string());
        }
        self
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::Unimplemented, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, message)
    }
    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::new(Code::OutOfRange, message)
    }
}

/// Returns early with an `InvalidArgument` error built from a format string.
#[macro_export]
macro_rules! invalid_arg {
    ($($arg:tt)*) => {
        return Err($crate::Error::invalid_argument(format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_node_and_op() {
        let e = Error::invalid_argument("bad").at_node("layer/MatMul", "MatMul");
        assert_eq!(
            e.to_string(),
            "InvalidArgument: bad (node 'layer/MatMul', op MatMul)"
        );
        let e = e.at_node("other", "Add");
        assert_eq!(e.node.as_deref(), Some("layer/MatMul"));
    }
}
