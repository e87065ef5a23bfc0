//! From DataFusion's logical plan to Fungi's job graph.
//!
//! Each supported plan node becomes operators whose output batches have exactly the
//! columns (order and types) of the node's DataFusion schema, so expressions of the parent
//! node, compiled against that schema, can be evaluated on them:
//!
//! | logical node | operators |
//! |---|---|
//! | `TableScan` | the table's source (per-split watermarks), plus a projection |
//! | `Projection` | [`ProjectOperator`] over DataFusion physical expressions |
//! | `Filter` | [`PredicateOperator`] |
//! | `SubqueryAlias` | nothing (same columns) |
//! | `Aggregate` grouped by a window's `window_start, window_end` | key/argument projection → hash exchange → [`WindowOperator`] → column reorder |
//!
//! Everything else is refused with a message that says what to write instead.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Expr, Filter, LogicalPlan, Projection, SubqueryAlias, expr::ScalarFunction,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::{Column as PhysicalColumn, Literal};
use fungi_common::changelog::OP_COLUMN;
use fungi_common::ids::OperatorId;
use fungi_connector::registry;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::{
    IntervalJoinOperator, IntervalJoinSpec, ProcessingTimeWatermarks, RankOperator, RankSpec,
    RegularJoinOperator, RegularJoinSpec, UpdatingAggregateOperator, WindowJoinOperator,
    WindowJoinSpec, WindowOperator, WindowRankOperator, WindowRankSpec,
};
use fungi_streaming::aggregate::{AggregateCall, builtin};
use fungi_streaming::updating_aggregate::UpdatingAggregateSpec;
use fungi_streaming::window::WindowAssigner;
use fungi_streaming::window_aggregate::WindowAggregateSpec;

use crate::aggregate::DfAggregate;
use crate::catalog::TableDef;
use crate::error::{Result, SqlError};
use crate::operators::{PredicateOperator, ProjectOperator, UnionOperator};
use crate::udfs;

/// A planned subtree: the node producing its rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned {
    pub(crate) node: OperatorId,
    pub(crate) parallelism: u32,
    /// Whether the rows are a changelog (with the change column last).
    pub(crate) updating: bool,
    /// Columns holding each row's window bounds (start, end), for rows that are the
    /// results of a window: cascaded windows and window joins use them.
    pub(crate) window: WindowColumns,
}

/// Indices of the window_start and window_end columns of a windowed stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WindowColumns {
    pub(crate) start: Option<usize>,
    pub(crate) end: Option<usize>,
}

/// Translates one query into `graph`.
pub(crate) struct Planner<'a> {
    pub(crate) state: &'a SessionState,
    pub(crate) tables: &'a std::collections::BTreeMap<String, TableDef>,
    pub(crate) graph: &'a mut JobGraph,
    /// Set while planning the input of a windowed aggregation: window marker columns
    /// there are not needed (the window operator computes windows), so they become NULL.
    pub(crate) in_window_input: bool,
    /// `table.exec.state.ttl` in ms, for aggregations, joins and Top-N without a window.
    pub(crate) state_ttl_ms: Option<i64>,
    /// Tables joined with `FOR SYSTEM_TIME AS OF` in this statement (lookup joins).
    pub(crate) lookups: Vec<String>,
    /// Set while planning the input of a `rownum <= N` filter over `ROW_NUMBER()`.
    rank_request: Option<RankRequest>,
    /// Set by a projection over such a filter: whether it reads the row number.
    rank_used_above: Option<bool>,
    /// The session's plugins: aggregates run as Fungi accumulators, scalar functions
    /// whose inputs are coalesced, the error policy, plugin connectors.
    pub(crate) plugins: &'a mut crate::plugins::SessionPlugins,
}

/// What a filter over a `ROW_NUMBER()` column asks of the ranking below it.
#[derive(Debug, Clone, Copy)]
struct RankRequest {
    /// Rows kept per partition.
    limit: usize,
    /// Whether the row number is read above the filter.
    rank_used: bool,
}

fn arrow_schema(schema: &DFSchema) -> SchemaRef {
    Arc::new(schema.as_arrow().clone())
}

/// A window recognised in an aggregation's GROUP BY.
#[derive(Debug, Clone)]
struct WindowGroup {
    assigner: WindowAssigner,
    time: Expr,
}

impl<'a> Planner<'a> {
    /// A planner adding to `graph`.
    pub(crate) fn new(
        state: &'a SessionState,
        tables: &'a std::collections::BTreeMap<String, TableDef>,
        graph: &'a mut JobGraph,
        state_ttl_ms: Option<i64>,
        lookups: Vec<String>,
        plugins: &'a mut crate::plugins::SessionPlugins,
    ) -> Self {
        Planner {
            state,
            tables,
            graph,
            in_window_input: false,
            state_ttl_ms,
            lookups,
            rank_request: None,
            rank_used_above: None,
            plugins,
        }
    }
}

