//! The generated WIT exports, implemented once for every plugin on top of the SDK's
//! traits.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow_schema::Field;

use crate::aggregate_bindings::exports::fungi::plugin::aggregate as agg_api;
use crate::aggregate_bindings::exports::fungi::plugin::plugin as agg_plugin_api;
use crate::aggregate_bindings::fungi::plugin::types as agg_types;
use crate::scalar_bindings::exports::fungi::plugin::plugin as scalar_plugin_api;
use crate::scalar_bindings::exports::fungi::plugin::scalar as scalar_api;
use crate::scalar_bindings::fungi::plugin::types as scalar_types;
use crate::table_bindings::exports::fungi::plugin::plugin as table_plugin_api;
use crate::table_bindings::exports::fungi::plugin::table as table_api;
use crate::table_bindings::fungi::plugin::types as table_types;
use crate::{
    Accumulator, AggregateFunction, AggregatePlugin, Error, ScalarFunction, ScalarPlugin,
    TableFunction, TablePlugin, ipc,
};

conversions!(scalar_types);
conversions!(agg_types);
conversions!(table_types);

fn signature_parts(
    arguments: Vec<arrow_schema::DataType>,
    returns: arrow_schema::DataType,
) -> (Vec<u8>, Vec<u8>) {
    let args = arguments
        .into_iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("arg{i}"), t, true))
        .collect();
    (
        ipc::schema(args),
        ipc::schema(vec![Field::new("result", returns, true)]),
    )
}

/// Implements the scalar world for plugin `P`.
pub struct ScalarAdapter<P>(PhantomData<P>);

/// A created scalar function (the guest side of the `scalar-function` resource).
pub struct ScalarInstance<P> {
    function: Arc<dyn ScalarFunction>,
    _p: PhantomData<fn() -> P>,
}

impl<P: ScalarPlugin> scalar_plugin_api::Guest for ScalarAdapter<P> {
    fn describe() -> scalar_types::Manifest {
        P::manifest().into()
    }
}

impl<P: ScalarPlugin> scalar_api::Guest for ScalarAdapter<P> {
    type ScalarFunction = ScalarInstance<P>;

    fn functions() -> Vec<scalar_types::FunctionSignature> {
        P::functions()
            .iter()
            .map(|f| {
                let (arguments, returns) = signature_parts(f.arguments(), f.returns());
                scalar_types::FunctionSignature {
                    name: f.name().to_string(),
                    arguments,
                    returns,
                    volatility: f.volatility().into(),
                }
            })
            .collect()
    }
}

impl<P: ScalarPlugin> scalar_api::GuestScalarFunction for ScalarInstance<P> {
    fn create(
        name: String,
        _config: Vec<(String, String)>,
    ) -> Result<scalar_api::ScalarFunction, scalar_types::PluginError> {
        let function = P::functions()
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| Error::InvalidInput(format!("no function '{name}'")))?;
        Ok(scalar_api::ScalarFunction::new(ScalarInstance::<P> {
            function,
            _p: PhantomData,
        }))
    }

    fn call(&self, args: Vec<u8>) -> Result<Vec<u8>, scalar_types::PluginError> {
        let (columns, rows) = ipc::decode(args)?;
        let result = self.function.call(&columns, rows)?;
        if result.len() != rows {
            return Err(Error::Internal(format!(
                "{} returned {} rows for {rows}",
                self.function.name(),
                result.len()
            ))
            .into());
        }
        Ok(ipc::column(result)?)
    }
}

/// Implements the table world for plugin `P`.
pub struct TableAdapter<P>(PhantomData<P>);

/// A created table function (the guest side of the `table-function` resource).
pub struct TableInstance<P> {
    function: Arc<dyn TableFunction>,
    _p: PhantomData<fn() -> P>,
}

impl<P: TablePlugin> table_plugin_api::Guest for TableAdapter<P> {
    fn describe() -> table_types::Manifest {
        P::manifest().into()
    }
}

impl<P: TablePlugin> table_api::Guest for TableAdapter<P> {
    type TableFunction = TableInstance<P>;

    fn functions() -> Vec<table_types::FunctionSignature> {
        P::functions()
            .iter()
            .map(|f| {
                let (arguments, _) = signature_parts(f.arguments(), arrow_schema::DataType::Null);
                table_types::FunctionSignature {
                    name: f.name().to_string(),
                    arguments,
                    returns: ipc::schema(f.columns()),
                    volatility: table_types::Volatility::Immutable,
                }
            })
            .collect()
    }
}

