//! The hash join both join operators use: equal keys, plus a per-pair condition.

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast, take};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use fungi_common::Result;
use fungi_common::keys::hash_columns;
use hashbrown::HashTable;

/// Pairs `(left row, right row)` whose key columns are equal and for which `accept`
/// holds. Builds a hash table on the right keys (cast to the left key types), probes with
/// the left ones; without keys every pair is a candidate. A row with a NULL in any key
/// column matches nothing (SQL equality: `NULL = NULL` is not true). `hashes` is scratch
/// space.
pub(crate) fn matching_pairs(
    left: &[ArrayRef],
    right: &[ArrayRef],
    left_rows: usize,
    right_rows: usize,
    hashes: &mut Vec<u64>,
    mut accept: impl FnMut(usize, usize) -> bool,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let (mut li, mut ri) = (Vec::new(), Vec::new());
    if left.is_empty() {
        for i in 0..left_rows {
            for j in 0..right_rows {
                if accept(i, j) {
                    li.push(i as u32);
                    ri.push(j as u32);
                }
            }
        }
        return Ok((li, ri));
    }
    let right: Vec<ArrayRef> = right
        .iter()
        .zip(left)
        .map(|(r, l)| cast(r, l.data_type()))
        .collect::<Result<_, _>>()?;
    let converter = RowConverter::new(
        left.iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let (lrows, rrows) = (
        converter.convert_columns(left)?,
        converter.convert_columns(&right)?,
    );
    let (lnulls, rnulls) = (key_nulls(left), key_nulls(&right));
    let valid = |nulls: &Option<NullBuffer>, i: usize| nulls.as_ref().is_none_or(|b| b.is_valid(i));
    // Build: the first row of each key in the table, the others chained behind it.
    hash_columns(&right, hashes)?;
    let rhash = std::mem::take(hashes);
    let mut table: HashTable<u32> = HashTable::with_capacity(right_rows);
    let mut next = vec![u32::MAX; right_rows];
    for (j, &h) in rhash.iter().enumerate() {
        if !valid(&rnulls, j) {
            continue;
        }
        let row = rrows.row(j);
        match table.find_mut(h, |&k| rrows.row(k as usize) == row) {
            Some(head) => {
                next[j] = *head;
                *head = j as u32;
            }
            None => {
                table.insert_unique(h, j as u32, |&k| rhash[k as usize]);
            }
        }
    }
    // Probe.
    hash_columns(left, hashes)?;
    for (i, &h) in hashes.iter().enumerate() {
        if !valid(&lnulls, i) {
            continue;
        }
        let row = lrows.row(i);
        if let Some(&head) = table.find(h, |&k| rrows.row(k as usize) == row) {
            let mut j = head;
            while j != u32::MAX {
                if accept(i, j as usize) {
                    li.push(i as u32);
                    ri.push(j);
                }
                j = next[j as usize];
            }
        }
    }
    Ok((li, ri))
}

/// The rows with a NULL in any of `columns` (as null bits), or `None` if there are none.
fn key_nulls(columns: &[ArrayRef]) -> Option<NullBuffer> {
    columns.iter().fold(None, |acc, c| {
        NullBuffer::union(acc.as_ref(), c.logical_nulls().as_ref())
    })
}

/// The key columns of `left` and `right` for (left, right) key index pairs.
pub(crate) fn key_columns(
    keys: &[(usize, usize)],
    left: &RecordBatch,
    right: &RecordBatch,
) -> (Vec<ArrayRef>, Vec<ArrayRef>) {
    keys.iter()
        .map(|&(l, r)| (left.column(l).clone(), right.column(r).clone()))
        .unzip()
}

/// The joined rows: the left columns taken at `li`, then the right columns at `ri`.
pub(crate) fn gather(
    output: &SchemaRef,
    left: &RecordBatch,
    right: &RecordBatch,
    li: Vec<u32>,
    ri: Vec<u32>,
) -> Result<Option<RecordBatch>> {
    if li.is_empty() {
        return Ok(None);
    }
    let (li, ri) = (UInt32Array::from(li), UInt32Array::from(ri));
    let mut columns = Vec::with_capacity(output.fields().len());
    for c in left.columns() {
        columns.push(take(c, &li, None)?);
    }
    for c in right.columns() {
        columns.push(take(c, &ri, None)?);
    }
    Ok(Some(RecordBatch::try_new(output.clone(), columns)?))
}
