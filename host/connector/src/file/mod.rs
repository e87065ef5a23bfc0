//! The `filesystem` connector: files as source and sink in JSON lines, CSV or Parquet.
//!
//! Source options: `path` (a file, or a directory whose visible files are read in name
//! order; required), `format` (`json`, `csv`, `parquet`; required), `csv.header`
//! (`true` if the first line names the columns; default false), `csv.field-delimiter`
//! (default `,`), `on-error` (`fail`, the default: the job stops with an error naming
//! file and line; or `dead-letter`: the line goes to the dead-letter output and the job
//! goes on). Files are the splits: subtask `i` of `p` reads files `i, i+p, ...`.
//!
//! Sink options: `path` (a directory; required), `format`. Each subtask writes
//! `part-<subtask>.<ext>`, first under a hidden in-progress name, renamed when the input
//! ends, so readers never see half-written files.

mod sink;
mod source;

pub use sink::{FILE_SINK_OPTIONS, FileSink};
pub use source::{FILE_SOURCE_OPTIONS, FileSource};

use fungi_common::{FungiError, Result};

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Json,
    /// Comma (or other delimiter) separated values.
    Csv {
        /// Whether the first line is a header.
        header: bool,
        /// Field delimiter.
        delimiter: u8,
    },
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// Parses `format` and its `csv.*` options.
    pub fn from_options(options: &crate::options::Options) -> Result<Self> {
        let format = options.require("format")?;
        match format.to_ascii_lowercase().as_str() {
            "json" => Ok(FileFormat::Json),
            "parquet" => Ok(FileFormat::Parquet),
            "csv" => {
                let header = options.get_bool("csv.header")?.unwrap_or(false);
                let delimiter = crate::format::csv_delimiter("filesystem", options)?;
                Ok(FileFormat::Csv { header, delimiter })
            }
            other => Err(FungiError::Config(format!(
                "connector 'filesystem', option 'format': '{other}' is not json, csv or parquet"
            ))),
        }
    }

    /// File name extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Json => "json",
            FileFormat::Csv { .. } => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}
