//! Source and sink connectors: the traits plugin authors implement, and the generated
//! WIT exports implemented on top of them.

use std::cell::RefCell;
use std::marker::PhantomData;

use arrow_array::RecordBatch;

use crate::connectors_manifest::Described;
use crate::sink_bindings::exports::fungi::plugin::plugin as sink_plugin_api;
use crate::sink_bindings::exports::fungi::plugin::sink as sink_api;
use crate::sink_bindings::fungi::plugin::types as sink_types;
use crate::source_bindings::exports::fungi::plugin::plugin as source_plugin_api;
use crate::source_bindings::exports::fungi::plugin::source as source_api;
use crate::source_bindings::fungi::plugin::types as source_types;
use crate::{Error, ipc};

/// What a poll of a split returns.
pub enum SourcePoll {
    /// Rows.
    Batch(RecordBatch),
    /// Nothing now; poll again later.
    Pending,
    /// Nothing for a while (the split does not hold back watermarks).
    Idle,
    /// The split is exhausted.
    Finished,
}

/// A source connector: its splits and their readers.
pub trait SourceConnector: 'static {
    /// The splits for `config` (partitions, files...).
    fn list_splits(config: &[(String, String)]) -> Result<Vec<String>, Error>;
    /// Opens `split` from the start, or from `offset` (from [`SplitReader::snapshot`]).
    fn open(
        config: &[(String, String)],
        split: &str,
        offset: Option<&[u8]>,
    ) -> Result<Box<dyn SplitReader>, Error>;
}

/// A reader of one split.
pub trait SplitReader: 'static {
    /// The next rows (at most `max_rows`).
    fn poll(&mut self, max_rows: u32) -> Result<SourcePoll, Error>;
    /// The position after the last polled row.
    fn snapshot(&self) -> Vec<u8>;
}

/// A sink connector with two-phase commit.
pub trait SinkConnector: 'static {
    /// Opens subtask `subtask`'s writer; `pending` are transactions pre-committed before a
    /// restart, to commit or abort.
    fn open(
        config: &[(String, String)],
        subtask: u32,
        pending: Vec<Vec<u8>>,
    ) -> Result<Box<dyn SinkWriter>, Error>;
}

/// One sink subtask's writer.
pub trait SinkWriter: 'static {
    /// Writes rows into the current transaction.
    fn write(&mut self, rows: RecordBatch) -> Result<(), Error>;
    /// Makes the transaction durable but invisible; returns its handle.
    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, Error>;
    /// Makes transaction `handle` visible.
    fn commit(&mut self, handle: &[u8]) -> Result<(), Error>;
    /// Discards transaction `handle`.
    fn abort(&mut self, handle: &[u8]) -> Result<(), Error>;
}

conversions!(source_types);
conversions!(sink_types);

/// Implements the source world for `T`.
pub struct SourceAdapter<T>(PhantomData<T>);

/// The guest side of the `split-reader` resource.
pub struct ReaderInstance<T> {
    inner: RefCell<Box<dyn SplitReader>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: SourceConnector + Described> source_plugin_api::Guest for SourceAdapter<T> {
    fn describe() -> source_types::Manifest {
        T::manifest().into()
    }
}

impl<T: SourceConnector + Described> source_api::Guest for SourceAdapter<T> {
    type SplitReader = ReaderInstance<T>;

    fn list_splits(
        config: Vec<(String, String)>,
    ) -> Result<Vec<String>, source_types::PluginError> {
        Ok(T::list_splits(&config)?)
    }
}

impl<T: SourceConnector + Described> source_api::GuestSplitReader for ReaderInstance<T> {
    fn open(
        config: Vec<(String, String)>,
        split: String,
        offset: Option<Vec<u8>>,
    ) -> Result<source_api::SplitReader, source_types::PluginError> {
        let reader = T::open(&config, &split, offset.as_deref())?;
        Ok(source_api::SplitReader::new(ReaderInstance::<T> {
            inner: RefCell::new(reader),
            _t: PhantomData,
        }))
    }

    fn poll(&self, max_rows: u32) -> Result<source_api::PollResult, source_types::PluginError> {
        Ok(match self.inner.borrow_mut().poll(max_rows)? {
            SourcePoll::Batch(b) => source_api::PollResult::Batch(ipc::encode(&b)?),
            SourcePoll::Pending => source_api::PollResult::Pending,
            SourcePoll::Idle => source_api::PollResult::Idle,
            SourcePoll::Finished => source_api::PollResult::Finished,
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        self.inner.borrow().snapshot()
    }
}

/// Implements the sink world for `T`.
pub struct SinkAdapter<T>(PhantomData<T>);

/// The guest side of the `writer` resource.
pub struct WriterInstance<T> {
    inner: RefCell<Box<dyn SinkWriter>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: SinkConnector + Described> sink_plugin_api::Guest for SinkAdapter<T> {
    fn describe() -> sink_types::Manifest {
        T::manifest().into()
    }
}

impl<T: SinkConnector + Described> sink_api::Guest for SinkAdapter<T> {
    type Writer = WriterInstance<T>;
}

type SinkResult<R> = Result<R, sink_types::PluginError>;

impl<T: SinkConnector + Described> sink_api::GuestWriter for WriterInstance<T> {
    fn open(
        config: Vec<(String, String)>,
        subtask: u32,
        pending: Vec<Vec<u8>>,
    ) -> SinkResult<sink_api::Writer> {
        let writer = T::open(&config, subtask, pending)?;
        Ok(sink_api::Writer::new(WriterInstance::<T> {
            inner: RefCell::new(writer),
            _t: PhantomData,
        }))
    }

    fn write(&self, rows: Vec<u8>) -> SinkResult<()> {
        let r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(rows), None)
            .map_err(Error::from)?;
        for batch in r {
            self.inner.borrow_mut().write(batch.map_err(Error::from)?)?;
        }
        Ok(())
    }

    fn pre_commit(&self, checkpoint: u64) -> SinkResult<Vec<u8>> {
        Ok(self.inner.borrow_mut().pre_commit(checkpoint)?)
    }

    fn commit(&self, handle: Vec<u8>) -> SinkResult<()> {
        Ok(self.inner.borrow_mut().commit(&handle)?)
    }

    fn abort(&self, handle: Vec<u8>) -> SinkResult<()> {
        Ok(self.inner.borrow_mut().abort(&handle)?)
    }
}
