//! What the plugin benchmarks share.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};

/// Calls a native DataFusion UDF on `args`, returning `ret`.
pub(crate) fn invoke(udf: &ScalarUDF, args: &[ArrayRef], ret: DataType) -> ArrayRef {
    let arg_fields = args
        .iter()
        .map(|a| Arc::new(Field::new("a", a.data_type().clone(), true)))
        .collect();
    udf.invoke_with_args(ScalarFunctionArgs {
        args: args
            .iter()
            .map(|a| ColumnarValue::Array(a.clone()))
            .collect(),
        arg_fields,
        number_rows: args[0].len(),
        return_field: Arc::new(Field::new("r", ret, true)),
        config_options: Arc::new(ConfigOptions::default()),
    })
    .unwrap()
    .to_array(args[0].len())
    .unwrap()
}
