//! Top-N and deduplication (`ROW_NUMBER() OVER (...)` with a filter on the number),
//! with and without windows, and what decides whether a column is event time.

use super::*;

impl Planner<'_> {
    /// `ROW_NUMBER() OVER (PARTITION BY window_start, window_end, ... ORDER BY ...)` over
    /// windowed rows: a window Top-N (with a filter on the number above it).
    pub(super) fn rank(
        &mut self,
        w: &datafusion::logical_expr::logical_plan::Window,
    ) -> Result<Planned> {
        use datafusion::logical_expr::expr::WindowFunction;
        let unbounded = || {
            SqlError::unsupported(
                "ROW_NUMBER over an unbounded stream without a filter on the row number",
                "keep the first N rows per partition with WHERE rownum <= N (a Top-N), or rank per window (PARTITION BY window_start, window_end)",
            )
        };
        let [expr] = w.window_expr.as_slice() else {
            return Err(SqlError::unsupported(
                "several OVER (...) functions in one SELECT",
                "use one ROW_NUMBER() per query",
            ));
        };
        let Expr::WindowFunction(f) = strip(expr) else {
            return Err(unbounded());
        };
        let WindowFunction { fun, params } = f.as_ref();
        if fun.name() != "row_number" {
            return Err(SqlError::unsupported(
                format!("OVER aggregations ({}(...) OVER (...))", fun.name()),
                "aggregate per window (TUMBLE, HOP, SESSION) or without a window (GROUP BY keys); ROW_NUMBER() OVER (...) with WHERE rownum <= N is supported for Top-N",
            ));
        }
        let request = self.rank_request.take();
        let input = self.plan(&w.input)?;
        if input.updating {
            return Err(SqlError::unsupported(
                "ranking an updating result (an aggregation or join of changelogs without a window)",
                "rank an append-only stream: a table, a window aggregation or a join of tables",
            ));
        }
        let schema = w.input.schema();
        let partition: Vec<usize> = params
            .partition_by
            .iter()
            .map(|e| column_index(e, schema))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                SqlError::unsupported(
                    "PARTITION BY expressions that are not columns",
                    "partition by columns",
                )
            })?;
        let order = params
            .order_by
            .iter()
            .map(|s| {
                column_index(&s.expr, schema).map(|i| {
                    (
                        i,
                        arrow::compute::SortOptions {
                            descending: !s.asc,
                            nulls_first: s.nulls_first,
                        },
                    )
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                SqlError::unsupported(
                    "ORDER BY expressions in OVER (...) that are not columns",
                    "order by columns",
                )
            })?;
        let rank_column = w.schema.field(w.schema.fields().len() - 1).name().clone();
        let in_arrow = arrow_schema(schema);
        let names = |cols: &[usize]| -> Vec<String> {
            cols.iter()
                .map(|&k| in_arrow.field(k).name().clone())
                .collect()
        };
        let Some(end) = input.window.end.filter(|e| partition.contains(e)) else {
            // Top-N (or deduplication) without a window: an updating result.
            let Some(request) = request else {
                return Err(unbounded());
            };
            // Deduplication keeping the last row: the newest row wins ties.
            let newest_wins_ties = request.limit == 1
                && matches!(order.as_slice(), [(c, o)] if o.descending
                    && matches!(in_arrow.field(*c).data_type(), DataType::Timestamp(..)));
            // Deduplication keeping the first row by event time: late rows are dropped.
            let drop_late = match order.as_slice() {
                [(c, o)] if request.limit == 1 && !o.descending => {
                    let name = in_arrow.field(*c).name();
                    self.is_event_time(name, &w.input).then_some(*c)
                }
                _ => None,
            };
            let spec = RankSpec {
                drop_late,
                partition: partition.clone(),
                order,
                limit: request.limit,
                rank_column,
                rank_used: request.rank_used,
                newest_wins_ties,
                ttl_ms: self.state_ttl_ms,
            };
            let (factory, _) = RankOperator::factory(spec, in_arrow.clone())?;
            return Ok(self.add_keyed(&input, "rank", factory, &names(&partition), true));
        };
        let keys: Vec<usize> = partition
            .iter()
            .copied()
            .filter(|&p| p != end && Some(p) != input.window.start)
            .collect();
        let spec = WindowRankSpec {
            window_end: end,
            keys: keys.clone(),
            partition,
            order,
            rank_column,
        };
        let (factory, _) = WindowRankOperator::factory(spec, in_arrow.clone())?;
        let mut ranked = self.add_keyed(&input, "window-rank", factory, &names(&keys), false);
        ranked.window = input.window;
        Ok(ranked)
    }
}

