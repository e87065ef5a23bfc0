//! Joins: window joins, interval joins, regular joins and lookup joins.

use super::*;

/// Which input(s) of a join an expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sides {
    Left,
    Right,
    Both,
    Neither,
}

pub(super) fn sides(e: &Expr, ls: &DFSchema, rs: &DFSchema) -> Sides {
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

/// How a regular join treats its inputs.
pub(super) struct JoinHow {
    /// The looked-up table of a lookup join (`FOR SYSTEM_TIME AS OF`).
    lookup: Option<String>,
    /// Which inputs keep their rows without a partner (LEFT, RIGHT, FULL).
    outer: [bool; 2],
}

/// The plan's scanned table, if it is a scan (possibly aliased).
pub(super) fn scanned_table(plan: &LogicalPlan) -> Option<String> {
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
    pub(super) fn join(
        &mut self,
        j: &datafusion::logical_expr::Join,
        extra: Vec<Expr>,
    ) -> Result<Planned> {
        use datafusion::logical_expr::JoinType;
        let outer = match j.join_type {
            JoinType::Inner => [false, false],
            JoinType::Left => [true, false],
            JoinType::Right => [false, true],
            JoinType::Full => [true, true],
            other => {
                return Err(SqlError::unsupported(
                    format!("{other} joins (from IN or EXISTS with a subquery)"),
                    "write the subquery as an INNER join (with DISTINCT on its side), or a \
                     LEFT join and a WHERE ... IS NULL for NOT IN / NOT EXISTS",
                ));
            }
        };
        let is_outer = outer.contains(&true);
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
        if is_outer {
            return self.outer_join(j, outer, keys, [left_only, right_only], rest, lookup);
        }
        let [left, right] = self.join_inputs(j, outer, &mut keys, [left_only, right_only])?;
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
        let how = JoinHow {
            lookup,
            outer: [false, false],
        };
        self.regular_join(j, left, right, &keys, how, rest)
    }

    /// A LEFT, RIGHT or FULL join: a regular (or LEFT lookup) join on the equalities
    /// between its sides. A condition of the ON clause on one side filters that side
    /// before the join when its rows are not kept without a partner; on a side whose
    /// rows are kept, a row failing it has no partner, so it makes the row's key NULL.
    fn outer_join(
        &mut self,
        j: &datafusion::logical_expr::Join,
        outer: [bool; 2],
        mut keys: Vec<(Expr, Expr)>,
        one_side: [Vec<Expr>; 2],
        rest: Vec<Expr>,
        lookup: Option<String>,
    ) -> Result<Planned> {
        let kind = match outer {
            [true, false] => "LEFT",
            [false, true] => "RIGHT",
            _ => "FULL",
        };
        if !rest.is_empty() && lookup.is_none() {
            return self.outer_interval_join(j, outer, kind, &keys, one_side, rest);
        }
        if let Some(c) = rest.first() {
            return Err(SqlError::unsupported(
                format!(
                    "a {kind} join whose ON clause compares its two sides other than by \
                     equality ({c})"
                ),
                "join on equalities only and filter the joined rows in a WHERE clause, or \
                 use an INNER join",
            ));
        }
        if keys.is_empty() {
            return Err(SqlError::unsupported(
                format!("a {kind} join without an equality between its two sides"),
                "join on a column of each side (`ON a.k = b.k`)",
            ));
        }
        if lookup.is_some() && outer[1] {
            return Err(SqlError::unsupported(
                format!("a {kind} lookup join (FOR SYSTEM_TIME AS OF)"),
                "use an INNER or a LEFT lookup join: the rows of the looked-up table are \
                 not kept",
            ));
        }
        let [left, right] = self.join_inputs(j, outer, &mut keys, one_side)?;
        self.regular_join(j, left, right, &keys, JoinHow { lookup, outer }, Vec::new())
    }

    /// Both inputs of a join, planned, with the conditions of the ON clause on one side
    /// (`one_side`) applied: a side whose rows are not kept without a partner is
    /// filtered before the join; on a kept side (`outer`), a row failing the condition
    /// has no partner but stays, so the condition makes its first key NULL (a NULL key
    /// matches nothing).
    fn join_inputs(
        &mut self,
        j: &datafusion::logical_expr::Join,
        outer: [bool; 2],
        keys: &mut [(Expr, Expr)],
        one_side: [Vec<Expr>; 2],
    ) -> Result<[Planned; 2]> {
        let schemas = [j.left.schema().clone(), j.right.schema().clone()];
        let mut inputs = [self.plan(&j.left)?, self.plan(&j.right)?];
        for (side, conditions) in one_side.into_iter().enumerate() {
            let Some(c) = conditions.into_iter().reduce(|a, b| a.and(b)) else {
                continue;
            };
            if !outer[side] {
                let predicate = self.physical(&c, &schemas[side])?;
                inputs[side] = self.then(
                    inputs[side],
                    "filter",
                    PredicateOperator::factory(self.plugins.on_error, predicate),
                );
                continue;
            }
            let Some(first) = keys.first_mut() else {
                return Err(SqlError::unsupported(
                    format!(
                        "a condition on the kept side of an outer join without equalities ({c})"
                    ),
                    "join on a column of each side as well (`ON a.k = b.k AND ...`)",
                ));
            };
            let key = if side == 0 {
                &mut first.0
            } else {
                &mut first.1
            };
            *key = datafusion::logical_expr::when(c, key.clone()).end()?;
        }
        Ok(inputs)
    }

    /// A LEFT, RIGHT or FULL interval join: equalities and one condition
    /// `l.t BETWEEN r.t + a AND r.t + b` between the sides; a row of a kept side that met
    /// no partner is emitted padded once its time range has passed.
    fn outer_interval_join(
        &mut self,
        j: &datafusion::logical_expr::Join,
        outer: [bool; 2],
        kind: &str,
        keys: &[(Expr, Expr)],
        one_side: [Vec<Expr>; 2],
        mut rest: Vec<Expr>,
    ) -> Result<Planned> {
        let (ls, rs) = (j.left.schema().clone(), j.right.schema().clone());
        let Some(pos) = rest
            .iter()
            .position(|c| interval_bounds(c, &ls, &rs).is_some())
        else {
            return Err(SqlError::unsupported(
                format!(
                    "a {kind} join whose ON clause compares its two sides other than by \
                     equality ({})",
                    rest[0]
                ),
                "join on equalities (and one time condition `l.ts BETWEEN r.ts - INTERVAL \
                 ... AND r.ts + INTERVAL ...` for an interval join), and filter the joined \
                 rows in a WHERE clause",
            ));
        };
        let (time, lower, upper) = interval_bounds(&rest.remove(pos), &ls, &rs).expect("checked");
        if let Some(c) = rest.first() {
            return Err(SqlError::unsupported(
                format!(
                    "a condition across both sides of a {kind} interval join besides its time bounds ({c})"
                ),
                "filter the joined rows in a WHERE clause",
            ));
        }
        let mut keys = keys.to_vec();
        let inputs = self.join_inputs(j, outer, &mut keys, one_side)?;
        if inputs.iter().any(|p| p.updating) {
            return Err(SqlError::unsupported(
                format!("a {kind} interval join of an updating result"),
                "join append-only streams (tables, window aggregations)",
            ));
        }
        // Key expressions that are not columns are computed as extra (last) columns, so
        // the time columns keep their places.
        let [left, right] = inputs;
        let (left, la, lkeys) = self.with_key_columns(left, &ls, keys.iter().map(|k| &k.0))?;
        let (right, ra, rkeys) = self.with_key_columns(right, &rs, keys.iter().map(|k| &k.1))?;
        let pairs: Vec<(usize, usize)> = lkeys.into_iter().zip(rkeys).collect();
        let spec = IntervalJoinSpec {
            time,
            keys: pairs.clone(),
            lower,
            upper,
            broadcast: None,
            outer,
        };
        let (factory, output) = IntervalJoinOperator::factory(spec, la.clone(), ra.clone())?;
        let joined = self.connect_join(
            [&left, &right],
            [&la, &ra],
            &pairs,
            factory,
            "interval-join",
            false,
        );
        let (lw, rw) = (ls.fields().len(), rs.fields().len());
        let keep: Vec<usize> = (0..lw)
            .chain(la.fields().len()..la.fields().len() + rw)
            .collect();
        let project = (keep.len() != output.fields().len()).then_some((keep, output));
        self.join_output(j, joined, project, Vec::new())
    }

    /// A window join or an interval join, if the keys and conditions make one.
    pub(super) fn time_join(
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
            // An inner join may send a small side to every subtask and leave the other
            // where it is, instead of partitioning both by key.
            let broadcast = match (left.small, right.small) {
                _ if pairs.is_empty() => None,
                (false, true) => Some(1),
                (true, false) => Some(0),
                _ => None,
            };
            let spec = IntervalJoinSpec {
                time,
                keys: pairs.to_vec(),
                lower,
                upper,
                broadcast,
                outer: [false, false],
            };
            let (factory, _) = IntervalJoinOperator::factory(spec, la.clone(), ra.clone())?;
            let joined = match broadcast {
                Some(side) => self.connect_broadcast_join([&left, &right], side, factory),
                None => self.connect_join(
                    [&left, &right],
                    [&la, &ra],
                    pairs,
                    factory,
                    "interval-join",
                    false,
                ),
            };
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
    pub(super) fn regular_join(
        &mut self,
        j: &datafusion::logical_expr::Join,
        left: Planned,
        right: Planned,
        keys: &[(Expr, Expr)],
        how: JoinHow,
        rest: Vec<Expr>,
    ) -> Result<Planned> {
        let JoinHow { lookup, outer } = how;
        if let Some(table) = &lookup {
            let def = &self.tables[table];
            if !fungi_connector::descriptor::descriptor(&def.connector).is_some_and(|c| c.lookup) {
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
            outer,
        };
        let (factory, output) = RegularJoinOperator::factory(spec, la.clone(), ra.clone())?;
        // Padded rows are taken back when a partner arrives, except in a lookup join.
        let updating =
            left.updating || right.updating || (lookup.is_none() && outer.contains(&true));
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
    pub(super) fn with_key_columns<'e>(
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
    pub(super) fn connect_join(
        &mut self,
        inputs: [&Planned; 2],
        schemas: [&SchemaRef; 2],
        keys: &[(usize, usize)],
        factory: fungi_execution::operator::OperatorFactory,
        name: &str,
        updating: bool,
    ) -> Planned {
        let (parallelism, edges) = if keys.is_empty() {
            (1, [Partitioning::Rebalance, Partitioning::Rebalance])
        } else {
            let names = |schema: &SchemaRef, side: fn(&(usize, usize)) -> usize| {
                keys.iter()
                    .map(|k| schema.field(side(k)).name().clone())
                    .collect::<Vec<_>>()
            };
            (
                self.graph.config.parallelism,
                [
                    Partitioning::Hash(names(schemas[0], |k| k.0)),
                    Partitioning::Hash(names(schemas[1], |k| k.1)),
                ],
            )
        };
        self.add_join(inputs, parallelism, edges, factory, name, updating)
    }

    /// Connects an interval join whose input `broadcast` goes whole to every subtask;
    /// the other input stays where it is (chained, at the job's parallelism) or is
    /// spread round-robin.
    fn connect_broadcast_join(
        &mut self,
        inputs: [&Planned; 2],
        broadcast: usize,
        factory: fungi_execution::operator::OperatorFactory,
    ) -> Planned {
        let parallelism = self.graph.config.parallelism;
        let edges = [0, 1].map(|side| {
            if side == broadcast {
                Partitioning::Broadcast
            } else if inputs[side].parallelism == parallelism {
                Partitioning::Forward
            } else {
                Partitioning::Rebalance
            }
        });
        self.add_join(inputs, parallelism, edges, factory, "interval-join", false)
    }

    /// Adds a join node fed by `inputs` over `edges`.
    fn add_join(
        &mut self,
        inputs: [&Planned; 2],
        parallelism: u32,
        edges: [Partitioning; 2],
        factory: fungi_execution::operator::OperatorFactory,
        name: &str,
        updating: bool,
    ) -> Planned {
        let node = self.graph.add_stateful_operator(name, parallelism, factory);
        // The left input's edge first: its position is the operator's input number.
        for (input, edge) in inputs.iter().zip(edges) {
            self.graph.connect(input.node, node, edge);
        }
        Planned {
            node,
            parallelism,
            updating,
            window: WindowColumns::default(),
            small: false,
        }
    }

    /// The join node's rows: an optional projection of the operator's columns (`keep`
    /// of `output`), then the filter of the remaining join conditions.
    pub(super) fn join_output(
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
pub(super) fn interval_bounds(
    c: &Expr,
    ls: &DFSchema,
    rs: &DFSchema,
) -> Option<((usize, usize), i64, i64)> {
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
pub(super) fn offset(e: &Expr) -> Option<(Expr, i64)> {
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

pub(super) fn interval_ms(e: &Expr) -> Option<i64> {
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
