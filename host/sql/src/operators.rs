//! Stateless operators that evaluate DataFusion physical expressions on each batch.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::{Operator, Output};

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
}

impl ProjectOperator {
    pub(crate) fn factory(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> OperatorFactory {
        let op = ProjectOperator { exprs, schema };
        Arc::new(move |_| Ok(Box::new(op.clone()) as Box<dyn Operator>))
    }
}

impl Operator for ProjectOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = batch.num_rows();
        let columns = self
            .exprs
            .iter()
            .map(|e| {
                e.evaluate(&batch)
                    .and_then(|v| v.into_array(rows))
                    .map_err(df)
            })
            .collect::<Result<Vec<_>>>()?;
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
}

impl PredicateOperator {
    pub(crate) fn factory(predicate: Arc<dyn PhysicalExpr>) -> OperatorFactory {
        let op = PredicateOperator { predicate };
        Arc::new(move |_| Ok(Box::new(op.clone()) as Box<dyn Operator>))
    }
}

impl Operator for PredicateOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mask = self
            .predicate
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(df)?;
        let mask = mask
            .as_boolean_opt()
            .ok_or_else(|| FungiError::Plan("a WHERE condition must be boolean".into()))?;
        out.emit(filter_record_batch(&batch, mask)?);
        Ok(())
    }
}
