//! Aggregates that fold each value into one running value per group: `sum`, `min`, `max`.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBufferBuilder, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::cast;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float64Type, Int64Type};
use fungi_common::{FungiError, Result};

use super::count::CountAccumulator;
use super::{
    AggregateFunction, GroupsAccumulator, grow, merge_sum_count_state, numeric_domain, one_arg,
    sum_count_state,
};

/// How a [`FoldAccumulator`] combines two values.
pub(super) trait Fold<N>: Send + 'static {
    fn fold(acc: N, v: N) -> N;
    /// Takes `v` back out of `acc`, if the fold can.
    fn unfold(acc: N, v: N) -> Option<N> {
        let _ = (acc, v);
        None
    }
}

pub(super) struct AddFold;
struct MinFold;
struct MaxFold;

impl Fold<i64> for AddFold {
    #[inline]
    fn fold(acc: i64, v: i64) -> i64 {
        acc.wrapping_add(v)
    }
    #[inline]
    fn unfold(acc: i64, v: i64) -> Option<i64> {
        Some(acc.wrapping_sub(v))
    }
}
impl Fold<f64> for AddFold {
    #[inline]
    fn fold(acc: f64, v: f64) -> f64 {
        acc + v
    }
    #[inline]
    fn unfold(acc: f64, v: f64) -> Option<f64> {
        Some(acc - v)
    }
}
impl Fold<i64> for MinFold {
    #[inline]
    fn fold(acc: i64, v: i64) -> i64 {
        acc.min(v)
    }
}
impl Fold<f64> for MinFold {
    #[inline]
    fn fold(acc: f64, v: f64) -> f64 {
        acc.min(v)
    }
}
impl Fold<i64> for MaxFold {
    #[inline]
    fn fold(acc: i64, v: i64) -> i64 {
        acc.max(v)
    }
}
impl Fold<f64> for MaxFold {
    #[inline]
    fn fold(acc: f64, v: f64) -> f64 {
        acc.max(v)
    }
}

/// One value per group, folded with `F`, null until a non-null input arrives.
struct FoldAccumulator<T: ArrowPrimitiveType, F> {
    values: Vec<T::Native>,
    seen: Vec<bool>,
    /// The type the result is cast back to (e.g. Int32 for `min` of an INT column).
    output: DataType,
    _f: PhantomData<F>,
}

impl<T: ArrowPrimitiveType, F> FoldAccumulator<T, F> {
    fn new(output: DataType) -> Self {
        FoldAccumulator {
            values: Vec::new(),
            seen: Vec::new(),
            output,
            _f: PhantomData,
        }
    }
}