impl Planner<'_> {
    /// Coalesces `input` before evaluating `exprs` if they call a plugin function.
    fn coalesce_for_plugins<'e>(
        &mut self,
        input: Planned,
        exprs: impl IntoIterator<Item = &'e Expr>,
    ) -> Planned {
        let calls_plugin = exprs.into_iter().any(|e| {
            let mut found = false;
            let _ = e.apply(|x| {
                if let Expr::ScalarFunction(f) = x
                    && self.plugins.scalars.contains(f.func.name())
                {
                    found = true;
                    return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
                }
                Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
            });
            found
        });
        if calls_plugin {
            let rows = self.plugins.batch_rows;
            self.then(
                input,
                "coalesce",
                fungi_execution::operators::CoalesceOperator::factory(rows),
            )
        } else {
            input
        }
    }

    fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        let expr = self.rewrite_functions(expr.clone(), schema)?;
        Ok(self.state.create_physical_expr(expr, schema)?)
    }

    /// Lets every function call rewrite itself the way DataFusion's optimizer would
    /// (`COALESCE`, `NVL` and `IFNULL` become `CASE`; they have no kernel of their own).
    /// Only the functions' own rewrites run: no constant folding, so nothing (a plugin's
    /// function above all) is evaluated while a job is planned.
    fn rewrite_functions(&self, expr: Expr, schema: &DFSchema) -> Result<Expr> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::ExprSchemable;
        use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
        let info = SimplifyContext::builder()
            .with_schema(Arc::new(schema.clone()))
            .with_config_options(self.state.config_options().clone())
            .build();
        Ok(expr
            .transform_up(|e| match e {
                e @ (Expr::Cast(_) | Expr::TryCast(_)) => Ok(Transformed::yes(
                    crate::flink_functions::flink_cast(e, schema)?,
                )),
                Expr::SimilarTo(like) => Ok(Transformed::yes(Expr::SimilarTo(
                    crate::flink_aliases::flink_similar_to(like, schema),
                ))),
                // DataFusion's `OVERLAY ... PLACING` syntax calls its own function
                // directly, not the one registered under the name.
                Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "overlay" => {
                    let t = Expr::ScalarFunction(ScalarFunction::new_udf(func, args.clone()))
                        .get_type(schema)?;
                    Ok(Transformed::yes(crate::flink_aliases::flink_overlay(
                        args, t,
                    )))
                }
                Expr::ScalarFunction(ScalarFunction { func, args }) => {
                    Ok(match func.simplify(args, &info)? {
                        ExprSimplifyResult::Simplified(e) => Transformed::yes(e),
                        ExprSimplifyResult::Original(args) => {
                            Transformed::no(Expr::ScalarFunction(ScalarFunction { func, args }))
                        }
                    })
                }
                e => Ok(Transformed::no(e)),
            })?
            .data)
    }

    /// Adds `name` fed by `input` with the same parallelism (chained).
    fn then(
        &mut self,
        input: Planned,
        name: &str,
        factory: fungi_execution::operator::OperatorFactory,
    ) -> Planned {
        let node = self.graph.add_operator(name, input.parallelism, factory);
        self.graph.connect(input.node, node, Partitioning::Forward);
        Planned {
            node,
            parallelism: input.parallelism,
            updating: input.updating,
            window: input.window,
        }
    }

    /// Adds a stateful operator fed by `keys` (hash partitioned; one subtask without keys).
    fn add_keyed(
        &mut self,
        input: &Planned,
        name: &str,
        factory: fungi_execution::operator::OperatorFactory,
        keys: &[String],
        updating: bool,
    ) -> Planned {
        let (parallelism, edge) = if keys.is_empty() {
            (1, Partitioning::Rebalance)
        } else {
            (
                self.graph.config.parallelism,
                Partitioning::Hash(keys.to_vec()),
            )
        };
        let node = self.graph.add_stateful_operator(name, parallelism, factory);
        self.graph.connect(input.node, node, edge);
        Planned {
            node,
            parallelism,
            updating,
            window: WindowColumns::default(),
        }
    }

    pub(crate) fn plan(&mut self, plan: &LogicalPlan) -> Result<Planned> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Projection(p) if self.in_window_input => {
                let input = self.plan(&p.input)?;
                let input = self.coalesce_for_plugins(input, &p.expr);
                let exprs = p
                    .expr
                    .iter()
                    .map(|e| match marker_call(e) {
                        Some(_) => Ok(Arc::new(Literal::new(ScalarValue::TimestampMillisecond(
                            None, None,
                        ))) as Arc<dyn PhysicalExpr>),
                        None => self.physical(e, p.input.schema()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(self.then(
                    input,
                    "project",
                    ProjectOperator::factory(self.plugins.on_error, exprs, arrow_schema(&p.schema)),
                ))
            }
            LogicalPlan::Projection(p) => {
                if let Some(kind) = p.expr.iter().find_map(non_tumble_marker) {
                    return Err(SqlError::unsupported(
                        format!(
                            "using the columns of a {} window without aggregating over them",
                            kind.to_uppercase()
                        ),
                        "group by window_start, window_end (and keys) with aggregates, or use TUMBLE",
                    ));
                }
                if let Some((rank, _)) = rank_filter(&p.input) {
                    let used = p
                        .expr
                        .iter()
                        .any(|e| e.column_refs().iter().any(|c| c.name == rank.name));
                    self.rank_used_above = Some(used);
                }
                let input = self.plan(&p.input)?;
                let input = self.coalesce_for_plugins(input, &p.expr);
                let mut exprs = p
                    .expr
                    .iter()
                    .map(|e| self.physical(e, p.input.schema()))
                    .collect::<Result<Vec<_>>>()?;
                let mut schema = arrow_schema(&p.schema);
                let moved = |idx: Option<usize>| {
                    idx.and_then(|i| {
                        p.expr
                            .iter()
                            .position(|e| column_index(e, p.input.schema()) == Some(i))
                    })
                };
                // Rows of a TUMBLE table function carry their window as marker columns.
                let marker = |bound: &str| {
                    p.expr
                        .iter()
                        .position(|e| marker_call(e).is_some_and(|m| m.1 == bound))
                };
                let window = WindowColumns {
                    start: moved(input.window.start).or_else(|| marker("start")),
                    end: moved(input.window.end).or_else(|| marker("end")),
                };
                if input.updating {
                    // Carry the change column through.
                    let n = p.input.schema().fields().len();
                    exprs.push(Arc::new(PhysicalColumn::new(OP_COLUMN, n)));
                    schema = with_op_column(&schema);
                }
                let mut projected = self.then(
                    input,
                    "project",
                    ProjectOperator::factory(self.plugins.on_error, exprs, schema),
                );
                projected.window = window;
                Ok(projected)
            }
            LogicalPlan::Filter(f) => {
                if let LogicalPlan::Join(j) = f.input.as_ref() {
                    // WHERE conditions over a join may be its time bounds (interval joins).
                    let conditions = split_conjunction(&f.predicate)
                        .into_iter()
                        .cloned()
                        .collect();
                    return self.join(j, conditions);
                }
                let rank = rank_filter(plan).map(|(_, limit)| RankRequest {
                    limit,
                    rank_used: self.rank_used_above.take().unwrap_or(true),
                });
                let outer = std::mem::replace(&mut self.rank_request, rank);
                let input = self.plan(&f.input);
                self.rank_request = outer;
                let input = self.coalesce_for_plugins(input?, [&f.predicate]);
                let predicate = self.physical(&f.predicate, f.input.schema())?;
                Ok(self.then(
                    input,
                    "filter",
                    PredicateOperator::factory(self.plugins.on_error, predicate),
                ))
            }
            LogicalPlan::SubqueryAlias(a) => self.plan(&a.input),
            LogicalPlan::Aggregate(agg) => {
                // Aggregations below this one see their own windows.
                let outer = std::mem::replace(&mut self.in_window_input, false);
                let r = self.aggregate(agg);
                self.in_window_input = outer;
                r
            }
            LogicalPlan::Join(j) => self.join(j, Vec::new()),
            LogicalPlan::Window(w) => self.rank(w),
            LogicalPlan::Sort(_) => Err(SqlError::unsupported(
                "ORDER BY on an unbounded stream",
                "drop ORDER BY, or keep the first rows per key with ROW_NUMBER() OVER (PARTITION BY k ORDER BY x) <= N (Top-N)",
            )),
            LogicalPlan::Limit(_) => Err(SqlError::unsupported("LIMIT on a stream", "drop LIMIT")),
            LogicalPlan::Union(u) => self.union(u),
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => {
                // SELECT DISTINCT: an aggregation grouped by every column, without
                // aggregates (an updating result, as in Flink).
                let group = input
                    .schema()
                    .iter()
                    .map(|(q, f)| Expr::Column(Column::from((q, f))))
                    .collect();
                let agg = Aggregate::try_new(input.clone(), group, Vec::new())?;
                self.plan(&LogicalPlan::Aggregate(agg))
            }
            LogicalPlan::Distinct(_) => Err(SqlError::unsupported(
                "SELECT DISTINCT ON on an unbounded stream",
                "keep the first row per key with ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) and WHERE rownum = 1",
            )),
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Err(SqlError::unsupported(
                "queries without a FROM table",
                "read from a table declared with CREATE TABLE",
            )),
            other => Err(SqlError::unsupported(
                format!("the plan node {}", other.display()),
                "write the query with projections, filters and window aggregations",
            )),
        }
    }

    fn scan(&mut self, scan: &datafusion::logical_expr::TableScan) -> Result<Planned> {
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
        let mut planned = Planned {
            node: source,
            parallelism: p,
            updating: false,
            window: WindowColumns::default(),
        };
        // Conform the source's rows to the table, then to the scan's projection.
        let indices: Vec<usize> = match &scan.projection {
            Some(p) => p.clone(),
            None => (0..table.schema.fields().len()).collect(),
        };
        let base = table.schema.fields().len() - table.computed.len();
        let identity = table.computed.is_empty()
            && indices.len() == produced.fields().len()
            && indices.iter().enumerate().all(|(i, &j)| i == j)
            && produced
                .fields()
                .iter()
                .zip(table.schema.fields())
                .all(|(a, b)| a.data_type() == b.data_type());
        if !identity {
            let produced_df = DFSchema::try_from(produced.as_ref().clone())?;
            let exprs = indices
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
            planned = self.then(
                planned,
                "conform",
                ProjectOperator::factory(
                    self.plugins.on_error,
                    exprs,
                    arrow_schema(&scan.projected_schema),
                ),
            );
        }
        Ok(planned)
    }

    fn aggregate(&mut self, agg: &Aggregate) -> Result<Planned> {
        let input_schema = agg.input.schema();
        // Which group expressions are window bounds, and which window.
        let mut window: Option<WindowGroup> = None;
        let mut bounds = Vec::new(); // (position in group_expr, bound name)
        let mut keys = Vec::new(); // (position, expr)
        for (i, g) in agg.group_expr.iter().enumerate() {
            match resolve_marker(g, &agg.input)? {
                Some((bound, group)) => {
                    if let Some(w) = &window
                        && w.assigner != group.assigner
                    {
                        return Err(SqlError::unsupported(
                            "grouping by two different windows",
                            "group by the bounds of one window",
                        ));
                    }
                    window = Some(group);
                    bounds.push((i, bound));
                }
                None => keys.push((i, g.clone())),
            }
        }
        // A subquery between the window table function and this aggregation may have
        // dropped the time column: carry it through and plan the aggregation again.
        if let Some(WindowGroup {
            time: Expr::Column(time),
            ..
        }) = &window
            && input_schema
                .index_of_column_by_name(None, &time.name)
                .is_none()
            && let Some(input) = keep_column(&agg.input, &time.name)?
        {
            let carried = Aggregate::try_new(
                Arc::new(input),
                agg.group_expr.clone(),
                agg.aggr_expr.clone(),
            )?;
            return self.aggregate(&carried);
        }
        // 1. Project the event time (windows only), the keys and every aggregate argument.
        self.in_window_input = window.is_some();
        let input = self.plan(&agg.input);
        self.in_window_input = false;
        let input = input?;
        if input.updating && window.is_some() {
            return Err(SqlError::unsupported(
                "a window aggregation over an updating result (an aggregation or join without a window)",
                "aggregate per window first, or aggregate the updating result without a window",
            ));
        }
        // Grouping by the window bounds of windowed rows (a window over window results):
        // each row already names its window; it fires when the watermark passes its end.
        let mut cascaded = WindowColumns::default();
        if window.is_none()
            && let Some(end) = input.window.end
        {
            let position = |idx: Option<usize>| {
                idx.and_then(|i| {
                    agg.group_expr
                        .iter()
                        .position(|g| column_index(g, input_schema) == Some(i))
                })
            };
            if let Some(end_pos) = position(Some(end)) {
                cascaded = WindowColumns {
                    start: position(input.window.start),
                    end: Some(end_pos),
                };
                let end_col = Expr::Column(Column::from(input_schema.qualified_field(end)));
                window = Some(WindowGroup {
                    assigner: WindowAssigner::tumbling(1)?,
                    time: end_col - one_milli(),
                });
            }
        }
        let input_arrow = arrow_schema(input_schema);
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let mut fields = Vec::new();
        if let Some(window) = &window {
            exprs.push(self.physical(&window.time, input_schema)?);
            fields.push(Field::new(
                "__time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ));
        }
        let mut key_names = Vec::new();
        for (n, (_, k)) in keys.iter().enumerate() {
            let e = self.physical(k, input_schema)?;
            let name = format!("__k{n}");
            fields.push(Field::new(&name, e.data_type(&input_arrow)?, true));
            exprs.push(e);
            key_names.push(name);
        }
        let mut calls = Vec::new();
        for (n, a) in agg.aggr_expr.iter().enumerate() {
            // FILTER (WHERE c): the aggregate sees NULL where c is not true, which every
            // NULL-ignoring aggregate turns into "skip the row".
            let (a, filter) = split_filter(a)?;
            // Arguments run as the rest of the plan's expressions do (COALESCE rewritten,
            // Flink's casts to strings).
            let a = self.rewrite_functions(a, input_schema)?;
            let planning = PhysicalPlanningContext::default();
            let lowered = LoweredAggregateBuilder::new(
                &a,
                input_schema,
                &input_arrow,
                self.state.execution_props(),
                &planning,
            )
            .build()?;
            let (expr, order_by) = (lowered.aggregate, lowered.order_bys);
            if !order_by.is_empty() {
                return Err(SqlError::unsupported(
                    "ORDER BY inside an aggregate",
                    "drop the ORDER BY",
                ));
            }
            let args: Vec<Arc<dyn PhysicalExpr>> = match &filter {
                None => expr.expressions(),
                Some((filter, logical_args)) => logical_args
                    .iter()
                    .map(|arg| {
                        let guarded = Expr::Case(datafusion::logical_expr::expr::Case::new(
                            None,
                            vec![(Box::new(filter.clone()), Box::new(arg.clone()))],
                            None,
                        ));
                        self.physical(&guarded, input_schema)
                    })
                    .collect::<Result<Vec<_>>>()?,
            };
            let mut inputs = Vec::new();
            let mut types = Vec::new();
            for (j, arg) in args.into_iter().enumerate() {
                let name = format!("__a{n}_{j}");
                let t = arg.data_type(&input_arrow)?;
                fields.push(Field::new(&name, t.clone(), true));
                types.push(t);
                exprs.push(arg);
                inputs.push(name);
            }
            let plugin = self.plugins.aggregates.get(expr.fun().name()).cloned();
            let native = if plugin.is_some() {
                plugin
            } else if expr.is_distinct() {
                (expr.fun().name() == "count").then(|| {
                    Arc::new(fungi_streaming::aggregate::CountDistinct)
                        as Arc<dyn fungi_streaming::aggregate::AggregateFunction>
                })
            } else {
                builtin(expr.fun().name())
            }
            .filter(|f| f.return_type(&types).ok().as_ref() == Some(expr.field().data_type()));
            let function: Arc<dyn fungi_streaming::aggregate::AggregateFunction> = match native {
                Some(f) => f,
                None => Arc::new(DfAggregate::new(expr.clone())),
            };
            calls.push(AggregateCall {
                function,
                inputs,
                alias: format!("__agg{n}"),
            });
        }
        if input.updating {
            // Carry the change column: the aggregation takes retracted rows back.
            exprs.push(Arc::new(PhysicalColumn::new(
                OP_COLUMN,
                input_schema.fields().len(),
            )));
            fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
        }
        let pre_schema = Arc::new(Schema::new(fields));
        let Some(mut window) = window else {
            let pre = self.then(
                input,
                "aggregate-input",
                ProjectOperator::factory(self.plugins.on_error, exprs, pre_schema.clone()),
            );
            return self.updating_aggregate(agg, pre, &pre_schema, key_names, calls);
        };
        // A window over a processing-time attribute: each row's time is the wall clock
        // when it reaches the window's input, and so is the watermark.
        let proctime = is_proctime(&window.time, input_schema, &agg.input);
        if proctime {
            let now = Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(udfs::Proctime::udf()),
                vec![],
            ));
            exprs[0] = self.physical(&now, input_schema)?;
            window.time = now;
        }
        let mut pre = self.then(
            input,
            "window-input",
            ProjectOperator::factory(self.plugins.on_error, exprs, pre_schema.clone()),
        );
        if proctime {
            pre = self.then(
                pre,
                "proctime-watermarks",
                ProcessingTimeWatermarks::factory(),
            );
        }
        // 2. The window operator, fed by key group.
        let spec = WindowAggregateSpec {
            keys: key_names.clone(),
            time_column: "__time".into(),
            assigner: window.assigner,
            allowed_lateness: 0,
            aggregates: calls,
        };
        let (factory, window_schema) = WindowOperator::factory(spec, &pre_schema)?;
        let windowed = self.add_keyed(&pre, "window", factory, &key_names, false);
        // 3. Reorder into the aggregate's columns: group expressions, then aggregates.
        let window_df = DFSchema::try_from(window_schema.as_ref().clone())?;
        let nkeys = key_names.len();
        let mut out = Vec::new();
        let mut key_iter = 0;
        for (i, _) in agg.group_expr.iter().enumerate() {
            let e: Arc<dyn PhysicalExpr> = match bounds.iter().find(|(p, _)| *p == i) {
                Some((_, "start")) => Arc::new(PhysicalColumn::new("window_start", nkeys)),
                Some((_, "end")) => Arc::new(PhysicalColumn::new("window_end", nkeys + 1)),
                Some(_) => {
                    // window_time = window_end - 1 ms
                    let e = Expr::Column(Column::new_unqualified("window_end")) - one_milli();
                    self.physical(&e, &window_df)?
                }
                None => {
                    key_iter += 1;
                    Arc::new(PhysicalColumn::new(&key_names[key_iter - 1], key_iter - 1))
                }
            };
            out.push(e);
        }
        for n in 0..agg.aggr_expr.len() {
            out.push(Arc::new(PhysicalColumn::new(
                &format!("__agg{n}"),
                nkeys + 2 + n,
            )));
        }
        let mut result = self.then(
            windowed,
            "window-output",
            ProjectOperator::factory(self.plugins.on_error, out, arrow_schema(&agg.schema)),
        );
        result.window = WindowColumns {
            start: bounds
                .iter()
                .find(|(_, b)| *b == "start")
                .map(|(p, _)| *p)
                .or(cascaded.start),
            end: bounds
                .iter()
                .find(|(_, b)| *b == "end")
                .map(|(p, _)| *p)
                .or(cascaded.end),
        };
        Ok(result)
    }
}

