//! Key hashing and key groups.
//!
//! Keyed streams are partitioned as in Flink: the key columns of each row are hashed, the
//! hash picks one of `max_parallelism` *key groups*, and contiguous ranges of key groups
//! are owned by the subtasks of an operator. State is stored per key group, so a savepoint
//! can be restored at another parallelism by handing out the key groups anew.
//!
//! The hash is computed column by column over whole arrays into a reused `Vec<u64>`: no
//! per-row allocation and no per-row dynamic dispatch. It is stable across processes,
//! platforms and releases (fixed mixing functions, XXH3 for bytes) because key groups are
//! written into checkpoints.

use std::ops::Range;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::kernels::cast;
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};

use crate::error::{FungiError, Result};

const NULL_HASH: u64 = 0x5bd1_e995_1234_5678;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Finalizer of MurmurHash3 (fmix64): a fast, well-distributed mix of 64 bits.
#[inline]
pub fn mix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[inline]
fn combine(acc: u64, h: u64) -> u64 {
    mix64(acc.rotate_left(5) ^ h)
}

/// Hashes the rows of `columns` into `out` (resized to the row count).
///
/// Supported key types: integers, floats, booleans, dates, timestamps, strings and
/// binaries (all Arrow layouts). Nulls hash to a fixed value.
pub fn hash_columns(columns: &[ArrayRef], out: &mut Vec<u64>) -> Result<()> {
    let rows = columns.first().map_or(0, |c| c.len());
    out.clear();
    out.resize(rows, SEED);
    for column in columns {
        hash_column(column, out)?;
    }
    Ok(())
}

macro_rules! hash_primitive {
    ($array:expr, $out:expr, $ty:ty, $to_bits:expr) => {{
        let array = $array.as_primitive::<$ty>();
        let to_bits = $to_bits;
        if array.null_count() == 0 {
            for (h, v) in $out.iter_mut().zip(array.values().iter()) {
                *h = combine(*h, mix64(to_bits(*v)));
            }
        } else {
            for (i, h) in $out.iter_mut().enumerate() {
                let v = if array.is_null(i) {
                    NULL_HASH
                } else {
                    mix64(to_bits(array.value(i)))
                };
                *h = combine(*h, v);
            }
        }
    }};
}

macro_rules! hash_bytes {
    ($array:expr, $out:expr) => {{
        let array = $array;
        for (i, h) in $out.iter_mut().enumerate() {
            let v = if array.is_null(i) {
                NULL_HASH
            } else {
                let bytes: &[u8] = array.value(i).as_ref();
                xxhash_rust::xxh3::xxh3_64(bytes)
            };
            *h = combine(*h, v);
        }
    }};
}

fn hash_column(column: &ArrayRef, out: &mut [u64]) -> Result<()> {
    match column.data_type() {
        DataType::Int8 => hash_primitive!(column, out, Int8Type, |v: i8| v as i64 as u64),
        DataType::Int16 => hash_primitive!(column, out, Int16Type, |v: i16| v as i64 as u64),
        DataType::Int32 => hash_primitive!(column, out, Int32Type, |v: i32| v as i64 as u64),
        DataType::Int64 => hash_primitive!(column, out, Int64Type, |v: i64| v as u64),
        DataType::UInt8 => hash_primitive!(column, out, UInt8Type, |v: u8| v as u64),
        DataType::UInt16 => hash_primitive!(column, out, UInt16Type, |v: u16| v as u64),
        DataType::UInt32 => hash_primitive!(column, out, UInt32Type, |v: u32| v as u64),
        DataType::UInt64 => hash_primitive!(column, out, UInt64Type, |v: u64| v),
        DataType::Float32 => {
            hash_primitive!(column, out, Float32Type, |v: f32| v.to_bits() as u64)
        }
        DataType::Float64 => hash_primitive!(column, out, Float64Type, |v: f64| v.to_bits()),
        DataType::Boolean => {
            let array = column.as_boolean();
            for (i, h) in out.iter_mut().enumerate() {
                let v = if array.is_null(i) {
                    NULL_HASH
                } else {
                    mix64(array.value(i) as u64 + 1)
                };
                *h = combine(*h, v);
            }
        }
        DataType::Utf8 => hash_bytes!(column.as_string::<i32>(), out),
        DataType::LargeUtf8 => hash_bytes!(column.as_string::<i64>(), out),
        DataType::Utf8View => hash_bytes!(column.as_string_view(), out),
        DataType::Binary => hash_bytes!(column.as_binary::<i32>(), out),
        DataType::LargeBinary => hash_bytes!(column.as_binary::<i64>(), out),
        DataType::BinaryView => hash_bytes!(column.as_binary_view(), out),
        DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(_, _)
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Duration(_) => {
            let ints = cast::cast(column, &DataType::Int64)?;
            hash_primitive!(ints, out, Int64Type, |v: i64| v as u64)
        }
        other => {
            return Err(FungiError::Plan(format!(
                "cannot use a column of type {other} as a key"
            )));
        }
    }
    Ok(())
}

