//! Reading an upsert topic (`upsert-kafka`): each record's value is the new row of its
//! key (`+U`), a record without a value (a tombstone) deletes its key (`-D`, the key's
//! columns from the record key, the others null). A keyed operator downstream turns
//! these into a changelog (see the planner's normalisation of upsert sources).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int8Array, RecordBatch, new_null_array};
use arrow::compute::{cast, interleave};
use arrow::datatypes::{Field, Schema, SchemaRef};
use fungi_common::changelog::RowKind;
use fungi_common::{FungiError, Result};

use crate::format::{Decoded, RecordFormat, decode_records};
use crate::options::Options;

/// How an upsert source reads keys.
#[derive(Debug, Clone)]
pub(crate) struct UpsertKeys {
    /// The table's primary key columns.
    pub(crate) columns: Vec<usize>,
    /// Their schema, as the key format decodes them.
    pub(crate) schema: SchemaRef,
    /// The record key's format.
    pub(crate) format: RecordFormat,
}

impl UpsertKeys {
    /// The key of `table` (its PRIMARY KEY) read in `key.format`.
    pub(crate) fn from_options(table: &SchemaRef, options: &Options) -> Result<UpsertKeys> {
        let names = options.primary_key();
        if names.is_empty() {
            return Err(FungiError::Config(
                "connector 'upsert-kafka' reads records as upserts by the table's primary \
                 key: declare PRIMARY KEY (column, ...) NOT ENFORCED"
                    .into(),
            ));
        }
        let columns = names
            .iter()
            .map(|n| {
                table.index_of(n).map_err(|_| {
                    FungiError::Config(format!(
                        "connector 'upsert-kafka': PRIMARY KEY column '{n}' is not a column"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|&c| table.field(c).clone())
                .collect::<Vec<Field>>(),
        ));
        let format = RecordFormat::from_option("upsert-kafka", options, "key.format")?;
        format.check_schema("upsert-kafka", &schema)?;
        Ok(UpsertKeys {
            columns,
            schema,
            format,
        })
    }
}

/// The table's columns as an upsert source produces them: every column but the key's
/// nullable (a tombstone has only its key), then the change column.
pub(crate) fn upsert_schema(table: &SchemaRef, keys: &UpsertKeys) -> SchemaRef {
    let fields: Vec<Field> = table
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_ref().clone();
            if keys.columns.contains(&i) {
                f
            } else {
                f.with_nullable(true)
            }
        })
        .collect();
    crate::format::debezium::changelog_schema(&Arc::new(Schema::new(fields)))
}

/// One polled record of an upsert topic: its key, and its value unless a tombstone.
pub(crate) struct UpsertRecord<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) value: Option<&'a [u8]>,
}

/// Decodes `records` in order into rows of `produced` (see [`upsert_schema`]): values
/// in `value_format` as the table's columns, tombstones' keys in the key format. Returns
/// the good rows and `(record index, reason)` of each bad record.
pub(crate) fn decode(
    produced: &SchemaRef,
    value_format: RecordFormat,
    keys: &UpsertKeys,
    records: &[UpsertRecord<'_>],
) -> Result<Decoded> {
    let table = Arc::new(Schema::new(
        produced.fields()[..produced.fields().len() - 1].to_vec(),
    ));
    let (value_at, values): (Vec<usize>, Vec<&[u8]>) = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.value.map(|v| (i, v)))
        .unzip();
    let (key_at, tombstones): (Vec<usize>, Vec<&[u8]>) = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.value.is_none())
        .map(|(i, r)| (i, r.key))
        .unzip();
    let (value_rows, bad_values) = decode_records(&table, value_format, &values);
    let (key_rows, bad_keys) = decode_records(&keys.schema, keys.format, &tombstones);
    let mut bad: Vec<(usize, String)> = bad_values
        .into_iter()
        .map(|(i, reason)| (value_at[i], reason))
        .chain(
            bad_keys
                .into_iter()
                .map(|(i, reason)| (key_at[i], format!("a tombstone's key: {reason}"))),
        )
        .collect();
    bad.sort_by_key(|(i, _)| *i);
    // Where each good record's row is: (0, row) among the values, (1, row) among the
    // tombstones; in the order the records came.
    let mut is_bad = vec![false; records.len()];
    for (i, _) in &bad {
        is_bad[*i] = true;
    }
    let mut order = Vec::with_capacity(records.len());
    let mut kinds = Vec::with_capacity(records.len());
    let (mut v, mut k) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        if is_bad[i] {
            continue;
        }
        let (side, next, kind) = match r.value {
            Some(_) => (0, &mut v, RowKind::UpdateAfter),
            None => (1, &mut k, RowKind::Delete),
        };
        order.push((side, *next));
        kinds.push(kind as i8);
        *next += 1;
    }
    if order.is_empty() {
        return Ok((None, bad));
    }
    let n_values = value_rows.as_ref().map_or(0, RecordBatch::num_rows);
    let n_keys = key_rows.as_ref().map_or(0, RecordBatch::num_rows);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(produced.fields().len());
    for (c, field) in table.fields().iter().enumerate() {
        let from_values = match &value_rows {
            Some(b) => cast(b.column(c), field.data_type())?,
            None => new_null_array(field.data_type(), 0),
        };
        let from_keys = match (&key_rows, keys.columns.iter().position(|&k| k == c)) {
            (Some(b), Some(at)) => cast(b.column(at), field.data_type())?,
            _ => new_null_array(field.data_type(), n_keys),
        };
        debug_assert_eq!(from_values.len(), n_values);
        columns.push(interleave(
            &[from_values.as_ref(), from_keys.as_ref()],
            &order,
        )?);
    }
    columns.push(Arc::new(Int8Array::from(kinds)));
    Ok((Some(RecordBatch::try_new(produced.clone(), columns)?), bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int8Type, Int64Type};

    #[test]
    fn values_and_tombstones_come_out_in_order() {
        let table = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let keys = UpsertKeys {
            columns: vec![0],
            schema: Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
            format: RecordFormat::Json,
        };
        let produced = upsert_schema(&table, &keys);
        let records = [
            UpsertRecord {
                key: br#"{"id":1}"#,
                value: Some(br#"{"id":1,"name":"a"}"#),
            },
            UpsertRecord {
                key: br#"{"id":2}"#,
                value: None,
            },
            UpsertRecord {
                key: b"x",
                value: Some(b"not json"),
            },
            UpsertRecord {
                key: b"not json",
                value: None,
            },
            UpsertRecord {
                key: br#"{"id":1}"#,
                value: Some(br#"{"id":1,"name":"b"}"#),
            },
        ];
        let (batch, bad) = decode(&produced, RecordFormat::Json, &keys, &records).unwrap();
        let batch = batch.unwrap();
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2, 3]);
        assert!(bad[1].1.contains("tombstone"), "{bad:?}");
        let ids: Vec<i64> = batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, [1, 2, 1]);
        let names = batch.column(1).as_string::<i32>();
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            [Some("a"), None, Some("b")]
        );
        let kinds: Vec<i8> = batch.column(2).as_primitive::<Int8Type>().values().to_vec();
        assert_eq!(
            kinds,
            [
                RowKind::UpdateAfter as i8,
                RowKind::Delete as i8,
                RowKind::UpdateAfter as i8
            ]
        );
    }
}
