//! Reading files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::kernels::cast;
use arrow::datatypes::SchemaRef;
use fungi_common::ids::CheckpointId;
use fungi_common::ids::SubtaskInfo;
use fungi_common::{FungiError, Result};
use fungi_execution::RestoredState;
use fungi_execution::dead_letter::DeadLetterQueue;
use fungi_execution::source::{Source, SourceContext, SourceEvent, SourceFactory};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde::{Deserialize, Serialize};

use super::FileFormat;
use crate::format::{RecordFormat, decode_lines};
use crate::options::Options;
use fungi_reliability::OnFailure;

/// Options understood by [`FileSource::factory`].
pub const FILE_SOURCE_OPTIONS: &[&str] = &[
    "path",
    "format",
    "csv.header",
    "csv.field-delimiter",
    "on-error",
];

/// Reads the files of its splits one after the other.
///
/// Each file is a split; checkpoints save how far each one was read (byte offset and
/// line for text formats, batches for Parquet), so a restore — at the same or another
/// parallelism — resumes every file where it stopped.
pub struct FileSource {
    schema: SchemaRef,
    format: FileFormat,
    on_error: OnFailure,
    files: std::vec::IntoIter<(u32, PathBuf)>,
    /// The splits this subtask owns.
    owned: Vec<u32>,
    /// How far each owned split has been read (absent: not started).
    progress: BTreeMap<u32, SplitProgress>,
    current: Option<Open>,
    batch_size: usize,
    dead_letters: Option<(Arc<DeadLetterQueue>, String)>,
}

/// How far a file has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum SplitProgress {
    /// Read to the end.
    Done,
    /// Read up to byte `offset`; the next line is number `line`; `batches` Parquet
    /// batches were emitted.
    At {
        offset: u64,
        line: u64,
        batches: u64,
    },
}

enum Open {
    Lines {
        split: u32,
        path: PathBuf,
        reader: BufReader<File>,
        /// Number of the next line to read (1-based).
        line: u64,
        /// Byte offset of the next line.
        offset: u64,
    },
    Parquet {
        split: u32,
        path: PathBuf,
        reader: ParquetRecordBatchReader,
        /// Batches emitted so far.
        batches: u64,
    },
}