/// The mapping from hashes to key groups and from key groups to subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroups {
    max_parallelism: u32,
}

impl KeyGroups {
    /// Key groups for a job with the given maximum parallelism (number of key groups).
    pub fn new(max_parallelism: u32) -> Self {
        assert!(max_parallelism > 0, "max_parallelism must be positive");
        KeyGroups { max_parallelism }
    }

    /// Number of key groups.
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// The key group of a key hash.
    #[inline]
    pub fn key_group(&self, hash: u64) -> u32 {
        // Mix once more so that a hash that is used elsewhere for buckets (low bits)
        // does not correlate with the key group.
        (mix64(hash ^ SEED) % self.max_parallelism as u64) as u32
    }

    /// The subtask (of `parallelism`) that owns `key_group`, as Flink computes it.
    #[inline]
    pub fn subtask_for_key_group(&self, key_group: u32, parallelism: u32) -> u32 {
        (key_group as u64 * parallelism as u64 / self.max_parallelism as u64) as u32
    }

    /// The contiguous range of key groups owned by subtask `index` of `parallelism`.
    pub fn range_for_subtask(&self, index: u32, parallelism: u32) -> Range<u32> {
        let maxp = self.max_parallelism as u64;
        let p = parallelism as u64;
        let i = index as u64;
        let start = (i * maxp).div_ceil(p);
        let end = ((i + 1) * maxp - 1) / p + 1;
        start as u32..end as u32
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn equal_keys_hash_equal_across_int_widths() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let b: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let (mut ha, mut hb) = (Vec::new(), Vec::new());
        hash_columns(&[a], &mut ha).unwrap();
        hash_columns(&[b], &mut hb).unwrap();
        assert_eq!(ha, hb);
        assert_ne!(ha[0], ha[1]);
    }

    #[test]
    fn hash_is_stable() {
        // Key groups are written into checkpoints: this value must never change.
        let a: ArrayRef = Arc::new(StringArray::from(vec!["fungi"]));
        let mut h = Vec::new();
        hash_columns(&[a], &mut h).unwrap();
        assert_eq!(
            KeyGroups::new(128).key_group(h[0]),
            KeyGroups::new(128).key_group(h[0])
        );
        let again = {
            let a: ArrayRef = Arc::new(StringArray::from(vec!["fungi"]));
            let mut h2 = Vec::new();
            hash_columns(&[a], &mut h2).unwrap();
            h2[0]
        };
        assert_eq!(h[0], again);
    }

    #[test]
    fn ranges_match_subtask_assignment() {
        for maxp in [1u32, 7, 128, 1000] {
            let kg = KeyGroups::new(maxp);
            for p in 1..=maxp.min(13) {
                for g in 0..maxp {
                    let s = kg.subtask_for_key_group(g, p);
                    assert!(
                        kg.range_for_subtask(s, p).contains(&g),
                        "maxp {maxp} p {p} g {g}"
                    );
                }
            }
        }
    }
}
