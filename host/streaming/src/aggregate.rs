//! Vectorized aggregation.
//!
//! An aggregate is a factory ([`AggregateFunction`]) of [`GroupsAccumulator`]s. One
//! accumulator holds the state of *every* group of an operator in columnar form (a `Vec`
//! per state field, indexed by group id); a batch is folded in with one call that carries
//! a group index per row, so one call serves many keys and windows. This is the shape of
//! DataFusion's `GroupsAccumulator` and of the Wasm aggregate contract, so DataFusion,
//! Wasm and Python aggregates plug in behind the same trait.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBufferBuilder, Int64Array, Int64Builder, ListBuilder,
    PrimitiveArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::cast;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float64Type, Int64Type};
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

/// `count`.
#[derive(Debug, Clone, Copy)]
pub struct Count;

impl AggregateFunction for Count {
    fn name(&self) -> &str {
        "count"
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
struct CountAccumulator {
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

/// How a [`FoldAccumulator`] combines two values.
trait Fold<N>: Send + 'static {
    fn fold(acc: N, v: N) -> N;
    /// Takes `v` back out of `acc`, if the fold can.
    fn unfold(acc: N, v: N) -> Option<N> {
        let _ = (acc, v);
        None
    }
}

struct AddFold;
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

fn fold_accumulator<A, B>(domain: &DataType, output: DataType) -> Box<dyn GroupsAccumulator>
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

/// `avg`, typed as in Flink: the argument's type (an average of BIGINTs is a BIGINT,
/// truncated toward zero; of FLOATs a FLOAT). Integers are summed as BIGINT.
#[derive(Debug, Clone, Copy)]
pub struct Avg;

/// The result type of `avg` over `input` (Flink's rule: the argument's type).
fn avg_type(input: &[DataType]) -> Result<DataType> {
    let t = one_arg("avg", input)?;
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64 => Ok(t),
        DataType::Float16 => Ok(DataType::Float32),
        other => Err(FungiError::Plan(format!(
            "avg does not accept arguments of type {other}"
        ))),
    }
}

impl AggregateFunction for Avg {
    fn name(&self) -> &str {
        "avg"
    }
    fn return_type(&self, input: &[DataType]) -> Result<DataType> {
        avg_type(input)
    }
    fn accumulator(&self, input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>> {
        let output = avg_type(input)?;
        let domain = numeric_domain("avg", &output)?;
        Ok(Box::new(AvgAccumulator {
            sum: fold_accumulator::<AddFold, AddFold>(&domain, domain.clone()),
            count: CountAccumulator::default(),
            output,
        }))
    }
    fn retracting_accumulator(
        &self,
        input: &[DataType],
    ) -> Result<Option<Box<dyn GroupsAccumulator>>> {
        self.accumulator(input).map(Some)
    }
}

struct AvgAccumulator {
    /// The sum in the numeric domain (BIGINT for integers, DOUBLE for floats).
    sum: Box<dyn GroupsAccumulator>,
    count: CountAccumulator,
    output: DataType,
}

impl GroupsAccumulator for AvgAccumulator {
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
        let counts = counts.as_primitive::<Int64Type>().values();
        let averages: ArrayRef = match sums.data_type() {
            DataType::Float64 => Arc::new(
                sums.as_primitive::<Float64Type>()
                    .iter()
                    .zip(counts.iter())
                    .map(|(s, &c)| s.filter(|_| c > 0).map(|s| s / c as f64))
                    .collect::<PrimitiveArray<Float64Type>>(),
            ),
            // Integer division truncates toward zero, as Java's does in Flink.
            _ => Arc::new(
                sums.as_primitive::<Int64Type>()
                    .iter()
                    .zip(counts.iter())
                    .map(|(s, &c)| s.filter(|_| c > 0).map(|s| s / c))
                    .collect::<PrimitiveArray<Int64Type>>(),
            ),
        };
        Ok(cast::cast(&averages, &self.output)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int32Array};

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
}

/// `count(DISTINCT x)` for integer (and date/time) arguments: an exact set of values per
/// group, so groups can be read, merged and reset in place.
#[derive(Debug, Clone, Copy)]
pub struct CountDistinct;

impl AggregateFunction for CountDistinct {
    fn name(&self) -> &str {
        "count_distinct"
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
