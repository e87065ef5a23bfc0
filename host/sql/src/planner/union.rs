//! `UNION ALL`: several inputs into one stream.

use super::*;

impl Planner<'_> {
    /// `UNION ALL`: every input's rows. If one input is an updating result, the union is
    /// one and the other inputs' rows are insertions.
    pub(super) fn union(&mut self, u: &datafusion::logical_expr::Union) -> Result<Planned> {
        let mut inputs = Vec::new();
        for input in &u.inputs {
            inputs.push(self.plan(input)?);
        }
        let updating = inputs.iter().any(|p| p.updating);
        let mut schema = arrow_schema(&u.schema);
        if updating {
            schema = with_op_column(&schema);
            for (planned, input) in inputs.iter_mut().zip(&u.inputs) {
                if planned.updating {
                    continue;
                }
                let mut exprs: Vec<Arc<dyn PhysicalExpr>> = input
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| Arc::new(PhysicalColumn::new(f.name(), i)) as _)
                    .collect();
                exprs.push(Arc::new(Literal::new(ScalarValue::Int8(Some(
                    fungi_common::changelog::RowKind::Insert as i8,
                )))));
                let with_op = with_op_column(&arrow_schema(input.schema()));
                *planned = self.then(
                    *planned,
                    "insertions",
                    ProjectOperator::factory(self.plugins.on_error, exprs, with_op),
                );
            }
        }
        // Inputs of one parallelism are forwarded subtask to subtask; otherwise one
        // subtask takes every row (which keeps each input's changes in order).
        let first = inputs[0].parallelism;
        let same = inputs.iter().all(|p| p.parallelism == first);
        let (parallelism, edge) = if same {
            (first, Partitioning::Forward)
        } else {
            (1, Partitioning::Rebalance)
        };
        let node = self
            .graph
            .add_operator("union", parallelism, UnionOperator::factory(schema));
        for input in &inputs {
            self.graph.connect(input.node, node, edge.clone());
        }
        let window = inputs[0].window;
        let same_window = inputs
            .iter()
            .all(|p| p.window.start == window.start && p.window.end == window.end && !p.updating);
        Ok(Planned {
            node,
            parallelism,
            updating,
            window: if same_window {
                window
            } else {
                WindowColumns::default()
            },
            // A union of several windows' rows is no longer one row per window.
            small: false,
        })
    }
}
