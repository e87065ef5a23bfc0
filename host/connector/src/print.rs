//! The `stdout` sink: prints rows as JSON lines (default) or as a table.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::json::LineDelimitedWriter;
use arrow::util::pretty::pretty_format_batches;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::{Operator, Output};

use crate::options::Options;

/// How the stdout sink renders rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintFormat {
    /// One JSON object per line.
    Json,
    /// An ASCII table per batch.
    Table,
}

/// Prints every batch to standard output (one lock per batch, not per row).
#[derive(Debug, Clone)]
pub struct PrintSink {
    format: PrintFormat,
    prefix: Option<String>,
}

/// Options understood by [`PrintSink::factory`].
pub const PRINT_OPTIONS: &[&str] = &["format", "print-identifier"];

impl PrintSink {
    /// A factory from options `format` (`json` or `table`) and `print-identifier` (a
    /// prefix for each line, as Flink's print connector).
    pub fn factory(options: &Options) -> Result<OperatorFactory> {
        let format = match options.get("format").unwrap_or("json") {
            "json" => PrintFormat::Json,
            "table" => PrintFormat::Table,
            other => {
                return Err(FungiError::Config(format!(
                    "connector 'stdout', option 'format': '{other}' is not json or table"
                )));
            }
        };
        let prefix = options.get("print-identifier").map(str::to_string);
        options.check_all_used(PRINT_OPTIONS)?;
        let sink = PrintSink { format, prefix };
        Ok(Arc::new(move |_| {
            Ok(Box::new(sink.clone()) as Box<dyn Operator>)
        }))
    }

    fn render(&self, batch: &RecordBatch) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        match self.format {
            PrintFormat::Json => {
                let mut w = LineDelimitedWriter::new(&mut buf);
                w.write(batch)?;
                w.finish()?;
            }
            PrintFormat::Table => {
                writeln!(
                    buf,
                    "{}",
                    pretty_format_batches(std::slice::from_ref(batch))?
                )
                .map_err(|e| FungiError::io("stdout", e))?;
            }
        }
        if let Some(p) = &self.prefix {
            let text = String::from_utf8_lossy(&buf).into_owned();
            buf.clear();
            for line in text.lines() {
                let _ = writeln!(buf, "{p}> {line}");
            }
        }
        Ok(buf)
    }
}

impl Operator for PrintSink {
    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let bytes = self.render(&batch)?;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&bytes)
            .map_err(|e| FungiError::io("stdout", e))?;
        stdout.flush().map_err(|e| FungiError::io("stdout", e))
    }
}
