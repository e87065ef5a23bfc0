//! Table scans: a table's source with its watermarks, and the projection onto the
//! scan's columns.

use super::*;

impl Planner<'_> {
    pub(super) fn scan(&mut self, scan: &datafusion::logical_expr::TableScan) -> Result<Planned> {
        let name = scan.table_name.table();
        let table = self.tables.get(name).ok_or_else(|| {
            SqlError::Plan(format!("table '{name}' is not declared with CREATE TABLE"))
        })?;
        let declared = table.declared.then(|| table.source_schema());
        let (factory, produced) = if table.connector == crate::plugins::WASM_CONNECTOR {
            (self.plugins.source(table)?, table.source_schema())
        } else {
            registry::source(&table.connector, declared, &table.connector_options())?
        };
        let p = self.graph.config.parallelism;
        let idle = self.graph.config.source_idle_timeout;
        let watermarks = table.watermark_strategy().map(|s| match idle {
            Some(timeout) => s.with_idleness(timeout),
            None => s,
        });
        let source = self.graph.add_source(name, p, factory, watermarks);
        // A changelog source (debezium-json) adds the change column after the table's.
        let updating = produced.fields().len()
            == table.schema.fields().len() - table.computed.len() + 1
            && produced
                .fields()
                .last()
                .is_some_and(|f| f.name() == OP_COLUMN);
        let mut planned = Planned {
            node: source,
            parallelism: p,
            updating,
            window: WindowColumns::default(),
            small: false,
        };
        if updating && registry::reads_upserts(&table.connector) {
            planned = self.normalize_upserts(planned, table, &produced)?;
        }
        // Conform the source's rows to the table, then to the scan's projection.
        let indices: Vec<usize> = match &scan.projection {
            Some(p) => p.clone(),
            None => (0..table.schema.fields().len()).collect(),
        };
        let base = table.schema.fields().len() - table.computed.len();
        let identity = !updating
            && table.computed.is_empty()
            && indices.len() == produced.fields().len()
            && indices.iter().enumerate().all(|(i, &j)| i == j)
            && produced
                .fields()
                .iter()
                .zip(table.schema.fields())
                .all(|(a, b)| a.data_type() == b.data_type());
        if !identity {
            let produced_df = DFSchema::try_from(produced.as_ref().clone())?;
            let mut exprs = indices
                .iter()
                .map(|&i| {
                    if i >= base {
                        // A computed column, from the connector's columns.
                        return self.physical(&table.computed[i - base].1, &produced_df);
                    }
                    let field = table.schema.field(i);
                    let col = Expr::Column(Column::new_unqualified(field.name()));
                    let e = if produced.field_with_name(field.name())?.data_type()
                        == field.data_type()
                    {
                        col
                    } else {
                        Expr::Cast(datafusion::logical_expr::Cast::new(
                            Box::new(col),
                            field.data_type().clone(),
                        ))
                    };
                    self.physical(&e, &produced_df)
                })
                .collect::<Result<Vec<_>>>()?;
            let mut schema = arrow_schema(&scan.projected_schema);
            if updating {
                // Carry the change column through.
                let op = produced.fields().len() - 1;
                exprs.push(Arc::new(PhysicalColumn::new(OP_COLUMN, op)));
                schema = with_op_column(&schema);
            }
            planned = self.then(
                planned,
                "conform",
                ProjectOperator::factory(self.plugins.on_error, exprs, schema),
            );
        }
        Ok(planned)
    }

    /// Upserts and deletions by the table's primary key (an upsert topic) as a
    /// changelog: keyed by the key, each key's current row is kept, and a new value
    /// retracts the old one (Flink's ChangelogNormalize).
    fn normalize_upserts(
        &mut self,
        source: Planned,
        table: &TableDef,
        produced: &SchemaRef,
    ) -> Result<Planned> {
        let keys = table
            .primary_key
            .iter()
            .map(|k| produced.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| SqlError::Plan(format!("the primary key of '{}': {e}", table.name)))?;
        let factory = ChangelogNormalizeOperator::factory(keys, produced.clone())?;
        Ok(self.add_keyed(&source, "normalize", factory, &table.primary_key, true))
    }
}
