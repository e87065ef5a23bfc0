//! Flink's `ARRAY_CONTAINS(a, x)` and `ARRAY_POSITION(a, x)`, which treat NULL as a
//! value to look for where DataFusion's `array_has` and `array_position` answer NULL:
//!
//! | call | Flink (here) | DataFusion alone |
//! |---|---|---|
//! | `ARRAY_CONTAINS(ARRAY[1, 2], NULL)` | FALSE | NULL |
//! | `ARRAY_CONTAINS(ARRAY[1, NULL], NULL)` | TRUE | NULL |
//! | `ARRAY_CONTAINS(ARRAY[1, NULL], 2)` | FALSE | NULL |
//! | `ARRAY_POSITION(ARRAY[1, 2], 3)` | 0 | NULL |
//!
//! Both are NULL for a NULL array; `ARRAY_POSITION` is NULL for a NULL element, as in
//! Flink. Columnar: the element to look for is repeated along the arrays' flattened
//! values and compared to them in one kernel call per batch.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Int32Builder, UInt32Array,
};
use arrow::compute::kernels::cmp::not_distinct;
use arrow::compute::take;
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The functions of this module, to register in a session.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    ["array_contains", "array_position"]
        .into_iter()
        .map(|name| {
            ScalarUDF::new_from_impl(ArraySearch {
                name,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArraySearch {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for ArraySearch {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        match arg_types {
            [a @ DataType::List(item), _] => Ok(vec![a.clone(), item.data_type().clone()]),
            [
                DataType::LargeList(item) | DataType::FixedSizeList(item, _),
                _,
            ] => Ok(vec![DataType::List(item.clone()), item.data_type().clone()]),
            _ => plan_err!(
                "{} takes an ARRAY and a value, got {arg_types:?}",
                self.name.to_uppercase()
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(if self.name == "array_contains" {
            DataType::Boolean
        } else {
            DataType::Int32
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if scalars { 1 } else { args.number_rows };
        let arrays = args.args[0].to_array(n)?;
        let needles = args.args[1].to_array(n)?;
        let out = search(&arrays, &needles, self.name == "array_contains")?;
        Ok(if scalars {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// For each row, whether (`contains`) or where (from 1; 0 when absent) the row's needle
/// is among the row's array elements.
fn search(
    arrays: &ArrayRef,
    needles: &ArrayRef,
    contains: bool,
) -> datafusion::common::Result<ArrayRef> {
    let lists = arrays.as_list::<i32>();
    let offsets = lists.value_offsets();
    let first = offsets[0] as usize;
    let values = lists
        .values()
        .slice(first, offsets[lists.len()] as usize - first);
    // The row each flattened element belongs to, to repeat the needles along them.
    let owners = UInt32Array::from_iter_values(
        offsets
            .windows(2)
            .enumerate()
            .flat_map(|(row, w)| std::iter::repeat_n(row as u32, (w[1] - w[0]) as usize)),
    );
    let repeated = take(needles.as_ref(), &owners, None)?;
    let equal: BooleanArray = not_distinct(&values, &repeated)?;
    let found = |row: usize| {
        let (start, end) = (
            offsets[row] as usize - first,
            offsets[row + 1] as usize - first,
        );
        (start..end).position(|i| equal.value(i))
    };
    Ok(if contains {
        let mut out = BooleanBuilder::with_capacity(lists.len());
        for row in 0..lists.len() {
            out.append_option(lists.is_valid(row).then(|| found(row).is_some()));
        }
        Arc::new(out.finish())
    } else {
        let mut out = Int32Builder::with_capacity(lists.len());
        for row in 0..lists.len() {
            let answer = (lists.is_valid(row) && needles.is_valid(row))
                .then(|| found(row).map_or(0, |i| i as i32 + 1));
            out.append_option(answer);
        }
        Arc::new(out.finish())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, ListArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn null_is_a_value_to_look_for() {
        let arrays: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            Some(vec![Some(1), None]),
            Some(vec![Some(1), Some(2)]),
            None,
        ]));
        let needles: ArrayRef = Arc::new(Int32Array::from(vec![None, Some(2), Some(2), Some(1)]));
        let contains = search(&arrays, &needles, true).unwrap();
        let contains: Vec<_> = contains.as_boolean().iter().collect();
        assert_eq!(contains, [Some(true), Some(false), Some(true), None]);
        let positions = search(&arrays, &needles, false).unwrap();
        let positions: Vec<_> = positions.as_primitive::<Int32Type>().iter().collect();
        assert_eq!(positions, [None, Some(0), Some(2), None]);
    }
}