impl<T, F> GroupsAccumulator for FoldAccumulator<T, F>
where
    T: ArrowPrimitiveType,
    F: Fold<T::Native>,
{
    fn update_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        grow(&mut self.values, total, T::Native::default());
        grow(&mut self.seen, total, false);
        let input = cast::cast(&values[0], &T::DATA_TYPE)?;
        let input = input.as_primitive::<T>();
        let vals = input.values();
        match input.nulls() {
            None => {
                for (&g, &v) in groups.iter().zip(vals.iter()) {
                    let g = g as usize;
                    self.values[g] = if self.seen[g] {
                        F::fold(self.values[g], v)
                    } else {
                        v
                    };
                    self.seen[g] = true;
                }
            }
            Some(nulls) => {
                for ((&g, &v), valid) in groups.iter().zip(vals.iter()).zip(nulls.iter()) {
                    if valid {
                        let g = g as usize;
                        self.values[g] = if self.seen[g] {
                            F::fold(self.values[g], v)
                        } else {
                            v
                        };
                        self.seen[g] = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        grow(&mut self.values, total, T::Native::default());
        grow(&mut self.seen, total, false);
        let input = cast::cast(&values[0], &T::DATA_TYPE)?;
        let input = input.as_primitive::<T>();
        for (i, (&g, &v)) in groups.iter().zip(input.values().iter()).enumerate() {
            if input.is_valid(i) {
                let g = g as usize;
                self.values[g] = F::unfold(self.values[g], v).ok_or_else(|| {
                    FungiError::Plan("this aggregate cannot take rows back".into())
                })?;
            }
        }
        Ok(())
    }

    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total: usize) -> Result<()> {
        grow(&mut self.values, total, T::Native::default());
        grow(&mut self.seen, total, false);
        for &(d, s) in dst_src {
            let (d, s) = (d as usize, s as usize);
            if self.seen[s] {
                self.values[d] = if self.seen[d] {
                    F::fold(self.values[d], self.values[s])
                } else {
                    self.values[s]
                };
                self.seen[d] = true;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        let mut validity = BooleanBufferBuilder::new(groups.len());
        let values: Vec<T::Native> = groups
            .iter()
            .map(|&g| {
                let g = g as usize;
                let seen = self.seen.get(g).copied().unwrap_or(false);
                validity.append(seen);
                if seen {
                    self.values[g]
                } else {
                    T::Native::default()
                }
            })
            .collect();
        let array: ArrayRef = Arc::new(PrimitiveArray::<T>::new(
            values.into(),
            Some(NullBuffer::new(validity.finish())),
        ));
        if array.data_type() == &self.output {
            Ok(array)
        } else {
            Ok(cast::cast(&array, &self.output)?)
        }
    }

    fn reset(&mut self, groups: &[u32]) -> Result<()> {
        for &g in groups {
            if let Some(s) = self.seen.get_mut(g as usize) {
                *s = false;
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
    // A partial fold is a value like any other: saved as the result, merged by folding.
    fn state(&mut self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(groups)?])
    }
    fn merge_state(&mut self, state: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        self.update_batch(state, groups, total)
    }
}

pub(super) fn fold_accumulator<A, B>(
    domain: &DataType,
    output: DataType,
) -> Box<dyn GroupsAccumulator>
where
    A: Fold<i64>,
    B: Fold<f64>,
{
    if domain == &DataType::Float64 {
        Box::new(FoldAccumulator::<Float64Type, B>::new(output))
    } else {
        Box::new(FoldAccumulator::<Int64Type, A>::new(output))
    }
}

/// `sum`: BIGINT for integer input, DOUBLE for floating-point input.
#[derive(Debug, Clone, Copy)]
pub struct Sum;

impl AggregateFunction for Sum {
    fn name(&self) -> &str {
        "sum"
    }
    fn merges_partial_states(&self) -> bool {
        true
    }
    fn return_type(&self, input: &[DataType]) -> Result<DataType> {
        numeric_domain("sum", &one_arg("sum", input)?)
    }
    fn accumulator(&self, input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>> {
        let domain = self.return_type(input)?;
        Ok(fold_accumulator::<AddFold, AddFold>(
            &domain,
            domain.clone(),
        ))
    }
    fn retracting_accumulator(
        &self,
        input: &[DataType],
    ) -> Result<Option<Box<dyn GroupsAccumulator>>> {
        Ok(Some(Box::new(RetractingSum {
            sum: self.accumulator(input)?,
            count: CountAccumulator::default(),
        })))
    }
}

/// A sum that can take values back: it also counts the non-null values, so a group whose
/// values were all retracted is NULL again, not 0.
struct RetractingSum {
    sum: Box<dyn GroupsAccumulator>,
    count: CountAccumulator,
}

impl GroupsAccumulator for RetractingSum {
    fn update_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        self.sum.update_batch(values, groups, total)?;
        self.count.update_batch(values, groups, total)
    }
    fn retract_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        self.sum.retract_batch(values, groups, total)?;
        self.count.retract_batch(values, groups, total)
    }
    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total: usize) -> Result<()> {
        self.sum.merge_groups(dst_src, total)?;
        self.count.merge_groups(dst_src, total)
    }
    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        let sums = self.sum.evaluate(groups)?;
        let counts = self.count.evaluate(groups)?;
        let empty: arrow::array::BooleanArray = counts
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&c| Some(c <= 0))
            .collect();
        Ok(arrow::compute::nullif(&sums, &empty)?)
    }
    fn reset(&mut self, groups: &[u32]) -> Result<()> {
        self.sum.reset(groups)?;
        self.count.reset(groups)
    }
    fn size(&self) -> usize {
        self.sum.size() + self.count.size()
    }
    fn state(&mut self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        sum_count_state(self.sum.as_mut(), &mut self.count, groups)
    }
    fn merge_state(&mut self, state: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        merge_sum_count_state(self.sum.as_mut(), &mut self.count, state, groups, total)
    }
}

/// `min`: the input type.
#[derive(Debug, Clone, Copy)]
pub struct Min;

impl AggregateFunction for Min {
    fn name(&self) -> &str {
        "min"
    }
    fn merges_partial_states(&self) -> bool {
        true
    }
    fn return_type(&self, input: &[DataType]) -> Result<DataType> {
        let t = one_arg("min", input)?;
        numeric_domain("min", &t)?;
        Ok(t)
    }
    fn accumulator(&self, input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>> {
        let t = self.return_type(input)?;
        Ok(fold_accumulator::<MinFold, MinFold>(
            &numeric_domain("min", &t)?,
            t,
        ))
    }
}

/// `max`: the input type.
#[derive(Debug, Clone, Copy)]
pub struct Max;

impl AggregateFunction for Max {
    fn name(&self) -> &str {
        "max"
    }
    fn merges_partial_states(&self) -> bool {
        true
    }
    fn return_type(&self, input: &[DataType]) -> Result<DataType> {
        let t = one_arg("max", input)?;
        numeric_domain("max", &t)?;
        Ok(t)
    }
    fn accumulator(&self, input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>> {
        let t = self.return_type(input)?;
        Ok(fold_accumulator::<MaxFold, MaxFold>(
            &numeric_domain("max", &t)?,
            t,
        ))
    }
}
