//! Tables declared with `CREATE TABLE`: schema, connector, options, watermark.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use fungi_connector::options::{MetadataColumn, Options};
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
    /// Computed columns (`name AS expression`), the last columns of `schema`: computed
    /// from the connector's columns when the table is read.
    pub computed: Vec<(String, datafusion::logical_expr::Expr)>,
    /// Columns filled from the connector's metadata (`METADATA FROM 'key'`).
    pub metadata: Vec<MetadataColumn>,
    /// For a confined tenant's table: the only hosts its connector may reach (the
    /// connector checks them where it connects).
    pub egress: Option<fungi_connector::egress::Egress>,
    /// `PRIMARY KEY (..) NOT ENFORCED`: the columns an upsert connector keys its
    /// records by (nothing checks that they are unique).
    pub primary_key: Vec<String>,
}

impl TableDef {
    /// The columns the connector produces (`schema` without computed columns).
    pub fn source_schema(&self) -> SchemaRef {
        let n = self.schema.fields().len() - self.computed.len();
        std::sync::Arc::new(arrow::datatypes::Schema::new(
            self.schema.fields()[..n].to_vec(),
        ))
    }

    /// The connector options.
    pub fn connector_options(&self) -> Options {
        Options::new(&self.connector, self.options.clone())
            .with_metadata(self.metadata.clone())
            .with_egress(self.egress.clone())
            .with_primary_key(self.primary_key.clone())
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
