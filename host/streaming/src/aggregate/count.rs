//! `count` and `count(DISTINCT x)`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, Int64Builder, ListBuilder};
use arrow::compute::kernels::cast;
use arrow::datatypes::{DataType, Int64Type};
use fungi_common::{FungiError, Result};

use super::{AggregateFunction, GroupsAccumulator, grow, one_arg};

/// `count`.
#[derive(Debug, Clone, Copy)]
pub struct Count;

impl AggregateFunction for Count {
    fn name(&self) -> &str {
        "count"
    }
    fn merges_partial_states(&self) -> bool {
        true
    }
    fn return_type(&self, input: &[DataType]) -> Result<DataType> {
        if input.len() > 1 {
            return Err(FungiError::Plan("count takes at most one argument".into()));
        }
        Ok(DataType::Int64)
    }
    fn accumulator(&self, _input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(CountAccumulator::default()))
    }
    fn retracting_accumulator(
        &self,
        input: &[DataType],
    ) -> Result<Option<Box<dyn GroupsAccumulator>>> {
        self.accumulator(input).map(Some)
    }
}

#[derive(Debug, Default)]
pub(super) struct CountAccumulator {
    counts: Vec<i64>,
}

impl CountAccumulator {
    /// Adds `delta` per counted row.
    fn add(&mut self, values: &[ArrayRef], groups: &[u32], total: usize, delta: i64) {
        grow(&mut self.counts, total, 0);
        match values.first().and_then(|v| v.logical_nulls()) {
            Some(nulls) => {
                for (&g, valid) in groups.iter().zip(nulls.iter()) {
                    self.counts[g as usize] += delta * valid as i64;
                }
            }
            None => {
                for &g in groups {
                    self.counts[g as usize] += delta;
                }
            }
        }
    }
}

impl GroupsAccumulator for CountAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        self.add(values, groups, total, 1);
        Ok(())
    }
    fn retract_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        self.add(values, groups, total, -1);
        Ok(())
    }
    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total: usize) -> Result<()> {
        grow(&mut self.counts, total, 0);
        for &(d, s) in dst_src {
            self.counts[d as usize] += self.counts[s as usize];
        }
        Ok(())
    }
    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(groups.iter().map(
            |&g| self.counts.get(g as usize).copied().unwrap_or(0),
        ))))
    }
    fn reset(&mut self, groups: &[u32]) -> Result<()> {
        for &g in groups {
            if let Some(c) = self.counts.get_mut(g as usize) {
                *c = 0;
            }
        }
        Ok(())
    }
    fn size(&self) -> usize {
        self.counts.capacity() * 8
    }
    fn state(&mut self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(groups)?])
    }
    fn merge_state(&mut self, state: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        grow(&mut self.counts, total, 0);
        let counts = state[0].as_primitive::<Int64Type>();
        for (&g, &c) in groups.iter().zip(counts.values().iter()) {
            self.counts[g as usize] += c;
        }
        Ok(())
    }
}

/// `count(DISTINCT x)` for integer (and date/time) arguments: an exact set of values per
/// group, so groups can be read, merged and reset in place.
#[derive(Debug, Clone, Copy)]
pub struct CountDistinct;

impl AggregateFunction for CountDistinct {
    fn name(&self) -> &str {
        "count_distinct"
    }
    fn merges_partial_states(&self) -> bool {
        true
    }
    fn return_type(&self, input: &[DataType]) -> Result<DataType> {
        match one_arg("count(DISTINCT)", input)? {
            t if t.is_integer() || t.is_temporal() => Ok(DataType::Int64),
            other => Err(FungiError::Plan(format!(
                "the native count(DISTINCT) takes integers, not {other}"
            ))),
        }
    }
    fn accumulator(&self, input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>> {
        self.return_type(input)?;
        Ok(Box::new(CountDistinctAccumulator::default()))
    }
}

#[derive(Debug, Default)]
struct CountDistinctAccumulator {
    sets: Vec<hashbrown::HashSet<i64>>,
}

impl GroupsAccumulator for CountDistinctAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        if self.sets.len() < total {
            self.sets.resize_with(total, Default::default);
        }
        let ints = cast::cast(&values[0], &DataType::Int64)?;
        let ints = ints.as_primitive::<Int64Type>();
        for (i, &g) in groups.iter().enumerate() {
            if ints.is_valid(i) {
                self.sets[g as usize].insert(ints.value(i));
            }
        }
        Ok(())
    }
    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total: usize) -> Result<()> {
        if self.sets.len() < total {
            self.sets.resize_with(total, Default::default);
        }
        for &(d, s) in dst_src {
            if d != s {
                let src = std::mem::take(&mut self.sets[s as usize]);
                self.sets[d as usize].extend(src.iter().copied());
                self.sets[s as usize] = src;
            }
        }
        Ok(())
    }
    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(groups.iter().map(
            |&g| self.sets.get(g as usize).map_or(0, |s| s.len() as i64),
        ))))
    }
    fn reset(&mut self, groups: &[u32]) -> Result<()> {
        for &g in groups {
            if let Some(s) = self.sets.get_mut(g as usize) {
                *s = Default::default();
            }
        }
        Ok(())
    }
    fn size(&self) -> usize {
        self.sets.iter().map(|s| s.capacity() * 9).sum()
    }
    fn state(&mut self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let mut lists = ListBuilder::new(Int64Builder::new());
        for &g in groups {
            if let Some(set) = self.sets.get(g as usize) {
                lists
                    .values()
                    .append_slice(&set.iter().copied().collect::<Vec<_>>());
            }
            lists.append(true);
        }
        Ok(vec![Arc::new(lists.finish())])
    }
    fn merge_state(&mut self, state: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        if self.sets.len() < total {
            self.sets.resize_with(total, Default::default);
        }
        let lists = state[0].as_list::<i32>();
        for (i, &g) in groups.iter().enumerate() {
            let values = lists.value(i);
            let values = values.as_primitive::<Int64Type>();
            self.sets[g as usize].extend(values.values().iter().copied());
        }
        Ok(())
    }
}