impl Planner<'_> {
    /// Whether the column `name` of `plan`'s output is the event-time attribute of a
    /// table (its `WATERMARK FOR` column), passed on unchanged.
    pub(super) fn is_event_time(&self, name: &str, plan: &LogicalPlan) -> bool {
        match plan {
            LogicalPlan::Projection(p) => {
                let Some(idx) = p.schema.fields().iter().position(|f| f.name() == name) else {
                    return false;
                };
                match strip(&p.expr[idx]) {
                    Expr::Column(inner) => self.is_event_time(&inner.name, &p.input),
                    _ => false,
                }
            }
            LogicalPlan::Filter(f) => self.is_event_time(name, &f.input),
            LogicalPlan::SubqueryAlias(a) => self.is_event_time(name, &a.input),
            LogicalPlan::TableScan(scan) => self
                .tables
                .get(scan.table_name.table())
                .and_then(|t| t.watermark.as_ref())
                .is_some_and(|(column, _)| column == name),
            _ => false,
        }
    }
}

/// Whether the window time `time` (over `input`) is a processing-time attribute: a
/// `PROCTIME()` call or a column computed by one.
pub(super) fn is_proctime(time: &Expr, schema: &DFSchema, input: &LogicalPlan) -> bool {
    if crate::udfs::is_proctime_call(time) {
        return true;
    }
    let Expr::Column(c) = strip(time) else {
        return false;
    };
    let marked = schema
        .qualified_field_with_unqualified_name(&c.name)
        .ok()
        .is_some_and(|(_, f)| {
            f.metadata().get(udfs::TIME_ATTRIBUTE).map(String::as_str) == Some("proctime")
        });
    marked || find_definition(c, input).is_some_and(|(e, _)| crate::udfs::is_proctime_call(&e))
}

/// If `plan` is a filter `rownum <= N` (or `< N`, or `= 1`) on a `ROW_NUMBER()` column of
/// its input: that column and N.
pub(super) fn rank_filter(plan: &LogicalPlan) -> Option<(Column, usize)> {
    use datafusion::logical_expr::Operator;
    let f = match plan {
        LogicalPlan::Filter(f) => f,
        LogicalPlan::SubqueryAlias(a) => return rank_filter(&a.input),
        _ => return None,
    };
    split_conjunction(&f.predicate).into_iter().find_map(|c| {
        let Expr::BinaryExpr(b) = c else { return None };
        let (col, value, op) = match (strip(&b.left), strip(&b.right)) {
            (Expr::Column(c), Expr::Literal(v, _)) => (c, v, b.op),
            (Expr::Literal(v, _), Expr::Column(c)) => (c, v, b.op.swap()?),
            _ => return None,
        };
        let ScalarValue::Int64(Some(n)) = value.cast_to(&DataType::Int64).ok()? else {
            return None;
        };
        let limit = match op {
            Operator::LtEq => n,
            Operator::Lt => n - 1,
            Operator::Eq if n == 1 => 1,
            _ => return None,
        };
        (limit > 0 && is_row_number(col, &f.input)).then(|| (col.clone(), limit as usize))
    })
}

/// Whether column `c` of `plan` is a `ROW_NUMBER()` window function's result.
pub(super) fn is_row_number(c: &Column, plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(p) => {
            let Some(idx) = p
                .schema
                .index_of_column(c)
                .ok()
                .or_else(|| p.schema.fields().iter().position(|f| f.name() == &c.name))
            else {
                return false;
            };
            match strip(&p.expr[idx]) {
                Expr::Column(inner) => is_row_number(inner, &p.input),
                Expr::WindowFunction(w) => w.fun.name() == "row_number",
                _ => false,
            }
        }
        LogicalPlan::SubqueryAlias(a) => is_row_number(&Column::new_unqualified(&c.name), &a.input),
        LogicalPlan::Filter(f) => is_row_number(c, &f.input),
        LogicalPlan::Window(w) => {
            let Some(idx) = w.schema.fields().iter().position(|f| f.name() == &c.name) else {
                return false;
            };
            let first = w.input.schema().fields().len();
            idx >= first
                && matches!(strip(&w.window_expr[idx - first]), Expr::WindowFunction(f) if f.fun.name() == "row_number")
        }
        _ => false,
    }
}
