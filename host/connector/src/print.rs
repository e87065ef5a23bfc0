//! The `stdout` sink: prints rows as JSON lines (default) or as a table.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int8Type, Schema};
use arrow::util::pretty::pretty_format_batches;
use fungi_common::changelog::{OP_COLUMN, RowKind};
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
        let changelog;
        let batch = match show_changes(batch)? {
            Some(b) => {
                changelog = b;
                &changelog
            }
            None => batch,
        };
        let mut buf = Vec::new();
        match self.format {
            PrintFormat::Json => {
                let mut w = crate::format::json_writer(&mut buf);
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

/// For a changelog batch, the rows with an `op` column (`+I`, `-U`, `+U`, `-D`) in
/// front instead of the internal change column.
fn show_changes(batch: &RecordBatch) -> Result<Option<RecordBatch>> {
    let schema = batch.schema();
    let n = schema.fields().len();
    if n == 0 || schema.field(n - 1).name() != OP_COLUMN {
        return Ok(None);
    }
    let codes = batch.column(n - 1).as_primitive::<Int8Type>();
    let ops: StringArray = codes
        .iter()
        .map(|c| c.and_then(RowKind::from_code).map(RowKind::short))
        .collect();
    let mut fields = vec![Arc::new(Field::new("op", DataType::Utf8, true))];
    fields.extend(schema.fields().iter().take(n - 1).cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ops)];
    columns.extend(batch.columns().iter().take(n - 1).cloned());
    Ok(Some(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?))
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
