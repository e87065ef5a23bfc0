//! DataFusion aggregates as Fungi window aggregates.
//!
//! Every DataFusion aggregate (count distinct, approx_distinct,
//! approx_percentile_cont, ...) becomes a [`GroupsAccumulator`] of the window operator.
//! DataFusion's accumulators can update many groups per call but can neither read a
//! group without emitting it nor merge one group into another; the adapter does both
//! through the accumulator's intermediate state (`state` + `merge_batch`), which costs
//! time proportional to the live groups per call. Window operators make those calls
//! when windows fire, not per batch, so per-row work stays vectorized. The common
//! numeric aggregates (count, sum, min, max, avg) use Fungi's native accumulators, which
//! merge and evaluate groups in place.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::DataType;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator as DfGroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::GroupsAccumulatorAdapter;
use fungi_common::{FungiError, Result};
use fungi_streaming::aggregate::{AggregateFunction, GroupsAccumulator};

fn df(e: datafusion::error::DataFusionError) -> FungiError {
    FungiError::Operator {
        operator: "aggregate".into(),
        message: e.to_string(),
    }
}

/// A DataFusion aggregate expression as a Fungi aggregate function.
#[derive(Debug, Clone)]
pub(crate) struct DfAggregate {
    expr: Arc<AggregateFunctionExpr>,
}

impl DfAggregate {
    pub(crate) fn new(expr: Arc<AggregateFunctionExpr>) -> Self {
        DfAggregate { expr }
    }

    fn make(&self) -> Result<Box<dyn DfGroupsAccumulator>> {
        if self.expr.groups_accumulator_supported() {
            self.expr.create_groups_accumulator().map_err(df)
        } else {
            let expr = self.expr.clone();
            Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                expr.create_accumulator()
            })))
        }
    }
}

impl AggregateFunction for DfAggregate {
    fn name(&self) -> &str {
        self.expr.name()
    }

    fn return_type(&self, _input: &[DataType]) -> Result<DataType> {
        Ok(self.expr.field().data_type().clone())
    }

    fn accumulator(&self, _input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(DfGroupsAdapter {
            function: self.clone(),
            acc: self.make()?,
            groups: 0,
            indices: Vec::new(),
        }))
    }
}

/// Fungi's accumulator interface over a DataFusion groups accumulator.
struct DfGroupsAdapter {
    function: DfAggregate,
    acc: Box<dyn DfGroupsAccumulator>,
    /// Groups the DataFusion accumulator holds (the largest total seen).
    groups: usize,
    indices: Vec<usize>,
}

impl DfGroupsAdapter {
    /// Takes the intermediate state of every group out and puts it back; returns it.
    fn snapshot(&mut self) -> Result<Vec<ArrayRef>> {
        let states = self.take_states()?;
        let identity: Vec<usize> = (0..self.groups).collect();
        self.acc
            .merge_batch(&states, &identity, self.groups)
            .map_err(df)?;
        Ok(states)
    }

    /// Takes the intermediate state of every group out, one row per group id.
    fn take_states(&mut self) -> Result<Vec<ArrayRef>> {
        let mut states = self.acc.state(EmitTo::All).map_err(df)?;
        // Groups the accumulator has not seen yet (ids handed out by a merge or a larger
        // total) have no state: NULL states, which merging ignores.
        for s in &mut states {
            if s.len() < self.groups {
                let pad = arrow::array::new_null_array(s.data_type(), self.groups - s.len());
                *s = arrow::compute::concat(&[s.as_ref(), pad.as_ref()])?;
            }
        }
        Ok(states)
    }

    fn rows(states: &[ArrayRef], groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let idx = UInt32Array::from(groups.to_vec());
        Ok(states
            .iter()
            .map(|s| take(s, &idx, None))
            .collect::<Result<Vec<_>, _>>()?)
    }
}

impl GroupsAccumulator for DfGroupsAdapter {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[u32],
        total: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total);
        self.indices.clear();
        self.indices
            .extend(group_indices.iter().map(|&g| g as usize));
        self.acc
            .update_batch(values, &self.indices, None, self.groups)
            .map_err(df)
    }

    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total: usize) -> Result<()> {
        self.groups = self.groups.max(total);
        if dst_src.is_empty() {
            return Ok(());
        }
        let states = self.snapshot()?;
        let srcs: Vec<u32> = dst_src.iter().map(|p| p.1).collect();
        let dsts: Vec<usize> = dst_src.iter().map(|p| p.0 as usize).collect();
        let rows = Self::rows(&states, &srcs)?;
        self.acc.merge_batch(&rows, &dsts, self.groups).map_err(df)
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        // `evaluate` of a DataFusion accumulator consumes its groups: evaluate a fresh
        // accumulator fed with the state of the wanted groups instead.
        let states = self.snapshot()?;
        let rows = Self::rows(&states, groups)?;
        let mut probe = self.function.make()?;
        let identity: Vec<usize> = (0..groups.len()).collect();
        probe
            .merge_batch(&rows, &identity, groups.len())
            .map_err(df)?;
        probe.evaluate(EmitTo::All).map_err(df)
    }

    fn reset(&mut self, groups: &[u32]) -> Result<()> {
        if groups.is_empty() || self.groups == 0 {
            return Ok(());
        }
        let states = self.take_states()?;
        let mut doomed = vec![false; self.groups];
        for &g in groups {
            if let Some(d) = doomed.get_mut(g as usize) {
                *d = true;
            }
        }
        let keep: Vec<u32> = (0..self.groups as u32)
            .filter(|&g| !doomed[g as usize])
            .collect();
        let rows = Self::rows(&states, &keep)?;
        let idx: Vec<usize> = keep.iter().map(|&g| g as usize).collect();
        self.acc.merge_batch(&rows, &idx, self.groups).map_err(df)
    }

    fn size(&self) -> usize {
        self.acc.size()
    }

    // DataFusion's intermediate state is what checkpoints save.
    fn state(&mut self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let states = self.snapshot()?;
        Self::rows(&states, groups)
    }

    fn merge_state(&mut self, state: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        self.groups = self.groups.max(total);
        let idx: Vec<usize> = groups.iter().map(|&g| g as usize).collect();
        self.acc.merge_batch(state, &idx, self.groups).map_err(df)
    }
}