impl Planner<'_> {
    /// `UNION ALL`: every input's rows. If one input is an updating result, the union is
    /// one and the other inputs' rows are insertions.
    fn union(&mut self, u: &datafusion::logical_expr::Union) -> Result<Planned> {
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
        })
    }

    /// An aggregation without a window: per-key accumulators emitting a changelog.
    fn updating_aggregate(
        &mut self,
        agg: &Aggregate,
        pre: Planned,
        pre_schema: &SchemaRef,
        key_names: Vec<String>,
        calls: Vec<AggregateCall>,
    ) -> Result<Planned> {
        let spec = UpdatingAggregateSpec {
            keys: key_names.clone(),
            aggregates: calls,
            ttl_ms: self.state_ttl_ms,
            op_column: pre.updating.then(|| OP_COLUMN.to_string()),
        };
        let (factory, schema) = UpdatingAggregateOperator::factory(spec, pre_schema)?;
        let aggregated = self.add_keyed(&pre, "aggregate", factory, &key_names, true);
        // The aggregation emits keys, aggregates and the change column: exactly the
        // aggregate node's columns (group expressions first) plus the change column.
        let exprs: Vec<Arc<dyn PhysicalExpr>> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(PhysicalColumn::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let out_schema = with_op_column(&arrow_schema(&agg.schema));
        Ok(self.then(
            aggregated,
            "aggregate-output",
            ProjectOperator::factory(self.plugins.on_error, exprs, out_schema),
        ))
    }
}

