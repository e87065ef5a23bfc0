//! Writing files, exactly once when the job checkpoints.
//!
//! Each subtask writes its own files into the target directory. Rows go to a hidden
//! in-progress file (`.part-<subtask>-<n>.<ext>.inprogress`); readers of the directory
//! (this crate's file source among them) skip hidden files.
//!
//! - **Without checkpoints** the subtask writes one file, `part-<subtask>.<ext>`,
//!   published (renamed) when its input ends.
//! - **With checkpoints** (two-phase commit, as Flink's FileSink): on each barrier the
//!   in-progress file is closed and synced — *pre-committed* — and its name goes into the
//!   checkpoint; when the checkpoint completes it is renamed to `part-<subtask>-<n>.<ext>`
//!   — *committed*. After a restore, files pending in the restored checkpoint are
//!   committed (renaming is idempotent) and everything the failed attempt wrote after
//!   the checkpoint is deleted, since the replay writes it again: the directory ends up
//!   with every row exactly once.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::csv::WriterBuilder as CsvWriterBuilder;
use arrow::json::LineDelimitedWriter;
use fungi_common::ids::CheckpointId;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::{Operator, OperatorContext, Output, RestoredState};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use super::FileFormat;
use crate::options::Options;

/// Options understood by [`FileSink::factory`].
pub const FILE_SINK_OPTIONS: &[&str] = &["path", "format", "csv.header", "csv.field-delimiter"];

enum Writer {
    Json(LineDelimitedWriter<BufWriter<File>>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
    Parquet(ArrowWriter<File>),
}

/// What a file sink subtask saves in a checkpoint.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SinkState {
    /// Number of the next file.
    next_file: u64,
    /// Pre-committed files: (in-progress name, final name), relative to the directory.
    pending: Vec<(String, String)>,
}

/// Writes each subtask's rows to files of its own in the target directory.
pub struct FileSink {
    dir: PathBuf,
    format: FileFormat,
    subtask: u32,
    parallelism: u32,
    checkpointing: bool,
    writer: Option<Writer>,
    /// The file being written and its published name (relative to `dir`).
    in_progress: String,
    final_name: String,
    next_file: u64,
    /// Pre-committed files by the checkpoint they belong to.
    pending: Vec<(CheckpointId, String, String)>,
    /// Whether leftovers of earlier attempts were removed.
    cleaned: bool,
    /// Old subtasks whose files this subtask answers for after a restore.
    inherited: Vec<(u32, u64)>,
}

