//! Aggregations: with a window (a window operator behind a hash exchange) and
//! without one (an updating aggregation emitting a changelog), and `FILTER (WHERE ...)`.

use super::*;

/// What an aggregation's `GROUP BY` holds: at most one window (its bounds by position
/// in the group expressions) and the keys.
struct Grouping {
    window: Option<WindowGroup>,
    /// (position in the group expressions, `start`, `end` or `time`).
    bounds: Vec<(usize, &'static str)>,
    /// (position in the group expressions, the key expression).
    keys: Vec<(usize, Expr)>,
}

impl Grouping {
    /// The position of the window's `start` or `end` among the group expressions.
    fn bound(&self, which: &str) -> Option<usize> {
        self.bounds
            .iter()
            .find(|(_, b)| *b == which)
            .map(|(p, _)| *p)
    }
}

/// The projection in front of an aggregation: the event time (windows only), the keys
/// and every aggregate's arguments, as columns `__time`, `__k<n>`, `__a<n>_<j>` (and the
/// change column of an updating input), with the aggregate calls that read them.
struct AggregateInput {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    fields: Vec<Field>,
    key_names: Vec<String>,
    calls: Vec<AggregateCall>,
}

impl Planner<'_> {
    /// An aggregation: a window aggregation when it groups by a window's bounds (or by
    /// the bounds of windowed rows), else an updating aggregation.
    pub(super) fn aggregate(&mut self, agg: &Aggregate) -> Result<Planned> {
        let input_schema = agg.input.schema();
        let mut grouping = self.grouping(agg)?;
        // A subquery between the window table function and this aggregation may have
        // dropped the time column: carry it through and plan the aggregation again.
        if let Some(WindowGroup {
            time: Expr::Column(time),
            ..
        }) = &grouping.window
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
        self.in_window_input = grouping.window.is_some();
        let input = self.plan(&agg.input);
        self.in_window_input = false;
        let input = input?;
        if input.updating && grouping.window.is_some() {
            return Err(SqlError::unsupported(
                "a window aggregation over an updating result (an aggregation or join without a window)",
                "aggregate per window first, or aggregate the updating result without a window",
            ));
        }
        let cascaded = self.cascaded_window(agg, &input, &mut grouping)?;
        let pre = self.aggregate_input(agg, &grouping, input.updating)?;
        match grouping.window.take() {
            None => {
                let pre_schema = Arc::new(Schema::new(pre.fields));
                let planned = self.then(
                    input,
                    "aggregate-input",
                    ProjectOperator::factory(self.plugins.on_error, pre.exprs, pre_schema.clone()),
                );
                self.updating_aggregate(agg, planned, &pre_schema, pre.key_names, pre.calls)
            }
            Some(window) => {
                let mut result = self.window_aggregate(agg, input, pre, window, &grouping)?;
                result.window = WindowColumns {
                    start: grouping.bound("start").or(cascaded.start),
                    end: grouping.bound("end").or(cascaded.end),
                };
                Ok(result)
            }
        }
    }

    /// Which group expressions are window bounds, and of which window.
    fn grouping(&self, agg: &Aggregate) -> Result<Grouping> {
        let mut grouping = Grouping {
            window: None,
            bounds: Vec::new(),
            keys: Vec::new(),
        };
        for (i, g) in agg.group_expr.iter().enumerate() {
            match resolve_marker(g, &agg.input)? {
                Some((bound, group)) => {
                    if let Some(w) = &grouping.window
                        && w.assigner != group.assigner
                    {
                        return Err(SqlError::unsupported(
                            "grouping by two different windows",
                            "group by the bounds of one window",
                        ));
                    }
                    grouping.window = Some(group);
                    grouping.bounds.push((i, bound));
                }
                None => grouping.keys.push((i, g.clone())),
            }
        }
        Ok(grouping)
    }

    /// Grouping by the window bounds of windowed rows (a window over window results):
    /// each row already names its window, which fires when the watermark passes its
    /// end. Sets the grouping's window to that and returns where the bounds are.
    fn cascaded_window(
        &self,
        agg: &Aggregate,
        input: &Planned,
        grouping: &mut Grouping,
    ) -> Result<WindowColumns> {
        let input_schema = agg.input.schema();
        let (None, Some(end)) = (&grouping.window, input.window.end) else {
            return Ok(WindowColumns::default());
        };
        let position = |idx: Option<usize>| {
            idx.and_then(|i| {
                agg.group_expr
                    .iter()
                    .position(|g| column_index(g, input_schema) == Some(i))
            })
        };
        let Some(end_pos) = position(Some(end)) else {
            return Ok(WindowColumns::default());
        };
        let end_col = Expr::Column(Column::from(input_schema.qualified_field(end)));
        grouping.window = Some(WindowGroup {
            assigner: WindowAssigner::tumbling(1)?,
            time: end_col - one_milli(),
        });
        Ok(WindowColumns {
            start: position(input.window.start),
            end: Some(end_pos),
        })
    }

