//! A source connector with splits and offsets, shipped with Fungi.
//!
//! Options: `splits` (default 2), `rows` per split (default 1000). Each split `s` emits
//! rows `(split BIGINT, seq BIGINT, label VARCHAR)` with `seq` = 0, 1, ...; a reader's
//! offset is the next `seq` (8 bytes, little-endian), so a reader reopened from its
//! snapshot goes on where it stopped, without gaps or repeats.

use std::sync::Arc;

use fungi_sdk::arrow_array::{Int64Array, RecordBatch, StringArray};
use fungi_sdk::arrow_schema::{DataType, Field, Schema};
use fungi_sdk::{Error, SourceConnector, SourcePoll, SplitReader};

fn option(config: &[(String, String)], key: &str, default: i64) -> Result<i64, Error> {
    match config.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => v
            .parse()
            .map_err(|_| Error::InvalidInput(format!("option '{key}': '{v}' is not a number"))),
    }
}

struct Counter;

impl SourceConnector for Counter {
    fn list_splits(config: &[(String, String)]) -> Result<Vec<String>, Error> {
        let n = option(config, "splits", 2)?;
        if n < 1 {
            return Err(Error::InvalidInput("'splits' must be at least 1".into()));
        }
        Ok((0..n).map(|s| s.to_string()).collect())
    }

    fn open(
        config: &[(String, String)],
        split: &str,
        offset: Option<&[u8]>,
    ) -> Result<Box<dyn SplitReader>, Error> {
        let split: i64 = split
            .parse()
            .map_err(|_| Error::InvalidInput(format!("unknown split '{split}'")))?;
        let next = match offset {
            None => 0,
            Some(b) => i64::from_le_bytes(
                b.try_into()
                    .map_err(|_| Error::InvalidInput("an offset has 8 bytes".into()))?,
            ),
        };
        Ok(Box::new(CounterReader {
            split,
            next,
            end: option(config, "rows", 1000)?,
        }))
    }
}

struct CounterReader {
    split: i64,
    next: i64,
    end: i64,
}

impl SplitReader for CounterReader {
    fn poll(&mut self, max_rows: u32) -> Result<SourcePoll, Error> {
        if self.next >= self.end {
            fungi_sdk::host::info("split finished", &[("split", &self.split.to_string())]);
            return Ok(SourcePoll::Finished);
        }
        let to = (self.next + max_rows.max(1) as i64).min(self.end);
        let seq: Vec<i64> = (self.next..to).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("split", DataType::Int64, false),
            Field::new("seq", DataType::Int64, false),
            Field::new("label", DataType::Utf8, false),
        ]));
        let labels = StringArray::from_iter_values(
            seq.iter()
                .map(|s| format!("row {s} of split {}", self.split)),
        );
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![self.split; seq.len()])),
                Arc::new(Int64Array::from(seq)),
                Arc::new(labels),
            ],
        )?;
        self.next = to;
        fungi_sdk::host::counter_add("rows_emitted", batch.num_rows() as u64);
        fungi_sdk::host::gauge_set("last_offset", to as f64);
        Ok(SourcePoll::Batch(batch))
    }

    fn snapshot(&self) -> Vec<u8> {
        self.next.to_le_bytes().to_vec()
    }
}

fungi_sdk::source_plugin! {
    name: "counter-source",
    description: "numbered rows in splits, resumable from offsets",
    connector: Counter,
}
