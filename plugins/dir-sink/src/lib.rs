//! A sink connector with two-phase commit into a directory the tenant grants, shipped
//! with Fungi.
//!
//! Option `dir` (default `/out`, the guest path of the granted directory). Rows are
//! written as CSV lines to `<dir>/.pending/<subtask>-<n>.csv`; `pre-commit` closes that
//! file and returns its name (the transaction handle); `commit` renames it to
//! `<dir>/part-<subtask>-<checkpoint>.csv` (an atomic rename: readers see whole files
//! only); `abort` deletes it. Transactions pre-committed before a restart are committed
//! when the writer opens again.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use fungi_sdk::arrow_array::RecordBatch;
use fungi_sdk::{Error, SinkConnector, SinkWriter};

fn io(what: &str, e: std::io::Error) -> Error {
    Error::Internal(format!("{what}: {e}"))
}

struct DirSink;

impl SinkConnector for DirSink {
    fn open(
        config: &[(String, String)],
        subtask: u32,
        pending: Vec<Vec<u8>>,
    ) -> Result<Box<dyn SinkWriter>, Error> {
        let dir = config
            .iter()
            .find(|(k, _)| k == "dir")
            .map_or("/out".to_string(), |(_, v)| v.clone());
        std::fs::create_dir_all(format!("{dir}/.pending"))
            .map_err(|e| io(&format!("creating {dir}/.pending (is {dir} granted?)"), e))?;
        let mut w = DirWriter {
            dir,
            subtask,
            txn: 0,
            file: None,
        };
        for handle in pending {
            w.commit(&handle)?;
        }
        Ok(Box::new(w))
    }
}

struct DirWriter {
    dir: String,
    subtask: u32,
    txn: u64,
    file: Option<(String, BufWriter<File>)>,
}

impl DirWriter {
    fn pending_path(&self) -> String {
        format!("{}/.pending/{}-{}.csv", self.dir, self.subtask, self.txn)
    }
}

impl SinkWriter for DirWriter {
    fn write(&mut self, rows: RecordBatch) -> Result<(), Error> {
        if self.file.is_none() {
            let path = self.pending_path();
            // A file left by an attempt that died before pre-committing is replaced.
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            self.file = Some((path, BufWriter::new(f)));
        }
        let (path, out) = self.file.as_mut().expect("opened");
        let options = FormatOptions::default();
        let formatters = rows
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..rows.num_rows() {
            let line: Vec<String> = formatters.iter().map(|f| f.value(i).to_string()).collect();
            writeln!(out, "{}", line.join(",")).map_err(|e| io(path, e))?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, Error> {
        let pending = match self.file.take() {
            Some((path, mut out)) => {
                out.flush().map_err(|e| io(&path, e))?;
                path
            }
            // An empty transaction: an empty file keeps the protocol uniform.
            None => {
                let path = self.pending_path();
                File::create(&path).map_err(|e| io(&path, e))?;
                path
            }
        };
        self.txn += 1;
        let target = format!("{}/part-{}-{checkpoint}.csv", self.dir, self.subtask);
        Ok(format!("{pending}\n{target}").into_bytes())
    }

    fn commit(&mut self, handle: &[u8]) -> Result<(), Error> {
        let text = String::from_utf8_lossy(handle);
        let (pending, target) = text
            .split_once('\n')
            .ok_or_else(|| Error::InvalidInput("not a dir-sink transaction handle".into()))?;
        match std::fs::rename(pending, target) {
            Ok(()) => Ok(()),
            // Committed already (a retried commit after a restart).
            Err(_) if std::fs::metadata(target).is_ok() => Ok(()),
            Err(e) => Err(io(pending, e)),
        }
    }

    fn abort(&mut self, handle: &[u8]) -> Result<(), Error> {
        let text = String::from_utf8_lossy(handle);
        let pending = text.split('\n').next().unwrap_or_default();
        match std::fs::remove_file(pending) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(pending, e)),
        }
    }
}

fungi_sdk::sink_plugin! {
    name: "dir-sink",
    description: "CSV files in a granted directory, with two-phase commit",
    directories: ["/out"],
    connector: DirSink,
}
