//! Errors of the SQL layer.

use datafusion::error::DataFusionError;
use fungi_common::FungiError;

/// Result of the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// What can go wrong between SQL text and a running job.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement is valid SQL that cannot be planned (typo, wrong type, bad option).
    #[error("{0}")]
    Plan(String),
    /// Valid SQL that Fungi cannot run as a stream yet; says what to write instead.
    #[error("unsupported: {what}. {instead}")]
    Unsupported {
        /// What is not supported.
        what: String,
        /// What to write instead.
        instead: String,
    },
    /// An error from DataFusion's parser or planner.
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
    /// An error from the engine (connectors, operators).
    #[error(transparent)]
    Engine(#[from] FungiError),
}

impl SqlError {
    /// A stable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            SqlError::Plan(_) => "SQL_PLAN",
            SqlError::Unsupported { .. } => "SQL_UNSUPPORTED",
            SqlError::DataFusion(_) => "SQL_DATAFUSION",
            SqlError::Engine(e) => e.code(),
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>, instead: impl Into<String>) -> Self {
        SqlError::Unsupported {
            what: what.into(),
            instead: instead.into(),
        }
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        // Unwrap the context DataFusion adds so the message is the user's problem.
        SqlError::DataFusion(Box::new(e.find_root().to_owned_error()))
    }
}

impl From<arrow::error::ArrowError> for SqlError {
    fn from(e: arrow::error::ArrowError) -> Self {
        SqlError::Engine(FungiError::Arrow(e))
    }
}

impl From<SqlError> for FungiError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Engine(e) => e,
            other => FungiError::Plan(other.to_string()),
        }
    }
}

trait FindRoot {
    fn to_owned_error(&self) -> DataFusionError;
}

impl FindRoot for DataFusionError {
    fn to_owned_error(&self) -> DataFusionError {
        DataFusionError::Plan(self.strip_backtrace().trim().to_string())
    }
}
