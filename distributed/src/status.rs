//! Rill's [`Error`] and gRPC's `Status`, one to one: the codes are the same numbers, and
//! the node and op an error names travel in the status metadata (`rill-node`,
//! `rill-op`), so an error from a remote task reads exactly as a local one.

use rill_graph::{Code, Error};
use tonic::metadata::MetadataValue;
use tonic::Status;

const NODE_KEY: &str = "rill-node";
const OP_KEY: &str = "rill-op";

/// The gRPC status of `e`.
pub fn to_status(e: &Error) -> Status {
    let mut status = Status::new(tonic::Code::from_i32(e.code as i32), e.message.clone());
    for (key, value) in [(NODE_KEY, &e.node), (OP_KEY, &e.op)] {
        if let Some(v) = value
            .as_ref()
            .and_then(|v| MetadataValue::try_from(v.as_str()).ok())
        {
            status.metadata_mut().insert(key, v);
        }
    }
    status
}

/// The code of a gRPC status as Rill's.
pub fn code_of(code: tonic::Code) -> Code {
    match code {
        tonic::Code::Cancelled => Code::Cancelled,
        tonic::Code::InvalidArgument => Code::InvalidArgument,
        tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
        tonic::Code::NotFound => Code::NotFound,
        tonic::Code::AlreadyExists => Code::AlreadyExists,
        tonic::Code::PermissionDenied => Code::PermissionDenied,
        tonic::Code::ResourceExhausted => Code::ResourceExhausted,
        tonic::Code::FailedPrecondition => Code::FailedPrecondition,
        tonic::Code::Aborted => Code::Aborted,
        tonic::Code::OutOfRange => Code::OutOfRange,
        tonic::Code::Unimplemented => Code::Unimplemented,
        tonic::Code::Internal => Code::Internal,
        tonic::Code::Unavailable => Code::Unavailable,
        tonic::Code::DataLoss => Code::DataLoss,
        tonic::Code::Unauthenticated => Code::Unauthenticated,
        tonic::Code::Ok | tonic::Code::Unknown => Code::Unknown,
    }
}

/// The error a status from `task` stands for. Transport failures (the task is gone or
/// unreachable) are Unavailable naming the task.
pub fn from_status(status: &Status, task: &str) -> Error {
    let mut code = code_of(status.code());
    // A connection that broke mid-call (the peer died, or would not speak our protocol)
    // surfaces as Unknown or Cancelled with the transport error as its source.
    let transport = std::error::Error::source(status).is_some();
    if transport && matches!(code, Code::Unknown | Code::Cancelled) {
        code = Code::Unavailable;
    }
    let message = match code {
        Code::Unavailable => format!("task {task} is unavailable: {}", status.message()),
        Code::DeadlineExceeded => {
            format!("task {task} did not answer in time: {}", status.message())
        }
        _ => status.message().to_string(),
    };
    let mut e = Error::new(code, message);
    let get = |key| {
        status
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    e.node = get(NODE_KEY);
    e.op = get(OP_KEY);
    e
}

/// A code Rill's errors carry, from its number (an AbortStep's), Unknown if out of range.
pub fn code_from_i32(code: i32) -> Code {
    code_of(tonic::Code::from_i32(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_a_status() {
        let e = Error::invalid_argument("bad shape").at_node("x", "Add");
        let back = from_status(&to_status(&e), "/job:worker/replica:0/task:0");
        assert_eq!(back, e);
        let gone = from_status(&Status::unavailable("connection reset"), "/job:ps/task:0");
        assert_eq!(gone.code, Code::Unavailable);
        assert!(gone.message.contains("/job:ps/task:0"));
    }
}