/// Which input(s) of a join an expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sides {
    Left,
    Right,
    Both,
    Neither,
}

fn sides(e: &Expr, ls: &DFSchema, rs: &DFSchema) -> Sides {
    let (mut l, mut r) = (false, false);
    for c in e.column_refs() {
        if ls.has_column(c) {
            l = true;
        } else if rs.has_column(c) {
            r = true;
        }
    }
    match (l, r) {
        (true, true) => Sides::Both,
        (true, false) => Sides::Left,
        (false, true) => Sides::Right,
        (false, false) => Sides::Neither,
    }
}

/// The plan's scanned table, if it is a scan (possibly aliased).
fn scanned_table(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::TableScan(s) => Some(s.table_name.table().to_string()),
        LogicalPlan::SubqueryAlias(a) => scanned_table(&a.input),
        _ => None,
    }
}

impl Planner<'_> {
    /// An inner join: a window join (both sides windowed, joined on their windows), an
    /// interval join (a time condition `l.t BETWEEN r.t - a AND r.t + b`), a lookup join
    /// (`FOR SYSTEM_TIME AS OF`), or else a regular join.
    fn join(&mut self, j: &datafusion::logical_expr::Join, extra: Vec<Expr>) -> Result<Planned> {
        use datafusion::logical_expr::JoinType;
        if j.join_type != JoinType::Inner {
            return Err(SqlError::unsupported(
                format!("{} joins", j.join_type),
                "use an INNER join (outer joins are being built)",
            ));
        }
        if j.null_equality == datafusion::common::NullEquality::NullEqualsNull && !j.on.is_empty() {
            return Err(SqlError::unsupported(
                "join keys compared with IS NOT DISTINCT FROM",
                "join on `=` (rows with a NULL key then match nothing) and add the rows with \
                 NULL keys with a UNION ALL",
            ));
        }
        let (ls, rs) = (j.left.schema().clone(), j.right.schema().clone());
        // Equalities between the two sides are join keys; conditions on one side are
        // applied before the join; the rest is a filter over the joined rows.
        let mut keys: Vec<(Expr, Expr)> = j.on.clone();
        let (mut left_only, mut right_only, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        let conditions = j
            .filter
            .iter()
            .flat_map(|f| split_conjunction(f).into_iter().cloned())
            .chain(extra);
        for c in conditions {
            if let Expr::BinaryExpr(b) = &c
                && b.op == datafusion::logical_expr::Operator::Eq
            {
                match (sides(&b.left, &ls, &rs), sides(&b.right, &ls, &rs)) {
                    (Sides::Left, Sides::Right) => {
                        keys.push((*b.left.clone(), *b.right.clone()));
                        continue;
                    }
                    (Sides::Right, Sides::Left) => {
                        keys.push((*b.right.clone(), *b.left.clone()));
                        continue;
                    }
                    _ => {}
                }
            }
            match sides(&c, &ls, &rs) {
                Sides::Left => left_only.push(c),
                Sides::Right => right_only.push(c),
                _ => rest.push(c),
            }
        }
        let lookup = scanned_table(&j.right).filter(|t| self.lookups.contains(t));
        let mut left = self.plan(&j.left)?;
        let mut right = self.plan(&j.right)?;
        if let Some(c) = left_only.into_iter().reduce(|a, b| a.and(b)) {
            let predicate = self.physical(&c, &ls)?;
            left = self.then(
                left,
                "filter",
                PredicateOperator::factory(self.plugins.on_error, predicate),
            );
        }
        if let Some(c) = right_only.into_iter().reduce(|a, b| a.and(b)) {
            let predicate = self.physical(&c, &rs)?;
            right = self.then(
                right,
                "filter",
                PredicateOperator::factory(self.plugins.on_error, predicate),
            );
        }
        let column_pairs: Option<Vec<(usize, usize)>> = keys
            .iter()
            .map(|(a, b)| Some((column_index(a, &ls)?, column_index(b, &rs)?)))
            .collect();
        if lookup.is_none()
            && !left.updating
            && !right.updating
            && let Some(pairs) = &column_pairs
            && let Some(joined) = self.time_join(j, left, right, pairs, &mut rest)?
        {
            return Ok(joined);
        }
        self.regular_join(j, left, right, &keys, lookup, rest)
    }

    /// A window join or an interval join, if the keys and conditions make one.
    fn time_join(
        &mut self,
        j: &datafusion::logical_expr::Join,
        left: Planned,
        right: Planned,
        pairs: &[(usize, usize)],
        rest: &mut Vec<Expr>,
    ) -> Result<Option<Planned>> {
        let (ls, rs) = (j.left.schema().clone(), j.right.schema().clone());
        let (la, ra) = (arrow_schema(&ls), arrow_schema(&rs));
        let windowed = match (left.window.end, right.window.end) {
            (Some(le), Some(re)) if pairs.contains(&(le, re)) => Some((le, re)),
            _ => None,
        };
        let Some((le, re)) = windowed else {
            // An interval join needs `l.t BETWEEN r.t - a AND r.t + b`.
            let Some(pos) = rest
                .iter()
                .position(|c| interval_bounds(c, &ls, &rs).is_some())
            else {
                return Ok(None);
            };
            let condition = rest.remove(pos);
            let (time, lower, upper) = interval_bounds(&condition, &ls, &rs).expect("checked");
            let spec = IntervalJoinSpec {
                time,
                keys: pairs.to_vec(),
                lower,
                upper,
            };
            let (factory, _) = IntervalJoinOperator::factory(spec, la.clone(), ra.clone())?;
            let joined = self.connect_join(
                [&left, &right],
                [&la, &ra],
                pairs,
                factory,
                "interval-join",
                false,
            );
            return self
                .join_output(j, joined, None, std::mem::take(rest))
                .map(Some);
        };
        let bound = |p: &(usize, usize)| {
            *p == (le, re)
                || (left.window.start.is_some()
                    && Some(p.0) == left.window.start
                    && Some(p.1) == right.window.start)
        };
        let keys: Vec<(usize, usize)> = pairs.iter().copied().filter(|p| !bound(p)).collect();
        let spec = WindowJoinSpec {
            window_end: (le, re),
            keys: keys.clone(),
        };
        let (factory, _) = WindowJoinOperator::factory(spec, la.clone(), ra.clone())?;
        let mut joined = self.connect_join(
            [&left, &right],
            [&la, &ra],
            &keys,
            factory,
            "window-join",
            false,
        );
        joined.window = WindowColumns {
            start: left.window.start,
            end: Some(le),
        };
        self.join_output(j, joined, None, std::mem::take(rest))
            .map(Some)
    }

    /// A regular (or lookup) join: keys may be expressions, inputs may be changelogs.
    fn regular_join(
        &mut self,
        j: &datafusion::logical_expr::Join,
        left: Planned,
        right: Planned,
        keys: &[(Expr, Expr)],
        lookup: Option<String>,
        rest: Vec<Expr>,
    ) -> Result<Planned> {
        if let Some(table) = &lookup {
            let def = &self.tables[table];
            if def.connector != "filesystem" {
                return Err(SqlError::unsupported(
                    format!(
                        "a lookup join (FOR SYSTEM_TIME AS OF) on table '{table}' of connector '{}', which is unbounded",
                        def.connector
                    ),
                    "look up a bounded table (connector 'filesystem'), or join the two streams with a regular or interval join",
                ));
            }
            if right.updating {
                return Err(SqlError::unsupported(
                    "a lookup join on an updating result",
                    "look up a table",
                ));
            }
        }
        // Key expressions that are not columns are computed as extra columns.
        let (ls, rs) = (j.left.schema().clone(), j.right.schema().clone());
        let (left, la, lkeys) = self.with_key_columns(left, &ls, keys.iter().map(|k| &k.0))?;
        let (right, ra, rkeys) = self.with_key_columns(right, &rs, keys.iter().map(|k| &k.1))?;
        let pairs: Vec<(usize, usize)> = lkeys.into_iter().zip(rkeys).collect();
        let op_of = |p: &Planned, schema: &SchemaRef| p.updating.then(|| schema.fields().len() - 1);
        let spec = RegularJoinSpec {
            keys: pairs.clone(),
            ops: [op_of(&left, &la), op_of(&right, &ra)],
            lookup: lookup.is_some(),
            ttl_ms: self.state_ttl_ms,
        };
        let (factory, output) = RegularJoinOperator::factory(spec, la.clone(), ra.clone())?;
        let updating = left.updating || right.updating;
        let name = if lookup.is_some() {
            "lookup-join"
        } else {
            "join"
        };
        let joined =
            self.connect_join([&left, &right], [&la, &ra], &pairs, factory, name, updating);
        // Drop computed key columns: the join node's columns (and the change column).
        let width = |s: &DFSchema| s.fields().len();
        let (lw, rw) = (width(&ls), width(&rs));
        let lstored = la.fields().len() - usize::from(left.updating);
        let keep: Vec<usize> = (0..lw)
            .chain(lstored..lstored + rw)
            .chain(updating.then_some(output.fields().len() - 1))
            .collect();
        let project = (keep.len() != output.fields().len()).then_some(keep);
        self.join_output(j, joined, project.map(|k| (k, output)), rest)
    }

    /// `input` with the key expressions `keys` as columns: the (possibly extended)
    /// schema and the key column indices. The change column stays last.
    fn with_key_columns<'e>(
        &mut self,
        input: Planned,
        schema: &DFSchema,
        keys: impl Iterator<Item = &'e Expr>,
    ) -> Result<(Planned, SchemaRef, Vec<usize>)> {
        let base = arrow_schema(schema);
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(PhysicalColumn::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let mut indices = Vec::new();
        for k in keys {
            match column_index(k, schema) {
                Some(i) => indices.push(i),
                None => {
                    let e = self.physical(k, schema)?;
                    indices.push(fields.len());
                    fields.push(Field::new(
                        format!("__key{}", fields.len()),
                        e.data_type(&base)?,
                        true,
                    ));
                    exprs.push(e);
                }
            }
        }
        if input.updating {
            exprs.push(Arc::new(PhysicalColumn::new(
                OP_COLUMN,
                base.fields().len(),
            )));
            fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
        }
        let extended = Arc::new(Schema::new(fields));
        if exprs.len() == base.fields().len() + usize::from(input.updating) {
            return Ok((input, extended, indices));
        }
        let planned = self.then(
            input,
            "join-keys",
            ProjectOperator::factory(self.plugins.on_error, exprs, extended.clone()),
        );
        Ok((planned, extended, indices))
    }

    /// Adds a two-input join operator fed by key (or by one subtask without keys).
    fn connect_join(
        &mut self,
        inputs: [&Planned; 2],
        schemas: [&SchemaRef; 2],
        keys: &[(usize, usize)],
        factory: fungi_execution::operator::OperatorFactory,
        name: &str,
        updating: bool,
    ) -> Planned {
        let (parallelism, ledge, redge) = if keys.is_empty() {
            (1, Partitioning::Rebalance, Partitioning::Rebalance)
        } else {
            let names = |schema: &SchemaRef, side: fn(&(usize, usize)) -> usize| {
                keys.iter()
                    .map(|k| schema.field(side(k)).name().clone())
                    .collect::<Vec<_>>()
            };
            (
                self.graph.config.parallelism,
                Partitioning::Hash(names(schemas[0], |k| k.0)),
                Partitioning::Hash(names(schemas[1], |k| k.1)),
            )
        };
        let node = self.graph.add_stateful_operator(name, parallelism, factory);
        // The left input's edge first: its position is the operator's input number.
        self.graph.connect(inputs[0].node, node, ledge);
        self.graph.connect(inputs[1].node, node, redge);
        Planned {
            node,
            parallelism,
            updating,
            window: WindowColumns::default(),
        }
    }

    /// The join node's rows: an optional projection of the operator's columns (`keep`
    /// of `output`), then the filter of the remaining join conditions.
    fn join_output(
        &mut self,
        j: &datafusion::logical_expr::Join,
        mut joined: Planned,
        project: Option<(Vec<usize>, SchemaRef)>,
        rest: Vec<Expr>,
    ) -> Result<Planned> {
        if let Some((keep, output)) = project {
            let window = joined.window;
            let exprs = keep
                .iter()
                .map(|&i| {
                    Arc::new(PhysicalColumn::new(output.field(i).name(), i))
                        as Arc<dyn PhysicalExpr>
                })
                .collect();
            let mut schema = arrow_schema(&j.schema);
            if joined.updating {
                schema = with_op_column(&schema);
            }
            joined = self.then(
                joined,
                "join-output",
                ProjectOperator::factory(self.plugins.on_error, exprs, schema),
            );
            joined.window = window;
        }
        if let Some(filter) = rest.into_iter().reduce(|a, b| a.and(b)) {
            let predicate = self.physical(&filter, &j.schema)?;
            joined = self.then(
                joined,
                "join-filter",
                PredicateOperator::factory(self.plugins.on_error, predicate),
            );
        }
        Ok(joined)
    }
}

