//! The error type shared by the host crates.
//!
//! Each variant has a stable [`FungiError::code`] that API clients and tests can match on;
//! the message carries the context (file and line, operator, option name) a user needs to
//! fix the problem.

use arrow::error::ArrowError;

/// Result with [`FungiError`].
pub type Result<T, E = FungiError> = std::result::Result<T, E>;

/// Errors raised by the Fungi host.
#[derive(Debug, thiserror::Error)]
pub enum FungiError {
    /// An Arrow kernel or schema operation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// An I/O operation failed; `context` names the file or resource.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration or option value is invalid or missing.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A job graph or pipeline is malformed (unknown column, cycle, bad parallelism...).
    #[error("invalid plan: {0}")]
    Plan(String),
    /// A record could not be decoded; names the source, the position and the reason.
    #[error("{source_name}:{line}: {reason}")]
    Decode {
        /// The file or topic the record came from.
        source_name: String,
        /// 1-based line (or record) number within that source.
        line: u64,
        /// What is wrong with the record.
        reason: String,
    },
    /// An external system (a broker, a service) refused a request or could not be
    /// reached; the message names it.
    #[error("{0}")]
    Connector(String),
    /// State could not be read, written or restored.
    #[error("state: {0}")]
    State(String),
    /// An operator failed while processing data.
    #[error("operator '{operator}' failed: {message}")]
    Operator {
        /// Name of the failing operator.
        operator: String,
        /// What went wrong.
        message: String,
    },
    /// The job was cancelled by the user.
    #[error("job cancelled")]
    Cancelled,
    /// An internal invariant was broken: a bug in Fungi.
    #[error("internal error: {0}")]
    Internal(String),
}

impl FungiError {
    /// A stable, machine-readable code for the error class.
    pub fn code(&self) -> &'static str {
        match self {
            FungiError::Arrow(_) => "ARROW",
            FungiError::Io { .. } => "IO",
            FungiError::Config(_) => "CONFIG",
            FungiError::Plan(_) => "PLAN",
            FungiError::Decode { .. } => "DECODE",
            FungiError::Connector(_) => "CONNECTOR",
            FungiError::State(_) => "STATE",
            FungiError::Operator { .. } => "OPERATOR",
            FungiError::Cancelled => "CANCELLED",
            FungiError::Internal(_) => "INTERNAL",
        }
    }

    /// Wraps an I/O error with the name of the resource it concerns.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        FungiError::Io {
            context: context.into(),
            source,
        }
    }
}
