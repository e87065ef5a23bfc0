//! Vectorized aggregation.
//!
//! An aggregate is a factory ([`AggregateFunction`]) of [`GroupsAccumulator`]s. One
//! accumulator holds the state of *every* group of an operator in columnar form (a `Vec`
//! per state field, indexed by group id); a batch is folded in with one call that carries
//! a group index per row, so one call serves many keys and windows. This is the shape of
//! DataFusion's `GroupsAccumulator` and of the Wasm aggregate contract, so DataFusion,
//! Wasm and Python aggregates plug in behind the same trait.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use fungi_common::{FungiError, Result};

/// The state of one aggregate for many groups.
///
/// Lifecycle: the operator creates one accumulator per aggregate call, then for each
/// batch calls [`update_batch`](Self::update_batch) with the group of each row. To build a
/// window out of slices it calls [`merge_groups`](Self::merge_groups); to emit results,
/// [`evaluate`](Self::evaluate); when a group's window is done,
/// [`reset`](Self::reset) so the id can be reused. Group ids are dense and chosen by the
/// operator; an accumulator grows its vectors to `total_num_groups` on update.
pub trait GroupsAccumulator: Send {
    /// Folds `values` (the aggregate's argument columns) into the groups `group_indices`
    /// (one per row).
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[u32],
        total_num_groups: usize,
    ) -> Result<()>;

    /// Merges the state of group `src` into group `dst` for each pair; `src` is unchanged.
    /// Groups not yet seen count as empty.
    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total_num_groups: usize) -> Result<()>;

    /// The result of each of `groups`, in order.
    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef>;

    /// Empties `groups` so their ids can be given to new groups.
    fn reset(&mut self, groups: &[u32]) -> Result<()>;

    /// Takes `values` back out of `groups`: the rows of a retraction (`-U`/`-D`) in an
    /// updating input. Only accumulators made by
    /// [`AggregateFunction::retracting_accumulator`] are asked to.
    fn retract_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[u32],
        total_num_groups: usize,
    ) -> Result<()> {
        let _ = (values, group_indices, total_num_groups);
        Err(FungiError::Plan(
            "this aggregate cannot take rows back (retractions)".into(),
        ))
    }

    /// Approximate heap size in bytes.
    fn size(&self) -> usize;

    /// The intermediate state of `groups`, one row per group, as columns that
    /// [`merge_state`](Self::merge_state) takes back: how windows and aggregations save
    /// their accumulators in checkpoints.
    fn state(&mut self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let _ = groups;
        Err(FungiError::State(
            "this aggregate cannot save its state in a checkpoint yet".into(),
        ))
    }

    /// Merges state rows made by [`state`](Self::state) into `groups` (one per row).
    fn merge_state(
        &mut self,
        state: &[ArrayRef],
        groups: &[u32],
        total_num_groups: usize,
    ) -> Result<()> {
        let _ = (state, groups, total_num_groups);
        Err(FungiError::State(
            "this aggregate cannot restore its state from a checkpoint yet".into(),
        ))
    }
}

/// Appends the state of `groups` of every accumulator to `fields`/`columns` (columns
/// `__acc<i>_<j>`); returns how many columns each accumulator took, which
/// [`merge_saved_states`] needs to read them back.
pub fn save_states(
    accumulators: &mut [Box<dyn GroupsAccumulator>],
    groups: &[u32],
    fields: &mut Vec<arrow::datatypes::Field>,
    columns: &mut Vec<ArrayRef>,
) -> Result<Vec<u32>> {
    let mut widths = Vec::with_capacity(accumulators.len());
    for (i, acc) in accumulators.iter_mut().enumerate() {
        let state = acc.state(groups)?;
        widths.push(state.len() as u32);
        for (j, column) in state.into_iter().enumerate() {
            fields.push(arrow::datatypes::Field::new(
                format!("__acc{i}_{j}"),
                column.data_type().clone(),
                true,
            ));
            columns.push(column);
        }
    }
    Ok(widths)
}