/// `l.t BETWEEN r.t + a AND r.t + b` (either side first): the time columns and the bounds
/// of `l.t - r.t` in ms.
fn interval_bounds(c: &Expr, ls: &DFSchema, rs: &DFSchema) -> Option<((usize, usize), i64, i64)> {
    let Expr::Between(b) = c else { return None };
    if b.negated {
        return None;
    }
    let (lo_col, lo) = offset(&b.low)?;
    let (hi_col, hi) = offset(&b.high)?;
    if lo_col != hi_col {
        return None;
    }
    if let (Some(l), Some(r)) = (column_index(&b.expr, ls), column_index(&lo_col, rs)) {
        return Some(((l, r), lo, hi));
    }
    if let (Some(r), Some(l)) = (column_index(&b.expr, rs), column_index(&lo_col, ls)) {
        // r.t in [l.t + lo, l.t + hi]  <=>  l.t - r.t in [-hi, -lo]
        return Some(((l, r), -hi, -lo));
    }
    None
}

/// `col`, `col + INTERVAL`, `col - INTERVAL`: the column and the offset in ms.
fn offset(e: &Expr) -> Option<(Expr, i64)> {
    match strip(e) {
        c @ Expr::Column(_) => Some((c.clone(), 0)),
        Expr::BinaryExpr(b) => {
            use datafusion::logical_expr::Operator;
            let ms = interval_ms(strip(&b.right))?;
            let col = strip(&b.left).clone();
            if !matches!(col, Expr::Column(_)) {
                return None;
            }
            match b.op {
                Operator::Plus => Some((col, ms)),
                Operator::Minus => Some((col, -ms)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn interval_ms(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(v.days as i64 * 86_400_000 + v.milliseconds as i64)
        }
        _ => None,
    }
}

impl Planner<'_> {
    /// `ROW_NUMBER() OVER (PARTITION BY window_start, window_end, ... ORDER BY ...)` over
    /// windowed rows: a window Top-N (with a filter on the number above it).
    fn rank(&mut self, w: &datafusion::logical_expr::logical_plan::Window) -> Result<Planned> {
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
    fn is_event_time(&self, name: &str, plan: &LogicalPlan) -> bool {
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
fn is_proctime(time: &Expr, schema: &DFSchema, input: &LogicalPlan) -> bool {
    if crate::session::is_proctime_call(time) {
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
    marked || find_definition(c, input).is_some_and(|(e, _)| crate::session::is_proctime_call(&e))
}

/// If `plan` is a filter `rownum <= N` (or `< N`, or `= 1`) on a `ROW_NUMBER()` column of
/// its input: that column and N.
fn rank_filter(plan: &LogicalPlan) -> Option<(Column, usize)> {
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
fn is_row_number(c: &Column, plan: &LogicalPlan) -> bool {
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

/// The index of `e` in `schema` if it is a (possibly aliased or cast-free) column.
fn column_index(e: &Expr, schema: &DFSchema) -> Option<usize> {
    match e {
        Expr::Alias(a) => column_index(&a.expr, schema),
        Expr::Column(c) => schema.index_of_column(c).ok(),
        _ => None,
    }
}

/// One millisecond, as an interval literal.
fn one_milli() -> Expr {
    Expr::Literal(
        ScalarValue::IntervalMonthDayNano(Some(arrow::datatypes::IntervalMonthDayNano::new(
            0, 0, 1_000_000,
        ))),
        None,
    )
}

/// `schema` with the change column appended.
pub(crate) fn with_op_column(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
    Arc::new(Schema::new(fields))
}

/// Aggregate functions that skip NULL inputs, so `FILTER (WHERE c)` can be applied by
/// nulling the rows where `c` is not true.
const NULL_IGNORING: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "mean",
    "median",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
];

/// An aggregate's `FILTER (WHERE c)` condition and its arguments.
type AggregateFilter = (Expr, Vec<Expr>);

/// Splits `FILTER (WHERE c)` off an aggregate: the aggregate without it, and (c, args).
fn split_filter(a: &Expr) -> Result<(Expr, Option<AggregateFilter>)> {
    let (inner, alias) = match a {
        Expr::Alias(al) => (al.expr.as_ref(), Some(al.name.clone())),
        other => (other, None),
    };
    let Expr::AggregateFunction(f) = inner else {
        return Ok((a.clone(), None));
    };
    let Some(filter) = f.params.filter.clone() else {
        return Ok((a.clone(), None));
    };
    if !NULL_IGNORING.contains(&f.func.name()) {
        return Err(SqlError::unsupported(
            format!("FILTER (WHERE ...) on {}", f.func.name()),
            "use FILTER with count, sum, min, max, avg and other aggregates that skip NULLs, or a CASE inside the aggregate",
        ));
    }
    let mut unfiltered = f.clone();
    unfiltered.params.filter = None;
    let args = f.params.args.clone();
    let e = Expr::AggregateFunction(unfiltered);
    let e = match alias {
        Some(name) => e.alias(name),
        None => e,
    };
    Ok((e, Some((*filter, args))))
}

/// The kind of a non-tumbling window marker in `expr`, if any.
fn non_tumble_marker(expr: &Expr) -> Option<String> {
    let mut found = None;
    let _ = expr.apply(|e| {
        if let Some((kind, ..)) = marker_call(e)
            && kind != "tumble"
        {
            found = Some(kind);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

use datafusion::common::tree_node::TreeNode;

/// If `e` is a window marker call: (kind, bound, time expression, a, b).
fn marker_call(e: &Expr) -> Option<(String, &'static str, Expr, i64, i64)> {
    let e = strip(e);
    let Expr::ScalarFunction(ScalarFunction { func, args }) = e else {
        return None;
    };
    let bound = match func.name() {
        udfs::START => "start",
        udfs::END => "end",
        udfs::TIME => "time",
        _ => return None,
    };
    let lit_str = |e: &Expr| match strip(e) {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
        _ => None,
    };
    let lit_i64 = |e: &Expr| match strip(e) {
        Expr::Literal(ScalarValue::Int64(Some(v)), _) => Some(*v),
        _ => None,
    };
    Some((
        lit_str(&args[0])?,
        bound,
        args[1].clone(),
        lit_i64(&args[2])?,
        lit_i64(&args[3])?,
    ))
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        Expr::Cast(c) => strip(&c.expr),
        Expr::TryCast(c) => strip(&c.expr),
        other => other,
    }
}

/// If the group expression `g` (over `input`) is a window bound, the bound and window.
fn resolve_marker(g: &Expr, input: &LogicalPlan) -> Result<Option<(&'static str, WindowGroup)>> {
    let found = match strip(g) {
        Expr::Column(c) => find_definition(c, input),
        other => Some((other.clone(), input.clone())),
    };
    let Some((def, scope)) = found else {
        return Ok(None);
    };
    let Some((kind, bound, time, a, b)) = marker_call(&def) else {
        return Ok(None);
    };
    let assigner = match kind.as_str() {
        "tumble" => WindowAssigner::tumbling(a)?,
        "hop" => WindowAssigner::sliding(b, a)?,
        "cumulate" => WindowAssigner::cumulate(a, b)?,
        "session" => WindowAssigner::session(a)?,
        other => return Err(SqlError::Plan(format!("unknown window kind '{other}'"))),
    };
    // The time expression refers to the marker's input; the aggregation sees the same
    // column by name (the window TVF keeps every input column).
    let time = match strip(&time) {
        Expr::Column(c) => Expr::Column(Column::new_unqualified(&c.name)),
        other => other.clone(),
    };
    let _ = scope;
    Ok(Some((bound, WindowGroup { assigner, time })))
}

/// `plan` with the column `name` of the window table function below it kept in its
/// output: projections that dropped it carry it again (appended, so every other column
/// keeps its position). `None` when the column cannot be reached through projections,
/// filters and aliases.
fn keep_column(plan: &LogicalPlan, name: &str) -> Result<Option<LogicalPlan>> {
    if plan.schema().index_of_column_by_name(None, name).is_some() {
        return Ok(Some(plan.clone()));
    }
    Ok(Some(match plan {
        LogicalPlan::Projection(p) => {
            let Some(input) = keep_column(&p.input, name)? else {
                return Ok(None);
            };
            let Some(idx) = input.schema().index_of_column_by_name(None, name) else {
                return Ok(None);
            };
            let mut exprs = p.expr.clone();
            exprs.push(Expr::Column(Column::from(
                input.schema().qualified_field(idx),
            )));
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?)
        }
        LogicalPlan::Filter(f) => {
            let Some(input) = keep_column(&f.input, name)? else {
                return Ok(None);
            };
            LogicalPlan::Filter(Filter::try_new(f.predicate.clone(), Arc::new(input))?)
        }
        LogicalPlan::SubqueryAlias(a) => {
            let Some(input) = keep_column(&a.input, name)? else {
                return Ok(None);
            };
            LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(input), a.alias.clone())?)
        }
        _ => return Ok(None),
    }))
}

/// Where the column `c` of `plan`'s output is defined: the expression and its input.
fn find_definition(c: &Column, plan: &LogicalPlan) -> Option<(Expr, LogicalPlan)> {
    match plan {
        LogicalPlan::Projection(p) => {
            let idx = p
                .schema
                .index_of_column(c)
                .ok()
                .or_else(|| p.schema.fields().iter().position(|f| f.name() == &c.name))?;
            let e = p.expr.get(idx)?.clone();
            match strip(&e) {
                Expr::Column(inner) if marker_call(&e).is_none() => {
                    find_definition(inner, &p.input)
                }
                _ => Some((e, (*p.input).clone())),
            }
        }
        LogicalPlan::SubqueryAlias(a) => {
            find_definition(&Column::new_unqualified(&c.name), &a.input)
        }
        LogicalPlan::Filter(f) => find_definition(c, &f.input),
        _ => None,
    }
}