impl FileSink {
    /// A factory from `path` and `format` options.
    pub fn factory(options: &Options) -> Result<OperatorFactory> {
        let dir = PathBuf::from(options.require("path")?);
        let format = FileFormat::from_options(options)?;
        options.check_all_used(FILE_SINK_OPTIONS)?;
        Ok(Arc::new(move |s| {
            Ok(Box::new(FileSink {
                dir: dir.clone(),
                format,
                subtask: s.index,
                parallelism: s.parallelism,
                checkpointing: false,
                writer: None,
                in_progress: String::new(),
                final_name: String::new(),
                next_file: 0,
                pending: Vec::new(),
                cleaned: false,
                inherited: Vec::new(),
            }) as Box<dyn Operator>)
        }))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn io(&self, path: &Path, e: std::io::Error) -> FungiError {
        FungiError::io(path.display().to_string(), e)
    }

    /// Removes what earlier attempts of the subtasks this one answers for wrote after
    /// the checkpoint the job resumed from (or at all, on a fresh start).
    fn clean_leftovers(&mut self) -> Result<()> {
        if self.cleaned || !self.checkpointing {
            return Ok(());
        }
        self.cleaned = true;
        let mut owners = self.inherited.clone();
        if !owners.iter().any(|(s, _)| *s == self.subtask) {
            owners.push((self.subtask, self.next_file));
        }
        let ext = self.format.extension();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.io(&self.dir.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.io(&self.dir.clone(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((owner, n)) = parse_part_name(&name, ext) else {
                continue;
            };
            let stale = owners.iter().any(|&(s, next)| s == owner && n >= next);
            let pending = self.pending.iter().any(|(_, tmp, _)| *tmp == name);
            if stale && !pending {
                std::fs::remove_file(entry.path()).map_err(|e| self.io(&entry.path(), e))?;
            }
        }
        Ok(())
    }

    fn writer(&mut self, batch: &RecordBatch) -> Result<&mut Writer> {
        if self.writer.is_none() {
            self.clean_leftovers()?;
            let ext = self.format.extension();
            (self.in_progress, self.final_name) = if self.checkpointing {
                let name = format!("part-{}-{}.{ext}", self.subtask, self.next_file);
                (format!(".{name}.inprogress"), name)
            } else {
                let name = format!("part-{}.{ext}", self.subtask);
                (format!(".{name}.inprogress"), name)
            };
            let path = self.path(&self.in_progress);
            let file = File::create(&path).map_err(|e| self.io(&path, e))?;
            self.writer = Some(match self.format {
                FileFormat::Json => Writer::Json(crate::format::json_writer(BufWriter::new(file))),
                FileFormat::Csv { header, delimiter } => Writer::Csv(
                    CsvWriterBuilder::new()
                        .with_header(header)
                        .with_delimiter(delimiter)
                        .build(BufWriter::new(file)),
                ),
                FileFormat::Parquet => Writer::Parquet(
                    ArrowWriter::try_new(file, batch.schema(), None)
                        .map_err(|e| FungiError::Config(format!("{}: {e}", path.display())))?,
                ),
            });
        }
        Ok(self.writer.as_mut().expect("just created"))
    }

    /// Finishes the open file and syncs it to disk; returns whether one was open.
    fn close(&mut self) -> Result<bool> {
        let path = self.path(&self.in_progress);
        let file = match self.writer.take() {
            None => return Ok(false),
            Some(Writer::Json(mut w)) => {
                w.finish()?;
                w.into_inner()
                    .into_inner()
                    .map_err(|e| self.io(&path, e.into_error()))?
            }
            Some(Writer::Csv(w)) => w
                .into_inner()
                .into_inner()
                .map_err(|e| self.io(&path, e.into_error()))?,
            Some(Writer::Parquet(w)) => w
                .into_inner()
                .map_err(|e| FungiError::Config(format!("{}: {e}", path.display())))?,
        };
        file.sync_all().map_err(|e| self.io(&path, e))?;
        Ok(true)
    }

    /// Publishes a closed file (idempotent: a file already renamed is left alone).
    fn commit(&self, in_progress: &str, final_name: &str) -> Result<()> {
        let (from, to) = (self.path(in_progress), self.path(final_name));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => Ok(()),
            Err(e) => Err(self.io(&from, e)),
        }
    }
}

/// `(subtask, n)` of `part-<subtask>-<n>.<ext>` or `.part-<subtask>-<n>.<ext>.inprogress`.
fn parse_part_name(name: &str, ext: &str) -> Option<(u32, u64)> {
    let base = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".inprogress"))
        .unwrap_or(name);
    let stem = base
        .strip_prefix("part-")?
        .strip_suffix(ext)?
        .strip_suffix('.')?;
    let (subtask, n) = stem.split_once('-')?;
    Some((subtask.parse().ok()?, n.parse().ok()?))
}

impl Operator for FileSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.checkpointing = ctx.checkpointing;
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(&self.dir.clone(), e))
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let path = self.path(&self.in_progress);
        match self.writer(&batch)? {
            Writer::Json(w) => w.write(&batch)?,
            Writer::Csv(w) => w.write(&batch)?,
            Writer::Parquet(w) => w
                .write(&batch)
                .map_err(|e| FungiError::Config(format!("{}: {e}", path.display())))?,
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        if self.checkpointing {
            // The final checkpoint pre-commits the last file; it is published when that
            // checkpoint is complete.
            return Ok(());
        }
        if self.close()? {
            self.commit(&self.in_progress, &self.final_name)?;
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        self.clean_leftovers()?;
        if self.close()? {
            self.pending.push((
                checkpoint,
                std::mem::take(&mut self.in_progress),
                std::mem::take(&mut self.final_name),
            ));
            self.next_file += 1;
        }
        let state = SinkState {
            next_file: self.next_file,
            pending: self
                .pending
                .iter()
                .map(|(_, a, b)| (a.clone(), b.clone()))
                .collect(),
        };
        Ok(Some(
            postcard::to_stdvec(&state).expect("sink state encoding cannot fail"),
        ))
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        // The restored checkpoint is complete: what it pre-committed is published now.
        for (old, bytes) in &state.states {
            if *old % self.parallelism != self.subtask {
                continue;
            }
            let s: SinkState = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad file sink state: {e}")))?;
            for (tmp, name) in &s.pending {
                self.commit(tmp, name)?;
            }
            self.inherited.push((*old, s.next_file));
            if *old == self.subtask {
                self.next_file = s.next_file;
            }
        }
        self.clean_leftovers()
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(id, _, _)| *id <= checkpoint);
        self.pending = keep;
        for (_, tmp, name) in done {
            self.commit(&tmp, &name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_part_name;

    #[test]
    fn part_names_parse() {
        assert_eq!(parse_part_name("part-1-20.csv", "csv"), Some((1, 20)));
        assert_eq!(
            parse_part_name(".part-0-3.csv.inprogress", "csv"),
            Some((0, 3))
        );
        assert_eq!(parse_part_name("part-1.csv", "csv"), None);
        assert_eq!(parse_part_name("part-1-2.json", "csv"), None);
    }
}