impl<P: TablePlugin> table_api::GuestTableFunction for TableInstance<P> {
    fn create(
        name: String,
        _config: Vec<(String, String)>,
    ) -> Result<table_api::TableFunction, table_types::PluginError> {
        let function = P::functions()
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| Error::InvalidInput(format!("no function '{name}'")))?;
        Ok(table_api::TableFunction::new(TableInstance::<P> {
            function,
            _p: PhantomData,
        }))
    }

    fn call(&self, args: Vec<u8>) -> Result<(Vec<u8>, Vec<u32>), table_types::PluginError> {
        let (columns, rows) = ipc::decode(args)?;
        let (batch, input_rows) = self.function.call(&columns, rows)?;
        if input_rows.len() != batch.num_rows() {
            return Err(Error::Internal(format!(
                "{} returned {} rows but {} input row indices",
                self.function.name(),
                batch.num_rows(),
                input_rows.len()
            ))
            .into());
        }
        Ok((ipc::encode(&batch)?, input_rows))
    }
}

/// Implements the aggregate world for plugin `P`.
pub struct AggregateAdapter<P>(PhantomData<P>);

/// A created accumulator (the guest side of the `accumulator` resource).
pub struct AccumulatorInstance<P> {
    inner: RefCell<Box<dyn Accumulator>>,
    _p: PhantomData<fn() -> P>,
}

impl<P: AggregatePlugin> agg_plugin_api::Guest for AggregateAdapter<P> {
    fn describe() -> agg_types::Manifest {
        P::manifest().into()
    }
}

impl<P: AggregatePlugin> agg_api::Guest for AggregateAdapter<P> {
    type Accumulator = AccumulatorInstance<P>;

    fn functions() -> Vec<agg_api::AggregateSignature> {
        P::functions()
            .iter()
            .map(|f| {
                let (arguments, returns) = signature_parts(f.arguments(), f.returns());
                agg_api::AggregateSignature {
                    signature: agg_types::FunctionSignature {
                        name: f.name().to_string(),
                        arguments,
                        returns,
                        volatility: agg_types::Volatility::Immutable,
                    },
                    retractable: f.retractable(),
                }
            })
            .collect()
    }
}

type AggResult<T> = Result<T, agg_types::PluginError>;

impl<P: AggregatePlugin> agg_api::GuestAccumulator for AccumulatorInstance<P> {
    fn create(name: String, config: Vec<(String, String)>) -> AggResult<agg_api::Accumulator> {
        let f: Arc<dyn AggregateFunction> =
            P::functions()
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| Error::InvalidInput(format!("no aggregate '{name}'")))?;
        let acc = f.accumulator(&config)?;
        Ok(agg_api::Accumulator::new(AccumulatorInstance::<P> {
            inner: RefCell::new(acc),
            _p: PhantomData,
        }))
    }

    fn update(&self, args: Vec<u8>, groups: Vec<u32>, total: u32) -> AggResult<()> {
        let (columns, _) = ipc::decode(args)?;
        Ok(self
            .inner
            .borrow_mut()
            .update(&columns, &groups, total as usize)?)
    }

    fn retract(&self, args: Vec<u8>, groups: Vec<u32>, total: u32) -> AggResult<()> {
        let (columns, _) = ipc::decode(args)?;
        Ok(self
            .inner
            .borrow_mut()
            .retract(&columns, &groups, total as usize)?)
    }

    fn merge(&self, dst_src: Vec<(u32, u32)>, total: u32) -> AggResult<()> {
        Ok(self.inner.borrow_mut().merge(&dst_src, total as usize)?)
    }

    fn evaluate(&self, groups: Vec<u32>) -> AggResult<Vec<u8>> {
        let result = self.inner.borrow_mut().evaluate(&groups)?;
        Ok(ipc::column(result)?)
    }

    fn reset(&self, groups: Vec<u32>) {
        self.inner.borrow_mut().reset(&groups)
    }

    fn snapshot(&self, groups: Vec<u32>) -> AggResult<Vec<Vec<u8>>> {
        Ok(self.inner.borrow().snapshot(&groups)?)
    }

    fn restore(&self, groups: Vec<u32>, states: Vec<Vec<u8>>) -> AggResult<()> {
        Ok(self.inner.borrow_mut().restore(&groups, &states)?)
    }
}
