//! The shim's error type: what went wrong, in words a kubelet author can act
//! on, and which gRPC status it answers with.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The host refused (a mount, a plugin, runc): the message says which
    /// step and why.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl RuntimeError {
    pub fn not_found(msg: impl Into<String>) -> Self {
        RuntimeError::NotFound(msg.into())
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        RuntimeError::InvalidArgument(msg.into())
    }
    pub fn precondition(msg: impl Into<String>) -> Self {
        RuntimeError::FailedPrecondition(msg.into())
    }
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        RuntimeError::Internal(anyhow::anyhow!("{msg}"))
    }
}

impl From<RuntimeError> for Status {
    fn from(err: RuntimeError) -> Status {
        let code = match &err {
            RuntimeError::NotFound(_) => Code::NotFound,
            RuntimeError::InvalidArgument(_) => Code::InvalidArgument,
            RuntimeError::FailedPrecondition(_) => Code::FailedPrecondition,
            RuntimeError::Unavailable(_) => Code::Unavailable,
            RuntimeError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            RuntimeError::AlreadyExists(_) => Code::AlreadyExists,
            RuntimeError::Internal(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}