/// Merges states written by [`save_states`] (`columns` starting with the first state
/// column) into `groups`. `what` names the operator in errors.
pub fn merge_saved_states(
    accumulators: &mut [Box<dyn GroupsAccumulator>],
    widths: &[u32],
    columns: &[ArrayRef],
    groups: &[u32],
    total_num_groups: usize,
    what: &str,
) -> Result<()> {
    if widths.len() != accumulators.len() {
        return Err(FungiError::State(format!(
            "the {what} state holds {} aggregates, this query computes {}",
            widths.len(),
            accumulators.len()
        )));
    }
    let mut col = 0;
    for (acc, &width) in accumulators.iter_mut().zip(widths) {
        let end = col + width as usize;
        let state = columns
            .get(col..end)
            .ok_or_else(|| FungiError::State(format!("the {what} state lacks columns")))?;
        acc.merge_state(state, groups, total_num_groups)?;
        col = end;
    }
    Ok(())
}

/// The state of a sum kept with its count (sum and avg that can take rows back): the
/// sum's columns, then the count.
fn sum_count_state(
    sum: &mut dyn GroupsAccumulator,
    count: &mut CountAccumulator,
    groups: &[u32],
) -> Result<Vec<ArrayRef>> {
    let mut state = sum.state(groups)?;
    state.extend(count.state(groups)?);
    Ok(state)
}

/// Merges state written by [`sum_count_state`].
fn merge_sum_count_state(
    sum: &mut dyn GroupsAccumulator,
    count: &mut CountAccumulator,
    state: &[ArrayRef],
    groups: &[u32],
    total: usize,
) -> Result<()> {
    let (sums, counts) = state.split_at(state.len().saturating_sub(1));
    sum.merge_state(sums, groups, total)?;
    count.merge_state(counts, groups, total)
}

/// A kind of aggregate: knows its result type and makes accumulators.
pub trait AggregateFunction: Send + Sync + fmt::Debug {
    /// The function's name, as used in SQL and plans.
    fn name(&self) -> &str;
    /// The result type for arguments of `input` types; refuses types it cannot take.
    fn return_type(&self, input: &[DataType]) -> Result<DataType>;
    /// A new, empty accumulator for arguments of `input` types.
    fn accumulator(&self, input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>>;
    /// Whether the states of its accumulators ([`GroupsAccumulator::state`]) made on one
    /// subtask merge into an accumulator of another ([`GroupsAccumulator::merge_state`])
    /// to the result of folding every row in one place, so a window without keys can be
    /// pre-aggregated where its rows are (see [`crate::window_partial`]).
    fn merges_partial_states(&self) -> bool {
        false
    }
    /// An accumulator that can also take rows back ([`GroupsAccumulator::retract_batch`]),
    /// for aggregating an updating result; `None` if the function cannot.
    fn retracting_accumulator(
        &self,
        input: &[DataType],
    ) -> Result<Option<Box<dyn GroupsAccumulator>>> {
        let _ = input;
        Ok(None)
    }
}

/// An aggregate applied to columns, with the name of its output column.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    /// The function.
    pub function: Arc<dyn AggregateFunction>,
    /// Names of the argument columns (empty for `count(*)`).
    pub inputs: Vec<String>,
    /// Name of the output column.
    pub alias: String,
}

impl AggregateCall {
    /// `function(inputs...) AS alias`.
    pub fn new(
        function: Arc<dyn AggregateFunction>,
        inputs: &[&str],
        alias: impl Into<String>,
    ) -> Self {
        AggregateCall {
            function,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            alias: alias.into(),
        }
    }
}

