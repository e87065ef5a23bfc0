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
//! | the same without group keys, from several subtasks | projection → [`WindowPartialOperator`] per subtask → one [`WindowOperator::merging`] → column reorder |
//!
//! Everything else is refused with a message that says what to write instead.
//!
//! This module walks the plan and holds what every node needs (physical expressions,
//! chaining, keyed exchanges); each family of nodes has its own file: [`scan`] (table
//! scans), [`aggregate`] (window and updating aggregations), [`join`] (window, interval,
//! regular and lookup joins), [`rank`] (Top-N and deduplication), [`union`] and
//! [`window`] (the window table functions' columns, traced to their window).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::TreeNode;
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
    ChangelogNormalizeOperator, IntervalJoinOperator, IntervalJoinSpec, ProcessingTimeWatermarks,
    RankOperator, RankSpec, RegularJoinOperator, RegularJoinSpec, UpdatingAggregateOperator,
    WindowJoinOperator, WindowJoinSpec, WindowOperator, WindowPartialOperator, WindowRankOperator,
    WindowRankSpec,
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

mod aggregate;
mod join;
mod over;
mod rank;
mod scan;
mod union;
mod window;

use self::over::*;
use self::rank::*;
use self::window::*;

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
    /// At most one row per window (a window aggregate without group keys, and
    /// projections or filters of it): small enough for a join to send it to every
    /// subtask instead of partitioning both inputs by key.
    pub(crate) small: bool,
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
    /// `table.optimizer.agg-phase-strategy`.
    agg_phase: AggPhaseStrategy,
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

/// Settings of a session that shape its plans.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlanSettings {
    /// `table.exec.state.ttl` in ms, for aggregations, joins and Top-N without a window.
    pub(crate) state_ttl_ms: Option<i64>,
    /// `table.optimizer.agg-phase-strategy`.
    pub(crate) agg_phase: AggPhaseStrategy,
}

/// Flink's `table.optimizer.agg-phase-strategy`: whether a window aggregation without
/// group keys is pre-aggregated on each upstream subtask (see `aggregate.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum AggPhaseStrategy {
    /// In two phases when the input runs on several subtasks and the aggregation
    /// can be split.
    #[default]
    Auto,
    /// Always in one phase.
    OnePhase,
    /// In two phases whenever the aggregation can be split, even from one subtask.
    TwoPhase,
}

impl std::str::FromStr for AggPhaseStrategy {
    type Err = SqlError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "AUTO" => Ok(AggPhaseStrategy::Auto),
            "ONE_PHASE" => Ok(AggPhaseStrategy::OnePhase),
            "TWO_PHASE" => Ok(AggPhaseStrategy::TwoPhase),
            _ => Err(SqlError::Plan(format!(
                "SET 'table.optimizer.agg-phase-strategy': '{s}' is not AUTO, ONE_PHASE or TWO_PHASE"
            ))),
        }
    }
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
        settings: PlanSettings,
        lookups: Vec<String>,
        plugins: &'a mut crate::plugins::SessionPlugins,
    ) -> Self {
        Planner {
            state,
            tables,
            graph,
            in_window_input: false,
            state_ttl_ms: settings.state_ttl_ms,
            agg_phase: settings.agg_phase,
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
        let subquery = expr.exists(|e| {
            Ok(matches!(
                e,
                Expr::InSubquery(_) | Expr::Exists(_) | Expr::ScalarSubquery(_)
            ))
        })?;
        if subquery {
            return Err(SqlError::unsupported(
                "a subquery inside an expression (IN, EXISTS or a scalar subquery)",
                "write it as a join: an INNER join on the subquery (with DISTINCT) for IN \
                 and EXISTS, a LEFT join and `WHERE ... IS NULL` for NOT IN and NOT EXISTS",
            ));
        }
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
            small: input.small,
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
            small: false,
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
                if let LogicalPlan::Join(j) = f.input.as_ref()
                    && j.join_type == datafusion::logical_expr::JoinType::Inner
                {
                    // WHERE conditions over an inner join may be its time bounds (interval
                    // joins). Over an outer join they filter its output, padded rows too.
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
            LogicalPlan::Window(w) if is_over_aggregate(w) => self.over_aggregate(w),
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
