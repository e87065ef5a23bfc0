//! Helpers shared by the runtime tests.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fungi_common::Result;
use fungi_execution::source::{Source, SourceEvent};

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, false),
    ]))
}

pub(crate) fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let k: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
        rows.iter().map(|r| r.1),
    ));
    let v: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)));
    RecordBatch::try_new(schema(), vec![k, ts, v]).unwrap()
}

/// A scripted source: each step is a batch on a split or a pause.
pub(crate) enum Step {
    Batch(u32, RecordBatch),
    Sleep(Duration),
}

pub(crate) struct ScriptedSource {
    pub(crate) steps: std::vec::IntoIter<Step>,
    pub(crate) splits: Vec<u32>,
}

#[async_trait::async_trait]
impl Source for ScriptedSource {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn open(&mut self, _ctx: &fungi_execution::SourceContext) -> Result<Vec<u32>> {
        Ok(self.splits.clone())
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        Ok(match self.steps.next() {
            Some(Step::Batch(split, batch)) => SourceEvent::Batch { split, batch },
            Some(Step::Sleep(d)) => {
                tokio::time::sleep(d).await;
                SourceEvent::Pending(Duration::ZERO)
            }
            None => SourceEvent::Finished,
        })
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
