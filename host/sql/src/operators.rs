//! Stateless operators that evaluate DataFusion physical expressions on each batch.
//!
//! A batch whose evaluation fails in a plugin function (a trap, a broken limit, an error
//! the plugin returned) fails the job, or, with `SET 'plugin.on-error' = 'dead-letter'`,
//! goes to the dead-letter output row by row (as JSON) and the job goes on.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use fungi_common::{FungiError, Result};
use fungi_execution::dead_letter::DeadLetterQueue;
use fungi_execution::operator::{OperatorContext, OperatorFactory};
use fungi_execution::{Operator, Output};
use fungi_reliability::OnFailure;

/// A plugin or Python function that failed on a batch, as its UDF reports it to
/// DataFusion, so that the operators' error policy can tell it from an engine error.
#[derive(Debug, thiserror::Error)]
#[error("[{code}] {message}")]
pub(crate) struct FunctionFailure {
    /// The stable code of the failure (`PLUGIN_TRAP`, `PLUGIN_PYTHON`, ...).
    code: &'static str,
    /// The dead-letter reason.
    reason: &'static str,
    message: String,
}

impl FunctionFailure {
    /// A Wasm plugin's failure.
    pub(crate) fn plugin(e: &fungi_plugin::PluginError) -> datafusion::error::DataFusionError {
        use fungi_plugin::PluginError::*;
        let reason = match e {
            Limit { .. } => "plugin limit",
            Trap { .. } => "plugin trap",
            Contract { .. } => "plugin contract",
            _ => "plugin error",
        };
        Self::error(e.code(), reason, e.to_string())
    }

    /// A Python function's failure.
    pub(crate) fn python(e: &fungi_python::PythonError) -> datafusion::error::DataFusionError {
        Self::error(fungi_python::ERROR_CODE, "python error", e.to_string())
    }

    fn error(
        code: &'static str,
        reason: &'static str,
        message: String,
    ) -> datafusion::error::DataFusionError {
        datafusion::error::DataFusionError::External(Box::new(FunctionFailure {
            code,
            reason,
            message,
        }))
    }

    /// The function failure that caused `e`, if one did.
    fn find(e: &datafusion::error::DataFusionError) -> Option<&FunctionFailure> {
        match e.find_root() {
            datafusion::error::DataFusionError::External(inner) => inner.downcast_ref(),
            _ => None,
        }
    }
}

/// Where failing batches go, set when the operator opens.
#[derive(Debug, Clone)]
struct PluginErrors {
    policy: OnFailure,
    dead_letters: Option<(Arc<DeadLetterQueue>, String)>,
}

impl PluginErrors {
    fn new(policy: OnFailure) -> Self {
        PluginErrors {
            policy,
            dead_letters: None,
        }
    }

    fn open(&mut self, ctx: &OperatorContext) {
        self.dead_letters = Some((ctx.dead_letters.clone(), ctx.operator.clone()));
    }

    /// `Ok(())` if the failure was dead-lettered (the batch is dropped), else the error.
    fn handle(&self, batch: &RecordBatch, e: datafusion::error::DataFusionError) -> Result<()> {
        let message = e.to_string();
        let failure = FunctionFailure::find(&e);
        let from_plugin = failure.is_some();
        let reason = failure.map_or("plugin error", |f| f.reason);
        match (&self.dead_letters, self.policy) {
            (Some((dlq, operator)), OnFailure::DeadLetter) if from_plugin => {
                let mut buf = Vec::new();
                {
                    let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                    w.write(batch)?;
                    w.finish()?;
                }
                for (i, line) in buf
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .enumerate()
                {
                    dlq.push(
                        operator,
                        reason,
                        message.clone(),
                        format!("row {i} of a batch"),
                        line,
                    );
                }
                Ok(())
            }
            _ => Err(df(e)),
        }
    }
}

fn df(e: datafusion::error::DataFusionError) -> FungiError {
    FungiError::Operator {
        operator: "expression".into(),
        message: e.to_string(),
    }
}

/// Computes a list of expressions per batch (SELECT list, key and argument columns).
#[derive(Debug, Clone)]
pub(crate) struct ProjectOperator {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    errors: PluginErrors,
}

impl ProjectOperator {
    pub(crate) fn factory(
        policy: OnFailure,
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    ) -> OperatorFactory {
        let op = ProjectOperator {
            exprs,
            schema,
            errors: PluginErrors::new(policy),
        };
        Arc::new(move |_| Ok(Box::new(op.clone()) as Box<dyn Operator>))
    }
}

impl Operator for ProjectOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.errors.open(ctx);
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = batch.num_rows();
        let columns = match self
            .exprs
            .iter()
            .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(rows)))
            .collect::<datafusion::error::Result<Vec<_>>>()
        {
            Ok(c) => c,
            Err(e) => return self.errors.handle(&batch, e),
        };
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        out.emit(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?);
        Ok(())
    }
}

/// Keeps the rows where a predicate is true (WHERE, HAVING).
#[derive(Debug, Clone)]
pub(crate) struct PredicateOperator {
    predicate: Arc<dyn PhysicalExpr>,
    errors: PluginErrors,
}

impl PredicateOperator {
    pub(crate) fn factory(policy: OnFailure, predicate: Arc<dyn PhysicalExpr>) -> OperatorFactory {
        let op = PredicateOperator {
            predicate,
            errors: PluginErrors::new(policy),
        };
        Arc::new(move |_| Ok(Box::new(op.clone()) as Box<dyn Operator>))
    }
}

impl Operator for PredicateOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.errors.open(ctx);
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mask = match self
            .predicate
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
        {
            Ok(m) => m,
            Err(e) => return self.errors.handle(&batch, e),
        };
        let mask = mask
            .as_boolean_opt()
            .ok_or_else(|| FungiError::Plan("a WHERE condition must be boolean".into()))?;
        out.emit(filter_record_batch(&batch, mask)?);
        Ok(())
    }
}

/// `UNION ALL`: the rows of every input, under the union's column names.
#[derive(Debug, Clone)]
pub(crate) struct UnionOperator {
    schema: SchemaRef,
}

impl UnionOperator {
    pub(crate) fn factory(schema: SchemaRef) -> OperatorFactory {
        let op = UnionOperator { schema };
        Arc::new(move |_| Ok(Box::new(op.clone()) as Box<dyn Operator>))
    }
}

impl Operator for UnionOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        out.emit(RecordBatch::try_new_with_options(
            self.schema.clone(),
            batch.columns().to_vec(),
            &options,
        )?);
        Ok(())
    }
}
