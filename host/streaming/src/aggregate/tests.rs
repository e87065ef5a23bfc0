use super::*;
use arrow::array::{AsArray, Float64Array, Int32Array};
use arrow::datatypes::{Float64Type, Int64Type};

#[test]
fn fold_with_nulls_and_merge() {
    let f = Sum;
    let mut acc = f.accumulator(&[DataType::Int32]).unwrap();
    let col: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, Some(3), Some(4)]));
    acc.update_batch(&[col], &[0, 0, 1, 1], 3).unwrap();
    acc.merge_groups(&[(2, 0), (2, 1)], 3).unwrap();
    let out = acc.evaluate(&[0, 1, 2]).unwrap();
    assert_eq!(
        out.as_primitive::<Int64Type>().values().as_ref(),
        &[1, 7, 8]
    );
    acc.reset(&[0]).unwrap();
    assert!(acc.evaluate(&[0]).unwrap().is_null(0));
}

#[test]
fn min_keeps_input_type_and_avg_divides() {
    let col: ArrayRef = Arc::new(Int32Array::from(vec![5, 2, 9]));
    let mut m = Min.accumulator(&[DataType::Int32]).unwrap();
    m.update_batch(std::slice::from_ref(&col), &[0, 0, 0], 1)
        .unwrap();
    assert_eq!(
        m.evaluate(&[0])
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>()
            .value(0),
        2
    );
    // Flink types an average as its argument: 16 / 3 is 5 for INT, with a negative
    // average truncated toward zero.
    let mut a = Avg.accumulator(&[DataType::Int32]).unwrap();
    let negative: ArrayRef = Arc::new(Int32Array::from(vec![-5, -2]));
    a.update_batch(&[col], &[0, 0, 0], 2).unwrap();
    a.update_batch(&[negative], &[1, 1], 2).unwrap();
    let out = a.evaluate(&[0, 1]).unwrap();
    let out = out.as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(out.values().as_ref(), &[5, -3]);
    let doubles: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0]));
    let mut a = Avg.accumulator(&[DataType::Float64]).unwrap();
    a.update_batch(&[doubles], &[0, 0], 1).unwrap();
    let out = a.evaluate(&[0]).unwrap();
    assert_eq!(out.as_primitive::<Float64Type>().value(0), 1.5);
    assert!(Sum.accumulator(&[DataType::Utf8]).is_err());
}
