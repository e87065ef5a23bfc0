//! Writing files.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::csv::WriterBuilder as CsvWriterBuilder;
use arrow::json::LineDelimitedWriter;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::{Operator, OperatorContext, Output};
use parquet::arrow::ArrowWriter;

use super::FileFormat;
use crate::options::Options;

/// Options understood by [`FileSink::factory`].
pub const FILE_SINK_OPTIONS: &[&str] = &["path", "format", "csv.header", "csv.field-delimiter"];

enum Writer {
    Json(LineDelimitedWriter<BufWriter<File>>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
    Parquet(ArrowWriter<File>),
}

/// Writes each subtask's rows to its own file in the target directory.
pub struct FileSink {
    dir: PathBuf,
    format: FileFormat,
    writer: Option<Writer>,
    in_progress: PathBuf,
    final_path: PathBuf,
}

impl FileSink {
    /// A factory from `path` and `format` options.
    pub fn factory(options: &Options) -> Result<OperatorFactory> {
        let dir = PathBuf::from(options.require("path")?);
        let format = FileFormat::from_options(options)?;
        options.check_all_used(FILE_SINK_OPTIONS)?;
        Ok(Arc::new(move |_| {
            Ok(Box::new(FileSink {
                dir: dir.clone(),
                format,
                writer: None,
                in_progress: PathBuf::new(),
                final_path: PathBuf::new(),
            }) as Box<dyn Operator>)
        }))
    }

    fn io(&self, e: std::io::Error) -> FungiError {
        FungiError::io(self.in_progress.display().to_string(), e)
    }

    fn writer(&mut self, batch: &RecordBatch) -> Result<&mut Writer> {
        if self.writer.is_none() {
            let file = File::create(&self.in_progress).map_err(|e| self.io(e))?;
            self.writer = Some(match self.format {
                FileFormat::Json => Writer::Json(LineDelimitedWriter::new(BufWriter::new(file))),
                FileFormat::Csv { header, delimiter } => Writer::Csv(
                    CsvWriterBuilder::new()
                        .with_header(header)
                        .with_delimiter(delimiter)
                        .build(BufWriter::new(file)),
                ),
                FileFormat::Parquet => {
                    Writer::Parquet(ArrowWriter::try_new(file, batch.schema(), None).map_err(
                        |e| FungiError::Config(format!("{}: {e}", self.in_progress.display())),
                    )?)
                }
            });
        }
        Ok(self.writer.as_mut().expect("just created"))
    }
}

impl Operator for FileSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| FungiError::io(self.dir.display().to_string(), e))?;
        let name = format!("part-{}.{}", ctx.subtask.index, self.format.extension());
        self.in_progress = self.dir.join(format!(".{name}.inprogress"));
        self.final_path = self.dir.join(name);
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let path = self.in_progress.display().to_string();
        match self.writer(&batch)? {
            Writer::Json(w) => w.write(&batch)?,
            Writer::Csv(w) => w.write(&batch)?,
            Writer::Parquet(w) => w
                .write(&batch)
                .map_err(|e| FungiError::Config(format!("{path}: {e}")))?,
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        let path = self.in_progress.display().to_string();
        match self.writer.take() {
            None => return Ok(()),
            Some(Writer::Json(mut w)) => {
                w.finish()?;
                std::io::Write::flush(&mut w.into_inner()).map_err(|e| self.io(e))?;
            }
            Some(Writer::Csv(w)) => {
                std::io::Write::flush(&mut w.into_inner()).map_err(|e| self.io(e))?;
            }
            Some(Writer::Parquet(w)) => {
                w.close()
                    .map_err(|e| FungiError::Config(format!("{path}: {e}")))?;
            }
        }
        std::fs::rename(&self.in_progress, &self.final_path).map_err(|e| self.io(e))
    }
}
