//! Table functions shipped with Fungi: each input row gives zero or more rows.
//!
//! | function | output columns |
//! |---|---|
//! | `split_words(s VARCHAR)` | `word VARCHAR, position BIGINT`: the whitespace-separated words of `s`, numbered from 1 (NULL or blank: no rows) |
//! | `series(from BIGINT, to BIGINT)` | `n BIGINT`: `from`, `from + 1`, ..., `to` (NULL or `to < from`: no rows; more than 1,000,000 rows: an error) |

use std::sync::Arc;

use fungi_sdk::arrow_array::builder::{Int64Builder, StringBuilder};
use fungi_sdk::arrow_array::cast::AsArray;
use fungi_sdk::arrow_array::types::Int64Type;
use fungi_sdk::arrow_array::{Array, ArrayRef, RecordBatch};
use fungi_sdk::arrow_schema::{DataType, Field, Schema};
use fungi_sdk::{Error, TableFunction};

/// Rows one input row may produce in `series`.
const MAX_SERIES: i64 = 1_000_000;

fn batch(columns: Vec<Field>, arrays: Vec<ArrayRef>) -> Result<RecordBatch, Error> {
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(columns)),
        arrays,
    )?)
}

fn argument<'a>(args: &'a [ArrayRef], i: usize, want: &DataType) -> Result<&'a ArrayRef, Error> {
    let a = args
        .get(i)
        .ok_or_else(|| Error::InvalidInput(format!("missing argument {}", i + 1)))?;
    if a.data_type() != want {
        return Err(Error::InvalidInput(format!(
            "argument {} is {}, expected {want}",
            i + 1,
            a.data_type()
        )));
    }
    Ok(a)
}

struct SplitWords;

impl TableFunction for SplitWords {
    fn name(&self) -> &str {
        "split_words"
    }
    fn arguments(&self) -> Vec<DataType> {
        vec![DataType::Utf8]
    }
    fn columns(&self) -> Vec<Field> {
        vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("position", DataType::Int64, false),
        ]
    }
    fn call(&self, args: &[ArrayRef], rows: usize) -> Result<(RecordBatch, Vec<u32>), Error> {
        let text = argument(args, 0, &DataType::Utf8)?.as_string::<i32>();
        let (mut words, mut positions) = (StringBuilder::new(), Int64Builder::new());
        let mut input_rows = Vec::with_capacity(rows);
        for (row, s) in text.iter().enumerate() {
            for (i, word) in s.unwrap_or("").split_whitespace().enumerate() {
                words.append_value(word);
                positions.append_value(i as i64 + 1);
                input_rows.push(row as u32);
            }
        }
        let out = batch(
            self.columns(),
            vec![Arc::new(words.finish()), Arc::new(positions.finish())],
        )?;
        Ok((out, input_rows))
    }
}

struct Series;

impl TableFunction for Series {
    fn name(&self) -> &str {
        "series"
    }
    fn arguments(&self) -> Vec<DataType> {
        vec![DataType::Int64, DataType::Int64]
    }
    fn columns(&self) -> Vec<Field> {
        vec![Field::new("n", DataType::Int64, false)]
    }
    fn call(&self, args: &[ArrayRef], _rows: usize) -> Result<(RecordBatch, Vec<u32>), Error> {
        let from = argument(args, 0, &DataType::Int64)?.as_primitive::<Int64Type>();
        let to = argument(args, 1, &DataType::Int64)?.as_primitive::<Int64Type>();
        let mut n = Int64Builder::new();
        let mut input_rows = Vec::new();
        for row in 0..from.len() {
            if from.is_null(row) || to.is_null(row) {
                continue;
            }
            let (a, b) = (from.value(row), to.value(row));
            if b >= a && (b as i128 - a as i128) >= MAX_SERIES as i128 {
                return Err(Error::InvalidInput(format!(
                    "series({a}, {b}) would give more than {MAX_SERIES} rows"
                )));
            }
            for v in a..=b {
                n.append_value(v);
                input_rows.push(row as u32);
            }
        }
        Ok((
            batch(self.columns(), vec![Arc::new(n.finish())])?,
            input_rows,
        ))
    }
}

fungi_sdk::table_plugin! {
    name: "text-split",
    description: "table functions: words of a text, number series",
    functions: [SplitWords, Series],
}
