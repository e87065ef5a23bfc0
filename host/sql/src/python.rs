//! Native Python functions in SQL (`fungi-python`):
//!
//! ```sql
//! CREATE FUNCTION to_f AS 'udfs.to_fahrenheit' LANGUAGE PYTHON;          -- importable module
//! CREATE FUNCTION to_f AS 'to_fahrenheit' LANGUAGE PYTHON USING 'udfs.py'; -- a file
//! CREATE FUNCTION wavg AS 'udfs.WeightedAvg' LANGUAGE PYTHON USING 'py/'; -- a directory on sys.path
//! ```
//!
//! (Flink's `CREATE FUNCTION ... AS 'module.function' LANGUAGE PYTHON`.) The function is
//! marked with the SDK's `@fungi.udf(returns=...)` or `@fungi.udaf(returns=...)`. Scalar
//! functions are called once per batch (the planner coalesces small batches, as for
//! Wasm plugins) and their failures follow `SET 'plugin.on-error'` (fail, or the
//! batch's rows to the dead-letter output with the traceback); aggregates run in
//! Fungi's streaming operators (windows included), their states pickled into
//! checkpoints.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result as DfResult, not_impl_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use fungi_common::{FungiError, Result as FungiResult};
use fungi_python::{PythonAggregate, PythonError, PythonFunction, States};
use fungi_streaming::aggregate::{AggregateFunction, GroupsAccumulator};

fn fungi_error(e: PythonError) -> FungiError {
    e.into()
}

/// A Python scalar function as a DataFusion UDF.
#[derive(Debug)]
pub(crate) struct PythonScalar {
    function: Arc<PythonFunction>,
    signature: Signature,
}

impl PythonScalar {
    pub(crate) fn new(function: Arc<PythonFunction>) -> Self {
        PythonScalar {
            function,
            // Python takes any arguments; the function checks them itself.
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl PartialEq for PythonScalar {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.function, &other.function)
    }
}
impl Eq for PythonScalar {}
impl std::hash::Hash for PythonScalar {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.function.name().hash(state);
    }
}

impl ScalarUDFImpl for PythonScalar {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.function.returns().clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, rows) = crate::udfs::argument_arrays(&args)?;
        match self.function.call(&arrays, rows) {
            Ok(a) => Ok(ColumnarValue::Array(a)),
            Err(e) => Err(crate::operators::FunctionFailure::python(&e)),
        }
    }
}

/// A Python aggregate: planned as a DataFusion UDAF, run by Fungi's operators.
#[derive(Debug)]
pub(crate) struct PythonAggregateUdf {
    aggregate: Arc<PythonAggregate>,
    signature: Signature,
}

impl PythonAggregateUdf {
    pub(crate) fn new(aggregate: Arc<PythonAggregate>) -> Self {
        PythonAggregateUdf {
            aggregate,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl PartialEq for PythonAggregateUdf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.aggregate, &other.aggregate)
    }
}
impl Eq for PythonAggregateUdf {}
impl std::hash::Hash for PythonAggregateUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.aggregate.name().hash(state);
    }
}

impl AggregateUDFImpl for PythonAggregateUdf {
    fn name(&self) -> &str {
        self.aggregate.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.aggregate.returns().clone())
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        not_impl_err!(
            "the Python aggregate {} runs in Fungi's streaming operators, not in DataFusion's executor",
            self.aggregate.name()
        )
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(arrow::datatypes::Field::new(
            format!("{}[state]", args.name),
            DataType::Binary,
            true,
        ))])
    }
}

/// A Python aggregate for Fungi's streaming operators.
#[derive(Debug)]
pub(crate) struct PythonAggregateFunction(pub(crate) Arc<PythonAggregate>);

impl AggregateFunction for PythonAggregateFunction {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn return_type(&self, _input: &[DataType]) -> FungiResult<DataType> {
        Ok(self.0.returns().clone())
    }

    fn accumulator(&self, _input: &[DataType]) -> FungiResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(PythonAccumulator {
            states: self.0.new_states(),
            aggregate: self.0.clone(),
            groups: 0,
        }))
    }
}

/// The per-group states of one aggregate call.
struct PythonAccumulator {
    aggregate: Arc<PythonAggregate>,
    states: States,
    groups: usize,
}

impl GroupsAccumulator for PythonAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[u32],
        total_num_groups: usize,
    ) -> FungiResult<()> {
        self.groups = self.groups.max(total_num_groups);
        self.aggregate
            .update(&self.states, values, group_indices, total_num_groups)
            .map_err(fungi_error)
    }

    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total_num_groups: usize) -> FungiResult<()> {
        self.groups = self.groups.max(total_num_groups);
        self.aggregate
            .merge(&self.states, dst_src, total_num_groups)
            .map_err(fungi_error)
    }

    fn evaluate(&mut self, groups: &[u32]) -> FungiResult<ArrayRef> {
        self.aggregate
            .evaluate(&self.states, groups)
            .map_err(fungi_error)
    }

    fn reset(&mut self, groups: &[u32]) -> FungiResult<()> {
        self.aggregate
            .reset(&self.states, groups)
            .map_err(fungi_error)
    }

    fn size(&self) -> usize {
        // Python objects live on the interpreter's heap; count a word per group.
        self.groups * 64
    }

    fn state(&mut self, groups: &[u32]) -> FungiResult<Vec<ArrayRef>> {
        let pickled = self
            .aggregate
            .snapshot(&self.states, groups)
            .map_err(fungi_error)?;
        Ok(vec![Arc::new(BinaryArray::from_iter_values(pickled))])
    }

    fn merge_state(
        &mut self,
        state: &[ArrayRef],
        groups: &[u32],
        total_num_groups: usize,
    ) -> FungiResult<()> {
        let column = state
            .first()
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
            .ok_or_else(|| {
                FungiError::State("a Python aggregate's state is one binary column".into())
            })?;
        let bytes: Vec<Vec<u8>> = (0..column.len())
            .map(|i| column.value(i).to_vec())
            .collect();
        self.groups = self.groups.max(total_num_groups);
        self.aggregate
            .merge_pickled(&self.states, groups, &bytes, total_num_groups)
            .map_err(fungi_error)
    }
}
