//! Flink's `debezium-json` format: Debezium change events read as a changelog.
//!
//! An event is `{"before": {...}, "after": {...}, "op": "c|r|u|d", ...}` (inside
//! `"payload"` when Debezium includes its schema, `debezium-json.schema-include`). A
//! create or snapshot read (`c`, `r`) is an insert of `after`; an update (`u`) retracts
//! `before` and adds `after`; a delete (`d`) retracts `before`. The events are decoded
//! many at a time into an envelope batch (arrow-json), then turned into the table's
//! rows with a change column by one `take` over `before` and `after`, never row by row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int8Array, RecordBatch, StructArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use fungi_common::changelog::{OP_COLUMN, RowKind};
use fungi_common::{FungiError, Result};

use super::Decoded;

/// The schema of the table's rows with the change column last.
pub fn changelog_schema(table: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = table.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(OP_COLUMN, DataType::Int8, false)));
    Arc::new(Schema::new(fields))
}

/// The schema an event is decoded with: `before`, `after` (the table's columns) and
/// `op`, inside `payload` when `schema_include`.
pub fn envelope_schema(table: &SchemaRef, schema_include: bool) -> SchemaRef {
    let row = DataType::Struct(table.fields().clone());
    let event = Fields::from(vec![
        Field::new("before", row.clone(), true),
        Field::new("after", row, true),
        Field::new("op", DataType::Utf8, true),
    ]);
    let fields = if schema_include {
        vec![Field::new("payload", DataType::Struct(event), true)]
    } else {
        event.iter().map(|f| f.as_ref().clone()).collect()
    };
    Arc::new(Schema::new(fields))
}

/// Turns decoded events into changelog rows of `table` (see [`changelog_schema`]).
/// Returns the rows and `(event index, reason)` of each event that cannot be applied
/// (an unknown `op`, an update or delete without `before`, a create without `after`).
pub fn to_changelog(
    events: &RecordBatch,
    table: &SchemaRef,
    schema_include: bool,
) -> Result<Decoded> {
    // With the schema included, a record without a payload is a null event.
    let event: StructArray = if schema_include {
        events.column(0).as_struct().clone()
    } else {
        StructArray::from(events.clone())
    };
    let before = event
        .column_by_name("before")
        .expect("envelope has before")
        .as_struct();
    let after = event
        .column_by_name("after")
        .expect("envelope has after")
        .as_struct();
    let ops = event
        .column_by_name("op")
        .expect("envelope has op")
        .as_string::<i32>();
    let n = events.num_rows();
    // Rows to take from [before; after] (after's rows are shifted by n), and their kinds.
    let mut take = Vec::with_capacity(n + n / 4);
    let mut kinds = Vec::with_capacity(n + n / 4);
    let mut bad = Vec::new();
    for i in 0..n {
        let has_before = before.is_valid(i);
        let has_after = after.is_valid(i);
        let op = (event.is_valid(i) && ops.is_valid(i)).then(|| ops.value(i));
        match op {
            Some("c" | "r") if has_after => {
                take.push((n + i) as u32);
                kinds.push(RowKind::Insert as i8);
            }
            Some("u") if has_before && has_after => {
                take.extend([i as u32, (n + i) as u32]);
                kinds.extend([RowKind::UpdateBefore as i8, RowKind::UpdateAfter as i8]);
            }
            Some("d") if has_before => {
                take.push(i as u32);
                kinds.push(RowKind::Delete as i8);
            }
            Some("u") if has_before => {
                bad.push((i, "a Debezium update event without 'after'".into()))
            }
            Some("u" | "d") => bad.push((
                i,
                format!(
                    "a Debezium '{}' event without 'before': the table's changes need the \
                     old row (for PostgreSQL, set REPLICA IDENTITY FULL on the table)",
                    op.unwrap_or_default()
                ),
            )),
            Some("c" | "r") => bad.push((i, "a Debezium create event without 'after'".into())),
            Some(other) => bad.push((
                i,
                format!("'op' is '{other}', not one of Debezium's c, r, u, d"),
            )),
            None => bad.push((i, "no 'op': not a Debezium change event".into())),
        }
    }
    if take.is_empty() {
        return Ok((None, bad));
    }
    let both = arrow::compute::concat(&[before as &dyn Array, after as &dyn Array])?;
    let rows = arrow::compute::take(&both, &UInt32Array::from(take), None)?;
    let rows = rows.as_struct();
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    columns.push(Arc::new(Int8Array::from(kinds)));
    let batch =
        RecordBatch::try_new(changelog_schema(table), columns).map_err(|e| FungiError::Decode {
            source_name: "debezium-json".into(),
            line: 0,
            reason: format!("a change event's row does not fit the table: {e}"),
        })?;
    Ok((Some(batch), bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{RecordFormat, decode_records};
    use arrow::datatypes::{Int8Type, Int64Type};

    fn table() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn decode(records: &[&str], schema_include: bool) -> (RecordBatch, Vec<(usize, String)>) {
        let records: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        let (events, bad) = decode_records(
            &envelope_schema(&table(), schema_include),
            RecordFormat::Json,
            &records,
        );
        assert!(bad.is_empty(), "{bad:?}");
        let (rows, bad) = to_changelog(&events.unwrap(), &table(), schema_include).unwrap();
        (rows.unwrap(), bad)
    }

    #[test]
    fn creates_updates_and_deletes_become_a_changelog() {
        let (rows, bad) = decode(
            &[
                r#"{"before": null, "after": {"id": 1, "name": "a"}, "op": "c"}"#,
                r#"{"before": {"id": 1, "name": "a"}, "after": {"id": 1, "name": "b"}, "op": "u"}"#,
                r#"{"before": {"id": 1, "name": "b"}, "after": null, "op": "d"}"#,
                r#"{"before": null, "after": {"id": 2, "name": null}, "op": "r", "ts_ms": 5}"#,
                r#"{"before": null, "after": {"id": 3, "name": "x"}, "op": "u"}"#,
                r#"{"after": {"id": 4, "name": "y"}, "op": "t"}"#,
            ],
            false,
        );
        let ids = rows.column(0).as_primitive::<Int64Type>().values().to_vec();
        let ops = rows.column(2).as_primitive::<Int8Type>().values().to_vec();
        assert_eq!(ids, [1, 1, 1, 1, 2]);
        assert_eq!(ops, [0, 1, 2, 3, 0]);
        assert_eq!(rows.column(1).as_string::<i32>().value(2), "b");
        assert!(rows.column(1).is_null(4));
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [4, 5]);
        assert!(bad[0].1.contains("REPLICA IDENTITY FULL"), "{bad:?}");
        assert!(bad[1].1.contains("'op' is 't'"), "{bad:?}");
    }

    #[test]
    fn events_with_their_schema_are_read_from_the_payload() {
        let (rows, bad) = decode(
            &[
                r#"{"schema": {"type": "struct"}, "payload": {"before": null, "after": {"id": 7, "name": "z"}, "op": "c"}}"#,
            ],
            true,
        );
        assert!(bad.is_empty());
        assert_eq!(rows.num_rows(), 1);
        assert_eq!(rows.column(1).as_string::<i32>().value(0), "z");
    }
}