/// The aggregates of an operator, bound to its input: argument column indices, result
/// fields and one accumulator per call.
pub(crate) struct BoundAggregates {
    pub(crate) inputs: Vec<Vec<usize>>,
    pub(crate) fields: Vec<arrow::datatypes::Field>,
    pub(crate) accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

/// Resolves `calls` against `input`, naming unknown columns and refused argument types.
/// With `retracting`, the accumulators must be able to take rows back.
pub(crate) fn bind(
    calls: &[AggregateCall],
    input: &arrow::datatypes::SchemaRef,
    retracting: bool,
) -> Result<BoundAggregates> {
    let mut bound = BoundAggregates {
        inputs: Vec::new(),
        fields: Vec::new(),
        accumulators: Vec::new(),
    };
    for call in calls {
        let indices = call
            .inputs
            .iter()
            .map(|c| {
                input
                    .index_of(c)
                    .map_err(|_| crate::unknown_column(c, input))
            })
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<DataType> = indices
            .iter()
            .map(|&i| input.field(i).data_type().clone())
            .collect();
        let out = call
            .function
            .return_type(&types)
            .map_err(|e| FungiError::Plan(format!("aggregate '{}': {e}", call.alias)))?;
        bound
            .fields
            .push(arrow::datatypes::Field::new(&call.alias, out, true));
        let accumulator = if retracting {
            call.function
                .retracting_accumulator(&types)?
                .ok_or_else(|| {
                    FungiError::Plan(format!(
                        "{} cannot aggregate an updating result (it cannot take rows back when they are retracted); use count, sum or avg, or aggregate per window",
                        call.function.name()
                    ))
                })?
        } else {
            call.function.accumulator(&types)?
        };
        bound.accumulators.push(accumulator);
        bound.inputs.push(indices);
    }
    Ok(bound)
}

/// `count(*)`: rows per group.
pub fn count_star(alias: &str) -> AggregateCall {
    AggregateCall::new(Arc::new(Count), &[], alias)
}
/// `count(col)`: non-null values per group.
pub fn count(col: &str, alias: &str) -> AggregateCall {
    AggregateCall::new(Arc::new(Count), &[col], alias)
}
/// `sum(col)`.
pub fn sum(col: &str, alias: &str) -> AggregateCall {
    AggregateCall::new(Arc::new(Sum), &[col], alias)
}
/// `min(col)`.
pub fn min(col: &str, alias: &str) -> AggregateCall {
    AggregateCall::new(Arc::new(Min), &[col], alias)
}
/// `max(col)`.
pub fn max(col: &str, alias: &str) -> AggregateCall {
    AggregateCall::new(Arc::new(Max), &[col], alias)
}
/// `avg(col)`.
pub fn avg(col: &str, alias: &str) -> AggregateCall {
    AggregateCall::new(Arc::new(Avg), &[col], alias)
}

/// Looks up a built-in aggregate by (case-insensitive) name.
pub fn builtin(name: &str) -> Option<Arc<dyn AggregateFunction>> {
    Some(match name.to_ascii_lowercase().as_str() {
        "count" => Arc::new(Count),
        "sum" => Arc::new(Sum),
        "min" => Arc::new(Min),
        "max" => Arc::new(Max),
        "avg" => Arc::new(Avg),
        _ => return None,
    })
}

fn one_arg(name: &str, input: &[DataType]) -> Result<DataType> {
    match input {
        [t] => Ok(t.clone()),
        _ => Err(FungiError::Plan(format!(
            "{name} takes exactly one argument, got {}",
            input.len()
        ))),
    }
}

/// The numeric domain an input type is folded in: integers as i64, floats as f64.
fn numeric_domain(name: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Ok(DataType::Int64),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            Ok(DataType::Int64)
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Ok(DataType::Float64),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => Ok(DataType::Int64),
        other => Err(FungiError::Plan(format!(
            "{name} does not accept arguments of type {other}"
        ))),
    }
}

fn grow<T: Clone>(v: &mut Vec<T>, n: usize, init: T) {
    if v.len() < n {
        v.resize(n, init);
    }
}

mod avg;
mod count;
mod fold;
#[cfg(test)]
mod tests;

use count::CountAccumulator;

pub use avg::Avg;
pub use count::{Count, CountDistinct};
pub use fold::{Max, Min, Sum};
