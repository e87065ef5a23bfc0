//! Batches that hold only the bytes their rows use, before they are serialised.
//!
//! A view column (`Utf8View`, `BinaryView`) taken or sliced from a larger one keeps
//! referencing the larger column's data buffers, and Arrow IPC writes those buffers
//! whole. A hash partition's share of a source batch, sent to another host, written to
//! a checkpoint or handed to a plugin as it is, would carry every other partition's
//! string bytes too (at parallelism 2 on Nexmark q20: twice the bytes between
//! TaskManagers and twice the join state each keeps). [`compact_views`] copies the used
//! bytes of such columns into buffers of their own; the serialisation copies them once
//! anyway, so compacting first costs about what the waste would have cost to encode.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, GenericByteViewArray, RecordBatch, RecordBatchOptions};
use arrow::buffer::Buffer;
use arrow::datatypes::{ByteViewType, DataType};
use arrow::error::ArrowError;

/// `batch` with each top-level view column that wastes more than a quarter of its data
/// buffers compacted (see the module documentation); other columns are shared, and a
/// batch with nothing to compact is returned as it is.
pub fn compact_views(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let mut columns = batch.columns().to_vec();
    let mut changed = false;
    for column in &mut columns {
        if let Some(compacted) = compact_column(column) {
            *column = compacted;
            changed = true;
        }
    }
    if !changed {
        return Ok(batch);
    }
    RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// A compacted copy of `column` when it is a view column holding more than it uses.
fn compact_column(column: &ArrayRef) -> Option<ArrayRef> {
    match column.data_type() {
        DataType::Utf8View => {
            let array = column.as_string_view();
            wasteful(array).then(|| Arc::new(array.gc()) as ArrayRef)
        }
        DataType::BinaryView => {
            let array = column.as_binary_view();
            wasteful(array).then(|| Arc::new(array.gc()) as ArrayRef)
        }
        _ => None,
    }
}

/// Whether `array`'s data buffers hold more than a quarter beyond the bytes its views use.
fn wasteful<T: ByteViewType + ?Sized>(array: &GenericByteViewArray<T>) -> bool {
    let held: usize = array.data_buffers().iter().map(Buffer::len).sum();
    let used = array.total_buffer_bytes_used();
    held > used + used / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringViewArray, UInt32Array};

    fn long(i: usize) -> String {
        format!("a string longer than twelve bytes, number {i}")
    }

    #[test]
    fn a_share_of_a_view_column_is_compacted_and_keeps_its_values() {
        let strings: StringViewArray = (0..1000).map(|i| Some(long(i))).collect();
        let numbers = Int64Array::from_iter_values(0..1000);
        let whole = RecordBatch::try_from_iter([
            ("s", Arc::new(strings) as ArrayRef),
            ("n", Arc::new(numbers) as ArrayRef),
        ])
        .unwrap();
        let rows = UInt32Array::from_iter_values((0..1000).step_by(10));
        let share = arrow::compute::take_record_batch(&whole, &rows).unwrap();
        let compacted = compact_views(share.clone()).unwrap();
        assert_eq!(compacted, share);
        let held: usize = compacted
            .column(0)
            .as_string_view()
            .data_buffers()
            .iter()
            .map(Buffer::len)
            .sum();
        assert_eq!(
            held,
            (0..1000).step_by(10).map(|i| long(i).len()).sum::<usize>()
        );
        // Columns without views are shared, not copied.
        assert!(Arc::ptr_eq(compacted.column(1), share.column(1)));
    }

    #[test]
    fn a_column_that_uses_its_buffers_is_left_alone() {
        let strings: StringViewArray = (0..100).map(|i| Some(long(i))).collect();
        let batch = RecordBatch::try_from_iter([("s", Arc::new(strings) as ArrayRef)]).unwrap();
        let same = compact_views(batch.clone()).unwrap();
        assert!(Arc::ptr_eq(same.column(0), batch.column(0)));
    }
}
