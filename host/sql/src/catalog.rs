//! Tables declared with `CREATE TABLE`: schema, connector, options, watermark.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use fungi_connector::options::Options;
use fungi_streaming::watermark::{WatermarkKind, WatermarkStrategy};

/// A declared table.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Table name.
    pub name: String,
    /// Columns.
    pub schema: SchemaRef,
    /// Whether the columns were declared (false: the connector's own schema).
    pub declared: bool,
    /// Connector name (`connector` option).
    pub connector: String,
    /// The other options.
    pub options: Vec<(String, String)>,
    /// `WATERMARK FOR column AS column - delay`: (column, delay in ms).
    pub watermark: Option<(String, i64)>,
}

impl TableDef {
    /// The connector options.
    pub fn connector_options(&self) -> Options {
        Options::new(&self.connector, self.options.clone())
    }

    /// The watermark strategy, with Flink SQL's semantics: the watermark is the
    /// expression's value for the largest timestamp seen (`max - delay`).
    pub fn watermark_strategy(&self) -> Option<WatermarkStrategy> {
        self.watermark.as_ref().map(|(column, delay)| {
            let mut s =
                WatermarkStrategy::bounded_out_of_orderness(column, Duration::from_millis(0));
            // SplitWatermarks emits max - delay - 1 (the DataStream convention).
            s.kind = WatermarkKind::BoundedOutOfOrderness { delay: delay - 1 };
            s
        })
    }
}