    /// The projection in front of the aggregation (see [`AggregateInput`]).
    fn aggregate_input(
        &mut self,
        agg: &Aggregate,
        grouping: &Grouping,
        updating: bool,
    ) -> Result<AggregateInput> {
        let input_schema = agg.input.schema();
        let input_arrow = arrow_schema(input_schema);
        let mut pre = AggregateInput {
            exprs: Vec::new(),
            fields: Vec::new(),
            key_names: Vec::new(),
            calls: Vec::new(),
        };
        if let Some(window) = &grouping.window {
            pre.exprs.push(self.physical(&window.time, input_schema)?);
            pre.fields.push(Field::new(
                "__time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ));
        }
        for (n, (_, k)) in grouping.keys.iter().enumerate() {
            let e = self.physical(k, input_schema)?;
            let name = format!("__k{n}");
            pre.fields
                .push(Field::new(&name, e.data_type(&input_arrow)?, true));
            pre.exprs.push(e);
            pre.key_names.push(name);
        }
        for (n, a) in agg.aggr_expr.iter().enumerate() {
            let call = self.aggregate_call(n, a, input_schema, &input_arrow, &mut pre)?;
            pre.calls.push(call);
        }
        if updating {
            // Carry the change column: the aggregation takes retracted rows back.
            pre.exprs.push(Arc::new(PhysicalColumn::new(
                OP_COLUMN,
                input_schema.fields().len(),
            )));
            pre.fields
                .push(Field::new(OP_COLUMN, DataType::Int8, false));
        }
        Ok(pre)
    }

    /// The `n`-th aggregate: its arguments added to `pre`, and the call reading them,
    /// with Fungi's native accumulator (or the plugin's) where one has DataFusion's
    /// result type, else DataFusion's.
    fn aggregate_call(
        &mut self,
        n: usize,
        a: &Expr,
        input_schema: &DFSchema,
        input_arrow: &SchemaRef,
        pre: &mut AggregateInput,
    ) -> Result<AggregateCall> {
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
            input_arrow,
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
            let t = arg.data_type(input_arrow)?;
            pre.fields.push(Field::new(&name, t.clone(), true));
            types.push(t);
            pre.exprs.push(arg);
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
        Ok(AggregateCall {
            function,
            inputs,
            alias: format!("__agg{n}"),
        })
    }

    /// The window aggregation: the input projection (with the wall clock as time for a
    /// processing-time window), the window operator fed by key group, and the reorder
    /// into the aggregate's columns.
    fn window_aggregate(
        &mut self,
        agg: &Aggregate,
        input: Planned,
        mut pre: AggregateInput,
        mut window: WindowGroup,
        grouping: &Grouping,
    ) -> Result<Planned> {
        let input_schema = agg.input.schema();
        // A window over a processing-time attribute: each row's time is the wall clock
        // when it reaches the window's input, and so is the watermark.
        let proctime = is_proctime(&window.time, input_schema, &agg.input);
        if proctime {
            let now = Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(udfs::Proctime::udf()),
                vec![],
            ));
            pre.exprs[0] = self.physical(&now, input_schema)?;
            window.time = now;
        }
        let pre_schema = Arc::new(Schema::new(pre.fields));
        let mut planned = self.then(
            input,
            "window-input",
            ProjectOperator::factory(self.plugins.on_error, pre.exprs, pre_schema.clone()),
        );
        if proctime {
            planned = self.then(
                planned,
                "proctime-watermarks",
                ProcessingTimeWatermarks::factory(),
            );
        }
        let key_names = pre.key_names;
        let spec = WindowAggregateSpec {
            keys: key_names.clone(),
            time_column: "__time".into(),
            assigner: window.assigner,
            allowed_lateness: 0,
            aggregates: pre.calls,
        };
        // Without keys every row would cross to the window's one subtask: with several
        // upstream subtasks, each pre-aggregates its rows and sends one partial row per
        // slice instead (local-global aggregation).
        let two_phase = key_names.is_empty()
            && match self.agg_phase {
                AggPhaseStrategy::Auto => planned.parallelism > 1,
                AggPhaseStrategy::OnePhase => false,
                AggPhaseStrategy::TwoPhase => true,
            }
            && spec.assigner.slice_size().is_some()
            && spec
                .aggregates
                .iter()
                .all(|c| c.function.merges_partial_states());
        let (windowed, window_schema) = if two_phase {
            let (partial, _) = WindowPartialOperator::factory(spec.clone(), &pre_schema)?;
            let partial = self.then(planned, "window-partial", partial);
            let (factory, schema) = WindowOperator::merging(spec, &pre_schema)?;
            (
                self.add_keyed(&partial, "window", factory, &[], false),
                schema,
            )
        } else {
            let (factory, schema) = WindowOperator::factory(spec, &pre_schema)?;
            (
                self.add_keyed(&planned, "window", factory, &key_names, false),
                schema,
            )
        };
        // Reorder into the aggregate's columns: group expressions, then aggregates.
        let window_df = DFSchema::try_from(window_schema.as_ref().clone())?;
        let nkeys = key_names.len();
        let mut out = Vec::new();
        let mut key_iter = 0;
        for (i, _) in agg.group_expr.iter().enumerate() {
            let e: Arc<dyn PhysicalExpr> = match grouping.bounds.iter().find(|(p, _)| *p == i) {
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
        let mut output = self.then(
            windowed,
            "window-output",
            ProjectOperator::factory(self.plugins.on_error, out, arrow_schema(&agg.schema)),
        );
        // Without group keys there is one row per window.
        output.small = key_names.is_empty();
        Ok(output)
    }

    /// An aggregation without a window: per-key accumulators emitting a changelog.
    pub(super) fn updating_aggregate(
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

/// Aggregate functions that skip NULL inputs, so `FILTER (WHERE c)` can be applied by
/// nulling the rows where `c` is not true.
pub(super) const NULL_IGNORING: &[&str] = &[
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
pub(super) type AggregateFilter = (Expr, Vec<Expr>);

/// Splits `FILTER (WHERE c)` off an aggregate: the aggregate without it, and (c, args).
pub(super) fn split_filter(a: &Expr) -> Result<(Expr, Option<AggregateFilter>)> {
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
