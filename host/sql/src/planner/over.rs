//! OVER aggregations (`agg(x) OVER (PARTITION BY ... ORDER BY ts <frame>)`) ordered by
//! event time, with a bounded frame.

use super::join::interval_ms;
use super::*;
use crate::over::{OverAggregateOperator, OverFrame, OverSpec};
use crate::over_running::Running;

/// Aggregates an OVER clause may use: DataFusion's own, whose window evaluation runs
/// in the engine (a plugin's aggregate would be called once per row).
const OVER_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "mean",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "bool_and",
    "bool_or",
];

/// Whether a window node computes aggregates (rather than ROW_NUMBER()).
pub(super) fn is_over_aggregate(w: &datafusion::logical_expr::logical_plan::Window) -> bool {
    use datafusion::logical_expr::WindowFunctionDefinition;
    w.window_expr.iter().any(|e| {
        matches!(strip(e), Expr::WindowFunction(f)
            if matches!(f.fun, WindowFunctionDefinition::AggregateUDF(_)))
    })
}

/// The length of an interval literal in milliseconds (months have none).
fn interval_value_ms(v: &ScalarValue) -> Option<i64> {
    interval_ms(&Expr::Literal(v.clone(), None))
}

impl Planner<'_> {
    /// An OVER aggregation: every row with its aggregates over the rows before it.
    pub(super) fn over_aggregate(
        &mut self,
        w: &datafusion::logical_expr::logical_plan::Window,
    ) -> Result<Planned> {
        use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
        use datafusion::logical_expr::{
            WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
        };
        let mut shared: Option<&WindowFunctionParams> = None;
        for e in &w.window_expr {
            let Expr::WindowFunction(f) = strip(e) else {
                return Err(SqlError::unsupported(
                    format!("the OVER expression {e}"),
                    "use aggregates OVER (PARTITION BY ... ORDER BY ...)",
                ));
            };
            let WindowFunction { fun, params } = f.as_ref();
            let WindowFunctionDefinition::AggregateUDF(udaf) = fun else {
                return Err(SqlError::unsupported(
                    format!("{}() OVER (...) beside OVER aggregations", fun.name()),
                    "rank in a query of its own (ROW_NUMBER() with WHERE rownum <= N)",
                ));
            };
            if !OVER_AGGREGATES.contains(&udaf.name()) {
                return Err(SqlError::unsupported(
                    format!("{} as an OVER aggregation", udaf.name()),
                    format!("use one of {} over a window", OVER_AGGREGATES.join(", ")),
                ));
            }
            if params.distinct || params.filter.is_some() {
                return Err(SqlError::unsupported(
                    "DISTINCT or FILTER (WHERE ...) in an OVER aggregation",
                    "filter or deduplicate the rows in a subquery first",
                ));
            }
            match shared {
                None => shared = Some(params),
                Some(p)
                    if p.partition_by == params.partition_by
                        && p.order_by == params.order_by
                        && p.window_frame == params.window_frame => {}
                Some(_) => {
                    return Err(SqlError::unsupported(
                        "OVER aggregations over different windows in one SELECT",
                        "give every aggregate the same OVER (PARTITION BY ... ORDER BY ... \
                         frame), as Flink requires, or join two queries",
                    ));
                }
            }
        }
        let params = shared.expect("a window node has expressions");
        let schema = w.input.schema();
        let not_time = || {
            let by: Vec<String> = params.order_by.iter().map(ToString::to_string).collect();
            SqlError::unsupported(
                format!(
                    "an OVER aggregation not ordered by a time attribute ascending \
                     (ORDER BY {})",
                    by.join(", ")
                ),
                "ORDER BY the table's WATERMARK FOR column or a PROCTIME() column \
                 (ascending) alone; declare one with WATERMARK FOR ts AS ts - INTERVAL '1' \
                 SECOND",
            )
        };
        let [order] = params.order_by.as_slice() else {
            return Err(not_time());
        };
        let time = column_index(&order.expr, schema).ok_or_else(not_time)?;
        let time_name = schema.field(time).name().clone();
        let proctime = is_proctime(&order.expr, schema, &w.input);
        if !order.asc || !(proctime || self.is_event_time(&time_name, &w.input)) {
            return Err(not_time());
        }
        let frame = &params.window_frame;
        if !matches!(frame.end_bound, WindowFrameBound::CurrentRow) {
            return Err(SqlError::unsupported(
                "an OVER frame that does not end at the current row",
                "end the frame with AND CURRENT ROW",
            ));
        }
        let frame = match (&frame.units, &frame.start_bound) {
            (_, WindowFrameBound::Preceding(v)) if v.is_null() => OverFrame::Unbounded,
            (WindowFrameUnits::Rows, WindowFrameBound::Preceding(v)) => {
                match v.cast_to(&DataType::UInt64)? {
                    ScalarValue::UInt64(Some(n)) => OverFrame::Rows(n),
                    _ => {
                        return Err(SqlError::unsupported(
                            format!("the ROWS frame {v} PRECEDING"),
                            "give the number of preceding rows as a whole number",
                        ));
                    }
                }
            }
            (WindowFrameUnits::Rows, WindowFrameBound::CurrentRow) => OverFrame::Rows(0),
            (WindowFrameUnits::Range, WindowFrameBound::Preceding(v)) => {
                OverFrame::Range(interval_value_ms(v).ok_or_else(|| {
                    SqlError::unsupported(
                        format!("the RANGE frame {v} PRECEDING"),
                        "give the range as an interval of days or less: RANGE BETWEEN \
                         INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW",
                    )
                })?)
            }
            (WindowFrameUnits::Range, WindowFrameBound::CurrentRow) => OverFrame::Range(0),
            _ => {
                return Err(SqlError::unsupported(
                    format!("the OVER frame {}", params.window_frame),
                    "use ROWS BETWEEN n PRECEDING AND CURRENT ROW or RANGE BETWEEN \
                     INTERVAL ... PRECEDING AND CURRENT ROW",
                ));
            }
        };
        let partition: Vec<usize> = params
            .partition_by
            .iter()
            .map(|e| column_index(e, schema))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                SqlError::unsupported(
                    "PARTITION BY expressions that are not columns",
                    "partition by columns (compute them in a subquery)",
                )
            })?;
        let input = self.plan(&w.input)?;
        if input.updating {
            return Err(SqlError::unsupported(
                "an OVER aggregation over an updating result",
                "aggregate an append-only stream: a table, a window aggregation or a join \
                 of tables",
            ));
        }
        let planning = PhysicalPlanningContext::default();
        let functions = w
            .window_expr
            .iter()
            .map(|e| {
                datafusion::physical_planner::create_window_expr(
                    e,
                    schema,
                    self.state.execution_props(),
                    &planning,
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let running = if frame == OverFrame::Unbounded {
            w.window_expr
                .iter()
                .zip(&functions)
                .map(|(e, f)| self.running_form(e, f, schema))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let in_arrow = arrow_schema(schema);
        let names: Vec<String> = partition
            .iter()
            .map(|&k| in_arrow.field(k).name().clone())
            .collect();
        let spec = OverSpec {
            partition,
            time,
            frame,
            functions,
            running,
            proctime,
        };
        let (factory, _) = OverAggregateOperator::factory(spec, in_arrow)?;
        Ok(self.add_keyed(&input, "over-aggregate", factory, &names, false))
    }

    /// How the aggregate `e` (planned as `f`) runs over a frame starting UNBOUNDED
    /// PRECEDING: continued from a carried value rather than over kept rows.
    fn running_form(
        &self,
        e: &Expr,
        f: &Arc<dyn datafusion::physical_expr::window::WindowExpr>,
        schema: &DFSchema,
    ) -> Result<Running> {
        use datafusion::logical_expr::ExprSchemable;
        use datafusion::logical_expr::WindowFunctionDefinition;
        let Expr::WindowFunction(call) = strip(e) else {
            unreachable!("checked by over_aggregate")
        };
        let name = call.fun.name().to_string();
        Ok(match name.as_str() {
            "count" => Running::Count,
            "sum" => Running::Sum,
            "min" => Running::Min,
            "max" => Running::Max,
            "avg" | "mean"
                if call.params.args.len() == 1
                    && matches!(call.params.args[0].get_type(schema)?, t if t.is_integer() || t.is_floating()) =>
            {
                // The sum and count of the argument widened (DataFusion's SUM takes
                // 64-bit numbers).
                let arg = &call.params.args[0];
                let wide = if arg.get_type(schema)?.is_floating() {
                    DataType::Float64
                } else {
                    DataType::Int64
                };
                let arg = arg.clone().cast_to(&wide, schema)?;
                let with = |udaf: Arc<datafusion::logical_expr::AggregateUDF>| {
                    let mut other = call.as_ref().clone();
                    other.fun = WindowFunctionDefinition::AggregateUDF(udaf);
                    other.params.args = vec![arg.clone()];
                    datafusion::physical_planner::create_window_expr(
                        &Expr::WindowFunction(Box::new(other)),
                        schema,
                        self.state.execution_props(),
                        &PhysicalPlanningContext::default(),
                    )
                };
                Running::Avg {
                    sum: with(datafusion::functions_aggregate::sum::sum_udaf())?,
                    count: with(datafusion::functions_aggregate::count::count_udaf())?,
                    output: f.field()?.data_type().clone(),
                }
            }
            _ => {
                return Err(SqlError::unsupported(
                    format!(
                        "{name} over an OVER frame starting UNBOUNDED PRECEDING (the frame when ORDER BY has none)"
                    ),
                    "use count, sum, min, max or avg (of numbers) there, or bound the frame: \
                     ROWS BETWEEN n PRECEDING AND CURRENT ROW, or RANGE BETWEEN INTERVAL '1' \
                     HOUR PRECEDING AND CURRENT ROW",
                ));
            }
        })
    }
}