/// The visible files under `path` (or `path` itself), in name order.
fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta =
        std::fs::metadata(path).map_err(|e| FungiError::io(path.display().to_string(), e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(path).map_err(|e| FungiError::io(path.display().to_string(), e))?
    {
        let entry = entry.map_err(|e| FungiError::io(path.display().to_string(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

impl FileSource {
    /// A factory reading `schema` rows as configured by `options`.
    pub fn factory(schema: SchemaRef, options: &Options) -> Result<SourceFactory> {
        let path = PathBuf::from(options.require("path")?);
        let format = FileFormat::from_options(options)?;
        let on_error = options.on_error("on-error")?;
        options.check_all_used(FILE_SOURCE_OPTIONS)?;
        // Fail at planning time if the path is missing.
        list_files(&path)?;
        Ok(Arc::new(move |s: &SubtaskInfo| {
            let files: Vec<(u32, PathBuf)> = list_files(&path)?
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % s.parallelism == s.index)
                .map(|(i, p)| (i as u32, p))
                .collect();
            Ok(Box::new(FileSource {
                schema: schema.clone(),
                format,
                on_error,
                owned: files.iter().map(|(s, _)| *s).collect(),
                progress: BTreeMap::new(),
                files: files.into_iter(),
                current: None,
                batch_size: 8192,
                dead_letters: None,
            }) as Box<dyn Source>)
        }))
    }

    fn open_next(&mut self) -> Result<bool> {
        let (split, path, resume) = loop {
            let Some((split, path)) = self.files.next() else {
                return Ok(false);
            };
            match self.progress.get(&split) {
                Some(SplitProgress::Done) => continue,
                Some(&SplitProgress::At {
                    offset,
                    line,
                    batches,
                }) => break (split, path, Some((offset, line, batches))),
                None => break (split, path, None),
            }
        };
        let io = |e| FungiError::io(path.display().to_string(), e);
        let mut file = File::open(&path).map_err(io)?;
        self.current = Some(match self.format {
            FileFormat::Parquet => {
                let mut reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.with_batch_size(self.batch_size).build())
                    .map_err(|e| {
                        FungiError::Config(format!(
                            "{}: not a readable Parquet file: {e}",
                            path.display()
                        ))
                    })?;
                let batches = resume.map_or(0, |r| r.2);
                for _ in 0..batches {
                    reader.next();
                }
                Open::Parquet {
                    split,
                    path,
                    reader,
                    batches,
                }
            }
            FileFormat::Csv { .. } | FileFormat::Json => {
                let (mut offset, mut line) = (0, 1);
                if let Some((o, l, _)) = resume {
                    file.seek(SeekFrom::Start(o)).map_err(io)?;
                    (offset, line) = (o, l);
                }
                let mut reader = BufReader::new(file);
                if let (FileFormat::Csv { header: true, .. }, None) = (self.format, resume) {
                    let mut skip = Vec::new();
                    offset += reader.read_until(b'\n', &mut skip).map_err(io)? as u64;
                    line = 2;
                }
                Open::Lines {
                    split,
                    path,
                    reader,
                    line,
                    offset,
                }
            }
        });
        Ok(true)
    }

    /// Decodes `text` (complete lines) in one go; on failure finds the bad lines one by
    /// one and applies the error policy to them.
    fn decode_lines(
        &self,
        path: &Path,
        first_line: u64,
        lines: &[(u64, &[u8])],
    ) -> Result<Option<RecordBatch>> {
        let all: Vec<u8> = lines
            .iter()
            .flat_map(|(_, l)| l.iter().copied().chain([b'\n']))
            .collect();
        match self.decode(&all, lines.len()) {
            Ok(batch) => return Ok(batch),
            Err(_) if lines.is_empty() => return Ok(None),
            Err(_) => {}
        }
        // Slow path, only for chunks with bad input: decode line by line.
        let _ = first_line;
        let mut good = Vec::new();
        for &(number, line) in lines {
            let mut one = line.to_vec();
            one.push(b'\n');
            match self.decode(&one, 1) {
                Ok(Some(b)) => good.push(b),
                Ok(None) => {}
                Err(reason) => {
                    let position = format!("{}:{number}", path.display());
                    match (self.on_error, &self.dead_letters) {
                        (OnFailure::DeadLetter, Some((dlq, name))) => {
                            dlq.push(name, "decode", reason.clone(), position, line);
                        }
                        _ => {
                            return Err(FungiError::Decode {
                                source_name: path.display().to_string(),
                                line: number,
                                reason,
                            });
                        }
                    }
                }
            }
        }
        if good.is_empty() {
            return Ok(None);
        }
        Ok(Some(arrow::compute::concat_batches(&self.schema, &good)?))
    }

    fn decode(
        &self,
        bytes: &[u8],
        rows: usize,
    ) -> std::result::Result<Option<RecordBatch>, String> {
        let format = match self.format {
            FileFormat::Json => RecordFormat::Json,
            FileFormat::Csv { delimiter, .. } => RecordFormat::Csv { delimiter },
            FileFormat::Parquet => return Err("parquet is not line based".into()),
        };
        decode_lines(&self.schema, format, bytes, rows)
    }

    /// Conforms a Parquet batch to the declared schema: columns by name, cast if needed.
    fn conform(&self, path: &Path, batch: RecordBatch) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                FungiError::Config(format!(
                    "{}: the file has no column '{}'",
                    path.display(),
                    field.name()
                ))
            })?;
            columns.push(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast::cast(column, field.data_type()).map_err(|e| {
                    FungiError::Config(format!(
                        "{}: column '{}': {e}",
                        path.display(),
                        field.name()
                    ))
                })?
            });
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait::async_trait]
impl Source for FileSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<Vec<u32>> {
        self.batch_size = ctx.batch_size;
        self.dead_letters = Some((ctx.dead_letters.clone(), ctx.name.clone()));
        Ok(self.files.as_slice().iter().map(|(s, _)| *s).collect())
    }

    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> Result<Vec<u8>> {
        let owned: BTreeMap<u32, SplitProgress> = self
            .progress
            .iter()
            .filter(|(s, _)| self.owned.contains(s))
            .map(|(s, p)| (*s, *p))
            .collect();
        Ok(postcard::to_stdvec(&owned).expect("position encoding cannot fail"))
    }

    fn restore_position(&mut self, state: &RestoredState) -> Result<()> {
        // After a change of parallelism every old subtask's progress is here; only the
        // splits this subtask now owns are consulted.
        for (_, bytes) in &state.states {
            let progress: BTreeMap<u32, SplitProgress> = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad file source position: {e}")))?;
            self.progress.extend(progress);
        }
        self.progress.retain(|s, _| self.owned.contains(s));
        Ok(())
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(SourceEvent::Finished);
            }
            let batch_size = self.batch_size;
            match self.current.as_mut().expect("opened") {
                Open::Parquet {
                    split,
                    path,
                    reader,
                    batches,
                } => match reader.next() {
                    Some(Ok(batch)) => {
                        *batches += 1;
                        let (split, path) = (*split, path.clone());
                        self.progress.insert(
                            split,
                            SplitProgress::At {
                                offset: 0,
                                line: 0,
                                batches: *batches,
                            },
                        );
                        let batch = self.conform(&path, batch)?;
                        return Ok(SourceEvent::Batch { split, batch });
                    }
                    Some(Err(e)) => {
                        return Err(FungiError::Config(format!("{}: {e}", path.display())));
                    }
                    None => {
                        self.progress.insert(*split, SplitProgress::Done);
                        self.current = None;
                    }
                },
                Open::Lines {
                    split,
                    path,
                    reader,
                    line,
                    offset,
                } => {
                    let mut buf = Vec::with_capacity(batch_size * 128);
                    let mut bounds = Vec::with_capacity(batch_size);
                    let first_line = *line;
                    while bounds.len() < batch_size {
                        let start = buf.len();
                        let n = reader
                            .read_until(b'\n', &mut buf)
                            .map_err(|e| FungiError::io(path.display().to_string(), e))?;
                        if n == 0 {
                            break;
                        }
                        *offset += n as u64;
                        let number = *line;
                        *line += 1;
                        let mut end = buf.len();
                        while end > start && (buf[end - 1] == b'\n' || buf[end - 1] == b'\r') {
                            end -= 1;
                        }
                        if buf[start..end].iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        bounds.push((number, start, end));
                    }
                    let (split, path) = (*split, path.clone());
                    if bounds.is_empty() {
                        self.progress.insert(split, SplitProgress::Done);
                        self.current = None;
                        continue;
                    }
                    self.progress.insert(
                        split,
                        SplitProgress::At {
                            offset: *offset,
                            line: *line,
                            batches: 0,
                        },
                    );
                    let lines: Vec<(u64, &[u8])> =
                        bounds.iter().map(|&(n, s, e)| (n, &buf[s..e])).collect();
                    if let Some(batch) = self.decode_lines(&path, first_line, &lines)? {
                        return Ok(SourceEvent::Batch { split, batch });
                    }
                }
            }
        }
    }
}
